//! The connection-sync daemons (`ipvsadm --start-daemon master|backup`,
//! `net/netfilter/ipvs/ip_vs_sync.c`), as threads of `uvs run`.
//!
//! - **Master**: each worker's [`SyncHook`] decides per client packet whether its
//!   connection is due (`ip_vs_sync_conn_needed`: `sync_threshold` 3 50, TCP state
//!   changes, templates with their connections) and queues the record on a bounded
//!   per-worker channel (`sync_qlen_max` over all of them; a full queue counts the
//!   record as dropped). One thread drains the channels into version-1 (or, with
//!   `sync_version=0`, version-0) messages of at most `sync_maxlen` bytes and sends
//!   each full message, and a partial one after [`FLUSH_MS`], by UDP multicast to the
//!   group (224.0.0.81:8848, TTL 1; or an IPv6 group) out of `--mcast-interface`, loopback off
//!   (`make_send_sock`).
//! - **Backup**: one thread joins the group on the interface and decodes each
//!   datagram as untrusted input ([`crate::sync::decode`]: wrong syncid, version or
//!   size are counted by reason and dropped); templates go into the shared template
//!   table and connections into the worker that owns their flow, through the worker
//!   mailboxes ([`super::mailbox`]), so the first packet after a failover finds its
//!   entry.
//!
//! Both may run at once (active/active). [`SyncDaemons`] is the one handle: the control
//! socket's `--start-daemon`/`--stop-daemon`, `-L --daemon` and `/metrics` go through it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select};

use super::mailbox::Mailboxes;
use crate::ipvsadm::snapshot::DaemonSnapshot;
use crate::ipvsadm::{DaemonConfig, SyncState};
use crate::pipeline::synced::InstallReport;
use crate::pipeline::{Shared, SyncHook};
use crate::sync::{self, Encoder, Role, SyncConn};

/// A partial message goes out once its first record is this old (the kernel's
/// `IPVS_SYNC_FLUSH_TIME` is 2 s; a shorter wait narrows the window a failover can
/// miss, at the price of smaller messages on a quiet director).
pub const FLUSH_MS: u64 = 1000;
/// How long the threads wait for work before looking at their stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Counters of both daemons (`uvs_sync_*` on `/metrics`).
#[derive(Debug, Default)]
pub struct SyncMetrics {
    /// Master: messages and records sent, send errors, records a full queue refused.
    pub sent_messages: AtomicU64,
    pub sent_conns: AtomicU64,
    pub send_errors: AtomicU64,
    pub queue_dropped: Arc<AtomicU64>,
    /// Master: records the encoder refused (mixed families, or IPv6 with sync_version 0).
    pub encode_errors: AtomicU64,
    /// Backup: datagrams received and accepted, records installed.
    pub recv_messages: AtomicU64,
    pub recv_conns: AtomicU64,
    /// Backup: whole messages dropped, by decode reason (`syncid`, `size`, ...).
    pub dropped_messages: Mutex<BTreeMap<&'static str, u64>>,
    /// Backup: single records dropped, by reason (decode skips and install outcomes).
    pub dropped_conns: Mutex<BTreeMap<&'static str, u64>>,
    /// Backup: records that created or updated an entry.
    pub installed: AtomicU64,
    pub updated: AtomicU64,
}

impl SyncMetrics {
    fn drop_msg(&self, reason: &'static str) {
        *lock(&self.dropped_messages).entry(reason).or_default() += 1;
    }
    fn drop_conns(&self, reason: &'static str, n: u64) {
        if n > 0 {
            *lock(&self.dropped_conns).entry(reason).or_default() += n;
        }
    }
    fn account(&self, r: &InstallReport) {
        self.installed.fetch_add(r.created, Relaxed);
        self.updated.fetch_add(r.updated, Relaxed);
        self.drop_conns("unsupported", r.unsupported);
        self.drop_conns("bad_state", r.bad_state);
        self.drop_conns("no_dest", r.no_dest);
        self.drop_conns("stale", r.stale);
        self.drop_conns("table_full", r.table_full);
        self.drop_conns("mailbox_full", r.mailbox_full);
    }

    /// The Prometheus families.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let fam = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        for (name, help, v) in [
            (
                "uvs_sync_sent_messages_total",
                "Sync messages the master sent.",
                &self.sent_messages,
            ),
            (
                "uvs_sync_sent_conns_total",
                "Connection records the master sent.",
                &self.sent_conns,
            ),
            (
                "uvs_sync_send_errors_total",
                "Sync messages the master failed to send.",
                &self.send_errors,
            ),
            (
                "uvs_sync_queue_dropped_total",
                "Connection records dropped because the sync queue was full (sync_qlen_max).",
                &self.queue_dropped,
            ),
            (
                "uvs_sync_encode_errors_total",
                "Connection records the master could not encode.",
                &self.encode_errors,
            ),
            (
                "uvs_sync_received_messages_total",
                "Sync messages the backup accepted.",
                &self.recv_messages,
            ),
            (
                "uvs_sync_received_conns_total",
                "Connection records in accepted sync messages.",
                &self.recv_conns,
            ),
            (
                "uvs_sync_installed_conns_total",
                "Connections and templates the backup created.",
                &self.installed,
            ),
            (
                "uvs_sync_updated_conns_total",
                "Connections and templates the backup updated.",
                &self.updated,
            ),
        ] {
            fam(out, name, help);
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        }
        let name = "uvs_sync_dropped_messages_total";
        fam(out, name, "Sync messages the backup dropped, by reason.");
        for (r, n) in lock(&self.dropped_messages).iter() {
            let _ = writeln!(out, "{name}{{reason=\"{r}\"}} {n}");
        }
        let name = "uvs_sync_dropped_conns_total";
        fam(out, name, "Connection records the backup dropped, by reason.");
        for (r, n) in lock(&self.dropped_conns).iter() {
            let _ = writeln!(out, "{name}{{reason=\"{r}\"}} {n}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A daemon's settings with the defaults filled in (what `-L --daemon` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub state: SyncState,
    pub ifname: String,
    pub ifindex: u32,
    /// With an IPv4 group, the interface's IPv4 address (the master's source,
    /// `bind_mcastif_addr`); `None` with an IPv6 group (the kernel's `make_send_sock`
    /// binds no address: the stack picks the interface's link-local or global one by
    /// the group's scope).
    pub ifaddr: Option<Ipv4Addr>,
    pub syncid: u8,
    pub maxlen: u32,
    /// 224.0.0.81 unless `--mcast-group` says otherwise (IPv4 or IPv6, as kernels
    /// since 4.3 accept).
    pub group: IpAddr,
    pub port: u16,
    pub ttl: u8,
}

impl Resolved {
    fn snapshot(&self) -> DaemonSnapshot {
        DaemonSnapshot {
            state: self.state,
            mcast_ifn: self.ifname.clone(),
            syncid: self.syncid,
            sync_maxlen: self.maxlen as u16,
            mcast_group: Some(self.group),
            mcast_port: self.port,
            mcast_ttl: self.ttl,
        }
    }
}

/// Fill in `cfg`'s defaults from the interface (`ip_vs_sync.c: start_sync_thread`).
/// Errors are the lines ipvsadm would print for the kernel's refusals.
pub fn resolve(cfg: &DaemonConfig) -> Result<Resolved, String> {
    let ifindex = nix::net::if_::if_nametoindex(cfg.mcast_ifn.as_str()).map_err(|_| "No such device".to_string())?;
    let mtu: u32 = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", cfg.mcast_ifn))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500);
    // ip_vs_ctl.c: ip_vs_genl_new_daemon refuses a group that is not multicast
    // (EINVAL), in either family.
    let group = match cfg.mcast_group {
        None => IpAddr::V4(Ipv4Addr::from(sync::GROUP)),
        Some(g) if g.is_multicast() => g,
        Some(_) => return Err("Invalid argument".into()),
    };
    let ifaddr = match group {
        IpAddr::V4(_) => Some(iface_v4(&cfg.mcast_ifn).ok_or_else(|| {
            format!(
                "Cannot assign requested address ({} has no IPv4 address)",
                cfg.mcast_ifn
            )
        })?),
        IpAddr::V6(_) => None,
    };
    let role = match cfg.state {
        SyncState::Master => Role::Master,
        SyncState::Backup => Role::Backup,
    };
    Ok(Resolved {
        state: cfg.state,
        ifname: cfg.mcast_ifn.clone(),
        ifindex,
        ifaddr,
        syncid: cfg.syncid,
        maxlen: sync::sync_maxlen(role, mtu, cfg.sync_maxlen.map(u32::from), group.is_ipv6()),
        group,
        port: cfg.mcast_port.unwrap_or(sync::PORT),
        ttl: cfg.mcast_ttl.unwrap_or(sync::DEFAULT_TTL),
    })
}

/// The first IPv4 address of interface `name`.
fn iface_v4(name: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        if a.interface_name != name {
            return None;
        }
        let sin = a.address?.as_sockaddr_in().copied()?;
        Some(sin.ip())
    })
}

/// One running daemon.
struct Running {
    cfg: Resolved,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The director's sync daemons: start, stop, list.
pub struct SyncDaemons {
    mailboxes: Mailboxes,
    shared: Arc<Shared>,
    /// [master, backup].
    running: Mutex<[Option<Running>; 2]>,
    pub metrics: Arc<SyncMetrics>,
}

fn slot(s: SyncState) -> usize {
    match s {
        SyncState::Master => 0,
        SyncState::Backup => 1,
    }
}

impl SyncDaemons {
    pub fn new(mailboxes: Mailboxes, shared: Arc<Shared>) -> SyncDaemons {
        SyncDaemons {
            mailboxes,
            shared,
            running: Mutex::default(),
            metrics: Arc::default(),
        }
    }

    /// `ipvsadm --start-daemon`. `Err` is the line ipvsadm prints (`Daemon has
    /// already run` when that role runs, as the kernel's EEXIST).
    pub fn start(&self, cfg: &DaemonConfig) -> Result<(), String> {
        let mut running = lock(&self.running);
        let i = slot(cfg.state);
        if running[i].is_some() {
            return Err("Daemon has already run".into());
        }
        let r = resolve(cfg)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match r.state {
            SyncState::Master => self.start_master(&r, stop.clone())?,
            SyncState::Backup => self.start_backup(&r, stop.clone())?,
        };
        tracing::info!(
            "{} sync daemon started (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})",
            r.state.name(),
            r.ifname,
            r.syncid,
            r.maxlen,
            r.group,
            r.port,
            r.ttl
        );
        running[i] = Some(Running {
            cfg: r,
            stop,
            thread: Some(thread),
        });
        Ok(())
    }

    /// `ipvsadm --stop-daemon`: `Err("No daemon is running")` as the kernel's ESRCH.
    pub fn stop(&self, state: SyncState) -> Result<(), String> {
        let r = lock(&self.running)[slot(state)].take();
        match r {
            None => Err("No daemon is running".into()),
            Some(r) => {
                if state == SyncState::Master {
                    self.mailboxes.set_sync_hook(|_| None);
                }
                drop(r);
                tracing::info!("{} sync daemon stopped", state.name());
                Ok(())
            }
        }
    }

    /// Stop both (at exit).
    pub fn stop_all(&self) {
        for s in [SyncState::Master, SyncState::Backup] {
            let _ = self.stop(s);
        }
    }

    /// What `ipvsadm -L --daemon` lists.
    /// The running daemons as `ipvsadm --start-daemon` arguments, their defaults
    /// filled in (what a handover carries to the new director: [`super::handover`]).
    pub fn start_args(&self) -> Vec<String> {
        (self.list().iter())
            .map(|d| {
                let group = d.mcast_group.map(|g| format!(" --mcast-group {g}")).unwrap_or_default();
                format!(
                    "--start-daemon {} --mcast-interface {} --syncid {} --sync-maxlen {}{group} --mcast-port {} \
                     --mcast-ttl {}",
                    d.state.name(),
                    d.mcast_ifn,
                    d.syncid,
                    d.sync_maxlen,
                    d.mcast_port,
                    d.mcast_ttl
                )
            })
            .collect()
    }

    pub fn list(&self) -> Vec<DaemonSnapshot> {
        lock(&self.running).iter().flatten().map(|r| r.cfg.snapshot()).collect()
    }

    fn start_master(&self, r: &Resolved, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, String> {
        let sock = master_socket(r).map_err(|e| format!("sync master socket on {}: {e}", r.ifname))?;
        let n = self.mailboxes.workers();
        let per = (self.shared.ipvs.sync.qlen_max.load(Relaxed) as usize / n).max(64);
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| crossbeam_channel::bounded(per)).unzip();
        let m = self.metrics.clone();
        let sh = self.shared.clone();
        let cfg = r.clone();
        let t = std::thread::Builder::new()
            .name("uvs-sync-master".into())
            .spawn(move || master_loop(cfg, sock, rxs, sh, m, stop))
            .map_err(|e| e.to_string())?;
        let dropped = self.metrics.queue_dropped.clone();
        let told = self
            .mailboxes
            .set_sync_hook(|i| Some(SyncHook::new(txs[i].clone(), dropped.clone())));
        if told < n {
            tracing::warn!("sync master: only {told} of {n} workers took the sync hook");
        }
        Ok(t)
    }

    fn start_backup(&self, r: &Resolved, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, String> {
        let sock = backup_socket(r).map_err(|e| format!("sync backup socket on {}: {e}", r.ifname))?;
        let m = self.metrics.clone();
        let mb = self.mailboxes.clone();
        let sh = self.shared.clone();
        let cfg = r.clone();
        std::thread::Builder::new()
            .name("uvs-sync-backup".into())
            .spawn(move || backup_loop(cfg, sock, mb, sh, m, stop))
            .map_err(|e| e.to_string())
    }
}

/// What the control plane asks of the daemons (`crate::control::SyncControl`).
impl crate::control::SyncControl for SyncDaemons {
    fn start(&self, cfg: &DaemonConfig) -> Result<(), String> {
        SyncDaemons::start(self, cfg)
    }
    fn stop(&self, state: SyncState) -> Result<(), String> {
        SyncDaemons::stop(self, state)
    }
    fn list(&self) -> Vec<DaemonSnapshot> {
        SyncDaemons::list(self)
    }
    fn render_metrics(&self, out: &mut String) {
        self.metrics.render(out)
    }
}

impl Drop for SyncDaemons {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// `ip_vs_sync.c: make_send_sock`: a UDP socket sending to the group out of the
/// interface (`set_mcast_if`; over IPv4 by the interface's address, which needs no
/// privilege, and bound to it as `bind_mcastif_addr`; over IPv6 by its index, source
/// left to the stack), TTL (hop limit) as configured, our own messages not looped
/// back.
fn master_socket(r: &Resolved) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = match (r.group, r.ifaddr) {
        (IpAddr::V4(group), Some(ifaddr)) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_multicast_if_v4(&ifaddr)?;
            s.set_multicast_ttl_v4(u32::from(r.ttl))?;
            s.set_multicast_loop_v4(false)?;
            s.bind(&SocketAddr::V4(SocketAddrV4::new(ifaddr, 0)).into())?;
            s.connect(&SocketAddr::V4(SocketAddrV4::new(group, r.port)).into())?;
            s
        }
        (IpAddr::V6(group), _) => {
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_multicast_if_v6(r.ifindex)?;
            s.set_multicast_hops_v6(u32::from(r.ttl))?;
            s.set_multicast_loop_v6(false)?;
            s.connect(&SocketAddr::V6(SocketAddrV6::new(group, r.port, 0, 0)).into())?;
            s
        }
        (IpAddr::V4(_), None) => return Err(std::io::ErrorKind::AddrNotAvailable.into()),
    };
    Ok(s.into())
}

/// `ip_vs_sync.c: make_receive_sock`: bound to the group's port (address reuse on, so
/// a restarted director can bind while the old socket lingers), member of the group
/// on the interface only (an IPv6 group of link or interface scope is bound with the
/// interface as its scope), receive buffer large enough for bursts.
fn backup_socket(r: &Resolved) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
    let s = match r.group {
        IpAddr::V4(group) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::V4(SocketAddrV4::new(group, r.port)).into())?;
            s.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(r.ifindex))?;
            // Only datagrams of groups this socket joined (IP_MULTICAST_ALL off).
            let _ = s.set_multicast_all_v4(false);
            s
        }
        IpAddr::V6(group) => {
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_only_v6(true)?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::V6(SocketAddrV6::new(group, r.port, 0, r.ifindex)).into())?;
            s.join_multicast_v6(&group, r.ifindex)?;
            let _ = s.set_multicast_all_v6(false);
            s
        }
    };
    let _ = s.set_recv_buffer_size(4 << 20);
    s.set_read_timeout(Some(POLL))?;
    Ok(s.into())
}

fn master_loop(
    r: Resolved,
    sock: UdpSocket,
    rxs: Vec<Receiver<crate::pipeline::synced::SyncRec>>,
    sh: Arc<Shared>,
    m: Arc<SyncMetrics>,
    stop: Arc<AtomicBool>,
) {
    let mut enc = Encoder::new(r.syncid, r.maxlen);
    // Version-0 peers: records gathered, encoded at flush time.
    let mut v0: Vec<SyncConn> = Vec::new();
    let mut pending = 0usize;
    let mut first_at: Option<Instant> = None;
    let send = |msg: &[u8], n: usize| match sock.send(msg) {
        Ok(_) => {
            m.sent_messages.fetch_add(1, Relaxed);
            m.sent_conns.fetch_add(n as u64, Relaxed);
        }
        Err(e) => {
            if m.send_errors.fetch_add(1, Relaxed) == 0 {
                tracing::warn!("sync master: sending on {}: {e}", r.ifname);
            }
        }
    };
    let flush = |enc: &mut Encoder, v0: &mut Vec<SyncConn>, pending: &mut usize| {
        if let Some(msg) = enc.flush() {
            send(&msg, *pending);
        }
        if !v0.is_empty() {
            match sync::encode_v0(r.syncid, r.maxlen, v0) {
                Ok(msgs) => {
                    for msg in msgs {
                        let n = msg.first().copied().unwrap_or(0) as usize;
                        send(&msg, n);
                    }
                }
                Err(_) => {
                    m.encode_errors.fetch_add(v0.len() as u64, Relaxed);
                }
            }
            v0.clear();
        }
        *pending = 0;
    };
    loop {
        let mut sel = Select::new();
        for rx in &rxs {
            sel.recv(rx);
        }
        let _ = sel.ready_timeout(POLL);
        for rx in &rxs {
            while let Ok(rec) = rx.try_recv() {
                let rec = rec.to_sync_conn();
                first_at.get_or_insert_with(Instant::now);
                if sh.ipvs.sync.version.load(Relaxed) == 0 {
                    if rec.caddr.is_ipv4() {
                        v0.push(rec);
                        pending += 1;
                    } else {
                        m.encode_errors.fetch_add(1, Relaxed);
                    }
                    continue;
                }
                match enc.push(&rec) {
                    Ok(Some(full)) => {
                        // `full` held every record before this one.
                        send(&full, pending);
                        pending = 1;
                        first_at = Some(Instant::now());
                    }
                    Ok(None) => pending += 1,
                    Err(_) => {
                        m.encode_errors.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        let due = first_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(FLUSH_MS));
        let stopping = stop.load(Relaxed);
        if due || stopping {
            flush(&mut enc, &mut v0, &mut pending);
            first_at = None;
        }
        if stopping {
            break;
        }
    }
}

fn backup_loop(
    r: Resolved,
    sock: UdpSocket,
    mb: Mailboxes,
    sh: Arc<Shared>,
    m: Arc<SyncMetrics>,
    stop: Arc<AtomicBool>,
) {
    // Room for the largest datagram a master may send (sync_maxlen is at most
    // 65535 - 28); the backup's own maxlen only sizes what it expects.
    let mut buf = vec![0u8; 65536];
    while !stop.load(Relaxed) {
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                tracing::warn!("sync backup: receiving on {}: {e}", r.ifname);
                std::thread::sleep(POLL);
                continue;
            }
        };
        let msg = match sync::decode(&buf[..n], r.syncid) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!("sync backup: dropped a message: {e}");
                m.drop_msg(e.reason());
                continue;
            }
        };
        m.recv_messages.fetch_add(1, Relaxed);
        m.recv_conns.fetch_add(msg.conns.len() as u64, Relaxed);
        for s in &msg.skipped {
            m.drop_conns(s.reason(), 1);
        }
        let threshold = sh.ipvs.sync.threshold.load(Relaxed);
        // Waits for the workers' next round (at most ~20 ms when idle), so the counters
        // say what became of each record.
        let rep = mb.install_wait(msg.conns, threshold, Duration::from_secs(1));
        m.account(&rep);
    }
}

/// The `uvs run` options of this module: sync daemons started with the director, as
/// `ipvsadm --start-daemon` would start them (README "Connection sync").
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SyncArgs {
    /// Start a connection-sync daemon: `master` (send this director's connections) or
    /// `backup` (learn the master's); give it twice for both (active/active).
    #[arg(long = "start-daemon", value_name = "master|backup", value_parser = ["master", "backup"])]
    pub start_daemon: Vec<String>,
    /// The sync daemons' interface (default: the first --iface).
    #[arg(long, value_name = "IF", requires = "start_daemon")]
    pub mcast_interface: Option<String>,
    /// Sync id 0..255 stamped on sent messages; a backup accepts only this id (0: any).
    #[arg(long, requires = "start_daemon")]
    pub syncid: Option<String>,
    /// Largest sync message in bytes (default from the interface: 1472 for a master).
    #[arg(long, requires = "start_daemon")]
    pub sync_maxlen: Option<String>,
    /// Multicast group (default 224.0.0.81).
    #[arg(long, requires = "start_daemon")]
    pub mcast_group: Option<String>,
    /// UDP port (default 8848).
    #[arg(long, requires = "start_daemon")]
    pub mcast_port: Option<String>,
    /// Multicast TTL (default 1).
    #[arg(long, requires = "start_daemon")]
    pub mcast_ttl: Option<String>,
}

impl SyncArgs {
    /// One `--start-daemon` configuration per role asked for, checked by ipvsadm's own
    /// rules (the same words `ipvsadm --start-daemon` accepts).
    pub fn configs(&self, default_iface: &str) -> Result<Vec<DaemonConfig>, String> {
        let mut out = Vec::new();
        for role in &self.start_daemon {
            let mut args = vec!["--start-daemon", role.as_str()];
            args.extend([
                "--mcast-interface",
                self.mcast_interface.as_deref().unwrap_or(default_iface),
            ]);
            for (flag, v) in [
                ("--syncid", &self.syncid),
                ("--sync-maxlen", &self.sync_maxlen),
                ("--mcast-group", &self.mcast_group),
                ("--mcast-port", &self.mcast_port),
                ("--mcast-ttl", &self.mcast_ttl),
            ] {
                if let Some(v) = v {
                    args.extend([flag, v.as_str()]);
                }
            }
            match crate::ipvsadm::parse_args(&args) {
                Ok(crate::ipvsadm::Command::StartDaemon(c)) => out.push(c),
                Ok(_) => unreachable!("--start-daemon parses as StartDaemon"),
                Err(e) => return Err(format!("--start-daemon {role}: {}", e.message)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemons() -> SyncDaemons {
        let (sh, _ctl) = crate::pipeline::fixture::director();
        let (mb, _inboxes) =
            super::super::mailbox::mailboxes(2, super::super::mailbox::fanout_router(2), sh.clone(), Instant::now());
        SyncDaemons::new(mb, sh)
    }

    fn cfg(state: SyncState, ifn: &str) -> DaemonConfig {
        match crate::ipvsadm::parse_args(&[
            "--start-daemon",
            state.name(),
            "--mcast-interface",
            ifn,
            "--syncid",
            "5",
        ]) {
            Ok(crate::ipvsadm::Command::StartDaemon(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn start_list_stop_as_ipvsadm_reports_them() {
        let d = daemons();
        assert_eq!(d.stop(SyncState::Master), Err("No daemon is running".into()));
        assert_eq!(
            d.start(&cfg(SyncState::Master, "uvs-no-such-if")),
            Err("No such device".into())
        );
        // A master on lo: a plain UDP socket, no privilege needed.
        d.start(&cfg(SyncState::Master, "lo")).unwrap();
        assert_eq!(
            d.start(&cfg(SyncState::Master, "lo")),
            Err("Daemon has already run".into())
        );
        let l = d.list();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].sync_maxlen, l[0].mcast_port, l[0].mcast_ttl, l[0].syncid),
            (1472, 8848, 1, 5),
            "the master's size is 1500 - 28 whatever lo's MTU"
        );
        d.stop(SyncState::Master).unwrap();
        assert!(d.list().is_empty());
        assert_eq!(d.stop(SyncState::Master), Err("No daemon is running".into()));
    }

    #[test]
    fn an_ipv6_group_is_taken_with_the_ipv6_sizes() {
        let with_group = |state, g: &str| {
            let mut c = cfg(state, "lo");
            c.mcast_group = Some(g.parse().unwrap());
            c
        };
        // start_sync_thread: hlen = 40 + 8 over IPv6; a master 1500 - 48 whatever the
        // MTU, a backup its MTU (lo: 65536, clamped to 65535) - 48.
        let m = resolve(&with_group(SyncState::Master, "ff02::81")).unwrap();
        assert_eq!((m.maxlen, m.group, m.ifaddr), (1452, "ff02::81".parse().unwrap(), None));
        let b = resolve(&with_group(SyncState::Backup, "ff05::1:81")).unwrap();
        assert_eq!(b.maxlen, 65535 - 48);
        assert_eq!(b.snapshot().mcast_group, Some("ff05::1:81".parse().unwrap()));
        // Not a multicast address, in either family: EINVAL.
        for g in ["2001:db8::1", "10.0.0.1"] {
            assert_eq!(
                resolve(&with_group(SyncState::Master, g)),
                Err("Invalid argument".into())
            );
        }
        // (The sockets themselves need an interface with IPv6 multicast, which lo is
        // not: tests/sync_e2e.rs::an_ipv6_group_carries_the_masters_connections_to_the_backup.)
    }

    #[test]
    fn run_flags_become_ipvsadm_daemon_configs() {
        let a = SyncArgs {
            start_daemon: vec!["master".into(), "backup".into()],
            syncid: Some("9".into()),
            mcast_port: Some("9000".into()),
            ..Default::default()
        };
        let c = a.configs("eth1").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].state, c[1].state), (SyncState::Master, SyncState::Backup));
        assert_eq!(
            (c[1].mcast_ifn.as_str(), c[1].syncid, c[1].mcast_port),
            ("eth1", 9, Some(9000))
        );
        let bad = SyncArgs {
            start_daemon: vec!["master".into()],
            syncid: Some("300".into()),
            ..Default::default()
        };
        assert!(bad.configs("eth0").unwrap_err().starts_with("--start-daemon master: "));
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = SyncMetrics::default();
        m.drop_msg("syncid");
        m.account(&InstallReport {
            created: 2,
            no_dest: 1,
            mailbox_full: 4,
            ..Default::default()
        });
        let mut page = String::new();
        m.render(&mut page);
        let samples = crate::control::metrics::parse_exposition(&page).unwrap();
        let get = |n: &str, reason: Option<&str>| {
            samples
                .iter()
                .find(|(name, l, _)| name == n && reason.is_none_or(|r| l.iter().any(|(_, v)| v == r)))
                .map(|s| s.2)
        };
        assert_eq!(get("uvs_sync_installed_conns_total", None), Some(2.0));
        assert_eq!(get("uvs_sync_dropped_messages_total", Some("syncid")), Some(1.0));
        assert_eq!(get("uvs_sync_dropped_conns_total", Some("no_dest")), Some(1.0));
        assert_eq!(get("uvs_sync_dropped_conns_total", Some("mailbox_full")), Some(4.0));
        assert_eq!(get("uvs_sync_dropped_conns_total", Some("table_full")), None);
    }
}
