//! A worker thread: the pipeline ([`Worker::process`]) plugged into the shared ring
//! loop ([`crate::ring::drive`]). Per round it drains RX blocks, lets the pipeline
//! write frames into its TX rings, flushes once, holds frames whose next hop is being
//! resolved (bounded), passes events to the control thread, and reaps idle
//! connections once a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::pipeline::{DropReason, Event, RxMeta, Shared, Verdict, Worker};
use crate::ring::drive::{Handler, drive};
use crate::ring::{RxRing, Tx};
use crate::service::ServiceTable;

/// What a worker tells the control thread.
#[derive(Debug, Clone, Copy)]
pub enum ControlEvent {
    /// An ARP packet said `ip` is at `mac`.
    Neigh {
        ifindex: u32,
        ip: std::net::Ipv4Addr,
        mac: [u8; 6],
    },
    /// Please resolve `ip` on `ifindex`.
    Solicit { ifindex: u32, ip: std::net::Ipv4Addr },
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
    /// The tap's sequence number of the frame (its RX copy was recorded once, when it
    /// arrived; what it causes when retried is recorded under the same number).
    seq: Option<u64>,
    /// A PENDING_FRAME-byte buffer from the free list.
    buf: Vec<u8>,
}

pub struct WorkerIo {
    pub rx: Vec<RxRing>,
    pub tx: Tx,
    /// The control plane's window on this worker (`-L -c`, `/metrics`).
    pub probe: Arc<crate::control::WorkerProbe>,
}

/// The worker's state between frames.
struct State {
    w: Worker,
    sh: Arc<Shared>,
    svcs: arc_swap::Guard<Arc<ServiceTable>>,
    epoch: Instant,
    now_ms: u64,
    ctl: Sender<ControlEvent>,
    last_expire: u64,
    pending: Vec<Pending>,
    free: Vec<Vec<u8>>,
    seen_gen: u32,
    /// The frame tap (`--pcap`, `uvs trace`), reloaded each round; none = off.
    tap: Option<Arc<super::tap::Tap>>,
    tap_scratch: Vec<u8>,
    /// The tap sequence number of the frame just processed.
    last_seq: Option<u64>,
    /// Clock and table snapshot are from the previous round: reload them before the
    /// next frame or round. A round may end in a wait of up to 20 ms, and a frame read after
    /// it must see every table change made before it arrived (an ipvsadm command is
    /// effective when it returns).
    stale: bool,
    probe: Arc<crate::control::WorkerProbe>,
    /// Commands from other threads (sync, handover), drained once per round.
    inbox: super::mailbox::Inbox,
}

impl Handler for State {
    #[inline]
    fn frame(&mut self, meta: RxMeta, frame: &[u8], tx: &mut Tx) {
        if self.stale {
            self.stale = false;
            self.refresh();
        }
        let v = self.process(meta, frame, tx, None);
        self.after(meta, frame, v);
    }

    fn round(&mut self, got: usize, tx: &mut Tx) -> i32 {
        // A round without frames (a wait) still has last round's clock and snapshot.
        if self.stale {
            self.stale = false;
            self.refresh();
        }
        for e in self.w.events.drain(..) {
            let Event::Solicit { ifindex, ip } = e;
            let _ = self.ctl.try_send(ControlEvent::Solicit { ifindex, ip });
        }
        // Retry held frames when the neighbour map changed (or while idle); frames
        // still unresolved after PENDING_MS are dropped for good.
        let generation = self.sh.neigh_gen.load(Ordering::Acquire);
        if !self.pending.is_empty() && (generation != self.seen_gen || got == 0) {
            for p in std::mem::take(&mut self.pending) {
                let v = self.process(p.meta, &p.buf[..p.len], tx, p.seq);
                if v == Verdict::Drop(DropReason::NeighUnresolved) && self.now_ms < p.at_ms + PENDING_MS {
                    self.pending.push(p);
                } else {
                    self.free.push(p.buf);
                }
            }
            self.w.events.clear();
            tx.flush();
        }
        self.seen_gen = generation;
        let too_big = tx.take_too_big();
        if too_big != 0 {
            self.w.counters.add_drops(DropReason::TxTooBig, too_big);
        }
        if self.now_ms >= self.last_expire + 1000 {
            self.w.expire(self.now_ms);
            self.w.defend(&self.sh, self.now_ms);
            self.last_expire = self.now_ms;
        }
        // Installs and exports asked for by other threads (one atomic load when none).
        if !self.inbox.is_empty() {
            super::mailbox::drain(&self.inbox, &mut self.w, &self.sh, &self.svcs, self.now_ms);
        }
        // One relaxed store and load; copies the table only when `-L -c` asks.
        self.probe.poll(&self.w, self.now_ms);
        // Clock and snapshot are reloaded once, before whatever comes next (the next
        // frame, or the next round after a wait).
        self.stale = true;
        if self.pending.is_empty() { 20 } else { 1 }
    }
}

impl State {
    /// Fresh clock, table snapshot and tap.
    fn refresh(&mut self) {
        self.now_ms = self.epoch.elapsed().as_millis() as u64;
        self.svcs = self.sh.services.load();
        self.tap = self.sh.tap.load_full();
    }

    /// Run the pipeline on one frame, through the tap when one is attached. `held` is
    /// the tap sequence number of a held frame being retried: its RX copy is not
    /// recorded again.
    fn process(&mut self, meta: RxMeta, frame: &[u8], tx: &mut Tx, held: Option<u64>) -> Verdict {
        match &self.tap {
            None => {
                self.last_seq = None;
                self.w.process(&self.sh, &self.svcs, self.now_ms, meta, frame, tx)
            }
            Some(tap) => {
                let seq = match held {
                    Some(s) => s,
                    None => {
                        let s = tap.next_seq();
                        if tap.rx_too {
                            tap.record(super::tap::TapDir::Rx, meta.ifindex, s, frame);
                        }
                        s
                    }
                };
                self.last_seq = Some(seq);
                if self.tap_scratch.is_empty() {
                    self.tap_scratch = vec![0; 65536];
                }
                let mut e = super::tap::TapEmit {
                    inner: tx,
                    tap,
                    scratch: &mut self.tap_scratch,
                    seq,
                };
                self.w.process(&self.sh, &self.svcs, self.now_ms, meta, frame, &mut e)
            }
        }
    }

    /// What a worker does with the verdict (ARP news, holding unresolved frames).
    fn after(&mut self, meta: RxMeta, frame: &[u8], v: Verdict) {
        match v {
            Verdict::Neigh { ifindex, ip, mac } => {
                let _ = self.ctl.try_send(ControlEvent::Neigh { ifindex, ip, mac });
            }
            Verdict::Drop(DropReason::NeighUnresolved) if frame.len() <= PENDING_FRAME => {
                if let Some(mut buf) = self.free.pop() {
                    buf[..frame.len()].copy_from_slice(frame);
                    self.pending.push(Pending {
                        meta,
                        at_ms: self.now_ms,
                        len: frame.len(),
                        seq: self.last_seq,
                        buf,
                    });
                }
            }
            _ => {}
        }
    }
}

/// Run until `stop` is set; give back the worker's state and its rings (a handover
/// exports the one and passes the other on).
pub fn run(
    w: Worker,
    mut io: WorkerIo,
    sh: Arc<Shared>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    ctl: Sender<ControlEvent>,
    inbox: super::mailbox::Inbox,
) -> (Worker, WorkerIo) {
    let mut st = State {
        inbox,
        w,
        svcs: sh.services.load(),
        seen_gen: sh.neigh_gen.load(Ordering::Acquire),
        sh,
        epoch,
        now_ms: epoch.elapsed().as_millis() as u64,
        ctl,
        last_expire: 0,
        pending: Vec::with_capacity(PENDING_MAX),
        free: (0..PENDING_MAX).map(|_| vec![0u8; PENDING_FRAME]).collect(),
        tap: None,
        tap_scratch: Vec::new(),
        last_seq: None,
        stale: true,
        probe: io.probe.clone(),
    };
    drive(&mut io.rx, &mut io.tx, &stop, &mut st);
    // Frames a TX ring kick left queued go out now (bounded): after a handover this
    // socket closes with the process, and they would be lost.
    for _ in 0..50 {
        if !io.tx.has_unsent() {
            break;
        }
        io.tx.flush();
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    (st.w, io)
}
