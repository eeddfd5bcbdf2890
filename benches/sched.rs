//! Cost of one `Scheduler::schedule` pick for every IPVS scheduler at 2, 16, 256 and
//! 4096 real servers (goal: <= 50 ns per pick at 4096).
//!
//! The destinations carry varied weights and connection counts so that the
//! least-connection family has real work to do; picks do not bind connections, so the
//! load stays fixed and every iteration measures the same decision.
//!
//! Run: cargo bench --bench sched

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use uvs::sched::{NAMES, SchedInput, new_scheduler};
use uvs::service::{Dest, DestConfig, ForwardMethod, Protocol, TunnelCsum, TunnelType};

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

fn sched(c: &mut Criterion) {
    for n in [2u32, 16, 256, 4096] {
        let ds = dests(n);
        let mut g = c.benchmark_group(format!("sched_{n}"));
        for &name in NAMES {
            let mut s = new_scheduler(name, &ds, 0).expect("scheduler");
            let mut i = 0u32;
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let input = SchedInput {
                        proto: Protocol::Tcp,
                        saddr: IpAddr::from((0xc000_0200u32 ^ i.wrapping_mul(2_654_435_761)).to_be_bytes()),
                        sport: i as u16,
                        daddr: IpAddr::from([10, 1, 1, 1]),
                        dport: 80,
                        svc_flags: 0,
                        now_ms: 0,
                    };
                    black_box(s.schedule(black_box(&ds), &input))
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, sched);
criterion_main!(benches);
