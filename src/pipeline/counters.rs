//! Per-worker frame counters, with drops counted by reason. Single writer (the
//! worker), many readers (metrics, control): plain load + store, no locked RMW.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Verdict;

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal,)*) => {
        /// Why a frame was dropped; `name()` is the metric label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason { $($variant,)* }
        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

drop_reasons! {
    TruncatedEthernet => "truncated_ethernet",
    OwnMac => "own_source_mac",
    Vlan => "vlan_tagged",
    ArpMalformed => "arp_malformed",
    ArpClaimsOwnAddress => "arp_claims_own_address",
    TruncatedIpv4 => "truncated_ipv4",
    BadIpVersion => "bad_ip_version",
    BadIpHeaderLen => "bad_ip_header_length",
    BadIpTotalLen => "bad_ip_total_length",
    IpChecksum => "bad_ip_checksum",
    Fragment => "ip_fragment",
    TruncatedL4 => "truncated_l4",
    IcmpChecksum => "bad_icmp_checksum",
    IcmpBadQuote => "icmp_bad_quote",
    IcmpNoConn => "icmp_no_connection",
    L4Checksum => "bad_l4_checksum",
    UnsupportedProtocol => "unsupported_protocol",
    NoService => "no_service",
    NotSyn => "tcp_not_syn",
    SourcePort20 => "source_port_20",
    NoDestination => "no_destination",
    DestDeleted => "destination_deleted",
    TableFull => "conn_table_full",
    NoRoute => "no_route",
    NeighUnresolved => "neighbour_unresolved",
    TtlExceeded => "ttl_exceeded",
    FragNeeded => "fragmentation_needed",
    TxFull => "tx_queue_full",
    TxTooBig => "tx_frame_too_big",
    MethodUnsupported => "method_unsupported",
    BadIpOptions => "bad_ip_options",
    SourceRoute => "ip_source_route",
    DefenseDropPacket => "defense_drop_packet",
    NewConnRate => "new_conn_rate_limit",
}

/// Counters of one worker.
#[derive(Debug)]
pub struct WorkerCounters {
    pub rx: AtomicU64,
    pub forwarded: AtomicU64,
    pub answered: AtomicU64,
    pub passed: AtomicU64,
    pub neigh: AtomicU64,
    drops: [AtomicU64; 48],
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            rx: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            neigh: AtomicU64::new(0),
            drops: [const { AtomicU64::new(0) }; 48],
        }
    }
}

#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
}

impl WorkerCounters {
    pub fn count(&self, v: Verdict) {
        bump(&self.rx);
        match v {
            Verdict::Forwarded => bump(&self.forwarded),
            Verdict::Answered => bump(&self.answered),
            Verdict::Pass => bump(&self.passed),
            Verdict::Neigh { .. } => bump(&self.neigh),
            Verdict::Drop(r) => bump(&self.drops[r as usize]),
        }
    }
    /// Count `n` drops for `r` found outside the pipeline (the worker's TX sockets).
    pub fn add_drops(&self, r: DropReason, n: u64) {
        let c = &self.drops[r as usize];
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r as usize].load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_slot_and_a_distinct_name() {
        assert!(DropReason::ALL.len() <= 48);
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
