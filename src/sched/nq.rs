//! nq: never queue (ip_vs_nq.c). Skipping OVERLOAD and weight-0 dests, the first dest
//! with no active connection wins immediately; otherwise the sed cost
//! `(active + 1) / weight` decides (ties keep the earlier dest).
//!
//! Quirk: UDP connections are never active, so for UDP services nq always returns the
//! first eligible dest in list order.

use std::sync::Arc;

use super::{DestChange, SchedInput, Scheduler};
use crate::service::Dest;

#[derive(Debug, Default, Clone, Copy)]
pub struct NeverQueue;

impl Scheduler for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn update(&mut self, _dests: &[Arc<Dest>], _svc_flags: u32, _change: DestChange) {}

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
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
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest_conns as d, pick1};
    use super::*;

    fn nq(dests: &[Arc<Dest>]) -> Option<u8> {
        pick1(&mut NeverQueue, dests)
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
