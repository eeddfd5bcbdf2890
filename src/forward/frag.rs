//! IPv4 fragmentation on output (RFC 791 §3.2, Linux `ip_fragment`), for DR and NAT.
//!
//! The RX sockets join their fanout group with PACKET_FANOUT_FLAG_DEFRAG, so the
//! kernel reassembles fragments before uvs sees them, as IPVS sees reassembled
//! packets after the kernel's defragmentation. A reassembled datagram can be larger
//! than the outgoing MTU; the kernel would fragment it again on output after IPVS,
//! and so does uvs: a packet without DF that does not fit goes out as fragments. (A
//! DF packet that does not fit never gets here: `pre_xmit_checks` answers it with
//! fragmentation-needed.)
//!
//! Every fragment carries the whole header; later fragments keep only the options
//! marked "copied", the others are overwritten with NOPs so the header length stays
//! the same (Linux `ip_options_fragment`). Payload chunks are multiples of 8 bytes.
//! TUN fragments its outer header itself (`forward::tun`), which has no options.
//!
//! This is the cold path: the whole edited packet is built once in a stack scratch
//! buffer, then cut; nothing is allocated.

use crate::dataplane::{DropReason, Emit, Iface, Verdict};
use crate::wire::{MacAddr, ethernet, ipv4};

/// Largest IPv4 packet.
const MAX_PACKET: usize = 65535;

/// Copy `ip` to a scratch buffer, decrement its TTL, let `edit` rewrite it in place,
/// then send it to `dst_mac` on `oif` as fragments of at most `oif.mtu` bytes.
/// `ip` must be a checked IPv4 packet of exactly its total length.
#[cold]
#[inline(never)]
pub fn emit_fragmented<E: Emit>(
    out: &mut E,
    oif: &Iface,
    dst_mac: MacAddr,
    ip: &[u8],
    edit: impl FnOnce(&mut [u8]),
) -> Verdict {
    let mut scratch = [0u8; MAX_PACKET];
    let Some(whole) = scratch.get_mut(..ip.len()) else {
        return Verdict::Drop(DropReason::BadIpTotalLen);
    };
    whole.copy_from_slice(ip);
    match ipv4::Packet::new_checked(&mut *whole) {
        Ok(mut p) => p.decrement_ttl(),
        Err(_) => return Verdict::Drop(DropReason::TruncatedIpv4),
    }
    edit(whole);
    // Only an aggregate gets here with DF (pre_xmit_checks refused the others).
    let Ok(p) = ipv4::Header::new_checked(&*whole) else {
        return Verdict::Drop(DropReason::TruncatedIpv4);
    };
    if p.dont_frag() && p.protocol() == ipv4::proto::TCP {
        return segment_tcp(out, oif, dst_mac, whole);
    }
    fragment(out, oif, dst_mac, whole)
}

/// Is `ip` a segmentation-offload aggregate: a TCP packet larger than the MTU of the
/// interface it arrived on, with an offloaded checksum? TSO of a sender on the same
/// host (veth, containers) hands such packets to AF_PACKET whole, before any NIC
/// cuts them. The kernel skips IPVS's MTU check for GSO packets and segments them on
/// output; uvs does the same with [`segment_tcp`].
///
/// GRO aggregates built by a receiving NIC driver arrive with a verified (not an
/// offloaded) checksum and cannot be told from an oversized frame without
/// PACKET_VNET_HDR: they get fragmentation-needed. Turn GRO and LRO off on the
/// director's interfaces (`ethtool -K IFACE gro off lro off`), as for any
/// AF_PACKET forwarder.
pub fn is_aggregate(rx_mtu: u32, csum_partial: bool, ip: &[u8]) -> bool {
    csum_partial
        && ip.len() > rx_mtu as usize
        && ip.len() > ipv4::MIN_HEADER_LEN
        && ipv4::peek(ip).is_some_and(|(_, _, proto)| proto == ipv4::proto::TCP)
}

/// Software TCP segmentation (GSO) of the edited aggregate `ip`: segments of at most
/// `oif.mtu` bytes with consecutive sequence numbers and IP IDs; FIN and PSH only on
/// the last, CWR only on the first; every checksum computed in full.
pub fn segment_tcp<E: Emit>(out: &mut E, oif: &Iface, dst_mac: MacAddr, ip: &[u8]) -> Verdict {
    use crate::wire::l4::{self, tcp_flags};
    let Ok(p) = ipv4::Packet::new_checked(ip) else {
        return Verdict::Drop(DropReason::TruncatedIpv4);
    };
    let (hl, src, dst, id0) = (p.header_len(), p.src(), p.dst(), p.ident());
    let tcp = p.payload();
    let Some(th) = l4::Header::new_checked(ipv4::proto::TCP, tcp) else {
        return Verdict::Drop(DropReason::TruncatedL4);
    };
    let thl = th.header_len();
    if thl < l4::TCP_MIN_LEN || thl > tcp.len() {
        return Verdict::Drop(DropReason::TruncatedL4);
    }
    let mtu = oif.mtu.get() as usize;
    if mtu < hl + thl + 8 {
        return Verdict::Drop(DropReason::FragNeeded);
    }
    let mss = mtu - hl - thl;
    let payload = &tcp[thl..];
    let (seq0, flags) = (th.seq(), th.flags());
    let mut off = 0;
    let mut i: u16 = 0;
    loop {
        let n = mss.min(payload.len() - off);
        let last = off + n == payload.len();
        let total = hl + thl + n;
        let len = ethernet::HEADER_LEN + total;
        let b = match super::ipv4_slot(out, oif, dst_mac, total) {
            Ok(b) => b,
            Err(v) => return v,
        };
        b[..hl].copy_from_slice(&ip[..hl]);
        let t = &mut b[hl..];
        t[..thl].copy_from_slice(&tcp[..thl]);
        t[thl..].copy_from_slice(&payload[off..off + n]);
        let mut f = flags;
        if !last {
            f &= !(tcp_flags::FIN | tcp_flags::PSH);
        }
        if i > 0 {
            f &= !0x80; // CWR
        }
        if let Some(mut th) = l4::Header::new_checked(ipv4::proto::TCP, &mut *t) {
            th.set_seq(seq0.wrapping_add(off as u32));
            th.set_flags(f);
            th.fill_checksum(src, dst);
        }
        if let Ok(mut h) = ipv4::Header::new_checked(&mut *b) {
            h.set_total_len(total as u16);
            h.set_ident(id0.wrapping_add(i));
            h.fill_checksum();
        }
        out.commit(oif.ifindex, len);
        off += n;
        i = i.wrapping_add(1);
        if last {
            return Verdict::Forwarded;
        }
    }
}

/// Send the IPv4 packet `ip` (already edited) as fragments that fit `oif.mtu`.
pub fn fragment<E: Emit>(out: &mut E, oif: &Iface, dst_mac: MacAddr, ip: &[u8]) -> Verdict {
    let Ok(p) = ipv4::Packet::new_checked(ip) else {
        return Verdict::Drop(DropReason::TruncatedIpv4);
    };
    let (hl, tl) = (p.header_len(), p.total_len());
    let mtu = oif.mtu.get() as usize;
    // Room for the header and at least 8 bytes of data per fragment.
    if mtu < hl + 8 || p.dont_frag() {
        return Verdict::Drop(DropReason::FragNeeded);
    }
    let chunk_max = (mtu - hl) & !7;
    let payload = &ip[hl..tl];
    // The original packet may itself be a fragment: offsets add up and the last piece
    // keeps its MF bit.
    let (orig_off, orig_mf) = (usize::from(p.frag_offset()) * 8, p.more_frags());
    let flags_keep = p.flags_frag() & 0x8000; // reserved bit
    let mut header = [0u8; 60];
    header[..hl].copy_from_slice(&ip[..hl]);
    let mut off = 0;
    while off < payload.len() {
        let n = chunk_max.min(payload.len() - off);
        let last = off + n == payload.len();
        let total = hl + n;
        let len = ethernet::HEADER_LEN + total;
        let b = match super::ipv4_slot(out, oif, dst_mac, total) {
            Ok(b) => b,
            Err(v) => return v,
        };
        b[..hl].copy_from_slice(&header[..hl]);
        let mf = if !last || orig_mf { 0x2000 } else { 0 };
        let fo = flags_keep | mf | (((orig_off + off) / 8) as u16 & 0x1fff);
        if let Ok(mut h) = ipv4::Header::new_checked(&mut *b) {
            h.set_total_len(total as u16);
            h.set_flags_frag(fo);
            h.fill_checksum();
        }
        b[hl..].copy_from_slice(&payload[off..off + n]);
        out.commit(oif.ifindex, len);
        if off == 0 {
            nop_uncopied_options(&mut header[ipv4::MIN_HEADER_LEN..hl]);
        }
        off += n;
    }
    Verdict::Forwarded
}

/// Overwrite every option without the "copied" flag with NOPs (`ip_options_fragment`).
fn nop_uncopied_options(opts: &mut [u8]) {
    const EOL: u8 = 0;
    const NOP: u8 = 1;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            EOL => return,
            NOP => i += 1,
            t => {
                let l = opts.get(i + 1).map_or(0, |l| usize::from(*l));
                if l < 2 || i + l > opts.len() {
                    // Malformed (classification drops such packets): blank the rest.
                    opts[i..].fill(NOP);
                    return;
                }
                if t & 0x80 == 0 {
                    opts[i..i + l].fill(NOP);
                }
                i += l;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fixture::VecEmit;
    use std::net::Ipv4Addr;

    fn iface(mtu: u32) -> Iface {
        Iface {
            ifindex: 2,
            name: "eth0".into(),
            mac: [2, 0, 0, 0, 0, 2],
            addrs: vec![Ipv4Addr::new(10, 0, 0, 2)],
            mtu: mtu.into(),
        }
    }

    /// A UDP packet of `payload` bytes with `opts` (a multiple of 4) as IP options.
    fn packet(payload: usize, opts: &[u8]) -> Vec<u8> {
        let hl = 20 + opts.len();
        let tl = hl + 8 + payload;
        let mut v = vec![0u8; tl];
        ipv4::Repr {
            tos: 0,
            total_len: tl as u16,
            ident: 0x4242,
            dont_frag: false,
            ttl: 64,
            protocol: 17,
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(10, 0, 0, 100),
        }
        .emit(&mut v);
        v[0] = 0x40 | (hl / 4) as u8;
        v[20..hl].copy_from_slice(opts);
        ipv4::Header::new_checked(&mut v[..]).unwrap().fill_checksum();
        for (i, b) in v[hl..].iter_mut().enumerate() {
            *b = i as u8;
        }
        v
    }

    /// Reassemble fragments (frames) into the payload; checks headers on the way.
    fn reassemble(frames: &[(u32, Vec<u8>)], mtu: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut data = Vec::new();
        let mut headers = Vec::new();
        let mut expect_off = 0;
        for (i, (_, f)) in frames.iter().enumerate() {
            assert!(f.len() - 14 <= mtu, "fragment {i} fits the MTU");
            let p = ipv4::Packet::new_checked(&f[14..]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!(p.total_len(), f.len() - 14);
            assert_eq!(p.ident(), 0x4242);
            assert_eq!(usize::from(p.frag_offset()) * 8, expect_off);
            assert_eq!(p.more_frags(), i + 1 < frames.len());
            let pl = p.payload();
            if i + 1 < frames.len() {
                assert_eq!(pl.len() % 8, 0);
            }
            expect_off += pl.len();
            data.extend_from_slice(pl);
            headers.push(f[14..14 + p.header_len()].to_vec());
        }
        (data, headers)
    }

    #[test]
    fn splits_on_8_byte_boundaries_and_reassembles() {
        let ip = packet(3000, &[]);
        let mut out = VecEmit::keeping();
        let v = emit_fragmented(&mut out, &iface(1500), [9; 6], &ip, |_| {});
        assert_eq!(v, Verdict::Forwarded);
        assert_eq!(out.frames.len(), 3);
        let (data, _) = reassemble(&out.frames, 1500);
        assert_eq!(data, ip[20..], "payload intact");
        let first = ipv4::Packet::new_checked(&out.frames[0].1[14..]).unwrap();
        assert_eq!(first.total_len(), 1500);
        assert_eq!(first.ttl(), 63, "TTL decremented once");
    }

    #[test]
    fn later_fragments_keep_only_copied_options() {
        // Record route (7, not copied, 7 bytes) + NOP; then a copied option 0x94
        // (router alert, 4 bytes).
        let opts = [7, 7, 4, 0, 0, 0, 0, 1, 0x94, 4, 0, 0];
        let ip = packet(2000, &opts);
        let mut out = VecEmit::keeping();
        assert_eq!(fragment(&mut out, &iface(1000), [9; 6], &ip), Verdict::Forwarded);
        let (data, headers) = reassemble(&out.frames, 1000);
        assert_eq!(data, ip[32..]);
        assert_eq!(&headers[0][20..], &opts, "first fragment: every option");
        for h in &headers[1..] {
            assert_eq!(h.len(), 32, "same header length");
            assert_eq!(&h[20..], &[1, 1, 1, 1, 1, 1, 1, 1, 0x94, 4, 0, 0]);
        }
    }

    #[test]
    fn refuses_df_and_tiny_mtus() {
        let mut ip = packet(100, &[]);
        let mut out = VecEmit::keeping();
        assert_eq!(
            fragment(&mut out, &iface(20), [9; 6], &ip),
            Verdict::Drop(DropReason::FragNeeded)
        );
        ip[6] |= 0x40;
        assert_eq!(
            fragment(&mut out, &iface(60), [9; 6], &ip),
            Verdict::Drop(DropReason::FragNeeded)
        );
        assert!(out.frames.is_empty());
    }

    #[test]
    fn aggregates_are_segmented_with_valid_checksums() {
        use crate::wire::l4;
        // A 5000-byte TCP aggregate with DF, PSH|ACK|FIN, seq 1000.
        let n = 5000;
        let mut ip = vec![0u8; 40 + n];
        ipv4::Repr {
            tos: 0,
            total_len: (40 + n) as u16,
            ident: 7,
            dont_frag: true,
            ttl: 64,
            protocol: 6,
            src: Ipv4Addr::new(10, 0, 0, 11),
            dst: Ipv4Addr::new(192, 0, 2, 10),
        }
        .emit(&mut ip);
        ip[24..28].copy_from_slice(&1000u32.to_be_bytes());
        ip[32] = 5 << 4;
        ip[33] = 0x19;
        for (i, b) in ip[40..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        assert!(is_aggregate(1500, true, &ip) && !is_aggregate(1500, false, &ip));
        let mut out = VecEmit::keeping();
        assert_eq!(
            emit_fragmented(&mut out, &iface(1500), [9; 6], &ip, |_| {}),
            Verdict::Forwarded
        );
        assert_eq!(out.frames.len(), 4, "1460 * 3 + 620");
        let mut data = Vec::new();
        for (k, (_, f)) in out.frames.iter().enumerate() {
            let p = ipv4::Packet::new_checked(&f[14..]).unwrap();
            assert!(p.verify_checksum() && p.dont_frag() && !p.is_fragment());
            assert!(f.len() - 14 <= 1500);
            assert_eq!(p.ident(), 7 + k as u16);
            let t = p.payload();
            assert_eq!(u32::from_be_bytes([t[4], t[5], t[6], t[7]]), 1000 + data.len() as u32);
            let last = k == 3;
            assert_eq!(t[13], if last { 0x19 } else { 0x10 }, "FIN/PSH only on the last");
            assert_eq!(
                l4::full_checksum(6, p.src(), p.dst(), t),
                u16::from_be_bytes([t[16], t[17]])
            );
            data.extend_from_slice(&t[20..]);
        }
        assert_eq!(data, ip[40..]);
    }
}
