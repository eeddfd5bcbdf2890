//! Per-packet cost of the pipeline (no sockets): an established DR connection, a new
//! DR connection (schedule + insert), and a reference in the same run: the least a
//! DR forwarder must do (copy the frame, rewrite the MACs, decrement the TTL).
//!
//! Run: cargo bench --bench pipeline

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uvs::pipeline::fixture::*;
use uvs::pipeline::{Emit, RxMeta, Worker, pkttype};

const RX: RxMeta = RxMeta {
    ifindex: IFINDEX,
    pkttype: pkttype::HOST,
    csum_partial: false,
    vlan_tci: None,
};

fn pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("dr");
    g.throughput(Throughput::Elements(1));

    // Reference: copy + MAC rewrite + TTL decrement, nothing else.
    let frame = tcp_frame(40000, 80, false, true, &[0u8; 6]);
    let mut out = VecEmit::counting();
    g.bench_function("reference_copy_mac_ttl", |b| {
        b.iter(|| {
            let f = black_box(&frame[..]);
            let buf = out.buffer(IFINDEX).unwrap();
            buf[..f.len()].copy_from_slice(f);
            buf[0..6].copy_from_slice(&RS1_MAC);
            buf[6..12].copy_from_slice(&DIRECTOR_MAC);
            let mut p = uvs::wire::ipv4::Packet::new_checked(&mut buf[14..f.len()]).unwrap();
            p.decrement_ttl();
            out.commit(IFINDEX, f.len());
        })
    });

    // Established connection: ACK + data on a flow that already has an entry.
    let (sh, _ctl) = director();
    let mut w = Worker::new(0, 1 << 20);
    let svcs = sh.services.load();
    let mut out = VecEmit::counting();
    w.process(&sh, &svcs, 0, RX, &tcp_frame(40000, 80, true, false, b""), &mut out);
    let data = tcp_frame(40000, 80, false, true, &[0u8; 6]);
    g.bench_function("established", |b| {
        b.iter(|| w.process(&sh, &svcs, 1, RX, black_box(&data), &mut out))
    });
    // The same with the worker adapter's tap check (`uvs trace`/`--pcap` off): the
    // tap is loaded (here per packet; the worker does it once per batch) and found
    // empty. This is the whole cost of tracing support when no tracer is attached.
    let tap = &sh.tap;
    g.bench_function("established_tap_off", |b| {
        b.iter(|| match &*tap.load() {
            None => w.process(&sh, &svcs, 1, RX, black_box(&data), &mut out),
            Some(_) => unreachable!(),
        })
    });

    // NAT and TUN, established, next to DR in the same run.
    let (sh_all, _ctl_all) = director_all();
    let svcs_all = sh_all.services.load();
    let mut w = Worker::new(0, 1 << 20);
    w.process(
        &sh_all,
        &svcs_all,
        0,
        RX,
        &tcp_frame(40000, 8080, true, false, b""),
        &mut out,
    );
    w.process(
        &sh_all,
        &svcs_all,
        0,
        RX,
        &tcp_frame(40001, 443, true, false, b""),
        &mut out,
    );
    let nat_req = tcp_frame(40000, 8080, false, true, &[0u8; 6]);
    let nat_reply = reply_frame(RS1, RS1_MAC, 8888, 40000, false, &[0u8; 6]);
    let tun = tcp_frame(40001, 443, false, true, &[0u8; 6]);
    g.bench_function("nat_request", |b| {
        b.iter(|| w.process(&sh_all, &svcs_all, 1, RX, black_box(&nat_req), &mut out))
    });
    g.bench_function("nat_reply", |b| {
        b.iter(|| w.process(&sh_all, &svcs_all, 1, RX, black_box(&nat_reply), &mut out))
    });
    g.bench_function("tun", |b| {
        b.iter(|| w.process(&sh_all, &svcs_all, 1, RX, black_box(&tun), &mut out))
    });

    // New connection per packet: every SYN has a new source address and port.
    let syns: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| {
            let mut f = tcp_frame(1024 + (i % 60000) as u16, 80, true, false, b"");
            f[14 + 12..14 + 16].copy_from_slice(&(0xC000_0000u32 + i).to_be_bytes());
            // fix the IP checksum after changing the source
            f[24] = 0;
            f[25] = 0;
            let c = uvs::wire::checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect();
    g.bench_function("new_connection", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let mut w = Worker::new(0, 1 << 20);
                let n = (iters - done).min(syns.len() as u64) as usize;
                let t = Instant::now();
                for f in &syns[..n] {
                    black_box(w.process(&sh, &svcs, 0, RX, f, &mut out));
                }
                total += t.elapsed();
                done += n as u64;
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
