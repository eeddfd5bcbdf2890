//! IPVS connection sync: the wire format of `ipvsadm --start-daemon`
//! (kernel `net/netfilter/ipvs/ip_vs_sync.c`), as a pure codec with no I/O.
//!
//! A master director multicasts the state of its connections to 224.0.0.81:8848
//! (TTL 1); a backup decodes them and creates the same connections, so established
//! sessions survive a failover. Message version 1 is what current kernels send
//! (`net.ipv4.vs.sync_version=1`); version 0 is still received
//! (`ip_vs_sync.c: ip_vs_process_message`).
//!
//! - [`SyncConn`]: one synced connection (or persistence template).
//! - [`Encoder`]: fills version-1 messages up to [`sync_maxlen`] bytes, as
//!   `ip_vs_sync.c: ip_vs_sync_conn` fills its sync buffers; [`encode_v0`] for
//!   `sync_version=0` peers.
//! - [`decode`]: untrusted bytes → [`Message`] or a [`DecodeError`] whose
//!   [`DecodeError::reason`] names a counter; never panics.
#![forbid(unsafe_code)]

mod codec;

pub use codec::{DecodeError, EncodeError, Encoder, Message, Skipped, decode, encode_v0};

use std::net::IpAddr;

/// Multicast group of the sync daemon (`ip_vs_sync.c: IP_VS_SYNC_GROUP`).
pub const GROUP: [u8; 4] = [224, 0, 0, 81];
/// UDP port of the sync daemon (`ip_vs_sync.c: IP_VS_SYNC_PORT`).
pub const PORT: u16 = 8848;
/// Multicast TTL the master uses unless told otherwise (`start_sync_thread`).
pub const DEFAULT_TTL: u8 = 1;

/// Connection flag bits of `include/net/ip_vs.h` (`IP_VS_CONN_F_*`) as carried on
/// the wire (32 bits in v1, the low 16 in v0).
pub mod flags {
    /// Forwarding-method mask; the method is one of the next five values.
    pub const FWD_MASK: u32 = 0x0007;
    pub const MASQ: u32 = 0x0000;
    pub const LOCALNODE: u32 = 0x0001;
    pub const TUNNEL: u32 = 0x0002;
    pub const DROUTE: u32 = 0x0003;
    pub const BYPASS: u32 = 0x0004;
    /// Set by the backup on every connection it learnt by sync.
    pub const SYNC: u32 = 0x0020;
    /// Kernel-internal; never sent (`ip_vs_sync_conn` masks it off).
    pub const HASHED: u32 = 0x0040;
    pub const NOOUTPUT: u32 = 0x0080;
    /// Not established (counts as an inactive connection of its real server).
    pub const INACTIVE: u32 = 0x0100;
    pub const OUT_SEQ: u32 = 0x0200;
    pub const IN_SEQ: u32 = 0x0400;
    /// Sequence adjustment in use: v0 then carries the 24-byte sequence option.
    pub const SEQ_MASK: u32 = 0x0600;
    pub const NO_CPORT: u32 = 0x0800;
    /// A persistence template, not a connection.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling (`-o`): such connections are never synced.
    pub const ONE_PACKET: u32 = 0x2000;
    /// The bits a backup keeps from a received entry (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
    /// The bits a sync message may change on an existing entry
    /// (`IP_VS_CONN_F_BACKUP_UPD_MASK`).
    pub const BACKUP_UPD_MASK: u32 = INACTIVE | SEQ_MASK;
}

/// Forwarding method encoded in the low flag bits (`IP_VS_CONN_F_FWD_MASK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwdMethod {
    Masq,
    LocalNode,
    Tunnel,
    DirectRoute,
    Bypass,
    /// 5..=7: not defined by the kernel.
    Unknown(u8),
}

/// One TCP sequence-adjustment record (`struct ip_vs_seq`), big-endian on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seq {
    pub init_seq: u32,
    pub delta: u32,
    pub previous_delta: u32,
}

/// The sequence option (`struct ip_vs_sync_conn_options`): 24 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqOpts {
    pub in_seq: Seq,
    pub out_seq: Seq,
}

/// Persistence-engine data (`IPVS_OPT_PE_DATA` and `IPVS_OPT_PE_NAME`), e.g. the
/// `sip` engine's Call-ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeData {
    /// Engine name, 1..=16 bytes (`IP_VS_PENAME_MAXLEN`).
    pub name: Vec<u8>,
    /// Engine data, 1..=255 bytes (`IP_VS_PEDATA_MAXLEN`).
    pub data: Vec<u8>,
}

/// One synced connection, as `struct ip_vs_sync_v4` / `ip_vs_sync_v6` carry it.
///
/// The three addresses share one family (the entry's type bit). Ports and
/// addresses are host values; the codec does the byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConn {
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP; 0 for fwmark templates).
    pub protocol: u8,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    /// `IP_VS_CONN_F_*` bits ([`flags`]); [`flags::HASHED`] is never sent.
    pub flags: u32,
    /// Protocol state index (`IP_VS_TCP_S_*`, ...); templates send their own.
    pub state: u16,
    /// Firewall mark of a fwmark service (v1 only; v0 receives 0).
    pub fwmark: u32,
    /// Remaining timeout in seconds (v1 only; v0 receives 0 = "the protocol's
    /// timeout for this state", `ip_vs_proc_conn`).
    pub timeout: u32,
    /// TCP sequence adjustment, present when [`flags::SEQ_MASK`] bits are set.
    pub seq: Option<SeqOpts>,
    /// Persistence-engine data (v1 only).
    pub pe: Option<PeData>,
}

impl SyncConn {
    /// The forwarding method bits.
    pub fn fwd_method(&self) -> FwdMethod {
        match self.flags & flags::FWD_MASK {
            flags::MASQ => FwdMethod::Masq,
            flags::LOCALNODE => FwdMethod::LocalNode,
            flags::TUNNEL => FwdMethod::Tunnel,
            flags::DROUTE => FwdMethod::DirectRoute,
            flags::BYPASS => FwdMethod::Bypass,
            n => FwdMethod::Unknown(n as u8),
        }
    }

    /// A persistence template rather than a connection.
    pub fn is_template(&self) -> bool {
        self.flags & flags::TEMPLATE != 0
    }

    /// Flags a backup gives the connection it creates: the received bits masked
    /// by [`flags::BACKUP_MASK`], plus [`flags::SYNC`] (`ip_vs_proc_sync_conn`).
    pub fn backup_flags(&self) -> u32 {
        (self.flags & flags::BACKUP_MASK) | flags::SYNC
    }

    fn is_v6(&self) -> bool {
        self.caddr.is_ipv6()
    }
}

/// Which daemon a message size is for (`start_sync_thread`'s `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Backup,
}

/// Size of the IPv4 + UDP headers in front of a sync message.
pub const IPV4_UDP_HLEN: u32 = 20 + 8;
/// Size of the IPv6 + UDP headers in front of a sync message.
pub const IPV6_UDP_HLEN: u32 = 40 + 8;

/// The largest sync message, header included, as `ip_vs_sync.c:
/// start_sync_thread` sets `sync_maxlen`: an explicit `--mcast-maxlen`
/// (`configured`) is clamped to `[1 (master) or 1024 (backup), 65535 - hlen]`;
/// otherwise the master sends at most `1500 - hlen` whatever the interface MTU
/// (1472 over IPv4, the figure `ipvsadm -L --daemon` shows), and the backup
/// accepts `clamp(mtu, 1500, 65535) - hlen`. `hlen` is [`IPV4_UDP_HLEN`] or
/// [`IPV6_UDP_HLEN`] by the group's family.
///
/// (Kernels before 4.7 derived the master's size from the interface MTU in
/// `set_sync_mesg_maxlen`; the current rule keeps a master on a jumbo link
/// readable by a backup on a 1500-byte one.)
pub fn sync_maxlen(role: Role, dev_mtu: u32, configured: Option<u32>, ipv6_group: bool) -> u32 {
    let hlen = if ipv6_group { IPV6_UDP_HLEN } else { IPV4_UDP_HLEN };
    let (mtu, min) = match role {
        Role::Backup => (dev_mtu.clamp(1500, 65535), 1024),
        Role::Master => (1500, 1),
    };
    match configured {
        Some(n) if n != 0 => n.clamp(min, 65535 - hlen),
        _ => mtu - hlen,
    }
}

/// The sync sysctls (`net.ipv4.vs.sync_*`, `ip_vs_ctl.c: vs_vars`) with the kernel's
/// defaults, as atomics: the control thread writes them (`uvs sysctl`), workers read
/// them on a synced connection's packets.
#[derive(Debug)]
pub struct Settings {
    /// `sync_threshold`'s first number: a connection is synced at this many packets...
    pub threshold: std::sync::atomic::AtomicU32,
    /// ...and `sync_threshold`'s second number: then every this many (0: only once).
    pub period: std::sync::atomic::AtomicU32,
    /// `sync_version`: 1 (default) or 0 (the legacy format, for old backups).
    pub version: std::sync::atomic::AtomicU32,
    /// `sync_qlen_max`: records a master may have queued (over all workers) before it
    /// drops (`ip_vs_sync.c: sb_queue_tail`).
    pub qlen_max: std::sync::atomic::AtomicU32,
    /// `sync_refresh_period`, in seconds (0, the default: off): a connection whose
    /// state has not changed is synced again only once this much (or half its
    /// timeout, if less, but at least 10 s) of its timeout has passed since its last
    /// sync (`ip_vs_sync.c: ip_vs_sync_conn_needed`).
    pub refresh_period: std::sync::atomic::AtomicU32,
    /// `sync_retries` (0 ... 3, default 0): with a refresh period, resend a record
    /// up to this many times, `sync_refresh_period / 8` apart, against lost messages.
    pub retries: std::sync::atomic::AtomicU32,
}

impl Default for Settings {
    fn default() -> Self {
        use std::sync::atomic::AtomicU32;
        Settings {
            threshold: AtomicU32::new(DEFAULT_THRESHOLD),
            period: AtomicU32::new(DEFAULT_PERIOD),
            version: AtomicU32::new(1),
            qlen_max: AtomicU32::new(DEFAULT_QLEN_MAX),
            refresh_period: AtomicU32::new(0),
            retries: AtomicU32::new(0),
        }
    }
}

/// `sync_threshold` default: `3 50` (`ip_vs_ctl.c: DEFAULT_SYNC_THRESHOLD`,
/// `DEFAULT_SYNC_PERIOD`).
pub const DEFAULT_THRESHOLD: u32 = 3;
pub const DEFAULT_PERIOD: u32 = 50;
/// `sync_qlen_max` default. The kernel sizes it from free memory (`nr_free_buffer_pages
/// / 32`); a fixed 128 Ki records (about 10 MB of queued records) here.
pub const DEFAULT_QLEN_MAX: u32 = 131_072;
