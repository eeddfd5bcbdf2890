//! `uvs run --pcap`: a capture written under traffic parses (pcap-file crate, pcapng)
//! and its frames are exactly what the director received (each once, marked inbound,
//! also while it waits for a new server's ARP answer) and sent (marked outbound).

mod common;
use common::*;

#[test]
fn pcap_under_traffic_matches_what_was_sent() {
    require_root!();
    let mut lvs = dr("pcap");
    let path = std::env::temp_dir().join(format!("{}-dir.pcap", lvs.bed.prefix));
    let p = path.to_string_lossy().to_string();
    let (tpid, tpath) = tcpdump(&mut lvs.bed, "rs1", "eth0", "tcp dst port 80", 200);
    lvs.start_director(
        "-A -t 10.77.0.100:80 -s rr\n-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g\n",
        &["--workers", "2", "--pcap", &p, "--pcap-rx"],
    )
    .unwrap();
    let names = lvs.http_names(3);
    assert!(names.iter().all(|n| n == "rs1"), "{names:?}");
    // A server added now: the first frames to it wait in the worker for its ARP
    // answer, and are retried; each is still recorded once.
    let adm = |line: &str| {
        let o = std::process::Command::new(UVS)
            .arg("adm")
            .args(line.split_whitespace())
            .env("UVS_CONTROL", lvs.control_path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{line}: {}", String::from_utf8_lossy(&o.stderr));
    };
    adm("-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g");
    adm("-e -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 0");
    let names = lvs.http_names(2);
    assert!(names.iter().all(|n| n == "rs2"), "{names:?}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = lvs.stop_director();
    let seen_at_rs1 = wait_for_lines(&tpath, 2, |_| true)
        .iter()
        .filter(|l| l.contains("ethertype IPv4"))
        .count();
    lvs.bed.stop(tpid);

    use uvs::lab::hops::Direction;
    let all = uvs::lab::hops::read_capture(&path);
    let _ = std::fs::remove_file(&path);
    assert!(
        all.iter().all(|(d, _)| d.is_some()),
        "every frame carries its direction"
    );
    let rs1_mac = &lvs.rs_mac[0];
    let rs_macs = [&lvs.rs_mac[0], &lvs.rs_mac[1]];
    let dir = |want: Direction| {
        all.iter()
            .filter(move |(d, _)| *d == Some(want))
            .filter_map(|(_, f)| uvs::lab::hops::decode(f).map(|s| (f, s)))
    };
    let tx: Vec<_> = dir(Direction::Out)
        .filter(|(_, s)| rs_macs.iter().any(|m| uvs::lab::hops::fmt_mac_eq(&s.eth_dst, m)))
        .collect();
    let rx: Vec<_> = dir(Direction::In)
        .filter(|(_, s)| uvs::lab::hops::fmt_mac_eq(&s.eth_dst, &lvs.director_mac) && s.dport == 80)
        .collect();
    // Each received frame once: no two inbound records are the same bytes.
    let mut seen = std::collections::HashSet::new();
    for (f, _) in &rx {
        assert!(seen.insert(f.to_vec()), "a received frame recorded twice ({log})");
    }
    assert!(
        tx.len() >= 5 * 3,
        "at least SYN, ACK and data per request were sent: {} ({log})",
        tx.len()
    );
    assert_eq!(tx.len(), rx.len(), "every received client segment was sent on");
    let to_rs1 = tx
        .iter()
        .filter(|(_, s)| uvs::lab::hops::fmt_mac_eq(&s.eth_dst, rs1_mac))
        .count();
    assert_eq!(
        to_rs1, seen_at_rs1,
        "the pcap's frames sent to rs1 are what rs1 received"
    );
    for ((txf, t), (rxf, r)) in tx.iter().zip(rx.iter()) {
        assert_eq!((t.src, t.dst, t.sport, t.dport), (r.src, r.dst, r.sport, r.dport));
        assert_eq!(t.ttl + 1, r.ttl);
        assert_eq!(txf.len(), rxf.len());
        // TCP header and payload are untouched, except that a checksum the client's
        // veth left to offload (a pseudo-header sum) has been completed.
        let (a, b) = (&txf[14 + 20..], &rxf[14 + 20..]);
        assert_eq!(
            (&a[..16], &a[18..]),
            (&b[..16], &b[18..]),
            "TCP header and payload untouched"
        );
        let p = etherparse::SlicedPacket::from_ethernet(txf).unwrap();
        let (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Tcp(tcp))) = (&p.net, &p.transport)
        else {
            panic!("not TCP/IPv4")
        };
        let want = tcp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload())
            .unwrap();
        assert_eq!(tcp.checksum(), want, "sent frames carry a valid TCP checksum");
    }
}
