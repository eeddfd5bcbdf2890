//! Handover to a new process (`uvs run --takeover`): an upgrade or a restart that
//! breaks no connection.
//!
//! The running director listens on a private unix socket beside its control socket
//! (`control.sock` → `control.handover`, mode 0600, and the peer must be root or the
//! director's own user, checked with SO_PEERCRED). A new `uvs run --takeover` with the
//! same interfaces and worker count connects and says hello with its format version;
//! the old one refuses (with the reason, and goes on serving) or accepts and passes:
//!
//! * by SCM_RIGHTS: every worker's RX ring socket (so the PACKET_FANOUT group keeps
//!   its members, in the same order: every flow stays on the same worker and no frame
//!   is duplicated or lost between two groups), the interface claims' lock files, the
//!   control socket and the `--metrics` socket;
//! * as text: its live table (the state file's body, [`super::state::body`]), its
//!   configuration fingerprint and its resolved neighbours.
//!
//! The old director keeps forwarding while the new one loads the table, opens its TX
//! rings and ARP sockets, loads the steering program and maps the inherited rings.
//! Then the new one says `ready`; the old one stops serving ipvsadm (connections
//! wait in the inherited socket's backlog), writes its state file a last time, stops
//! its workers (frames arriving from then on queue in the rings, which stay open in
//! the new process), and sends the final part: each ring's read position, the table
//! again (if an ipvsadm command changed it meanwhile), the counters, the persistence
//! templates and every worker's connections ([`super::carry`]), and the sync daemons
//! it ran (`daemon --start-daemon ...` lines: it stopped them before, and the new one
//! starts those its own options did not already start). It then exits
//! without removing the control socket; the new one installs the entries into its
//! workers, starts them on the rings where the old ones stopped, and serves.
//!
//! Messages: a 4-byte big-endian length, then that many bytes of UTF-8 text; the
//! descriptors ride on `fds` messages (at most [`MAX_FDS_PER_MESSAGE`] each). Every
//! text starts with `uvs-handover VERSION`: a new director of another format version
//! is refused before anything is passed (and one that meets an old director of
//! another version gives up by itself), so neither side ever reads a format it does
//! not know.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::pipeline::{Iface, Shared};
use crate::ring::rx::RxConfig;
use crate::ring::{MAX_FDS_PER_MESSAGE, recv_with_fds};

/// The handover format this build speaks.
/// 2: the final part carries the keepalived checkers' state (`checkers` section,
/// [`crate::keepalived::carried`]).
pub const VERSION: u32 = 2;
const MAGIC: &str = "uvs-handover";
/// The longest message accepted (a million connections are ~120 MB of text).
const MAX_MESSAGE: usize = 1 << 30;
/// How long either side waits for the other's next message.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The handover socket of the director whose control socket is `control`.
pub fn socket_path(control: &Path) -> PathBuf {
    control.with_extension("handover")
}

/// The version a new director announces: [`VERSION`], or (tests only) the value of
/// `UVS_TEST_HANDOVER_VERSION`, to check that a mismatch is refused.
fn our_version() -> u32 {
    std::env::var("UVS_TEST_HANDOVER_VERSION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(VERSION)
}

fn send(sock: &UnixStream, text: &str) -> std::io::Result<()> {
    let mut w = sock;
    w.write_all(&(text.len() as u32).to_be_bytes())?;
    w.write_all(text.as_bytes())
}

fn send_fds(sock: &UnixStream, fds: &[OwnedFd]) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    for chunk in fds.chunks(MAX_FDS_PER_MESSAGE) {
        let raw: Vec<_> = chunk.iter().map(|f| f.as_raw_fd()).collect();
        let text = format!("fds {}", raw.len());
        let mut head = (text.len() as u32).to_be_bytes().to_vec();
        head.extend_from_slice(text.as_bytes());
        let iov = [std::io::IoSlice::new(&head)];
        let n = sendmsg::<()>(
            sock.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )
        .map_err(std::io::Error::from)?;
        if n != head.len() {
            (&*sock).write_all(&head[n..])?;
        }
    }
    Ok(())
}

/// The next text message; descriptors of `fds` messages are collected into `fds`.
fn recv(sock: &UnixStream, fds: &mut Vec<OwnedFd>) -> Result<String, String> {
    loop {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let (n, mut passed) = recv_with_fds(sock, &mut len[got..]).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the other director closed the handover socket".into());
            }
            fds.append(&mut passed);
            got += n;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_MESSAGE {
            return Err(format!("handover message of {len} bytes: not a uvs handover peer"));
        }
        let mut buf = vec![0; len];
        (&*sock).read_exact(&mut buf).map_err(|e| e.to_string())?;
        let text = String::from_utf8(buf).map_err(|_| "handover message is not text".to_string())?;
        if !text.starts_with("fds ") {
            return Ok(text);
        }
    }
}

/// Split `uvs-handover N\n...`: the version and the rest; anything else is not ours.
fn versioned(text: &str) -> Result<(u32, &str), String> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let v = first
        .strip_prefix(MAGIC)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "not a uvs handover message".to_string())?;
    Ok((v, rest))
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
}

/// The lines between `NAME-begin` and `NAME-end`.
fn section(text: &str, name: &str) -> String {
    let (b, e) = (format!("{name}-begin"), format!("{name}-end"));
    let mut out = String::new();
    let mut on = false;
    for l in text.lines() {
        if l == b {
            on = true;
        } else if l == e {
            break;
        } else if on {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn ifaces_word(ifaces: &[Iface]) -> String {
    ifaces
        .iter()
        .map(|i| format!("{}:{}", i.name, i.ifindex))
        .collect::<Vec<_>>()
        .join(",")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

// ---------------------------------------------------------------------------------
// The running director's side.

/// What the running director hands over at `accept` (descriptors duplicated at
/// start, so the originals stay with whoever uses them).
pub struct Offer {
    pub workers: usize,
    pub ifaces: Vec<Iface>,
    pub rx: RxConfig,
    pub claims: Vec<OwnedFd>,
    pub control: OwnedFd,
    pub metrics: Option<OwnedFd>,
    /// Worker-major: worker 0's ring on each interface, then worker 1's...
    pub rings: Vec<OwnedFd>,
    pub shared: Arc<Shared>,
    /// The configuration fingerprint the table derives from ([`super::state`]).
    pub config: Arc<std::sync::atomic::AtomicU64>,
    /// This director's steering, re-attached after an attempt that gave up.
    pub steering: Arc<crate::ring::fanout::Steering>,
}

/// A bound handover socket, not yet served.
pub struct Bound {
    l: Option<UnixListener>,
    /// Bound under [`private_path`], removed if never served.
    private: Option<PathBuf>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let (Some(_), Some(p)) = (&self.l, &self.private) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A new director that said `ready`: the old one now stops and sends [`finish`].
pub struct Taker {
    sock: UnixStream,
    pub pid: u32,
}

/// The handover socket of a running director, served by a thread until a new
/// director is ready (then [`Listener::ready`] returns it) or the director stops.
pub struct Listener {
    path: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    ready: crossbeam_channel::Receiver<Taker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Bind the socket beside the control socket `control` (before privileges are
    /// dropped: the directory may be root's). A director that is itself taking over
    /// (`private`) binds under a name of its own, which [`Listener::start`] renames
    /// into place once it has taken over: the old director's socket must stay
    /// reachable if this attempt fails. A stale socket is replaced.
    pub fn bind(control: &Path, private: bool) -> Result<Bound, String> {
        let path = if private {
            private_path(control)
        } else {
            socket_path(control)
        };
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).map_err(|e| format!("handover socket {}: {e}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("handover socket {}: {e}", path.display()))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Bound {
            l: Some(l),
            private: private.then_some(path),
        })
    }

    /// Put `b` (from [`Listener::bind`]) in place and serve it with `offer`.
    pub fn start(mut b: Bound, control: &Path, offer: Offer) -> Listener {
        if let Some(p) = &b.private
            && let Err(e) = std::fs::rename(p, socket_path(control))
        {
            tracing::warn!(
                "handover socket {}: {e}: this director cannot be taken over",
                socket_path(control).display()
            );
        }
        let Some(l) = b.l.take() else {
            unreachable!("a Bound is served once")
        };
        let (tx, ready) = crossbeam_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("uvs-handover".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((sock, _)) => {
                            let _ = sock.set_nonblocking(false);
                            let _ = sock.set_read_timeout(Some(STEP_TIMEOUT));
                            match offer_to(&sock, &offer) {
                                Ok(pid) => {
                                    let _ = tx.send(Taker { sock, pid });
                                    return;
                                }
                                Err(e) => {
                                    tracing::warn!("handover: {e}; this director goes on serving");
                                    if let Err(e) = offer.steering.reattach() {
                                        tracing::warn!("handover: re-attaching the steering program: {e}");
                                    }
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        Err(e) => {
                            tracing::warn!("handover socket: {e}");
                            std::thread::sleep(Duration::from_millis(50))
                        }
                    }
                }
            })
            .ok();
        Listener {
            path: Some(socket_path(control)),
            stop,
            ready,
            thread,
        }
    }

    /// The socket's path now belongs to the director that took over: leave it.
    pub fn keep_path(&mut self) {
        self.path = None;
    }

    /// A new director that is ready to take over, if one is.
    pub fn ready(&self) -> Option<Taker> {
        self.ready.try_recv().ok()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn private_path(control: &Path) -> PathBuf {
    control.with_extension(format!("handover.{}", std::process::id()))
}

/// Why a new director's hello is refused, if it is.
pub fn check_hello(hello: &str, workers: usize, ifaces: &[Iface]) -> Result<(), String> {
    let (v, rest) = versioned(hello)?;
    if v != VERSION {
        return Err(format!(
            "handover format version {v}, this director (pid {}) speaks version {VERSION}: a handover \
             between these two releases is not possible. Nothing was changed; this director goes on serving. \
             Upgrade through an intermediate release, or restart (the state file keeps the table; open \
             connections are lost)",
            std::process::id()
        ));
    }
    let theirs: usize = field(rest, "workers").and_then(|w| w.parse().ok()).unwrap_or(0);
    if theirs != workers {
        return Err(format!(
            "this director runs {workers} workers, the new one would start {theirs}: every flow's worker \
             is decided by the fanout group's member count, which a handover keeps. Start the new one \
             with --workers {workers}"
        ));
    }
    let want = ifaces_word(ifaces);
    let got = field(rest, "ifaces").unwrap_or("");
    if got != want {
        return Err(format!(
            "this director serves {want}, the new one asks for {got}: a handover needs the same \
             interfaces (in the same order)"
        ));
    }
    Ok(())
}

/// One handover conversation up to `ready`; returns the new director's pid.
fn offer_to(sock: &UnixStream, offer: &Offer) -> Result<u32, String> {
    let cred = nix::sys::socket::getsockopt(sock, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| format!("SO_PEERCRED: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() != 0 && cred.uid() != me {
        return Err(format!("refused a takeover by uid {} (pid {})", cred.uid(), cred.pid()));
    }
    let mut none = Vec::new();
    let hello = recv(sock, &mut none)?;
    let pid = versioned(&hello)
        .ok()
        .and_then(|(_, r)| field(r, "pid"))
        .and_then(|p| p.parse().ok())
        .unwrap_or(cred.pid() as u32);
    if let Err(why) = check_hello(&hello, offer.workers, &offer.ifaces) {
        let _ = send(sock, &format!("{MAGIC} {VERSION}\nrefuse {why}\n"));
        return Err(format!("refused a takeover by pid {pid}: {why}"));
    }
    // The descriptors first (duplicated again: a refused or failed attempt keeps ours).
    let mut fds = Vec::new();
    for f in offer
        .claims
        .iter()
        .chain([&offer.control])
        .chain(&offer.metrics)
        .chain(&offer.rings)
    {
        fds.push(f.try_clone().map_err(|e| format!("dup: {e}"))?);
    }
    send_fds(sock, &fds).map_err(|e| format!("passing the sockets: {e}"))?;
    drop(fds);
    let rx = offer.rx;
    let text = format!(
        "{MAGIC} {VERSION}\naccept\npid {}\nconfig {:016x}\nrx {} {} {} {}\nclaims {}\nmetrics {}\nrings {}\n\
         body-begin\n{}body-end\n{}",
        std::process::id(),
        offer.config.load(Ordering::Relaxed),
        rx.block_size,
        rx.block_nr,
        rx.frame_size,
        rx.retire_tov_ms,
        offer.claims.len(),
        offer.metrics.is_some() as u8,
        offer.rings.len(),
        super::state::body(&offer.shared),
        super::carry::export_neigh(&offer.shared.neigh.load()),
    );
    send(sock, &text).map_err(|e| format!("sending the table: {e}"))?;
    tracing::info!("handover: pid {pid} takes over; forwarding until it is ready");
    let mut none = Vec::new();
    match recv(sock, &mut none) {
        Ok(t) if versioned(&t).is_ok_and(|(_, r)| r.starts_with("ready")) => Ok(pid),
        Ok(t) => Err(format!("pid {pid} gave up: {}", t.lines().nth(1).unwrap_or(""))),
        Err(e) => Err(format!("pid {pid} gave up before it was ready ({e})")),
    }
}

/// The final part, once this director's workers stopped at `stopped_us`: ring
/// positions (worker-major, like the descriptors), the table, [`super::carry`]'s
/// counters, templates and connections, and the keepalived checkers' state.
pub fn finish(
    t: Taker,
    stopped_us: u64,
    positions: &[u32],
    table_body: &str,
    entries: &str,
    checkers: &str,
) -> Result<(), String> {
    let pos: Vec<String> = positions.iter().map(|p| p.to_string()).collect();
    let text = format!(
        "{MAGIC} {VERSION}\nfinal\nstopped_us {stopped_us}\npositions {}\nbody-begin\n{table_body}body-end\n\
         entries-begin\n{entries}entries-end\nchecks-begin\n{checkers}checks-end\n",
        pos.join(" ")
    );
    send(&t.sock, &text).map_err(|e| format!("sending the connections to pid {}: {e}", t.pid))?;
    // Wait (bounded) until the new director has read it all: it closes when done.
    let mut none = Vec::new();
    let _ = recv(&t.sock, &mut none);
    Ok(())
}

// ---------------------------------------------------------------------------------
// The new director's side.

/// What a new director received at `accept`.
pub struct Accepted {
    sock: UnixStream,
    pub pid: u32,
    pub config: u64,
    pub rx: RxConfig,
    pub claims: Vec<OwnedFd>,
    pub control: OwnedFd,
    pub metrics: Option<OwnedFd>,
    /// Worker-major, like [`Offer::rings`].
    pub rings: Vec<OwnedFd>,
    /// The old director's live table ([`super::state::body`]).
    pub body: String,
    pub neigh: Vec<(u32, std::net::Ipv4Addr, [u8; 6])>,
    /// [`restore`] loaded `body` (the configurations matched).
    table_adopted: bool,
}

/// The final part.
pub struct Final {
    pub stopped_us: u64,
    pub positions: Vec<u32>,
    pub body: String,
    pub entries: String,
    /// The keepalived checkers' state ([`crate::keepalived::carried`]; empty when
    /// the old director ran none).
    pub checkers: String,
}

/// Ask the director serving `control` to hand over to this one.
pub fn connect(control: &Path, workers: usize, ifaces: &[Iface]) -> Result<Accepted, String> {
    let path = socket_path(control);
    let sock = UnixStream::connect(&path).map_err(|e| {
        format!(
            "--takeover: no running director to take over at {} ({e}); start without --takeover",
            path.display()
        )
    })?;
    sock.set_read_timeout(Some(STEP_TIMEOUT)).map_err(|e| e.to_string())?;
    let hello = format!(
        "{MAGIC} {}\nhello\npid {}\nworkers {workers}\nifaces {}\n",
        our_version(),
        std::process::id(),
        ifaces_word(ifaces)
    );
    send(&sock, &hello).map_err(|e| format!("--takeover: {e}"))?;
    let mut fds = Vec::new();
    let text = recv(&sock, &mut fds).map_err(|e| format!("--takeover: {e}"))?;
    let (v, rest) = versioned(&text).map_err(|e| format!("--takeover: {e}"))?;
    if let Some(why) = rest.lines().next().and_then(|l| l.strip_prefix("refuse ")) {
        return Err(format!("--takeover refused by the running director: {why}"));
    }
    if v != our_version() {
        return Err(format!(
            "--takeover: the running director speaks handover format version {v}, this one {}: not taken over",
            our_version()
        ));
    }
    let num = |name: &str| -> Result<u64, String> {
        field(rest, name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("--takeover: bad accept message (no `{name}`)"))
    };
    let (nclaims, metrics, nrings) = (num("claims")? as usize, num("metrics")? == 1, num("rings")? as usize);
    if fds.len() != nclaims + 1 + metrics as usize + nrings || nrings != workers * ifaces.len() {
        return Err(format!(
            "--takeover: received {} descriptors, expected {}",
            fds.len(),
            nclaims + 1 + metrics as usize + nrings
        ));
    }
    let rx: Vec<u32> = field(rest, "rx")
        .unwrap_or("")
        .split(' ')
        .filter_map(|w| w.parse().ok())
        .collect();
    let [block_size, block_nr, frame_size, retire_tov_ms] = rx[..] else {
        return Err("--takeover: bad accept message (no ring geometry)".into());
    };
    let mut fds = fds.into_iter();
    let claims = fds.by_ref().take(nclaims).collect();
    let control = fds.next().ok_or("--takeover: no control socket")?;
    let metrics = if metrics { fds.next() } else { None };
    Ok(Accepted {
        pid: num("pid")? as u32,
        config: field(rest, "config")
            .and_then(|c| u64::from_str_radix(c, 16).ok())
            .unwrap_or(0),
        rx: RxConfig {
            block_size,
            block_nr,
            frame_size,
            retire_tov_ms,
            ..RxConfig::default()
        },
        claims,
        control,
        metrics,
        rings: fds.collect(),
        body: section(rest, "body"),
        neigh: super::carry::parse_neigh(rest),
        table_adopted: false,
        sock,
    })
}

impl Accepted {
    /// Tell the old director this one is ready; wait for its final part.
    pub fn ready(&self) -> Result<Final, String> {
        send(&self.sock, &format!("{MAGIC} {}\nready\n", our_version()))
            .map_err(|e| format!("--takeover: pid {}: {e}", self.pid))?;
        let mut none = Vec::new();
        let text = recv(&self.sock, &mut none).map_err(|e| {
            format!(
                "--takeover: pid {} stopped without handing over its connections ({e})",
                self.pid
            )
        })?;
        let (_, rest) = versioned(&text)?;
        let positions = field(rest, "positions")
            .unwrap_or("")
            .split(' ')
            .filter_map(|w| w.parse().ok())
            .collect();
        Ok(Final {
            stopped_us: field(rest, "stopped_us").and_then(|v| v.parse().ok()).unwrap_or(0),
            positions,
            body: section(rest, "body"),
            entries: section(rest, "entries"),
            checkers: section(rest, "checks"),
        })
    }

    /// Milliseconds since the old director's workers stopped.
    pub fn gap_ms(fin: &Final) -> f64 {
        now_us().saturating_sub(fin.stopped_us) as f64 / 1000.0
    }

    /// Done: the old director may exit.
    pub fn close(self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    /// The control socket, as a listener.
    pub fn control_listener(&self) -> Result<UnixListener, String> {
        let fd = self.control.as_fd().try_clone_to_owned().map_err(|e| e.to_string())?;
        Ok(UnixListener::from(fd))
    }
}

/// Load the table the old director serves into `ctl`, if this director's
/// configuration (`config`, the fingerprint [`super::state`] uses) is the one it
/// derived its table from; a changed configuration wins, as it does over a state
/// file, and its connections to services both tables have are still carried.
/// Returns what the log says.
pub fn restore(ctl: &crate::ctl::Ctl, t: &mut Accepted, config: u64) -> Result<String, String> {
    t.table_adopted = t.config == config;
    if !t.table_adopted {
        return Ok(format!(
            "took over from pid {}; the configuration changed, so its live ipvsadm edits are not carried",
            t.pid
        ));
    }
    let n = super::state::restore(ctl, &t.body).map_err(|e| format!("--takeover: pid {}'s table: {e}", t.pid))?;
    Ok(format!("took over the live table of pid {} ({n} lines)", t.pid))
}

/// The `--metrics` socket: the old director's when it served the address asked for.
pub fn metrics_listener(t: &Accepted, want: Option<&str>) -> Result<Option<std::net::TcpListener>, String> {
    let Some(want) = want else {
        return Ok(None);
    };
    if let Some(fd) = &t.metrics {
        let l = std::net::TcpListener::from(fd.try_clone().map_err(|e| e.to_string())?);
        let same = (want.parse::<std::net::SocketAddr>().ok()).is_some_and(|a| l.local_addr().is_ok_and(|b| a == b));
        if same {
            l.set_nonblocking(true).map_err(|e| format!("--metrics {want}: {e}"))?;
            return Ok(Some(l));
        }
    }
    crate::control::metrics::bind(want).map(Some)
}

/// A takeover whose entries are installed, its workers about to start.
pub struct TookOver {
    acc: Accepted,
    fin: Final,
    n: super::carry::Imported,
    rates: usize,
}

/// Say `ready`, take the final part, and set up `workers` (not running yet) and the
/// inherited rings in `ios` from it.
pub fn complete(
    acc: Accepted,
    ctl: &crate::ctl::Ctl,
    ios: &mut [super::worker::WorkerIo],
    workers: &mut [crate::pipeline::Worker],
    epoch: std::time::Instant,
) -> Result<TookOver, String> {
    let fin = acc.ready()?;
    let rings: usize = ios.iter().map(|io| io.rx.len()).sum();
    if fin.positions.len() != rings {
        return Err(format!(
            "--takeover: pid {} sent {} ring positions for {rings} rings",
            acc.pid,
            fin.positions.len()
        ));
    }
    for (r, &p) in ios.iter_mut().flat_map(|io| io.rx.iter_mut()).zip(&fin.positions) {
        r.set_position(p);
    }
    // An ipvsadm command the old director took after `accept`.
    if acc.table_adopted && fin.body != acc.body {
        super::state::restore(ctl, &fin.body).map_err(|e| format!("--takeover: pid {}'s table: {e}", acc.pid))?;
    }
    let now_ms = epoch.elapsed().as_millis() as u64;
    let n = super::carry::import(&fin.entries, &ctl.shared().services.load(), workers, now_ms);
    if n.skipped > 0 {
        tracing::warn!(
            "--takeover: {} entries of pid {} have no service or room here and were left behind",
            n.skipped,
            acc.pid
        );
    }
    Ok(TookOver { acc, fin, n, rates: 0 })
}

impl TookOver {
    /// The old director's rate estimates, for the blocks of `table` (counters are
    /// already carried: do this before the estimator's first sample).
    pub fn rates(&mut self, rates: &crate::control::rates::RateTable, table: &crate::service::ServiceTable) {
        self.rates = rates.import(table, &self.fin.entries, super::carry::svc_id);
    }

    /// The sync daemons the old director ran (stopped now), as `ipvsadm
    /// --start-daemon` commands; a line that does not parse is logged and skipped.
    pub fn daemons(&self) -> Vec<crate::ipvsadm::DaemonConfig> {
        let mut out = Vec::new();
        for l in self.fin.entries.lines() {
            let Some(args) = l.strip_prefix("daemon ") else {
                continue;
            };
            let words = crate::ipvsadm::rules::line_tokens(args);
            match crate::ipvsadm::parse_args(&words) {
                Ok(crate::ipvsadm::Command::StartDaemon(c)) => out.push(c),
                Ok(_) => tracing::warn!("--takeover: not a sync daemon: {args}"),
                Err(e) => tracing::warn!("--takeover: sync daemon \"{args}\": {}", e.message),
            }
        }
        out
    }

    /// The old director's keepalived checkers' state (empty if it ran none).
    pub fn checkers(&self) -> &str {
        &self.fin.checkers
    }

    /// The workers run: let the old director exit; what the log says.
    pub fn started(self) -> String {
        let gap = Accepted::gap_ms(&self.fin);
        let pid = self.acc.pid;
        self.acc.close();
        format!(
            "took over from pid {pid}: {} connections, {} templates, {} counters, {} rates; no worker ran for \
             {gap:.1} ms",
            self.n.conns, self.n.templates, self.n.counters, self.rates
        )
    }
}

/// The old director's last step: its workers stopped at `stopped_us` and gave back
/// `finished` (worker, rings); send their entries, `daemons` (the sync daemons it
/// ran, [`super::syncd::SyncDaemons::start_args`]) and `checkers` (its keepalived
/// checkers' state, [`crate::keepalived::run::Running::hand_over`]). Returns the
/// connections sent.
#[allow(clippy::too_many_arguments)]
pub fn hand_over(
    t: Taker,
    stopped_us: u64,
    shared: &Shared,
    daemons: &[String],
    checkers: &str,
    rates: &crate::control::rates::RateTable,
    finished: &[(crate::pipeline::Worker, super::worker::WorkerIo)],
    epoch: std::time::Instant,
) -> Result<usize, String> {
    let now_ms = epoch.elapsed().as_millis() as u64;
    let table = shared.services.load();
    let positions: Vec<u32> = finished
        .iter()
        .flat_map(|(_, io)| io.rx.iter().map(|r| r.position()))
        .collect();
    let mut entries = super::carry::export_counters(&table);
    entries.push_str(&rates.export(&table, super::carry::svc_id));
    entries.push_str(&super::carry::export_templates(&table, now_ms));
    let mut n = 0;
    for (w, _) in finished {
        n += w.conns.len();
        entries.push_str(&super::carry::export_conns(&table, w.id, &w.conns, now_ms));
    }
    for d in daemons {
        entries.push_str(&format!("daemon {d}\n"));
    }
    finish(
        t,
        stopped_us,
        &positions,
        &super::state::body(shared),
        &entries,
        checkers,
    )?;
    Ok(n)
}

/// Unix time in microseconds (the old director stamps its workers' stop with it).
pub fn stamp() -> u64 {
    now_us()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> Vec<Iface> {
        vec![Iface {
            ifindex: 1,
            name: "lo".into(),
            mac: [0; 6],
            addrs: vec![],
            mtu: 65536.into(),
        }]
    }

    #[test]
    fn hello_is_checked_for_version_workers_and_interfaces() {
        let ok = "uvs-handover 2\nhello\npid 9\nworkers 2\nifaces lo:1\n";
        assert_eq!(check_hello(ok, 2, &lo()), Ok(()));
        // A director of the previous format (no checker state) is refused too.
        let e = check_hello(&ok.replace("handover 2", "handover 1"), 2, &lo()).unwrap_err();
        assert!(e.starts_with("handover format version 1, this director"), "{e}");
        assert!(e.contains("speaks version 2"), "{e}");
        let e = check_hello(ok, 1, &lo()).unwrap_err();
        assert!(
            e.contains("this director runs 1 workers, the new one would start 2"),
            "{e}"
        );
        let e = check_hello(&ok.replace("lo:1", "eth0:4"), 2, &lo()).unwrap_err();
        assert!(e.contains("serves lo:1, the new one asks for eth0:4"), "{e}");
        assert!(check_hello("GET / HTTP/1.1\n", 2, &lo()).is_err());
    }

    /// Text and descriptors cross a socket pair in order, descriptors on their own
    /// messages, more than one message's worth of them.
    #[test]
    fn messages_carry_text_and_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let files: Vec<OwnedFd> = (0..MAX_FDS_PER_MESSAGE + 3)
            .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap()))
            .collect();
        let t = std::thread::spawn(move || {
            send_fds(&a, &files).unwrap();
            send(&a, "uvs-handover 1\naccept\nbody-begin\n-A -t 1.2.3.4:80\nbody-end\n").unwrap();
        });
        let mut fds = Vec::new();
        let text = recv(&b, &mut fds).unwrap();
        t.join().unwrap();
        assert_eq!(fds.len(), MAX_FDS_PER_MESSAGE + 3);
        assert_eq!(section(&text, "body"), "-A -t 1.2.3.4:80\n");
        assert_eq!(versioned(&text).unwrap().0, 1);
    }
}
