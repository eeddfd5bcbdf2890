//! Schedulers: pick a destination for a new connection, exactly as Linux IPVS does.
//!
//! One file per scheduler behind the small [`Scheduler`] trait (IPVS's `ip_vs_scheduler`:
//! init, update on configuration change, schedule). A scheduler sees the service's
//! destination list in IPVS list order (newest first) and returns an index into it.
//! Schedulers run only on the new-connection path, under the service's mutex; they
//! never run for packets of established connections.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::sync::Arc;

use crate::dest::{Dest, Protocol};

mod common;
mod dh;
mod fo;
mod index;
mod lblc;
mod lblcr;
mod lc;
mod locality;
mod mh;
mod nq;
mod ovf;
pub mod reference;
mod rr;
mod sed;
mod sh;
mod twos;

mod wlc;
mod wrr;

use crate::dest::watch;
pub use dh::DestinationHashing;
pub use fo::WeightedFailover;
pub use lblc::LocalityLeastConnection;
pub use lblcr::LocalityLeastConnectionReplicated;
pub use lc::LeastConnection;
pub use mh::MaglevHashing;
pub use nq::NeverQueue;
pub use ovf::WeightedOverflow;
pub use rr::RoundRobin;
pub use sed::ShortestExpectedDelay;
pub use sh::SourceHashing;
pub use twos::{RandomSource, TwoChoices};
pub use wlc::WeightedLeastConnection;
pub use wrr::WeightedRoundRobin;

/// What a scheduler may look at in the packet that opens a connection.
#[derive(Debug, Clone, Copy)]
pub struct SchedInput {
    pub proto: Protocol,
    pub saddr: IpAddr,
    pub sport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// Service flags ([`crate::dest::svc_flags`]), for sh-/mh- flags.
    pub svc_flags: u32,
    /// Virtual time in milliseconds (lblc/lblcr caches age on it).
    pub now_ms: u64,
}

/// A change to the destination list, passed to [`Scheduler::update`] after the list
/// was changed.
#[derive(Debug, Clone)]
pub enum DestChange {
    /// A destination was linked at the head (index 0); the others moved down by one.
    Added,
    /// The destination that was at `index` was unlinked.
    Deleted { index: usize },
    /// The destination at `index` had its weight/thresholds/method edited.
    Edited { index: usize },
    /// Service flags changed (`-E`).
    ServiceEdited,
}

/// IPVS's scheduler interface.
pub trait Scheduler: Send {
    /// The name ipvsadm shows (`rr`, `wrr`, ...).
    fn name(&self) -> &'static str;
    /// The destination list changed (it is already in its new form in `dests`).
    fn update(&mut self, dests: &[Arc<Dest>], svc_flags: u32, change: DestChange);
    /// Pick a destination for a new connection; `None` means "no destination
    /// available" (the caller answers with ICMP port-unreachable).
    fn schedule(&mut self, dests: &[Arc<Dest>], input: &SchedInput) -> Option<usize>;
    /// Periodic housekeeping at virtual time `now_ms` (lblc/lblcr cache expiry, IPVS's
    /// 60 s timer). Schedulers also catch up lazily inside `schedule`, so calling this
    /// is optional; the default does nothing.
    fn tick(&mut self, _now_ms: u64) {}
}

/// The scheduler names this build knows.
pub const NAMES: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

/// Create a scheduler by its ipvsadm name, already initialised for `dests`.
pub fn new_scheduler(name: &str, dests: &[Arc<Dest>], svc_flags: u32) -> Option<Box<dyn Scheduler>> {
    let mut s: Box<dyn Scheduler> = match name {
        "rr" => Box::new(RoundRobin::default()),
        "wrr" => Box::new(WeightedRoundRobin::default()),
        "lc" => Box::new(LeastConnection::default()),
        "wlc" => Box::new(WeightedLeastConnection::default()),
        "lblc" => Box::new(LocalityLeastConnection::default()),
        "lblcr" => Box::new(LocalityLeastConnectionReplicated::default()),
        "dh" => Box::new(DestinationHashing::default()),
        "sh" => Box::new(SourceHashing::default()),
        "sed" => Box::new(ShortestExpectedDelay::default()),
        "nq" => Box::new(NeverQueue::default()),
        "fo" => Box::new(WeightedFailover::default()),
        "ovf" => Box::new(WeightedOverflow::default()),
        "mh" => Box::new(MaglevHashing::default()),
        "twos" => Box::new(TwoChoices::default()),
        _ => return None,
    };
    s.update(dests, svc_flags, DestChange::ServiceEdited);
    Some(s)
}

/// A destination `10.0.0.1:80` (weight 1) for benches and examples.
#[cfg(any(test, feature = "tools"))]
pub fn testutil_dest() -> Arc<Dest> {
    use crate::dest::{DestConfig, ForwardMethod, TunnelCsum, TunnelType};
    Arc::new(Dest::new(&DestConfig {
        addr: IpAddr::from([10, 0, 0, 1]),
        port: 80,
        method: ForwardMethod::Route,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        tun_type: TunnelType::Ipip,
        tun_port: 0,
        tun_csum: TunnelCsum::NoCsum,
    }))
}

/// Shared test helpers for scheduler unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::dest::{DestConfig, ForwardMethod, TunnelCsum, TunnelType};

    /// A destination `10.0.0.<n>:80` with a weight.
    pub fn dest(n: u8, weight: i32) -> Arc<Dest> {
        Arc::new(Dest::new(&DestConfig {
            addr: IpAddr::from([10, 0, 0, n]),
            port: 80,
            method: ForwardMethod::Route,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TunnelType::Ipip,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
        }))
    }

    /// A destination `10.0.0.<n>:80` with a weight and active/inactive counts.
    pub fn dest_conns(n: u8, weight: i32, active: u32, inactive: u32) -> Arc<Dest> {
        let d = dest(n, weight);
        d.activeconns.store(active, std::sync::atomic::Ordering::Relaxed);
        d.inactconns.store(inactive, std::sync::atomic::Ordering::Relaxed);
        d
    }

    /// Store a dest's active count directly and tell the schedulers indexing it.
    pub fn set_active(d: &Dest, n: u32) {
        d.activeconns.store(n, std::sync::atomic::Ordering::Relaxed);
        d.load_changed();
    }

    /// The last octet of the picked destination's IPv4 address.
    pub fn octet(dests: &[Arc<Dest>], pick: Option<usize>) -> Option<u8> {
        pick.map(|i| match dests[i].addr {
            IpAddr::V4(a) => a.octets()[3],
            IpAddr::V6(_) => 0,
        })
    }

    /// One pick with the default input.
    pub fn pick1(s: &mut dyn Scheduler, dests: &[Arc<Dest>]) -> Option<u8> {
        picks(s, dests, 1)[0]
    }

    pub fn input(saddr: [u8; 4], sport: u16, daddr: [u8; 4]) -> SchedInput {
        SchedInput {
            proto: Protocol::Tcp,
            saddr: IpAddr::from(saddr),
            sport,
            daddr: IpAddr::from(daddr),
            dport: 80,
            svc_flags: 0,
            now_ms: 0,
        }
    }

    /// Run `n` picks and name them by the last octet of the picked address.
    pub fn picks(s: &mut dyn Scheduler, dests: &[Arc<Dest>], n: usize) -> Vec<Option<u8>> {
        let inp = input([192, 168, 1, 1], 1000, [10, 1, 1, 1]);
        (0..n)
            .map(|_| {
                s.schedule(dests, &inp).map(|i| match dests[i].addr {
                    IpAddr::V4(a) => a.octets()[3],
                    IpAddr::V6(_) => 0,
                })
            })
            .collect()
    }
}
