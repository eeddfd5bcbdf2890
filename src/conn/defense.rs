//! IPVS's anti-flood defenses (drop_entry, drop_packet, secure_tcp: `ip_vs_ctl.c: update_defense_level`) and a
//! Katran-style cap on new connections per second per worker.
//!
//! Modes as in IPVS: 0 off; 1 automatic (on while the table is short of room); 2 is
//! what IPVS shows while an automatic defense is on and is accepted as 1; 3 always
//! on. IPVS's "memory" is the kernel's free pages against `amemthresh` (pages); uvs's
//! memory is bounded by the connection-table cap instead, so "available memory" is a
//! worker's free table slots and `amemthresh` is a percentage of the cap: an automatic
//! defense turns on in a worker whose table has fewer than `amemthresh`% of its slots
//! free, and off again when it recovers. Each worker decides for itself once a second
//! (IPVS's `defense_work`), on its own table, without locks.
//!
//! * drop_entry: once a second while on, about 1/32 of the worker's entries are
//!   sampled (IPVS samples 1/32 of its hash buckets); a sampled TCP entry in SYN_RECV
//!   or SYNACK is deleted; an ESTABLISHED TCP entry or a UDP entry idle for 60 s or more
//!   with 1..=8 incoming packets is deleted one time in N for N packets (IPVS's
//!   `todrop_entry`). Persistence templates are shared by all workers and are not
//!   swept (their own timeouts apply).
//! * drop_packet: while on, 1 in `rate` packets that would create a connection is
//!   dropped (deterministic counter, checked after the service lookup, before
//!   scheduling). Mode 3: rate = `am_droprate`; automatic: rate = thr / (thr - free).
//! * secure_tcp: while on, TCP connections use the secure state table.
//! * `max_new_per_sec`: a token bucket per worker (burst = one second's worth); a
//!   packet that would create a connection beyond it is dropped. Katran forwards such
//!   flows statelessly by its consistent hash; IPVS schedulers need the entry, so uvs
//!   drops the SYN and the client retransmits it.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed};

use super::tcp::{TcpState, Timeouts};
use super::{Conn, ConnTable};
use crate::dataplane::DropReason;

/// The settings, shared by all workers (`crate::ipvs::Ipvs::defense`, in `pipeline::Shared::ipvs`).
#[derive(Debug)]
pub struct Defense {
    drop_entry: AtomicU8,
    drop_packet: AtomicU8,
    secure_tcp: AtomicU8,
    /// Percent of a worker's table that must stay free (default 10).
    amemthresh_pct: AtomicU8,
    /// drop_packet mode 3: drop 1 of this many new-connection packets (default 10).
    am_droprate: AtomicU32,
    /// New connections per second per worker; 0 = no cap.
    max_new_per_sec: AtomicU32,
}

impl Default for Defense {
    fn default() -> Self {
        Defense {
            drop_entry: AtomicU8::new(0),
            drop_packet: AtomicU8::new(0),
            secure_tcp: AtomicU8::new(0),
            amemthresh_pct: AtomicU8::new(10),
            am_droprate: AtomicU32::new(10),
            max_new_per_sec: AtomicU32::new(0),
        }
    }
}

/// A defense mode outside 0..=3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMode;

fn mode(v: u8) -> Result<u8, BadMode> {
    if v <= 3 { Ok(v) } else { Err(BadMode) }
}

impl Defense {
    pub fn set_drop_entry(&self, m: u8) -> Result<(), BadMode> {
        self.drop_entry.store(mode(m)?, Relaxed);
        Ok(())
    }
    pub fn set_drop_packet(&self, m: u8) -> Result<(), BadMode> {
        self.drop_packet.store(mode(m)?, Relaxed);
        Ok(())
    }
    pub fn set_secure_tcp(&self, m: u8) -> Result<(), BadMode> {
        self.secure_tcp.store(mode(m)?, Relaxed);
        Ok(())
    }
    /// `pct` is clamped to 1..=99.
    pub fn set_amemthresh_pct(&self, pct: u8) {
        self.amemthresh_pct.store(pct.clamp(1, 99), Relaxed);
    }
    /// A rate of 0 drops nothing, as in IPVS (`ip_vs_ctl.c: ip_vs_todrop` with a
    /// drop_rate of 0).
    pub fn set_am_droprate(&self, rate: u32) {
        self.am_droprate.store(rate, Relaxed);
    }
    /// Percent of a worker's table that must stay free.
    pub fn amemthresh_pct(&self) -> u8 {
        self.amemthresh_pct.load(Relaxed)
    }
    pub fn am_droprate(&self) -> u32 {
        self.am_droprate.load(Relaxed)
    }
    pub fn set_max_new_per_sec(&self, n: u32) {
        self.max_new_per_sec.store(n, Relaxed);
    }
    /// `(drop_entry, drop_packet, secure_tcp)` modes.
    pub fn modes(&self) -> (u8, u8, u8) {
        (
            self.drop_entry.load(Relaxed),
            self.drop_packet.load(Relaxed),
            self.secure_tcp.load(Relaxed),
        )
    }
    pub fn max_new_per_sec(&self) -> u32 {
        self.max_new_per_sec.load(Relaxed)
    }
}

/// One worker's view: which defenses are on, and their counters.
#[derive(Debug, Clone)]
pub struct DefenseState {
    pub drop_entry_on: bool,
    pub secure_on: bool,
    /// drop_packet: 0 = off, else drop 1 of this many.
    pub drop_rate: u32,
    drop_counter: u32,
    todrop_counter: [u8; 9],
    /// Token bucket for new connections (thousandths of a token, for smooth refill).
    tokens_milli: u64,
    bucket_ms: u64,
    rng: u64,
}

impl Default for DefenseState {
    fn default() -> Self {
        DefenseState {
            drop_entry_on: false,
            secure_on: false,
            drop_rate: 0,
            drop_counter: 0,
            todrop_counter: [0; 9],
            tokens_milli: u64::MAX,
            bucket_ms: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl DefenseState {
    /// IPVS `update_defense_level`, once a second, with the table's free slots as the
    /// available memory.
    pub fn update(&mut self, d: &Defense, len: usize, cap: usize) {
        let thr = (cap as u64 * u64::from(d.amemthresh_pct.load(Relaxed)) / 100).max(1);
        let free = cap.saturating_sub(len) as u64;
        let nomem = free < thr;
        let (de, dp, st) = d.modes();
        self.drop_entry_on = match de {
            0 => false,
            3 => true,
            _ => nomem,
        };
        self.secure_on = match st {
            0 => false,
            3 => true,
            _ => nomem,
        };
        let rate = match dp {
            3 => d.am_droprate.load(Relaxed),
            1 | 2 if nomem => (thr / (thr - free).max(1)).clamp(1, u64::from(u32::MAX)) as u32,
            _ => 0,
        };
        if rate != self.drop_rate {
            self.drop_rate = rate;
            self.drop_counter = rate;
        }
    }

    /// May a packet create a connection now? IPVS's `ip_vs_todrop`, then the
    /// per-second cap.
    pub fn admit(&mut self, d: &Defense, now_ms: u64) -> Result<(), DropReason> {
        if self.drop_rate != 0 {
            self.drop_counter = self.drop_counter.saturating_sub(1);
            if self.drop_counter == 0 {
                self.drop_counter = self.drop_rate;
                return Err(DropReason::DefenseDropPacket);
            }
        }
        let per_sec = u64::from(d.max_new_per_sec());
        if per_sec == 0 {
            return Ok(());
        }
        let cap_milli = per_sec * 1000;
        let elapsed = now_ms.saturating_sub(self.bucket_ms);
        self.bucket_ms = now_ms;
        self.tokens_milli = self
            .tokens_milli
            .min(cap_milli)
            .saturating_add(elapsed * per_sec)
            .min(cap_milli);
        if self.tokens_milli < 1000 {
            return Err(DropReason::NewConnRate);
        }
        self.tokens_milli -= 1000;
        Ok(())
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// IPVS `todrop_entry`: an entry idle for 60 s or more with `in_pkts` in 1..=8 is
    /// dropped once every `in_pkts` candidates of that count.
    fn todrop_entry(&mut self, c: &Conn, timeout_s: u32, now_ms: u64) -> bool {
        let left = c.expires_in_ms(now_ms);
        let idle = (u64::from(timeout_s) * 1000).saturating_sub(left);
        if idle < 60_000 {
            return false;
        }
        let i = c.in_pkts as usize;
        if !(1..=8).contains(&i) {
            return false;
        }
        let ctr = &mut self.todrop_counter[i];
        *ctr = ctr.saturating_sub(1);
        if *ctr > 0 {
            return false;
        }
        *ctr = i as u8;
        true
    }

    /// The drop_entry sweep (IPVS `ip_vs_random_dropentry`); returns how many entries
    /// were deleted. Does nothing while the defense is off.
    pub fn random_dropentry(&mut self, conns: &mut ConnTable, t: &Timeouts, now_ms: u64) -> usize {
        if !self.drop_entry_on {
            return 0;
        }
        conns.retain(|k, c| {
            if !self.next_rand().is_multiple_of(32) {
                return true;
            }
            if k.proto == crate::wire::ipv4::proto::TCP {
                match c.state {
                    TcpState::SynRecv | TcpState::SynAck => false,
                    TcpState::Established => !self.todrop_entry(c, t.tcp(TcpState::Established), now_ms),
                    _ => true,
                }
            } else {
                !self.todrop_entry(c, t.udp(), now_ms)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tv_10_15_drop_packet_rates() {
        let d = Defense::default();
        d.set_drop_packet(3).unwrap();
        let mut s = DefenseState::default();
        s.update(&d, 0, 1000);
        let dropped = (0..100).filter(|_| s.admit(&d, 0).is_err()).count();
        assert_eq!(dropped, 10, "am_droprate 10: 1 in 10");
        // Automatic: threshold 10% of 10240 = 1024 slots; 1000 free -> 1024/24 = 42.
        d.set_drop_packet(1).unwrap();
        s.update(&d, 10240 - 1000, 10240);
        assert_eq!(s.drop_rate, 42);
        s.update(&d, 0, 10240);
        assert_eq!(s.drop_rate, 0, "off again when the table has room");
        assert_eq!(d.set_drop_packet(4), Err(BadMode));
        // am_droprate 0 drops nothing in mode 3 (IPVS: drop_rate 0 is off).
        d.set_drop_packet(3).unwrap();
        d.set_am_droprate(0);
        s.update(&d, 0, 1000);
        assert_eq!(s.drop_rate, 0);
        assert!((0..100).all(|_| s.admit(&d, 0).is_ok()));
    }

    #[test]
    fn auto_modes_follow_table_fill() {
        let d = Defense::default();
        d.set_secure_tcp(1).unwrap();
        d.set_drop_entry(2).unwrap();
        let mut s = DefenseState::default();
        s.update(&d, 50, 100);
        assert!(!s.secure_on && !s.drop_entry_on);
        s.update(&d, 95, 100);
        assert!(s.secure_on && s.drop_entry_on);
        d.set_secure_tcp(0).unwrap();
        s.update(&d, 95, 100);
        assert!(!s.secure_on);
    }

    #[test]
    fn new_connection_rate_cap() {
        let d = Defense::default();
        d.set_max_new_per_sec(100);
        let mut s = DefenseState::default();
        let ok = (0..1000).filter(|_| s.admit(&d, 5_000).is_ok()).count();
        assert_eq!(ok, 100, "a second's burst");
        assert_eq!(s.admit(&d, 5_000), Err(DropReason::NewConnRate));
        assert!(s.admit(&d, 5_010).is_ok(), "refills at 1 per 10 ms");
        assert!(s.admit(&d, 5_010).is_err());
        let ok = (0..1000).filter(|_| s.admit(&d, 100_000).is_ok()).count();
        assert_eq!(ok, 100, "burst capped at one second");
    }
}
