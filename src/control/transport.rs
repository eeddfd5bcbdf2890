//! The control socket's transport: accepting connections, a total deadline per request,
//! and a bounded queue in front of the executors. It knows nothing of the message
//! format: a [`Handler`] reads one request from a deadline-bounded reader and turns it
//! into a [`Job`], so the format can change without touching any of this.
//!
//! The life of a request:
//!
//! 1. accepted; refused at once (with the handler's error) if [`Limits::connections`]
//!    are already open, or if the peer is neither root nor the director's own user;
//! 2. read on its own thread, every `read` bounded by what is left of
//!    [`Limits::deadline`] (counted from accept, whatever the client's pace), so a
//!    client dribbling one byte every few seconds is answered "not received in time"
//!    and holds nothing but its own thread for 2 s;
//! 3. queued for one of [`Limits::executors`] slots for at most [`Limits::queue_wait`]
//!    (and never past the deadline): a burst of listings waits its turn rather than
//!    being refused, and one that cannot get a slot is told the director is busy;
//! 4. executed (never cut short: a table change is applied whole or not at all, and
//!    its reply says which), the slot released, and the reply written within
//!    [`Limits::write_timeout`].
//!
//! Every path ends with a reply the client can print; none leaves it with a bare
//! "Broken pipe".

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The bounds of the control server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From accept until the request is read and an executor slot is taken.
    pub deadline: Duration,
    /// Longest wait for an executor slot.
    pub queue_wait: Duration,
    /// Requests executed at once.
    pub executors: usize,
    /// Connections open at once (being read, queued, executed, answered or streaming).
    pub connections: usize,
    /// Writing the reply.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            deadline: Duration::from_secs(2),
            queue_wait: Duration::from_secs(1),
            executors: 8,
            connections: 256,
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// What a request asks for.
pub enum Job {
    /// Run on an executor slot; returns the reply's bytes.
    Run(Box<dyn FnOnce() -> Vec<u8> + Send>),
    /// Take over the connection for a long-lived stream (`uvs trace`): no executor
    /// slot, no deadline beyond the handler's own.
    Stream(Box<dyn FnOnce(UnixStream) + Send>),
    /// Answer at once with these bytes.
    Reply(Vec<u8>),
}

/// The message format: how to read a request and how to say no.
pub trait Handler: Send + Sync + 'static {
    /// Read one request. An error is answered with [`Handler::error`] of its text.
    fn read(&self, r: &mut dyn Read) -> std::io::Result<Job>;
    /// A reply carrying one error line.
    fn error(&self, line: &str) -> Vec<u8>;
}

/// Serve `listener` (non-blocking) until `stop` is set.
pub fn serve(listener: &UnixListener, handler: Arc<dyn Handler>, limits: Limits, stop: &AtomicBool) {
    let open = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(Slots::new(limits.executors));
    while !stop.load(Ordering::Relaxed) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait_readable(listener.as_fd(), 20);
                continue;
            }
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let accepted = Instant::now();
        if open.fetch_add(1, Ordering::AcqRel) >= limits.connections {
            open.fetch_sub(1, Ordering::AcqRel);
            // Best effort and never blocking the accept loop: the reply is small and
            // the socket buffer empty. The client reads it even if its own write failed.
            let _ = stream.set_nonblocking(true);
            let msg = format!(
                "uvs: too many control connections open at once ({}); try again",
                limits.connections
            );
            let _ = (&stream).write_all(&handler.error(&msg));
            continue;
        }
        let (handler, open, slots) = (handler.clone(), open.clone(), slots.clone());
        let spawned = std::thread::Builder::new()
            .name("uvs-control-req".into())
            .spawn(move || {
                handle(&*handler, &slots, &limits, stream, accepted);
                open.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            // The closure (and with it the stream and the count) is gone with the error.
            tracing::warn!("control request thread: {e}");
        }
    }
}

fn handle(handler: &dyn Handler, slots: &Slots, limits: &Limits, stream: UnixStream, accepted: Instant) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let until = accepted + limits.deadline;
    let mut reader = DeadlineReader {
        s: &stream,
        until,
        got: 0,
    };
    let job = handler.read(&mut reader);
    let uid_ok = peer_allowed(&stream);
    let reply = match job {
        _ if !uid_ok => handler.error("Permission denied (you must be root)"),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => handler.error(&format!(
            "uvs: control request not received within {} ms ({} bytes arrived); nothing was done",
            limits.deadline.as_millis(),
            reader.got
        )),
        Err(e) => handler.error(&format!("uvs: bad control request: {e}")),
        Ok(Job::Reply(bytes)) => bytes,
        Ok(Job::Stream(f)) => {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
            f(stream);
            return;
        }
        Ok(Job::Run(f)) => {
            let wait = limits.queue_wait.min(until.saturating_duration_since(Instant::now()));
            match slots.acquire(wait) {
                Some(_slot) => f(),
                None => handler.error(&format!(
                    "uvs: the director is busy ({} requests running, more waiting); nothing was done, try again",
                    limits.executors
                )),
            }
        }
    };
    let _ = (&stream).write_all(&reply);
}

/// A reader that fails with `TimedOut` once `until` has passed, however the bytes trickle.
struct DeadlineReader<'a> {
    s: &'a UnixStream,
    until: Instant,
    got: usize,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.s.set_read_timeout(Some(left))?;
        match (&*self.s).read(buf) {
            // SO_RCVTIMEO expiring reads as EAGAIN.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(std::io::ErrorKind::TimedOut.into())
            }
            Ok(n) => {
                self.got += n;
                Ok(n)
            }
            Err(e) => Err(e),
        }
    }
}

/// A counting semaphore whose waiters give up after a while.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n),
            cv: Condvar::new(),
        }
    }

    fn acquire(&self, wait: Duration) -> Option<Slot<'_>> {
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (mut free, _) = self
            .cv
            .wait_timeout_while(free, wait, |f| *f == 0)
            .unwrap_or_else(|e| e.into_inner());
        if *free == 0 {
            return None;
        }
        *free -= 1;
        Some(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

/// Root and the director's own user may use the socket (its mode, 0600, already keeps
/// others out; this holds even if someone loosens it).
fn peer_allowed(s: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(s, PeerCredentials) {
        Ok(c) => c.uid() == 0 || c.uid() == nix::unistd::geteuid().as_raw(),
        Err(_) => true,
    }
}

/// Wait until `fd` is readable or `ms` pass.
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, ms: u16) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let _ = poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], PollTimeout::from(ms));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format of one line: "sleep MS\n" runs for MS milliseconds, anything else echoes.
    struct Lines;

    impl Handler for Lines {
        fn read(&self, r: &mut dyn Read) -> std::io::Result<Job> {
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while r.read(&mut b)? == 1 && b[0] != b'\n' {
                line.push(b[0]);
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(ms) = line.strip_prefix("sleep ") {
                let ms: u64 = ms.parse().unwrap();
                return Ok(Job::Run(Box::new(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    b"ok\n".to_vec()
                })));
            }
            Ok(Job::Run(Box::new(move || format!("{line}\n").into_bytes())))
        }
        fn error(&self, line: &str) -> Vec<u8> {
            format!("ERR {line}\n").into_bytes()
        }
    }

    fn start(limits: Limits) -> (std::path::PathBuf, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let dir = std::env::temp_dir().join(format!(
            "uvs-transport-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("t.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || serve(&l, Arc::new(Lines), limits, &s));
        (path, stop, t)
    }

    fn ask(path: &std::path::Path, req: &str) -> String {
        let mut c = UnixStream::connect(path).unwrap();
        let _ = c.write_all(req.as_bytes());
        let mut s = String::new();
        let _ = c.read_to_string(&mut s);
        s
    }

    #[test]
    fn a_trickling_client_is_cut_off_at_the_deadline_and_blocks_nobody() {
        let limits = Limits {
            deadline: Duration::from_millis(600),
            executors: 1,
            ..Limits::default()
        };
        let (path, stop, t) = start(limits);
        // More tricklers than executors, each sending a byte every 200 ms.
        let slow: Vec<_> = (0..4)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || {
                    let mut c = UnixStream::connect(&p).unwrap();
                    let t0 = Instant::now();
                    for _ in 0..20 {
                        if c.write_all(b"x").is_err() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    let mut s = String::new();
                    let _ = c.read_to_string(&mut s);
                    (s, t0.elapsed())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..5 {
            assert_eq!(ask(&path, &format!("hello {i}\n")), format!("hello {i}\n"));
        }
        for h in slow {
            let (s, took) = h.join().unwrap();
            assert!(
                s.starts_with("ERR uvs: control request not received within 600 ms ("),
                "{s}"
            );
            assert!(took < Duration::from_secs(4), "{took:?}");
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    #[test]
    fn requests_queue_for_a_slot_and_are_told_when_the_queue_is_too_long() {
        let limits = Limits {
            executors: 1,
            queue_wait: Duration::from_millis(500),
            ..Limits::default()
        };
        let (path, stop, t) = start(limits);
        // Three 100 ms jobs on one slot: all wait their turn within 500 ms.
        let quick: Vec<_> = (0..3)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || ask(&p, "sleep 100\n"))
            })
            .collect();
        for h in quick {
            assert_eq!(h.join().unwrap(), "ok\n");
        }
        // One long job: the next one gives up after the queue wait, with a reason.
        let p = path.clone();
        let long = std::thread::spawn(move || ask(&p, "sleep 1500\n"));
        std::thread::sleep(Duration::from_millis(200));
        let r = ask(&path, "x\n");
        assert!(r.starts_with("ERR uvs: the director is busy"), "{r}");
        assert_eq!(long.join().unwrap(), "ok\n");
        assert_eq!(ask(&path, "x\n"), "x\n");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    #[test]
    fn too_many_connections_are_answered_not_dropped() {
        let limits = Limits {
            connections: 2,
            deadline: Duration::from_millis(800),
            ..Limits::default()
        };
        let (path, stop, t) = start(limits);
        let held: Vec<_> = (0..2).map(|_| UnixStream::connect(&path).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let r = ask(&path, "x\n");
        assert!(r.starts_with("ERR uvs: too many control connections"), "{r}");
        drop(held);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ask(&path, "x\n"), "x\n");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }
}
