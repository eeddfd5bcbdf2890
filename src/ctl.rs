//! The control plane (ip_vs_ctl.c): validate and apply table changes, then publish a
//! new snapshot to the workers. A rejected change leaves the running table untouched.
//! Errors carry ipvsadm's own wording (`ipvsadm` prints them and exits 255).

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ipvsadm::Command;
use crate::pipeline::Shared;
use crate::sched::{self, DestChange};
use crate::service::{Dest, DestConfig, ServiceAddr, ServiceConfig, ServiceState, ServiceTable, VirtualService};
use crate::stats::Stats;

/// A change the kernel (here: uvs) refused, in ipvsadm's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError(pub &'static str);

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for CtlError {}

pub const E_SVC_EXISTS: CtlError = CtlError("Service already exists");
pub const E_NO_SVC: CtlError = CtlError("No such service");
pub const E_SVC_UNDEFINED: CtlError = CtlError("Service not defined");
pub const E_DEST_EXISTS: CtlError = CtlError("Destination already exists");
pub const E_NO_DEST: CtlError = CtlError("No such destination");
pub const E_NO_SCHED: CtlError = CtlError("Scheduler or persistence engine not found");
pub const E_RANGE: CtlError = CtlError("Numerical result out of range");

/// Applies table changes; one per director, used from the control thread.
pub struct Ctl {
    shared: Arc<Shared>,
    /// Serialises writers; readers (workers) never take it.
    write: Mutex<Trash>,
    /// Bumped by every accepted table change (see [`Ctl::settle`]).
    generation: AtomicU64,
    /// Makes a change effective outside the table (routes, next hops, steering, the
    /// kernel-copy rule): the director's control thread installs it.
    on_change: Mutex<Option<ChangeHook>>,
}

/// See [`Ctl::set_on_change`].
pub type ChangeHook = Arc<dyn Fn() + Send + Sync>;

/// Deleted destinations kept while connections may still reference them; re-adding
/// the same server revives the same object (counters preserved), as IPVS does.
#[derive(Default)]
struct Trash {
    dests: Vec<(ServiceAddr, Arc<Dest>)>,
    /// While a [`Ctl::batch`] runs: the table its commands change, published once when
    /// it ends (so N commands cost one snapshot, not N copies of an N-service table).
    draft: Option<ServiceTable>,
    /// Nesting depth of [`Ctl::batch`].
    batches: usize,
}

/// Observer of newly added VIPs (for gratuitous ARP).
pub type VipHook = Box<dyn Fn([u8; 4]) + Send + Sync>;

impl Ctl {
    pub fn new(shared: Arc<Shared>) -> Ctl {
        Ctl {
            shared,
            write: Mutex::new(Trash::default()),
            generation: AtomicU64::new(0),
            on_change: Mutex::new(None),
        }
    }

    /// Install (or remove) what makes a table change take effect beyond the table.
    pub fn set_on_change(&self, hook: Option<ChangeHook>) {
        *self.on_change.lock().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    /// Counts accepted table changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// If the table changed since `since` (a [`Ctl::generation`]), run the change
    /// hook now: an ipvsadm command is effective when it returns, as with the kernel
    /// (ip_vs_ctl.c applies a change inside the setsockopt call). Called once per
    /// command, so that a `-R` of many lines installs once.
    pub fn settle(&self, since: u64) {
        if self.generation() == since {
            return;
        }
        let hook = self.on_change.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(h) = hook {
            h();
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Trash> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f`'s commands against one draft table and publish it once at the end
    /// (`ipvsadm -R`, a rules file at start). Each command still succeeds or fails on
    /// its own, as IPVS applies restore lines one by one; the workers see the result
    /// when the batch ends (new real servers of existing services at once, as they
    /// are linked in place).
    pub fn batch<R>(&self, f: impl FnOnce(&Ctl) -> R) -> R {
        struct End<'a>(&'a Ctl);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                let mut t = self.0.lock();
                t.batches -= 1;
                if t.batches == 0
                    && let Some(mut d) = t.draft.take()
                {
                    d.refresh();
                    self.0.shared.services.store(Arc::new(d));
                }
            }
        }
        {
            let mut t = self.lock();
            if t.batches == 0 {
                t.draft = Some((**self.shared.services.load()).clone());
            }
            t.batches += 1;
        }
        let _end = End(self);
        f(self)
    }

    /// The table as commands see it: a running batch's draft (so that a `-L` or `-S`
    /// line of `ipvsadm -R` shows the lines before it, as the kernel applies each line
    /// at once), else the published table.
    pub fn current(&self) -> Arc<ServiceTable> {
        match &self.lock().draft {
            Some(d) => Arc::new(d.clone()),
            None => self.shared.services.load_full(),
        }
    }

    /// The service at `addr` in the table commands change.
    fn find(&self, t: &Trash, addr: &ServiceAddr) -> Option<Arc<VirtualService>> {
        match &t.draft {
            Some(d) => d.find(addr).cloned(),
            None => self.shared.services.load().find(addr).cloned(),
        }
    }

    /// Change the table: the batch's draft, or a copy published at once (derived sets
    /// recomputed).
    fn change<R>(&self, t: &mut Trash, f: impl FnOnce(&mut ServiceTable) -> R) -> R {
        match &mut t.draft {
            Some(d) => f(d),
            None => {
                let mut next = (**self.shared.services.load()).clone();
                let r = f(&mut next);
                next.refresh();
                self.shared.services.store(Arc::new(next));
                r
            }
        }
    }

    /// `-A`.
    pub fn add_service(&self, cfg: &ServiceConfig) -> Result<(), CtlError> {
        let mut t = self.lock();
        if self.find(&t, &cfg.addr).is_some() {
            return Err(E_SVC_EXISTS);
        }
        let scheduler = sched::new_scheduler(&cfg.scheduler, &[], cfg.flags).ok_or(E_NO_SCHED)?;
        let svc = Arc::new(VirtualService {
            addr: cfg.addr,
            state: Mutex::new(ServiceState {
                config: cfg.clone(),
                dests: Vec::new(),
                scheduler,
            }),
            stats: Arc::new(Stats::default()),
        });
        self.change(&mut t, |next| next.insert(svc));
        Ok(())
    }

    /// `-E`: replace scheduler, flags and persistence (ipvsadm sends every option).
    pub fn edit_service(&self, cfg: &ServiceConfig) -> Result<(), CtlError> {
        let t = self.lock();
        let svc = self.find(&t, &cfg.addr).ok_or(E_NO_SVC)?;
        let mut st = svc.lock();
        let st = &mut *st;
        if st.config.scheduler != cfg.scheduler {
            st.scheduler = sched::new_scheduler(&cfg.scheduler, &st.dests, cfg.flags).ok_or(E_NO_SCHED)?;
        } else {
            st.scheduler.update(&st.dests, cfg.flags, DestChange::ServiceEdited);
        }
        st.config = cfg.clone();
        Ok(())
    }

    /// `-D`.
    pub fn delete_service(&self, addr: &ServiceAddr) -> Result<(), CtlError> {
        let mut t = self.lock();
        self.find(&t, addr).ok_or(E_NO_SVC)?;
        let svc = self.change(&mut t, |next| next.remove(addr)).ok_or(E_NO_SVC)?;
        for d in svc.lock().dests.drain(..) {
            d.set_available(false);
        }
        Ok(())
    }

    /// `-C`.
    pub fn clear(&self) {
        let mut t = self.lock();
        self.change(&mut t, |cur| {
            for svc in cur.services() {
                for d in svc.lock().dests.drain(..) {
                    d.set_available(false);
                }
            }
            *cur = cur.emptied();
        });
    }

    /// `-a`: link a destination at the head of the service's list.
    pub fn add_dest(&self, addr: &ServiceAddr, cfg: &DestConfig) -> Result<(), CtlError> {
        let mut trash = self.lock();
        check_dest(cfg)?;
        let svc = self.find(&trash, addr).ok_or(E_SVC_UNDEFINED)?;
        let mut guard = svc.lock();
        if guard.dests.iter().any(|d| d.addr == cfg.addr && d.port == cfg.port) {
            return Err(E_DEST_EXISTS);
        }
        let revived = trash
            .dests
            .iter()
            .position(|(a, d)| a == addr && d.addr == cfg.addr && d.port == cfg.port)
            .map(|i| trash.dests.swap_remove(i).1);
        let dest = match revived {
            Some(d) => {
                d.edit(cfg);
                d.set_available(true);
                d
            }
            None => Arc::new(Dest::with_service_stats(cfg, svc.stats.clone())),
        };
        let st = &mut *guard;
        st.dests.insert(0, dest);
        st.scheduler.update(&st.dests, st.config.flags, DestChange::Added);
        drop(guard);
        // A new snapshot for the derived sets (NAT real servers).
        self.change(&mut trash, |_| ());
        Ok(())
    }

    /// `-e`: replace method, weight and thresholds.
    pub fn edit_dest(&self, addr: &ServiceAddr, cfg: &DestConfig) -> Result<(), CtlError> {
        let t = self.lock();
        check_dest(cfg)?;
        let svc = self.find(&t, addr).ok_or(E_SVC_UNDEFINED)?;
        let mut guard = svc.lock();
        let st = &mut *guard;
        let index = st
            .dests
            .iter()
            .position(|d| d.addr == cfg.addr && d.port == cfg.port)
            .ok_or(E_NO_DEST)?;
        let old = st.dests[index].clone();
        old.edit(cfg);
        st.scheduler
            .update(&st.dests, st.config.flags, DestChange::Edited { index });
        Ok(())
    }

    /// `-d`: unlink a destination; it stays in the trash while connections use it.
    pub fn delete_dest(&self, addr: &ServiceAddr, daddr: std::net::IpAddr, dport: u16) -> Result<(), CtlError> {
        let mut trash = self.lock();
        let svc = self.find(&trash, addr).ok_or(E_SVC_UNDEFINED)?;
        let mut guard = svc.lock();
        let st = &mut *guard;
        let index = st
            .dests
            .iter()
            .position(|d| d.addr == daddr && d.port == dport)
            .ok_or(E_NO_DEST)?;
        let d = st.dests.remove(index);
        d.set_available(false);
        st.scheduler
            .update(&st.dests, st.config.flags, DestChange::Deleted { index });
        trash.dests.push((*addr, d));
        Ok(())
    }

    /// `--set tcp tcpfin udp` (0 keeps a value).
    pub fn set_timeouts(&self, tcp: u32, tcpfin: u32, udp: u32) {
        self.shared.ipvs.timeouts.set(tcp, tcpfin, udp);
    }

    /// Free trashed destinations no connection references any more.
    pub fn purge_trash(&self) {
        self.lock().dests.retain(|(_, d)| Arc::strong_count(d) > 1);
    }

    /// Apply one table-changing ipvsadm command. Other commands (listing, saving,
    /// daemons) are not table changes and are refused here.
    pub fn apply(&self, cmd: &Command) -> Result<(), CtlError> {
        let r = self.apply_one(cmd);
        if r.is_ok() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        r
    }

    fn apply_one(&self, cmd: &Command) -> Result<(), CtlError> {
        match cmd {
            Command::AddService(c) => self.add_service(c),
            Command::EditService(c) => self.edit_service(c),
            Command::DeleteService(a) => self.delete_service(a),
            Command::Clear => {
                self.clear();
                Ok(())
            }
            Command::AddServer(a, d) => self.add_dest(a, d),
            Command::EditServer(a, d) => self.edit_dest(a, d),
            Command::DeleteServer(a, ip, port) => self.delete_dest(a, *ip, *port),
            Command::SetTimeouts { tcp, tcpfin, udp } => {
                self.set_timeouts(*tcp, *tcpfin, *udp);
                Ok(())
            }
            Command::Zero(None) => {
                let all = match &self.lock().draft {
                    Some(d) => d.services().to_vec(),
                    None => self.shared.services.load().services().to_vec(),
                };
                for s in &all {
                    s.stats.zero();
                    for d in s.lock().dests.iter() {
                        d.stats.zero();
                    }
                }
                Ok(())
            }
            Command::Zero(Some(a)) => {
                let s = self.find(&self.lock(), a).ok_or(E_NO_SVC)?;
                s.stats.zero();
                for d in s.lock().dests.iter() {
                    d.stats.zero();
                }
                Ok(())
            }
            _ => Err(CtlError("not a table change")),
        }
    }

    /// Every live destination (for neighbour resolution).
    pub fn all_dests(&self) -> Vec<Arc<Dest>> {
        let cur = self.shared.services.load();
        let mut v = Vec::new();
        for s in cur.services() {
            v.extend(s.lock().dests.iter().cloned());
        }
        v
    }
}

fn check_dest(cfg: &DestConfig) -> Result<(), CtlError> {
    if cfg.weight < 0 || cfg.l_threshold > cfg.u_threshold {
        return Err(E_RANGE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{ForwardMethod, Netmask, Protocol, TunnelCsum, TunnelType};
    use std::net::Ipv4Addr;

    pub(crate) fn svc_cfg(port: u16, sched: &str) -> ServiceConfig {
        ServiceConfig {
            addr: ServiceAddr::Inet {
                proto: Protocol::Tcp,
                addr: "10.0.0.100".parse().unwrap(),
                port,
            },
            scheduler: sched.into(),
            flags: 0,
            timeout: 0,
            netmask: Netmask::V4([255, 255, 255, 255].into()),
            pe: None,
        }
    }
    pub(crate) fn dest_cfg(last: u8, weight: i32) -> DestConfig {
        DestConfig {
            addr: std::net::IpAddr::from([10, 0, 0, last]),
            port: 80,
            method: ForwardMethod::Route,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TunnelType::Ipip,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
        }
    }

    #[test]
    fn errors_leave_the_table_untouched() {
        let ctl = Ctl::new(Arc::new(Shared::new(vec![])));
        let s = svc_cfg(80, "rr");
        ctl.add_service(&s).unwrap();
        assert_eq!(ctl.add_service(&s), Err(E_SVC_EXISTS));
        assert_eq!(ctl.add_service(&svc_cfg(81, "nope")), Err(E_NO_SCHED));
        assert!(
            !ctl.shared()
                .services
                .load()
                .services()
                .iter()
                .any(|v| matches!(v.addr, ServiceAddr::Inet { port: 81, .. }))
        );
        ctl.add_dest(&s.addr, &dest_cfg(11, 1)).unwrap();
        assert_eq!(ctl.add_dest(&s.addr, &dest_cfg(11, 1)), Err(E_DEST_EXISTS));
        assert_eq!(
            ctl.add_dest(&svc_cfg(82, "rr").addr, &dest_cfg(11, 1)),
            Err(E_SVC_UNDEFINED)
        );
        assert_eq!(ctl.edit_dest(&s.addr, &dest_cfg(12, 1)), Err(E_NO_DEST));
        let mut bad = dest_cfg(11, 1);
        bad.l_threshold = 5;
        assert_eq!(ctl.edit_dest(&s.addr, &bad), Err(E_RANGE));
        assert_eq!(ctl.all_dests()[0].l_threshold(), 0);
        assert_eq!(ctl.delete_service(&svc_cfg(99, "rr").addr), Err(E_NO_SVC));
        assert_eq!(ctl.edit_service(&svc_cfg(99, "rr")), Err(E_NO_SVC));
    }

    #[test]
    fn a_batch_publishes_once_at_its_end_and_keeps_per_command_errors() {
        let ctl = Ctl::new(Arc::new(Shared::new(vec![])));
        let before = ctl.shared().services.load_full();
        let mut nat = dest_cfg(11, 1);
        nat.method = ForwardMethod::Masq;
        let errs = ctl.batch(|ctl| {
            let s = svc_cfg(80, "rr");
            let mut errs = vec![ctl.add_service(&s), ctl.add_service(&s)];
            errs.push(ctl.add_dest(&s.addr, &nat));
            errs.push(ctl.add_dest(&svc_cfg(81, "rr").addr, &nat));
            // Nested batches publish with the outer one.
            ctl.batch(|ctl| errs.push(ctl.add_service(&svc_cfg(82, "wlc"))));
            assert!(
                Arc::ptr_eq(&before, &ctl.shared().services.load_full()),
                "nothing published inside the batch"
            );
            errs
        });
        assert_eq!(errs, [Ok(()), Err(E_SVC_EXISTS), Ok(()), Err(E_SVC_UNDEFINED), Ok(())]);
        let now = ctl.shared().services.load();
        assert_eq!(now.services().len(), 2);
        assert!(
            now.is_vip(Ipv4Addr::new(10, 0, 0, 100)) && now.is_nat_rip(Ipv4Addr::new(10, 0, 0, 11)),
            "derived sets refreshed"
        );
        // Outside a batch every command publishes at once.
        ctl.delete_service(&svc_cfg(82, "rr").addr).unwrap();
        assert_eq!(ctl.shared().services.load().services().len(), 1);
    }

    #[test]
    fn head_insertion_and_trash_revival() {
        let ctl = Ctl::new(Arc::new(Shared::new(vec![])));
        let s = svc_cfg(80, "rr");
        ctl.add_service(&s).unwrap();
        for n in [1, 2, 3] {
            ctl.add_dest(&s.addr, &dest_cfg(n, 1)).unwrap();
        }
        let order: Vec<_> = ctl.all_dests().iter().map(|d| d.addr.to_string()).collect();
        assert_eq!(order, ["10.0.0.3", "10.0.0.2", "10.0.0.1"]);
        let two = ctl.all_dests()[1].clone();
        two.bind_conn();
        ctl.delete_dest(&s.addr, "10.0.0.2".parse().unwrap(), 80).unwrap();
        assert!(!two.is_available());
        ctl.add_dest(&s.addr, &dest_cfg(2, 5)).unwrap();
        let head = ctl.all_dests()[0].clone();
        assert!(Arc::ptr_eq(&head, &two), "revived from the trash at the head");
        assert!(head.is_available());
        assert_eq!((head.weight(), head.inactive()), (5, 1));
        ctl.delete_service(&s.addr).unwrap();
        assert!(!ctl.shared().services.load().is_vip(Ipv4Addr::new(10, 0, 0, 100)));
    }
}
