//! Connection table: lookup (the established-packet path), insert (the new-connection
//! path) and insert into a full table (evicting) at 1k, 100k and 1M entries, and
//! memory per connection.
//! Goals: >= 10 M lookups/s per worker, <= 96 B per connection (issue 16).
//!
//! Memory is counted by a counting global allocator: the heap bytes a table of n
//! entries holds (slab chunks, both indexes with their control bytes and power-of-two
//! rounding) over n, for DR entries and for NAT entries (which the OUT index holds
//! too). The Arc'd destination is shared, not per connection.
//!
//! Run: cargo bench --bench conn

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use uvs::conn::{Conn, ConnKey, ConnTable};
use uvs::sched::testutil_dest;

#[path = "common/alloc.rs"]
mod alloc;
use alloc::LIVE;

fn key(i: u32) -> ConnKey {
    ConnKey {
        proto: 6,
        caddr: Ipv4Addr::from((0xC000_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761))).to_be_bytes()),
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

/// Heap bytes per entry of a table holding `n` entries (NAT: also OUT-indexed).
fn bytes_per_entry(n: u32, nat: bool) -> (f64, f64) {
    let d = testutil_dest();
    let before = LIVE.load(Relaxed);
    let mut t = ConnTable::with_cap(n as usize * 2);
    for i in 0..n {
        t.insert(key(i), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 11), 80, !nat, 0))
            .unwrap();
    }
    let counted = (LIVE.load(Relaxed) - before) as f64 / n as f64;
    (counted, t.heap_bytes() as f64 / n as f64)
}

fn nat_table(n: u32) -> ConnTable {
    let d = testutil_dest();
    let mut t = ConnTable::with_cap(n as usize * 2);
    for i in 0..n {
        t.insert(key(i), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 11), 80, false, 0))
            .unwrap();
    }
    t
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn conn(c: &mut Criterion) {
    // Resident memory a 1M-entry NAT table adds to the process (first, before any other
    // table has left freed pages behind; pages touched, as the
    // kernel counts them; the allocator's own overhead included).
    let rss0 = rss_kb();
    let t = nat_table(1_000_000);
    println!(
        "conn RSS: a 1000000-entry NAT table adds {} MiB to the process's RSS",
        (rss_kb() - rss0) / 1024
    );
    drop(t);
    for n in [1_000u32, 100_000, 1_000_000] {
        let (dr, dr_own) = bytes_per_entry(n, false);
        let (nat, nat_own) = bytes_per_entry(n, true);
        println!(
            "conn memory at {n} entries: DR {dr:.1} B per connection, NAT {nat:.1} B \
             (allocator bytes; ConnTable::heap_bytes says {dr_own:.1} and {nat_own:.1})"
        );
    }
    for n in [1_000u32, 100_000, 1_000_000] {
        let mut g = c.benchmark_group(format!("conn_{n}"));
        g.throughput(Throughput::Elements(1));
        let mut t = table(n);
        let mut i = 0u32;
        g.bench_function("lookup", |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                black_box(t.get_mut(&key(i)).map(|c| c.dport))
            })
        });
        // Insert into a table holding n entries (then remove, to keep it at n).
        let d = testutil_dest();
        let mut j = n;
        g.bench_function("insert", |b| {
            b.iter_batched(
                || {
                    j = j.wrapping_add(1);
                    (key(j), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 11), 80, true, 0))
                },
                |(k, c)| {
                    black_box(t.insert(k, c).is_ok());
                    t.remove(&k)
                },
                BatchSize::SmallInput,
            )
        });
        // Insert into a full table: each insert evicts the least recently used entry
        // of a sample (the entries are idle DR entries, all evictable).
        let mut full = ConnTable::with_cap(n as usize);
        for i in 0..n {
            full.insert(key(i), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 11), 80, true, 0))
                .unwrap();
        }
        let mut now = 10_000u64;
        g.bench_function("insert_evicting", |b| {
            b.iter_batched(
                || {
                    j = j.wrapping_add(1);
                    now += 1;
                    (key(j), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 11), 80, true, now))
                },
                |(k, c)| black_box(full.insert(k, c).is_ok()),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, conn);
criterion_main!(benches);
