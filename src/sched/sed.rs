//! sed: shortest expected delay (ip_vs_sed.c). Like wlc but the per-dest cost is
//! `activeconns + 1` (inactive connections are ignored): minimises `(active+1)/weight`,
//! ties keep the earlier dest. UDP services (never active) degenerate to "highest
//! weight, first among equals".

use std::sync::Arc;

use super::{DestChange, SchedInput, Scheduler};
use crate::service::Dest;

#[derive(Debug, Default, Clone, Copy)]
pub struct ShortestExpectedDelay;

#[inline]
fn cost(d: &Dest) -> i64 {
    i64::from(d.active()) + 1
}

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn update(&mut self, _dests: &[Arc<Dest>], _svc_flags: u32, _change: DestChange) {}

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        let first = dests.iter().position(|d| !d.is_overloaded() && d.weight() > 0)?;
        let mut least = first;
        let mut loh = cost(&dests[first]);
        let mut lw = i64::from(dests[first].weight());
        for (i, d) in dests.iter().enumerate().skip(first + 1) {
            if d.is_overloaded() {
                continue;
            }
            let doh = cost(d);
            let w = i64::from(d.weight());
            if loh * w > doh * lw {
                least = i;
                loh = doh;
                lw = w;
            }
        }
        Some(least)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest_conns as d, pick1};
    use super::*;

    fn sed(dests: &[Arc<Dest>]) -> Option<u8> {
        pick1(&mut ShortestExpectedDelay, dests)
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
