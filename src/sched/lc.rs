//! lc: least connection (ip_vs_lc.c). Skips OVERLOAD and weight-0 dests and returns the
//! one with the smallest `overhead = 256 * active + inactive` (unsigned compare, strict
//! `<`, so the first minimum in list order wins). Weight magnitude is ignored.
//!
//! Picks read the root of a tournament tree over the list (see `index.rs`), kept
//! current from the dests' load changes; [`scan`] is the kernel's loop, the reference.

use std::sync::Arc;

use super::index::{ArgTree, Key, LoadIndex};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

#[derive(Debug, Default)]
pub struct LeastConnection {
    index: LoadIndex<ArgTree<LcKey>>,
}

/// The overhead of an eligible dest (not OVERLOAD, weight != 0), else `u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LcKey(u64);

impl Default for LcKey {
    fn default() -> Self {
        LcKey(u64::MAX)
    }
}

impl Key for LcKey {
    #[inline]
    fn of(d: &Dest) -> Self {
        if d.is_overloaded() || d.weight() == 0 {
            LcKey::default()
        } else {
            LcKey(u64::from(d.overhead()))
        }
    }
    #[inline]
    fn better(l: &Self, r: &Self) -> bool {
        r.0 < l.0
    }
    #[inline]
    fn eligible(&self) -> bool {
        self.0 != u64::MAX
    }
}

/// The kernel's scan (reference implementation).
pub(crate) fn scan(dests: &[Arc<Dest>]) -> Option<usize> {
    let mut least: Option<usize> = None;
    let mut loh = 0u32;
    for (i, d) in dests.iter().enumerate() {
        if d.is_overloaded() || d.weight() == 0 {
            continue;
        }
        let doh = d.overhead();
        if least.is_none() || doh < loh {
            least = Some(i);
            loh = doh;
        }
    }
    least
}

impl Scheduler for LeastConnection {
    fn name(&self) -> &'static str {
        "lc"
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

    #[test]
    fn tv_lc_1_tie_keeps_first() {
        let dests = vec![d(1, 1, 1, 0), d(2, 1, 0, 300), d(3, 1, 1, 0)];
        assert_eq!(pick1(&mut LeastConnection::default(), &dests), Some(1));
    }

    #[test]
    fn tv_lc_2_weights_ignored() {
        let dests = vec![d(1, 1, 2, 5), d(2, 3, 1, 300), d(3, 1, 0, 600)];
        assert_eq!(pick1(&mut LeastConnection::default(), &dests), Some(1));
    }

    #[test]
    fn tv_lc_3_weight_zero_skipped() {
        let dests = vec![d(1, 0, 0, 0), d(2, 5, 3, 0), d(3, 1, 3, 0)];
        assert_eq!(pick1(&mut LeastConnection::default(), &dests), Some(2));
    }

    #[test]
    fn overloaded_skipped_and_none_when_nothing_eligible() {
        let dests = vec![d(1, 1, 0, 0), d(2, 1, 9, 0)];
        dests[0].set_overload(true);
        assert_eq!(pick1(&mut LeastConnection::default(), &dests), Some(2));
        dests[1].set_overload(true);
        assert_eq!(pick1(&mut LeastConnection::default(), &dests), None);
        assert_eq!(pick1(&mut LeastConnection::default(), &[]), None);
    }
}
