//! TUN mode end to end (seed 000): the director encapsulates in IPIP; the real servers
//! run `uvs tunnel` (the CI kernel has no ipip module) and answer the client directly.

mod common;
use common::*;

const RULES: &str = "\
-A -t 10.77.0.100:80 -s rr
-a -t 10.77.0.100:80 -r 10.79.0.11 -i -w 1
-a -t 10.77.0.100:80 -r 10.79.0.12 -i -w 1
";

#[test]
fn rr_alternates_through_ipip() {
    require_root!();
    let mut lvs = Lvs::tun("tunrr", UVS, 1500, false, false).unwrap();
    let (tpid, tpath) = tcpdump(&mut lvs.bed, "rs1", "eth0", "ip proto 4", 2);
    lvs.start_director(RULES, &["--workers", "2"]).unwrap();
    let names = lvs.http_names(6);
    assert_eq!(
        names,
        ["rs2", "rs1", "rs2", "rs1", "rs2", "rs1"],
        "{}",
        lvs.director_log()
    );
    let lines = wait_for_lines(&tpath, 5, |l| l.iter().filter(|x| x.contains("IP ")).count() >= 2);
    lvs.bed.stop(tpid);
    let frames: Vec<_> = lines.iter().filter(|l| l.contains("ethertype IPv4")).collect();
    assert!(!frames.is_empty(), "{lines:?}");
    for f in &frames {
        // tcpdump shows both headers: "10.79.0.2 > 10.79.0.11: 10.77.0.10.X > 10.77.0.100.80: Flags ..."
        assert!(
            f.contains("10.79.0.2 > 10.79.0.11: 10.77.0.10."),
            "outer director -> rs1, inner from the client: {f}"
        );
        assert!(
            f.contains("> 10.77.0.100.80:"),
            "inner destination untouched (the VIP): {f}"
        );
    }
}

#[test]
fn large_requests_pass_a_smaller_tunnel_mtu_via_frag_needed() {
    require_root!();
    // The director-to-real-server link has MTU 1400; the client's segments fill 1500.
    let mut lvs = Lvs::tun("tunmtu", UVS, 1400, false, false).unwrap();
    let (cpid, cpath) = tcpdump(&mut lvs.bed, "client", "eth0", "icmp", 1);
    lvs.start_director(RULES, &["--workers", "1"]).unwrap();
    let body = "x".repeat(20_000);
    let url = format!("http://{}/", lvs.addrs.vip);
    let out = lvs
        .bed
        .exec_any(
            "client",
            &["curl", "-s", "--max-time", "5", "--data-binary", &body, &url],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        text == "rs1" || text == "rs2",
        "the large request got through: {text:?}\n{}",
        lvs.director_log()
    );
    let lines = wait_for_lines(&cpath, 5, |l| l.iter().any(|x| x.contains("ICMP")));
    lvs.bed.stop(cpid);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("10.77.0.100 > 10.77.0.10: ICMP") && l.contains("need to frag (mtu 1380)")),
        "the director sent fragmentation-needed with MTU - 20: {lines:?}"
    );
    // A large response (it does not cross the tunnel) arrives whole too.
    let big = lvs.curl(&format!("http://{}/size/100000", lvs.addrs.vip)).unwrap();
    assert_eq!(big.len(), 100000);
}

/// `--tun-type gue` and `gre` (IPVS's other tunnel types): the real servers decapsulate
/// only that type (`uvs tunnel --tun-type …`), so a reply proves the encapsulation,
/// and tcpdump on rs1's link shows the outer protocol.
#[test]
fn rr_alternates_through_gue_and_gre() {
    require_root!();
    for (tag, director, rs, filter, shown) in [
        (
            "tungue",
            "--tun-type gue --tun-port 6080 --tun-csum",
            &["--tun-type", "gue", "--tun-port", "6080"][..],
            "udp dst port 6080",
            "UDP",
        ),
        (
            "tungre",
            "--tun-type gre --tun-csum",
            &["--tun-type", "gre"][..],
            "ip proto 47",
            "GREv0",
        ),
    ] {
        let mut lvs = Lvs::tun_with(tag, UVS, 1500, false, false, rs).unwrap();
        let rules = RULES.replace("-i -w 1", &format!("-i -w 1 {director}"));
        let (tpid, tpath) = tcpdump(&mut lvs.bed, "rs1", "eth0", filter, 2);
        lvs.start_director(&rules, &["--workers", "2"]).unwrap();
        let names = lvs.http_names(4);
        assert_eq!(names, ["rs2", "rs1", "rs2", "rs1"], "{tag}: {}", lvs.director_log());
        let lines = wait_for_lines(&tpath, 5, |l| l.iter().filter(|x| x.contains("IP ")).count() >= 2);
        lvs.bed.stop(tpid);
        let outer: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("10.79.0.2") && l.contains("10.79.0.11"))
            .collect();
        assert!(!outer.is_empty(), "{tag}: {lines:?}");
        assert!(
            outer.iter().all(|l| l.contains(shown)),
            "{tag}: outer packets director -> rs1 are {shown}: {outer:?}"
        );
    }
}
