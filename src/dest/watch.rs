//! Load-change notification from destinations to the schedulers that index them.
//!
//! The least-connection schedulers keep a tree over the dests' load (see `index.rs`)
//! instead of scanning the list on every pick. A dest's counters and OVERLOAD flag
//! change on the worker threads (new connection, TCP state change, expiry), so each
//! [`Dest`](crate::dest::Dest) carries a [`LoadWatch`]: the list of scheduler
//! indexes subscribed to it, each with the dest's stable *slot* in that index. On every
//! counter/flag change the dest sets its slot's bit in each subscriber's [`DirtySet`];
//! the scheduler drains the set (under the service mutex) before picking and re-reads
//! only the marked dests. Established packets never touch any of this.
//!
//! Memory ordering:
//! * Mark: counter change, then `fence(SeqCst)`, then load the subscriber list, then
//!   `fetch_or(AcqRel)` of the bit. Drain: `swap(0, AcqRel)` of the bit word, then read
//!   the counters. A drain that takes the bit therefore sees the change; a bit set after
//!   the drain stays for the next one. Marks are never lost, spurious ones are harmless.
//! * Subscribe: publish the subscription, `fence(SeqCst)`, then read the counters. By
//!   the fence rules either the writer sees the new subscription (and marks it) or the
//!   subscriber's read sees the new counter value.

use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, Ordering::AcqRel, Ordering::Relaxed, Ordering::SeqCst, fence,
};

use arc_swap::ArcSwapOption;

/// The dirty marks of one scheduler index: one bit per slot (`l0`), one bit per
/// non-empty `l0` word (`l1`) and one flag for "some `l1` word is non-empty".
#[derive(Debug)]
pub(crate) struct DirtySet {
    any: AtomicBool,
    l1: Box<[AtomicU64]>,
    l0: Box<[AtomicU64]>,
}

impl DirtySet {
    /// A set for slots `0..capacity` (rounded up to a multiple of 64).
    pub fn new(capacity: usize) -> DirtySet {
        let w0 = capacity.div_ceil(64).max(1);
        let w1 = w0.div_ceil(64);
        DirtySet {
            any: AtomicBool::new(false),
            l1: (0..w1).map(|_| AtomicU64::new(0)).collect(),
            l0: (0..w0).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Number of slots this set can mark.
    pub fn capacity(&self) -> usize {
        self.l0.len() * 64
    }

    /// Mark `slot` (ignored when out of range). The upper levels are set only by the
    /// writer that made a word non-empty: any earlier writer will set them (or has, and
    /// the drain that takes them has not reached the lower word yet).
    #[inline]
    pub fn mark(&self, slot: u32) {
        let i = slot as usize;
        let Some(w) = self.l0.get(i / 64) else {
            return;
        };
        if w.fetch_or(1 << (i % 64), AcqRel) != 0 {
            return;
        }
        let j = i / 64;
        if self.l1[j / 64].fetch_or(1 << (j % 64), AcqRel) != 0 {
            return;
        }
        self.any.store(true, SeqCst);
    }

    /// Take every marked slot, calling `f` for each (in no particular order).
    #[inline]
    pub fn drain(&self, mut f: impl FnMut(u32)) {
        if !self.any.load(Relaxed) {
            return;
        }
        self.any.store(false, SeqCst);
        for (k, w1) in self.l1.iter().enumerate() {
            let mut b1 = w1.swap(0, AcqRel);
            while b1 != 0 {
                let j = k * 64 + b1.trailing_zeros() as usize;
                b1 &= b1 - 1;
                let mut b0 = self.l0[j].swap(0, AcqRel);
                while b0 != 0 {
                    f((j * 64) as u32 + b0.trailing_zeros());
                    b0 &= b0 - 1;
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Sub {
    set: Arc<DirtySet>,
    slot: u32,
}

/// A dest's subscribers (usually none or one; several schedulers may index the same
/// dests in tests and benches). Replaced as a whole on (un)subscription.
#[derive(Default)]
pub struct LoadWatch {
    subs: ArcSwapOption<Vec<Sub>>,
    /// Number of subscriptions: lets an unwatched dest skip the `subs` load.
    count: AtomicU32,
}

impl std::fmt::Debug for LoadWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.subs.load().as_ref().map_or(0, |v| v.len());
        f.debug_struct("LoadWatch").field("subscribers", &n).finish()
    }
}

impl LoadWatch {
    /// The dest's load (counters, OVERLOAD, weight) just changed: mark it in every
    /// subscribed index. Call after the change.
    #[inline]
    pub fn touch(&self) {
        fence(SeqCst);
        if self.count.load(Relaxed) == 0 {
            return;
        }
        if let Some(subs) = &*self.subs.load() {
            for s in subs.iter() {
                s.set.mark(s.slot);
            }
        }
    }

    /// Subscribe `set` at `slot`, replacing any subscription of `set` or of `replace`.
    /// The caller reads the counters after a `fence(SeqCst)` that follows this.
    pub(crate) fn subscribe(&self, set: &Arc<DirtySet>, slot: u32, replace: Option<&Arc<DirtySet>>) {
        let prev = self.subs.rcu(|cur| {
            let mut v: Vec<Sub> = cur
                .iter()
                .flat_map(|v| v.iter())
                .filter(|s| !Arc::ptr_eq(&s.set, set) && !replace.is_some_and(|r| Arc::ptr_eq(&s.set, r)))
                .cloned()
                .collect();
            v.push(Sub { set: set.clone(), slot });
            Some(Arc::new(v))
        });
        let had = prev
            .iter()
            .flat_map(|v| v.iter())
            .filter(|s| Arc::ptr_eq(&s.set, set) || replace.is_some_and(|r| Arc::ptr_eq(&s.set, r)))
            .count() as u32;
        if had == 0 {
            self.count.fetch_add(1, SeqCst);
        } else if had > 1 {
            self.count.fetch_sub(had - 1, SeqCst);
        }
    }

    /// Drop the subscription of `set`, if any.
    pub(crate) fn unsubscribe(&self, set: &Arc<DirtySet>) {
        let prev = self.subs.rcu(|cur| {
            let v: Vec<Sub> = cur
                .iter()
                .flat_map(|v| v.iter())
                .filter(|s| !Arc::ptr_eq(&s.set, set))
                .cloned()
                .collect();
            (!v.is_empty()).then(|| Arc::new(v))
        });
        if prev.iter().flat_map(|v| v.iter()).any(|s| Arc::ptr_eq(&s.set, set)) {
            self.count.fetch_sub(1, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(s: &DirtySet) -> Vec<u32> {
        let mut v = Vec::new();
        s.drain(|x| v.push(x));
        v.sort_unstable();
        v
    }

    #[test]
    fn marks_are_drained_once() {
        let s = DirtySet::new(5000);
        assert_eq!(s.capacity(), 5056);
        assert!(drained(&s).is_empty());
        for x in [0, 63, 64, 4095, 4096, 5000, 1, 64] {
            s.mark(x);
        }
        s.mark(999_999); // out of range: ignored
        assert_eq!(drained(&s), vec![0, 1, 63, 64, 4095, 4096, 5000]);
        assert!(drained(&s).is_empty());
        s.mark(7);
        assert_eq!(drained(&s), vec![7]);
    }

    #[test]
    fn subscriptions() {
        let w = LoadWatch::default();
        w.touch();
        let a = Arc::new(DirtySet::new(64));
        let b = Arc::new(DirtySet::new(64));
        w.subscribe(&a, 3, None);
        w.subscribe(&b, 5, None);
        w.touch();
        assert_eq!(drained(&a), vec![3]);
        assert_eq!(drained(&b), vec![5]);
        let c = Arc::new(DirtySet::new(128));
        w.subscribe(&c, 100, Some(&a));
        w.subscribe(&b, 6, None);
        w.touch();
        assert!(drained(&a).is_empty());
        assert_eq!(drained(&b), vec![6]);
        assert_eq!(drained(&c), vec![100]);
        w.unsubscribe(&b);
        w.unsubscribe(&c);
        w.touch();
        assert!(drained(&b).is_empty() && drained(&c).is_empty());
        assert!(format!("{w:?}").contains("subscribers: 0"));
        assert_eq!(w.count.load(Relaxed), 0);
        w.subscribe(&a, 1, None);
        w.subscribe(&a, 2, None);
        assert_eq!(w.count.load(Relaxed), 1);
        w.unsubscribe(&a);
        w.unsubscribe(&a);
        assert_eq!(w.count.load(Relaxed), 0);
    }
}
