//! NAT (masquerading, `-m`, IPVS's MASQ): requests get destination VIP:vport
//! rewritten to RIP:rport; replies from the real server get their source rewritten
//! back to VIP:vport. IP and L4 checksums are patched incrementally (RFC 1624); a UDP
//! checksum of 0 gets a full one (`ip_vs_proto_udp.c: udp_snat_handler`). ICMP errors
//! about a NAT connection are translated in both the outer and the quoted header
//! (`ip_vs_core.c: ip_vs_nat_icmp`).

use super::{RxCtx, pre_xmit_checks};
use crate::dataplane::{Emit, Iface, Verdict};
use crate::wire::{MacAddr, checksum, ethernet, icmp, ipv4, l4};
use std::net::Ipv4Addr;

/// Which end of the packet to rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// Rewrite an address and port of a TCP/UDP packet in place, patching the IP header
/// checksum and the L4 checksum. `csum_partial`: the L4 checksum was only a pseudo-
/// header sum; it is then computed in full.
pub fn rewrite(ip: &mut [u8], side: Side, addr: Ipv4Addr, port: u16, csum_partial: bool) {
    let Ok(mut p) = ipv4::Packet::new_checked(&mut *ip) else {
        return;
    };
    let old = match side {
        Side::Src => p.set_src_incremental(addr),
        Side::Dst => p.set_dst_incremental(addr),
    };
    let (proto, src, dst) = (p.protocol(), p.src(), p.dst());
    let Some(mut h) = l4::Header::new_checked(proto, p.payload_mut()) else {
        return;
    };
    let old_port = match side {
        Side::Src => h.src_port(),
        Side::Dst => h.dst_port(),
    };
    match side {
        Side::Src => h.set_src_port(port),
        Side::Dst => h.set_dst_port(port),
    }
    if csum_partial || (proto == ipv4::proto::UDP && h.checksum() == 0) {
        // Offload left only a pseudo-header sum, or UDP had none: compute it in full.
        h.fill_checksum(src, dst);
        return;
    }
    h.patch_checksum(old, addr, old_port, port);
}

/// Does the TCP/UDP checksum of `ip` (a checked IPv4 packet) verify? NAT checks it
/// before translating, in both directions: a UDP checksum of 0 (none) and an
/// offloaded one (`csum_partial`, only a pseudo-header sum) count as valid.
///
/// The kernel verifies before mangling only when an application helper (FTP) is
/// bound (`tcp_dnat_handler`, `udp_snat_handler`); without one it patches the
/// checksum incrementally, which carries a bad checksum through, so the receiver
/// drops the segment. uvs verifies every NAT packet instead (one pass over the
/// payload: about 75 ns for 1500 bytes): the outcome for the receiver is the same, but a
/// corrupt or forged segment can no longer create an entry or move its TCP state.
/// DR and TUN never verify (the kernel does not either).
pub fn l4_checksum_ok(ip: &[u8], csum_partial: bool) -> bool {
    if csum_partial {
        return true;
    }
    let Ok(p) = ipv4::Packet::new_checked(ip) else {
        return false;
    };
    let (proto, hl, tl) = (p.protocol(), p.header_len(), p.total_len());
    let Some(min) = l4::min_header_len(proto) else {
        return true;
    };
    let body = &ip[hl..tl];
    if body.len() < min {
        return false;
    }
    let off = l4::checksum_offset(proto);
    if proto == ipv4::proto::UDP && body[off..off + 2] == [0, 0] {
        return true;
    }
    let acc = checksum::pseudo_header(p.src(), p.dst(), proto, body.len() as u16);
    checksum::finish(checksum::sum(acc, body)) == 0
}

/// Copy `ip` into a frame for `dst_mac` on `oif`, decrement the TTL, then let `edit`
/// rewrite the IP packet in place. Returns the verdict.
pub fn emit_ip<E: Emit>(
    out: &mut E,
    oif: &Iface,
    dst_mac: MacAddr,
    ip: &[u8],
    edit: impl FnOnce(&mut [u8]),
) -> Verdict {
    if ip.len() > oif.mtu.get() as usize {
        // Bigger than the MTU without DF (callers checked): fragment on output.
        return super::frag::emit_fragmented(out, oif, dst_mac, ip, edit);
    }
    let len = ethernet::HEADER_LEN + ip.len();
    let b = match super::ipv4_slot(out, oif, dst_mac, ip.len()) {
        Ok(b) => b,
        Err(v) => return v,
    };
    b.copy_from_slice(ip);
    if let Ok(mut p) = ipv4::Packet::new_checked(&mut *b) {
        p.decrement_ttl();
    }
    edit(b);
    out.commit(oif.ifindex, len);
    Verdict::Forwarded
}

/// Request: client -> VIP:vport becomes client -> RIP:rport.
pub fn transmit_in<E: Emit>(
    rx: &RxCtx<'_>,
    oif: &Iface,
    mac: MacAddr,
    ip: &[u8],
    rip: Ipv4Addr,
    rport: u16,
    out: &mut E,
) -> Verdict {
    // A GRO/TSO aggregate skips the MTU check and is segmented on output.
    let mtu = if super::frag::is_aggregate(rx.iface.mtu.get(), rx.csum_partial, ip) {
        u32::MAX
    } else {
        oif.mtu.get()
    };
    if let Err(v) = pre_xmit_checks(rx, ip, mtu, oif.mtu.get(), out) {
        return v;
    }
    let partial = rx.csum_partial;
    emit_ip(out, oif, mac, ip, |b| rewrite(b, Side::Dst, rip, rport, partial))
}

/// Reply: RIP:rport -> client becomes VIP:vport -> client.
pub fn transmit_out<E: Emit>(
    rx: &RxCtx<'_>,
    oif: &Iface,
    mac: MacAddr,
    ip: &[u8],
    vip: Ipv4Addr,
    vport: u16,
    out: &mut E,
) -> Verdict {
    // A GRO/TSO aggregate skips the MTU check and is segmented on output.
    let mtu = if super::frag::is_aggregate(rx.iface.mtu.get(), rx.csum_partial, ip) {
        u32::MAX
    } else {
        oif.mtu.get()
    };
    if let Err(v) = pre_xmit_checks(rx, ip, mtu, oif.mtu.get(), out) {
        return v;
    }
    let partial = rx.csum_partial;
    emit_ip(out, oif, mac, ip, |b| rewrite(b, Side::Src, vip, vport, partial))
}

/// Translate an ICMP error in place: the outer address on `outer` side becomes
/// `outer_addr`; in the quoted packet the address and port on `quoted` side become
/// `addr:port`. The quoted IP header checksum, the ICMP checksum and the outer header
/// checksum are recomputed (the quoted L4 checksum is left alone, as IPVS does).
pub fn rewrite_icmp(ip: &mut [u8], outer: Side, outer_addr: Ipv4Addr, quoted: Side, addr: Ipv4Addr, port: u16) {
    let Ok(mut p) = ipv4::Packet::new_checked(&mut *ip) else {
        return;
    };
    match outer {
        Side::Src => p.set_src_incremental(outer_addr),
        Side::Dst => p.set_dst_incremental(outer_addr),
    };
    let icmp_msg = p.payload_mut();
    let Some(quote) = icmp_msg.get_mut(8..) else {
        return;
    };
    let Ok(mut q) = ipv4::Header::new_checked(quote) else {
        return;
    };
    if q.rest().len() < 4 {
        return;
    }
    match quoted {
        Side::Src => q.set_src(addr),
        Side::Dst => q.set_dst(addr),
    }
    l4::set_port(q.rest_mut(), quoted == Side::Dst, port);
    q.fill_checksum();
    icmp::fill_checksum(icmp_msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_packet_a() -> Vec<u8> {
        // TV 10.13 packet A: 192.0.2.10:40000 -> 203.0.113.5:80 SYN, DF, TTL 64, ID 0x1234.
        let mut v = vec![0u8; 40];
        ipv4::Repr {
            tos: 0,
            total_len: 40,
            ident: 0x1234,
            dont_frag: true,
            ttl: 64,
            protocol: 6,
            src: Ipv4Addr::new(192, 0, 2, 10),
            dst: Ipv4Addr::new(203, 0, 113, 5),
        }
        .emit(&mut v);
        let t = &mut v[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = l4::tcp_flags::SYN;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let c = l4::full_checksum(6, Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(203, 0, 113, 5), &v[20..]);
        v[36..38].copy_from_slice(&c.to_be_bytes());
        v
    }

    #[test]
    fn tv_10_13_nat_request() {
        let mut v = tcp_packet_a();
        assert_eq!(u16::from_be_bytes([v[36], v[37]]), 0x1541);
        ipv4::Packet::new_checked(&mut v[..]).unwrap().decrement_ttl();
        rewrite(&mut v, Side::Dst, Ipv4Addr::new(10, 0, 0, 2), 8080, false);
        let p = ipv4::Packet::new_checked(&v[..]).unwrap();
        assert_eq!((p.ttl(), p.checksum()), (63, 0x5D90));
        assert_eq!(u16::from_be_bytes([v[36], v[37]]), 0x2805);
        assert_eq!(
            l4::full_checksum(6, p.src(), p.dst(), &v[20..]),
            0x2805,
            "incremental == full"
        );
    }

    #[test]
    fn tv_10_13_nat_reply_and_udp_zero_checksum() {
        // Reply B: 10.0.0.2:8080 -> 192.0.2.10:40000 SYN+ACK seq 1000 ack 2 -> 0x240C; SNAT -> 0x1148.
        let mut v = vec![0u8; 40];
        ipv4::Repr {
            tos: 0,
            total_len: 40,
            ident: 0,
            dont_frag: true,
            ttl: 64,
            protocol: 6,
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(192, 0, 2, 10),
        }
        .emit(&mut v);
        let t = &mut v[20..];
        t[0..2].copy_from_slice(&8080u16.to_be_bytes());
        t[2..4].copy_from_slice(&40000u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[8..12].copy_from_slice(&2u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = l4::tcp_flags::SYN | l4::tcp_flags::ACK;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let c = l4::full_checksum(6, Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(192, 0, 2, 10), &v[20..]);
        assert_eq!(c, 0x240C);
        v[36..38].copy_from_slice(&c.to_be_bytes());
        rewrite(&mut v, Side::Src, Ipv4Addr::new(203, 0, 113, 5), 80, false);
        assert_eq!(u16::from_be_bytes([v[36], v[37]]), 0x1148);

        // UDP C with checksum 0 -> NAT to 10.0.0.3:5300 gets a full checksum 0x4565.
        let mut u = vec![0u8; 32];
        ipv4::Repr {
            tos: 0,
            total_len: 32,
            ident: 0,
            dont_frag: false,
            ttl: 64,
            protocol: 17,
            src: Ipv4Addr::new(192, 0, 2, 10),
            dst: Ipv4Addr::new(203, 0, 113, 5),
        }
        .emit(&mut u);
        u[20..22].copy_from_slice(&5353u16.to_be_bytes());
        u[22..24].copy_from_slice(&53u16.to_be_bytes());
        u[24..26].copy_from_slice(&12u16.to_be_bytes());
        u[28..32].copy_from_slice(b"abcd");
        rewrite(&mut u, Side::Dst, Ipv4Addr::new(10, 0, 0, 3), 5300, false);
        assert_eq!(u16::from_be_bytes([u[26], u[27]]), 0x4565);
        assert!(ipv4::Packet::new_checked(&u[..]).unwrap().verify_checksum());
    }

    #[test]
    fn udp_incremental_matches_full_for_random_packets() {
        let mut seed = 0x1234_5678u32;
        for _ in 0..200 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let n = (seed % 40) as usize;
            let mut u = vec![0u8; 28 + n];
            let src = seed.to_be_bytes();
            ipv4::Repr {
                tos: 0,
                total_len: (28 + n) as u16,
                ident: 0,
                dont_frag: false,
                ttl: 9,
                protocol: 17,
                src: Ipv4Addr::from(src),
                dst: Ipv4Addr::new(10, 1, 2, 3),
            }
            .emit(&mut u);
            u[20..22].copy_from_slice(&((seed >> 8) as u16).to_be_bytes());
            u[22..24].copy_from_slice(&53u16.to_be_bytes());
            u[24..26].copy_from_slice(&((8 + n) as u16).to_be_bytes());
            for (i, b) in u[28..].iter_mut().enumerate() {
                *b = (seed >> (i % 24)) as u8;
            }
            let c = l4::full_checksum(17, Ipv4Addr::from(src), Ipv4Addr::new(10, 1, 2, 3), &u[20..]);
            u[26..28].copy_from_slice(&c.to_be_bytes());
            let rip = (seed ^ 0xdead_beef).to_be_bytes();
            rewrite(&mut u, Side::Dst, Ipv4Addr::from(rip), (seed >> 3) as u16, false);
            assert_eq!(
                u16::from_be_bytes([u[26], u[27]]),
                l4::full_checksum(17, Ipv4Addr::from(src), Ipv4Addr::from(rip), &u[20..])
            );
        }
    }
}

#[cfg(test)]
mod icmp_tests {
    use super::*;

    #[test]
    fn icmp_translation_keeps_every_checksum_valid() {
        // Port unreachable from RIP 10.78.1.11 to client 192.168.77.10 quoting
        // client:40000 -> RIP:5454 UDP "hello".
        let mut quoted = vec![0u8; 33];
        ipv4::Repr {
            tos: 0,
            total_len: 33,
            ident: 9,
            dont_frag: true,
            ttl: 63,
            protocol: 17,
            src: Ipv4Addr::new(192, 168, 77, 10),
            dst: Ipv4Addr::new(10, 78, 1, 11),
        }
        .emit(&mut quoted);
        quoted[20..22].copy_from_slice(&40000u16.to_be_bytes());
        quoted[22..24].copy_from_slice(&5454u16.to_be_bytes());
        quoted[24..26].copy_from_slice(&13u16.to_be_bytes());
        quoted[28..33].copy_from_slice(b"hello");
        let total = 20 + 8 + quoted.len();
        let mut pkt = vec![0u8; total];
        ipv4::Repr {
            tos: 0xc0,
            total_len: total as u16,
            ident: 1,
            dont_frag: false,
            ttl: 64,
            protocol: 1,
            src: Ipv4Addr::new(10, 78, 1, 11),
            dst: Ipv4Addr::new(192, 168, 77, 10),
        }
        .emit(&mut pkt);
        pkt[20] = 3;
        pkt[21] = 3;
        pkt[28..].copy_from_slice(&quoted);
        let c = checksum::checksum(&pkt[20..]);
        pkt[22..24].copy_from_slice(&c.to_be_bytes());
        rewrite_icmp(
            &mut pkt,
            Side::Src,
            Ipv4Addr::new(192, 168, 77, 100),
            Side::Dst,
            Ipv4Addr::new(192, 168, 77, 100),
            54,
        );
        let p = ipv4::Packet::new_checked(&pkt[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.src(), Ipv4Addr::new(192, 168, 77, 100));
        assert_eq!(checksum::checksum(&pkt[20..]), 0, "ICMP checksum");
        let q = ipv4::Packet::new_checked(&pkt[28..]).unwrap();
        assert!(q.verify_checksum(), "quoted header checksum");
        assert_eq!(q.dst(), Ipv4Addr::new(192, 168, 77, 100));
        assert_eq!(&pkt[48 + 2..48 + 4], &54u16.to_be_bytes());
    }
}
