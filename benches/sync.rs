//! The master sync hook's cost on the data path (issue 18: "new-flow rate with the sync
//! master on >= 0.9 of the rate without it, the two measured in turns, flows of >= 3
//! packets"). The pipeline alone (no sockets): UDP DR flows of 3 datagrams each (IPVS
//! syncs a UDP connection at its 3rd packet, `sync_threshold` 3 50), one worker, with
//! and without the hook, in alternating turns; the queue is drained between turns (the
//! sync thread runs on another core). Prints ns per flow for each and the median ratio
//! of the rates, for a plain service and for a persistent one (`-p 300`: every flow
//! from one client, so all are controlled by one template, which the kernel's
//! `ip_vs_sync_conn` checks on each packet and, with the default `sync_threshold`, sends
//! on each).
//!
//! `cargo bench --bench sync` (UVS_SYNC_TURNS=N for more turns; default 10).

use std::sync::Arc;
use std::time::Instant;

use uvs::pipeline::fixture::*;
use uvs::pipeline::{SyncHook, Worker};

const FLOWS: u32 = 60_000;

const PERSISTENT: &str = "\
-A -u 10.0.0.100:53 -s rr -p 300
-a -u 10.0.0.100:53 -r 10.0.0.11:53 -g -w 1
-a -u 10.0.0.100:53 -r 10.0.0.12:53 -g -w 1
";

fn main() {
    let turns: usize = std::env::var("UVS_SYNC_TURNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    scenario("3-packet UDP DR flows", None, turns);
    scenario(
        "3-packet UDP DR flows, persistent service (-p 300)",
        Some(PERSISTENT),
        turns,
    );
}

fn scenario(name: &str, rules: Option<&str>, turns: usize) {
    let (sh, _ctl) = match rules {
        None => director(),
        Some(r) => director_with(r),
    };
    let svcs = sh.services.load();
    let rx = uvs::pipeline::RxMeta {
        ifindex: IFINDEX,
        pkttype: uvs::pipeline::pkttype::HOST,
        csum_partial: false,
        vlan_tci: None,
    };
    // Flow i: client 192.0.2.x / 198.18.x.y:port, 3 datagrams in a row.
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            let mut f = udp_frame(1024 + (i % 60000) as u16, 53, &[0u8; 18]);
            f[26..30].copy_from_slice(&(0xC612_0000u32 + i / 60000).to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let c = uvs::wire::checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect();
    let (tx, qrx) = crossbeam_channel::bounded(4 * FLOWS as usize);
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut out = VecEmit::counting();
    let mut records = 0;
    let mut run = |hook: bool, clock: u64| -> f64 {
        let mut w = Worker::new(0, 1 << 20);
        if hook {
            w.sync = Some(SyncHook::new(tx.clone(), dropped.clone()));
        }
        let t = Instant::now();
        for f in &frames {
            for _ in 0..3 {
                std::hint::black_box(w.process(&sh, &svcs, clock, rx, f, &mut out));
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(FLOWS);
        let synced = qrx.try_iter().count();
        if hook {
            if rules.is_none() {
                assert_eq!(synced, FLOWS as usize, "one record per flow, at its 3rd packet");
            }
            records = synced;
        }
        ns
    };
    run(false, 0);
    run(true, 0);
    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..turns {
        // Alternate which goes first, so neither always runs on a warmer cache.
        let (a, b) = if i % 2 == 0 {
            let a = run(false, 1);
            (a, run(true, 1))
        } else {
            let b = run(true, 1);
            (run(false, 1), b)
        };
        off.push(a);
        on.push(b);
        ratios.push(a / b);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (m_off, m_on, m_ratio) = (med(&mut off), med(&mut on), med(&mut ratios));
    println!("{name}, 1 worker, pipeline only, {turns} turns of {FLOWS} flows:");
    println!("  sync master off: {m_off:8.1} ns/flow ({:.2} M flows/s)", 1e3 / m_off);
    println!("  sync master on:  {m_on:8.1} ns/flow ({:.2} M flows/s)", 1e3 / m_on);
    println!(
        "  new-flow rate on/off: {m_ratio:.3} (median of per-turn ratios; goal >= 0.9); records queued per flow {:.2}; \
         queue drops {}",
        records as f64 / f64::from(FLOWS),
        dropped.load(std::sync::atomic::Ordering::Relaxed)
    );
}
