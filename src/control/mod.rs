//! The live control plane of `uvs run`: a Unix control socket that runs ipvsadm
//! commands against the running director (`uvs adm …`, or `ipvsadm …` through a
//! symlink, see [`client`]), the rate-estimator sampler, and the [`Hub`] through which
//! the control socket and `/metrics` see the workers.
//!
//! Wire protocol (one request per connection, all integers little-endian):
//!
//! ```text
//! request:  "UVS1" | u32 len | argv words, each followed by NUL | u32 len | stdin bytes
//! response: "UVS1" | i32 exit status | u32 len | stdout | u32 len | stderr
//! ```
//!
//! The request is bounded ([`MAX_ARGS`], [`MAX_STDIN`]) so a client cannot make the
//! director allocate without bound. Deadlines, the executor queue and the limits on
//! connections live in [`transport`], which knows nothing of this format: a request
//! must arrive within 2 s of accept, waits up to 1 s for one of 8 executor slots, and
//! every refusal is a reply the client prints. The socket is created mode 0600 (only
//! its owner, the user who started uvs, may connect) and peers of another uid (other
//! than root) are refused as well.
//!
//! Table changes go through [`Ctl`], which publishes a new snapshot: workers never
//! pause, and a rejected command leaves the table untouched.

pub mod client;
mod exec;
pub mod probe;
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

pub use exec::{Reply, execute};
pub use probe::WorkerProbe;
pub use rates::RateTable;

use crate::ctl::Ctl;
use crate::ipvsadm::snapshot::{self, ConnSnapshot, TableSnapshot, sort_conn_rows, template_row};
use crate::pipeline::{Worker, WorkerCounters};

/// Where `uvs run` listens and `uvs adm` connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/uvs/control.sock";
/// The environment variable naming another socket path (both sides read it).
pub const SOCKET_ENV: &str = "UVS_CONTROL";
/// Largest argv a client may send.
pub const MAX_ARGS: usize = 64 * 1024;
/// Largest `-R` input a client may send.
pub const MAX_STDIN: usize = 16 * 1024 * 1024;
const MAGIC: &[u8; 4] = b"UVS1";

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
    pub rings: Vec<crate::metrics::RingStats>,
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
    /// The frame tap's consumers (`uvs trace` attaches here).
    pub taps: Option<Arc<crate::director::tap::TapHub>>,
    /// Overload shedding's counters, and the interface of each slot.
    pub shed: Option<(Arc<crate::ring::shed::StateMap>, Vec<String>)>,
    /// keepalived checkers' states (`uvs checks`, metrics), with `--keepalived`.
    pub checks: Option<crate::keepalived::run::StatusBoard>,
    /// Bumped after every request that may have changed the table or a sysctl (the
    /// state file's writer watches it: [`crate::director::state`]).
    pub changes: Arc<AtomicU64>,
    /// The workers' mailboxes: put connection entries into them or read them out
    /// (sync daemons, handover).
    pub mailboxes: Option<crate::director::mailbox::Mailboxes>,
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
            taps: None,
            shed: None,
            checks: None,
            changes: Arc::default(),
            mailboxes: None,
        }
    }

    /// Register a worker before its thread starts: its counters, its probe, and its RX
    /// ring sockets as `(interface name, fd)` (duplicated here, so they stay valid).
    pub fn add_worker(&mut self, w: &Worker, probe: Arc<WorkerProbe>, rings: &[(String, RawFd)]) {
        let rings = rings
            .iter()
            .filter_map(|(name, fd)| crate::metrics::RingStats::dup(name, *fd).ok())
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
        let svcs = self.ctl.shared().services.load();
        snapshot::capture(&svcs, &self.ctl.shared().timeouts, &|k| self.rates.rates(k))
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

// ---------------------------------------------------------------------------------
// Wire format.

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Read a length-prefixed blob of at most `max` bytes.
fn read_blob(r: &mut impl Read, max: usize, what: &str) -> std::io::Result<Vec<u8>> {
    let n = read_u32(r)? as usize;
    if n > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} too large ({n} bytes, at most {max})"),
        ));
    }
    // Grow with the bytes that actually arrive: a peer announcing 16 MiB and sending
    // nothing costs nothing.
    let mut v = Vec::with_capacity(n.min(64 * 1024));
    r.take(n as u64).read_to_end(&mut v)?;
    if v.len() != n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{what} cut short ({} of {n} bytes)", v.len()),
        ));
    }
    Ok(v)
}

fn read_magic(r: &mut impl Read) -> std::io::Result<()> {
    let mut m = [0u8; 4];
    r.read_exact(&mut m)?;
    if &m != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a uvs control message",
        ));
    }
    Ok(())
}

/// Encode a request.
pub fn encode_request(args: &[String], stdin: &[u8]) -> Vec<u8> {
    let mut words = Vec::new();
    for a in args {
        words.extend_from_slice(a.as_bytes());
        words.push(0);
    }
    let mut v = Vec::with_capacity(12 + words.len() + stdin.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&(words.len() as u32).to_le_bytes());
    v.extend_from_slice(&words);
    v.extend_from_slice(&(stdin.len() as u32).to_le_bytes());
    v.extend_from_slice(stdin);
    v
}

/// Decode a request: (argv words, stdin).
pub fn decode_request(r: &mut impl Read) -> std::io::Result<(Vec<String>, Vec<u8>)> {
    read_magic(r)?;
    let words = read_blob(r, MAX_ARGS, "argument list")?;
    let args = match words.strip_suffix(&[0]) {
        None => Vec::new(),
        Some(w) => w
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    };
    let stdin = read_blob(r, MAX_STDIN, "standard input")?;
    Ok((args, stdin))
}

/// Encode a reply.
pub fn encode_reply(r: &Reply) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + r.out.len() + r.err.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&r.code.to_le_bytes());
    v.extend_from_slice(&(r.out.len() as u32).to_le_bytes());
    v.extend_from_slice(r.out.as_bytes());
    v.extend_from_slice(&(r.err.len() as u32).to_le_bytes());
    v.extend_from_slice(r.err.as_bytes());
    v
}

/// Decode a reply (the client's side; `max` bounds each stream).
pub fn decode_reply(r: &mut impl Read, max: usize) -> std::io::Result<Reply> {
    read_magic(r)?;
    let code = read_u32(r)? as i32;
    let out = read_blob(r, max, "reply")?;
    let err = read_blob(r, max, "reply")?;
    Ok(Reply {
        code,
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
    })
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
        // SAFETY: umask only swaps the process file-mode mask; it cannot fail.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
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
            Box::new(move || crate::metrics::serve(hub, l, &stop)),
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

/// The `UVS1` format on the [`transport`]: ipvsadm argv and stdin in, the client's
/// stdout, stderr and exit status out; the trace request takes over the connection.
struct Uvs1 {
    hub: Arc<Hub>,
}

impl transport::Handler for Uvs1 {
    fn read(&self, r: &mut dyn Read) -> std::io::Result<transport::Job> {
        let (args, stdin) = decode_request(&mut &mut *r)?;
        let hub = self.hub.clone();
        if args.first().map(String::as_str) == Some(crate::director::trace::REQUEST) {
            return Ok(transport::Job::Stream(Box::new(move |mut stream| {
                let words: Vec<&str> = args[1..].iter().map(String::as_str).collect();
                if let Some(taps) = &hub.taps {
                    crate::director::trace::serve(taps, hub.ctl.shared(), &words, &mut stream);
                }
            })));
        }
        Ok(transport::Job::Run(Box::new(move || {
            let stdin = String::from_utf8_lossy(&stdin);
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            let reply = execute(&hub, &words, Some(&stdin));
            // The state file's writer watches this (see crate::director::state).
            hub.changes.fetch_add(1, Ordering::Release);
            encode_reply(&reply)
        })))
    }

    fn error(&self, line: &str) -> Vec<u8> {
        encode_reply(&Reply::error(255, line))
    }
}

fn serve(hub: Arc<Hub>, server: Server, stop: &AtomicBool) {
    let handler = Arc::new(Uvs1 { hub });
    transport::serve(&server.listener, handler, transport::Limits::default(), stop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_round_trip() {
        let args: Vec<String> = ["-A", "-t", "10.0.0.1:80", ""].iter().map(|s| s.to_string()).collect();
        let bytes = encode_request(&args, b"-C\n");
        let (a, s) = decode_request(&mut &bytes[..]).unwrap();
        assert_eq!((a, s), (args, b"-C\n".to_vec()));
        let (a, _) = decode_request(&mut &encode_request(&[], b"")[..]).unwrap();
        assert!(a.is_empty());
        let r = Reply {
            code: -1,
            out: "x\n".into(),
            err: "No such service\n".into(),
        };
        let back = decode_reply(&mut &encode_reply(&r)[..], 1 << 20).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn hostile_requests_are_bounded() {
        // A length beyond the limit is refused before anything is allocated.
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = decode_request(&mut &v[..]).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&((MAX_STDIN + 1) as u32).to_le_bytes());
        assert!(decode_request(&mut &v[..]).is_err());
        // Wrong magic, truncated input.
        assert!(decode_request(&mut &b"HTTP/1.0"[..]).is_err());
        assert!(decode_request(&mut &MAGIC[..]).is_err());
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&10u32.to_le_bytes());
        v.extend_from_slice(b"-L");
        assert!(decode_request(&mut &v[..]).is_err());
    }

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
}
