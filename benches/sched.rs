//! Cost of one `Scheduler::schedule` pick for every IPVS scheduler at 2 to 4096 real
//! servers (goal: <= 50 ns per pick at 4096), in two series:
//!
//! - **fixed** (`sched_N/NAME`): picks that never bind a connection, so the load stays
//!   fixed and every iteration measures the same decision (the least-connection
//!   family's trees never have a dirty leaf);
//! - **churn** (`sched_churn_N/NAME`): each pick binds a connection to the chosen server
//!   (`bind_conn`, then `set_conn_active` as the handshake completes) and, once `8 N`
//!   connections are bound, unbinds the oldest (`unbind_conn`), so the load moves as it
//!   does in a director and the trees pay for staying current.
//!
//! Beside the tree versions of the least-connection family (lc wlc sed nq ovf lblc
//! lblcr), `NAME-scan` is the kernel's linear scan (`sched::reference`), measured in the
//! same run. The destinations carry varied weights and connection counts.
//!
//! Run: cargo bench --bench sched                 (about 10 minutes)
//!      SCHED_QUICK=1 cargo bench --bench sched   (fewer samples, about 3 minutes)
//! Then: cargo run --release --example sched_plot -- pictures/sched-cost.svg

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use uvs::sched::reference::{self, new_reference_scheduler};
use uvs::sched::{NAMES, SchedInput, Scheduler, new_scheduler};
use uvs::service::{Dest, DestConfig, ForwardMethod, Protocol, TunnelCsum, TunnelType};

/// Real-server counts (the plot's x axis).
const SIZES: &[u32] = &[2, 8, 32, 128, 512, 2048, 4096];

fn dests(n: u32) -> Vec<Arc<Dest>> {
    (0..n)
        .map(|i| {
            let d = Dest::new(&DestConfig {
                addr: IpAddr::from((0x0a00_0000u32 + i + 1).to_be_bytes()),
                port: 80,
                method: ForwardMethod::Route,
                weight: (i % 5 + 1) as i32,
                u_threshold: 0,
                l_threshold: 0,
                tun_type: TunnelType::Ipip,
                tun_port: 0,
                tun_csum: TunnelCsum::NoCsum,
            });
            d.activeconns.store(10 + (i * 7919) % 97, Relaxed);
            d.inactconns.store((i * 104_729) % 1000, Relaxed);
            Arc::new(d)
        })
        .collect()
}

fn input(i: u32) -> SchedInput {
    SchedInput {
        proto: Protocol::Tcp,
        saddr: IpAddr::from((0xc000_0200u32 ^ i.wrapping_mul(2_654_435_761)).to_be_bytes()),
        sport: i as u16,
        daddr: IpAddr::from([10, 1, 1, 1]),
        dport: 80,
        svc_flags: 0,
        now_ms: 0,
    }
}

/// The schedulers measured: every scheduler, then the linear scans as `NAME-scan`.
fn all(ds: &[Arc<Dest>]) -> Vec<(String, Box<dyn Scheduler>)> {
    let mut v: Vec<(String, Box<dyn Scheduler>)> = NAMES
        .iter()
        .map(|n| (n.to_string(), new_scheduler(n, ds, 0).expect("scheduler")))
        .collect();
    for n in reference::NAMES {
        v.push((format!("{n}-scan"), new_reference_scheduler(n, ds, 0).expect("scan")));
    }
    v
}

fn fixed(c: &mut Criterion) {
    for &n in SIZES {
        let ds = dests(n);
        let mut g = c.benchmark_group(format!("sched_{n}"));
        for (name, mut s) in all(&ds) {
            let mut i = 0u32;
            g.bench_function(BenchmarkId::from_parameter(&name), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    black_box(s.schedule(black_box(&ds), &input(i)))
                })
            });
        }
        g.finish();
    }
}

fn churn(c: &mut Criterion) {
    for &n in SIZES {
        let mut g = c.benchmark_group(format!("sched_churn_{n}"));
        for (k, name) in all(&dests(n)).into_iter().map(|(name, _)| name).enumerate() {
            // Fresh servers per scheduler: the churn moves their load.
            let ds = dests(n);
            let mut s = all(&ds).swap_remove(k).1;
            let window = 8 * n as usize;
            let mut bound: VecDeque<usize> = VecDeque::with_capacity(window + 1);
            let mut i = 0u32;
            g.bench_function(BenchmarkId::from_parameter(&name), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    if let Some(d) = s.schedule(black_box(&ds), &input(i)) {
                        ds[d].bind_conn();
                        ds[d].set_conn_active(true);
                        bound.push_back(d);
                    }
                    if bound.len() > window {
                        let old = bound.pop_front().unwrap();
                        ds[old].unbind_conn(true);
                    }
                })
            });
        }
        g.finish();
    }
}

fn main() {
    let quick = std::env::var_os("SCHED_QUICK").is_some();
    // 294 benchmarks: no per-benchmark HTML plots (examples/sched_plot draws the
    // one that matters) and fewer bootstrap resamples, or the analysis outlasts the
    // measurement.
    let base = Criterion::default().without_plots().nresamples(10_000);
    let base = if quick {
        base.sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
    } else {
        base.sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(1))
    };
    let mut c = base.configure_from_args();
    fixed(&mut c);
    churn(&mut c);
    c.final_summary();
}
