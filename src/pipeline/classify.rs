//! Classify a received frame: ARP, a TCP/UDP packet to a VIP, someone else's frame,
//! or a malformed one (dropped with a precise reason). Never panics on any input.

use super::{DropReason, Iface, RxMeta, pkttype};
use crate::service::ServiceTable;
use crate::wire::ethernet::{self, ethertype};
use crate::wire::ipv4::{self, Ipv4Error};
use crate::wire::{MacAddr, arp, l4};

/// A TCP or UDP packet addressed to a VIP, with the fields the pipeline needs.
#[derive(Debug, Clone, Copy)]
pub struct L4Packet<'a> {
    pub eth_src: MacAddr,
    /// The IP packet, from its header to its total length (no Ethernet padding).
    pub ip: &'a [u8],
    pub proto: u8,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
}

#[derive(Debug)]
pub enum Class<'a> {
    Pass,
    Drop(DropReason),
    Arp(ArpFrame),
    ToVip(L4Packet<'a>),
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
        ethertype::IPV4 => classify_ipv4(svcs, rx, eth.src(), &frame[ethernet::HEADER_LEN..]),
        ethertype::VLAN | ethertype::QINQ => Class::Drop(DropReason::Vlan),
        _ => Class::Pass,
    }
}

fn classify_ipv4<'a>(svcs: &ServiceTable, rx: RxMeta, eth_src: MacAddr, b: &'a [u8]) -> Class<'a> {
    // IPVS only sees PACKET_HOST traffic.
    if rx.pkttype != pkttype::HOST {
        return Class::Pass;
    }
    // Look at the destination before anything else: traffic that is not for a VIP
    // belongs to the host and is never judged here.
    if b.len() < ipv4::MIN_HEADER_LEN {
        return Class::Drop(DropReason::TruncatedIpv4);
    }
    let daddr = [b[16], b[17], b[18], b[19]];
    if !svcs.is_vip(daddr) {
        return Class::Pass;
    }
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
    let proto = ip.protocol();
    let Some(min) = l4::min_header_len(proto) else {
        return Class::Drop(DropReason::UnsupportedProtocol);
    };
    let payload = ip.payload();
    if payload.len() < min {
        return Class::Drop(DropReason::TruncatedL4);
    }
    let (sport, dport) = l4::ports(payload).unwrap_or((0, 0));
    let tcp_flags = if proto == ipv4::proto::TCP {
        l4::tcp_flags(payload)
    } else {
        0
    };
    Class::ToVip(L4Packet {
        eth_src,
        ip: &b[..ip.total_len()],
        proto,
        saddr: ip.src(),
        daddr,
        sport,
        dport,
        tcp_flags,
    })
}
