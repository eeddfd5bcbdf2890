//! Encoding and decoding of sync messages (`ip_vs_sync.c`): version 1 both ways,
//! version 0 both ways (IPv4 only, as the kernel).

use super::{PeData, Seq, SeqOpts, SyncConn, flags};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `sizeof(struct ip_vs_sync_mesg)`: the version-1 header.
const V1_HEADER: usize = 8;
/// `sizeof(struct ip_vs_sync_mesg_v0)`: the version-0 header.
const V0_HEADER: usize = 4;
/// `sizeof(struct ip_vs_sync_v4)`.
const V1_ENTRY_V4: usize = 36;
/// `sizeof(struct ip_vs_sync_v6)`.
const V1_ENTRY_V6: usize = 72;
/// `SIMPLE_CONN_SIZE`: `sizeof(struct ip_vs_sync_conn_v0)`.
const V0_ENTRY: usize = 24;
/// `sizeof(struct ip_vs_sync_conn_options)`: two `struct ip_vs_seq`.
const SEQ_OPTS: usize = 24;
/// `SYNC_PROTO_VER`.
const VERSION: u8 = 1;
/// `STYPE_F_INET6`: entry type bit for IPv6.
const STYPE_F_INET6: u8 = 1;
/// `SVER_SHIFT`, `SVER_MASK`: entry version (4 bits) and size (12 bits).
const SVER_SHIFT: u16 = 12;
const SVER_MASK: u16 = 0x0fff;
/// Option types (`IPVS_OPT_*`); bit 6 (`IPVS_OPT_F_PARAM`) marks an option a
/// receiver may skip when it does not know it.
const OPT_SEQ_DATA: u8 = 1;
const OPT_PE_DATA: u8 = 2;
const OPT_PE_NAME: u8 = 3;
const OPT_F_PARAM: u8 = 1 << 6;
/// `IP_VS_PEDATA_MAXLEN`, `IP_VS_PENAME_MAXLEN` (`include/net/ip_vs.h`).
const PEDATA_MAXLEN: usize = 255;
const PENAME_MAXLEN: usize = 16;
/// `nr_conns` is 8 bits (`MAX_CONNS_PER_SYNCBUFF`).
const MAX_CONNS: u8 = 255;

/// A decoded message that passed every structural check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 1, or 0 for the legacy format.
    pub version: u8,
    pub syncid: u8,
    /// The connections in message order.
    pub conns: Vec<SyncConn>,
    /// Entries the kernel drops one by one while keeping the rest of the
    /// message (`ip_vs_proc_sync_conn` returning a positive code).
    pub skipped: Vec<Skipped>,
}

/// Why one entry of an otherwise sound message was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// An option type without `IPVS_OPT_F_PARAM` that this receiver does not know.
    UnknownMandatoryParam(u8),
    /// Persistence-engine data without an engine name (`ip_vs_conn_fill_param_sync`).
    PeDataWithoutName,
}

impl Skipped {
    /// A stable label for a drop counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Skipped::UnknownMandatoryParam(_) => "unknown_param",
            Skipped::PeDataWithoutName => "pe_without_name",
        }
    }
}

/// Why a whole message was dropped. The checks and their order are those of
/// `ip_vs_process_message` and `ip_vs_proc_sync_conn` (negative codes); `index`
/// is the entry at fault.
///
/// Unlike the kernel, which has already applied the entries in front of a corrupt
/// one when it stops, the decoder returns no entry of a corrupt message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the 4-byte version-0 header.
    HeaderTooShort { len: usize },
    /// The header's size field differs from the datagram's length.
    SizeMismatch { header: u16, actual: usize },
    /// Not our sync id (the filter is not 0).
    Syncid { got: u8, want: u8 },
    /// The header counts more entries than the datagram holds.
    Truncated { index: u8 },
    /// An entry's size runs past the end of the datagram.
    EntryBeyondMessage { index: u8, size: u16 },
    /// An entry's version nibble is not 0.
    EntryVersion { index: u8, version: u8 },
    /// An entry type other than IPv4 (0) or IPv6 (bit 0).
    EntryType { index: u8, ty: u8 },
    /// An entry's size is smaller than its fixed part.
    EntryTooSmall { index: u8, size: u16 },
    /// An option header or body runs past its entry, or has length 0.
    OptionLength { index: u8 },
    /// The sequence option is not 24 bytes, or appears twice.
    SeqOption { index: u8 },
    /// Persistence-engine data or name too long, or given twice.
    PeOption { index: u8 },
}

impl DecodeError {
    /// A stable label for a drop counter.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::HeaderTooShort { .. } => "short",
            DecodeError::SizeMismatch { .. } => "size",
            DecodeError::Syncid { .. } => "syncid",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::EntryBeyondMessage { .. } | DecodeError::EntryTooSmall { .. } => "entry_size",
            DecodeError::EntryVersion { .. } => "entry_version",
            DecodeError::EntryType { .. } => "entry_type",
            DecodeError::OptionLength { .. } => "option_length",
            DecodeError::SeqOption { .. } => "seq_option",
            DecodeError::PeOption { .. } => "pe_option",
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::HeaderTooShort { len } => write!(f, "message header too short ({len} bytes)"),
            DecodeError::SizeMismatch { header, actual } => {
                write!(f, "bogus message size: header says {header}, datagram has {actual}")
            }
            DecodeError::Syncid { got, want } => write!(f, "syncid {got} ignored (want {want})"),
            DecodeError::Truncated { index } => write!(f, "entry {index}: message too small"),
            DecodeError::EntryBeyondMessage { index, size } => {
                write!(f, "entry {index}: size {size} runs past the message")
            }
            DecodeError::EntryVersion { index, version } => write!(f, "entry {index}: unknown version {version}"),
            DecodeError::EntryType { index, ty } => write!(f, "entry {index}: unknown type {ty:#x}"),
            DecodeError::EntryTooSmall { index, size } => write!(f, "entry {index}: size {size} too small"),
            DecodeError::OptionLength { index } => write!(f, "entry {index}: bad option length"),
            DecodeError::SeqOption { index } => write!(f, "entry {index}: bad sequence option"),
            DecodeError::PeOption { index } => write!(f, "entry {index}: bad persistence-engine option"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A connection the encoder cannot put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// Client, virtual and destination addresses are not of one family.
    MixedFamilies,
    /// Version 0 carries IPv4 only.
    V0NeedsIpv4,
    /// Persistence-engine data must be 1..=255 bytes and its name 1..=16.
    PeData,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EncodeError::MixedFamilies => "addresses of mixed families",
            EncodeError::V0NeedsIpv4 => "sync version 0 carries IPv4 only",
            EncodeError::PeData => "persistence-engine data must be 1..=255 bytes with a 1..=16-byte name",
        })
    }
}

impl std::error::Error for EncodeError {}

// ---------------------------------------------------------------------------------
// Encoding

/// Fills version-1 messages as `ip_vs_sync_conn` fills its sync buffers: entries
/// are appended, each 4-byte aligned with zero padding (the last one unpadded),
/// until the next would pass the buffer's end or the count reaches 255; the full
/// message is then handed out and a new one started. A buffer's end is
/// `max(maxlen, 8 + first entry)` (`ip_vs_sync_buff_create`), so one entry larger
/// than `maxlen` still goes out, alone.
#[derive(Debug)]
pub struct Encoder {
    syncid: u8,
    maxlen: usize,
    buf: Vec<u8>,
    end: usize,
}

impl Encoder {
    /// `maxlen` from [`super::sync_maxlen`] with [`super::Role::Master`].
    pub fn new(syncid: u8, maxlen: u32) -> Self {
        Encoder {
            syncid,
            maxlen: maxlen as usize,
            buf: Vec::new(),
            end: 0,
        }
    }

    /// Appends `c`; returns the previous message when `c` did not fit in it.
    pub fn push(&mut self, c: &SyncConn) -> Result<Option<Vec<u8>>, EncodeError> {
        let len = v1_entry_len(c)?;
        let mut done = None;
        if !self.buf.is_empty() {
            let pad = (4 - self.buf.len() % 4) % 4;
            if self.buf.len() + pad + len > self.end || self.buf[4] == MAX_CONNS {
                done = self.flush();
            } else {
                self.buf.resize(self.buf.len() + pad, 0);
            }
        }
        if self.buf.is_empty() {
            self.end = self.maxlen.max(V1_HEADER + len);
            self.buf.reserve(self.end);
            self.buf.extend_from_slice(&[0, self.syncid, 0, 0, 0, VERSION, 0, 0]);
        }
        put_v1_entry(&mut self.buf, c, len);
        self.buf[4] += 1;
        let size = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&size.to_be_bytes());
        Ok(done)
    }

    /// Hands out the message being filled, if it holds any entry.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.buf.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.buf))
        }
    }

    /// Encodes `conns` into as few messages as the sizing rule allows.
    pub fn encode_all(syncid: u8, maxlen: u32, conns: &[SyncConn]) -> Result<Vec<Vec<u8>>, EncodeError> {
        let mut e = Encoder::new(syncid, maxlen);
        let mut out = Vec::new();
        for c in conns {
            out.extend(e.push(c)?);
        }
        out.extend(e.flush());
        Ok(out)
    }
}

fn v1_entry_len(c: &SyncConn) -> Result<usize, EncodeError> {
    let v6 = c.is_v6();
    if c.vaddr.is_ipv6() != v6 || c.daddr.is_ipv6() != v6 {
        return Err(EncodeError::MixedFamilies);
    }
    let mut len = if v6 { V1_ENTRY_V6 } else { V1_ENTRY_V4 };
    if c.seq.is_some() {
        len += 2 + SEQ_OPTS;
    }
    if let Some(pe) = &c.pe {
        if !(1..=PEDATA_MAXLEN).contains(&pe.data.len()) || !(1..=PENAME_MAXLEN).contains(&pe.name.len()) {
            return Err(EncodeError::PeData);
        }
        len += 2 + pe.data.len() + 2 + pe.name.len();
    }
    Ok(len)
}

fn put_addr(buf: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => buf.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => buf.extend_from_slice(&a.octets()),
    }
}

fn put_seq(buf: &mut Vec<u8>, s: &SeqOpts) {
    for q in [s.in_seq, s.out_seq] {
        for w in [q.init_seq, q.delta, q.previous_delta] {
            buf.extend_from_slice(&w.to_be_bytes());
        }
    }
}

/// One `struct ip_vs_sync_v4`/`_v6` and its options (`ip_vs_sync_conn`).
fn put_v1_entry(buf: &mut Vec<u8>, c: &SyncConn, len: usize) {
    let start = buf.len();
    buf.push(if c.is_v6() { STYPE_F_INET6 } else { 0 });
    buf.push(c.protocol);
    buf.extend_from_slice(&(len as u16 & SVER_MASK).to_be_bytes()); // version 0
    buf.extend_from_slice(&(c.flags & !flags::HASHED).to_be_bytes());
    buf.extend_from_slice(&c.state.to_be_bytes());
    buf.extend_from_slice(&c.cport.to_be_bytes());
    buf.extend_from_slice(&c.vport.to_be_bytes());
    buf.extend_from_slice(&c.dport.to_be_bytes());
    buf.extend_from_slice(&c.fwmark.to_be_bytes());
    buf.extend_from_slice(&c.timeout.to_be_bytes());
    put_addr(buf, c.caddr);
    put_addr(buf, c.vaddr);
    put_addr(buf, c.daddr);
    if let Some(s) = &c.seq {
        buf.extend_from_slice(&[OPT_SEQ_DATA, SEQ_OPTS as u8]);
        put_seq(buf, s);
    }
    if let Some(pe) = &c.pe {
        buf.extend_from_slice(&[OPT_PE_DATA, pe.data.len() as u8]);
        buf.extend_from_slice(&pe.data);
        buf.extend_from_slice(&[OPT_PE_NAME, pe.name.len() as u8]);
        buf.extend_from_slice(&pe.name);
    }
    debug_assert_eq!(buf.len() - start, len);
}

/// Encodes version-0 messages (`net.ipv4.vs.sync_version=0`, `ip_vs_sync_conn_v0`)
/// for old backups: IPv4 only, 16-bit flags; fwmark, timeout and persistence-engine
/// data are not carried. The 24-byte sequence option follows an entry whose flags
/// have [`flags::SEQ_MASK`] bits (zeros when `seq` is `None`).
pub fn encode_v0(syncid: u8, maxlen: u32, conns: &[SyncConn]) -> Result<Vec<Vec<u8>>, EncodeError> {
    let maxlen = maxlen as usize;
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut end = 0;
    for c in conns {
        let (IpAddr::V4(ca), IpAddr::V4(va), IpAddr::V4(da)) = (c.caddr, c.vaddr, c.daddr) else {
            return Err(EncodeError::V0NeedsIpv4);
        };
        let fl = (c.flags & !flags::HASHED) as u16;
        let with_seq = u32::from(fl) & flags::SEQ_MASK != 0;
        let len = if with_seq { V0_ENTRY + SEQ_OPTS } else { V0_ENTRY };
        if !buf.is_empty() && (buf.len() + len > end || buf[0] == MAX_CONNS) {
            out.push(std::mem::take(&mut buf));
        }
        if buf.is_empty() {
            end = maxlen.max(V0_HEADER + len);
            buf.extend_from_slice(&[0, syncid, 0, 0]);
        }
        buf.push(0); // reserved
        buf.push(c.protocol);
        for p in [c.cport, c.vport, c.dport] {
            buf.extend_from_slice(&p.to_be_bytes());
        }
        for a in [ca, va, da] {
            buf.extend_from_slice(&a.octets());
        }
        buf.extend_from_slice(&fl.to_be_bytes());
        buf.extend_from_slice(&c.state.to_be_bytes());
        if with_seq {
            put_seq(&mut buf, &c.seq.unwrap_or_default());
        }
        buf[0] += 1;
        let size = buf.len() as u16;
        buf[2..4].copy_from_slice(&size.to_be_bytes());
    }
    if !buf.is_empty() {
        out.push(buf);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Decoding

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get_seq(b: &[u8]) -> SeqOpts {
    let q = |o: usize| Seq {
        init_seq: be32(b, o),
        delta: be32(b, o + 4),
        previous_delta: be32(b, o + 8),
    };
    SeqOpts {
        in_seq: q(0),
        out_seq: q(12),
    }
}

fn v4(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
}

fn v6(b: &[u8], at: usize) -> IpAddr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    IpAddr::V6(Ipv6Addr::from(o))
}

/// Decodes one received datagram (the UDP payload). `accept_syncid` 0 accepts
/// every sync id (`ipvsadm --syncid 0`). The version is told apart as
/// `ip_vs_process_message` does: version 1 when byte 5 is 1 and bytes 0, 6 and 7
/// are 0, otherwise version 0.
///
/// Structural checks only: whether the protocol is known and its state in range,
/// and whether a named persistence engine exists, are the caller's (the kernel's
/// per-entry checks in `ip_vs_proc_sync_conn` / `ip_vs_process_message_v0`).
pub fn decode(buf: &[u8], accept_syncid: u8) -> Result<Message, DecodeError> {
    if buf.len() < V0_HEADER {
        return Err(DecodeError::HeaderTooShort { len: buf.len() });
    }
    let size = be16(buf, 2);
    if size as usize != buf.len() {
        return Err(DecodeError::SizeMismatch {
            header: size,
            actual: buf.len(),
        });
    }
    let syncid = buf[1];
    if accept_syncid != 0 && syncid != accept_syncid {
        return Err(DecodeError::Syncid {
            got: syncid,
            want: accept_syncid,
        });
    }
    if buf.len() >= V1_HEADER && buf[5] == VERSION && buf[0] == 0 && buf[6] == 0 && buf[7] == 0 {
        decode_v1(buf, syncid)
    } else {
        decode_v0(buf, syncid)
    }
}

fn decode_v1(buf: &[u8], syncid: u8) -> Result<Message, DecodeError> {
    let n = buf[4];
    let mut msg = Message {
        version: 1,
        syncid,
        conns: Vec::with_capacity(n as usize),
        skipped: Vec::new(),
    };
    let mut next = V1_HEADER;
    for index in 0..n {
        let p = next;
        if p + V1_ENTRY_V4 > buf.len() {
            return Err(DecodeError::Truncated { index });
        }
        let ver_size = be16(buf, p + 2);
        let size = ver_size & SVER_MASK;
        let end = p + size as usize;
        if end > buf.len() {
            return Err(DecodeError::EntryBeyondMessage { index, size });
        }
        if ver_size >> SVER_SHIFT != 0 {
            return Err(DecodeError::EntryVersion {
                index,
                version: (ver_size >> SVER_SHIFT) as u8,
            });
        }
        // The type byte is read from the message even when the entry's size is
        // smaller than it (ip_vs_proc_sync_conn reads `s->v6.type` first).
        match v1_entry(&buf[p..end], buf[p], index)? {
            Ok(c) => msg.conns.push(c),
            Err(s) => msg.skipped.push(s),
        }
        next = p + ((size as usize + 3) & !3);
    }
    Ok(msg)
}

/// One version-1 entry, `e` exactly its `size` bytes (`ip_vs_proc_sync_conn`), `ty`
/// its type byte.
fn v1_entry(e: &[u8], ty: u8, index: u8) -> Result<Result<SyncConn, Skipped>, DecodeError> {
    let fixed = if ty & STYPE_F_INET6 != 0 {
        V1_ENTRY_V6
    } else if ty == 0 {
        V1_ENTRY_V4
    } else {
        return Err(DecodeError::EntryType { index, ty });
    };
    if fixed > e.len() {
        return Err(DecodeError::EntryTooSmall {
            index,
            size: e.len() as u16,
        });
    }
    let mut seq = None;
    let (mut pe_data, mut pe_name): (Option<&[u8]>, Option<&[u8]>) = (None, None);
    let mut p = fixed;
    while p < e.len() {
        if p + 2 > e.len() {
            return Err(DecodeError::OptionLength { index });
        }
        let (ptype, plen) = (e[p], e[p + 1] as usize);
        p += 2;
        if plen == 0 || p + plen > e.len() {
            return Err(DecodeError::OptionLength { index });
        }
        let data = &e[p..p + plen];
        match ptype & !OPT_F_PARAM {
            OPT_SEQ_DATA => {
                if plen != SEQ_OPTS || seq.is_some() {
                    return Err(DecodeError::SeqOption { index });
                }
                seq = Some(get_seq(data));
            }
            OPT_PE_DATA => {
                if plen > PEDATA_MAXLEN || pe_data.is_some() {
                    return Err(DecodeError::PeOption { index });
                }
                pe_data = Some(data);
            }
            OPT_PE_NAME => {
                if plen > PENAME_MAXLEN || pe_name.is_some() {
                    return Err(DecodeError::PeOption { index });
                }
                pe_name = Some(data);
            }
            _ if ptype & OPT_F_PARAM == 0 => return Ok(Err(Skipped::UnknownMandatoryParam(ptype))),
            _ => {} // optional and unknown: skipped
        }
        p += plen;
    }
    // `ip_vs_conn_fill_param_sync`: a name alone is ignored, data alone drops the entry.
    let pe = match (pe_data, pe_name) {
        (Some(_), None) => return Ok(Err(Skipped::PeDataWithoutName)),
        (Some(d), Some(n)) => Some(PeData {
            name: n.to_vec(),
            data: d.to_vec(),
        }),
        (None, _) => None,
    };
    let addr = if fixed == V1_ENTRY_V6 { v6 } else { v4 };
    let alen = if fixed == V1_ENTRY_V6 { 16 } else { 4 };
    Ok(Ok(SyncConn {
        protocol: e[1],
        flags: be32(e, 4),
        state: be16(e, 8),
        cport: be16(e, 10),
        vport: be16(e, 12),
        dport: be16(e, 14),
        fwmark: be32(e, 16),
        timeout: be32(e, 20),
        caddr: addr(e, 24),
        vaddr: addr(e, 24 + alen),
        daddr: addr(e, 24 + 2 * alen),
        seq,
        pe,
    }))
}

/// `ip_vs_process_message_v0`: 24-byte IPv4 entries, each followed by the
/// sequence option when its flags have [`flags::SEQ_MASK`] bits.
fn decode_v0(buf: &[u8], syncid: u8) -> Result<Message, DecodeError> {
    let n = buf[0];
    let mut msg = Message {
        version: 0,
        syncid,
        conns: Vec::with_capacity(n as usize),
        skipped: Vec::new(),
    };
    let mut p = V0_HEADER;
    for index in 0..n {
        if p + V0_ENTRY > buf.len() {
            return Err(DecodeError::Truncated { index });
        }
        let e = &buf[p..p + V0_ENTRY];
        let fl = u32::from(be16(e, 20)) & !flags::HASHED;
        let seq = if fl & flags::SEQ_MASK != 0 {
            if p + V0_ENTRY + SEQ_OPTS > buf.len() {
                return Err(DecodeError::Truncated { index });
            }
            let s = get_seq(&buf[p + V0_ENTRY..]);
            p += V0_ENTRY + SEQ_OPTS;
            Some(s)
        } else {
            p += V0_ENTRY;
            None
        };
        msg.conns.push(SyncConn {
            protocol: e[1],
            cport: be16(e, 2),
            vport: be16(e, 4),
            dport: be16(e, 6),
            caddr: v4(e, 8),
            vaddr: v4(e, 12),
            daddr: v4(e, 16),
            flags: fl,
            state: be16(e, 22),
            fwmark: 0,
            timeout: 0,
            seq,
            pe: None,
        });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests;
