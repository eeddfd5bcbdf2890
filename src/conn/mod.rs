//! The connection table (ip_vs_conn.c): one per worker, so the per-packet path for an
//! established connection takes no lock and allocates nothing.
//!
//! Entries are keyed by the IN tuple (protocol, client, virtual address); NAT replies
//! use a second index on the OUT tuple (added with NAT). Expiry is an idle timeout
//! re-armed by every packet; [`ConnTable::expire`] reaps entries and releases their
//! destination counters.
#![forbid(unsafe_code)]

pub mod defense;
pub mod settings;
pub mod tcp;
pub mod template;

use std::sync::Arc;

use ahash::AHashMap;

use crate::service::Dest;
use tcp::{Direction, TcpState, Timeouts};
use template::TemplateRef;

/// The IN lookup key: what the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub proto: u8,
    pub caddr: [u8; 4],
    pub cport: u16,
    pub vaddr: [u8; 4],
    pub vport: u16,
}

/// The OUT lookup key of a NAT connection: what the real server's reply carries
/// (source = real server, destination = client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutKey {
    pub proto: u8,
    pub daddr: [u8; 4],
    pub dport: u16,
    pub caddr: [u8; 4],
    pub cport: u16,
}

impl ConnKey {
    /// The OUT key of a NAT connection with this IN key to `daddr:dport`.
    pub fn out_key(&self, daddr: [u8; 4], dport: u16) -> OutKey {
        OutKey {
            proto: self.proto,
            daddr,
            dport,
            caddr: self.caddr,
            cport: self.cport,
        }
    }
}

/// Connection flags.
pub mod conn_flags {
    /// DR/TUN: the director never sees the server's replies (IN-ONLY TCP table).
    pub const NO_OUTPUT: u8 = 0x1;
    /// Currently counted in the destination's activeconns.
    pub const ACTIVE: u8 = 0x2;
    /// One-packet scheduling (UDP, service `-o`): used for one datagram, never
    /// matched by a later packet, expires at once (spec §5.4).
    pub const ONE_PACKET: u8 = 0x4;
}

/// One connection entry.
#[derive(Debug)]
pub struct Conn {
    pub dest: Arc<Dest>,
    /// Real server address and port.
    pub daddr: [u8; 4],
    pub dport: u16,
    pub state: TcpState,
    pub flags: u8,
    /// Idle deadline, virtual milliseconds.
    pub expires_ms: u64,
    /// Packets seen from the client (IPVS's `in_pkts`).
    pub in_pkts: u32,
    /// The persistence template controlling this connection, if any.
    pub tpl: Option<TemplateRef>,
    /// NAT: the next hop toward the client (from the routing table at creation).
    pub rev_ifindex: u32,
    pub rev_hop: [u8; 4],
    /// NAT: that hop's MAC, valid while `rev_gen` equals the neighbour generation.
    pub rev_mac: [u8; 6],
    pub rev_gen: u32,
}

impl Conn {
    /// A fresh entry bound to `dest` (counted inactive, as IPVS does), state NONE with
    /// IPVS's 3 s placeholder timeout until the first packet is accounted.
    pub fn new(dest: Arc<Dest>, daddr: [u8; 4], dport: u16, no_output: bool, now_ms: u64) -> Conn {
        dest.bind_conn();
        Conn {
            dest,
            daddr,
            dport,
            state: TcpState::None,
            flags: if no_output { conn_flags::NO_OUTPUT } else { 0 },
            expires_ms: now_ms + 3000,
            in_pkts: 0,
            tpl: None,
            rev_ifindex: 0,
            rev_hop: [0; 4],
            rev_mac: [0; 6],
            rev_gen: 0,
        }
    }

    /// Account one TCP segment: run the state machine, move the destination's
    /// active/inactive counters, and re-arm the idle timer.
    pub fn tcp_packet(&mut self, flags: u8, out: bool, secure: bool, t: &Timeouts, now_ms: u64) {
        let dir = if out {
            self.flags &= !conn_flags::NO_OUTPUT;
            Direction::Out
        } else if self.flags & conn_flags::NO_OUTPUT != 0 {
            Direction::InOnly
        } else {
            Direction::In
        };
        if !out {
            self.in_pkts = self.in_pkts.saturating_add(1);
        }
        let next = tcp::transition(self.state, dir, flags, secure);
        if next != self.state {
            let was = self.flags & conn_flags::ACTIVE != 0;
            let now_active = next.is_active();
            if was != now_active {
                self.dest.set_conn_active(now_active);
                self.flags ^= conn_flags::ACTIVE;
            }
            if next == TcpState::Established
                && let Some(t) = &self.tpl
            {
                t.set_assured();
            }
            self.state = next;
        }
        self.expires_ms = now_ms + t.tcp(self.state) as u64 * 1000;
    }

    /// Account one UDP datagram (either direction).
    pub fn udp_packet(&mut self, out: bool, t: &Timeouts, now_ms: u64) {
        if !out {
            self.in_pkts = self.in_pkts.saturating_add(1);
        }
        self.expires_ms = if self.flags & conn_flags::ONE_PACKET != 0 {
            now_ms
        } else {
            now_ms + t.udp() as u64 * 1000
        };
    }

    /// Seconds left before expiry (for `ipvsadm -L -c`).
    pub fn expires_in(&self, now_ms: u64) -> u64 {
        self.expires_ms.saturating_sub(now_ms) / 1000
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.dest.unbind_conn(self.flags & conn_flags::ACTIVE != 0);
    }
}

/// The table is at its configured cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// A worker's connection table with a hard cap on entries.
#[derive(Debug)]
pub struct ConnTable {
    map: AHashMap<ConnKey, Conn>,
    /// NAT entries by their OUT tuple, pointing at their IN key.
    out: AHashMap<OutKey, ConnKey>,
    cap: usize,
    /// The last one-packet (UDP `-o`) entry: reachable by `get_mut` for the datagram
    /// that created it, never by `get`, freed by the next one or by `expire`.
    one_packet: Option<(ConnKey, Conn)>,
}

impl ConnTable {
    /// `cap` entries at most; memory is reserved up front (up to 64 Ki entries, in
    /// both indexes) so the common case does not reallocate on the packet path.
    pub fn with_cap(cap: usize) -> ConnTable {
        ConnTable {
            map: AHashMap::with_capacity(cap.min(1 << 16)),
            out: AHashMap::with_capacity(cap.min(1 << 16)),
            cap,
            one_packet: None,
        }
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn cap(&self) -> usize {
        self.cap
    }
    #[inline]
    pub fn get_mut(&mut self, k: &ConnKey) -> Option<&mut Conn> {
        if let Some((ok, c)) = &mut self.one_packet
            && ok == k
        {
            return Some(c);
        }
        self.map.get_mut(k)
    }
    pub fn get(&self, k: &ConnKey) -> Option<&Conn> {
        self.map.get(k)
    }
    /// Insert a new entry and return it; fails when the table is full. A NAT entry
    /// (one without NO_OUTPUT) is also indexed by its OUT tuple.
    pub fn insert(&mut self, k: ConnKey, c: Conn) -> Result<&mut Conn, TableFull> {
        if c.flags & conn_flags::ONE_PACKET != 0 {
            return Ok(&mut self.one_packet.insert((k, c)).1);
        }
        if self.one_packet.as_ref().is_some_and(|(ok, _)| *ok == k) {
            self.one_packet = None;
        }
        // Below the cap, one probe of the (large, mostly cold) table finds an old entry
        // and places the new one. At the cap, `entry` is not even called: it reserves
        // room first, which could grow the table past what the cap bounds.
        if self.map.len() >= self.cap && !self.map.contains_key(&k) {
            return Err(TableFull);
        }
        let nat = c.flags & conn_flags::NO_OUTPUT == 0;
        let out_key = k.out_key(c.daddr, c.dport);
        Ok(match self.map.entry(k) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let old = o.get();
                self.out.remove(&k.out_key(old.daddr, old.dport));
                if nat {
                    self.out.insert(out_key, k);
                }
                o.insert(c);
                o.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                if nat {
                    self.out.insert(out_key, k);
                }
                v.insert(c)
            }
        })
    }
    pub fn remove(&mut self, k: &ConnKey) -> Option<Conn> {
        if self.one_packet.as_ref().is_some_and(|(ok, _)| ok == k) {
            return self.one_packet.take().map(|(_, c)| c);
        }
        let c = self.map.remove(k)?;
        self.out.remove(&k.out_key(c.daddr, c.dport));
        Some(c)
    }
    /// The NAT entry a real server's reply belongs to, with its IN key.
    #[inline]
    pub fn get_out_mut(&mut self, k: &OutKey) -> Option<(ConnKey, &mut Conn)> {
        let ik = *self.out.get(k)?;
        self.map.get_mut(&ik).map(|c| (ik, c))
    }
    /// Drop every entry whose idle deadline has passed; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let one = usize::from(self.one_packet.take().is_some());
        let before = self.map.len();
        let out = &mut self.out;
        self.map.retain(|k, c| {
            let keep = c.expires_ms > now_ms;
            if !keep {
                out.remove(&k.out_key(c.daddr, c.dport));
            }
            keep
        });
        before - self.map.len() + one
    }
    /// Keep only the entries for which `keep` is true (the drop_entry defense);
    /// returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&ConnKey, &Conn) -> bool) -> usize {
        let before = self.map.len();
        let out = &mut self.out;
        self.map.retain(|k, c| {
            let k2 = keep(k, c);
            if !k2 {
                out.remove(&k.out_key(c.daddr, c.dport));
            }
            k2
        });
        before - self.map.len()
    }
    /// Number of NAT OUT-index entries (equals the NAT connections).
    pub fn out_len(&self) -> usize {
        self.out.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&ConnKey, &Conn)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::dest;
    use crate::wire::l4::tcp_flags::*;

    fn key(cport: u16) -> ConnKey {
        ConnKey {
            proto: 6,
            caddr: [192, 0, 2, 1],
            cport,
            vaddr: [10, 0, 0, 100],
            vport: 80,
        }
    }

    #[test]
    fn counters_follow_states_and_expiry_releases_them() {
        let d = dest(1, 1);
        let t = Timeouts::default();
        let mut tab = ConnTable::with_cap(10);
        let c = tab
            .insert(key(1), Conn::new(d.clone(), [10, 0, 0, 1], 80, true, 0))
            .unwrap();
        assert_eq!((d.active(), d.inactive()), (0, 1), "right after creation: 0/1");
        c.tcp_packet(SYN, false, false, &t, 0);
        assert_eq!((d.active(), d.inactive()), (1, 0));
        assert_eq!(c.expires_ms, 60_000);
        c.tcp_packet(ACK, false, false, &t, 1000);
        assert_eq!(c.state, TcpState::Established);
        assert_eq!(c.expires_ms, 901_000);
        c.tcp_packet(FIN | ACK, false, false, &t, 2000);
        assert_eq!(c.state, TcpState::FinWait);
        assert_eq!((d.active(), d.inactive()), (0, 1));
        assert_eq!(tab.expire(2000 + 119_000), 0);
        assert_eq!(tab.expire(2000 + 120_000), 1);
        assert_eq!((d.active(), d.inactive()), (0, 0));
    }

    #[test]
    fn cap_is_enforced() {
        let d = dest(1, 1);
        let mut tab = ConnTable::with_cap(2);
        for p in 0..2 {
            tab.insert(key(p), Conn::new(d.clone(), [10, 0, 0, 1], 80, true, 0))
                .unwrap();
        }
        assert_eq!(
            tab.insert(key(9), Conn::new(d.clone(), [10, 0, 0, 1], 80, true, 0))
                .unwrap_err(),
            TableFull
        );
        assert_eq!(tab.len(), 2);
        assert_eq!(d.inactive(), 2, "the rejected entry released its binding");
    }

    #[test]
    fn nat_entries_are_found_by_their_reply_tuple() {
        let d = dest(1, 1);
        let mut tab = ConnTable::with_cap(10);
        tab.insert(key(5), Conn::new(d.clone(), [10, 0, 0, 1], 8080, false, 0))
            .unwrap();
        tab.insert(key(6), Conn::new(d.clone(), [10, 0, 0, 1], 80, true, 0))
            .unwrap();
        assert_eq!(tab.out_len(), 1, "only the NAT entry is OUT-indexed");
        let ok = key(5).out_key([10, 0, 0, 1], 8080);
        assert_eq!(tab.get_out_mut(&ok).map(|(k, _)| k), Some(key(5)));
        assert!(tab.get_out_mut(&key(6).out_key([10, 0, 0, 1], 80)).is_none());
        tab.remove(&key(5));
        assert!(tab.get_out_mut(&ok).is_none());
        tab.insert(key(7), Conn::new(d, [10, 0, 0, 1], 8080, false, 0)).unwrap();
        assert_eq!(tab.expire(10_000), 2);
        assert_eq!(tab.out_len(), 0);
    }

    #[test]
    fn udp_rearms_300s() {
        let d = dest(1, 1);
        let t = Timeouts::default();
        let mut c = Conn::new(d, [10, 0, 0, 1], 53, true, 0);
        c.udp_packet(false, &t, 5000);
        assert_eq!(c.expires_ms, 305_000);
        assert_eq!(c.expires_in(5000), 300);
    }
}
