//! wlc: weighted least connection (ip_vs_wlc.c), ipvsadm's default scheduler.
//!
//! The first non-OVERLOAD dest with weight > 0 starts; every later non-OVERLOAD dest
//! replaces it when `overhead(least) * w > overhead(x) * w(least)` (signed 64-bit), so
//! ties keep the earlier dest and a weight-0 dest can never win.
//!
//! Picks read the root of a tournament tree (see `index.rs`, key `WlcKey`);
//! `common::wlc_pick` is the kernel's loop, the reference.

use std::sync::Arc;

use super::common::{WlcIndex, wlc_best};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

#[derive(Debug, Default)]
pub struct WeightedLeastConnection {
    index: WlcIndex,
}

impl Scheduler for WeightedLeastConnection {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, change: DestChange) {
        self.index.update(dests, &change);
    }

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        self.index.refresh(dests);
        wlc_best(&self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest_conns as d, pick1};
    use super::*;

    fn wlc(dests: &[Arc<Dest>]) -> Option<u8> {
        let got = pick1(&mut WeightedLeastConnection::default(), dests);
        assert_eq!(
            got,
            super::super::testutil::octet(dests, super::super::common::wlc_pick(dests))
        );
        got
    }

    #[test]
    fn tv_wlc_1_per_unit_load() {
        assert_eq!(wlc(&[d(1, 1, 1, 0), d(2, 2, 2, 0), d(3, 3, 2, 88)]), Some(3));
    }

    #[test]
    fn tv_wlc_2_exact_tie_keeps_first() {
        assert_eq!(wlc(&[d(1, 1, 1, 0), d(2, 2, 2, 0)]), Some(1));
    }

    #[test]
    fn tv_wlc_3_weight_zero_first() {
        assert_eq!(wlc(&[d(1, 0, 0, 0), d(2, 2, 4, 0), d(3, 1, 1, 10)]), Some(3));
    }

    #[test]
    fn tv_wlc_4_overloaded_skipped() {
        let dests = vec![d(1, 1, 0, 0), d(2, 2, 4, 0), d(3, 1, 1, 10)];
        dests[0].set_overload(true);
        assert_eq!(wlc(&dests), Some(3));
    }

    #[test]
    fn tv_sed_1_wlc_side() {
        assert_eq!(wlc(&[d(1, 1, 0, 1000), d(2, 3, 2, 0)]), Some(2));
    }

    #[test]
    fn weight_zero_later_cannot_win() {
        assert_eq!(wlc(&[d(1, 1, 50, 0), d(2, 0, 0, 0)]), Some(1));
        assert_eq!(wlc(&[d(1, 0, 0, 0), d(2, 0, 0, 0)]), None);
    }
}
