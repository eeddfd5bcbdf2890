//! Neighbour resolution for real servers (the director's own ARP cache).
//!
//! The control thread owns this table. Workers report what ARP packets say
//! (`Verdict::Neigh`); only entries the director asked for are ever filled, so
//! unsolicited replies cannot poison it. Entries are refreshed every 30 s and
//! forgotten after 60 s without an answer; a resolved MAC is published to every
//! destination behind that next hop as one atomic store.

use std::collections::HashMap;
use std::sync::Arc;

use crate::service::Dest;
use crate::wire::MacAddr;

/// Re-ask a resolved neighbour after this long.
pub const REFRESH_MS: u64 = 30_000;
/// Forget a neighbour not confirmed for this long.
pub const STALE_MS: u64 = 60_000;
/// Re-send a request for an unresolved neighbour at this interval.
pub const RETRY_MS: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct Entry {
    pub mac: Option<MacAddr>,
    pub confirmed_ms: u64,
    pub solicited_ms: Option<u64>,
    /// Asked for by a worker (a NAT client's next hop) at this time; such entries
    /// live for [`WANTED_MS`] after the last request.
    pub wanted_ms: Option<u64>,
    /// A request was sent at `solicited_ms` and not answered yet.
    pub awaiting: bool,
}

/// How long a worker-requested neighbour is kept after its last request.
pub const WANTED_MS: u64 = 600_000;
/// Worker-requested neighbours kept at most (beyond the real servers' next hops).
pub const MAX_WANTED: usize = 4096;

/// (ifindex, next-hop address).
pub type NeighKey = (u32, [u8; 4]);

#[derive(Debug, Default)]
pub struct Neighbours {
    entries: HashMap<NeighKey, Entry>,
    /// Destinations behind each next hop.
    users: HashMap<NeighKey, Vec<Arc<Dest>>>,
    /// Something changed that the workers' neighbour map should reflect.
    pub dirty: bool,
}

fn blank() -> Entry {
    Entry {
        mac: None,
        confirmed_ms: 0,
        solicited_ms: None,
        wanted_ms: None,
        awaiting: false,
    }
}

impl Neighbours {
    /// Replace the set of destinations and their next hops; keeps known MACs.
    pub fn set_users(&mut self, users: Vec<(NeighKey, Arc<Dest>)>) {
        self.users.clear();
        for (k, d) in users {
            match self.entries.get(&k).and_then(|e| e.mac) {
                Some(mac) => d.set_mac(mac),
                None => d.clear_mac(),
            }
            self.entries.entry(k).or_insert_with(blank);
            self.users.entry(k).or_default().push(d);
        }
        let users = &self.users;
        let before = self.entries.len();
        self.entries
            .retain(|k, e| users.contains_key(k) || e.wanted_ms.is_some());
        self.dirty |= before != self.entries.len();
    }

    /// A worker needs `k` (a NAT client's next hop): create the entry if missing. At
    /// most [`MAX_WANTED`] such entries exist at once: clients on a large on-link
    /// subnet (or spoofed ones) cannot grow the table without bound.
    pub fn want(&mut self, k: NeighKey, now_ms: u64) {
        if !self.entries.contains_key(&k) && self.entries.len() >= self.users.len() + MAX_WANTED {
            return;
        }
        self.entries.entry(k).or_insert_with(blank).wanted_ms = Some(now_ms);
    }

    /// Every resolved neighbour, for the workers.
    pub fn resolved_map(&self) -> ahash::AHashMap<NeighKey, MacAddr> {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.mac.map(|m| (*k, m)))
            .collect()
    }

    /// An ARP packet said `ip` is at `mac` on `ifindex`. Returns true if it was used.
    ///
    /// Policy (stricter than Linux, which lets any ARP packet update an existing
    /// entry): a packet that repeats the MAC we know only refreshes the entry; a new or
    /// different MAC is taken only while our own request for `ip` is outstanding (sent
    /// less than [`RETRY_MS`] ago and not yet answered). So an unsolicited reply or a
    /// gratuitous ARP from another station can never redirect a real server's traffic;
    /// a server that really moved is found by the next refresh request (at most
    /// [`REFRESH_MS`] later), when the old MAC stops confirming.
    pub fn on_arp(&mut self, ifindex: u32, ip: [u8; 4], mac: MacAddr, now_ms: u64) -> bool {
        let Some(e) = self.entries.get_mut(&(ifindex, ip)) else {
            return false;
        };
        if e.mac != Some(mac) {
            let asked = e.awaiting && e.solicited_ms.is_some_and(|s| now_ms.saturating_sub(s) < RETRY_MS);
            if !asked {
                return false;
            }
            self.dirty = true;
        }
        e.awaiting = false;
        e.mac = Some(mac);
        e.confirmed_ms = now_ms;
        for d in self.users.get(&(ifindex, ip)).into_iter().flatten() {
            d.set_mac(mac);
        }
        true
    }

    /// Entries to solicit now (each is marked as solicited); ages out stale ones and
    /// forgets worker-requested ones unused for [`WANTED_MS`].
    pub fn due(&mut self, now_ms: u64) -> Vec<NeighKey> {
        let users = &self.users;
        let before = self.entries.len();
        self.entries
            .retain(|k, e| users.contains_key(k) || e.wanted_ms.is_some_and(|w| now_ms.saturating_sub(w) < WANTED_MS));
        self.dirty |= before != self.entries.len();
        let mut out = Vec::new();
        for (k, e) in self.entries.iter_mut() {
            if e.mac.is_some() && now_ms.saturating_sub(e.confirmed_ms) >= STALE_MS {
                self.dirty = true;
                e.mac = None;
                for d in self.users.get(k).into_iter().flatten() {
                    d.clear_mac();
                }
            }
            let want = match e.mac {
                None => true,
                Some(_) => now_ms.saturating_sub(e.confirmed_ms) >= REFRESH_MS,
            };
            if want && e.solicited_ms.is_none_or(|s| now_ms.saturating_sub(s) >= RETRY_MS) {
                e.solicited_ms = Some(now_ms);
                e.awaiting = true;
                out.push(*k);
            }
        }
        out
    }

    pub fn get(&self, k: &NeighKey) -> Option<&Entry> {
        self.entries.get(k)
    }

    /// Are all real servers' next hops resolved?
    pub fn all_resolved(&self) -> bool {
        self.users
            .keys()
            .all(|k| self.entries.get(k).is_some_and(|e| e.mac.is_some()))
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
    /// Resolved real-server next hops.
    pub fn resolved(&self) -> usize {
        self.users
            .keys()
            .filter(|k| self.entries.get(k).is_some_and(|e| e.mac.is_some()))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::dest;

    #[test]
    fn wanted_entries_resolve_and_expire() {
        let mut n = Neighbours::default();
        n.set_users(vec![]);
        assert!(!n.on_arp(3, [192, 0, 2, 1], [7; 6], 0), "not asked for yet");
        n.want((3, [192, 0, 2, 1]), 0);
        assert_eq!(n.due(0), vec![(3, [192, 0, 2, 1])]);
        assert!(n.on_arp(3, [192, 0, 2, 1], [7; 6], 10));
        assert!(n.dirty);
        assert_eq!(n.resolved_map().get(&(3, [192, 0, 2, 1])), Some(&[7; 6]));
        n.set_users(vec![]);
        assert_eq!(n.resolved_map().len(), 1, "a route sync keeps wanted entries");
        n.due(WANTED_MS + 1);
        assert!(n.resolved_map().is_empty(), "forgotten when unused");
        for i in 0..2 * MAX_WANTED as u32 {
            n.want((3, i.to_be_bytes()), WANTED_MS + 2);
        }
        assert_eq!(n.due(WANTED_MS + 2).len(), MAX_WANTED, "bounded");
    }

    #[test]
    fn solicited_only_refresh_and_age() {
        let mut n = Neighbours::default();
        let d = dest(11, 1);
        n.set_users(vec![((2, [10, 0, 0, 11]), d.clone())]);
        // Unsolicited claim for an address we never asked about: ignored.
        assert!(!n.on_arp(2, [10, 0, 0, 99], [9; 6], 0));
        assert_eq!(n.due(0), vec![(2, [10, 0, 0, 11])]);
        assert!(n.due(500).is_empty(), "retry interval");
        assert_eq!(n.due(1000).len(), 1);
        assert!(
            !n.on_arp(2, [10, 0, 0, 11], [1; 6], 2100),
            "answer after the retry interval"
        );
        assert_eq!(n.due(2100).len(), 1);
        assert!(n.on_arp(2, [10, 0, 0, 11], [1; 6], 2200));
        assert_eq!(d.mac(), Some([1; 6]));
        // Unsolicited: another MAC claims the server (reply or gratuitous): ignored;
        // the known MAC confirming itself is a refresh.
        assert!(!n.on_arp(2, [10, 0, 0, 11], [6; 6], 2300));
        assert_eq!(d.mac(), Some([1; 6]), "no poisoning");
        assert!(n.on_arp(2, [10, 0, 0, 11], [1; 6], 2300));
        assert!(n.due(2300 + REFRESH_MS - 1).is_empty());
        assert_eq!(n.due(2300 + REFRESH_MS).len(), 1, "refresh");
        // The server moved: the answer to the refresh request carries the new MAC.
        assert!(n.on_arp(2, [10, 0, 0, 11], [2; 6], 2300 + REFRESH_MS + 5));
        assert_eq!(d.mac(), Some([2; 6]));
        assert!(
            !n.on_arp(2, [10, 0, 0, 11], [1; 6], 2300 + REFRESH_MS + 6),
            "one answer per request"
        );
        n.due(2300 + REFRESH_MS + 5 + STALE_MS);
        assert_eq!(d.mac(), None, "aged out");
        assert!(!n.all_resolved());
    }
}
