//! ICMP echo to a VIP (issue 17.6): answered by the director that serves the VIP, as
//! the kernel of a director holding it would (`icmp.c: icmp_echo` → `icmp_reply`):
//! type 0, the request's identifier, sequence and data; from the VIP, TTL 64
//! (`ip_default_ttl`), the request's TOS, no DF (ICMP replies are sent with
//! `IP_PMTUDISC_DONT`), no IP options. The kernel's own copy never answers: with the
//! VIP on the interface it would, but the kernel-copy rule drops it before the stack,
//! and without the VIP on an interface it has nothing to answer with.

use crate::wire::ethernet::{self, MacAddr, ethertype};
use crate::wire::{checksum, ipv4};

pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Linux's `net.ipv4.ip_default_ttl`.
pub const TTL: u8 = 64;

/// Build the Ethernet frame answering `request` (an IPv4 packet, header first,
/// trimmed to its total length, carrying a checksum-verified ICMP echo request) into
/// `buf`. Returns the frame length, or `None` when `buf` is too small or the request
/// is not an echo request.
pub fn reply(buf: &mut [u8], eth_dst: MacAddr, eth_src: MacAddr, ident: u16, request: &[u8]) -> Option<usize> {
    let ip = ipv4::Packet::new_checked(request).ok()?;
    let icmp = ip.payload();
    if icmp.len() < 8 || icmp[0] != TYPE_ECHO_REQUEST || icmp[1] != 0 {
        return None;
    }
    let total = ipv4::MIN_HEADER_LEN + icmp.len();
    let frame_len = ethernet::HEADER_LEN + total;
    if buf.len() < frame_len || total > u16::MAX as usize {
        return None;
    }
    ethernet::emit(buf, eth_dst, eth_src, ethertype::IPV4);
    ipv4::Repr {
        tos: ip.tos(),
        total_len: total as u16,
        ident,
        dont_frag: false,
        ttl: TTL,
        protocol: ipv4::proto::ICMP,
        src: ip.dst(),
        dst: ip.src(),
    }
    .emit(&mut buf[ethernet::HEADER_LEN..]);
    let m = &mut buf[ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN..frame_len];
    m.copy_from_slice(icmp);
    m[0] = TYPE_ECHO_REPLY;
    // Summed again rather than updated (RFC 1624's update can yield 0xffff where a
    // fresh sum gives 0); echo is not the fast path.
    m[2..4].copy_from_slice(&[0, 0]);
    let c = checksum::checksum(m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Some(frame_len)
}
