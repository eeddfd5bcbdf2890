//! Health-check probes: the I/O half of keepalived's checkers (check/check_tcp.c,
//! check/check_http.c, check/check_misc.c), without their state machine (that is
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

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use md5::Digest;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};

use crate::keepalived::conf::Url;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TCP_CHECK: the connection completes.
    Tcp,
    /// HTTP_GET: for every url, the status is accepted and the body's MD5 matches.
    Http {
        urls: Vec<Url>,
        /// "1.0", "1.0C" or "1.1".
        protocol: String,
        /// Host header when the url has none (default: the connect address).
        virtualhost: Option<String>,
    },
    /// MISC_CHECK: exit 0 up, 1 down, with `dynamic` 2..255 up with weight exit - 2.
    Script { argv: Vec<String>, dynamic: bool },
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

struct Conn {
    id: u64,
    stream: TcpStream,
    connected: bool,
    deadline: Instant,
    started: Instant,
    spec: Spec,
    url: usize,
    req: Vec<u8>,
    sent: usize,
    buf: Vec<u8>,
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
        match connect_nonblocking(spec.dst, spec.bind) {
            Ok(fd) => {
                let req = match &spec.probe {
                    Probe::Http {
                        urls,
                        protocol,
                        virtualhost,
                    } => request(&spec, &urls[url], protocol, virtualhost),
                    _ => Vec::new(),
                };
                self.conns.push(Conn {
                    id,
                    stream: TcpStream::from(fd),
                    connected: false,
                    deadline: now + spec.timeout,
                    started,
                    spec,
                    url,
                    req,
                    sent: 0,
                    buf: Vec::new(),
                })
            }
            Err(e) => self
                .done
                .push((id, Outcome::Down(format!("failed: {e}")), started.elapsed())),
        }
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
                    let ev = if !c.connected || c.sent < c.req.len() {
                        PollFlags::POLLOUT
                    } else {
                        PollFlags::POLLIN
                    };
                    PollFd::new(c.stream.as_fd(), ev)
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
        if !c.connected {
            if rev.is_empty() {
                return (now >= c.deadline).then(|| Err("timeout".into()));
            }
            match socket::getsockopt(&c.stream, sockopt::SocketError) {
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
        if c.sent < c.req.len() {
            match c.stream.write(&c.req[c.sent..]) {
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(format!("write error: {e}"))),
            }
        } else {
            let mut tmp = [0u8; 16384];
            loop {
                match c.stream.read(&mut tmp) {
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
}
