//! fo: weighted fail-over (ip_vs_fo.c). Returns the non-OVERLOAD dest with the highest
//! weight (strictly greater than the best so far, starting from 0, so weight 0 never
//! qualifies); ties keep the earliest in list order. Connection counts are ignored.
//!
//! Weights only change with an update, so the dests are kept sorted by weight there and
//! a pick stops at the first non-OVERLOAD one: O(1) unless servers are overloaded.

use std::sync::Arc;

use super::common::WeightOrder;
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

#[derive(Debug, Default)]
pub struct WeightedFailover {
    order: WeightOrder,
}

/// The kernel's scan, used when the cached order is stale.
fn scan(dests: &[Arc<Dest>]) -> Option<usize> {
    let mut best = None;
    let mut hw = 0;
    for (i, d) in dests.iter().enumerate() {
        let w = d.weight();
        if w > hw && !d.is_overloaded() {
            best = Some(i);
            hw = w;
        }
    }
    best
}

impl Scheduler for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, _change: DestChange) {
        self.order.rebuild(dests);
    }

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        self.order
            .first(dests, |d, _| !d.is_overloaded())
            .unwrap_or_else(|| scan(dests))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest, pick1};
    use super::*;
    use crate::sched::new_scheduler;

    fn fo(dests: &[Arc<Dest>]) -> Box<dyn Scheduler> {
        new_scheduler("fo", dests, 0).unwrap()
    }

    #[test]
    fn tv_fo() {
        let dests = vec![dest(1, 5), dest(2, 10), dest(3, 10), dest(4, 20)];
        dests[3].set_overload(true);
        assert_eq!(pick1(fo(&dests).as_mut(), &dests), Some(2));
        assert_eq!(scan(&dests), Some(1));
    }

    #[test]
    fn weight_zero_never_qualifies() {
        let dests = vec![dest(1, 0), dest(2, 0)];
        assert_eq!(pick1(fo(&dests).as_mut(), &dests), None);
    }

    #[test]
    fn edits_and_stale_order() {
        let mut dests = vec![dest(1, 5), dest(2, 10)];
        let mut s = fo(&dests);
        assert_eq!(pick1(s.as_mut(), &dests), Some(2));
        let mut cfg = dests[0].config();
        cfg.weight = 11;
        dests[0].edit(&cfg);
        s.update(&dests, 0, DestChange::Edited { index: 0 });
        assert_eq!(pick1(s.as_mut(), &dests), Some(1));
        // A list change the scheduler was not told about falls back to the scan.
        dests.insert(0, dest(3, 50));
        assert_eq!(pick1(s.as_mut(), &dests), Some(3));
    }
}
