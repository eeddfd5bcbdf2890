//! lblc: locality-based least connection (ip_vs_lblc.c).
//!
//! A cache keyed by the packet's **destination** address maps it to a dest. On a hit
//! (lastuse refreshed) the cached dest is used while it is AVAILABLE, has weight > 0
//! and is not "overloaded" in lblc's sense (more active connections than its weight
//! while some dest of the service is below half of its weight); the OVERLOAD flag of
//! the cached dest is not checked. Otherwise wlc picks over the whole service and the
//! entry is (re)pointed at its choice. Entries age out through the table's periodic
//! expiry (see `locality.rs`), run lazily from `schedule`/`tick` on virtual time.

use std::net::IpAddr;
use std::sync::Arc;

use super::common::{WlcIndex, lb_overloaded, lb_wlc};
use super::locality::{CacheEntry, DestIndex, LocalityTable};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

#[derive(Debug)]
struct Entry {
    addr: IpAddr,
    dest: Arc<Dest>,
    /// Where `dest` was last found in the list.
    hint: usize,
    lastuse: u64,
}

impl CacheEntry for Entry {
    fn addr(&self) -> &IpAddr {
        &self.addr
    }
    fn lastuse(&self) -> u64 {
        self.lastuse
    }
}

#[derive(Debug, Default)]
pub struct LocalityLeastConnection {
    table: LocalityTable<Entry>,
    index: DestIndex,
    /// wlc over the service and the "below half of its weight" count.
    wlc: WlcIndex,
    /// Use the kernel's scans instead of `wlc` (tests compare both).
    reference: bool,
}

impl LocalityLeastConnection {
    /// Set the `lblc_expiration` sysctl (default 24 h).
    pub fn set_expiration_ms(&mut self, ms: u64) {
        self.table.expiration_ms = ms;
    }

    /// A scheduler using the kernel's linear scans (the reference for tests and
    /// benchmarks, see `reference.rs`).
    pub fn reference() -> Self {
        Self {
            reference: true,
            ..Self::default()
        }
    }

    /// Number of cache entries.
    pub fn entries(&self) -> usize {
        self.table.len()
    }
}

impl Scheduler for LocalityLeastConnection {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, change: DestChange) {
        if !self.reference {
            self.wlc.update(dests, &change);
        }
        match change {
            DestChange::Edited { .. } => {}
            _ => self.index.rebuild(dests),
        }
    }

    fn tick(&mut self, now_ms: u64) {
        self.table.run_timers(now_ms);
    }

    fn schedule(&mut self, dests: &[Arc<Dest>], input: &SchedInput) -> Option<usize> {
        let now = input.now_ms;
        self.table.run_timers(now);
        if !self.reference {
            self.wlc.refresh(dests);
        }
        if let Some(e) = self.table.get_mut(&input.daddr) {
            e.lastuse = now;
            let d = &e.dest;
            if d.is_available()
                && d.weight() > 0
                && !lb_overloaded(self.reference, &self.wlc, d, dests)
                && let Some(i) = self.index.locate(dests, d, &mut e.hint)
            {
                return Some(i);
            }
        }
        let i = lb_wlc(self.reference, &self.wlc, dests)?;
        match self.table.get_mut(&input.daddr) {
            Some(e) => {
                if !Arc::ptr_eq(&e.dest, &dests[i]) {
                    e.dest = dests[i].clone();
                    e.lastuse = now;
                }
                e.hint = i;
            }
            None => self.table.insert(Entry {
                addr: input.daddr,
                dest: dests[i].clone(),
                hint: i,
                lastuse: now,
            }),
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest, input, octet, set_active};
    use super::*;
    use crate::sched::new_scheduler;

    fn at(s: &mut dyn Scheduler, dests: &[Arc<Dest>], daddr: [u8; 4], now_ms: u64) -> Option<u8> {
        let mut inp = input([192, 0, 2, 1], 1000, daddr);
        inp.now_ms = now_ms;
        octet(dests, s.schedule(dests, &inp))
    }

    /// R1(w2), R2(w10) with D cached on R1.
    fn primed() -> (LocalityLeastConnection, Vec<Arc<Dest>>) {
        let dests = vec![dest(1, 2), dest(2, 10)];
        let mut s = LocalityLeastConnection::default();
        s.update(&dests, 0, DestChange::ServiceEdited);
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 9], 0), Some(1));
        (s, dests)
    }

    #[test]
    fn tv_lblc_1_overloaded_cache_entry_moves() {
        let (mut s, dests) = primed();
        set_active(&dests[0], 5);
        set_active(&dests[1], 4);
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 9], 1000), Some(2));
        // The cache now says R2 even after R1 gets idle again.
        set_active(&dests[0], 0);
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 9], 2000), Some(2));
    }

    #[test]
    fn tv_lblc_2_not_overloaded_keeps_cached() {
        let (mut s, dests) = primed();
        set_active(&dests[0], 5);
        set_active(&dests[1], 5);
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 9], 1000), Some(1));
    }

    #[test]
    fn overload_flag_of_cached_dest_is_not_checked() {
        let (mut s, dests) = primed();
        dests[0].set_overload(true);
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 9], 1000), Some(1));
        // A new destination address goes through wlc, which skips OVERLOAD.
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 8], 1000), Some(2));
    }

    #[test]
    fn quiesced_or_deleted_cached_dest_is_replaced() {
        let (mut s, mut dests) = primed();
        let mut cfg = dests[0].config();
        cfg.weight = 0;
        dests[0].edit(&cfg);
        s.update(&dests, 0, DestChange::Edited { index: 0 });
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 9], 1000), Some(2));

        // Delete R2 (cached now): the entry's dest is no longer AVAILABLE.
        let gone = dests.remove(1);
        gone.set_available(false);
        s.update(&dests, 0, DestChange::Deleted { index: 1 });
        dests.insert(0, dest(3, 1));
        s.update(&dests, 0, DestChange::Added);
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 9], 2000), Some(3));
        // Indices follow the list: R1 is now at index 1.
        cfg.weight = 2;
        dests[1].edit(&cfg);
        dests[0].set_overload(true);
        s.update(&dests, 0, DestChange::Edited { index: 1 });
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 7], 2000), Some(1));
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 7], 2000), Some(1));
    }

    #[test]
    fn none_without_eligible_dest() {
        let dests = vec![dest(1, 0)];
        let mut s = new_scheduler("lblc", &dests, 0).unwrap();
        assert_eq!(at(s.as_mut(), &dests, [10, 9, 9, 9], 0), None);
    }

    #[test]
    fn entries_expire_after_24h_at_a_full_check() {
        let (mut s, dests) = primed();
        assert_eq!(s.entries(), 1);
        // Created at t = 0; full checks every 30 min from the first tick schedule.
        s.tick(86_400_000 - 1);
        assert_eq!(s.entries(), 1);
        s.tick(86_400_000);
        assert_eq!(s.entries(), 0);
        // A use within the period keeps an entry alive.
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 9], 86_400_000), Some(1));
        s.tick(86_400_000 + 3_600_000);
        assert_eq!(at(&mut s, &dests, [10, 9, 9, 9], 86_400_000 + 3_600_000), Some(1));
        s.tick(2 * 86_400_000 + 1_800_000);
        assert_eq!(s.entries(), 1);
        s.tick(2 * 86_400_000 + 3_600_000);
        assert_eq!(s.entries(), 0);
    }

    #[test]
    fn ipv6_destination_addresses() {
        let dests = vec![dest(1, 1), dest(2, 1)];
        let mut s = new_scheduler("lblc", &dests, 0).unwrap();
        let mut inp = input([192, 0, 2, 1], 1, [0; 4]);
        inp.daddr = "2001:db8::1".parse().unwrap();
        assert_eq!(octet(&dests, s.schedule(&dests, &inp)), Some(1));
        set_active(&dests[0], 1);
        // Cached: still R1 (1 active <= weight 1).
        assert_eq!(octet(&dests, s.schedule(&dests, &inp)), Some(1));
        inp.daddr = "2001:db8::2".parse().unwrap();
        assert_eq!(octet(&dests, s.schedule(&dests, &inp)), Some(2));
    }
}
