//! TUN (IPIP tunnelling, `-i`, IPVS's TUNNEL): the client's packet, TTL decremented,
//! goes unchanged inside a new IPv4 header (protocol 4) from the director's address
//! on the outgoing interface to the real server (spec §6.4). The outer TTL, TOS and DF
//! follow the inner packet; the outer ID is 0 with DF, else a per-worker counter.
//! A DF packet that does not fit (inner + 20 > MTU) gets ICMP fragmentation-needed with
//! MTU - 20 back to the client; without DF the outer packet is fragmented here, as the
//! kernel would on output.

use super::{RxCtx, complete_l4_checksum, send_icmp};
use crate::pipeline::{DropReason, Emit, Shared, Verdict};
use crate::service::Dest;
use crate::wire::{ethernet, icmp, ipv4};

/// Outer header overhead of IPIP.
pub const OVERHEAD: usize = ipv4::MIN_HEADER_LEN;

#[allow(clippy::too_many_arguments)]
pub fn transmit<E: Emit>(
    sh: &Shared,
    rx: &RxCtx<'_>,
    dest: &Dest,
    ip: &[u8],
    ident: &mut u16,
    now_ms: u64,
    out: &mut E,
) -> Verdict {
    let ifx = dest.out_ifindex();
    let Some(oif) = sh.iface(ifx) else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    let Some(mac) = dest.mac() else {
        return Verdict::Drop(DropReason::NeighUnresolved);
    };
    let std::net::IpAddr::V4(rip) = dest.addr else {
        return Verdict::Drop(DropReason::MethodUnsupported);
    };
    let Ok(inner) = ipv4::Packet::new_checked(ip) else {
        return Verdict::Drop(DropReason::TruncatedIpv4);
    };
    if inner.ttl() <= 1 {
        send_icmp(rx, ip, icmp::TYPE_TIME_EXCEEDED, icmp::CODE_TTL_EXCEEDED, 0, out);
        return Verdict::Drop(DropReason::TtlExceeded);
    }
    let mtu = dest.path_mtu(oif.mtu, now_ms) as usize;
    if mtu < 68 + OVERHEAD {
        return Verdict::Drop(DropReason::FragNeeded);
    }
    let df = inner.dont_frag();
    let outer_len = ip.len() + OVERHEAD;
    if outer_len > mtu && df {
        let next_hop = (mtu - OVERHEAD) as u32;
        send_icmp(rx, ip, icmp::TYPE_DEST_UNREACH, icmp::CODE_FRAG_NEEDED, next_hop, out);
        return Verdict::Drop(DropReason::FragNeeded);
    }
    // Inner TOS; an inner CE mark is carried as ECT(0) outside (RFC 6040 normal mode).
    let tos = if inner.tos() & 3 == 3 {
        (inner.tos() & !3) | 2
    } else {
        inner.tos()
    };
    let src = oif.addrs.first().copied().unwrap_or([0; 4]);
    let ttl = inner.ttl() - 1;
    let id = if df {
        0
    } else {
        *ident = ident.wrapping_add(1);
        *ident
    };
    // Build the decremented inner packet once, in the first buffer, then copy the
    // pieces for fragments if needed.
    let max_payload = if outer_len <= mtu {
        ip.len()
    } else {
        (mtu - OVERHEAD) & !7
    };
    let mut off = 0usize;
    while off < ip.len() {
        let chunk = max_payload.min(ip.len() - off);
        let more = off + chunk < ip.len();
        let total = OVERHEAD + chunk;
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
            protocol: ipv4::proto::IPIP,
            src,
            dst: rip.octets(),
        }
        .emit(b);
        if more || off > 0 {
            let fo = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
            b[6..8].copy_from_slice(&fo.to_be_bytes());
            b[10..12].copy_from_slice(&[0, 0]);
            let c = crate::wire::checksum::checksum(&b[..OVERHEAD]);
            b[10..12].copy_from_slice(&c.to_be_bytes());
        }
        // The inner packet with its TTL decremented (and its L4 checksum completed if
        // offload left it partial) — computed on a scratch copy for fragments.
        if off == 0 && !more {
            let body = &mut b[OVERHEAD..];
            body.copy_from_slice(ip);
            fix_inner(body, rx.csum_partial);
        } else {
            fragment_body(ip, off, &mut b[OVERHEAD..], rx.csum_partial);
        }
        out.commit(ifx, len);
        off += chunk;
    }
    Verdict::Forwarded
}

/// The slice of the (fixed-up) inner packet that fragment `off..off+dst.len()` carries.
#[cold]
#[inline(never)]
fn fragment_body(ip: &[u8], off: usize, dst: &mut [u8], csum_partial: bool) {
    let mut scratch = [0u8; 65535];
    let whole = &mut scratch[..ip.len()];
    whole.copy_from_slice(ip);
    fix_inner(whole, csum_partial);
    let n = dst.len();
    dst.copy_from_slice(&whole[off..off + n]);
}

fn fix_inner(ip: &mut [u8], csum_partial: bool) {
    if let Ok(mut p) = ipv4::Packet::new_checked(&mut *ip) {
        p.decrement_ttl();
    }
    if csum_partial {
        complete_l4_checksum(ip);
    }
}
