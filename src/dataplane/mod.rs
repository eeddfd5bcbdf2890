//! The data plane's vocabulary, shared by the pipeline, the forwarding methods, the
//! defenses and the director's workers: the frame sink ([`Emit`]), what became of a
//! frame ([`Verdict`], [`DropReason`]), where it came from ([`RxMeta`]), the
//! interfaces it moves between ([`Iface`], [`Mtu`]), what a worker asks of the
//! control thread ([`Event`]) and the frame tap's worker side ([`Tap`]).
//!
//! A leaf: it sits on `wire` (for `MacAddr`) and imports nothing else from the crate,
//! so every data-plane module can depend on it without a cycle (tests/layering.rs
//! checks this).

#![forbid(unsafe_code)]

mod drop;
mod tap;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

pub use drop::DropReason;
pub use tap::{TAP_QUEUE, Tap, TapDir, TapRecord};

use crate::wire::MacAddr;

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
    pub addrs: Vec<Ipv4Addr>,
    /// The interface's MTU as last read; the director follows changes at run time.
    pub mtu: Mtu,
}

/// An interface's current MTU, shared by the pipeline (fragmentation, ICMP
/// fragmentation-needed), the TX sockets (which refuse a frame too big for it) and the
/// control thread (which follows the interface). Clones share the value.
#[derive(Debug, Clone)]
pub struct Mtu(Arc<AtomicU32>);

impl Mtu {
    pub fn new(mtu: u32) -> Mtu {
        Mtu(Arc::new(AtomicU32::new(mtu)))
    }
    #[inline]
    pub fn get(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Set a new value; returns the old one.
    pub fn set(&self, mtu: u32) -> u32 {
        self.0.swap(mtu, std::sync::atomic::Ordering::Relaxed)
    }
}

impl From<u32> for Mtu {
    fn from(mtu: u32) -> Mtu {
        Mtu::new(mtu)
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
    /// The 802.1Q tag control word the NIC (or veth) stripped from the frame and
    /// reported in the ring's metadata (TP_STATUS_VLAN_VALID, `tp_vlan_tci`); none
    /// for a frame received without a tag.
    pub vlan_tci: Option<u16>,
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
    Neigh { ifindex: u32, ip: Ipv4Addr, mac: MacAddr },
}

/// Something a worker asks of the control thread (drained after each batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Resolve `ip` on `ifindex` by ARP (a NAT reply's next hop toward a client).
    Solicit { ifindex: u32, ip: Ipv4Addr },
}

/// Events kept per batch at most; more are dropped (the next packet asks again).
pub const MAX_EVENTS: usize = 256;

/// The interface with index `ifindex` among `ifaces`.
#[inline]
pub fn iface(ifaces: &[Iface], ifindex: u32) -> Option<&Iface> {
    ifaces.iter().find(|i| i.ifindex == ifindex)
}
