//! Classify a received frame: ARP, a TCP/UDP packet to a VIP, a NAT real server's
//! reply, a related ICMP error, someone else's frame, or a malformed one (dropped with a precise reason). Never panics on any input.

use super::{DropReason, Iface, RxMeta, pkttype};
use crate::service::ServiceTable;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::ipv4::{self, Ipv4Error};
use crate::wire::{MacAddr, arp, l4};
use std::net::Ipv4Addr;

/// A TCP or UDP packet addressed to a VIP, with the fields the pipeline needs.
#[derive(Debug, Clone, Copy)]
pub struct L4Packet<'a> {
    pub eth_src: MacAddr,
    /// The IP packet, from its header to its total length (no Ethernet padding).
    pub ip: &'a [u8],
    pub proto: u8,
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
}

#[derive(Debug)]
pub enum Class<'a> {
    Pass,
    Drop(DropReason),
    Arp(ArpFrame),
    /// Client to a VIP.
    ToVip(L4Packet<'a>),
    /// From a NAT real server's address: possibly a reply to translate.
    FromRealServer(L4Packet<'a>),
    /// An ICMP error sent to a VIP (about a packet the VIP sent).
    IcmpToVip(IcmpError<'a>),
    /// An ICMP error from a NAT real server (about a packet it was sent).
    IcmpFromRealServer(IcmpError<'a>),
    /// An ICMP error about an IPIP packet the director sent.
    TunnelIcmp(TunnelIcmp<'a>),
    /// An ICMP echo request to a VIP (checksum verified): the whole IP packet.
    EchoToVip {
        eth_src: MacAddr,
        ip: &'a [u8],
    },
}

#[derive(Debug, Clone, Copy)]
pub struct ArpFrame {
    pub eth_src: MacAddr,
    pub arp: arp::Repr,
}

pub fn classify<'a>(iface: &Iface, svcs: &ServiceTable, rx: RxMeta, frame: &'a [u8]) -> Class<'a> {
    if rx.pkttype == pkttype::OUTGOING {
        return Class::Pass;
    }
    // A tag stripped into the metadata: VLAN traffic is not the director's. In
    // `dev.c: __netif_receive_skb_core`, a tagged frame no VLAN device takes
    // (`vlan_core.c: vlan_do_receive`) is marked PACKET_OTHERHOST when its VLAN ID is
    // not 0, so IPVS never sees it; with VID 0 (a priority tag) the tag is cleared and
    // the frame goes on as untagged. uvs does the same.
    if rx.vlan_tci.is_some_and(|tci| tci & 0x0fff != 0) {
        return Class::Drop(DropReason::Vlan);
    }
    let Some(eth) = ethernet::Frame::new_checked(frame) else {
        return Class::Drop(DropReason::TruncatedEthernet);
    };
    if eth.src() == iface.mac {
        return Class::Drop(DropReason::OwnMac);
    }
    match eth.ethertype() {
        ethertype::ARP => match arp::Repr::parse(eth.payload()) {
            Ok(a) => Class::Arp(ArpFrame {
                eth_src: eth.src(),
                arp: a,
            }),
            Err(_) => Class::Drop(DropReason::ArpMalformed),
        },
        ethertype::IPV4 => classify_ipv4(iface, svcs, rx, eth.src(), &frame[ethernet::HEADER_LEN..]),
        ethertype::VLAN | ethertype::QINQ => Class::Drop(DropReason::Vlan),
        _ => Class::Pass,
    }
}

fn classify_ipv4<'a>(iface: &Iface, svcs: &ServiceTable, rx: RxMeta, eth_src: MacAddr, b: &'a [u8]) -> Class<'a> {
    // IPVS only sees PACKET_HOST traffic.
    if rx.pkttype != pkttype::HOST {
        return Class::Pass;
    }
    // Look at the addresses before anything else: traffic that is neither for a VIP
    // nor from a NAT real server belongs to the host and is never judged here.
    let Some((saddr, daddr, proto)) = ipv4::peek(b) else {
        return Class::Drop(DropReason::TruncatedIpv4);
    };
    let dir = if svcs.is_vip(daddr) {
        Dir::In
    } else if svcs.is_nat_rip(saddr) {
        Dir::Out
    } else if proto == ipv4::proto::ICMP && iface.addrs.contains(&daddr) {
        return classify_tunnel_icmp(eth_src, b);
    } else {
        return Class::Pass;
    };
    let ip = match ipv4::Packet::new_checked(b) {
        Ok(p) => p,
        Err(Ipv4Error::Truncated) => return Class::Drop(DropReason::TruncatedIpv4),
        Err(Ipv4Error::Version) => return Class::Drop(DropReason::BadIpVersion),
        Err(Ipv4Error::HeaderLen) => return Class::Drop(DropReason::BadIpHeaderLen),
        Err(Ipv4Error::TotalLen) => return Class::Drop(DropReason::BadIpTotalLen),
    };
    if !ip.verify_checksum() {
        return Class::Drop(DropReason::IpChecksum);
    }
    if ip.is_fragment() {
        return Class::Drop(DropReason::Fragment);
    }
    // Linux drops bad options (and source routes, accept_source_route = 0) in ip_rcv,
    // before IPVS: so does uvs. Valid options are kept and forwarded.
    if ip.header_len() > ipv4::MIN_HEADER_LEN {
        use crate::wire::ipv4::{OptionsError, check_options};
        match check_options(&b[ipv4::MIN_HEADER_LEN..ip.header_len()]) {
            Ok(()) => {}
            Err(OptionsError::Malformed) => return Class::Drop(DropReason::BadIpOptions),
            Err(OptionsError::SourceRoute) => return Class::Drop(DropReason::SourceRoute),
        }
    }
    let payload = ip.payload();
    let whole = &b[..ip.total_len()];
    if proto == ipv4::proto::ICMP {
        return classify_icmp(dir, eth_src, whole, ip.header_len());
    }
    let Some(min) = l4::min_header_len(proto) else {
        return match dir {
            Dir::In => Class::Drop(DropReason::UnsupportedProtocol),
            Dir::Out => Class::Pass,
        };
    };
    if payload.len() < min {
        return Class::Drop(DropReason::TruncatedL4);
    }
    let (sport, dport) = l4::ports(payload).unwrap_or((0, 0));
    let tcp_flags = if proto == ipv4::proto::TCP {
        l4::tcp_flags(payload)
    } else {
        0
    };
    let p = L4Packet {
        eth_src,
        ip: whole,
        proto,
        saddr,
        daddr,
        sport,
        dport,
        tcp_flags,
    };
    match dir {
        Dir::In => Class::ToVip(p),
        Dir::Out => Class::FromRealServer(p),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    In,
    Out,
}

/// An ICMP error sent to the director's own address about an IPIP packet it sent
/// (a router on the way to a TUN real server: PMTU discovery, unreachable...).
#[derive(Debug, Clone, Copy)]
pub struct TunnelIcmp<'a> {
    pub icmp_type: u8,
    pub code: u8,
    /// The ICMP header's second word (the next-hop MTU for fragmentation-needed).
    pub rest: u32,
    /// The real server the quoted tunnel packet was addressed to.
    pub rip: Ipv4Addr,
    /// How it was encapsulated (GUE: to UDP port `port`), and the bytes between its
    /// outer IPv4 header and the client's packet.
    pub kind: crate::service::TunnelType,
    pub port: u16,
    pub encap_len: usize,
    /// The quoted inner packet (the client's), possibly truncated.
    pub inner: &'a [u8],
}

fn classify_tunnel_icmp(_eth_src: MacAddr, b: &[u8]) -> Class<'_> {
    let Ok(ip) = ipv4::Packet::new_checked(b) else {
        return Class::Pass;
    };
    if ip.is_fragment() || !ip.verify_checksum() {
        return Class::Pass;
    }
    let icmp = &b[ip.header_len()..ip.total_len()];
    if icmp.len() < 8 + ipv4::MIN_HEADER_LEN || !crate::wire::icmp::is_related_error(icmp[0]) {
        return Class::Pass;
    }
    let q = &icmp[8..];
    let Ok(qh) = ipv4::Header::new_checked(q) else {
        return Class::Pass;
    };
    // A quoted non-first fragment does not start with the encapsulation (IPVS skips
    // those too).
    if qh.frag_offset() != 0 {
        return Class::Pass;
    }
    let qhl = qh.header_len();
    let Some((kind, port, off)) = tunnel_quote(qh.protocol(), qh.rest()) else {
        return Class::Pass;
    };
    if crate::wire::checksum::checksum(icmp) != 0 {
        return Class::Drop(DropReason::IcmpChecksum);
    }
    Class::TunnelIcmp(TunnelIcmp {
        icmp_type: icmp[0],
        code: icmp[1],
        rest: u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
        rip: qh.dst(),
        kind,
        port,
        encap_len: off,
        inner: &q[qhl + off..],
    })
}

/// The payload of a quoted packet of IP protocol `proto` as one of the director's
/// tunnel packets: (type, GUE port, where the client's packet starts), or `None` if it
/// cannot be one (a quote too short to show the encapsulation cannot either).
fn tunnel_quote(proto: u8, p: &[u8]) -> Option<(crate::service::TunnelType, u16, usize)> {
    use crate::service::TunnelType;
    match proto {
        ipv4::proto::IPIP => Some((TunnelType::Ipip, 0, 0)),
        ipv4::proto::GRE => {
            let (hl, _) = crate::wire::tunnel::gre_header_len(p)?;
            Some((TunnelType::Gre, 0, hl.min(p.len())))
        }
        ipv4::proto::UDP => {
            let port = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]);
            let hl = 8 + crate::wire::tunnel::gue_header_len(p.get(8..)?)?;
            Some((TunnelType::Gue, port, hl.min(p.len())))
        }
        _ => None,
    }
}

/// An ICMP error that quotes a TCP/UDP packet (IPVS's "related" ICMP).
#[derive(Debug, Clone, Copy)]
pub struct IcmpError<'a> {
    pub eth_src: MacAddr,
    /// The whole outer IP packet.
    pub ip: &'a [u8],
    /// The quoted packet's addresses and ports, as quoted.
    pub proto: u8,
    pub saddr: Ipv4Addr,
    pub daddr: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

fn classify_icmp<'a>(dir: Dir, eth_src: MacAddr, ip: &'a [u8], hl: usize) -> Class<'a> {
    let icmp = &ip[hl..];
    if icmp.len() < 8 {
        return Class::Drop(DropReason::TruncatedL4);
    }
    if dir == Dir::In && icmp[0] == super::echo::TYPE_ECHO_REQUEST && icmp[1] == 0 {
        // IPVS leaves echo to the stack of the director holding the VIP; uvs is that
        // stack for its VIPs (see echo.rs).
        if crate::wire::checksum::checksum(icmp) != 0 {
            return Class::Drop(DropReason::IcmpChecksum);
        }
        return Class::EchoToVip { eth_src, ip };
    }
    if !crate::wire::icmp::is_related_error(icmp[0]) {
        // Other informational ICMP is not IPVS's business.
        return Class::Pass;
    }
    if crate::wire::checksum::checksum(icmp) != 0 {
        return Class::Drop(DropReason::IcmpChecksum);
    }
    let inner_off = hl + 8;
    let inner = &ip[inner_off..];
    // The quote: an IP header (any options) plus at least the 4 bytes of ports.
    let Ok(q) = ipv4::Header::new_checked(inner) else {
        return Class::Drop(DropReason::IcmpBadQuote);
    };
    let Some((sport, dport)) = l4::ports(q.rest()) else {
        return Class::Drop(DropReason::IcmpBadQuote);
    };
    let (saddr, daddr, proto) = (q.src(), q.dst(), q.protocol());
    if l4::min_header_len(proto).is_none() {
        return Class::Pass;
    }
    let e = IcmpError {
        eth_src,
        ip,
        proto,
        saddr,
        daddr,
        sport,
        dport,
    };
    match dir {
        Dir::In => Class::IcmpToVip(e),
        Dir::Out => Class::IcmpFromRealServer(e),
    }
}
