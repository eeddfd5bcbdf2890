//! The pipeline on golden frames: every output frame is checked independently with
//! etherparse (checksums recomputed from scratch).

use super::fixture::*;
use super::*;
use crate::wire::{arp, ethernet};

const RX: RxMeta = RxMeta {
    ifindex: IFINDEX,
    pkttype: pkttype::HOST,
    csum_partial: false,
};

fn run(w: &mut Worker, sh: &Shared, frame: &[u8], now: u64) -> (Verdict, VecEmit) {
    let mut out = VecEmit::keeping();
    let svcs = sh.services.load();
    let v = w.process(sh, &svcs, now, RX, frame, &mut out);
    (v, out)
}

/// Parse an output frame and check its IPv4 header and L4 checksums from scratch.
fn check_ip_frame(f: &[u8]) -> etherparse::SlicedPacket<'_> {
    let p = etherparse::SlicedPacket::from_ethernet(f).expect("valid frame");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP header checksum");
    match &p.transport {
        Some(etherparse::TransportSlice::Tcp(t)) => {
            let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(t.checksum(), want, "TCP checksum");
        }
        Some(etherparse::TransportSlice::Udp(u)) => {
            let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), want, "UDP checksum");
        }
        _ => {}
    }
    p
}

#[test]
fn dr_rewrites_only_macs_and_ttl() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 1000);
    let syn = tcp_frame(40000, 80, true, false, b"");
    let (v, out) = run(&mut w, &sh, &syn, 0);
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(out.frames.len(), 1);
    let (ifx, f) = &out.frames[0];
    assert_eq!(*ifx, IFINDEX);
    let eth = ethernet::Frame::new_checked(&f[..]).unwrap();
    // List order is RS2, RS1 (head insertion): rr picks RS2 first.
    assert_eq!(eth.dst(), RS2_MAC);
    assert_eq!(eth.src(), DIRECTOR_MAC);
    let p = check_ip_frame(f);
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().destination(), VIP, "DR keeps the VIP");
    assert_eq!(ip.header().source(), CLIENT);
    assert_eq!(ip.header().ttl(), 63, "TTL decremented (spec 6.1)");
    // Everything after the TTL/checksum is byte-identical.
    assert_eq!(f[14 + 12..], syn[14 + 12..]);
    assert_eq!(f[14..14 + 8], syn[14..14 + 8]);
    assert_eq!(w.conns.len(), 1);
}

#[test]
fn established_packets_stick_and_new_connections_alternate() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 1000);
    let mut macs = Vec::new();
    for sport in [1000u16, 1001, 1002, 1003] {
        let (_, out) = run(&mut w, &sh, &tcp_frame(sport, 80, true, false, b""), 0);
        macs.push(ethernet::Frame::new_checked(&out.frames[0].1[..]).unwrap().dst());
    }
    assert_eq!(macs, [RS2_MAC, RS1_MAC, RS2_MAC, RS1_MAC]);
    // Data on the first connection keeps going to its server.
    for _ in 0..3 {
        let (v, out) = run(&mut w, &sh, &tcp_frame(1000, 80, false, true, b"GET /"), 1);
        assert_eq!(v, Verdict::Forwarded);
        assert_eq!(
            ethernet::Frame::new_checked(&out.frames[0].1[..]).unwrap().dst(),
            RS2_MAC
        );
    }
    assert_eq!(w.conns.len(), 4);
    let d = _ctl.all_dests();
    assert_eq!(
        d.iter().map(|d| d.active()).sum::<u32>(),
        4,
        "SYN_RECV/ESTABLISHED are active"
    );
}

#[test]
fn udp_is_forwarded_and_counted_inactive() {
    let (sh, ctl) = director();
    let mut w = Worker::new(0, 1000);
    let (v, out) = run(&mut w, &sh, &udp_frame(5353, 53, b"abcd"), 0);
    assert_eq!(v, Verdict::Forwarded);
    check_ip_frame(&out.frames[0].1);
    let inact: u32 = ctl.all_dests().iter().map(|d| d.inactive()).sum();
    assert_eq!(inact, 1, "UDP entries are never active");
}

#[test]
fn arp_for_vip_is_answered_with_the_interface_mac() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 10);
    let mut f = [0u8; 60];
    arp::Repr::request(CLIENT_MAC, CLIENT, VIP).emit_frame(&mut f, ethernet::BROADCAST);
    let rx = RxMeta {
        pkttype: pkttype::BROADCAST,
        ..RX
    };
    let mut out = VecEmit::keeping();
    let svcs = sh.services.load();
    assert_eq!(w.process(&sh, &svcs, 0, rx, &f, &mut out), Verdict::Answered);
    let r = &out.frames[0].1;
    let eth = ethernet::Frame::new_checked(&r[..]).unwrap();
    assert_eq!(eth.dst(), CLIENT_MAC);
    let a = arp::Repr::parse(eth.payload()).unwrap();
    assert_eq!(
        (a.op, a.sha, a.spa, a.tha, a.tpa),
        (arp::OP_REPLY, DIRECTOR_MAC, VIP, CLIENT_MAC, CLIENT)
    );
}

#[test]
fn arp_claims_and_reports() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 10);
    let mut f = [0u8; 60];
    // A real server without arp_ignore answering for the VIP: never learned.
    arp::Repr {
        op: arp::OP_REPLY,
        sha: RS1_MAC,
        spa: VIP,
        tha: DIRECTOR_MAC,
        tpa: DIP,
    }
    .emit_frame(&mut f, DIRECTOR_MAC);
    assert_eq!(
        run(&mut w, &sh, &f, 0).0,
        Verdict::Drop(DropReason::ArpClaimsOwnAddress)
    );
    // A reply from a real server: reported for the neighbour manager to judge.
    arp::Repr {
        op: arp::OP_REPLY,
        sha: RS1_MAC,
        spa: RS1,
        tha: DIRECTOR_MAC,
        tpa: DIP,
    }
    .emit_frame(&mut f, DIRECTOR_MAC);
    assert_eq!(
        run(&mut w, &sh, &f, 0).0,
        Verdict::Neigh {
            ifindex: IFINDEX,
            ip: RS1,
            mac: RS1_MAC
        }
    );
    // A request for some other address is not answered.
    arp::Repr::request(CLIENT_MAC, CLIENT, [10, 0, 0, 77]).emit_frame(&mut f, ethernet::BROADCAST);
    let (v, out) = run(&mut w, &sh, &f, 0);
    assert!(out.frames.is_empty());
    assert_eq!(
        v,
        Verdict::Neigh {
            ifindex: IFINDEX,
            ip: CLIENT,
            mac: CLIENT_MAC
        }
    );
}

#[test]
fn non_vip_traffic_is_left_alone_and_unknown_ports_dropped() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 10);
    let mut f = tcp_frame(1, 80, true, false, b"");
    f[14 + 19] = 99; // destination 10.0.0.99: not a VIP
    let cs = crate::wire::checksum::checksum(&{
        let mut h = f[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    f[24..26].copy_from_slice(&cs.to_be_bytes());
    assert_eq!(run(&mut w, &sh, &f, 0).0, Verdict::Pass);
    assert_eq!(
        run(&mut w, &sh, &tcp_frame(1, 443, true, false, b""), 0).0,
        Verdict::Drop(DropReason::NoService)
    );
    assert_eq!(
        run(&mut w, &sh, &tcp_frame(1, 80, false, true, b""), 0).0,
        Verdict::Drop(DropReason::NotSyn)
    );
    assert_eq!(
        run(&mut w, &sh, &tcp_frame(20, 80, true, false, b""), 0).0,
        Verdict::Drop(DropReason::SourcePort20)
    );
    let mut other = tcp_frame(1, 80, true, false, b"");
    other[0] = 0x33; // not for us (multicast) and pkttype OTHERHOST
    let rx = RxMeta {
        pkttype: pkttype::OTHERHOST,
        ..RX
    };
    let mut out = VecEmit::keeping();
    assert_eq!(
        w.process(&sh, &sh.services.load(), 0, rx, &other, &mut out),
        Verdict::Pass
    );
}

#[test]
fn no_destination_answers_port_unreachable() {
    let (sh, _ctl) = director_with("-A -t 10.0.0.100:80 -s rr\n-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 0\n");
    let mut w = Worker::new(0, 10);
    let syn = tcp_frame(4000, 80, true, false, b"");
    let (v, out) = run(&mut w, &sh, &syn, 0);
    assert_eq!(v, Verdict::Drop(DropReason::NoDestination));
    let p = check_ip_frame(&out.frames[0].1);
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!((ip.header().source(), ip.header().destination()), (VIP, CLIENT));
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 3));
    assert_eq!(crate::wire::checksum::checksum(&out.frames[0].1[34..]), 0);
}

#[test]
fn ttl_one_gets_time_exceeded_and_df_oversize_gets_frag_needed() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 10);
    let mut f = tcp_frame(4000, 80, true, false, b"");
    let mut ip = ipv4::Packet::new_checked(&mut f[14..]).unwrap();
    for _ in 0..63 {
        ip.decrement_ttl();
    }
    let (v, out) = run(&mut w, &sh, &f, 0);
    assert_eq!(v, Verdict::Drop(DropReason::TtlExceeded));
    let p = check_ip_frame(&out.frames[0].1);
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (11, 0));

    // 1501-byte DF packet on a 1500 MTU path.
    let big = tcp_frame(4001, 80, true, false, &[0u8; 1461]);
    assert_eq!(big.len() - 14, 1501);
    let (v, out) = run(&mut w, &sh, &big, 0);
    assert_eq!(v, Verdict::Drop(DropReason::FragNeeded));
    let f = &out.frames[0].1;
    assert_eq!((f[34], f[35]), (3, 4));
    assert_eq!(u16::from_be_bytes([f[40], f[41]]), 1500, "next-hop MTU");
}

use crate::wire::ipv4;

#[test]
fn unresolved_neighbour_and_deleted_destination_drop() {
    let (sh, ctl) = director();
    for d in ctl.all_dests() {
        d.clear_mac();
    }
    let mut w = Worker::new(0, 10);
    assert_eq!(
        run(&mut w, &sh, &tcp_frame(5, 80, true, false, b""), 0).0,
        Verdict::Drop(DropReason::NeighUnresolved)
    );
    let (sh, ctl) = director();
    let mut w = Worker::new(0, 10);
    assert_eq!(
        run(&mut w, &sh, &tcp_frame(6, 80, true, false, b""), 0).0,
        Verdict::Forwarded
    );
    let svc = crate::service::ServiceAddr::Inet {
        proto: crate::service::Protocol::Tcp,
        addr: std::net::IpAddr::from(VIP),
        port: 80,
    };
    ctl.delete_dest(&svc, std::net::IpAddr::from(RS2), 80).unwrap();
    assert_eq!(
        run(&mut w, &sh, &tcp_frame(6, 80, false, true, b"x"), 1).0,
        Verdict::Drop(DropReason::DestDeleted)
    );
}

#[test]
fn malformed_frames_are_dropped_by_reason() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 10);
    let good = tcp_frame(7, 80, true, false, b"");
    assert_eq!(
        run(&mut w, &sh, &good[..10], 0).0,
        Verdict::Drop(DropReason::TruncatedEthernet)
    );
    assert_eq!(
        run(&mut w, &sh, &good[..30], 0).0,
        Verdict::Drop(DropReason::TruncatedIpv4)
    );
    let mut bad = good.clone();
    bad[14 + 10] ^= 0xff;
    assert_eq!(run(&mut w, &sh, &bad, 0).0, Verdict::Drop(DropReason::IpChecksum));
    let mut frag = udp_frame(9, 53, b"abcdefgh");
    let mut ip = ipv4::Packet::new_checked(&mut frag[14..]).unwrap();
    let _ = &mut ip;
    frag[14 + 6] = 0x20; // MF
    let c = {
        let mut h = frag[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        crate::wire::checksum::checksum(&h)
    };
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(run(&mut w, &sh, &frag, 0).0, Verdict::Drop(DropReason::Fragment));
    let mut own = good.clone();
    own[6..12].copy_from_slice(&DIRECTOR_MAC);
    assert_eq!(run(&mut w, &sh, &own, 0).0, Verdict::Drop(DropReason::OwnMac));
    let mut vlan = good.clone();
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(run(&mut w, &sh, &vlan, 0).0, Verdict::Drop(DropReason::Vlan));
    assert_eq!(w.counters.drops(DropReason::IpChecksum), 1);
}

#[test]
fn partial_checksum_is_completed_on_forward() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 10);
    let mut f = udp_frame(5353, 53, b"hello");
    f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0x12, 0x34]); // pseudo-header-only sum
    let rx = RxMeta {
        csum_partial: true,
        ..RX
    };
    let mut out = VecEmit::keeping();
    assert_eq!(
        w.process(&sh, &sh.services.load(), 0, rx, &f, &mut out),
        Verdict::Forwarded
    );
    check_ip_frame(&out.frames[0].1);
}

#[test]
fn expiry_releases_entries() {
    let (sh, ctl) = director();
    let mut w = Worker::new(0, 10);
    run(&mut w, &sh, &udp_frame(1, 53, b"a"), 0);
    assert_eq!(w.expire(299_999), 0);
    assert_eq!(w.expire(300_000), 1);
    assert!(ctl.all_dests().iter().all(|d| d.inactive() == 0));
}
