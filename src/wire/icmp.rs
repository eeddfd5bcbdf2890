//! ICMPv4 error messages (RFC 792, RFC 1191) that the director originates:
//! destination unreachable (port, fragmentation needed) and time exceeded.

use super::checksum;
use super::ethernet::{self, MacAddr, ethertype};
use super::ipv4;

pub const TYPE_DEST_UNREACH: u8 = 3;
pub const TYPE_SOURCE_QUENCH: u8 = 4;
pub const TYPE_TIME_EXCEEDED: u8 = 11;
pub const CODE_PORT_UNREACH: u8 = 3;
pub const CODE_FRAG_NEEDED: u8 = 4;
pub const CODE_TTL_EXCEEDED: u8 = 0;

/// An ICMP error's type, code and second header word (the next-hop MTU for
/// fragmentation-needed, RFC 1191; else 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub icmp_type: u8,
    pub code: u8,
    pub rest: u32,
}

impl Message {
    pub const PORT_UNREACHABLE: Message = Message {
        icmp_type: TYPE_DEST_UNREACH,
        code: CODE_PORT_UNREACH,
        rest: 0,
    };
    pub const TTL_EXCEEDED: Message = Message {
        icmp_type: TYPE_TIME_EXCEEDED,
        code: CODE_TTL_EXCEEDED,
        rest: 0,
    };
    /// Fragmentation needed, with the next hop's MTU (the low 16 bits of `mtu`).
    pub fn frag_needed(mtu: u32) -> Message {
        Message {
            icmp_type: TYPE_DEST_UNREACH,
            code: CODE_FRAG_NEEDED,
            rest: mtu & 0xffff,
        }
    }
}

/// Recompute the checksum of an ICMP message (`m`: the ICMP header and everything
/// after it); nothing when `m` is shorter than the header.
pub fn fill_checksum(m: &mut [u8]) {
    if m.len() < 8 {
        return;
    }
    m[2..4].fill(0);
    let c = checksum::checksum(m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Is this ICMP type an error that quotes a packet (IPVS's "related" types)?
pub fn is_related_error(icmp_type: u8) -> bool {
    matches!(icmp_type, TYPE_DEST_UNREACH | TYPE_SOURCE_QUENCH | TYPE_TIME_EXCEEDED)
}

/// Build an Ethernet frame carrying an ICMP error about `offending` (an IPv4 packet,
/// header first) back to its source. Quotes the IP header plus 8 bytes (RFC 792) —
/// the same as Linux for these types — and returns the frame length.
/// `buf` must hold at least 14 + 20 + 8 + 60 + 8 bytes.
pub fn emit_error(
    buf: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    ip_src: super::Ipv4Addr,
    msg: Message,
    offending: &[u8],
) -> Option<usize> {
    // The offending packet may itself be a truncated quote (relaying an error about
    // a tunnelled packet): only its header must be whole.
    if offending.len() < ipv4::MIN_HEADER_LEN || offending[0] >> 4 != 4 {
        return None;
    }
    let ihl = ((offending[0] & 0x0f) as usize) * 4;
    if ihl < ipv4::MIN_HEADER_LEN || offending.len() < ihl {
        return None;
    }
    let total = u16::from_be_bytes([offending[2], offending[3]]) as usize;
    let quote_len = (ihl + 8).min(total.max(ihl)).min(offending.len());
    let quote = &offending[..quote_len];
    let to = super::Ipv4Addr::new(offending[12], offending[13], offending[14], offending[15]);
    let icmp_len = 8 + quote.len();
    let total = ipv4::MIN_HEADER_LEN + icmp_len;
    let frame_len = ethernet::HEADER_LEN + total;
    if buf.len() < frame_len {
        return None;
    }
    ethernet::emit(buf, eth_dst, eth_src, ethertype::IPV4);
    ipv4::Repr {
        tos: 0xc0,
        total_len: total as u16,
        ident: 0,
        dont_frag: false,
        ttl: 64,
        protocol: ipv4::proto::ICMP,
        src: ip_src,
        dst: to,
    }
    .emit(&mut buf[ethernet::HEADER_LEN..]);
    let m = &mut buf[ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN..frame_len];
    m[0] = msg.icmp_type;
    m[1] = msg.code;
    m[2..4].copy_from_slice(&[0, 0]);
    m[4..8].copy_from_slice(&msg.rest.to_be_bytes());
    m[8..].copy_from_slice(quote);
    let c = checksum::checksum(m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Some(frame_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn port_unreachable_is_well_formed() {
        let mut off = vec![0u8; 60];
        ipv4::Repr {
            tos: 0,
            total_len: 60,
            ident: 7,
            dont_frag: true,
            ttl: 64,
            protocol: ipv4::proto::UDP,
            src: Ipv4Addr::new(192, 0, 2, 10),
            dst: Ipv4Addr::new(203, 0, 113, 5),
        }
        .emit(&mut off);
        let mut buf = [0u8; 256];
        let n = emit_error(
            &mut buf,
            [1; 6],
            [2; 6],
            Ipv4Addr::new(203, 0, 113, 5),
            Message::PORT_UNREACHABLE,
            &off,
        )
        .unwrap();
        assert_eq!(n, 14 + 20 + 8 + 28);
        let p = etherparse::SlicedPacket::from_ethernet(&buf[..n]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!()
        };
        assert_eq!(ip.header().destination(), [192, 0, 2, 10]);
        let Some(etherparse::TransportSlice::Icmpv4(icmp)) = p.transport else {
            panic!()
        };
        assert_eq!(icmp.type_u8(), 3);
        assert_eq!(icmp.code_u8(), 3);
        assert_eq!(checksum::checksum(&buf[34..n]), 0, "ICMP checksum verifies");
        assert!(ipv4::Packet::new_checked(&buf[14..n]).unwrap().verify_checksum());
    }
}
