//! TUN (tunnelling, `-i`, IPVS's TUNNEL): the client's packet, TTL decremented, goes
//! unchanged inside a new IPv4 header from the director's address on the outgoing
//! interface to the real server (`ip_vs_xmit.c: ip_vs_tunnel_xmit`): directly (IPIP, protocol 4, the default),
//! behind a UDP and a GUE header (`--tun-type gue --tun-port N`, protocol 17), or
//! behind a GRE header (`--tun-type gre`, protocol 47), as IPVS builds them. The outer
//! TTL, TOS and DF follow the inner packet; the outer ID is 0 with DF, else a
//! per-worker counter. A DF packet that does not fit (inner + outer headers > MTU)
//! gets ICMP fragmentation-needed with the MTU less the outer headers back to the
//! client; without DF the outer packet is fragmented here, as the kernel would on
//! output.

use super::{RxCtx, complete_l4_checksum, send_icmp};
use crate::dataplane::{DropReason, Emit, Iface, Verdict};
use crate::service::{Dest, TunnelCsum, TunnelType};
use crate::wire::tunnel::{GRE_CSUM, GRE_PROTO_IPV4, GUE_HEADER};
use crate::wire::{checksum, ethernet, icmp, ipv4};
use std::net::Ipv4Addr;

/// Outer IPv4 header.
const OUTER_IP: usize = ipv4::MIN_HEADER_LEN;

const UDP_HEADER: usize = 8;

/// The header between the outer IPv4 header and the client's packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encap {
    pub kind: TunnelType,
    pub csum: TunnelCsum,
    /// GUE's UDP destination port.
    pub port: u16,
}

impl Encap {
    pub fn of(dest: &Dest) -> Encap {
        let (kind, csum, port) = dest.tunnel();
        Encap { kind, csum, port }
    }

    /// The outer IPv4 header's protocol.
    pub fn protocol(&self) -> u8 {
        match self.kind {
            TunnelType::Ipip => ipv4::proto::IPIP,
            TunnelType::Gue => ipv4::proto::UDP,
            TunnelType::Gre => ipv4::proto::GRE,
        }
    }

    /// Bytes between the outer IPv4 header and the inner packet. GUE's remote
    /// checksum offload option is never needed: uvs completes the inner checksum
    /// itself, and IPVS adds the option only for a partial one.
    pub fn header_len(&self) -> usize {
        match (self.kind, self.csum) {
            (TunnelType::Ipip, _) => 0,
            (TunnelType::Gue, _) => UDP_HEADER + GUE_HEADER,
            (TunnelType::Gre, TunnelCsum::Csum) => 8,
            (TunnelType::Gre, _) => 4,
        }
    }

    /// Outer headers in all: what the path MTU loses.
    pub fn overhead(&self) -> usize {
        OUTER_IP + self.header_len()
    }

    /// Fill in the header at the front of `payload` (the outer IPv4 packet's payload,
    /// the inner packet already at `payload[self.header_len()..]`), checksums included.
    pub fn write(&self, payload: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
        match self.kind {
            TunnelType::Ipip => {}
            TunnelType::Gre => {
                let flags = if self.csum == TunnelCsum::Csum { GRE_CSUM } else { 0 };
                payload[0..2].copy_from_slice(&flags.to_be_bytes());
                payload[2..4].copy_from_slice(&GRE_PROTO_IPV4.to_be_bytes());
                if flags != 0 {
                    payload[4..8].fill(0);
                    let c = checksum::checksum(payload);
                    payload[4..6].copy_from_slice(&c.to_be_bytes());
                }
            }
            TunnelType::Gue => {
                let len = payload.len() as u16;
                let sport = flow_port(&payload[UDP_HEADER + GUE_HEADER..]);
                payload[0..2].copy_from_slice(&sport.to_be_bytes());
                payload[2..4].copy_from_slice(&self.port.to_be_bytes());
                payload[4..6].copy_from_slice(&len.to_be_bytes());
                payload[6..8].fill(0);
                payload[8..12].copy_from_slice(&[0, ipv4::proto::IPIP, 0, 0]);
                // IPVS checksums the outer UDP with --tun-csum and --tun-remcsum.
                if self.csum != TunnelCsum::NoCsum {
                    let acc = checksum::pseudo_header(src, dst, ipv4::proto::UDP, len);
                    let c = match checksum::finish(checksum::sum(acc, payload)) {
                        0 => 0xffff,
                        c => c,
                    };
                    payload[6..8].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
    }
}

/// GUE's UDP source port: a hash of the inner flow (addresses, protocol, ports) in
/// 32768..61000, Linux's default ephemeral range, as `udp_flow_src_port` does, so that
/// ECMP on the way keeps a flow on one path and spreads flows.
fn flow_port(inner: &[u8]) -> u16 {
    let Ok(p) = ipv4::Packet::new_checked(inner) else {
        return 32768;
    };
    let hl = p.header_len();
    let ports = if matches!(p.protocol(), ipv4::proto::TCP | ipv4::proto::UDP) && !p.is_fragment() {
        inner
            .get(hl..hl + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    } else {
        0
    };
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for w in [p.src().to_bits(), p.dst().to_bits(), p.protocol() as u32, ports] {
        h = (h ^ w as u64).wrapping_mul(0x0100_0000_01b3);
        h ^= h >> 29;
    }
    let h = (h >> 32) as u32;
    (32768 + ((h as u64 * (61000 - 32768)) >> 32)) as u16
}

pub fn transmit<E: Emit>(
    ifaces: &[Iface],
    rx: &RxCtx<'_>,
    dest: &Dest,
    ip: &[u8],
    ident: &mut u16,
    now_ms: u64,
    out: &mut E,
) -> Verdict {
    let ifx = dest.out_ifindex();
    let Some(oif) = crate::dataplane::iface(ifaces, ifx) else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    let Some(mac) = dest.mac() else {
        return Verdict::Drop(DropReason::NeighUnresolved);
    };
    let Some(rip) = dest.v4() else {
        return Verdict::Drop(DropReason::MethodUnsupported);
    };
    let Ok(inner) = ipv4::Packet::new_checked(ip) else {
        return Verdict::Drop(DropReason::TruncatedIpv4);
    };
    if inner.ttl() <= 1 {
        send_icmp(rx, ip, icmp::Message::TTL_EXCEEDED, out);
        return Verdict::Drop(DropReason::TtlExceeded);
    }
    let encap = Encap::of(dest);
    let overhead = encap.overhead();
    let mtu = dest.path_mtu(oif.mtu.get(), now_ms) as usize;
    if mtu < 68 + overhead {
        return Verdict::Drop(DropReason::FragNeeded);
    }
    let df = inner.dont_frag();
    let outer_len = ip.len() + overhead;
    if outer_len > 65535 {
        // No IPv4 packet can carry it (a reassembled datagram near 64 KiB).
        return Verdict::Drop(DropReason::FragNeeded);
    }
    if outer_len > mtu && df {
        let msg = icmp::Message {
            icmp_type: icmp::TYPE_DEST_UNREACH,
            code: icmp::CODE_FRAG_NEEDED,
            rest: (mtu - overhead) as u32,
        };
        send_icmp(rx, ip, msg, out);
        return Verdict::Drop(DropReason::FragNeeded);
    }
    // Inner TOS; an inner CE mark is carried as ECT(0) outside (RFC 6040 normal mode).
    let tos = if inner.tos() & 3 == 3 {
        (inner.tos() & !3) | 2
    } else {
        inner.tos()
    };
    let src = oif.addrs.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let ttl = inner.ttl() - 1;
    let id = if df {
        0
    } else {
        *ident = ident.wrapping_add(1);
        *ident
    };
    // The outer packet's payload: the encapsulation header, then the inner packet.
    // Built in place when it fits; fragments copy their piece of it.
    let payload_len = outer_len - OUTER_IP;
    let max_payload = if outer_len <= mtu {
        payload_len
    } else {
        (mtu - OUTER_IP) & !7
    };
    let (src_ip, dst_ip) = (src, rip);
    let mut off = 0usize;
    while off < payload_len {
        let chunk = max_payload.min(payload_len - off);
        let more = off + chunk < payload_len;
        let total = OUTER_IP + chunk;
        let len = ethernet::HEADER_LEN + total;
        let b = match super::ipv4_slot(out, oif, mac, total) {
            Ok(b) => b,
            Err(v) => return v,
        };
        ipv4::Repr {
            tos,
            total_len: total as u16,
            ident: id,
            dont_frag: df,
            ttl,
            protocol: encap.protocol(),
            src: src_ip,
            dst: dst_ip,
        }
        .emit(b);
        if more || off > 0 {
            let fo = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
            if let Ok(mut h) = ipv4::Header::new_checked(&mut *b) {
                h.set_flags_frag(fo);
                h.fill_checksum();
            }
        }
        // The inner packet with its TTL decremented (and its L4 checksum completed if
        // offload left it partial), behind the encapsulation header — computed on a
        // scratch copy for fragments.
        if off == 0 && !more {
            let body = &mut b[OUTER_IP..];
            body[encap.header_len()..].copy_from_slice(ip);
            fix_inner(&mut body[encap.header_len()..], rx.csum_partial);
            encap.write(body, src_ip, dst_ip);
        } else {
            fragment_body(&encap, ip, off, &mut b[OUTER_IP..], rx.csum_partial, src_ip, dst_ip);
        }
        out.commit(ifx, len);
        off += chunk;
    }
    Verdict::Forwarded
}

/// The slice of the outer payload (encapsulation header and fixed-up inner packet)
/// that fragment `off..off+dst.len()` carries.
#[cold]
#[inline(never)]
fn fragment_body(
    encap: &Encap,
    ip: &[u8],
    off: usize,
    dst: &mut [u8],
    csum_partial: bool,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
) {
    let mut buf = [0u8; 65536 + 16];
    let scratch = &mut buf[..encap.header_len() + ip.len()];
    scratch[encap.header_len()..].copy_from_slice(ip);
    fix_inner(&mut scratch[encap.header_len()..], csum_partial);
    encap.write(scratch, src_ip, dst_ip);
    let n = dst.len();
    dst.copy_from_slice(&scratch[off..off + n]);
}

fn fix_inner(ip: &mut [u8], csum_partial: bool) {
    if let Ok(mut p) = ipv4::Packet::new_checked(&mut *ip) {
        p.decrement_ttl();
    }
    if csum_partial {
        complete_l4_checksum(ip);
    }
}

/// Tests elsewhere (decapsulation, the lab's decoder) check against what the director
/// builds: `inner` (an IPv4 packet) encapsulated by `e` from `src` to `dst` (TTL 63,
/// DF), outer IPv4 header included.
#[cfg(test)]
pub fn encapsulated(e: &Encap, src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    let total = e.overhead() + inner.len();
    let mut pkt = vec![0u8; total];
    ipv4::Repr {
        tos: 0,
        total_len: total as u16,
        ident: 0,
        dont_frag: true,
        ttl: 63,
        protocol: e.protocol(),
        src,
        dst,
    }
    .emit(&mut pkt);
    pkt[OUTER_IP + e.header_len()..].copy_from_slice(inner);
    e.write(&mut pkt[OUTER_IP..], src, dst);
    pkt
}
