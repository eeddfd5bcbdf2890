//! The malformed-frame corpus of issue 7, built by code from the fixture's golden
//! frames: each case is a frame, the verdict IPVS's rules give it (dropped and counted
//! by a named reason, passed to the kernel, or forwarded), and after every case the
//! three established connections (NAT, DR, TUN) must still forward.

use std::net::Ipv4Addr;
use std::sync::Arc;

use uvs::fuzzing::{check_frame, fix_checksums, no_df, udp_reply};
use uvs::pipeline::fixture::*;
use uvs::pipeline::{DropReason, RxMeta, Shared, Verdict, Worker, pkttype};
use uvs::wire::{arp, ethernet, ipv4};

struct Bed {
    sh: Arc<Shared>,
    _ctl: uvs::ctl::Ctl,
    w: Worker,
    now: u64,
}

fn rx(csum_partial: bool) -> RxMeta {
    RxMeta {
        ifindex: IFINDEX,
        pkttype: pkttype::HOST,
        csum_partial,
        vlan_tci: None,
    }
}

impl Bed {
    fn new() -> Bed {
        let (sh, ctl) = director_all();
        let mut b = Bed {
            sh,
            _ctl: ctl,
            w: Worker::new(0, 64),
            now: 1000,
        };
        for f in uvs::fuzzing::prime_frames() {
            assert_eq!(b.send(&f).0, Verdict::Forwarded);
        }
        b
    }

    /// Process one frame; returns the verdict and the frames sent (each checked).
    fn send(&mut self, f: &[u8]) -> (Verdict, Vec<Vec<u8>>) {
        self.send_meta(f, rx(false))
    }

    fn send_meta(&mut self, f: &[u8], meta: RxMeta) -> (Verdict, Vec<Vec<u8>>) {
        let svcs = self.sh.services.load();
        let mut out = VecEmit::keeping();
        self.now += 10;
        let v = self.w.process(&self.sh, &svcs, self.now, meta, f, &mut out);
        let frames: Vec<_> = out.frames.into_iter().map(|(_, f)| f).collect();
        for o in &frames {
            check_frame(o, 1500, false);
        }
        (v, frames)
    }

    /// Expect `f` to be dropped for `reason`, counted, and the established flows intact.
    fn drops(&mut self, what: &str, f: &[u8], reason: DropReason) {
        let before = self.w.counters.drops(reason);
        let (v, _) = self.send(f);
        assert_eq!(v, Verdict::Drop(reason), "{what}");
        assert_eq!(
            self.w.counters.drops(reason),
            before + 1,
            "{what}: counted as {}",
            reason.name()
        );
        self.established_still_forward(what);
    }

    /// The NAT, DR and TUN connections of `prime_frames` still forward both ways.
    fn established_still_forward(&mut self, after: &str) {
        let n = self.w.conns.len();
        for f in [
            tcp_frame(40000, 8080, false, true, b"data"),
            reply_frame(RS1, RS1_MAC, 8888, 40000, false, b"reply"),
            tcp_frame(40001, 80, false, true, b"dr"),
            tcp_frame(40002, 443, false, true, b"tun"),
        ] {
            let (v, out) = self.send(&f);
            assert_eq!(v, Verdict::Forwarded, "after {after}: established flow broken");
            assert!(!out.is_empty());
        }
        assert_eq!(self.w.conns.len(), n, "after {after}: no entry created or lost");
    }
}

/// Mutate the IP header of an Ethernet frame, then fix its checksum.
fn with_ip(mut f: Vec<u8>, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    edit(&mut f[ethernet::HEADER_LEN..]);
    fix_checksums(&mut f, true, false);
    f
}

/// A TCP frame to VIP:`dport` with IP options `opts` (multiple of 4), checksums valid.
fn tcp_with_options(sport: u16, dport: u16, syn: bool, opts: &[u8]) -> Vec<u8> {
    let f = tcp_frame(sport, dport, syn, !syn, b"opt");
    let hl = 20 + opts.len();
    let mut g = f[..34].to_vec();
    g.extend_from_slice(opts);
    g.extend_from_slice(&f[34..]);
    let ip = &mut g[14..];
    ip[0] = 0x40 | (hl / 4) as u8;
    let tl = (ip.len()) as u16;
    ip[2..4].copy_from_slice(&tl.to_be_bytes());
    fix_checksums(&mut g, true, true);
    g
}

/// An ICMP error frame from the client to the VIP quoting `quote`, checksum valid.
fn icmp_to_vip(quote: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT.octets(), VIP.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ));
    let mut v = Vec::new();
    b.write(&mut v, quote).unwrap();
    v
}

/// What the VIP sent the client on the NAT connection, as an ICMP error quotes it.
fn quote_of_nat_reply() -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4(VIP.octets(), CLIENT.octets(), 60).tcp(8080, 40000, 5000, 1000);
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    v
}

#[test]
fn truncated_frames_at_every_layer() {
    let mut b = Bed::new();
    let syn = tcp_frame(41000, 80, true, false, b"");
    for cut in 0..ethernet::HEADER_LEN {
        b.drops(
            &format!("Ethernet cut at {cut}"),
            &syn[..cut],
            DropReason::TruncatedEthernet,
        );
    }
    for cut in ethernet::HEADER_LEN..ethernet::HEADER_LEN + 20 {
        b.drops(&format!("IPv4 cut at {cut}"), &syn[..cut], DropReason::TruncatedIpv4);
    }
    // A frame cut inside TCP: the IP total length now lies.
    b.drops("TCP cut, IP length intact", &syn[..44], DropReason::BadIpTotalLen);
    // Consistent lengths, but too short for the L4 header.
    for (what, f, keep) in [
        ("TCP", tcp_frame(41001, 80, true, false, b""), 10),
        ("UDP", udp_frame(41002, 53, b"x"), 6),
        ("ICMP", icmp_to_vip(&quote_of_nat_reply()), 4),
    ] {
        let mut g = f[..34 + keep].to_vec();
        g = with_ip(g, |ip| ip[2..4].copy_from_slice(&((20 + keep) as u16).to_be_bytes()));
        b.drops(&format!("truncated {what} header"), &g, DropReason::TruncatedL4);
    }
}

#[test]
fn header_and_total_length_lies() {
    let mut b = Bed::new();
    let f = tcp_frame(41100, 80, true, false, b"abc");
    for ihl in 0..5u8 {
        let g = with_ip(f.clone(), |ip| ip[0] = 0x40 | ihl);
        b.drops(&format!("IHL {ihl}"), &g, DropReason::BadIpHeaderLen);
    }
    let g = with_ip(f.clone(), |ip| ip[0] = 0x65);
    b.drops("IP version 6 in an IPv4 frame", &g, DropReason::BadIpVersion);
    let g = with_ip(f.clone(), |ip| ip[0] = 0x4f); // IHL 60 > total length
    b.drops("IHL beyond the total length", &g, DropReason::BadIpTotalLen);
    let tl = f.len() - 14;
    let g = with_ip(f.clone(), |ip| ip[2..4].copy_from_slice(&(tl as u16 + 1).to_be_bytes()));
    b.drops("total length > frame", &g, DropReason::BadIpTotalLen);
    let g = with_ip(f.clone(), |ip| ip[2..4].copy_from_slice(&19u16.to_be_bytes()));
    b.drops("total length < header", &g, DropReason::BadIpTotalLen);
    // Total length < frame: Ethernet padding (or junk) after the packet is not part of
    // it; the packet is forwarded without it.
    let mut padded = tcp_frame(41101, 80, true, false, b"abc");
    padded.extend_from_slice(&[0xee; 20]);
    let (v, out) = b.send(&padded);
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(out[0].len(), padded.len() - 20, "trailing bytes stripped");
    b.established_still_forward("padding");
}

#[test]
fn ip_options_are_forwarded_and_bad_ones_dropped() {
    let mut b = Bed::new();
    // Record route (7 bytes) + NOP: DR keeps the options; NAT rewrites around them.
    let rr = [7, 7, 4, 0, 0, 0, 0, 1];
    for (dport, what) in [(80, "DR"), (8080, "NAT"), (443, "TUN")] {
        let f = tcp_with_options(41200 + dport % 7, dport, true, &rr);
        let (v, out) = b.send(&f);
        assert_eq!(v, Verdict::Forwarded, "{what} with IP options");
        let o = &out[0][14..];
        let ip = if what == "TUN" { &o[20..] } else { o };
        assert_eq!(ip[0], 0x47, "{what}: header length kept");
        assert_eq!(&ip[20..28], &rr, "{what}: options kept");
        // L4 checksum after NAT (check_frame verified it when the input was valid).
        uvs::fuzzing::check_frame(&out[0], 1500, true);
    }
    b.drops(
        "malformed option length",
        &tcp_with_options(41210, 80, true, &[7, 9, 4, 0]),
        DropReason::BadIpOptions,
    );
    // What ip_options.c: __ip_options_compile rejects beyond the framing.
    for (i, (what, opts)) in [
        ("timestamp pointer below 5", &[68u8, 8, 4, 0, 0, 0, 0, 0][..]),
        ("timestamp with no room at its pointer", &[68, 8, 6, 0, 0, 0, 0, 0]),
        ("timestamp+address with room for 4 bytes", &[68, 8, 5, 1, 0, 0, 0, 0]),
        ("full timestamp whose overflow is 15", &[68, 8, 9, 0xf0, 0, 0, 0, 0]),
        ("two record routes", &[7, 3, 4, 7, 3, 4, 0, 0]),
        ("record route pointer 3", &[7, 7, 3, 0, 0, 0, 0, 0]),
        ("router alert of length 2", &[148, 2, 1, 1]),
        ("CIPSO (no DOI configured)", &[134, 8, 0, 0, 0, 1, 1, 2]),
        ("two source routes", &[131, 3, 4, 137, 3, 4, 0, 0]),
    ]
    .into_iter()
    .enumerate()
    {
        b.drops(
            what,
            &tcp_with_options(41220 + i as u16, 80, true, opts),
            DropReason::BadIpOptions,
        );
    }
    // Valid timestamp and router alert options go through as today.
    for (i, opts) in [&[68u8, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0][..], &[148, 4, 0, 0]]
        .into_iter()
        .enumerate()
    {
        let (v, out) = b.send(&tcp_with_options(41240 + i as u16, 80, true, opts));
        assert_eq!(v, Verdict::Forwarded, "{opts:?}");
        assert_eq!(&out[0][34..34 + opts.len()], opts, "options kept");
    }
    b.drops(
        "loose source route",
        &tcp_with_options(41211, 80, true, &[131, 7, 4, 10, 0, 0, 1, 0]),
        DropReason::SourceRoute,
    );
    b.established_still_forward("options");
}

#[test]
fn bad_checksums_as_ipvs_rules_say() {
    let mut b = Bed::new();
    let mut f = tcp_frame(41300, 80, true, false, b"");
    f[14 + 10] ^= 0xff;
    b.drops("bad IP header checksum", &f, DropReason::IpChecksum);
    // NAT verifies the L4 checksum before translating (both directions)...
    let mut f = tcp_frame(41301, 8080, true, false, b"");
    f[14 + 20 + 16] ^= 0x55;
    b.drops("bad TCP checksum on a new NAT connection", &f, DropReason::L4Checksum);
    let mut f = tcp_frame(40000, 8080, false, true, b"data");
    f[14 + 20 + 16] ^= 0x55;
    b.drops(
        "bad TCP checksum on the established NAT connection",
        &f,
        DropReason::L4Checksum,
    );
    let mut f = reply_frame(RS1, RS1_MAC, 8888, 40000, false, b"x");
    f[14 + 20 + 16] ^= 0x55;
    b.drops("bad TCP checksum on a NAT reply", &f, DropReason::L4Checksum);
    let mut f = udp_frame(5353, 54, b"q");
    f[14 + 20 + 6] ^= 0x55;
    b.drops("bad UDP checksum, NAT", &f, DropReason::L4Checksum);
    // ...a UDP checksum of 0 means none, and an offloaded one is not yet computed.
    let mut f = udp_frame(5353, 54, b"q");
    f[14 + 26..14 + 28].copy_from_slice(&[0, 0]);
    assert_eq!(b.send(&f).0, Verdict::Forwarded, "UDP without checksum");
    let mut f = udp_frame(5353, 54, b"q");
    f[14 + 26] ^= 0x55;
    assert_eq!(b.send_meta(&f, rx(true)).0, Verdict::Forwarded, "offloaded checksum");
    // DR and TUN never look at L4 checksums (the kernel does not either).
    for dport in [80, 443] {
        let mut f = tcp_frame(41310, dport, true, false, b"");
        f[14 + 20 + 16] ^= 0x55;
        assert_eq!(b.send(&f).0, Verdict::Forwarded, "bad L4 checksum through port {dport}");
    }
    b.established_still_forward("checksums");
}

#[test]
fn ttl_zero_and_one_get_time_exceeded() {
    let mut b = Bed::new();
    for ttl in [0u8, 1] {
        for dport in [80, 8080, 443] {
            let f = with_ip(tcp_frame(41400 + dport % 9, dport, true, false, b""), |ip| ip[8] = ttl);
            let before = b.w.counters.drops(DropReason::TtlExceeded);
            let (v, out) = b.send(&f);
            assert_eq!(v, Verdict::Drop(DropReason::TtlExceeded), "TTL {ttl} to port {dport}");
            assert_eq!(b.w.counters.drops(DropReason::TtlExceeded), before + 1);
            assert_eq!((out[0][34], out[0][35]), (11, 0), "ICMP time exceeded to the client");
        }
    }
    b.established_still_forward("TTL");
}

#[test]
fn icmp_errors_with_truncated_or_lying_quotes() {
    let mut b = Bed::new();
    let good = quote_of_nat_reply();
    let (v, out) = b.send(&icmp_to_vip(&good[..28]));
    assert_eq!(
        v,
        Verdict::Forwarded,
        "a proper quote is relayed to the NAT real server"
    );
    assert_eq!(out[0][14 + 16..14 + 20], RS1.octets(), "outer destination translated");
    b.drops(
        "quote shorter than an IP header",
        &icmp_to_vip(&good[..12]),
        DropReason::IcmpBadQuote,
    );
    b.drops(
        "quote without ports",
        &icmp_to_vip(&good[..22]),
        DropReason::IcmpBadQuote,
    );
    let mut lie = good.clone();
    lie[0] = 0x4f; // IHL 60, but only 40 bytes quoted
    b.drops(
        "quoted IHL beyond the quote",
        &icmp_to_vip(&lie),
        DropReason::IcmpBadQuote,
    );
    let mut lie = good.clone();
    lie[0] = 0x43;
    b.drops("quoted IHL < 5", &icmp_to_vip(&lie), DropReason::IcmpBadQuote);
    let mut lie = good.clone();
    lie[0] = 0x65;
    b.drops("quoted version 6", &icmp_to_vip(&lie), DropReason::IcmpBadQuote);
    let mut f = icmp_to_vip(&good);
    f[14 + 22] ^= 0xff;
    b.drops("bad ICMP checksum", &f, DropReason::IcmpChecksum);
    // A quote of a connection that does not exist, or a quoted total length that lies:
    // not ours (the kernel gets its copy).
    let mut other = good.clone();
    other[22..24].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(b.send(&icmp_to_vip(&other)).0, Verdict::Pass);
    let mut long = good.clone();
    long[2..4].copy_from_slice(&9000u16.to_be_bytes());
    assert_eq!(
        b.send(&icmp_to_vip(&long)).0,
        Verdict::Forwarded,
        "quoted length is not trusted"
    );
    // From the NAT real server, quoting a packet it never got.
    let q = etherparse::PacketBuilder::ipv4(CLIENT.octets(), RS1.octets(), 60).udp(5353, 9);
    let mut quoted = Vec::new();
    q.write(&mut quoted, b"").unwrap();
    let e = etherparse::PacketBuilder::ethernet2(RS1_MAC, DIRECTOR_MAC)
        .ipv4(RS1.octets(), CLIENT.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ));
    let mut f = Vec::new();
    e.write(&mut f, &quoted[..24]).unwrap();
    assert_eq!(b.send(&f).0, Verdict::Pass);
    b.established_still_forward("ICMP");
}

#[test]
fn tcp_flag_combinations() {
    use uvs::wire::l4::tcp_flags::*;
    let mut b = Bed::new();
    let flags = |sport: u16, dport: u16, fl: u8| {
        let mut f = tcp_frame(sport, dport, false, false, b"");
        f[14 + 20 + 13] = fl;
        fix_checksums(&mut f, false, true);
        f
    };
    b.drops("no flags, new tuple", &flags(41500, 80, 0), DropReason::NotSyn);
    b.drops("FIN only, new tuple", &flags(41501, 8080, FIN), DropReason::NotSyn);
    b.drops("SYN+RST, new tuple", &flags(41502, 80, SYN | RST), DropReason::NotSyn);
    // SYN+FIN: IPVS's event order (RST > SYN > FIN > ACK) makes it a SYN: scheduled.
    let (v, _) = b.send(&flags(41503, 80, SYN | FIN));
    assert_eq!(v, Verdict::Forwarded, "SYN+FIN schedules like a SYN");
    b.established_still_forward("flags");
    // On a connection's own tuple a flagless segment is IPVS's quirk: the entry goes
    // to CLOSE (10 s, re-armed by every packet) and keeps forwarding.
    let (v, _) = b.send(&flags(40001, 80, 0));
    assert_eq!(v, Verdict::Forwarded);
    let key = uvs::conn::ConnKey {
        proto: 6,
        caddr: CLIENT,
        cport: 40001,
        vaddr: VIP,
        vport: 80,
    };
    assert_eq!(b.w.conns.get(&key).unwrap().state, uvs::conn::tcp::TcpState::Close);
}

#[test]
fn arp_cannot_claim_vips_or_poison_real_servers() {
    let mut b = Bed::new();
    let evil = [0x02, 0xee, 0, 0, 0, 1];
    let frame = |sha: [u8; 6], spa: [u8; 4], op: u16| {
        let mut f = vec![0u8; 60];
        arp::Repr {
            op,
            sha,
            spa: Ipv4Addr::from(spa),
            tha: DIRECTOR_MAC,
            tpa: DIP,
        }
        .emit_frame(&mut f, DIRECTOR_MAC);
        f
    };
    b.drops(
        "ARP reply claiming the VIP",
        &frame(evil, VIP.octets(), 2),
        DropReason::ArpClaimsOwnAddress,
    );
    b.drops(
        "ARP reply claiming the DIP",
        &frame(evil, DIP.octets(), 2),
        DropReason::ArpClaimsOwnAddress,
    );
    let mut g = vec![0u8; 60];
    arp::Repr::gratuitous(evil, VIP).emit_frame(&mut g, ethernet::BROADCAST);
    b.drops("gratuitous ARP for the VIP", &g, DropReason::ArpClaimsOwnAddress);
    b.drops(
        "truncated ARP",
        &frame(evil, RS1.octets(), 2)[..30],
        DropReason::ArpMalformed,
    );
    // A reply claiming a real server's address: the worker reports it, the neighbour
    // table (control thread) refuses it because nobody asked.
    let (v, _) = b.send(&frame(evil, RS1.octets(), 2));
    assert_eq!(
        v,
        Verdict::Neigh {
            ifindex: IFINDEX,
            ip: RS1,
            mac: evil
        }
    );
    let mut n = uvs::director::neigh::Neighbours::default();
    let d = b
        ._ctl
        .all_dests()
        .into_iter()
        .find(|d| d.addr == std::net::IpAddr::from(RS1))
        .unwrap();
    n.set_users(vec![((IFINDEX, RS1), d.clone())]);
    let _ = n.due(0);
    assert!(n.on_arp(IFINDEX, RS1, RS1_MAC, 5), "the solicited answer");
    assert!(
        !n.on_arp(IFINDEX, RS1, evil, 6),
        "an unsolicited reply from another MAC"
    );
    assert_eq!(d.mac(), Some(RS1_MAC), "not poisoned");
    b.established_still_forward("ARP");
}

#[test]
fn own_mac_vlan_and_jumbo_frames() {
    let mut b = Bed::new();
    let mut f = tcp_frame(41600, 80, true, false, b"");
    f[6..12].copy_from_slice(&DIRECTOR_MAC);
    b.drops("from the director's own MAC", &f, DropReason::OwnMac);
    // 802.1Q and 802.1ad tags: not a VLAN uvs serves.
    for tpid in [ethernet::ethertype::VLAN, ethernet::ethertype::QINQ] {
        let f = tcp_frame(41601, 80, true, false, b"");
        let mut g = f[..12].to_vec();
        g.extend_from_slice(&tpid.to_be_bytes());
        g.extend_from_slice(&[0, 5]);
        g.extend_from_slice(&f[12..]);
        b.drops(&format!("VLAN tag {tpid:#06x}"), &g, DropReason::Vlan);
    }
    // Jumbo: 9000-byte datagrams on a 1500-byte path. With DF: fragmentation needed
    // back to the client; without: fragmented on output, in every mode.
    let big = udp_frame(41602, 53, &[5u8; 9000 - 28]);
    let (v, out) = b.send(&big);
    assert_eq!(v, Verdict::Drop(DropReason::FragNeeded));
    assert_eq!((out[0][34], out[0][35]), (3, 4));
    for (f, what) in [
        (udp_frame(41603, 53, &[5u8; 8972]), "DR"),
        (udp_frame(5353, 54, &[6u8; 8972]), "NAT request"),
        (udp_reply(RS1, 5454, 5353, &[7u8; 8972]), "NAT reply"),
        (tcp_frame(40002, 443, false, true, &[8u8; 8960]), "TUN"),
    ] {
        let mut f = no_df(f);
        fix_checksums(&mut f, true, false);
        let (v, out) = b.send(&f);
        assert_eq!(v, Verdict::Forwarded, "jumbo {what}");
        assert!(out.len() >= 7, "{what}: {} fragments", out.len());
        let carried: usize = out
            .iter()
            .map(|o| {
                let p = ipv4::Packet::new_checked(&o[14..]).unwrap();
                p.total_len() - p.header_len()
            })
            .sum();
        let overhead = if what == "TUN" { 20 } else { 0 };
        assert_eq!(carried, f.len() - 14 - 20 + overhead, "{what}: every byte carried");
    }
    b.established_still_forward("jumbo");
}

#[test]
fn a_full_table_creates_no_persistence_templates() {
    let (sh, _ctl) = director_with(
        "-A -t 10.0.0.100:80 -s rr -p 360\n-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g\n-a -t 10.0.0.100:80 -r 10.0.0.12:80 -g\n",
    );
    let svcs = sh.services.load();
    let mut w = Worker::new(0, 4);
    // Refusing (not evicting) when full: what a refused connection leaves behind.
    w.conns.set_when_full(uvs::conn::WhenFull::Refuse);
    for i in 0..100u16 {
        let mut f = tcp_frame(1000 + i, 80, true, false, b"");
        f[14 + 12] = 100 + (i % 200) as u8; // a different client address each time
        fix_checksums(&mut f, true, true);
        let _ = w.process(&sh, &svcs, 0, rx(false), &f, &mut VecEmit::counting());
    }
    assert_eq!(w.conns.len(), 4);
    assert_eq!(w.counters.drops(DropReason::TableFull), 96);
    assert_eq!(
        svcs.conn_shared().templates.len(),
        4,
        "templates only for the admitted connections"
    );
}

#[test]
fn flood_defenses_in_the_pipeline() {
    let mut b = Bed::new();
    b.sh.ipvs.defense.set_max_new_per_sec(10);
    let mut admitted = 0;
    for i in 0..50u16 {
        let f = tcp_frame(42000 + i, 80, true, false, b"");
        match b.send(&f).0 {
            Verdict::Forwarded => admitted += 1,
            v => assert_eq!(v, Verdict::Drop(DropReason::NewConnRate)),
        }
    }
    // A burst of 10, then 1 more per 100 ms (the bed's clock advances 10 ms a frame).
    assert_eq!(admitted, 14);
    b.established_still_forward("the rate cap");
    b.sh.ipvs.defense.set_max_new_per_sec(0);
    // drop_entry (always on): the half-open entries go, the established ones stay.
    b.sh.ipvs.defense.set_drop_entry(3).unwrap();
    let before = b.w.conns.len();
    let mut removed = 0;
    for _ in 0..400 {
        removed += b.w.defend(&b.sh, b.now);
    }
    assert_eq!(removed, 14, "the 14 half-open (SYN_RECV) entries");
    assert_eq!(b.w.conns.len(), before - removed);
    b.established_still_forward("drop_entry");
    // drop_packet = 3: 1 in am_droprate (10) new-connection packets.
    b.sh.ipvs.defense.set_drop_packet(3).unwrap();
    b.w.defend(&b.sh, b.now);
    let dropped = (0..100u16)
        .filter(|i| {
            b.send(&tcp_frame(43000 + i, 80, true, false, b"")).0 == Verdict::Drop(DropReason::DefenseDropPacket)
        })
        .count();
    assert_eq!(dropped, 10);
}
