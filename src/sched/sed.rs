//! sed: shortest expected delay (ip_vs_sed.c). Like wlc but the per-dest cost is
//! `activeconns + 1` (inactive connections are ignored): minimises `(active+1)/weight`,
//! ties keep the earlier dest. UDP services (never active) degenerate to "highest
//! weight, first among equals".
//!
//! Picks read the root of a tournament tree (see `index.rs`); [`scan`] is the kernel's
//! loop, the reference.

use std::sync::Arc;

use super::common::ratio_better;
use super::index::{ArgTree, Key, LoadIndex};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

#[derive(Debug, Default)]
pub struct ShortestExpectedDelay {
    index: LoadIndex<ArgTree<SedKey>>,
}

#[inline]
fn cost(d: &Dest) -> i64 {
    i64::from(d.active()) + 1
}

/// `(active + 1) / weight` for a dest that is not OVERLOAD and has weight > 0, `w == 0`
/// otherwise (as for wlc, later dests with weight <= 0 never win the scan).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SedKey {
    cost: u64,
    w: u32,
}

impl Key for SedKey {
    #[inline]
    fn of(d: &Dest) -> Self {
        let w = d.weight();
        if d.is_overloaded() || w <= 0 {
            SedKey::default()
        } else {
            SedKey {
                cost: u64::from(d.active()) + 1,
                w: w as u32,
            }
        }
    }
    #[inline]
    fn better(l: &Self, r: &Self) -> bool {
        ratio_better(l.cost, l.w, r.cost, r.w)
    }
    #[inline]
    fn eligible(&self) -> bool {
        self.w != 0
    }
}

/// The kernel's scan (reference implementation).
pub(crate) fn scan(dests: &[Arc<Dest>]) -> Option<usize> {
    super::common::weighted_least_by(dests, cost)
}

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
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

    fn sed(dests: &[Arc<Dest>]) -> Option<u8> {
        let got = pick1(&mut ShortestExpectedDelay::default(), dests);
        assert_eq!(got, super::super::testutil::octet(dests, scan(dests)));
        got
    }

    #[test]
    fn tv_sed_1_inactive_ignored_tie_keeps_first() {
        assert_eq!(sed(&[d(1, 1, 0, 1000), d(2, 3, 2, 0)]), Some(1));
    }

    #[test]
    fn tv_sed_2_tie() {
        assert_eq!(sed(&[d(1, 1, 1, 0), d(2, 2, 3, 0)]), Some(1));
    }

    #[test]
    fn udp_degenerates_to_highest_weight() {
        assert_eq!(sed(&[d(1, 1, 0, 9), d(2, 3, 0, 50), d(3, 3, 0, 0)]), Some(2));
    }

    #[test]
    fn overloaded_and_zero_weight() {
        let dests = vec![d(1, 0, 0, 0), d(2, 5, 0, 0), d(3, 1, 0, 0)];
        dests[1].set_overload(true);
        assert_eq!(sed(&dests), Some(3));
    }
}
