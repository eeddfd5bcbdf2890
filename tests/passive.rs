//! Passive health checks (`uvs run --keepalived FILE --passive-check VIP:PORT`) on the
//! NAT test bed under a steady stream of short client requests (`curl --max-time 2`,
//! three loops in parallel): one real server's listener is killed (its kernel answers
//! SYNs with RST) or blackholed (nft drops its SYNs); the failed client requests and
//! the time from the fault to the server's removal are measured with and without
//! passive detection, and printed.
//!
//! The numbers of README "Passive health checks" come from the ignored test
//! `passive_numbers` (repeated trials): `sudo -E cargo test --release --test passive
//! -- --ignored --nocapture passive_numbers` (`UVS_TRIALS`, default 10).

mod common;
use common::*;
use std::time::{Duration, Instant};

const VIP: &str = "192.168.77.100";
const RS: [&str; 2] = ["10.78.1.11", "10.78.1.12"];

/// keepalived.conf for the NAT bed: TCP_CHECK every 3 s, one retry after 1 s,
/// connect_timeout 1 (detection bound 3 + 2 x 1 + 1 = 6 s).
fn conf() -> String {
    let mut s = format!("virtual_server {VIP} 80 {{\n delay_loop 3\n lb_algo rr\n lb_kind NAT\n protocol TCP\n");
    for rs in RS {
        s += &format!(
            " real_server {rs} 8080 {{\n  weight 1\n  TCP_CHECK {{\n   connect_timeout 1\n   retry 1\n   delay_before_retry 1\n  }}\n }}\n"
        );
    }
    s + "}\n"
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Kill the real server's listener: SYNs get RST.
    Refuse,
    /// Drop its SYNs (nft on the real server): no answer at all.
    Blackhole,
}

fn start(tag: &str, passive: bool) -> Lvs {
    let mut lvs = Lvs::nat(tag, UVS, false, false, false).expect("build NAT test bed");
    let spec = format!("{VIP}:80");
    let mut args = vec!["--metrics", "127.0.0.1:9797"];
    if passive {
        args.extend(["--passive-check", &spec]);
    }
    start_keepalived(&mut lvs, &conf(), &args);
    assert!(
        wait_until(5, || RS.iter().all(|r| rs_line(&lvs, &format!("{r}:8080")).is_some())),
        "{}",
        list(&lvs)
    );
    lvs
}

/// Client loops: `curl --max-time 2` to the VIP, one `ok`/`fail` line per request, for
/// `secs` seconds; each ends with `done`. Returns (pid, output file) per loop.
fn load(lvs: &mut Lvs, loops: usize, secs: u64) -> Vec<(u32, std::path::PathBuf)> {
    let script = format!(
        "end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do \
         if curl -s -o /dev/null --max-time 2 http://{VIP}/; then echo ok; else echo fail; fi; done; echo done"
    );
    (0..loops)
        .map(|i| {
            let path = std::env::temp_dir().join(format!("{}-load{i}.txt", lvs.bed.prefix));
            let f = std::fs::File::create(&path).unwrap();
            let pid = lvs.bed.spawn("client", &["sh", "-c", &script], Some(f)).unwrap();
            (pid, path)
        })
        .collect()
}

/// (failed, total) requests of finished loops.
fn tally(loops: &[(u32, std::path::PathBuf)], wait_secs: u64) -> (usize, usize) {
    let (mut failed, mut total) = (0, 0);
    for (_, path) in loops {
        let lines = wait_for_lines(path, wait_secs, |l| l.iter().any(|x| x == "done"));
        failed += lines.iter().filter(|l| *l == "fail").count();
        total += lines.iter().filter(|l| *l == "ok" || *l == "fail").count();
    }
    (failed, total)
}

fn inject(lvs: &mut Lvs, host: &str, f: Fault) {
    match f {
        Fault::Refuse => {
            stop_server(lvs, host);
            assert!(wait_until(3, || server_pids(lvs, host).is_empty()));
        }
        Fault::Blackhole => {
            let nft = "add table inet uvspassive\n\
                       add chain inet uvspassive input { type filter hook input priority 0; }\n\
                       add rule inet uvspassive input tcp dport 8080 drop\n";
            let path = std::env::temp_dir().join(format!("{}-{host}.nft", lvs.bed.prefix));
            std::fs::write(&path, nft).unwrap();
            lvs.bed.exec(host, &["nft", "-f", &path.to_string_lossy()]).unwrap();
        }
    }
}

fn heal(lvs: &mut Lvs, host: &str, f: Fault) {
    match f {
        Fault::Refuse => {
            start_server(lvs, host, &["--tcp", "0.0.0.0:8080"]);
        }
        Fault::Blackhole => {
            lvs.bed
                .exec(host, &["nft", "delete", "table", "inet", "uvspassive"])
                .unwrap();
        }
    }
}

/// Inject `f` on rs`n` and poll the table until the server is gone: the time taken.
fn detect(lvs: &mut Lvs, n: usize, f: Fault) -> Option<Duration> {
    let host = format!("rs{}", n + 1);
    inject(lvs, &host, f);
    let t0 = Instant::now();
    wait_until(15, || rs_line(lvs, &format!("{}:8080", RS[n])).is_none()).then(|| t0.elapsed())
}

struct Run {
    failed: usize,
    total: usize,
    detect: Option<Duration>,
    log: String,
}

/// One backend failure under load: 3 client loops for 12 s, the fault 2 s in.
fn one_failure(tag: &str, n: usize, f: Fault, passive: bool) -> (Lvs, Run) {
    let mut lvs = start(tag, passive);
    let loops = load(&mut lvs, 3, 12);
    std::thread::sleep(Duration::from_secs(2));
    let detect = detect(&mut lvs, n, f);
    let (failed, total) = tally(&loops, 20);
    let log = lvs.director_log();
    (
        lvs,
        Run {
            failed,
            total,
            detect,
            log,
        },
    )
}

fn report(what: &str, without: &Run, with: &Run) {
    eprintln!(
        "passive checks, {what}: failed client requests {} of {} without, {} of {} with passive detection; \
         removed after {:?} without, {:?} with",
        without.failed, without.total, with.failed, with.total, without.detect, with.detect
    );
}

#[test]
fn passive_check_takes_a_refusing_server_out_and_its_checker_brings_it_back() {
    require_root!();
    let (_a, without) = one_failure("pasrst0", 0, Fault::Refuse, false);
    let (mut lvs, with) = one_failure("pasrst1", 0, Fault::Refuse, true);
    report("listener killed (RST)", &without, &with);
    assert!(without.detect.is_some(), "TCP_CHECK never removed it:\n{}", without.log);
    assert!(with.detect.is_some(), "never removed:\n{}", with.log);
    assert!(
        with.log
            .contains("Passive check on service [10.78.1.11]:tcp:8080 of VS [192.168.77.100]:tcp:80 failed"),
        "{}",
        with.log
    );
    assert!(
        with.log
            .contains("Removing service [10.78.1.11]:tcp:8080 from VS [192.168.77.100]:tcp:80")
    );
    assert!(
        with.failed <= without.failed,
        "passive detection should not cost more failed requests: {} > {}",
        with.failed,
        without.failed
    );
    // It comes back only through its active checker.
    heal(&mut lvs, "rs1", Fault::Refuse);
    assert!(
        wait_until(8, || rs_line(&lvs, &format!("{}:8080", RS[0])).is_some()),
        "rs1 did not return:\n{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    let log = lvs.director_log();
    assert!(
        log.contains("Adding service [10.78.1.11]:tcp:8080 to VS [192.168.77.100]:tcp:80"),
        "{log}"
    );
    // The metric counted the resets (the real server came back as the same entry,
    // revived from IPVS's trash while its connections still referred to it).
    let page = metrics(&lvs);
    assert!(
        page.lines().any(|l| l.starts_with("uvs_passive_failures_total{")
            && l.contains("remote_address=\"10.78.1.11\"")
            && l.contains("signal=\"rst\"")
            && !l.ends_with(" 0")),
        "{page}"
    );
}

#[test]
fn passive_check_takes_a_blackholed_server_out() {
    require_root!();
    let (_a, without) = one_failure("passyn0", 1, Fault::Blackhole, false);
    let (_b, with) = one_failure("passyn1", 1, Fault::Blackhole, true);
    report("SYNs dropped (SYN timeout)", &without, &with);
    assert!(without.detect.is_some(), "TCP_CHECK never removed it:\n{}", without.log);
    assert!(with.detect.is_some(), "never removed:\n{}", with.log);
    // Whichever saw it first removed it; with 3 loops, passive detection (3 handshakes
    // unanswered for 1-2 s) comes before the checker's 3 + 1 + 1 + 1 s at worst.
    assert!(
        with.log.contains("Passive check on service [10.78.1.12]:tcp:8080")
            || with.log.contains("TCP_CHECK on service [10.78.1.12]:tcp:8080 failed"),
        "{}",
        with.log
    );
}

fn metrics(lvs: &Lvs) -> String {
    // Served on the director namespace's own loopback (see `start`).
    scrape(&lvs.bed, "dir", "127.0.0.1:9797")
}

/// Distribution of a sample: (min, median, p90, max).
fn dist(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "n={} min {:.2} s, median {:.2} s, p90 {:.2} s, max {:.2} s",
        v.len(),
        v[0].as_secs_f64(),
        q(0.5).as_secs_f64(),
        q(0.9).as_secs_f64(),
        v[v.len() - 1].as_secs_f64()
    )
}

/// README numbers: detection time over repeated trials (fault, removal, heal, return)
/// for TCP_CHECK alone and with passive detection, under 3 client loops.
#[test]
#[ignore]
fn passive_numbers() {
    require_root!();
    let trials: usize = env_or("UVS_TRIALS", 10);
    // UVS_CASES: which of rst,syn x active,passive to run (default all four).
    let cases = std::env::var("UVS_CASES").unwrap_or_default();
    for f in [Fault::Refuse, Fault::Blackhole] {
        for passive in [false, true] {
            let name = format!(
                "{}-{}",
                if f == Fault::Refuse { "rst" } else { "syn" },
                if passive { "passive" } else { "active" }
            );
            if !cases.is_empty() && !cases.split(',').any(|c| c == name) {
                continue;
            }
            let tag = format!("pasnum{}{}", f as u8, passive as u8);
            let mut lvs = start(&tag, passive);
            let loops = load(&mut lvs, 3, 30 * trials as u64);
            let mut samples = Vec::new();
            for _ in 0..trials {
                std::thread::sleep(Duration::from_secs(1));
                if let Some(d) = detect(&mut lvs, 0, f) {
                    if std::env::var_os("UVS_DEBUG").is_some() {
                        let m = metrics(&lvs);
                        let c: Vec<&str> = m.lines().filter(|l| l.starts_with("uvs_passive")).collect();
                        eprintln!("trial: {d:?}\n{}", c.join("\n"));
                    }
                    samples.push(d);
                }
                heal(&mut lvs, "rs1", f);
                assert!(
                    wait_until(15, || rs_line(&lvs, &format!("{}:8080", RS[0])).is_some()),
                    "{}",
                    lvs.director_log()
                );
            }
            for (pid, _) in &loops {
                lvs.bed.stop(*pid);
            }
            eprintln!(
                "detection, {f:?}, {}: {}",
                if passive {
                    "TCP_CHECK + passive"
                } else {
                    "TCP_CHECK alone"
                },
                dist(samples)
            );
        }
    }
}
