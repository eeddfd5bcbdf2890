//! lblcr: locality-based least connection with replication (ip_vs_lblcr.c).
//!
//! Each cache entry (keyed by the packet's destination address) holds a *set* of dests,
//! newest first, with `lastmod`. On a hit the weighted least-loaded AVAILABLE,
//! non-OVERLOAD member with weight > 0 is chosen (`set_min`); if the set has more than
//! one member and was not modified for `lblcr_expiration` (24 h), its weighted
//! most-loaded member is dropped (`set_max`) — the chosen dest is used even if it was
//! the one dropped. If there is no usable member or it is "overloaded" (lblc's sense),
//! wlc picks over the service and the pick joins the set. Entries age out like lblc's.

use std::net::IpAddr;
use std::sync::Arc;

use super::common::{WlcIndex, lb_overloaded, lb_wlc};
use super::locality::{CacheEntry, DestIndex, LocalityTable};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

#[derive(Debug)]
struct Entry {
    addr: IpAddr,
    /// Newest member first.
    set: Vec<Arc<Dest>>,
    /// Where the last returned member was found in the list.
    hint: usize,
    lastmod: u64,
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

/// `ip_vs_dest_set_min`: weighted least-connection member; the first non-OVERLOAD
/// member with weight > 0 and AVAILABLE starts, later non-OVERLOAD members replace it
/// when strictly lighter and AVAILABLE.
fn set_min(set: &[Arc<Dest>]) -> Option<&Arc<Dest>> {
    let first = set
        .iter()
        .position(|d| !d.is_overloaded() && d.weight() > 0 && d.is_available())?;
    let mut least = &set[first];
    let mut loh = i64::from(least.overhead());
    for d in &set[first + 1..] {
        if d.is_overloaded() {
            continue;
        }
        let doh = i64::from(d.overhead());
        if loh * i64::from(d.weight()) > doh * i64::from(least.weight()) && d.is_available() {
            least = d;
            loh = doh;
        }
    }
    Some(least)
}

/// `ip_vs_dest_set_max`: weighted most-connection member with weight > 0; ties keep
/// the earlier (newer) member.
fn set_max(set: &[Arc<Dest>]) -> Option<usize> {
    let first = set.iter().position(|d| d.weight() > 0)?;
    let mut most = first;
    let mut moh = i64::from(set[first].overhead());
    for (i, d) in set.iter().enumerate().skip(first + 1) {
        let doh = i64::from(d.overhead());
        let w = i64::from(d.weight());
        if moh * w < doh * i64::from(set[most].weight()) && w > 0 {
            most = i;
            moh = doh;
        }
    }
    Some(most)
}

#[derive(Debug, Default)]
pub struct LocalityLeastConnectionReplicated {
    table: LocalityTable<Entry>,
    index: DestIndex,
    /// wlc over the service and the "below half of its weight" count.
    wlc: WlcIndex,
    /// Use the kernel's scans instead of `wlc` (tests compare both).
    reference: bool,
}

impl LocalityLeastConnectionReplicated {
    /// Set the `lblcr_expiration` sysctl (default 24 h).
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

    /// The dests cached for `daddr`, newest first (diagnostics and tests).
    pub fn cached_set(&self, daddr: &IpAddr) -> Option<Vec<Arc<Dest>>> {
        self.table.get(daddr).map(|e| e.set.clone())
    }
}

impl Scheduler for LocalityLeastConnectionReplicated {
    fn name(&self) -> &'static str {
        "lblcr"
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
        let expiration = self.table.expiration_ms;
        if let Some(e) = self.table.get_mut(&input.daddr) {
            e.lastuse = now;
            let d = set_min(&e.set).cloned();
            if e.set.len() > 1
                && now > e.lastmod.saturating_add(expiration)
                && let Some(m) = set_max(&e.set)
            {
                e.set.remove(m);
                e.lastmod = now;
            }
            if let Some(d) = d
                && !lb_overloaded(self.reference, &self.wlc, &d, dests)
                && let Some(i) = self.index.locate(dests, &d, &mut e.hint)
            {
                return Some(i);
            }
            let i = lb_wlc(self.reference, &self.wlc, dests)?;
            if !e.set.iter().any(|m| Arc::ptr_eq(m, &dests[i])) {
                e.set.insert(0, dests[i].clone());
                e.lastmod = now;
            }
            e.hint = i;
            return Some(i);
        }
        let i = lb_wlc(self.reference, &self.wlc, dests)?;
        self.table.insert(Entry {
            addr: input.daddr,
            set: vec![dests[i].clone()],
            hint: i,
            lastmod: now,
            lastuse: now,
        });
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest, input, octet, set_active};
    use super::*;

    const D: [u8; 4] = [10, 9, 9, 9];
    const HOUR: u64 = 3_600_000;

    fn at(s: &mut dyn Scheduler, dests: &[Arc<Dest>], now_ms: u64) -> Option<u8> {
        let mut inp = input([192, 0, 2, 1], 1000, D);
        inp.now_ms = now_ms;
        octet(dests, s.schedule(dests, &inp))
    }

    fn set_of(s: &LocalityLeastConnectionReplicated) -> Vec<u8> {
        s.cached_set(&IpAddr::from(D))
            .unwrap()
            .iter()
            .map(|m| octet(std::slice::from_ref(m), Some(0)).unwrap())
            .collect()
    }

    /// TV-LBLCR-1 state: set(D) = {R2, R1}, lastmod = 0.
    fn tv1() -> (LocalityLeastConnectionReplicated, Vec<Arc<Dest>>) {
        let dests = vec![dest(1, 2), dest(2, 10)];
        let mut s = LocalityLeastConnectionReplicated::default();
        s.update(&dests, 0, DestChange::ServiceEdited);
        assert_eq!(at(&mut s, &dests, 0), Some(1));
        assert_eq!(set_of(&s), vec![1]);
        set_active(&dests[0], 5);
        set_active(&dests[1], 4);
        assert_eq!(at(&mut s, &dests, 0), Some(2));
        assert_eq!(set_of(&s), vec![2, 1]);
        (s, dests)
    }

    #[test]
    fn tv_lblcr_1_overloaded_member_adds_wlc_pick() {
        tv1();
    }

    #[test]
    fn tv_lblcr_2_unmodified_set_drops_most_loaded() {
        let (mut s, dests) = tv1();
        // Used every hour (so the entry itself never expires), never modified.
        for h in 1..=24 {
            assert_eq!(at(&mut s, &dests, h * HOUR), Some(2));
            assert_eq!(set_of(&s), vec![2, 1]);
        }
        // At 24 h + 1 ms the set is older than lblcr_expiration: R1 (1280/2) goes.
        assert_eq!(at(&mut s, &dests, 24 * HOUR + 1), Some(2));
        assert_eq!(set_of(&s), vec![2]);
    }

    #[test]
    fn removed_member_is_still_returned() {
        let dests = vec![dest(1, 10), dest(2, 10)];
        let mut s = LocalityLeastConnectionReplicated::default();
        s.update(&dests, 0, DestChange::ServiceEdited);
        assert_eq!(at(&mut s, &dests, 0), Some(1));
        // Make R1 lblc-overloaded so R2 joins: set {R2, R1}.
        set_active(&dests[0], 11);
        assert_eq!(at(&mut s, &dests, 0), Some(2));
        // Equal loads: R2 (first member) is both set_min and set_max.
        set_active(&dests[0], 3);
        set_active(&dests[1], 3);
        // A use at 12 h keeps the entry from expiring at the 24 h full check.
        assert_eq!(at(&mut s, &dests, 12 * HOUR), Some(2));
        assert_eq!(set_of(&s), vec![2, 1]);
        // set_min: R2 first (tie keeps it); set_max: R2 first, R1 equal -> R2 removed,
        // but R2 is still returned.
        assert_eq!(at(&mut s, &dests, 24 * HOUR + 1), Some(2));
        assert_eq!(set_of(&s), vec![1]);
    }

    #[test]
    fn unavailable_members_are_skipped() {
        let (mut s, mut dests) = tv1();
        set_active(&dests[0], 0);
        set_active(&dests[1], 0);
        // Delete R2: set_min must fall back to R1.
        let r2 = dests.remove(1);
        r2.set_available(false);
        s.update(&dests, 0, DestChange::Deleted { index: 1 });
        assert_eq!(at(&mut s, &dests, 1000), Some(1));
        // All members unusable: wlc picks a newcomer, which joins the set.
        dests[0].set_overload(true);
        let mut dests2 = dests.clone();
        dests2.insert(0, dest(3, 1));
        s.update(&dests2, 0, DestChange::Added);
        assert_eq!(at(&mut s, &dests2, 2000), Some(3));
        assert_eq!(set_of(&s), vec![3, 2, 1]);
    }

    #[test]
    fn entries_expire() {
        let (mut s, _dests) = tv1();
        assert_eq!(s.entries(), 1);
        s.tick(24 * HOUR);
        assert_eq!(s.entries(), 0);
    }
}
