//! Health-check probes: the I/O half of keepalived's checkers (check/check_tcp.c,
//! check/check_http.c, check/check_ssl.c, check/check_udp.c, check/check_dns.c,
//! check/check_ping.c, check/check_misc.c), without their state machine (that is
//! [`crate::keepalived::run`]).
//!
//! One thread drives every probe: non-blocking sockets from the director's own network
//! stack (ordinary `connect(2)`s, never the AF_PACKET workers) multiplexed with one
//! `poll(2)`, and scripts as child processes reaped with `try_wait`. A probe in flight
//! costs one socket (or one child), not a thread, so thousands of checks need no more
//! threads than one. `poll(2)` rather than epoll/mio: the set changes on every attempt
//! and stays in the hundreds-to-thousands, where one `poll` per wake-up is cheap and
//! needs no registration bookkeeping.

#![forbid(unsafe_code)]

mod tls;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use md5::Digest;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};

/// One `url` of HTTP_GET / SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Url {
    pub path: String,
    /// MD5 of the body, 16 bytes.
    pub digest: Option<[u8; 16]>,
    /// Accepted status codes as inclusive ranges; empty: 200-299.
    pub status: Vec<(u16, u16)>,
    pub virtualhost: Option<String>,
    pub regex: Option<String>,
}

impl Url {
    pub fn status_ok(&self, code: u16) -> bool {
        if self.status.is_empty() {
            return (200..=299).contains(&code);
        }
        self.status.iter().any(|&(a, b)| (a..=b).contains(&code))
    }
}

/// UDP_CHECK's settings (check_udp.c).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdpCheck {
    /// `payload`: the datagram sent (empty when not set).
    pub payload: Vec<u8>,
    /// `require_reply`: a timeout fails (without it only an ICMP error fails).
    pub require_reply: bool,
    /// `require_reply HEX`: the reply's first bytes, and the wildcard nibbles (`x`).
    pub reply: Vec<u8>,
    pub reply_mask: Vec<u8>,
    pub min_reply_len: u16,
    pub max_reply_len: u16,
}

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TCP_CHECK: the connection completes.
    Tcp,
    /// HTTP_GET and SSL_GET: for every url, the status is accepted and the body's MD5
    /// matches.
    Http {
        urls: Vec<Url>,
        /// "1.0", "1.0C" or "1.1".
        protocol: String,
        /// Host header when the url has none (default: the connect address).
        virtualhost: Option<String>,
        /// SSL_GET: over TLS ([`tls`]); `sni`: the name sent as SNI (`enable_sni`).
        ssl: bool,
        sni: bool,
    },
    /// UDP_CHECK: send the payload; an ICMP error fails, a reply (checked against
    /// `require_reply`) or, without `require_reply`, silence until the timeout succeeds.
    Udp(UdpCheck),
    /// DNS_CHECK: a recursive query for `name`/`qtype`; an answer with rcode 0 succeeds.
    Dns { qtype: u16, name: String },
    /// PING_CHECK: an ICMP echo reply arrives before the timeout.
    Ping,
    /// MISC_CHECK: exit 0 up, 1 down, with `dynamic` 2..255 up with weight exit - 2.
    Script { argv: Vec<String>, dynamic: bool },
    /// SMTP_CHECK (check_smtp.c `smtp_engine_thread`): a `220` banner, `HELO helo`
    /// answered `250`, `QUIT` answered with any line. Each step waits up to the
    /// timeout.
    Smtp { helo: String },
}

/// One attempt's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub probe: Probe,
    pub dst: SocketAddr,
    pub bind: Option<SocketAddr>,
    /// connect_timeout (network probes) or misc_timeout (scripts).
    pub timeout: Duration,
}

/// An attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Up,
    /// misc_dynamic: up with this weight.
    UpWeight(u32),
    Down(String),
}

enum Io {
    Stream(TcpStream),
    /// UDP, or an ICMP socket (ping or raw) used through `send`/`recv`.
    Dgram(UdpSocket),
}

impl Io {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Io::Stream(s) => s.as_fd(),
            Io::Dgram(s) => s.as_fd(),
        }
    }
}

struct Conn {
    id: u64,
    io: Io,
    /// SSL_GET's TLS session over `io`.
    tls: Option<Box<rustls::ClientConnection>>,
    /// DNS: the query id; PING: (echo id << 16 | sequence).
    expect: u32,
    /// A raw ICMP socket (not a ping socket).
    raw: bool,
    connected: bool,
    deadline: Instant,
    started: Instant,
    spec: Spec,
    url: usize,
    req: Vec<u8>,
    sent: usize,
    buf: Vec<u8>,
    /// SMTP_CHECK: the reply being waited for.
    smtp: SmtpStep,
}

/// Where an SMTP_CHECK conversation stands (check_smtp.h `smtp_state_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SmtpStep {
    Banner,
    Helo,
    Quit,
}

/// check_smtp.h `SMTP_BUFF_MAX`: a reply line is looked for in the first 511 bytes.
const SMTP_BUFF_MAX: usize = 512;

/// check_smtp.c `smtp_get_status`: the reply's three-digit code, which must be followed
/// by a space or end the data read (so `220-` continuation lines and a bare `220\r\n`
/// do not count, as in keepalived).
pub fn smtp_status(line: &[u8]) -> Option<u16> {
    let code = line.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(line.get(3), None | Some(b' ')) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// keepalived's `inet_sockaddrtopair`: `[address]:port`.
fn pair(a: SocketAddr) -> String {
    format!("[{}]:{}", a.ip(), a.port())
}

struct Script {
    id: u64,
    child: Child,
    deadline: Instant,
    started: Instant,
    dynamic: bool,
}

/// The probes in flight.
#[derive(Default)]
pub struct Probes {
    conns: Vec<Conn>,
    scripts: Vec<Script>,
    done: Vec<(u64, Outcome, Duration)>,
    /// The last ICMP echo sequence number / DNS query id used.
    seq: u16,
}

/// The most bytes of an HTTP answer read (keepalived reads the whole body for the
/// digest; a health page is small).
const MAX_BODY: usize = 4 << 20;

fn connect_nonblocking(dst: SocketAddr, bind: Option<SocketAddr>) -> std::io::Result<OwnedFd> {
    let fam = if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(
        fam,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if let Some(b) = bind {
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(b))?;
    }
    match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(dst)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e.into()),
    }
}

fn family(dst: SocketAddr) -> AddressFamily {
    if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// A connected non-blocking UDP socket (check_udp.c / check_dns.c `udp_bind_connect`).
fn udp_socket(dst: SocketAddr, bind: Option<SocketAddr>) -> std::io::Result<UdpSocket> {
    let fd = socket::socket(
        family(dst),
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if let Some(b) = bind {
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(b))?;
    }
    socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(dst))?;
    Ok(UdpSocket::from(fd))
}

/// An ICMP socket to `dst`: an unprivileged ping socket (check_ping.c uses
/// `SOCK_DGRAM, IPPROTO_ICMP`; the kernel picks the echo id and delivers only our
/// replies) when `net.ipv4.ping_group_range` admits our group, else a raw socket
/// (`uvs run` keeps CAP_NET_RAW after its privilege drop). Returns (socket, raw).
fn icmp_socket(dst: SocketAddr, bind: Option<SocketAddr>) -> std::io::Result<(UdpSocket, bool)> {
    let proto = if dst.is_ipv4() {
        libc::IPPROTO_ICMP
    } else {
        libc::IPPROTO_ICMPV6
    };
    let domain = if dst.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let open = |ty: socket2::Type| -> std::io::Result<OwnedFd> {
        // socket2 opens it close-on-exec.
        let s = socket2::Socket::new(domain, ty, Some(socket2::Protocol::from(proto)))?;
        s.set_nonblocking(true)?;
        Ok(OwnedFd::from(s))
    };
    let (fd, raw) = match open(socket2::Type::DGRAM) {
        Ok(fd) => (fd, false),
        Err(_) => (open(socket2::Type::RAW)?, true),
    };
    let dst0 = SocketAddr::new(dst.ip(), 0);
    if let Some(b) = bind {
        socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(SocketAddr::new(b.ip(), 0)))?;
    }
    socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(dst0))?;
    Ok((UdpSocket::from(fd), raw))
}

/// RFC 1071 checksum (ICMPv4 echo over a raw socket; the kernel fills it for ping
/// sockets and ICMPv6).
fn inet_checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP(v6) echo request with `id` and `seq`.
pub fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"uvs PING_CHECK\0\0");
    if !v6 {
        let c = inet_checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// check_dns.c `dns_make_query`: header (id, RD), one question `name` `qtype` IN.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// One datagram's verdict: None to keep waiting (not ours), else the result.
fn judge_dgram(probe: &Probe, d: &[u8], expect: u32, raw: bool, v4: bool) -> Option<Result<(), String>> {
    match probe {
        Probe::Udp(u) => {
            // check_udp.c `check_udp_reply`, only when reply data is configured.
            if u.require_reply && !u.reply.is_empty() {
                let bad_len = d.len() < u.min_reply_len as usize || d.len() > u.max_reply_len as usize;
                let bad = bad_len
                    || d.iter()
                        .zip(&u.reply)
                        .zip(&u.reply_mask)
                        .any(|((a, b), m)| (a ^ b) & !m != 0);
                if bad {
                    return Some(Err("reply data mismatch".into()));
                }
            }
            Some(Ok(()))
        }
        Probe::Dns { .. } => {
            // dns_recv_thread: short, foreign id or a query: ignored.
            if d.len() < 12 || u16::from_be_bytes([d[0], d[1]]) as u32 != expect || d[2] & 0x80 == 0 {
                return None;
            }
            match d[3] & 0x0f {
                0 => Some(Ok(())),
                rc => Some(Err(format!("read error occurred. (rcode = {rc})"))),
            }
        }
        Probe::Ping => {
            // A raw IPv4 socket's datagrams start with the IP header.
            let icmp = if raw && v4 {
                let ihl = (*d.first()? & 0x0f) as usize * 4;
                d.get(ihl..)?
            } else {
                d
            };
            if icmp.len() < 8 || !matches!(icmp[0], 0 | 129) || icmp[1] != 0 {
                return None;
            }
            let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
            let id = u16::from_be_bytes([icmp[4], icmp[5]]);
            // A ping socket's id is the kernel's (and it delivers only ours); a raw
            // socket sees every echo reply from the address.
            let id_ok = !raw || id as u32 == expect >> 16;
            (seq as u32 == expect & 0xffff && id_ok).then_some(Ok(()))
        }
        _ => Some(Ok(())),
    }
}

fn host_header(spec: &Spec, url: &Url, vhost: &Option<String>) -> String {
    let port = if spec.dst.port() == 80 {
        String::new()
    } else {
        format!(":{}", spec.dst.port())
    };
    match url.virtualhost.as_ref().or(vhost.as_ref()) {
        Some(h) => format!("{h}{port}"),
        None => match spec.dst.ip() {
            IpAddr::V4(a) => format!("{a}{port}"),
            IpAddr::V6(a) => format!("[{a}]{port}"),
        },
    }
}

/// check_http.c's request: `GET path HTTP/1.x`, `User-Agent: KeepAliveClient`,
/// `Connection: close` for 1.0C and 1.1, `Host:`.
fn request(spec: &Spec, url: &Url, protocol: &str, vhost: &Option<String>) -> Vec<u8> {
    let minor = if protocol == "1.1" { 1 } else { 0 };
    let close = if protocol == "1.0" { "" } else { "Connection: close\r\n" };
    format!(
        "GET {} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {}\r\n\r\n",
        url.path,
        host_header(spec, url, vhost)
    )
    .into_bytes()
}

/// The status code and body of an HTTP/1.x answer (chunked bodies decoded).
pub fn parse_response(buf: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?;
    let mut parts = status.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = buf[end + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_s = std::str::from_utf8(&rest[..nl]).ok()?;
            let size = usize::from_str_radix(size_s.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
        body = out;
    } else if let Some(n) = length {
        body.truncate(n);
    }
    Some((code, body))
}

/// Whether a complete answer is in `buf` (headers and Content-Length bytes, or a final
/// chunk); otherwise reading goes on until the server closes.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if let Some(i) = head.find("content-length:") {
        let n: usize = head[i + 15..]
            .split("\r\n")
            .next()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(usize::MAX);
        return buf.len() - end - 4 >= n;
    }
    head.contains("transfer-encoding: chunked") && buf.ends_with(b"0\r\n\r\n")
}

/// MD5 of a body in lower-case hex, as genhash prints it.
pub fn md5_hex(body: &[u8]) -> String {
    md5::Md5::digest(body).iter().map(|b| format!("{b:02x}")).collect()
}

/// Judge one url's answer.
pub fn judge(url: &Url, buf: &[u8]) -> Result<(), String> {
    let Some((code, body)) = parse_response(buf) else {
        return Err("HTTP status code error to".into());
    };
    if !url.status_ok(code) {
        return Err(format!("HTTP status code error ({code}) to"));
    }
    if let Some(d) = url.digest {
        let got = md5::Md5::digest(&body);
        if got[..] != d[..] {
            return Err("MD5 digest error to".into());
        }
    }
    Ok(())
}

impl Probes {
    pub fn new() -> Probes {
        Probes::default()
    }

    pub fn in_flight(&self) -> usize {
        self.conns.len() + self.scripts.len()
    }

    /// Begin an attempt `id` now.
    pub fn start(&mut self, id: u64, spec: &Spec) {
        let now = Instant::now();
        match &spec.probe {
            Probe::Script { argv, dynamic } => {
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                match cmd.spawn() {
                    Ok(child) => self.scripts.push(Script {
                        id,
                        child,
                        deadline: now + spec.timeout,
                        started: now,
                        dynamic: *dynamic,
                    }),
                    Err(e) => self
                        .done
                        .push((id, Outcome::Down(format!("cannot run: {e}")), Duration::ZERO)),
                }
            }
            _ => self.open(id, spec.clone(), 0, now, now),
        }
    }

    fn open(&mut self, id: u64, spec: Spec, url: usize, started: Instant, now: Instant) {
        match self.open_conn(id, &spec, url, started, now) {
            Ok(c) => self.conns.push(c),
            Err(e) => self.done.push((id, Outcome::Down(e), started.elapsed())),
        }
    }

    fn open_conn(&mut self, id: u64, spec: &Spec, url: usize, started: Instant, now: Instant) -> Result<Conn, String> {
        self.seq = self.seq.wrapping_add(1);
        let fail = |e: std::io::Error| format!("failed: {e}");
        let (mut tls, mut expect, mut raw, mut req) = (None, 0, false, Vec::new());
        let io = match &spec.probe {
            Probe::Udp(u) => {
                let s = udp_socket(spec.dst, spec.bind).map_err(fail)?;
                s.send(&u.payload).map_err(fail)?;
                Io::Dgram(s)
            }
            Probe::Dns { qtype, name } => {
                let s = udp_socket(spec.dst, spec.bind).map_err(|_| "connection error.".to_string())?;
                // An unpredictable id (check_dns.c uses random()): std's randomly keyed
                // hasher over the sequence number.
                use std::hash::BuildHasher;
                let qid = std::collections::hash_map::RandomState::new().hash_one(self.seq) as u16;
                expect = qid as u32;
                s.send(&dns_query(qid, name, *qtype))
                    .map_err(|_| "failed to write socket.".to_string())?;
                Io::Dgram(s)
            }
            Probe::Ping => {
                let (s, is_raw) = icmp_socket(spec.dst, spec.bind).map_err(fail)?;
                let echo_id = std::process::id() as u16;
                expect = (echo_id as u32) << 16 | self.seq as u32;
                raw = is_raw;
                s.send(&echo_request(spec.dst.is_ipv6(), echo_id, self.seq))
                    .map_err(|e| format!("send ICMP packet fail: {e}"))?;
                Io::Dgram(s)
            }
            Probe::Smtp { .. } => {
                let fd = connect_nonblocking(spec.dst, spec.bind)
                    .map_err(|_| format!("Could not connect to server {}", pair(spec.dst)))?;
                Io::Stream(TcpStream::from(fd))
            }
            Probe::Tcp | Probe::Http { .. } => {
                let fd = connect_nonblocking(spec.dst, spec.bind).map_err(fail)?;
                if let Probe::Http {
                    urls,
                    protocol,
                    virtualhost,
                    ssl,
                    sni,
                } = &spec.probe
                {
                    req = request(spec, &urls[url], protocol, virtualhost);
                    if *ssl {
                        let name = urls[url].virtualhost.as_ref().or(virtualhost.as_ref()).filter(|_| *sni);
                        let mut t = tls::connect(spec.dst.ip(), name.map(String::as_str))?;
                        // Buffered by rustls until the handshake completes.
                        t.writer().write_all(&req).map_err(|e| e.to_string())?;
                        tls = Some(Box::new(t));
                    }
                }
                Io::Stream(TcpStream::from(fd))
            }
            Probe::Script { .. } => return Err("not a network probe".into()),
        };
        Ok(Conn {
            id,
            connected: matches!(io, Io::Dgram(_)),
            io,
            tls,
            expect,
            raw,
            deadline: now + spec.timeout,
            started,
            spec: spec.clone(),
            url,
            req,
            sent: 0,
            buf: Vec::new(),
            smtp: SmtpStep::Banner,
        })
    }

    /// Forget attempt `id` (its checker is gone).
    pub fn cancel(&mut self, id: u64) {
        self.conns.retain(|c| c.id != id);
        self.scripts.retain_mut(|s| {
            if s.id == id {
                let _ = s.child.kill();
                let _ = s.child.wait();
                false
            } else {
                true
            }
        });
        self.done.retain(|d| d.0 != id);
    }

    /// Wait up to `max` for progress; returns the attempts that finished.
    pub fn poll(&mut self, max: Duration) -> Vec<(u64, Outcome, Duration)> {
        let now = Instant::now();
        let mut wait = max;
        for c in &self.conns {
            wait = wait.min(c.deadline.saturating_duration_since(now));
        }
        if !self.scripts.is_empty() {
            wait = wait.min(Duration::from_millis(10));
        }
        if !self.done.is_empty() {
            wait = Duration::ZERO;
        }
        let ready: Vec<PollFlags> = {
            let mut fds: Vec<PollFd> = self
                .conns
                .iter()
                .map(|c| {
                    let ev = match (&c.io, &c.tls) {
                        (Io::Dgram(_), _) => PollFlags::POLLIN,
                        _ if !c.connected => PollFlags::POLLOUT,
                        (_, Some(t)) if t.wants_write() => PollFlags::POLLIN | PollFlags::POLLOUT,
                        (_, Some(_)) => PollFlags::POLLIN,
                        _ if c.sent < c.req.len() => PollFlags::POLLOUT,
                        _ => PollFlags::POLLIN,
                    };
                    PollFd::new(c.io.fd(), ev)
                })
                .collect();
            let ms = PollTimeout::try_from(wait.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::ZERO);
            if fds.is_empty() {
                std::thread::sleep(wait);
            } else {
                let _ = poll(&mut fds, ms);
            }
            fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect()
        };
        let now = Instant::now();
        let conns = std::mem::take(&mut self.conns);
        for (mut c, rev) in conns.into_iter().zip(ready) {
            match self.progress(&mut c, rev, now) {
                None => self.conns.push(c),
                Some(Ok(())) => {
                    // Next url of the same attempt, or done.
                    let next = match &c.spec.probe {
                        Probe::Http { urls, .. } if c.url + 1 < urls.len() => Some(c.url + 1),
                        _ => None,
                    };
                    match next {
                        Some(u) => self.open(c.id, c.spec.clone(), u, c.started, now),
                        None => self.done.push((c.id, Outcome::Up, now - c.started)),
                    }
                }
                Some(Err(reason)) => self.done.push((c.id, Outcome::Down(reason), now - c.started)),
            }
        }
        let scripts = std::mem::take(&mut self.scripts);
        for mut s in scripts {
            match s.child.try_wait() {
                Ok(Some(st)) => {
                    let o = match st.code() {
                        Some(0) => Outcome::Up,
                        Some(c) if s.dynamic && (2..=255).contains(&c) => Outcome::UpWeight(c as u32 - 2),
                        Some(c) => Outcome::Down(format!("exited with status {c}")),
                        None => Outcome::Down("killed by a signal".into()),
                    };
                    self.done.push((s.id, o, now - s.started));
                }
                Ok(None) if now >= s.deadline => {
                    let _ = s.child.kill();
                    let _ = s.child.wait();
                    self.done
                        .push((s.id, Outcome::Down("timed out".into()), now - s.started));
                }
                Ok(None) => self.scripts.push(s),
                Err(e) => self.done.push((s.id, Outcome::Down(e.to_string()), now - s.started)),
            }
        }
        std::mem::take(&mut self.done)
    }

    /// Advance one connection; Some when its url is finished.
    fn progress(&mut self, c: &mut Conn, rev: PollFlags, now: Instant) -> Option<Result<(), String>> {
        let stream = match &mut c.io {
            Io::Dgram(_) => return Self::dgram(c, rev, now),
            Io::Stream(s) => s,
        };
        if let Probe::Smtp { helo } = &c.spec.probe {
            let helo = helo.clone();
            return Self::smtp(c, &helo, rev, now);
        }
        if !c.connected {
            if rev.is_empty() {
                return (now >= c.deadline).then(|| Err("timeout".into()));
            }
            match socket::getsockopt(&*stream, sockopt::SocketError) {
                Ok(0) => {}
                Ok(e) => return Some(Err(format!("failed: {}", nix::errno::Errno::from_raw(e).desc()))),
                Err(e) => return Some(Err(format!("failed: {e}"))),
            }
            c.connected = true;
            if c.req.is_empty() {
                return Some(Ok(()));
            }
        }
        let Probe::Http { urls, .. } = &c.spec.probe else {
            return Some(Ok(()));
        };
        let url = urls[c.url].clone();
        if let Some(t) = c.tls.as_mut() {
            if let Some(r) = tls_step(stream, t, &mut c.buf, &url) {
                return Some(r);
            }
        } else if c.sent < c.req.len() {
            match stream.write(&c.req[c.sent..]) {
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(format!("write error: {e}"))),
            }
        } else {
            let mut tmp = [0u8; 16384];
            loop {
                match stream.read(&mut tmp) {
                    Ok(0) => return Some(judge(&url, &c.buf)),
                    Ok(n) => {
                        c.buf.extend_from_slice(&tmp[..n]);
                        if c.buf.len() > MAX_BODY || complete(&c.buf) {
                            return Some(judge(&url, &c.buf));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Some(Err(format!("read error: {e}"))),
                }
            }
        }
        (now >= c.deadline).then(|| Err("timeout".into()))
    }

    /// One step of SMTP_CHECK's conversation, with check_smtp.c's failure texts (logged
    /// after `SMTP_CHECK `). Every read and write has its own timeout, as keepalived
    /// schedules each with `connection_to`.
    fn smtp(c: &mut Conn, helo: &str, rev: PollFlags, now: Instant) -> Option<Result<(), String>> {
        let Io::Stream(stream) = &mut c.io else { return None };
        let server = pair(c.spec.dst);
        if !c.connected {
            if rev.is_empty() {
                return (now >= c.deadline).then(|| Err(format!("Connection timeout to server {server}")));
            }
            match socket::getsockopt(&*stream, sockopt::SocketError) {
                Ok(0) => {}
                _ => return Some(Err(format!("Error connecting to server {server}"))),
            }
            c.connected = true;
            c.deadline = now + c.spec.timeout;
        }
        if c.sent < c.req.len() {
            if !rev.is_empty() {
                match stream.write(&c.req[c.sent..]) {
                    Ok(n) if n > 0 => c.sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    _ => return Some(Err(format!("Write failure to server {server}"))),
                }
                if c.sent == c.req.len() {
                    // smtp_get_line: a fresh buffer and a fresh timeout for the reply.
                    c.buf.clear();
                    c.deadline = now + c.spec.timeout;
                }
            }
            return (c.sent < c.req.len() && now >= c.deadline)
                .then(|| Err(format!("Write timeout to server {server}")));
        }
        if !rev.is_empty() {
            let mut tmp = [0u8; SMTP_BUFF_MAX];
            loop {
                if c.buf.len() >= SMTP_BUFF_MAX - 1 {
                    tracing::info!(
                        "SMTP_CHECK Buffer overflow reading from server {server}. Increase SMTP_BUFF_MAX in check_smtp.h"
                    );
                    c.buf.clear();
                }
                let room = SMTP_BUFF_MAX - 1 - c.buf.len();
                match stream.read(&mut tmp[..room]) {
                    Ok(0) => return Some(Err(format!("Read failure from server {server}"))),
                    Ok(n) => c.buf.extend_from_slice(&tmp[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return Some(Err(format!("Read failure from server {server}"))),
                }
                if c.buf.contains(&b'\n') {
                    break;
                }
            }
            if c.buf.contains(&b'\n') {
                let next = match c.smtp {
                    SmtpStep::Banner if smtp_status(&c.buf) != Some(220) => {
                        return Some(Err(format!("Bad greeting banner from server {server}")));
                    }
                    SmtpStep::Banner => (SmtpStep::Helo, format!("HELO {helo}\r\n")),
                    SmtpStep::Helo if smtp_status(&c.buf) != Some(250) => {
                        return Some(Err(format!("Bad HELO response from server {server}")));
                    }
                    SmtpStep::Helo => (SmtpStep::Quit, "QUIT\r\n".to_string()),
                    SmtpStep::Quit => return Some(Ok(())),
                };
                c.smtp = next.0;
                // snprintf into SMTP_BUFF_MAX: a longer HELO line is cut there.
                let mut line = next.1.into_bytes();
                line.truncate(SMTP_BUFF_MAX - 1);
                c.req = line;
                c.sent = 0;
                c.deadline = now + c.spec.timeout;
                return None;
            }
        }
        (now >= c.deadline).then(|| Err(format!("Read timeout from server {server}")))
    }

    /// UDP_CHECK, DNS_CHECK, PING_CHECK: read what arrived; at the deadline, UDP_CHECK
    /// without `require_reply` succeeds (core/layer4.c `udp_socket_state`), the others
    /// fail.
    fn dgram(c: &mut Conn, rev: PollFlags, now: Instant) -> Option<Result<(), String>> {
        let Io::Dgram(s) = &c.io else { return None };
        if !rev.is_empty() {
            let mut tmp = vec![0u8; 65536];
            loop {
                match s.recv(&mut tmp) {
                    Ok(n) => {
                        if let Some(r) = judge_dgram(&c.spec.probe, &tmp[..n], c.expect, c.raw, c.spec.dst.is_ipv4()) {
                            return Some(r);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    // An ICMP error queued on the socket (port or host unreachable).
                    Err(e) => {
                        return Some(Err(match &c.spec.probe {
                            Probe::Dns { .. } => format!(
                                "failed to read socket; errno {} ({})",
                                e.raw_os_error().unwrap_or(0),
                                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)).desc()
                            ),
                            _ => format!("failed: {e}"),
                        }));
                    }
                }
            }
        }
        if now < c.deadline {
            return None;
        }
        Some(match &c.spec.probe {
            Probe::Udp(u) if !u.require_reply => Ok(()),
            Probe::Dns { .. } => Err("read timeout from socket".into()),
            _ => Err("timeout".into()),
        })
    }
}

/// One step of an SSL_GET url (check_ssl.c `ssl_connect`, `ssl_read_thread`): flush
/// TLS records, take in what arrived, read the plaintext answer. Some when finished.
fn tls_step(
    stream: &mut TcpStream,
    t: &mut rustls::ClientConnection,
    buf: &mut Vec<u8>,
    url: &Url,
) -> Option<Result<(), String>> {
    use std::io::ErrorKind::WouldBlock;
    let mut tmp = [0u8; 16384];
    loop {
        let mut progressed = false;
        while t.wants_write() {
            match t.write_tls(stream) {
                Ok(0) => break,
                Ok(_) => progressed = true,
                Err(e) if e.kind() == WouldBlock => break,
                Err(e) => return Some(Err(format!("SSL write error: {e}"))),
            }
        }
        let mut eof = false;
        if t.wants_read() {
            match t.read_tls(stream) {
                Ok(0) => eof = true,
                Ok(_) => {
                    progressed = true;
                    if let Err(e) = t.process_new_packets() {
                        // Send the alert, as OpenSSL does.
                        let _ = t.write_tls(stream);
                        return Some(Err(format!("SSL error '{e}'")));
                    }
                }
                Err(e) if e.kind() == WouldBlock => {}
                Err(e) => return Some(Err(format!("SSL read error: {e}"))),
            }
        }
        loop {
            match t.reader().read(&mut tmp) {
                // close_notify.
                Ok(0) => return Some(judge(url, buf)),
                Ok(n) => {
                    progressed = true;
                    buf.extend_from_slice(&tmp[..n]);
                    if buf.len() > MAX_BODY || complete(buf) {
                        return Some(judge(url, buf));
                    }
                }
                Err(e) if e.kind() == WouldBlock => break,
                // Closed without close_notify: keepalived sets quiet shutdown and
                // judges what it read.
                Err(_) => return Some(judge(url, buf)),
            }
        }
        if eof {
            return Some(if t.is_handshaking() {
                Err("SSL read error from".into())
            } else {
                judge(url, buf)
            });
        }
        if !progressed {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(path: &str, status: &[(u16, u16)], digest: Option<&str>) -> Url {
        let mut u = Url {
            path: path.into(),
            status: status.to_vec(),
            ..Url::default()
        };
        if let Some(d) = digest {
            let mut b = [0u8; 16];
            for (i, x) in b.iter_mut().enumerate() {
                *x = u8::from_str_radix(&d[2 * i..2 * i + 2], 16).unwrap();
            }
            u.digest = Some(b);
        }
        u
    }

    fn run_until_done(p: &mut Probes) -> Vec<(u64, Outcome, Duration)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        while p.in_flight() > 0 && Instant::now() < deadline {
            out.extend(p.poll(Duration::from_millis(50)));
        }
        out.extend(p.poll(Duration::ZERO));
        out
    }

    #[test]
    fn md5_as_genhash_prints_it() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"hello\n"), "b1946ac92492d2347c6235b4d2611184");
    }

    #[test]
    fn responses_parsed_with_length_and_chunks() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(parse_response(r), Some((200, b"hello".to_vec())));
        let r = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r), Some((404, b"abcde".to_vec())));
        assert!(complete(r));
        assert_eq!(parse_response(b"garbage"), None);
        let u = url("/", &[], Some("b1946ac92492d2347c6235b4d2611184"));
        assert_eq!(judge(&u, b"HTTP/1.0 200 OK\r\n\r\nhello\n"), Ok(()));
        assert_eq!(
            judge(&u, b"HTTP/1.0 200 OK\r\n\r\nhellO\n"),
            Err("MD5 digest error to".into())
        );
        assert_eq!(
            judge(&u, b"HTTP/1.0 500 X\r\n\r\nhello\n"),
            Err("HTTP status code error (500) to".into())
        );
        let u = url("/", &[(300, 302)], None);
        assert_eq!(judge(&u, b"HTTP/1.0 301 Moved\r\n\r\n"), Ok(()));
    }

    #[test]
    fn tcp_probe_up_and_refused_on_loopback() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up = l.local_addr().unwrap();
        let closed = {
            let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            t.local_addr().unwrap()
        };
        let mut p = Probes::new();
        let spec = |dst| Spec {
            probe: Probe::Tcp,
            dst,
            bind: None,
            timeout: Duration::from_secs(2),
        };
        p.start(1, &spec(up));
        p.start(2, &spec(closed));
        let mut out = run_until_done(&mut p);
        out.sort_by_key(|o| o.0);
        assert_eq!(out[0].1, Outcome::Up);
        assert!(
            matches!(&out[1].1, Outcome::Down(r) if r.contains("refused")),
            "{out:?}"
        );
    }

    #[test]
    fn http_probe_checks_status_and_digest() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = l.accept().unwrap();
                let mut req = [0u8; 1024];
                let n = s.read(&mut req).unwrap();
                let req = String::from_utf8_lossy(&req[..n]).to_string();
                assert!(
                    req.starts_with("GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\n"),
                    "{req}"
                );
                s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n")
                    .unwrap();
            }
        });
        let mut p = Probes::new();
        let spec = |d: &str| Spec {
            probe: Probe::Http {
                urls: vec![url("/health", &[], Some(d))],
                protocol: "1.0".into(),
                virtualhost: None,
                ssl: false,
                sni: false,
            },
            dst: addr,
            bind: None,
            timeout: Duration::from_secs(2),
        };
        p.start(1, &spec("b1946ac92492d2347c6235b4d2611184"));
        let out = run_until_done(&mut p);
        assert_eq!(out[0].1, Outcome::Up, "{out:?}");
        p.start(2, &spec("00000000000000000000000000000000"));
        let out = run_until_done(&mut p);
        assert_eq!(out[0].1, Outcome::Down("MD5 digest error to".into()));
        server.join().unwrap();
    }

    #[test]
    fn script_probe_exit_codes() {
        let mut p = Probes::new();
        let spec = |code: &str, dynamic| Spec {
            probe: Probe::Script {
                argv: vec!["/bin/sh".into(), "-c".into(), format!("exit {code}")],
                dynamic,
            },
            dst: "0.0.0.0:0".parse().unwrap(),
            bind: None,
            timeout: Duration::from_secs(3),
        };
        p.start(1, &spec("0", false));
        p.start(2, &spec("1", false));
        p.start(3, &spec("7", true));
        p.start(4, &spec("7", false));
        let mut sleep = spec("0", false);
        sleep.probe = Probe::Script {
            argv: vec!["/bin/sleep".into(), "5".into()],
            dynamic: false,
        };
        sleep.timeout = Duration::from_millis(100);
        p.start(5, &sleep);
        let mut out = run_until_done(&mut p);
        out.sort_by_key(|o| o.0);
        let got: Vec<_> = out.iter().map(|o| o.1.clone()).collect();
        assert_eq!(
            got,
            [
                Outcome::Up,
                Outcome::Down("exited with status 1".into()),
                Outcome::UpWeight(5),
                Outcome::Down("exited with status 7".into()),
                Outcome::Down("timed out".into()),
            ]
        );
    }

    fn spec(probe: Probe, dst: SocketAddr, ms: u64) -> Spec {
        Spec {
            probe,
            dst,
            bind: None,
            timeout: Duration::from_millis(ms),
        }
    }

    #[test]
    fn smtp_status_as_keepalived_reads_it() {
        assert_eq!(smtp_status(b"220 mx.example ESMTP\r\n"), Some(220));
        assert_eq!(smtp_status(b"250 hello"), Some(250));
        assert_eq!(smtp_status(b"220"), Some(220));
        // smtp_get_status: the code must be followed by a space or end the data.
        assert_eq!(smtp_status(b"220-first line\r\n"), None);
        assert_eq!(smtp_status(b"220\r\n"), None);
        assert_eq!(smtp_status(b"22 x"), None);
        assert_eq!(smtp_status(b"ab0 x"), None);
        assert_eq!(smtp_status(b""), None);
    }

    /// A one-connection SMTP responder on loopback: sends `banner`, answers the first
    /// line with `helo_reply` (recording it), then QUIT with 221.
    fn smtp_server(
        banner: &'static [u8],
        helo_reply: &'static [u8],
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        use std::io::BufRead;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            let mut got = Vec::new();
            s.write_all(banner).unwrap();
            for reply in [helo_reply, &b"221 bye\r\n"[..]] {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                got.push(line);
                let _ = s.write_all(reply);
            }
            got
        });
        (addr, h)
    }

    #[test]
    fn smtp_probe_conversation_and_failures() {
        let helo = Probe::Smtp {
            helo: "checker.example".into(),
        };
        let (addr, h) = smtp_server(b"220 mx ESMTP\r\n", b"250 mx\r\n");
        let mut p = Probes::new();
        p.start(1, &spec(helo.clone(), addr, 2000));
        let out = run_until_done(&mut p);
        assert_eq!(out[0].1, Outcome::Up);
        assert_eq!(h.join().unwrap(), ["HELO checker.example\r\n", "QUIT\r\n"]);

        let (addr, h) = smtp_server(b"554 go away\r\n", b"250 mx\r\n");
        p.start(2, &spec(helo.clone(), addr, 2000));
        let out = run_until_done(&mut p);
        assert_eq!(
            out[0].1,
            Outcome::Down(format!("Bad greeting banner from server [127.0.0.1]:{}", addr.port()))
        );
        drop(h);

        let (addr, h) = smtp_server(b"220 mx\r\n", b"501 who are you\r\n");
        p.start(3, &spec(helo.clone(), addr, 2000));
        let out = run_until_done(&mut p);
        assert_eq!(
            out[0].1,
            Outcome::Down(format!("Bad HELO response from server [127.0.0.1]:{}", addr.port()))
        );
        drop(h);

        // No banner within the timeout; then a refused connection.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = l.local_addr().unwrap();
        p.start(4, &spec(helo.clone(), silent, 200));
        let out = run_until_done(&mut p);
        assert_eq!(
            out[0].1,
            Outcome::Down(format!("Read timeout from server [127.0.0.1]:{}", silent.port()))
        );
        drop(l);
        let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
        p.start(5, &spec(helo, closed, 2000));
        let out = run_until_done(&mut p);
        assert_eq!(
            out[0].1,
            Outcome::Down(format!("Error connecting to server [127.0.0.1]:{}", closed.port()))
        );
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// SSL_GET against `openssl s_server -WWW` (a real TLS server, self-signed: keepalived
    /// does not verify it either), in the same poll loop as a plain TCP probe.
    #[test]
    fn ssl_get_against_openssl_s_server() {
        if std::process::Command::new("openssl").arg("version").output().is_err() {
            eprintln!(
                "\n*** SKIPPED ssl_get_against_openssl_s_server: no openssl binary (apt-get install openssl) ***\n"
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("uvs-ssl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("health"), "hello\n").unwrap();
        let ok = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=uvs-test",
            ])
            .args(["-keyout", "k.pem", "-out", "c.pem"])
            .current_dir(&dir)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        let port = free_port();
        let mut server = std::process::Command::new("openssl")
            .args([
                "s_server", "-quiet", "-WWW", "-cert", "c.pem", "-key", "k.pem", "-accept",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let ssl = |path: &str, digest: Option<&str>, sni: bool| Probe::Http {
            urls: vec![url(path, if digest.is_none() { &[(404, 404)] } else { &[] }, digest)],
            protocol: "1.0".into(),
            virtualhost: Some("health.example".into()),
            ssl: true,
            sni,
        };
        let mut p = Probes::new();
        p.start(
            1,
            &spec(
                ssl("/health", Some("b1946ac92492d2347c6235b4d2611184"), false),
                addr,
                5000,
            ),
        );
        let r1 = run_until_done(&mut p);
        p.start(
            2,
            &spec(
                ssl("/health", Some("00000000000000000000000000000000"), true),
                addr,
                5000,
            ),
        );
        let r2 = run_until_done(&mut p);
        // s_server answers 200; only 404 is accepted here.
        p.start(3, &spec(ssl("/health", None, false), addr, 5000));
        let r3 = run_until_done(&mut p);
        // Plain HTTP to a TLS port: the server answers no HTTP.
        p.start(
            4,
            &spec(
                Probe::Http {
                    urls: vec![url("/health", &[], None)],
                    protocol: "1.0".into(),
                    virtualhost: None,
                    ssl: false,
                    sni: false,
                },
                addr,
                1000,
            ),
        );
        let r4 = run_until_done(&mut p);
        let _ = server.kill();
        let _ = server.wait();
        // TLS to a closed port.
        p.start(5, &spec(ssl("/health", None, false), addr, 2000));
        let r5 = run_until_done(&mut p);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(r1[0].1, Outcome::Up, "{r1:?}");
        assert_eq!(r2[0].1, Outcome::Down("MD5 digest error to".into()), "{r2:?}");
        assert!(
            matches!(&r3[0].1, Outcome::Down(r) if r.contains("status code error (200)")),
            "{r3:?}"
        );
        assert!(matches!(&r4[0].1, Outcome::Down(_)), "{r4:?}");
        assert!(matches!(&r5[0].1, Outcome::Down(r) if r.contains("refused")), "{r5:?}");
    }

    #[test]
    fn udp_check_reply_silence_and_port_unreachable() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed = {
            let t = UdpSocket::bind("127.0.0.1:0").unwrap();
            t.local_addr().unwrap()
        };
        let server = std::thread::spawn(move || {
            echo.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut b = [0u8; 512];
            for _ in 0..2 {
                let Ok((n, from)) = echo.recv_from(&mut b) else { return };
                assert_eq!(&b[..n], b"\x01\x02");
                echo.send_to(b"\xabPONG", from).unwrap();
            }
        });
        let udp = |require_reply: bool, reply: &str| {
            let (r, m) = crate::keepalived::conf::read_hex_str(reply, true).unwrap_or_default();
            Probe::Udp(UdpCheck {
                payload: vec![1, 2],
                require_reply,
                reply: r,
                reply_mask: m,
                min_reply_len: 0,
                max_reply_len: 255,
            })
        };
        let mut p = Probes::new();
        p.start(1, &spec(udp(true, "ab 50 4x"), echo_addr, 2000));
        p.start(2, &spec(udp(true, "ac"), echo_addr, 2000));
        p.start(3, &spec(udp(false, ""), silent.local_addr().unwrap(), 300));
        p.start(4, &spec(udp(true, ""), silent.local_addr().unwrap(), 300));
        p.start(5, &spec(udp(false, ""), closed, 2000));
        let mut out = run_until_done(&mut p);
        out.sort_by_key(|o| o.0);
        server.join().unwrap();
        let got: Vec<_> = out.iter().map(|o| o.1.clone()).collect();
        assert_eq!(got[0], Outcome::Up);
        assert_eq!(got[1], Outcome::Down("reply data mismatch".into()));
        assert_eq!(got[2], Outcome::Up, "silence is success without require_reply");
        assert_eq!(got[3], Outcome::Down("timeout".into()));
        assert!(matches!(&got[4], Outcome::Down(r) if r.contains("refused")), "{got:?}");
    }

    #[test]
    fn dns_check_query_and_rcode() {
        let q = dns_query(0x1234, "example.org", 1);
        assert_eq!(
            q,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01"
        );
        assert_eq!(dns_query(1, "", 6)[12..], [0, 0, 6, 0, 1]);
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            server.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut b = [0u8; 512];
            for rcode in [0u8, 3] {
                let (n, from) = server.recv_from(&mut b).unwrap();
                // A stray answer with another id first: ignored.
                let mut stray = b[..n].to_vec();
                stray[0] ^= 0xff;
                stray[2] |= 0x80;
                server.send_to(&stray, from).unwrap();
                let mut r = b[..n].to_vec();
                r[2] |= 0x80;
                r[3] = 0x80 | rcode;
                server.send_to(&r, from).unwrap();
            }
        });
        let dns = Probe::Dns {
            qtype: 6,
            name: "example.org".into(),
        };
        let mut p = Probes::new();
        p.start(1, &spec(dns.clone(), addr, 2000));
        let r1 = run_until_done(&mut p);
        p.start(2, &spec(dns.clone(), addr, 2000));
        let r2 = run_until_done(&mut p);
        t.join().unwrap();
        p.start(3, &spec(dns, addr, 200));
        let r3 = run_until_done(&mut p);
        assert_eq!(r1[0].1, Outcome::Up);
        assert_eq!(r2[0].1, Outcome::Down("read error occurred. (rcode = 3)".into()));
        assert!(matches!(&r3[0].1, Outcome::Down(_)), "{r3:?}");
    }

    #[test]
    fn ping_check_loopback() {
        let mut p = Probes::new();
        p.start(1, &spec(Probe::Ping, "127.0.0.1:0".parse().unwrap(), 2000));
        let out = run_until_done(&mut p);
        match &out[0].1 {
            Outcome::Up => {}
            // Neither a ping socket (ping_group_range) nor a raw one (CAP_NET_RAW).
            Outcome::Down(r) if r.contains("ermission") || r.contains("not permitted") => {
                eprintln!("\n*** SKIPPED ping_check_loopback: {r} ***\n")
            }
            o => panic!("{o:?}"),
        }
        let e = echo_request(false, 0x0102, 0x0304);
        assert_eq!((e[0], e[4], e[5], e[6], e[7]), (8, 1, 2, 3, 4));
        assert_eq!(inet_checksum(&e), 0, "a valid checksum sums to zero");
    }
}
