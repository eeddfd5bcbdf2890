//! Handover to a new process (README "Restart and upgrade"): `uvs run --takeover`
//! started while a director serves takes over its ring sockets, table and
//! connections, and the old one exits. Under load (rate-limited long downloads and a
//! steady UDP stream through the VIP), on a 1- and a 2-worker director, DR and NAT:
//! no download breaks and no gap in the UDP stream exceeds 100 ms. Also: a new
//! director of another handover format version (or worker count) is refused with a
//! clear message and the old one goes on serving.

mod common;
use common::*;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DR_RULES: &str = "\
-A -t 10.77.0.100:80 -s rr -p 60
-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 1
-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 1
-A -u 10.77.0.100:53 -s rr
-a -u 10.77.0.100:53 -r 10.77.0.11:53 -g -w 1
-a -u 10.77.0.100:53 -r 10.77.0.12:53 -g -w 1
";

const NAT_RULES: &str = "\
-A -t 192.168.77.100:80 -s rr
-a -t 192.168.77.100:80 -r 10.78.1.11:8080 -m -w 1
-a -t 192.168.77.100:80 -r 10.78.1.12:8080 -m -w 1
-A -u 192.168.77.100:53 -s rr
-a -u 192.168.77.100:53 -r 10.78.1.11:53 -m -w 1
-a -u 192.168.77.100:53 -r 10.78.1.12:53 -m -w 1
";

/// Bytes per download and its rate: ~6 s each, so the handover falls in the middle.
const SIZE: usize = 1_500_000;
const RATE: &str = "250k";
const DOWNLOADS: usize = 4;
/// UDP probe: flows (source ports), one datagram per flow every PERIOD.
const FLOWS: usize = 4;
const PERIOD: Duration = Duration::from_millis(2);
const PROBE_FOR: Duration = Duration::from_secs(5);

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| !r.trim_start().starts_with('Z')))
}

/// The steady UDP stream: per flow, the longest time between two echoes, when it
/// ended, and the datagrams sent and answered. Runs in the client's namespace.
fn probe(ns: &str, vip: String) -> std::thread::JoinHandle<Vec<(Duration, Instant, u32, u32)>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        in_ns(&ns, move || {
            let socks: Vec<UdpSocket> = (0..FLOWS)
                .map(|_| {
                    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                    s.connect(format!("{vip}:53")).unwrap();
                    s.set_nonblocking(true).unwrap();
                    s
                })
                .collect();
            let start = Instant::now();
            let mut last: [Option<Instant>; FLOWS] = [None; FLOWS];
            let mut worst = [(Duration::ZERO, start); FLOWS];
            let (mut sent, mut got) = (vec![0u32; FLOWS], vec![0u32; FLOWS]);
            let mut buf = [0u8; 256];
            let mut next = start;
            while start.elapsed() < PROBE_FOR {
                if Instant::now() >= next {
                    for (k, s) in socks.iter().enumerate() {
                        let _ = s.send(format!("p{k}-{}", sent[k]).as_bytes());
                        sent[k] += 1;
                    }
                    next += PERIOD;
                }
                for (k, s) in socks.iter().enumerate() {
                    while s.recv(&mut buf).is_ok() {
                        let now = Instant::now();
                        if let Some(t) = last[k]
                            && now - t > worst[k].0
                        {
                            worst[k] = (now - t, now);
                        }
                        last[k] = Some(now);
                        got[k] += 1;
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            (0..FLOWS).map(|k| (worst[k].0, worst[k].1, sent[k], got[k])).collect()
        })
    })
}

/// Rate-limited downloads from the client: (exit code, bytes) each.
fn downloads(lvs: &Lvs) -> Vec<std::thread::JoinHandle<(Option<i32>, String)>> {
    let url = format!("http://{}/size/{SIZE}", lvs.addrs.vip);
    (0..DOWNLOADS)
        .map(|_| {
            let (ns, url) = (lvs.bed.ns("client"), url.clone());
            std::thread::spawn(move || {
                let o = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &ns,
                        "curl",
                        "-s",
                        "-o",
                        "/dev/null",
                        "--limit-rate",
                        RATE,
                    ])
                    .args(["--max-time", "30", "-w", "%{size_download}", &url])
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
            })
        })
        .collect()
}

fn adm(lvs: &Lvs, line: &str) -> String {
    let o = Command::new(UVS)
        .arg("adm")
        .args(line.split_whitespace())
        .env("UVS_CONTROL", lvs.control_path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Start a director, put it under load, take it over with a second one, and check.
fn take_over_under_load(mut lvs: Lvs, rules: &str, workers: &str, what: &str) {
    let state = lvs.control_path().with_extension("state");
    let _cleanup = Cleanup(state.clone());
    lvs.start_director(rules, &["--workers", workers]).unwrap();
    assert!(lvs.curl(&format!("http://{}/", lvs.addrs.vip)).is_ok(), "forwards");
    let old_pid = lvs.director_pid.unwrap();
    let old_log = lvs.log.clone();

    let probe = probe(&lvs.bed.ns("client"), lvs.addrs.vip.clone());
    let loads = downloads(&lvs);
    // Past the rate estimator's first 2 s interval, so there are rates to carry.
    std::thread::sleep(Duration::from_millis(2500));
    let conns_before = adm(&lvs, "-L -n -c");
    // Sync daemons started live (not on the command line) move to the new director.
    for kind in ["master", "backup"] {
        let out = adm(
            &lvs,
            &format!("--start-daemon {kind} --mcast-interface eth0 --syncid 9"),
        );
        assert!(out.is_empty(), "--start-daemon {kind}: {out}");
    }
    let daemons_before = adm(&lvs, "-L --daemon");
    assert!(
        daemons_before.contains("backup sync daemon (mcast=eth0, syncid=9"),
        "{daemons_before}"
    );

    // The new director: same command line plus --takeover, its own log.
    lvs.log = old_log.with_extension("new.log");
    let t0 = Instant::now();
    lvs.start_director(rules, &["--workers", workers, "--takeover"])
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nold director:\n{}",
                std::fs::read_to_string(&old_log).unwrap_or_default()
            )
        });
    let took = t0.elapsed();
    assert!(wait_until(5, || !alive(old_pid)), "the old director exits");
    let old = std::fs::read_to_string(&old_log).unwrap_or_default();
    let new = lvs.director_log();
    assert!(old.contains("handed over to pid"), "{old}");
    assert!(new.contains("took over from pid"), "{new}");

    let flows = probe.join().unwrap();
    let results: Vec<_> = loads.into_iter().map(|h| h.join().unwrap()).collect();
    let conns_after = adm(&lvs, "-L -n -c");
    assert_eq!(
        adm(&lvs, "-L --daemon"),
        daemons_before,
        "the sync daemons carried over"
    );
    assert!(
        new.contains("--takeover: master sync daemon on eth0 carried over"),
        "{new}"
    );
    assert!(
        new.contains("--takeover: backup sync daemon on eth0 carried over"),
        "{new}"
    );
    let (worst, worst_at) = flows.iter().map(|f| (f.0, f.1)).max().unwrap();
    // Where the worst gap ended, relative to the start of the takeover.
    let at_ms = worst_at.saturating_duration_since(t0).as_millis() as i64
        - t0.saturating_duration_since(worst_at).as_millis() as i64;
    let sent: u32 = flows.iter().map(|f| f.2).sum();
    let got: u32 = flows.iter().map(|f| f.3).sum();
    let line = new.lines().find(|l| l.contains("took over from pid")).unwrap_or("");
    // `took over from pid N: C connections, T templates, K counters, R rates; ...`
    let count = |what: &str| -> usize {
        let at = line.find(&format!(" {what}")).unwrap_or(0);
        line[..at].rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(count("connections") >= DOWNLOADS, "{line}");
    assert!(count("counters") >= 6 && count("rates") >= 6, "{line}");
    if rules.contains(" -p ") {
        assert!(count("templates") >= 1, "persistence templates carried: {line}");
    }
    println!(
        "{what}, {workers} worker(s): takeover {} ms; UDP probe: {FLOWS} flows x {} datagrams/s, max gap {:.1} ms \
         (ended {at_ms:+} ms from the takeover's start), {got}/{sent} echoed; {DOWNLOADS} downloads of {SIZE} B at {RATE}/s: {:?}\n  new director: {line}",
        took.as_millis(),
        1000 / PERIOD.as_millis(),
        worst.as_secs_f64() * 1000.0,
        results
    );
    for (code, bytes) in &results {
        assert_eq!(
            (*code, bytes.as_str()),
            (Some(0), SIZE.to_string().as_str()),
            "a download broke\nold:\n{old}\nnew:\n{new}"
        );
    }
    assert!(
        worst <= Duration::from_millis(100),
        "UDP gap {worst:?} > 100 ms\nold:\n{old}\nnew:\n{new}"
    );
    assert!(got * 100 >= sent * 95, "echoed {got} of {sent}");
    // The connections were carried (the downloads' entries are listed by the new one).
    let vip80 = format!("{}:80", lvs.addrs.vip);
    assert!(conns_before.contains(&vip80), "{conns_before}");
    assert!(conns_after.contains(&vip80), "entries carried: {conns_after}");
    // The state file is the new director's.
    let new_pid = lvs.director_pid.unwrap();
    assert!(
        wait_until(5, || std::fs::read_to_string(&state)
            .is_ok_and(|t| t.contains(&format!("pid {new_pid}\n")))),
        "state file written by the new director: {:?}",
        std::fs::read_to_string(&state)
    );
    lvs.stop_director();
}

struct Cleanup(std::path::PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn nat(tag: &str) -> Lvs {
    Lvs::nat(tag, UVS, false, false, false).expect("build NAT test bed")
}

#[test]
fn dr_one_worker() {
    require_root!();
    take_over_under_load(dr("hodr1"), DR_RULES, "1", "DR");
}

#[test]
fn dr_two_workers() {
    require_root!();
    take_over_under_load(dr("hodr2"), DR_RULES, "2", "DR");
}

#[test]
fn nat_one_worker() {
    require_root!();
    take_over_under_load(nat("honat1"), NAT_RULES, "1", "NAT");
}

#[test]
fn nat_two_workers() {
    require_root!();
    take_over_under_load(nat("honat2"), NAT_RULES, "2", "NAT");
}

/// A new director of another handover format version, or another worker count, is
/// refused before anything is passed: it exits saying why, and the old one goes on
/// serving (and can still be taken over).
#[test]
fn a_mismatch_is_refused_and_the_old_director_serves_on() {
    require_root!();
    let mut lvs = dr("hover");
    let _cleanup = Cleanup(lvs.control_path().with_extension("state"));
    lvs.start_director(DR_RULES, &["--workers", "1"]).unwrap();
    let control = lvs.control_path().to_string_lossy().into_owned();
    let rules = std::env::temp_dir().join(format!("{}-rules", lvs.bed.prefix));
    let rules = rules.to_string_lossy().into_owned();
    let attempt = |env: Option<(&str, &str)>, workers: &str| {
        let ns = lvs.bed.ns("dir");
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &ns,
            UVS,
            "run",
            "--takeover",
            "--iface",
            "eth0",
            "--rules",
            &rules,
        ]);
        c.args(["--control", &control, "--workers", workers]);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let o = c.stdin(Stdio::null()).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // Version 1 is the format before the checkers' state was carried.
    let (code, err) = attempt(Some(("UVS_TEST_HANDOVER_VERSION", "1")), "1");
    println!("version 1 -> {code:?}: {err}");
    assert_ne!(code, Some(0));
    assert!(
        err.contains("--takeover refused by the running director: handover format version 1")
            && err.contains("speaks version 2")
            && err.contains("goes on serving"),
        "{err}"
    );
    let (code, err) = attempt(None, "2");
    println!("2 workers -> {code:?}: {err}");
    assert_ne!(code, Some(0));
    assert!(err.contains("runs 1 workers, the new one would start 2"), "{err}");
    // The old director still serves, its control socket answers and it was not
    // disturbed.
    assert_eq!(lvs.http_names(2).len(), 2);
    assert!(lvs.http_names(2).iter().all(|n| n.starts_with("rs")), "still forwards");
    assert!(adm(&lvs, "-L -n").contains("10.77.0.100:80"));
    let log = lvs.director_log();
    assert!(log.contains("refused a takeover by pid"), "{log}");
    assert!(!log.contains("handed over"), "{log}");
    // And a matching new director still takes over.
    let old_pid = lvs.director_pid.unwrap();
    lvs.log = lvs.log.with_extension("new.log");
    lvs.start_director(DR_RULES, &["--workers", "1", "--takeover"]).unwrap();
    assert!(wait_until(5, || !alive(old_pid)), "the old director exits");
    assert!(
        lvs.http_names(2).iter().all(|n| n.starts_with("rs")),
        "the new one forwards"
    );
    lvs.stop_director();
}

/// Kill `uvs serve` in namespace `host` (a process this test's bed started).
fn stop_server(lvs: &Lvs, host: &str) {
    let out = Command::new("ip")
        .args(["netns", "pids", &lvs.bed.ns(host)])
        .output()
        .unwrap();
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains("serve") {
            // SAFETY: kill(2) of a process this test started (uvs serve in its namespace).
            unsafe {
                libc::kill(pid.parse().unwrap(), libc::SIGKILL);
            }
        }
    }
}

/// keepalived checkers' state moves with a takeover: rs2's server is stopped and its
/// checker takes it out; a new director taking over with the same keepalived file
/// never lists rs2 (`ipvsadm -L -n` polled through the takeover) nor sends it a new
/// connection, and does not log a transition for it; when rs2's server is back, its
/// checker in the new director brings it back.
#[test]
fn a_server_the_checkers_took_out_stays_out_across_a_takeover() {
    require_root!();
    let mut lvs = dr("hochk");
    let _cleanup = Cleanup(lvs.control_path().with_extension("state"));
    let rs = |ip: &str| {
        format!(
            "real_server {ip} 80 {{\n weight 1\n TCP_CHECK {{\n connect_timeout 1\n retry 2\n delay_before_retry 0.3\n }}\n }}\n"
        )
    };
    let conf = format!(
        "virtual_server 10.77.0.100 80 {{\n delay_loop 1\n lvs_sched rr\n lvs_method DR\n protocol TCP\n{}{}}}\n",
        rs("10.77.0.11"),
        rs("10.77.0.12")
    );
    let path = std::env::temp_dir().join(format!("{}-keepalived.conf", lvs.bed.prefix));
    let _conf = Cleanup(path.clone());
    std::fs::write(&path, conf).unwrap();
    let p = path.to_string_lossy().into_owned();
    let args = ["--workers", "1", "--keepalived", &p];
    lvs.start_director("", &args).unwrap();
    let rs2 = "10.77.0.12:80";
    assert!(
        wait_until(5, || adm(&lvs, "-L -n").contains(rs2)),
        "{}",
        adm(&lvs, "-L -n")
    );
    stop_server(&lvs, "rs2");
    assert!(
        wait_until(10, || !adm(&lvs, "-L -n").contains(rs2)),
        "rs2's checker takes it out:\n{}\n{}",
        adm(&lvs, "-L -n"),
        lvs.director_log()
    );
    assert!(
        lvs.director_log()
            .contains("Removing service [10.77.0.12]:tcp:80 from VS")
    );
    let old_pid = lvs.director_pid.unwrap();
    let old_log = lvs.log.clone();

    // Poll the listing through the takeover: every answer, from either director.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poll = {
        let (stop, control) = (stop.clone(), lvs.control_path());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let o = Command::new(UVS)
                    .args(["adm", "-L", "-n"])
                    .env("UVS_CONTROL", &control)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                if o.status.success() {
                    seen.push(String::from_utf8_lossy(&o.stdout).into_owned());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    lvs.log = old_log.with_extension("new.log");
    let mut with_takeover = args.to_vec();
    with_takeover.push("--takeover");
    lvs.start_director("", &with_takeover).unwrap();
    assert!(wait_until(5, || !alive(old_pid)), "the old director exits");
    // New connections meanwhile and after: rs1 only.
    let names = lvs.http_names(6);
    // Past the carried checker's next attempts (delay_loop 1, retries 0.3 s apart).
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = poll.join().unwrap();
    let old = std::fs::read_to_string(&old_log).unwrap_or_default();
    let new = lvs.director_log();
    let checks = Command::new(UVS)
        .arg("checks")
        .env("UVS_CONTROL", lvs.control_path())
        .output()
        .unwrap();
    let checks = String::from_utf8_lossy(&checks.stdout).into_owned();
    println!(
        "{} listings polled through the takeover; new director: {}\n{checks}",
        seen.len(),
        new.lines()
            .find(|l| l.contains("keepalived checkers carried"))
            .unwrap_or("")
    );
    assert!(
        seen.len() >= 20 && seen.iter().all(|l| l.contains("10.77.0.11:80")),
        "{seen:?}"
    );
    if let Some(l) = seen.iter().find(|l| l.contains(rs2)) {
        panic!("rs2 listed during the takeover:\n{l}\nold:\n{old}\nnew:\n{new}");
    }
    assert!(names.iter().all(|n| n == "rs1"), "{names:?}\n{new}");
    assert!(old.contains("handed over to pid"), "{old}");
    assert!(
        !old.contains("Shutting down service"),
        "a handover shuts nothing down:\n{old}"
    );
    assert!(new.contains("the state of 2 keepalived checkers carried over"), "{new}");
    assert!(
        !new.contains("[10.77.0.12]:tcp:80 to VS"),
        "no transition of rs2: {new}"
    );
    let line = checks.lines().find(|l| l.contains("[10.77.0.12]")).unwrap_or("");
    assert!(
        line.contains("DOWN") && line.contains("dead") && line.split_whitespace().nth(6) == Some("1"),
        "rs2's checker: down, with the transition the old director counted:\n{checks}"
    );

    // rs2 back: its checker in the new director brings it back.
    let exe = lvs.exe.clone();
    lvs.bed
        .spawn("rs2", &[&exe, "serve", "--name", "rs2", "--tcp", "0.0.0.0:80"], None)
        .unwrap();
    assert!(
        wait_until(10, || adm(&lvs, "-L -n").contains(rs2)),
        "rs2 comes back:\n{}",
        lvs.director_log()
    );
    assert!(lvs.director_log().contains("Adding service [10.77.0.12]:tcp:80 to VS"));
    assert!(
        wait_until(5, || lvs.http_names(4).iter().any(|n| n == "rs2")),
        "{:?}",
        lvs.http_names(4)
    );
    lvs.stop_director();
}
