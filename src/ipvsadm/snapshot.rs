//! Plain-data snapshots of the live service table, for the listing renderers in
//! [`super::list`]. Capturing takes each service's lock once, copies what `ipvsadm -L`,
//! `-S` and the `/proc/net/ip_vs*` files show, and lets go: rendering never touches the
//! live table, so it can be tested with hand-built data.

use std::borrow::Cow;
use std::net::IpAddr;

use super::SyncState;
use crate::conn::tcp::Timeouts;
use crate::service::{DestConfig, ServiceAddr, ServiceConfig, ServiceTable};
use crate::stats::{Stats, Totals};

/// The connection hash table size IPVS reports by default (`ip_vs_conn_tab_bits` = 12).
pub const DEFAULT_CONN_TAB_SIZE: u32 = 4096;

/// Estimated rates (per second), as the kernel reports them after rounding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// One real server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DestSnapshot {
    pub config: DestConfig,
    pub active: u32,
    pub inactive: u32,
    pub persist: u32,
    pub stats: Totals,
    pub rates: Rates,
}

/// One virtual service with its real servers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceSnapshot {
    pub config: ServiceConfig,
    pub stats: Totals,
    pub rates: Rates,
    /// Real servers in IPVS list order (newest first), as the kernel returns them.
    pub dests: Vec<DestSnapshot>,
}

/// A running sync daemon as `ipvsadm -L --daemon` reports it. Zero / `None` fields are
/// the ones the kernel did not report (they are left out of the line).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DaemonSnapshot {
    pub state: SyncState,
    pub mcast_ifn: String,
    pub syncid: u8,
    pub sync_maxlen: u16,
    pub mcast_group: Option<IpAddr>,
    pub mcast_port: u16,
    pub mcast_ttl: u8,
}

/// Everything the listings show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableSnapshot {
    /// Services in table (creation / kernel) order; `-L` sorts on its own unless
    /// `--nosort`.
    pub services: Vec<ServiceSnapshot>,
    /// Connection hash table size for the version line (4096 by default).
    pub conn_tab_size: u32,
    /// `(tcp, tcpfin, udp)` timeouts in seconds.
    pub timeouts: (u32, u32, u32),
    /// Running sync daemons (empty when none).
    pub daemons: Vec<DaemonSnapshot>,
    /// Director-wide totals (`/proc/net/ip_vs_stats` line 3).
    pub total: Totals,
    /// Director-wide rates (`/proc/net/ip_vs_stats` line 6).
    pub total_rates: Rates,
}

impl Default for TableSnapshot {
    fn default() -> Self {
        TableSnapshot {
            services: Vec::new(),
            conn_tab_size: DEFAULT_CONN_TAB_SIZE,
            timeouts: (900, 120, 300),
            daemons: Vec::new(),
            total: Totals::default(),
            total_rates: Rates::default(),
        }
    }
}

/// One connection entry as `/proc/net/ip_vs_conn` (and so `ipvsadm -L -c`) shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnSnapshot {
    /// `TCP`, `UDP`, `SCTP`, `IP` (fwmark templates), …
    pub proto_name: Cow<'static, str>,
    /// State name (`ESTABLISHED`, `UDP`, `NONE`, …).
    pub state: Cow<'static, str>,
    /// Seconds until the entry expires.
    pub expires_s: u64,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// Persistence-engine name and data (`sip`, Call-ID hex), when the entry has any.
    pub pe: Option<(String, String)>,
}

/// Which counters a rate is asked for (see [`capture`]). `stats` is the live counter
/// block, so a rate provider may key on its address as well as on the identity.
#[derive(Debug, Clone, Copy)]
pub enum RateKey<'a> {
    /// A virtual service.
    Service { svc: &'a ServiceAddr, stats: &'a Stats },
    /// A real server of `svc`.
    Dest {
        svc: &'a ServiceAddr,
        addr: IpAddr,
        port: u16,
        stats: &'a Stats,
    },
}

/// Copy the live table. `rates` supplies the estimator's current rates for every
/// service and real server (pass `&|_| Rates::default()` when no estimator runs).
/// `conn_tab_size` is left at its default and `daemons` empty; the director-wide total
/// is the sum of the services' counters (its rates are the sum of the services' rates).
pub fn capture(table: &ServiceTable, timeouts: &Timeouts, rates: &dyn Fn(RateKey<'_>) -> Rates) -> TableSnapshot {
    let mut snap = TableSnapshot {
        timeouts: timeouts.get(),
        ..TableSnapshot::default()
    };
    for svc in table.services() {
        let state = svc.lock();
        let dests = state
            .dests
            .iter()
            .map(|d| DestSnapshot {
                config: d.config(),
                active: d.active(),
                inactive: d.inactive(),
                persist: d.persistconns.load(std::sync::atomic::Ordering::Relaxed),
                stats: d.stats.totals(),
                rates: rates(RateKey::Dest {
                    svc: &svc.addr,
                    addr: d.addr,
                    port: d.port,
                    stats: &d.stats,
                }),
            })
            .collect();
        let s = ServiceSnapshot {
            config: state.config.clone(),
            stats: svc.stats.totals(),
            rates: rates(RateKey::Service {
                svc: &svc.addr,
                stats: &svc.stats,
            }),
            dests,
        };
        drop(state);
        add_totals(&mut snap.total, &s.stats);
        add_rates(&mut snap.total_rates, &s.rates);
        snap.services.push(s);
    }
    snap
}

/// Sort key of a `-L -c` row: (vaddr, vport, proto, caddr, kind, cport) with templates
/// (kind 0) before the connections they control (kind 1). Listings are sorted so that
/// they are deterministic (the kernel prints hash order).
pub type ConnSortKey = (std::net::Ipv4Addr, u16, u8, std::net::Ipv4Addr, u8, u16);

fn proto_name(p: u8) -> &'static str {
    crate::service::Protocol::from_ip_proto(p).map_or("IP", crate::service::Protocol::name)
}

/// One connection entry as a `-L -c` row, `now_ms` on the worker's clock.
pub fn conn_row(k: &crate::conn::ConnKey, c: &crate::conn::Conn, now_ms: u64) -> (ConnSortKey, ConnSnapshot) {
    let state = if k.proto == crate::wire::ipv4::proto::TCP {
        c.state.name()
    } else {
        "UDP"
    };
    let snap = ConnSnapshot {
        proto_name: proto_name(k.proto).into(),
        state: state.into(),
        expires_s: c.expires_in(now_ms),
        caddr: k.caddr.into(),
        cport: k.cport,
        vaddr: k.vaddr.into(),
        vport: k.vport,
        daddr: c.daddr.into(),
        dport: c.dport,
        pe: None,
    };
    ((k.vaddr, k.vport, k.proto, k.caddr, 1, k.cport), snap)
}

/// One persistence template as a `-L -c` row (templates list as `NONE` whatever their
/// protocol, with client port 0).
pub fn template_row(t: &crate::conn::template::Template, now_ms: u64) -> (ConnSortKey, ConnSnapshot) {
    let (vport, dport) = t.shown_ports();
    let snap = ConnSnapshot {
        proto_name: proto_name(t.key.proto).into(),
        state: "NONE".into(),
        expires_s: t.expires_in(now_ms),
        caddr: t.key.snet.into(),
        cport: 0,
        vaddr: t.key.vaddr.into(),
        vport,
        daddr: t.dest.addr,
        dport,
        pe: None,
    };
    ((t.key.vaddr, vport, t.key.proto, t.key.snet, 0, 0), snap)
}

/// Sort rows from [`conn_row`] and [`template_row`] into listing order.
pub fn sort_conn_rows(mut rows: Vec<(ConnSortKey, ConnSnapshot)>) -> Vec<ConnSnapshot> {
    rows.sort_by_key(|(k, s)| (*k, s.expires_s));
    rows.into_iter().map(|r| r.1).collect()
}

fn add_totals(acc: &mut Totals, t: &Totals) {
    acc.conns = acc.conns.wrapping_add(t.conns);
    acc.inpkts = acc.inpkts.wrapping_add(t.inpkts);
    acc.outpkts = acc.outpkts.wrapping_add(t.outpkts);
    acc.inbytes = acc.inbytes.wrapping_add(t.inbytes);
    acc.outbytes = acc.outbytes.wrapping_add(t.outbytes);
}

fn add_rates(acc: &mut Rates, r: &Rates) {
    acc.cps = acc.cps.wrapping_add(r.cps);
    acc.inpps = acc.inpps.wrapping_add(r.inpps);
    acc.outpps = acc.outpps.wrapping_add(r.outpps);
    acc.inbps = acc.inbps.wrapping_add(r.inbps);
    acc.outbps = acc.outbps.wrapping_add(r.outbps);
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::service::{
        Dest, ForwardMethod, Netmask, Protocol, ServiceState, TunnelCsum, TunnelType, VirtualService,
    };

    fn dcfg(addr: &str, weight: i32) -> DestConfig {
        DestConfig {
            addr: addr.parse().unwrap(),
            port: 80,
            method: ForwardMethod::Masq,
            weight,
            u_threshold: 10,
            l_threshold: 5,
            tun_type: TunnelType::Ipip,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
        }
    }

    #[test]
    fn capture_copies_config_counters_and_rates() {
        let addr = ServiceAddr::Inet {
            proto: Protocol::Tcp,
            addr: "192.0.2.1".parse().unwrap(),
            port: 80,
        };
        let config = ServiceConfig {
            addr,
            scheduler: "rr".to_string(),
            flags: 0,
            timeout: 0,
            netmask: Netmask::V4(std::net::Ipv4Addr::BROADCAST),
            pe: None,
        };
        let stats = Arc::new(Stats::default());
        let newest = Arc::new(Dest::with_service_stats(&dcfg("10.0.0.2", 2), stats.clone()));
        let oldest = Arc::new(Dest::with_service_stats(&dcfg("10.0.0.1", 1), stats.clone()));
        newest.bind_conn();
        newest.bind_conn();
        newest.set_conn_active(true);
        newest.bind_template();
        newest.stats.conn(0);
        newest.stats.inbound(1, 100);
        stats.conn(0);
        stats.inbound(1, 100);
        let dests = vec![newest, oldest];
        let scheduler = crate::sched::new_scheduler("rr", &dests, 0).unwrap();
        let svc = Arc::new(VirtualService {
            addr,
            state: Mutex::new(ServiceState {
                config: config.clone(),
                dests,
                scheduler,
            }),
            stats,
        });
        let mut table = ServiceTable::default();
        table.insert(svc);
        let timeouts = Timeouts::default();
        timeouts.set(100, 0, 0);
        let rates = |k: RateKey<'_>| match k {
            RateKey::Service { .. } => Rates {
                cps: 7,
                ..Rates::default()
            },
            RateKey::Dest { port, .. } => Rates {
                inbps: port as u64,
                ..Rates::default()
            },
        };
        let snap = capture(&table, &timeouts, &rates);
        assert_eq!(snap.timeouts, (100, 120, 300));
        assert_eq!(snap.conn_tab_size, 4096);
        assert_eq!(snap.services.len(), 1);
        let s = &snap.services[0];
        assert_eq!(s.config, config);
        assert_eq!(s.rates.cps, 7);
        assert_eq!((s.stats.conns, s.stats.inpkts, s.stats.inbytes), (1, 1, 100));
        assert_eq!(snap.total, s.stats);
        assert_eq!(snap.total_rates.cps, 7);
        let d: Vec<_> = s
            .dests
            .iter()
            .map(|d| (d.config.addr.to_string(), d.active, d.inactive, d.persist))
            .collect();
        assert_eq!(
            d,
            [("10.0.0.2".to_string(), 1, 1, 1), ("10.0.0.1".to_string(), 0, 0, 0)]
        );
        assert_eq!(s.dests[0].config.u_threshold, 10);
        assert_eq!(s.dests[0].stats.inbytes, 100);
        assert_eq!(s.dests[0].rates.inbps, 80);
    }
}
