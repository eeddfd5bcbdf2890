//! ovf: weighted overflow (ip_vs_ovf.c). Eligible: not OVERLOAD, weight != 0 and
//! `activeconns <= weight` (skipped only when active connections *exceed* the weight).
//! Returns the eligible dest with the highest weight; ties keep the earliest. Inactive
//! connections are ignored, so UDP services never overflow.
//!
//! Eligibility moves with the active counts, so picks read the root of a tournament
//! tree (see `index.rs`) over "weight if eligible"; [`scan`] is the kernel's loop, the
//! reference.

use std::sync::Arc;

use super::index::{ArgTree, Key, LoadIndex};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

#[derive(Debug, Default)]
pub struct WeightedOverflow {
    index: LoadIndex<ArgTree<OvfKey>>,
}

#[inline]
fn eligible(d: &Dest, w: i32) -> bool {
    !d.is_overloaded() && i64::from(d.active()) <= i64::from(w) && w != 0
}

/// The weight of an eligible dest (then > 0), else 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct OvfKey(u32);

impl Key for OvfKey {
    #[inline]
    fn of(d: &Dest) -> Self {
        let w = d.weight();
        OvfKey(if eligible(d, w) { w as u32 } else { 0 })
    }
    #[inline]
    fn better(l: &Self, r: &Self) -> bool {
        r.0 > l.0
    }
    #[inline]
    fn eligible(&self) -> bool {
        self.0 != 0
    }
}

/// The kernel's scan (reference implementation).
pub(crate) fn scan(dests: &[Arc<Dest>]) -> Option<usize> {
    let mut best = None;
    let mut hw = 0;
    for (i, d) in dests.iter().enumerate() {
        let w = d.weight();
        if !eligible(d, w) {
            continue;
        }
        if best.is_none() || w > hw {
            best = Some(i);
            hw = w;
        }
    }
    best
}

impl Scheduler for WeightedOverflow {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, change: DestChange) {
        self.index.update(dests, &change);
    }

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        self.index.refresh(dests);
        self.index.tree().best()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest_conns as d, pick1};
    use super::*;
    use crate::sched::new_scheduler;

    fn ovf(dests: &[Arc<Dest>]) -> Option<u8> {
        let got = pick1(new_scheduler("ovf", dests, 0).unwrap().as_mut(), dests);
        assert_eq!(got, super::super::testutil::octet(dests, scan(dests)));
        got
    }

    #[test]
    fn tv_ovf_1_active_equal_to_weight_allowed() {
        let dests = [d(1, 2, 2, 0), d(2, 5, 6, 0), d(3, 5, 5, 0), d(4, 1, 0, 0)];
        assert_eq!(ovf(&dests), Some(3));
    }

    #[test]
    fn tv_ovf_2_none() {
        let dests = [d(1, 2, 3, 0), d(2, 5, 6, 0), d(3, 0, 0, 0)];
        assert_eq!(ovf(&dests), None);
    }

    #[test]
    fn inactive_ignored() {
        let dests = [d(1, 1, 0, 5000), d(2, 1, 0, 0)];
        assert_eq!(ovf(&dests), Some(1));
    }
}
