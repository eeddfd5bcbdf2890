//! Forwarding methods (ip_vs_xmit.c): one file per LVS mode. Each writes the frame to
//! transmit into an `Emit` sink and never allocates.
#![forbid(unsafe_code)]

pub mod dr;
pub mod frag;
pub mod nat;
pub mod tun;

use crate::dataplane::{DropReason, Emit, Iface, Verdict};
use crate::wire::{MacAddr, ethernet, icmp, ipv4};

/// Where the frame came from, for ICMP errors sent back toward the client.
#[derive(Debug, Clone, Copy)]
pub struct RxCtx<'a> {
    pub iface: &'a Iface,
    /// The previous hop's MAC (the client, or the router in front of it).
    pub eth_src: MacAddr,
    /// The L4 checksum is only a pseudo-header sum (see `RxMeta::csum_partial`).
    pub csum_partial: bool,
}

/// Complete a TCP/UDP checksum that checksum offload left as a pseudo-header sum.
/// `ip` is the whole IPv4 packet in the output buffer.
/// A TX slot for an IPv4 packet of `ip_len` bytes to `dst_mac` out of `oif`: the
/// Ethernet header is written and the IP part returned. `TxFull` when the ring has no
/// free slot or the slot is too small. Commit `ethernet::HEADER_LEN + ip_len` bytes.
#[inline]
pub fn ipv4_slot<'o, E: Emit>(
    out: &'o mut E,
    oif: &Iface,
    dst_mac: MacAddr,
    ip_len: usize,
) -> Result<&'o mut [u8], Verdict> {
    let len = ethernet::HEADER_LEN + ip_len;
    match out.buffer(oif.ifindex) {
        Some(buf) if buf.len() >= len => {
            ethernet::emit(buf, dst_mac, oif.mac, ethernet::ethertype::IPV4);
            Ok(&mut buf[ethernet::HEADER_LEN..len])
        }
        _ => Err(Verdict::Drop(DropReason::TxFull)),
    }
}

pub fn complete_l4_checksum(ip: &mut [u8]) {
    let Ok(p) = ipv4::Packet::new_checked(&mut *ip) else {
        return;
    };
    let (proto, src, dst, hl, tl) = (p.protocol(), p.src(), p.dst(), p.header_len(), p.total_len());
    let Some(min) = crate::wire::l4::min_header_len(proto) else {
        return;
    };
    if tl - hl < min {
        return;
    }
    let l4 = &mut ip[hl..tl];
    let c = crate::wire::l4::full_checksum(proto, src, dst, l4);
    let off = crate::wire::l4::checksum_offset(proto);
    l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

/// The checks every method makes before transmitting (`ip_vs_xmit.c`: decrement_ttl,
/// ensure_mtu_is_adequate): TTL > 1, and a DF
/// packet that does not fit the route MTU is refused with fragmentation-needed.
/// `mtu` is the usable size for the IP packet as it will be forwarded.
pub fn pre_xmit_checks<E: Emit>(
    rx: &RxCtx<'_>,
    ip: &[u8],
    mtu: u32,
    next_hop_mtu: u32,
    out: &mut E,
) -> Result<(), Verdict> {
    let Ok(p) = ipv4::Packet::new_checked(ip) else {
        return Err(Verdict::Drop(DropReason::TruncatedIpv4));
    };
    if p.ttl() <= 1 {
        send_icmp(rx, ip, icmp::Message::TTL_EXCEEDED, out);
        return Err(Verdict::Drop(DropReason::TtlExceeded));
    }
    if p.dont_frag() && p.total_len() as u32 > mtu {
        send_icmp(rx, ip, icmp::Message::frag_needed(next_hop_mtu), out);
        return Err(Verdict::Drop(DropReason::FragNeeded));
    }
    Ok(())
}

/// Send an ICMP error about `ip` back to its source, from the address it was sent to
/// (the VIP), via the previous hop.
pub fn send_icmp<E: Emit>(rx: &RxCtx<'_>, ip: &[u8], msg: icmp::Message, out: &mut E) {
    let Ok(p) = ipv4::Packet::new_checked(ip) else {
        return;
    };
    let ifx = rx.iface.ifindex;
    if let Some(buf) = out.buffer(ifx)
        && let Some(n) = icmp::emit_error(buf, rx.eth_src, rx.iface.mac, p.dst(), msg, ip)
    {
        out.commit(ifx, n);
    }
}
