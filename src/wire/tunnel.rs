//! Tunnel headers between an outer IPv4 header and the inner packet, as IPVS's
//! `ip_vs_xmit.c: ipvs_gre_encap` and `ipvs_gue_encap` build them: GRE (RFC 2784,
//! RFC 2890 key and sequence number) and GUE (draft-ietf-intarea-gue, variant 0).

use super::ipv4;

/// GRE's protocol type for an IPv4 payload (ETH_P_IP).
pub const GRE_PROTO_IPV4: u16 = 0x0800;
/// GRE flags: checksum present (RFC 2784).
pub const GRE_CSUM: u16 = 0x8000;
/// GUE (draft-ietf-intarea-gue) variant 0 header: version 0, no control bit, no
/// optional fields; the next byte is the inner protocol.
pub const GUE_HEADER: usize = 4;

/// The length of a GRE header this side understands (version 0, no routing, payload
/// IPv4; checksum, key and sequence number skipped), read from its first bytes, and
/// whether it carries a checksum. Shared by ICMP-quote parsing
/// (`pipeline::classify`) and `uvs tunnel`.
pub fn gre_header_len(gre: &[u8]) -> Option<(usize, bool)> {
    let flags = u16::from_be_bytes([*gre.first()?, *gre.get(1)?]);
    let proto = u16::from_be_bytes([*gre.get(2)?, *gre.get(3)?]);
    // C=0x8000, R=0x4000, K=0x2000, S=0x1000; version in the low 3 bits.
    if flags & 0x4007 != 0 || proto != GRE_PROTO_IPV4 {
        return None;
    }
    let words = [GRE_CSUM, 0x2000, 0x1000].iter().filter(|&&b| flags & b != 0).count();
    Some((4 + words * 4, flags & GRE_CSUM != 0))
}

/// The length of a GUE header (variant 0, a data message, inner protocol IPIP;
/// optional fields included) at the front of a UDP payload.
pub fn gue_header_len(gue: &[u8]) -> Option<usize> {
    let (b0, proto) = (*gue.first()?, *gue.get(1)?);
    if b0 >> 6 != 0 || b0 & 0x20 != 0 || proto != ipv4::proto::IPIP {
        return None;
    }
    Some(GUE_HEADER + (b0 & 0x1f) as usize * 4)
}

/// The inner packet of a GRE packet (outer IPv4 header included, as a raw socket
/// delivers it): version 0, no routing, payload type IPv4; a present checksum must
/// verify; key and sequence number are skipped.
pub fn decapsulate_gre(pkt: &[u8]) -> Option<&[u8]> {
    let outer = ipv4::Packet::new_checked(pkt).ok()?;
    if outer.protocol() != ipv4::proto::GRE || outer.is_fragment() {
        return None;
    }
    let gre = &pkt[outer.header_len()..outer.total_len()];
    let (hl, csum) = gre_header_len(gre)?;
    if csum && super::checksum::checksum(gre) != 0 {
        return None;
    }
    inner_packet(gre.get(hl..)?)
}

/// The inner packet of a GUE datagram's payload (UDP header already removed by the
/// socket): variant 0, a data message (no control bit), inner protocol IPIP; optional
/// fields are skipped.
pub fn decapsulate_gue(payload: &[u8]) -> Option<&[u8]> {
    inner_packet(payload.get(gue_header_len(payload)?..)?)
}

/// A well-formed inner IPv4 packet at the front of `b`, cut to its total length.
pub fn inner_packet(b: &[u8]) -> Option<&[u8]> {
    let p = ipv4::Packet::new_checked(b).ok()?;
    Some(&b[..p.total_len()])
}
