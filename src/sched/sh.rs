//! sh: source hashing (ip_vs_sh.c).
//!
//! A 256-bucket table filled by walking the list cyclically, each dest taking
//! `max(weight, 1)` consecutive buckets per cycle (a weight-0 dest still takes one), the
//! last cycle cut off. Rebuilt on add, delete **and** edit, so quiescing a server remaps
//! clients of other servers too.
//!
//! Key: `hash_32(saddr + sport, 8)` where `sport` is used only with sh-port (SCHED2);
//! IPv6 sources are folded. "Unavailable" = weight <= 0 or OVERLOAD. With sh-fallback
//! (SCHED1) an unavailable bucket is followed by probes of buckets
//! `(off + 2 * ihash) mod 256` for `off = 0..255` (the kernel adds the hash twice).

use std::sync::Arc;

use super::common::{NO_DEST, fold_addr, hash_32, is_unavailable};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::{Dest, svc_flags};

const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: u32 = TAB_SIZE as u32 - 1;

#[derive(Debug)]
pub struct SourceHashing {
    buckets: [u32; TAB_SIZE],
}

impl Default for SourceHashing {
    fn default() -> Self {
        SourceHashing {
            buckets: [NO_DEST; TAB_SIZE],
        }
    }
}

impl SourceHashing {
    fn reassign(&mut self, dests: &[Arc<Dest>]) {
        if dests.is_empty() {
            self.buckets = [NO_DEST; TAB_SIZE];
            return;
        }
        let mut p = 0usize;
        let mut count = 0i32;
        for b in self.buckets.iter_mut() {
            *b = p as u32;
            count += 1;
            if count >= dests[p].weight() {
                p = (p + 1) % dests.len();
                count = 0;
            }
        }
    }

    #[inline]
    fn get(&self, dests: &[Arc<Dest>], bucket: u32) -> Option<(usize, bool)> {
        let i = self.buckets[bucket as usize] as usize;
        dests.get(i).map(|d| (i, !is_unavailable(d)))
    }
}

impl Scheduler for SourceHashing {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, _change: DestChange) {
        // add_dest, del_dest and upd_dest all rebuild the table.
        self.reassign(dests);
    }

    #[inline]
    fn schedule(&mut self, dests: &[Arc<Dest>], input: &SchedInput) -> Option<usize> {
        let port = if input.svc_flags & svc_flags::SCHED2 != 0 {
            u32::from(input.sport)
        } else {
            0
        };
        let ihash = hash_32(port.wrapping_add(fold_addr(&input.saddr)), TAB_BITS);
        let (i, ok) = self.get(dests, ihash)?;
        if ok {
            return Some(i);
        }
        if input.svc_flags & svc_flags::SCHED1 == 0 {
            return None;
        }
        for off in 0..TAB_SIZE as u32 {
            let roffset = (off + ihash) & TAB_MASK;
            let (i, ok) = self.get(dests, (roffset + ihash) & TAB_MASK)?;
            if ok {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest, input, octet};
    use super::*;
    use crate::sched::new_scheduler;
    use proptest::prelude::*;
    use std::net::IpAddr;

    fn pick(s: &mut dyn Scheduler, dests: &[Arc<Dest>], saddr: [u8; 4], sport: u16, flags: u32) -> Option<u8> {
        let mut inp = input(saddr, sport, [10, 1, 1, 1]);
        inp.svc_flags = flags;
        octet(dests, s.schedule(dests, &inp))
    }

    fn table(s: &SourceHashing, dests: &[Arc<Dest>]) -> Vec<u8> {
        s.buckets
            .iter()
            .map(|&i| octet(dests, Some(i as usize)).unwrap())
            .collect()
    }

    fn counts(t: &[u8]) -> [usize; 4] {
        let mut c = [0; 4];
        for &x in t {
            c[x as usize] += 1;
        }
        c
    }

    #[test]
    fn tv_sh_1_table_and_lookups() {
        let dests = vec![dest(1, 1), dest(2, 2), dest(3, 1)];
        let mut s = SourceHashing::default();
        s.update(&dests, 0, DestChange::ServiceEdited);
        let t = table(&s, &dests);
        for (i, &x) in t.iter().enumerate() {
            assert_eq!(x, [1, 2, 2, 3][i % 4]);
        }
        assert_eq!(counts(&t), [0, 64, 128, 64]);
        assert_eq!(pick(&mut s, &dests, [10, 0, 0, 1], 999, 0), Some(3));
        assert_eq!(pick(&mut s, &dests, [192, 168, 1, 1], 999, 0), Some(1));
        assert_eq!(pick(&mut s, &dests, [172, 16, 0, 5], 999, 0), Some(2));
        assert_eq!(
            pick(&mut s, &dests, [192, 168, 1, 1], 12345, svc_flags::SCHED2),
            Some(3)
        );
    }

    #[test]
    fn tv_sh_2_weight_zero_takes_one_bucket() {
        let dests = vec![dest(1, 3), dest(2, 0), dest(3, 2)];
        let mut s = SourceHashing::default();
        s.update(&dests, 0, DestChange::ServiceEdited);
        let t = table(&s, &dests);
        assert_eq!(counts(&t), [0, 129, 43, 84]);
        assert_eq!(&t[..6], &[1, 1, 1, 2, 3, 3]);
        assert_eq!(&t[252..], &[1, 1, 1, 2]);
    }

    #[test]
    fn tv_sh_3_counts() {
        let dests = vec![dest(1, 5), dest(2, 3)];
        let mut s = SourceHashing::default();
        s.update(&dests, 0, DestChange::ServiceEdited);
        assert_eq!(counts(&table(&s, &dests)), [0, 160, 96, 0]);
    }

    #[test]
    fn tv_sh_4_fallback_probe_starts_at_twice_hash() {
        let dests = vec![dest(1, 1), dest(2, 2), dest(3, 1)];
        let mut s = new_scheduler("sh", &dests, 0).unwrap();
        dests[1].set_overload(true);
        let fb = svc_flags::SCHED1;
        assert_eq!(pick(s.as_mut(), &dests, [172, 16, 0, 5], 1, 0), None);
        assert_eq!(pick(s.as_mut(), &dests, [172, 16, 0, 5], 1, fb), Some(3));
        assert_eq!(pick(s.as_mut(), &dests, [192, 168, 1, 100], 1, 0), None);
        assert_eq!(pick(s.as_mut(), &dests, [192, 168, 1, 100], 1, fb), Some(3));
    }

    #[test]
    fn tv_sh_5_quiesce_remaps_other_clients() {
        let dests = vec![dest(1, 1), dest(2, 2), dest(3, 1)];
        let mut s = new_scheduler("sh", &dests, 0).unwrap();
        assert_eq!(pick(s.as_mut(), &dests, [192, 168, 1, 1], 1, 0), Some(1));
        let mut cfg = dests[1].config();
        cfg.weight = 0;
        dests[1].edit(&cfg);
        s.update(&dests, 0, DestChange::Edited { index: 1 });
        assert_eq!(pick(s.as_mut(), &dests, [192, 168, 1, 1], 1, 0), None);
        let fb = svc_flags::SCHED1;
        assert_eq!(pick(s.as_mut(), &dests, [192, 168, 1, 1], 1, fb), Some(3));
    }

    #[test]
    fn empty_and_all_unavailable() {
        let mut s = new_scheduler("sh", &[], 0).unwrap();
        assert_eq!(pick(s.as_mut(), &[], [1, 2, 3, 4], 1, svc_flags::SCHED1), None);
        let dests = vec![dest(1, 0), dest(2, 0)];
        let mut s = new_scheduler("sh", &dests, 0).unwrap();
        assert_eq!(pick(s.as_mut(), &dests, [1, 2, 3, 4], 1, svc_flags::SCHED1), None);
    }

    proptest! {
        #[test]
        fn prop_stable_while_server_set_unchanged(
            weights in proptest::collection::vec(0i32..=5, 1..=10),
            clients in proptest::collection::vec((any::<u32>(), any::<u16>()), 1..50),
            flags in 0u32..4,
        ) {
            let flags = flags * svc_flags::SCHED1;
            let dests: Vec<_> = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| dest(i as u8 + 1, w))
                .collect();
            let mut s = new_scheduler("sh", &dests, flags).unwrap();
            let mk = |&(a, p): &(u32, u16)| {
                let mut inp = input([0; 4], p, [10, 1, 1, 1]);
                inp.saddr = IpAddr::from(a.to_be_bytes());
                inp.svc_flags = flags;
                inp
            };
            let first: Vec<_> = clients.iter().map(|c| s.schedule(&dests, &mk(c))).collect();
            s.update(&dests, flags, DestChange::ServiceEdited);
            for _ in 0..3 {
                let again: Vec<_> = clients.iter().map(|c| s.schedule(&dests, &mk(c))).collect();
                prop_assert_eq!(&again, &first);
            }
            for p in first.iter().flatten() {
                prop_assert!(dests[*p].weight() > 0);
            }
        }
    }
}
