//! Connection entries to and from sync records ([`SyncConn`], the wire record of
//! `ip_vs_sync.c`): what a backup director creates from a sync message
//! (`ip_vs_proc_conn`), what a master sends (`ip_vs_sync_conn_v1`), and what a restart
//! hands over. Pure: the callers (`crate::director::mailbox`, the sync daemon) bring
//! the records and the clock.
//!
//! Connections live in the worker that owns their flow, so [`Worker::install_synced`]
//! runs in that worker; templates are shared by all workers
//! ([`crate::conn::template::TemplateTable`]) and are installed by
//! [`install_templates`] from any thread, before the connections they control.

use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::schedule::lookup_service;
use super::{Shared, Worker};
use crate::conn::tcp::{TcpState, Timeouts};
use crate::conn::template::{Template, TemplateKey};
use crate::conn::{Conn, ConnKey, MAX_TIMEOUT_MS, conn_flags};
use crate::service::{Dest, ForwardMethod, Netmask, ServiceAddr, ServiceTable, VirtualService, svc_flags};
use crate::sync::{SyncConn, flags};
use crate::wire::ipv4::proto;

/// A template's timeout when the message carries none (v0): `ip_vs_proc_conn`'s
/// `3*60*HZ`.
const TEMPLATE_DEFAULT_TIMEOUT_S: u64 = 180;

/// What became of a batch of records: one counter per outcome (the sync daemon
/// exports them as `uvs_sync_*` metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InstallReport {
    pub created: u64,
    pub updated: u64,
    /// Not IPv4 TCP/UDP (uvs forwards nothing else), or mixed families.
    pub unsupported: u64,
    /// A state the protocol does not have (`ip_vs_proc_sync_conn`: "Invalid state").
    pub bad_state: u64,
    /// No service or destination with these addresses in the current table.
    pub no_dest: u64,
    /// An inactive record for a connection already replaced by another destination
    /// (`ip_vs_proc_conn`'s "expiration message for the connection that was already
    /// replaced").
    pub stale: u64,
    /// The worker's table is full of live established connections.
    pub table_full: u64,
    /// The worker's mailbox was full: the records never reached it
    /// (`crate::director::mailbox`).
    pub mailbox_full: u64,
}

impl InstallReport {
    pub fn add(&mut self, o: &InstallReport) {
        self.created += o.created;
        self.updated += o.updated;
        self.unsupported += o.unsupported;
        self.bad_state += o.bad_state;
        self.no_dest += o.no_dest;
        self.stale += o.stale;
        self.table_full += o.table_full;
        self.mailbox_full += o.mailbox_full;
    }
    /// Records that created or updated nothing.
    pub fn dropped(&self) -> u64 {
        self.unsupported + self.bad_state + self.no_dest + self.stale + self.table_full + self.mailbox_full
    }
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// The connection key of a record, if uvs can forward it (IPv4 TCP or UDP).
fn conn_key(r: &SyncConn) -> Option<(ConnKey, Ipv4Addr)> {
    if r.protocol != proto::TCP && r.protocol != proto::UDP {
        return None;
    }
    let key = ConnKey {
        proto: r.protocol,
        caddr: v4(r.caddr)?,
        cport: r.cport,
        vaddr: v4(r.vaddr)?,
        vport: r.vport,
    };
    Some((key, v4(r.daddr)?))
}

/// The worker a record belongs to, by its client endpoint (what the fanout steering
/// hashes), or `None` for a template or a record uvs cannot forward.
pub fn record_client(r: &SyncConn) -> Option<(Ipv4Addr, u16)> {
    if r.is_template() {
        return None;
    }
    conn_key(r).map(|(k, _)| (k.caddr, k.cport))
}

/// `ip_vs_ctl.c: ip_vs_find_dest` (as `ip_vs_lookup_dest` tries the port, then port 0):
/// the service for the virtual address (with the FTP and port-0 fallbacks of a new
/// connection) and its destination `daddr:dport`. A template's `dport` of 0 (port-0
/// and FTP services) matches any port.
fn find_dest(
    svcs: &ServiceTable,
    proto_: u8,
    vaddr: Ipv4Addr,
    vport: u16,
    daddr: Ipv4Addr,
    dport: u16,
    any_port: bool,
) -> Option<(Arc<VirtualService>, Arc<Dest>)> {
    let svc = lookup_service(svcs, proto_, vaddr, vport)?;
    let want = IpAddr::from(daddr);
    let dest = {
        let st = svc.lock();
        st.dests
            .iter()
            .find(|d| d.addr == want && (d.port == dport || d.port == 0 || (any_port && dport == 0)))
            .cloned()?
    };
    Some((svc.clone(), dest))
}

/// The template key a new connection of `svc` from `caddr` to `vport` uses
/// (`ip_vs_sched_persist`, as `schedule_persistent` builds it), if `svc` is persistent.
fn template_key_of(svc: &VirtualService, key: &ConnKey) -> Option<TemplateKey> {
    let st = svc.lock();
    if st.config.flags & svc_flags::PERSISTENT == 0 {
        return None;
    }
    let svc_port = match svc.addr {
        ServiceAddr::Inet { port, .. } => port,
        ServiceAddr::Fwmark { .. } => return None,
    };
    let snet = match st.config.netmask {
        Netmask::V4(m) => Ipv4Addr::from_bits(key.caddr.to_bits() & m.to_bits()),
        Netmask::V6Prefix(_) => key.caddr,
    };
    let own_port = key.vport == svc_port;
    Some(TemplateKey {
        proto: key.proto,
        snet,
        vaddr: key.vaddr,
        vport: if own_port && svc_port != 21 { key.vport } else { 0 },
    })
}

/// A record's timeout in milliseconds: its own, or (v0 sends none) the protocol's
/// timeout for its state (`ip_vs_proc_conn`).
fn timeout_ms(r: &SyncConn, state: TcpState, t: &Timeouts) -> u64 {
    let secs = if r.timeout != 0 {
        u64::from(r.timeout)
    } else if r.protocol == proto::TCP {
        u64::from(t.tcp(state))
    } else {
        u64::from(t.udp())
    };
    (secs * 1000).min(MAX_TIMEOUT_MS)
}

/// Install the templates among `recs` in the shared template table (create, or
/// re-arm the live one), as `ip_vs_proc_conn` does: the record's timeout, its
/// ASSURED state, and a packet count of `sync_threshold`. Call before handing the
/// connections to their workers, so a connection finds its template.
pub fn install_templates(svcs: &ServiceTable, now_ms: u64, recs: &[SyncConn], sync_threshold: u32) -> InstallReport {
    let mut rep = InstallReport::default();
    let table = &svcs.conn_shared().templates;
    for r in recs.iter().filter(|r| r.is_template()) {
        let Some((key, daddr)) = conn_key(r) else {
            rep.unsupported += 1;
            continue;
        };
        let Some((_, dest)) = find_dest(svcs, key.proto, key.vaddr, key.vport, daddr, r.dport, true) else {
            rep.no_dest += 1;
            continue;
        };
        let tkey = TemplateKey {
            proto: key.proto,
            snet: key.caddr,
            vaddr: key.vaddr,
            vport: key.vport,
        };
        let timeout = if r.timeout != 0 {
            u64::from(r.timeout)
        } else {
            TEMPLATE_DEFAULT_TIMEOUT_S
        };
        let existed = table.get(&tkey).is_some();
        let t = table.install(tkey, dest, r.dport, (timeout * 1000).min(MAX_TIMEOUT_MS), now_ms);
        t.set_in_pkts(sync_threshold);
        if r.state & TPL_ASSURED != 0 {
            t.set_assured();
        }
        if existed {
            rep.updated += 1;
        } else {
            rep.created += 1;
        }
    }
    rep
}

/// A template's state field: `IP_VS_CTPL_S_ASSURED` (a controlled TCP connection
/// reached ESTABLISHED), the only template state the kernel has.
const TPL_ASSURED: u16 = 1;

/// A template as a sync record (`ip_vs_sync_conn_v1` on a template): the flags it
/// took from its destination (forwarding method, NOOUTPUT for DR/TUN, INACTIVE), its
/// ASSURED state, and its timeout (the kernel sends `cp->timeout`, the persistence
/// timeout or the 60 s a postponed template keeps, not the time left: a backup re-arms
/// the template from the message and re-arms it again with that timeout for each new
/// connection after a takeover).
pub fn template_record(t: &Template) -> SyncConn {
    let (f, state) = template_flags_state(t);
    SyncConn {
        protocol: t.key.proto,
        caddr: t.key.snet.into(),
        cport: 0,
        vaddr: t.key.vaddr.into(),
        vport: t.key.vport,
        daddr: t.dest.addr,
        dport: t.dport,
        flags: f,
        state,
        fwmark: 0,
        timeout: secs_left(t.timeout_ms()),
        seq: None,
        pe: None,
    }
}

/// Seconds for a record's timeout field: rounded up, at least 1 (0 would mean "the
/// protocol's default" to the receiver).
fn secs_left(ms: u64) -> u32 {
    (ms.div_ceil(1000).max(1)).min(u64::from(u32::MAX)) as u32
}

/// Every live template of the director as records.
pub fn export_templates(svcs: &ServiceTable) -> Vec<SyncConn> {
    (svcs.conn_shared().templates.snapshot().iter())
        .filter(|t| !t.is_invalid())
        .map(|t| template_record(t))
        .collect()
}

/// A connection as a sync record (`ip_vs_sync_conn_v1`): the flags as the kernel's
/// entry would carry them (forwarding method, NOOUTPUT for DR/TUN, INACTIVE unless
/// established, SYNC when learnt by sync), the state, and the time left.
pub fn conn_record(k: &ConnKey, c: &Conn, now_ms: u64) -> SyncConn {
    conn_rec(k, c, now_ms).to_sync_conn()
}

/// [`conn_record`] in the compact form the master's queues carry.
#[inline]
pub fn conn_rec(k: &ConnKey, c: &Conn, now_ms: u64) -> SyncRec {
    let method = c.dest.method();
    let mut f = method as u32;
    if method != ForwardMethod::Masq {
        f |= flags::NOOUTPUT;
    }
    if c.flags & conn_flags::ACTIVE == 0 {
        f |= flags::INACTIVE;
    }
    if c.flags & conn_flags::SYNC != 0 {
        f |= flags::SYNC;
    }
    SyncRec {
        key: *k,
        daddr: c.daddr,
        dport: c.dport,
        state: if k.proto == proto::TCP { c.state as u16 } else { 0 },
        flags: f,
        timeout: secs_left(c.expires_in_ms(now_ms)),
    }
}

/// A sync record of an IPv4 connection or template, 32 bytes and `Copy` (a
/// [`SyncConn`] is about 150 with its options): what a worker queues for the master
/// thread, which makes the [`SyncConn`] ([`SyncRec::to_sync_conn`]) as it encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRec {
    /// A template's client network is `key.caddr`, with `key.cport` 0.
    pub key: ConnKey,
    pub daddr: Ipv4Addr,
    pub dport: u16,
    pub state: u16,
    pub flags: u32,
    pub timeout: u32,
}

impl SyncRec {
    pub fn to_sync_conn(&self) -> SyncConn {
        let k = &self.key;
        SyncConn {
            protocol: k.proto,
            caddr: k.caddr.into(),
            cport: k.cport,
            vaddr: k.vaddr.into(),
            vport: k.vport,
            daddr: self.daddr.into(),
            dport: self.dport,
            flags: self.flags,
            state: self.state,
            fwmark: 0,
            timeout: self.timeout,
            seq: None,
            pe: None,
        }
    }
}

/// A template in the compact form ([`template_record`]), if its real server is IPv4
/// (uvs forwards to no other).
#[inline]
fn template_rec(t: &Template) -> Option<SyncRec> {
    let (f, state) = template_flags_state(t);
    Some(SyncRec {
        key: ConnKey {
            proto: t.key.proto,
            caddr: t.key.snet,
            cport: 0,
            vaddr: t.key.vaddr,
            vport: t.key.vport,
        },
        daddr: t.dest.v4()?,
        dport: t.dport,
        state,
        flags: f,
        timeout: secs_left(t.timeout_ms()),
    })
}

/// A template's record flags (those it took from its destination: forwarding method,
/// NOOUTPUT for DR/TUN, INACTIVE) and state (ASSURED or none), for both record forms.
#[inline]
fn template_flags_state(t: &Template) -> (u32, u16) {
    let method = t.dest.method();
    let mut f = flags::TEMPLATE | flags::INACTIVE | method as u32;
    if method != ForwardMethod::Masq {
        f |= flags::NOOUTPUT;
    }
    (f, if t.is_assured() { TPL_ASSURED } else { 0 })
}

/// The master sync daemon's end in one worker (`ip_vs_sync.c: ip_vs_sync_conn`): on
/// each client packet of a connection, decide whether it is due to be synced and, if
/// so, queue its record for the sync thread; then the same for its persistence
/// template. The decision is a few compares on the entry (and, for a controlled
/// connection, two atomic operations on its template); a record is built only when
/// one is due.
#[derive(Debug)]
pub struct SyncHook {
    tx: crossbeam_channel::Sender<SyncRec>,
    /// Records refused by a full queue (`sync_qlen_max`).
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl SyncHook {
    pub fn new(tx: crossbeam_channel::Sender<SyncRec>, dropped: Arc<std::sync::atomic::AtomicU64>) -> SyncHook {
        SyncHook { tx, dropped }
    }

    /// A client packet of `c` was just accounted (its `in_pkts` counts it).
    ///
    /// As `ip_vs_sync_conn` (version 1): a one-packet connection is never sent itself;
    /// any other is sent when [`sync_needed`] says so. Then, sent or not, one-packet
    /// or not, "synchronize its controller if it has": the template counts the packet
    /// (`atomic_inc_return(&cp->in_pkts)`) and is sent when [`template_sync_needed`]
    /// says so, which with the default `sync_threshold` (period 50) and no
    /// `sync_refresh_period` is on every packet. With `sync_version` 0
    /// (`ip_vs_sync_conn_v0`) the template is looked at only after its connection was
    /// sent, and a one-packet connection's never.
    #[inline]
    pub fn packet(&self, settings: &crate::sync::Settings, k: &ConnKey, c: &mut Conn, now_ms: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let sent = c.flags & conn_flags::ONE_PACKET == 0 && sync_needed(settings, k.proto, c, now_ms);
        if sent {
            self.send(conn_rec(k, c, now_ms));
        }
        if let Some(t) = &c.tpl
            && (sent || settings.version.load(Relaxed) != 0)
        {
            let pkts = t.count_packet();
            if template_sync_needed(settings, t, pkts, now_ms)
                && let Some(r) = template_rec(t)
            {
                self.send(r);
            }
        }
    }

    #[inline]
    fn send(&self, r: SyncRec) {
        if self.tx.try_send(r).is_err() {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The end of `ip_vs_core.c: ip_vs_in_hook` for a client packet that `c` has just
/// accounted, when no master sync daemon runs (with one, [`SyncHook::packet`]): a
/// one-packet connection still counts its packet in its template (`else if
/// ((cp->flags & IP_VS_CONN_F_ONE_PACKET) && cp->control)
/// atomic_inc(&cp->control->in_pkts)`), as the master hook would have.
#[inline]
pub fn no_master(c: &Conn) {
    if c.flags & conn_flags::ONE_PACKET != 0
        && let Some(t) = &c.tpl
    {
        t.count_packet();
    }
}

/// `ip_vs_sync.c: ip_vs_sync_conn_needed`, on the client packet at `now_ms` that
/// `c` has just accounted (so its idle deadline is `now_ms` + its state's timeout, the
/// kernel's `jiffies + cp->timeout`):
/// - TCP is synced in ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT and TIME_WAIT only, and
///   at once on a change into one of the last four;
/// - with `sync_refresh_period` > 0, a record whose deadline moved less than
///   min(`sync_refresh_period`, max(timeout / 2, 10 s)) since the last sync is not sent
///   again, unless fewer than `sync_retries` retries were sent and
///   `sync_refresh_period` / 8 has passed since the last one ([`refresh_gate`]);
/// - then the packet count: with `sync_threshold`'s period > 0, only packets whose count
///   modulo the period is the threshold; with period 0, only the count equal to the
///   threshold, unless a refresh period is set (then time alone decides).
///
/// The kernel's deadline word (`sync_endtime`, retries in its low bits) and
/// `old_state` live in [`Conn::sync_end`].
#[inline]
fn sync_needed(s: &crate::sync::Settings, proto_: u8, c: &mut Conn, now_ms: u64) -> bool {
    use crate::conn::SYNC_END_LOW;
    use std::sync::atomic::Ordering::Relaxed;
    let orig = c.sync_end;
    let timeout = c.expires_in_ms(now_ms) as u32;
    let n = (now_ms as u32).wrapping_add(timeout) & !SYNC_END_LOW;
    if proto_ == proto::TCP {
        use TcpState::*;
        if !matches!(c.state, Established | FinWait | Close | CloseWait | TimeWait) {
            return false;
        }
        // `force`: a state change; into ESTABLISHED it still waits for the checks
        // below (and is then due whatever the kernel's `force` would add).
        if c.state != c.sync_old() && c.state != Established {
            return mark(c, n);
        }
    }
    let refresh_ms = s.refresh_period.load(Relaxed).saturating_mul(1000);
    let Some(n) = refresh_gate(s, refresh_ms, orig, n, timeout, now_ms) else {
        return false;
    };
    let (threshold, period) = (s.threshold.load(Relaxed), s.period.load(Relaxed));
    let pkts = u32::from(c.in_pkts);
    if period > 0 {
        if pkts % period != threshold {
            return false;
        }
    } else if refresh_ms == 0 && pkts != threshold {
        return false;
    }
    // The kernel returns `cmpxchg(...) == orig || force`: the exchange cannot lose
    // here (one worker owns the entry), so the record is due.
    mark(c, n)
}

/// `ip_vs_sync_conn_needed` on a template (`IP_VS_CONN_F_TEMPLATE`), `pkts` being its
/// packet count after this packet: no state, so no `force`; the refresh-period gate
/// on the template's own deadline word, with its own timeout (the kernel's `jiffies +
/// cp->timeout`: a template's deadline moves with the clock, as packets of its
/// connections do not re-arm it); the packet count only with `sync_threshold`'s
/// period 0 and no refresh period (then only the count equal to the threshold), for
/// with a period the kernel skips that test for templates. So by default, every
/// packet. The word is swapped as the kernel's `cmpxchg`: an unchanged word is always
/// swapped (also within one 64 ms granule: repeated sends are not merged), and of two
/// workers deciding at once for one template only one sends.
#[inline]
fn template_sync_needed(s: &crate::sync::Settings, t: &Template, pkts: u32, now_ms: u64) -> bool {
    use crate::conn::SYNC_END_LOW;
    use std::sync::atomic::Ordering::Relaxed;
    let orig = t.sync_end();
    let timeout = t.timeout_ms().min(MAX_TIMEOUT_MS) as u32;
    let n = (now_ms as u32).wrapping_add(timeout) & !SYNC_END_LOW;
    let refresh_ms = s.refresh_period.load(Relaxed).saturating_mul(1000);
    let Some(n) = refresh_gate(s, refresh_ms, orig, n, timeout, now_ms) else {
        return false;
    };
    if s.period.load(Relaxed) == 0 && refresh_ms == 0 && pkts != s.threshold.load(Relaxed) {
        return false;
    }
    t.swap_sync_end(orig, n)
}

/// `ip_vs_sync_conn_needed`'s `sync_refresh_period` test, common to connections and
/// templates: `None` when the record is not due; otherwise the deadline word to store
/// (`n`, with the retry count in its low bits when this is a retry).
#[inline]
fn refresh_gate(
    s: &crate::sync::Settings,
    refresh_ms: u32,
    orig: u32,
    mut n: u32,
    timeout: u32,
    now_ms: u64,
) -> Option<u32> {
    use crate::conn::SYNC_END_LOW;
    use std::sync::atomic::Ordering::Relaxed;
    if refresh_ms == 0 {
        return Some(n);
    }
    let last = orig & !SYNC_END_LOW;
    let diff = n.wrapping_sub(last) as i32;
    let min_diff = (timeout >> 1).max(10_000);
    if diff.unsigned_abs() < refresh_ms.min(min_diff) {
        let retries = orig & 3;
        if retries >= s.retries.load(Relaxed) {
            return None;
        }
        // time_before(now, orig - cp->timeout + (sync_refresh_period >> 3))
        let retry_at = last.wrapping_sub(timeout).wrapping_add(refresh_ms >> 3);
        if ((now_ms as u32).wrapping_sub(retry_at) as i32) < 0 {
            return None;
        }
        n |= retries + 1;
    }
    Some(n)
}

/// `ip_vs_sync_conn_needed`'s `set:`: remember the state and deadline (with the
/// retry count in `n`'s low bits) of this sync.
#[inline]
fn mark(c: &mut Conn, n: u32) -> bool {
    c.sync_end = n;
    let st = c.state;
    c.set_sync_old(st);
    true
}

impl Worker {
    /// Create or update this worker's connections from sync records
    /// (`ip_vs_sync.c: ip_vs_proc_conn`); templates among them are ignored (see
    /// [`install_templates`]). A created entry is bound to the current table's
    /// destination with the record's address and port, marked
    /// [`conn_flags::SYNC`], given the record's state, active/inactive standing and
    /// timeout, and linked to its persistence template when one is live. Its packet
    /// count starts at `sync_threshold`, as the kernel's does.
    pub fn install_synced(
        &mut self,
        sh: &Shared,
        svcs: &ServiceTable,
        now_ms: u64,
        recs: &[SyncConn],
        sync_threshold: u32,
    ) -> InstallReport {
        let mut rep = InstallReport::default();
        for r in recs.iter().filter(|r| !r.is_template()) {
            let Some((key, daddr)) = conn_key(r) else {
                rep.unsupported += 1;
                continue;
            };
            let state = if key.proto == proto::TCP {
                if r.state > TcpState::SynAck as u16 {
                    rep.bad_state += 1;
                    continue;
                }
                TcpState::from_u8(r.state as u8)
            } else {
                if r.state != 0 {
                    rep.bad_state += 1;
                    continue;
                }
                TcpState::None
            };
            let active = r.flags & flags::INACTIVE == 0;
            let timeout = timeout_ms(r, state, &sh.ipvs.timeouts);
            if let Some(c) = self.conns.get_mut(&key) {
                if c.daddr == daddr && c.dport == r.dport {
                    c.sync_update(state, active, timeout, now_ms);
                    c.in_pkts = sync_threshold as u16;
                    rep.updated += 1;
                    continue;
                }
                if !active {
                    // ip_vs_proc_conn: the last word on a connection that was
                    // already replaced; ignored.
                    rep.stale += 1;
                    continue;
                }
                self.conns.remove(&key);
            }
            let Some((svc, dest)) = find_dest(svcs, key.proto, key.vaddr, key.vport, daddr, r.dport, false) else {
                rep.no_dest += 1;
                continue;
            };
            let no_output = dest.method() != ForwardMethod::Masq;
            let mut c = Conn::new(dest, daddr, r.dport, no_output, now_ms);
            if !no_output && let Some((ifx, hop)) = sh.route(key.caddr) {
                c.rev_ifindex = ifx;
                c.rev_hop = hop;
            }
            if let Some(tk) = template_key_of(&svc, &key)
                && let Some(t) = svcs.conn_shared().templates.get(&tk)
            {
                c.tpl = Some(t.control());
            }
            c.sync_update(state, active, timeout, now_ms);
            c.in_pkts = sync_threshold as u16;
            match self.conns.insert(key, c) {
                Ok(_) => rep.created += 1,
                Err(_) => rep.table_full += 1,
            }
        }
        rep
    }

    /// Every connection of this worker as a sync record (one-packet entries, which
    /// never outlive their datagram, excepted).
    pub fn export_synced(&self, now_ms: u64) -> Vec<SyncConn> {
        (self.conns.iter())
            .filter(|(_, c)| c.flags & conn_flags::ONE_PACKET == 0 && !c.is_expired(now_ms))
            .map(|(k, c)| conn_record(k, c, now_ms))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

    fn rec(proto_: u8, cport: u16, vport: u16, rs: Ipv4Addr, dport: u16, f: u32, state: u16) -> SyncConn {
        SyncConn {
            protocol: proto_,
            caddr: CLIENT.into(),
            cport,
            vaddr: VIP.into(),
            vport,
            daddr: rs.into(),
            dport,
            flags: f,
            state,
            fwmark: 0,
            timeout: 900,
            seq: None,
            pe: None,
        }
    }

    fn key(proto_: u8, cport: u16, vport: u16) -> ConnKey {
        ConnKey {
            proto: proto_,
            caddr: CLIENT,
            cport,
            vaddr: VIP,
            vport,
        }
    }

    #[test]
    fn install_creates_binds_and_updates_like_ip_vs_proc_conn() {
        let (sh, _ctl) = director_all();
        let svcs = sh.services.load();
        let mut w = Worker::new(0, 100);
        let dr = flags::DROUTE | flags::NOOUTPUT;
        let recs = vec![
            // DR, ESTABLISHED (active).
            rec(6, 1000, 80, RS1, 80, dr, TcpState::Established as u16),
            // NAT to port 8888, SYN_RECV (inactive flag as the kernel sends it).
            rec(
                6,
                1001,
                8080,
                RS1,
                8888,
                flags::MASQ | flags::INACTIVE,
                TcpState::SynRecv as u16,
            ),
            // UDP DR.
            rec(17, 1002, 53, RS2, 53, dr | flags::INACTIVE, 0),
            // Unknown destination, unknown service, IPv6, bad state.
            rec(6, 1003, 80, Ipv4Addr::new(10, 9, 9, 9), 80, dr, 1),
            rec(6, 1004, 81, RS1, 80, dr, 1),
            SyncConn {
                caddr: "2001:db8::1".parse().unwrap(),
                vaddr: "2001:db8::2".parse().unwrap(),
                daddr: "2001:db8::3".parse().unwrap(),
                ..rec(6, 1005, 80, RS1, 80, dr, 1)
            },
            rec(6, 1006, 80, RS1, 80, dr, 11),
            rec(17, 1007, 53, RS1, 53, dr, 1),
        ];
        let rep = w.install_synced(&sh, &svcs, 5000, &recs, 3);
        assert_eq!(
            rep,
            InstallReport {
                created: 3,
                no_dest: 2,
                unsupported: 1,
                bad_state: 2,
                ..Default::default()
            }
        );
        let c = w.conns.get(&key(6, 1000, 80)).unwrap();
        assert_eq!(
            (c.state, c.daddr, c.dport, c.in_pkts),
            (TcpState::Established, RS1, 80, 3)
        );
        assert_eq!(
            c.flags & (conn_flags::SYNC | conn_flags::ACTIVE | conn_flags::NO_OUTPUT),
            conn_flags::SYNC | conn_flags::ACTIVE | conn_flags::NO_OUTPUT
        );
        assert_eq!(c.expires_in_ms(5000), 900_000);
        assert_eq!(c.dest.active(), 1);
        let n = w.conns.get(&key(6, 1001, 8080)).unwrap();
        assert_eq!(
            (n.state, n.dport, n.flags & conn_flags::NO_OUTPUT),
            (TcpState::SynRecv, 8888, 0)
        );
        assert_eq!(w.conns.out_len(), 1, "the NAT entry answers the server's replies");
        assert_eq!(n.rev_ifindex, IFINDEX, "and knows its way back to the client");
        // An update: SYN_RECV -> ESTABLISHED moves the dest's counters.
        let d = n.dest.clone();
        let (a0, i0) = (d.active(), d.inactive());
        let up = rec(6, 1001, 8080, RS1, 8888, flags::MASQ, TcpState::Established as u16);
        let rep = w.install_synced(&sh, &svcs, 6000, &[up], 3);
        assert_eq!(rep.updated, 1);
        assert_eq!((d.active(), d.inactive()), (a0 + 1, i0 - 1));
        assert_eq!(w.conns.get(&key(6, 1001, 8080)).unwrap().state, TcpState::Established);
        // A record for another destination: an inactive one is stale, an active one
        // replaces the entry.
        let moved = rec(6, 1000, 80, RS2, 80, dr | flags::INACTIVE, TcpState::FinWait as u16);
        assert_eq!(w.install_synced(&sh, &svcs, 7000, &[moved], 3).stale, 1);
        let moved = rec(6, 1000, 80, RS2, 80, dr, TcpState::Established as u16);
        assert_eq!(w.install_synced(&sh, &svcs, 7000, &[moved], 3).created, 1);
        assert_eq!(w.conns.get(&key(6, 1000, 80)).unwrap().daddr, RS2);
    }

    /// A frame for the director's own address, as the RX ring reports it.
    fn host_rx() -> super::super::RxMeta {
        super::super::RxMeta {
            ifindex: IFINDEX,
            pkttype: super::super::pkttype::HOST,
            csum_partial: false,
            vlan_tci: None,
        }
    }

    #[test]
    fn a_synced_entry_forwards_the_next_packet_without_a_syn() {
        let (sh, _ctl) = director();
        let svcs = sh.services.load();
        let mut w = Worker::new(0, 100);
        let r = rec(6, 40000, 80, RS1, 80, flags::DROUTE | flags::NOOUTPUT, 1);
        w.install_synced(&sh, &svcs, 0, &[r], 3);
        let mut out = VecEmit::keeping();
        let rx = host_rx();
        let data = tcp_frame(40000, 80, false, true, b"after failover");
        let v = w.process(&sh, &svcs, 10, rx, &data, &mut out);
        assert_eq!(v, super::super::Verdict::Forwarded);
        assert_eq!(&out.frames[0].1[..6], &RS1_MAC, "to the synced server, not a new pick");
    }

    #[test]
    fn export_then_install_reproduces_the_table_with_templates_linked() {
        let (sh, _ctl) = director_with(
            "-A -t 10.0.0.100:80 -s rr -p 300\n-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g\n\
             -a -t 10.0.0.100:80 -r 10.0.0.12:80 -g\n",
        );
        let svcs = sh.services.load();
        let mut w = Worker::new(0, 100);
        let rx = host_rx();
        for (i, f) in [
            tcp_frame(40000, 80, true, false, b""),
            tcp_frame(40000, 80, false, true, b""),
            tcp_frame(40001, 80, true, false, b""),
        ]
        .iter()
        .enumerate()
        {
            w.process(&sh, &svcs, i as u64, rx, f, &mut VecEmit::keeping());
        }
        let mut recs = export_templates(&svcs);
        assert_eq!(recs.len(), 1);
        assert_eq!((recs[0].cport, recs[0].timeout, recs[0].is_template()), (0, 300, true));
        recs.extend(w.export_synced(10));
        assert_eq!(recs.len(), 3);
        let est = recs.iter().find(|r| r.cport == 40000).unwrap();
        assert_eq!((est.state, est.flags & flags::INACTIVE), (1, 0));

        // A second director with the same rules learns them.
        let (sh2, _ctl2) = director_with(
            "-A -t 10.0.0.100:80 -s rr -p 300\n-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g\n\
             -a -t 10.0.0.100:80 -r 10.0.0.12:80 -g\n",
        );
        let svcs2 = sh2.services.load();
        let mut w2 = Worker::new(0, 100);
        assert_eq!(install_templates(&svcs2, 20, &recs, 3).created, 1);
        assert_eq!(w2.install_synced(&sh2, &svcs2, 20, &recs, 3).created, 2);
        let tpl = svcs2.conn_shared().templates.snapshot().pop().unwrap();
        assert_eq!(tpl.controlled(), 2, "both connections hold the template");
        assert_eq!(tpl.expires_ms(), 20 + 300_000);
        let mut again = export_templates(&svcs2);
        again.extend(w2.export_synced(20));
        let strip = |v: &mut Vec<SyncConn>| {
            for r in v.iter_mut() {
                r.flags &= !flags::SYNC;
            }
            v.sort_by_key(|r| (r.cport, r.flags));
        };
        strip(&mut recs);
        strip(&mut again);
        assert_eq!(recs, again, "the same records, SYN bit aside");
    }

    #[test]
    fn the_master_hook_syncs_as_ip_vs_sync_conn_needed() {
        let (sh, _ctl) = director();
        let svcs = sh.services.load();
        let rx = host_rx();
        let (tx, q) = crossbeam_channel::bounded(100);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut w = Worker::new(0, 100);
        w.sync = Some(SyncHook::new(tx, dropped.clone()));
        let mut send = |f: &[u8], t: u64| {
            w.process(&sh, &svcs, t, rx, f, &mut VecEmit::counting());
            q.try_iter().collect::<Vec<_>>()
        };
        // UDP: the 3rd datagram, then every 50th (53, 103).
        let d = udp_frame(5000, 53, b"x");
        let at: Vec<u32> = (1..=103).filter(|&n| !send(&d, n.into()).is_empty()).collect();
        assert_eq!(at, vec![3, 53, 103]);
        // TCP (DR): SYN, ACK = ESTABLISHED at 2 packets: not yet; the 3rd: synced, active.
        assert!(send(&tcp_frame(6000, 80, true, false, b""), 0).is_empty());
        assert!(send(&tcp_frame(6000, 80, false, true, b""), 0).is_empty());
        let r = send(&tcp_frame(6000, 80, false, true, b"data"), 0);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].state, r[0].flags & flags::INACTIVE, r[0].timeout), (1, 0, 900));
        assert_eq!(r[0].flags & flags::FWD_MASK, flags::DROUTE);
        // A FIN: FIN_WAIT is synced at once, whatever the count.
        let mut fin = Vec::new();
        etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
            .ipv4(CLIENT.octets(), VIP.octets(), 64)
            .tcp(6000, 80, 1005, 65535)
            .ack(1)
            .fin()
            .write(&mut fin, b"")
            .unwrap();
        let r = send(&fin, 0);
        assert_eq!(
            r.iter().map(|r| r.state).collect::<Vec<_>>(),
            vec![TcpState::FinWait as u16]
        );
        assert_eq!(dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn sync_refresh_period_and_retries_as_the_kernel() {
        use std::sync::atomic::Ordering::Relaxed;
        let (sh, _ctl) = director();
        let svcs = sh.services.load();
        let rx = host_rx();
        // sync_threshold "3 0" with sync_refresh_period 20: time alone decides.
        sh.ipvs.sync.period.store(0, Relaxed);
        sh.ipvs.sync.refresh_period.store(20, Relaxed);
        let (tx, q) = crossbeam_channel::bounded(100);
        let mut w = Worker::new(0, 100);
        w.sync = Some(SyncHook::new(tx, Arc::new(std::sync::atomic::AtomicU64::new(0))));
        let mut send = |f: &[u8], t: u64| {
            w.process(&sh, &svcs, t, rx, f, &mut VecEmit::counting());
            q.try_iter().count()
        };
        let ack = tcp_frame(7000, 80, false, true, b"");
        // UDP (timeout 300 s): the first datagram (deadline moved 300 s since the
        // entry's creation), then nothing until 20 s of it have passed.
        let d = udp_frame(5001, 53, b"x");
        let at: Vec<u64> = (0..=45u64).map(|s| s * 1000).filter(|&t| send(&d, t) > 0).collect();
        // (40 s is 19.968 s after the 20 s sync on the 64 ms grid of the deadlines:
        // not yet, as the kernel's 4-jiffy grid can miss by a tick.)
        assert_eq!(at, vec![0, 20_000, 41_000]);
        // TCP: nothing before ESTABLISHED; then at once (the deadline jumps to 900 s),
        // then every 20 s of client packets, not on each.
        assert_eq!(send(&tcp_frame(7000, 80, true, false, b""), 0), 0);
        assert_eq!(send(&ack, 100), 1, "ESTABLISHED: synced at its first packet");
        assert_eq!(send(&ack, 5_000), 0);
        assert_eq!(send(&ack, 19_999), 0);
        assert_eq!(send(&ack, 20_200), 1);
        assert_eq!(send(&ack, 21_000), 0);
        // sync_retries 2: resent up to twice, sync_refresh_period / 8 (2.5 s) apart.
        sh.ipvs.sync.retries.store(2, Relaxed);
        assert_eq!(send(&ack, 22_000), 0, "2.5 s not passed since the last sync");
        assert_eq!(send(&ack, 22_800), 1, "first retry");
        assert_eq!(send(&ack, 23_000), 0);
        assert_eq!(send(&ack, 25_400), 1, "second retry");
        assert_eq!(send(&ack, 28_000), 0, "retries spent");
        assert_eq!(send(&ack, 40_000), 0, "20 s after the second retry's mark not yet");
        assert_eq!(send(&ack, 45_500), 1, "20 s after the last retry");
        // With the period back at 50, the packet count gates the refreshes too.
        sh.ipvs.sync.period.store(50, Relaxed);
        sh.ipvs.sync.retries.store(0, Relaxed);
        let synced: usize = (0..60u64).map(|i| send(&ack, 70_000 + i)).sum();
        assert_eq!(synced, 1, "the one packet whose count is 3 modulo 50");
    }

    /// A persistent UDP DR service (`-p 300`, `opts` added to its `-A` line) and a
    /// worker with the master hook; `send(frame, t)` runs one frame and returns what
    /// the hook queued.
    fn persistent_master(
        opts: &str,
    ) -> (
        Arc<Shared>,
        crate::ctl::Ctl,
        Worker,
        crossbeam_channel::Receiver<SyncRec>,
    ) {
        let (sh, ctl) = director_with(&format!(
            "-A -u 10.0.0.100:53 -s rr -p 300 {opts}\n-a -u 10.0.0.100:53 -r 10.0.0.11:53 -g\n\
             -a -u 10.0.0.100:53 -r 10.0.0.12:53 -g\n"
        ));
        let (tx, q) = crossbeam_channel::bounded(1000);
        let mut w = Worker::new(0, 100);
        w.sync = Some(SyncHook::new(tx, Arc::new(std::sync::atomic::AtomicU64::new(0))));
        (sh, ctl, w, q)
    }

    fn run(w: &mut Worker, sh: &Shared, f: &[u8], t: u64, q: &crossbeam_channel::Receiver<SyncRec>) -> Vec<SyncRec> {
        let svcs = sh.services.load();
        w.process(sh, &svcs, t, host_rx(), f, &mut VecEmit::counting());
        q.try_iter().collect()
    }

    fn is_tpl(r: &SyncRec) -> bool {
        r.flags & flags::TEMPLATE != 0
    }

    #[test]
    fn with_the_defaults_a_template_goes_with_every_packet_of_its_connections() {
        let (sh, _ctl, mut w, q) = persistent_master("");
        // ip_vs_sync_conn: the connection at its 3rd datagram (3 50), its template on
        // each of them (a template skips the count test when the period is > 0).
        let d = udp_frame(5000, 53, b"x");
        let got: Vec<(usize, usize)> = (1..=5u64)
            .map(|t| {
                let r = run(&mut w, &sh, &d, t, &q);
                (
                    r.iter().filter(|r| !is_tpl(r)).count(),
                    r.iter().filter(|r| is_tpl(r)).count(),
                )
            })
            .collect();
        assert_eq!(got, vec![(0, 1), (0, 1), (1, 1), (0, 1), (0, 1)]);
        // The template's record: client network, port 0, TEMPLATE|INACTIVE|DR|NOOUTPUT,
        // the persistence timeout (not the time left), state NONE (UDP never assures).
        let r = run(&mut w, &sh, &d, 100_000, &q);
        assert_eq!(r.len(), 1);
        let t = r[0].to_sync_conn();
        assert_eq!((t.caddr, t.cport, t.vport, t.dport), (IpAddr::from(CLIENT), 0, 53, 53));
        assert_eq!(
            t.flags,
            flags::TEMPLATE | flags::INACTIVE | flags::DROUTE | flags::NOOUTPUT
        );
        assert_eq!((t.state, t.timeout), (0, 300));
        // A second connection of the same client shares the template and its count.
        let d2 = udp_frame(5001, 53, b"x");
        assert_eq!(
            run(&mut w, &sh, &d2, 100_001, &q).iter().filter(|r| is_tpl(r)).count(),
            1
        );
        let tpl = sh.services.load().conn_shared().templates.snapshot().pop().unwrap();
        assert_eq!(tpl.in_pkts(), 7, "the template counts both connections' packets");
    }

    #[test]
    fn a_template_is_checked_also_when_its_connection_is_not_due() {
        // sync_threshold "3 0", no refresh period: the template is sent when its own
        // count reaches 3, whichever connection brings it there; each connection when
        // its count does.
        let (sh, _ctl, mut w, q) = persistent_master("");
        sh.ipvs.sync.period.store(0, std::sync::atomic::Ordering::Relaxed);
        let (a, b) = (udp_frame(6000, 53, b"x"), udp_frame(6001, 53, b"x"));
        assert!(run(&mut w, &sh, &a, 0, &q).is_empty());
        assert!(run(&mut w, &sh, &a, 1, &q).is_empty());
        let r = run(&mut w, &sh, &b, 2, &q);
        assert_eq!(r.len(), 1, "b's first datagram is the template's third");
        assert!(is_tpl(&r[0]));
        let r = run(&mut w, &sh, &a, 3, &q);
        assert_eq!(
            (r.len(), is_tpl(&r[0]), r[0].key.cport),
            (1, false, 6000),
            "a at its 3rd, not the template"
        );
        assert!(run(&mut w, &sh, &b, 4, &q).is_empty());
    }

    #[test]
    fn with_a_refresh_period_a_template_goes_again_once_its_deadline_moved() {
        use std::sync::atomic::Ordering::Relaxed;
        let (sh, _ctl, mut w, q) = persistent_master("");
        sh.ipvs.sync.refresh_period.store(20, Relaxed);
        let d = udp_frame(7000, 53, b"x");
        let tpl_at: Vec<u64> = (0..=50u64)
            .map(|s| s * 1000)
            .filter(|&t| run(&mut w, &sh, &d, t, &q).iter().any(is_tpl))
            .collect();
        // Created at 0 with its deadline word at 0: the first packet moves it by the
        // 300 s timeout (sent); then only once 20 s more have passed (min(20 s, 150 s)),
        // on the 64 ms grid as connections (40 s is 19.968 s after the 20 s sync).
        assert_eq!(tpl_at, vec![0, 20_000, 41_000]);
        // sync_retries 1: one resend, 2.5 s (20 s / 8) after the last sync.
        sh.ipvs.sync.retries.store(1, Relaxed);
        assert!(!run(&mut w, &sh, &d, 42_000, &q).iter().any(is_tpl));
        assert!(run(&mut w, &sh, &d, 43_600, &q).iter().any(is_tpl), "the retry");
        assert!(!run(&mut w, &sh, &d, 47_000, &q).iter().any(is_tpl), "retries spent");
    }

    #[test]
    fn a_one_packet_service_never_syncs_its_connections_but_syncs_its_template() {
        let (sh, _ctl, mut w, q) = persistent_master("-o");
        let d = udp_frame(8000, 53, b"x");
        for t in 0..4u64 {
            let r = run(&mut w, &sh, &d, t, &q);
            assert_eq!(r.len(), 1, "datagram {t}");
            assert!(is_tpl(&r[0]));
        }
        let tpl = sh.services.load().conn_shared().templates.snapshot().pop().unwrap();
        assert_eq!(tpl.in_pkts(), 4);
        // Without a master daemon the one-packet connections still count in their
        // template (ip_vs_in_hook)...
        w.sync = None;
        run(&mut w, &sh, &d, 10, &q);
        assert_eq!(tpl.in_pkts(), 5);
        // ...and the others do not.
        let (sh2, _ctl2, mut w2, q2) = persistent_master("");
        w2.sync = None;
        for t in 0..3 {
            run(&mut w2, &sh2, &d, t, &q2);
        }
        let tpl2 = sh2.services.load().conn_shared().templates.snapshot().pop().unwrap();
        assert_eq!(tpl2.in_pkts(), 0);
    }

    #[test]
    fn sync_version_0_sends_a_template_only_after_its_connection() {
        // ip_vs_sync_conn_v0: a connection not due (or one-packet) returns before its
        // controller is looked at.
        let (sh, _ctl, mut w, q) = persistent_master("");
        sh.ipvs.sync.version.store(0, std::sync::atomic::Ordering::Relaxed);
        let d = udp_frame(9000, 53, b"x");
        let got: Vec<usize> = (1..=5u64).map(|t| run(&mut w, &sh, &d, t, &q).len()).collect();
        assert_eq!(got, vec![0, 0, 2, 0, 0]);
        let (sh, _ctl, mut w, q) = persistent_master("-o");
        sh.ipvs.sync.version.store(0, std::sync::atomic::Ordering::Relaxed);
        assert!((0..4u64).all(|t| run(&mut w, &sh, &d, t, &q).is_empty()));
    }

    #[test]
    fn an_assured_template_goes_as_assured_and_a_backup_takes_its_state_and_count() {
        // TCP, persistent: ESTABLISHED marks the template ASSURED (state 1 on the wire).
        let (sh, _ctl) = director_with("-A -t 10.0.0.100:80 -s rr -p 120\n-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g\n");
        let (tx, q) = crossbeam_channel::bounded(100);
        let mut w = Worker::new(0, 100);
        w.sync = Some(SyncHook::new(tx, Arc::new(std::sync::atomic::AtomicU64::new(0))));
        let syn = run(&mut w, &sh, &tcp_frame(40000, 80, true, false, b""), 0, &q);
        assert_eq!(
            syn.iter().map(|r| (is_tpl(r), r.state)).collect::<Vec<_>>(),
            vec![(true, 0)],
            "SYN_RECV: the connection is not due, its template is"
        );
        let ack = run(&mut w, &sh, &tcp_frame(40000, 80, false, true, b""), 1, &q);
        let t = ack.iter().find(|r| is_tpl(r)).unwrap().to_sync_conn();
        assert_eq!((t.state, t.timeout), (1, 120));
        // The backup: a new template takes the state and `sync_threshold` as its count.
        let (sh2, _ctl2) = director_with("-A -t 10.0.0.100:80 -s rr -p 120\n-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g\n");
        let svcs2 = sh2.services.load();
        assert_eq!(install_templates(&svcs2, 0, &[t], 3).created, 1);
        let got = svcs2.conn_shared().templates.snapshot().pop().unwrap();
        assert_eq!((got.is_assured(), got.in_pkts(), got.expires_ms()), (true, 3, 120_000));
    }
}
