//! VRRP ownership of VIPs (issue 18): a VIP that keepalived's `vrrp_instance` lists
//! (or `uvs run --vrrp-vip` names) is *gated*: the director serves it only while it
//! *holds* it, i.e. while keepalived (MASTER) has configured the address on one of
//! the director's interfaces. The control side ([`crate::director::vipwatch`]) follows
//! rtnetlink address notifications and publishes the held set here; the workers
//! read it. Ungated VIPs are always served, as before.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ahash::AHashSet;

/// Which gated VIPs the director holds now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GateState {
    pub gated: AHashSet<Ipv4Addr>,
    pub held: AHashSet<Ipv4Addr>,
}

#[derive(Debug, Default)]
pub struct VipGate {
    /// Any gated VIP at all (the common case, none, costs one relaxed load).
    any: AtomicBool,
    state: arc_swap::ArcSwap<GateState>,
}

impl VipGate {
    /// Does the director serve `vip` now? (Ungated: always.)
    #[inline]
    pub fn serves(&self, vip: Ipv4Addr) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return true;
        }
        let s = self.state.load();
        !s.gated.contains(&vip) || s.held.contains(&vip)
    }

    /// Is `addr` a VRRP address (a VIP, or another address of a `vrrp_instance` such as
    /// the NAT real servers' gateway) that the director holds now?
    #[inline]
    pub fn holds(&self, addr: Ipv4Addr) -> bool {
        self.any.load(Ordering::Relaxed) && self.state.load().held.contains(&addr)
    }

    /// Is `vip` one whose ownership follows VRRP?
    pub fn is_gated(&self, vip: Ipv4Addr) -> bool {
        self.any.load(Ordering::Relaxed) && self.state.load().gated.contains(&vip)
    }

    pub fn state(&self) -> Arc<GateState> {
        self.state.load_full()
    }

    /// Publish a new state (control thread).
    pub fn publish(&self, s: GateState) {
        let any = !s.gated.is_empty();
        self.state.store(Arc::new(s));
        self.any.store(any, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ungated_vips_are_served_and_gated_ones_only_while_held() {
        let g = VipGate::default();
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        assert!(g.serves(Ipv4Addr::from(a)) && g.serves(Ipv4Addr::from(b)));
        g.publish(GateState {
            gated: [a].into_iter().map(Ipv4Addr::from).collect(),
            held: Default::default(),
        });
        assert!(!g.serves(Ipv4Addr::from(a)), "gated, not held");
        assert!(g.serves(Ipv4Addr::from(b)), "ungated");
        assert!(g.is_gated(Ipv4Addr::from(a)) && !g.is_gated(Ipv4Addr::from(b)));
        g.publish(GateState {
            gated: [a].into_iter().map(Ipv4Addr::from).collect(),
            held: [a].into_iter().map(Ipv4Addr::from).collect(),
        });
        assert!(g.serves(Ipv4Addr::from(a)));
    }
}
