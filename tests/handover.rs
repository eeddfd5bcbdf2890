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
    let (code, err) = attempt(Some(("UVS_TEST_HANDOVER_VERSION", "2")), "1");
    println!("version 2 -> {code:?}: {err}");
    assert_ne!(code, Some(0));
    assert!(
        err.contains("--takeover refused by the running director: handover format version 2")
            && err.contains("speaks version 1")
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
