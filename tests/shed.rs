//! Overload shedding (issue 8): the XDP program drops VIP-bound frames, and only
//! those, while every ring of the interface is backed up, counts them, and is gone
//! when its owner is; `uvs run --xdp-shed` attaches it and reports it in /metrics.

mod common;
use common::*;
use std::net::Ipv4Addr;

use std::net::UdpSocket;
use std::time::Duration;

use uvs::ring::shed::{Shed, XdpMode};

/// `n` datagrams from the calling thread's namespace.
fn send_to(to: &str, n: usize) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    for _ in 0..n {
        s.send_to(b"x", to).unwrap();
    }
}

/// `ip link show` of one interface (attached XDP programs show there).
fn link_line(bed: &Testbed, host: &str, iface: &str) -> String {
    let out = bed.exec(host, &["ip", "link", "show", iface]).unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn sheds_only_vip_frames_while_every_ring_is_backed_up() {
    require_root!();
    let mut bed = Testbed::new("shd");
    bed.add_host("a").unwrap();
    bed.add_host("b").unwrap();
    bed.link("a", "eth0", "10.78.0.1/24", "b", "eth0", "10.78.0.2/24")
        .unwrap();
    let b_mac = bed.mac("b", "eth0").unwrap();
    // The VIP is not b's: a reaches it through a static neighbour entry, as a router
    // would after uvs answered its ARP.
    for vip in ["10.78.0.100", "10.78.0.101"] {
        bed.exec("a", &["ip", "neigh", "replace", vip, "lladdr", &b_mac, "dev", "eth0"])
            .unwrap();
    }
    let (a_ns, b_ns) = (bed.ns("a"), bed.ns("b"));

    for (mode, generic) in [(XdpMode::Generic, true), (XdpMode::Native, false)] {
        // Two rings on b's interface; a socket on b's own address.
        let (shed, sink) = in_ns(&b_ns, move || {
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
            assert_ne!(ifindex, 0);
            let mut s = Shed::attach(&[(ifindex, "eth0".to_string())], 2, mode).expect("attach XDP");
            s.set_vips(&[Ipv4Addr::new(10, 78, 0, 100), Ipv4Addr::new(10, 78, 0, 101)])
                .unwrap();
            let sink = UdpSocket::bind("10.78.0.2:7000").unwrap();
            sink.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            (s, sink)
        });
        let line = link_line(&bed, "b", "eth0");
        assert!(
            line.contains("prog/xdp") && line.contains("xdpgeneric") == generic,
            "{mode:?}: {line}"
        );
        let state = shed.state();
        let send = |vip: usize, own: usize| {
            in_ns(&a_ns, move || {
                send_to("10.78.0.100:9", vip);
                send_to("10.78.0.2:7000", own);
            })
        };
        let received = |n: usize| {
            let mut buf = [0u8; 64];
            (0..n).filter(|_| sink.recv(&mut buf).is_ok()).count()
        };

        // Not backed up: nothing is shed.
        send(50, 5);
        assert_eq!(received(5), 5);
        assert_eq!(state.shed(0), 0);

        // One ring of two backed up: still nothing.
        let (mut r1, mut r2) = (shed.slot(0), shed.slot(0));
        r1.update(128, |_| true);
        assert_eq!(state.backed_up(0), 1);
        send(30, 0);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(state.shed(0), 0, "{mode:?}: one ring of two is not overload");

        // Both: VIP frames are shed and counted; the host's own traffic (and the ARP
        // it needs) passes.
        r2.update(128, |_| true);
        assert_eq!(state.backed_up(0), 2);
        bed.exec("a", &["ip", "neigh", "flush", "dev", "eth0", "to", "10.78.0.2"])
            .unwrap();
        send(100, 20);
        assert!(
            wait_until(2, || state.shed(0) == 100),
            "{mode:?}: shed {}",
            state.shed(0)
        );
        assert_eq!(received(20), 20, "{mode:?}: b's own traffic passes while shedding");

        // A ring that drained below half its blocks takes itself off: admitted again.
        r1.update(128, |n| n < 64);
        assert_eq!(state.backed_up(0), 1);
        send(40, 0);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(state.shed(0), 100, "{mode:?}: recovered, nothing more shed");
        // Still above half: stays backed up (hysteresis).
        r2.update(128, |n| n <= 64);
        assert_eq!(state.backed_up(0), 1, "r2 keeps its place at exactly half");
        drop(r2);
        assert_eq!(state.backed_up(0), 0, "a ring that goes away leaves the count");

        // A VIP taken off the set is not shed any more.
        let mut shed = shed;
        shed.set_vips(&[Ipv4Addr::new(10, 78, 0, 101)]).unwrap();
        let mut r3 = shed.slot(0);
        r1.update(128, |_| true);
        r3.update(128, |_| true);
        assert_eq!(state.backed_up(0), 2);
        send(30, 0);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(state.shed(0), 100, "{mode:?}: 10.78.0.100 is no VIP any more");
        in_ns(&a_ns, || {
            send_to("10.78.0.101:9", 10);
        });
        assert!(
            wait_until(2, || state.shed(0) == 110),
            "{mode:?}: shed {}",
            state.shed(0)
        );
        drop((r1, r3));
        drop(shed);
        assert!(
            !link_line(&bed, "b", "eth0").contains("prog/xdp"),
            "detached with its owner"
        );
    }
    bed.teardown();
}

#[test]
fn uvs_run_xdp_shed_attaches_it_and_reports_it() {
    require_root!();
    let mut lvs = dr("shrun");
    let rules = "-A -t 10.77.0.100:80 -s rr\n-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 1\n\
                 -a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 1\n";
    lvs.start_director(rules, &["--workers", "2", "--xdp-shed", "--metrics", "10.77.0.2:9102"])
        .unwrap();
    let iface = lvs.director_ifaces[0].clone();
    let show = |lvs: &Lvs| link_line(&lvs.bed, "dir", &iface);
    // veth: the generic hook (auto mode).
    assert!(
        show(&lvs).contains("xdpgeneric"),
        "{}\n{}",
        show(&lvs),
        lvs.director_log()
    );
    let names = lvs.http_names(4);
    assert!(names.iter().all(|n| n == "rs1" || n == "rs2"), "{names:?}");
    let text = lvs.curl("http://10.77.0.2:9102/metrics").unwrap();
    assert!(
        text.contains(&format!("uvs_xdp_shed_total{{iface=\"{iface}\"}} 0")),
        "{text}"
    );
    assert!(
        text.contains(&format!("uvs_xdp_rings_backed_up{{iface=\"{iface}\"}} 0")),
        "{text}"
    );
    lvs.stop_director();
    assert!(!show(&lvs).contains("prog/xdp"), "gone with uvs: {}", show(&lvs));

    // Without --xdp-shed nothing is attached.
    lvs.start_director(rules, &["--workers", "1"]).unwrap();
    assert!(!show(&lvs).contains("prog/xdp"), "{}", show(&lvs));
    lvs.stop_director();
}
