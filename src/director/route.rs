//! The host's IPv4 routing table, read from `/proc/net/route` (which follows the
//! reading thread's network namespace), and longest-prefix lookups on it.

use std::io;
use std::net::Ipv4Addr;

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub iface: String,
    pub dst: Ipv4Addr,
    pub mask: Ipv4Addr,
    /// Unspecified (0.0.0.0) for on-link routes.
    pub gateway: Ipv4Addr,
    pub metric: u32,
}

/// A snapshot of the routing table.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

const RTF_UP: u32 = 0x0001;

/// The kernel prints a `__be32` as a native-endian number: recover the address.
fn net_order(printed: u32) -> Ipv4Addr {
    Ipv4Addr::from(printed.to_ne_bytes())
}

impl Routes {
    pub fn read() -> io::Result<Routes> {
        Ok(Routes::parse(&std::fs::read_to_string("/proc/net/route")?))
    }

    /// Parse the text of `/proc/net/route` (addresses are little-endian hex).
    pub fn parse(text: &str) -> Routes {
        let mut routes = Vec::new();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                continue;
            }
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            let (Some(dst), Some(gw), Some(flags), Some(mask)) = (hex(f[1]), hex(f[2]), hex(f[3]), hex(f[7])) else {
                continue;
            };
            if flags & RTF_UP == 0 {
                continue;
            }
            routes.push(Route {
                iface: f[0].to_string(),
                dst: net_order(dst),
                mask: net_order(mask),
                gateway: net_order(gw),
                metric: f[6].parse().unwrap_or(0),
            });
        }
        Routes { routes }
    }

    /// The routes through interfaces the director serves, by interface index.
    pub fn resolve(&self, ifindex: impl Fn(&str) -> Option<u32>) -> Vec<crate::pipeline::RouteEntry> {
        self.routes
            .iter()
            .filter_map(|r| {
                Some(crate::pipeline::RouteEntry {
                    dst: r.dst,
                    mask: r.mask,
                    ifindex: ifindex(&r.iface)?,
                    gateway: r.gateway,
                    metric: r.metric,
                })
            })
            .collect()
    }

    /// Longest-prefix match, then lowest metric: (interface, next-hop address).
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<(&str, Ipv4Addr)> {
        let (a, m) = (addr.to_bits(), |r: &Route| r.mask.to_bits());
        let r = self
            .routes
            .iter()
            .filter(|r| a & m(r) == r.dst.to_bits() & m(r))
            .min_by_key(|r| (std::cmp::Reverse(m(r).count_ones()), r.metric))?;
        let hop = if r.gateway.is_unspecified() { addr } else { r.gateway };
        Some((r.iface.as_str(), hop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
eth1\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
eth2\t0000000A\t00000000\t0001\t0\t0\t5\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn longest_prefix_then_gateway() {
        let r = Routes::parse(TABLE);
        assert_eq!(
            r.lookup(Ipv4Addr::new(192, 168, 1, 20)),
            Some(("eth0", Ipv4Addr::new(192, 168, 1, 20)))
        );
        assert_eq!(
            r.lookup(Ipv4Addr::new(10, 0, 0, 7)),
            Some(("eth1", Ipv4Addr::new(10, 0, 0, 7)))
        );
        assert_eq!(
            r.lookup(Ipv4Addr::new(10, 0, 9, 7)),
            Some(("eth2", Ipv4Addr::new(10, 0, 9, 7)))
        );
        assert_eq!(
            r.lookup(Ipv4Addr::new(8, 8, 8, 8)),
            Some(("eth0", Ipv4Addr::new(192, 168, 1, 1)))
        );
        assert_eq!(Routes::parse("header\n").lookup(Ipv4Addr::new(1, 2, 3, 4)), None);
    }
}
