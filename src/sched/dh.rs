//! dh: destination hashing (ip_vs_dh.c).
//!
//! A 256-bucket table where bucket `i` holds the `(i mod n)`-th dest in list order,
//! ignoring weights (weight-0 dests still own buckets). Rebuilt on add and delete only;
//! an edit does **not** rebuild. The key is the packet's destination address
//! (`hash_32(addr, 8)`, IPv6 folded). The bucket's dest is returned unless it is not
//! AVAILABLE, has weight <= 0 or is OVERLOADed — then none (no fallback).

use std::sync::Arc;

use super::common::{NO_DEST, fold_addr, hash_32};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;

#[derive(Debug)]
pub struct DestinationHashing {
    buckets: [u32; TAB_SIZE],
}

impl Default for DestinationHashing {
    fn default() -> Self {
        DestinationHashing {
            buckets: [NO_DEST; TAB_SIZE],
        }
    }
}

impl DestinationHashing {
    fn reassign(&mut self, n: usize) {
        for (i, b) in self.buckets.iter_mut().enumerate() {
            *b = if n == 0 { NO_DEST } else { (i % n) as u32 };
        }
    }
}

impl Scheduler for DestinationHashing {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, change: DestChange) {
        match change {
            DestChange::Added | DestChange::Deleted { .. } | DestChange::ServiceEdited => self.reassign(dests.len()),
            // The kernel has no upd_dest hook for dh; the list positions do not move.
            DestChange::Edited { .. } => {}
        }
    }

    #[inline]
    fn schedule(&mut self, dests: &[Arc<Dest>], input: &SchedInput) -> Option<usize> {
        let b = hash_32(fold_addr(&input.daddr), TAB_BITS) as usize;
        let i = self.buckets[b] as usize;
        let d = dests.get(i)?;
        if !d.is_available() || d.weight() <= 0 || d.is_overloaded() {
            return None;
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest, input, octet};
    use super::*;
    use crate::sched::new_scheduler;

    fn pick(s: &mut dyn Scheduler, dests: &[Arc<Dest>], daddr: [u8; 4]) -> Option<u8> {
        octet(dests, s.schedule(dests, &input([192, 0, 2, 1], 1234, daddr)))
    }

    #[test]
    fn tv_dh_1_bucket_mod_n() {
        let dests = vec![dest(1, 1), dest(2, 1), dest(3, 1)];
        let mut s = new_scheduler("dh", &dests, 0).unwrap();
        assert_eq!(pick(s.as_mut(), &dests, [10, 0, 0, 1]), Some(1));
        assert_eq!(pick(s.as_mut(), &dests, [10, 0, 0, 2]), Some(3));
        assert_eq!(pick(s.as_mut(), &dests, [192, 168, 1, 1]), Some(2));
        assert_eq!(pick(s.as_mut(), &dests, [172, 16, 0, 5]), Some(2));
    }

    #[test]
    fn tv_dh_2_weight_zero_edit_no_rebuild() {
        let dests = vec![dest(1, 1), dest(2, 1), dest(3, 1)];
        let mut s = new_scheduler("dh", &dests, 0).unwrap();
        let mut cfg = dests[1].config();
        cfg.weight = 0;
        dests[1].edit(&cfg);
        s.update(&dests, 0, DestChange::Edited { index: 1 });
        assert_eq!(pick(s.as_mut(), &dests, [192, 168, 1, 1]), None);
        assert_eq!(pick(s.as_mut(), &dests, [10, 0, 0, 1]), Some(1));
        dests[0].set_overload(true);
        assert_eq!(pick(s.as_mut(), &dests, [10, 0, 0, 1]), None);
    }

    #[test]
    fn ipv6_daddr_is_folded_and_empty_list_gives_none() {
        let dests = vec![dest(1, 1), dest(2, 1), dest(3, 1)];
        let mut s = new_scheduler("dh", &dests, 0).unwrap();
        let mut inp = input([192, 0, 2, 1], 1, [0, 0, 0, 0]);
        inp.daddr = "2001:db8::1".parse().unwrap();
        // bucket 63 -> 63 mod 3 = 0 -> first dest.
        assert_eq!(octet(&dests, s.schedule(&dests, &inp)), Some(1));
        let mut e = new_scheduler("dh", &[], 0).unwrap();
        assert_eq!(e.schedule(&[], &inp), None);
    }

    #[test]
    fn rebuild_on_add_and_delete() {
        let mut dests = vec![dest(1, 1), dest(2, 1), dest(3, 1)];
        let mut s = new_scheduler("dh", &dests, 0).unwrap();
        dests.insert(0, dest(4, 1));
        s.update(&dests, 0, DestChange::Added);
        // 10.0.0.1 -> bucket 39 -> 39 mod 4 = 3 -> dest 3.
        assert_eq!(pick(s.as_mut(), &dests, [10, 0, 0, 1]), Some(3));
        dests.remove(3);
        s.update(&dests, 0, DestChange::Deleted { index: 3 });
        assert_eq!(pick(s.as_mut(), &dests, [10, 0, 0, 1]), Some(4));
    }
}
