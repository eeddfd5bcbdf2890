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
}

/// (ifindex, next-hop address).
pub type NeighKey = (u32, [u8; 4]);

#[derive(Debug, Default)]
pub struct Neighbours {
    entries: HashMap<NeighKey, Entry>,
    /// Destinations behind each next hop.
    users: HashMap<NeighKey, Vec<Arc<Dest>>>,
}

impl Neighbours {
    /// Replace the set of destinations and their next hops; keeps known MACs.
    pub fn set_users(&mut self, users: Vec<(NeighKey, Arc<Dest>)>) {
        self.users.clear();
        for (k, d) in users {
            if let Some(mac) = self.entries.get(&k).and_then(|e| e.mac) {
                d.set_mac(mac);
            }
            self.entries.entry(k).or_insert(Entry {
                mac: None,
                confirmed_ms: 0,
                solicited_ms: None,
            });
            self.users.entry(k).or_default().push(d);
        }
        let users = &self.users;
        self.entries.retain(|k, _| users.contains_key(k));
    }

    /// An ARP packet said `ip` is at `mac` on `ifindex`. Returns true if it was used.
    pub fn on_arp(&mut self, ifindex: u32, ip: [u8; 4], mac: MacAddr, now_ms: u64) -> bool {
        let Some(e) = self.entries.get_mut(&(ifindex, ip)) else {
            return false;
        };
        e.mac = Some(mac);
        e.confirmed_ms = now_ms;
        for d in self.users.get(&(ifindex, ip)).into_iter().flatten() {
            d.set_mac(mac);
        }
        true
    }

    /// Entries to solicit now (each is marked as solicited); ages out stale ones.
    pub fn due(&mut self, now_ms: u64) -> Vec<NeighKey> {
        let mut out = Vec::new();
        for (k, e) in self.entries.iter_mut() {
            if e.mac.is_some() && now_ms.saturating_sub(e.confirmed_ms) >= STALE_MS {
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
                out.push(*k);
            }
        }
        out
    }

    pub fn get(&self, k: &NeighKey) -> Option<&Entry> {
        self.entries.get(k)
    }

    /// Are all next hops resolved?
    pub fn all_resolved(&self) -> bool {
        self.entries.values().all(|e| e.mac.is_some())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn resolved(&self) -> usize {
        self.entries.values().filter(|e| e.mac.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::dest;

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
        assert!(n.on_arp(2, [10, 0, 0, 11], [1; 6], 1100));
        assert_eq!(d.mac(), Some([1; 6]));
        assert!(n.due(1100 + REFRESH_MS - 1).is_empty());
        assert_eq!(n.due(1100 + REFRESH_MS).len(), 1, "refresh");
        n.due(1100 + STALE_MS);
        assert_eq!(d.mac(), None, "aged out");
        assert!(!n.all_resolved());
    }
}
