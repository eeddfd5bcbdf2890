//! Incremental indexes over the dests' load for the least-connection family.
//!
//! [`ArgTree`] is a tournament tree over list positions: each leaf holds a scheduler
//! key computed from one dest, each inner node the better of its children's winners,
//! the left one on ties. Its root is therefore the *first* best dest in list order —
//! exactly what the kernel's "replace only when strictly better" scans return, as long
//! as "better" is a strict weak order (a total preorder), which each key guarantees
//! (exact cross-multiplied ratios of positive weights, plain integers, classes).
//! [`SumTree`] holds prefix sums of the eligible weights for twos.
//!
//! [`LoadIndex`] keeps such a tree in step with the list: list changes come through
//! [`Scheduler::update`](super::Scheduler::update) (positions shift on add/delete, so
//! the tree is rebuilt: O(n)); counter and OVERLOAD changes come from the dests' load
//! watches (see `watch.rs`) and re-evaluate only the marked leaves before a pick:
//! O(log n) each. A pick itself reads the root: O(1).

use std::sync::Arc;
use std::sync::atomic::{Ordering::SeqCst, fence};

use ahash::AHashMap;

use super::DestChange;
use super::watch::DirtySet;
use crate::dest::Dest;

/// A tree over the list positions that can be rebuilt and re-evaluated per leaf.
pub(crate) trait Tree: Default {
    /// Rebuild from every dest (position order).
    fn build(&mut self, dests: &[Arc<Dest>]);
    /// Re-read the dest at `pos`.
    fn set(&mut self, pos: usize, d: &Dest);
}

/// A scheduler's per-dest key for [`ArgTree`]. `Default` is the key of an ineligible
/// dest (and of the padding leaves); it must never be better than anything.
pub(crate) trait Key: Copy + Default + PartialEq {
    fn of(d: &Dest) -> Self;
    /// Is `r` strictly better than `l`? Must be a strict weak order.
    fn better(l: &Self, r: &Self) -> bool;
    fn eligible(&self) -> bool;
    /// A per-leaf flag whose count the tree maintains (e.g. lblc's "below half of its
    /// weight", nq's "negative weight").
    fn flag(&self) -> bool {
        false
    }
}

/// Tournament tree: `nodes[1]` is the root, `nodes[size + pos]` the leaf of `pos`, each
/// node `(key, position of the winning leaf)`.
#[derive(Debug)]
pub(crate) struct ArgTree<K> {
    size: usize,
    nodes: Vec<(K, u32)>,
    flagged: usize,
}

impl<K: Key> Default for ArgTree<K> {
    fn default() -> Self {
        ArgTree {
            size: 1,
            nodes: vec![(K::default(), 0); 2],
            flagged: 0,
        }
    }
}

impl<K: Key> ArgTree<K> {
    #[inline]
    fn play(a: (K, u32), b: (K, u32)) -> (K, u32) {
        if K::better(&a.0, &b.0) { b } else { a }
    }

    /// The first best eligible dest in list order.
    #[inline]
    pub fn best(&self) -> Option<usize> {
        let (k, i) = self.nodes[1];
        k.eligible().then_some(i as usize)
    }

    /// Number of flagged leaves.
    #[inline]
    pub fn flagged(&self) -> usize {
        self.flagged
    }
}

impl<K: Key> Tree for ArgTree<K> {
    fn build(&mut self, dests: &[Arc<Dest>]) {
        let size = dests.len().next_power_of_two();
        self.size = size;
        self.nodes.clear();
        self.nodes.resize(2 * size, (K::default(), 0));
        self.flagged = 0;
        for (i, leaf) in self.nodes[size..].iter_mut().enumerate() {
            let k = dests.get(i).map_or_else(K::default, |d| K::of(d));
            self.flagged += usize::from(k.flag());
            *leaf = (k, i as u32);
        }
        for i in (1..size).rev() {
            self.nodes[i] = Self::play(self.nodes[2 * i], self.nodes[2 * i + 1]);
        }
    }

    #[inline]
    fn set(&mut self, pos: usize, d: &Dest) {
        let k = K::of(d);
        let mut i = self.size + pos;
        let old = self.nodes[i].0;
        if old == k {
            return;
        }
        self.flagged = self.flagged + usize::from(k.flag()) - usize::from(old.flag());
        self.nodes[i].0 = k;
        while i > 1 {
            i /= 2;
            let n = Self::play(self.nodes[2 * i], self.nodes[2 * i + 1]);
            if self.nodes[i] == n {
                break;
            }
            self.nodes[i] = n;
        }
    }
}

/// Sums of the eligible weights (twos: not OVERLOAD, weight > 0) over list positions,
/// for "first eligible dest at which the running sum reaches r", plus each position's
/// overhead (so that a pick does not have to visit the two dests themselves).
///
/// Node sums are kept modulo 2^32 (half the memory of i64 sums, so the tree stays in
/// L1 longer); they are exact whenever the total, kept separately in i64, is below
/// 2^32 — twos only descends when it is below `i32::MAX`.
#[derive(Debug)]
pub(crate) struct SumTree {
    size: usize,
    sums: Vec<u32>,
    total: i64,
    overhead: Vec<u32>,
}

impl Default for SumTree {
    fn default() -> Self {
        SumTree {
            size: 1,
            sums: vec![0; 2],
            total: 0,
            overhead: Vec::new(),
        }
    }
}

impl SumTree {
    #[inline]
    fn leaf(d: &Dest) -> u32 {
        let w = d.weight();
        if w > 0 && !d.is_overloaded() { w as u32 } else { 0 }
    }

    /// Sum of all eligible weights.
    #[inline]
    pub fn total(&self) -> i64 {
        self.total
    }

    /// The eligible weight at `pos` (0 if not eligible).
    #[inline]
    pub fn weight(&self, pos: usize) -> i64 {
        i64::from(self.sums[self.size + pos])
    }

    /// The overhead of the dest at `pos` as of the last re-evaluation.
    #[inline]
    pub fn overhead(&self, pos: usize) -> u32 {
        self.overhead[pos]
    }

    /// For each target, the first position whose inclusive prefix sum is `>= target`
    /// (`1 <= target <= total() < 2^32`); that position is always eligible. The two
    /// descents are interleaved so that their memory accesses overlap.
    #[inline]
    pub fn find2(&self, t1: i64, t2: i64) -> (usize, usize) {
        debug_assert!((1..=self.total).contains(&t1) && (1..=self.total).contains(&t2));
        debug_assert!(self.total < 1 << 32);
        let (mut t1, mut t2) = (t1 as u32, t2 as u32);
        let (mut i, mut j) = (1, 1);
        while i < self.size {
            let l1 = self.sums[2 * i];
            let l2 = self.sums[2 * j];
            let right1 = l1 < t1;
            let right2 = l2 < t2;
            if right1 {
                t1 -= l1;
            }
            if right2 {
                t2 -= l2;
            }
            i = 2 * i + usize::from(right1);
            j = 2 * j + usize::from(right2);
        }
        (i - self.size, j - self.size)
    }
}

impl Tree for SumTree {
    fn build(&mut self, dests: &[Arc<Dest>]) {
        let size = dests.len().next_power_of_two();
        self.size = size;
        self.sums.clear();
        self.sums.resize(2 * size, 0);
        self.overhead.clear();
        self.total = 0;
        for (i, d) in dests.iter().enumerate() {
            let w = Self::leaf(d);
            self.sums[size + i] = w;
            self.total += i64::from(w);
            self.overhead.push(d.overhead());
        }
        for i in (1..size).rev() {
            self.sums[i] = self.sums[2 * i].wrapping_add(self.sums[2 * i + 1]);
        }
    }

    #[inline]
    fn set(&mut self, pos: usize, d: &Dest) {
        self.overhead[pos] = d.overhead();
        let mut i = self.size + pos;
        let (new, old) = (Self::leaf(d), self.sums[i]);
        if new == old {
            return;
        }
        self.total += i64::from(new) - i64::from(old);
        let delta = new.wrapping_sub(old);
        while i >= 1 {
            self.sums[i] = self.sums[i].wrapping_add(delta);
            i /= 2;
        }
    }
}

/// A subscribed dest: the dest and its current list position.
#[derive(Debug)]
struct SlotEntry {
    dest: Arc<Dest>,
    pos: u32,
}

/// A [`Tree`] kept in step with a service's dest list and the dests' load changes.
#[derive(Debug)]
pub(crate) struct LoadIndex<T> {
    tree: T,
    dirty: Arc<DirtySet>,
    /// By slot (stable per subscribed dest).
    slots: Vec<Option<SlotEntry>>,
    /// By list position.
    slot_of_pos: Vec<u32>,
    free: Vec<u32>,
}

impl<T: Tree> Default for LoadIndex<T> {
    fn default() -> Self {
        LoadIndex {
            tree: T::default(),
            dirty: Arc::new(DirtySet::new(64)),
            slots: Vec::new(),
            slot_of_pos: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Drop for LoadIndex<T> {
    fn drop(&mut self) {
        for e in self.slots.iter().flatten() {
            e.dest.watch.unsubscribe(&self.dirty);
        }
    }
}

impl<T: Tree> LoadIndex<T> {
    /// The tree, current as of the last [`refresh`](Self::refresh).
    #[inline]
    pub fn tree(&self) -> &T {
        &self.tree
    }

    /// The list changed (it is already in its new form in `dests`).
    pub fn update(&mut self, dests: &[Arc<Dest>], change: &DestChange) {
        match *change {
            DestChange::Edited { index } if self.matches(dests) => {
                self.tree.set(index, &dests[index]);
                return;
            }
            DestChange::Added if self.matches_added(dests) => {
                let slot = self.alloc_slot(&dests[0]);
                self.slot_of_pos.insert(0, slot);
                self.renumber();
            }
            DestChange::Deleted { index }
                if index < self.slot_of_pos.len() && dests.len() + 1 == self.slot_of_pos.len() =>
            {
                let slot = self.slot_of_pos.remove(index);
                self.release_slot(slot);
                if !self.matches(dests) {
                    return self.resync(dests);
                }
                self.renumber();
            }
            _ => return self.resync(dests),
        }
        self.rebuild(dests);
    }

    /// Apply the load changes marked since the last call (and resynchronise if the
    /// list is not the one of the last update). Call before reading the tree.
    #[inline]
    pub fn refresh(&mut self, dests: &[Arc<Dest>]) {
        if !self.looks_current(dests) {
            return self.resync(dests);
        }
        let LoadIndex { tree, dirty, slots, .. } = self;
        dirty.drain(|slot| {
            if let Some(Some(e)) = slots.get(slot as usize) {
                tree.set(e.pos as usize, &e.dest);
            }
        });
    }

    /// Cheap check that `dests` is the list the index was built for.
    #[inline]
    fn looks_current(&self, dests: &[Arc<Dest>]) -> bool {
        let n = dests.len();
        n == self.slot_of_pos.len() && (n == 0 || (self.is_at(0, &dests[0]) && self.is_at(n - 1, &dests[n - 1])))
    }

    #[inline]
    fn is_at(&self, pos: usize, d: &Arc<Dest>) -> bool {
        let slot = self.slot_of_pos[pos] as usize;
        matches!(&self.slots[slot], Some(e) if Arc::ptr_eq(&e.dest, d))
    }

    /// Exact check that `dests` is the indexed list.
    fn matches(&self, dests: &[Arc<Dest>]) -> bool {
        dests.len() == self.slot_of_pos.len() && dests.iter().enumerate().all(|(i, d)| self.is_at(i, d))
    }

    /// `dests` is the indexed list with one new dest at the head.
    fn matches_added(&self, dests: &[Arc<Dest>]) -> bool {
        dests.len() == self.slot_of_pos.len() + 1
            && dests[1..].iter().enumerate().all(|(i, d)| self.is_at(i, d))
            && !self.slots.iter().flatten().any(|e| Arc::ptr_eq(&e.dest, &dests[0]))
    }

    /// Give `d` a slot and subscribe it (growing the dirty set if needed).
    fn alloc_slot(&mut self, d: &Arc<Dest>) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        if slot as usize >= self.dirty.capacity() {
            self.grow();
        }
        d.watch.subscribe(&self.dirty, slot, None);
        self.slots[slot as usize] = Some(SlotEntry {
            dest: d.clone(),
            pos: 0,
        });
        slot
    }

    fn release_slot(&mut self, slot: u32) {
        if let Some(e) = self.slots[slot as usize].take() {
            e.dest.watch.unsubscribe(&self.dirty);
        }
        self.free.push(slot);
    }

    /// A dirty set twice as large; every subscription moves to it.
    fn grow(&mut self) {
        let new = Arc::new(DirtySet::new((self.slots.len() * 2).max(64)));
        for (slot, e) in self.slots.iter().enumerate() {
            if let Some(e) = e {
                e.dest.watch.subscribe(&new, slot as u32, Some(&self.dirty));
            }
        }
        self.dirty = new;
    }

    /// Store every slot's position from `slot_of_pos`.
    fn renumber(&mut self) {
        for (pos, &slot) in self.slot_of_pos.iter().enumerate() {
            if let Some(e) = &mut self.slots[slot as usize] {
                e.pos = pos as u32;
            }
        }
    }

    /// Re-read every dest: pending marks are dropped first, and the subscriptions made
    /// so far are published before the counters are read (see `watch.rs`).
    fn rebuild(&mut self, dests: &[Arc<Dest>]) {
        self.dirty.drain(|_| {});
        fence(SeqCst);
        self.tree.build(dests);
    }

    /// Re-derive everything from `dests`: keep the slots of dests still listed,
    /// subscribe new ones, unsubscribe the others.
    fn resync(&mut self, dests: &[Arc<Dest>]) {
        let mut old: AHashMap<usize, u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(s, e)| e.as_ref().map(|e| (Arc::as_ptr(&e.dest) as usize, s as u32)))
            .collect();
        let mut slot_of_pos = Vec::with_capacity(dests.len());
        let mut fresh = Vec::new();
        for (pos, d) in dests.iter().enumerate() {
            match old.remove(&(Arc::as_ptr(d) as usize)) {
                Some(s) => slot_of_pos.push(s),
                None => {
                    // The same dest listed twice gets a second slot.
                    slot_of_pos.push(u32::MAX);
                    fresh.push(pos);
                }
            }
        }
        for (_, s) in old {
            self.release_slot(s);
        }
        for pos in fresh {
            slot_of_pos[pos] = self.alloc_slot(&dests[pos]);
        }
        self.slot_of_pos = slot_of_pos;
        self.renumber();
        self.rebuild(dests);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::dest;
    use super::*;

    #[derive(Debug, Clone, Copy, Default, PartialEq)]
    struct Min(Option<u32>);
    impl Key for Min {
        fn of(d: &Dest) -> Self {
            Min((d.weight() > 0).then(|| d.overhead()))
        }
        fn better(l: &Self, r: &Self) -> bool {
            match (l.0, r.0) {
                (None, Some(_)) => true,
                (Some(a), Some(b)) => b < a,
                _ => false,
            }
        }
        fn eligible(&self) -> bool {
            self.0.is_some()
        }
        fn flag(&self) -> bool {
            self.0 == Some(0)
        }
    }

    #[test]
    fn arg_tree_first_minimum() {
        let dests: Vec<_> = [3, 1, 0, 1, 5].iter().map(|&w| dest(w as u8 + 1, w)).collect();
        for (d, n) in dests.iter().zip([7u32, 4, 0, 4, 9]) {
            d.inactconns.store(n, std::sync::atomic::Ordering::Relaxed);
        }
        let mut t = ArgTree::<Min>::default();
        assert_eq!(t.best(), None);
        t.build(&dests);
        assert_eq!(t.best(), Some(1), "4 at 1 and 3: the first");
        assert_eq!(t.flagged(), 0);
        dests[1].inactconns.store(5, std::sync::atomic::Ordering::Relaxed);
        t.set(1, &dests[1]);
        assert_eq!(t.best(), Some(3));
        dests[4].inactconns.store(0, std::sync::atomic::Ordering::Relaxed);
        t.set(4, &dests[4]);
        assert_eq!((t.best(), t.flagged()), (Some(4), 1));
        t.build(&[]);
        assert_eq!(t.best(), None);
    }

    #[test]
    fn sum_tree_find() {
        let dests: Vec<_> = [2, 0, 3, 1].iter().map(|&w| dest(w as u8 + 1, w)).collect();
        let mut t = SumTree::default();
        assert_eq!(t.total(), 0);
        t.build(&dests);
        assert_eq!(t.total(), 6);
        let got: Vec<_> = (1..=6).map(|r| t.find2(r, 7 - r)).collect();
        assert_eq!(got, vec![(0, 3), (0, 2), (2, 2), (2, 2), (2, 0), (3, 0)]);
        dests[2].set_overload(true);
        t.set(2, &dests[2]);
        assert_eq!((t.total(), t.find2(3, 1), t.weight(2)), (3, (3, 0), 0));
    }

    /// Fast paths against the kernel's scans on random lists, counters, flags and list
    /// changes (the same dests indexed by every scheduler at once).
    mod equivalence {
        use super::super::super::testutil::input;
        use super::super::super::{
            LocalityLeastConnection, LocalityLeastConnectionReplicated, Scheduler, TwoChoices, common, lc, nq, ovf,
            sed, twos,
        };
        use super::*;
        use crate::dest::{DestConfig, ForwardMethod, TunnelCsum, TunnelType};
        use proptest::prelude::*;
        use std::sync::Mutex;
        use std::sync::atomic::Ordering::Relaxed;

        #[derive(Debug, Clone)]
        enum Op {
            Bind(usize),
            Toggle(usize),
            Unbind(usize),
            Overload(usize, bool),
            Store(usize, u32, u32),
            Edit(usize, i32, u32),
            Add(bool, i32),
            Delete(usize),
            ServiceEdited,
            Recreate(usize),
            Pick(u8, u64),
        }

        fn weight() -> impl Strategy<Value = i32> {
            prop_oneof![
                8 => 0i32..=6,
                1 => Just(-1i32),
                1 => prop_oneof![Just(65535), Just(i32::MAX), Just(1 << 30)],
            ]
        }

        fn count() -> impl Strategy<Value = u32> {
            prop_oneof![8 => 0u32..6, 1 => Just(1u32 << 24), 1 => Just(1u32 << 28)]
        }

        fn op() -> impl Strategy<Value = Op> {
            let i = 0usize..64;
            prop_oneof![
                6 => i.clone().prop_map(Op::Bind),
                4 => i.clone().prop_map(Op::Toggle),
                3 => i.clone().prop_map(Op::Unbind),
                2 => (i.clone(), any::<bool>()).prop_map(|(i, b)| Op::Overload(i, b)),
                2 => (i.clone(), count(), count()).prop_map(|(i, a, n)| Op::Store(i, a, n)),
                2 => (i.clone(), weight(), 0u32..4).prop_map(|(i, w, u)| Op::Edit(i, w, u)),
                2 => (any::<bool>(), weight()).prop_map(|(r, w)| Op::Add(r, w)),
                2 => i.clone().prop_map(Op::Delete),
                1 => Just(Op::ServiceEdited),
                1 => (0usize..8).prop_map(Op::Recreate),
                6 => (0u8..4, 0u64..7_200_000).prop_map(|(a, t)| Op::Pick(a, t)),
            ]
        }

        fn cfg(n: u32, weight: i32, u: u32) -> DestConfig {
            DestConfig {
                addr: std::net::IpAddr::from((0x0a00_0000 + n).to_be_bytes()),
                port: 80,
                method: ForwardMethod::Route,
                weight,
                u_threshold: u,
                l_threshold: 0,
                tun_type: TunnelType::Ipip,
                tun_port: 0,
                tun_csum: TunnelCsum::NoCsum,
            }
        }

        /// A deterministic random source that logs its bounds.
        fn rng(log: Arc<Mutex<Vec<u32>>>) -> crate::sched::RandomSource {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            Box::new(move |b| {
                log.lock().unwrap().push(b);
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((x >> 32) as u32) % b.max(1)
            })
        }

        struct Fast {
            s: Vec<Box<dyn Scheduler>>,
            twos_log: Arc<Mutex<Vec<u32>>>,
        }

        fn make(k: usize, log: &Arc<Mutex<Vec<u32>>>) -> Box<dyn Scheduler> {
            match k {
                0 => Box::new(lc::LeastConnection::default()),
                1 => Box::<super::super::super::WeightedLeastConnection>::default(),
                2 => Box::<sed::ShortestExpectedDelay>::default(),
                3 => Box::<nq::NeverQueue>::default(),
                4 => Box::<ovf::WeightedOverflow>::default(),
                5 => Box::new(TwoChoices::with_rng(rng(log.clone()))),
                6 => Box::<LocalityLeastConnection>::default(),
                _ => Box::<LocalityLeastConnectionReplicated>::default(),
            }
        }

        fn run(initial: Vec<(i32, u32, u32, bool)>, ops: Vec<Op>) -> Result<(), TestCaseError> {
            let mut next_addr = 1u32;
            let mut dests: Vec<Arc<Dest>> = initial
                .iter()
                .map(|&(w, a, n, o)| {
                    let d = Arc::new(Dest::new(&cfg(next_addr, w, 0)));
                    next_addr += 1;
                    d.activeconns.store(a, Relaxed);
                    d.inactconns.store(n, Relaxed);
                    d.set_overload(o);
                    d
                })
                .collect();
            let mut trash: Vec<Arc<Dest>> = Vec::new();
            // Connections: (dest, active).
            let mut conns: Vec<(Arc<Dest>, bool)> = Vec::new();
            let log = Arc::new(Mutex::new(Vec::new()));
            let mut fast = Fast {
                s: (0..8).map(|k| make(k, &log)).collect(),
                twos_log: log,
            };
            for s in &mut fast.s {
                s.update(&dests, 0, DestChange::ServiceEdited);
            }
            let ref_log = Arc::new(Mutex::new(Vec::new()));
            let mut ref_rng = rng(ref_log.clone());
            let mut ref_lblc = LocalityLeastConnection::reference();
            let mut ref_lblcr = LocalityLeastConnectionReplicated::reference();
            ref_lblc.update(&dests, 0, DestChange::ServiceEdited);
            ref_lblcr.update(&dests, 0, DestChange::ServiceEdited);
            let mut now = 0u64;

            for (step, op) in ops.into_iter().enumerate() {
                let n = dests.len();
                let pick = match op {
                    Op::Pick(a, t) => Some((a, t)),
                    _ => None,
                };
                let mut change = None;
                match op {
                    Op::Bind(i) if n > 0 => {
                        let d = dests[i % n].clone();
                        d.bind_conn();
                        conns.push((d, false));
                    }
                    Op::Toggle(i) if !conns.is_empty() => {
                        let c = i % conns.len();
                        conns[c].1 = !conns[c].1;
                        conns[c].0.set_conn_active(conns[c].1);
                    }
                    Op::Unbind(i) if !conns.is_empty() => {
                        let (d, active) = conns.swap_remove(i % conns.len());
                        d.unbind_conn(active);
                    }
                    Op::Overload(i, on) if n > 0 => dests[i % n].set_overload(on),
                    Op::Store(i, a, c) if n > 0 => {
                        let d = dests[i % n].clone();
                        conns.retain(|(x, _)| !Arc::ptr_eq(x, &d));
                        d.activeconns.store(a, Relaxed);
                        d.inactconns.store(c, Relaxed);
                        d.load_changed();
                    }
                    Op::Edit(i, w, u) if n > 0 => {
                        let index = i % n;
                        let mut c = dests[index].config();
                        c.weight = w;
                        c.u_threshold = u;
                        dests[index].edit(&c);
                        change = Some(DestChange::Edited { index });
                    }
                    Op::Add(revive, w) => {
                        let d = match trash.pop().filter(|_| revive) {
                            Some(d) => {
                                let mut c = d.config();
                                c.weight = w;
                                d.edit(&c);
                                d.set_available(true);
                                d
                            }
                            None => {
                                next_addr += 1;
                                Arc::new(Dest::new(&cfg(next_addr, w, 0)))
                            }
                        };
                        dests.insert(0, d);
                        change = Some(DestChange::Added);
                    }
                    Op::Delete(i) if n > 0 => {
                        let index = i % n;
                        let d = dests.remove(index);
                        d.set_available(false);
                        trash.push(d);
                        change = Some(DestChange::Deleted { index });
                    }
                    Op::ServiceEdited => change = Some(DestChange::ServiceEdited),
                    Op::Recreate(k) => {
                        fast.s[k] = make(k, &fast.twos_log);
                        // lc .. ovf are also tested without an initial update.
                        if k >= 5 {
                            fast.s[k].update(&dests, 0, DestChange::ServiceEdited);
                        }
                        // The caches and random sequence start again: so must the references'.
                        if k == 5 {
                            ref_rng = rng(ref_log.clone());
                        }
                        if k == 6 {
                            ref_lblc = LocalityLeastConnection::reference();
                            ref_lblc.update(&dests, 0, DestChange::ServiceEdited);
                        }
                        if k == 7 {
                            ref_lblcr = LocalityLeastConnectionReplicated::reference();
                            ref_lblcr.update(&dests, 0, DestChange::ServiceEdited);
                        }
                    }
                    Op::Pick(..) | Op::Bind(_) | Op::Toggle(_) | Op::Unbind(_) => {}
                    Op::Overload(..) | Op::Store(..) | Op::Edit(..) | Op::Delete(_) => {}
                }
                if let Some(c) = change {
                    for s in &mut fast.s {
                        s.update(&dests, 0, c.clone());
                    }
                    ref_lblc.update(&dests, 0, c.clone());
                    ref_lblcr.update(&dests, 0, c);
                }
                // Every step picks (daddr 10.9.9.0 unless the op says otherwise).
                let mut inp = input([192, 0, 2, 1], 1000, [10, 9, 9, 0]);
                if let Some((a, t)) = pick {
                    now += t;
                    inp.daddr = std::net::IpAddr::from([10, 9, 9, a]);
                }
                inp.now_ms = now;
                let want = [
                    lc::scan(&dests),
                    common::wlc_pick(&dests),
                    sed::scan(&dests),
                    nq::scan(&dests),
                    ovf::scan(&dests),
                    twos::scan(&dests, &mut ref_rng),
                    ref_lblc.schedule(&dests, &inp),
                    ref_lblcr.schedule(&dests, &inp),
                ];
                for (k, s) in fast.s.iter_mut().enumerate() {
                    let got = s.schedule(&dests, &inp);
                    prop_assert_eq!(got, want[k], "step {} {}: {:?}", step, s.name(), summary(&dests));
                }
                prop_assert_eq!(&*fast.twos_log.lock().unwrap(), &*ref_log.lock().unwrap(), "twos draws");
            }
            Ok(())
        }

        fn summary(dests: &[Arc<Dest>]) -> Vec<(i32, u32, u32, bool)> {
            dests
                .iter()
                .map(|d| (d.weight(), d.active(), d.inactive(), d.is_overloaded()))
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn fast_paths_pick_like_the_scans(
                initial in proptest::collection::vec((weight(), count(), count(), proptest::bool::weighted(0.2)), 0..=40),
                ops in proptest::collection::vec(op(), 0..120),
            ) {
                run(initial, ops)?;
            }
        }
    }
}
