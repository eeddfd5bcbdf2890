//! `uvs run --keepalived FILE`: keepalived's checker process on the uvs table.
//!
//! - at start: the file is read (a fatal error starts nothing), `lvs_flush` and
//!   `lvs_timeouts` applied, the services it declares reconciled (every real server
//!   alive, `alpha` ones failed);
//! - one thread then runs every checker ([`crate::check::Probes`]) with keepalived's
//!   state machine (check_tcp.c `tcp_epilog`, check_http.c `epilog`, check_misc.c
//!   `misc_check_child_thread`), and on a server's transition updates only that
//!   virtual server (ipwrapper.c `perform_svr_state`, `update_quorum_state`), logging
//!   keepalived's words;
//! - SIGHUP re-reads the file: a bad file is logged and the running configuration
//!   stays; otherwise only the difference is applied and checkers of unchanged servers
//!   keep their state.
//!
//! The services the file declares are owned by it; other services (rules file, live
//! ipvsadm) are left alone, and a live change to an owned service lasts until the next
//! reconciliation of that service.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::carried::{self, Carried};
use super::conf::{CheckKind, Config};
use super::translate::{self, Table};
use crate::check::{Outcome, Probe, Probes, Spec};
use crate::ctl::Ctl;
use crate::service::ServiceAddr;

/// A checker's identity across reloads: its virtual server, real server, position and
/// configuration. Same identity: the running state carries over.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    vs: super::conf::VsAddr,
    rs: (std::net::IpAddr, u16),
    index: usize,
    /// The checker's configuration, formatted (Checker holds no Hash).
    conf: String,
}

/// One checker's running state.
#[derive(Debug, Clone)]
struct Rt {
    key: Key,
    vs: usize,
    rs: usize,
    spec: Spec,
    kind: &'static str,
    up: bool,
    has_run: bool,
    retry: u32,
    retry_it: u32,
    delay_loop: Duration,
    delay_before_retry: Duration,
    log_all: bool,
    next: Instant,
    attempt: Option<u64>,
    dyn_weight: Option<u32>,
    last: Option<(Outcome, Duration)>,
    transitions: u64,
    /// ha_suspend: false while the virtual server's address is not on this host.
    enabled: bool,
}

/// What `uvs checks` shows about one checker.
#[derive(Debug, Clone)]
pub struct Status {
    pub vs: String,
    pub rs: String,
    pub kind: &'static str,
    pub up: bool,
    pub rs_alive: bool,
    pub weight: i64,
    pub transitions: u64,
    pub last: String,
    pub latency_ms: f64,
}

struct State {
    cfg: Config,
    checkers: Vec<Rt>,
    /// (vs index, rs index) -> alive.
    alive: HashMap<(usize, usize), bool>,
    /// vs index -> quorum state up.
    quorum_up: Vec<bool>,
    owned: HashSet<ServiceAddr>,
    /// Real servers taken out by passive checks, with the first checker attempt id
    /// that may bring them back (see [`super::passive`]).
    passive_down: HashMap<RsKey, u64>,
}

/// A real server of a virtual server, by address (stable across reloads).
type RsKey = (super::conf::VsAddr, std::net::IpAddr, u16);

/// The running keepalived configuration.
pub struct Keepalived {
    ctl: Arc<Ctl>,
    path: PathBuf,
    config_id: Option<String>,
    state: State,
    status: Arc<Mutex<Vec<Status>>>,
    stop: Arc<AtomicBool>,
    /// Stopping for a handover ([`Running::hand_over`]).
    handing_over: Arc<AtomicBool>,
    /// The status board needs every line again / these checkers' lines ([`Self::publish`]).
    publish_all: bool,
    touched: Vec<usize>,
    /// `--passive-check` virtual servers, and each real server's recent failures.
    passive: Vec<super::passive::PassiveSpec>,
    windows: HashMap<RsKey, super::passive::Window>,
}

fn kind_name(k: &CheckKind) -> &'static str {
    match k {
        CheckKind::Tcp => "TCP_CHECK",
        CheckKind::Http { ssl: false, .. } => "HTTP_GET",
        CheckKind::Http { ssl: true, .. } => "SSL_GET",
        CheckKind::Misc { .. } => "MISC_CHECK",
        CheckKind::Udp(_) => "UDP_CHECK",
        CheckKind::Dns { .. } => "DNS_CHECK",
        CheckKind::Ping => "PING_CHECK",
        CheckKind::Smtp { .. } => "SMTP_CHECK",
        CheckKind::Other(_) => "OTHER",
    }
}

fn micros(us: u64) -> Duration {
    Duration::from_micros(us)
}

/// A cheap per-checker pseudo-random fraction for `warmup` (no crate for this).
fn spread(key: &Key) -> f64 {
    use std::hash::BuildHasher;
    (std::collections::hash_map::RandomState::new().hash_one(key) % 10_000) as f64 / 10_000.0
}

/// Run a notify script (notify_up/down, quorum_up/down) as keepalived's
/// `system_call_script` does: exactly its configured words (nothing appended), in its
/// own process group, not waited for. It runs as the user `uvs run` runs as (see
/// README "keepalived": scripts and their `user`).
fn spawn_script(s: &super::conf::Script, children: &mut Vec<std::process::Child>) {
    use std::os::unix::process::CommandExt;
    match std::process::Command::new(&s.argv[0])
        .args(&s.argv[1..])
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(c) => children.push(c),
        Err(e) => tracing::warn!("Error exec-ing command '{}': {e}", s.argv[0]),
    }
}

/// Load and validate a configuration; diagnostics go to the log.
fn read(path: &std::path::Path, config_id: Option<&str>) -> Result<Config, String> {
    let (cfg, diags) = super::load(path, config_id);
    for d in &diags {
        match d.severity {
            super::Severity::Fatal => tracing::error!("{d}"),
            super::Severity::Warning => tracing::warn!("{d}"),
            super::Severity::Info => tracing::info!("{d}"),
        }
    }
    if super::is_fatal(&diags) {
        let first = diags.iter().find(|d| d.severity == super::Severity::Fatal).unwrap();
        return Err(format!("{}: {first}", path.display()));
    }
    for vs in &cfg.services {
        for rs in &vs.real_servers {
            for c in &rs.checkers {
                if let Some(n) = &c.note {
                    tracing::info!("{n}");
                }
                if let CheckKind::Other(o) = &c.kind {
                    tracing::warn!(
                        "({}: Line {}) {o} is not supported by uvs - the checker is ignored",
                        c.file,
                        c.line
                    );
                }
            }
        }
    }
    Ok(cfg)
}

fn build_checkers(cfg: &Config, now: Instant, old: &HashMap<Key, Rt>) -> Vec<Rt> {
    let mut out = Vec::new();
    for (vi, vs) in cfg.services.iter().enumerate() {
        for (ri, rs) in vs.real_servers.iter().enumerate() {
            for (ci, c) in rs.checkers.iter().enumerate() {
                let probe = match &c.kind {
                    CheckKind::Tcp => Probe::Tcp,
                    CheckKind::Http {
                        ssl,
                        urls,
                        protocol,
                        virtualhost,
                        enable_sni,
                    } => Probe::Http {
                        urls: urls.clone(),
                        protocol: protocol.clone(),
                        virtualhost: virtualhost
                            .clone()
                            .or(rs.virtualhost.clone())
                            .or(vs.virtualhost.clone()),
                        ssl: *ssl,
                        sni: *enable_sni,
                    },
                    CheckKind::Udp(u) => Probe::Udp(u.clone()),
                    CheckKind::Dns { qtype, name } => Probe::Dns {
                        qtype: *qtype,
                        name: name.clone(),
                    },
                    CheckKind::Ping => Probe::Ping,
                    CheckKind::Smtp { helo_name } => Probe::Smtp {
                        helo: helo_name.clone(),
                    },
                    CheckKind::Misc {
                        script: Some(s),
                        dynamic,
                        ..
                    } => Probe::Script {
                        argv: s.argv.clone(),
                        dynamic: *dynamic,
                    },
                    _ => continue,
                };
                let timeout = match &c.kind {
                    CheckKind::Misc { timeout, .. } => timeout.unwrap_or(c.delay_loop.unwrap_or(60_000_000)),
                    _ => c.connect_timeout.unwrap_or(5_000_000),
                };
                let dst = SocketAddr::new(c.connect_ip.unwrap_or(rs.addr), c.connect_port.unwrap_or(rs.port));
                let bind = c.bindto.map(|a| SocketAddr::new(a, c.bind_port.unwrap_or(0)));
                let key = Key {
                    vs: vs.addr.clone(),
                    rs: (rs.addr, rs.port),
                    index: ci,
                    conf: format!(
                        "{:?}",
                        (&c.kind, dst, bind, timeout, c.retry, c.delay_loop, c.delay_before_retry)
                    ),
                };
                let alpha = c.alpha.unwrap_or(false);
                let delay_loop = micros(c.delay_loop.unwrap_or(60_000_000));
                let warmup = micros(c.warmup.unwrap_or(0));
                let fresh = Rt {
                    vs: vi,
                    rs: ri,
                    spec: Spec {
                        probe,
                        dst,
                        bind,
                        timeout: micros(timeout),
                    },
                    kind: kind_name(&c.kind),
                    up: !alpha,
                    has_run: false,
                    retry: c.retry.unwrap_or(1),
                    // With alpha, one failure is enough initially (validate_check_config).
                    retry_it: if alpha { c.retry.unwrap_or(1) } else { 0 },
                    delay_loop,
                    delay_before_retry: micros(c.delay_before_retry.unwrap_or(1_000_000)),
                    log_all: c.log_all_failures,
                    next: now + warmup.mul_f64(spread(&key)),
                    attempt: None,
                    dyn_weight: None,
                    last: None,
                    transitions: 0,
                    enabled: true,
                    key: key.clone(),
                };
                out.push(match old.get(&key) {
                    Some(o) => Rt {
                        vs: vi,
                        rs: ri,
                        ..o.clone()
                    },
                    None => fresh,
                });
            }
        }
    }
    out
}

impl State {
    fn rs_alive(&self, vi: usize, ri: usize) -> bool {
        self.checkers.iter().filter(|c| c.vs == vi && c.rs == ri).all(|c| c.up)
            && !self.passive_down.contains_key(&self.rs_key(vi, ri))
    }

    fn rs_key(&self, vi: usize, ri: usize) -> RsKey {
        let vs = &self.cfg.services[vi];
        (vs.addr.clone(), vs.real_servers[ri].addr, vs.real_servers[ri].port)
    }

    /// misc_dynamic's weight for a real server, if a MISC_CHECK set one.
    fn dyn_weight(&self, vi: usize, ri: usize) -> Option<u32> {
        self.checkers
            .iter()
            .filter(|c| c.vs == vi && c.rs == ri)
            .find_map(|c| c.dyn_weight)
    }

    fn live_weight(&self, vi: usize) -> u64 {
        let vs = &self.cfg.services[vi];
        (0..vs.real_servers.len())
            .filter(|&ri| self.alive.get(&(vi, ri)).copied().unwrap_or(true))
            .map(|ri| {
                self.dyn_weight(vi, ri)
                    .unwrap_or(vs.real_servers[ri].weight.unwrap_or(1)) as u64
            })
            .sum()
    }

    /// The destinations of virtual server `vi` now.
    fn dests(&self, vi: usize) -> Vec<crate::service::DestConfig> {
        let vs = &self.cfg.services[vi];
        if !self.quorum_up[vi]
            && let Some(s) = &vs.sorry
        {
            // Quorum lost with a sorry server: the alive servers leave the pool
            // (perform_quorum_state), failed inhibited ones stay at weight 0.
            let mut out: Vec<_> = vs
                .real_servers
                .iter()
                .enumerate()
                .filter(|&(ri, rs)| !self.alive.get(&(vi, ri)).copied().unwrap_or(true) && rs.inhibit.unwrap_or(false))
                .map(|(_, rs)| translate::dest_config(rs, 0))
                .collect();
            if !out.iter().any(|d| d.addr == s.addr && d.port == s.port) {
                out.push(translate::dest_config(s, s.weight.unwrap_or(1) as i32));
            }
            return out;
        }
        vs.real_servers
            .iter()
            .enumerate()
            .filter_map(|(ri, rs)| {
                let alive = self.alive.get(&(vi, ri)).copied().unwrap_or(true);
                translate::rs_weight(rs, alive, self.dyn_weight(vi, ri)).map(|w| translate::dest_config(rs, w))
            })
            .collect()
    }

    fn table_for(&self, vi: usize) -> Table {
        let vs = &self.cfg.services[vi];
        let dests = self.dests(vi);
        translate::service_addrs(&self.cfg, vs)
            .into_iter()
            .map(|a| (translate::service_config(vs, a), dests.clone()))
            .collect()
    }

    fn table(&self) -> Table {
        (0..self.cfg.services.len()).flat_map(|vi| self.table_for(vi)).collect()
    }

    fn init_alive_and_quorum(&mut self) {
        self.alive.clear();
        for vi in 0..self.cfg.services.len() {
            for ri in 0..self.cfg.services[vi].real_servers.len() {
                let a = self.rs_alive(vi, ri);
                self.alive.insert((vi, ri), a);
            }
        }
        self.quorum_up = (0..self.cfg.services.len())
            .map(|vi| {
                let vs = &self.cfg.services[vi];
                self.live_weight(vi) >= (vs.quorum + vs.hysteresis) as u64
            })
            .collect();
    }
}

impl Keepalived {
    /// Read `path` and reconcile its services on `ctl`. Nothing is changed when the
    /// file has a fatal error or the control plane refuses its table.
    /// The addresses the file's `vrrp_instance`s move (VIP ownership, issue 18).
    pub fn vrrp_vips(&self) -> &[super::vrrp::VrrpVip] {
        &self.state.cfg.vrrp_vips
    }

    pub fn load(ctl: Arc<Ctl>, path: PathBuf, config_id: Option<String>) -> Result<Keepalived, String> {
        let cfg = read(&path, config_id.as_deref())?;
        let now = Instant::now();
        let checkers = build_checkers(&cfg, now, &HashMap::new());
        let mut state = State {
            cfg,
            checkers,
            alive: HashMap::new(),
            quorum_up: Vec::new(),
            owned: HashSet::new(),
            passive_down: HashMap::new(),
        };
        state.init_alive_and_quorum();
        let table = state.table();
        if state.cfg.lvs_flush {
            ctl.clear();
        }
        translate::reconcile(&ctl, &table, &HashSet::new()).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some((tcp, tcpfin, udp)) = state.cfg.lvs_timeouts {
            ctl.set_timeouts(tcp, tcpfin, udp);
        }
        state.owned = table.iter().map(|(s, _)| s.addr).collect();
        tracing::info!(
            "keepalived: {} virtual servers, {} checkers from {}",
            state.cfg.services.len(),
            state.checkers.len(),
            path.display()
        );
        Ok(Keepalived {
            ctl,
            path,
            config_id,
            state,
            status: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            handing_over: Arc::new(AtomicBool::new(false)),
            publish_all: true,
            touched: Vec::new(),
            passive: Vec::new(),
            windows: HashMap::new(),
        })
    }

    /// Turn on passive checks (`--passive-check`) for these virtual servers: each must
    /// be a `virtual_server IP PORT` of the file with NAT real servers.
    pub fn set_passive(&mut self, specs: Vec<super::passive::PassiveSpec>) -> Result<(), String> {
        for sp in &specs {
            let vss: Vec<usize> = self.passive_targets(sp).collect();
            if vss.is_empty() {
                return Err(format!(
                    "--passive-check {}: {} declares no virtual_server {} {} with NAT real servers",
                    SocketAddr::new(sp.addr, sp.port),
                    self.path.display(),
                    sp.addr,
                    sp.port
                ));
            }
            for vi in vss {
                let vs = &self.state.cfg.services[vi];
                for (ri, rs) in vs.real_servers.iter().enumerate() {
                    if is_nat(rs) && !self.state.checkers.iter().any(|c| c.vs == vi && c.rs == ri) {
                        tracing::warn!(
                            "passive check: real server {} of VS {} has no checker; passive checks do not take it out (nothing could bring it back)",
                            vs.fmt_rs(rs),
                            vs.fmt()
                        );
                    }
                }
            }
            tracing::info!(
                "passive check on VS {}: {} failures within {} s take a NAT real server out",
                SocketAddr::new(sp.addr, sp.port),
                sp.failures,
                sp.window.as_secs_f64()
            );
        }
        self.passive = specs;
        Ok(())
    }

    /// The virtual servers a `--passive-check` names (with a NAT real server).
    fn passive_targets<'a>(&'a self, sp: &'a super::passive::PassiveSpec) -> impl Iterator<Item = usize> + 'a {
        self.state.cfg.services.iter().enumerate().filter_map(move |(vi, vs)| {
            (vs.addr == super::conf::VsAddr::Inet(sp.addr, sp.port) && vs.real_servers.iter().any(is_nat)).then_some(vi)
        })
    }

    /// Every checker's state (for `uvs checks` and metrics).
    pub fn status(&self) -> Arc<Mutex<Vec<Status>>> {
        self.status.clone()
    }

    /// The checkers' state to carry to a new process at `now` ([`super::carried`]).
    fn carry_out(&self, now: Instant) -> Carried {
        let s = &self.state;
        let word = |vi: usize| carried::vs_word(&s.cfg.services[vi]);
        let mut passive_down = Vec::new();
        for (vi, vs) in s.cfg.services.iter().enumerate() {
            for (ri, rs) in vs.real_servers.iter().enumerate() {
                if s.passive_down.contains_key(&s.rs_key(vi, ri)) {
                    passive_down.push(carried::PassiveDown {
                        vs: word(vi),
                        rs: SocketAddr::new(rs.addr, rs.port),
                    });
                }
            }
        }
        Carried {
            vss: (0..s.cfg.services.len())
                .map(|vi| carried::VsState {
                    vs: word(vi),
                    quorum_up: s.quorum_up.get(vi).copied().unwrap_or(true),
                })
                .collect(),
            passive_down,
            checkers: s
                .checkers
                .iter()
                .map(|c| carried::CheckerState {
                    vs: word(c.vs),
                    rs: SocketAddr::new(c.key.rs.0, c.key.rs.1),
                    index: c.key.index,
                    conf: carried::conf_hash(&c.key.conf),
                    up: c.up,
                    has_run: c.has_run,
                    retry_it: c.retry_it,
                    next: c.next.saturating_duration_since(now),
                    dyn_weight: c.dyn_weight,
                    transitions: c.transitions,
                    last: c.last.clone(),
                })
                .collect(),
        }
    }

    /// Take over the checkers' state of the process this one replaces (`text` from
    /// [`Running::hand_over`]), before the checker thread starts: a checker of the
    /// same virtual server, real server, position and configuration goes on where it
    /// was (up or down, retries, misc_dynamic weight, last result, next attempt), a
    /// passive removal stays, a virtual server keeps its quorum state; the others
    /// start as keepalived starts them. The table follows at once, so a server the old
    /// process had taken out is never put back. Returns the checkers carried; an
    /// unreadable text carries nothing and changes nothing.
    pub fn carry_in(&mut self, text: &str) -> Result<usize, String> {
        let c = Carried::decode(text)?;
        let now = Instant::now();
        let by_key: HashMap<(&str, SocketAddr, usize, u64), &carried::CheckerState> = c
            .checkers
            .iter()
            .map(|k| ((k.vs.as_str(), k.rs, k.index, k.conf), k))
            .collect();
        let words: Vec<String> = self.state.cfg.services.iter().map(carried::vs_word).collect();
        let mut n = 0;
        for rt in self.state.checkers.iter_mut() {
            let key = (
                words[rt.vs].as_str(),
                SocketAddr::new(rt.key.rs.0, rt.key.rs.1),
                rt.key.index,
                carried::conf_hash(&rt.key.conf),
            );
            let Some(k) = by_key.get(&key) else { continue };
            rt.up = k.up;
            rt.has_run = k.has_run;
            rt.retry_it = k.retry_it;
            rt.next = now + k.next;
            rt.dyn_weight = k.dyn_weight;
            rt.transitions = k.transitions;
            rt.last = k.last.clone();
            n += 1;
        }
        let down: HashSet<(&str, SocketAddr)> = c.passive_down.iter().map(|p| (p.vs.as_str(), p.rs)).collect();
        for (vi, vs) in self.state.cfg.services.iter().enumerate() {
            for (ri, rs) in vs.real_servers.iter().enumerate() {
                if down.contains(&(words[vi].as_str(), SocketAddr::new(rs.addr, rs.port))) {
                    // Any attempt of this process may bring it back (ids start at 1).
                    let key = self.state.rs_key(vi, ri);
                    self.state.passive_down.insert(key, 0);
                }
            }
        }
        self.state.init_alive_and_quorum();
        let quorum: HashMap<&str, bool> = c.vss.iter().map(|v| (v.vs.as_str(), v.quorum_up)).collect();
        for (vi, w) in words.iter().enumerate() {
            if let Some(&q) = quorum.get(w.as_str()) {
                self.state.quorum_up[vi] = q;
            }
        }
        let table = self.state.table();
        translate::reconcile(&self.ctl, &table, &self.state.owned)
            .map_err(|e| format!("{}: the carried checker state: {e}", self.path.display()))?;
        self.state.owned = table.iter().map(|(s, _)| s.addr).collect();
        self.publish_all = true;
        self.publish();
        Ok(n)
    }

    /// Start the checker thread (after the privilege drop: it holds no capabilities;
    /// scripts run as the user uvs runs as). SIGHUP reloads.
    pub fn spawn(mut self) -> Result<Running, String> {
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).map_err(|e| e.to_string())?;
        let stop = self.stop.clone();
        let status = self.status.clone();
        let handing_over = self.handing_over.clone();
        let t = std::thread::Builder::new()
            .name("uvs-checkers".into())
            .spawn(move || {
                self.main(hup);
                self
            })
            .map_err(|e| e.to_string())?;
        Ok(Running {
            stop,
            handing_over,
            status,
            thread: Some(t),
        })
    }

    fn main(&mut self, hup: Arc<AtomicBool>) {
        let mut probes = Probes::new();
        let mut next_id: u64 = 1;
        let mut passive_at = Instant::now();
        let mut attempts: HashMap<u64, Key> = HashMap::new();
        let mut children: Vec<std::process::Child> = Vec::new();
        // check_api.c `start_checkers`.
        self.ha_suspend(true);
        let mut next_addr_scan = Instant::now() + Duration::from_secs(1);
        while !self.stop.load(Ordering::Relaxed) {
            if hup.swap(false, Ordering::Relaxed) {
                self.reload(&mut probes, &mut attempts);
                self.ha_suspend(true);
            }
            let now = Instant::now();
            if now >= next_addr_scan {
                self.ha_suspend(false);
                next_addr_scan = now + Duration::from_secs(1);
            }
            for c in self.state.checkers.iter_mut() {
                if c.attempt.is_none() && c.next <= now && !c.enabled {
                    // A suspended checker keeps its state and looks again later.
                    c.next = now + c.delay_loop;
                }
                if c.attempt.is_none() && c.next <= now {
                    let id = next_id;
                    next_id += 1;
                    c.attempt = Some(id);
                    attempts.insert(id, c.key.clone());
                    probes.start(id, &c.spec);
                }
            }
            let wait = self
                .state
                .checkers
                .iter()
                .filter(|c| c.attempt.is_none())
                .map(|c| c.next.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_millis(200))
                .min(if self.passive.is_empty() {
                    Duration::from_millis(200)
                } else {
                    super::passive::POLL
                });
            for (id, outcome, latency) in probes.poll(wait) {
                let Some(key) = attempts.remove(&id) else { continue };
                let Some(ci) = self.state.checkers.iter().position(|c| c.key == key) else {
                    continue;
                };
                self.state.checkers[ci].attempt = None;
                self.passive_recheck(ci, id, &outcome);
                self.on_result(ci, outcome, latency, &mut children);
            }
            if !self.passive.is_empty() && passive_at.elapsed() >= super::passive::POLL {
                passive_at = Instant::now();
                self.passive_tick(next_id, &mut children);
            }
            children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            self.publish();
        }
        // A handover: the real servers are not shut down, the new process carries on
        // (no "Shutting down" lines, no omega scripts).
        if !self.handing_over.load(Ordering::Relaxed) {
            self.shutdown(&mut children);
        }
    }

    /// ha_suspend (check_api.c `update_checker_activity`): checkers of a virtual server
    /// with `ha_suspend` run only while its address is on one of this host's interfaces
    /// (where keepalived's VRRP half puts the VIP on the master). `start`: log every
    /// checker's activation, as `start_checkers` does.
    fn ha_suspend(&mut self, start: bool) {
        let cfg = &self.state.cfg;
        if !start && !cfg.services.iter().any(|v| v.ha_suspend) {
            return;
        }
        let local: HashSet<std::net::IpAddr> = nix::ifaddrs::getifaddrs()
            .map(|it| {
                it.filter_map(|a| {
                    let s = a.address?;
                    s.as_sockaddr_in()
                        .map(|v| std::net::IpAddr::V4(v.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v| std::net::IpAddr::V6(v.ip())))
                })
                .collect()
            })
            .unwrap_or_default();
        for c in self.state.checkers.iter_mut() {
            let vs = &cfg.services[c.vs];
            let want = match &vs.addr {
                super::conf::VsAddr::Inet(a, _) if vs.ha_suspend => local.contains(a),
                _ => true,
            };
            let rs = vs.fmt_rs(&vs.real_servers[c.rs]);
            if start && !c.has_run {
                c.enabled = want;
                tracing::info!(
                    "{}ctivating healthchecker for service {rs} for VS {}",
                    if want { "A" } else { "Dea" },
                    vs.fmt()
                );
            } else if want != c.enabled {
                tracing::info!(
                    "{}ing healthchecker for service {rs} for VS {}",
                    if want { "Activat" } else { "Suspend" },
                    vs.fmt()
                );
                c.enabled = want;
            }
        }
    }

    /// Stopping (ipwrapper.c `clear_service_rs`, `update_vs_notifies` with
    /// `stopping`): every real server is shut down; with `omega` the alive ones'
    /// notify_down and the virtual server's quorum_down run (bounded wait, as
    /// keepalived gives a script one second at stop).
    fn shutdown(&mut self, children: &mut Vec<std::process::Child>) {
        for (vi, vs) in self.state.cfg.services.iter().enumerate() {
            let name = vs.fmt();
            for (ri, rs) in vs.real_servers.iter().enumerate() {
                tracing::info!("Shutting down service {} from VS {name}", vs.fmt_rs(rs));
                let alive = self.state.alive.get(&(vi, ri)).copied().unwrap_or(true);
                if vs.omega
                    && alive
                    && let Some(s) = &rs.notify_down
                {
                    spawn_script(s, children);
                }
            }
            if vs.omega
                && let Some(q) = &vs.quorum_down
            {
                spawn_script(q, children);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while !children.is_empty() && Instant::now() < deadline {
            children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// keepalived's epilog: retries, then the checker's transition.
    fn on_result(&mut self, ci: usize, outcome: Outcome, latency: Duration, children: &mut Vec<std::process::Child>) {
        let now = Instant::now();
        let (vi, ri) = (self.state.checkers[ci].vs, self.state.checkers[ci].rs);
        let vs_name = self.state.cfg.services[vi].fmt();
        let rs_name = self.state.cfg.services[vi].fmt_rs(&self.state.cfg.services[vi].real_servers[ri]);
        let success = !matches!(outcome, Outcome::Down(_));
        let old_weight = self
            .state
            .dyn_weight(vi, ri)
            .unwrap_or(self.state.cfg.services[vi].real_servers[ri].weight.unwrap_or(1));
        let mut weight_changed = false;
        let mut changed = false;
        {
            let c = &mut self.state.checkers[ci];
            c.last = Some((outcome.clone(), latency));
            if let Outcome::UpWeight(w) = outcome
                && c.dyn_weight != Some(w)
            {
                c.dyn_weight = Some(w);
                weight_changed = true;
            } else if outcome == Outcome::Up && c.dyn_weight.is_some() {
                c.dyn_weight = None;
                weight_changed = true;
            }
            let smtp = c.kind == "SMTP_CHECK";
            // smtp_final: the failure is logged (after "SMTP_CHECK ") on the attempt
            // that takes an up (or not yet run) checker down, or on every attempt with
            // log_all_failures.
            if let Outcome::Down(reason) = &outcome
                && smtp
                && (c.up || !c.has_run)
                && (c.log_all || c.retry_it >= c.retry)
            {
                tracing::info!("SMTP_CHECK {reason}");
            }
            if let Outcome::Down(reason) = &outcome
                && c.up
                && c.log_all
                && !smtp
            {
                match (c.kind, reason.as_str()) {
                    ("UDP_CHECK", "reply data mismatch") => {
                        tracing::info!("UDP check to {rs_name} reply data mismatch.")
                    }
                    ("UDP_CHECK", _) => tracing::info!("UDP connection to {rs_name} failed."),
                    ("DNS_CHECK", r) => tracing::info!("DNS_CHECK ({rs_name}) {r}"),
                    ("PING_CHECK", "timeout") => {
                        tracing::info!("ICMP connection to address {rs_name} timeout.")
                    }
                    ("PING_CHECK", _) => tracing::info!("ICMP connection to {rs_name} of {vs_name} failed."),
                    (k, r) => tracing::info!("{k} connection to {rs_name} {r}."),
                }
            }
            // tcp_epilog (and udp_, icmp_epilog; http's and dns_final count alike): a
            // failure of an up checker is retried `retry` times after
            // delay_before_retry; a failing checker that is already down just waits
            // for its next delay_loop. smtp_final retries whether the checker is up or
            // down.
            let may_fail = c.up || !c.has_run;
            if success || ((may_fail || smtp) && c.retry_it >= c.retry) {
                c.next = now + c.delay_loop;
                c.retry_it = 0;
                if success && (!c.up || !c.has_run) {
                    match c.kind {
                        "TCP_CHECK" => tracing::info!("TCP connection to {rs_name} success."),
                        "HTTP_GET" | "SSL_GET" => tracing::info!("Remote Web server {rs_name} succeed on service."),
                        "UDP_CHECK" => tracing::info!("UDP connection to {rs_name} success."),
                        "PING_CHECK" => tracing::info!("ICMP connection to {rs_name} success."),
                        "SMTP_CHECK" => tracing::info!("Remote SMTP server {rs_name} succeed on service."),
                        _ => {}
                    }
                    changed = !c.up;
                    c.up = true;
                } else if !success && may_fail {
                    let after = c.retry > 0 && c.has_run;
                    let n = c.retry;
                    match (c.kind, &outcome) {
                        // Logged above ("SMTP_CHECK <reason>").
                        ("MISC_CHECK" | "SMTP_CHECK", _) => {}
                        ("PING_CHECK", _) if after => {
                            tracing::info!("ICMP CHECK on service {rs_name} of {vs_name} failed after {n} retries.")
                        }
                        ("PING_CHECK", _) => tracing::info!("ICMP CHECK on service {rs_name} failed."),
                        ("DNS_CHECK", Outcome::Down(r)) if after => {
                            tracing::info!("DNS_CHECK ({rs_name}) {r} after {n} retries")
                        }
                        ("DNS_CHECK", Outcome::Down(r)) => tracing::info!("DNS_CHECK ({rs_name}) {r}"),
                        (k, _) => {
                            let what = match k {
                                "HTTP_GET" => "HTTP_CHECK",
                                "SSL_GET" => "SSL_CHECK",
                                k => k,
                            };
                            if after {
                                tracing::info!("{what} on service {rs_name} failed after {n} retries.");
                            } else {
                                tracing::info!("{what} on service {rs_name} failed.");
                            }
                        }
                    }
                    changed = c.up;
                    c.up = false;
                }
            } else if c.up || smtp {
                c.next = now + c.delay_before_retry;
                c.retry_it += 1;
            } else {
                c.next = now + c.delay_loop;
            }
            if c.kind == "MISC_CHECK"
                && (changed || !c.has_run)
                && let Probe::Script { argv, .. } = &c.spec.probe
            {
                tracing::info!(
                    "Misc check for [{rs_name} VS {vs_name}] by [{}] {}.",
                    argv[0],
                    if success { "succeeded" } else { "failed" }
                );
            }
            c.has_run = true;
            if changed {
                c.transitions += 1;
            }
        }
        self.touched.push(ci);
        if weight_changed {
            self.touch_server(vi, ri);
        }
        let was = self.state.alive.get(&(vi, ri)).copied().unwrap_or(true);
        let now_alive = self.state.rs_alive(vi, ri);
        if was == now_alive && !weight_changed {
            return;
        }
        let vs = self.state.cfg.services[vi].clone();
        let rs = vs.real_servers[ri].clone();
        if weight_changed && was == now_alive {
            let w = self.state.dyn_weight(vi, ri).unwrap_or(rs.weight.unwrap_or(1));
            tracing::info!(
                "Changing weight from {old_weight} to {w} for {}active service {rs_name} of VS {vs_name}",
                if now_alive { "" } else { "in" }
            );
        }
        if was != now_alive {
            self.server_transition(vi, ri, now_alive, children);
        }
        self.update_quorum(vi, children);
        let table = self.state.table_for(vi);
        if let Err(e) = translate::reconcile(&self.ctl, &table, &HashSet::new()) {
            tracing::error!("keepalived: VS {vs_name}: {e}");
        }
    }

    /// A real server becomes alive or dead (ipwrapper.c `perform_svr_state`): the log
    /// line and the notify script; the caller updates quorum and the table.
    fn server_transition(&mut self, vi: usize, ri: usize, now_alive: bool, children: &mut Vec<std::process::Child>) {
        let vs = &self.state.cfg.services[vi];
        let rs = &vs.real_servers[ri];
        let (vs_name, rs_name) = (vs.fmt(), vs.fmt_rs(rs));
        let inhibit = rs.inhibit.unwrap_or(false);
        let verb = match (now_alive, inhibit) {
            (true, true) => "Enabl",
            (true, false) => "Add",
            (false, true) => "Disabl",
            (false, false) => "Remov",
        };
        let prep = if inhibit {
            "of"
        } else if now_alive {
            "to"
        } else {
            "from"
        };
        tracing::info!("{verb}ing service {rs_name} {prep} VS {vs_name}");
        let script = if now_alive { &rs.notify_up } else { &rs.notify_down };
        if let Some(s) = script {
            spawn_script(s, children);
        }
        self.state.alive.insert((vi, ri), now_alive);
        self.touch_server(vi, ri);
    }

    /// A checker's result: a success of an attempt started after a passive removal
    /// lifts it (on_result then brings the server back if all its checkers are up).
    fn passive_recheck(&mut self, ci: usize, id: u64, outcome: &Outcome) {
        if matches!(outcome, Outcome::Down(_)) || self.state.passive_down.is_empty() {
            return;
        }
        let (vi, ri) = (self.state.checkers[ci].vs, self.state.checkers[ci].rs);
        let key = self.state.rs_key(vi, ri);
        if self.state.passive_down.get(&key).is_some_and(|&since| id >= since) {
            self.state.passive_down.remove(&key);
            let vs = &self.state.cfg.services[vi];
            tracing::info!(
                "Passive check: {} check of service {} of VS {} succeeded after its removal",
                self.state.checkers[ci].kind,
                vs.fmt_rs(&vs.real_servers[ri]),
                vs.fmt()
            );
            // Make on_result see a change even when the checker itself stayed up.
            self.state.alive.insert((vi, ri), false);
        }
    }

    /// Read the workers' failure counters of every opted-in NAT real server; take out
    /// a live one that reached its threshold. `next_id` is the id the next checker
    /// attempt will get: only attempts from it on may bring the server back.
    fn passive_tick(&mut self, next_id: u64, children: &mut Vec<std::process::Child>) {
        let now = Instant::now();
        let svcs = self.ctl.shared().services.load();
        // One pass over the checkers and over each service's destinations per tick (a
        // virtual server may have thousands of real servers).
        let checked: HashSet<(usize, usize)> = self.state.checkers.iter().map(|c| (c.vs, c.rs)).collect();
        for sp in self.passive.clone() {
            let targets: Vec<usize> = self.passive_targets(&sp).collect();
            for vi in targets {
                let mut counts: HashMap<(std::net::IpAddr, u16), [u64; 3]> = HashMap::new();
                for addr in translate::service_addrs(&self.state.cfg, &self.state.cfg.services[vi]) {
                    if let Some(s) = svcs.find(&addr) {
                        for d in s.lock().dests.iter() {
                            let c = counts.entry((d.addr, d.port)).or_default();
                            for sig in crate::service::PassiveSignal::ALL {
                                c[sig as usize] += d.passive.get(sig);
                            }
                        }
                    }
                }
                for ri in 0..self.state.cfg.services[vi].real_servers.len() {
                    let rs = &self.state.cfg.services[vi].real_servers[ri];
                    if !is_nat(rs) || !checked.contains(&(vi, ri)) {
                        continue;
                    }
                    let key = self.state.rs_key(vi, ri);
                    let window = self.windows.entry(key.clone()).or_default();
                    if !self.state.alive.get(&(vi, ri)).copied().unwrap_or(true) {
                        window.reset();
                        continue;
                    }
                    let by_signal = counts.get(&(rs.addr, rs.port)).copied().unwrap_or_default();
                    let n = window.observe(now, by_signal.iter().sum(), sp.window);
                    if n < u64::from(sp.failures) {
                        continue;
                    }
                    window.reset();
                    let vs = &self.state.cfg.services[vi];
                    let vs_name = vs.fmt();
                    tracing::info!(
                        "Passive check on service {} of VS {vs_name} failed: {n} failed connections within {} s \
                         (counted so far: {} reset, {} ICMP unreachable, {} SYN timeout).",
                        vs.fmt_rs(rs),
                        sp.window.as_secs_f64(),
                        by_signal[0],
                        by_signal[1],
                        by_signal[2]
                    );
                    self.state.passive_down.insert(key, next_id);
                    // Check it again at once: a false alarm costs one check.
                    for c in self.state.checkers.iter_mut().filter(|c| c.vs == vi && c.rs == ri) {
                        if c.attempt.is_none() {
                            c.next = now;
                        }
                    }
                    self.server_transition(vi, ri, false, children);
                    self.update_quorum(vi, children);
                    let table = self.state.table_for(vi);
                    if let Err(e) = translate::reconcile(&self.ctl, &table, &HashSet::new()) {
                        tracing::error!("keepalived: VS {vs_name}: {e}");
                    }
                }
            }
        }
    }

    /// ipwrapper.c `update_quorum_state`.
    fn update_quorum(&mut self, vi: usize, children: &mut Vec<std::process::Child>) {
        let vs = self.state.cfg.services[vi].clone();
        let sum = self.state.live_weight(vi) as i64;
        let up = self.state.quorum_up[vi];
        let threshold = vs.quorum as i64 + if up { -1 } else { 1 } * vs.hysteresis as i64;
        let name = vs.fmt();
        if !up && sum >= threshold {
            self.state.quorum_up[vi] = true;
            tracing::info!(
                "Gained quorum {}+{}={threshold} <= {sum} for VS {name}",
                vs.quorum,
                vs.hysteresis
            );
            if let Some(s) = &vs.sorry {
                tracing::info!(
                    "{} sorry server {} from VS {name}",
                    if s.inhibit.unwrap_or(false) {
                        "Disabling"
                    } else {
                        "Removing"
                    },
                    vs.fmt_rs(s)
                );
            }
            if let Some(q) = &vs.quorum_up {
                spawn_script(q, children);
            }
        } else if up && (sum == 0 || sum < threshold) {
            self.state.quorum_up[vi] = false;
            tracing::info!(
                "Lost quorum {}-{}={threshold} > {sum} for VS {name}",
                vs.quorum,
                vs.hysteresis
            );
            if let Some(s) = &vs.sorry {
                tracing::info!(
                    "{} sorry server {} to VS {name}",
                    if s.inhibit.unwrap_or(false) {
                        "Enabling"
                    } else {
                        "Adding"
                    },
                    vs.fmt_rs(s)
                );
            }
            if let Some(q) = &vs.quorum_down {
                spawn_script(q, children);
            }
        }
    }

    /// SIGHUP: re-read; apply the difference; keep the state of unchanged checkers.
    fn reload(&mut self, probes: &mut Probes, attempts: &mut HashMap<u64, Key>) {
        tracing::info!("Reloading keepalived configuration {}", self.path.display());
        let cfg = match read(&self.path, self.config_id.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("keepalived: reload refused, the running configuration stays: {e}");
                return;
            }
        };
        let old: HashMap<Key, Rt> = self.state.checkers.iter().map(|c| (c.key.clone(), c.clone())).collect();
        let checkers = build_checkers(&cfg, Instant::now(), &old);
        let mut next = State {
            cfg,
            checkers,
            alive: HashMap::new(),
            quorum_up: Vec::new(),
            owned: HashSet::new(),
            passive_down: HashMap::new(),
        };
        // Servers taken out by passive checks stay out until their checker passes.
        next.passive_down = self.state.passive_down.clone();
        let known: HashSet<RsKey> = (0..next.cfg.services.len())
            .flat_map(|vi| (0..next.cfg.services[vi].real_servers.len()).map(move |ri| (vi, ri)))
            .map(|(vi, ri)| next.rs_key(vi, ri))
            .collect();
        next.passive_down.retain(|k, _| known.contains(k));
        next.init_alive_and_quorum();
        let table = next.table();
        if let Err(e) = translate::reconcile(&self.ctl, &table, &self.state.owned) {
            tracing::error!("keepalived: reload refused, the running configuration stays: {e}");
            return;
        }
        if let Some((tcp, tcpfin, udp)) = next.cfg.lvs_timeouts {
            self.ctl.set_timeouts(tcp, tcpfin, udp);
        }
        next.owned = table.iter().map(|(s, _)| s.addr).collect();
        let keep: HashSet<Key> = next.checkers.iter().map(|c| c.key.clone()).collect();
        attempts.retain(|id, k| {
            let kept = keep.contains(k);
            if !kept {
                probes.cancel(*id);
            }
            kept
        });
        tracing::info!(
            "keepalived: reloaded, {} virtual servers, {} checkers ({} kept their state)",
            next.cfg.services.len(),
            next.checkers.len(),
            next.checkers.iter().filter(|c| old.contains_key(&c.key)).count()
        );
        self.state = next;
        self.publish_all = true;
    }

    /// Bring the status board up to date: every checker's line after a (re)load,
    /// otherwise only the lines of checkers whose state changed since the last call
    /// (a result, or a transition of their real server): with thousands of checkers,
    /// rebuilding every line on each pass of the loop cost more than the checks.
    fn publish(&mut self) {
        if !self.publish_all && self.touched.is_empty() {
            return;
        }
        let mut board = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if self.publish_all || board.len() != self.state.checkers.len() {
            *board = (0..self.state.checkers.len()).map(|ci| self.status_of(ci)).collect();
        } else {
            for &ci in &self.touched {
                board[ci] = self.status_of(ci);
            }
        }
        drop(board);
        self.publish_all = false;
        self.touched.clear();
    }

    /// Mark every checker of real server `ri` of virtual server `vi` for [`Self::publish`].
    fn touch_server(&mut self, vi: usize, ri: usize) {
        let cs = &self.state.checkers;
        self.touched
            .extend((0..cs.len()).filter(|&ci| cs[ci].vs == vi && cs[ci].rs == ri));
    }

    /// What `uvs checks` shows about checker `ci`.
    fn status_of(&self, ci: usize) -> Status {
        let s = &self.state;
        let c = &s.checkers[ci];
        let vs = &s.cfg.services[c.vs];
        let rs = &vs.real_servers[c.rs];
        let (last, lat) = match &c.last {
            None => ("pending".to_string(), 0.0),
            Some((o, d)) => (
                match o {
                    Outcome::Up => "success".to_string(),
                    Outcome::UpWeight(w) => format!("success (weight {w})"),
                    Outcome::Down(r) => r.clone(),
                },
                d.as_secs_f64() * 1000.0,
            ),
        };
        Status {
            vs: vs.fmt(),
            rs: vs.fmt_rs(rs),
            kind: c.kind,
            up: c.up,
            rs_alive: s.alive.get(&(c.vs, c.rs)).copied().unwrap_or(true),
            weight: s.dyn_weight(c.vs, c.rs).unwrap_or(rs.weight.unwrap_or(1)) as i64,
            transitions: c.transitions,
            last,
            latency_ms: lat,
        }
    }
}

/// Is this a NAT real server (the only kind passive checks see)?
fn is_nat(rs: &super::conf::RealServer) -> bool {
    translate::dest_config(rs, 0).method == crate::service::ForwardMethod::Masq
}

/// The checkers' published states.
pub type StatusBoard = Arc<Mutex<Vec<Status>>>;

/// The control plane's answer to `uvs checks` ([`crate::control::proto::Request::Checks`]): exit status.
pub fn answer(board: Option<&StatusBoard>, out: &mut String, err: &mut String) -> i32 {
    match board {
        Some(b) => {
            out.push_str(&render(&b.lock().unwrap_or_else(|e| e.into_inner())));
            0
        }
        None => {
            err.push_str("uvs: this director runs no keepalived checkers (start it with --keepalived FILE)\n");
            1
        }
    }
}

/// One line per checker.
pub fn render(v: &[Status]) -> String {
    let mut out = format!(
        "{:<24} {:<24} {:<10} {:<5} {:<6} {:>6} {:>5} {:>9}  {}\n",
        "VIRTUAL SERVER", "REAL SERVER", "CHECKER", "STATE", "SERVER", "WEIGHT", "TRANS", "LATENCY", "LAST RESULT"
    );
    for s in v {
        out.push_str(&format!(
            "{:<24} {:<24} {:<10} {:<5} {:<6} {:>6} {:>5} {:>7.1}ms  {}\n",
            s.vs,
            s.rs,
            s.kind,
            if s.up { "UP" } else { "DOWN" },
            if s.rs_alive { "alive" } else { "dead" },
            s.weight,
            s.transitions,
            s.latency_ms,
            s.last
        ));
    }
    out
}

/// Prometheus families per real server and checker.
pub fn render_metrics(out: &mut String, board: &StatusBoard) {
    use std::fmt::Write;
    let v = board.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let _ = writeln!(
        out,
        "# HELP uvs_keepalived_real_server_up Whether keepalived's checkers hold the real server alive."
    );
    let _ = writeln!(out, "# TYPE uvs_keepalived_real_server_up gauge");
    let mut seen = HashSet::new();
    for s in &v {
        if seen.insert((s.vs.clone(), s.rs.clone())) {
            let _ = writeln!(
                out,
                "uvs_keepalived_real_server_up{{virtual_server=\"{}\",real_server=\"{}\"}} {}",
                s.vs, s.rs, s.rs_alive as u8
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP uvs_keepalived_checker_up Whether the checker's last verdict is up."
    );
    let _ = writeln!(out, "# TYPE uvs_keepalived_checker_up gauge");
    let label = |s: &Status| {
        format!(
            "virtual_server=\"{}\",real_server=\"{}\",checker=\"{}\"",
            s.vs, s.rs, s.kind
        )
    };
    for s in &v {
        let _ = writeln!(out, "uvs_keepalived_checker_up{{{}}} {}", label(s), s.up as u8);
    }
    let _ = writeln!(
        out,
        "# HELP uvs_keepalived_checker_transitions_total Up/down transitions of the checker."
    );
    let _ = writeln!(out, "# TYPE uvs_keepalived_checker_transitions_total counter");
    for s in &v {
        let _ = writeln!(
            out,
            "uvs_keepalived_checker_transitions_total{{{}}} {}",
            label(s),
            s.transitions
        );
    }
    let _ = writeln!(
        out,
        "# HELP uvs_keepalived_checker_latency_seconds Duration of the checker's last attempt."
    );
    let _ = writeln!(out, "# TYPE uvs_keepalived_checker_latency_seconds gauge");
    for s in &v {
        let _ = writeln!(
            out,
            "uvs_keepalived_checker_latency_seconds{{{}}} {}",
            label(s),
            s.latency_ms / 1000.0
        );
    }
}

/// The checker thread; stops when dropped.
pub struct Running {
    stop: Arc<AtomicBool>,
    handing_over: Arc<AtomicBool>,
    status: Arc<Mutex<Vec<Status>>>,
    thread: Option<std::thread::JoinHandle<Keepalived>>,
}

impl Running {
    pub fn board(&self) -> StatusBoard {
        self.status.clone()
    }
    pub fn status(&self) -> Vec<Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stop for a handover: the checkers stop without shutting their real servers
    /// down, and their state comes back as [`super::carried`] text for the new
    /// process ([`Keepalived::carry_in`]).
    pub fn hand_over(mut self) -> String {
        self.handing_over.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(k)) => k.carry_out(Instant::now()).encode(),
            _ => {
                tracing::warn!("keepalived: the checker thread failed; its state is not carried");
                String::new()
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(text: &str) -> State {
        let (cfg, _) = super::super::load_str("k.conf", text, None);
        let checkers = build_checkers(&cfg, Instant::now(), &HashMap::new());
        let mut s = State {
            cfg,
            checkers,
            alive: HashMap::new(),
            quorum_up: Vec::new(),
            owned: HashSet::new(),
            passive_down: HashMap::new(),
        };
        s.init_alive_and_quorum();
        s
    }

    const CONF: &str = "virtual_server 10.0.0.1 80 {\n protocol TCP\n lvs_sched rr\n lvs_method DR\n quorum 2\n sorry_server 10.0.0.9 80\n\
        real_server 10.0.0.2 80 {\n  inhibit_on_failure\n  TCP_CHECK {\n  }\n }\n real_server 10.0.0.3 80 {\n  TCP_CHECK {\n  }\n }\n}\n";

    fn addrs(d: &[crate::service::DestConfig]) -> Vec<String> {
        d.iter()
            .map(|d| format!("{}:{} w{}", d.addr, d.port, d.weight))
            .collect()
    }

    #[test]
    fn failed_servers_leave_or_stay_at_zero_and_the_sorry_server_replaces_them() {
        let mut s = state(CONF);
        assert_eq!(addrs(&s.dests(0)), ["10.0.0.2:80 w1", "10.0.0.3:80 w1"]);
        // .3 fails: removed (no inhibit); live weight 1 < quorum 2 -> sorry server, and
        // the alive .2 leaves the pool.
        s.checkers[1].up = false;
        s.alive.insert((0, 1), false);
        s.quorum_up[0] = false;
        assert_eq!(addrs(&s.dests(0)), ["10.0.0.9:80 w1"]);
        // .2 fails too: it is inhibited, so it stays at weight 0 beside the sorry server.
        s.checkers[0].up = false;
        s.alive.insert((0, 0), false);
        assert_eq!(addrs(&s.dests(0)), ["10.0.0.2:80 w0", "10.0.0.9:80 w1"]);
    }

    #[test]
    fn passive_check_must_name_a_nat_virtual_server_of_the_file() {
        let path = std::env::temp_dir().join(format!("uvs-passive-unit-{}.conf", std::process::id()));
        let nat = CONF
            .replace("lvs_method DR", "lvs_method NAT")
            .replace("10.0.0.1 80", "10.0.0.5 80");
        std::fs::write(&path, format!("{CONF}{nat}")).unwrap();
        let ctl = Arc::new(Ctl::new(Arc::new(crate::pipeline::Shared::new(Vec::new()))));
        let mut k = Keepalived::load(ctl, path.clone(), Some("x".into())).unwrap();
        let _ = std::fs::remove_file(&path);
        let spec = |s: &str| vec![s.parse::<super::super::passive::PassiveSpec>().unwrap()];
        let e = k.set_passive(spec("10.0.0.1:80")).unwrap_err();
        assert!(
            e.contains("declares no virtual_server 10.0.0.1 80 with NAT real servers"),
            "{e}"
        );
        assert!(k.set_passive(spec("10.0.0.9:80")).is_err(), "not in the file");
        k.set_passive(spec("10.0.0.5:80,failures=2")).unwrap();
        assert_eq!(k.passive_targets(&k.passive[0]).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_passive_removal_holds_the_server_out_while_its_checker_is_up() {
        let mut s = state(CONF);
        let key = s.rs_key(0, 1);
        s.passive_down.insert(key.clone(), 7);
        assert!(s.checkers[1].up, "the checker itself stays up");
        assert!(!s.rs_alive(0, 1) && s.rs_alive(0, 0));
        s.alive.insert((0, 1), false);
        s.quorum_up[0] = true;
        assert_eq!(
            addrs(&s.dests(0)),
            ["10.0.0.2:80 w1"],
            "removed (no inhibit_on_failure)"
        );
        s.passive_down.remove(&key);
        assert!(s.rs_alive(0, 1));
    }

    #[test]
    fn misc_dynamic_weight_and_reload_keeps_unchanged_checkers() {
        let mut s = state(CONF);
        s.checkers[0].dyn_weight = Some(5);
        assert_eq!(addrs(&s.dests(0)), ["10.0.0.2:80 w5", "10.0.0.3:80 w1"]);
        s.checkers[1].up = false;
        s.checkers[1].transitions = 1;
        let old: HashMap<Key, Rt> = s.checkers.iter().map(|c| (c.key.clone(), c.clone())).collect();
        // Reload: .3's checker changes (connect_timeout), .2's does not.
        let (cfg, _) = super::super::load_str(
            "k.conf",
            &CONF.replace(
                "real_server 10.0.0.3 80 {\n  TCP_CHECK {\n",
                "real_server 10.0.0.3 80 {\n  TCP_CHECK {\n connect_timeout 2\n",
            ),
            None,
        );
        let next = build_checkers(&cfg, Instant::now(), &old);
        assert_eq!(next[0].dyn_weight, Some(5), "unchanged checker keeps its state");
        assert!(next[1].up && next[1].transitions == 0, "changed checker starts afresh");
    }

    fn load(name: &str, text: &str) -> Keepalived {
        let path = std::env::temp_dir().join(format!("uvs-carry-unit-{name}-{}.conf", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let ctl = Arc::new(Ctl::new(Arc::new(crate::pipeline::Shared::new(Vec::new()))));
        let k = Keepalived::load(ctl, path.clone(), Some("x".into())).unwrap();
        let _ = std::fs::remove_file(&path);
        k
    }

    fn listed(k: &Keepalived) -> Vec<String> {
        let t = k.ctl.shared().services.load();
        let svc = t.services()[0].clone();
        let mut v: Vec<String> = (svc.lock().dests.iter())
            .map(|d| format!("{}:{} w{}", d.addr, d.port, d.weight()))
            .collect();
        v.sort();
        v
    }

    /// The old process's state goes into a new one loaded from a changed file: .3's
    /// down checker stays down (and out of the table, the sorry server in), .2's
    /// misc_dynamic weight and a passive removal of .4 carry, a checker whose
    /// configuration changed and a new server start as keepalived starts them.
    #[test]
    fn checker_state_moves_to_a_new_process() {
        let conf = CONF.replace(
            " real_server 10.0.0.3 80",
            " real_server 10.0.0.4 80 {\n  TCP_CHECK {\n  }\n }\n real_server 10.0.0.3 80",
        );
        let mut old = load("old", &conf);
        let s = &mut old.state;
        s.checkers[0].dyn_weight = Some(5);
        s.checkers[0].has_run = true;
        s.checkers[0].last = Some((Outcome::UpWeight(5), Duration::from_millis(2)));
        s.checkers[2].up = false;
        s.checkers[2].has_run = true;
        s.checkers[2].transitions = 1;
        s.checkers[2].last = Some((Outcome::Down("connect: refused".into()), Duration::from_millis(1)));
        let key = s.rs_key(0, 1);
        s.passive_down.insert(key, 42);
        s.init_alive_and_quorum();
        s.quorum_up[0] = true;
        let text = old.carry_out(Instant::now()).encode();

        // The new file: .4's checker changed, a new server .5.
        let new_conf = conf
            .replace(
                " real_server 10.0.0.4 80 {\n  TCP_CHECK {\n  }",
                " real_server 10.0.0.4 80 {\n  TCP_CHECK {\n connect_timeout 2\n  }",
            )
            .replace(
                " real_server 10.0.0.3 80",
                " real_server 10.0.0.5 80 {\n  TCP_CHECK {\n  }\n }\n real_server 10.0.0.3 80",
            );
        let mut new = load("new", &new_conf);
        assert_eq!(
            listed(&new),
            ["10.0.0.2:80 w1", "10.0.0.3:80 w1", "10.0.0.4:80 w1", "10.0.0.5:80 w1"],
            "as keepalived starts: all up"
        );
        assert_eq!(new.carry_in(&text), Ok(2), "{text}");
        // .2 at weight 5, .4 out (passive, though its checker starts afresh), .5 new
        // and up, .3 down; live weight 6 >= quorum 2 and the quorum was up.
        assert_eq!(listed(&new), ["10.0.0.2:80 w5", "10.0.0.5:80 w1"]);
        let c = &new.state.checkers;
        assert!(c[0].has_run && c[0].dyn_weight == Some(5));
        assert!(c[1].up && !c[1].has_run, "changed checker starts afresh");
        assert!(c[2].up && !c[2].has_run, "new server starts up");
        assert!(!c[3].up && c[3].has_run && c[3].transitions == 1);
        let board = new.status.lock().unwrap().clone();
        assert_eq!(board[3].last, "connect: refused");
        assert!(!board[3].rs_alive && !board[1].rs_alive && board[0].weight == 5);
        // A passive removal lifts at the new process's first passing attempt (ids from 1).
        assert_eq!(new.state.passive_down.values().collect::<Vec<_>>(), [&0]);

        // Garbage changes nothing.
        let mut fresh = load("fresh", &new_conf);
        assert!(fresh.carry_in("keepalived-checkers 1\nchk x\n").is_err());
        assert!(fresh.carry_in(&text[..text.len() / 2]).is_err());
        assert_eq!(listed(&fresh).len(), 4);
        assert!(fresh.state.checkers.iter().all(|c| c.up && !c.has_run));
    }

    /// The board is updated line by line on results and transitions, and reads the
    /// same as a full rebuild.
    #[test]
    fn the_status_board_follows_changes_only() {
        let mut k = load("board", CONF);
        let board = |k: &Keepalived| format!("{:?}", k.status.lock().unwrap());
        k.publish();
        assert_eq!(k.status.lock().unwrap().len(), 2);
        let mut children = Vec::new();
        let down = || Outcome::Down("connect: refused".into());
        // retry 1: the first failure is retried, the second takes .3 out.
        for _ in 0..2 {
            k.on_result(1, down(), Duration::from_millis(3), &mut children);
            assert_eq!(k.touched.first(), Some(&1));
            k.publish();
            assert!(k.touched.is_empty() && !k.publish_all);
        }
        let inc = board(&k);
        {
            let b = k.status.lock().unwrap();
            assert!(!b[1].up && !b[1].rs_alive && b[1].transitions == 1 && b[1].last == "connect: refused");
            assert!(b[0].up && b[0].last == "pending");
        }
        k.publish_all = true;
        k.publish();
        assert_eq!(board(&k), inc);
        // Nothing changed: nothing to do.
        k.publish();
        assert!(k.touched.is_empty());
    }

    #[test]
    fn ha_suspend_runs_checkers_only_while_the_address_is_local() {
        let s = state(
            "virtual_server 127.0.0.1 80 {\n protocol TCP\n ha_suspend\n real_server 127.0.0.2 80 {\n  TCP_CHECK {\n  }\n }\n}\n\
             virtual_server 192.0.2.77 80 {\n protocol TCP\n ha_suspend\n real_server 127.0.0.2 80 {\n  TCP_CHECK {\n  }\n }\n}\n\
             virtual_server 192.0.2.78 80 {\n protocol TCP\n real_server 127.0.0.2 80 {\n  TCP_CHECK {\n  }\n }\n}\n",
        );
        let mut k = Keepalived {
            ctl: Arc::new(Ctl::new(Arc::new(crate::pipeline::Shared::new(Vec::new())))),
            path: "k.conf".into(),
            config_id: None,
            state: s,
            status: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
            handing_over: Arc::new(AtomicBool::new(false)),
            publish_all: true,
            touched: Vec::new(),
            passive: Vec::new(),
            windows: HashMap::new(),
        };
        k.ha_suspend(true);
        let enabled: Vec<bool> = k.state.checkers.iter().map(|c| c.enabled).collect();
        // 127.0.0.1 is on lo; 192.0.2.77 is nowhere; 192.0.2.78 has no ha_suspend.
        assert_eq!(enabled, [true, false, true]);
    }
}
