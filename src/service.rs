//! The IPVS object model: virtual services and their destinations (real servers).
//!
//! Configuration values (`ServiceConfig`, `DestConfig`) are plain data produced by the
//! ipvsadm grammar. Runtime objects (`VirtualService`, `Dest`) are shared between the
//! control thread and the workers: everything a worker reads on the per-packet path is
//! an atomic or immutable, so established connections never take a lock here.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::sched::Scheduler;
use crate::stats::Stats;

/// Transport protocol of a virtual service (IANA numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    Tcp = 6,
    Udp = 17,
    Sctp = 132,
}

impl Protocol {
    pub fn from_ip_proto(p: u8) -> Option<Protocol> {
        match p {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }
    /// The name ipvsadm prints (`TCP`, `UDP`, `SCTP`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// Forwarding method of a destination (IPVS conn-flag values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ForwardMethod {
    /// NAT, `-m`.
    Masq = 0,
    /// Legacy local node; never produced by the grammar.
    Local = 1,
    /// IPIP tunnelling, `-i`.
    Tunnel = 2,
    /// Direct routing, `-g` (ipvsadm's default).
    Route = 3,
}

impl ForwardMethod {
    /// Column text in `ipvsadm -L`.
    pub fn name(self) -> &'static str {
        match self {
            ForwardMethod::Masq => "Masq",
            ForwardMethod::Local => "Local",
            ForwardMethod::Tunnel => "Tunnel",
            ForwardMethod::Route => "Route",
        }
    }
    /// Flag in `ipvsadm -S` output.
    pub fn save_flag(self) -> &'static str {
        match self {
            ForwardMethod::Masq => "-m",
            ForwardMethod::Tunnel => "-i",
            ForwardMethod::Route | ForwardMethod::Local => "-g",
        }
    }
    fn from_u8(v: u8) -> ForwardMethod {
        match v {
            0 => ForwardMethod::Masq,
            1 => ForwardMethod::Local,
            2 => ForwardMethod::Tunnel,
            _ => ForwardMethod::Route,
        }
    }
}

/// How a virtual service is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ServiceAddr {
    Inet { proto: Protocol, addr: IpAddr, port: u16 },
    Fwmark { mark: u32, ipv6: bool },
}

/// Service flags (uapi values).
pub mod svc_flags {
    pub const PERSISTENT: u32 = 0x0001;
    pub const ONEPACKET: u32 = 0x0004;
    /// `flag-1`, `sh-fallback`, `mh-fallback`.
    pub const SCHED1: u32 = 0x0008;
    /// `flag-2`, `sh-port`, `mh-port`.
    pub const SCHED2: u32 = 0x0010;
    /// `flag-3`.
    pub const SCHED3: u32 = 0x0020;
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

/// Tunnel type for `-i` destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum TunnelType {
    #[default]
    Ipip,
    Gue,
    Gre,
}

/// Tunnel checksum option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum TunnelCsum {
    #[default]
    NoCsum,
    Csum,
    RemCsum,
}

/// Everything `-a`/`-e` set on a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DestConfig {
    pub addr: IpAddr,
    pub port: u16,
    pub method: ForwardMethod,
    pub weight: i32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tun_type: TunnelType,
    pub tun_port: u16,
    pub tun_csum: TunnelCsum,
}

/// Destination flags.
pub mod dest_flags {
    /// Linked in a service (cleared when deleted).
    pub const AVAILABLE: u32 = 0x1;
    /// Upper threshold reached.
    pub const OVERLOAD: u32 = 0x2;
}

/// A real server as the workers and schedulers see it. Settings are atomics so that an
/// edit is visible to established connections without a lock.
#[derive(Debug)]
pub struct Dest {
    pub addr: IpAddr,
    pub port: u16,
    method: AtomicU8,
    weight: AtomicI32,
    last_weight: AtomicI32,
    u_threshold: AtomicU32,
    l_threshold: AtomicU32,
    flags: AtomicU32,
    /// `--tun-type`, `--tun-port`, checksum option, packed by [`pack_tun`].
    tun: AtomicU32,
    pub activeconns: AtomicU32,
    pub inactconns: AtomicU32,
    pub persistconns: AtomicU32,
    /// Next-hop MAC address, resolved by ARP: 48 bits, bit 63 = valid.
    pub neigh_mac: AtomicU64,
    /// Interface the host's routing table gives for this destination (0 = no route).
    pub out_ifindex: AtomicU32,
    /// Path MTU learnt from ICMP fragmentation-needed about our tunnel packets
    /// (0 = none), valid until `pmtu_expires_ms`.
    pub pmtu: AtomicU32,
    pub pmtu_expires_ms: AtomicU64,
    /// Traffic counters of this destination.
    pub stats: Stats,
    /// Traffic counters of the service this destination belongs to.
    pub svc_stats: Arc<Stats>,
    /// Schedulers indexing this dest's load (least-connection family), told about every
    /// counter / OVERLOAD / weight change. Empty while the dest is not indexed.
    pub(crate) watch: crate::sched::LoadWatch,
    /// Passive health-check signals the workers saw from this NAT destination
    /// (`uvs run --passive-check`, [`crate::keepalived::passive`]).
    pub passive: PassiveFailures,
}

/// A failure of a NAT real server seen in the traffic that passes the director
/// (passive health checking; `crate::pipeline` detects them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassiveSignal {
    /// It answered a client's SYN with RST (nothing listens on the port).
    Rst = 0,
    /// An ICMP destination unreachable (port, host, network, prohibited) from it about
    /// a connection's packet.
    Unreachable = 1,
    /// A client's SYN got no SYN-ACK from it within the handshake timeout.
    SynTimeout = 2,
}

impl PassiveSignal {
    pub const ALL: [PassiveSignal; 3] = [
        PassiveSignal::Rst,
        PassiveSignal::Unreachable,
        PassiveSignal::SynTimeout,
    ];
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            PassiveSignal::Rst => "rst",
            PassiveSignal::Unreachable => "icmp_unreachable",
            PassiveSignal::SynTimeout => "syn_timeout",
        }
    }
}

/// Per-signal failure counters of a destination: workers add (one relaxed atomic add
/// per failed connection, nothing per packet), the control side reads and compares.
#[derive(Debug, Default)]
pub struct PassiveFailures([AtomicU64; 3]);

impl PassiveFailures {
    #[inline]
    pub fn add(&self, s: PassiveSignal) {
        self.0[s as usize].fetch_add(1, Relaxed);
    }
    pub fn get(&self, s: PassiveSignal) -> u64 {
        self.0[s as usize].load(Relaxed)
    }
    /// All signals together.
    pub fn total(&self) -> u64 {
        PassiveSignal::ALL.iter().map(|&s| self.get(s)).sum()
    }
}

const MAC_VALID: u64 = 1 << 63;

/// The tunnel settings of a destination in one word: type, checksum option, port.
fn pack_tun(cfg: &DestConfig) -> u32 {
    (cfg.tun_type as u32) << 24 | (cfg.tun_csum as u32) << 16 | cfg.tun_port as u32
}

fn unpack_tun(v: u32) -> (TunnelType, TunnelCsum, u16) {
    let t = match v >> 24 {
        1 => TunnelType::Gue,
        2 => TunnelType::Gre,
        _ => TunnelType::Ipip,
    };
    let c = match (v >> 16) & 0xff {
        1 => TunnelCsum::Csum,
        2 => TunnelCsum::RemCsum,
        _ => TunnelCsum::NoCsum,
    };
    (t, c, v as u16)
}

impl Dest {
    /// A destination with its own service counters (for tests and tools).
    pub fn new(cfg: &DestConfig) -> Dest {
        Dest::with_service_stats(cfg, Arc::new(Stats::default()))
    }

    /// A destination of a service whose counters are `svc_stats`.
    pub fn with_service_stats(cfg: &DestConfig, svc_stats: Arc<Stats>) -> Dest {
        Dest {
            addr: cfg.addr,
            port: cfg.port,
            method: AtomicU8::new(cfg.method as u8),
            weight: AtomicI32::new(cfg.weight),
            last_weight: AtomicI32::new(cfg.weight),
            u_threshold: AtomicU32::new(cfg.u_threshold),
            l_threshold: AtomicU32::new(cfg.l_threshold),
            flags: AtomicU32::new(dest_flags::AVAILABLE),
            tun: AtomicU32::new(pack_tun(cfg)),
            activeconns: AtomicU32::new(0),
            inactconns: AtomicU32::new(0),
            persistconns: AtomicU32::new(0),
            neigh_mac: AtomicU64::new(0),
            out_ifindex: AtomicU32::new(0),
            pmtu: AtomicU32::new(0),
            pmtu_expires_ms: AtomicU64::new(0),
            stats: Stats::default(),
            svc_stats,
            watch: Default::default(),
            passive: Default::default(),
        }
    }

    /// Apply an `-e` edit (the caller has already validated it).
    pub fn edit(&self, cfg: &DestConfig) {
        let old_u = self.u_threshold();
        self.method.store(cfg.method as u8, Relaxed);
        self.weight.store(cfg.weight, Relaxed);
        if cfg.weight != 0 {
            self.last_weight.store(cfg.weight, Relaxed);
        }
        self.u_threshold.store(cfg.u_threshold, Relaxed);
        self.l_threshold.store(cfg.l_threshold, Relaxed);
        self.tun.store(pack_tun(cfg), Relaxed);
        // ipvs: editing clears OVERLOAD if the new upper threshold is 0 or larger.
        if cfg.u_threshold == 0 || cfg.u_threshold > old_u {
            self.flags.fetch_and(!dest_flags::OVERLOAD, Relaxed);
        }
        self.load_changed();
    }

    /// The tunnel settings (`-i`): type, checksum option, GUE port. One load.
    pub fn tunnel(&self) -> (TunnelType, TunnelCsum, u16) {
        unpack_tun(self.tun.load(Relaxed))
    }

    pub fn config(&self) -> DestConfig {
        let (tun_type, tun_csum, tun_port) = unpack_tun(self.tun.load(Relaxed));
        DestConfig {
            addr: self.addr,
            port: self.port,
            method: self.method(),
            weight: self.weight(),
            u_threshold: self.u_threshold(),
            l_threshold: self.l_threshold(),
            tun_type,
            tun_port,
            tun_csum,
        }
    }

    pub fn method(&self) -> ForwardMethod {
        ForwardMethod::from_u8(self.method.load(Relaxed))
    }
    pub fn weight(&self) -> i32 {
        self.weight.load(Relaxed)
    }
    pub fn last_weight(&self) -> i32 {
        self.last_weight.load(Relaxed)
    }
    pub fn u_threshold(&self) -> u32 {
        self.u_threshold.load(Relaxed)
    }
    pub fn l_threshold(&self) -> u32 {
        self.l_threshold.load(Relaxed)
    }
    pub fn flags(&self) -> u32 {
        self.flags.load(Relaxed)
    }
    pub fn is_overloaded(&self) -> bool {
        self.flags() & dest_flags::OVERLOAD != 0
    }
    pub fn is_available(&self) -> bool {
        self.flags() & dest_flags::AVAILABLE != 0
    }
    pub fn set_overload(&self, on: bool) {
        let old = if on {
            self.flags.fetch_or(dest_flags::OVERLOAD, Relaxed)
        } else {
            self.flags.fetch_and(!dest_flags::OVERLOAD, Relaxed)
        };
        if (old & dest_flags::OVERLOAD != 0) != on {
            self.load_changed();
        }
    }
    /// Tell the schedulers indexing this dest that its counters, OVERLOAD flag or weight
    /// changed. The methods below do it; call it after storing to the counters directly.
    #[inline]
    pub fn load_changed(&self) {
        self.watch.touch();
    }
    pub fn set_available(&self, on: bool) {
        if on {
            self.flags.fetch_or(dest_flags::AVAILABLE, Relaxed);
        } else {
            self.flags.fetch_and(!dest_flags::AVAILABLE, Relaxed);
        }
    }
    pub fn active(&self) -> u32 {
        self.activeconns.load(Relaxed)
    }
    pub fn inactive(&self) -> u32 {
        self.inactconns.load(Relaxed)
    }
    /// `256 * active + inactive`, IPVS's `ip_vs_dest_conn_overhead`.
    pub fn overhead(&self) -> u32 {
        (self.active() << 8).wrapping_add(self.inactive())
    }

    /// A new connection entry was bound to this destination (it starts INACTIVE).
    pub fn bind_conn(&self) {
        self.inactconns.fetch_add(1, Relaxed);
        self.check_upper_threshold();
        self.load_changed();
    }

    /// A persistence template was bound to this destination.
    pub fn bind_template(&self) {
        self.persistconns.fetch_add(1, Relaxed);
        self.check_upper_threshold();
    }

    /// A connection entry moved between the active and inactive counters.
    pub fn set_conn_active(&self, active: bool) {
        if active {
            self.inactconns.fetch_sub(1, Relaxed);
            self.activeconns.fetch_add(1, Relaxed);
        } else {
            self.activeconns.fetch_sub(1, Relaxed);
            self.inactconns.fetch_add(1, Relaxed);
        }
        self.load_changed();
    }

    /// A connection entry (active or not) was released.
    pub fn unbind_conn(&self, was_active: bool) {
        if was_active {
            self.activeconns.fetch_sub(1, Relaxed);
        } else {
            self.inactconns.fetch_sub(1, Relaxed);
        }
        self.check_lower_threshold();
        self.load_changed();
    }

    /// A persistence template was released.
    pub fn unbind_template(&self) {
        self.persistconns.fetch_sub(1, Relaxed);
        self.check_lower_threshold();
    }

    fn check_upper_threshold(&self) {
        let u = self.u_threshold();
        if u != 0 && self.active() + self.inactive() >= u {
            self.set_overload(true);
        }
    }

    fn check_lower_threshold(&self) {
        let (u, l) = (self.u_threshold(), self.l_threshold());
        let total = self.active() + self.inactive();
        let clear = if l != 0 {
            total < l
        } else if u != 0 {
            4 * total < 3 * u
        } else {
            true
        };
        if clear {
            self.set_overload(false);
        }
    }

    /// The MTU toward this destination: a learnt path MTU while it is fresh, else the
    /// interface's.
    #[inline]
    pub fn path_mtu(&self, iface_mtu: u32, now_ms: u64) -> u32 {
        let p = self.pmtu.load(Relaxed);
        if p != 0 && now_ms < self.pmtu_expires_ms.load(Relaxed) {
            p.min(iface_mtu)
        } else {
            iface_mtu
        }
    }
    /// Remember a path MTU from an ICMP fragmentation-needed for 10 minutes (as the
    /// kernel's PMTU cache does); like Linux (`min_pmtu`), never below 552, so a forged or broken report cannot make
    /// every packet to the real server too big.
    pub fn learn_pmtu(&self, mtu: u32, now_ms: u64) {
        const MIN_PMTU: u32 = 552;
        self.pmtu.store(mtu.max(MIN_PMTU), Relaxed);
        self.pmtu_expires_ms.store(now_ms + 600_000, Relaxed);
    }

    /// Outgoing interface index from the routing table (0 = none).
    pub fn out_ifindex(&self) -> u32 {
        self.out_ifindex.load(Relaxed)
    }

    /// The resolved next-hop MAC, if ARP has answered.
    pub fn mac(&self) -> Option<[u8; 6]> {
        let v = self.neigh_mac.load(Relaxed);
        (v & MAC_VALID != 0).then(|| mac_from_u64(v))
    }
    pub fn set_mac(&self, mac: [u8; 6]) {
        self.neigh_mac.store(mac_to_u64(mac) | MAC_VALID, Relaxed);
    }
    /// Forget the MAC (neighbour aged out).
    pub fn clear_mac(&self) {
        self.neigh_mac.store(0, Relaxed);
    }
}

pub fn mac_to_u64(mac: [u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&mac);
    u64::from_be_bytes(b)
}

pub fn mac_from_u64(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
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
pub type ServiceKey = (u8, [u8; 4], u16);

/// An immutable snapshot of the service table, published to the workers with one
/// atomic pointer swap per change. Services and destinations are shared between
/// snapshots, so their counters and scheduler state survive a change.
#[derive(Debug, Default, Clone)]
pub struct ServiceTable {
    by_key: ahash::AHashMap<ServiceKey, Arc<VirtualService>>,
    vips: ahash::AHashMap<[u8; 4], u32>,
    /// Services in creation order (listing sorts on its own).
    order: Vec<Arc<VirtualService>>,
    /// Persistence templates and connection sysctls: one instance shared by every
    /// snapshot (clones share the Arc) and so by every worker.
    conn_shared: Arc<crate::conn::settings::ConnShared>,
    /// Addresses of NAT (`-m`) real servers: frames from them may be replies.
    nat_rips: ahash::AHashSet<[u8; 4]>,
}

impl ServiceTable {
    pub fn get(&self, proto: u8, addr: [u8; 4], port: u16) -> Option<&Arc<VirtualService>> {
        self.by_key.get(&(proto, addr, port))
    }
    /// Is `addr` the address of at least one IPv4 virtual service?
    #[inline]
    pub fn is_vip(&self, addr: [u8; 4]) -> bool {
        self.vips.contains_key(&addr)
    }
    pub fn vips(&self) -> impl Iterator<Item = [u8; 4]> + '_ {
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
    /// An empty table that keeps the shared templates and sysctls (`ipvsadm -C`
    /// clears services, not settings).
    pub fn emptied(&self) -> ServiceTable {
        ServiceTable {
            conn_shared: self.conn_shared.clone(),
            ..Default::default()
        }
    }
    /// Templates and sysctls shared by all workers (new-connection path only).
    pub fn conn_shared(&self) -> &Arc<crate::conn::settings::ConnShared> {
        &self.conn_shared
    }
    /// Is `addr` a NAT real server (so its frames may be replies to translate)?
    #[inline]
    pub fn is_nat_rip(&self, addr: [u8; 4]) -> bool {
        !self.nat_rips.is_empty() && self.nat_rips.contains(&addr)
    }
    /// Recompute derived sets after destinations changed (call before publishing).
    pub fn refresh(&mut self) {
        self.nat_rips.clear();
        for s in &self.order {
            for d in s.lock().dests.iter() {
                if let (IpAddr::V4(a), ForwardMethod::Masq) = (d.addr, d.method()) {
                    self.nat_rips.insert(a.octets());
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
        } => Some((*proto as u8, a.octets(), *port)),
        _ => None,
    }
}
