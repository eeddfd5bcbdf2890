//! `uvs run --keepalived`, the checkers beyond TCP_CHECK and HTTP_GET and keepalived's
//! state machine around them, on the DR test bed with real servers in namespaces:
//! SSL_GET against `openssl s_server`, UDP_CHECK against `uvs serve`'s UDP echo,
//! DNS_CHECK against a responder in the real server's namespace, PING_CHECK against
//! the real server's kernel; alpha, omega, inhibit_on_failure, notify and quorum
//! scripts; persistence with inhibit_on_failure and expire_quiescent_template; SIGHUP
//! under load.

mod common;
use common::*;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn checks(lvs: &Lvs) -> String {
    uvs_out(lvs, &["checks"])
}

fn wait_log(lvs: &Lvs, secs: u64, text: &str) {
    assert!(
        wait_until(secs, || lvs.director_log().contains(text)),
        "no {text:?} in the log:\n{}\n{}\n{}",
        lvs.director_log(),
        list(lvs),
        checks(lvs)
    );
}

/// `failure` logged within `secs`, then real server `rs` out of the :53 service (2 s).
fn failed_out(lvs: &Lvs, secs: u64, failure: &str, rs: &str) {
    wait_log(lvs, secs, failure);
    assert!(
        wait_until(2, || svc_rs_line(lvs, ":53 ", rs).is_none()),
        "{}",
        list(lvs)
    );
}

/// A DNS responder on UDP 5353 in namespace `ns`: rcode 0 for names containing
/// "good", REFUSED (5) otherwise. Runs until `stop` (bounded to 2 minutes).
fn dns_responder(ns: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || in_ns(&ns, move || answer_dns(stop)))
}

fn answer_dns(stop: Arc<AtomicBool>) {
    let s = std::net::UdpSocket::bind("0.0.0.0:5353").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut b = [0u8; 512];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Ok((n, from)) = s.recv_from(&mut b) else { continue };
        if n < 12 {
            continue;
        }
        let good = b[12..n].windows(4).any(|w| w == b"good");
        let mut r = b[..n].to_vec();
        r[2] |= 0x80;
        r[3] = 0x80 | if good { 0 } else { 5 };
        let _ = s.send_to(&r, from);
    }
}

#[test]
fn ssl_udp_dns_and_ping_checks_follow_their_servers() {
    require_root!();
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("\n*** SKIPPED: no openssl binary (apt-get install openssl) ***\n");
        return;
    }
    let mut lvs = dr("kachk");
    // Self-signed certificate (keepalived's SSL_GET verifies nothing) and two pages.
    let dir = std::env::temp_dir().join(format!("{}-tls", lvs.bed.prefix));
    for h in ["rs1", "rs2"] {
        std::fs::create_dir_all(dir.join(h)).unwrap();
    }
    std::fs::write(dir.join("rs1/health"), "rs1 ok\n").unwrap();
    std::fs::write(dir.join("rs2/health"), "rs2 changed\n").unwrap();
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=rs",
        ])
        .args(["-keyout", "k.pem", "-out", "c.pem"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    for h in ["rs1", "rs2"] {
        let cmd = format!(
            "cd {d}/{h} && exec openssl s_server -quiet -WWW -accept 443 -cert {d}/c.pem -key {d}/k.pem",
            d = dir.display()
        );
        lvs.bed.spawn(h, &["sh", "-c", &cmd], None).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dns: Vec<_> = ["rs1", "rs2"]
        .iter()
        .map(|h| dns_responder(lvs.bed.ns(h), stop.clone()))
        .collect();
    // Listening before the director starts (a first failed attempt is retried
    // silently, and the success after it is not a transition keepalived logs).
    for h in ["rs1", "rs2"] {
        assert!(
            wait_until(10, || lvs
                .bed
                .exec_any(
                    h,
                    &["sh", "-c", "ss -ltn | grep -q ':443 ' && ss -lun | grep -q ':5353 '"]
                )
                .is_ok_and(|o| o.status.success())),
            "servers not listening in {h}"
        );
    }
    let digest = uvs::check::md5_hex(b"rs1 ok\n");
    let timers = "connect_timeout 1\n retry 1\n delay_before_retry 0.2\n";
    let conf = format!(
        "virtual_server 10.77.0.100 443 {{\n delay_loop 1\n lvs_sched rr\n lvs_method DR\n protocol TCP\n\
           real_server 10.77.0.11 443 {{\n  SSL_GET {{\n url {{\n path /health\n digest {digest}\n }}\n {timers} }}\n }}\n\
           real_server 10.77.0.12 443 {{\n  SSL_GET {{\n url {{\n path /health\n digest {digest}\n }}\n {timers} }}\n }}\n}}\n\
         virtual_server 10.77.0.100 53 {{\n delay_loop 1\n lvs_sched rr\n lvs_method DR\n protocol UDP\n\
           real_server 10.77.0.11 53 {{\n  UDP_CHECK {{\n payload 68 69\n require_reply 72 73 31\n {timers} }}\n }}\n\
           real_server 10.77.0.12 53 {{\n  PING_CHECK {{\n {timers} }}\n }}\n}}\n\
         virtual_server 10.77.0.100 5353 {{\n delay_loop 1\n lvs_sched rr\n lvs_method DR\n protocol UDP\n\
           real_server 10.77.0.11 5353 {{\n  DNS_CHECK {{\n name good.test\n type A\n {timers} }}\n }}\n\
           real_server 10.77.0.12 5353 {{\n  DNS_CHECK {{\n name bad.test\n {timers} }}\n }}\n}}\n"
    );
    start_keepalived(&mut lvs, &conf, &[]);

    // SSL_GET: rs1's page matches the digest, rs2's does not.
    wait_log(
        &lvs,
        8,
        "SSL_CHECK on service [10.77.0.12]:tcp:443 failed after 1 retries.",
    );
    wait_log(&lvs, 2, "Remote Web server [10.77.0.11]:tcp:443 succeed on service.");
    assert!(svc_rs_line(&lvs, ":443", "10.77.0.12").is_none(), "{}", list(&lvs));
    assert!(svc_rs_line(&lvs, ":443", "10.77.0.11").is_some(), "{}", list(&lvs));
    // DNS_CHECK: REFUSED fails, NOERROR passes.
    wait_log(
        &lvs,
        4,
        "DNS_CHECK ([10.77.0.12]:udp:5353) read error occurred. (rcode = 5) after 1 retries",
    );
    assert!(svc_rs_line(&lvs, ":5353", "10.77.0.12").is_none(), "{}", list(&lvs));
    assert!(svc_rs_line(&lvs, ":5353", "10.77.0.11").is_some(), "{}", list(&lvs));
    // UDP_CHECK (the echo starts with "rs1") and PING_CHECK pass.
    wait_log(&lvs, 4, "UDP connection to [10.77.0.11]:udp:53 success.");
    wait_log(&lvs, 4, "ICMP connection to [10.77.0.12]:udp:53 success.");
    assert!(svc_rs_line(&lvs, ":53 ", "10.77.0.11").is_some() && svc_rs_line(&lvs, ":53 ", "10.77.0.12").is_some());

    // rs1's UDP server dies: ICMP port unreachable fails UDP_CHECK.
    stop_server(&lvs, "rs1");
    failed_out(
        &lvs,
        6,
        "UDP_CHECK on service [10.77.0.11]:udp:53 failed after 1 retries.",
        "10.77.0.11",
    );
    // rs2 stops answering pings: PING_CHECK fails; then it answers again.
    lvs.bed.sysctl("rs2", "net.ipv4.icmp_echo_ignore_all", "1").unwrap();
    failed_out(
        &lvs,
        8,
        "ICMP CHECK on service [10.77.0.12]:udp:53 of [10.77.0.100]:udp:53 failed after 1 retries.",
        "10.77.0.12",
    );
    lvs.bed.sysctl("rs2", "net.ipv4.icmp_echo_ignore_all", "0").unwrap();
    assert!(
        wait_until(4, || svc_rs_line(&lvs, ":53 ", "10.77.0.12").is_some()),
        "{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    // The checker board shows each kind.
    let text = checks(&lvs);
    for k in ["SSL_GET", "UDP_CHECK", "PING_CHECK", "DNS_CHECK"] {
        assert!(text.contains(k), "{text}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in dns {
        t.join().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A notify script that appends its arguments, one line per run.
fn notify_script(lvs: &Lvs) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let out = std::env::temp_dir().join(format!("{}-notified", lvs.bed.prefix));
    let script = std::env::temp_dir().join(format!("{}-notify.sh", lvs.bed.prefix));
    let _ = std::fs::remove_file(&out);
    std::fs::write(&script, format!("#!/bin/sh\necho \"$*\" >> {}\n", out.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, out)
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn alpha_omega_inhibit_and_notify_scripts() {
    require_root!();
    let mut lvs = dr("kanotify");
    let (s, out) = notify_script(&lvs);
    let s = s.display();
    let check = "TCP_CHECK {\n connect_timeout 1\n retry 1\n delay_before_retry 0.2\n }";
    let conf = format!(
        "virtual_server 10.77.0.100 80 {{\n delay_loop 1\n lvs_sched rr\n lvs_method DR\n protocol TCP\n alpha\n omega\n\
         quorum 2\n quorum_up \"{s} quorum up\"\n quorum_down \"{s} quorum down\"\n\
         real_server 10.77.0.11 80 {{\n inhibit_on_failure\n notify_up \"{s} up rs1\"\n notify_down \"{s} down rs1\"\n {check}\n }}\n\
         real_server 10.77.0.12 80 {{\n notify_up \"{s} up rs2\"\n notify_down \"{s} down rs2\"\n {check}\n }}\n}}\n"
    );
    start_keepalived(&mut lvs, &conf, &[]);
    // alpha: both start failed (rs1 inhibited at weight 0, rs2 out) and come up on
    // their first success; the quorum (2) is then gained.
    wait_log(
        &lvs,
        5,
        "Enabling service [10.77.0.11]:tcp:80 of VS [10.77.0.100]:tcp:80",
    );
    wait_log(&lvs, 5, "Adding service [10.77.0.12]:tcp:80 to VS [10.77.0.100]:tcp:80");
    wait_log(&lvs, 2, "Gained quorum 2+0=2 <= 2 for VS [10.77.0.100]:tcp:80");
    assert!(wait_until(2, || lines(&out).len() >= 3), "{:?}", lines(&out));
    let mut got = lines(&out);
    got.sort();
    assert_eq!(got, ["quorum up", "up rs1", "up rs2"]);
    let _ = std::fs::remove_file(&out);

    // rs1 dies: inhibited (weight 0, still listed), notify_down, quorum lost.
    stop_server(&lvs, "rs1");
    assert!(
        wait_until(6, || svc_rs_line(&lvs, ":80", "10.77.0.11")
            .is_some_and(|l| weight(&l) == Some("0"))),
        "{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    wait_log(
        &lvs,
        2,
        "Disabling service [10.77.0.11]:tcp:80 of VS [10.77.0.100]:tcp:80",
    );
    wait_log(&lvs, 2, "Lost quorum 2-0=2 > 1 for VS [10.77.0.100]:tcp:80");
    assert!(wait_until(2, || lines(&out).len() >= 2), "{:?}", lines(&out));
    let mut got = lines(&out);
    got.sort();
    assert_eq!(got, ["down rs1", "quorum down"]);
    let _ = std::fs::remove_file(&out);
    start_server(&mut lvs, "rs1", &["--tcp", "0.0.0.0:80", "--udp", "0.0.0.0:53"]);
    assert!(wait_until(4, || lines(&out).len() >= 2), "{:?}", lines(&out));
    let mut got = lines(&out);
    got.sort();
    assert_eq!(got, ["quorum up", "up rs1"]);
    let _ = std::fs::remove_file(&out);

    // omega: at stop, the alive servers' notify_down and quorum_down run.
    let log = lvs.stop_director();
    assert!(
        log.contains("Shutting down service [10.77.0.12]:tcp:80 from VS [10.77.0.100]:tcp:80"),
        "{log}"
    );
    assert!(wait_until(2, || lines(&out).len() >= 3), "{:?}", lines(&out));
    let mut got = lines(&out);
    got.sort();
    assert_eq!(got, ["down rs1", "down rs2", "quorum down"]);
}

fn sysctl_eqt(lvs: &Lvs, on: bool) {
    let eqt = format!("net.ipv4.vs.expire_quiescent_template={}", on as u8);
    let out = uvs_at(&lvs.control_path(), &["sysctl", "-w", &eqt]);
    assert!(out.status.success(), "{out:?}");
}

/// persistence_timeout with inhibit_on_failure: the pinned client's server fails its
/// check (MISC_CHECK on a flag file; the server itself keeps answering) and goes to
/// weight 0. IPVS keeps the client on it unless expire_quiescent_template is 1.
fn persistence_case(tag: &str, eqt: bool) {
    let mut lvs = dr(tag);
    let flag = std::env::temp_dir().join(format!("{}-down", lvs.bed.prefix));
    let _ = std::fs::remove_file(&flag);
    let misc = |rs: &str| {
        format!(
            "MISC_CHECK {{\n misc_path \"/bin/sh -c '! test -e {}-{rs}'\"\n misc_timeout 2\n }}",
            flag.display()
        )
    };
    let conf = format!(
        "virtual_server 10.77.0.100 80 {{\n delay_loop 1\n lvs_sched rr\n lvs_method DR\n protocol TCP\n persistence_timeout 50\n\
         real_server 10.77.0.11 80 {{\n inhibit_on_failure\n {}\n }}\n\
         real_server 10.77.0.12 80 {{\n inhibit_on_failure\n {}\n }}\n}}\n",
        misc("rs1"),
        misc("rs2")
    );
    start_keepalived(&mut lvs, &conf, &[]);
    sysctl_eqt(&lvs, eqt);
    let first = lvs.http_names(3);
    assert!(first.iter().all(|n| n == &first[0]), "persistence: {first:?}");
    let pinned = first[0].clone();
    assert!(pinned == "rs1" || pinned == "rs2", "{first:?}");
    let ip = if pinned == "rs1" { "10.77.0.11" } else { "10.77.0.12" };
    std::fs::write(format!("{}-{pinned}", flag.display()), "").unwrap();
    assert!(
        wait_until(5, || svc_rs_line(&lvs, ":80", ip)
            .is_some_and(|l| weight(&l) == Some("0"))),
        "{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    let after = lvs.http_names(4);
    let other = if pinned == "rs1" { "rs2" } else { "rs1" };
    let want = if eqt { other } else { pinned.as_str() };
    assert!(
        after.iter().all(|n| n == want),
        "expire_quiescent_template={eqt}: pinned to {pinned}, then {after:?}"
    );
    let _ = std::fs::remove_file(format!("{}-{pinned}", flag.display()));
}

#[test]
fn persistence_with_inhibit_stays_unless_expire_quiescent_template() {
    require_root!();
    persistence_case("kapers0", false);
    persistence_case("kapers1", true);
}

/// SIGHUP while a client sends requests one after another (bounded: 6 s): rs2 is
/// removed, rs3 added, rs1's weight changed. No request fails.
#[test]
fn sighup_under_load_loses_no_request() {
    require_root!();
    let mut lvs = dr("kahupl");
    // A third real server, set up as the bed sets up the first two.
    lvs.bed.add_host("rs3").unwrap();
    lvs.bed.sysctl("rs3", "net.ipv4.conf.all.arp_ignore", "1").unwrap();
    lvs.bed.sysctl("rs3", "net.ipv4.conf.all.arp_announce", "2").unwrap();
    lvs.bed.plug("rs3", "eth0", "10.77.0.13/24").unwrap();
    lvs.bed
        .exec("rs3", &["ip", "addr", "add", "10.77.0.100/32", "dev", "lo"])
        .unwrap();
    start_server(&mut lvs, "rs3", &["--tcp", "0.0.0.0:80"]);
    let rs = |ip: &str, w: u32| {
        format!(
            "real_server {ip} 80 {{\n weight {w}\n TCP_CHECK {{\n connect_timeout 1\n retry 1\n delay_before_retry 0.2\n }}\n }}\n"
        )
    };
    let head = "virtual_server 10.77.0.100 80 {\n delay_loop 1\n lvs_sched wrr\n lvs_method DR\n protocol TCP\n";
    let conf = format!("{head}{}{}}}\n", rs("10.77.0.11", 1), rs("10.77.0.12", 1));
    // Metrics on the director's loopback: a failure prints its drop counters.
    let path = start_keepalived(&mut lvs, &conf, &["--metrics", "127.0.0.1:9803"]);
    wait_log(&lvs, 5, "TCP connection to [10.77.0.12]:tcp:80 success.");

    let client = lvs.bed.ns("client");
    // Each request from its own client port, so a failed one can be found in the
    // connection table afterwards.
    let load = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut answers = Vec::new();
        while Instant::now() < deadline && answers.len() < 400 {
            let began = Instant::now();
            let port = (20000 + answers.len()).to_string();
            let out = Command::new("ip")
                .args(["netns", "exec", &client, "curl", "-s", "--max-time", "2"])
                .args(["--local-port", &port, "http://10.77.0.100/"])
                .output()
                .unwrap();
            let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let body = match out.status.code() {
                Some(0) => body,
                code => format!("curl exit {code:?} after {:?}", began.elapsed()),
            };
            answers.push((began, out.status.success(), body, port));
        }
        answers
    });
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(
        &path,
        format!("{head}{}{}}}\n", rs("10.77.0.11", 3), rs("10.77.0.13", 1)),
    )
    .unwrap();
    let pid = lvs.director_pid.unwrap();
    let hup = Instant::now();
    signal(pid, Signal::SIGHUP);
    assert!(
        wait_until(3, || svc_rs_line(&lvs, ":80", "10.77.0.12").is_none()
            && svc_rs_line(&lvs, ":80", "10.77.0.13").is_some()
            && svc_rs_line(&lvs, ":80", "10.77.0.11")
                .is_some_and(|l| weight(&l) == Some("3"))),
        "{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    let applied = Instant::now();
    let answers = load.join().unwrap();
    // Which real server each failed request's connection went to. A connection that
    // was open to rs2 when the reload removed rs2 fails as it does under IPVS: with
    // expire_nodest_conn 0, ip_vs_in drops its packets ("destination_deleted").
    let conns = uvs_out(&lvs, &["adm", "-L", "-c", "-n"]);
    let dest_of = |port: &str| {
        conns
            .lines()
            .find(|l| {
                l.split_whitespace()
                    .nth(3)
                    .is_some_and(|c| c.ends_with(&format!(":{port}")))
            })
            .and_then(|l| l.split_whitespace().nth(5).map(str::to_string))
    };
    let mut states = std::collections::BTreeMap::new();
    for l in conns.lines().skip(2) {
        if let Some(st) = l.split_whitespace().nth(2) {
            *states.entry(st.to_string()).or_insert(0) += 1;
        }
    }
    eprintln!("connection states after the load: {states:?}");
    let failed: Vec<_> = answers.iter().filter(|a| !a.1).map(|a| (a, dest_of(&a.3))).collect();
    let to_removed = failed
        .iter()
        .filter(|f| f.1.as_deref() == Some("10.77.0.12:80"))
        .count();
    eprintln!(
        "SIGHUP under load: {} requests, {} failed ({to_removed} on connections open to the removed rs2)",
        answers.len(),
        failed.len(),
    );
    let ms = |t: Instant| {
        t.checked_duration_since(hup)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_else(|| -(hup.duration_since(t).as_millis() as i64))
    };
    assert!(
        failed.len() == to_removed && to_removed <= 2,
        "failed requests (ms from SIGHUP, client port, body, real server), the reload seen \
         applied {} ms after SIGHUP: {:?}\n{}\n{conns}\n{}\n{}",
        ms(applied),
        failed.iter().map(|(a, d)| (ms(a.0), &a.3, &a.2, d)).collect::<Vec<_>>(),
        list(&lvs),
        lvs.director_log(),
        scrape(&lvs.bed, "dir", "127.0.0.1:9803")
            .lines()
            .filter(|l| (l.contains("dropped") || l.contains("ring_")) && !l.starts_with('#') && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let before: Vec<&str> = answers.iter().filter(|a| a.0 < applied).map(|a| a.2.as_str()).collect();
    let late: Vec<&str> = answers
        .iter()
        .filter(|a| a.0 > applied + Duration::from_millis(200))
        .map(|a| a.2.as_str())
        .collect();
    assert!(before.contains(&"rs2"), "{before:?}");
    assert!(!late.is_empty() && !late.contains(&"rs2"), "{late:?}");
    assert!(late.contains(&"rs3") && late.contains(&"rs1"), "{late:?}");
    assert!(
        lvs.director_log().contains("(1 kept their state)"),
        "rs1's checker keeps its state:\n{}",
        lvs.director_log()
    );
}
