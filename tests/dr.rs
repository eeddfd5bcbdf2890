//! DR mode end to end: a client namespace reaches the VIP and a uvs director in its
//! own namespace spreads the requests over two real servers configured as the DR
//! tutorial (seed 001) does.

mod common;
use common::*;

const RULES_RR: &str = "\
# DR, round robin (comments and blank lines are a uvs extension)

-A -t 10.77.0.100:80 -s rr
-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 1
-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 1
-A -u 10.77.0.100:53 -s rr
-a -u 10.77.0.100:53 -r 10.77.0.11:53 -g -w 1
-a -u 10.77.0.100:53 -r 10.77.0.12:53 -g -w 1
";

#[test]
fn rr_alternates_and_frames_keep_the_vip() {
    require_root!();
    let mut lvs = dr("drrr");
    let (tpid, tpath) = tcpdump(&mut lvs.bed, "rs1", "eth0", "tcp dst port 80", 3);
    lvs.start_director(RULES_RR, &["--workers", "2"]).unwrap();
    let names = lvs.http_names(6);
    // List order is rs2, rs1 (head insertion), so rr starts with rs2 and alternates.
    let first = names[0].clone();
    assert!(first == "rs1" || first == "rs2", "unexpected answer: {names:?}");
    for (i, n) in names.iter().enumerate() {
        let want = if (i % 2 == 0) == (first == "rs1") { "rs1" } else { "rs2" };
        assert_eq!(n, want, "request {i} of {names:?}\n{}", lvs.director_log());
    }
    assert_eq!(
        first, "rs2",
        "IPVS list order: the server added last is scheduled first"
    );

    // The capture on rs1: destination MAC is rs1's, destination IP is still the VIP.
    let lines = wait_for_lines(&tpath, 5, |l| l.iter().filter(|x| x.contains(" > ")).count() >= 3);
    lvs.bed.stop(tpid);
    let frames: Vec<_> = lines.iter().filter(|l| l.contains("ethertype IPv4")).collect();
    assert!(!frames.is_empty(), "no frames captured on rs1: {lines:?}");
    for f in &frames {
        assert!(
            f.contains(&format!("{} > {}", lvs.director_mac, lvs.rs_mac[0])),
            "MACs: {f}"
        );
        assert!(
            f.contains(&format!("> {}.80:", lvs.addrs.vip)),
            "IP destination must stay the VIP: {f}"
        );
        assert!(
            f.contains(&format!("{}.", lvs.addrs.client)),
            "source stays the client: {f}"
        );
    }
}

#[test]
fn wrr_3_to_1_splits_40_requests_30_10() {
    require_root!();
    let mut lvs = dr("drwrr");
    lvs.start_director(
        "-A -t 10.77.0.100:80 -s wrr\n\
         -a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 3\n\
         -a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 1\n",
        &["--workers", "2"],
    )
    .unwrap();
    let names = lvs.http_names(40);
    let rs1 = names.iter().filter(|n| *n == "rs1").count();
    let rs2 = names.iter().filter(|n| *n == "rs2").count();
    assert_eq!((rs1, rs2), (30, 10), "{names:?}\n{}", lvs.director_log());
}

#[test]
fn udp_service_works_and_alternates() {
    require_root!();
    let mut lvs = dr("drudp");
    lvs.start_director(RULES_RR, &["--workers", "2"]).unwrap();
    let mut seen = Vec::new();
    for i in 0..4 {
        let r = lvs
            .udp("10.77.0.100:53", &format!("ping{i}"))
            .unwrap_or_else(|e| panic!("{e}\n{}", lvs.director_log()));
        assert!(r.ends_with(&format!(": ping{i}")), "{r}");
        seen.push(r.split(':').next().unwrap().to_string());
    }
    // Each probe uses a new source port, so each is a new UDP connection: rr alternates.
    assert_eq!(seen, ["rs2", "rs1", "rs2", "rs1"]);
}

#[test]
fn bad_rules_line_starts_nothing_and_names_the_line() {
    require_root!();
    let dir = std::env::temp_dir().join(format!("uvs-badrules-{}", std::process::id()));
    std::fs::write(
        &dir,
        "-A -t 10.77.0.100:80 -s rr\n-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 70000\n",
    )
    .unwrap();
    let out = std::process::Command::new(UVS)
        .args(["check", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("illegal weight specified") && err.contains("-w 70000"),
        "{err}"
    );
    let _ = std::fs::remove_file(dir);
}
