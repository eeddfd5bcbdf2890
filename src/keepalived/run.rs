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
}

/// The running keepalived configuration.
pub struct Keepalived {
    ctl: Arc<Ctl>,
    path: PathBuf,
    config_id: Option<String>,
    state: State,
    status: Arc<Mutex<Vec<Status>>>,
    stop: Arc<AtomicBool>,
}

fn kind_name(k: &CheckKind) -> &'static str {
    match k {
        CheckKind::Tcp => "TCP_CHECK",
        CheckKind::Http { ssl: false, .. } => "HTTP_GET",
        CheckKind::Http { ssl: true, .. } => "SSL_GET",
        CheckKind::Misc { .. } => "MISC_CHECK",
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

/// Load and validate a configuration; diagnostics go to the log.
fn read(path: &std::path::Path, config_id: Option<&str>) -> Result<Config, String> {
    let (cfg, diags) = super::load(path, config_id);
    for d in &diags {
        if d.severity == super::Severity::Fatal {
            tracing::error!("{d}");
        } else {
            tracing::warn!("{d}");
        }
    }
    if super::is_fatal(&diags) {
        let first = diags.iter().find(|d| d.severity == super::Severity::Fatal).unwrap();
        return Err(format!("{}: {first}", path.display()));
    }
    for vs in &cfg.services {
        for rs in &vs.real_servers {
            for c in &rs.checkers {
                if let CheckKind::Other(o) = &c.kind {
                    tracing::warn!(
                        "({}: Line {}) {o} is not supported by uvs - the checker is ignored",
                        c.file,
                        c.line
                    );
                }
                if matches!(c.kind, CheckKind::Http { ssl: true, .. }) {
                    tracing::warn!(
                        "({}: Line {}) SSL_GET is not supported by uvs yet - the checker is ignored",
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
                        ssl: false,
                        urls,
                        protocol,
                        virtualhost,
                    } => Probe::Http {
                        urls: urls.clone(),
                        protocol: protocol.clone(),
                        virtualhost: virtualhost
                            .clone()
                            .or(rs.virtualhost.clone())
                            .or(vs.virtualhost.clone()),
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
        })
    }

    /// Every checker's state (for `uvs checks` and metrics).
    pub fn status(&self) -> Arc<Mutex<Vec<Status>>> {
        self.status.clone()
    }

    /// Start the checker thread (after the privilege drop: it holds no capabilities;
    /// scripts run as the user uvs runs as). SIGHUP reloads.
    pub fn spawn(mut self) -> Result<Running, String> {
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).map_err(|e| e.to_string())?;
        let stop = self.stop.clone();
        let status = self.status.clone();
        let t = std::thread::Builder::new()
            .name("uvs-checkers".into())
            .spawn(move || self.main(hup))
            .map_err(|e| e.to_string())?;
        Ok(Running {
            stop,
            status,
            thread: Some(t),
        })
    }

    fn main(&mut self, hup: Arc<AtomicBool>) {
        let mut probes = Probes::new();
        let mut next_id: u64 = 1;
        let mut attempts: HashMap<u64, Key> = HashMap::new();
        let mut children: Vec<std::process::Child> = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            if hup.swap(false, Ordering::Relaxed) {
                self.reload(&mut probes, &mut attempts);
            }
            let now = Instant::now();
            for c in self.state.checkers.iter_mut() {
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
                .min(Duration::from_millis(200));
            for (id, outcome, latency) in probes.poll(wait) {
                let Some(key) = attempts.remove(&id) else { continue };
                let Some(ci) = self.state.checkers.iter().position(|c| c.key == key) else {
                    continue;
                };
                self.state.checkers[ci].attempt = None;
                self.on_result(ci, outcome, latency, &mut children);
            }
            children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
            self.publish();
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
            if let Outcome::Down(reason) = &outcome
                && c.up
                && c.log_all
            {
                tracing::info!("{} connection to {rs_name} {reason}.", c.kind);
            }
            if success || c.retry_it >= c.retry {
                c.next = now + c.delay_loop;
                c.retry_it = 0;
                if success && (!c.up || !c.has_run) {
                    match c.kind {
                        "TCP_CHECK" => tracing::info!("TCP connection to {rs_name} success."),
                        "HTTP_GET" => tracing::info!("Remote Web server {rs_name} succeed on service."),
                        _ => {}
                    }
                    changed = !c.up;
                    c.up = true;
                } else if !success && (c.up || !c.has_run) {
                    let what = match c.kind {
                        "HTTP_GET" => "HTTP_CHECK",
                        k => k,
                    };
                    if c.kind != "MISC_CHECK" {
                        if c.retry > 0 && c.has_run {
                            tracing::info!("{what} on service {rs_name} failed after {} retries.", c.retry);
                        } else {
                            tracing::info!("{what} on service {rs_name} failed.");
                        }
                    }
                    changed = c.up;
                    c.up = false;
                }
            } else {
                c.next = now + c.delay_before_retry;
                c.retry_it += 1;
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
        let was = self.state.alive.get(&(vi, ri)).copied().unwrap_or(true);
        let now_alive = self.state.rs_alive(vi, ri);
        if was == now_alive && !weight_changed {
            return;
        }
        let vs = self.state.cfg.services[vi].clone();
        let rs = vs.real_servers[ri].clone();
        let inhibit = rs.inhibit.unwrap_or(false);
        if weight_changed && was == now_alive {
            let w = self.state.dyn_weight(vi, ri).unwrap_or(rs.weight.unwrap_or(1));
            tracing::info!(
                "Changing weight from {old_weight} to {w} for {}active service {rs_name} of VS {vs_name}",
                if now_alive { "" } else { "in" }
            );
        }
        if was != now_alive {
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
            self.state.alive.insert((vi, ri), now_alive);
            let script = if now_alive { &rs.notify_up } else { &rs.notify_down };
            if let Some(s) = script {
                match std::process::Command::new(&s.argv[0]).args(&s.argv[1..]).spawn() {
                    Ok(c) => children.push(c),
                    Err(e) => tracing::warn!("notify script {}: {e}", s.argv[0]),
                }
            }
        }
        self.update_quorum(vi, children);
        let table = self.state.table_for(vi);
        if let Err(e) = translate::reconcile(&self.ctl, &table, &HashSet::new()) {
            tracing::error!("keepalived: VS {vs_name}: {e}");
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
            if let Some(q) = &vs.quorum_up
                && let Ok(c) = std::process::Command::new(&q.argv[0]).args(&q.argv[1..]).spawn()
            {
                children.push(c);
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
            if let Some(q) = &vs.quorum_down
                && let Ok(c) = std::process::Command::new(&q.argv[0]).args(&q.argv[1..]).spawn()
            {
                children.push(c);
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
        };
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
    }

    fn publish(&self) {
        let s = &self.state;
        let v: Vec<Status> = s
            .checkers
            .iter()
            .map(|c| {
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
            })
            .collect();
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = v;
    }
}

/// The checkers' published states.
pub type StatusBoard = Arc<Mutex<Vec<Status>>>;

/// The control-socket request `uvs checks` sends (not an ipvsadm argument).
pub const CHECKS_REQUEST: &str = "--uvs-checks";

/// The control plane's answer to [`CHECKS_REQUEST`]: exit status.
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

/// `uvs checks`: ask a running director.
pub fn client(control: Option<&std::path::Path>) -> Result<String, String> {
    use std::io::Write;
    let path = crate::control::socket_path(control);
    let mut s =
        std::os::unix::net::UnixStream::connect(&path).map_err(|e| crate::control::client::not_running(&path, &e))?;
    s.write_all(&crate::control::encode_request(&[CHECKS_REQUEST.to_string()], &[]))
        .map_err(|e| e.to_string())?;
    let r = crate::control::decode_reply(&mut s, 64 << 20).map_err(|e| e.to_string())?;
    if r.code != 0 {
        return Err(r.err.trim_end().trim_start_matches("uvs: ").to_string());
    }
    Ok(r.out)
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
    status: Arc<Mutex<Vec<Status>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn board(&self) -> StatusBoard {
        self.status.clone()
    }
    pub fn status(&self) -> Vec<Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
}
