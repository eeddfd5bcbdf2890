//! Service table memory and load time (issue 14 item 4): 10,000 virtual services with
//! two NAT real servers each, per scheduler, loaded the two ways an operator does it:
//! a rules file at start (`uvs run --rules`, [`uvs::director::load_rules`]) and
//! `ipvsadm -R` over the control socket ([`uvs::control::execute`]).
//!
//! Memory is counted in allocator bytes (a counting global allocator: bytes live after
//! the load minus before, divided by the services), with the director's 2 workers.
//! Goals: <= 2 KB per service for rr, wrr and the lc family; 10,000 services in < 1 s.
//!
//! Run: cargo bench --bench services

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use uvs::ctl::Ctl;
use uvs::pipeline::Shared;

#[path = "common/alloc.rs"]
mod alloc;
use alloc::LIVE;

const N: usize = 10_000;
const WORKERS: usize = 2;

/// `-S -n` lines: N TCP services on distinct VIPs, each with two NAT real servers.
fn rules(sched: &str) -> String {
    let mut s = String::new();
    for i in 0..N {
        let (a, b) = (i / 250, i % 250 + 1);
        s.push_str(&format!("-A -t 10.1.{a}.{b}:80 -s {sched}\n"));
        for r in [11, 12] {
            s.push_str(&format!("-a -t 10.1.{a}.{b}:80 -r 10.2.{r}.{b}:8080 -m -w 1\n"));
        }
    }
    s
}

fn new_ctl() -> Arc<Ctl> {
    Arc::new(Ctl::new(Arc::new(Shared::new(Vec::new()))))
}

/// Start path: bytes per service and load time of a rules file.
fn load_file(sched: &str) -> (isize, Duration) {
    let path = std::env::temp_dir().join(format!("uvs-bench-services-{}-{sched}", std::process::id()));
    std::fs::write(&path, rules(sched)).unwrap();
    let ctl = new_ctl();
    let before = LIVE.load(Relaxed);
    let t = Instant::now();
    uvs::director::load_rules(&ctl, &path).unwrap();
    let took = t.elapsed();
    let bytes = LIVE.load(Relaxed) - before;
    let _ = std::fs::remove_file(&path);
    assert_eq!(ctl.shared().services.load().services().len(), N);
    (bytes / N as isize, took)
}

/// `ipvsadm -R` of the same lines: the client parses them and the director applies the
/// commands inside one `Ctl::batch` (control/exec.rs: apply); here the lines are
/// parsed up front, so this times the table work alone.
fn restore(sched: &str) -> Duration {
    let ctl = new_ctl();
    let cmds = uvs::ipvsadm::rules::parse_rules(&rules(sched)).unwrap();
    let t = Instant::now();
    ctl.batch(|ctl| {
        for (_, c) in &cmds {
            ctl.apply(c).unwrap();
        }
    });
    let took = t.elapsed();
    assert_eq!(ctl.shared().services.load().services().len(), N);
    took
}

fn services(c: &mut Criterion) {
    uvs::stats::set_workers(WORKERS);
    for sched in [
        "rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "twos", "lblc", "lblcr", "sh", "dh", "mh",
    ] {
        let (per, load) = load_file(sched);
        let r = restore(sched);
        println!(
            "services {sched:>5}: {per} B per service (2 real servers, {WORKERS} workers); \
             {N} services: rules file {:.0} ms, ipvsadm -R {:.0} ms",
            load.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3
        );
    }
    let mut g = c.benchmark_group("services_10k");
    g.sample_size(10);
    g.bench_function("rules_file_rr", |b| b.iter(|| load_file("rr")));
    g.bench_function("restore_rr", |b| b.iter(|| restore("rr")));
    g.finish();
}

criterion_group!(benches, services);
criterion_main!(benches);
