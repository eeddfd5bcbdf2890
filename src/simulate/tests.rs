//! Scenarios through the real pipeline: persistence (`ip_vs_sched_persist`), counters
//! (`ip_vs_stats`), one-packet scheduling, port-0 persistence and template sharing between
//! workers.

use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::conn::template::TemplateKey;

fn sim(text: &str) -> (Simulator, String) {
    let mut s = Simulator::new();
    let mut out = String::new();
    for (i, l) in text.lines().enumerate() {
        out.push_str(&s.exec(l).unwrap_or_else(|e| panic!("line {}: {l}: {e}", i + 1)));
    }
    (s, out)
}

fn more(s: &mut Simulator, text: &str) -> String {
    text.lines().map(|l| s.exec(l).unwrap()).collect()
}

fn dest(s: &Simulator, ip: &str) -> Arc<crate::service::Dest> {
    let ip: IpAddr = ip.parse().unwrap();
    s.ctl().all_dests().into_iter().find(|d| d.addr == ip).expect("dest")
}

fn tpl_key(snet: [u8; 4], vport: u16) -> TemplateKey {
    TemplateKey {
        proto: 6,
        snet: Ipv4Addr::from(snet),
        vaddr: Ipv4Addr::new(10, 1, 1, 1),
        vport,
    }
}

fn template(s: &Simulator, key: TemplateKey) -> Option<Arc<crate::conn::template::Template>> {
    s.shared().services.load().conn_shared().templates.get(&key)
}

const PERSIST: &str = "\
-A -t 10.1.1.1:443 -s rr -p 360 -M 255.255.255.0
-a -t 10.1.1.1:443 -r 10.0.0.2 -g
-a -t 10.1.1.1:443 -r 10.0.0.1 -g
";

#[test]
fn rr_alternates_newest_first() {
    let (_, out) = sim("-A -t 10.0.0.100:80 -s rr\n\
         -a -t 10.0.0.100:80 -r 10.0.0.11\n\
         -a -t 10.0.0.100:80 -r 10.0.0.12\n\
         connect TCP 192.0.2.1:1000 10.0.0.100:80\n\
         connect TCP 192.0.2.1:1001 10.0.0.100:80\n\
         connect TCP 192.0.2.1:1002 10.0.0.100:80\n\
         connect TCP 192.0.2.1:1003 10.0.0.100:81\n");
    assert_eq!(
        out,
        "TCP 192.0.2.1:1000 -> 10.0.0.12:80\nTCP 192.0.2.1:1001 -> 10.0.0.11:80\n\
         TCP 192.0.2.1:1002 -> 10.0.0.12:80\nTCP 192.0.2.1:1003 -> none\n"
    );
}

#[test]
fn tv_10_12_template_shared_by_the_client_network_and_rearmed() {
    // List order RS1 (10.0.0.1), RS2: rr picks RS1 first.
    let (mut s, out) = sim(&format!("{PERSIST}connect TCP 192.168.1.10:5000 10.1.1.1:443\n"));
    assert_eq!(out, "TCP 192.168.1.10:5000 -> 10.0.0.1:443\n");
    let key = tpl_key([192, 168, 1, 0], 443);
    assert_eq!(template(&s, key).unwrap().expires_ms(), 360_000);
    assert_eq!(dest(&s, "10.0.0.1").persistconns.load(Relaxed), 1);
    let out = more(&mut s, "advance 100\nconnect TCP 192.168.1.77:6000 10.1.1.1:443\n");
    assert_eq!(out, "TCP 192.168.1.77:6000 -> 10.0.0.1:443\n");
    assert_eq!(template(&s, key).unwrap().expires_ms(), 460_000, "re-armed to t=460");
    // Packets of existing connections do not refresh it.
    more(&mut s, "advance 10\npacket TCP 192.168.1.77:6000 10.1.1.1:443 A\n");
    assert_eq!(template(&s, key).unwrap().expires_ms(), 460_000);
}

#[test]
fn tv_10_12_netmask_32_gives_each_client_its_own_template() {
    let rules = PERSIST.replace(" -M 255.255.255.0", "");
    let (s, out) = sim(&format!(
        "{rules}connect TCP 192.168.1.10:5000 10.1.1.1:443\nconnect TCP 192.168.1.77:6000 10.1.1.1:443\n\
         connect TCP 192.168.1.10:5001 10.1.1.1:443\n"
    ));
    assert_eq!(
        out,
        "TCP 192.168.1.10:5000 -> 10.0.0.1:443\nTCP 192.168.1.77:6000 -> 10.0.0.2:443\n\
         TCP 192.168.1.10:5001 -> 10.0.0.1:443\n"
    );
    assert!(template(&s, tpl_key([192, 168, 1, 77], 443)).is_some());
}

#[test]
fn tv_10_12_quiesced_server_keeps_its_clients_unless_expire_quiescent_template() {
    let setup = format!("{PERSIST}connect TCP 192.168.1.10:5000 10.1.1.1:443\n-e -t 10.1.1.1:443 -r 10.0.0.1 -w 0\n");
    let (mut s, _) = sim(&setup);
    let out = more(&mut s, "connect TCP 192.168.1.10:5001 10.1.1.1:443\n");
    assert_eq!(
        out, "TCP 192.168.1.10:5001 -> 10.0.0.1:443\n",
        "expire_quiescent_template=0"
    );

    let (mut s, _) = sim(&setup);
    s.shared().ipvs.conn.set_expire_quiescent_template(true);
    let out = more(&mut s, "connect TCP 192.168.1.10:5001 10.1.1.1:443\n");
    assert_eq!(out, "TCP 192.168.1.10:5001 -> 10.0.0.2:443\n");
    let t = template(&s, tpl_key([192, 168, 1, 0], 443)).unwrap();
    assert_eq!(t.dest.addr.to_string(), "10.0.0.2", "a new template");
    // The invalidated one still counts until its timer (it controls a connection).
    assert_eq!(dest(&s, "10.0.0.1").persistconns.load(Relaxed), 1);
    assert_eq!(s.shared().services.load().conn_shared().templates.len(), 2);
}

#[test]
fn tv_10_12_deleted_server_reschedules_new_and_drops_old() {
    let (mut s, _) = sim(&format!(
        "{PERSIST}connect TCP 192.168.1.10:5000 10.1.1.1:443\n-d -t 10.1.1.1:443 -r 10.0.0.1\n"
    ));
    let out = more(&mut s, "connect TCP 192.168.1.10:5001 10.1.1.1:443\n");
    assert_eq!(out, "TCP 192.168.1.10:5001 -> 10.0.0.2:443\n");
    let c: SocketAddrV4 = "192.168.1.10:5000".parse().unwrap();
    let v: SocketAddrV4 = "10.1.1.1:443".parse().unwrap();
    assert_eq!(
        s.send(&frames::client_tcp(c, v, ACK)),
        Verdict::Drop(crate::pipeline::DropReason::DestDeleted),
        "expire_nodest_conn=0 drops the old connection's packets"
    );
}

#[test]
fn tv_10_12_long_connection_postpones_then_template_shrinks_to_60s() {
    let (mut s, _) = sim(&format!("{PERSIST}connect TCP 192.168.1.10:5000 10.1.1.1:443\n"));
    let key = tpl_key([192, 168, 1, 0], 443);
    // Keep the connection busy until t=3600.
    for _ in 0..12 {
        more(&mut s, "advance 300\npacket TCP 192.168.1.10:5000 10.1.1.1:443 A\n");
    }
    let t = template(&s, key).expect("postponed while the connection lives");
    assert_eq!((t.timeout_ms(), t.expires_ms()), (60_000, 3_660_000));
    drop(t);
    // Shrink quirk: a new connection now re-arms it for 60 s only.
    more(
        &mut s,
        "connect TCP 192.168.1.10:5001 10.1.1.1:443\nclose TCP 192.168.1.10:5001 10.1.1.1:443\n",
    );
    assert_eq!(template(&s, key).unwrap().expires_ms(), 3_660_000);
    more(&mut s, "close TCP 192.168.1.10:5000 10.1.1.1:443\n");
    // Both connections sit in FIN_WAIT for 120 s, until t=3720.
    more(&mut s, "advance 119\n");
    assert!(template(&s, key).is_some());
    more(&mut s, "advance 1\n");
    assert_eq!(s.worker().conns.len(), 0);
    assert!(template(&s, key).is_none(), "freed at the next tick, not 360 s later");
    assert_eq!(dest(&s, "10.0.0.1").persistconns.load(Relaxed), 0);
}

#[test]
fn template_without_connections_expires_after_its_timeout() {
    let (mut s, _) = sim(&format!(
        "{PERSIST}connect TCP 192.168.1.10:5000 10.1.1.1:443\npacket TCP 192.168.1.10:5000 10.1.1.1:443 R\n"
    ));
    let key = tpl_key([192, 168, 1, 0], 443);
    more(&mut s, "advance 359\n");
    assert!(template(&s, key).is_some());
    assert_eq!(s.worker().conns.len(), 0, "CLOSE lasts 10 s");
    more(&mut s, "advance 1\n");
    assert!(template(&s, key).is_none());
    // A new connection from the network is scheduled afresh: rr moves on to RS2.
    let out = more(&mut s, "connect TCP 192.168.1.10:5001 10.1.1.1:443\n");
    assert_eq!(out, "TCP 192.168.1.10:5001 -> 10.0.0.2:443\n");
}

#[test]
fn port_zero_service_shares_one_template_across_ports() {
    let (s, out) = sim("-A -t 10.1.1.1:0 -s rr -p\n\
         -a -t 10.1.1.1:0 -r 10.0.0.2:0 -g\n\
         -a -t 10.1.1.1:0 -r 10.0.0.1:0 -g\n\
         connect TCP 192.168.1.10:5000 10.1.1.1:80\n\
         connect TCP 192.168.1.10:5001 10.1.1.1:443\n\
         connect TCP 192.168.1.11:5000 10.1.1.1:443\n");
    assert_eq!(
        out,
        "TCP 192.168.1.10:5000 -> 10.0.0.1:80\nTCP 192.168.1.10:5001 -> 10.0.0.1:443\n\
         TCP 192.168.1.11:5000 -> 10.0.0.2:443\n"
    );
    let t = template(&s, tpl_key([192, 168, 1, 10], 0)).expect("vport 0 template");
    assert_eq!((t.dport, t.expires_ms()), (0, 360_000), "bare -p is 360 s");
    assert_eq!(s.shared().services.load().conn_shared().templates.len(), 2);
}

#[test]
fn ftp_heuristic_claims_high_ports_and_leaves_them() {
    // `ip_vs_ctl.c: ip_vs_service_find`, the FTP fallback: TCP to a port >= 1024 of a VIP with a port-21 service finds that
    // service; a non-persistent one cannot schedule it. Port 80 finds no service.
    let (_, out) = sim("-A -t 10.1.1.1:21 -s rr\n\
         -a -t 10.1.1.1:21 -r 10.0.0.1\n\
         connect TCP 192.168.1.10:5000 10.1.1.1:21\n\
         connect TCP 192.168.1.10:5001 10.1.1.1:2121\n\
         connect TCP 192.168.1.10:5002 10.1.1.1:80\n");
    assert_eq!(
        out,
        "TCP 192.168.1.10:5000 -> 10.0.0.1:21\nTCP 192.168.1.10:5001 -> none\nTCP 192.168.1.10:5002 -> none\n"
    );
}

#[test]
fn one_packet_datagrams_are_rescheduled_and_not_kept() {
    let (s, out) = sim("-A -u 10.0.0.100:53 -s rr -o\n\
         -a -u 10.0.0.100:53 -r 10.0.0.11\n\
         -a -u 10.0.0.100:53 -r 10.0.0.12\n\
         connect UDP 192.0.2.1:5353 10.0.0.100:53\n\
         connect UDP 192.0.2.1:5353 10.0.0.100:53\n\
         packet UDP 192.0.2.1:5353 10.0.0.100:53 A\n");
    assert_eq!(
        out,
        "UDP 192.0.2.1:5353 -> 10.0.0.12:53\nUDP 192.0.2.1:5353 -> 10.0.0.11:53\n\
         UDP 192.0.2.1:5353 -> 10.0.0.12:53\n"
    );
    assert_eq!(s.worker().conns.len(), 0, "never inserted");
    for d in s.ctl().all_dests() {
        assert_eq!((d.active(), d.inactive()), (0, 0), "inactconns undone at once");
    }
    let conns: u64 = s.ctl().all_dests().iter().map(|d| d.stats.totals().conns).sum();
    assert_eq!(conns, 3, "every datagram counted as a connection");
}

#[test]
fn one_packet_with_persistence_sticks_and_refreshes_the_template() {
    let (mut s, out) = sim("-A -u 10.0.0.100:53 -s rr -o -p 60\n\
         -a -u 10.0.0.100:53 -r 10.0.0.11\n\
         -a -u 10.0.0.100:53 -r 10.0.0.12\n\
         connect UDP 192.0.2.1:5353 10.0.0.100:53\n\
         advance 50\n\
         connect UDP 192.0.2.1:5354 10.0.0.100:53\n");
    assert_eq!(
        out,
        "UDP 192.0.2.1:5353 -> 10.0.0.12:53\nUDP 192.0.2.1:5354 -> 10.0.0.12:53\n"
    );
    let key = TemplateKey {
        proto: 17,
        snet: Ipv4Addr::new(192, 0, 2, 1),
        vaddr: Ipv4Addr::new(10, 0, 0, 100),
        vport: 53,
    };
    assert_eq!(template(&s, key).unwrap().expires_ms(), 110_000);
    more(&mut s, "advance 60\n");
    assert!(template(&s, key).is_none(), "nothing controls it: expires on time");
}

#[test]
fn templates_are_shared_by_workers() {
    let (s, _) = sim(PERSIST);
    let sh = s.shared().clone();
    let mut workers = [Worker::new(1, 100), Worker::new(2, 100)];
    let v: SocketAddrV4 = "10.1.1.1:443".parse().unwrap();
    let rx = RxMeta {
        ifindex: IFINDEX,
        pkttype: pkttype::HOST,
        csum_partial: false,
        vlan_tci: None,
    };
    let mut out = Discard::new();
    for i in 0..4 {
        let w = &mut workers[i % 2];
        let c = SocketAddrV4::new([192, 168, 1, 10 + i as u8].into(), 5000);
        let svcs = sh.services.load();
        assert_eq!(
            w.process(&sh, &svcs, 0, rx, &frames::client_tcp(c, v, SYN), &mut out),
            Verdict::Forwarded
        );
    }
    let picked: Vec<_> = workers
        .iter()
        .flat_map(|w| w.conns.iter().map(|(_, c)| c.daddr))
        .collect();
    assert_eq!(
        picked,
        [Ipv4Addr::new(10, 0, 0, 1); 4],
        "one template, whichever worker"
    );
    assert_eq!(sh.services.load().conn_shared().templates.len(), 1);
}

#[test]
fn tv_10_10_dr_counters_through_the_pipeline() {
    let (mut s, _) = sim("-A -t 10.0.0.100:80 -s rr\n-a -t 10.0.0.100:80 -r 10.0.0.11\n");
    let d = dest(&s, "10.0.0.11");
    let counts = |d: &crate::service::Dest| (d.active(), d.inactive());
    let c = "packet TCP 192.0.2.1:1000 10.0.0.100:80";
    assert_eq!(
        more(&mut s, &format!("{c} S\n")),
        "TCP 192.0.2.1:1000 -> 10.0.0.11:80\n"
    );
    assert_eq!(counts(&d), (1, 0), "SYN_RECV is active");
    assert_eq!(more(&mut s, &format!("{c} A\n{c} A\n")), "", "no new connection");
    assert_eq!(counts(&d), (1, 0));
    more(&mut s, &format!("{c} FA\n"));
    assert_eq!(counts(&d), (0, 1), "FIN_WAIT is inactive");
    more(&mut s, &format!("{c} A\nadvance 119\n"));
    assert_eq!(counts(&d), (0, 1));
    more(&mut s, "advance 1\n");
    assert_eq!(counts(&d), (0, 0), "FIN_WAIT lasts 120 s");
    // RST closes: CLOSE (10 s), inactive.
    more(
        &mut s,
        "connect TCP 192.0.2.1:1001 10.0.0.100:80\npacket TCP 192.0.2.1:1001 10.0.0.100:80 R\n",
    );
    assert_eq!(counts(&d), (0, 1));
}

#[test]
fn tv_10_10_nat_counters_and_zero_one_right_after_creation() {
    use crate::conn::Conn;
    use crate::conn::tcp::{TcpState, Timeouts};
    let d = crate::sched::testutil_dest();
    let t = Timeouts::default();
    let mut c = Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, false, 0);
    assert_eq!((d.active(), d.inactive()), (0, 1), "0/1 before the state handler runs");
    // (flags, from the server, state, timeout, active/inactive)
    type Step = (u8, bool, TcpState, u64, (u32, u32));
    let steps: [Step; 7] = [
        (SYN, false, TcpState::SynRecv, 60, (1, 0)),
        (SYN | ACK, true, TcpState::SynRecv, 60, (1, 0)),
        (ACK, false, TcpState::Established, 900, (1, 0)),
        (ACK | PSH, true, TcpState::Established, 900, (1, 0)),
        (FIN | ACK, false, TcpState::CloseWait, 60, (0, 1)),
        (FIN | ACK, true, TcpState::TimeWait, 120, (0, 1)),
        (ACK, false, TcpState::TimeWait, 120, (0, 1)),
    ];
    for (flags, out, state, secs, counts) in steps {
        c.tcp_packet(flags, out, false, &t, 0);
        assert_eq!(c.state, state);
        assert_eq!(c.expires_in_ms(0), secs * 1000);
        assert_eq!((d.active(), d.inactive()), counts, "{state:?}");
    }
    drop(c);
    assert_eq!((d.active(), d.inactive()), (0, 0));
}

#[test]
fn established_marks_the_template_assured() {
    let (mut s, _) = sim(&format!("{PERSIST}packet TCP 192.168.1.10:5000 10.1.1.1:443 S\n"));
    let key = tpl_key([192, 168, 1, 0], 443);
    assert!(!template(&s, key).unwrap().is_assured());
    more(&mut s, "packet TCP 192.168.1.10:5000 10.1.1.1:443 A\n");
    assert!(template(&s, key).unwrap().is_assured());
}

#[test]
fn errors_name_the_line() {
    let mut out = String::new();
    let e = run("# ok\n-A -t 10.0.0.100:80 -s rr\nfrobnicate\n", &mut out).unwrap_err();
    assert_eq!((e.line, e.text.as_str()), (3, "frobnicate"));
    assert_eq!(e.to_string(), "line 3: `frobnicate': unknown command 'frobnicate'");
    let e = run("-A -t 10.0.0.100:80\n-A -t 10.0.0.100:80\n", &mut out).unwrap_err();
    assert_eq!((e.line, e.message.as_str()), (2, "Service already exists"));
    let e = run("-L -n\n", &mut out).unwrap_err();
    assert!(e.message.contains("not allowed"), "{e}");
    for bad in [
        "connect TCP 1.2.3.4 10.0.0.1:80",
        "connect ICMP 1.2.3.4:1 10.0.0.1:80",
        "packet TCP 1.2.3.4:1 10.0.0.1:80 SX",
        "advance -1",
        "advance 1.2345",
        "list --bogus",
    ] {
        assert_eq!(run(bad, &mut out).unwrap_err().line, 1, "{bad}");
    }
    assert_eq!(parse_seconds("1.5"), Ok(1500));
    assert_eq!(parse_seconds(".25"), Ok(250));
}

#[test]
fn list_shows_live_counts_and_connections() {
    let (mut s, _) = sim("-A -t 10.0.0.100:80 -s rr\n\
         -a -t 10.0.0.100:80 -r 10.0.0.11\n\
         -a -t 10.0.0.100:80 -r 10.0.0.12\n\
         connect TCP 192.0.2.1:1000 10.0.0.100:80\n\
         connect TCP 192.0.2.1:1001 10.0.0.100:80\n\
         close TCP 192.0.2.1:1001 10.0.0.100:80\n\
         advance 3\n");
    let out = more(&mut s, "list\n");
    assert_eq!(
        out,
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n  \
         -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.0.0.100:80 rr\n  \
         -> 10.0.0.11:80                 Route   1      0          1         \n  \
         -> 10.0.0.12:80                 Route   1      1          0         \n"
    );
    let out = more(&mut s, "list -c\n");
    assert_eq!(
        out,
        "IPVS connection entries\n\
         pro expire state       source             virtual            destination\n\
         TCP 14:57  ESTABLISHED 192.0.2.1:1000     10.0.0.100:80      10.0.0.12:80\n\
         TCP 01:57  FIN_WAIT    192.0.2.1:1001     10.0.0.100:80      10.0.0.11:80\n"
    );
}
