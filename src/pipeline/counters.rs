//! Per-worker frame counters, with drops counted by reason. Single writer (the
//! worker), many readers (metrics, control): plain load + store, no locked RMW.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::dataplane::{DropReason, Verdict};

/// Counters of one worker.
#[derive(Debug)]
pub struct WorkerCounters {
    pub rx: AtomicU64,
    pub forwarded: AtomicU64,
    pub answered: AtomicU64,
    pub passed: AtomicU64,
    pub neigh: AtomicU64,
    drops: [AtomicU64; 48],
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            rx: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            neigh: AtomicU64::new(0),
            drops: [const { AtomicU64::new(0) }; 48],
        }
    }
}

#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

impl WorkerCounters {
    pub fn count(&self, v: Verdict) {
        bump(&self.rx);
        match v {
            Verdict::Forwarded => bump(&self.forwarded),
            Verdict::Answered => bump(&self.answered),
            Verdict::Pass => bump(&self.passed),
            Verdict::Neigh { .. } => bump(&self.neigh),
            Verdict::Drop(r) => bump(&self.drops[r as usize]),
        }
    }
    /// Count `n` drops for `r` found outside the pipeline (the worker's TX sockets).
    pub fn add_drops(&self, r: DropReason, n: u64) {
        let c = &self.drops[r as usize];
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r as usize].load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_slot_and_a_distinct_name() {
        assert!(DropReason::ALL.len() <= 48);
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
