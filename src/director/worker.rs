//! A worker thread: a thin loop around [`Worker::process`]. It drains its RX ring
//! blocks, lets the pipeline write frames into its TX rings, flushes once per batch,
//! holds frames whose next hop is being resolved (bounded), passes events to the
//! control thread, and reaps idle connections once a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::pipeline::{DropReason, Event, RxMeta, Shared, Verdict, Worker};
use crate::ring::{RxRing, Tx, poll_readable};

/// What a worker tells the control thread.
#[derive(Debug, Clone, Copy)]
pub enum ControlEvent {
    /// An ARP packet said `ip` is at `mac`.
    Neigh { ifindex: u32, ip: [u8; 4], mac: [u8; 6] },
    /// Please resolve `ip` on `ifindex`.
    Solicit { ifindex: u32, ip: [u8; 4] },
}

/// Frames held while their next hop is being resolved: at most this many per worker,
/// for at most [`PENDING_MS`].
const PENDING_MAX: usize = 64;
const PENDING_MS: u64 = 1000;
const PENDING_FRAME: usize = 2048;

/// A frame waiting for ARP.
struct Pending {
    meta: RxMeta,
    at_ms: u64,
    len: usize,
    buf: Box<[u8; PENDING_FRAME]>,
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
    ctl: Sender<ControlEvent>,
) {
    let fds: Vec<_> = io.rx.iter().map(|r| r.raw_fd()).collect();
    let mut last_expire = 0u64;
    let mut pending: Vec<Pending> = Vec::with_capacity(PENDING_MAX);
    let mut free: Vec<Box<[u8; PENDING_FRAME]>> = (0..PENDING_MAX).map(|_| Box::new([0u8; PENDING_FRAME])).collect();
    let mut seen_gen = sh.neigh_gen.load(Ordering::Acquire);
    while !stop.load(Ordering::Relaxed) {
        let now_ms = epoch.elapsed().as_millis() as u64;
        let svcs = sh.services.load();
        let mut got = 0;
        for ring in io.rx.iter_mut() {
            got += ring.drain_block(
                |meta, frame| match w.process(&sh, &svcs, now_ms, meta, frame, &mut io.tx) {
                    Verdict::Neigh { ifindex, ip, mac } => {
                        let _ = ctl.try_send(ControlEvent::Neigh { ifindex, ip, mac });
                    }
                    Verdict::Drop(DropReason::NeighUnresolved) if frame.len() <= PENDING_FRAME => {
                        if let Some(mut buf) = free.pop() {
                            buf[..frame.len()].copy_from_slice(frame);
                            pending.push(Pending {
                                meta,
                                at_ms: now_ms,
                                len: frame.len(),
                                buf,
                            });
                        }
                    }
                    _ => {}
                },
            );
        }
        for e in w.events.drain(..) {
            let Event::Solicit { ifindex, ip } = e;
            let _ = ctl.try_send(ControlEvent::Solicit { ifindex, ip });
        }
        // Retry held frames when the neighbour map changed (or while idle); frames
        // still unresolved after PENDING_MS are dropped for good.
        let generation = sh.neigh_gen.load(Ordering::Acquire);
        if !pending.is_empty() && (generation != seen_gen || got == 0) {
            for p in std::mem::take(&mut pending) {
                let v = w.process(&sh, &svcs, now_ms, p.meta, &p.buf[..p.len], &mut io.tx);
                if v == Verdict::Drop(DropReason::NeighUnresolved) && now_ms < p.at_ms + PENDING_MS {
                    pending.push(p);
                } else {
                    free.push(p.buf);
                }
            }
            w.events.clear();
        }
        seen_gen = generation;
        io.tx.flush();
        if now_ms >= last_expire + 1000 {
            w.expire(now_ms);
            last_expire = now_ms;
        }
        if got == 0 {
            poll_readable(&fds, if pending.is_empty() { 100 } else { 1 });
        }
    }
}
