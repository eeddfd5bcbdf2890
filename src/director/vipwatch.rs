//! Which VRRP-managed VIPs this director holds (issue 18): keepalived (MASTER) puts
//! them on an interface, and removes them on becoming BACKUP. One thread follows the
//! kernel's address notifications (rtnetlink group `RTNLGRP_IPV4_IFADDR`: no polling)
//! and publishes the held set to the workers ([`crate::pipeline::vipgate`]). The
//! state at start is read with an address dump taken after subscribing, so no change
//! falls between the two; an overrun notification queue (ENOBUFS) is answered with a
//! fresh dump.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::pipeline::Shared;
use crate::pipeline::vipgate::GateState;

/// An IPv4 address on an interface: (ifindex, address).
type IfAddr = (u32, Ipv4Addr);

/// The address an `RTM_NEWADDR`/`RTM_DELADDR` message is about (IPv4 only).
fn ifaddr(m: &AddressMessage) -> Option<IfAddr> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
    // point-to-point link (and the same as IFA_LOCAL otherwise).
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(std::net::IpAddr::V4(v)) => Some(*v),
        _ => None,
    });
    let addr = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(std::net::IpAddr::V4(v)) => Some(*v),
        _ => None,
    });
    Some((m.header.index, local.or(addr)?))
}

/// The gated VIPs present on one of `ifindexes`.
pub fn held(
    addrs: &HashSet<IfAddr>,
    gated: &ahash::AHashSet<Ipv4Addr>,
    ifindexes: &[u32],
) -> ahash::AHashSet<Ipv4Addr> {
    addrs
        .iter()
        .filter(|(i, a)| ifindexes.contains(i) && gated.contains(a))
        .map(|(_, a)| *a)
        .collect()
}

/// Every IPv4 address of the namespace (`ip -4 addr show`).
fn dump() -> std::io::Result<HashSet<IfAddr>> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&SocketAddr::new(0, 0))?;
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_DUMP | NLM_F_REQUEST;
    let mut am = AddressMessage::default();
    am.header.family = netlink_packet_route::AddressFamily::Inet;
    let mut req = NetlinkMessage::new(hdr, NetlinkPayload::from(RouteNetlinkMessage::GetAddress(am)));
    req.finalize();
    let mut buf = vec![0; req.header.length as usize];
    req.serialize(&mut buf);
    s.send(&buf, 0)?;
    let mut out = HashSet::new();
    let mut rx = vec![0u8; 64 * 1024];
    loop {
        let n = s.recv(&mut &mut rx[..], 0)?;
        let mut off = 0;
        while off < n {
            let msg: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(&rx[off..n])
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            match &msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return Err(std::io::Error::other(format!("address dump: {e:?}")));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)) => {
                    out.extend(ifaddr(m));
                }
                _ => {}
            }
            if msg.header.length == 0 {
                break;
            }
            off += msg.header.length as usize;
        }
    }
}

pub struct VipWatch {
    shared: Arc<Shared>,
    gated: ahash::AHashSet<Ipv4Addr>,
    ifindexes: Vec<u32>,
    sock: Socket,
    addrs: HashSet<IfAddr>,
}

impl VipWatch {
    /// Subscribe, read the state and publish it: before this returns, the workers
    /// know which gated VIPs are held.
    pub fn start(shared: Arc<Shared>, gated: &[Ipv4Addr], ifindexes: Vec<u32>) -> Result<VipWatch, String> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| format!("rtnetlink socket: {e}"))?;
        sock.bind(&SocketAddr::new(0, libc::RTMGRP_IPV4_IFADDR as u32))
            .map_err(|e| format!("rtnetlink: subscribing to address changes: {e}"))?;
        let addrs = dump().map_err(|e| format!("rtnetlink: reading the addresses: {e}"))?;
        let mut w = VipWatch {
            shared,
            gated: gated.iter().copied().collect(),
            ifindexes,
            sock,
            addrs,
        };
        w.publish(true);
        Ok(w)
    }

    fn publish(&mut self, first: bool) {
        let held = held(&self.addrs, &self.gated, &self.ifindexes);
        let old = self.shared.vip_gate.state();
        if !first && old.held == held {
            return;
        }
        let mut all: Vec<_> = self.gated.iter().copied().collect();
        all.sort_unstable();
        for v in all {
            let ip = v;
            match (first, old.held.contains(&v), held.contains(&v)) {
                (true, _, true) => tracing::warn!(
                    "VIP {ip} is on this director's interface at start: serving it as keepalived's MASTER. \
                     If keepalived is not running (a crash left the address behind), remove it: \
                     ip addr del {ip}/32 dev IFACE"
                ),
                (true, _, false) => tracing::info!("VIP {ip}: not on this director (VRRP BACKUP): not serving it"),
                (false, false, true) => {
                    tracing::info!("VIP {ip}: on this director's interface (VRRP MASTER): serving it")
                }
                (false, true, false) => {
                    tracing::info!("VIP {ip}: removed from the interface (VRRP BACKUP): not serving it")
                }
                _ => {}
            }
        }
        self.shared.vip_gate.publish(GateState {
            gated: self.gated.clone(),
            held,
        });
    }

    /// Follow notifications until `stop`.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        use std::os::fd::AsFd;
        let mut rx = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let mut fds = [nix::poll::PollFd::new(self.sock.as_fd(), nix::poll::PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("rtnetlink poll: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
            let n = match self.sock.recv(&mut &mut rx[..], 0) {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Notifications were lost: the whole state again.
                    tracing::warn!("rtnetlink: address notifications overran; reading all addresses again");
                    match dump() {
                        Ok(a) => self.addrs = a,
                        Err(e) => tracing::warn!("rtnetlink: reading the addresses: {e}"),
                    }
                    self.publish(false);
                    continue;
                }
                Err(e) => {
                    tracing::warn!("rtnetlink recv: {e}");
                    continue;
                }
            };
            let mut off = 0;
            while off < n {
                let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n]) else {
                    break;
                };
                match &msg.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)) => {
                        self.addrs.extend(ifaddr(m));
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => {
                        if let Some(a) = ifaddr(m) {
                            self.addrs.remove(&a);
                        }
                    }
                    _ => {}
                }
                if msg.header.length == 0 {
                    break;
                }
                off += msg.header.length as usize;
            }
            self.publish(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gated_vips_on_the_directors_interfaces_are_held() {
        let gated: ahash::AHashSet<_> = [[10, 0, 0, 100], [10, 0, 0, 101]]
            .into_iter()
            .map(Ipv4Addr::from)
            .collect();
        let addrs: HashSet<IfAddr> = [
            (2, Ipv4Addr::new(10, 0, 0, 2)),   // the DIP
            (2, Ipv4Addr::new(10, 0, 0, 100)), // a gated VIP on our interface
            (9, Ipv4Addr::new(10, 0, 0, 101)), // a gated VIP on another interface
        ]
        .into_iter()
        .collect();
        let h = held(&addrs, &gated, &[2, 3]);
        assert_eq!(h, [[10, 0, 0, 100]].into_iter().map(Ipv4Addr::from).collect());
    }

    #[test]
    fn the_dump_reads_this_namespaces_addresses() {
        // Loopback's 127.0.0.1 is in every namespace with lo up, root or not.
        let a = dump().expect("address dump");
        if std::fs::read_to_string("/sys/class/net/lo/operstate").is_ok() {
            assert!(a.iter().any(|(_, ip)| *ip == Ipv4Addr::LOCALHOST), "{a:?}");
        }
    }
}
