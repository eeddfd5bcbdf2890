//! The live control plane of `uvs run`: a Unix control socket that runs ipvsadm
//! commands against the running director (`uvs adm …`, or `ipvsadm …` through a
//! symlink, see [`client`]), the rate-estimator sampler, and the [`Hub`] through which
//! the control socket and `/metrics` see the workers.
//!
//! The socket carries the typed, versioned protocol of [`proto`]: the client parses
//! ipvsadm's arguments and sends commands, the director applies them ([`exec`]) and
//! answers with outcomes and table snapshots, which the client renders, resolving
//! names itself. A client and a director of different protocol versions refuse each
//! other with one line naming both versions.
//!
//! The request is bounded ([`proto::MAX_REQUEST`]) so a client cannot make the
//! director allocate without bound. Deadlines, the executor queue and the limits on
//! connections live in [`transport`], which knows nothing of this format: a request
//! must arrive within 2 s of accept, waits up to 1 s for one of 8 executor slots, and
//! every refusal is a reply the client prints. The socket is created mode 0600 (only
//! its owner, the user who started uvs, may connect) and peers of another uid (other
//! than root) are refused as well.
//!
//! Table changes go through [`Ctl`], which publishes a new snapshot: workers never
//! pause, and a rejected command leaves the table untouched.
#![forbid(unsafe_code)]

pub mod client;
pub mod exec;
pub mod metrics;
pub mod probe;
pub mod proto;
pub mod rates;
#[cfg(test)]
mod tests_exec;
pub mod transport;

use std::io::Read;
use std::os::fd::RawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use probe::WorkerProbe;
pub use rates::RateTable;

use crate::ctl::Ctl;
use crate::ipvsadm::snapshot::{self, ConnSnapshot, TableSnapshot, sort_conn_rows, template_row};
use crate::pipeline::{Worker, WorkerCounters};

/// Where `uvs run` listens and `uvs adm` connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/uvs/control.sock";
/// The environment variable naming another socket path (both sides read it).
pub const SOCKET_ENV: &str = "UVS_CONTROL";
/// Largest `-R` input the client reads.
pub const MAX_STDIN: usize = 16 * 1024 * 1024;

/// What an ipvsadm invocation prints and its exit status.
pub type Reply = proto::Text;

/// The socket path: `explicit`, else `$UVS_CONTROL`, else [`DEFAULT_SOCKET`].
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(SOCKET_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// What the control socket and `/metrics` know about one worker.
pub struct WorkerView {
    pub id: usize,
    pub probe: Arc<WorkerProbe>,
    pub counters: Arc<WorkerCounters>,
    /// The worker's RX rings (one per interface), for PACKET_STATISTICS.
    pub rings: Vec<crate::control::metrics::RingStats>,
}

/// Everything the control plane reads: the table (through [`Ctl`]), the workers'
/// probes and counters, the estimators, and a few director-wide gauges.
pub struct Hub {
    pub ctl: Arc<Ctl>,
    /// The workers' clock origin (connection expiry times are relative to it).
    pub epoch: Instant,
    pub workers: Vec<WorkerView>,
    pub rates: RateTable,
    /// Connection-table cap of each worker.
    pub conn_cap_per_worker: usize,
    /// Neighbours (real servers, gateways) the director wants resolved / has resolved.
    pub neigh_wanted: AtomicUsize,
    pub neigh_resolved: AtomicUsize,
    /// ARP packets that claimed a resolved next hop for another MAC (ignored).
    pub arp_conflicts: std::sync::atomic::AtomicU64,
    /// Serialises `-L -c` requests (one outstanding request per probe).
    list_lock: Mutex<()>,
    /// `uvs trace`'s server (the director's frame tap), when the director has one.
    pub trace: Option<Arc<dyn Trace>>,
    /// Overload shedding's counters, and the interface of each slot.
    pub shed: Option<(Arc<crate::ring::shed::StateMap>, Vec<String>)>,
    /// keepalived checkers' states (`uvs checks`, metrics), with `--keepalived`.
    pub checks: Option<crate::keepalived::run::StatusBoard>,
    /// Bumped after every request that may have changed the table or a sysctl (the
    /// director's state file writer watches it).
    pub changes: Arc<AtomicU64>,
    /// The connection-sync daemons (`--start-daemon`), when the director has workers.
    pub sync: Option<Arc<dyn SyncControl>>,
}

/// `uvs trace` on the control socket. The control plane knows only this: the
/// director, which owns the frame tap and starts the control server, implements it
/// (director/trace.rs), so that control depends on nothing above it.
pub trait Trace: Send + Sync {
    /// Serve one tracer (the words after the trace request) on `stream` until it is
    /// done or goes away.
    fn serve(&self, words: &[&str], stream: &mut UnixStream);
}

/// The connection-sync daemons as the control requests see them (`ipvsadm
/// --start-daemon`, `--stop-daemon`, `-L --daemon`, `/metrics`); implemented by the
/// director's daemons (director/syncd.rs).
pub trait SyncControl: Send + Sync {
    /// `ipvsadm --start-daemon`; `Err` is the line ipvsadm prints.
    fn start(&self, cfg: &crate::ipvsadm::DaemonConfig) -> Result<(), String>;
    /// `ipvsadm --stop-daemon`; `Err` is the line ipvsadm prints.
    fn stop(&self, state: crate::ipvsadm::SyncState) -> Result<(), String>;
    /// The running daemons, for `ipvsadm -L --daemon`.
    fn list(&self) -> Vec<snapshot::DaemonSnapshot>;
    /// Append the daemons' metric families to a `/metrics` page.
    fn render_metrics(&self, out: &mut String);
}

impl Hub {
    /// A hub without workers (add them with [`Hub::add_worker`]).
    pub fn new(ctl: Arc<Ctl>, epoch: Instant) -> Hub {
        Hub {
            ctl,
            epoch,
            workers: Vec::new(),
            rates: RateTable::default(),
            conn_cap_per_worker: 0,
            neigh_wanted: AtomicUsize::new(0),
            neigh_resolved: AtomicUsize::new(0),
            arp_conflicts: Default::default(),
            list_lock: Mutex::new(()),
            trace: None,
            shed: None,
            checks: None,
            changes: Arc::default(),
            sync: None,
        }
    }

    /// Register a worker before its thread starts: its counters, its probe, and its RX
    /// ring sockets as `(interface name, fd)` (duplicated here, so they stay valid).
    pub fn add_worker(&mut self, w: &Worker, probe: Arc<WorkerProbe>, rings: &[(String, RawFd)]) {
        let rings = rings
            .iter()
            .filter_map(|(name, fd)| crate::control::metrics::RingStats::dup(name, *fd).ok())
            .collect();
        self.workers.push(WorkerView {
            id: w.id,
            probe,
            counters: w.counters.clone(),
            rings,
        });
    }

    /// Milliseconds on the workers' clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The table with counters and current rates.
    pub fn snapshot(&self) -> TableSnapshot {
        let svcs = self.ctl.current();
        let mut snap = snapshot::capture(&svcs, &self.ctl.shared().ipvs.timeouts, &|k| self.rates.rates(k));
        if let Some(s) = &self.sync {
            snap.daemons = s.list();
        }
        snap
    }

    /// `ipvsadm --start-daemon`; `Err` is the line ipvsadm prints.
    pub fn start_daemon(&self, cfg: &crate::ipvsadm::DaemonConfig) -> Result<(), String> {
        match &self.sync {
            Some(s) => s.start(cfg),
            None => Err("Operation not supported: this director has no workers to sync".into()),
        }
    }

    /// `ipvsadm --stop-daemon`.
    pub fn stop_daemon(&self, state: crate::ipvsadm::SyncState) -> Result<(), String> {
        match &self.sync {
            Some(s) => s.stop(state),
            None => Err("No daemon is running".into()),
        }
    }

    /// Every connection entry of every worker plus the persistence templates, in
    /// listing order. Workers answer within one loop iteration (≤ ~100 ms when idle).
    pub fn connections(&self) -> Vec<ConnSnapshot> {
        let _g = self.list_lock.lock().unwrap_or_else(|e| e.into_inner());
        let probes: Vec<&WorkerProbe> = self.workers.iter().map(|w| &*w.probe).collect();
        let (mut rows, missing) = probe::collect(&probes, Duration::from_secs(2));
        if missing > 0 {
            tracing::warn!("{missing} worker(s) did not list their connections in time");
        }
        let now = self.now_ms();
        let templates = self.ctl.shared().services.load().conn_shared().templates.snapshot();
        rows.extend(templates.iter().map(|t| template_row(t, now)));
        sort_conn_rows(rows)
    }

    /// Publish the neighbour-resolution gauges (from the control loop).
    pub fn set_neighbours(&self, wanted: usize, resolved: usize) {
        self.neigh_wanted.store(wanted, Ordering::Relaxed);
        self.neigh_resolved.store(resolved, Ordering::Relaxed);
    }
}

/// One ipvsadm invocation (`args` without argv[0], `stdin` for `-R`) against `hub`
/// in this process, through everything `ipvsadm` does over the socket: the client's
/// parsing and plan, the request's encoding and decoding, the director's
/// [`exec::serve`], the response's encoding and decoding, and the client's rendering
/// (names resolved unless `-n`). Tests, fuzzing and benches use it.
pub fn execute(hub: &Hub, args: &[&str], stdin: Option<&str>) -> Reply {
    let lookup = crate::ipvsadm::addr::resolve_host_v4;
    execute_with(hub, args, stdin, lookup, &client::LazyNames::default())
}

/// [`execute`] with the client's name resolution given, both ways (the fuzz targets
/// pass [`crate::ipvsadm::addr::no_host_lookup`] and
/// [`crate::ipvsadm::list::NumericNames`]: no resolver calls).
pub fn execute_with(
    hub: &Hub,
    args: &[&str],
    stdin: Option<&str>,
    lookup: crate::ipvsadm::addr::HostLookup,
    names: &dyn crate::ipvsadm::list::Names,
) -> Reply {
    let cmd = match crate::ipvsadm::parse_args_with(args, lookup) {
        Ok(c) => c,
        Err(e) => return Reply::error(e.exit_code, &e.message),
    };
    let plan = client::plan(cmd, stdin.unwrap_or(""), lookup);
    let (Some(req), client::Plan::Remote { commands, tail, .. }) = (plan.request(), &plan) else {
        return match plan {
            client::Plan::Local(t) => t,
            client::Plan::Remote { .. } => unreachable!("a remote plan has a request"),
        };
    };
    let req = match proto::read_request(&mut &proto::encode_request(&req)[..]) {
        Ok(proto::Framed::Ours(r)) => r,
        other => return Reply::error(255, &format!("request did not survive its encoding: {other:?}")),
    };
    let resp = exec::serve(hub, req);
    match proto::read_response(&mut &proto::encode_response(&resp)[..], usize::MAX) {
        Ok(proto::Framed::Ours(proto::Response::Applied(outcomes))) => {
            client::render(commands, outcomes, tail.clone(), names)
        }
        Ok(proto::Framed::Ours(proto::Response::Text(t))) => t,
        other => Reply::error(255, &format!("response did not survive its encoding: {other:?}")),
    }
}

// ---------------------------------------------------------------------------------
// The server.

/// A bound control socket, not yet serving.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// Set when the socket was handed to a new director (`director::handover`): it
    /// stays in place.
    keep: Arc<AtomicBool>,
}

impl Server {
    /// Create the socket at `path` (mode 0600, its directory created if missing). A
    /// stale socket left by a director that died is replaced; one a live director
    /// answers on is an error.
    pub fn bind(path: &Path) -> Result<Server, String> {
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "control socket {shown}: cannot create {}: {e} (use --control PATH)",
                    dir.display()
                )
            })?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(format!("control socket {shown}: exists and is not a socket"));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "control socket {shown} is in use by another running director \
                     (stop it, or give this one --control PATH)"
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("control socket {shown}: cannot remove stale socket: {e}"))?;
        }
        // Created 0600 from the start: no window in which others could connect.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(|e| format!("control socket {shown}: {e} (use --control PATH)"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket {shown}: {e}"))?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            keep: Arc::default(),
        })
    }

    /// The listening socket of the director this one takes over from (received by
    /// SCM_RIGHTS, `director::handover`), still bound at `path`.
    pub fn inherit(listener: UnixListener, path: &Path) -> Result<Server, String> {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket {}: {e}", path.display()))?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            keep: Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listening socket (to hand over to a new director).
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }
}

/// A socket that is never served (the start failed later on) is removed with it.
impl Drop for Server {
    fn drop(&mut self) {
        if self.keep.load(Ordering::Relaxed) {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The control plane's threads; dropping this stops them and removes the socket.
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    path: Option<PathBuf>,
    keep: Option<Arc<AtomicBool>>,
}

impl Running {
    /// The socket now belongs to the director that took over: stopping leaves it.
    pub fn keep_socket(&mut self) {
        self.path = None;
        if let Some(k) = &self.keep {
            k.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Start the control socket server (if given), the estimator sampler and the metrics
/// server (if given).
pub fn start(hub: Arc<Hub>, server: Option<Server>, metrics: Option<std::net::TcpListener>) -> Result<Running, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Running {
        stop: stop.clone(),
        threads: Vec::new(),
        path: server.as_ref().map(|s| s.path.clone()),
        keep: server.as_ref().map(|s| s.keep.clone()),
    };
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .map_err(|e| format!("{name} thread: {e}"))
    };
    {
        let (hub, stop) = (hub.clone(), stop.clone());
        running
            .threads
            .push(spawn("uvs-estimator", Box::new(move || sample_loop(&hub, &stop)))?);
    }
    if let Some(server) = server {
        let (hub, stop) = (hub.clone(), stop.clone());
        running
            .threads
            .push(spawn("uvs-control", Box::new(move || serve(hub, server, &stop)))?);
    }
    if let Some(l) = metrics {
        let (hub, stop) = (hub.clone(), stop.clone());
        running.threads.push(spawn(
            "uvs-metrics",
            Box::new(move || crate::control::metrics::serve(hub, l, &stop)),
        )?);
    }
    Ok(running)
}

/// Sample every estimator each [`crate::ipvsadm::estimator::INTERVAL_SECS`] seconds.
fn sample_loop(hub: &Hub, stop: &AtomicBool) {
    let period = Duration::from_secs(crate::ipvsadm::estimator::INTERVAL_SECS);
    let mut next = Instant::now() + period;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            hub.rates.sample(&hub.ctl.shared().services.load());
            next += period;
            if next < now {
                next = now + period;
            }
        }
        std::thread::sleep((next - Instant::now().min(next)).min(Duration::from_millis(20)));
    }
}

/// The typed protocol ([`proto`]) on the [`transport`]: requests are applied on an
/// executor slot, the trace request takes over the connection, and a client of
/// another version is answered with one line naming both versions (in version 1's
/// own reply format for a version-1 client, so that it prints it).
struct Typed {
    hub: Arc<Hub>,
}

impl transport::Handler for Typed {
    fn read(&self, r: &mut dyn Read) -> std::io::Result<transport::Job> {
        use proto::{Framed, Request};
        let req = match proto::read_request(r)? {
            Framed::Ours(req) => req,
            Framed::Other(1) => {
                let line = proto::mismatch(1, proto::VERSION);
                return Ok(transport::Job::Reply(proto::encode_v1_error(&line)));
            }
            Framed::Other(v) => return Ok(transport::Job::Reply(self.error(&proto::mismatch(v, proto::VERSION)))),
        };
        let hub = self.hub.clone();
        if let Request::Trace(words) = req {
            return Ok(transport::Job::Stream(Box::new(move |mut stream| {
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                if let Some(trace) = &hub.trace {
                    trace.serve(&words, &mut stream);
                }
            })));
        }
        Ok(transport::Job::Run(Box::new(move || {
            let resp = exec::serve(&hub, req);
            // The director's state file writer watches this.
            hub.changes.fetch_add(1, Ordering::Release);
            proto::encode_response(&resp)
        })))
    }

    fn error(&self, line: &str) -> Vec<u8> {
        proto::encode_response(&proto::Response::Text(Reply::error(255, line)))
    }
}

fn serve(hub: Arc<Hub>, server: Server, stop: &AtomicBool) {
    let handler = Arc::new(Typed { hub });
    transport::serve(&server.listener, handler, transport::Limits::default(), stop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_private_and_stale_ones_are_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("uvs-ctl-test-{}", std::process::id()));
        let path = dir.join("sub").join("control.sock");
        let s = Server::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A live one is not taken over.
        let e = Server::bind(&path).err().unwrap();
        assert!(e.contains("in use by another running director"), "{e}");
        // Removed when dropped unserved.
        drop(s);
        assert!(!path.exists());
        // A file left behind (as after a crash) is replaced.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let s = Server::bind(&path).unwrap();
        drop(s);
        std::fs::write(dir.join("file"), "x").unwrap();
        let e = Server::bind(&dir.join("file")).err().unwrap();
        assert!(e.contains("not a socket"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A director on a private socket, serving `hub`.
    fn serving(tag: &str) -> (PathBuf, Running, Arc<Hub>) {
        use crate::pipeline::Shared;
        let dir = std::env::temp_dir().join(format!("uvs-proto-{tag}-{}", std::process::id()));
        let path = dir.join("control.sock");
        let hub = Arc::new(Hub::new(
            Arc::new(Ctl::new(Arc::new(Shared::new(vec![])))),
            Instant::now(),
        ));
        let running = start(hub.clone(), Some(Server::bind(&path).unwrap()), None).unwrap();
        (path, running, hub)
    }

    fn exchange(path: &Path, bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut c = UnixStream::connect(path).unwrap();
        let _ = c.write_all(bytes);
        // The director answers without reading what it cannot use, so the reply may
        // end in ECONNRESET (unread data) after its last byte.
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = c.read(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn typed_requests_over_the_socket() {
        use proto::{Outcome, Request, Response};
        let (path, running, _hub) = serving("typed");
        let cmds: Vec<_> = [
            "-A -t 10.0.0.1:80 -s rr",
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m",
            "-D -t 10.0.0.9:80",
            "-S -n",
        ]
        .iter()
        .map(|l| crate::ipvsadm::parse_args(&l.split_whitespace().collect::<Vec<_>>()).unwrap())
        .collect();
        let req = Request::Apply {
            commands: cmds.clone(),
            restore: true,
        };
        let Ok(Response::Applied(outcomes)) = client::ask(&path, &req) else {
            panic!("no answer");
        };
        assert_eq!(
            outcomes[..3],
            [Outcome::Done, Outcome::Done, Outcome::Refused("No such service".into())]
        );
        let r = client::render(&cmds, outcomes, None, &crate::ipvsadm::list::NumericNames);
        assert_eq!(
            r.out,
            "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 1\n"
        );
        assert_eq!((r.code, r.err.as_str()), (0, "No such service\n"));
        let Ok(Response::Text(t)) = client::ask(&path, &Request::Checks) else {
            panic!("no answer");
        };
        assert_eq!(t.code, 1, "{t:?}");
        drop(running);
        assert!(!path.exists());
    }

    /// An `ipvsadm` of version 1 (raw argv) gets a reply it can print: one line naming
    /// both versions, status 255.
    #[test]
    fn a_version_1_client_is_told_both_versions() {
        let (path, _running, hub) = serving("v1client");
        let reply = exchange(&path, b"UVS1\x06\0\0\0-C\0-n\0\0\0\0\0");
        let (head, err) = reply.split_at(16);
        assert_eq!(&head[..4], b"UVS1");
        assert_eq!(i32::from_le_bytes(head[4..8].try_into().unwrap()), 255);
        assert_eq!(u32::from_le_bytes(head[8..12].try_into().unwrap()), 0, "no stdout");
        assert_eq!(u32::from_le_bytes(head[12..16].try_into().unwrap()) as usize, err.len());
        let err = String::from_utf8(err.to_vec()).unwrap();
        assert_eq!(err, format!("{}\n", proto::mismatch(1, proto::VERSION)));
        assert!(
            err.contains("speaks version 1, the running director speaks version 2"),
            "{err}"
        );
        assert_eq!(hub.ctl.generation(), 0, "nothing was applied");
    }

    /// A client of a later version reads the director's version from the reply header
    /// (without decoding its payload); the payload says the same for a human.
    #[test]
    fn a_newer_client_is_told_both_versions() {
        let (path, _running, _hub) = serving("v3client");
        let mut req = proto::MAGIC.to_vec();
        req.extend_from_slice(&(proto::VERSION + 1).to_le_bytes());
        req.extend_from_slice(&3u32.to_le_bytes());
        req.extend_from_slice(b"new");
        let reply = exchange(&path, &req);
        assert_eq!(&reply[..4], proto::MAGIC);
        assert_eq!(u16::from_le_bytes([reply[4], reply[5]]), proto::VERSION);
        let Ok(proto::Framed::Ours(proto::Response::Text(t))) = proto::read_response(&mut &reply[..], 1 << 20) else {
            panic!("{reply:?}");
        };
        assert_eq!(
            (t.code, t.err),
            (
                255,
                format!("{}\n", proto::mismatch(proto::VERSION + 1, proto::VERSION))
            )
        );
    }

    /// This client against a version-1 director (which answers anything it cannot read
    /// with a `UVS1` error reply): one line naming both versions, status 255.
    #[test]
    fn this_client_against_a_version_1_director() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("uvs-proto-v1dir-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("old.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let old = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut magic = [0u8; 4];
            s.read_exact(&mut magic).unwrap();
            assert_ne!(&magic, b"UVS1");
            let line = "uvs: bad control request: not a uvs control message\n";
            let mut v = b"UVS1".to_vec();
            v.extend_from_slice(&255i32.to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&(line.len() as u32).to_le_bytes());
            v.extend_from_slice(line.as_bytes());
            s.write_all(&v).unwrap();
        });
        let e = client::ask(&path, &proto::Request::Checks).unwrap_err();
        old.join().unwrap();
        assert!(matches!(e, client::Failure::Version(1)), "{e:?}");
        assert_eq!(e.status(), 255);
        let line = e.describe(&path, "ipvsadm");
        assert_eq!(line, proto::mismatch(proto::VERSION, 1));
        assert!(
            line.contains("this ipvsadm speaks version 2, the running director speaks version 1"),
            "{line}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
