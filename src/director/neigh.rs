//! Neighbour resolution for real servers (the director's own ARP cache).
//!
//! The control thread owns this table. Workers report what ARP packets say
//! (`Verdict::Neigh`); only entries the director asked for are ever filled, and a
//! known MAC is replaced only once it has stopped answering: a station that answers
//! every solicitation (or floods replies) cannot take a live real server's traffic.
//! A resolved MAC is published to every destination behind that next hop as one
//! atomic store.
//!
//! Life of an entry, after Linux's neighbour states (net/core/neighbour.c:
//! NUD_REACHABLE, NUD_PROBE with `ucast_solicit` = 3 unicast probes, then
//! NUD_FAILED and broadcast solicitation):
//! * unresolved: a broadcast request every [`RETRY_MS`]; the first answer to one,
//!   within [`RETRY_MS`], is taken;
//! * resolved: confirmed by any ARP packet from the known MAC; after
//!   `refresh_ms` ([`REFRESH_MS`]) without one, a request is sent *unicast to the known
//!   MAC* every [`RETRY_MS`];
//! * after [`UCAST_PROBES`] consecutive unanswered probes the MAC is forgotten and the
//!   entry is unresolved again (frames wait, broadcast requests go out). A server that
//!   moved (old MAC silent) is thus found within refresh + 3 retries + one answer,
//!   about 33 s by default.
//!
//! An ARP packet that claims a resolved address for another MAC while the known one
//! still answers is a conflict: ignored, counted (`uvs_arp_conflict_total`) and
//! logged (at most once per [`CONFLICT_LOG_MS`] per address).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::service::Dest;
use crate::wire::MacAddr;

/// Probe a resolved neighbour after this long without an answer.
pub const REFRESH_MS: u64 = 30_000;
/// Re-send a request (broadcast, or a unicast probe) at this interval.
pub const RETRY_MS: u64 = 1_000;
/// Unanswered unicast probes after which a known MAC is given up (Linux's
/// `ucast_solicit` default).
pub const UCAST_PROBES: u8 = 3;
/// Conflicts for one address are logged at most this often.
pub const CONFLICT_LOG_MS: u64 = 10_000;

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
    /// Consecutive unicast probes of the known MAC that went unanswered.
    pub misses: u8,
    /// When a conflict for this address was last logged.
    conflict_logged_ms: Option<u64>,
}

/// How long a worker-requested neighbour is kept after its last request.
pub const WANTED_MS: u64 = 600_000;
/// Worker-requested neighbours kept at most (beyond the real servers' next hops).
pub const MAX_WANTED: usize = 4096;

/// (ifindex, next-hop address).
pub type NeighKey = (u32, Ipv4Addr);

/// A request to send: to `dst` (the known MAC: a unicast probe) or broadcast.
pub type Solicitation = (NeighKey, Option<MacAddr>);

#[derive(Debug)]
pub struct Neighbours {
    entries: HashMap<NeighKey, Entry>,
    /// Destinations behind each next hop.
    users: HashMap<NeighKey, Vec<Arc<Dest>>>,
    /// Something changed that the workers' neighbour map should reflect.
    pub dirty: bool,
    /// Probe a resolved neighbour after this long ([`REFRESH_MS`]).
    pub refresh_ms: u64,
    /// ARP packets that claimed a resolved address for another MAC.
    pub conflicts: u64,
}

impl Default for Neighbours {
    fn default() -> Neighbours {
        Neighbours {
            entries: HashMap::new(),
            users: HashMap::new(),
            dirty: false,
            refresh_ms: REFRESH_MS,
            conflicts: 0,
        }
    }
}

fn blank() -> Entry {
    Entry {
        mac: None,
        confirmed_ms: 0,
        solicited_ms: None,
        wanted_ms: None,
        awaiting: false,
        misses: 0,
        conflict_logged_ms: None,
    }
}

fn mac_str(m: &MacAddr) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
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

    /// An ARP packet said `ip` is at `mac` on `ifindex`. Returns true if it was used
    /// (see the module documentation for the policy).
    pub fn on_arp(&mut self, ifindex: u32, ip: Ipv4Addr, mac: MacAddr, now_ms: u64) -> bool {
        let Some(e) = self.entries.get_mut(&(ifindex, ip)) else {
            return false;
        };
        match e.mac {
            Some(known) if known == mac => {
                // The known MAC answers (or speaks): confirmed.
                e.awaiting = false;
                e.misses = 0;
                e.confirmed_ms = now_ms;
                return true;
            }
            Some(known) => {
                self.conflicts += 1;
                if e.conflict_logged_ms
                    .is_none_or(|t| now_ms.saturating_sub(t) >= CONFLICT_LOG_MS)
                {
                    e.conflict_logged_ms = Some(now_ms);
                    tracing::warn!(
                        "ARP conflict: {} claimed by {} while it is at {} (ignored; total conflicts {})",
                        ip,
                        mac_str(&mac),
                        mac_str(&known),
                        self.conflicts
                    );
                }
                return false;
            }
            None => {
                let asked = e.awaiting && e.solicited_ms.is_some_and(|s| now_ms.saturating_sub(s) < RETRY_MS);
                if !asked {
                    return false;
                }
            }
        }
        self.dirty = true;
        e.awaiting = false;
        e.misses = 0;
        e.mac = Some(mac);
        e.confirmed_ms = now_ms;
        for d in self.users.get(&(ifindex, ip)).into_iter().flatten() {
            d.set_mac(mac);
        }
        true
    }

    /// Requests to send now (each entry is marked as solicited): broadcast for
    /// unresolved entries, unicast probes for resolved ones due for a refresh. Gives
    /// up a MAC after [`UCAST_PROBES`] unanswered probes, and forgets
    /// worker-requested entries unused for [`WANTED_MS`].
    pub fn due(&mut self, now_ms: u64) -> Vec<Solicitation> {
        let users = &self.users;
        let before = self.entries.len();
        self.entries
            .retain(|k, e| users.contains_key(k) || e.wanted_ms.is_some_and(|w| now_ms.saturating_sub(w) < WANTED_MS));
        self.dirty |= before != self.entries.len();
        let mut out = Vec::new();
        for (k, e) in self.entries.iter_mut() {
            let retry_due = e.solicited_ms.is_none_or(|s| now_ms.saturating_sub(s) >= RETRY_MS);
            if e.mac.is_some() && e.awaiting && retry_due {
                // The last probe went unanswered.
                e.awaiting = false;
                e.misses += 1;
            }
            if let Some(known) = e.mac
                && e.misses >= UCAST_PROBES
            {
                tracing::warn!(
                    "neighbour {} ({}) did not answer {UCAST_PROBES} probes: resolving it again",
                    k.1,
                    mac_str(&known)
                );
                e.mac = None;
                e.misses = 0;
                self.dirty = true;
                for d in self.users.get(k).into_iter().flatten() {
                    d.clear_mac();
                }
            }
            let want = match e.mac {
                None => true,
                Some(_) => e.misses > 0 || now_ms.saturating_sub(e.confirmed_ms) >= self.refresh_ms,
            };
            if want && retry_due {
                e.solicited_ms = Some(now_ms);
                e.awaiting = true;
                out.push((*k, e.mac));
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
        assert!(
            !n.on_arp(3, Ipv4Addr::new(192, 0, 2, 1), [7; 6], 0),
            "not asked for yet"
        );
        n.want((3, Ipv4Addr::new(192, 0, 2, 1)), 0);
        assert_eq!(n.due(0), vec![((3, Ipv4Addr::new(192, 0, 2, 1)), None)]);
        assert!(n.on_arp(3, Ipv4Addr::new(192, 0, 2, 1), [7; 6], 10));
        assert!(n.dirty);
        assert_eq!(n.resolved_map().get(&(3, Ipv4Addr::new(192, 0, 2, 1))), Some(&[7; 6]));
        n.set_users(vec![]);
        assert_eq!(n.resolved_map().len(), 1, "a route sync keeps wanted entries");
        n.due(WANTED_MS + 1);
        assert!(n.resolved_map().is_empty(), "forgotten when unused");
        for i in 0..2 * MAX_WANTED as u32 {
            n.want((3, Ipv4Addr::from(i.to_be_bytes())), WANTED_MS + 2);
        }
        assert_eq!(n.due(WANTED_MS + 2).len(), MAX_WANTED, "bounded");
    }

    #[test]
    fn solicited_only_refresh_and_probe() {
        let mut n = Neighbours::default();
        let d = dest(11, 1);
        let k = (2, Ipv4Addr::new(10, 0, 0, 11));
        n.set_users(vec![(k, d.clone())]);
        // Unsolicited claim for an address we never asked about: ignored.
        assert!(!n.on_arp(2, Ipv4Addr::new(10, 0, 0, 99), [9; 6], 0));
        assert_eq!(n.due(0), vec![(k, None)], "broadcast while unresolved");
        assert!(n.due(500).is_empty(), "retry interval");
        assert_eq!(n.due(1000).len(), 1);
        assert!(
            !n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [1; 6], 2100),
            "answer after the retry interval"
        );
        assert_eq!(n.due(2100).len(), 1);
        assert!(n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [1; 6], 2200));
        assert_eq!(d.mac(), Some([1; 6]));
        // Another MAC claims the server (reply, gratuitous, or an answer to our own
        // request): a conflict, ignored and counted; the known MAC is a confirmation.
        assert!(!n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [6; 6], 2300));
        assert_eq!((d.mac(), n.conflicts), (Some([1; 6]), 1), "no poisoning");
        assert!(n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [1; 6], 2300));
        assert!(n.due(2300 + REFRESH_MS - 1).is_empty());
        // Refresh: a unicast probe to the known MAC, answered by it.
        let t = 2300 + REFRESH_MS;
        assert_eq!(n.due(t), vec![(k, Some([1; 6]))]);
        assert!(
            !n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [6; 6], t + 1),
            "a storm answering the probe"
        );
        assert!(n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [1; 6], t + 2));
        assert!(n.due(t + 2 * RETRY_MS).is_empty(), "confirmed");
        assert_eq!(d.mac(), Some([1; 6]));
    }

    #[test]
    fn a_moved_server_is_found_after_three_missed_probes() {
        let mut n = Neighbours::default();
        let d = dest(11, 1);
        let k = (2, Ipv4Addr::new(10, 0, 0, 11));
        n.set_users(vec![(k, d.clone())]);
        n.due(0);
        assert!(n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [1; 6], 10));
        n.dirty = false;
        // The old MAC goes silent; a new one answers every request (and floods).
        let mut t = 10 + REFRESH_MS;
        for probe in 0..UCAST_PROBES {
            assert_eq!(n.due(t), vec![(k, Some([1; 6]))], "probe {probe}");
            assert!(
                !n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [2; 6], t + 1),
                "not while probes are due"
            );
            assert_eq!(d.mac(), Some([1; 6]));
            t += RETRY_MS;
        }
        assert_eq!(n.due(t), vec![(k, None)], "given up: broadcast");
        assert_eq!(d.mac(), None);
        assert!(n.dirty);
        assert!(n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [2; 6], t + 1));
        assert_eq!(d.mac(), Some([2; 6]));
        assert!(t + 1 - 10 <= REFRESH_MS + 3 * RETRY_MS + 1, "within about 33 s");
        // One missed probe and then an answer: the count starts again.
        let t = t + 1 + REFRESH_MS;
        assert_eq!(n.due(t).len(), 1);
        assert_eq!(n.due(t + RETRY_MS), vec![(k, Some([2; 6]))]);
        assert!(n.on_arp(2, Ipv4Addr::new(10, 0, 0, 11), [2; 6], t + RETRY_MS + 1));
        assert_eq!(n.get(&k).unwrap().misses, 0);
    }
}
