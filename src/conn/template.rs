//! Persistence templates (`ip_vs_core.c: ip_vs_sched_persist`): "client network N of service S goes to dest D".
//!
//! A template is created on the new-connection path of a PERSISTENT service and
//! controls every connection made while it lives. Templates are shared by all workers:
//! two workers must never create different templates for one client network, so they
//! live in one [`TemplateTable`] reached from the service table (see
//! `conn::settings::ConnShared`), sharded into mutex-guarded maps by key hash. Only the
//! new-connection path of persistent services and the periodic sweep take a shard
//! lock; established packets never look at templates (a connection holds its template
//! through a [`TemplateRef`], counted without a lock).
//!
//! Timers follow IPVS exactly, evaluated on virtual time:
//! * created with the service's persistence timeout and re-armed to `now + timeout` by
//!   every new connection it controls (packets of existing connections do not refresh
//!   it);
//! * when it is due while it still controls connections it is postponed by 60 s and
//!   its timeout becomes 60 s (the "shrink" quirk: later new connections re-arm it for
//!   60 s only);
//! * when it is due and controls nothing it is freed, releasing `persistconns`.
//!
//! A found template whose dest was deleted (or has weight 0 while
//! `expire_quiescent_template` is on) is invalidated: it no longer matches and is left
//! to time out, still counted in `persistconns`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::AHashMap;

use crate::dest::Dest;

/// Postponement step (and the timeout a postponed template keeps), milliseconds.
pub const POSTPONE_MS: u64 = 60_000;

/// The template lookup key. The client port is always 0 and is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    /// IP protocol (0 = IPPROTO_IP for fwmark services).
    pub proto: u8,
    /// Client address masked with the service netmask.
    pub snet: Ipv4Addr,
    /// VIP (or the fwmark as an address).
    pub vaddr: Ipv4Addr,
    /// Service port, or 0 for port-0 / FTP / fwmark services.
    pub vport: u16,
}

/// Template flags.
pub mod tpl_flags {
    /// A controlled TCP connection reached ESTABLISHED.
    pub const ASSURED: u8 = 0x1;
    /// Rejected by a lookup (dest gone or quiesced); waits for its timer.
    pub const INVALID: u8 = 0x2;
}

/// One persistence template.
#[derive(Debug)]
pub struct Template {
    pub key: TemplateKey,
    pub dest: Arc<Dest>,
    /// Real-server port shown in `-L -c` (0 for port-0 / FTP services).
    pub dport: u16,
    expires_ms: AtomicU64,
    timeout_ms: AtomicU64,
    flags: AtomicU8,
    /// Connections this template controls (IPVS's `n_control`).
    controlled: AtomicU32,
    /// Packets of its connections, as the kernel's template counts them in `in_pkts`
    /// (`ip_vs_sync.c: ip_vs_sync_conn` while a master sync daemon runs; otherwise
    /// only one-packet connections' packets, `ip_vs_core.c: ip_vs_in_hook`).
    in_pkts: AtomicU32,
    /// The master sync hook's memory of this template, the kernel's `sync_endtime`:
    /// as [`crate::conn::Conn::sync_end`] (deadline at the last sync on a 64 ms grid,
    /// retries in bits 0..2), without a state. Shared by every worker whose
    /// connections the template controls, so it changes by compare-and-swap, as the
    /// kernel's `cmpxchg`.
    sync_end: AtomicU32,
}

impl Template {
    fn new(key: TemplateKey, dest: Arc<Dest>, dport: u16, timeout_ms: u64, now_ms: u64) -> Template {
        dest.bind_template();
        Template {
            key,
            dest,
            dport,
            expires_ms: AtomicU64::new(now_ms + timeout_ms),
            timeout_ms: AtomicU64::new(timeout_ms),
            flags: AtomicU8::new(0),
            controlled: AtomicU32::new(0),
            in_pkts: AtomicU32::new(0),
            // ip_vs_conn_new: `cp->sync_endtime = jiffies & ~3UL`, templates included.
            sync_end: AtomicU32::new(now_ms as u32 & !crate::conn::SYNC_END_LOW),
        }
    }
    /// Virtual time at which the timer fires next.
    pub fn expires_ms(&self) -> u64 {
        self.expires_ms.load(Relaxed)
    }
    /// The timeout a new connection re-arms it with (60 s once postponed).
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.load(Relaxed)
    }
    pub fn controlled(&self) -> u32 {
        self.controlled.load(Relaxed)
    }
    pub fn is_assured(&self) -> bool {
        self.flags.load(Relaxed) & tpl_flags::ASSURED != 0
    }
    pub fn set_assured(&self) {
        self.flags.fetch_or(tpl_flags::ASSURED, Relaxed);
    }
    pub fn is_invalid(&self) -> bool {
        self.flags.load(Relaxed) & tpl_flags::INVALID != 0
    }
    /// `(vport, dport)` as `-L -c` shows them: an invalidated template has had its
    /// ports rewritten to 0xffff.
    pub fn shown_ports(&self) -> (u16, u16) {
        if self.is_invalid() {
            (0xffff, 0xffff)
        } else {
            (self.key.vport, self.dport)
        }
    }
    /// Seconds left before the timer fires (for `-L -c`).
    pub fn expires_in(&self, now_ms: u64) -> u64 {
        self.expires_ms().saturating_sub(now_ms) / 1000
    }

    /// Count one packet of a connection this template controls; returns the count
    /// after it (`atomic_inc_return(&cp->in_pkts)`).
    #[inline]
    pub fn count_packet(&self) -> u32 {
        self.in_pkts.fetch_add(1, Relaxed).wrapping_add(1)
    }
    pub fn in_pkts(&self) -> u32 {
        self.in_pkts.load(Relaxed)
    }
    /// A backup sets the count to `sync_threshold` on each sync of the template
    /// (`ip_vs_proc_conn`).
    pub fn set_in_pkts(&self, n: u32) {
        self.in_pkts.store(n, Relaxed)
    }
    /// The deadline word of the template's last sync (see the field).
    #[inline]
    pub fn sync_end(&self) -> u32 {
        self.sync_end.load(Relaxed)
    }
    /// Record a sync: `orig` (read by [`Template::sync_end`] before the decision)
    /// becomes `n`, unless another worker changed it meanwhile (`false`: that worker
    /// synced the template; the kernel's `cmpxchg(&cp->sync_endtime, orig, n) == orig`).
    #[inline]
    pub fn swap_sync_end(&self, orig: u32, n: u32) -> bool {
        self.sync_end.compare_exchange(orig, n, Relaxed, Relaxed).is_ok()
    }

    /// Let a new connection be controlled by this template.
    pub fn control(self: &Arc<Self>) -> TemplateRef {
        self.controlled.fetch_add(1, Relaxed);
        TemplateRef(self.clone())
    }

    /// Is this template still usable for new connections (`ip_vs_conn.c: ip_vs_check_template`)?
    pub fn is_valid(&self, expire_quiescent: bool) -> bool {
        self.dest.is_available() && !(expire_quiescent && self.dest.weight() == 0)
    }

    fn rearm(&self, now_ms: u64) {
        self.expires_ms.store(now_ms + self.timeout_ms(), Relaxed);
    }

    /// Run the timer up to `now_ms`: `false` when the template is dead. A due template
    /// that still controls connections is postponed in 60 s steps (timeout -> 60 s).
    fn run_timer(&self, now_ms: u64) -> bool {
        let mut exp = self.expires_ms();
        if exp > now_ms {
            return true;
        }
        if self.controlled() == 0 {
            return false;
        }
        while exp <= now_ms {
            exp += POSTPONE_MS;
        }
        self.expires_ms.store(exp, Relaxed);
        self.timeout_ms.store(POSTPONE_MS, Relaxed);
        true
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        self.dest.unbind_template();
    }
}

/// A connection's hold on its controlling template; dropping it releases the control.
#[derive(Debug)]
pub struct TemplateRef(Arc<Template>);

impl std::ops::Deref for TemplateRef {
    type Target = Template;
    fn deref(&self) -> &Template {
        &self.0
    }
}

impl Drop for TemplateRef {
    fn drop(&mut self) {
        self.0.controlled.fetch_sub(1, Relaxed);
    }
}

const SHARDS: usize = 16;

#[derive(Debug, Default)]
struct Shard {
    live: AHashMap<TemplateKey, Arc<Template>>,
    /// Invalidated templates waiting for their timer.
    invalid: Vec<Arc<Template>>,
    next_sweep_ms: u64,
}

impl Shard {
    fn sweep(&mut self, now_ms: u64) -> usize {
        let before = self.live.len() + self.invalid.len();
        self.live.retain(|_, t| t.run_timer(now_ms));
        self.invalid.retain(|t| t.run_timer(now_ms));
        self.next_sweep_ms = now_ms + 1000;
        before - self.live.len() - self.invalid.len()
    }
}

/// All persistence templates of a director.
#[derive(Debug)]
pub struct TemplateTable {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for TemplateTable {
    fn default() -> Self {
        TemplateTable {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

/// What the scheduler decided when no valid template exists: the dest, the template's
/// dport, and the persistence timeout in milliseconds.
pub type NewTemplate = (Arc<Dest>, u16, u64);

impl TemplateTable {
    fn shard(&self, key: &TemplateKey) -> MutexGuard<'_, Shard> {
        let h = ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(key);
        self.shards[(h as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// ip_vs_sched_persist's template step: the valid template for `key`, re-armed to
    /// `now + timeout`; or, when there is none, a new one for the dest `create` picks
    /// (`None` from `create` = no dest available). An invalid template found on the
    /// way is unlinked and left to time out.
    pub fn find_or_create(
        &self,
        key: TemplateKey,
        now_ms: u64,
        expire_quiescent: bool,
        create: impl FnOnce() -> Option<NewTemplate>,
    ) -> Option<Arc<Template>> {
        let mut sh = self.shard(&key);
        if now_ms >= sh.next_sweep_ms {
            sh.sweep(now_ms);
        }
        if let Some(t) = sh.live.get(&key).cloned() {
            if !t.run_timer(now_ms) {
                sh.live.remove(&key);
            } else if t.is_valid(expire_quiescent) {
                t.rearm(now_ms);
                return Some(t);
            } else {
                sh.live.remove(&key);
                t.flags.fetch_or(tpl_flags::INVALID, Relaxed);
                sh.invalid.push(t);
            }
        }
        let (dest, dport, timeout_ms) = create()?;
        let t = Arc::new(Template::new(key, dest, dport, timeout_ms, now_ms));
        sh.live.insert(key, t.clone());
        Some(t)
    }

    /// Install a template handed over by another process (`director::carry`): timer
    /// due `expires_in_ms` from `now_ms`, its current timeout, ASSURED as it was. An
    /// existing live template for the key is kept (and returned).
    pub fn adopt(
        &self,
        key: TemplateKey,
        (dest, dport, timeout_ms): NewTemplate,
        expires_in_ms: u64,
        assured: bool,
        now_ms: u64,
    ) -> Arc<Template> {
        let mut sh = self.shard(&key);
        if let Some(t) = sh.live.get(&key) {
            return t.clone();
        }
        let t = Arc::new(Template::new(key, dest, dport, timeout_ms, now_ms));
        t.expires_ms.store(now_ms + expires_in_ms, Relaxed);
        if assured {
            t.set_assured();
        }
        sh.live.insert(key, t.clone());
        t
    }

    /// A template learnt by sync (`ip_vs_sync.c: ip_vs_proc_conn` with
    /// `IP_VS_CONN_F_TEMPLATE`): the live one for `key` keeps its destination and takes
    /// the message's timeout, re-armed from `now_ms`; otherwise a new one is created.
    pub fn install(
        &self,
        key: TemplateKey,
        dest: Arc<Dest>,
        dport: u16,
        timeout_ms: u64,
        now_ms: u64,
    ) -> Arc<Template> {
        let mut sh = self.shard(&key);
        if let Some(t) = sh.live.get(&key) {
            t.timeout_ms.store(timeout_ms, Relaxed);
            t.rearm(now_ms);
            return t.clone();
        }
        let t = Arc::new(Template::new(key, dest, dport, timeout_ms, now_ms));
        sh.live.insert(key, t.clone());
        t
    }

    /// The live (matchable) template for `key`, without touching its timer.
    pub fn get(&self, key: &TemplateKey) -> Option<Arc<Template>> {
        self.shard(key).live.get(key).cloned()
    }

    /// Run every template's timer up to `now_ms` (call about once a second); returns
    /// how many were freed.
    pub fn expire(&self, now_ms: u64) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).sweep(now_ms))
            .sum()
    }

    /// Every template (live and invalidated), for listings.
    pub fn snapshot(&self) -> Vec<Arc<Template>> {
        let mut v = Vec::new();
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            v.extend(s.live.values().cloned());
            v.extend(s.invalid.iter().cloned());
        }
        v
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.live.len() + s.invalid.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::dest;

    fn key() -> TemplateKey {
        TemplateKey {
            proto: 6,
            snet: Ipv4Addr::new(192, 168, 1, 0),
            vaddr: Ipv4Addr::new(10, 1, 1, 1),
            vport: 443,
        }
    }

    #[test]
    fn created_rearmed_by_new_connections_and_freed() {
        let d = dest(1, 1);
        let tab = TemplateTable::default();
        let t = tab
            .find_or_create(key(), 0, false, || Some((d.clone(), 443, 360_000)))
            .unwrap();
        assert_eq!((t.expires_ms(), d.persistconns.load(Relaxed)), (360_000, 1));
        drop(t);
        let t = tab.find_or_create(key(), 100_000, false, || panic!("found")).unwrap();
        assert_eq!(t.expires_ms(), 460_000, "re-armed by a new connection");
        drop(t);
        assert_eq!(tab.expire(459_000), 0);
        assert_eq!(tab.expire(460_000), 1);
        assert_eq!(d.persistconns.load(Relaxed), 0);
        assert!(tab.is_empty());
    }

    #[test]
    fn postponed_in_60s_steps_while_controlling_then_shrinks() {
        let d = dest(1, 1);
        let tab = TemplateTable::default();
        let t = tab
            .find_or_create(key(), 0, false, || Some((d.clone(), 443, 360_000)))
            .unwrap();
        let r = t.control();
        for s in (1..=3600).map(|s| s * 1000) {
            tab.expire(s);
        }
        // Fired at 360, postponed every 60 s: next firing at 3600 + 60.
        assert_eq!((t.expires_ms(), t.timeout_ms()), (3_660_000, POSTPONE_MS));
        drop(r);
        assert_eq!(tab.expire(3_659_000), 0);
        assert_eq!(tab.expire(3_660_000), 1, "gone within 60 s of the last connection");
    }

    #[test]
    fn invalid_template_is_unlinked_but_counted_until_its_timer() {
        let (d1, d2) = (dest(1, 1), dest(2, 1));
        let tab = TemplateTable::default();
        tab.find_or_create(key(), 0, false, || Some((d1.clone(), 443, 360_000)));
        d1.edit(&crate::service::DestConfig {
            weight: 0,
            ..d1.config()
        });
        let t = tab.find_or_create(key(), 1000, false, || panic!("quiesced is still valid"));
        assert!(Arc::ptr_eq(&t.unwrap().dest, &d1));
        let t = tab
            .find_or_create(key(), 2000, true, || Some((d2.clone(), 443, 360_000)))
            .unwrap();
        assert!(Arc::ptr_eq(&t.dest, &d2));
        assert_eq!(tab.len(), 2);
        assert_eq!(d1.persistconns.load(Relaxed), 1, "the invalid one still counts");
        assert!(tab.snapshot().iter().any(|t| t.shown_ports() == (0xffff, 0xffff)));
        tab.expire(361_000);
        assert_eq!(d1.persistconns.load(Relaxed), 0);
    }

    #[test]
    fn the_sync_word_changes_only_from_what_was_read_as_the_kernels_cmpxchg() {
        let tab = TemplateTable::default();
        let t = tab
            .find_or_create(key(), 1000, false, || Some((dest(1, 1), 443, 360_000)))
            .unwrap();
        assert_eq!(t.sync_end(), 960, "created: the clock on the 64 ms grid");
        // Two workers read the word; the first to swap sends, the other does not.
        let orig = t.sync_end();
        assert!(t.swap_sync_end(orig, 361_024));
        assert!(!t.swap_sync_end(orig, 361_088));
        // An unchanged word always swaps, also to the same value (no merging of
        // repeated sends within one granule).
        assert!(t.swap_sync_end(361_024, 361_024));
        assert_eq!((t.count_packet(), t.count_packet(), t.in_pkts()), (1, 2, 2));
    }
}
