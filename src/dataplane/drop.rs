//! Why a frame was dropped: one reason per counter slot, named for the metric label.

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
    VipNotHeld => "vip_not_held",
}
