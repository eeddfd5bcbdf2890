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

use std::net::Ipv4Addr;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::dest::Dest;
use tcp::{Direction, TcpState, Timeouts};
use template::TemplateRef;

/// The IN lookup key: what the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub proto: u8,
    pub caddr: Ipv4Addr,
    pub cport: u16,
    pub vaddr: Ipv4Addr,
    pub vport: u16,
}

/// The OUT lookup key of a NAT connection: what the real server's reply carries
/// (source = real server, destination = client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutKey {
    pub proto: u8,
    pub daddr: Ipv4Addr,
    pub dport: u16,
    pub caddr: Ipv4Addr,
    pub cport: u16,
}

impl ConnKey {
    /// The OUT key of a NAT connection with this IN key to `daddr:dport`.
    pub fn out_key(&self, daddr: Ipv4Addr, dport: u16) -> OutKey {
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
    /// matched by a later packet, expires at once (ip_vs_conn.c: IP_VS_CONN_F_ONE_PACKET).
    pub const ONE_PACKET: u8 = 0x4;
    /// Indexed by its OUT tuple (a NAT entry; set by [`super::ConnTable::insert`]).
    pub const OUT_INDEXED: u8 = 0x8;
    /// The real server has sent a packet on this connection (NAT; passive checks).
    pub const REPLIED: u8 = 0x10;
    /// Passive checks: an expiry sweep has already seen this NAT handshake unanswered
    /// (the next sweep counts it as a SYN timeout).
    pub const SYN_AGED: u8 = 0x20;
    /// Passive checks: this connection's failure has been counted (once per handshake).
    pub const PASSIVE_REPORTED: u8 = 0x40;
    /// The passive-check flags, cleared when a client's SYN starts a new handshake.
    pub const PASSIVE: u8 = REPLIED | SYN_AGED | PASSIVE_REPORTED;
    /// Learnt from a sync message (`IP_VS_CONN_F_SYNC`, `ip_vs_sync.c: ip_vs_proc_conn`).
    pub const SYNC: u8 = 0x80;
}

/// The longest idle timeout an entry can hold: 2^31 - 1 ms (24.8 days). Deadlines are
/// kept as the low 32 bits of the millisecond clock and compared with wrapping
/// arithmetic, as the kernel compares jiffies (`time_after`), whose `int` timeouts
/// give the same bound at HZ=1000.
pub const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// One connection entry (72 bytes with its key in the table; its own padding is full).
#[derive(Debug)]
pub struct Conn {
    pub dest: Arc<Dest>,
    /// The persistence template controlling this connection, if any.
    pub tpl: Option<TemplateRef>,
    /// Real server address and port.
    pub daddr: Ipv4Addr,
    pub dport: u16,
    pub state: TcpState,
    pub flags: u8,
    /// Idle deadline: low 32 bits of the worker's millisecond clock (see
    /// [`MAX_TIMEOUT_MS`]).
    expires: u32,
    /// Last packet, same clock: what eviction ranks by (least recently used first).
    seen: u32,
    /// Packets seen from the client (IPVS's `in_pkts`), wrapping as the kernel's
    /// `atomic_t` does (at 65 536 here: 16 bits, so that [`Conn::sync_end`] fits the
    /// entry's 72 bytes).
    pub in_pkts: u16,
    /// NAT: the next hop toward the client (from the routing table at creation).
    pub rev_ifindex: u32,
    pub rev_hop: Ipv4Addr,
    /// NAT: that hop's MAC, valid while `rev_gen` equals the neighbour generation.
    pub rev_mac: [u8; 6],
    pub rev_gen: u32,
    /// The master sync hook's memory (`ip_vs_sync.c: ip_vs_sync_conn_needed`), the
    /// kernel's `sync_endtime` and `old_state` of `struct ip_vs_conn` in one word:
    /// bits 6..32 the idle deadline the connection had when it was last synced (the
    /// millisecond clock's low 32 bits, rounded down to 64 ms; the kernel rounds
    /// jiffies down to 4), bits 2..6 the state it was last synced in, bits 0..2 the
    /// retries since (`sync_retries`).
    pub sync_end: u32,
}

/// [`Conn::sync_end`]'s low bits: state and retries.
pub const SYNC_END_LOW: u32 = 0x3f;

impl Conn {
    /// A fresh entry bound to `dest` (counted inactive, as IPVS does), state NONE with
    /// IPVS's 3 s placeholder timeout until the first packet is accounted.
    pub fn new(dest: Arc<Dest>, daddr: Ipv4Addr, dport: u16, no_output: bool, now_ms: u64) -> Conn {
        dest.bind_conn();
        let mut c = Conn {
            dest,
            tpl: None,
            daddr,
            dport,
            state: TcpState::None,
            flags: if no_output { conn_flags::NO_OUTPUT } else { 0 },
            expires: 0,
            seen: 0,
            in_pkts: 0,
            rev_ifindex: 0,
            rev_hop: Ipv4Addr::UNSPECIFIED,
            rev_mac: [0; 6],
            rev_gen: 0,
            // ip_vs_conn_new: `cp->sync_endtime = jiffies & ~3UL`; old_state NONE.
            sync_end: now_ms as u32 & !SYNC_END_LOW,
        };
        c.touch(now_ms, 3000);
        c
    }

    /// A handed-over entry (`director::carry`): idle deadline `remaining_ms` from
    /// `now_ms` on this process's clock, and the last packet taken as now.
    pub fn rearm(&mut self, now_ms: u64, remaining_ms: u64) {
        self.touch(now_ms, remaining_ms);
    }

    /// A packet at `now_ms`: re-arm the idle timer to `timeout_ms` from now.
    #[inline]
    fn touch(&mut self, now_ms: u64, timeout_ms: u64) {
        self.seen = now_ms as u32;
        self.expires = (now_ms + timeout_ms.min(MAX_TIMEOUT_MS)) as u32;
    }

    /// Account one TCP segment: run the state machine, move the destination's
    /// active/inactive counters, and re-arm the idle timer.
    pub fn tcp_packet(&mut self, flags: u8, out: bool, secure: bool, t: &Timeouts, now_ms: u64) {
        let dir = if out {
            self.flags &= !conn_flags::NO_OUTPUT;
            self.flags |= conn_flags::REPLIED;
            Direction::Out
        } else if self.flags & conn_flags::NO_OUTPUT != 0 {
            Direction::InOnly
        } else {
            Direction::In
        };
        if !out {
            self.in_pkts = self.in_pkts.wrapping_add(1);
        }
        let next = tcp::transition(self.state, dir, flags, secure);
        if !out && next == TcpState::SynRecv && self.state != TcpState::SynRecv {
            // A client's SYN starts a (new) handshake: what passive checks knew of the
            // previous one (an entry reused from TIME_WAIT or CLOSE) no longer holds.
            self.flags &= !conn_flags::PASSIVE;
        }
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
        self.touch(now_ms, t.tcp(self.state) as u64 * 1000);
    }

    /// Account one UDP datagram (either direction).
    pub fn udp_packet(&mut self, out: bool, t: &Timeouts, now_ms: u64) {
        if !out {
            self.in_pkts = self.in_pkts.wrapping_add(1);
        }
        let timeout = if self.flags & conn_flags::ONE_PACKET != 0 {
            0
        } else {
            t.udp() as u64 * 1000
        };
        self.touch(now_ms, timeout);
    }

    /// What a sync message says about this connection (`ip_vs_sync.c:
    /// ip_vs_proc_conn`): its state, whether it counts as active in its destination,
    /// and its timeout, re-armed from `now_ms`.
    pub fn sync_update(&mut self, state: TcpState, active: bool, timeout_ms: u64, now_ms: u64) {
        if (self.flags & conn_flags::ACTIVE != 0) != active {
            self.dest.set_conn_active(active);
            self.flags ^= conn_flags::ACTIVE;
        }
        self.state = state;
        self.set_sync_old(state);
        self.flags |= conn_flags::SYNC;
        self.touch(now_ms, timeout_ms);
    }

    /// The state this connection was last synced in (`old_state`).
    #[inline]
    pub fn sync_old(&self) -> TcpState {
        TcpState::from_u8(((self.sync_end >> 2) & 0xf) as u8)
    }

    /// Set [`Conn::sync_old`], keeping the rest of [`Conn::sync_end`].
    #[inline]
    pub fn set_sync_old(&mut self, s: TcpState) {
        self.sync_end = (self.sync_end & !0x3c) | ((s as u32 & 0xf) << 2);
    }

    /// Milliseconds left before expiry (0 once expired).
    #[inline]
    pub fn expires_in_ms(&self, now_ms: u64) -> u64 {
        (self.expires.wrapping_sub(now_ms as u32) as i32).max(0) as u64
    }

    /// Has the idle deadline passed?
    #[inline]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires.wrapping_sub(now_ms as u32) as i32 <= 0
    }

    /// Seconds left before expiry (for `ipvsadm -L -c`).
    pub fn expires_in(&self, now_ms: u64) -> u64 {
        self.expires_in_ms(now_ms) / 1000
    }

    /// Milliseconds since the last packet.
    #[inline]
    pub fn idle_ms(&self, now_ms: u64) -> u64 {
        u64::from((now_ms as u32).wrapping_sub(self.seen))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.dest.unbind_conn(self.flags & conn_flags::ACTIVE != 0);
    }
}

/// The table is at its configured cap (and, with [`WhenFull::Evict`], every entry it
/// looked at was a live ESTABLISHED TCP connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// What a full table does with a new connection (`uvs run --when-full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Evict the least recently used entry among a sample (Redis-style approximate
    /// LRU along a clock hand), never an ESTABLISHED TCP connection that saw a packet
    /// in the last second (conntrack's early_drop of unassured entries, Katran's LRU).
    #[default]
    Evict,
    /// Refuse the new connection (`conn_table_full`).
    Refuse,
}

/// Heap bytes per entry that sizing by memory counts on (`cargo bench --bench conn`
/// measures at most this at 1 k, 100 k and 1 M entries, NAT entries included).
pub const ENTRY_BYTES: usize = 96;

/// Entries per slab chunk: the slab grows one chunk at a time, so it never holds more
/// than one chunk of unused slots beyond its high-water mark (no doubling).
const CHUNK_BITS: u32 = 9;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Entries eviction compares (the least recently used of them goes)...
const EVICT_SAMPLE: usize = 16;
/// ...looking at most at this many slots for them.
const EVICT_SCAN: usize = 512;
/// An ESTABLISHED TCP connection with a packet this recent is never evicted.
const EVICT_PROTECT_MS: u64 = 1000;
/// The end of the free list.
const NIL: u32 = u32::MAX;

/// A slab slot: an entry with its key, or a link in the free list.
#[derive(Debug)]
enum Slot {
    Used(ConnKey, Conn),
    Free(u32),
}

// The per-entry budget (issue 16): 72-byte slots (no byte of `Conn` left free since
// the sync state, `Conn::sync_end`), plus the two u32 indexes: <= 96 B per entry at the
// table's normal fill.
const _: () = assert!(std::mem::size_of::<Slot>() <= 72);

fn slot(chunks: &[Vec<Slot>], i: u32) -> &Slot {
    &chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
}

fn slot_mut(chunks: &mut [Vec<Slot>], i: u32) -> &mut Slot {
    &mut chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
}

/// The entry in slot `i` (which an index points at, so it is used).
fn used(chunks: &[Vec<Slot>], i: u32) -> (&ConnKey, &Conn) {
    match slot(chunks, i) {
        Slot::Used(k, c) => (k, c),
        Slot::Free(_) => unreachable!("an index points at a free slot"),
    }
}

fn used_mut(chunks: &mut [Vec<Slot>], i: u32) -> (&ConnKey, &mut Conn) {
    match slot_mut(chunks, i) {
        Slot::Used(k, c) => (k, c),
        Slot::Free(_) => unreachable!("an index points at a free slot"),
    }
}

fn out_key_of(chunks: &[Vec<Slot>], i: u32) -> OutKey {
    let (k, c) = used(chunks, i);
    k.out_key(c.daddr, c.dport)
}

/// A worker's connection table with a cap on entries.
///
/// Entries live in a slab (fixed-size chunks, slots reused through a free list); two
/// hash indexes hold only a 4-byte slot number each: the IN tuple for every entry and
/// the OUT tuple for NAT entries (ip_vs_conn.c keeps one hash table with both
/// directions linked in). Per entry that is 72 + 2 x 5 bytes times the indexes'
/// power-of-two rounding: 84 B (DR) and 94 B (NAT) at 1 000 entries (`cargo bench
/// --bench conn`), against 149 B for a map of whole entries.
#[derive(Debug)]
pub struct ConnTable {
    chunks: Vec<Vec<Slot>>,
    /// Slots handed out (the slab's high-water mark).
    slots: u32,
    /// Head of the free list.
    free: u32,
    len: usize,
    /// IN tuple -> slot.
    idx: HashTable<u32>,
    /// NAT entries: OUT tuple -> slot.
    out: HashTable<u32>,
    hasher: ahash::RandomState,
    cap: usize,
    when_full: WhenFull,
    /// Where the next eviction starts looking.
    hand: u32,
    evicted: u64,
    /// The last one-packet (UDP `-o`) entry: reachable by `get_mut` for the datagram
    /// that created it, never by `get`, freed by the next one or by `expire`.
    one_packet: Option<(ConnKey, Conn)>,
}

impl ConnTable {
    /// `cap` entries at most. Nothing is reserved up front: the slab grows a chunk at a
    /// time and the indexes move only 4-byte slot numbers when they grow.
    pub fn with_cap(cap: usize) -> ConnTable {
        ConnTable {
            chunks: Vec::new(),
            slots: 0,
            free: NIL,
            len: 0,
            idx: HashTable::new(),
            out: HashTable::new(),
            hasher: ahash::RandomState::new(),
            cap: cap.min(NIL as usize),
            when_full: WhenFull::default(),
            hand: 0,
            evicted: 0,
            one_packet: None,
        }
    }
    /// Choose what a full table does (default: evict).
    pub fn set_when_full(&mut self, w: WhenFull) {
        self.when_full = w;
    }
    pub fn when_full(&self) -> WhenFull {
        self.when_full
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn cap(&self) -> usize {
        self.cap
    }
    /// Entries evicted to make room since the table was made.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
    /// Heap bytes the table holds: slab chunks, both indexes (slots and control bytes)
    /// and the chunk list.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity()).sum::<usize>() * std::mem::size_of::<Slot>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Slot>>()
            + self.idx.allocation_size()
            + self.out.allocation_size()
    }

    #[inline]
    fn find(&self, h: u64, k: &ConnKey) -> Option<u32> {
        let chunks = &self.chunks;
        self.idx.find(h, |&i| used(chunks, i).0 == k).copied()
    }
    #[inline]
    pub fn get_mut(&mut self, k: &ConnKey) -> Option<&mut Conn> {
        if self.one_packet.as_ref().is_some_and(|(ok, _)| ok == k) {
            return self.one_packet.as_mut().map(|(_, c)| c);
        }
        let i = self.find(self.hasher.hash_one(k), k)?;
        Some(used_mut(&mut self.chunks, i).1)
    }
    pub fn get(&self, k: &ConnKey) -> Option<&Conn> {
        let i = self.find(self.hasher.hash_one(k), k)?;
        Some(used(&self.chunks, i).1)
    }
    /// Room for one more entry: true below the cap, or (with [`WhenFull::Evict`]) once
    /// an entry was evicted. The new-connection path asks before it schedules, so a
    /// refused connection moves no scheduler and creates no template.
    pub fn make_room(&mut self, now_ms: u64) -> bool {
        self.len < self.cap || (self.when_full == WhenFull::Evict && self.evict_one(now_ms))
    }
    /// Insert a new entry and return it; fails when the table is full and (with
    /// [`WhenFull::Evict`]) nothing could be evicted. A NAT entry (one without
    /// NO_OUTPUT) is also indexed by its OUT tuple.
    pub fn insert(&mut self, k: ConnKey, mut c: Conn) -> Result<&mut Conn, TableFull> {
        if c.flags & conn_flags::ONE_PACKET != 0 {
            return Ok(&mut self.one_packet.insert((k, c)).1);
        }
        if self.one_packet.as_ref().is_some_and(|(ok, _)| *ok == k) {
            self.one_packet = None;
        }
        let h = self.hasher.hash_one(k);
        let i = match self.find(h, &k) {
            Some(i) => {
                // Same tuple: the new entry takes the old one's slot.
                let old = self.unlink_out(i);
                drop(old);
                i
            }
            None => {
                if self.len >= self.cap && !self.make_room(u64::from(c.seen)) {
                    return Err(TableFull);
                }
                let i = self.alloc();
                let (chunks, hasher) = (&self.chunks, &self.hasher);
                self.idx.insert_unique(h, i, |&j| hasher.hash_one(used(chunks, j).0));
                self.len += 1;
                i
            }
        };
        c.flags &= !conn_flags::OUT_INDEXED;
        if c.flags & conn_flags::NO_OUTPUT == 0 {
            c.flags |= conn_flags::OUT_INDEXED;
            let ok = k.out_key(c.daddr, c.dport);
            let oh = self.hasher.hash_one(ok);
            *slot_mut(&mut self.chunks, i) = Slot::Used(k, c);
            let (chunks, hasher) = (&self.chunks, &self.hasher);
            // The same OUT tuple can belong to an older entry: one client port reused
            // toward another VIP scheduled to the same real server (the old one in
            // TIME_WAIT). The server's replies belong to the newest connection:
            // ip_vs_conn.c: ip_vs_conn_hash adds at the bucket's head, so
            // ip_vs_conn_out_get finds the newest first. The older entry keeps its IN
            // tuple and leaves the OUT index.
            match self.out.find_mut(oh, |&j| out_key_of(chunks, j) == ok) {
                Some(j) => {
                    let older = std::mem::replace(j, i);
                    if let Slot::Used(_, oc) = slot_mut(&mut self.chunks, older) {
                        oc.flags &= !conn_flags::OUT_INDEXED;
                    }
                }
                None => {
                    self.out
                        .insert_unique(oh, i, |&j| hasher.hash_one(out_key_of(chunks, j)));
                }
            }
        } else {
            *slot_mut(&mut self.chunks, i) = Slot::Used(k, c);
        }
        Ok(used_mut(&mut self.chunks, i).1)
    }
    /// A slot for a new entry (its content is overwritten by the caller).
    fn alloc(&mut self) -> u32 {
        if self.free != NIL {
            let i = self.free;
            self.free = match slot(&self.chunks, i) {
                Slot::Free(next) => *next,
                Slot::Used(..) => unreachable!("a used slot on the free list"),
            };
            return i;
        }
        let i = self.slots;
        if i as usize & (CHUNK - 1) == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("a chunk").push(Slot::Free(NIL));
        self.slots += 1;
        i
    }
    /// Take slot `i`'s entry out of the OUT index (if it is there) and return it; the
    /// slot is left holding it (the caller overwrites or frees it).
    fn unlink_out(&mut self, i: u32) -> Slot {
        let (k, c) = used(&self.chunks, i);
        if c.flags & conn_flags::OUT_INDEXED != 0 {
            let oh = self.hasher.hash_one(k.out_key(c.daddr, c.dport));
            if let Ok(e) = self.out.find_entry(oh, |&j| j == i) {
                e.remove();
            }
        }
        std::mem::replace(slot_mut(&mut self.chunks, i), Slot::Free(NIL))
    }
    /// Remove the entry in slot `i` from both indexes and free the slot.
    fn unlink(&mut self, i: u32) -> Conn {
        let h = self.hasher.hash_one(used(&self.chunks, i).0);
        if let Ok(e) = self.idx.find_entry(h, |&j| j == i) {
            e.remove();
        }
        let Slot::Used(_, c) = self.unlink_out(i) else {
            unreachable!("unlinking a free slot")
        };
        *slot_mut(&mut self.chunks, i) = Slot::Free(self.free);
        self.free = i;
        self.len -= 1;
        c
    }
    /// Evict one entry, looking along the clock hand: the least recently used of the
    /// first [`EVICT_SAMPLE`] entries that are not ESTABLISHED TCP (UDP flows, half-open
    /// and closing TCP: conntrack's early_drop likewise takes unassured entries only);
    /// if none is found within [`EVICT_SCAN`] slots, the least recently used ESTABLISHED
    /// TCP connection idle for a second or more (one in retransmission backoff is not
    /// taken while a half-open entry is there). False if neither was found.
    fn evict_one(&mut self, now_ms: u64) -> bool {
        if self.slots == 0 {
            return false;
        }
        let mut other: Option<(u64, u32)> = None;
        let mut established: Option<(u64, u32)> = None;
        let mut sampled = 0;
        for _ in 0..EVICT_SCAN.min(self.slots as usize) {
            let i = self.hand;
            self.hand = if i + 1 >= self.slots { 0 } else { i + 1 };
            let Slot::Used(k, c) = slot(&self.chunks, i) else {
                continue;
            };
            let idle = c.idle_ms(now_ms);
            let best = if k.proto == crate::wire::ipv4::proto::TCP && c.state == TcpState::Established {
                if idle < EVICT_PROTECT_MS {
                    continue;
                }
                &mut established
            } else {
                sampled += 1;
                &mut other
            };
            if best.is_none_or(|(b, _)| idle > b) {
                *best = Some((idle, i));
            }
            if sampled >= EVICT_SAMPLE {
                break;
            }
        }
        let Some((_, i)) = other.or(established) else {
            return false;
        };
        drop(self.unlink(i));
        self.evicted += 1;
        true
    }
    pub fn remove(&mut self, k: &ConnKey) -> Option<Conn> {
        if self.one_packet.as_ref().is_some_and(|(ok, _)| ok == k) {
            return self.one_packet.take().map(|(_, c)| c);
        }
        let i = self.find(self.hasher.hash_one(k), k)?;
        Some(self.unlink(i))
    }
    /// The NAT entry a real server's reply belongs to, with its IN key.
    #[inline]
    pub fn get_out_mut(&mut self, k: &OutKey) -> Option<(ConnKey, &mut Conn)> {
        let chunks = &self.chunks;
        let i = *self
            .out
            .find(self.hasher.hash_one(k), |&i| out_key_of(chunks, i) == *k)?;
        let (ik, c) = used_mut(&mut self.chunks, i);
        Some((*ik, c))
    }
    /// Drop every entry whose idle deadline has passed; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let one = usize::from(self.one_packet.take().is_some());
        one + self.retain(|_, c| !c.is_expired(now_ms))
    }
    /// [`expire`](Self::expire), and `visit` every entry that stays (the same one pass
    /// over the table: the passive checks' once-a-second look at handshakes).
    pub fn expire_visit(&mut self, now_ms: u64, mut visit: impl FnMut(&ConnKey, &mut Conn)) -> usize {
        let mut removed = usize::from(self.one_packet.take().is_some());
        for i in 0..self.slots {
            let Slot::Used(_, c) = slot(&self.chunks, i) else {
                continue;
            };
            if c.is_expired(now_ms) {
                drop(self.unlink(i));
                removed += 1;
            } else {
                let (k, c) = used_mut(&mut self.chunks, i);
                visit(k, c);
            }
        }
        removed
    }
    /// Keep only the entries for which `keep` is true (the drop_entry defense);
    /// returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&ConnKey, &Conn) -> bool) -> usize {
        let mut removed = 0;
        for i in 0..self.slots {
            if let Slot::Used(k, c) = slot(&self.chunks, i)
                && !keep(k, c)
            {
                drop(self.unlink(i));
                removed += 1;
            }
        }
        removed
    }
    /// Number of NAT OUT-index entries (equals the NAT connections).
    pub fn out_len(&self) -> usize {
        self.out.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&ConnKey, &Conn)> {
        self.chunks.iter().flatten().filter_map(|s| match s {
            Slot::Used(k, c) => Some((k, c)),
            Slot::Free(_) => None,
        })
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
            caddr: Ipv4Addr::new(192, 0, 2, 1),
            cport,
            vaddr: Ipv4Addr::new(10, 0, 0, 100),
            vport: 80,
        }
    }

    #[test]
    fn counters_follow_states_and_expiry_releases_them() {
        let d = dest(1, 1);
        let t = Timeouts::default();
        let mut tab = ConnTable::with_cap(10);
        let c = tab
            .insert(key(1), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, true, 0))
            .unwrap();
        assert_eq!((d.active(), d.inactive()), (0, 1), "right after creation: 0/1");
        c.tcp_packet(SYN, false, false, &t, 0);
        assert_eq!((d.active(), d.inactive()), (1, 0));
        assert_eq!(c.expires_in_ms(0), 60_000);
        c.tcp_packet(ACK, false, false, &t, 1000);
        assert_eq!(c.state, TcpState::Established);
        assert_eq!(c.expires_in_ms(0), 901_000);
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
        tab.set_when_full(WhenFull::Refuse);
        for p in 0..2 {
            tab.insert(key(p), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, true, 0))
                .unwrap();
        }
        assert_eq!(
            tab.insert(key(9), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, true, 0))
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
        tab.insert(key(5), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 8080, false, 0))
            .unwrap();
        tab.insert(key(6), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, true, 0))
            .unwrap();
        assert_eq!(tab.out_len(), 1, "only the NAT entry is OUT-indexed");
        let ok = key(5).out_key(Ipv4Addr::new(10, 0, 0, 1), 8080);
        assert_eq!(tab.get_out_mut(&ok).map(|(k, _)| k), Some(key(5)));
        assert!(
            tab.get_out_mut(&key(6).out_key(Ipv4Addr::new(10, 0, 0, 1), 80))
                .is_none()
        );
        tab.remove(&key(5));
        assert!(tab.get_out_mut(&ok).is_none());
        tab.insert(key(7), Conn::new(d, Ipv4Addr::new(10, 0, 0, 1), 8080, false, 0))
            .unwrap();
        assert_eq!(tab.expire(10_000), 2);
        assert_eq!(tab.out_len(), 0);
    }

    fn udp_key(cport: u16) -> ConnKey {
        ConnKey {
            proto: 17,
            ..key(cport)
        }
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_used_and_counts_it() {
        let d = dest(1, 1);
        let t = Timeouts::default();
        let mut tab = ConnTable::with_cap(4);
        for p in 0..4u16 {
            let c = tab
                .insert(
                    udp_key(p),
                    Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 53, true, 0),
                )
                .unwrap();
            c.udp_packet(false, &t, 1000 + u64::from(p) * 100);
        }
        // Flow 2 was heard from last: 0, 1 and 3 are older.
        tab.get_mut(&udp_key(0)).unwrap().udp_packet(false, &t, 2000);
        tab.get_mut(&udp_key(1)).unwrap().udp_packet(false, &t, 2100);
        tab.get_mut(&udp_key(3)).unwrap().udp_packet(false, &t, 2200);
        assert!(tab.make_room(2500));
        assert!(tab.get(&udp_key(2)).is_none(), "the least recently used went");
        assert_eq!((tab.len(), tab.evicted(), d.inactive()), (3, 1, 3));
        // insert at the cap evicts too (and reuses the freed slot).
        tab.insert(
            udp_key(9),
            Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 53, true, 2500),
        )
        .unwrap();
        let mut c = Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 53, true, 2600);
        c.udp_packet(false, &t, 2600);
        tab.insert(udp_key(10), c).unwrap();
        assert_eq!((tab.len(), tab.evicted(), tab.slots), (4, 2, 4));
        assert!(tab.get(&udp_key(0)).is_none(), "then the next least recent");
        tab.set_when_full(WhenFull::Refuse);
        assert!(!tab.make_room(3000));
        assert_eq!(
            tab.insert(
                udp_key(11),
                Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 53, true, 3000)
            )
            .unwrap_err(),
            TableFull
        );
        assert_eq!(tab.evicted(), 2);
    }

    #[test]
    fn live_established_tcp_is_never_evicted() {
        let d = dest(1, 1);
        let t = Timeouts::default();
        let mut tab = ConnTable::with_cap(3);
        for p in 0..3u16 {
            let c = tab
                .insert(key(p), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, false, 0))
                .unwrap();
            c.tcp_packet(SYN, false, false, &t, 0);
            c.tcp_packet(ACK, false, false, &t, 100);
        }
        // A half-open entry (no ACK yet), idle a long time.
        tab.remove(&key(2));
        let c = tab
            .insert(key(2), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, false, 0))
            .unwrap();
        c.tcp_packet(SYN, false, false, &t, 0);
        // At 1000 ms the established ones were heard from 900 ms ago: protected.
        for p in 0..2 {
            tab.get_mut(&key(p)).unwrap().tcp_packet(ACK, false, false, &t, 500);
        }
        assert!(tab.make_room(1000), "the half-open entry goes");
        assert!(tab.get(&key(2)).is_none());
        tab.insert(
            key(7),
            Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, false, 1000),
        )
        .unwrap()
        .tcp_packet(SYN, false, false, &t, 1000);
        tab.get_mut(&key(7)).unwrap().tcp_packet(ACK, false, false, &t, 1000);
        assert!(!tab.make_room(1400), "every entry is established and live");
        assert_eq!(tab.len(), 3);
        // Key 1 idle since 500 ms (in retransmission backoff, say) against a half-open
        // entry heard from just now: the half-open one goes.
        tab.get_mut(&key(0)).unwrap().tcp_packet(ACK, false, false, &t, 1600);
        tab.remove(&key(7));
        tab.insert(
            key(8),
            Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, false, 1650),
        )
        .unwrap()
        .tcp_packet(SYN, false, false, &t, 1650);
        assert!(tab.make_room(1700));
        assert!(
            tab.get(&key(8)).is_none() && tab.get(&key(1)).is_some(),
            "half-open first"
        );
        tab.insert(
            key(9),
            Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, false, 1700),
        )
        .unwrap()
        .tcp_packet(SYN, false, false, &t, 1700);
        tab.get_mut(&key(9)).unwrap().tcp_packet(ACK, false, false, &t, 1700);
        assert!(tab.make_room(1800), "only established left: key 1, idle 1.3 s, may go");
        assert!(tab.get(&key(1)).is_none() && tab.get(&key(0)).is_some() && tab.get(&key(9)).is_some());
        assert_eq!(tab.out_len(), 2, "the evicted NAT entries left the OUT index");
    }

    #[test]
    fn same_tuple_replaces_and_reindexes_its_reply_tuple() {
        let d = dest(1, 1);
        let mut tab = ConnTable::with_cap(2);
        tab.insert(key(5), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 8080, false, 0))
            .unwrap();
        tab.insert(key(5), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 2), 8081, false, 0))
            .unwrap();
        assert_eq!((tab.len(), tab.out_len(), d.inactive()), (1, 1, 1));
        assert!(
            tab.get_out_mut(&key(5).out_key(Ipv4Addr::new(10, 0, 0, 1), 8080))
                .is_none()
        );
        assert!(
            tab.get_out_mut(&key(5).out_key(Ipv4Addr::new(10, 0, 0, 2), 8081))
                .is_some()
        );
        tab.insert(key(5), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 2), 8081, true, 0))
            .unwrap();
        assert_eq!((tab.len(), tab.out_len()), (1, 0), "a DR entry is not OUT-indexed");
    }

    #[test]
    fn a_reused_reply_tuple_goes_to_the_newest_entry() {
        // One client port to two VIPs, both scheduled to the same real server: the
        // server's replies carry the same OUT tuple for both (tests/steering.rs's
        // thousands_of_vips timed out on the second connection's SYN-ACK).
        let d = dest(1, 1);
        let mut tab = ConnTable::with_cap(8);
        let mut k2 = key(5);
        k2.vaddr = Ipv4Addr::new(10, 0, 0, 101);
        tab.insert(key(5), Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 8080, false, 0))
            .unwrap();
        tab.insert(k2, Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 8080, false, 0))
            .unwrap();
        let ok = key(5).out_key(Ipv4Addr::new(10, 0, 0, 1), 8080);
        assert_eq!((tab.len(), tab.out_len()), (2, 1));
        assert_eq!(tab.get_out_mut(&ok).unwrap().0, k2, "the newest connection");
        // Removing the older entry leaves the newer one's OUT index alone...
        assert!(tab.remove(&key(5)).is_some());
        assert_eq!(tab.get_out_mut(&ok).unwrap().0, k2);
        // ...and removing the newer one empties it.
        assert!(tab.remove(&k2).is_some());
        assert!(tab.get_out_mut(&ok).is_none());
        assert_eq!((tab.len(), tab.out_len()), (0, 0));
    }

    #[test]
    fn at_most_96_bytes_per_entry() {
        let d = dest(1, 1);
        for (n, nat) in [(1000u32, false), (1000, true), (50_000, true)] {
            let mut tab = ConnTable::with_cap(usize::MAX);
            for i in 0..n {
                let k = ConnKey {
                    caddr: Ipv4Addr::from(i.to_be_bytes()),
                    ..key(i as u16)
                };
                tab.insert(k, Conn::new(d.clone(), Ipv4Addr::new(10, 0, 0, 1), 80, !nat, 0))
                    .unwrap();
            }
            let per = tab.heap_bytes() / n as usize;
            assert!(per <= 96, "{n} entries (NAT {nat}): {per} B each");
        }
    }

    #[test]
    fn deadlines_wrap_like_jiffies() {
        let d = dest(1, 1);
        let t = Timeouts::default();
        let now = u64::from(u32::MAX) - 500;
        let mut c = Conn::new(d, Ipv4Addr::new(10, 0, 0, 1), 53, true, now);
        c.udp_packet(false, &t, now);
        assert!(!c.is_expired(now + 299_999));
        assert!(c.is_expired(now + 300_000));
        assert_eq!(c.expires_in(now + 1000), 299);
        assert_eq!(c.idle_ms(now + 1000), 1000);
    }

    #[test]
    fn udp_rearms_300s() {
        let d = dest(1, 1);
        let t = Timeouts::default();
        let mut c = Conn::new(d, Ipv4Addr::new(10, 0, 0, 1), 53, true, 0);
        c.udp_packet(false, &t, 5000);
        assert_eq!(c.expires_in_ms(0), 305_000);
        assert_eq!(c.expires_in(5000), 300);
    }
}
