//! The per-worker pipeline: a pure function of (frame bytes, tables, now).
//!
//! `process` classifies a received frame, looks its connection up or schedules a new
//! one, and hands it to the forwarding method, which writes the frame(s) to transmit
//! into an [`Emit`] sink. It does no I/O, reads no clock and, for established
//! connections, takes no lock and allocates nothing. Sockets and threads
//! (`crate::director`) are thin adapters around it; tests, benches and the fuzzer
//! call it directly.

mod arp;
mod classify;
mod counters;
pub mod fixture;
mod schedule;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use counters::{DropReason, WorkerCounters};

use crate::conn::tcp::Timeouts;
use crate::conn::{Conn, ConnKey, ConnTable};
use crate::service::{ForwardMethod, ServiceTable};
use crate::wire::{MacAddr, icmp};

/// AF_PACKET `sll_pkttype` values the pipeline distinguishes.
pub mod pkttype {
    pub const HOST: u8 = 0;
    pub const BROADCAST: u8 = 1;
    pub const MULTICAST: u8 = 2;
    pub const OTHERHOST: u8 = 3;
    pub const OUTGOING: u8 = 4;
}

/// A sink for frames to transmit (a TX ring, a sendmmsg batch, or a Vec in tests).
pub trait Emit {
    /// A buffer for one frame on interface `ifindex`, or `None` if the queue is full.
    fn buffer(&mut self, ifindex: u32) -> Option<&mut [u8]>;
    /// Send the first `len` bytes of the buffer last returned for `ifindex`.
    fn commit(&mut self, ifindex: u32, len: usize);
}

/// One interface the director works on.
#[derive(Debug, Clone)]
pub struct Iface {
    pub ifindex: u32,
    pub name: String,
    pub mac: MacAddr,
    /// IPv4 addresses of the interface (the first one is the director's DIP).
    pub addrs: Vec<[u8; 4]>,
    pub mtu: u32,
}

/// State every worker reads; changes arrive as atomics or a new table snapshot.
#[derive(Debug)]
pub struct Shared {
    pub ifaces: Vec<Iface>,
    pub services: arc_swap::ArcSwap<ServiceTable>,
    pub timeouts: Timeouts,
    /// The secure_tcp defense (the stricter TCP state table).
    pub secure_tcp: AtomicBool,
}

impl Shared {
    pub fn new(ifaces: Vec<Iface>) -> Shared {
        Shared {
            ifaces,
            services: arc_swap::ArcSwap::from_pointee(ServiceTable::default()),
            timeouts: Timeouts::default(),
            secure_tcp: AtomicBool::new(false),
        }
    }
    #[inline]
    pub fn iface(&self, ifindex: u32) -> Option<&Iface> {
        self.ifaces.iter().find(|i| i.ifindex == ifindex)
    }
    /// Is `ip` one of the director's own interface addresses?
    pub fn is_local_addr(&self, ip: [u8; 4]) -> bool {
        self.ifaces.iter().any(|i| i.addrs.contains(&ip))
    }
}

/// Where a frame came from.
#[derive(Debug, Clone, Copy)]
pub struct RxMeta {
    pub ifindex: u32,
    pub pkttype: u8,
    /// The L4 checksum holds only the pseudo-header sum (a locally generated packet
    /// with checksum offload, TP_STATUS_CSUMNOTREADY): the sender's NIC was to finish
    /// it, so whoever transmits the frame on must.
    pub csum_partial: bool,
}

/// What became of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Sent on to a real server.
    Forwarded,
    /// Answered by the director itself (ARP reply).
    Answered,
    /// Not the director's business; the kernel has its own copy.
    Pass,
    /// Dropped, counted under this reason.
    Drop(DropReason),
    /// An ARP packet told us `ip` is at `mac` on `ifindex`: the neighbour manager may
    /// refresh an entry it already has (it never creates one from this).
    Neigh { ifindex: u32, ip: [u8; 4], mac: MacAddr },
}

/// A worker's private state.
#[derive(Debug)]
pub struct Worker {
    pub id: usize,
    pub conns: ConnTable,
    pub counters: Arc<WorkerCounters>,
}

impl Worker {
    pub fn new(id: usize, conn_cap: usize) -> Worker {
        Worker {
            id,
            conns: ConnTable::with_cap(conn_cap),
            counters: Arc::new(WorkerCounters::default()),
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
        let pkt = match classify::classify(iface, svcs, rx, frame) {
            Class::Pass => return Verdict::Pass,
            Class::Drop(r) => return Verdict::Drop(r),
            Class::Arp(a) => return arp::handle(sh, svcs, iface, &a, out),
            Class::ToVip(p) => p,
        };
        let key = ConnKey {
            proto: pkt.proto,
            caddr: pkt.saddr,
            cport: pkt.sport,
            vaddr: pkt.daddr,
            vport: pkt.dport,
        };
        let is_tcp = pkt.proto == crate::wire::ipv4::proto::TCP;
        let syn = is_tcp && pkt.tcp_flags & crate::wire::l4::tcp_flags::SYN != 0;

        // Connection lookup (ip_vs_in): a SYN on a finished TCP entry reuses the tuple
        // (conn_reuse_mode 1): the old entry goes and the SYN is scheduled afresh.
        if syn && self.conns.get(&key).is_some_and(reuse_expected) {
            self.conns.remove(&key);
        }
        if self.conns.get(&key).is_none() {
            match self.schedule(sh, svcs, now_ms, &pkt, key) {
                Ok(()) => {}
                Err(reason) => {
                    if reason == DropReason::NoDestination {
                        send_port_unreachable(iface, &pkt, frame, out);
                    }
                    return Verdict::Drop(reason);
                }
            }
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            return Verdict::Drop(DropReason::TableFull);
        };
        if !conn.dest.is_available() {
            // The destination was deleted: expire_nodest_conn = 0 drops silently.
            return Verdict::Drop(DropReason::DestDeleted);
        }
        if is_tcp {
            conn.tcp_packet(
                pkt.tcp_flags,
                false,
                sh.secure_tcp.load(std::sync::atomic::Ordering::Relaxed),
                &sh.timeouts,
                now_ms,
            );
        } else {
            conn.udp_packet(false, &sh.timeouts, now_ms);
        }
        let ip_len = pkt.ip.len();
        conn.dest.stats.inbound(self.id, ip_len);
        conn.dest.svc_stats.inbound(self.id, ip_len);
        let rx_ctx = crate::forward::RxCtx {
            iface,
            eth_src: pkt.eth_src,
            csum_partial: rx.csum_partial,
        };
        match conn.dest.method() {
            ForwardMethod::Route => crate::forward::dr::transmit(sh, &rx_ctx, &conn.dest, pkt.ip, out),
            ForwardMethod::Masq | ForwardMethod::Tunnel | ForwardMethod::Local => {
                Verdict::Drop(DropReason::MethodUnsupported)
            }
        }
    }

    /// Reap idle connections (call about once a second).
    pub fn expire(&mut self, now_ms: u64) -> usize {
        self.conns.expire(now_ms)
    }
}

/// IPVS `is_new_conn_expected` for conn_reuse_mode 1: a new SYN may replace an entry
/// in TIME_WAIT or CLOSE.
fn reuse_expected(c: &Conn) -> bool {
    use crate::conn::tcp::TcpState;
    matches!(c.state, TcpState::TimeWait | TcpState::Close)
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
            icmp::TYPE_DEST_UNREACH,
            icmp::CODE_PORT_UNREACH,
            0,
            pkt.ip,
        )
    {
        out.commit(iface.ifindex, n);
    }
}

#[cfg(test)]
mod tests;
