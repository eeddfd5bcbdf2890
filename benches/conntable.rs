//! Connection-table choices, measured: the per-worker table uvs uses (no lock) against
//! a table shared by all workers behind a RwLock, uncontended and with a second
//! thread doing the same lookups; plus memory per entry.
//!
//! Run: cargo bench --bench conntable

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use criterion::{Criterion, criterion_group, criterion_main};
use uvs::conn::{Conn, ConnKey, ConnTable};
use uvs::sched::testutil_dest;

fn key(i: u32) -> ConnKey {
    ConnKey {
        proto: 6,
        caddr: Ipv4Addr::from_bits(0xC000_0000u32 + i),
        cport: (i % 60000) as u16,
        vaddr: Ipv4Addr::new(10, 0, 0, 100),
        vport: 80,
    }
}

fn table(n: u32) -> ConnTable {
    let d = testutil_dest();
    let mut t = ConnTable::with_cap(n as usize * 2);
    for i in 0..n {
        t.insert(key(i), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 11), 80, true, 0))
            .unwrap();
    }
    t
}

fn conntable(c: &mut Criterion) {
    let n = 100_000u32;
    let mut g = c.benchmark_group("conn_lookup_100k");
    let mut t = table(n);
    let mut i = 0u32;
    g.bench_function("per_worker", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(t.get_mut(&key(i)).map(|c| c.dport))
        })
    });
    let shared = Arc::new(RwLock::new(table(n)));
    g.bench_function("shared_rwlock_uncontended", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(shared.read().unwrap().get(&key(i)).map(|c| c.dport))
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, st2) = (shared.clone(), stop.clone());
    let other = std::thread::spawn(move || {
        let mut j = 1u32;
        while !st2.load(Ordering::Relaxed) {
            j = (j + 104729) % n;
            black_box(s2.read().unwrap().get(&key(j)).map(|c| c.dport));
        }
    });
    g.bench_function("shared_rwlock_contended", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(shared.read().unwrap().get(&key(i)).map(|c| c.dport))
        })
    });
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
    g.finish();

    // Memory per entry: slab chunks and both indexes (ConnTable::heap_bytes) over
    // entries; `cargo bench --bench conn` counts the allocator's bytes too.
    for n in [1_000u32, 100_000, 1_000_000] {
        let t = table(n);
        println!(
            "conn table memory at {n} entries: {:.1} B per entry",
            t.heap_bytes() as f64 / n as f64
        );
    }
}

criterion_group!(benches, conntable);
criterion_main!(benches);
