//! A worker thread: a thin loop around [`Worker::process`]. It drains its RX ring
//! blocks, lets the pipeline write frames into its TX rings, flushes once per batch,
//! and reaps idle connections once a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::pipeline::{Shared, Verdict, Worker};
use crate::ring::{RxRing, Tx, poll_readable};

/// What a worker tells the control thread.
#[derive(Debug, Clone, Copy)]
pub struct NeighEvent {
    pub ifindex: u32,
    pub ip: [u8; 4],
    pub mac: [u8; 6],
}

pub struct WorkerIo {
    pub rx: Vec<RxRing>,
    pub tx: Tx,
}

/// Run until `stop` is set.
pub fn run(
    mut w: Worker,
    mut io: WorkerIo,
    sh: Arc<Shared>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    neigh: Sender<NeighEvent>,
) {
    let fds: Vec<_> = io.rx.iter().map(|r| r.raw_fd()).collect();
    let mut last_expire = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now_ms = epoch.elapsed().as_millis() as u64;
        let svcs = sh.services.load();
        let mut got = 0;
        for ring in io.rx.iter_mut() {
            got += ring.drain_block(|meta, frame| {
                if let Verdict::Neigh { ifindex, ip, mac } = w.process(&sh, &svcs, now_ms, meta, frame, &mut io.tx) {
                    let _ = neigh.try_send(NeighEvent { ifindex, ip, mac });
                }
            });
        }
        io.tx.flush();
        if now_ms >= last_expire + 1000 {
            w.expire(now_ms);
            last_expire = now_ms;
        }
        if got == 0 {
            poll_readable(&fds, 100);
        }
    }
}
