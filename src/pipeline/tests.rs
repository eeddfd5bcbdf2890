//! The pipeline on golden frames: every output frame is checked independently with
//! etherparse (checksums recomputed from scratch).

use super::fixture::*;
use super::*;
use crate::pipeline::Event;
use crate::wire::{arp, ethernet};

const RX: RxMeta = RxMeta {
    ifindex: IFINDEX,
    pkttype: pkttype::HOST,
    csum_partial: false,
    vlan_tci: None,
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
    assert_eq!(ip.header().destination(), VIP.octets(), "DR keeps the VIP");
    assert_eq!(ip.header().source(), CLIENT.octets());
    assert_eq!(ip.header().ttl(), 63, "TTL decremented (ip_vs_xmit.c: decrement_ttl)");
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

/// A tag the NIC stripped into the ring metadata: VID != 0 is dropped as
/// `vlan_tagged` (ARP included: it is not the director's VLAN); VID 0 (priority
/// tagged) is handled as untagged, whatever its priority bits.
#[test]
fn vlan_metadata_drops_tagged_frames_but_not_priority_tags() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 100);
    let svcs = sh.services.load();
    let mut arp_req = [0u8; 60];
    arp::Repr::request(CLIENT_MAC, CLIENT, VIP).emit_frame(&mut arp_req, ethernet::BROADCAST);
    for (i, (tci, tagged)) in [
        (5u16, true),
        (0x6005, true),
        (0x0fff, true),
        (0, false),
        (0x6000, false),
        (0x1000, false),
    ]
    .into_iter()
    .enumerate()
    {
        let rx = RxMeta {
            vlan_tci: Some(tci),
            ..RX
        };
        let syn = tcp_frame(42000 + i as u16, 80, true, false, b"");
        let mut out = VecEmit::keeping();
        let v = w.process(&sh, &svcs, 0, rx, &syn, &mut out);
        let before = w.counters.drops(DropReason::Vlan);
        let a = w.process(
            &sh,
            &svcs,
            0,
            RxMeta {
                pkttype: pkttype::BROADCAST,
                ..rx
            },
            &arp_req,
            &mut out,
        );
        if tagged {
            assert_eq!(v, Verdict::Drop(DropReason::Vlan), "TCI {tci:#06x}");
            assert_eq!(a, Verdict::Drop(DropReason::Vlan), "ARP, TCI {tci:#06x}");
            assert_eq!(w.counters.drops(DropReason::Vlan), before + 1);
            assert!(out.frames.is_empty(), "TCI {tci:#06x}: nothing sent");
        } else {
            assert_eq!(v, Verdict::Forwarded, "TCI {tci:#06x} is a priority tag");
            assert_eq!(a, Verdict::Answered, "ARP, TCI {tci:#06x}");
        }
    }
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
    arp::Repr::request(CLIENT_MAC, CLIENT, Ipv4Addr::new(10, 0, 0, 77)).emit_frame(&mut f, ethernet::BROADCAST);
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
    assert_eq!(
        (ip.header().source(), ip.header().destination()),
        (VIP.octets(), CLIENT.octets())
    );
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

/// `expire_nodest_conn` (`ip_vs_core.c: ip_vs_in`, "Check the server status"): a
/// packet for a connection whose real server was deleted expires the entry at once
/// (`ip_vs_conn_expire_now`) and is not forwarded; one that may start a connection (a
/// SYN, a UDP datagram) is then scheduled afresh to a live server. Without the sysctl
/// the entry stays and its packets are dropped until it times out.
#[test]
fn expire_nodest_conn_expires_the_entry_of_a_deleted_server() {
    let svc = |proto, port| crate::service::ServiceAddr::Inet {
        proto,
        addr: std::net::IpAddr::from(VIP),
        port,
    };
    let key = |proto, cport, vport| crate::conn::ConnKey {
        proto,
        caddr: CLIENT,
        cport,
        vaddr: VIP,
        vport,
    };
    let dst_mac = |out: &VecEmit| ethernet::Frame::new_checked(&out.frames[0].1[..]).unwrap().dst();
    for expire in [false, true] {
        let (sh, ctl) = director();
        crate::sysctl::apply(&sh.ipvs, &[format!("expire_nodest_conn={}", u8::from(expire))]).unwrap();
        let mut w = Worker::new(0, 10);
        // rr picks RS2 first for TCP and for UDP.
        let (v, out) = run(&mut w, &sh, &tcp_frame(7, 80, true, false, b""), 0);
        assert_eq!((v, dst_mac(&out)), (Verdict::Forwarded, RS2_MAC));
        let (v, out) = run(&mut w, &sh, &udp_frame(7, 53, b"q1"), 0);
        assert_eq!((v, dst_mac(&out)), (Verdict::Forwarded, RS2_MAC));
        ctl.delete_dest(&svc(crate::service::Protocol::Tcp, 80), std::net::IpAddr::from(RS2), 80)
            .unwrap();
        ctl.delete_dest(&svc(crate::service::Protocol::Udp, 53), std::net::IpAddr::from(RS2), 53)
            .unwrap();
        let tcp_key = key(ipv4::proto::TCP, 7, 80);
        let udp_key = key(ipv4::proto::UDP, 7, 53);

        // Data of the established connection: never forwarded to the deleted server.
        let (v, out) = run(&mut w, &sh, &tcp_frame(7, 80, false, true, b"x"), 1_000);
        assert!(out.frames.is_empty(), "expire_nodest_conn={expire}");
        if expire {
            assert_eq!(
                v,
                Verdict::Drop(DropReason::NotSyn),
                "expired, and an ACK starts nothing"
            );
            assert!(w.conns.get(&tcp_key).is_none(), "entry expired at once");
        } else {
            assert_eq!(v, Verdict::Drop(DropReason::DestDeleted));
            assert!(w.conns.get(&tcp_key).is_some(), "entry kept until it times out");
        }
        // The client's next SYN on the same port: rescheduled to RS1 at once with the
        // sysctl; without it, dropped for as long as the stale entry lives.
        let (v, out) = run(&mut w, &sh, &tcp_frame(7, 80, true, false, b""), 2_000);
        if expire {
            assert_eq!((v, dst_mac(&out)), (Verdict::Forwarded, RS1_MAC));
            assert!(w.conns.get(&tcp_key).is_some_and(|c| c.dest.is_available()));
        } else {
            assert_eq!(v, Verdict::Drop(DropReason::DestDeleted));
        }
        // UDP: the next datagram of the flow goes to RS1 with the sysctl.
        let (v, out) = run(&mut w, &sh, &udp_frame(7, 53, b"q2"), 2_000);
        if expire {
            assert_eq!((v, dst_mac(&out)), (Verdict::Forwarded, RS1_MAC));
            assert!(w.conns.get(&udp_key).is_some_and(|c| c.dest.is_available()));
        } else {
            assert_eq!(v, Verdict::Drop(DropReason::DestDeleted));
            assert!(w.conns.get(&udp_key).is_some_and(|c| !c.dest.is_available()));
        }
    }
}

/// `ip_vs_in`: with expire_nodest_conn, a SYN on the live entry of a quiesced (weight
/// 0) server is scheduled afresh, but only while conn_reuse_mode is non-zero (the
/// check sits inside the kernel's conn_reuse_mode block).
#[test]
fn quiesced_server_gives_way_to_a_syn_only_with_conn_reuse_mode() {
    for (reuse, want) in [(1, RS1_MAC), (0, RS2_MAC)] {
        let (sh, ctl) = director();
        crate::sysctl::apply(
            &sh.ipvs,
            &["expire_nodest_conn=1".into(), format!("conn_reuse_mode={reuse}")],
        )
        .unwrap();
        let mut w = Worker::new(0, 10);
        let (_, out) = run(&mut w, &sh, &tcp_frame(8, 80, true, false, b""), 0);
        assert_eq!(
            ethernet::Frame::new_checked(&out.frames[0].1[..]).unwrap().dst(),
            RS2_MAC
        );
        let quiesce =
            crate::ipvsadm::parse_args(&["-e", "-t", "10.0.0.100:80", "-r", "10.0.0.12:80", "-g", "-w", "0"]).unwrap();
        ctl.apply(&quiesce).unwrap();
        let (v, out) = run(&mut w, &sh, &tcp_frame(8, 80, true, false, b""), 1_000);
        assert_eq!(v, Verdict::Forwarded);
        assert_eq!(
            ethernet::Frame::new_checked(&out.frames[0].1[..]).unwrap().dst(),
            want,
            "conn_reuse_mode={reuse}"
        );
    }
}

/// A sysctl written while the worker runs applies to its next packet: no restart, no
/// new table.
#[test]
fn sysctl_changes_reach_a_running_worker() {
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 10);
    // sloppy_tcp=0: an ACK without an entry is not scheduled.
    assert_eq!(
        run(&mut w, &sh, &tcp_frame(9, 80, false, true, b"x"), 0).0,
        Verdict::Drop(DropReason::NotSyn)
    );
    let a = crate::sysctl::serve(&sh.ipvs, &["net.ipv4.vs.sloppy_tcp=1"]);
    assert_eq!((a.code, a.out.as_str()), (0, "net.ipv4.vs.sloppy_tcp = 1\n"));
    assert_eq!(
        run(&mut w, &sh, &tcp_frame(9, 80, false, true, b"x"), 1).0,
        Verdict::Forwarded
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
    assert_eq!(frag[14 + 7], 0);
    set_frag_word(&mut frag[14..], 0x2000); // MF
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

// ---- NAT and TUN ----

/// Set an IPv4 header's flags and fragment offset word (DF 0x4000, MF 0x2000, offset
/// in 8-byte units) and fix its checksum (20-byte header).
fn set_frag_word(ip: &mut [u8], word: u16) {
    ip[6..8].copy_from_slice(&word.to_be_bytes());
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = crate::wire::checksum::checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

fn ip_of(f: &[u8]) -> ipv4::Packet<&[u8]> {
    ipv4::Packet::new_checked(&f[14..]).unwrap()
}

#[test]
fn nat_request_and_reply_round_trip() {
    let (sh, ctl) = director_all();
    let mut w = Worker::new(0, 100);
    let syn = tcp_frame(40000, 8080, true, false, b"");
    let (v, out) = run(&mut w, &sh, &syn, 0);
    assert_eq!(v, Verdict::Forwarded);
    let f = &out.frames[0].1;
    check_ip_frame(f);
    let ip = ip_of(f);
    assert_eq!((ip.src(), ip.dst(), ip.ttl()), (CLIENT, RS1, 63));
    assert_eq!(crate::wire::l4::ports(ip.payload()), Some((40000, 8888)), "port mapped");
    assert_eq!(ethernet::Frame::new_checked(&f[..]).unwrap().dst(), RS1_MAC);

    // The SYN-ACK from RS1:8888 back to the client: source becomes VIP:8080 and it
    // goes to the default gateway's MAC.
    let sa = reply_frame(RS1, RS1_MAC, 8888, 40000, true, b"");
    let (v, out) = run(&mut w, &sh, &sa, 1);
    assert_eq!(v, Verdict::Forwarded);
    let f = &out.frames[0].1;
    check_ip_frame(f);
    let ip = ip_of(f);
    assert_eq!((ip.src(), ip.dst()), (VIP, CLIENT));
    assert_eq!(crate::wire::l4::ports(ip.payload()), Some((8080, 40000)));
    let eth = ethernet::Frame::new_checked(&f[..]).unwrap();
    assert_eq!((eth.src(), eth.dst()), (DIRECTOR_MAC, CLIENT_MAC));
    let c = w.conns.iter().next().unwrap().1;
    assert_eq!(c.state, crate::conn::tcp::TcpState::SynRecv, "SYN(IN), SYN+ACK(OUT)");
    let d = &ctl
        .all_dests()
        .into_iter()
        .find(|d| d.method() == crate::service::ForwardMethod::Masq)
        .unwrap();
    assert_eq!(d.stats.totals().outpkts, 1, "out counts exist for NAT");

    // A reply nobody asked for (unknown client port) is left to the kernel.
    let stray = reply_frame(RS1, RS1_MAC, 8888, 40001, false, b"x");
    assert_eq!(run(&mut w, &sh, &stray, 1).0, Verdict::Pass);
}

#[test]
fn nat_reply_waits_for_neighbour_and_asks_for_it() {
    let (sh, _ctl) = director_all();
    sh.publish_neigh(Default::default());
    let mut w = Worker::new(0, 100);
    run(&mut w, &sh, &tcp_frame(40000, 8080, true, false, b""), 0);
    let (v, _) = run(&mut w, &sh, &reply_frame(RS1, RS1_MAC, 8888, 40000, true, b""), 1);
    assert_eq!(v, Verdict::Drop(DropReason::NeighUnresolved));
    assert_eq!(
        w.events,
        vec![Event::Solicit {
            ifindex: IFINDEX,
            ip: GATEWAY
        }]
    );
    assert_eq!(
        w.conns.iter().next().unwrap().1.state,
        crate::conn::tcp::TcpState::SynRecv
    );
    sh.publish_neigh([((IFINDEX, GATEWAY), CLIENT_MAC)].into_iter().collect());
    assert_eq!(
        run(&mut w, &sh, &reply_frame(RS1, RS1_MAC, 8888, 40000, true, b""), 2).0,
        Verdict::Forwarded
    );
}

#[test]
fn nat_udp_zero_checksum_gets_a_full_one() {
    let (sh, _ctl) = director_all();
    let mut w = Worker::new(0, 100);
    let mut f = udp_frame(5353, 54, b"abcd");
    f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
    let (v, out) = run(&mut w, &sh, &f, 0);
    assert_eq!(v, Verdict::Forwarded);
    let o = &out.frames[0].1;
    assert_ne!(u16::from_be_bytes([o[40], o[41]]), 0);
    check_ip_frame(o);
}

fn icmp_frame(
    src: [u8; 4],
    dst: [u8; 4],
    eth_src: [u8; 6],
    icmp_type: u8,
    code: u8,
    rest: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![icmp_type, code, 0, 0];
    icmp.extend_from_slice(&rest.to_be_bytes());
    icmp.extend_from_slice(quoted);
    let c = crate::wire::checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut v = vec![0u8; 14 + 20];
    ethernet::emit(&mut v, DIRECTOR_MAC, eth_src, ethernet::ethertype::IPV4);
    ipv4::Repr {
        tos: 0,
        total_len: (20 + icmp.len()) as u16,
        ident: 3,
        dont_frag: false,
        ttl: 64,
        protocol: 1,
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(dst),
    }
    .emit(&mut v[14..]);
    v.extend(icmp);
    v
}

#[test]
fn nat_icmp_from_real_server_is_translated() {
    let (sh, _ctl) = director_all();
    let mut w = Worker::new(0, 100);
    let req = udp_frame(5353, 54, b"hello");
    let (_, out) = run(&mut w, &sh, &req, 0);
    let forwarded = out.frames[0].1[14..].to_vec(); // client -> RS1:5454, as RS1 got it
    let unreach = icmp_frame(RS1.octets(), CLIENT.octets(), RS1_MAC, 3, 3, 0, &forwarded);
    let (v, out) = run(&mut w, &sh, &unreach, 1);
    assert_eq!(v, Verdict::Forwarded);
    let f = &out.frames[0].1;
    let p = check_ip_frame(f);
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (ip.header().source(), ip.header().destination()),
        (VIP.octets(), CLIENT.octets())
    );
    assert_eq!(crate::wire::checksum::checksum(&f[34..]), 0, "ICMP checksum");
    let q = ipv4::Packet::new_checked(&f[42..]).unwrap();
    assert!(q.verify_checksum());
    assert_eq!((q.src(), q.dst()), (CLIENT, VIP));
    assert_eq!(crate::wire::l4::ports(q.payload()), Some((5353, 54)));
}

#[test]
fn nat_icmp_from_client_path_reaches_the_real_server() {
    let (sh, _ctl) = director_all();
    let mut w = Worker::new(0, 100);
    run(&mut w, &sh, &tcp_frame(40000, 8080, true, false, b""), 0);
    // A router on the client's path says the VIP's reply was too big: it quotes
    // VIP:8080 -> client:40000.
    let mut quoted = vec![0u8; 28];
    ipv4::Repr {
        tos: 0,
        total_len: 1500,
        ident: 1,
        dont_frag: true,
        ttl: 60,
        protocol: 6,
        src: VIP,
        dst: CLIENT,
    }
    .emit(&mut quoted);
    quoted[20..22].copy_from_slice(&8080u16.to_be_bytes());
    quoted[22..24].copy_from_slice(&40000u16.to_be_bytes());
    let need = icmp_frame([198, 51, 100, 1], VIP.octets(), CLIENT_MAC, 3, 4, 1400, &quoted);
    let (v, out) = run(&mut w, &sh, &need, 1);
    assert_eq!(v, Verdict::Forwarded);
    let f = &out.frames[0].1;
    assert_eq!(ethernet::Frame::new_checked(&f[..]).unwrap().dst(), RS1_MAC);
    assert_eq!(ip_of(f).dst(), RS1, "outer destination is the real server");
    assert_eq!(crate::wire::checksum::checksum(&f[34..]), 0);
    // The quote is truncated (its total length says 1500), so read it by offset.
    let q = &f[42..];
    assert_eq!(q[12..16], RS1.octets(), "quoted source is the real server");
    assert_eq!(crate::wire::l4::ports(&q[20..]), Some((8888, 40000)));
    assert_eq!(crate::wire::checksum::checksum(&q[..20]), 0, "quoted header checksum");
    // ICMP about an unknown connection is left alone.
    let other = icmp_frame(
        [198, 51, 100, 1],
        VIP.octets(),
        CLIENT_MAC,
        3,
        4,
        1400,
        &quoted[..20]
            .iter()
            .copied()
            .chain([0, 81, 0, 1, 0, 0, 0, 0])
            .collect::<Vec<_>>(),
    );
    assert_eq!(run(&mut w, &sh, &other, 1).0, Verdict::Pass);
}

#[test]
fn tun_encapsulates_with_the_inner_packet_untouched_but_ttl() {
    let (sh, _ctl) = director_all();
    let mut w = Worker::new(0, 100);
    let syn = tcp_frame(40000, 443, true, false, b"");
    let (v, out) = run(&mut w, &sh, &syn, 0);
    assert_eq!(v, Verdict::Forwarded);
    let f = &out.frames[0].1;
    assert_eq!(ethernet::Frame::new_checked(&f[..]).unwrap().dst(), RS2_MAC);
    let outer = ip_of(f);
    assert!(outer.verify_checksum());
    assert_eq!((outer.src(), outer.dst(), outer.protocol()), (DIP, RS2, 4));
    assert_eq!(
        (outer.ttl(), outer.dont_frag(), outer.ident()),
        (63, true, 0),
        "TTL = inner after decrement, DF copied, ID 0"
    );
    assert_eq!(outer.total_len(), syn.len() - 14 + 20);
    let inner = &f[34..];
    let p = etherparse::SlicedPacket::from_ip(inner).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (ip.header().source(), ip.header().destination(), ip.header().ttl()),
        (CLIENT.octets(), VIP.octets(), 63)
    );
    assert_eq!(
        &inner[8..],
        &{
            let mut v = syn[14..].to_vec();
            ipv4::Packet::new_checked(&mut v[..]).unwrap().decrement_ttl();
            v
        }[8..]
    );
}

#[test]
fn tun_mtu_df_sends_frag_needed_and_no_df_fragments() {
    let (sh, _ctl) = director_all();
    let mut w = Worker::new(0, 100);
    // TV 10.14: inner 1480 with DF fits exactly (outer 1500).
    let ok = tcp_frame(1, 443, true, false, &[7u8; 1440]);
    assert_eq!(ok.len() - 14, 1480);
    let (v, out) = run(&mut w, &sh, &ok, 0);
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(ip_of(&out.frames[0].1).total_len(), 1500);
    // Inner 1481 with DF: ICMP frag-needed, MTU 1480, to the client; dropped.
    let big = tcp_frame(2, 443, true, false, &[7u8; 1441]);
    let (v, out) = run(&mut w, &sh, &big, 0);
    assert_eq!(v, Verdict::Drop(DropReason::FragNeeded));
    let f = &out.frames[0].1;
    assert_eq!((f[34], f[35], u16::from_be_bytes([f[40], f[41]])), (3, 4, 1480));
    assert_eq!(ip_of(f).dst(), CLIENT);
    // Without DF: the outer packet is fragmented (offsets in 8-byte units, MF).
    let mut nodf = big.clone();
    set_frag_word(&mut nodf[14..], 0);
    let (v, out) = run(&mut w, &sh, &nodf, 0);
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(out.frames.len(), 2);
    let (a, b) = (ip_of(&out.frames[0].1), ip_of(&out.frames[1].1));
    assert!(a.more_frags() && !b.more_frags());
    assert_eq!(a.frag_offset(), 0);
    assert_eq!(b.frag_offset() as usize * 8, a.total_len() - 20);
    assert_eq!(a.ident(), b.ident());
    assert!(a.verify_checksum() && b.verify_checksum());
    assert_eq!(a.total_len() - 20 + b.total_len() - 20, 1481);
}

#[test]
fn tun_pmtu_from_a_router_reaches_the_client_and_is_remembered() {
    let (sh, _ctl) = director_all();
    let mut w = Worker::new(0, 100);
    let syn = tcp_frame(40000, 443, true, false, &[1u8; 1300]);
    let (_, out) = run(&mut w, &sh, &syn, 0);
    let sent = out.frames[0].1[14..].to_vec(); // DIP -> RS2, IPIP, 1360 bytes
    // A router on the way to RS2 can only carry 1200 bytes.
    let need = icmp_frame([10, 0, 0, 1], DIP.octets(), CLIENT_MAC, 3, 4, 1200, &sent[..20 + 28]);
    let (v, out) = run(&mut w, &sh, &need, 1);
    assert_eq!(v, Verdict::Answered);
    let f = &out.frames[0].1;
    assert_eq!((ip_of(f).src(), ip_of(f).dst()), (VIP, CLIENT));
    assert_eq!(
        (f[34], f[35], u16::from_be_bytes([f[40], f[41]])),
        (3, 4, 1180),
        "MTU - 20 to the client"
    );
    assert_eq!(crate::wire::checksum::checksum(&f[34..]), 0);
    // The learnt path MTU applies to the next big packet at once.
    let (v, out) = run(&mut w, &sh, &tcp_frame(40000, 443, false, true, &[1u8; 1200]), 2);
    assert_eq!(v, Verdict::Drop(DropReason::FragNeeded));
    assert_eq!(u16::from_be_bytes([out.frames[0].1[40], out.frames[0].1[41]]), 1180);
    // An error about a tunnel to an unknown address is not ours.
    let mut other = sent[..48].to_vec();
    other[16..20].copy_from_slice(&[10, 0, 0, 99]);
    let h = crate::wire::checksum::checksum(&{
        let mut x = other[..20].to_vec();
        x[10] = 0;
        x[11] = 0;
        x
    });
    other[10..12].copy_from_slice(&h.to_be_bytes());
    let (v, _) = run(
        &mut w,
        &sh,
        &icmp_frame([10, 0, 0, 1], DIP.octets(), CLIENT_MAC, 3, 4, 1200, &other),
        3,
    );
    assert_eq!(v, Verdict::Pass);
}

/// RULES_ALL plus TUN services with GUE (port 444, `--tun-port 6080`, outer UDP
/// checksum) and GRE (port 445, with and without the GRE checksum: 445, 446).
fn director_encap() -> (Arc<Shared>, crate::ctl::Ctl) {
    director_with(&format!(
        "{RULES_ALL}-A -t 10.0.0.100:444 -s rr\n-a -t 10.0.0.100:444 -r 10.0.0.12:444 -i --tun-type gue --tun-port 6080 --tun-csum\n\
         -A -t 10.0.0.100:445 -s rr\n-a -t 10.0.0.100:445 -r 10.0.0.12:445 -i --tun-type gre --tun-csum\n\
         -A -t 10.0.0.100:446 -s rr\n-a -t 10.0.0.100:446 -r 10.0.0.12:446 -i --tun-type gre\n"
    ))
}

/// The client's IP packet as the real server must get it: TTL decremented.
fn decremented(frame: &[u8]) -> Vec<u8> {
    let mut v = frame[14..].to_vec();
    ipv4::Packet::new_checked(&mut v[..]).unwrap().decrement_ttl();
    v
}

#[test]
fn tun_gue_puts_udp_and_gue_headers_before_the_inner_packet() {
    use crate::wire::checksum;
    let (sh, _ctl) = director_encap();
    let mut w = Worker::new(0, 100);
    let syn = tcp_frame(40000, 444, true, false, b"hello");
    let (v, out) = run(&mut w, &sh, &syn, 0);
    assert_eq!(v, Verdict::Forwarded);
    let f = &out.frames[0].1;
    let outer = ip_of(f);
    assert!(outer.verify_checksum());
    assert_eq!((outer.src(), outer.dst(), outer.protocol()), (DIP, RS2, 17));
    assert_eq!(outer.total_len(), syn.len() - 14 + 20 + 8 + 4);
    let udp = &f[34..];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    assert!(
        (32768..61000).contains(&sport),
        "source port {sport} in the ephemeral range"
    );
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 6080);
    assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, udp.len());
    // --tun-csum: a valid UDP checksum over the pseudo header and the segment.
    assert_ne!(&udp[6..8], &[0, 0]);
    let acc = checksum::pseudo_header(DIP, RS2, 17, udp.len() as u16);
    assert_eq!(checksum::finish(checksum::sum(acc, udp)), 0);
    // GUE variant 0, no options, inner protocol IPIP.
    assert_eq!(&udp[8..12], &[0, 4, 0, 0]);
    assert_eq!(&udp[12..], &decremented(&syn)[..]);
    // The same flow keeps its source port; another flow may not.
    let (_, again) = run(&mut w, &sh, &tcp_frame(40000, 444, false, true, b"x"), 1);
    assert_eq!(&again.frames[0].1[34..36], &udp[0..2]);
}

#[test]
fn tun_gre_with_and_without_its_checksum() {
    use crate::wire::checksum;
    let (sh, _ctl) = director_encap();
    let mut w = Worker::new(0, 100);
    for (port, csum) in [(445u16, true), (446, false)] {
        let syn = tcp_frame(40000, port, true, false, b"hello");
        let (v, out) = run(&mut w, &sh, &syn, 0);
        assert_eq!(v, Verdict::Forwarded);
        let f = &out.frames[0].1;
        let outer = ip_of(f);
        assert!(outer.verify_checksum());
        assert_eq!((outer.dst(), outer.protocol()), (RS2, 47));
        let gre = &f[34..];
        let hl = if csum { 8 } else { 4 };
        assert_eq!(outer.total_len(), syn.len() - 14 + 20 + hl);
        assert_eq!(&gre[0..4], &[if csum { 0x80 } else { 0 }, 0, 0x08, 0x00]);
        if csum {
            assert_eq!(checksum::checksum(gre), 0, "GRE checksum over header and payload");
            assert_eq!(&gre[6..8], &[0, 0], "reserved");
        }
        assert_eq!(&gre[hl..], &decremented(&syn)[..]);
    }
}

#[test]
fn tun_gue_mtu_counts_the_outer_headers_and_fragments_carry_them_once() {
    use crate::wire::checksum;
    let (sh, _ctl) = director_encap();
    let mut w = Worker::new(0, 100);
    // Outer headers 20 + 8 + 4: an inner packet of 1468 bytes fills a 1500 MTU.
    let fits = tcp_frame(1, 444, true, false, &[7u8; 1428]);
    assert_eq!(fits.len() - 14, 1468);
    let (v, out) = run(&mut w, &sh, &fits, 0);
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(ip_of(&out.frames[0].1).total_len(), 1500);
    // One byte more with DF: frag-needed to the client with MTU 1468.
    let big = tcp_frame(2, 444, true, false, &[7u8; 1429]);
    let (v, out) = run(&mut w, &sh, &big, 0);
    assert_eq!(v, Verdict::Drop(DropReason::FragNeeded));
    let f = &out.frames[0].1;
    assert_eq!((f[34], f[35], u16::from_be_bytes([f[40], f[41]])), (3, 4, 1468));
    // Without DF: the outer packet is fragmented; reassembled, it is one UDP datagram
    // with a valid checksum and the GUE header once, in front.
    let mut nodf = big.clone();
    set_frag_word(&mut nodf[14..], 0);
    let (v, out) = run(&mut w, &sh, &nodf, 0);
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(out.frames.len(), 2);
    let mut whole = Vec::new();
    for (_, fr) in &out.frames {
        let p = ip_of(fr);
        assert!(p.verify_checksum());
        assert_eq!(p.frag_offset() as usize * 8, whole.len());
        whole.extend_from_slice(&fr[34..14 + p.total_len()]);
    }
    let acc = checksum::pseudo_header(DIP, RS2, 17, whole.len() as u16);
    assert_eq!(checksum::finish(checksum::sum(acc, &whole)), 0);
    assert_eq!(&whole[8..12], &[0, 4, 0, 0]);
    assert_eq!(&whole[12..], &decremented(&nodf)[..]);
}

#[test]
fn tun_gue_pmtu_from_a_router_counts_the_gue_headers_and_gre_too() {
    let (sh, _ctl) = director_encap();
    let mut w = Worker::new(0, 100);
    for (port, overhead, t) in [(444u16, 32u16, 0u64), (445, 28, 10)] {
        let syn = tcp_frame(40000, port, true, false, &[1u8; 1300]);
        let (_, out) = run(&mut w, &sh, &syn, t);
        let sent = out.frames[0].1[14..].to_vec();
        // The router quotes the outer header, the encapsulation and the client's header.
        let quote = &sent[..20 + overhead as usize - 20 + 28];
        let need = icmp_frame([10, 0, 0, 1], DIP.octets(), CLIENT_MAC, 3, 4, 1200, quote);
        let (v, out) = run(&mut w, &sh, &need, t + 1);
        assert_eq!(v, Verdict::Answered, "port {port}");
        let f = &out.frames[0].1;
        assert_eq!((ip_of(f).src(), ip_of(f).dst()), (VIP, CLIENT));
        assert_eq!(
            (f[34], f[35], u16::from_be_bytes([f[40], f[41]])),
            (3, 4, 1200 - overhead),
            "port {port}: MTU less the outer headers to the client"
        );
        // The quote it sends back is the client's packet as it went into the tunnel.
        assert_eq!(&f[42..62], &decremented(&syn)[..20]);
        let (v, out) = run(&mut w, &sh, &tcp_frame(40000, port, false, true, &[1u8; 1200]), t + 2);
        assert_eq!(v, Verdict::Drop(DropReason::FragNeeded));
        assert_eq!(
            u16::from_be_bytes([out.frames[0].1[40], out.frames[0].1[41]]),
            1200 - overhead
        );
    }
    // A GUE quote to a port no real server tunnels to is not ours.
    let syn = tcp_frame(40001, 444, true, false, &[1u8; 100]);
    let (_, out) = run(&mut w, &sh, &syn, 20);
    let mut q = out.frames[0].1[14..14 + 60].to_vec();
    q[22..24].copy_from_slice(&6081u16.to_be_bytes());
    let (v, _) = run(
        &mut w,
        &sh,
        &icmp_frame([10, 0, 0, 1], DIP.octets(), CLIENT_MAC, 3, 4, 1200, &q),
        21,
    );
    assert_eq!(v, Verdict::Pass);
}

#[test]
fn tun_pmtu_is_never_learnt_below_552_and_fragment_quotes_are_not_ours() {
    let (sh, _ctl) = director_all();
    let mut w = Worker::new(0, 100);
    let syn = tcp_frame(40000, 443, true, false, &[1u8; 1300]);
    let (_, out) = run(&mut w, &sh, &syn, 0);
    let sent = out.frames[0].1[14..].to_vec();
    // A (forged) report of a 100-byte path: uvs keeps 552, as Linux's min_pmtu.
    let need = icmp_frame([10, 0, 0, 1], DIP.octets(), CLIENT_MAC, 3, 4, 100, &sent[..48]);
    assert_eq!(run(&mut w, &sh, &need, 1).0, Verdict::Answered);
    let (v, _) = run(&mut w, &sh, &tcp_frame(40000, 443, false, true, &[1u8; 400]), 2);
    assert_eq!(v, Verdict::Forwarded, "a 460-byte packet still fits");
    let (v, out) = run(&mut w, &sh, &tcp_frame(40000, 443, false, true, &[1u8; 600]), 3);
    assert_eq!(v, Verdict::Drop(DropReason::FragNeeded));
    assert_eq!(u16::from_be_bytes([out.frames[0].1[40], out.frames[0].1[41]]), 532);
    // An error quoting a non-first fragment of a tunnel packet is passed on.
    let mut frag = sent[..48].to_vec();
    set_frag_word(&mut frag, 0x0010);
    let e = icmp_frame([10, 0, 0, 1], DIP.octets(), CLIENT_MAC, 3, 4, 1200, &frag);
    assert_eq!(run(&mut w, &sh, &e, 4).0, Verdict::Pass);
}

/// A connection made while the routing table had no route to the client (its
/// interface was down, and the control thread had not re-read the routes since it came
/// back up): its replies go out once the route is back, not never.
#[test]
fn nat_reply_finds_a_route_that_came_back_after_the_connection() {
    let (sh, _ctl) = director_all();
    let routes = sh.routes.load_full();
    sh.routes.store(Default::default());
    let mut w = Worker::new(0, 100);
    assert_eq!(
        run(&mut w, &sh, &tcp_frame(40000, 8080, true, false, b""), 0).0,
        Verdict::Forwarded
    );
    let sa = reply_frame(RS1, RS1_MAC, 8888, 40000, true, b"");
    assert_eq!(run(&mut w, &sh, &sa, 1).0, Verdict::Drop(DropReason::NoRoute));
    sh.routes.store(routes);
    let (v, out) = run(&mut w, &sh, &sa, 2);
    assert_eq!(v, Verdict::Forwarded);
    let eth = ethernet::Frame::new_checked(&out.frames[0].1[..]).unwrap();
    assert_eq!(eth.dst(), CLIENT_MAC);
}

/// The NAT real server of [`RULES_ALL`] (RS1:8888 behind VIP:8080).
fn nat_dest(ctl: &crate::ctl::Ctl) -> std::sync::Arc<crate::service::Dest> {
    ctl.all_dests()
        .into_iter()
        .find(|d| d.method() == crate::service::ForwardMethod::Masq && d.port == 8888)
        .unwrap()
}

/// RS1:8888's reset to the client's `cport` (RST+ACK, as a closed port answers a SYN).
fn rst_frame(cport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(RS1_MAC, DIRECTOR_MAC).ipv4(RS1.octets(), CLIENT.octets(), 64);
    let mut v = Vec::new();
    b.tcp(8888, cport, 0, 0).rst().ack(1001).write(&mut v, b"").unwrap();
    v
}

#[test]
fn passive_a_reset_to_a_syn_counts_once_and_still_reaches_the_client() {
    use crate::service::PassiveSignal::*;
    let (sh, ctl) = director_all();
    let d = nat_dest(&ctl);
    let mut w = Worker::new(0, 100);
    run(&mut w, &sh, &tcp_frame(40000, 8080, true, false, b""), 0);
    let (v, out) = run(&mut w, &sh, &rst_frame(40000), 1);
    assert_eq!(v, Verdict::Forwarded, "the client gets its reset");
    let ip = ip_of(&out.frames[0].1);
    assert_eq!((ip.src(), ip.dst()), (VIP, CLIENT));
    assert_eq!(d.passive.get(Rst), 1);
    run(&mut w, &sh, &rst_frame(40000), 2);
    assert_eq!(d.passive.get(Rst), 1, "once per handshake");
    // A connection the server answered and then reset is no failure.
    run(&mut w, &sh, &tcp_frame(40001, 8080, true, false, b""), 3);
    run(&mut w, &sh, &reply_frame(RS1, RS1_MAC, 8888, 40001, true, b""), 4);
    run(&mut w, &sh, &rst_frame(40001), 5);
    assert_eq!(d.passive.total(), 1);
}

#[test]
fn passive_icmp_unreachable_about_a_syn_counts() {
    use crate::service::PassiveSignal::*;
    let (sh, ctl) = director_all();
    let d = nat_dest(&ctl);
    let mut w = Worker::new(0, 100);
    let (_, out) = run(&mut w, &sh, &tcp_frame(40000, 8080, true, false, b""), 0);
    let forwarded = out.frames[0].1[14..].to_vec();
    // Fragmentation needed is path MTU news, not a failure.
    let frag = icmp_frame(RS1.octets(), CLIENT.octets(), RS1_MAC, 3, 4, 1400, &forwarded);
    run(&mut w, &sh, &frag, 1);
    assert_eq!(d.passive.total(), 0);
    let unreach = icmp_frame(RS1.octets(), CLIENT.octets(), RS1_MAC, 3, 1, 0, &forwarded);
    assert_eq!(run(&mut w, &sh, &unreach, 1).0, Verdict::Forwarded);
    assert_eq!(d.passive.get(Unreachable), 1);
    // UDP: a port unreachable about a datagram.
    let (_, out) = run(&mut w, &sh, &udp_frame(5353, 54, b"q"), 2);
    let udp_d = ctl
        .all_dests()
        .into_iter()
        .find(|d| d.method() == crate::service::ForwardMethod::Masq && d.port == 5454)
        .unwrap();
    let unreach = icmp_frame(RS1.octets(), CLIENT.octets(), RS1_MAC, 3, 3, 0, &out.frames[0].1[14..]);
    run(&mut w, &sh, &unreach, 3);
    assert_eq!(udp_d.passive.get(Unreachable), 1);
}

#[test]
fn passive_a_syn_unanswered_at_two_sweeps_is_a_timeout() {
    use crate::service::PassiveSignal::*;
    let (sh, ctl) = director_all();
    let d = nat_dest(&ctl);
    let mut w = Worker::new(0, 100);
    run(&mut w, &sh, &tcp_frame(40000, 8080, true, false, b""), 0);
    // Answered: never a timeout.
    run(&mut w, &sh, &tcp_frame(40001, 8080, true, false, b""), 0);
    run(&mut w, &sh, &reply_frame(RS1, RS1_MAC, 8888, 40001, true, b""), 100);
    w.expire(1000);
    assert_eq!(d.passive.total(), 0, "one sweep only marks");
    // The client's retransmitted SYN changes nothing.
    run(&mut w, &sh, &tcp_frame(40000, 8080, true, false, b""), 1000);
    w.expire(2000);
    assert_eq!(d.passive.get(SynTimeout), 1);
    w.expire(3000);
    assert_eq!(d.passive.total(), 1, "counted once");
    assert_eq!(w.conns.len(), 2, "the sweep expires nothing early");
    // DR entries (no replies seen, ever) are never counted.
    run(&mut w, &sh, &tcp_frame(40002, 80, true, false, b""), 3000);
    w.expire(4000);
    w.expire(5000);
    assert!(
        ctl.all_dests()
            .iter()
            .all(|d| d.passive.total() == u64::from(d.port == 8888))
    );
}
