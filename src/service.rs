//! The IPVS object model: virtual services and their destinations (real servers;
//! the destination itself and the shared vocabulary live in [`crate::dest`]).
//!
//! Configuration values (`ServiceConfig`, `DestConfig`) are plain data produced by the
//! ipvsadm grammar. Runtime objects (`VirtualService`, `Dest`) are shared between the
//! control thread and the workers: everything a worker reads on the per-packet path is
//! an atomic or immutable, so established connections never take a lock here.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

pub use crate::dest::{
    Dest, DestConfig, ForwardMethod, PassiveFailures, PassiveSignal, Protocol, TunnelCsum, TunnelType, dest_flags,
    mac_from_u64, mac_to_u64, svc_flags,
};
use crate::sched::Scheduler;
use crate::stats::Stats;

/// How a virtual service is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ServiceAddr {
    Inet { proto: Protocol, addr: IpAddr, port: u16 },
    Fwmark { mark: u32, ipv6: bool },
}

/// Persistence netmask: an IPv4 mask or an IPv6 prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Netmask {
    V4(std::net::Ipv4Addr),
    V6Prefix(u8),
}

/// Everything `-A`/`-E` set on a service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceConfig {
    pub addr: ServiceAddr,
    pub scheduler: String,
    /// Bits from [`svc_flags`].
    pub flags: u32,
    /// Persistence timeout in seconds (meaningful with PERSISTENT).
    pub timeout: u32,
    pub netmask: Netmask,
    pub pe: Option<String>,
}

/// Per-service scheduling state, guarded by the service's own mutex. Only the
/// new-connection path and the control thread take it.
pub struct ServiceState {
    pub config: ServiceConfig,
    /// Destinations in IPVS list order: the newest is at the head (index 0).
    pub dests: Vec<Arc<Dest>>,
    pub scheduler: Box<dyn Scheduler>,
}

/// A virtual service.
pub struct VirtualService {
    pub addr: ServiceAddr,
    pub state: Mutex<ServiceState>,
    pub stats: Arc<Stats>,
}

impl VirtualService {
    /// Lock the scheduling state (new-connection path and control thread only).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, ServiceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for VirtualService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualService").field("addr", &self.addr).finish()
    }
}

/// Why uvs does not forward service `addr`, if it does not (see
/// [`ServiceTable::not_forwarded`]; also what `ipvsadm` warns when it adds one).
pub fn service_not_forwarded(addr: &ServiceAddr) -> Option<String> {
    match *addr {
        ServiceAddr::Fwmark { mark, ipv6 } => {
            let v6 = if ipv6 { " IPv6" } else { "" };
            Some(format!(
                "FWM {mark}{v6} is not forwarded: AF_PACKET frames carry no firewall mark \
                 (use an address-based service)"
            ))
        }
        ServiceAddr::Inet { proto, addr, port } if addr.is_ipv6() || proto == Protocol::Sctp => Some(format!(
            "{} {} is not forwarded: uvs forwards IPv4 TCP and UDP only",
            proto.name(),
            std::net::SocketAddr::new(addr, port)
        )),
        ServiceAddr::Inet { .. } => None,
    }
}

/// Why connections to real server `raddr:rport` of service `svc` are not forwarded, if
/// they are not (an IPv6 real server of a service uvs forwards).
pub fn dest_not_forwarded(svc: &ServiceAddr, raddr: IpAddr, rport: u16) -> Option<String> {
    let ServiceAddr::Inet { proto, addr, port } = *svc else {
        return None;
    };
    if service_not_forwarded(svc).is_some() || !raddr.is_ipv6() {
        return None;
    }
    Some(format!(
        "real server {} of {} {}: connections scheduled to it are dropped \
         (method_unsupported): uvs forwards IPv4 only",
        std::net::SocketAddr::new(raddr, rport),
        proto.name(),
        std::net::SocketAddr::new(addr, port)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_forwarded_names_fwmark_ipv6_and_sctp_services_and_ipv6_real_servers() {
        let (sh, ctl) = crate::pipeline::fixture::director_with(
            "-A -f 7 -s rr\n-A -t [2001:db8::1]:80 -s rr\n--add-service --sctp-service 10.0.0.1:9 -s rr\n\
             -A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.11:80 -g\n-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -i\n",
        );
        let _ = ctl;
        let w = sh.services.load().not_forwarded();
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].starts_with("FWM 7 is not forwarded"), "{}", w[0]);
        assert!(w[1].starts_with("TCP [2001:db8::1]:80 is not forwarded"), "{}", w[1]);
        assert!(w[2].starts_with("SCTP 10.0.0.1:9 is not forwarded"), "{}", w[2]);
        assert!(
            w[3].starts_with("real server [2001:db8::2]:80 of TCP 10.0.0.1:80"),
            "{}",
            w[3]
        );
        let (sh, _ctl) = crate::pipeline::fixture::director_all();
        assert!(sh.services.load().not_forwarded().is_empty());
    }

    pub(crate) fn cfg(weight: i32, u: u32, l: u32) -> DestConfig {
        DestConfig {
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
            method: ForwardMethod::Route,
            weight,
            u_threshold: u,
            l_threshold: l,
            tun_type: TunnelType::Ipip,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
        }
    }

    #[test]
    fn tv_thr_1_upper_threshold_and_three_quarters_release() {
        let d = Dest::new(&cfg(1, 4, 0));
        for _ in 0..3 {
            d.bind_conn();
        }
        assert!(!d.is_overloaded());
        d.bind_conn();
        assert!(d.is_overloaded(), "4th binding reaches u=4");
        d.unbind_conn(false); // total 3: 12 < 12 false
        assert!(d.is_overloaded());
        d.unbind_conn(false); // total 2: 8 < 12
        assert!(!d.is_overloaded());
    }

    #[test]
    fn tv_thr_2_lower_threshold() {
        let d = Dest::new(&cfg(1, 4, 4));
        for _ in 0..4 {
            d.bind_conn();
        }
        assert!(d.is_overloaded());
        d.unbind_conn(false);
        assert!(!d.is_overloaded(), "cleared as soon as total drops to 3");
    }

    #[test]
    fn mac_round_trip() {
        let d = Dest::new(&cfg(1, 0, 0));
        assert_eq!(d.mac(), None);
        d.set_mac([2, 0, 0, 0, 0, 0x11]);
        assert_eq!(d.mac(), Some([2, 0, 0, 0, 0, 0x11]));
    }

    #[test]
    fn edit_keeps_last_weight_on_zero() {
        let d = Dest::new(&cfg(3, 0, 0));
        d.edit(&cfg(0, 0, 0));
        assert_eq!(d.weight(), 0);
        assert_eq!(d.last_weight(), 3);
    }
}

/// Lookup key of an address-based service: (IP protocol, VIP, port).
pub type ServiceKey = (u8, Ipv4Addr, u16);

/// An immutable snapshot of the service table, published to the workers with one
/// atomic pointer swap per change. Services and destinations are shared between
/// snapshots, so their counters and scheduler state survive a change.
#[derive(Debug, Default, Clone)]
pub struct ServiceTable {
    by_key: ahash::AHashMap<ServiceKey, Arc<VirtualService>>,
    vips: ahash::AHashMap<Ipv4Addr, u32>,
    /// Services in creation order (listing sorts on its own).
    order: Vec<Arc<VirtualService>>,
    /// Persistence templates: one instance shared by every snapshot (clones share
    /// the Arc) and so by every worker.
    conn_shared: Arc<crate::conn::settings::ConnShared>,
    /// Addresses of NAT (`-m`) real servers: frames from them may be replies.
    nat_rips: ahash::AHashSet<Ipv4Addr>,
}

impl ServiceTable {
    pub fn get(&self, proto: u8, addr: Ipv4Addr, port: u16) -> Option<&Arc<VirtualService>> {
        self.by_key.get(&(proto, addr, port))
    }
    /// Is `addr` the address of at least one IPv4 virtual service?
    #[inline]
    pub fn is_vip(&self, addr: Ipv4Addr) -> bool {
        self.vips.contains_key(&addr)
    }
    pub fn vips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.vips.keys().copied()
    }
    pub fn services(&self) -> &[Arc<VirtualService>] {
        &self.order
    }
    /// What the table holds but uvs does not forward, one line each: firewall-mark
    /// services (AF_PACKET frames carry no netfilter mark), IPv6 and SCTP services,
    /// and IPv6 real servers (uvs forwards IPv4 TCP and UDP). ipvsadm accepts and
    /// lists them all, so the director says so in its log rather than stay silent.
    pub fn not_forwarded(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.order {
            if let Some(w) = service_not_forwarded(&s.addr) {
                out.push(w);
                continue;
            }
            for d in s.lock().dests.iter() {
                out.extend(dest_not_forwarded(&s.addr, d.addr, d.port));
            }
        }
        out
    }
    /// An empty table that keeps the shared templates (`ipvsadm -C` clears
    /// services, not templates).
    pub fn emptied(&self) -> ServiceTable {
        ServiceTable {
            conn_shared: self.conn_shared.clone(),
            ..Default::default()
        }
    }
    /// Templates shared by all workers (new-connection path only).
    pub fn conn_shared(&self) -> &Arc<crate::conn::settings::ConnShared> {
        &self.conn_shared
    }
    /// Is `addr` a NAT real server (so its frames may be replies to translate)?
    #[inline]
    pub fn is_nat_rip(&self, addr: Ipv4Addr) -> bool {
        !self.nat_rips.is_empty() && self.nat_rips.contains(&addr)
    }
    /// Recompute derived sets after destinations changed (call before publishing).
    pub fn refresh(&mut self) {
        self.nat_rips.clear();
        for s in &self.order {
            for d in s.lock().dests.iter() {
                if let (Some(a), ForwardMethod::Masq) = (d.v4(), d.method()) {
                    self.nat_rips.insert(a);
                }
            }
        }
    }
    pub fn find(&self, addr: &ServiceAddr) -> Option<&Arc<VirtualService>> {
        match key_of(addr) {
            // IPv4 services by their key (one probe: loading 10,000 services must not
            // scan the list once per command).
            Some(k) => self.by_key.get(&k),
            None => self.order.iter().find(|s| s.addr == *addr),
        }
    }
    /// Add a service (the caller checked it does not exist yet).
    pub fn insert(&mut self, svc: Arc<VirtualService>) {
        if let Some(k) = key_of(&svc.addr) {
            self.by_key.insert(k, svc.clone());
            *self.vips.entry(k.1).or_insert(0) += 1;
        }
        self.order.push(svc);
    }
    /// Remove a service; returns it.
    pub fn remove(&mut self, addr: &ServiceAddr) -> Option<Arc<VirtualService>> {
        let pos = self.order.iter().position(|s| s.addr == *addr)?;
        let svc = self.order.remove(pos);
        if let Some(k) = key_of(addr) {
            self.by_key.remove(&k);
            if let Some(n) = self.vips.get_mut(&k.1) {
                *n -= 1;
                if *n == 0 {
                    self.vips.remove(&k.1);
                }
            }
        }
        Some(svc)
    }
}

/// The lookup key of an IPv4 address-based service (`None` for fwmark and IPv6).
pub fn key_of(addr: &ServiceAddr) -> Option<ServiceKey> {
    match addr {
        ServiceAddr::Inet {
            proto,
            addr: IpAddr::V4(a),
            port,
        } => Some((*proto as u8, *a, *port)),
        _ => None,
    }
}
