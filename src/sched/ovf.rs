//! ovf: weighted overflow (ip_vs_ovf.c). Eligible: not OVERLOAD, weight != 0 and
//! `activeconns <= weight` (skipped only when active connections *exceed* the weight).
//! Returns the eligible dest with the highest weight; ties keep the earliest. Inactive
//! connections are ignored, so UDP services never overflow.
//!
//! As for fo, the dests are kept sorted by weight (rebuilt on every update) and a pick
//! stops at the first eligible one in that order.

use std::sync::Arc;

use super::common::WeightOrder;
use super::{DestChange, SchedInput, Scheduler};
use crate::service::Dest;

#[derive(Debug, Default)]
pub struct WeightedOverflow {
    order: WeightOrder,
}

#[inline]
fn eligible(d: &Dest, w: i32) -> bool {
    !d.is_overloaded() && i64::from(d.active()) <= i64::from(w) && w != 0
}

/// The kernel's scan, used when the cached order is stale.
fn scan(dests: &[Arc<Dest>]) -> Option<usize> {
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

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, _change: DestChange) {
        self.order.rebuild(dests);
    }

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        self.order.first(dests, eligible).unwrap_or_else(|| scan(dests))
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
