//! A destination (real server) and the vocabulary that schedulers and connections
//! share about it: protocols, forwarding methods, service and destination flags, tunnel
//! settings (the kernel's `include/net/ip_vs.h: struct ip_vs_dest` and the uapi
//! `include/uapi/linux/ip_vs.h` constants).
//!
//! It sits below [`crate::sched`] and [`crate::conn`], which read a `Dest`, and below
//! [`crate::service`], whose tables hold them; it imports none of them.

#![forbid(unsafe_code)]

pub(crate) mod watch;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::stats::Stats;
pub(crate) use watch::LoadWatch;

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
    pub(crate) watch: LoadWatch,
    /// Passive health-check signals the workers saw from this NAT destination
    /// (`uvs run --passive-check`, [`crate::keepalived::passive`]).
    pub passive: PassiveFailures,
}

impl Dest {
    /// The address as the IPv4 data plane uses it (`None` for an IPv6 real server):
    /// the one place where a destination's family-generic address becomes the data
    /// plane's [`Ipv4Addr`](std::net::Ipv4Addr).
    #[inline]
    pub fn v4(&self) -> Option<std::net::Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
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
