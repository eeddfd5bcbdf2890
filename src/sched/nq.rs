//! nq: never queue (ip_vs_nq.c). Skipping OVERLOAD and weight-0 dests, the first dest
//! with no active connection wins immediately; otherwise the sed cost
//! `(active + 1) / weight` decides (ties keep the earlier dest).
//!
//! Quirk: UDP connections are never active, so for UDP services nq always returns the
//! first eligible dest in list order.
//!
//! Picks read the root of a tournament tree (see `index.rs`) whose key ranks idle dests
//! before busy ones; [`scan`] is the kernel's loop, the reference. A busy dest with a
//! negative weight (refused by the control plane) makes the scan's comparison order
//! inconsistent, so while there is one the scan is used.

use std::sync::Arc;

use super::common::ratio_better;
use super::index::{ArgTree, Key, LoadIndex};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

#[derive(Debug, Default)]
pub struct NeverQueue {
    index: LoadIndex<ArgTree<NqKey>>,
}

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const NONE: u8 = 2;

/// Class `IDLE` (eligible, no active connection), `BUSY` (eligible: ranked by
/// `(active + 1) / weight`) or `NONE` (OVERLOAD or weight 0). Flag: busy with a
/// negative weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NqKey {
    class: u8,
    negative: bool,
    w: u32,
    cost: u64,
}

impl Default for NqKey {
    fn default() -> Self {
        NqKey {
            class: NONE,
            negative: false,
            w: 0,
            cost: 0,
        }
    }
}

impl Key for NqKey {
    #[inline]
    fn of(d: &Dest) -> Self {
        let w = d.weight();
        if d.is_overloaded() || w == 0 {
            return NqKey::default();
        }
        let active = d.active();
        if active == 0 {
            return NqKey {
                class: IDLE,
                ..NqKey::default()
            };
        }
        NqKey {
            class: BUSY,
            negative: w < 0,
            w: w.max(1) as u32,
            cost: u64::from(active) + 1,
        }
    }
    #[inline]
    fn better(l: &Self, r: &Self) -> bool {
        r.class < l.class || (r.class == BUSY && l.class == BUSY && ratio_better(l.cost, l.w, r.cost, r.w))
    }
    #[inline]
    fn eligible(&self) -> bool {
        self.class != NONE
    }
    #[inline]
    fn flag(&self) -> bool {
        self.negative
    }
}

/// The kernel's scan (reference implementation).
pub(crate) fn scan(dests: &[Arc<Dest>]) -> Option<usize> {
    let mut least: Option<usize> = None;
    let (mut loh, mut lw) = (0i64, 0i64);
    for (i, d) in dests.iter().enumerate() {
        let w = d.weight();
        if d.is_overloaded() || w == 0 {
            continue;
        }
        let active = d.active();
        if active == 0 {
            return Some(i);
        }
        let doh = i64::from(active) + 1;
        let w = i64::from(w);
        if least.is_none() || loh * w > doh * lw {
            least = Some(i);
            loh = doh;
            lw = w;
        }
    }
    least
}

impl Scheduler for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, change: DestChange) {
        self.index.update(dests, &change);
    }

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        self.index.refresh(dests);
        let tree = self.index.tree();
        if tree.flagged() > 0 {
            return scan(dests);
        }
        tree.best()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest_conns as d, pick1};
    use super::*;

    fn nq(dests: &[Arc<Dest>]) -> Option<u8> {
        let got = pick1(&mut NeverQueue::default(), dests);
        assert_eq!(got, super::super::testutil::octet(dests, scan(dests)));
        got
    }

    #[test]
    fn tv_nq_1_first_idle_wins() {
        let dests = [d(1, 3, 1, 0), d(2, 1, 5, 0), d(3, 1, 0, 50), d(4, 1, 0, 0)];
        assert_eq!(nq(&dests), Some(3));
    }

    #[test]
    fn tv_nq_2_expected_delay() {
        assert_eq!(nq(&[d(1, 1, 2, 0), d(2, 4, 5, 0)]), Some(2));
    }

    #[test]
    fn tv_udp_nq_first_eligible() {
        // UDP: only inactive counts ever move.
        let dests = vec![d(1, 0, 0, 0), d(2, 1, 0, 900), d(3, 7, 0, 0)];
        assert_eq!(nq(&dests), Some(2));
        dests[1].set_overload(true);
        assert_eq!(nq(&dests), Some(3));
        dests[2].set_overload(true);
        assert_eq!(nq(&dests), None);
    }
}
