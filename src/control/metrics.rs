//! `uvs run --metrics ADDR:PORT`: Prometheus text exposition on `GET /metrics`.
//!
//! * node_exporter's `ipvs` collector names, types, HELP texts and labels (so existing
//!   dashboards work unchanged): `node_ipvs_connections_total`,
//!   `node_ipvs_{incoming,outgoing}_{packets,bytes}_total`, and
//!   `node_ipvs_backend_{connections_active,connections_inactive,weight}` with the
//!   labels `local_address`, `local_mark` (the fwmark as `/proc`'s 8-digit hex),
//!   `local_port`, `proto`, `remote_address`, `remote_port`;
//! * uvs's own counters: per-worker frames by outcome, drops by reason (summed over
//!   workers), ARP/neighbour resolution, RX ring drops from `PACKET_STATISTICS`,
//!   connection-table size and cap, persistence templates.
//!
//! The server is hyper's HTTP/1 on a one-thread tokio runtime ([`serve`]): one request
//! per connection, the request head bounded to 8 KiB and due within 2 s, the whole
//! exchange within 10 s, so a client sending a byte every few seconds delays nobody.
//! Reading counters sums the workers' slots; nothing here touches the packet path.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::net::{IpAddr, TcpListener};
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Hub;
use crate::ipvsadm::snapshot::TableSnapshot;
use crate::pipeline::DropReason;
use crate::service::{Protocol, ServiceAddr};

const MAX_HEAD: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The cumulative `PACKET_STATISTICS` of one RX ring (the kernel resets its counters
/// on every read, so they are accumulated here).
#[derive(Debug)]
pub struct RingStats {
    pub iface: String,
    fd: OwnedFd,
    acc: Mutex<[u64; 3]>,
}

impl RingStats {
    /// Keep a duplicate of the ring's socket `fd` (it stays valid however long the
    /// worker keeps the ring).
    pub fn dup(iface: &str, fd: RawFd) -> std::io::Result<RingStats> {
        let owned = crate::sys::fd::dup_raw(fd)?;
        Ok(RingStats {
            iface: iface.to_string(),
            fd: owned,
            acc: Mutex::new([0; 3]),
        })
    }

    /// (packets, drops, queue freezes) since the ring was opened (or since the first
    /// read, if someone else read it before).
    pub fn read(&self) -> [u64; 3] {
        let mut acc = self.acc.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok((packets, drops, freezes)) = crate::ring::packet_stats(&self.fd) {
            acc[0] += packets as u64;
            acc[1] += drops as u64;
            acc[2] += freezes as u64;
        }
        *acc
    }
}

/// Bind the metrics listener (before anything starts, so a bad address starts nothing).
pub fn bind(addr: &str) -> Result<TcpListener, String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("--metrics {addr}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| format!("--metrics {addr}: {e}"))?;
    Ok(l)
}

/// Connections served at once; more are closed unanswered until some finish.
const MAX_CONNECTIONS: usize = 256;
/// From accept to the last byte of the reply, whatever the client's pace.
const CONN_DEADLINE: Duration = Duration::from_secs(10);

/// Serve until `stop` is set: hyper's HTTP/1 server on a single-threaded tokio runtime
/// (this thread), so any number of slow clients costs memory, not time. Each connection
/// gets [`IO_TIMEOUT`] to send its request head and [`CONN_DEADLINE`] in all, then it is
/// dropped; heads over 8 KiB are answered 431 by hyper.
pub fn serve(hub: Arc<Hub>, listener: TcpListener, stop: &AtomicBool) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("metrics server: cannot start its runtime: {e}");
            return;
        }
    };
    rt.block_on(async {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("metrics listener: {e}");
                return;
            }
        };
        let open = Arc::new(AtomicUsize::new(0));
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while !stop.load(Ordering::Relaxed) {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("metrics accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tick.tick() => continue,
            };
            if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let (hub, open) = (hub.clone(), open.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let reply = answer(&hub, &req);
                    async move { Ok::<_, std::convert::Infallible>(reply) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(IO_TIMEOUT)
                    .max_buf_size(MAX_HEAD)
                    .keep_alive(false)
                    .title_case_headers(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(CONN_DEADLINE, conn).await;
                open.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
}

type Body = http_body_util::Full<hyper::body::Bytes>;

/// The reply to one request (hyper leaves the body out for HEAD).
fn answer<B>(hub: &Hub, req: &hyper::Request<B>) -> hyper::Response<Body> {
    use hyper::{Method, StatusCode};
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let (status, ctype, body) = match (get, req.uri().path()) {
        (true, "/metrics") => (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", render(hub)),
        (true, "/") => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<html><head><title>uvs</title></head><body><a href=\"/metrics\">Metrics</a></body></html>\n".into(),
        ),
        (true, _) => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        (false, _) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
    };
    let mut r = hyper::Response::new(Body::from(body));
    *r.status_mut() = status;
    // One request per connection, as HTTP/1.0 (and as the previous server answered).
    *r.version_mut() = hyper::Version::HTTP_10;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Go's `net.IP.String()` form: IPv4-mapped IPv6 addresses print as IPv4.
fn go_ip(a: IpAddr) -> String {
    match a {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The node_exporter backend labels of one real server of `svc`.
fn backend_labels(svc: &ServiceAddr, raddr: IpAddr, rport: u16) -> String {
    let (laddr, lport, proto, mark) = match *svc {
        ServiceAddr::Inet { proto, addr, port } => {
            let p = match proto {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
                Protocol::Sctp => "SCTP",
            };
            (go_ip(addr), port, p, String::new())
        }
        ServiceAddr::Fwmark { mark, .. } => (String::new(), 0, "FWM", format!("{mark:08X}")),
    };
    format!(
        "local_address=\"{laddr}\",local_mark=\"{mark}\",local_port=\"{lport}\",proto=\"{proto}\",\
         remote_address=\"{}\",remote_port=\"{rport}\"",
        go_ip(raddr)
    )
}

/// The node_exporter `ipvs` families for `t`.
pub fn render_ipvs(out: &mut String, t: &TableSnapshot) {
    type Field = fn(&crate::ipvsadm::snapshot::DestSnapshot) -> i64;
    let backends: [(&str, &str, Field); 3] = [
        (
            "node_ipvs_backend_connections_active",
            "The current active connections by local and remote address.",
            |d| d.active as i64,
        ),
        (
            "node_ipvs_backend_connections_inactive",
            "The current inactive connections by local and remote address.",
            |d| d.inactive as i64,
        ),
        (
            "node_ipvs_backend_weight",
            "The current backend weight by local and remote address.",
            |d| d.config.weight as i64,
        ),
    ];
    for (name, help, f) in backends {
        family(out, name, "gauge", help);
        for s in &t.services {
            for d in &s.dests {
                let labels = backend_labels(&s.config.addr, d.config.addr, d.config.port);
                let _ = writeln!(out, "{name}{{{labels}}} {}", f(d));
            }
        }
    }
    let totals = [
        (
            "node_ipvs_connections_total",
            "The total number of connections made.",
            t.total.conns,
        ),
        (
            "node_ipvs_incoming_bytes_total",
            "The total amount of incoming data.",
            t.total.inbytes,
        ),
        (
            "node_ipvs_incoming_packets_total",
            "The total number of incoming packets.",
            t.total.inpkts,
        ),
        (
            "node_ipvs_outgoing_bytes_total",
            "The total amount of outgoing data.",
            t.total.outbytes,
        ),
        (
            "node_ipvs_outgoing_packets_total",
            "The total number of outgoing packets.",
            t.total.outpkts,
        ),
    ];
    for (name, help, v) in totals {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
}

/// The whole `/metrics` page.
pub fn render(hub: &Hub) -> String {
    let mut out = String::with_capacity(8192);
    let snap = hub.snapshot();
    render_ipvs(&mut out, &snap);

    type Read = fn(&crate::pipeline::WorkerCounters) -> u64;
    let per_worker: [(&str, &str, Read); 5] = [
        (
            "uvs_worker_received_packets_total",
            "Frames a worker took from its RX rings.",
            |c| c.rx.load(Ordering::Relaxed),
        ),
        (
            "uvs_worker_forwarded_packets_total",
            "Frames a worker forwarded to a real server or client.",
            |c| c.forwarded.load(Ordering::Relaxed),
        ),
        (
            "uvs_worker_answered_packets_total",
            "Frames a worker answered itself (ARP replies for VIPs, ICMP).",
            |c| c.answered.load(Ordering::Relaxed),
        ),
        (
            "uvs_worker_passed_packets_total",
            "Frames a worker left to the kernel (not for a virtual service).",
            |c| c.passed.load(Ordering::Relaxed),
        ),
        (
            "uvs_worker_dropped_packets_total",
            "Frames a worker dropped, all reasons together.",
            |c| DropReason::ALL.iter().map(|r| c.drops(*r)).sum(),
        ),
    ];
    for (name, help, f) in per_worker {
        family(&mut out, name, "counter", help);
        for w in &hub.workers {
            let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", w.id, f(&w.counters));
        }
    }
    family(
        &mut out,
        "uvs_dropped_packets_total",
        "counter",
        "Frames dropped by the workers, by reason.",
    );
    for r in DropReason::ALL {
        let n: u64 = hub.workers.iter().map(|w| w.counters.drops(*r)).sum();
        let _ = writeln!(out, "uvs_dropped_packets_total{{reason=\"{}\"}} {n}", r.name());
    }

    family(
        &mut out,
        "uvs_arp_learned_total",
        "counter",
        "ARP packets from which a worker learned a neighbour's MAC address.",
    );
    let learned: u64 = hub
        .workers
        .iter()
        .map(|w| w.counters.neigh.load(Ordering::Relaxed))
        .sum();
    let _ = writeln!(out, "uvs_arp_learned_total {learned}");
    family(
        &mut out,
        "uvs_arp_conflict_total",
        "counter",
        "ARP packets that claimed a resolved next hop for another MAC while the known one \
         still answered (ignored).",
    );
    let _ = writeln!(
        out,
        "uvs_arp_conflict_total {}",
        hub.arp_conflicts.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "uvs_arp_neighbours",
        "gauge",
        "Next hops (real servers, gateways) the director needs, by resolution state.",
    );
    let wanted = hub.neigh_wanted.load(Ordering::Relaxed);
    let resolved = hub.neigh_resolved.load(Ordering::Relaxed);
    let _ = writeln!(out, "uvs_arp_neighbours{{state=\"resolved\"}} {resolved}");
    let _ = writeln!(
        out,
        "uvs_arp_neighbours{{state=\"unresolved\"}} {}",
        wanted.saturating_sub(resolved)
    );

    let rings: Vec<(usize, &str, [u64; 3])> = hub
        .workers
        .iter()
        .flat_map(|w| w.rings.iter().map(move |r| (w.id, r.iface.as_str(), r.read())))
        .collect();
    let ring_families = [
        (
            "uvs_ring_packets_total",
            "Frames the kernel passed to an RX ring (PACKET_STATISTICS tp_packets).",
            0,
        ),
        (
            "uvs_ring_drops_total",
            "Frames the kernel dropped because an RX ring was full (PACKET_STATISTICS tp_drops).",
            1,
        ),
        (
            "uvs_ring_freezes_total",
            "Times an RX ring's queue was frozen (PACKET_STATISTICS tp_freeze_q_cnt).",
            2,
        ),
    ];
    for (name, help, i) in ring_families {
        family(&mut out, name, "counter", help);
        for (id, iface, v) in &rings {
            let _ = writeln!(out, "{name}{{iface=\"{iface}\",worker=\"{id}\"}} {}", v[i]);
        }
    }

    if let Some((state, names)) = &hub.shed {
        family(
            &mut out,
            "uvs_xdp_shed_total",
            "counter",
            "VIP-bound frames the XDP program dropped while every worker's RX ring on the interface was backed up.",
        );
        for (k, iface) in names.iter().enumerate() {
            let _ = writeln!(out, "uvs_xdp_shed_total{{iface=\"{iface}\"}} {}", state.shed(k));
        }
        family(
            &mut out,
            "uvs_xdp_rings_backed_up",
            "gauge",
            "RX rings on the interface backed up right now (all of them: the XDP program sheds).",
        );
        for (k, iface) in names.iter().enumerate() {
            let _ = writeln!(
                out,
                "uvs_xdp_rings_backed_up{{iface=\"{iface}\"}} {}",
                state.backed_up(k)
            );
        }
    }

    family(
        &mut out,
        "uvs_connections",
        "gauge",
        "Entries in a worker's connection table.",
    );
    for w in &hub.workers {
        let _ = writeln!(out, "uvs_connections{{worker=\"{}\"}} {}", w.id, w.probe.conns());
    }
    family(
        &mut out,
        "uvs_connections_limit",
        "gauge",
        "The cap on a worker's connection table (--max-conns over the workers).",
    );
    for w in &hub.workers {
        let _ = writeln!(
            out,
            "uvs_connections_limit{{worker=\"{}\"}} {}",
            w.id, hub.conn_cap_per_worker
        );
    }
    family(
        &mut out,
        "uvs_connection_evictions_total",
        "counter",
        "Entries evicted from a worker's full connection table to make room (--when-full evict).",
    );
    for w in &hub.workers {
        let _ = writeln!(
            out,
            "uvs_connection_evictions_total{{worker=\"{}\"}} {}",
            w.id,
            w.probe.evicted()
        );
    }
    let svcs = hub.ctl.shared().services.load();
    family(
        &mut out,
        "uvs_persistence_templates",
        "gauge",
        "Persistence templates (shared by all workers).",
    );
    let _ = writeln!(out, "uvs_persistence_templates {}", svcs.conn_shared().templates.len());
    family(
        &mut out,
        "uvs_virtual_services",
        "gauge",
        "Virtual services in the table.",
    );
    let _ = writeln!(out, "uvs_virtual_services {}", snap.services.len());
    family(&mut out, "uvs_real_servers", "gauge", "Real servers in the table.");
    let _ = writeln!(
        out,
        "uvs_real_servers {}",
        snap.services.iter().map(|s| s.dests.len()).sum::<usize>()
    );
    render_passive(&mut out, &hub.ctl.shared().services.load());
    if let Some(b) = &hub.checks {
        crate::keepalived::run::render_metrics(&mut out, b);
    }
    if let Some(s) = &hub.sync {
        s.render_metrics(&mut out);
    }
    out
}

/// `uvs_passive_failures_total`: the passive health checks' signals per NAT real
/// server (counted whether or not `--passive-check` acts on the service; reset when
/// the real server is deleted and added again).
fn render_passive(out: &mut String, svcs: &crate::service::ServiceTable) {
    use crate::service::PassiveSignal;
    family(
        out,
        "uvs_passive_failures_total",
        "counter",
        "Failed connection attempts to a NAT real server seen in the traffic (signal: rst, icmp_unreachable, syn_timeout).",
    );
    for s in svcs.services() {
        for d in s.lock().dests.iter() {
            if d.method() != crate::service::ForwardMethod::Masq {
                continue;
            }
            let labels = backend_labels(&s.addr, d.addr, d.port);
            for sig in PassiveSignal::ALL {
                let _ = writeln!(
                    out,
                    "uvs_passive_failures_total{{{labels},signal=\"{}\"}} {}",
                    sig.name(),
                    d.passive.get(sig)
                );
            }
        }
    }
}

/// One sample of an exposition: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// A minimal parser of the Prometheus text format (for tests and for checking a page):
/// every sample as `(name, labels, value)`; `Err` names the first bad line.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            if line.starts_with("# TYPE ") {
                let kind = line.split_whitespace().nth(3).unwrap_or("");
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("line {}: bad TYPE: {line}", i + 1));
                }
            }
            continue;
        }
        let bad = || format!("line {}: {line}", i + 1);
        let (series, value) = line.rsplit_once(' ').ok_or_else(bad)?;
        let value: f64 = value.parse().map_err(|_| bad())?;
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').ok_or_else(bad)?;
                let mut labels = Vec::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (k, after) = rest.split_once("=\"").ok_or_else(bad)?;
                    let end = after.find('"').ok_or_else(bad)?;
                    labels.push((k.to_string(), after[..end].to_string()));
                    rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
                }
                (name, labels)
            }
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !s.starts_with(|c: char| c.is_ascii_digit())
        };
        if !valid(name) || labels.iter().any(|(k, _)| !valid(k)) {
            return Err(bad());
        }
        v.push((name.to_string(), labels, value));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;
    use crate::ctl::Ctl;
    use crate::ipvsadm::parse_args;
    use crate::pipeline::{Shared, Worker};

    fn hub(lines: &[&str]) -> Hub {
        let ctl = Arc::new(Ctl::new(Arc::new(Shared::new(vec![]))));
        for l in lines {
            let a: Vec<&str> = l.split_whitespace().collect();
            ctl.apply(&parse_args(&a).unwrap()).unwrap();
        }
        let mut h = Hub::new(ctl, std::time::Instant::now());
        h.conn_cap_per_worker = 1000;
        for id in 0..2 {
            let w = Worker::new(id, 1000);
            h.add_worker(&w, Arc::default(), &[]);
        }
        h
    }

    #[test]
    fn passive_failures_per_nat_real_server_and_signal() {
        let h = hub(&[
            "-A -t 10.0.0.100:80 -s rr",
            "-a -t 10.0.0.100:80 -r 10.0.1.11:80 -m -w 1",
            "-a -t 10.0.0.100:80 -r 10.0.1.12:80 -g -w 1",
        ]);
        let d = h
            .ctl
            .all_dests()
            .into_iter()
            .find(|d| d.port == 80 && d.addr.to_string() == "10.0.1.11");
        d.unwrap().passive.add(crate::service::PassiveSignal::Rst);
        let page = render(&h);
        let samples = parse_exposition(&page).unwrap();
        let get = |sig: &str| {
            samples
                .iter()
                .filter(|(n, l, _)| {
                    n == "uvs_passive_failures_total" && l.iter().any(|(k, v)| k == "signal" && v == sig)
                })
                .map(|(_, l, v)| (l.iter().find(|(k, _)| k == "remote_address").unwrap().1.clone(), *v))
                .collect::<Vec<_>>()
        };
        assert_eq!(get("rst"), [("10.0.1.11".to_string(), 1.0)], "NAT real servers only");
        assert_eq!(get("syn_timeout"), [("10.0.1.11".to_string(), 0.0)]);
        assert!(page.contains("# TYPE uvs_passive_failures_total counter\n"));
    }

    #[test]
    fn node_exporter_names_and_labels() {
        let h = hub(&[
            "-A -t 192.168.10.100:80 -s wlc",
            "-a -t 192.168.10.100:80 -r 192.168.10.11:80 -g -w 2",
            "-A -f 1 -s sh",
            "-a -f 1 -r 192.168.10.11:0 -i -w 1",
        ]);
        let svc = h.ctl.shared().services.load().services()[0].clone();
        svc.stats.conn(0);
        svc.stats.inbound(1, 60);
        svc.stats.inbound(0, 40);
        let page = render(&h);
        assert!(page.contains(
            "# HELP node_ipvs_backend_connections_active The current active connections by local and remote address.\n\
             # TYPE node_ipvs_backend_connections_active gauge\n"
        ));
        assert!(page.contains(
            "node_ipvs_backend_weight{local_address=\"192.168.10.100\",local_mark=\"\",local_port=\"80\",\
             proto=\"TCP\",remote_address=\"192.168.10.11\",remote_port=\"80\"} 2\n"
        ));
        assert!(page.contains(
            "node_ipvs_backend_connections_active{local_address=\"\",local_mark=\"00000001\",local_port=\"0\",\
             proto=\"FWM\",remote_address=\"192.168.10.11\",remote_port=\"0\"} 0\n"
        ));
        assert!(page.contains("# TYPE node_ipvs_connections_total counter\nnode_ipvs_connections_total 1\n"));
        assert!(page.contains("node_ipvs_incoming_packets_total 2\n"));
        assert!(page.contains("node_ipvs_incoming_bytes_total 100\n"));
        let samples = parse_exposition(&page).unwrap();
        let get = |n: &str, l: &[(&str, &str)]| {
            samples
                .iter()
                .find(|(name, labels, _)| {
                    name == n && l.iter().all(|(k, v)| labels.iter().any(|(a, b)| a == k && b == v))
                })
                .map(|s| s.2)
        };
        assert_eq!(get("uvs_dropped_packets_total", &[("reason", "no_service")]), Some(0.0));
        assert_eq!(get("uvs_connections_limit", &[("worker", "1")]), Some(1000.0));
        assert_eq!(get("uvs_real_servers", &[]), Some(2.0));
        assert_eq!(get("uvs_arp_neighbours", &[("state", "unresolved")]), Some(0.0));
        assert!(get("uvs_worker_received_packets_total", &[("worker", "0")]).is_some());
        // Every sample's family has TYPE and HELP.
        for (name, _, _) in &samples {
            assert!(page.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(page.contains(&format!("# HELP {name} ")), "{name}");
        }
    }

    #[test]
    fn parser_rejects_garbage() {
        assert!(parse_exposition("x{a=\"1\"} 2\n# TYPE x gauge\n").is_ok());
        assert!(parse_exposition("x{a=\"1\" 2\n").is_err());
        assert!(parse_exposition("x y\n").is_err());
        assert!(parse_exposition("1x 2\n").is_err());
        assert!(parse_exposition("# TYPE x nonsense\n").is_err());
    }

    #[test]
    fn http_answers_and_bounds() {
        let h = Arc::new(hub(&["-A -t 10.0.0.1:80 -s rr"]));
        let l = bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (h2, s2) = (h.clone(), stop.clone());
        let t = std::thread::spawn(move || serve(h2, l, &s2));
        let get = |req: &[u8]| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(req).unwrap();
            let mut s = String::new();
            let _ = c.read_to_string(&mut s);
            s
        };
        let r = get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4"));
        let body = r.split_once("\r\n\r\n").unwrap().1;
        assert!(parse_exposition(body).is_ok());
        assert!(body.contains("uvs_virtual_services 1\n"));
        assert!(get(b"GET /nope HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
        assert!(get(b"POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
        let head = get(b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let huge = vec![b'a'; MAX_HEAD + 2048];
        let r = get(&huge);
        assert!(r.starts_with("HTTP/1.1 431") || r.starts_with("HTTP/1.0 431"), "{r}");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    #[test]
    fn slow_clients_delay_no_scrape() {
        let h = Arc::new(hub(&["-A -t 10.0.0.1:80 -s rr"]));
        let l = bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (h2, s2) = (h.clone(), stop.clone());
        let t = std::thread::spawn(move || serve(h2, l, &s2));
        // Three clients sending their request a byte every 2 s (never finishing in time).
        let slow: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                    let t0 = std::time::Instant::now();
                    let mut s = Vec::new();
                    let mut next = 0;
                    // One byte every 2 s until the server hangs up (or 10 s pass).
                    while t0.elapsed() < Duration::from_secs(10) {
                        if t0.elapsed() >= Duration::from_secs(2 * next as u64) {
                            let _ = c.write_all(&b"GET /metrics HTTP/1.0\r\n\r\n"[next..next + 1]);
                            next += 1;
                        }
                        let mut b = [0u8; 512];
                        match c.read(&mut b) {
                            Ok(0) => break,
                            Ok(n) => s.extend_from_slice(&b[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => break,
                        }
                    }
                    let s = String::from_utf8_lossy(&s).into_owned();
                    (s, t0.elapsed())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let t0 = std::time::Instant::now();
        for _ in 0..10 {
            let t = std::time::Instant::now();
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            assert!(s.starts_with("HTTP/1.0 200 OK\r\n"), "{s}");
            assert!(s.contains("uvs_virtual_services 1\n"));
            assert!(
                t.elapsed() < Duration::from_millis(1500),
                "one scrape took {:?}",
                t.elapsed()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(t0.elapsed() < Duration::from_secs(6));
        for s in slow {
            // Cut off by the 2 s head deadline (hyper answers 408 or closes).
            let (reply, took) = s.join().unwrap();
            assert!(!reply.contains("200 OK"), "{reply}");
            assert!(took < Duration::from_secs(5), "hung up after {took:?}");
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }
}
