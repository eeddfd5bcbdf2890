//! NAT mode end to end (seed 002): the real servers' gateway is the director, VIP:80
//! maps to real-server port 8080, replies come back through the director and leave
//! from the VIP. Both the two-interface director and the one-armed form.

mod common;
use common::*;

const RULES: &str = "\
-A -t 192.168.77.100:80 -s rr
-a -t 192.168.77.100:80 -r 10.78.1.11:8080 -m -w 1
-a -t 192.168.77.100:80 -r 10.78.1.12:8080 -m -w 1
-A -u 192.168.77.100:53 -s rr
-a -u 192.168.77.100:53 -r 10.78.1.11:53 -m
-a -u 192.168.77.100:53 -r 10.78.1.12:53 -m
# nothing listens on 5454: the real server answers port unreachable
-A -u 192.168.77.100:54 -s rr
-a -u 192.168.77.100:54 -r 10.78.1.11:5454 -m
";

fn nat(tag: &str, one_arm: bool) -> Lvs {
    Lvs::nat(tag, UVS, one_arm, false, false).expect("build NAT test bed")
}

fn alternates(names: &[String]) -> bool {
    names.len() >= 2
        && names.iter().zip(names.iter().skip(1)).all(|(a, b)| a != b)
        && names.iter().all(|n| n == "rs1" || n == "rs2")
}

#[test]
fn two_arm_rr_port_mapping_and_replies_from_the_vip() {
    require_root!();
    let mut lvs = nat("natta", false);
    let (tpid, tpath) = tcpdump(&mut lvs.bed, "rs1", "eth0", "tcp dst port 8080", 2);
    let (cpid, cpath) = tcpdump(
        &mut lvs.bed,
        "client",
        "eth0",
        "tcp src port 80 or tcp src port 8080",
        4,
    );
    lvs.start_director(RULES, &["--workers", "2"]).unwrap();
    let names = lvs.http_names(6);
    assert!(alternates(&names), "{names:?}\n{}", lvs.director_log());
    assert_eq!(names[0], "rs2", "list order: the server added last is scheduled first");

    let lines = wait_for_lines(&tpath, 5, |l| l.iter().filter(|x| x.contains(" > ")).count() >= 2);
    lvs.bed.stop(tpid);
    let frames: Vec<_> = lines.iter().filter(|l| l.contains("ethertype IPv4")).collect();
    assert!(!frames.is_empty(), "{lines:?}");
    for f in &frames {
        assert!(
            f.contains("> 10.78.1.11.8080:"),
            "destination rewritten to RIP:8080: {f}"
        );
        assert!(f.contains("192.168.77.10."), "source stays the client: {f}");
    }
    let lines = wait_for_lines(&cpath, 5, |l| l.iter().filter(|x| x.contains(" > ")).count() >= 4);
    lvs.bed.stop(cpid);
    let replies: Vec<_> = lines.iter().filter(|l| l.contains("ethertype IPv4")).collect();
    assert!(!replies.is_empty(), "{lines:?}");
    for r in &replies {
        assert!(
            r.contains("192.168.77.100.80 > 192.168.77.10."),
            "every reply comes from VIP:80: {r}"
        );
        assert!(
            r.contains(&format!("{} > {}", lvs.director_mac, lvs.client_mac)),
            "replies come from the director's MAC: {r}"
        );
    }
}

#[test]
fn two_arm_udp_and_icmp_port_unreachable_translated() {
    require_root!();
    let mut lvs = nat("natud", false);
    lvs.start_director(RULES, &["--workers", "2"]).unwrap();
    let mut seen = Vec::new();
    for i in 0..4 {
        let r = lvs
            .udp("192.168.77.100:53", &format!("q{i}"))
            .unwrap_or_else(|e| panic!("{e}\n{}", lvs.director_log()));
        seen.push(r.split(':').next().unwrap().to_string());
    }
    assert_eq!(seen, ["rs2", "rs1", "rs2", "rs1"]);
    let (cpid, cpath) = tcpdump(&mut lvs.bed, "client", "eth0", "icmp", 1);
    let err = lvs.udp("192.168.77.100:54", "hello").unwrap_err();
    let lines = wait_for_lines(&cpath, 5, |l| l.iter().any(|x| x.contains("ICMP")));
    lvs.bed.stop(cpid);
    assert!(
        err.contains("refused"),
        "the client's socket sees the port-unreachable: {err}\n{lines:?}"
    );
    let icmp: Vec<_> = lines.iter().filter(|l| l.contains("ICMP")).collect();
    assert!(
        icmp.iter()
            .any(|l| l.contains("192.168.77.100 > 192.168.77.10: ICMP 192.168.77.100 udp port 54 unreachable")),
        "translated outer source and quoted destination: {icmp:?}"
    );
}

#[test]
fn one_arm_rr_and_udp() {
    require_root!();
    let mut lvs = nat("natoa", true);
    lvs.start_director(RULES, &["--workers", "2"]).unwrap();
    let names = lvs.http_names(6);
    assert!(alternates(&names), "{names:?}\n{}", lvs.director_log());
    let r = lvs.udp("192.168.77.100:53", "x").unwrap();
    assert!(r.ends_with(": x"), "{r}");
}

#[test]
fn replies_never_miss_their_connection_with_two_workers() {
    require_root!();
    let mut lvs = nat("natmw", false);
    lvs.start_director(RULES, &["--workers", "2"]).unwrap();
    // 40 connections from distinct client ports: the fanout program must steer every
    // reply to the worker holding its connection, or the request would hang.
    let names = lvs.http_names(40);
    let ok = names.iter().filter(|n| *n == "rs1" || *n == "rs2").count();
    assert_eq!(ok, 40, "{names:?}\n{}", lvs.director_log());
}
