//! ICMP echo to a VIP (issue 17.6) and VRRP-gated VIPs (issue 18.1) on golden frames.

use super::fixture::*;
use super::vipgate::GateState;
use super::*;
use crate::wire::{arp, ethernet};

const RX: RxMeta = RxMeta {
    ifindex: IFINDEX,
    pkttype: pkttype::HOST,
    csum_partial: false,
    vlan_tci: None,
};

fn echo_request(to: [u8; 4], tos: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut ip = etherparse::Ipv4Header::new(0, 37, etherparse::IpNumber::ICMP, CLIENT.octets(), to).unwrap();
    ip.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap();
    ip.dont_fragment = true;
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .icmpv4_echo_request(id, seq);
    let mut v = Vec::new();
    b.write(&mut v, data).unwrap();
    v
}

fn process(w: &mut Worker, sh: &Shared, rx: RxMeta, f: &[u8]) -> (Verdict, VecEmit) {
    let mut out = VecEmit::keeping();
    let svcs = sh.services.load();
    let v = w.process(sh, &svcs, 0, rx, f, &mut out);
    (v, out)
}

fn gate(sh: &Shared, held: bool) {
    sh.vip_gate.publish(GateState {
        gated: [VIP].into_iter().collect(),
        held: if held {
            [VIP].into_iter().collect()
        } else {
            Default::default()
        },
    });
}

#[test]
fn echo_to_a_vip_is_answered_from_the_vip() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 10);
    let data: Vec<u8> = (0..56u8).collect();
    let req = echo_request(VIP.octets(), 0x10, 0x1234, 7, &data);
    let (v, out) = process(&mut w, &sh, RX, &req);
    assert_eq!(v, Verdict::Answered);
    assert_eq!(out.frames.len(), 1);
    let (ifx, f) = &out.frames[0];
    assert_eq!(*ifx, IFINDEX);
    // Checked independently: etherparse recomputes both checksums from scratch.
    let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("not Ethernet")
    };
    assert_eq!(eth.destination(), CLIENT_MAC);
    assert_eq!(eth.source(), DIRECTOR_MAC);
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!((h.source, h.destination), (VIP.octets(), CLIENT.octets()));
    assert_eq!(h.time_to_live, 64);
    assert_eq!(h.dscp.value(), 0x10 >> 2, "TOS as the request's");
    assert!(!h.dont_fragment);
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id: 0x1234, seq: 7 })
    );
    assert_eq!(icmp.payload(), &data[..]);
    let want = icmp.header().icmp_type.calc_checksum(icmp.payload());
    assert_eq!(icmp.checksum(), want, "ICMP checksum");
    // Odd-sized data (the checksum's last byte padded).
    let (v, out) = process(&mut w, &sh, RX, &echo_request(VIP.octets(), 0, 1, 1, b"abc"));
    assert_eq!(v, Verdict::Answered);
    let p = etherparse::SlicedPacket::from_ethernet(&out.frames[0].1).unwrap();
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    assert_eq!(icmp.checksum(), icmp.header().icmp_type.calc_checksum(icmp.payload()));
}

#[test]
fn echo_with_a_bad_checksum_or_not_to_a_vip_is_not_answered() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 10);
    let mut bad = echo_request(VIP.octets(), 0, 1, 1, b"hello");
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert_eq!(
        process(&mut w, &sh, RX, &bad).0,
        Verdict::Drop(DropReason::IcmpChecksum)
    );
    // To the director's own address: the host's stack answers, not uvs.
    let (v, out) = process(&mut w, &sh, RX, &echo_request(DIP.octets(), 0, 1, 1, b"x"));
    assert_eq!(v, Verdict::Pass);
    assert!(out.frames.is_empty());
}

#[test]
fn a_gated_vip_is_served_only_while_held() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 100);
    let mut arp_req = [0u8; 60];
    arp::Repr::request(CLIENT_MAC, CLIENT, VIP).emit_frame(&mut arp_req, ethernet::BROADCAST);
    let bcast = RxMeta {
        pkttype: pkttype::BROADCAST,
        ..RX
    };
    let syn = tcp_frame(40000, 80, true, false, b"");
    let ping = echo_request(VIP.octets(), 0, 9, 1, b"ping");

    gate(&sh, false);
    let (v, out) = process(&mut w, &sh, bcast, &arp_req);
    assert_ne!(v, Verdict::Answered, "no ARP answer while backup");
    assert!(out.frames.is_empty());
    assert_eq!(process(&mut w, &sh, RX, &syn).0, Verdict::Drop(DropReason::VipNotHeld));
    let (v, out) = process(&mut w, &sh, RX, &ping);
    assert_eq!(v, Verdict::Drop(DropReason::VipNotHeld));
    assert!(out.frames.is_empty(), "no echo reply while backup");
    assert_eq!(w.counters.drops(DropReason::VipNotHeld), 2);
    assert_eq!(w.conns.len(), 0);

    // keepalived becomes MASTER: served at once.
    gate(&sh, true);
    assert_eq!(process(&mut w, &sh, bcast, &arp_req).0, Verdict::Answered);
    assert_eq!(process(&mut w, &sh, RX, &syn).0, Verdict::Forwarded);
    assert_eq!(process(&mut w, &sh, RX, &ping).0, Verdict::Answered);

    // Back to BACKUP: an established connection's frames are not forwarded either
    // (the new master forwards them, with the entry sync taught it).
    gate(&sh, false);
    let ack = tcp_frame(40000, 80, false, true, b"data");
    assert_eq!(process(&mut w, &sh, RX, &ack).0, Verdict::Drop(DropReason::VipNotHeld));
}

#[test]
fn a_held_vrrp_address_that_is_no_vip_is_answered_by_arp_only_while_held() {
    // The NAT real servers' gateway: a second address of keepalived's sync group.
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 100);
    let gw = Ipv4Addr::new(10, 0, 0, 254);
    let mut req = [0u8; 60];
    arp::Repr::request(RS1_MAC, RS1, gw).emit_frame(&mut req, ethernet::BROADCAST);
    let bcast = RxMeta {
        pkttype: pkttype::BROADCAST,
        ..RX
    };
    let publish = |held: &[Ipv4Addr]| {
        sh.vip_gate.publish(GateState {
            gated: [VIP, gw].into_iter().collect(),
            held: held.iter().copied().collect(),
        })
    };
    publish(&[]);
    let (v, out) = process(&mut w, &sh, bcast, &req);
    assert_ne!(v, Verdict::Answered, "not held: no answer");
    assert!(out.frames.is_empty());
    publish(&[VIP, gw]);
    let (v, out) = process(&mut w, &sh, bcast, &req);
    assert_eq!(v, Verdict::Answered);
    let (ifx, f) = &out.frames[0];
    assert_eq!(*ifx, IFINDEX);
    let r = arp::Repr::parse(&f[14..]).unwrap();
    assert_eq!(
        (r.op, r.sha, r.spa, r.tha, r.tpa),
        (arp::OP_REPLY, DIRECTOR_MAC, gw, RS1_MAC, RS1)
    );
    assert_eq!(&f[..6], &RS1_MAC, "unicast to the asker");
    // An address that is neither a VIP nor a VRRP address: not ours to answer.
    let mut other = [0u8; 60];
    arp::Repr::request(RS1_MAC, RS1, Ipv4Addr::new(10, 0, 0, 253)).emit_frame(&mut other, ethernet::BROADCAST);
    assert_ne!(process(&mut w, &sh, bcast, &other).0, Verdict::Answered);
}
