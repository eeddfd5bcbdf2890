//! Per-service and per-destination traffic counters (IPVS's `ip_vs_stats`).
//!
//! Each worker writes only its own cache-line-sized slot with a plain load + store
//! (no read-modify-write, no shared cache line), so counting costs no lock and no
//! contended atomic. Readers sum the slots; `-Z` records a baseline to subtract.

#![forbid(unsafe_code)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// The most workers a director runs (one slot each).
pub const MAX_WORKERS: usize = 64;

/// Slots in each [`Stats`] made from now on: the director's worker count, set once
/// before the rules are loaded (64 B per slot, so 10,000 services with two real servers
/// hold 3.8 MB of counters with 2 workers instead of 123 MB with 64 slots).
static SLOTS: AtomicUsize = AtomicUsize::new(MAX_WORKERS);

/// Size the counters of services and destinations created from now on for `n`
/// workers (the director calls this before loading its rules). Worker `i` writes slot
/// `i % n`, so with more workers than slots two would share one (and could lose counts).
pub fn set_workers(n: usize) {
    SLOTS.store(n.clamp(1, MAX_WORKERS), Relaxed);
}

/// Counter totals as ipvsadm prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    conns: AtomicU64,
    inpkts: AtomicU64,
    outpkts: AtomicU64,
    inbytes: AtomicU64,
    outbytes: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, by: u64) {
    // Single writer per slot: a plain load and store, never a locked RMW.
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

/// Counters for one service or one destination.
#[derive(Debug)]
pub struct Stats {
    slots: Box<[Slot]>,
    baseline: Mutex<Totals>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            slots: (0..SLOTS.load(Relaxed)).map(|_| Slot::default()).collect(),
            baseline: Mutex::new(Totals::default()),
        }
    }
}

impl Stats {
    #[inline]
    pub fn conn(&self, worker: usize) {
        bump(&self.slots[worker % self.slots.len()].conns, 1);
    }
    #[inline]
    pub fn inbound(&self, worker: usize, bytes: usize) {
        let s = &self.slots[worker % self.slots.len()];
        bump(&s.inpkts, 1);
        bump(&s.inbytes, bytes as u64);
    }
    #[inline]
    pub fn outbound(&self, worker: usize, bytes: usize) {
        let s = &self.slots[worker % self.slots.len()];
        bump(&s.outpkts, 1);
        bump(&s.outbytes, bytes as u64);
    }
    fn raw(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.slots.iter() {
            t.conns += s.conns.load(Relaxed);
            t.inpkts += s.inpkts.load(Relaxed);
            t.outpkts += s.outpkts.load(Relaxed);
            t.inbytes += s.inbytes.load(Relaxed);
            t.outbytes += s.outbytes.load(Relaxed);
        }
        t
    }
    /// Totals since start or the last [`Stats::zero`].
    pub fn totals(&self) -> Totals {
        let r = self.raw();
        let b = *self.baseline.lock().unwrap_or_else(|e| e.into_inner());
        Totals {
            conns: r.conns.wrapping_sub(b.conns),
            inpkts: r.inpkts.wrapping_sub(b.inpkts),
            outpkts: r.outpkts.wrapping_sub(b.outpkts),
            inbytes: r.inbytes.wrapping_sub(b.inbytes),
            outbytes: r.outbytes.wrapping_sub(b.outbytes),
        }
    }
    /// Make [`Stats::totals`] read `t` from now on (counters handed over by the
    /// director this one took over from, `director::carry`).
    pub fn carry_over(&self, t: Totals) {
        let r = self.raw();
        *self.baseline.lock().unwrap_or_else(|e| e.into_inner()) = Totals {
            conns: r.conns.wrapping_sub(t.conns),
            inpkts: r.inpkts.wrapping_sub(t.inpkts),
            outpkts: r.outpkts.wrapping_sub(t.outpkts),
            inbytes: r.inbytes.wrapping_sub(t.inbytes),
            outbytes: r.outbytes.wrapping_sub(t.outbytes),
        };
    }
    /// `ipvsadm -Z`.
    pub fn zero(&self) {
        let r = self.raw();
        *self.baseline.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_slots_and_zeroes() {
        let s = Stats::default();
        s.conn(0);
        s.inbound(0, 60);
        s.inbound(3, 40);
        s.outbound(1, 10);
        assert_eq!(
            s.totals(),
            Totals {
                conns: 1,
                inpkts: 2,
                outpkts: 1,
                inbytes: 100,
                outbytes: 10
            }
        );
        s.zero();
        assert_eq!(s.totals(), Totals::default());
        s.inbound(2, 5);
        assert_eq!(s.totals().inbytes, 5);
    }
}
