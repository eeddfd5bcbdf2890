//! What one mode of the lab saw, as data: the topology read back from the namespaces,
//! the hop rows built from captured frames, who answered, and the evidence of a
//! `--break`. The text output and the HTML page are both drawn from it; it holds no
//! I/O, so the drawings are tested on fixed fixtures.

use super::hops::{Hop, MacNames};
use crate::testbed::lvs::Mode;

/// One interface of a host, as `ip addr` / `ip link` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceInfo {
    pub name: String,
    /// IPv4 addresses with prefix length, e.g. `10.77.0.10/24`.
    pub addrs: Vec<String>,
    /// Empty for interfaces without one (lo, tunl0).
    pub mac: String,
}

/// A host of the lab: `client`, `director`, `rs1` or `rs2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub name: String,
    pub ifaces: Vec<IfaceInfo>,
}

/// The evidence of what broke with `--break STEP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// DR without arp_ignore: a real server answered ARP for the VIP.
    ArpIgnore {
        /// The client's `ip neigh show VIP` line.
        neigh: String,
        /// Who owns the MAC in it: `the director`, `rs1`, `rs2` or `nobody`.
        owner: String,
        /// Connections the director forwarded.
        via_director: usize,
        total: usize,
        /// The servers that answered (sorted, distinct).
        servers: Vec<String>,
    },
    /// TUN with rp_filter left at 1: the real servers drop the decapsulated packets.
    RpFilter {
        /// Tunnelled packets that left the director.
        tunnelled: usize,
        /// TcpExtIPReversePathFilter summed over the real servers.
        rpf: u64,
        client: String,
        answered: usize,
        total: usize,
    },
    /// NAT without the director as the real servers' gateway: replies go straight
    /// to the client, untranslated.
    Gateway {
        /// SYN-ACKs from a real server's own address that reached the client.
        rip_replies: usize,
        vip: String,
        answered: usize,
        total: usize,
        syns_at_director: usize,
    },
}

impl Evidence {
    /// The `--break` step this is evidence for.
    pub fn step(&self) -> &'static str {
        match self {
            Evidence::ArpIgnore { .. } => "arp_ignore",
            Evidence::RpFilter { .. } => "rp_filter",
            Evidence::Gateway { .. } => "gateway",
        }
    }

    /// Two or three sentences on what broke, one paragraph a line (the text output).
    pub fn text(&self) -> String {
        match self {
            Evidence::ArpIgnore {
                neigh,
                owner,
                via_director,
                total,
                servers,
            } => format!(
                "  Without arp_ignore=1 the real servers answer ARP for the VIP on eth0, racing the director: \
                 the client's neighbour table now says `{neigh}` ({owner}).\n  So the client's SYNs go straight to \
                 that server instead of the director: the director forwarded only {via_director} of {total} connections, \
                 and the answers came from {} with no load balancing.",
                servers.join(", ")
            ),
            Evidence::RpFilter {
                tunnelled,
                rpf,
                client,
                answered,
                total,
            } => format!(
                "  The director tunnelled the requests ({tunnelled} IPIP packets left it), and uvs tunnel handed them to \
                 tunl0, but with rp_filter=1 the real servers' kernels dropped them: a packet from {client} arriving on \
                 tunl0 fails the reverse-path check, because the route back to that client is via eth1 \
                 (TcpExtIPReversePathFilter = {rpf}).\n  No SYN-ACK was ever sent: {answered} of {total} requests answered."
            ),
            Evidence::Gateway {
                rip_replies,
                vip,
                answered,
                total,
                syns_at_director,
            } => format!(
                "  Without the director as their default gateway the real servers send their replies straight to \
                 the client, from their own address and port ({rip_replies} SYN-ACKs from 10.78.1.x:8080 reached the client), \
                 never translated back to {vip}:80.\n  The client never opened a connection to that address, so it \
                 answers them with a reset: {answered} of {total} requests answered (the director saw {syns_at_director} SYNs)."
            ),
        }
    }
}

/// Everything one mode of the lab saw.
#[derive(Debug, Clone)]
pub struct ModeReport {
    pub mode: Mode,
    /// e.g. `DR (direct routing, -g)`.
    pub title: String,
    pub blurb: String,
    pub vip: String,
    pub scheduler: String,
    /// The ipvsadm rules the director ran, one command a line.
    pub rules: String,
    /// client, director, rs1, rs2, in that order.
    pub hosts: Vec<HostInfo>,
    pub names: MacNames,
    pub hops: Vec<Hop>,
    /// Who answered each request (empty: no answer).
    pub answers: Vec<String>,
    /// `ipvsadm -L -n --stats` at the end.
    pub stats: String,
    pub evidence: Option<Evidence>,
}
