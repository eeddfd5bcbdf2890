//! The cache table shared by lblc and lblcr: 1024 buckets keyed by
//! `hash_32(folded destination address, 10)`, with IPVS's periodic expiry, driven by
//! virtual time instead of a kernel timer.
//!
//! Timer (every 60 s): a counter starting at 1 advances on every tick where the table
//! holds at most 16384 entries; when it is a multiple of 30 at a tick, a full scan
//! (starting after the rover bucket) removes entries unused for at least the expiration
//! time and the counter restarts at 1. While the table is over-full, a tick instead
//! scans buckets from the rover, removing entries unused for 6 minutes, until
//! `goal = min((entries - 16384) * 4 / 3, 8192)` removals have been made (whole buckets
//! at a time).
//!
//! The first tick is 60 s after the first time the scheduler sees the clock (the
//! kernel arms it at service creation, whose time the scheduler is not told).

use std::net::IpAddr;
use std::sync::Arc;

use ahash::AHashMap;

use super::common::{fold_addr, hash_32};
use crate::dest::Dest;

pub(crate) const TAB_BITS: u32 = 10;
pub(crate) const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;
/// Soft limit on the number of entries (`TAB_SIZE * 16`).
pub(crate) const MAX_SIZE: usize = TAB_SIZE * 16;
/// `CHECK_EXPIRE_INTERVAL`.
pub(crate) const CHECK_INTERVAL_MS: u64 = 60_000;
/// `COUNT_FOR_FULL_EXPIRATION`.
const COUNT_FOR_FULL: u32 = 30;
/// `ENTRY_TIMEOUT` for the over-full partial scan.
pub(crate) const ENTRY_TIMEOUT_MS: u64 = 6 * 60_000;
/// Default `lblc_expiration` / `lblcr_expiration` sysctl: 24 h.
pub(crate) const DEFAULT_EXPIRATION_MS: u64 = 86_400_000;

/// What the table needs to know about an entry.
pub(crate) trait CacheEntry {
    fn addr(&self) -> &IpAddr;
    fn lastuse(&self) -> u64;
}

#[derive(Debug)]
pub(crate) struct LocalityTable<E> {
    buckets: Vec<Vec<E>>,
    entries: usize,
    rover: usize,
    counter: u32,
    next_tick_ms: Option<u64>,
    /// The `lblc(r)_expiration` sysctl in milliseconds.
    pub expiration_ms: u64,
}

impl<E> Default for LocalityTable<E> {
    fn default() -> Self {
        LocalityTable {
            buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(),
            entries: 0,
            rover: 0,
            counter: 1,
            next_tick_ms: None,
            expiration_ms: DEFAULT_EXPIRATION_MS,
        }
    }
}

#[inline]
fn bucket_of(addr: &IpAddr) -> usize {
    hash_32(fold_addr(addr), TAB_BITS) as usize
}

impl<E: CacheEntry> LocalityTable<E> {
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn get_mut(&mut self, addr: &IpAddr) -> Option<&mut E> {
        self.buckets[bucket_of(addr)].iter_mut().find(|e| e.addr() == addr)
    }

    pub fn get(&self, addr: &IpAddr) -> Option<&E> {
        self.buckets[bucket_of(addr)].iter().find(|e| e.addr() == addr)
    }

    /// Insert an entry whose address is not in the table yet.
    pub fn insert(&mut self, e: E) {
        debug_assert!(self.get(e.addr()).is_none());
        self.buckets[bucket_of(e.addr())].push(e);
        self.entries += 1;
    }

    /// Run every 60 s tick due at or before `now_ms`, each at its own time.
    pub fn run_timers(&mut self, now_ms: u64) {
        let Some(mut next) = self.next_tick_ms else {
            self.next_tick_ms = Some(now_ms.saturating_add(CHECK_INTERVAL_MS));
            return;
        };
        while next <= now_ms {
            if self.counter.is_multiple_of(COUNT_FOR_FULL) {
                self.full_check(next);
                self.counter = 1;
            } else if self.entries <= MAX_SIZE {
                // Nothing but counting happens until the next full check: skip ahead.
                let due = u64::from(COUNT_FOR_FULL - self.counter % COUNT_FOR_FULL);
                let avail = (now_ms - next) / CHECK_INTERVAL_MS + 1;
                let k = due.min(avail);
                self.counter += k as u32;
                next += k * CHECK_INTERVAL_MS;
                continue;
            } else {
                self.partial_check(next);
            }
            next += CHECK_INTERVAL_MS;
        }
        self.next_tick_ms = Some(next);
    }

    fn full_check(&mut self, now_ms: u64) {
        let exp = self.expiration_ms;
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            let b = &mut self.buckets[j];
            let before = b.len();
            b.retain(|e| now_ms < e.lastuse().saturating_add(exp));
            self.entries -= before - b.len();
        }
        self.rover = j;
    }

    fn partial_check(&mut self, now_ms: u64) {
        let mut goal = ((self.entries - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2) as isize;
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            let b = &mut self.buckets[j];
            let before = b.len();
            b.retain(|e| now_ms < e.lastuse().saturating_add(ENTRY_TIMEOUT_MS));
            let removed = before - b.len();
            self.entries -= removed;
            goal -= removed as isize;
            if goal <= 0 {
                break;
            }
        }
        self.rover = j;
    }
}

/// Maps a dest object to its index in the service's list, rebuilt on every list
/// change. The caches hold `Arc<Dest>` like the kernel holds dest references, so a
/// deleted dest stays referenced (and is recognised by its cleared AVAILABLE flag).
#[derive(Debug, Default)]
pub(crate) struct DestIndex {
    map: AHashMap<usize, usize>,
}

impl DestIndex {
    pub fn rebuild(&mut self, dests: &[Arc<Dest>]) {
        self.map.clear();
        self.map
            .extend(dests.iter().enumerate().map(|(i, d)| (Arc::as_ptr(d) as usize, i)));
    }

    /// The index of `d` in `dests`, if it is linked there. `hint` is the index where
    /// it was last found: checked first (no map lookup while the list is unchanged)
    /// and refreshed.
    #[inline]
    pub fn locate(&self, dests: &[Arc<Dest>], d: &Arc<Dest>, hint: &mut usize) -> Option<usize> {
        if dests.get(*hint).is_some_and(|x| Arc::ptr_eq(x, d)) {
            return Some(*hint);
        }
        let i = *self.map.get(&(Arc::as_ptr(d) as usize))?;
        let found = (i < dests.len() && Arc::ptr_eq(&dests[i], d)).then_some(i)?;
        *hint = found;
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(IpAddr, u64);
    impl CacheEntry for E {
        fn addr(&self) -> &IpAddr {
            &self.0
        }
        fn lastuse(&self) -> u64 {
            self.1
        }
    }

    fn a(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn full_check_every_30_ticks() {
        let mut t = LocalityTable::<E>::default();
        t.run_timers(0); // first tick at 60 s
        t.insert(E(a(1), 0));
        t.insert(E(a(2), 86_400_000 - 1_800_000));
        // Full checks happen at ticks 30, 60, ... = 1800 s, 3600 s, ...
        t.run_timers(86_400_000 - 1);
        assert_eq!(t.len(), 2);
        t.run_timers(86_400_000);
        assert_eq!(t.len(), 1, "entry 1 expired at the 24 h full check");
        t.run_timers(2 * 86_400_000 - 1_800_000 - 1);
        assert_eq!(t.len(), 1);
        t.run_timers(2 * 86_400_000 - 1_800_000);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn over_full_table_is_trimmed_by_partial_scans() {
        // 1000 stale entries, 2000 over the limit: goal 2666 -> a whole lap removes all.
        let mut t = LocalityTable::<E>::default();
        t.run_timers(0);
        for n in 0..(MAX_SIZE as u32 + 2000) {
            t.insert(E(a(n), if n < 1000 { 0 } else { 400_000 }));
        }
        t.run_timers(60_000);
        assert_eq!(t.len(), MAX_SIZE + 2000, "nothing is 6 min old yet");
        t.run_timers(360_000);
        assert_eq!(t.len(), MAX_SIZE + 1000);

        // 300 over the limit: goal 400, the scan stops after the bucket reaching it.
        let mut t = LocalityTable::<E>::default();
        t.run_timers(0);
        for n in 0..(MAX_SIZE as u32 + 300) {
            t.insert(E(a(n), if n < 1000 { 0 } else { 400_000 }));
        }
        t.run_timers(360_000);
        let removed = MAX_SIZE + 300 - t.len();
        assert!((400..1000).contains(&removed), "removed {removed}");
        t.run_timers(420_000);
        assert_eq!(MAX_SIZE + 300 - t.len(), removed, "no longer over-full");
    }
}
