//! wrr: weighted round robin (ip_vs_wrr.c), the kernel's GCD-stepping threshold sweep.
//!
//! State: the cursor `cl` (last returned dest or the list head), the current threshold
//! `cw`, `mw = max_weight - (gcd - 1)` and the step `di = gcd`. Every add/delete/edit of
//! a dest recomputes `di`/`mw`, resets the cursor to the head and adjusts `cw`.
//!
//! The kernel walks the list looking for the next dest with `weight >= cw`; here the
//! weights are cached at each update in a max segment tree so that "next dest at or
//! after `i` with weight >= cw" is O(1) for the usual case (a short linear probe) and
//! O(log n) otherwise. OVERLOAD is still read live from each candidate.

use std::sync::Arc;

use super::common::gcd;
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

/// How many list entries are probed linearly before using the segment tree.
const LINEAR_PROBE: usize = 4;

#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    /// Last returned dest; `None` = the list head.
    cl: Option<usize>,
    /// Current weight threshold.
    cw: i32,
    /// `max weight - (di - 1)`.
    mw: i32,
    /// gcd of the weights > 0 (1 if none).
    di: i32,
    /// Weights as of the last update (the kernel only changes them together with an
    /// update call), in list order.
    weights: Vec<i32>,
    /// Max segment tree over `weights`: leaves at `size..2*size`, padding `i32::MIN`.
    tree: Vec<i32>,
    size: usize,
    initialised: bool,
}

impl WeightedRoundRobin {
    fn recompute(&mut self, dests: &[Arc<Dest>]) {
        self.weights.clear();
        self.weights.extend(dests.iter().map(|d| d.weight()));
        let g = self
            .weights
            .iter()
            .filter(|&&w| w > 0)
            .fold(0u32, |g, &w| gcd(w as u32, g));
        self.di = if g == 0 { 1 } else { g as i32 };
        let max = self.weights.iter().copied().fold(0, i32::max);
        self.mw = max - (self.di - 1);

        self.size = self.weights.len().next_power_of_two().max(1);
        self.tree.clear();
        self.tree.resize(2 * self.size, i32::MIN);
        self.tree[self.size..self.size + self.weights.len()].copy_from_slice(&self.weights);
        for i in (1..self.size).rev() {
            self.tree[i] = self.tree[2 * i].max(self.tree[2 * i + 1]);
        }
    }

    /// First index `>= from` whose cached weight is `>= cw`.
    #[inline]
    fn next_at_least(&self, from: usize, cw: i32) -> Option<usize> {
        let n = self.weights.len();
        let probe_end = n.min(from.saturating_add(LINEAR_PROBE));
        for i in from..probe_end {
            if self.weights[i] >= cw {
                return Some(i);
            }
        }
        if probe_end >= n {
            return None;
        }
        let mut i = probe_end + self.size;
        loop {
            if self.tree[i] >= cw {
                while i < self.size {
                    i *= 2;
                    if self.tree[i] < cw {
                        i += 1;
                    }
                }
                return Some(i - self.size);
            }
            // Move to the next subtree to the right.
            while i & 1 == 1 {
                i >>= 1;
            }
            if i == 0 {
                return None;
            }
            i += 1;
        }
    }
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, change: DestChange) {
        self.recompute(dests);
        let reset = match change {
            DestChange::Added | DestChange::Deleted { .. } | DestChange::Edited { .. } => true,
            // Initialisation; a later `-E` of the service does not call the scheduler.
            DestChange::ServiceEdited => !self.initialised,
        };
        if reset {
            self.initialised = true;
            self.cl = None;
            if self.cw > self.mw || self.cw == 0 {
                self.cw = self.mw;
            } else if self.di > 1 {
                self.cw = (self.cw / self.di) * self.di + 1;
            }
        }
        if self.cl.is_some_and(|c| c >= dests.len()) {
            self.cl = None;
        }
    }

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        if self.weights.len() != dests.len() {
            // Not expected (every list change calls update); resynchronise.
            self.recompute(dests);
            self.cl = self.cl.filter(|&c| c < dests.len());
        }
        if self.mw == 0 {
            return None;
        }
        let last = self.cl;
        let mut pos = last.map_or(0, |c| c + 1);
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            // Walk from `pos` to the tail.
            loop {
                let cand = self.next_at_least(pos, self.cw);
                // The stop dest, when reached before any candidate, ends the search.
                if let Some(s) = stop
                    && s >= pos
                    && cand.is_none_or(|c| s < c)
                {
                    self.cl = Some(s);
                    return None;
                }
                let Some(c) = cand else { break };
                if !dests[c].is_overloaded() {
                    self.cl = Some(c);
                    return Some(c);
                }
                if stop == Some(c) {
                    self.cl = Some(c);
                    return None;
                }
                pos = c + 1;
            }
            pos = 0;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest, picks};
    use super::*;
    use crate::sched::new_scheduler;
    use proptest::prelude::*;

    fn wrr(dests: &[Arc<Dest>]) -> Box<dyn Scheduler> {
        new_scheduler("wrr", dests, 0).unwrap()
    }

    fn names(s: &str) -> Vec<Option<u8>> {
        s.split_whitespace().map(|c| Some(c.as_bytes()[0] - b'A' + 1)).collect()
    }

    #[test]
    fn tv_wrr_1_list_order_a4_b3_c2() {
        let dests = vec![dest(1, 4), dest(2, 3), dest(3, 2)];
        let mut s = wrr(&dests);
        assert_eq!(
            picks(s.as_mut(), &dests, 18),
            names("A A B A B C A B C A A B A B C A B C")
        );
    }

    #[test]
    fn tv_wrr_2_added_with_ipvsadm() {
        // Added A(4), B(3), C(2): list C, B, A.
        let dests = vec![dest(3, 2), dest(2, 3), dest(1, 4)];
        let mut s = wrr(&dests);
        assert_eq!(
            picks(s.as_mut(), &dests, 18),
            names("A B A C B A C B A A B A C B A C B A")
        );
    }

    #[test]
    fn tv_wrr_3_gcd_two() {
        let dests = vec![dest(1, 4), dest(2, 2)];
        let mut s = wrr(&dests);
        assert_eq!(picks(s.as_mut(), &dests, 9), names("A A B A A B A A B"));
    }

    #[test]
    fn tv_wrr_4_gcd_three() {
        let dests = vec![dest(1, 6), dest(2, 3), dest(3, 3)];
        let mut s = wrr(&dests);
        assert_eq!(picks(s.as_mut(), &dests, 8), names("A A B C A A B C"));
    }

    #[test]
    fn tv_wrr_5_all_weights_zero() {
        let dests = vec![dest(1, 0), dest(2, 0)];
        let mut s = wrr(&dests);
        assert_eq!(picks(s.as_mut(), &dests, 2), vec![None, None]);
    }

    #[test]
    fn tv_wrr_6_overload_mid_cycle() {
        let dests = vec![dest(1, 4), dest(2, 3), dest(3, 2)];
        let mut s = wrr(&dests);
        assert_eq!(picks(s.as_mut(), &dests, 3), names("A A B"));
        dests[0].set_overload(true);
        assert_eq!(picks(s.as_mut(), &dests, 8), names("B C B C B B C B"));
    }

    #[test]
    fn tv_wrr_7_edit_keeps_cw() {
        let dests = vec![dest(1, 4), dest(2, 3), dest(3, 2)];
        let mut s = wrr(&dests);
        assert_eq!(picks(s.as_mut(), &dests, 4), names("A A B A"));
        let mut cfg = dests[2].config();
        cfg.weight = 6;
        dests[2].edit(&cfg);
        s.update(&dests, 0, DestChange::Edited { index: 2 });
        assert_eq!(picks(s.as_mut(), &dests, 13), names("A B C A B C C C A C A B C"));
    }

    #[test]
    fn all_overloaded_gives_none_and_recovers() {
        let dests = vec![dest(1, 2), dest(2, 1)];
        let mut s = wrr(&dests);
        assert_eq!(picks(s.as_mut(), &dests, 1), names("A"));
        dests[0].set_overload(true);
        dests[1].set_overload(true);
        assert_eq!(picks(s.as_mut(), &dests, 2), vec![None, None]);
        dests[0].set_overload(false);
        dests[1].set_overload(false);
        assert_eq!(picks(s.as_mut(), &dests, 3).len(), 3);
        assert!(picks(s.as_mut(), &dests, 3).iter().all(Option::is_some));
    }

    /// Straightforward transcription of the kernel loop over the live list, to check
    /// the segment-tree version against.
    struct Reference {
        cl: Option<usize>,
        cw: i32,
        mw: i32,
        di: i32,
    }

    impl Reference {
        fn new(dests: &[Arc<Dest>]) -> Self {
            let g = dests
                .iter()
                .map(|d| d.weight())
                .filter(|&w| w > 0)
                .fold(0u32, |g, w| gcd(w as u32, g));
            let di = if g == 0 { 1 } else { g as i32 };
            let mw = dests.iter().map(|d| d.weight()).fold(0, i32::max) - (di - 1);
            Reference {
                cl: None,
                cw: mw,
                mw,
                di,
            }
        }
        fn pick(&mut self, dests: &[Arc<Dest>]) -> Option<usize> {
            if self.mw == 0 {
                return None;
            }
            let last = self.cl;
            let mut d = self.cl;
            let (mut stop, mut last_pass, mut restarted) = (None, false, false);
            loop {
                let start = d.map_or(0, |c| c + 1);
                for (x, dx) in dests.iter().enumerate().skip(start) {
                    if !dx.is_overloaded() && dx.weight() >= self.cw {
                        self.cl = Some(x);
                        return Some(x);
                    }
                    if Some(x) == stop {
                        self.cl = Some(x);
                        return None;
                    }
                }
                d = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                    if last_pass || last.is_none() {
                        self.cl = None;
                        return None;
                    }
                    restarted = true;
                }
                last_pass = self.cw <= self.di;
                if last_pass && restarted && last.is_some() {
                    stop = last;
                }
            }
        }
    }

    proptest! {
        #[test]
        fn prop_full_cycle_gives_each_server_its_weight(
            weights in proptest::collection::vec(1i32..=20, 1..=8)
        ) {
            let dests: Vec<_> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| dest(i as u8 + 1, w))
                .collect();
            let mut s = wrr(&dests);
            let total: i32 = weights.iter().sum();
            let mut counts = vec![0i32; dests.len()];
            let inp = super::super::testutil::input([1, 2, 3, 4], 1, [5, 6, 7, 8]);
            for _ in 0..total {
                counts[s.schedule(&dests, &inp).unwrap()] += 1;
            }
            prop_assert_eq!(counts, weights);
        }

        #[test]
        fn prop_matches_kernel_loop_with_overload(
            weights in proptest::collection::vec(0i32..=12, 1..=40),
            overload in proptest::collection::vec(proptest::bool::weighted(0.3), 40),
            flips in proptest::collection::vec((0usize..40, 0usize..60), 0..8),
        ) {
            let dests: Vec<_> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| dest(i as u8 + 1, w))
                .collect();
            for (d, &o) in dests.iter().zip(&overload) {
                d.set_overload(o);
            }
            let mut s = wrr(&dests);
            let mut r = Reference::new(&dests);
            let inp = super::super::testutil::input([1, 2, 3, 4], 1, [5, 6, 7, 8]);
            for step in 0..60 {
                for &(i, at) in &flips {
                    if at == step && i < dests.len() {
                        let d = &dests[i];
                        d.set_overload(!d.is_overloaded());
                    }
                }
                prop_assert_eq!(s.schedule(&dests, &inp), r.pick(&dests));
            }
        }
    }
}
