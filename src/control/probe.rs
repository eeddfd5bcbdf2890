//! What the control plane may ask of a worker without a lock on the packet path.
//!
//! A worker's connection table is private to its thread. Once per loop iteration the
//! worker calls [`WorkerProbe::poll`]: one relaxed store (the table size, for
//! `/metrics`) and one relaxed load of the "please list your connections" flag. Only
//! when that flag is set does the worker copy its entries into the probe's slot (the
//! one place a mutex is taken, by the worker, once per request), so `ipvsadm -L -c`
//! shows live entries while the packet path stays lock-free.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ipvsadm::snapshot::{ConnSnapshot, ConnSortKey, conn_row};
use crate::pipeline::Worker;

/// Rows of one worker's connection table.
pub type ConnRows = Vec<(ConnSortKey, ConnSnapshot)>;

/// The shared half of one worker (see the module documentation).
#[derive(Debug, Default)]
pub struct WorkerProbe {
    want: AtomicBool,
    slot: Mutex<Option<ConnRows>>,
    conns: AtomicUsize,
    evicted: AtomicU64,
}

impl WorkerProbe {
    /// The worker's side, once per loop iteration.
    #[inline]
    pub fn poll(&self, w: &Worker, now_ms: u64) {
        self.conns.store(w.conns.len(), Ordering::Relaxed);
        self.evicted.store(w.conns.evicted(), Ordering::Relaxed);
        if self.want.load(Ordering::Acquire) {
            self.answer(w, now_ms);
        }
    }

    #[cold]
    fn answer(&self, w: &Worker, now_ms: u64) {
        let rows: ConnRows = w.conns.iter().map(|(k, c)| conn_row(k, c, now_ms)).collect();
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(rows);
        self.want.store(false, Ordering::Release);
    }

    /// Connection entries last reported (updated every loop iteration).
    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::Relaxed)
    }

    /// Entries the worker evicted from its full table (updated every loop iteration).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Ask for a copy of the table; collect it with [`WorkerProbe::take`].
    pub fn request(&self) {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.want.store(true, Ordering::Release);
    }

    /// The copy, once the worker has made it.
    pub fn take(&self) -> Option<ConnRows> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Withdraw a request nobody answered (the worker has stopped).
    pub fn cancel(&self) {
        self.want.store(false, Ordering::Release);
    }
}

/// Ask every probe for its rows and wait (at most `limit`) for the answers. Workers
/// that do not answer in time (stopped threads) contribute nothing; the second value
/// says how many did not answer.
pub fn collect(probes: &[&WorkerProbe], limit: Duration) -> (ConnRows, usize) {
    for p in probes {
        p.request();
    }
    let deadline = Instant::now() + limit;
    let mut pending: Vec<&WorkerProbe> = probes.to_vec();
    let mut rows = Vec::new();
    loop {
        pending.retain(|p| match p.take() {
            Some(r) => {
                rows.extend(r);
                false
            }
            None => true,
        });
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for p in &pending {
        p.cancel();
    }
    (rows, pending.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_answers_between_iterations() {
        let probe = std::sync::Arc::new(WorkerProbe::default());
        let w = Worker::new(0, 16);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (p2, s2) = (probe.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                p2.poll(&w, 0);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let (rows, missing) = collect(&[&probe], Duration::from_secs(5));
        assert_eq!((rows.len(), missing), (0, 0));
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        // Nobody polls any more: the request times out and is withdrawn.
        let (_, missing) = collect(&[&probe], Duration::from_millis(20));
        assert_eq!(missing, 1);
        assert!(!probe.want.load(Ordering::Relaxed));
    }
}
