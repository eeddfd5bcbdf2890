//! `uvs trace`: one line per forwarded packet, pairing what the director received
//! with what it sent (the tap gives both the same sequence number): the service, the
//! real server, the mode, and the headers before -> after.
//!
//! The server side (in the control thread) pairs and filters; lines and, on request,
//! the frames themselves are streamed to the client as records:
//! `kind u8 | len u32 LE | bytes` with kind 1 = text line, 2 = received frame,
//! 3 = sent frame (0 = keep-alive, ignored).

use std::net::{IpAddr, Ipv4Addr};

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use super::tap::{TapDir, TapHub};
use crate::pipeline::Shared;
use crate::service::ServiceTable;
use crate::wire::dissect::{Seen, decode};

/// What a tracer wants to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// Only packets to this VIP:port.
    pub service: Option<([u8; 4], u16)>,
    /// Only packets from (or, for NAT replies, to) this client.
    pub client: Option<[u8; 4]>,
    /// Stop after this many lines (0 = until the client goes away).
    pub count: u64,
    /// Also stream the frames (for `--pcap`).
    pub frames: bool,
}

impl TraceFilter {
    /// Parse the words after the trace request marker.
    pub fn parse(words: &[&str]) -> Result<TraceFilter, String> {
        let mut f = TraceFilter::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let mut val = || it.next().copied().ok_or_else(|| format!("{w} needs a value"));
            match *w {
                "--service" => {
                    let v = val()?;
                    let sa: std::net::SocketAddrV4 = v
                        .parse()
                        .map_err(|_| format!("--service {v}: want an IPv4 VIP:PORT, e.g. 10.0.0.1:80"))?;
                    f.service = Some((sa.ip().octets(), sa.port()));
                }
                "--client" => {
                    let v = val()?;
                    f.client = Some(
                        v.parse::<Ipv4Addr>()
                            .map_err(|_| format!("--client {v}: want an IPv4 address"))?
                            .octets(),
                    );
                }
                "--count" => {
                    let v = val()?;
                    f.count = v.parse().map_err(|_| format!("--count {v}: want a number"))?;
                }
                "--frames" => f.frames = true,
                other => return Err(format!("unknown trace option {other}")),
            }
        }
        Ok(f)
    }
}

fn ep(a: [u8; 4], p: u16) -> String {
    format!("{}:{p}", Ipv4Addr::from(a))
}

fn mac(m: &[u8; 6]) -> String {
    crate::wire::ethernet::fmt_mac(m)
}

fn headers(s: &Seen) -> String {
    let outer = s
        .outer
        .map(|(a, b, _)| format!("[{} {} > {}] ", s.encap, Ipv4Addr::from(a), Ipv4Addr::from(b)))
        .unwrap_or_default();
    format!(
        "{} > {} {outer}{} > {}",
        mac(&s.eth_src),
        mac(&s.eth_dst),
        ep(s.src, s.sport),
        ep(s.dst, s.dport)
    )
}

/// The trace line for a received frame and a frame sent because of it, if both are
/// TCP over IPv4 and the filter passes. Pure: unit-tested on fixture frames.
pub fn line(rx: &[u8], tx: &[u8], svcs: &ServiceTable, f: &TraceFilter) -> Option<String> {
    let (a, b) = (decode(rx)?, decode(tx)?);
    let to_vip = svcs.is_vip(a.dst.into());
    let (vip, vport, client) = if to_vip {
        (a.dst, a.dport, a.src)
    } else {
        (b.src, b.sport, b.dst)
    };
    if f.service.is_some_and(|s| s != (vip, vport)) || f.client.is_some_and(|c| c != client) {
        return None;
    }
    let (mode, rs) = if b.outer.is_some() {
        (
            "TUN",
            b.outer.map(|o| IpAddr::from(o.1).to_string()).unwrap_or_default(),
        )
    } else if !to_vip {
        ("NAT reply", ep(a.src, a.sport))
    } else if a.dst != b.dst {
        ("NAT", ep(b.dst, b.dport))
    } else {
        let rs = svcs
            .services()
            .iter()
            .flat_map(|s| s.lock().dests.clone())
            .find(|d| d.mac() == Some(b.eth_dst))
            .map(|d| d.addr.to_string())
            .unwrap_or_else(|| mac(&b.eth_dst));
        ("DR", rs)
    };
    let proto = if a.proto == 17 { "UDP" } else { "TCP" };
    Some(format!(
        "{proto} {} rs {rs} {mode}: {} => {}",
        ep(vip, vport),
        headers(&a),
        headers(&b)
    ))
}

/// The line a control reply that ended a trace request says.
fn refusal(r: &mut dyn std::io::Read) -> String {
    use crate::control::proto::{self, Framed, Response};
    match proto::read_response(r, 1 << 20) {
        Ok(Framed::Ours(Response::Text(t))) => t.err.trim_end().to_string(),
        Ok(Framed::Ours(_)) => "bad answer from the director".into(),
        Ok(Framed::Other(v)) => proto::mismatch(proto::VERSION, v),
        Err(e) => format!("control socket: {e}"),
    }
}

/// Record kinds on the trace stream.
pub const LINE: u8 = 1;
pub const RX_FRAME: u8 = 2;
pub const TX_FRAME: u8 = 3;

fn record(w: &mut impl Write, kind: u8, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(&[kind])?;
    w.write_all(&(bytes.len() as u32).to_le_bytes())?;
    w.write_all(bytes)
}

/// `uvs trace` as the control plane serves it (`crate::control::Trace`): the
/// director's frame tap and the state whose service table names the lines.
pub struct Tracer {
    pub taps: Arc<TapHub>,
    pub shared: Arc<Shared>,
}

impl crate::control::Trace for Tracer {
    fn serve(&self, words: &[&str], stream: &mut UnixStream) {
        serve(&self.taps, &self.shared, words, stream)
    }
}

/// Serve one tracer on the control socket until its count is reached, it goes away,
/// or the director stops. Received frames wait (bounded) for their sent frames.
pub fn serve(taps: &Arc<TapHub>, sh: &Arc<Shared>, words: &[&str], out: &mut UnixStream) {
    let f = match TraceFilter::parse(words) {
        Ok(f) => f,
        Err(e) => {
            let _ = record(out, LINE, format!("uvs trace: {e}").as_bytes());
            return;
        }
    };
    let (id, rx) = taps.attach();
    let mut recent: VecDeque<(u64, Vec<u8>)> = VecDeque::with_capacity(RECENT);
    let mut lines = 0u64;
    let mut idle = 0u32;
    'outer: loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(r) if r.dir == TapDir::Rx => {
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back((r.seq, r.frame));
            }
            Ok(r) => {
                let Some((_, rxf)) = recent.iter().rev().find(|(s, _)| *s == r.seq) else {
                    continue;
                };
                let svcs = sh.services.load();
                let Some(l) = line(rxf, &r.frame, &svcs, &f) else {
                    continue;
                };
                let mut ok = record(out, LINE, l.as_bytes()).is_ok();
                if f.frames {
                    ok = ok && record(out, RX_FRAME, rxf).is_ok() && record(out, TX_FRAME, &r.frame).is_ok();
                }
                lines += 1;
                if !ok || (f.count != 0 && lines >= f.count) {
                    break 'outer;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                // Notice a client that went away while nothing was traced.
                idle += 1;
                if idle.is_multiple_of(4) && record(out, 0, &[]).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    taps.detach(id);
}

/// Received frames kept while waiting for what was sent because of them.
const RECENT: usize = 4096;

/// `uvs trace`: connect to the director's control socket and print its trace.
pub fn client(
    control: Option<&std::path::Path>,
    words: &[String],
    pcap: Option<&std::path::Path>,
) -> Result<(), String> {
    use std::io::Read;
    // Checked here first: a bad filter fails (status 1) whether or not a director runs,
    // instead of coming back as one printed line and status 0.
    let checked: Vec<&str> = words.iter().map(String::as_str).collect();
    TraceFilter::parse(&checked).map_err(|e| format!("trace: {e}"))?;
    let path = crate::control::socket_path(control);
    let mut s = UnixStream::connect(&path).map_err(|e| crate::control::client::not_running(&path, &e))?;
    let mut args = words.to_vec();
    if pcap.is_some() {
        args.push("--frames".into());
    }
    let req = crate::control::proto::Request::Trace(args);
    s.write_all(&crate::control::proto::encode_request(&req))
        .map_err(|e| e.to_string())?;
    let mut writer = match pcap {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let header = pcap_file::pcap::PcapHeader {
                datalink: pcap_file::DataLink::ETHERNET,
                ..Default::default()
            };
            Some(
                pcap_file::pcap::PcapWriter::with_header(std::io::BufWriter::new(f), header)
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let stdout = std::io::stdout();
    loop {
        let mut head = [0u8; 5];
        if s.read_exact(&mut head).is_err() {
            return Ok(());
        }
        if head.starts_with(b"UVS") {
            // Not a record: the director refused the request (another protocol
            // version, another user's socket) with a control reply.
            return Err(refusal(&mut (&head[..]).chain(&mut s)));
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > 1 << 20 {
            return Err("trace stream: record too large".into());
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).map_err(|e| e.to_string())?;
        match head[0] {
            LINE => {
                let mut o = stdout.lock();
                let _ = writeln!(o, "{}", String::from_utf8_lossy(&body));
                let _ = o.flush();
            }
            RX_FRAME | TX_FRAME => {
                if let Some(w) = writer.as_mut() {
                    let ts = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    let _ = w.write_packet(&pcap_file::pcap::PcapPacket::new(ts, body.len() as u32, &body));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fixture::*;
    use crate::pipeline::{RxMeta, Worker, pkttype};

    #[test]
    fn a_refused_trace_request_says_why() {
        use crate::control::proto::{self, Response, Text};
        let old = proto::encode_v1_error("uvs: bad control request: not a uvs control message");
        assert_eq!(refusal(&mut &old[..]), proto::mismatch(proto::VERSION, 1));
        let denied = proto::encode_response(&Response::Text(Text::error(
            255,
            "Permission denied (you must be root)",
        )));
        assert_eq!(refusal(&mut &denied[..]), "Permission denied (you must be root)");
    }

    #[test]
    fn lines_show_before_and_after_for_each_mode_and_filter() {
        let (sh, _ctl) = director_all();
        let svcs = sh.services.load();
        let mut w = Worker::new(0, 100);
        let rx = RxMeta {
            ifindex: IFINDEX,
            pkttype: pkttype::HOST,
            csum_partial: false,
            vlan_tci: None,
        };
        let f = TraceFilter::default();
        let mut run = |frame: Vec<u8>| {
            let mut out = VecEmit::keeping();
            w.process(&sh, &svcs, 0, rx, &frame, &mut out);
            line(&frame, &out.frames[0].1, &svcs, &f).unwrap()
        };
        let dr = run(tcp_frame(1000, 80, true, false, b""));
        assert!(dr.starts_with("TCP 10.0.0.100:80 rs 10.0.0.12 DR: "), "{dr}");
        assert!(
            dr.contains("=> 02:00:00:00:00:02 > 02:00:00:00:00:12 192.0.2.10:1000 > 10.0.0.100:80"),
            "{dr}"
        );
        let nat = run(tcp_frame(1001, 8080, true, false, b""));
        assert!(
            nat.contains("rs 10.0.0.11:8888 NAT:") && nat.ends_with("192.0.2.10:1001 > 10.0.0.11:8888"),
            "{nat}"
        );
        let reply = run(reply_frame(RS1, RS1_MAC, 8888, 1001, true, b""));
        assert!(
            reply.contains("NAT reply") && reply.ends_with("10.0.0.100:8080 > 192.0.2.10:1001"),
            "{reply}"
        );
        let tun = run(tcp_frame(1002, 443, true, false, b""));
        assert!(
            tun.contains("TUN") && tun.contains("[IPIP 10.0.0.2 > 10.0.0.12]"),
            "{tun}"
        );

        let only =
            TraceFilter::parse(&["--service", "10.0.0.100:443", "--client", "192.0.2.10", "--count", "3"]).unwrap();
        assert_eq!(
            (only.service, only.client, only.count),
            (Some(([10, 0, 0, 100], 443)), Some([192, 0, 2, 10]), 3)
        );
        let mut out = VecEmit::keeping();
        let f80 = tcp_frame(1003, 80, true, false, b"");
        w.process(&sh, &svcs, 0, rx, &f80, &mut out);
        assert_eq!(
            line(&f80, &out.frames[0].1, &svcs, &only),
            None,
            "other service filtered out"
        );
        assert!(TraceFilter::parse(&["--service", "nope"]).is_err());
    }
}
