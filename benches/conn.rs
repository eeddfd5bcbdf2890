//! Connection table: lookup (the established-packet path) and insert (the
//! new-connection path) at 1k, 100k and 1M entries, and memory per connection.
//! Goals: >= 10 M lookups/s per worker, <= 128 B per connection.
//!
//! Run: cargo bench --bench conn

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use uvs::conn::{Conn, ConnKey, ConnTable};
use uvs::sched::testutil_dest;

fn key(i: u32) -> ConnKey {
    ConnKey {
        proto: 6,
        caddr: (0xC000_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761))).to_be_bytes(),
        cport: (i % 60000) as u16,
        vaddr: [10, 0, 0, 100],
        vport: 80,
    }
}

fn table(n: u32) -> ConnTable {
    let d = testutil_dest();
    let mut t = ConnTable::with_cap(n as usize * 2);
    for i in 0..n {
        t.insert(key(i), Conn::new(d.clone(), [10, 0, 0, 11], 80, true, 0))
            .unwrap();
    }
    t
}

fn conn(c: &mut Criterion) {
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
                    (key(j), Conn::new(d.clone(), [10, 0, 0, 11], 80, true, 0))
                },
                |(k, c)| {
                    black_box(t.insert(k, c).is_ok());
                    t.remove(&k)
                },
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }

    // Memory: hashbrown keeps one (key, entry) slot plus one control byte per bucket,
    // with buckets = next power of two of 8/7 of the entries. The Arc'd Dest and any
    // template are shared, not per connection.
    let slot = std::mem::size_of::<(ConnKey, Conn)>() + 1;
    println!(
        "conn memory: ConnKey {} B + Conn {} B = slot {slot} B",
        std::mem::size_of::<ConnKey>(),
        std::mem::size_of::<Conn>()
    );
    for n in [1_000usize, 100_000, 1_000_000] {
        let buckets = (n * 8 / 7).next_power_of_two();
        println!(
            "conn memory at {n} entries: {} B per connection ({buckets} buckets, worst case {} B)",
            buckets * slot / n,
            slot * 8 / 7 * 2
        );
    }
}

criterion_group!(benches, conn);
criterion_main!(benches);
