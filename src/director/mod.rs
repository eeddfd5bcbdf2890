//! `uvs run`: the director process. Opens the rings, starts one pinned worker per
//! core, and runs the control loop (ARP resolution and gratuitous ARP, routes,
//! connection-table housekeeping) until SIGINT or SIGTERM.

#![forbid(unsafe_code)]

pub mod carry;
pub mod handover;
pub mod harden;
pub mod iface;
pub mod journal;
pub mod kernelcopy;
pub mod mailbox;
pub mod memory;
pub mod neigh;
pub mod route;
pub mod state;
pub mod syncd;
pub mod tap;
pub mod trace;
pub mod vipwatch;
pub mod worker;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::ctl::Ctl;
use crate::pipeline::{Iface, Shared, Worker};
use crate::ring::{MmsgSet, MmsgTx, RxRing, Tx, TxRing, TxSet, rx::RxConfig};
use crate::stats::MAX_WORKERS;
use crate::wire::{arp, ethernet};

/// Options of `uvs run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub ifaces: Vec<String>,
    pub rules: Option<PathBuf>,
    pub workers: Option<usize>,
    pub control: Option<PathBuf>,
    /// Cap on connection entries, over all workers (`None`: sized from the memory
    /// available at start, see [`memory`]).
    pub max_conns: Option<usize>,
    /// What a full table does with a new connection.
    pub when_full: crate::conn::WhenFull,
    /// Transmit with sendmmsg instead of the TX ring.
    pub tx_sendmmsg: bool,
    /// Cores for the workers (worker i on `cpus[i % len]`); default: all cores.
    pub cpus: Option<Vec<usize>>,
    /// What becomes of the kernel's copy of VIP-bound frames (see [`kernelcopy`]).
    pub kernel_copy: kernelcopy::KernelCopy,
    /// Overload shedding in front of the rings (see [`crate::ring::shed`]).
    pub shed: Shedding,
    /// The XDP hook the shedding program goes on.
    pub xdp_mode: crate::ring::shed::XdpMode,
    /// Write sent (and with `pcap_rx` received) frames to this pcap file.
    pub pcap: Option<PathBuf>,
    pub pcap_rx: bool,
    /// Serve Prometheus metrics on this ADDR:PORT (see [`crate::metrics`]).
    pub metrics: Option<String>,
    /// Anti-flood defenses, timeouts and privilege dropping (see [`harden`]).
    pub hardening: harden::Hardening,
    /// keepalived.conf whose virtual_server half uvs runs (see [`crate::keepalived::run`]).
    pub keepalived: Option<PathBuf>,
    /// keepalived's `-i`: which `@ID` lines apply (default: the short host name).
    pub config_id: Option<String>,
    /// `--passive-check`: passive health checks on these keepalived virtual servers.
    pub passive_check: Vec<crate::keepalived::passive::PassiveSpec>,
    /// VIPs served only while held (`--vrrp-vip`; see [`vipwatch`]), besides the
    /// `vrrp_instance` addresses of the keepalived file.
    pub vrrp_vips: Vec<std::net::Ipv4Addr>,
    /// The state file (see [`state`]); default beside the control socket.
    pub state: Option<PathBuf>,
    /// Connection-sync daemons to start (see [`syncd`]).
    pub sync: syncd::SyncArgs,
    /// Take over from the director serving the same control socket ([`handover`]).
    pub takeover: bool,
}

/// Whether to attach the XDP overload-shedding program ([`crate::ring::shed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shedding {
    #[default]
    Off,
    /// Attach it, or refuse to start.
    On,
}

/// Parse a core list: `1`, `0,2`, `0-3,6`.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("--cpus {s}: want a list like 1 or 0,2-3");
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                v.extend(a..=b);
            }
            None => v.push(part.parse().map_err(|_| bad())?),
        }
    }
    if v.is_empty() {
        return Err(bad());
    }
    Ok(v)
}

/// Apply a rules file (ipvsadm `-S -n` lines) to `ctl`. Any bad line is an error that
/// names the line; nothing is applied in that case.
pub fn load_rules(ctl: &Ctl, path: &std::path::Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cmds = crate::ipvsadm::rules::parse_rules(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    // `--start-daemon` lines are not table changes: `run` starts them (rules_daemons).
    cmds.retain(|(_, c)| !matches!(c, crate::ipvsadm::Command::StartDaemon(_)));
    // Validate against a scratch table first so that a rejected line starts nothing.
    let scratch = Ctl::new(Arc::new(Shared::new(Vec::new())));
    // Each check is one batch (one snapshot at its end, see Ctl::batch).
    scratch.batch(|scratch| {
        for (line, cmd) in &cmds {
            scratch.apply(cmd).map_err(|e| {
                let text = text.lines().nth(line - 1).unwrap_or("");
                format!("{}: line {line}: `{}': {e}", path.display(), text.trim())
            })?;
        }
        Ok::<_, String>(())
    })?;
    drop(scratch);
    ctl.batch(|ctl| {
        for (_, cmd) in &cmds {
            ctl.apply(cmd).map_err(|e| e.to_string())?;
        }
        Ok(cmds.len())
    })
}

/// The `--start-daemon` lines of a rules file, in file order.
pub fn rules_daemons(path: &std::path::Path) -> Result<Vec<crate::ipvsadm::DaemonConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cmds = crate::ipvsadm::rules::parse_rules(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(cmds
        .into_iter()
        .filter_map(|(_, c)| match c {
            crate::ipvsadm::Command::StartDaemon(d) => Some(d),
            _ => None,
        })
        .collect())
}

/// What the host kernel would do to the director's traffic, as warnings naming the fix.
pub fn kernel_interference(ifaces: &[Iface], vips: &[Ipv4Addr]) -> Vec<String> {
    let mut w = Vec::new();
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "1") {
        w.push(
            "net.ipv4.ip_forward=1: the kernel will also route the frames uvs forwards, sending duplicates. \
             Fix: sysctl -w net.ipv4.ip_forward=0 (uvs does the forwarding)"
                .to_string(),
        );
    }
    let all = pnet::datalink::interfaces();
    for v in vips {
        for i in &all {
            if i.ips.iter().any(|n| n.ip() == std::net::IpAddr::from(*v)) {
                let ip = *v;
                w.push(format!(
                    "VIP {ip} is assigned to local interface {}: the kernel will answer clients itself (TCP RST, \
                     ICMP port unreachable) and race uvs's ARP replies. Fix: ip addr del {ip}/32 dev {} \
                     (uvs answers ARP for its VIPs)",
                    i.name, i.name
                ));
            }
        }
    }
    let _ = ifaces;
    w
}

/// Run the director until SIGINT/SIGTERM.
pub fn run(opts: RunOptions) -> Result<(), String> {
    if opts.ifaces.is_empty() {
        return Err("at least one --iface is required".into());
    }
    harden::require_net_raw()?;
    let ifaces = opts
        .ifaces
        .iter()
        .map(|n| iface::discover(n))
        .collect::<Result<Vec<_>, _>>()?;
    let cores = match &opts.cpus {
        Some(list) => list.iter().map(|&id| core_affinity::CoreId { id }).collect(),
        None => core_affinity::get_core_ids().unwrap_or_default(),
    };
    let nworkers = opts.workers.unwrap_or(cores.len().max(1)).clamp(1, MAX_WORKERS);
    let control_path = crate::control::socket_path(opts.control.as_deref());
    // --takeover: the running director's sockets, claims and table (see handover.rs).
    let mut takeover = match opts.takeover {
        true if opts.shed == Shedding::On => {
            return Err("--takeover with --xdp-shed is not supported yet (stop the old director first)".into());
        }
        true => Some(handover::connect(&control_path, nworkers, &ifaces)?),
        false => None,
    };
    let _claims = match takeover.as_mut() {
        Some(t) => iface::Claims::inherit(std::mem::take(&mut t.claims))?,
        None => iface::claim(&ifaces, std::path::Path::new(iface::CLAIM_DIR))?,
    };
    // Counters get one slot per worker: sized before the rules create any.
    crate::stats::set_workers(nworkers);
    let shared = Arc::new(Shared::new(ifaces.clone()));
    let ctl = Arc::new(Ctl::new(shared.clone()));
    harden::apply_settings(&opts.hardening, &shared)?;
    if let Some(path) = &opts.rules {
        let n = load_rules(&ctl, path)?;
        tracing::info!("loaded {n} rules from {}", path.display());
    }
    // The previous director's live table, when it ran the same configuration.
    let state_path = (opts.state.clone())
        .unwrap_or_else(|| state::default_path(&crate::control::socket_path(opts.control.as_deref())));
    let mut config_body = state::body(&shared);
    let config_id = state::fnv64(config_body.as_bytes());
    let mut restored = match takeover.as_mut() {
        Some(t) => Some(handover::restore(&ctl, t, config_id)?),
        None => state::restore_at_start(&ctl, &state_path, config_id),
    };
    // keepalived.conf after the rules: it owns the services it declares.
    let keepalived = match &opts.keepalived {
        Some(p) => {
            let mut k = crate::keepalived::run::Keepalived::load(ctl.clone(), p.clone(), opts.config_id.clone())?;
            k.set_passive(opts.passive_check.clone())?;
            Some(k)
        }
        None => None,
    };
    // VIPs whose ownership follows VRRP (issue 18): the held set is read (and then
    // followed) before the first frame.
    let mut gated: Vec<Ipv4Addr> = opts.vrrp_vips.to_vec();
    if let Some(k) = &keepalived {
        gated.extend(k.vrrp_vips().iter().map(|v| v.addr));
    }
    gated.sort_unstable();
    gated.dedup();
    let vip_watch = match gated.is_empty() {
        true => None,
        false => {
            if opts.kernel_copy == kernelcopy::KernelCopy::Keep {
                return Err(
                    "--keep-kernel-copy cannot serve VRRP VIPs: while keepalived has a VIP on the \
                            interface the kernel would answer its clients itself (TCP RST, ICMP port \
                            unreachable); uvs must drop the kernel's copy (nftables)"
                        .into(),
                );
            }
            let ifindexes = ifaces.iter().map(|i| i.ifindex).collect();
            Some(vipwatch::VipWatch::start(shared.clone(), &gated, ifindexes)?)
        }
    };
    // Bound before anything starts: a busy socket or port starts nothing.
    let (control_sock, metrics_listener) = match &takeover {
        Some(t) => (
            crate::control::Server::inherit(t.control_listener()?, &control_path)?,
            handover::metrics_listener(t, opts.metrics.as_deref())?,
        ),
        None => (
            crate::control::Server::bind(&control_path)?,
            opts.metrics.as_deref().map(crate::control::metrics::bind).transpose()?,
        ),
    };
    // Bound now, while the directory may still be written; served once forwarding.
    let handover_sock = handover::Listener::bind(&control_path, takeover.is_some())
        .inspect_err(|e| tracing::warn!("{e}: this director cannot be taken over (--takeover)"))
        .ok();
    let vips: Vec<_> = shared.services.load().vips().collect();
    let ungated: Vec<_> = vips.iter().copied().filter(|v| !gated.contains(v)).collect();
    for w in kernel_interference(&ifaces, &ungated) {
        tracing::warn!("{w}");
    }
    let mut sorted = vips.clone();
    sorted.sort();
    // A director killed with SIGKILL left its table behind: its VIPs' frames would
    // still be dropped before the host's stack. Still root here, whatever the options.
    kernelcopy::remove_stale();
    let kernel_copy = match opts.kernel_copy {
        // A VRRP VIP on the interface makes the kernel answer clients (RST) unless its
        // copy is dropped: mandatory then.
        kernelcopy::KernelCopy::Auto if !gated.is_empty() => Some(
            kernelcopy::KernelCopyDrop::install(&opts.ifaces, &sorted, &gated).map_err(|e| {
                format!(
                    "VRRP VIPs need the kernel-copy rule ({e}): while keepalived holds a VIP on the \
                     interface, the kernel would answer its clients itself (TCP RST, ICMP port unreachable). \
                     Install nftables"
                )
            })?,
        ),
        kernelcopy::KernelCopy::Drop => Some(kernelcopy::KernelCopyDrop::install(&opts.ifaces, &sorted, &gated)?),
        // Not when uvs becomes another user: nft would then run without the rights to
        // update or remove the table.
        kernelcopy::KernelCopy::Auto if opts.hardening.user.is_none() => {
            match kernelcopy::KernelCopyDrop::install(&opts.ifaces, &sorted, &gated) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::warn!(
                        "the kernel keeps its copy of VIP traffic ({e}); every frame is then \
                         also routed and dropped by the host's IP stack, which costs packet rate. \
                         --keep-kernel-copy says this is wanted"
                    );
                    None
                }
            }
        }
        _ => None,
    };

    let max_conns = match opts.max_conns {
        Some(n) => n,
        None => {
            let (n, avail) = memory::default_max_conns();
            tracing::info!(
                "connection table cap {n} entries ({} MiB available at start / {} / {} B per entry)",
                avail.unwrap_or(0) >> 20,
                memory::TABLE_SHARE,
                crate::conn::ENTRY_BYTES
            );
            n
        }
    };
    let per_worker_cap = (max_conns / nworkers).max(1);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal handler: {e}"))?;
    }
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| format!("signal handler: {e}"))?;
    let epoch = Instant::now();
    let (neigh_tx, neigh_rx) = crossbeam_channel::bounded(4096);
    let group_base = (std::process::id() as u16).wrapping_mul(31);
    // The steering program decides the fanout groups' mode, so it comes first.
    let steering = crate::ring::fanout::Steering::load(nworkers);
    let rx_config = RxConfig {
        fanout_mode: steering.fanout_mode(),
        ..RxConfig::default()
    };

    // Open every ring before starting any thread, so a failure starts nothing. Taking
    // over, the RX rings are the old director's, in the same order.
    let mut inherited = takeover
        .as_mut()
        .map(|t| (std::mem::take(&mut t.rings).into_iter(), t.rx));
    let mut ring_dups = Vec::new();
    let mut ios = Vec::new();
    for _ in 0..nworkers {
        let mut rx = Vec::new();
        let mut ring = TxSet::default();
        let mut mmsg = MmsgSet::default();
        for i in &ifaces {
            let group = group_base.wrapping_add(i.ifindex as u16);
            let r = match inherited.as_mut() {
                Some((fds, cfg)) => match fds.next() {
                    Some(fd) => RxRing::adopt(fd, i.ifindex, *cfg, 0),
                    None => return Err("--takeover: too few RX rings received".into()),
                },
                None => RxRing::open(i.ifindex, group, rx_config),
            };
            let r = r.map_err(|e| format!("RX ring on {}: {e}", i.name))?;
            // Kept to hand over to a director that takes over from this one.
            ring_dups.push(
                r.fd()
                    .try_clone()
                    .map_err(|e| format!("RX ring on {}: dup: {e}", i.name))?,
            );
            rx.push(r);
            let max_frame = (i.mtu.get() as usize + ethernet::HEADER_LEN + 20).max(1600);
            if opts.tx_sendmmsg {
                let t = MmsgTx::open(i.ifindex, max_frame, i.mtu.clone());
                mmsg.txs.push(t.map_err(|e| format!("TX socket on {}: {e}", i.name))?);
            } else {
                let t = TxRing::open(i.ifindex, max_frame, crate::ring::drive::TX_FRAMES, i.mtu.clone());
                ring.rings.push(t.map_err(|e| format!("TX ring on {}: {e}", i.name))?);
            }
        }
        let tx = if opts.tx_sendmmsg {
            Tx::Mmsg(mmsg)
        } else {
            Tx::Ring(ring)
        };
        ios.push(worker::WorkerIo {
            rx,
            tx,
            probe: Default::default(),
        });
    }
    // Overload shedding: the XDP program, and each ring's say in it.
    let shed = match opts.shed {
        Shedding::Off => None,
        Shedding::On => {
            let list: Vec<_> = ifaces.iter().map(|i| (i.ifindex, i.name.clone())).collect();
            // The VIPs go in before privileges are dropped (later updates need none on
            // kernels ≥ 6.5, which check capabilities only to create maps and programs).
            let s = crate::ring::shed::Shed::attach(&list, nworkers, opts.xdp_mode)
                .and_then(|mut s| s.set_vips(&sorted).map(|()| s))
                .map_err(|e| format!("--xdp-shed: {e}"))?;
            tracing::info!("overload shedding: XDP on {}", s.describe());
            Some(s)
        }
    };
    if let Some(s) = &shed {
        for io in ios.iter_mut() {
            for (k, r) in io.rx.iter_mut().enumerate() {
                r.set_shed(s.slot(k));
            }
        }
    }
    // One member socket per interface, to attach the steering program through. A
    // lone worker gets every frame anyway (a group without a program delivers to its
    // first member), so it is spared running the program on each one.
    let fanout_fds: Vec<_> = match ios.first() {
        Some(io) if nworkers > 1 => io.rx.iter().map(|r| r.raw_fd()).collect(),
        _ => Vec::new(),
    };
    // Taking over, the VIPs go in first: the program replaces the old director's in
    // groups that are forwarding.
    if takeover.is_some()
        && let Err(e) = steering.set_vips(&sorted)
    {
        tracing::warn!("steering: {e}");
    }
    steering
        .attach(fanout_fds)
        .map_err(|e| format!("attaching the steering program: {e}"))?;
    if let Err(e) = steering.set_vips(&sorted) {
        tracing::warn!("steering: {e}");
    }
    tracing::info!("steering: {}", steering.describe());
    let steering = Arc::new(steering);
    // The last sockets (ARP); then privileges go, while this is still the only
    // thread (capabilities are per thread).
    let mut control = Control::new(ctl.clone(), &ifaces, steering.clone(), epoch)?;
    control.neigh.refresh_ms = opts.hardening.arp_refresh_ms.max(RETRY_FLOOR_MS);
    // The state file stays writable by --user (README "Restarts and the state file").
    if let (Some((uid, gid)), false) = (harden::user_ids(&opts.hardening)?, opts.hardening.keep_caps) {
        state::hand_to_user(&state_path, control_sock.path().parent(), uid, gid)?;
    }
    harden::drop_privileges(
        &opts.hardening,
        kernel_copy.is_some(),
        steering.needs_cap_bpf(),
        Some(control_sock.path()),
    )?;
    let vip_watch = vip_watch.map(|w| {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("uvs-vipwatch".into())
            .spawn(move || w.run(stop))
    });
    let vip_watch = vip_watch.transpose().map_err(|e| e.to_string())?;
    // Started after the drop, so the writer thread holds no capabilities either (the
    // file is created as the user uvs runs as).
    let taps = tap::TapHub::new(shared.clone());
    let pcap_thread = match &opts.pcap {
        Some(path) => {
            let h = taps.set_pcap(path, opts.pcap_rx)?;
            Some(h)
        }
        None => None,
    };
    let mut handles: Vec<std::thread::JoinHandle<(Worker, worker::WorkerIo)>> = Vec::new();
    let (mailboxes, inboxes) = mailbox::mailboxes(nworkers, mailbox::fanout_router(nworkers), shared.clone(), epoch);
    let mut hub = crate::control::Hub::new(ctl.clone(), epoch);
    let sync_daemons = Arc::new(syncd::SyncDaemons::new(mailboxes, shared.clone()));
    hub.sync = Some(sync_daemons.clone());
    // Sync daemons of the command line, then of the rules file: a refused one starts
    // nothing (the workers pick the master's hook up at their first round).
    let mut daemons = opts.sync.configs(&opts.ifaces[0])?;
    if let Some(path) = &opts.rules {
        daemons.extend(rules_daemons(path)?);
    }
    for d in &daemons {
        sync_daemons
            .start(d)
            .map_err(|e| format!("--start-daemon {} on {}: {e}", d.state.name(), d.mcast_ifn))?;
    }
    hub.conn_cap_per_worker = per_worker_cap;
    hub.trace = Some(Arc::new(trace::Tracer {
        taps: taps.clone(),
        shared: shared.clone(),
    }));
    hub.shed = shed.as_ref().map(|s| (s.state(), opts.ifaces.clone()));
    control.kernel_copy = kernel_copy;
    control.shed = shed;
    // The table as loaded (routes, next hops, steering, rules) is in place before the
    // first frame is read; later changes are installed by the command that makes them.
    control.sync_table(0);
    if let Some(t) = &takeover {
        control.adopt_neigh(&t.neigh);
    }
    let control = Arc::new(std::sync::Mutex::new(control));
    let weak = Arc::downgrade(&control);
    ctl.set_on_change(Some(Arc::new(move || {
        if let Some(c) = weak.upgrade() {
            let mut c = lock(&c);
            let now_ms = c.epoch.elapsed().as_millis() as u64;
            c.sync_table(now_ms);
        }
    })));
    let mut workers: Vec<Worker> = (0..nworkers)
        .map(|id| {
            let mut w = Worker::new(id, per_worker_cap);
            w.conns.set_when_full(opts.when_full);
            w
        })
        .collect();
    // Taking over: the old director stops its workers now and sends their entries;
    // ours start where its stopped.
    let mut took_over = match takeover {
        Some(t) => Some(handover::complete(t, &ctl, &mut ios, &mut workers, epoch)?),
        None => None,
    };
    if let Some(t) = took_over.as_mut() {
        t.rates(&hub.rates, &shared.services.load());
        // The old director's sync daemons (it stopped them), unless ours run that role.
        for d in t.daemons() {
            if sync_daemons.list().iter().any(|r| r.state == d.state) {
                continue;
            }
            match sync_daemons.start(&d) {
                Ok(()) => tracing::info!(
                    "--takeover: {} sync daemon on {} carried over",
                    d.state.name(),
                    d.mcast_ifn
                ),
                Err(e) => tracing::warn!("--takeover: {} sync daemon on {}: {e}", d.state.name(), d.mcast_ifn),
            }
        }
    }
    // Checkers start after the drop (their thread and scripts hold no capabilities)
    // and, taking over, from the old director's checkers' state: a real server its
    // checkers had taken out stays out (README "Restart and upgrade").
    let mut keepalived = keepalived;
    if let (Some(k), Some(t)) = (keepalived.as_mut(), took_over.as_ref())
        && !t.checkers().is_empty()
    {
        match k.carry_in(t.checkers()) {
            Ok(n) => tracing::info!("--takeover: the state of {n} keepalived checkers carried over"),
            Err(e) => tracing::warn!("--takeover: {e}; the checkers start afresh"),
        }
    }
    let checkers = keepalived.map(|k| k.spawn()).transpose()?;
    hub.checks = checkers.as_ref().map(|c| c.board());
    for ((id, (io, w)), inbox) in ios.into_iter().zip(workers).enumerate().zip(inboxes) {
        let (sh, stop, ntx) = (shared.clone(), stop.clone(), neigh_tx.clone());
        let core = cores.get(id % cores.len().max(1)).copied();
        let rings: Vec<_> = ifaces
            .iter()
            .zip(&io.rx)
            .map(|(i, r)| (i.name.clone(), r.raw_fd()))
            .collect();
        hub.add_worker(&w, io.probe.clone(), &rings);
        handles.push(
            std::thread::Builder::new()
                .name(format!("uvs-worker-{id}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    worker::run(w, io, sh, epoch, stop, ntx, inbox)
                })
                .map_err(|e| e.to_string())?,
        );
    }
    drop(neigh_tx);
    // With explicit worker cores, the rest of uvs (this control loop, ipvsadm and
    // /metrics, the estimator: all started from here, so they inherit it) stays off
    // them: a worker's core already shares its time with the kernel's receive work.
    if let Some(list) = &opts.cpus {
        keep_off_cores(list);
    }
    let changes = hub.changes.clone();
    let hub = Arc::new(hub);
    if let Some(t) = took_over {
        restored = Some(t.started());
    }
    let persister = state::Persister::start(state_path, shared.clone(), changes.clone(), config_id);
    // What a director taking over from this one gets (descriptors duplicated now).
    let offer = handover::Offer {
        workers: nworkers,
        ifaces: ifaces.clone(),
        rx: rx_config,
        claims: (_claims.fds().iter())
            .filter_map(|f| f.try_clone_to_owned().ok())
            .collect(),
        control: control_sock
            .listener()
            .try_clone()
            .map_err(|e| format!("control socket: {e}"))?
            .into(),
        metrics: metrics_listener
            .as_ref()
            .and_then(|l| l.try_clone().ok())
            .map(Into::into),
        rings: ring_dups,
        shared: shared.clone(),
        config: persister.config(),
        steering: steering.clone(),
    };
    let mut control_plane = crate::control::start(hub.clone(), Some(control_sock), metrics_listener)?;
    let mut handover = handover_sock.map(|l| handover::Listener::start(l, &control_path, offer));
    let mut taker = None;

    let names: Vec<_> = ifaces.iter().map(|i| i.name.as_str()).collect();
    let mut announced_ready = false;
    let mut mtu_watch = iface::MtuWatch::new(&ifaces);
    while !stop.load(Ordering::Relaxed) {
        let now_ms = epoch.elapsed().as_millis() as u64;
        lock(&control).tick(now_ms);
        mtu_watch.poll(now_ms);
        if hup.swap(false, Ordering::Relaxed) {
            reload(&opts, &ctl, &mut config_body, &persister, &changes);
        }
        if let Some(t) = handover.as_ref().and_then(|h| h.ready()) {
            taker = Some(t);
            break;
        }
        // Wait for worker events (or the next tick). Solicitations are handled before
        // ARP answers so that an answer racing its own request is still accepted.
        let mut events: Vec<_> = neigh_rx.recv_timeout(Duration::from_millis(20)).into_iter().collect();
        events.extend(neigh_rx.try_iter());
        events.sort_by_key(|e| !matches!(e, worker::ControlEvent::Solicit { .. }));
        let now_ms = epoch.elapsed().as_millis() as u64;
        let mut control = lock(&control);
        for ev in events {
            match ev {
                worker::ControlEvent::Solicit { ifindex, ip } => {
                    control.neigh.want((ifindex, ip), now_ms);
                    control.solicit_now(now_ms);
                }
                worker::ControlEvent::Neigh { ifindex, ip, mac } => {
                    control.neigh.on_arp(ifindex, ip, mac, now_ms);
                }
            }
        }
        control.publish_neigh();
        hub.set_neighbours(control.neigh.len(), control.neigh.resolved());
        hub.arp_conflicts.store(control.neigh.conflicts, Ordering::Relaxed);
        if !announced_ready && (control.neigh.all_resolved() || now_ms > 3000) {
            announced_ready = true;
            tracing::info!(
                "director ready on {} ({nworkers} workers, {} services, {}/{} real servers resolved{})",
                names.join(","),
                shared.services.load().services().len(),
                control.neigh.resolved(),
                control.neigh.len(),
                restored.as_deref().map(|r| format!("; {r}")).unwrap_or_default()
            );
            // systemd's Type=notify: the workers forward from here on.
            if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
                tracing::warn!("sd_notify READY=1: {e}");
            }
        }
    }
    // Shutdown. Steps run side by side where the kernel makes each wait: closing a
    // packet socket waits for an RCU grace period (af_packet.c: packet_release,
    // synchronize_net), so closing the ARP, RX and TX sockets one after the other took
    // most of the 150-250 ms an idle director needed to exit.
    let stopping = Instant::now();
    // keepalived's checkers stop first (their shutdown logs and `omega` scripts; on a
    // handover, their state goes to the new director instead).
    let carried_checks = match (taker.is_some(), checkers) {
        (true, Some(c)) => c.hand_over(),
        _ => String::new(),
    };
    // No more changes to install. The kernel-copy table and the ARP sockets go.
    ctl.set_on_change(None);
    let table = lock(&control).kernel_copy.take();
    let cleanup = [
        std::thread::spawn(move || drop(table)),
        std::thread::spawn(move || drop(control)),
    ];
    // Stop serving ipvsadm and /metrics (and remove the socket, unless it was handed
    // over) before the workers go.
    if taker.is_some() {
        control_plane.keep_socket();
        if let Some(h) = handover.as_mut() {
            h.keep_path();
        }
    }
    drop(control_plane);
    // The sync daemons stop before the handover's final part, which carries them.
    let carried_daemons = sync_daemons.start_args();
    sync_daemons.stop_all();
    drop(handover);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // The last write, marked clean: the next start restores it without a crash warning.
    persister.finish();
    if let Some(t) = taker {
        // The workers stop; what reaches the rings from now on waits there for the new
        // director's workers.
        stop.store(true, Ordering::Relaxed);
        let stopped_us = handover::stamp();
        let finished: Vec<_> = handles.drain(..).filter_map(|h| h.join().ok()).collect();
        let pid = t.pid;
        match handover::hand_over(
            t,
            stopped_us,
            &shared,
            &carried_daemons,
            &carried_checks,
            &hub.rates,
            &finished,
            epoch,
        ) {
            Ok(n) => tracing::info!("uvs: handed over to pid {pid} ({n} connections)"),
            Err(e) => tracing::error!("uvs: {e}"),
        }
    }
    // The hub is the last holder of the RX rings (their descriptors duplicated for
    // /metrics): one closer per worker.
    let rings: Vec<_> = match Arc::try_unwrap(hub) {
        Ok(hub) => hub
            .workers
            .into_iter()
            .map(|w| std::thread::spawn(move || drop(w)))
            .collect(),
        Err(hub) => vec![std::thread::spawn(move || drop(hub))],
    };
    for h in handles {
        let _ = h.join();
    }
    if let Some(h) = vip_watch {
        let _ = h.join();
    }
    // Close the tap so the pcap writer drains and finishes the file.
    taps.close();
    if let Some(h) = pcap_thread {
        let _ = h.join();
    }
    for t in cleanup.into_iter().chain(rings) {
        let _ = t.join();
    }
    tracing::info!("stopped in {} ms", stopping.elapsed().as_millis());
    tracing::info!("uvs: stopped");
    Ok(())
}

/// SIGHUP: re-read `--rules` (see [`state::reread_rules`]), as keepalived re-reads its
/// file; without `--rules` there is nothing to re-read.
fn reload(
    opts: &RunOptions,
    ctl: &Ctl,
    config_body: &mut String,
    persister: &state::Persister,
    changes: &std::sync::atomic::AtomicU64,
) {
    let Some(rules) = &opts.rules else {
        // With --keepalived, its own thread re-reads keepalived.conf on the same signal.
        if opts.keepalived.is_none() {
            tracing::warn!("SIGHUP: no --rules to re-read; the table is unchanged");
        }
        return;
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
    match state::reread_rules(rules, &opts.hardening, ctl, config_body) {
        Ok(id) => persister.set_config(id),
        Err(e) => tracing::warn!("SIGHUP: {e}; the table is unchanged"),
    }
    changes.fetch_add(1, Ordering::Release);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// Move the calling thread to the allowed cores not in `busy`, if any remain.
fn keep_off_cores(busy: &[usize]) {
    let rest: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .filter(|c| !busy.contains(c))
        .collect();
    if rest.is_empty() {
        return;
    }
    let mut set = nix::sched::CpuSet::new();
    for &c in &rest {
        // Ids past CPU_SETSIZE are refused by `set` and left out.
        let _ = set.set(c);
    }
    if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
        tracing::debug!("keeping the control threads off the workers' cores: {e}");
    }
}

/// The shortest ARP refresh interval accepted (`--arp-refresh-ms`).
const RETRY_FLOOR_MS: u64 = 2 * neigh::RETRY_MS;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The control thread's periodic work, and what makes a table change effective (run
/// by the control thread's tick and, through [`Ctl::set_on_change`], by the ipvsadm
/// command that changes the table).
struct Control {
    ctl: Arc<Ctl>,
    neigh: neigh::Neighbours,
    /// One plain packet socket per interface for ARP requests and gratuitous ARP.
    arp_socks: Vec<(Iface, std::os::fd::OwnedFd)>,
    last_sync_ms: Option<u64>,
    announced: Vec<Ipv4Addr>,
    /// The workers' fanout steering ([`crate::ring::fanout`]).
    steering: Arc<crate::ring::fanout::Steering>,
    /// The VIPs the steering program knows.
    steered: Option<Vec<Ipv4Addr>>,
    garp_rounds: Vec<(Ipv4Addr, u64, u32)>,
    /// What the log has already said is not forwarded (said once each).
    warned: std::collections::HashSet<String>,
    /// The nft rule that drops the kernel's copy of VIP traffic, if installed.
    kernel_copy: Option<kernelcopy::KernelCopyDrop>,
    /// Overload shedding (its VIP set follows the table).
    shed: Option<crate::ring::shed::Shed>,
    epoch: Instant,
}

impl Control {
    fn new(
        ctl: Arc<Ctl>,
        ifaces: &[Iface],
        steering: Arc<crate::ring::fanout::Steering>,
        epoch: Instant,
    ) -> Result<Control, String> {
        let mut arp_socks = Vec::new();
        for i in ifaces {
            let fd = crate::ring::packet_socket(0).map_err(|e| format!("ARP socket: {e}"))?;
            crate::ring::bind(&fd, i.ifindex, 0).map_err(|e| format!("ARP socket bind: {e}"))?;
            arp_socks.push((i.clone(), fd));
        }
        Ok(Control {
            ctl,
            neigh: Default::default(),
            arp_socks,
            last_sync_ms: None,
            announced: Vec::new(),
            garp_rounds: Vec::new(),
            steering,
            steered: None,
            warned: Default::default(),
            kernel_copy: None,
            shed: None,
            epoch,
        })
    }

    fn send(&self, ifindex: u32, frame: &[u8]) {
        if let Some((_, fd)) = self.arp_socks.iter().find(|(i, _)| i.ifindex == ifindex) {
            crate::ring::send_frame(fd, ifindex, frame);
        }
    }

    /// Make the table effective now: routes and next hops of its real servers (an ARP
    /// request goes out at once for a new one; frames to it wait in the worker until
    /// the answer, see `worker.rs`), the fanout steering, the kernel-copy rule and
    /// shedding's VIP set for its VIPs. Never waits for an answer.
    fn sync_table(&mut self, now_ms: u64) {
        self.sync_routes();
        self.sync_vips(now_ms);
        self.solicit_now(now_ms);
        self.publish_neigh();
    }

    /// The neighbours the director this one takes over from had resolved: resolved
    /// here at once (an ARP request still goes to each, which confirms it).
    fn adopt_neigh(&mut self, list: &[(u32, Ipv4Addr, [u8; 6])]) {
        for &(ifindex, ip, _) in list {
            self.neigh.want((ifindex, ip), 0);
        }
        self.solicit_now(0);
        for &(ifindex, ip, mac) in list {
            self.neigh.on_arp(ifindex, ip, mac, 0);
        }
        self.publish_neigh();
    }

    /// Publish resolved neighbours to the workers if anything changed.
    fn publish_neigh(&mut self) {
        if self.neigh.dirty {
            self.neigh.dirty = false;
            self.ctl.shared().publish_neigh(self.neigh.resolved_map());
        }
    }

    fn tick(&mut self, now_ms: u64) {
        // Routes and next hops: once a second (and at start), for what changes outside
        // uvs (the host's routes); table changes are installed by the command itself.
        if self.last_sync_ms.is_none_or(|t| now_ms >= t + 1000) {
            self.last_sync_ms = Some(now_ms);
            self.sync_routes();
            self.ctl.purge_trash();
            // Persistence templates are shared by all workers: one thread reaps them.
            self.ctl.shared().services.load().conn_shared().templates.expire(now_ms);
            self.sync_vips(now_ms);
            // Services and real servers ipvsadm accepts but uvs cannot forward: say so
            // once, at start or when a command adds them.
            for w in self.ctl.shared().services.load().not_forwarded() {
                if self.warned.insert(w.clone()) {
                    tracing::warn!("{w}");
                }
            }
        }
        self.solicit_now(now_ms);
        // keepalived-style gratuitous ARP: 5 at once, and 5 more 5 s later.
        let mut sends = Vec::new();
        self.garp_rounds.retain_mut(|(vip, at, left)| {
            if now_ms >= *at {
                sends.push(*vip);
                *left -= 1;
                *at = now_ms + 5000;
            }
            *left > 0
        });
        if !sends.is_empty() {
            // One read of the routing table per round, not one per VIP (10,000 VIPs).
            let routes = route::Routes::read().unwrap_or_default();
            for vip in sends {
                for _ in 0..5 {
                    self.send_garp(&routes, vip);
                }
            }
        }
    }

    /// Send ARP requests for every neighbour that is due.
    fn solicit_now(&mut self, now_ms: u64) {
        let mut buf = [0u8; 64];
        for ((ifindex, ip), known) in self.neigh.due(now_ms) {
            let Some((i, _)) = self.arp_socks.iter().find(|(i, _)| i.ifindex == ifindex) else {
                continue;
            };
            let src = i.addrs.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
            // A resolved neighbour is probed at its known MAC (see neigh.rs).
            let dst = known.unwrap_or(ethernet::BROADCAST);
            let n = arp::Repr::request(i.mac, src, ip).emit_frame(&mut buf, dst);
            self.send(ifindex, &buf[..n]);
        }
    }

    fn send_garp(&self, routes: &route::Routes, vip: Ipv4Addr) {
        let via = routes.lookup(vip).map(|(name, _)| name.to_string());
        let mut buf = [0u8; 64];
        for (i, _) in &self.arp_socks {
            if via.as_deref().is_none_or(|n| n == i.name) || self.arp_socks.len() == 1 {
                let n = arp::Repr::gratuitous(i.mac, vip).emit_frame(&mut buf, ethernet::BROADCAST);
                self.send(i.ifindex, &buf[..n]);
            }
        }
    }

    /// Steering, the kernel-copy rule and shedding for the table's VIPs; gratuitous
    /// ARP for new ones.
    fn sync_vips(&mut self, now_ms: u64) {
        let mut vips: Vec<_> = self.ctl.shared().services.load().vips().collect();
        vips.sort();
        if self.steered.as_ref() != Some(&vips) {
            if let Err(e) = self.steering.set_vips(&vips) {
                tracing::warn!("steering: {e}");
            }
            self.steered = Some(vips.clone());
        }
        if let Some(k) = self.kernel_copy.as_mut()
            && let Err(e) = k.update(&vips)
        {
            tracing::warn!("updating the kernel-copy rule: {e}");
        }
        if let Some(s) = self.shed.as_mut()
            && let Err(e) = s.set_vips(&vips)
        {
            tracing::warn!("overload shedding: VIP set: {e}");
        }
        // Both lists sorted: a merge, not a search per VIP (tens of thousands of VIPs).
        let mut old = self.announced.iter().peekable();
        for v in &vips {
            while old.next_if(|o| *o < v).is_some() {}
            // keepalived announces the VIPs whose ownership follows VRRP.
            if old.next_if(|o| *o == v).is_none() && !self.ctl.shared().vip_gate.is_gated(*v) {
                self.garp_rounds.push((*v, now_ms, 2));
            }
        }
        self.announced = vips;
    }

    fn sync_routes(&mut self) {
        let routes = route::Routes::read().unwrap_or_default();
        let entries = routes.resolve(|name| {
            self.arp_socks
                .iter()
                .find(|(i, _)| i.name == name)
                .map(|(i, _)| i.ifindex)
        });
        if **self.ctl.shared().routes.load() != entries {
            self.ctl.shared().routes.store(Arc::new(entries));
        }
        let mut users = Vec::new();
        for d in self.ctl.all_dests() {
            let std::net::IpAddr::V4(a) = d.addr else {
                continue;
            };
            let Some((name, hop)) = routes.lookup(a) else {
                d.out_ifindex.store(0, Ordering::Relaxed);
                continue;
            };
            let Some((i, _)) = self.arp_socks.iter().find(|(i, _)| i.name == name) else {
                d.out_ifindex.store(0, Ordering::Relaxed);
                continue;
            };
            d.out_ifindex.store(i.ifindex, Ordering::Relaxed);
            // DR and TUN reach the real server itself on the link; a gateway route
            // means the next hop is the gateway.
            users.push(((i.ifindex, hop), d));
        }
        self.neigh.set_users(users);
    }
}
