//! What a handover ([`super::handover`]) carries besides the table's configuration:
//! the traffic counters, the persistence templates, every worker's connection entries
//! and the resolved neighbours, as text lines.
//!
//! Written for the handover because the per-worker mailbox (a live export/install of
//! the workers' entries, being built for the sync daemon) was not available yet; here
//! the workers are stopped and their tables owned by the exporting thread, so no
//! mailbox is needed. Times are relative (milliseconds left), because each process
//! has its own clock origin.
//!
//! Lines (fields separated by one space; `SVC` is [`svc_id`], addresses in their
//! usual text form):
//!
//! ```text
//! stats SVC conns inpkts outpkts inbytes outbytes
//! dstats SVC RADDR RPORT conns inpkts outpkts inbytes outbytes
//! tpl PROTO SNET VADDR VPORT SVC RADDR RPORT DPORT EXPIRES_IN_MS TIMEOUT_MS ASSURED
//! conn WORKER PROTO CADDR CPORT VADDR VPORT SVC RADDR RPORT DADDR DPORT STATE FLAGS LEFT_MS IN_PKTS TPL
//! neigh IFINDEX IP MAC
//! ```
//!
//! `TPL` is `-` or `PROTO/SNET/VADDR/VPORT`, the key of the template controlling the
//! connection. A connection is installed into the worker of the same index: the
//! fanout group (handed over whole) keeps sending its packets there.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::conn::tcp::TcpState;
use crate::conn::template::TemplateKey;
use crate::conn::{Conn, ConnKey, ConnTable, conn_flags};
use crate::pipeline::Worker;
use crate::service::{Dest, Protocol, ServiceAddr, ServiceTable};
use crate::stats::Totals;

/// A service in one word: `6/10.0.0.1/80` (protocol/address/port) or `fwm/1/0`
/// (mark/IPv6).
pub fn svc_id(a: &ServiceAddr) -> String {
    match a {
        ServiceAddr::Inet { proto, addr, port } => format!("{}/{addr}/{port}", *proto as u8),
        ServiceAddr::Fwmark { mark, ipv6 } => format!("fwm/{mark}/{}", *ipv6 as u8),
    }
}

fn parse_svc(s: &str) -> Option<ServiceAddr> {
    let mut it = s.split('/');
    let (a, b, c) = (it.next()?, it.next()?, it.next()?);
    if a == "fwm" {
        return Some(ServiceAddr::Fwmark {
            mark: b.parse().ok()?,
            ipv6: c == "1",
        });
    }
    Some(ServiceAddr::Inet {
        proto: Protocol::from_ip_proto(a.parse().ok()?)?,
        addr: b.parse().ok()?,
        port: c.parse().ok()?,
    })
}

fn totals(t: Totals) -> String {
    format!("{} {} {} {} {}", t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes)
}

fn parse_totals(w: &[&str]) -> Option<Totals> {
    let n = |i: usize| w.get(i)?.parse::<u64>().ok();
    Some(Totals {
        conns: n(0)?,
        inpkts: n(1)?,
        outpkts: n(2)?,
        inbytes: n(3)?,
        outbytes: n(4)?,
    })
}

fn v4(s: &str) -> Option<Ipv4Addr> {
    s.parse::<Ipv4Addr>().ok()
}

/// Every service's and real server's counters.
pub fn export_counters(table: &ServiceTable) -> String {
    let mut out = String::new();
    for svc in table.services() {
        let id = svc_id(&svc.addr);
        out.push_str(&format!("stats {id} {}\n", totals(svc.stats.totals())));
        for d in svc.lock().dests.iter() {
            out.push_str(&format!(
                "dstats {id} {} {} {}\n",
                d.addr,
                d.port,
                totals(d.stats.totals())
            ));
        }
    }
    out
}

/// A real server of `table` by its service and address.
type DestIndex = HashMap<(String, IpAddr, u16), Arc<Dest>>;

fn dest_index(table: &ServiceTable) -> DestIndex {
    let mut m = HashMap::new();
    for svc in table.services() {
        let id = svc_id(&svc.addr);
        for d in svc.lock().dests.iter() {
            m.insert((id.clone(), d.addr, d.port), d.clone());
        }
    }
    m
}

/// The persistence templates (live ones; invalidated templates only wait for their
/// timer and are left behind).
pub fn export_templates(table: &ServiceTable, now_ms: u64) -> String {
    let ids = dest_ids(table);
    let mut out = String::new();
    for t in table.conn_shared().templates.snapshot() {
        if t.is_invalid() {
            continue;
        }
        let Some((svc, raddr, rport)) = ids.get(&Arc::as_ptr(&t.dest)) else {
            continue;
        };
        let k = t.key;
        out.push_str(&format!(
            "tpl {} {} {} {} {svc} {raddr} {rport} {} {} {} {}\n",
            k.proto,
            k.snet,
            k.vaddr,
            k.vport,
            t.dport,
            t.expires_ms().saturating_sub(now_ms),
            t.timeout_ms(),
            t.is_assured() as u8
        ));
    }
    out
}

/// Service and address of every real server, by the address of its `Dest`.
fn dest_ids(table: &ServiceTable) -> HashMap<*const Dest, (String, IpAddr, u16)> {
    let mut m = HashMap::new();
    for svc in table.services() {
        let id = svc_id(&svc.addr);
        for d in svc.lock().dests.iter() {
            m.insert(Arc::as_ptr(d), (id.clone(), d.addr, d.port));
        }
    }
    m
}

/// One worker's connection entries. Entries whose real server left the table (they
/// only wait to expire) are left behind.
pub fn export_conns(table: &ServiceTable, worker: usize, conns: &ConnTable, now_ms: u64) -> String {
    let ids = dest_ids(table);
    let mut out = String::new();
    for (k, c) in conns.iter() {
        if c.is_expired(now_ms) {
            continue;
        }
        let Some((svc, raddr, rport)) = ids.get(&Arc::as_ptr(&c.dest)) else {
            continue;
        };
        let tpl = match &c.tpl {
            Some(t) if !t.is_invalid() => format!("{}/{}/{}/{}", t.key.proto, t.key.snet, t.key.vaddr, t.key.vport),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "conn {worker} {} {} {} {} {} {svc} {raddr} {rport} {} {} {} {} {} {} {tpl}\n",
            k.proto,
            k.caddr,
            k.cport,
            k.vaddr,
            k.vport,
            c.daddr,
            c.dport,
            c.state as u8,
            c.flags,
            c.expires_in_ms(now_ms),
            c.in_pkts,
        ));
    }
    out
}

/// Resolved neighbours.
pub fn export_neigh(map: &ahash::AHashMap<(u32, Ipv4Addr), [u8; 6]>) -> String {
    let mut out = String::new();
    for ((ifindex, ip), mac) in map {
        let m = mac.map(|b| format!("{b:02x}")).join(":");
        out.push_str(&format!("neigh {ifindex} {} {m}\n", *ip));
    }
    out
}

/// The `neigh` lines of `text`.
pub fn parse_neigh(text: &str) -> Vec<(u32, Ipv4Addr, [u8; 6])> {
    let mut v = Vec::new();
    for l in text.lines() {
        let w: Vec<&str> = l.split(' ').collect();
        if let ["neigh", ifx, ip, mac] = w.as_slice() {
            let bytes: Vec<u8> = mac.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
            if let (Ok(ifx), Some(ip), Ok(mac)) = (ifx.parse(), v4(ip), <[u8; 6]>::try_from(bytes)) {
                v.push((ifx, ip, mac));
            }
        }
    }
    v
}

fn parse_tpl_key(s: &str) -> Option<TemplateKey> {
    let mut it = s.split('/');
    Some(TemplateKey {
        proto: it.next()?.parse().ok()?,
        snet: v4(it.next()?)?,
        vaddr: v4(it.next()?)?,
        vport: it.next()?.parse().ok()?,
    })
}

/// What [`import`] installed, and what it could not place.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub conns: usize,
    pub templates: usize,
    pub counters: usize,
    /// Lines naming a service or real server this table lacks, a worker beyond
    /// `workers`, or a full table; or lines that do not parse.
    pub skipped: usize,
}

/// Install the counters, templates and connection entries of `text` into `table`
/// and `workers` (not yet running), at `now_ms` on their clock.
pub fn import(text: &str, table: &ServiceTable, workers: &mut [Worker], now_ms: u64) -> Imported {
    let dests = dest_index(table);
    let mut n = Imported::default();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    // Counters and templates first: connections refer to templates.
    for w in &lines {
        let ok = match w.first().copied() {
            Some("stats") => (|| {
                let svc = table.find(&parse_svc(w.get(1)?)?)?;
                svc.stats.carry_over(parse_totals(&w[2..])?);
                Some(())
            })(),
            Some("dstats") => (|| {
                let d = dests.get(&(w.get(1)?.to_string(), w.get(2)?.parse().ok()?, w.get(3)?.parse().ok()?))?;
                d.stats.carry_over(parse_totals(&w[4..])?);
                Some(())
            })(),
            Some("tpl") => (|| {
                let [
                    _,
                    proto,
                    snet,
                    vaddr,
                    vport,
                    svc,
                    raddr,
                    rport,
                    dport,
                    left,
                    timeout,
                    assured,
                ] = w.as_slice()
                else {
                    return None;
                };
                let key = TemplateKey {
                    proto: proto.parse().ok()?,
                    snet: v4(snet)?,
                    vaddr: v4(vaddr)?,
                    vport: vport.parse().ok()?,
                };
                let d = dests.get(&(svc.to_string(), raddr.parse().ok()?, rport.parse().ok()?))?;
                table.conn_shared().templates.adopt(
                    key,
                    (d.clone(), dport.parse().ok()?, timeout.parse().ok()?),
                    left.parse().ok()?,
                    *assured == "1",
                    now_ms,
                );
                Some(())
            })(),
            _ => continue,
        };
        match (ok, w[0]) {
            (Some(()), "tpl") => n.templates += 1,
            (Some(()), _) => n.counters += 1,
            (None, _) => n.skipped += 1,
        }
    }
    for w in &lines {
        if w.first() != Some(&"conn") {
            continue;
        }
        let placed = (|| {
            let [
                _,
                worker,
                proto,
                caddr,
                cport,
                vaddr,
                vport,
                svc,
                raddr,
                rport,
                daddr,
                dport,
                state,
                flags,
                left,
                in_pkts,
                tpl,
            ] = w.as_slice()
            else {
                return None;
            };
            let worker = workers.get_mut(worker.parse::<usize>().ok()?)?;
            let d = dests.get(&(svc.to_string(), raddr.parse().ok()?, rport.parse().ok()?))?;
            let key = ConnKey {
                proto: proto.parse().ok()?,
                caddr: v4(caddr)?,
                cport: cport.parse().ok()?,
                vaddr: v4(vaddr)?,
                vport: vport.parse().ok()?,
            };
            let flags: u8 = flags.parse().ok()?;
            let mut c = Conn::new(
                d.clone(),
                v4(daddr)?,
                dport.parse().ok()?,
                flags & conn_flags::NO_OUTPUT != 0,
                now_ms,
            );
            c.state = TcpState::from_u8(state.parse().ok()?);
            // OUT_INDEXED is the table's to set; ACTIVE moves the server's counter.
            c.flags = flags & !(conn_flags::OUT_INDEXED | conn_flags::ACTIVE);
            if flags & conn_flags::ACTIVE != 0 {
                d.set_conn_active(true);
                c.flags |= conn_flags::ACTIVE;
            }
            // A 32-bit count from an older uvs wraps to the 16 bits kept now.
            c.in_pkts = in_pkts.parse::<u32>().ok()? as u16;
            c.rearm(now_ms, left.parse().ok()?);
            if *tpl != "-" {
                c.tpl = table
                    .conn_shared()
                    .templates
                    .get(&parse_tpl_key(tpl)?)
                    .map(|t| t.control());
            }
            worker.conns.insert(key, c).ok().map(|_| ())
        })();
        match placed {
            Some(()) => n.conns += 1,
            None => n.skipped += 1,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::Ctl;
    use crate::pipeline::Shared;

    fn director(rules: &str) -> Ctl {
        let ctl = Ctl::new(Arc::new(Shared::new(Vec::new())));
        for l in rules.lines() {
            crate::director::state::apply_line(&ctl, l).unwrap();
        }
        ctl
    }

    const RULES: &str = "-A -t 10.0.0.1:80 -s rr -p 300\n-a -t 10.0.0.1:80 -r 10.1.0.1:8080 -m -w 1\n\
                         -a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 1\n-A -f 7 -s rr\n-a -f 7 -r 10.1.0.3:0 -g -w 1\n";

    /// Counters, templates and connections (with their template, state, flags and
    /// time left) come out of one table and into another with the same configuration,
    /// and the real servers' connection counters follow.
    #[test]
    fn entries_move_between_tables() {
        let (a, b) = (director(RULES), director(RULES));
        let (ta, tb) = (a.shared().services.load(), b.shared().services.load());
        let svc = ta.services()[0].clone();
        let d = svc.lock().dests[0].clone();
        svc.stats.conn(0);
        svc.stats.inbound(0, 100);
        d.stats.inbound(1, 40);
        let key = TemplateKey {
            proto: 6,
            snet: Ipv4Addr::new(192, 168, 1, 10),
            vaddr: Ipv4Addr::new(10, 0, 0, 1),
            vport: 80,
        };
        let tpl = (ta.conn_shared().templates)
            .find_or_create(key, 1000, false, || Some((d.clone(), 8080, 300_000)))
            .unwrap();
        tpl.set_assured();
        let mut w = Worker::new(1, 100);
        let ck = ConnKey {
            proto: 6,
            caddr: Ipv4Addr::new(192, 168, 1, 10),
            cport: 40000,
            vaddr: Ipv4Addr::new(10, 0, 0, 1),
            vport: 80,
        };
        let mut c = Conn::new(d.clone(), Ipv4Addr::new(10, 1, 0, 1), 8080, false, 1000);
        c.state = TcpState::Established;
        d.set_conn_active(true);
        c.flags |= conn_flags::ACTIVE;
        c.in_pkts = 5;
        c.rearm(1000, 900_000);
        c.tpl = Some(tpl.control());
        w.conns.insert(ck, c).unwrap();
        assert_eq!((d.active(), d.inactive()), (1, 0));

        let now = 11_000;
        let text = export_counters(&ta) + &export_templates(&ta, now) + &export_conns(&ta, 1, &w.conns, now);
        let mut ws = vec![Worker::new(0, 100), Worker::new(1, 100)];
        let n = import(&text, &tb, &mut ws, 50);
        assert_eq!((n.conns, n.templates, n.skipped), (1, 1, 0), "{text}");
        let svc_b = tb.services()[0].clone();
        assert_eq!(svc_b.stats.totals(), svc.stats.totals());
        let db = svc_b.lock().dests.iter().find(|x| x.addr == d.addr).unwrap().clone();
        assert_eq!(db.stats.totals(), d.stats.totals());
        assert_eq!(
            (
                db.active(),
                db.inactive(),
                db.persistconns.load(std::sync::atomic::Ordering::Relaxed)
            ),
            (1, 0, 1)
        );
        assert!(ws[0].conns.is_empty());
        let got = ws[1].conns.get(&ck).unwrap();
        assert_eq!(got.state, TcpState::Established);
        assert_eq!(got.in_pkts, 5);
        assert_eq!(got.expires_in_ms(50), 900_000 - 10_000);
        let t = got.tpl.as_ref().unwrap();
        assert!(t.is_assured());
        assert_eq!(t.controlled(), 1);
        assert_eq!(t.expires_ms(), 50 + 300_000 - 10_000);
        // Dropping the worker releases what it holds.
        drop(ws);
        assert_eq!((db.active(), db.inactive()), (0, 0));
    }

    /// A table without the entry's service skips it and says how many.
    #[test]
    fn unknown_services_are_skipped() {
        let b = director("-A -t 10.0.0.9:80 -s rr\n");
        let tb = b.shared().services.load();
        let text = "stats 6/10.0.0.1/80 1 2 3 4 5\nconn 0 6 1.2.3.4 5 10.0.0.1 80 6/10.0.0.1/80 10.1.0.1 8080 \
                    10.1.0.1 8080 1 2 1000 1 -\nbogus line\n";
        let mut ws = vec![Worker::new(0, 10)];
        let n = import(text, &tb, &mut ws, 0);
        assert_eq!(
            n,
            Imported {
                conns: 0,
                templates: 0,
                counters: 0,
                skipped: 2
            }
        );
    }

    #[test]
    fn neighbours_round_trip() {
        let mut m = ahash::AHashMap::new();
        m.insert((3, Ipv4Addr::new(10, 1, 0, 1)), [0x02, 0, 0, 0, 0xab, 0x01]);
        assert_eq!(
            parse_neigh(&export_neigh(&m)),
            vec![(3, Ipv4Addr::new(10, 1, 0, 1), [0x02, 0, 0, 0, 0xab, 0x01])]
        );
    }

    #[test]
    fn service_ids_round_trip() {
        for s in ["6/10.0.0.1/80", "17/10.0.0.1/53", "fwm/7/0"] {
            assert_eq!(svc_id(&parse_svc(s).unwrap()), s);
        }
    }
}
