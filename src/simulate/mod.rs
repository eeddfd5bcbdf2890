//! `uvs simulate`: run a scenario through the real pipeline in virtual time.
//!
//! A scenario is one command per line (`#` starts a comment):
//!
//! * any table-changing ipvsadm command in the rules-file grammar (`-A -E -D -C -a -e
//!   -d --set`), applied through [`Ctl`] exactly as `uvs run --rules` would;
//! * `connect PROTO CIP:CPORT VIP:VPORT`: a new connection. TCP sends the client's SYN
//!   and, if a connection exists, its ACK (with NAT also the server's SYN-ACK), so the
//!   entry ends ESTABLISHED; UDP sends one datagram. Prints `PROTO CIP:CPORT ->
//!   RIP:RPORT`, or `PROTO CIP:CPORT -> none` when no connection exists;
//! * `packet PROTO CIP:CPORT VIP:VPORT FLAGS` (FLAGS from `S A F R P`, e.g. `SA`): one
//!   client packet; prints the same line only if it created a connection;
//! * `close PROTO CIP:CPORT VIP:VPORT`: the client's FIN+ACK and last ACK (with NAT also
//!   the server's FIN+ACK in between);
//! * `advance SECONDS`: move virtual time on, in steps of at most one second, reaping
//!   connections and templates as the director's once-a-second timer does;
//! * `list [OPTIONS]`: `ipvsadm -L -n [OPTIONS]` (`--stats`, `-c`, `--rate`,
//!   `--thresholds`, `--persistent-conn`, `--timeout`, `--nosort`, `--exact`, `-t/-u`).
//!
//! Frames are built as a capture would show them and handed to one [`Worker`] through
//! [`Worker::process`], so the simulator and the director share one core: scheduling,
//! persistence, the TCP state machine, counters and timers are all the real code.
//! Output is deterministic (the connection listing is sorted).

#![forbid(unsafe_code)]

pub mod chart;
mod frames;
mod host;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use crate::conn::ConnKey;
use crate::ctl::Ctl;
use crate::ipvsadm::{Command, ListOptions};
use crate::pipeline::{Iface, RouteEntry, RxMeta, Shared, Verdict, Worker, pkttype};
use crate::service::{ForwardMethod, Protocol};
use crate::wire::l4::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use host::{CLIENT_MAC, DIP, DIRECTOR_MAC, Discard, GATEWAY, IFINDEX};

pub use frames::dest_mac;

/// A scenario line that could not be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    /// 1-based line number.
    pub line: usize,
    /// The line, without its terminator.
    pub text: String,
    pub message: String,
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: `{}': {}", self.line, self.text, self.message)
    }
}

impl std::error::Error for SimError {}

/// A director with one interface, one worker and a virtual clock.
pub struct Simulator {
    sh: Arc<Shared>,
    ctl: Ctl,
    worker: Worker,
    now_ms: u64,
    /// What `--html` draws, when recording.
    record: Option<chart::Timeline>,
}

impl Default for Simulator {
    fn default() -> Self {
        Simulator::new()
    }
}

/// The simulator's connection-table cap.
const CONN_CAP: usize = 1 << 20;

impl Simulator {
    pub fn new() -> Simulator {
        let iface = Iface {
            ifindex: IFINDEX,
            name: "eth0".into(),
            mac: DIRECTOR_MAC,
            addrs: vec![DIP],
            mtu: 1500.into(),
        };
        let sh = Arc::new(Shared::new(vec![iface]));
        // As the fixture: the interface's /24 on-link, everything else (the clients)
        // via a gateway whose MAC is the client MAC; NAT replies find their way back.
        sh.routes.store(Arc::new(vec![
            RouteEntry {
                dst: Ipv4Addr::from_bits(DIP.to_bits() & 0xffff_ff00),
                mask: Ipv4Addr::new(255, 255, 255, 0),
                ifindex: IFINDEX,
                gateway: Ipv4Addr::UNSPECIFIED,
                metric: 0,
            },
            RouteEntry {
                dst: Ipv4Addr::UNSPECIFIED,
                mask: Ipv4Addr::UNSPECIFIED,
                ifindex: IFINDEX,
                gateway: GATEWAY,
                metric: 0,
            },
        ]));
        sh.publish_neigh([((IFINDEX, GATEWAY), CLIENT_MAC)].into_iter().collect());
        let ctl = Ctl::new(sh.clone());
        Simulator {
            sh,
            ctl,
            worker: Worker::new(0, CONN_CAP),
            now_ms: 0,
            record: None,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.sh
    }
    pub fn ctl(&self) -> &Ctl {
        &self.ctl
    }
    pub fn worker(&self) -> &Worker {
        &self.worker
    }
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Record every real server's load at each virtual-time step and every pick
    /// (for [`chart`]).
    pub fn record(&mut self) {
        self.record = Some(chart::Timeline::default());
        self.sample();
    }

    /// What was recorded since [`Simulator::record`].
    pub fn timeline(&self) -> Option<&chart::Timeline> {
        self.record.as_ref()
    }

    fn sample(&mut self) {
        let Some(t) = &mut self.record else { return };
        let loads = self
            .ctl
            .all_dests()
            .iter()
            .map(|d| {
                (
                    std::net::SocketAddr::new(d.addr, d.port).to_string(),
                    chart::Load {
                        active: d.active(),
                        inactive: d.inactive(),
                    },
                )
            })
            .collect();
        t.sample(self.now_ms, loads);
    }

    /// Note the pick a `connect`/`packet` line printed (`PROTO CIP:CPORT -> RIP:RPORT`).
    fn note_pick(&mut self, printed: &str) {
        let Some(t) = &mut self.record else { return };
        let mut w = printed.split_whitespace();
        if let (Some(_), Some(client), Some("->"), Some(to)) = (w.next(), w.next(), w.next(), w.next()) {
            let server = (to != "none").then(|| t.server(to));
            t.picks.push(chart::Pick {
                t_ms: self.now_ms,
                client: client.to_string(),
                server,
            });
        }
    }

    /// Run one scenario line; returns what it prints (possibly nothing).
    pub fn exec(&mut self, line: &str) -> Result<String, String> {
        let code = line.split('#').next().unwrap_or("");
        let toks = crate::ipvsadm::tokenize_line(code);
        let Some(&first) = toks.first() else {
            return Ok(String::new());
        };
        let out = if first.starts_with('-') {
            self.table_command(code)?;
            String::new()
        } else {
            match (first, &toks[1..]) {
                ("connect", [p, c, v]) => self.connect(parse_proto(p)?, parse_addr(c)?, parse_addr(v)?),
                ("packet", [p, c, v, f]) => {
                    self.packet(parse_proto(p)?, parse_addr(c)?, parse_addr(v)?, parse_flags(f)?)
                }
                ("close", [p, c, v]) => self.close(parse_proto(p)?, parse_addr(c)?, parse_addr(v)?),
                ("advance", [s]) => {
                    self.advance_ms(parse_seconds(s)?);
                    String::new()
                }
                ("list", rest) => self.list(rest)?,
                ("connect" | "close", _) => return Err(format!("usage: {first} PROTO CIP:CPORT VIP:VPORT")),
                ("packet", _) => return Err("usage: packet PROTO CIP:CPORT VIP:VPORT FLAGS".into()),
                ("advance", _) => return Err("usage: advance SECONDS".into()),
                _ => return Err(format!("unknown command '{first}'")),
            }
        };
        if matches!(first, "connect" | "packet") && !out.is_empty() {
            self.note_pick(&out);
        }
        // One-packet entries die at once; the rest only when due.
        self.reap();
        Ok(out)
    }

    /// An ipvsadm table change, then the neighbour "resolution" of every dest.
    fn table_command(&mut self, code: &str) -> Result<(), String> {
        let cmds = crate::ipvsadm::parse_rules(code).map_err(|e| e.message)?;
        for (_, cmd) in &cmds {
            self.ctl.apply(cmd).map_err(|e| e.to_string())?;
        }
        for d in self.ctl.all_dests() {
            if let IpAddr::V4(a) = d.addr {
                d.out_ifindex.store(IFINDEX, std::sync::atomic::Ordering::Relaxed);
                if d.mac().is_none() {
                    d.set_mac(dest_mac(a.octets()));
                }
            }
        }
        Ok(())
    }

    /// Hand one frame to the worker at the current virtual time.
    pub fn send(&mut self, frame: &[u8]) -> Verdict {
        let rx = RxMeta {
            ifindex: IFINDEX,
            pkttype: pkttype::HOST,
            csum_partial: false,
            vlan_tci: None,
        };
        let svcs = self.sh.services.load();
        let mut out = Discard::new();
        self.worker.process(&self.sh, &svcs, self.now_ms, rx, frame, &mut out)
    }

    fn client_frame(proto: Protocol, c: SocketAddrV4, v: SocketAddrV4, flags: u8) -> Vec<u8> {
        match proto {
            Protocol::Udp => frames::client_udp(c, v),
            _ => frames::client_tcp(c, v, flags),
        }
    }

    /// The entry of `key` if it may carry traffic: `(real server, method, packets)`.
    fn entry(&mut self, key: &ConnKey) -> Option<(SocketAddrV4, ForwardMethod, u32)> {
        let c = self.worker.conns.get_mut(key)?;
        c.dest.is_available().then(|| {
            (
                SocketAddrV4::new(c.daddr, c.dport),
                c.dest.method(),
                u32::from(c.in_pkts),
            )
        })
    }

    fn line(proto: Protocol, c: SocketAddrV4, to: Option<SocketAddrV4>) -> String {
        match to {
            Some(r) => format!("{} {c} -> {r}\n", proto.name()),
            None => format!("{} {c} -> none\n", proto.name()),
        }
    }

    fn connect(&mut self, proto: Protocol, c: SocketAddrV4, v: SocketAddrV4) -> String {
        let key = conn_key(proto, c, v);
        self.send(&Self::client_frame(proto, c, v, SYN));
        let entry = self.entry(&key);
        if proto == Protocol::Tcp
            && let Some((rip, method, _)) = entry
        {
            if method == ForwardMethod::Masq {
                self.send(&frames::tcp(dest_mac(rip.ip().octets()), rip, c, SYN | ACK));
            }
            self.send(&frames::client_tcp(c, v, ACK));
        }
        Self::line(proto, c, entry.map(|e| e.0))
    }

    fn packet(&mut self, proto: Protocol, c: SocketAddrV4, v: SocketAddrV4, flags: u8) -> String {
        let key = conn_key(proto, c, v);
        let v = self.send(&Self::client_frame(proto, c, v, flags));
        // A connection was created by this packet iff its entry has seen exactly it.
        match self.entry(&key) {
            Some((rip, _, 1)) if v != Verdict::Drop(crate::pipeline::DropReason::DestDeleted) => {
                Self::line(proto, c, Some(rip))
            }
            _ => String::new(),
        }
    }

    fn close(&mut self, proto: Protocol, c: SocketAddrV4, v: SocketAddrV4) -> String {
        if proto != Protocol::Tcp {
            return String::new();
        }
        let key = conn_key(proto, c, v);
        let Some((rip, method, _)) = self.entry(&key) else {
            return String::new();
        };
        self.send(&frames::client_tcp(c, v, FIN | ACK));
        if method == ForwardMethod::Masq {
            self.send(&frames::tcp(dest_mac(rip.ip().octets()), rip, c, FIN | ACK));
        }
        self.send(&frames::client_tcp(c, v, ACK));
        String::new()
    }

    /// Move the clock on by `ms`, running the expiry timers at every whole step.
    pub fn advance_ms(&mut self, ms: u64) {
        let target = self.now_ms + ms;
        while self.now_ms < target {
            self.now_ms = (self.now_ms + 1000).min(target);
            self.reap();
        }
    }

    fn reap(&mut self) {
        self.worker.expire(self.now_ms);
        self.sh.services.load().conn_shared().templates.expire(self.now_ms);
        self.sample();
    }

    fn list(&mut self, rest: &[&str]) -> Result<String, String> {
        let mut args = vec!["-L", "-n"];
        args.extend_from_slice(rest);
        let opts = match crate::ipvsadm::parse_args(&args) {
            Ok(Command::List(o)) => o,
            Ok(_) => return Err("list takes ipvsadm -L options only".into()),
            Err(e) => return Err(e.message),
        };
        self.render(&opts)
    }

    /// `ipvsadm -L -n` with `opts`, from the live table.
    pub fn render(&self, opts: &ListOptions) -> Result<String, String> {
        use crate::ipvsadm::{list, snapshot};
        let svcs = self.sh.services.load();
        let snap = snapshot::capture(&svcs, &self.sh.ipvs.timeouts, &|_| snapshot::Rates::default());
        let conns = if opts.connections { self.conn_rows() } else { Vec::new() };
        list::render_list(opts, &snap, &conns, &list::NumericNames).map_err(|e| e.message)
    }

    /// Connection entries and templates, sorted for a deterministic listing.
    fn conn_rows(&self) -> Vec<crate::ipvsadm::snapshot::ConnSnapshot> {
        use crate::ipvsadm::snapshot::{conn_row, sort_conn_rows, template_row};
        let now = self.now_ms;
        let mut rows: Vec<_> = self.worker.conns.iter().map(|(k, c)| conn_row(k, c, now)).collect();
        let templates = self.sh.services.load().conn_shared().templates.snapshot();
        rows.extend(templates.iter().map(|t| template_row(t, now)));
        sort_conn_rows(rows)
    }
}

fn conn_key(proto: Protocol, c: SocketAddrV4, v: SocketAddrV4) -> ConnKey {
    ConnKey {
        proto: proto as u8,
        caddr: *c.ip(),
        cport: c.port(),
        vaddr: *v.ip(),
        vport: v.port(),
    }
}

fn parse_proto(s: &str) -> Result<Protocol, String> {
    match s.to_ascii_uppercase().as_str() {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        _ => Err(format!("unknown protocol '{s}' (TCP or UDP)")),
    }
}

fn parse_addr(s: &str) -> Result<SocketAddrV4, String> {
    s.parse().map_err(|_| format!("'{s}' is not an IPv4 address:port"))
}

fn parse_flags(s: &str) -> Result<u8, String> {
    s.chars().try_fold(0u8, |acc, ch| {
        Ok(acc
            | match ch.to_ascii_uppercase() {
                'S' => SYN,
                'A' => ACK,
                'F' => FIN,
                'R' => RST,
                'P' => PSH,
                _ => return Err(format!("bad TCP flags '{s}' (letters from S A F R P)")),
            })
    })
}

/// Seconds with up to three decimals, as milliseconds.
fn parse_seconds(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not a number of seconds");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let milli: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().map_err(|_| bad())?
    };
    whole
        .checked_mul(1000)
        .and_then(|w| w.checked_add(milli))
        .ok_or_else(bad)
}

/// Run a whole scenario; stops at the first bad line. The output printed up to that
/// line is in `out` either way.
pub fn run(text: &str, out: &mut String) -> Result<(), SimError> {
    run_on(&mut Simulator::new(), text, out)
}

/// [`run`] on a given simulator (e.g. one that records).
pub fn run_on(sim: &mut Simulator, text: &str, out: &mut String) -> Result<(), SimError> {
    for (idx, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match sim.exec(line) {
            Ok(s) => out.push_str(&s),
            Err(message) => {
                return Err(SimError {
                    line: idx + 1,
                    text: line.to_string(),
                    message,
                });
            }
        }
    }
    Ok(())
}

/// `uvs simulate [FILE] [--html PAGE]`: the scenario from FILE or stdin, the output
/// on stdout; with `html`, also the picks and loads drawn on a page.
pub fn main(path: Option<&std::path::Path>, html: Option<&std::path::Path>) -> Result<(), String> {
    use std::io::{Read, Write};
    let (text, name) = match path {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("stdin: {e}"))?;
            (s, "<stdin>".to_string())
        }
    };
    let mut out = String::new();
    let mut sim = Simulator::new();
    if html.is_some() {
        sim.record();
    }
    let r = run_on(&mut sim, &text, &mut out);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    if let (Some(page), Some(t)) = (html, sim.timeline()) {
        std::fs::write(page, chart::page(t, &name, &text, &out))
            .map_err(|e| format!("cannot write {}: {e}", page.display()))?;
    }
    r.map_err(|e| format!("{name}: {e}"))
}
