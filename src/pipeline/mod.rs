//! The per-worker pipeline: a pure function of (frame bytes, tables, now).
//!
//! `process` classifies a received frame, looks its connection up or schedules a new
//! one, and hands it to the forwarding method, which writes the frame(s) to transmit
//! into an [`Emit`] sink. It does no I/O, reads no clock and, for established
//! connections, takes no lock and allocates nothing. Sockets and threads
//! (`crate::director`) are thin adapters around it; tests, benches and the fuzzer
//! call it directly.
#![forbid(unsafe_code)]

mod arp;
mod classify;
mod counters;
pub mod echo;
#[cfg(any(test, feature = "tools"))]
pub mod fixture;
mod inbound;
mod outbound;
pub mod passive;
mod schedule;
pub mod synced;
pub mod vipgate;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

pub use counters::WorkerCounters;
pub use synced::SyncHook;
// The data plane's vocabulary lives in the leaf `dataplane`; re-exported here so
// `pipeline::{Emit, Verdict, ...}` keeps working for the director, tools and tests.
pub use crate::dataplane::{DropReason, Emit, Event, Iface, MAX_EVENTS, Mtu, RxMeta, Verdict, pkttype};

use crate::conn::{Conn, ConnTable};
use crate::ipvs::Ipvs;
use crate::service::ServiceTable;
use crate::wire::{MacAddr, icmp};

/// State every worker reads: the forwarding context (interfaces, services, routes,
/// neighbours, tap, VIP gate) and the IPVS settings ([`Ipvs`]); changes arrive as
/// atomics or a new snapshot.
#[derive(Debug)]
pub struct Shared {
    pub ifaces: Vec<Iface>,
    pub services: arc_swap::ArcSwap<ServiceTable>,
    /// The IPVS settings (`struct netns_ipvs`): sysctls, timeouts, defenses, sync.
    pub ipvs: Ipvs,
    /// The host's routes, resolved to interface indexes (published by the control
    /// thread); used to find the next hop toward a NAT client.
    pub routes: arc_swap::ArcSwap<Vec<RouteEntry>>,
    /// Resolved neighbours (ifindex, address) -> MAC, published by the control thread.
    pub neigh: arc_swap::ArcSwap<ahash::AHashMap<(u32, Ipv4Addr), MacAddr>>,
    /// Bumped on every publication of `neigh`, so connections can cache a MAC.
    pub neigh_gen: AtomicU32,
    /// Frame copies for `--pcap` and `uvs trace` (none: tapping is off).
    pub tap: arc_swap::ArcSwapOption<crate::dataplane::Tap>,
    /// VIPs whose ownership follows VRRP, and which of them the director holds.
    pub vip_gate: vipgate::VipGate,
}

/// One route: destination/mask, outgoing interface, gateway (unspecified = on-link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub ifindex: u32,
    pub gateway: Ipv4Addr,
    pub metric: u32,
}

impl RouteEntry {
    /// Does the route cover `addr`?
    #[inline]
    pub fn covers(&self, addr: Ipv4Addr) -> bool {
        let m = self.mask.to_bits();
        addr.to_bits() & m == self.dst.to_bits() & m
    }
    /// The prefix length.
    #[inline]
    pub fn prefix_len(&self) -> u32 {
        self.mask.to_bits().count_ones()
    }
    /// The next hop toward `addr` by this route: its gateway, or `addr` itself on-link.
    #[inline]
    pub fn next_hop(&self, addr: Ipv4Addr) -> Ipv4Addr {
        if self.gateway.is_unspecified() {
            addr
        } else {
            self.gateway
        }
    }
}

impl Shared {
    pub fn new(ifaces: Vec<Iface>) -> Shared {
        // Until the control thread reads the routing table, each interface's own
        // subnets are on-link (tests and the simulator rely on this default).
        let routes = ifaces
            .iter()
            .flat_map(|i| {
                i.addrs.iter().map(move |a| RouteEntry {
                    dst: Ipv4Addr::from_bits(a.to_bits() & 0xffff_ff00),
                    mask: Ipv4Addr::new(255, 255, 255, 0),
                    ifindex: i.ifindex,
                    gateway: Ipv4Addr::UNSPECIFIED,
                    metric: 0,
                })
            })
            .collect();
        Shared {
            ifaces,
            services: arc_swap::ArcSwap::from_pointee(ServiceTable::default()),
            ipvs: Ipvs::default(),
            routes: arc_swap::ArcSwap::from_pointee(routes),
            neigh: arc_swap::ArcSwap::from_pointee(Default::default()),
            neigh_gen: AtomicU32::new(1),
            tap: arc_swap::ArcSwapOption::empty(),
            vip_gate: Default::default(),
        }
    }

    /// Longest-prefix match: (ifindex, next-hop address) toward `addr`.
    pub fn route(&self, addr: Ipv4Addr) -> Option<(u32, Ipv4Addr)> {
        let routes = self.routes.load();
        let r = routes
            .iter()
            .filter(|r| r.covers(addr))
            .min_by_key(|r| (std::cmp::Reverse(r.prefix_len()), r.metric))?;
        Some((r.ifindex, r.next_hop(addr)))
    }

    /// The resolved MAC of a neighbour, if known.
    pub fn neighbour(&self, ifindex: u32, ip: Ipv4Addr) -> Option<MacAddr> {
        self.neigh.load().get(&(ifindex, ip)).copied()
    }

    /// Publish a new neighbour map (control thread).
    pub fn publish_neigh(&self, map: ahash::AHashMap<(u32, Ipv4Addr), MacAddr>) {
        self.neigh.store(Arc::new(map));
        self.neigh_gen.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
    #[inline]
    pub fn iface(&self, ifindex: u32) -> Option<&Iface> {
        crate::dataplane::iface(&self.ifaces, ifindex)
    }
    /// Is `ip` one of the director's own interface addresses?
    pub fn is_local_addr(&self, ip: Ipv4Addr) -> bool {
        self.ifaces.iter().any(|i| i.addrs.contains(&ip))
    }
}

/// One frame's context: what every stage of its processing reads (the shared state,
/// the round's service snapshot, the clock, the frame's receive metadata and the
/// interface it arrived on). Built once per frame by [`Worker::process`] and passed
/// by reference, instead of the same five arguments to every stage.
#[derive(Debug, Clone, Copy)]
struct Ctx<'a> {
    sh: &'a Shared,
    svcs: &'a ServiceTable,
    now_ms: u64,
    rx: RxMeta,
    iface: &'a Iface,
}

/// A worker's private state.
#[derive(Debug)]
pub struct Worker {
    pub id: usize,
    pub conns: ConnTable,
    pub counters: Arc<WorkerCounters>,
    /// Requests for the control thread; bounded by [`MAX_EVENTS`].
    pub events: Vec<Event>,
    /// IP ID counter for outer headers without DF (TUN).
    pub ip_ident: u16,
    /// Which anti-flood defenses are on in this worker.
    pub defense: crate::conn::defense::DefenseState,
    /// The master sync daemon's hook, while one runs (set through the worker's
    /// mailbox, `crate::director::mailbox`).
    pub sync: Option<synced::SyncHook>,
}

impl Worker {
    pub fn new(id: usize, conn_cap: usize) -> Worker {
        Worker {
            id,
            conns: ConnTable::with_cap(conn_cap),
            counters: Arc::new(WorkerCounters::default()),
            events: Vec::with_capacity(MAX_EVENTS),
            ip_ident: (id as u16) << 12,
            defense: Default::default(),
            sync: None,
        }
    }

    /// Process one received frame. See the module documentation.
    pub fn process<E: Emit>(
        &mut self,
        sh: &Shared,
        svcs: &ServiceTable,
        now_ms: u64,
        rx: RxMeta,
        frame: &[u8],
        out: &mut E,
    ) -> Verdict {
        let v = self.process_inner(sh, svcs, now_ms, rx, frame, out);
        self.counters.count(v);
        v
    }

    fn process_inner<E: Emit>(
        &mut self,
        sh: &Shared,
        svcs: &ServiceTable,
        now_ms: u64,
        rx: RxMeta,
        frame: &[u8],
        out: &mut E,
    ) -> Verdict {
        use classify::Class;
        let Some(iface) = sh.iface(rx.ifindex) else {
            return Verdict::Pass;
        };
        let cx = Ctx {
            sh,
            svcs,
            now_ms,
            rx,
            iface,
        };
        match classify::classify(iface, svcs, rx, frame) {
            Class::Pass => Verdict::Pass,
            Class::Drop(r) => Verdict::Drop(r),
            Class::Arp(a) => arp::handle(sh, svcs, iface, &a, out),
            Class::ToVip(p) if !sh.vip_gate.serves(p.daddr) => Verdict::Drop(DropReason::VipNotHeld),
            Class::ToVip(p) => self.inbound(&cx, &p, out),
            Class::IcmpToVip(e) if !sh.vip_gate.serves(dst_of(e.ip)) => Verdict::Drop(DropReason::VipNotHeld),
            Class::EchoToVip { ip, .. } if !sh.vip_gate.serves(dst_of(ip)) => Verdict::Drop(DropReason::VipNotHeld),
            Class::EchoToVip { eth_src, ip } => self.echo(iface, eth_src, ip, out),
            Class::FromRealServer(p) => self.outbound(&cx, &p, out),
            Class::IcmpToVip(e) => self.icmp_inbound(&cx, &e, out),
            Class::IcmpFromRealServer(e) => self.icmp_outbound(&cx, &e, out),
            Class::TunnelIcmp(e) => self.tunnel_icmp(&cx, &e, out),
        }
    }

    /// Answer an echo request to a VIP (see echo.rs) on the interface it came in on.
    fn echo<E: Emit>(&mut self, iface: &Iface, eth_src: MacAddr, ip: &[u8], out: &mut E) -> Verdict {
        let Some(buf) = out.buffer(iface.ifindex) else {
            return Verdict::Drop(DropReason::TxFull);
        };
        self.ip_ident = self.ip_ident.wrapping_add(1);
        match echo::reply(buf, eth_src, iface.mac, self.ip_ident, ip) {
            Some(n) => {
                out.commit(iface.ifindex, n);
                Verdict::Answered
            }
            None => Verdict::Drop(DropReason::TxTooBig),
        }
    }

    /// Queue an event for the control thread (dropped when the queue is full).
    fn event(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS && !self.events.contains(&e) {
            self.events.push(e);
        }
    }

    /// Reap idle connections (call about once a second).
    pub fn expire(&mut self, now_ms: u64) -> usize {
        // The same pass looks at unanswered NAT handshakes (passive health checks).
        self.conns.expire_visit(now_ms, passive::sweep)
    }

    /// The defenses' once-a-second work (IPVS `defense_work`): re-evaluate which are
    /// on from the table's fill level, then the drop_entry sweep. Returns the entries
    /// it deleted.
    pub fn defend(&mut self, sh: &Shared, now_ms: u64) -> usize {
        self.defense
            .update(&sh.ipvs.defense, self.conns.len(), self.conns.cap());
        self.defense
            .random_dropentry(&mut self.conns, &sh.ipvs.timeouts, now_ms)
    }

    /// Is the secure TCP state table in use (secure_tcp, as this worker's defense
    /// level has it: `ip_vs_ctl.c: update_defense_level`)?
    #[inline]
    fn secure_tcp(&self, _sh: &Shared) -> bool {
        self.defense.secure_on
    }
}

/// The destination address of an IPv4 packet the classifier has checked.
#[inline]
fn dst_of(ip: &[u8]) -> Ipv4Addr {
    crate::wire::ipv4::peek(ip).map_or(Ipv4Addr::UNSPECIFIED, |(_, d, _)| d)
}

/// IPVS `is_new_conn_expected`: may a new SYN replace this entry? Not when a
/// template controls it; with conn_reuse_mode bit 1 in TIME_WAIT or CLOSE, with bit 2
/// also in FIN_WAIT for DR/TUN (no-output) connections.
fn reuse_expected(c: &Conn, conn_reuse_mode: u8) -> bool {
    use crate::conn::tcp::TcpState;
    if conn_reuse_mode == 0 || c.tpl.is_some() {
        return false;
    }
    match c.state {
        TcpState::TimeWait | TcpState::Close => true,
        TcpState::FinWait => conn_reuse_mode & 2 != 0 && c.flags & crate::conn::conn_flags::NO_OUTPUT != 0,
        _ => false,
    }
}

/// "No destination available": ICMP port-unreachable to the client, even for TCP
/// (ip_vs_leave), sourced from the VIP.
fn send_port_unreachable<E: Emit>(iface: &Iface, pkt: &classify::L4Packet<'_>, _frame: &[u8], out: &mut E) {
    if let Some(buf) = out.buffer(iface.ifindex)
        && let Some(n) = icmp::emit_error(
            buf,
            pkt.eth_src,
            iface.mac,
            pkt.daddr,
            icmp::Message::PORT_UNREACHABLE,
            pkt.ip,
        )
    {
        out.commit(iface.ifindex, n);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_ha;
