//! IPv4 header (RFC 791).

use super::{Ipv4Addr, checksum};

pub mod options;
pub use options::{OptionsError, check_options};

pub const MIN_HEADER_LEN: usize = 20;

pub mod proto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const GRE: u8 = 47;
}

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// The address at `b[at..at + 4]` (callers have checked the length).
#[inline]
fn addr_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// The source and destination addresses and the protocol of a buffer that is at
/// least an option-less header long, before any other check (the classifier looks at
/// the addresses first: traffic that is not the director's is never judged).
#[inline]
pub fn peek(b: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8)> {
    let h = b.get(..MIN_HEADER_LEN)?;
    Some((addr_at(h, field::SRC), addr_at(h, field::DST), h[field::PROTOCOL]))
}

/// Why a buffer is not a usable IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    Truncated,
    Version,
    HeaderLen,
    TotalLen,
}

/// The checks every IPv4 view starts with: the fixed header in the buffer, version 4,
/// IHL >= 5. Returns the header length in bytes (not yet checked against the buffer).
fn version_and_ihl(b: &[u8]) -> Result<usize, Ipv4Error> {
    if b.len() < MIN_HEADER_LEN {
        return Err(Ipv4Error::Truncated);
    }
    if b[field::VER_IHL] >> 4 != 4 {
        return Err(Ipv4Error::Version);
    }
    let hl = ((b[field::VER_IHL] & 0x0f) as usize) * 4;
    if hl < MIN_HEADER_LEN {
        return Err(Ipv4Error::HeaderLen);
    }
    Ok(hl)
}

/// A checked view of an IPv4 packet: version 4, IHL >= 5, the header and the
/// total length fit in the buffer (the buffer may carry trailing padding).
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buf: T) -> Result<Self, Ipv4Error> {
        let b = buf.as_ref();
        let hl = version_and_ihl(b)?;
        let tl = u16::from_be_bytes([b[field::LEN], b[field::LEN + 1]]) as usize;
        if tl < hl || tl > b.len() {
            return Err(Ipv4Error::TotalLen);
        }
        if hl > b.len() {
            return Err(Ipv4Error::Truncated);
        }
        Ok(Packet { buf })
    }
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }
    fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.b()[at], self.b()[at + 1]])
    }
    pub fn header_len(&self) -> usize {
        ((self.b()[field::VER_IHL] & 0x0f) as usize) * 4
    }
    pub fn total_len(&self) -> usize {
        self.u16_at(field::LEN) as usize
    }
    pub fn tos(&self) -> u8 {
        self.b()[field::TOS]
    }
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & 0x4000 != 0
    }
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & 0x2000 != 0
    }
    pub fn frag_offset(&self) -> u16 {
        self.u16_at(field::FLG_OFF) & 0x1fff
    }
    /// The flags and fragment offset word as a whole.
    pub fn flags_frag(&self) -> u16 {
        self.u16_at(field::FLG_OFF)
    }
    /// A fragment of a larger datagram (first or later).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }
    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }
    pub fn src(&self) -> Ipv4Addr {
        addr_at(self.b(), field::SRC)
    }
    pub fn dst(&self) -> Ipv4Addr {
        addr_at(self.b(), field::DST)
    }
    pub fn verify_checksum(&self) -> bool {
        let h = &self.b()[..self.header_len()];
        match <&[u8; 20]>::try_from(h) {
            Ok(h) => checksum::header20_ok(h),
            Err(_) => checksum::checksum(h) == 0,
        }
    }
    /// The L4 payload, bounded by the total length.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
    /// Decrement the TTL and patch the header checksum incrementally.
    pub fn decrement_ttl(&mut self) {
        let b = self.bm();
        let old = u16::from_be_bytes([b[field::TTL], b[field::PROTOCOL]]);
        b[field::TTL] = b[field::TTL].wrapping_sub(1);
        let new = u16::from_be_bytes([b[field::TTL], b[field::PROTOCOL]]);
        let c = u16::from_be_bytes([b[field::CHECKSUM], b[field::CHECKSUM + 1]]);
        let c = checksum::update16(c, old, new);
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
    /// Replace the destination address, patching the header checksum. Returns the old one.
    pub fn set_dst_incremental(&mut self, dst: Ipv4Addr) -> Ipv4Addr {
        self.set_addr_incremental(field::DST, dst)
    }
    /// Replace the source address, patching the header checksum. Returns the old one.
    pub fn set_src_incremental(&mut self, src: Ipv4Addr) -> Ipv4Addr {
        self.set_addr_incremental(field::SRC, src)
    }
    fn set_addr_incremental(&mut self, at: usize, new: Ipv4Addr) -> Ipv4Addr {
        let b = self.bm();
        let old = addr_at(b, at);
        b[at..at + 4].copy_from_slice(&new.octets());
        let c = u16::from_be_bytes([b[field::CHECKSUM], b[field::CHECKSUM + 1]]);
        let c = checksum::update32(c, old.to_bits(), new.to_bits());
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
        old
    }
    /// Recompute the header checksum in full (after setters that leave it stale).
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.bm();
        b[field::CHECKSUM..field::CHECKSUM + 2].fill(0);
        let c = checksum::checksum(&b[..hl]);
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), self.total_len());
        &mut self.bm()[h..t]
    }
}

/// A checked view of an IPv4 header on its own: version 4, IHL >= 5 and the header
/// (options included) in the buffer. Unlike [`Packet`] the total length is not checked
/// against the buffer, so there is no `payload` bounded by it: [`Header::rest`] is
/// what the buffer holds after the header. For a header quoted in an ICMP error
/// (RFC 792: the header and the first 8 bytes of the payload, or more) and for the
/// header of a fragment or segment being built.
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub fn new_checked(buf: T) -> Result<Self, Ipv4Error> {
        let b = buf.as_ref();
        let hl = version_and_ihl(b)?;
        if hl > b.len() {
            return Err(Ipv4Error::Truncated);
        }
        Ok(Header { buf })
    }
    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }
    pub fn header_len(&self) -> usize {
        ((self.b()[field::VER_IHL] & 0x0f) as usize) * 4
    }
    /// The total length the header declares (the buffer may hold less).
    pub fn total_len(&self) -> usize {
        u16::from_be_bytes([self.b()[field::LEN], self.b()[field::LEN + 1]]) as usize
    }
    pub fn dont_frag(&self) -> bool {
        self.b()[field::FLG_OFF] & 0x40 != 0
    }
    /// The flags and fragment offset word as a whole.
    pub fn flags_frag(&self) -> u16 {
        u16::from_be_bytes([self.b()[field::FLG_OFF], self.b()[field::FLG_OFF + 1]])
    }
    pub fn frag_offset(&self) -> u16 {
        self.flags_frag() & 0x1fff
    }
    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }
    pub fn src(&self) -> Ipv4Addr {
        addr_at(self.b(), field::SRC)
    }
    pub fn dst(&self) -> Ipv4Addr {
        addr_at(self.b(), field::DST)
    }
    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.b()[..self.header_len()]
    }
    /// What the buffer holds after the header.
    pub fn rest(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Set the source address (the header checksum is left stale: see
    /// [`Self::fill_checksum`]).
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::SRC..field::SRC + 4].copy_from_slice(&a.octets());
    }
    /// Set the destination address (the header checksum is left stale).
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::DST..field::DST + 4].copy_from_slice(&a.octets());
    }
    /// Recompute the header checksum in full.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buf.as_mut();
        b[field::CHECKSUM..field::CHECKSUM + 2].fill(0);
        let c = checksum::checksum(&b[..hl]);
        b[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
    /// Set the total length (the header checksum is left stale).
    pub fn set_total_len(&mut self, len: u16) {
        self.buf.as_mut()[field::LEN..field::LEN + 2].copy_from_slice(&len.to_be_bytes());
    }
    pub fn set_ident(&mut self, ident: u16) {
        self.buf.as_mut()[field::IDENT..field::IDENT + 2].copy_from_slice(&ident.to_be_bytes());
    }
    /// Set the flags and fragment offset word (reserved, DF, MF, offset in 8-byte
    /// units) as a whole (the header checksum is left stale).
    pub fn set_flags_frag(&mut self, word: u16) {
        self.buf.as_mut()[field::FLG_OFF..field::FLG_OFF + 2].copy_from_slice(&word.to_be_bytes());
    }
    /// What the buffer holds after the header, writable.
    pub fn rest_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buf.as_mut()[hl..]
    }
}

/// The fields of a new option-less IPv4 header.
#[derive(Debug, Clone, Copy)]
pub struct Repr {
    pub tos: u8,
    pub total_len: u16,
    pub ident: u16,
    pub dont_frag: bool,
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Repr {
    /// Write a 20-byte header with a correct checksum into `buf[..20]`.
    pub fn emit(&self, buf: &mut [u8]) {
        let h = &mut buf[..MIN_HEADER_LEN];
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&self.total_len.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let fo: u16 = if self.dont_frag { 0x4000 } else { 0 };
        h[6..8].copy_from_slice(&fo.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[10..12].copy_from_slice(&[0, 0]);
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv_packet_a() -> Vec<u8> {
        // TV 10.13 packet A header (+ 20 bytes of TCP, zeroed).
        let mut v = vec![0u8; 40];
        Repr {
            tos: 0,
            total_len: 40,
            ident: 0x1234,
            dont_frag: true,
            ttl: 64,
            protocol: proto::TCP,
            src: Ipv4Addr::new(192, 0, 2, 10),
            dst: Ipv4Addr::new(203, 0, 113, 5),
        }
        .emit(&mut v);
        v
    }

    #[test]
    fn emit_matches_vector_and_parses() {
        let v = tv_packet_a();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.checksum(), 0x2A8C);
        assert!(p.verify_checksum());
        assert!(p.dont_frag() && !p.is_fragment());
        assert_eq!(p.payload().len(), 20);
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut v = tv_packet_a();
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        p.set_dst_incremental(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.checksum(), 0x5D90);
    }

    #[test]
    fn header_view_reads_a_truncated_quote_and_rewrites_it() {
        let v = tv_packet_a();
        // An ICMP error quotes the header and 8 bytes: the total length (40) is more
        // than the quote holds, which Packet refuses and Header accepts.
        let mut q = v[..28].to_vec();
        assert_eq!(Packet::new_checked(&q[..]).unwrap_err(), Ipv4Error::TotalLen);
        let mut h = Header::new_checked(&mut q[..]).unwrap();
        assert_eq!((h.header_len(), h.total_len(), h.protocol()), (20, 40, proto::TCP));
        assert_eq!(
            (h.src(), h.dst()),
            (Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(203, 0, 113, 5))
        );
        assert!(h.dont_frag() && h.frag_offset() == 0 && h.rest().len() == 8);
        h.set_dst(Ipv4Addr::new(10, 0, 0, 2));
        h.set_total_len(28);
        h.set_ident(7);
        h.set_flags_frag(0x2000 | 3);
        h.fill_checksum();
        let p = Packet::new_checked(&q[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(
            (p.dst(), p.ident(), p.more_frags(), p.frag_offset()),
            (Ipv4Addr::new(10, 0, 0, 2), 7, true, 3)
        );
        assert_eq!(
            peek(&q),
            Some((Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(10, 0, 0, 2), proto::TCP))
        );
        assert_eq!(peek(&q[..19]), None);
        assert_eq!(Header::new_checked(&v[..19]).unwrap_err(), Ipv4Error::Truncated);
        let mut w = v.clone();
        w[0] = 0x46; // IHL 24 > a 20-byte buffer
        assert_eq!(Header::new_checked(&w[..20]).unwrap_err(), Ipv4Error::Truncated);
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let v = tv_packet_a();
        assert_eq!(Packet::new_checked(&v[..19]).unwrap_err(), Ipv4Error::Truncated);
        let mut w = v.clone();
        w[0] = 0x44;
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Ipv4Error::HeaderLen);
        let mut w = v.clone();
        w[0] = 0x65;
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Ipv4Error::Version);
        let mut w = v.clone();
        w[3] = 41;
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Ipv4Error::TotalLen);
        let mut w = v.clone();
        w[3] = 19;
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Ipv4Error::TotalLen);
        let mut w = v.clone();
        w[0] = 0x4f; // IHL 60 > total length 40
        assert_eq!(Packet::new_checked(&w[..]).unwrap_err(), Ipv4Error::TotalLen);
    }
}
