//! keepalived's keyword tables for the checker process (check/check_parser.c and the
//! checkers' `install_*_keyword`), `global_defs` (core/global_parser.c), with the
//! defaults and warnings of check/check_data.c (`alloc_vs`, `alloc_rs`,
//! `alloc_vsg_entry`, `validate_check_config`). The block walk follows lib/parser.c's
//! `process_stream`: an unknown keyword is reported and its `{` is then "Unexpected"
//! and ignored, so the block's contents are read at the current level (which is how the
//! seed-003 configuration with two missing braces ends up with one real server).

use std::net::IpAddr;
use std::sync::Arc;

/// The checkers' settings are the probes' own vocabulary ([`crate::check`]).
pub use crate::check::{UdpCheck, Url};

use super::lex::Line;
use super::{Diag, Severity};
use crate::service::{ForwardMethod, Protocol, TunnelCsum, TunnelType};

/// Microseconds (keepalived's TIMER_HZ).
pub const SEC: u64 = 1_000_000;
/// `IPVS_SVC_PERSISTENT_TIMEOUT`.
pub const PERSISTENT_TIMEOUT: u32 = 360;
/// `LVS_MAX_TIMEOUT` (31 days).
pub const LVS_MAX_TIMEOUT: u32 = 86400 * 31;
/// `IPVS_WEIGHT_LIMIT`.
pub const WEIGHT_LIMIT: u32 = i32::MAX as u32;

const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos",
];

/// global_defs keywords keepalived 2.2 knows (core/global_parser.c); uvs uses
/// `router_id`, `lvs_timeouts` and `lvs_flush`, the others are accepted and ignored.
const GLOBAL_KEYWORDS: &[&str] = &[
    "bfd_cpu_affinity",
    "bfd_no_swap",
    "bfd_priority",
    "bfd_process_name",
    "bfd_rlimit_rtime",
    "bfd_rlimit_rttime",
    "bfd_rt_priority",
    "checker_cpu_affinity",
    "checker_log_all_failures",
    "checker_no_swap",
    "checker_priority",
    "checker_process_name",
    "checker_rlimit_rtime",
    "checker_rlimit_rttime",
    "checker_rt_priority",
    "config_save_dir",
    "data_use_instance",
    "dbus_service_name",
    "default_interface",
    "disable_local_igmp",
    "dynamic_interfaces",
    "enable_dbus",
    "enable_script_security",
    "enable_snmp_checker",
    "enable_snmp_keepalived",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_snmp_vrrp",
    "enable_traps",
    "fifo_write_vrrp_states_on_reload",
    "include_check",
    "log_unknown_vrids",
    "lvs_flush",
    "lvs_flush_on_stop",
    "lvs_flush_onstop",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs_force",
    "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
    "lvs_process_name",
    "lvs_sync_daemon",
    "lvs_timeouts",
    "max_auto_priority",
    "min_auto_priority_delay",
    "nftables",
    "nftables_counters",
    "nftables_ifindex",
    "nftables_ipvs",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "nftables_priority",
    "no_checker_emails",
    "no_email_faults",
    "notification_email",
    "notification_email_from",
    "notify_fifo",
    "notify_fifo_script",
    "process_monitor_rcv_bufs",
    "process_monitor_rcv_bufs_force",
    "process_name",
    "process_names",
    "random_seed",
    "reload_check_config",
    "reload_file",
    "reload_repeat",
    "reload_time_file",
    "router_id",
    "rs_init_notifies",
    "script_user",
    "shutdown_script",
    "shutdown_script_timeout",
    "smtp_alert",
    "smtp_alert_checker",
    "smtp_alert_vrrp",
    "smtp_connect_timeout",
    "smtp_helo_name",
    "smtp_server",
    "snmp_socket",
    "startup_script",
    "startup_script_timeout",
    "tmp_config_directory",
    "umask",
    "vmac_addr_prefix",
    "vmac_prefix",
    "vrrp_check_unicast_src",
    "vrrp_cpu_affinity",
    "vrrp_down_timer_adverts",
    "vrrp_garp_extra_if",
    "vrrp_garp_interval",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_master_repeat",
    "vrrp_gna_interval",
    "vrrp_higher_prio_send_advert",
    "vrrp_ipsets",
    "vrrp_iptables",
    "vrrp_lower_prio_no_advert",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_min_garp",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "vrrp_no_swap",
    "vrrp_notify_fifo",
    "vrrp_notify_fifo_script",
    "vrrp_notify_priority_changes",
    "vrrp_priority",
    "vrrp_process_name",
    "vrrp_rlimit_rtime",
    "vrrp_rlimit_rttime",
    "vrrp_rt_priority",
    "vrrp_rx_bufs_multiplier",
    "vrrp_rx_bufs_policy",
    "vrrp_skip_check_adv_addr",
    "vrrp_startup_delay",
    "vrrp_strict",
    "vrrp_version",
    "vrrp_vmac_garp_intvl",
];

/// Top-level blocks of the other keepalived processes (VRRP, BFD, ...): read and skipped,
/// as the checker process skips them (inactive keywords).
const SKIPPED_ROOT: &[&str] = &[
    "bfd_instance",
    "child_wait_time",
    "garp_group",
    "instance",
    "interface_up_down_delays",
    "linkbeat_interfaces",
    "linkbeat_use_polling",
    "namespace_with_ipsets",
    "net_namespace",
    "net_namespace_ipvs",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "track_file",
    "track_group",
    "use_pid_dir",
    "vrrp_instance",
    "vrrp_script",
    "vrrp_sync_group",
    "vrrp_track_file",
    "vrrp_track_process",
];

/// How a `virtual_server` is addressed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VsAddr {
    Inet(IpAddr, u16),
    Fwmark(u32),
    Group(String),
}

/// One entry of a `virtual_server_group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEntry {
    /// An address range (first == last for a single address) and a port.
    Range {
        first: IpAddr,
        last: IpAddr,
        port: u16,
    },
    Fwmark {
        mark: u32,
        ipv6: Option<bool>,
    },
}

/// Forwarding method with its tunnel options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub method: ForwardMethod,
    pub tun_type: TunnelType,
    pub tun_port: u16,
    pub tun_csum: TunnelCsum,
}

impl Method {
    pub fn of(method: ForwardMethod) -> Method {
        Method {
            method,
            tun_type: TunnelType::Ipip,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
        }
    }
}

/// A script with its arguments (`notify_up`, `misc_path`, `quorum_up`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub argv: Vec<String>,
    pub user: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Tcp,
    Http {
        ssl: bool,
        urls: Vec<Url>,
        /// "1.0", "1.0C" or "1.1".
        protocol: String,
        virtualhost: Option<String>,
        /// `enable_sni`: send the virtual host as TLS SNI (check_ssl.c `ssl_connect`).
        enable_sni: bool,
    },
    /// UDP_CHECK (check_udp.c).
    Udp(UdpCheck),
    /// DNS_CHECK (check_dns.c): query `name` (default the root) of `qtype` (default SOA).
    Dns {
        qtype: u16,
        name: String,
    },
    /// PING_CHECK (check_ping.c): ICMP echo.
    Ping,
    /// SMTP_CHECK (check_smtp.c): banner 220, `HELO helo_name` answered 250, QUIT.
    Smtp {
        helo_name: String,
    },
    Misc {
        script: Option<Script>,
        /// Microseconds; None: the checker's delay_loop.
        timeout: Option<u64>,
        dynamic: bool,
    },
    /// A checker keepalived has and uvs does not run (FILE_CHECK, BFD_CHECK).
    Other(String),
}

/// lib/parser.c `read_hex_str`: hex octets, spaces between them allowed, `x`/`X`
/// wildcard nibbles when `wildcards`; (data, mask). None: invalid or empty.
pub fn read_hex_str(s: &str, wildcards: bool) -> Option<(Vec<u8>, Vec<u8>)> {
    let val = |c: u8| match c {
        b'0'..=b'9' => Some((c - b'0', 0)),
        b'a'..=b'f' => Some((c - b'a' + 10, 0)),
        b'A'..=b'F' => Some((c - b'A' + 10, 0)),
        b'x' | b'X' if wildcards => Some((0, 0x0f)),
        _ => None,
    };
    let b = s.as_bytes();
    let (mut data, mut mask) = (Vec::new(), Vec::new());
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let (mut v, mut m) = val(b[i])?;
        i += 1;
        if i < b.len() && b[i] != b' ' {
            let (v2, m2) = val(b[i])?;
            i += 1;
            v = (v << 4) | v2;
            m = (m << 4) | m2;
        }
        data.push(v);
        mask.push(m);
    }
    (!data.is_empty()).then_some((data, mask))
}

/// check_dns.c's `DNS_TYPE` table.
pub fn dns_type(name: &str) -> Option<u16> {
    const T: &[(&str, u16)] = &[
        ("A", 1),
        ("NS", 2),
        ("CNAME", 5),
        ("SOA", 6),
        ("MX", 15),
        ("TXT", 16),
        ("AAAA", 28),
        ("RRSIG", 46),
        ("DNSKEY", 48),
    ];
    T.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|t| t.1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checker {
    pub kind: CheckKind,
    pub file: Arc<str>,
    pub line: usize,
    pub connect_ip: Option<IpAddr>,
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_port: Option<u16>,
    pub bind_if: Option<String>,
    pub fwmark: Option<u32>,
    /// The rest are resolved by validation (checker, else real server, else defaults).
    pub connect_timeout: Option<u64>,
    pub retry: Option<u32>,
    pub delay_before_retry: Option<u64>,
    pub warmup: Option<u64>,
    pub delay_loop: Option<u64>,
    pub alpha: Option<bool>,
    pub log_all_failures: bool,
    /// A message keepalived logs (LOG_INFO, not a configuration error) about this
    /// checker's block, logged when the configuration is loaded.
    pub note: Option<String>,
}

/// A checker's connection options (keepalived's `conn_opts_t`: what a deprecated
/// SMTP_CHECK `host` block sets for its own checker).
type ConnOpts = (
    Option<IpAddr>,
    Option<u16>,
    Option<IpAddr>,
    Option<u16>,
    Option<String>,
    Option<u32>,
    Option<u64>,
);

impl Checker {
    fn take_conn_opts(&mut self) -> ConnOpts {
        (
            self.connect_ip.take(),
            self.connect_port.take(),
            self.bindto.take(),
            self.bind_port.take(),
            self.bind_if.take(),
            self.fwmark.take(),
            self.connect_timeout.take(),
        )
    }

    fn set_conn_opts(&mut self, co: ConnOpts) {
        (
            self.connect_ip,
            self.connect_port,
            self.bindto,
            self.bind_port,
            self.bind_if,
            self.fwmark,
            self.connect_timeout,
        ) = co;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    pub addr: IpAddr,
    pub port: u16,
    pub file: Arc<str>,
    pub line: usize,
    pub weight: Option<u32>,
    pub method: Option<Method>,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub inhibit: Option<bool>,
    pub alpha: Option<bool>,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub connect_timeout: Option<u64>,
    pub retry: Option<u32>,
    pub delay_before_retry: Option<u64>,
    pub warmup: Option<u64>,
    pub delay_loop: Option<u64>,
    pub virtualhost: Option<String>,
    pub checkers: Vec<Checker>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    pub addr: VsAddr,
    pub file: Arc<str>,
    pub line: usize,
    pub ipv6: Option<bool>,
    pub protocol: Option<Protocol>,
    pub scheduler: String,
    pub flags: u32,
    pub method: Option<Method>,
    pub persistence_timeout: u32,
    pub granularity: Option<crate::service::Netmask>,
    pub pe: Option<String>,
    pub delay_loop: u64,
    pub connect_timeout: u64,
    pub retry: Option<u32>,
    pub delay_before_retry: Option<u64>,
    pub warmup: Option<u64>,
    pub inhibit: bool,
    pub alpha: bool,
    pub omega: bool,
    pub ha_suspend: bool,
    pub virtualhost: Option<String>,
    pub weight: u32,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub sorry: Option<RealServer>,
    pub real_servers: Vec<RealServer>,
}

impl VirtualServer {
    /// keepalived's FMT_VS: `[10.0.0.1]:tcp:80`, `FWM 1`, `[GROUP]:0`.
    pub fn fmt(&self) -> String {
        match &self.addr {
            VsAddr::Inet(a, p) => format!("[{a}]:{}:{p}", proto_name(self.protocol)),
            VsAddr::Fwmark(m) => format!("FWM {m}"),
            VsAddr::Group(g) => format!("[{g}]:0"),
        }
    }
    /// keepalived's FMT_RS: `[10.0.0.2]:tcp:80`.
    pub fn fmt_rs(&self, rs: &RealServer) -> String {
        format!("[{}]:{}:{}", rs.addr, proto_name(self.protocol), rs.port)
    }
}

fn proto_name(p: Option<Protocol>) -> &'static str {
    match p {
        Some(Protocol::Tcp) => "tcp",
        Some(Protocol::Udp) => "udp",
        Some(Protocol::Sctp) => "sctp",
        None => "none",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub router_id: Option<String>,
    /// `lvs_timeouts`: tcp, tcpfin, udp (0: unchanged, as ipvsadm --set).
    pub lvs_timeouts: Option<(u32, u32, u32)>,
    pub lvs_flush: bool,
    pub groups: Vec<(String, Vec<GroupEntry>)>,
    pub services: Vec<VirtualServer>,
    /// The `vrrp_instance` addresses (read for VIP ownership, see [`super::vrrp`]).
    pub vrrp_vips: Vec<super::vrrp::VrrpVip>,
}

impl Config {
    pub fn group(&self, name: &str) -> Option<&[GroupEntry]> {
        self.groups.iter().find(|(n, _)| n == name).map(|(_, e)| e.as_slice())
    }
}

/// Reads whole numbers as keepalived's `read_unsigned_strvec` does (decimal, range).
pub fn read_unsigned(s: &str, min: u64, max: u64) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u64 = s.parse().ok()?;
    (min..=max).contains(&v).then_some(v)
}

/// `read_timer`: seconds with up to 6 decimals, in microseconds, within [min, max].
pub fn read_timer(s: &str, min: u64, max: u64) -> Option<u64> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 6 {
        return None;
    }
    let i: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut f: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    for _ in frac.len()..6 {
        f *= 10;
    }
    let v = i.checked_mul(SEC)?.checked_add(f)?;
    (min..=max).contains(&v).then_some(v)
}

/// `check_true_false`.
fn true_false(s: &str) -> Option<bool> {
    match s {
        "true" | "on" | "yes" => Some(true),
        "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// `inet_stosockaddr` with an optional port word (0 or none: no port).
fn parse_addr(ip: &str, port: Option<&str>) -> Option<(IpAddr, u16)> {
    let ip: IpAddr = ip.parse().ok()?;
    let port = match port {
        None => 0,
        Some(p) if p.bytes().all(|b| b == b'0') => 0,
        Some(p) => read_unsigned(p, 1, 65535)? as u16,
    };
    Some((ip, port))
}

fn script(words: &[String]) -> Option<Script> {
    // `notify_up "cmd args" [user [group]]`: the first word is the command line.
    let cmd = words.get(1)?;
    let argv = shell_words(cmd)?;
    if argv.is_empty() {
        return None;
    }
    Some(Script {
        argv,
        user: words.get(2).cloned(),
        group: words.get(3).cloned(),
    })
}

/// A script's command line split as keepalived's `notify_script_init` does: blanks
/// separate words, `'…'` and `"…"` quote, `\` escapes. None for an unterminated quote.
pub fn shell_words(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next()? {
                        '"' => break,
                        '\\' => cur.push(it.next()?),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = it.next() {
                    cur.push(n);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

/// Which keyword table a block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Global,
    Ssl,
    Vs,
    Rs,
    Checker,
    Url,
    /// A nested block (SMTP_CHECK's `host`) whose keywords are the checker's.
    CheckerHost,
}

/// What a keyword line did.
enum Kw {
    Unknown,
    Simple,
    /// A keyword with a sub-level (its block is read with `level`'s table).
    Block(Level),
    /// A keyword of another process: its `{ … }` block is skipped unread.
    Skip,
    /// A value block (`notification_email { … }`, `virtual_server_group`): lines
    /// until `}` handed back to the keyword.
    Values,
}

pub struct Parser<'a> {
    lines: &'a [Line],
    pos: usize,
    /// lib/parser.c's `skip_sublevel`.
    skip: i32,
    level_depth: usize,
    cfg: Config,
    diags: Vec<Diag>,
    cur: Option<(Arc<str>, usize)>,
    /// SMTP_CHECK `host` blocks: the checker's own connection options while a block is
    /// read (check_smtp.c `sav_co`), and the blocks' options read so far (`host_list`).
    smtp_saved_co: Option<ConnOpts>,
    smtp_hosts: Vec<ConnOpts>,
}

impl<'a> Parser<'a> {
    pub fn new(lines: &'a [Line]) -> Parser<'a> {
        Parser {
            lines,
            pos: 0,
            skip: 0,
            level_depth: 0,
            smtp_saved_co: None,
            smtp_hosts: Vec::new(),
            cfg: Config::default(),
            diags: Vec::new(),
            cur: None,
        }
    }

    fn warn(&mut self, msg: impl Into<String>) {
        let (file, line) = match &self.cur {
            Some((f, l)) => (Some(f.clone()), Some(*l)),
            None => (None, None),
        };
        self.diags.push(Diag {
            severity: Severity::Warning,
            file,
            line,
            msg: msg.into(),
        });
    }

    pub fn run(&mut self) {
        self.stream(Level::Root, false);
    }

    /// `process_stream`. Returns true when the block was skipped (no close handler).
    fn stream(&mut self, level: Level, mut need_bob: bool) -> bool {
        let mut skipped = false;
        while self.pos < self.lines.len() {
            let line = &self.lines[self.pos];
            self.pos += 1;
            self.cur = Some((line.file.clone(), line.line));
            let first = line.words[0].as_str();
            if self.skip == -1 {
                if line.is("{") {
                    self.skip = 1;
                    need_bob = false;
                    continue;
                }
                self.skip = 0;
            }
            if self.skip > 0 {
                if line.is("{") {
                    self.skip += 1;
                } else if line.is("}") {
                    self.skip -= 1;
                }
                if line.is("}") && self.skip == 0 && self.level_depth > 0 {
                    skipped = true;
                    break;
                }
                continue;
            }
            if need_bob {
                need_bob = false;
                if line.is("{") && self.level_depth > 0 {
                    continue;
                }
                self.warn("Missing '{' at beginning of configuration block");
            } else if line.is("{") {
                self.warn("Unexpected '{' - ignoring");
                continue;
            }
            if line.is("}") && self.level_depth > 0 {
                break;
            }
            match self.keyword(level, line) {
                Kw::Unknown => self.warn(format!("Unknown keyword '{first}'")),
                Kw::Simple => {}
                Kw::Skip => self.skip = -1,
                Kw::Values => {
                    let values = self.value_block();
                    self.values(level, line, values);
                }
                Kw::Block(sub) => {
                    self.level_depth += 1;
                    let was_skipped = self.stream(sub, true);
                    self.level_depth -= 1;
                    if !was_skipped {
                        self.close(sub);
                    }
                }
            }
        }
        skipped
    }

    /// `alloc_value_block`: the lines of a `{ … }` block (nested braces kept).
    fn value_block(&mut self) -> Vec<Line> {
        let mut out = Vec::new();
        let mut need_bob = true;
        let mut depth = 0usize;
        while self.pos < self.lines.len() {
            let line = &self.lines[self.pos];
            self.pos += 1;
            if need_bob {
                need_bob = false;
                if line.is("{") {
                    continue;
                }
            }
            if line.is("}") {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else if line.is("{") {
                depth += 1;
            }
            out.push(line.clone());
        }
        out
    }

    fn vs(&mut self) -> Option<&mut VirtualServer> {
        self.cfg.services.last_mut()
    }
    fn rs(&mut self) -> Option<&mut RealServer> {
        self.cfg.services.last_mut()?.real_servers.last_mut()
    }
    fn checker(&mut self) -> Option<&mut Checker> {
        self.rs()?.checkers.last_mut()
    }
    fn url(&mut self) -> Option<&mut Url> {
        match self.checker().map(|c| &mut c.kind) {
            Some(CheckKind::Http { urls, .. }) => urls.last_mut(),
            _ => None,
        }
    }

    fn keyword(&mut self, level: Level, line: &Line) -> Kw {
        let w = &line.words;
        let kw = w[0].as_str();
        let arg = w.get(1).map(String::as_str);
        match level {
            Level::Root => match kw {
                "global_defs" => Kw::Block(Level::Global),
                "SSL" => Kw::Block(Level::Ssl),
                "virtual_server_group" => {
                    if w.len() < 2 {
                        self.warn("virtual_server_group missing name");
                        return Kw::Skip;
                    }
                    Kw::Values
                }
                "virtual_server" => {
                    self.alloc_vs(line);
                    Kw::Block(Level::Vs)
                }
                k if SKIPPED_ROOT.contains(&k) => Kw::Skip,
                _ => Kw::Unknown,
            },
            Level::Global => match kw {
                "router_id" => {
                    match arg {
                        Some(a) => self.cfg.router_id = Some(a.to_string()),
                        None => self.warn("router_id missing"),
                    }
                    Kw::Simple
                }
                "lvs_flush" => {
                    self.cfg.lvs_flush = true;
                    Kw::Simple
                }
                "lvs_timeouts" => {
                    self.lvs_timeouts(w);
                    Kw::Simple
                }
                "notification_email" | "vrrp_iptables" | "vrrp_ipsets" | "nftables" => {
                    if kw == "notification_email" {
                        Kw::Values
                    } else {
                        Kw::Simple
                    }
                }
                k if GLOBAL_KEYWORDS.contains(&k) => Kw::Simple,
                _ => Kw::Unknown,
            },
            Level::Ssl => match kw {
                "password" | "ca" | "certificate" | "key" => Kw::Simple,
                _ => Kw::Unknown,
            },
            Level::Vs => self.vs_keyword(line),
            Level::Rs => self.rs_keyword(line),
            Level::Checker | Level::CheckerHost => self.checker_keyword(level, line),
            Level::Url => self.url_keyword(line),
        }
    }

    fn values(&mut self, level: Level, line: &Line, values: Vec<Line>) {
        if level == Level::Root && line.words[0] == "virtual_server_group" {
            let name = line.words[1].clone();
            let mut entries = Vec::new();
            for v in &values {
                self.cur = Some((v.file.clone(), v.line));
                if let Some(e) = self.vsg_entry(&name, &v.words) {
                    entries.push(e);
                }
            }
            self.cur = Some((line.file.clone(), line.line));
            if entries.is_empty() {
                self.warn(format!("virtual server group {name} has no entries - removing"));
                return;
            }
            self.cfg.groups.retain(|(n, _)| *n != name);
            self.cfg.groups.push((name, entries));
        }
    }

    /// `alloc_vsg_entry`.
    fn vsg_entry(&mut self, gname: &str, w: &[String]) -> Option<GroupEntry> {
        if w[0] == "fwmark" {
            let Some(mark) = w.get(1).and_then(|m| read_unsigned(m, 0, u32::MAX as u64)) else {
                self.warn(format!(
                    "({gname}): fwmark '{}' must be in [0, {}] - ignoring",
                    w.get(1).map(String::as_str).unwrap_or(""),
                    u32::MAX
                ));
                return None;
            };
            let ipv6 = match w.get(2).map(String::as_str) {
                None => None,
                Some("inet") => Some(false),
                Some("inet6") => Some(true),
                Some(f) => {
                    self.warn(format!("({gname}): fwmark '{mark}' family {f} unknown - ignoring"));
                    return None;
                }
            };
            return Some(GroupEntry::Fwmark {
                mark: mark as u32,
                ipv6,
            });
        }
        let addr = w[0].as_str();
        let port_s = w.get(1).map(String::as_str);
        let port = match port_s {
            None => 0,
            Some(p) if p.bytes().all(|b| b == b'0') => 0,
            Some(p) => match read_unsigned(p, 1, 65535) {
                Some(p) => p as u16,
                None => {
                    self.warn(format!(
                        "Invalid virtual server group IP address {addr} /port/{p} - skipping"
                    ));
                    return None;
                }
            },
        };
        let bad = |s: &mut Self| {
            s.warn(format!("Invalid virtual server group IP address {addr} - skipping"));
            None
        };
        if let Some((ip, mask)) = addr.split_once('/') {
            let Ok(ip) = ip.parse::<IpAddr>() else { return bad(self) };
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            let Some(mask) = read_unsigned(mask, 1, bits) else {
                self.warn(format!("Invalid netmask - {addr} - skipping"));
                return None;
            };
            let (first, last) = match ip {
                IpAddr::V4(a) => {
                    let host = if mask == 32 { 0 } else { u32::MAX >> mask };
                    let v = u32::from(a);
                    if v & host != 0 {
                        self.warn(format!("Address mask bits not empty - {addr} - skipping"));
                        return None;
                    }
                    (ip, IpAddr::from(std::net::Ipv4Addr::from(v | host)))
                }
                IpAddr::V6(a) => {
                    let host = if mask == 128 { 0 } else { u128::MAX >> mask };
                    let v = u128::from(a);
                    if v & host != 0 {
                        self.warn(format!("Address mask bits not empty - {addr} - skipping"));
                        return None;
                    }
                    (ip, IpAddr::from(std::net::Ipv6Addr::from(v | host)))
                }
            };
            return Some(GroupEntry::Range { first, last, port });
        }
        // `A-B` where B is the last octet (IPv4) or last 16-bit group (IPv6), or a full
        // end address.
        if let Some((start, end)) = addr.split_once('-') {
            let Ok(first) = start.parse::<IpAddr>() else {
                return bad(self);
            };
            let last = if (first.is_ipv4() && end.contains('.')) || (first.is_ipv6() && end.contains(':')) {
                match end.parse::<IpAddr>() {
                    Ok(l) if l.is_ipv4() == first.is_ipv4() => {
                        let less = match (first, l) {
                            (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) > u32::from(b),
                            (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) > u128::from(b),
                            _ => true,
                        };
                        if less {
                            self.warn(format!(
                                "Address range end is less than address range start - {addr} - skipping"
                            ));
                            return None;
                        }
                        l
                    }
                    Ok(_) => {
                        self.warn(format!("Range address families do not match {addr} - skipping"));
                        return None;
                    }
                    Err(_) => {
                        self.warn(format!("Invalid range end {addr} - skipping"));
                        return None;
                    }
                }
            } else {
                let (lim, radix) = if first.is_ipv4() { (255, 10) } else { (0xffff, 16) };
                let Some(r) = u32::from_str_radix(end, radix).ok().filter(|&r| r <= lim) else {
                    return bad(self);
                };
                let (start_v, last) = match first {
                    IpAddr::V4(a) => {
                        let v = u32::from(a);
                        (v & 0xff, IpAddr::from(std::net::Ipv4Addr::from((v & !0xff) | r)))
                    }
                    IpAddr::V6(a) => {
                        let v = u128::from(a);
                        (
                            (v & 0xffff) as u32,
                            IpAddr::from(std::net::Ipv6Addr::from((v & !0xffff) | r as u128)),
                        )
                    }
                };
                if start_v >= r {
                    self.warn(format!(
                        "Address range end is not greater than address range start - {addr} - skipping"
                    ));
                    return None;
                }
                last
            };
            return Some(GroupEntry::Range { first, last, port });
        }
        let Ok(ip) = addr.parse::<IpAddr>() else {
            return bad(self);
        };
        Some(GroupEntry::Range {
            first: ip,
            last: ip,
            port,
        })
    }

    fn lvs_timeouts(&mut self, w: &[String]) {
        if w.len() < 3 {
            self.warn("lvs_timeouts requires at least one option");
            return;
        }
        let mut t = self.cfg.lvs_timeouts.unwrap_or((0, 0, 0));
        let mut i = 1;
        while i < w.len() {
            let which = w[i].as_str();
            if matches!(which, "tcp" | "tcpfin" | "udp") {
                if i == w.len() - 1 {
                    self.warn(format!("No value specified for lvs_timeout {which} - ignoring"));
                    i += 1;
                    continue;
                }
                match read_unsigned(&w[i + 1], 0, LVS_MAX_TIMEOUT as u64) {
                    Some(v) => match which {
                        "tcp" => t.0 = v as u32,
                        "tcpfin" => t.1 = v as u32,
                        _ => t.2 = v as u32,
                    },
                    None => self.warn(format!("Invalid lvs_timeout {which} ({}) - ignoring", w[i + 1])),
                }
                i += 2;
                continue;
            }
            self.warn(format!("Unknown option {which} specified for lvs_timeouts"));
            i += 1;
        }
        self.cfg.lvs_timeouts = Some(t);
    }

    /// `alloc_vs`.
    fn alloc_vs(&mut self, line: &Line) {
        let w = &line.words;
        let p1 = w.get(1).map(String::as_str).unwrap_or("");
        let p2 = w.get(2).map(String::as_str);
        let addr = match p1 {
            "group" => VsAddr::Group(p2.unwrap_or("").to_string()),
            "fwmark" => match p2.and_then(|m| read_unsigned(m, 0, u32::MAX as u64)) {
                Some(m) => VsAddr::Fwmark(m as u32),
                None => {
                    self.warn(format!(
                        "virtual server fwmark '{}' must be in [0, {}] - ignoring",
                        p2.unwrap_or(""),
                        u32::MAX
                    ));
                    self.skip = -1;
                    return;
                }
            },
            _ => match parse_addr(p1, p2) {
                Some((a, p)) => VsAddr::Inet(a, p),
                None => {
                    let port = p2.filter(|p| !p.bytes().all(|b| b == b'0'));
                    self.warn(format!(
                        "Invalid virtual server IP address{} {p1}{}{} - skipping",
                        if port.is_some() { "/port" } else { "" },
                        if port.is_some() { "/" } else { "" },
                        port.unwrap_or("")
                    ));
                    self.skip = -1;
                    return;
                }
            },
        };
        let ipv6 = match &addr {
            VsAddr::Inet(a, _) => Some(a.is_ipv6()),
            _ => None,
        };
        self.cfg.services.push(VirtualServer {
            addr,
            file: line.file.clone(),
            line: line.line,
            ipv6,
            protocol: None,
            scheduler: String::new(),
            flags: 0,
            method: None,
            persistence_timeout: 0,
            granularity: None,
            pe: None,
            delay_loop: 60 * SEC,
            connect_timeout: 5 * SEC,
            retry: None,
            delay_before_retry: None,
            warmup: None,
            inhibit: false,
            alpha: false,
            omega: false,
            ha_suspend: false,
            virtualhost: None,
            weight: 1,
            quorum: 1,
            hysteresis: 0,
            quorum_up: None,
            quorum_down: None,
            sorry: None,
            real_servers: Vec::new(),
        });
    }

    /// `svr_forwarding_handler`.
    fn forwarding(&mut self, w: &[String], cur: Option<Method>, s_type: &str) -> Option<Method> {
        let method = match w.get(1).map(String::as_str) {
            Some("NAT") => ForwardMethod::Masq,
            Some("DR") => ForwardMethod::Route,
            Some("TUN") => ForwardMethod::Tunnel,
            other => {
                self.warn(format!(
                    "PARSER : unknown [{}] routing method for {s_type} server.",
                    other.unwrap_or("")
                ));
                return None;
            }
        };
        let base = cur.unwrap_or(Method::of(method));
        let mut m = Method {
            method,
            tun_type: base.tun_type,
            tun_port: 0,
            tun_csum: TunnelCsum::NoCsum,
        };
        m.tun_type = TunnelType::Ipip;
        let mut port = 0u16;
        let mut i = 2;
        while i < w.len() {
            match w[i].as_str() {
                "type" => {
                    let Some(t) = w.get(i + 1) else {
                        self.warn(format!("Missing tunnel type for {s_type} server."));
                        return None;
                    };
                    m.tun_type = match t.as_str() {
                        "ipip" => TunnelType::Ipip,
                        "gue" => TunnelType::Gue,
                        "gre" => TunnelType::Gre,
                        _ => {
                            self.warn(format!("Unknown tunnel type {t} for {s_type} server."));
                            return None;
                        }
                    };
                    i += 1;
                }
                "port" => {
                    let Some(p) = w.get(i + 1) else {
                        self.warn(format!("Missing port for {s_type} server gue tunnel."));
                        return None;
                    };
                    match read_unsigned(p, 1, 65535) {
                        Some(p) => port = p as u16,
                        None => {
                            self.warn(format!("Invalid gue tunnel port {p} for {s_type} server."));
                            return None;
                        }
                    }
                    i += 1;
                }
                "nocsum" => m.tun_csum = TunnelCsum::NoCsum,
                "csum" => m.tun_csum = TunnelCsum::Csum,
                "remcsum" => m.tun_csum = TunnelCsum::RemCsum,
                o => {
                    self.warn(format!("Invalid tunnel option {o} for {s_type} server."));
                    return None;
                }
            }
            i += 1;
        }
        if (m.tun_type == TunnelType::Gue) != (port != 0) {
            self.warn("gue tunnels require port, otherwise cannot have port.");
            return None;
        }
        if m.tun_type == TunnelType::Ipip && m.tun_csum != TunnelCsum::NoCsum {
            self.warn("ipip tunnels do not support checksum option.");
            return None;
        }
        if m.tun_type == TunnelType::Gre && m.tun_csum == TunnelCsum::RemCsum {
            self.warn("gre tunnels do not support remote checksum option.");
            return None;
        }
        m.tun_port = port;
        Some(m)
    }

    fn vs_keyword(&mut self, line: &Line) -> Kw {
        let w = &line.words;
        let kw = w[0].as_str();
        let arg = w.get(1).cloned().unwrap_or_default();
        if self.vs().is_none() {
            return Kw::Simple;
        }
        match kw {
            "ip_family" => {
                let v6 = match arg.as_str() {
                    "inet" => false,
                    "inet6" => true,
                    _ => {
                        self.warn(format!("unknown address family {arg}"));
                        return Kw::Simple;
                    }
                };
                let vs = self.vs().unwrap();
                if vs.ipv6.is_some_and(|c| c != v6) {
                    self.warn(format!(
                        "Virtual server specified family {arg} conflicts with server family"
                    ));
                } else {
                    vs.ipv6 = Some(v6);
                }
            }
            "retry" => match read_unsigned(&arg, 1, u32::MAX as u64) {
                Some(r) => self.vs().unwrap().retry = Some(r as u32),
                None => self.warn(format!("retry value invalid - {arg}")),
            },
            "delay_before_retry" => match read_timer(&arg, 0, u64::MAX) {
                Some(t) => self.vs().unwrap().delay_before_retry = Some(t),
                None => self.warn(format!("virtual server delay before retry '{arg}' invalid - ignoring")),
            },
            "warmup" => match read_timer(&arg, 0, u64::MAX) {
                Some(t) => self.vs().unwrap().warmup = Some(t),
                None => self.warn(format!("virtual server warmup '{arg}' invalid - ignoring")),
            },
            "connect_timeout" => match read_timer(&arg, 1, u32::MAX as u64) {
                Some(t) => self.vs().unwrap().connect_timeout = t,
                None => self.warn(format!("virtual server connect_timeout {arg} invalid - ignoring")),
            },
            "delay_loop" => match read_timer(&arg, 1, u64::MAX) {
                Some(t) => self.vs().unwrap().delay_loop = t,
                None => self.warn(format!("virtual server delay loop '{arg}' invalid - ignoring")),
            },
            "inhibit_on_failure" => self.vs().unwrap().inhibit = true,
            "lb_algo" | "lvs_sched" => {
                if SCHEDULERS.contains(&arg.as_str()) {
                    self.vs().unwrap().scheduler = arg;
                } else {
                    self.warn(format!("Invalid lvs_scheduler '{arg}' - ignoring"));
                }
            }
            "hashed" => {}
            "ops" | "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" => {
                use crate::service::svc_flags::*;
                let sched = self.vs().unwrap().scheduler.clone();
                let bit = match kw {
                    "ops" => Some(ONEPACKET),
                    "flag-1" => Some(SCHED1),
                    "flag-2" => Some(SCHED2),
                    "flag-3" => Some(SCHED3),
                    "sh-port" if sched == "sh" => Some(SCHED2),
                    "sh-fallback" if sched == "sh" => Some(SCHED1),
                    "mh-port" if sched == "mh" => Some(SCHED2),
                    "mh-fallback" if sched == "mh" => Some(SCHED1),
                    _ if sched == "sh" || sched == "mh" => Some(0),
                    _ => None,
                };
                match bit {
                    Some(b) => self.vs().unwrap().flags |= b,
                    None => self.warn(format!("{kw} only applies to sh scheduler - ignoring")),
                }
            }
            "lb_kind" | "lvs_method" => {
                let cur = self.vs().unwrap().method;
                if let Some(m) = self.forwarding(w, cur, "virtual") {
                    self.vs().unwrap().method = Some(m);
                }
            }
            "persistence_engine" => {
                if arg.is_empty() {
                    self.warn("persistence_engine missing");
                } else {
                    self.vs().unwrap().pe = Some(arg);
                }
            }
            "persistence_timeout" => {
                if w.len() < 2 {
                    self.vs().unwrap().persistence_timeout = PERSISTENT_TIMEOUT;
                } else {
                    match read_unsigned(&arg, 1, LVS_MAX_TIMEOUT as u64) {
                        Some(t) => self.vs().unwrap().persistence_timeout = t as u32,
                        None => self.warn("persistence_timeout invalid"),
                    }
                }
            }
            "persistence_granularity" => self.granularity(&arg),
            "protocol" => match arg.to_ascii_uppercase().as_str() {
                "TCP" => self.vs().unwrap().protocol = Some(Protocol::Tcp),
                "UDP" => self.vs().unwrap().protocol = Some(Protocol::Udp),
                "SCTP" => self.vs().unwrap().protocol = Some(Protocol::Sctp),
                _ => self.warn(format!("Unknown protocol {arg} - ignoring")),
            },
            "ha_suspend" => self.vs().unwrap().ha_suspend = true,
            "smtp_alert" => {
                if w.len() >= 2 && true_false(&arg).is_none() {
                    self.warn(format!("Invalid virtual_server smtp_alert parameter {arg}"));
                }
            }
            "virtualhost" => {
                if w.len() < 2 {
                    self.warn("virtual server virtualhost missing");
                } else {
                    self.vs().unwrap().virtualhost = Some(arg);
                }
            }
            "snmp_name" => {}
            // keepalived 1.x's `nat_mask` (never used by IPVS): keepalived 2.2 reports it
            // as an unknown keyword; uvs says what it is.
            "nat_mask" => self.warn("nat_mask is obsolete (keepalived 1.x) and has no effect - ignoring"),
            "alpha" => self.vs().unwrap().alpha = true,
            "omega" => self.vs().unwrap().omega = true,
            "quorum_up" | "quorum_down" => {
                let s = script(w);
                let vs = self.vs().unwrap();
                let slot = if kw == "quorum_up" {
                    &mut vs.quorum_up
                } else {
                    &mut vs.quorum_down
                };
                if slot.is_some() {
                    self.warn(format!("(None) {kw} script already specified - ignoring {arg}"));
                } else {
                    *slot = s;
                }
            }
            "quorum" => match read_unsigned(&arg, 1, u32::MAX as u64) {
                Some(q) => self.vs().unwrap().quorum = q as u32,
                None => {
                    self.warn(format!("Quorum {arg} must be in [1, {}]. Setting to 1.", u32::MAX));
                    self.vs().unwrap().quorum = 1;
                }
            },
            "hysteresis" => match read_unsigned(&arg, 0, u32::MAX as u64) {
                Some(h) => self.vs().unwrap().hysteresis = h as u32,
                None => self.warn(format!("Hysteresis {arg} must be in [0, {}] - ignoring", u32::MAX)),
            },
            "weight" => match read_unsigned(&arg, 1, WEIGHT_LIMIT as u64) {
                Some(v) => self.vs().unwrap().weight = v as u32,
                None => self.warn(format!("Virtual server weight {arg} is outside range 1-{WEIGHT_LIMIT}")),
            },
            "sorry_server" => {
                let port = w.get(2).map(String::as_str);
                match parse_addr(&arg, port) {
                    Some((a, p)) => {
                        let rs = new_rs(a, p, line);
                        let vs = self.vs().unwrap();
                        let mut rs = rs;
                        rs.method = vs.method;
                        rs.weight = Some(1);
                        vs.sorry = Some(rs);
                    }
                    None => self.warn(format!("Invalid sorry server IP address {arg} - skipping")),
                }
            }
            "sorry_server_inhibit" => match self.vs().unwrap().sorry.as_mut() {
                Some(s) => s.inhibit = Some(true),
                None => self.warn("Ignoring sorry_server inhibit used before or without sorry_server"),
            },
            "sorry_server_lvs_method" => {
                if self.vs().unwrap().sorry.is_none() {
                    self.warn("sorry_server forwarding used without sorry_server");
                } else if let Some(m) = self.forwarding(w, None, "sorry") {
                    self.vs().unwrap().sorry.as_mut().unwrap().method = Some(m);
                }
            }
            "real_server" => {
                let port = w.get(2).map(String::as_str);
                match parse_addr(&arg, port) {
                    Some((a, p)) => {
                        let rs = new_rs(a, p, line);
                        self.vs().unwrap().real_servers.push(rs);
                    }
                    None => {
                        self.warn(format!(
                            "Invalid real server ip address/port {arg}/{} - skipping",
                            port.unwrap_or("(null)")
                        ));
                        self.skip = -1;
                    }
                }
                return Kw::Block(Level::Rs);
            }
            _ => return Kw::Unknown,
        }
        Kw::Simple
    }

    fn granularity(&mut self, arg: &str) {
        use crate::service::Netmask;
        let vs_v6 = self.vs().unwrap().ipv6;
        let g =
            if vs_v6 == Some(true) || (!arg.contains('.') && vs_v6.is_none() && read_unsigned(arg, 1, 128).is_some()) {
                match read_unsigned(arg, 1, 128) {
                    Some(p) => Some((Netmask::V6Prefix(p as u8), true)),
                    None => {
                        self.warn(format!("Invalid IPv6 persistence_granularity specified - {arg}"));
                        return;
                    }
                }
            } else {
                match arg.parse::<std::net::Ipv4Addr>() {
                    Ok(m) => Some((Netmask::V4(m), false)),
                    Err(_) => {
                        self.warn(format!("Invalid IPv4 persistence_granularity specified - {arg}"));
                        return;
                    }
                }
            };
        if let Some((g, v6)) = g {
            let vs = self.vs().unwrap();
            vs.granularity = Some(g);
            if vs.ipv6.is_none() {
                vs.ipv6 = Some(v6);
            }
            if vs.persistence_timeout == 0 {
                vs.persistence_timeout = PERSISTENT_TIMEOUT;
            }
        }
    }

    fn rs_keyword(&mut self, line: &Line) -> Kw {
        let w = &line.words;
        let kw = w[0].as_str();
        let arg = w.get(1).cloned().unwrap_or_default();
        if self.rs().is_none() {
            return Kw::Simple;
        }
        let bool_arg = |p: &mut Self, what: &str| -> Option<bool> {
            if w.len() < 2 {
                return Some(true);
            }
            let r = true_false(&arg);
            if r.is_none() {
                p.warn(format!("Invalid {what} parameter {arg}"));
            }
            r
        };
        match kw {
            "weight" => match read_unsigned(&arg, 0, WEIGHT_LIMIT as u64) {
                Some(v) => self.rs().unwrap().weight = Some(v as u32),
                None => self.warn(format!("Real server weight {arg} is outside range 0-{WEIGHT_LIMIT}")),
            },
            "lvs_method" => {
                let cur = self.rs().unwrap().method;
                if let Some(m) = self.forwarding(w, cur, "real") {
                    self.rs().unwrap().method = Some(m);
                }
            }
            "uthreshold" | "lthreshold" => match read_unsigned(&arg, 0, u32::MAX as u64) {
                Some(v) => {
                    let rs = self.rs().unwrap();
                    if kw == "uthreshold" {
                        rs.u_threshold = v as u32;
                    } else {
                        rs.l_threshold = v as u32;
                    }
                }
                None => self.warn(format!("Invalid real_server {kw} '{arg}' - ignoring")),
            },
            "inhibit_on_failure" => {
                if let Some(b) = bool_arg(self, "inhibit_on_failure") {
                    self.rs().unwrap().inhibit = Some(b);
                }
            }
            "alpha" => {
                if let Some(b) = bool_arg(self, "alpha") {
                    self.rs().unwrap().alpha = Some(b);
                }
            }
            "notify_up" | "notify_down" => {
                let s = script(w);
                let rs = self.rs().unwrap();
                let slot = if kw == "notify_up" {
                    &mut rs.notify_up
                } else {
                    &mut rs.notify_down
                };
                if slot.is_some() {
                    self.warn(format!("(None) {kw} script already specified - ignoring {arg}"));
                } else {
                    *slot = s;
                }
            }
            "retry" => match read_unsigned(&arg, 1, u32::MAX as u64) {
                Some(r) => self.rs().unwrap().retry = Some(r as u32),
                None => self.warn(format!("retry value invalid - {arg}")),
            },
            "delay_before_retry" => match read_timer(&arg, 0, u64::MAX) {
                Some(t) => self.rs().unwrap().delay_before_retry = Some(t),
                None => self.warn(format!("real server delay_before_retry '{arg}' invalid - ignoring")),
            },
            "warmup" => match read_timer(&arg, 0, u64::MAX) {
                Some(t) => self.rs().unwrap().warmup = Some(t),
                None => self.warn(format!("real server warmup '{arg}' invalid - ignoring")),
            },
            "connect_timeout" => match read_timer(&arg, 1, u32::MAX as u64) {
                Some(t) => self.rs().unwrap().connect_timeout = Some(t),
                None => self.warn(format!("real server connect_timeout {arg} invalid - ignoring")),
            },
            "delay_loop" => match read_timer(&arg, 1, u64::MAX) {
                Some(t) => self.rs().unwrap().delay_loop = Some(t),
                None => self.warn(format!("real server delay_loop '{arg}' invalid - ignoring")),
            },
            "smtp_alert" => {
                bool_arg(self, "real_server smtp_alert");
            }
            "virtualhost" => {
                if w.len() < 2 {
                    self.warn("real server virtualhost missing");
                } else {
                    self.rs().unwrap().virtualhost = Some(arg);
                }
            }
            "snmp_name" => {}
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" | "SMTP_CHECK" | "DNS_CHECK" | "UDP_CHECK"
            | "PING_CHECK" | "FILE_CHECK" | "BFD_CHECK" => {
                let kind = match kw {
                    "TCP_CHECK" => CheckKind::Tcp,
                    "HTTP_GET" | "SSL_GET" => CheckKind::Http {
                        ssl: kw == "SSL_GET",
                        urls: Vec::new(),
                        protocol: "1.0".into(),
                        virtualhost: None,
                        enable_sni: false,
                    },
                    "UDP_CHECK" => CheckKind::Udp(UdpCheck {
                        max_reply_len: u8::MAX as u16,
                        ..UdpCheck::default()
                    }),
                    "DNS_CHECK" => CheckKind::Dns {
                        qtype: 6,
                        name: String::new(),
                    },
                    "PING_CHECK" => CheckKind::Ping,
                    // check_smtp.h SMTP_DEFAULT_HELO.
                    "SMTP_CHECK" => CheckKind::Smtp {
                        helo_name: "smtpchecker.keepalived.org".into(),
                    },
                    "MISC_CHECK" => CheckKind::Misc {
                        script: None,
                        timeout: None,
                        dynamic: false,
                    },
                    o => CheckKind::Other(o.to_string()),
                };
                self.rs().unwrap().checkers.push(Checker {
                    kind,
                    file: line.file.clone(),
                    line: line.line,
                    connect_ip: None,
                    connect_port: None,
                    bindto: None,
                    bind_port: None,
                    bind_if: None,
                    fwmark: None,
                    connect_timeout: None,
                    retry: None,
                    delay_before_retry: None,
                    warmup: None,
                    delay_loop: None,
                    alpha: None,
                    log_all_failures: false,
                    note: None,
                });
                self.smtp_hosts.clear();
                return Kw::Block(Level::Checker);
            }
            _ => return Kw::Unknown,
        }
        Kw::Simple
    }

    fn checker_keyword(&mut self, level: Level, line: &Line) -> Kw {
        let w = &line.words;
        let kw = w[0].as_str();
        let arg = w.get(1).cloned().unwrap_or_default();
        let Some(c) = self.checker() else { return Kw::Simple };
        let kind = match &c.kind {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http { .. } => "HTTP_GET",
            CheckKind::Misc { .. } => "MISC_CHECK",
            CheckKind::Udp(_) => "UDP_CHECK",
            CheckKind::Dns { .. } => "DNS_CHECK",
            CheckKind::Ping => "PING_CHECK",
            CheckKind::Smtp { .. } => "SMTP_CHECK",
            CheckKind::Other(o) => match o.as_str() {
                "FILE_CHECK" => "FILE_CHECK",
                _ => "BFD_CHECK",
            },
        };
        let connection = !matches!(kind, "MISC_CHECK" | "FILE_CHECK" | "BFD_CHECK");
        let common = !matches!(kind, "FILE_CHECK" | "BFD_CHECK");
        if level == Level::CheckerHost && !(connection && common) {
            return Kw::Unknown;
        }
        match kw {
            "connect_ip" if connection => match arg.parse::<IpAddr>() {
                Ok(a) => self.checker().unwrap().connect_ip = Some(a),
                Err(_) => self.warn(format!("Invalid connect_ip address {arg} - ignoring")),
            },
            "connect_port" if connection => match read_unsigned(&arg, 1, 65535) {
                Some(p) => self.checker().unwrap().connect_port = Some(p as u16),
                None => self.warn(format!("Invalid checker connect_port '{arg}'")),
            },
            "bindto" if connection => match arg.parse::<IpAddr>() {
                Ok(a) => self.checker().unwrap().bindto = Some(a),
                Err(_) => self.warn(format!("Invalid bindto address {arg} - ignoring")),
            },
            "bind_port" if connection => match read_unsigned(&arg, 1, 65535) {
                Some(p) => self.checker().unwrap().bind_port = Some(p as u16),
                None => self.warn(format!("Invalid checker bind_port '{arg}'")),
            },
            "bind_if" if connection => self.checker().unwrap().bind_if = Some(arg),
            "fwmark" if connection => match read_unsigned(&arg, 0, u32::MAX as u64) {
                Some(m) => self.checker().unwrap().fwmark = Some(m as u32),
                None => self.warn(format!("Invalid fwmark connection value '{arg}'")),
            },
            "connect_timeout" if connection => match read_timer(&arg, 1, u32::MAX as u64) {
                Some(t) => self.checker().unwrap().connect_timeout = Some(t),
                None => self.warn(format!("connect_timeout {arg} invalid - ignoring")),
            },
            "retry" if common => match read_unsigned(&arg, 0, u32::MAX as u64) {
                Some(r) => self.checker().unwrap().retry = Some(r as u32),
                None => self.warn(format!("Invalid retry connection value '{arg}'")),
            },
            "delay_before_retry" if common => match read_timer(&arg, 0, u64::MAX) {
                Some(t) => self.checker().unwrap().delay_before_retry = Some(t),
                None => self.warn(format!("Invalid delay_before_retry connection value '{arg}'")),
            },
            "warmup" if common => match read_timer(&arg, 0, u64::MAX) {
                Some(t) => self.checker().unwrap().warmup = Some(t),
                None => self.warn(format!("Invalid warmup connection value '{arg}'")),
            },
            "delay_loop" if common => match read_timer(&arg, 1, u64::MAX) {
                Some(t) => self.checker().unwrap().delay_loop = Some(t),
                None => self.warn(format!("delay_loop '{arg}' is invalid - ignoring")),
            },
            "alpha" if common => {
                let v = if w.len() < 2 { Some(true) } else { true_false(&arg) };
                match v {
                    Some(b) => self.checker().unwrap().alpha = Some(b),
                    None => self.warn(format!("Invalid alpha parameter {arg}")),
                }
            }
            "log_all_failures" if common => self.checker().unwrap().log_all_failures = true,
            // The deprecated HTTP_GET/SSL_GET spelling. keepalived 2.2 knows it only
            // there; uvs also takes it in TCP_CHECK (the seed's keepalived 1.2 config
            // has it there), with the same deprecation warning, where keepalived 2.2
            // reports an unknown keyword and keeps retry at its default.
            "nb_get_retry" if level == Level::Checker && common => {
                self.warn("nb_get_retry is deprecated - please use 'retry'");
                match read_unsigned(&arg, 0, u32::MAX as u64) {
                    Some(r) => self.checker().unwrap().retry = Some(r as u32),
                    None => self.warn(format!("Invalid nb_get_retry value '{arg}'")),
                }
            }
            // A `host` block has the common keywords only.
            _ if level == Level::CheckerHost => return Kw::Unknown,
            _ => return self.checker_specific(kind, line),
        }
        Kw::Simple
    }

    fn checker_specific(&mut self, kind: &str, line: &Line) -> Kw {
        let w = &line.words;
        let kw = w[0].as_str();
        let arg = w.get(1).cloned().unwrap_or_default();
        match (kind, kw) {
            ("HTTP_GET", "virtualhost") => {
                if w.len() < 2 {
                    self.warn("HTTP_GET virtualhost name missing");
                } else if let Some(CheckKind::Http { virtualhost, .. }) = self.checker().map(|c| &mut c.kind) {
                    *virtualhost = Some(arg);
                }
            }
            ("HTTP_GET", "http_protocol") => {
                if w.len() < 2 {
                    self.warn("Missing http_protocol version");
                } else if matches!(arg.as_str(), "1.0" | "1.0C" | "1.0c" | "1.1") {
                    if let Some(CheckKind::Http { protocol, .. }) = self.checker().map(|c| &mut c.kind) {
                        *protocol = arg.to_ascii_uppercase();
                    }
                } else {
                    self.warn(format!("Invalid http_protocol version {arg}"));
                }
            }
            ("HTTP_GET", "enable_sni") | ("HTTP_GET", "fast_recovery") => {
                let v = if w.len() >= 2 { true_false(&arg) } else { Some(true) };
                match v {
                    None => self.warn(format!("Invalid {kw} parameter {arg}")),
                    Some(b) if kw == "enable_sni" => {
                        if let Some(CheckKind::Http { enable_sni, .. }) = self.checker().map(|c| &mut c.kind) {
                            *enable_sni = b;
                        }
                    }
                    Some(_) => {}
                }
            }
            ("HTTP_GET", "url") => {
                if let Some(CheckKind::Http { urls, .. }) = self.checker().map(|c| &mut c.kind) {
                    urls.push(Url::default());
                }
                return Kw::Block(Level::Url);
            }
            ("MISC_CHECK", "misc_path") => {
                let s = script(w);
                if let Some(CheckKind::Misc { script, .. }) = self.checker().map(|c| &mut c.kind) {
                    *script = s;
                }
            }
            ("MISC_CHECK", "misc_timeout") => match read_timer(&arg, 0, u64::MAX) {
                Some(t) => {
                    if let Some(CheckKind::Misc { timeout, .. }) = self.checker().map(|c| &mut c.kind) {
                        *timeout = Some(t);
                    }
                }
                None => self.warn(format!("Invalid misc_timeout value '{arg}'")),
            },
            ("MISC_CHECK", "misc_dynamic") => {
                if let Some(CheckKind::Misc { dynamic, .. }) = self.checker().map(|c| &mut c.kind) {
                    *dynamic = true;
                }
            }
            ("MISC_CHECK", "user") => {
                if w.len() < 2 {
                    self.warn("No user specified for misc checker script");
                } else if let Some(CheckKind::Misc { script: Some(s), .. }) = self.checker().map(|c| &mut c.kind) {
                    s.user = Some(arg);
                    s.group = w.get(2).cloned();
                }
            }
            ("SMTP_CHECK", "helo_name") => {
                if w.len() < 2 {
                    self.warn("SMTP_CHECK helo name missing");
                } else if let Some(CheckKind::Smtp { helo_name }) = self.checker().map(|c| &mut c.kind) {
                    *helo_name = arg;
                }
            }
            // check_smtp.c `smtp_host_handler`: the block's connection options start
            // empty (the real server's address) and belong to a checker of their own.
            ("SMTP_CHECK", "host") => {
                let c = self.checker().unwrap();
                let saved = c.take_conn_opts();
                self.smtp_saved_co = Some(saved);
                return Kw::Block(Level::CheckerHost);
            }
            ("DNS_CHECK", "type") => match dns_type(&arg) {
                Some(t) => {
                    if let Some(CheckKind::Dns { qtype, .. }) = self.checker().map(|c| &mut c.kind) {
                        *qtype = t;
                    }
                }
                None => self.warn(format!("Unknown DNS check type {arg} - ignoring")),
            },
            ("DNS_CHECK", "name") => {
                // dns_name_handler: no empty label.
                let empty_label = (arg.starts_with('.') && arg != ".") || arg.contains("..");
                let set =
                    matches!(self.checker().map(|c| &c.kind), Some(CheckKind::Dns { name, .. }) if !name.is_empty());
                if set {
                    self.warn("DNS_CHECK name already specified - ignoring");
                } else if empty_label {
                    self.warn(format!("DNS_CHECK name '{arg}' has empty label - ignoring"));
                } else if let Some(CheckKind::Dns { name, .. }) = self.checker().map(|c| &mut c.kind) {
                    *name = arg;
                }
            }
            ("UDP_CHECK", "payload") => {
                if w.len() < 2 {
                    self.warn("UDP_CHECK payload requires a payload");
                } else {
                    match read_hex_str(&w[1..].join(" "), false) {
                        Some((d, _)) => {
                            if let Some(CheckKind::Udp(u)) = self.checker().map(|c| &mut c.kind) {
                                u.payload = d;
                            }
                        }
                        None => self.warn("Invalid hex string for UDP_CHECK payload"),
                    }
                }
            }
            ("UDP_CHECK", "require_reply") => {
                let reply = (w.len() >= 2).then(|| read_hex_str(&w[1..].join(" "), true));
                if let Some(CheckKind::Udp(u)) = self.checker().map(|c| &mut c.kind) {
                    u.require_reply = true;
                    if let Some(Some((d, m))) = &reply {
                        u.reply = d.clone();
                        u.reply_mask = m.clone();
                    }
                }
                if let Some(None) = reply {
                    self.warn("Invalid hex string for UDP_CHECK reply");
                }
            }
            ("UDP_CHECK", "min_reply_length" | "max_reply_length") => match read_unsigned(&arg, 0, u16::MAX as u64) {
                Some(n) => {
                    if let Some(CheckKind::Udp(u)) = self.checker().map(|c| &mut c.kind) {
                        if kw == "min_reply_length" {
                            u.min_reply_len = n as u16;
                        } else {
                            u.max_reply_len = n as u16;
                        }
                    }
                }
                None => self.warn(format!(
                    "UDP_CHECK {} length {arg} not valid - must be between 0 & {}",
                    if kw == "min_reply_length" { "min" } else { "max" },
                    u16::MAX
                )),
            },
            ("FILE_CHECK", "track_file" | "weight") => {}
            ("BFD_CHECK", "name" | "alpha") => {}
            _ => return Kw::Unknown,
        }
        Kw::Simple
    }

    fn url_keyword(&mut self, line: &Line) -> Kw {
        let w = &line.words;
        let kw = w[0].as_str();
        let arg = w.get(1).cloned().unwrap_or_default();
        match kw {
            "path" => {
                if let Some(u) = self.url() {
                    u.path = arg;
                }
            }
            "digest" => {
                if arg.len() != 32 {
                    self.warn(format!(
                        "digest '{arg}' character length should be 32 rather than {}",
                        arg.len()
                    ));
                    return Kw::Simple;
                }
                let mut d = [0u8; 16];
                // By bytes: a 32-byte argument need not be 32 characters (a str slice
                // inside a multi-byte character panics; found by keepalived_conf_parse).
                let hex = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
                let ab = arg.as_bytes();
                for (i, b) in d.iter_mut().enumerate() {
                    match (hex(ab[2 * i]), hex(ab[2 * i + 1])) {
                        (Some(h), Some(l)) => *b = h << 4 | l,
                        _ => {
                            self.warn(format!(
                                "Unable to interpret hex digit in '{arg}' at offset {}/{}",
                                2 * i,
                                2 * i + 1
                            ));
                            return Kw::Simple;
                        }
                    }
                }
                if let Some(u) = self.url() {
                    if u.digest.is_some() {
                        self.warn(format!("Digest '{arg}' is a duplicate"));
                    }
                    if let Some(u) = self.url() {
                        u.digest = Some(d);
                    }
                }
            }
            "status_code" => {
                let mut ranges = Vec::new();
                for s in &w[1..] {
                    let r = match s.split_once('-') {
                        Some((a, b)) => read_unsigned(a, 100, 599).zip(read_unsigned(b, 100, 599)),
                        None => read_unsigned(s, 100, 599).map(|v| (v, v)),
                    };
                    match r {
                        Some((a, b)) if a <= b => ranges.push((a as u16, b as u16)),
                        _ => self.warn(format!("Invalid HTTP_GET status code '{s}'")),
                    }
                }
                if let Some(u) = self.url() {
                    u.status.extend(ranges);
                }
            }
            "virtualhost" => {
                if w.len() < 2 {
                    self.warn("Missing HTTP_GET virtualhost name");
                } else if let Some(u) = self.url() {
                    u.virtualhost = Some(arg);
                }
            }
            "regex" => {
                if let Some(u) = self.url() {
                    u.regex = Some(arg);
                }
            }
            "regex_no_match" | "regex_options" | "regex_min_offset" | "regex_max_offset" | "regex_stack" => {}
            _ => return Kw::Unknown,
        }
        Kw::Simple
    }

    /// check_smtp.c `smtp_check_end_handler` (2.x): every deprecated `host` block is a
    /// checker of its own. The SMTP_CHECK's own options stay a checker when it set any
    /// connection option or has no `host` block; otherwise the first block takes its
    /// place.
    fn smtp_host_checkers(&mut self) {
        let hosts = std::mem::take(&mut self.smtp_hosts);
        let Some(c) = self.checker() else { return };
        if !matches!(c.kind, CheckKind::Smtp { .. }) || hosts.is_empty() {
            return;
        }
        c.note = Some("The SMTP_CHECK host block is deprecated. Please define additional checkers.".into());
        let own = c.take_conn_opts();
        let own_set = own != ConnOpts::default();
        let mut hosts = hosts.into_iter();
        let first = if own_set { own } else { hosts.next().unwrap_or_default() };
        c.set_conn_opts(first);
        let template = c.clone();
        for h in hosts {
            let mut n = template.clone();
            n.note = None;
            n.set_conn_opts(h);
            self.rs().unwrap().checkers.push(n);
        }
    }

    /// Sub-level close handlers (`sub_close_handler`).
    fn close(&mut self, level: Level) {
        match level {
            Level::CheckerHost => {
                // smtp_host_end_handler: keep the block's options, restore the checker's.
                let saved = self.smtp_saved_co.take().unwrap_or_default();
                if let Some(c) = self.checker() {
                    let host = c.take_conn_opts();
                    c.set_conn_opts(saved);
                    self.smtp_hosts.push(host);
                }
            }
            Level::Url => {
                let dropped = match self.checker().map(|c| &mut c.kind) {
                    Some(CheckKind::Http { urls, .. }) if urls.last().is_some_and(|u| u.path.is_empty()) => {
                        urls.pop();
                        true
                    }
                    _ => false,
                };
                if dropped {
                    self.warn("HTTP/SSL_GET checker url has no path - ignoring");
                }
            }
            Level::Checker => {
                // (message, whether the checker is dropped)
                let diag = match self.checker().map(|c| &c.kind) {
                    Some(CheckKind::Http { urls, .. }) if urls.is_empty() => Some((
                        "HTTP/SSL_GET checker has no urls specified - ignoring".to_string(),
                        true,
                    )),
                    Some(CheckKind::Misc { script: None, .. }) => Some((
                        "No script path has been specified for MISC_CHECKER - skipping".to_string(),
                        true,
                    )),
                    // Kept: keepalived warns and runs it.
                    Some(CheckKind::Udp(u)) if u.min_reply_len > u.max_reply_len => Some((
                        format!(
                            "UDP_CHECK min_reply length {} > max_reply_length {} - will always fail",
                            u.min_reply_len, u.max_reply_len
                        ),
                        false,
                    )),
                    _ => None,
                };
                if let Some((msg, drop)) = diag {
                    self.warn(msg);
                    if drop {
                        self.rs().unwrap().checkers.pop();
                    }
                }
                self.smtp_host_checkers();
            }
            Level::Rs => {
                // rs_end_handler: the address family must match the virtual server's
                // (tunnelled servers may differ).
                let Some(vs) = self.vs() else { return };
                let Some(rs) = vs.real_servers.last() else { return };
                let tunnel = rs.method.is_some_and(|m| m.method == ForwardMethod::Tunnel);
                if !tunnel {
                    let v6 = rs.addr.is_ipv6();
                    match vs.ipv6 {
                        None => vs.ipv6 = Some(v6),
                        Some(f) if f != v6 => {
                            let a = rs.addr;
                            vs.real_servers.pop();
                            self.warn(format!(
                                "Address family of virtual server and real server {a} don't match - skipping real server."
                            ));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// `validate_check_config` and the defaults it resolves.
    pub fn finish(mut self) -> (Config, Vec<Diag>) {
        self.cur = None;
        let mut services = std::mem::take(&mut self.cfg.services);
        let mut kept = Vec::new();
        for mut vs in services.drain(..) {
            if let VsAddr::Group(g) = &vs.addr
                && self.cfg.group(g).is_none()
            {
                self.warn(format!(
                    "Virtual server group {g} specified but not configured - ignoring virtual server [{g}]:0"
                ));
                continue;
            }
            if vs.real_servers.is_empty() {
                self.warn(format!("Virtual server {} has no real servers - ignoring", vs.fmt()));
                continue;
            }
            let group = match &vs.addr {
                VsAddr::Group(g) => self.cfg.group(g).map(<[GroupEntry]>::to_vec),
                _ => None,
            };
            let has_addr = match (&vs.addr, &group) {
                (VsAddr::Inet(..), _) => true,
                (_, Some(g)) => g.iter().any(|e| matches!(e, GroupEntry::Range { .. })),
                _ => false,
            };
            let fwmark_only = match (&vs.addr, &group) {
                (VsAddr::Fwmark(_), _) => true,
                (_, Some(g)) => g.iter().all(|e| matches!(e, GroupEntry::Fwmark { .. })),
                _ => false,
            };
            if vs.ha_suspend
                && (matches!(vs.addr, VsAddr::Fwmark(_))
                    || group
                        .as_ref()
                        .is_some_and(|g| g.iter().any(|e| matches!(e, GroupEntry::Fwmark { .. }))))
            {
                self.warn(format!(
                    "Virtual server {}: cannot use ha_suspend with fwmarks - clearing ha_suspend",
                    vs.fmt()
                ));
                vs.ha_suspend = false;
            }
            if has_addr {
                if vs.protocol.is_none() {
                    self.warn(format!(
                        "Virtual server {}: no protocol set - defaulting to UDP",
                        vs.fmt()
                    ));
                    vs.protocol = Some(Protocol::Udp);
                }
                if vs.flags & crate::service::svc_flags::ONEPACKET != 0 && vs.protocol != Some(Protocol::Udp) {
                    self.warn(format!(
                        "Virtual server {}: one packet scheduling requires UDP - resetting",
                        vs.fmt()
                    ));
                    vs.flags &= !crate::service::svc_flags::ONEPACKET;
                }
                if vs.persistence_timeout == 0 && matches!(vs.addr, VsAddr::Inet(_, 0)) {
                    self.warn(format!(
                        "Virtual server {}: zero port only valid for persistent services - setting",
                        vs.fmt()
                    ));
                    vs.persistence_timeout = PERSISTENT_TIMEOUT;
                }
            }
            if vs.persistence_timeout == 0
                && let Some(g) = &group
                && g.iter().any(|e| matches!(e, GroupEntry::Range { port: 0, .. }))
            {
                self.warn(format!(
                    "Virtual server {}: zero port only valid for persistent services - setting",
                    vs.fmt()
                ));
                vs.persistence_timeout = PERSISTENT_TIMEOUT;
            }
            if vs.protocol.is_some() && fwmark_only {
                self.warn(format!(
                    "Warning: Virtual server {}: protocol specified for fwmark - protocol will be ignored",
                    vs.fmt()
                ));
                vs.protocol = None;
            }
            if vs.scheduler.is_empty() {
                self.warn(format!(
                    "Virtual server {}: no scheduler set, setting default 'wlc'",
                    vs.fmt()
                ));
                vs.scheduler = "wlc".into();
            }
            // Real servers: duplicates, forwarding method, defaults from the virtual server.
            // Duplicates by a set of the (address, port)s kept so far, and dropped in one
            // pass at the end: a scan of the earlier servers and a `remove` per server
            // made 10,000 real servers of one virtual server cost 10^8 comparisons.
            let mut weight_sum: u64 = 0;
            let mut seen = std::collections::HashSet::with_capacity(vs.real_servers.len());
            let mut dups = vec![false; vs.real_servers.len()];
            for (i, dup) in dups.iter_mut().enumerate() {
                if !seen.insert((vs.real_servers[i].addr, vs.real_servers[i].port)) {
                    let f = vs.fmt_rs(&vs.real_servers[i]);
                    self.warn(format!(
                        "VS {}: real server {f} is duplicated - removing second rs",
                        vs.fmt()
                    ));
                    *dup = true;
                    continue;
                }
                if vs.real_servers[i].method.is_none() {
                    if vs.method.is_none() {
                        self.warn(format!(
                            "Virtual server {}: no forwarding method set, setting default NAT",
                            vs.fmt()
                        ));
                        vs.method = Some(Method::of(ForwardMethod::Masq));
                    }
                    vs.real_servers[i].method = vs.method;
                }
                let rs = &mut vs.real_servers[i];
                rs.alpha.get_or_insert(vs.alpha);
                rs.inhibit.get_or_insert(vs.inhibit);
                if rs.retry.is_none() {
                    rs.retry = vs.retry;
                }
                rs.connect_timeout.get_or_insert(vs.connect_timeout);
                rs.delay_loop.get_or_insert(vs.delay_loop);
                if rs.warmup.is_none() {
                    rs.warmup = vs.warmup;
                }
                if rs.delay_before_retry.is_none() {
                    rs.delay_before_retry = vs.delay_before_retry;
                }
                rs.weight.get_or_insert(vs.weight);
                weight_sum += rs.weight.unwrap_or(0) as u64;
                // Checker defaults (validate_check_config's checkers loop).
                let (rs_alpha, rs_retry, rs_to, rs_dl, rs_wu, rs_dbr) = (
                    rs.alpha.unwrap_or(false),
                    rs.retry,
                    rs.connect_timeout.unwrap_or(5 * SEC),
                    rs.delay_loop.unwrap_or(60 * SEC),
                    rs.warmup,
                    rs.delay_before_retry,
                );
                for c in &mut rs.checkers {
                    c.alpha.get_or_insert(rs_alpha);
                    let (def_retry, def_dbr) = match &c.kind {
                        CheckKind::Misc { .. } => (0, SEC),
                        CheckKind::Http { .. } => (1, 3 * SEC),
                        CheckKind::Dns { .. } => (3, 0),
                        _ => (1, SEC),
                    };
                    c.retry.get_or_insert(rs_retry.unwrap_or(def_retry));
                    c.connect_timeout.get_or_insert(rs_to);
                    let dl = *c.delay_loop.get_or_insert(rs_dl);
                    c.warmup.get_or_insert(rs_wu.unwrap_or(dl));
                    c.delay_before_retry
                        .get_or_insert(rs_dbr.unwrap_or(if def_dbr == 0 { dl } else { def_dbr }));
                }
            }
            let mut i = 0;
            vs.real_servers.retain(|_| {
                i += 1;
                !dups[i - 1]
            });
            let vs_name = vs.fmt();
            if let Some(s) = vs.sorry.as_mut()
                && s.method.is_none()
            {
                if vs.method.is_none() {
                    let f = &vs_name;
                    self.diags.push(Diag {
                        severity: Severity::Warning,
                        file: None,
                        line: None,
                        msg: format!("Virtual server {f}: no forwarding method set, setting default NAT"),
                    });
                    vs.method = Some(Method::of(ForwardMethod::Masq));
                }
                s.method = vs.method;
            }
            if vs.quorum as u64 > weight_sum {
                self.warn(format!(
                    "Warning - quorum {} for {} exceeds total weight of real servers {weight_sum}, reducing quorum to {weight_sum}",
                    vs.quorum,
                    vs.fmt()
                ));
                vs.quorum = weight_sum as u32;
            }
            if vs.hysteresis >= vs.quorum {
                let h = vs.quorum.saturating_sub(1);
                self.warn(format!(
                    "Virtual server {}: hysteresis {} >= quorum {}; setting hysteresis to {h}",
                    vs.fmt(),
                    vs.hysteresis,
                    vs.quorum
                ));
                vs.hysteresis = h;
            }
            // Ports: unless NAT, real servers use the virtual server's port; a fwmark
            // service's real servers have none.
            match (&vs.addr, &group) {
                (VsAddr::Inet(_, vport), _) => {
                    let vport = *vport;
                    for j in 0..vs.real_servers.len() {
                        let masq = vs.real_servers[j]
                            .method
                            .is_some_and(|m| m.method == ForwardMethod::Masq);
                        let port = vs.real_servers[j].port;
                        if port == 0 {
                            vs.real_servers[j].port = vport;
                        } else if !masq && port != vport {
                            let f = vs.fmt_rs(&vs.real_servers[j]);
                            self.warn(format!(
                                "WARNING - virtual server {} and real server {f} ports don't match - resetting",
                                vs.fmt()
                            ));
                            vs.real_servers[j].port = vport;
                        }
                    }
                    if let Some(s) = vs.sorry.as_mut() {
                        let masq = s.method.is_some_and(|m| m.method == ForwardMethod::Masq);
                        if s.port == 0 {
                            s.port = vport;
                        } else if !masq && s.port != vport {
                            s.port = vport;
                            let f = vs.fmt();
                            self.warn(format!(
                                "WARNING - virtual server {f} and sorry server ports don't match - resetting"
                            ));
                        }
                    }
                }
                (VsAddr::Fwmark(_), _) => {
                    for j in 0..vs.real_servers.len() {
                        let masq = vs.real_servers[j]
                            .method
                            .is_some_and(|m| m.method == ForwardMethod::Masq);
                        if !masq && vs.real_servers[j].port != 0 {
                            let f = vs.fmt_rs(&vs.real_servers[j]);
                            self.warn(format!(
                                "WARNING - fwmark virtual server {}, real server {f} has port specified - clearing",
                                vs.fmt()
                            ));
                            vs.real_servers[j].port = 0;
                        }
                    }
                }
                _ => {}
            }
            kept.push(vs);
        }
        self.cfg.services = kept;
        (self.cfg, self.diags)
    }
}

fn new_rs(addr: IpAddr, port: u16, line: &Line) -> RealServer {
    RealServer {
        addr,
        port,
        file: line.file.clone(),
        line: line.line,
        weight: None,
        method: None,
        u_threshold: 0,
        l_threshold: 0,
        inhibit: None,
        alpha: None,
        notify_up: None,
        notify_down: None,
        connect_timeout: None,
        retry: None,
        delay_before_retry: None,
        warmup: None,
        delay_loop: None,
        virtualhost: None,
        checkers: Vec::new(),
    }
}
