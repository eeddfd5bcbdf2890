//! `ipvsadm -L`, `-S` and `/proc/net/ip_vs*` output, byte for byte, as pure functions
//! over a [`TableSnapshot`].
//!
//! Everything follows ipvsadm 1.31 (`print_title`, `print_service_entry`,
//! `print_largenum`, `list_conn`, `list_timeout`, `list_daemon`, libipvs's sort
//! comparators) and the kernel's `ip_vs_ctl.c`/`ip_vs_conn.c` seq files:
//!
//! * sorting reproduces the comparator that subtracts unsigned 32-bit values into an
//!   `int` (so `192.168.0.1` sorts before `10.0.0.1`), run through glibc's merge sort so
//!   that the (non-transitive) comparator gives the same order as ipvsadm;
//! * service labels are cut at 33 bytes and real-server names at 28 for IPv4, and every
//!   `addr:port` name at 59 bytes (ipvsadm's 60-byte buffer);
//! * fwmarks are printed with `%d` in listings (1.31 shows marks ≥ 2^31 negative) but
//!   unsigned in `-S`, so that saved rules always restore.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use super::snapshot::{ConnSnapshot, DestSnapshot, ServiceSnapshot, TableSnapshot};
use super::{ListOptions, ListView};
use crate::service::{ForwardMethod, Netmask, Protocol, ServiceAddr, TunnelCsum, TunnelType, svc_flags};

/// Kernel IPVS version shown in the version line.
pub const IPVS_VERSION: &str = "1.2.1";

/// Kernel HZ used for the persistence timeout in `/proc/net/ip_vs` (jiffies).
pub const PROC_HZ: u32 = 250;

/// A listing failure: the line ipvsadm prints on stderr and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListError {
    pub message: String,
    pub exit_code: i32,
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ListError {}

/// Name resolution for listings without `-n`.
pub trait Names {
    /// Host name of `addr` (reverse lookup), `None` to print the number.
    fn host(&self, addr: IpAddr) -> Option<String>;
    /// Service name of `port` for `proto` (`/etc/services`), `None` to print the number.
    fn service(&self, port: u16, proto: Protocol) -> Option<String>;
}

/// No resolution at all (what `-n` means).
#[derive(Debug, Clone, Copy, Default)]
pub struct NumericNames;

impl Names for NumericNames {
    fn host(&self, _: IpAddr) -> Option<String> {
        None
    }
    fn service(&self, _: u16, _: Protocol) -> Option<String> {
        None
    }
}

/// The system's resolvers, for the ipvsadm client (the director never resolves):
/// hosts through `getnameinfo(NI_NAMEREQD)` (so `/etc/hosts`, DNS, … as nsswitch
/// says, like ipvsadm's `gethostbyaddr`), ports through `/etc/services` read once at
/// construction (like `getservbyport`, without its static buffer). Host answers are
/// cached per address.
#[derive(Debug, Default)]
pub struct SystemNames {
    services: HashMap<(u16, Protocol), String>,
    hosts: Mutex<HashMap<IpAddr, Option<String>>>,
}

impl SystemNames {
    /// Read `/etc/services` (a missing file means no port names).
    pub fn new() -> SystemNames {
        SystemNames::with_services(&std::fs::read_to_string("/etc/services").unwrap_or_default())
    }

    /// Use `text` in `/etc/services` format instead of the system file.
    pub fn with_services(text: &str) -> SystemNames {
        let mut services = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let (Some(name), Some(pp)) = (words.next(), words.next()) else {
                continue;
            };
            let Some((port, proto)) = pp.split_once('/') else {
                continue;
            };
            let proto = match proto {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                _ => continue,
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            // getservbyport returns the first matching line.
            services.entry((port, proto)).or_insert_with(|| name.to_string());
        }
        SystemNames {
            services,
            hosts: Mutex::new(HashMap::new()),
        }
    }
}

impl Names for SystemNames {
    fn host(&self, addr: IpAddr) -> Option<String> {
        let mut cache = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(addr)
            .or_insert_with(|| {
                // NI_NAMEREQD: no name is an error, not the address as text.
                dns_lookup::getnameinfo(&std::net::SocketAddr::new(addr, 0), libc::NI_NAMEREQD)
                    .ok()
                    .map(|(host, _)| host)
            })
            .clone()
    }
    fn service(&self, port: u16, proto: Protocol) -> Option<String> {
        self.services.get(&(port, proto)).cloned()
    }
}

// ---------------------------------------------------------------------------------
// Small formatting helpers.

/// `inet_ntop` text: glibc's IPv6 form (RFC 5952 compression, and the embedded IPv4
/// form for IPv4-compatible and -mapped addresses).
pub fn ntop(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => ntop6(a),
    }
}

fn ntop6(a: Ipv6Addr) -> String {
    let w = a.segments();
    // Longest run of zero words (first one on ties), only if at least 2 long.
    let (mut best, mut best_len) = (usize::MAX, 0);
    let mut i = 0;
    while i < 8 {
        if w[i] == 0 {
            let start = i;
            while i < 8 && w[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best = usize::MAX;
    }
    let mut s = String::new();
    let mut i = 0;
    while i < 8 {
        if i == best {
            if i == 0 {
                s.push(':');
            }
            s.push(':');
            i += best_len;
            continue;
        }
        if i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
            let o = a.octets();
            let _ = write!(s, "{}", Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            break;
        }
        let _ = write!(s, "{:x}", w[i]);
        if i < 7 {
            s.push(':');
        }
        i += 1;
    }
    s
}

/// The kernel's `%pI6`: eight groups of four lowercase hex digits.
fn pi6(a: Ipv6Addr) -> String {
    let w = a.segments();
    format!(
        "{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}",
        w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
    )
}

/// Truncate to at most `n` bytes (C's `buf[n] = '\0'`), on a char boundary.
fn cut(s: &mut String, n: usize) {
    if s.len() > n {
        let mut n = n;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
}

/// ipvsadm's `addrport_to_anyname`: `addr:port` (IPv6 bracketed), names when
/// `names` knows them, at most 59 bytes.
fn addrport(addr: IpAddr, port: u16, proto: Option<Protocol>, names: &dyn Names) -> String {
    let host = names.host(addr).unwrap_or_else(|| ntop(addr));
    let port = proto
        .and_then(|p| names.service(port, p))
        .unwrap_or_else(|| port.to_string());
    let mut s = if addr.is_ipv6() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    cut(&mut s, 59);
    s
}

/// `print_largenum`: K/M/G/T rounding, or with `--exact` a field of max(9, digits+1).
fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        write!(out, "{:>w$}", i, w = if len <= 8 { 9 } else { len + 1 })
    } else if i < 100_000_000 {
        write!(out, "{i:9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:8}T", i / 1_000_000_000_000)
    };
}

fn is_v6(addr: &ServiceAddr) -> bool {
    match addr {
        ServiceAddr::Inet { addr, .. } => addr.is_ipv6(),
        ServiceAddr::Fwmark { ipv6, .. } => *ipv6,
    }
}

/// The protocol ipvsadm uses to name ports (fwmark services carry TCP).
fn svc_proto(addr: &ServiceAddr) -> Protocol {
    match addr {
        ServiceAddr::Inet { proto, .. } => *proto,
        ServiceAddr::Fwmark { .. } => Protocol::Tcp,
    }
}

/// `print_sched_flags`: comma-separated names, depending on the scheduler.
fn sched_flag_names(sched: &str, flags: u32) -> String {
    let names: [(u32, &str); 3] = match sched {
        "sh" => [
            (svc_flags::SCHED1, "sh-fallback"),
            (svc_flags::SCHED2, "sh-port"),
            (0, ""),
        ],
        "mh" => [
            (svc_flags::SCHED1, "mh-fallback"),
            (svc_flags::SCHED2, "mh-port"),
            (0, ""),
        ],
        _ => [
            (svc_flags::SCHED1, "flag-1"),
            (svc_flags::SCHED2, "flag-2"),
            (svc_flags::SCHED3, "flag-3"),
        ],
    };
    names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

const SCHED_FLAGS: u32 = svc_flags::SCHED1 | svc_flags::SCHED2 | svc_flags::SCHED3;

/// The persistence mask suffix value: dotted IPv4 mask unless /32, prefix unless 128.
fn mask_text(v6: bool, mask: &Netmask) -> Option<String> {
    match (v6, mask) {
        (false, Netmask::V4(m)) if *m != Ipv4Addr::BROADCAST => Some(m.to_string()),
        (true, Netmask::V6Prefix(p)) if *p != 128 => Some(p.to_string()),
        _ => None,
    }
}

fn tun_flag(c: TunnelCsum) -> &'static str {
    match c {
        TunnelCsum::NoCsum => "-c",
        TunnelCsum::Csum => "+c",
        TunnelCsum::RemCsum => "r+c",
    }
}

fn tun_flag_opt(c: TunnelCsum) -> &'static str {
    match c {
        TunnelCsum::NoCsum => "--tun-nocsum",
        TunnelCsum::Csum => "--tun-csum",
        TunnelCsum::RemCsum => "--tun-remcsum",
    }
}

fn tun_name(t: TunnelType) -> &'static str {
    match t {
        TunnelType::Ipip => "ipip",
        TunnelType::Gue => "gue",
        TunnelType::Gre => "gre",
    }
}

/// `fwd_tun_info`: the TunnelInfo column (`None` for non-tunnel servers, shown `n/a`).
fn tun_info(d: &DestSnapshot) -> Option<String> {
    if d.config.method != ForwardMethod::Tunnel {
        return None;
    }
    let c = &d.config;
    Some(match c.tun_type {
        TunnelType::Ipip => "ipip".to_string(),
        TunnelType::Gue => format!("gue:{}:{}", c.tun_port, tun_flag(c.tun_csum)),
        TunnelType::Gre => format!("gre:{}", tun_flag(c.tun_csum)),
    })
}

// ---------------------------------------------------------------------------------
// Sorting (libipvs's comparators + glibc's merge sort).

const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;

/// The address as libipvs sees it (`union nf_inet_addr`, host-order words): IPv4 in
/// the first word, the rest zero.
fn addr_words(addr: Option<IpAddr>) -> [u32; 4] {
    match addr {
        None => [0; 4],
        Some(IpAddr::V4(a)) => [u32::from(a), 0, 0, 0],
        Some(IpAddr::V6(a)) => {
            let o = a.octets();
            std::array::from_fn(|i| u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
        }
    }
}

/// `(int)(a - b)` on unsigned 32-bit values: the comparator quirk.
fn usub(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn cmp_addr(v6: bool, a: [u32; 4], b: [u32; 4]) -> i32 {
    if v6 {
        let mut r = 0;
        for i in 0..4 {
            r = usub(a[i], b[i]);
            if r != 0 {
                break;
            }
        }
        r
    } else {
        usub(a[0], b[0])
    }
}

/// `ipvs_cmp_services`.
fn cmp_services(a: &ServiceSnapshot, b: &ServiceSnapshot) -> i32 {
    struct K {
        mark: u32,
        af: i32,
        proto: i32,
        addr: [u32; 4],
        port: i32,
    }
    fn key(s: &ServiceSnapshot) -> K {
        let af = if is_v6(&s.config.addr) { AF_INET6 } else { AF_INET };
        match s.config.addr {
            ServiceAddr::Inet { proto, addr, port } => K {
                mark: 0,
                af,
                proto: proto as i32,
                addr: addr_words(Some(addr)),
                port: port as i32,
            },
            ServiceAddr::Fwmark { mark, .. } => K {
                mark,
                af,
                proto: Protocol::Tcp as i32,
                addr: [0; 4],
                port: 0,
            },
        }
    }
    let (a, b) = (key(a), key(b));
    let r = usub(a.mark, b.mark);
    if r != 0 {
        return r;
    }
    if a.af != b.af {
        return a.af - b.af;
    }
    if a.proto != b.proto {
        return a.proto - b.proto;
    }
    let r = cmp_addr(a.af == AF_INET6, a.addr, b.addr);
    if r != 0 {
        return r;
    }
    a.port - b.port
}

/// `ipvs_cmp_dests` (the first server's family decides how many words are compared).
fn cmp_dests(a: &DestSnapshot, b: &DestSnapshot) -> i32 {
    let r = cmp_addr(
        a.config.addr.is_ipv6(),
        addr_words(Some(a.config.addr)),
        addr_words(Some(b.config.addr)),
    );
    if r != 0 {
        return r;
    }
    a.config.port as i32 - b.config.port as i32
}

/// glibc's `msort_with_tmp`: top-down merge sort, taking from the left run while
/// `cmp(left, right) <= 0`. Returns the sorted order as indexes.
fn glibc_msort<T>(items: &[T], cmp: &dyn Fn(&T, &T) -> i32) -> Vec<usize> {
    fn rec<T>(idx: &mut [usize], items: &[T], cmp: &dyn Fn(&T, &T) -> i32, tmp: &mut Vec<usize>) {
        let n = idx.len();
        if n <= 1 {
            return;
        }
        let n1 = n / 2;
        rec(&mut idx[..n1], items, cmp, tmp);
        rec(&mut idx[n1..], items, cmp, tmp);
        tmp.clear();
        let (mut i, mut j) = (0, n1);
        while i < n1 && j < n {
            if cmp(&items[idx[i]], &items[idx[j]]) <= 0 {
                tmp.push(idx[i]);
                i += 1;
            } else {
                tmp.push(idx[j]);
                j += 1;
            }
        }
        tmp.extend_from_slice(&idx[i..n1]);
        tmp.extend_from_slice(&idx[j..n]);
        idx.copy_from_slice(tmp);
    }
    let mut idx: Vec<usize> = (0..items.len()).collect();
    let mut tmp = Vec::with_capacity(items.len());
    rec(&mut idx, items, cmp, &mut tmp);
    idx
}

fn sorted_services(t: &TableSnapshot, sort: bool) -> Vec<&ServiceSnapshot> {
    if sort {
        glibc_msort(&t.services, &cmp_services)
            .into_iter()
            .map(|i| &t.services[i])
            .collect()
    } else {
        t.services.iter().collect()
    }
}

fn sorted_dests(s: &ServiceSnapshot, sort: bool) -> Vec<&DestSnapshot> {
    if sort {
        glibc_msort(&s.dests, &cmp_dests)
            .into_iter()
            .map(|i| &s.dests[i])
            .collect()
    } else {
        s.dests.iter().collect()
    }
}

// ---------------------------------------------------------------------------------
// ipvsadm -L

/// Whether `-L` with `opts` fails on `t` (the director stops a restore there, as
/// ipvsadm `exit()`s): `-L -t|-u|-f` of a service that does not exist.
pub fn check_list(opts: &ListOptions, t: &TableSnapshot) -> Result<(), ListError> {
    let listing_one = !(opts.connections || opts.timeout || opts.daemon);
    match &opts.service {
        Some(sel) if listing_one && !t.services.iter().any(|s| s.config.addr == *sel) => Err(ListError {
            message: "No such service".to_string(),
            exit_code: 1,
        }),
        _ => Ok(()),
    }
}

/// What ipvsadm prints on stdout for `-L` with `opts`. `conns` is the connection table
/// (for `-c`), `names` resolves addresses and ports unless `opts.numeric`.
pub fn render_list(
    opts: &ListOptions,
    t: &TableSnapshot,
    conns: &[ConnSnapshot],
    names: &dyn Names,
) -> Result<String, ListError> {
    let names: &dyn Names = if opts.numeric { &NumericNames } else { names };
    let mut out = String::new();
    if opts.connections || opts.timeout || opts.daemon {
        if opts.connections {
            out.push_str(&render_conns(opts.view == ListView::PersistentConn, conns, names));
        }
        if opts.timeout {
            let (tcp, fin, udp) = t.timeouts;
            let _ = writeln!(
                out,
                "Timeout (tcp tcpfin udp): {} {} {}",
                tcp as i32, fin as i32, udp as i32
            );
        }
        if opts.daemon {
            render_daemons(&mut out, t);
        }
        return Ok(out);
    }
    check_list(opts, t)?;
    let sort = !opts.nosort;
    // check_list has made sure a selected service exists.
    let selected = opts.service.as_ref();
    if let Some(svc) = selected.and_then(|sel| t.services.iter().find(|s| s.config.addr == *sel)) {
        print_title(&mut out, opts.view);
        print_service(&mut out, svc, opts, sort, names);
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "IP Virtual Server version {IPVS_VERSION} (size={})",
        t.conn_tab_size as i32
    );
    print_title(&mut out, opts.view);
    for svc in sorted_services(t, sort) {
        print_service(&mut out, svc, opts, sort, names);
    }
    Ok(out)
}

fn print_title(out: &mut String, view: ListView) {
    let _ = match view {
        ListView::Stats => writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        ListView::Rate => writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
        ListView::Thresholds => writeln!(
            out,
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        ListView::PersistentConn => writeln!(
            out,
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        ListView::TunInfo => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn"
        ),
        ListView::Default => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
        ),
    };
}

/// The service column of `-L` (`TCP  addr:port`, `FWM  mark`).
fn service_label(addr: &ServiceAddr, names: &dyn Names) -> String {
    match *addr {
        // ipvsadm 1.31 prints the mark with %d.
        ServiceAddr::Fwmark { mark, ipv6 } => {
            format!("FWM  {}{}", mark as i32, if ipv6 { " IPv6" } else { "" })
        }
        ServiceAddr::Inet { proto, addr, port } => {
            let mut s = format!("{:<4} {}", proto.name(), addrport(addr, port, Some(proto), names));
            if !addr.is_ipv6() {
                cut(&mut s, 33);
            }
            s
        }
    }
}

fn print_service(out: &mut String, svc: &ServiceSnapshot, opts: &ListOptions, sort: bool, names: &dyn Names) {
    let c = &svc.config;
    let label = service_label(&c.addr, names);
    let v6 = is_v6(&c.addr);
    let exact = opts.exact;
    match opts.view {
        ListView::Stats => {
            let _ = write!(out, "{label:<33}");
            let s = &svc.stats;
            for v in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
                largenum(out, v, exact);
            }
        }
        ListView::Rate => {
            let _ = write!(out, "{label:<33}");
            let r = &svc.rates;
            for v in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
                largenum(out, v, exact);
            }
        }
        _ => {
            let _ = write!(out, "{label} {}", c.scheduler);
            if c.flags & SCHED_FLAGS != 0 {
                let _ = write!(out, " ({})", sched_flag_names(&c.scheduler, c.flags));
            }
            if c.flags & svc_flags::PERSISTENT != 0 {
                let _ = write!(out, " persistent {}", c.timeout);
                if let Some(m) = mask_text(v6, &c.netmask) {
                    let _ = write!(out, " mask {m}");
                }
                if let Some(pe) = c.pe.as_deref().filter(|p| !p.is_empty()) {
                    let _ = write!(out, " pe {pe}");
                }
            }
            if c.flags & svc_flags::ONEPACKET != 0 {
                out.push_str(" ops");
            }
        }
    }
    out.push('\n');

    let proto = svc_proto(&c.addr);
    for d in sorted_dests(svc, sort) {
        let dc = &d.config;
        let mut dname = addrport(dc.addr, dc.port, Some(proto), names);
        if !dc.addr.is_ipv6() {
            cut(&mut dname, 28);
        }
        let _ = match opts.view {
            ListView::Stats => {
                let _ = write!(out, "  -> {dname:<28}");
                let s = &d.stats;
                for v in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
                    largenum(out, v, exact);
                }
                writeln!(out)
            }
            ListView::Rate => {
                let r = &d.rates;
                let _ = write!(out, "  -> {dname:<28} {:8} {:8} {:8}", r.cps, r.inpps, r.outpps);
                largenum(out, r.inbps, exact);
                largenum(out, r.outbps, exact);
                writeln!(out)
            }
            ListView::Thresholds => writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                dc.u_threshold, dc.l_threshold, d.active, d.inactive
            ),
            ListView::PersistentConn => writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                dc.weight as u32, d.persist, d.active, d.inactive
            ),
            ListView::TunInfo => writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                dc.method.name(),
                tun_info(d).as_deref().unwrap_or("n/a"),
                dc.weight,
                d.active,
                d.inactive
            ),
            ListView::Default => writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                dc.method.name(),
                dc.weight,
                d.active,
                d.inactive
            ),
        };
    }
}

/// `ipvsadm -L -c`: header and one line per entry, in the order given (kernel hash
/// order). `pe_columns` is `--persistent-conn`.
fn render_conns(pe_columns: bool, conns: &[ConnSnapshot], names: &dyn Names) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if pe_columns {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for c in conns {
        let proto = match &*c.proto_name {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        };
        let cname = addrport(c.caddr, c.cport, proto, names);
        let vname = addrport(c.vaddr, c.vport, proto, names);
        let dname = addrport(c.daddr, c.dport, proto, names);
        // expires is read with %d into an unsigned int, printed as %02d:%02d.
        let e = c.expires_s as u32;
        let expire = format!("{:02}:{:02}", (e / 60) as i32, e % 60);
        match c
            .pe
            .as_ref()
            .filter(|(n, d)| pe_columns && !n.is_empty() && !d.is_empty())
        {
            Some((pe_name, pe_data)) => {
                let _ = writeln!(
                    out,
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {:<16} {:<18} {}",
                    c.proto_name, expire, c.state, cname, vname, dname, pe_name, pe_data
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
                    c.proto_name, expire, c.state, cname, vname, dname
                );
            }
        }
    }
    out
}

/// `ipvsadm -L --daemon`: master first, then backup.
fn render_daemons(out: &mut String, t: &TableSnapshot) {
    for state in [super::SyncState::Master, super::SyncState::Backup] {
        for d in t.daemons.iter().filter(|d| d.state == state) {
            let _ = write!(
                out,
                "{} sync daemon (mcast={}, syncid={}",
                state.name(),
                d.mcast_ifn,
                d.syncid
            );
            if d.sync_maxlen != 0 {
                let _ = write!(out, ", maxlen={}", d.sync_maxlen);
            }
            if let Some(g) = d.mcast_group {
                let _ = write!(out, ", group={}", ntop(g));
            }
            if d.mcast_port != 0 {
                let _ = write!(out, ", port={}", d.mcast_port);
            }
            if d.mcast_ttl != 0 {
                let _ = write!(out, ", ttl={}", d.mcast_ttl);
            }
            out.push_str(")\n");
        }
    }
}

// ---------------------------------------------------------------------------------
// ipvsadm -S

/// `ipvsadm -S [-n]`: one rule per line, always sorted, no header. Without `numeric`
/// names from `names` are written.
pub fn render_save(t: &TableSnapshot, numeric: bool, names: &dyn Names) -> String {
    let names: &dyn Names = if numeric { &NumericNames } else { names };
    let mut out = String::new();
    for svc in sorted_services(t, true) {
        let c = &svc.config;
        let v6 = is_v6(&c.addr);
        let sel = match c.addr {
            // Unsigned (the post-1.31 fix), so that every saved mark restores.
            ServiceAddr::Fwmark { mark, ipv6 } => format!("-f {mark}{}", if ipv6 { " -6" } else { "" }),
            ServiceAddr::Inet { proto, addr, port } => {
                let opt = match proto {
                    Protocol::Tcp => "-t",
                    Protocol::Udp => "-u",
                    Protocol::Sctp => "--sctp-service",
                };
                format!("{opt} {}", addrport(addr, port, Some(proto), names))
            }
        };
        let _ = write!(out, "-A {sel} -s {}", c.scheduler);
        if c.flags & svc_flags::PERSISTENT != 0 {
            let _ = write!(out, " -p {}", c.timeout);
            if let Some(m) = mask_text(v6, &c.netmask) {
                let _ = write!(out, " -M {m}");
            }
        }
        if let Some(pe) = c.pe.as_deref().filter(|p| !p.is_empty()) {
            let _ = write!(out, " --pe {pe}");
        }
        if c.flags & svc_flags::ONEPACKET != 0 {
            out.push_str(" -o");
        }
        if c.flags & SCHED_FLAGS != 0 {
            let _ = write!(out, " -b {}", sched_flag_names(&c.scheduler, c.flags));
        }
        out.push('\n');
        let proto = svc_proto(&c.addr);
        for d in sorted_dests(svc, true) {
            let dc = &d.config;
            let dname = addrport(dc.addr, dc.port, Some(proto), names);
            let _ = write!(out, "-a {sel} -r {dname} {} -w {}", dc.method.save_flag(), dc.weight);
            if dc.method == ForwardMethod::Tunnel {
                let _ = match dc.tun_type {
                    TunnelType::Ipip => write!(out, " --tun-type ipip"),
                    TunnelType::Gre => write!(out, " --tun-type gre {}", tun_flag_opt(dc.tun_csum)),
                    TunnelType::Gue => write!(
                        out,
                        " --tun-type {} --tun-port {} {}",
                        tun_name(dc.tun_type),
                        dc.tun_port,
                        tun_flag_opt(dc.tun_csum)
                    ),
                };
            }
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// /proc/net/ip_vs*

/// `/proc/net/ip_vs` with the persistence timeout in jiffies at [`PROC_HZ`].
pub fn render_proc_ip_vs(t: &TableSnapshot) -> String {
    render_proc_ip_vs_hz(t, PROC_HZ)
}

/// `/proc/net/ip_vs` for a kernel running at `hz`. Services in the snapshot's order,
/// address-based ones first, then fwmark ones (the kernel walks its two hash tables in
/// that order); real servers in list order.
pub fn render_proc_ip_vs_hz(t: &TableSnapshot, hz: u32) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "IP Virtual Server version {IPVS_VERSION} (size={})",
        t.conn_tab_size as i32
    );
    out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    out.push_str("  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n");
    let inet = t
        .services
        .iter()
        .filter(|s| matches!(s.config.addr, ServiceAddr::Inet { .. }));
    let fwm = t
        .services
        .iter()
        .filter(|s| matches!(s.config.addr, ServiceAddr::Fwmark { .. }));
    for svc in inet.chain(fwm) {
        let c = &svc.config;
        let ops = if c.flags & svc_flags::ONEPACKET != 0 {
            "ops "
        } else {
            ""
        };
        let _ = match c.addr {
            ServiceAddr::Inet {
                proto,
                addr: IpAddr::V6(a),
                port,
            } => write!(out, "{}  [{}]:{:04X} {} ", proto.name(), pi6(a), port, c.scheduler),
            ServiceAddr::Inet {
                proto,
                addr: IpAddr::V4(a),
                port,
            } => write!(
                out,
                "{}  {:08X}:{:04X} {} {} ",
                proto.name(),
                u32::from(a),
                port,
                c.scheduler,
                ops
            ),
            ServiceAddr::Fwmark { mark, .. } => write!(out, "FWM  {mark:08X} {} {}", c.scheduler, ops),
        };
        if c.flags & svc_flags::PERSISTENT != 0 {
            // The kernel keeps the IPv6 prefix length raw in a __be32 field and prints
            // ntohl() of it, so on a little-endian host /128 shows as 80000000.
            let mask = match c.netmask {
                Netmask::V4(m) => u32::from(m),
                Netmask::V6Prefix(p) => u32::from_be(p as u32),
            };
            let jiffies = c.timeout.wrapping_mul(hz);
            let _ = writeln!(out, "persistent {} {:08X}", jiffies as i32, mask);
        } else {
            out.push('\n');
        }
        for d in &svc.dests {
            let dc = &d.config;
            let addr = match dc.addr {
                IpAddr::V4(a) => format!("{:08X}", u32::from(a)),
                IpAddr::V6(a) => format!("[{}]", pi6(a)),
            };
            let _ = writeln!(
                out,
                "  -> {addr}:{:04X}      {:<7} {:<6} {:<10} {:<10}",
                dc.port,
                dc.method.name(),
                dc.weight,
                d.active as i32,
                d.inactive as i32
            );
        }
    }
    out
}

fn proc_addr(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => format!("{:08X}", u32::from(a)),
        IpAddr::V6(a) => pi6(a),
    }
}

/// `/proc/net/ip_vs_conn` for `conns`, in the order given.
pub fn render_proc_conn(conns: &[ConnSnapshot]) -> String {
    let mut out = String::from("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n");
    for c in conns {
        let pe = match &c.pe {
            Some((n, d)) => format!(" {n} {d}"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<3} {} {:04X} {} {:04X} {} {:04X} {:<11} {:7}{}",
            c.proto_name,
            proc_addr(c.caddr),
            c.cport,
            proc_addr(c.vaddr),
            c.vport,
            proc_addr(c.daddr),
            c.dport,
            c.state,
            c.expires_s,
            pe
        );
    }
    out
}

/// `/proc/net/ip_vs_stats`: director-wide totals and rates, uppercase hex.
pub fn render_proc_stats(t: &TableSnapshot) -> String {
    let s = &t.total;
    let r = &t.total_rates;
    let mut out = String::new();
    out.push_str("   Total Incoming Outgoing         Incoming         Outgoing\n");
    out.push_str("   Conns  Packets  Packets            Bytes            Bytes\n");
    let _ = writeln!(
        out,
        "{:8X} {:8X} {:8X} {:16X} {:16X}",
        s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes
    );
    out.push('\n');
    out.push_str(" Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n");
    let _ = writeln!(
        out,
        "{:8X} {:8X} {:8X} {:16X} {:16X}",
        r.cps, r.inpps, r.outpps, r.inbps, r.outbps
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvsadm::SyncState;
    use crate::ipvsadm::snapshot::{DaemonSnapshot, Rates};
    use crate::service::{DestConfig, ServiceConfig};
    use crate::stats::Totals;

    fn lines(l: &[&str]) -> String {
        let mut s = l.join("\n");
        s.push('\n');
        s
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn inet(proto: Protocol, addr: &str, port: u16) -> ServiceAddr {
        ServiceAddr::Inet {
            proto,
            addr: ip(addr),
            port,
        }
    }

    fn svc(addr: ServiceAddr, sched: &str, flags: u32) -> ServiceSnapshot {
        let netmask = if is_v6(&addr) {
            Netmask::V6Prefix(128)
        } else {
            Netmask::V4(Ipv4Addr::BROADCAST)
        };
        ServiceSnapshot {
            config: ServiceConfig {
                addr,
                scheduler: sched.to_string(),
                flags,
                timeout: 0,
                netmask,
                pe: None,
            },
            stats: Totals::default(),
            rates: Rates::default(),
            dests: Vec::new(),
        }
    }

    fn dest(addr: &str, port: u16, method: ForwardMethod, weight: i32, active: u32, inactive: u32) -> DestSnapshot {
        DestSnapshot {
            config: DestConfig {
                addr: ip(addr),
                port,
                method,
                weight,
                u_threshold: 0,
                l_threshold: 0,
                tun_type: TunnelType::Ipip,
                tun_port: 0,
                tun_csum: TunnelCsum::NoCsum,
            },
            active,
            inactive,
            persist: 0,
            stats: Totals::default(),
            rates: Rates::default(),
        }
    }

    fn tot(conns: u64, inpkts: u64, outpkts: u64, inbytes: u64, outbytes: u64) -> Totals {
        Totals {
            conns,
            inpkts,
            outpkts,
            inbytes,
            outbytes,
        }
    }

    fn rates(cps: u64, inpps: u64, outpps: u64, inbps: u64, outbps: u64) -> Rates {
        Rates {
            cps,
            inpps,
            outpps,
            inbps,
            outbps,
        }
    }

    fn svc80() -> ServiceSnapshot {
        let mut s = svc(inet(Protocol::Tcp, "192.168.10.100", 80), "wlc", 0);
        s.stats = tot(1234, 98765, 0, 123456789, 0);
        s.rates = rates(12, 340, 0, 41234, 0);
        // Kernel list order: newest first.
        let mut d12 = dest("192.168.10.12", 80, ForwardMethod::Route, 2, 25, 61);
        d12.stats = tot(634, 50765, 0, 62222222, 0);
        d12.rates = rates(7, 180, 0, 21234, 0);
        let mut d11 = dest("192.168.10.11", 80, ForwardMethod::Route, 1, 12, 34);
        d11.stats = tot(600, 48000, 0, 61234567, 0);
        d11.rates = rates(5, 160, 0, 20000, 0);
        d11.config.u_threshold = 500;
        d11.config.l_threshold = 300;
        s.dests = vec![d12, d11];
        s
    }

    fn svc443() -> ServiceSnapshot {
        let mut s = svc(inet(Protocol::Tcp, "192.168.10.100", 443), "rr", svc_flags::PERSISTENT);
        s.config.timeout = 360;
        s.config.netmask = Netmask::V4(Ipv4Addr::new(255, 255, 255, 0));
        let mut d = dest("10.0.0.5", 8443, ForwardMethod::Masq, 1, 3, 0);
        d.persist = 2;
        s.dests = vec![d];
        s
    }

    /// An example table (a UDP one-packet service and TCP services), in the kernel's
    /// hash order (`ip_vs_ctl.c: ip_vs_svc_hashkey`).
    fn example_table() -> TableSnapshot {
        let mut udp = svc(inet(Protocol::Udp, "192.168.10.100", 53), "rr", svc_flags::ONEPACKET);
        udp.dests = vec![dest("192.168.10.13", 53, ForwardMethod::Route, 0, 0, 7)];
        let mut v6 = svc(inet(Protocol::Tcp, "2001:db8::80", 80), "wlc", 0);
        v6.dests = vec![dest("2001:db8::a0a0", 80, ForwardMethod::Masq, 1, 0, 0)];
        let mut fwm = svc(ServiceAddr::Fwmark { mark: 1, ipv6: false }, "sh", svc_flags::SCHED2);
        fwm.dests = vec![dest("192.168.10.11", 0, ForwardMethod::Tunnel, 1, 0, 0)];
        TableSnapshot {
            services: vec![udp, svc80(), svc443(), v6, fwm],
            ..TableSnapshot::default()
        }
    }

    fn one(s: ServiceSnapshot) -> TableSnapshot {
        TableSnapshot {
            services: vec![s],
            ..TableSnapshot::default()
        }
    }

    fn numeric(view: ListView) -> ListOptions {
        ListOptions {
            numeric: true,
            view,
            ..ListOptions::default()
        }
    }

    fn list(opts: &ListOptions, t: &TableSnapshot) -> String {
        render_list(opts, t, &[], &NumericNames).unwrap()
    }

    #[test]
    fn default_view_example() {
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  192.168.10.100:80 wlc",
            "  -> 192.168.10.11:80             Route   1      12         34        ",
            "  -> 192.168.10.12:80             Route   2      25         61        ",
            "TCP  192.168.10.100:443 rr persistent 360 mask 255.255.255.0",
            "  -> 10.0.0.5:8443                Masq    1      3          0         ",
            "UDP  192.168.10.100:53 rr ops",
            "  -> 192.168.10.13:53             Route   0      0          7         ",
            "TCP  [2001:db8::80]:80 wlc",
            "  -> [2001:db8::a0a0]:80          Masq    1      0          0         ",
            "FWM  1 sh (sh-port)",
            "  -> 192.168.10.11:0              Tunnel  1      0          0         ",
        ]);
        assert_eq!(list(&numeric(ListView::Default), &example_table()), want);
    }

    #[test]
    fn nosort_keeps_list_order() {
        let mut o = numeric(ListView::Default);
        o.nosort = true;
        let out = list(&o, &one(svc80()));
        assert!(out.ends_with(&lines(&[
            "TCP  192.168.10.100:80 wlc",
            "  -> 192.168.10.12:80             Route   2      25         61        ",
            "  -> 192.168.10.11:80             Route   1      12         34        ",
        ])));
    }

    #[test]
    fn stats_example_and_exact() {
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
            "TCP  192.168.10.100:80                1234    98765        0  123456K        0",
            "  -> 192.168.10.11:80                  600    48000        0 61234567        0",
            "  -> 192.168.10.12:80                  634    50765        0 62222222        0",
        ]);
        assert_eq!(list(&numeric(ListView::Stats), &one(svc80())), want);
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
            "TCP  192.168.10.100:80                1234    98765        0 123456789        0",
            "  -> 192.168.10.11:80                  600    48000        0 61234567        0",
            "  -> 192.168.10.12:80                  634    50765        0 62222222        0",
        ]);
        let mut o = numeric(ListView::Stats);
        o.exact = true;
        assert_eq!(list(&o, &one(svc80())), want);
    }

    #[test]
    fn rate_example() {
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
            "  -> RemoteAddress:Port",
            "TCP  192.168.10.100:80                  12      340        0    41234        0",
            "  -> 192.168.10.11:80                    5      160        0    20000        0",
            "  -> 192.168.10.12:80                    7      180        0    21234        0",
        ]);
        assert_eq!(list(&numeric(ListView::Rate), &one(svc80())), want);
    }

    #[test]
    fn rate_dest_pps_never_rounded() {
        let mut s = svc80();
        s.rates = rates(123456789, 0, 0, 123456789, 0);
        s.dests.truncate(1);
        s.dests[0].rates = rates(123456789, 1, 2, 123456789, 0);
        let out = list(&numeric(ListView::Rate), &one(s));
        assert!(out.contains("TCP  192.168.10.100:80             123456K        0        0  123456K        0\n"));
        assert!(out.contains("  -> 192.168.10.12:80             123456789        1        2  123456K        0\n"));
    }

    #[test]
    fn thresholds_example() {
        let mut s = svc80();
        s.dests.remove(0);
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
            "TCP  192.168.10.100:80 wlc",
            "  -> 192.168.10.11:80             500        300        12         34        ",
        ]);
        assert_eq!(list(&numeric(ListView::Thresholds), &one(s)), want);
    }

    #[test]
    fn persistent_conn_example() {
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
            "TCP  192.168.10.100:443 rr persistent 360 mask 255.255.255.0",
            "  -> 10.0.0.5:8443                1         2           3          0         ",
        ]);
        assert_eq!(list(&numeric(ListView::PersistentConn), &one(svc443())), want);
    }

    #[test]
    fn tun_info_example() {
        // The example is in list order (not sorted): reproduced with --nosort.
        let mut s = svc(inet(Protocol::Tcp, "207.175.44.110", 80), "rr", 0);
        let mut gue = dest("192.168.10.1", 80, ForwardMethod::Tunnel, 1, 0, 0);
        gue.config.tun_type = TunnelType::Gue;
        gue.config.tun_port = 6080;
        let mut gre = dest("192.168.10.2", 80, ForwardMethod::Tunnel, 1, 0, 0);
        gre.config.tun_type = TunnelType::Gre;
        gre.config.tun_csum = TunnelCsum::Csum;
        s.dests = vec![
            gue,
            gre,
            dest("192.168.10.4", 80, ForwardMethod::Tunnel, 1, 0, 0),
            dest("192.168.10.3", 80, ForwardMethod::Route, 1, 0, 0),
        ];
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn",
            "TCP  207.175.44.110:80 rr",
            "  -> 192.168.10.1:80              Tunnel  gue:6080:-c   1      0          0         ",
            "  -> 192.168.10.2:80              Tunnel  gre:+c        1      0          0         ",
            "  -> 192.168.10.4:80              Tunnel  ipip          1      0          0         ",
            "  -> 192.168.10.3:80              Route   n/a           1      0          0         ",
        ]);
        let mut o = numeric(ListView::TunInfo);
        o.nosort = true;
        assert_eq!(list(&o, &one(s.clone())), want);
        // Sorted, .3 comes before .4; remote checksum shows r+c.
        s.dests[1].config.tun_csum = TunnelCsum::RemCsum;
        let out = list(&numeric(ListView::TunInfo), &one(s));
        assert!(out.ends_with(&lines(&[
            "  -> 192.168.10.2:80              Tunnel  gre:r+c       1      0          0         ",
            "  -> 192.168.10.3:80              Route   n/a           1      0          0         ",
            "  -> 192.168.10.4:80              Tunnel  ipip          1      0          0         ",
        ])));
    }

    /// `"PROTO STATE EXPIRES CADDR:CPORT VADDR:VPORT DADDR:DPORT"` (IPv4 only).
    fn conn(spec: &'static str) -> ConnSnapshot {
        let w: Vec<&'static str> = spec.split(' ').collect();
        let ap = |s: &str| {
            let (a, p) = s.rsplit_once(':').unwrap();
            (ip(a), p.parse().unwrap())
        };
        let ((caddr, cport), (vaddr, vport), (daddr, dport)) = (ap(w[3]), ap(w[4]), ap(w[5]));
        ConnSnapshot {
            proto_name: w[0].into(),
            state: w[1].into(),
            expires_s: w[2].parse().unwrap(),
            caddr,
            cport,
            vaddr,
            vport,
            daddr,
            dport,
            pe: None,
        }
    }

    fn example_conns() -> Vec<ConnSnapshot> {
        [
            "TCP ESTABLISHED 897 203.0.113.7:51544 192.168.10.100:80 192.168.10.11:80",
            "TCP FIN_WAIT 95 203.0.113.9:40022 192.168.10.100:80 192.168.10.12:80",
            "UDP UDP 283 198.51.100.4:33100 192.168.10.100:53 192.168.10.13:53",
            "TCP NONE 355 203.0.113.0:0 192.168.10.100:443 10.0.0.5:8443",
            "TCP ESTABLISHED 897 203.0.113.8:50912 192.168.10.100:443 10.0.0.5:8443",
        ]
        .into_iter()
        .map(conn)
        .collect()
    }

    fn sip_conn() -> ConnSnapshot {
        ConnSnapshot {
            proto_name: "UDP".into(),
            state: "UDP".into(),
            expires_s: 298,
            caddr: ip("198.51.100.4"),
            cport: 5060,
            vaddr: ip("192.168.10.100"),
            vport: 5060,
            daddr: ip("192.168.10.20"),
            dport: 5060,
            pe: Some(("sip".to_string(), "a84b4c76e66710".to_string())),
        }
    }

    fn conn_opts(view: ListView) -> ListOptions {
        ListOptions {
            numeric: true,
            connections: true,
            view,
            ..ListOptions::default()
        }
    }

    #[test]
    fn connections_example() {
        let want = lines(&[
            "IPVS connection entries",
            "pro expire state       source             virtual            destination",
            "TCP 14:57  ESTABLISHED 203.0.113.7:51544  192.168.10.100:80  192.168.10.11:80",
            "TCP 01:35  FIN_WAIT    203.0.113.9:40022  192.168.10.100:80  192.168.10.12:80",
            "UDP 04:43  UDP         198.51.100.4:33100 192.168.10.100:53  192.168.10.13:53",
            "TCP 05:55  NONE        203.0.113.0:0      192.168.10.100:443 10.0.0.5:8443",
            "TCP 14:57  ESTABLISHED 203.0.113.8:50912  192.168.10.100:443 10.0.0.5:8443",
        ]);
        let got = render_list(
            &conn_opts(ListView::Default),
            &example_table(),
            &example_conns(),
            &NumericNames,
        );
        assert_eq!(got.unwrap(), want);
    }

    #[test]
    fn connections_pe_example() {
        let want = lines(&[
            "IPVS connection entries",
            "pro expire state       source             virtual            destination        pe name          pe_data",
            "UDP 04:58  UDP         198.51.100.4:5060  192.168.10.100:5060 192.168.10.20:5060 sip                a84b4c76e66710",
        ]);
        let t = TableSnapshot::default();
        let got = render_list(&conn_opts(ListView::PersistentConn), &t, &[sip_conn()], &NumericNames).unwrap();
        assert_eq!(got, want);
        // Without --persistent-conn the PE data is not shown; a row without PE data
        // uses the normal format even with it.
        let got = render_list(&conn_opts(ListView::Default), &t, &[sip_conn()], &NumericNames).unwrap();
        assert!(got.ends_with("UDP 04:58  UDP         198.51.100.4:5060  192.168.10.100:5060 192.168.10.20:5060\n"));
        let mut c = sip_conn();
        c.pe = None;
        let got = render_list(&conn_opts(ListView::PersistentConn), &t, &[c], &NumericNames).unwrap();
        assert!(got.ends_with("UDP 04:58  UDP         198.51.100.4:5060  192.168.10.100:5060 192.168.10.20:5060\n"));
    }

    #[test]
    fn connection_expire_minutes_not_capped() {
        let mut c = sip_conn();
        c.pe = None;
        c.proto_name = "IP".into();
        c.state = "NONE".into();
        c.expires_s = 7200 + 65; // 121 min 5 s
        let mut c6 = c.clone();
        c6.proto_name = "TCP".into();
        c6.state = "ESTABLISHED".into();
        c6.expires_s = 0;
        c6.caddr = ip("2001:db8::7");
        c6.cport = 40000;
        c6.vaddr = ip("2001:db8::80");
        c6.vport = 80;
        c6.daddr = ip("2001:db8::a0a0");
        c6.dport = 80;
        let got = render_list(
            &conn_opts(ListView::Default),
            &TableSnapshot::default(),
            &[c, c6],
            &NumericNames,
        );
        assert!(got.unwrap().ends_with(&lines(&[
            "IP  121:05 NONE        198.51.100.4:5060  192.168.10.100:5060 192.168.10.20:5060",
            "TCP 00:00  ESTABLISHED [2001:db8::7]:40000 [2001:db8::80]:80  [2001:db8::a0a0]:80",
        ])));
    }

    #[test]
    fn timeout_and_daemon() {
        let t = TableSnapshot::default();
        let o = ListOptions {
            timeout: true,
            ..ListOptions::default()
        };
        assert_eq!(list(&o, &t), "Timeout (tcp tcpfin udp): 900 120 300\n");
        let t2 = TableSnapshot {
            timeouts: (7200, 30, 60),
            ..TableSnapshot::default()
        };
        assert_eq!(list(&o, &t2), "Timeout (tcp tcpfin udp): 7200 30 60\n");

        let o = ListOptions {
            daemon: true,
            ..ListOptions::default()
        };
        assert_eq!(list(&o, &t), "");
        let d = |state| DaemonSnapshot {
            state,
            mcast_ifn: "eth0".to_string(),
            syncid: 51,
            sync_maxlen: 1472,
            mcast_group: Some(ip("224.0.0.81")),
            mcast_port: 8848,
            mcast_ttl: 1,
        };
        let t3 = TableSnapshot {
            daemons: vec![d(SyncState::Backup), d(SyncState::Master)],
            ..TableSnapshot::default()
        };
        let want = lines(&[
            "master sync daemon (mcast=eth0, syncid=51, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)",
            "backup sync daemon (mcast=eth0, syncid=51, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)",
        ]);
        assert_eq!(list(&o, &t3), want);
        let mut bare = d(SyncState::Master);
        bare.sync_maxlen = 0;
        bare.mcast_group = None;
        bare.mcast_port = 0;
        bare.mcast_ttl = 0;
        bare.syncid = 0;
        let t4 = TableSnapshot {
            daemons: vec![bare],
            ..TableSnapshot::default()
        };
        assert_eq!(list(&o, &t4), "master sync daemon (mcast=eth0, syncid=0)\n");
    }

    #[test]
    fn single_service_and_missing() {
        let mut o = numeric(ListView::Default);
        o.service = Some(inet(Protocol::Tcp, "192.168.10.100", 443));
        let want = lines(&[
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  192.168.10.100:443 rr persistent 360 mask 255.255.255.0",
            "  -> 10.0.0.5:8443                Masq    1      3          0         ",
        ]);
        assert_eq!(list(&o, &example_table()), want);
        o.service = Some(ServiceAddr::Fwmark { mark: 1, ipv6: true });
        let err = render_list(&o, &example_table(), &[], &NumericNames).unwrap_err();
        assert_eq!(
            err,
            ListError {
                message: "No such service".to_string(),
                exit_code: 1
            }
        );
        o.service = Some(inet(Protocol::Udp, "192.168.10.100", 80));
        assert!(render_list(&o, &example_table(), &[], &NumericNames).is_err());
    }

    #[test]
    fn empty_table() {
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        ]);
        assert_eq!(list(&numeric(ListView::Default), &TableSnapshot::default()), want);
        let t = TableSnapshot {
            conn_tab_size: 1 << 20,
            ..TableSnapshot::default()
        };
        assert!(list(&numeric(ListView::Stats), &t).starts_with("IP Virtual Server version 1.2.1 (size=1048576)\n"));
        assert_eq!(render_save(&t, true, &NumericNames), "");
    }

    #[test]
    fn largenum_rounding_boundaries() {
        let f = |v: u64, exact: bool| {
            let mut s = String::new();
            largenum(&mut s, v, exact);
            s
        };
        assert_eq!(f(0, false), "        0");
        assert_eq!(f(99_999_999, false), " 99999999");
        assert_eq!(f(100_000_000, false), "  100000K");
        assert_eq!(f(123_456_789, false), "  123456K");
        assert_eq!(f(999_999_999, false), "  999999K");
        assert_eq!(f(1_000_000_000, false), "    1000M");
        assert_eq!(f(99_999_999_999, false), "   99999M");
        assert_eq!(f(100_000_000_000, false), "     100G");
        assert_eq!(f(99_999_999_999_999, false), "   99999G");
        assert_eq!(f(100_000_000_000_000, false), "     100T");
        assert_eq!(f(u64::MAX, false), "18446744T");
        // --exact: max(9, digits + 1).
        assert_eq!(f(0, true), "        0");
        assert_eq!(f(99_999_999, true), " 99999999");
        assert_eq!(f(100_000_000, true), " 100000000");
        assert_eq!(f(123_456_789, true), " 123456789");
        assert_eq!(f(1_000_000_000, true), " 1000000000");
        assert_eq!(f(100_000_000_000, true), " 100000000000");
        assert_eq!(f(100_000_000_000_000, true), " 100000000000000");
        assert_eq!(f(u64::MAX, true), " 18446744073709551615");
    }

    #[test]
    fn sort_quirk_and_order() {
        // 192.168.0.1 - 10.0.0.1 overflows int: 192.168.0.1 sorts first.
        let mut a = svc(inet(Protocol::Tcp, "10.0.0.1", 80), "rr", 0);
        a.dests = vec![
            dest("10.0.0.1", 80, ForwardMethod::Route, 1, 0, 0),
            dest("192.168.0.1", 80, ForwardMethod::Route, 1, 0, 0),
            dest("10.0.0.1", 8080, ForwardMethod::Route, 1, 0, 0),
            dest("10.0.0.1", 81, ForwardMethod::Route, 1, 0, 0),
        ];
        let b = svc(inet(Protocol::Tcp, "192.168.0.1", 80), "rr", 0);
        let c = svc(inet(Protocol::Tcp, "192.168.0.1", 22), "rr", 0);
        let sctp = svc(inet(Protocol::Sctp, "1.1.1.1", 1), "rr", 0);
        let udp = svc(inet(Protocol::Udp, "1.1.1.1", 1), "rr", 0);
        let v6 = svc(inet(Protocol::Tcp, "::1", 1), "rr", 0);
        let f2 = svc(ServiceAddr::Fwmark { mark: 2, ipv6: false }, "rr", 0);
        let f1v6 = svc(ServiceAddr::Fwmark { mark: 1, ipv6: true }, "rr", 0);
        let f1 = svc(ServiceAddr::Fwmark { mark: 1, ipv6: false }, "rr", 0);
        // A mark ≥ 2^31 + 1 compares "below" address services (0 - mark > 0 as int).
        let fbig = svc(
            ServiceAddr::Fwmark {
                mark: 0x8000_0001,
                ipv6: false,
            },
            "rr",
            0,
        );
        let t = TableSnapshot {
            services: vec![f2, v6, sctp, a, udp, f1v6, b, fbig, c, f1],
            ..TableSnapshot::default()
        };
        let out = list(&numeric(ListView::Default), &t);
        let labels: Vec<&str> = out
            .lines()
            .skip(3)
            .filter(|l| !l.starts_with("  ->"))
            .map(|l| l.strip_suffix(" rr").unwrap())
            .collect();
        assert_eq!(
            labels,
            [
                "FWM  -2147483647",
                "TCP  192.168.0.1:22",
                "TCP  192.168.0.1:80",
                "TCP  10.0.0.1:80",
                "UDP  1.1.1.1:1",
                "SCTP 1.1.1.1:1",
                "TCP  [::1]:1",
                "FWM  1",
                "FWM  1 IPv6",
                "FWM  2",
            ]
        );
        assert!(out.contains(&lines(&[
            "TCP  10.0.0.1:80 rr",
            "  -> 192.168.0.1:80               Route   1      0          0         ",
            "  -> 10.0.0.1:80                  Route   1      0          0         ",
            "  -> 10.0.0.1:81                  Route   1      0          0         ",
            "  -> 10.0.0.1:8080                Route   1      0          0         ",
        ])));
        // -S sorts the same way but prints the mark unsigned.
        let save = render_save(&t, true, &NumericNames);
        assert!(save.starts_with("-A -f 2147483649 -s rr\n-A -t 192.168.0.1:22 -s rr\n"));
    }

    #[test]
    fn glibc_merge_sort_with_cyclic_comparator() {
        // 1.0.0.0 < 100.0.0.0 < 200.0.0.0 < 1.0.0.0 under the int-subtraction quirk:
        // the result depends on the input order exactly as glibc's msort gives it.
        let order = |addrs: &[&str]| {
            let mut s = svc(inet(Protocol::Tcp, "1.2.3.4", 80), "rr", 0);
            s.dests = addrs
                .iter()
                .map(|a| dest(a, 80, ForwardMethod::Route, 1, 0, 0))
                .collect();
            sorted_dests(&s, true)
                .iter()
                .map(|d| d.config.addr.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(&["1.0.0.0", "100.0.0.0", "200.0.0.0"]),
            ["1.0.0.0", "100.0.0.0", "200.0.0.0"]
        );
        assert_eq!(
            order(&["200.0.0.0", "100.0.0.0", "1.0.0.0"]),
            ["200.0.0.0", "1.0.0.0", "100.0.0.0"]
        );
    }

    #[test]
    fn save_example() {
        let want = lines(&[
            "-A -t 192.168.10.100:80 -s wlc",
            "-a -t 192.168.10.100:80 -r 192.168.10.11:80 -g -w 1",
            "-a -t 192.168.10.100:80 -r 192.168.10.12:80 -g -w 2",
            "-A -t 192.168.10.100:443 -s rr -p 360 -M 255.255.255.0",
            "-a -t 192.168.10.100:443 -r 10.0.0.5:8443 -m -w 1",
            "-A -u 192.168.10.100:53 -s rr -o",
            "-a -u 192.168.10.100:53 -r 192.168.10.13:53 -g -w 0",
            "-A -t [2001:db8::80]:80 -s wlc",
            "-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1",
            "-A -f 1 -s sh -b sh-port",
            "-a -f 1 -r 192.168.10.11:0 -i -w 1 --tun-type ipip",
        ]);
        assert_eq!(render_save(&example_table(), true, &NumericNames), want);
    }

    #[test]
    fn save_options_and_tunnels() {
        let mut s = svc(
            inet(Protocol::Sctp, "2001:db8::1", 5060),
            "mh",
            svc_flags::PERSISTENT | svc_flags::ONEPACKET | svc_flags::SCHED1 | svc_flags::SCHED2,
        );
        s.config.timeout = 300;
        s.config.netmask = Netmask::V6Prefix(64);
        s.config.pe = Some("sip".to_string());
        let mut gue = dest("2001:db8::10", 5060, ForwardMethod::Tunnel, 3, 0, 0);
        gue.config.tun_type = TunnelType::Gue;
        gue.config.tun_port = 6080;
        gue.config.tun_csum = TunnelCsum::RemCsum;
        let mut gre = dest("2001:db8::11", 5060, ForwardMethod::Tunnel, 1, 0, 0);
        gre.config.tun_type = TunnelType::Gre;
        let local = dest("2001:db8::12", 5060, ForwardMethod::Local, 1, 0, 0);
        s.dests = vec![local, gre, gue];
        let mut f = svc(ServiceAddr::Fwmark { mark: 7, ipv6: true }, "wrr", 0);
        f.dests = vec![dest("2001:db8::20", 0, ForwardMethod::Masq, 2, 0, 0)];
        let t = TableSnapshot {
            services: vec![f, s.clone()],
            ..TableSnapshot::default()
        };
        let want = lines(&[
            "-A --sctp-service [2001:db8::1]:5060 -s mh -p 300 -M 64 --pe sip -o -b mh-fallback,mh-port",
            "-a --sctp-service [2001:db8::1]:5060 -r [2001:db8::10]:5060 -i -w 3 --tun-type gue --tun-port 6080 --tun-remcsum",
            "-a --sctp-service [2001:db8::1]:5060 -r [2001:db8::11]:5060 -i -w 1 --tun-type gre --tun-nocsum",
            "-a --sctp-service [2001:db8::1]:5060 -r [2001:db8::12]:5060 -g -w 1",
            "-A -f 7 -6 -s wrr",
            "-a -f 7 -6 -r [2001:db8::20]:0 -m -w 2",
        ]);
        assert_eq!(render_save(&t, true, &NumericNames), want);
        // The default view of the same service: flags, persistence, mask, pe, ops.
        let out = list(&numeric(ListView::Default), &one(s));
        assert!(out.contains("\nSCTP [2001:db8::1]:5060 mh (mh-fallback,mh-port) persistent 300 mask 64 pe sip ops\n"));
        assert!(out.contains("\n  -> [2001:db8::12]:5060          Local   1      0          0         \n"));
    }

    #[test]
    fn sched_flag_names_per_scheduler() {
        let all = svc_flags::SCHED1 | svc_flags::SCHED2 | svc_flags::SCHED3;
        assert_eq!(sched_flag_names("rr", all), "flag-1,flag-2,flag-3");
        assert_eq!(sched_flag_names("sh", all), "sh-fallback,sh-port");
        // ipvsadm prints " ()" when only a flag the scheduler has no name for is set.
        let s = svc(inet(Protocol::Tcp, "1.2.3.4", 80), "sh", svc_flags::SCHED3);
        let out = list(&numeric(ListView::Default), &one(s.clone()));
        assert!(out.contains("\nTCP  1.2.3.4:80 sh ()\n"));
        assert_eq!(
            render_save(&one(s), true, &NumericNames),
            "-A -t 1.2.3.4:80 -s sh -b \n"
        );
    }

    struct FakeNames;
    impl Names for FakeNames {
        fn host(&self, addr: IpAddr) -> Option<String> {
            match addr.to_string().as_str() {
                "192.168.10.100" => Some("www.example.com".to_string()),
                "192.168.10.11" => Some("a-rather-long-real-server-name.example.com".to_string()),
                "2001:db8::80" => Some("v6.example.com".to_string()),
                "10.9.9.9" => Some(format!("{}.example", "x".repeat(70))),
                _ => None,
            }
        }
        fn service(&self, port: u16, proto: Protocol) -> Option<String> {
            match (port, proto) {
                (80, Protocol::Tcp) => Some("http".to_string()),
                (53, Protocol::Udp) => Some("domain".to_string()),
                (443, Protocol::Tcp) => Some("https".to_string()),
                _ => None,
            }
        }
    }

    #[test]
    fn names_without_numeric() {
        let o = ListOptions::default();
        let out = render_list(&o, &example_table(), &[], &FakeNames).unwrap();
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  www.example.com:http wlc",
            "  -> a-rather-long-real-server-na Route   1      12         34        ",
            "  -> 192.168.10.12:http           Route   2      25         61        ",
            "TCP  www.example.com:https rr persistent 360 mask 255.255.255.0",
            "  -> 10.0.0.5:8443                Masq    1      3          0         ",
            "UDP  www.example.com:domain rr ops",
            "  -> 192.168.10.13:domain         Route   0      0          7         ",
            "TCP  [v6.example.com]:http wlc",
            "  -> [2001:db8::a0a0]:http        Masq    1      0          0         ",
            "FWM  1 sh (sh-port)",
            "  -> a-rather-long-real-server-na Tunnel  1      0          0         ",
        ]);
        assert_eq!(out, want);
        // -n ignores the resolver.
        let o = numeric(ListView::Default);
        assert_eq!(
            render_list(&o, &example_table(), &[], &FakeNames).unwrap(),
            list(&o, &example_table())
        );
        // Save without -n writes names, uncut.
        let save = render_save(&example_table(), false, &FakeNames);
        assert!(save.starts_with(&lines(&[
            "-A -t www.example.com:http -s wlc",
            "-a -t www.example.com:http -r a-rather-long-real-server-name.example.com:http -g -w 1",
        ])));
        // Connections resolve too (fwmark templates, proto IP, never map ports).
        let c = ConnSnapshot {
            proto_name: "IP".into(),
            state: "NONE".into(),
            expires_s: 60,
            caddr: ip("203.0.113.0"),
            cport: 0,
            vaddr: ip("192.168.10.100"),
            vport: 80,
            daddr: ip("192.168.10.11"),
            dport: 80,
            pe: None,
        };
        let o = ListOptions {
            connections: true,
            ..ListOptions::default()
        };
        let out = render_list(&o, &TableSnapshot::default(), &[c], &FakeNames).unwrap();
        assert!(out.ends_with(
            "IP  01:00  NONE        203.0.113.0:0      www.example.com:80 a-rather-long-real-server-name.example.com:80\n"
        ));
    }

    #[test]
    fn label_cut_at_33_and_name_at_59() {
        let mut s = svc(inet(Protocol::Tcp, "10.9.9.9", 80), "rr", 0);
        s.dests = vec![dest("10.9.9.9", 80, ForwardMethod::Route, 1, 0, 0)];
        let out = render_list(&ListOptions::default(), &one(s.clone()), &[], &FakeNames).unwrap();
        let x = "x".repeat(28);
        assert!(out.contains(&format!("\nTCP  {x} rr\n  -> {x} Route ")));
        let out = render_list(&numeric(ListView::Stats), &one(s.clone()), &[], &NumericNames).unwrap();
        assert!(out.contains(&format!("\n{:<33}{:>9}", "TCP  10.9.9.9:80", 0)), "{out}");
        let save = render_save(&one(s), false, &FakeNames);
        // 59 bytes: the name's first 59 characters, no port left.
        let first = save.lines().next().unwrap();
        assert_eq!(first, format!("-A -t {} -s rr", "x".repeat(59)));
    }

    #[test]
    fn ipv6_columns_not_cut() {
        let mut s = svc(
            inet(Protocol::Tcp, "2001:db8:1234:5678:9abc:def0:1234:5678", 443),
            "rr",
            0,
        );
        s.dests = vec![dest(
            "2001:db8:1234:5678:9abc:def0:1234:5679",
            8443,
            ForwardMethod::Masq,
            1,
            0,
            0,
        )];
        let out = list(&numeric(ListView::Stats), &one(s.clone()));
        assert!(out.contains("\nTCP  [2001:db8:1234:5678:9abc:def0:1234:5678]:443        0"));
        assert!(out.contains("\n  -> [2001:db8:1234:5678:9abc:def0:1234:5679]:8443        0"));
        let out = list(&numeric(ListView::Default), &one(s));
        assert!(
            out.contains("\n  -> [2001:db8:1234:5678:9abc:def0:1234:5679]:8443 Masq    1      0          0         \n")
        );
    }

    #[test]
    fn inet_ntop_forms() {
        let f = |s: &str| ntop(ip(s));
        assert_eq!(f("2001:db8::80"), "2001:db8::80");
        assert_eq!(f("::"), "::");
        assert_eq!(f("::1"), "::1");
        assert_eq!(f("1::"), "1::");
        assert_eq!(f("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
        assert_eq!(f("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1");
        assert_eq!(f("1:0:2:0:3:0:4:0"), "1:0:2:0:3:0:4:0");
        assert_eq!(f("::ffff:192.0.2.1"), "::ffff:192.0.2.1");
        assert_eq!(f("::192.0.2.1"), "::192.0.2.1");
        assert_eq!(f("::2"), "::2");
        assert_eq!(f("1:2:3:4:5:6::"), "1:2:3:4:5:6::");
    }

    #[test]
    fn proc_ip_vs_example() {
        let want = lines(&[
            "IP Virtual Server version 1.2.1 (size=4096)",
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn",
            "UDP  C0A80A64:0035 rr ops  ",
            "  -> C0A80A0D:0035      Route   0      0          7         ",
            "TCP  C0A80A64:0050 wlc  ",
            "  -> C0A80A0C:0050      Route   2      25         61        ",
            "  -> C0A80A0B:0050      Route   1      12         34        ",
            "TCP  C0A80A64:01BB rr  persistent 90000 FFFFFF00",
            "  -> 0A000005:20FB      Masq    1      3          0         ",
            "TCP  [2001:0db8:0000:0000:0000:0000:0000:0080]:0050 wlc ",
            "  -> [2001:0db8:0000:0000:0000:0000:0000:a0a0]:0050      Masq    1      0          0         ",
            "FWM  00000001 sh ",
            "  -> C0A80A0B:0000      Tunnel  1      0          0         ",
        ]);
        // fwmark services come after address services whatever the snapshot order.
        let mut t = example_table();
        let fwm = t.services.pop().unwrap();
        t.services.insert(0, fwm);
        assert_eq!(render_proc_ip_vs(&t), want);
        // HZ and fwmark in hex, ops on fwmark services.
        let mut f = svc(
            ServiceAddr::Fwmark {
                mark: 0x1000_1000,
                ipv6: false,
            },
            "rr",
            svc_flags::ONEPACKET | svc_flags::PERSISTENT,
        );
        f.config.timeout = 300;
        assert!(render_proc_ip_vs_hz(&one(f), 1000).ends_with("FWM  10001000 rr ops persistent 300000 FFFFFFFF\n"));
        // IPv6 persistence: the raw prefix length through ntohl (host-endian).
        let mut v6 = svc(inet(Protocol::Udp, "2001:db8::1", 53), "rr", svc_flags::PERSISTENT);
        v6.config.timeout = 1;
        let want = if cfg!(target_endian = "little") {
            "80000000"
        } else {
            "00000080"
        };
        assert!(render_proc_ip_vs(&one(v6)).ends_with(&format!(
            "UDP  [2001:0db8:0000:0000:0000:0000:0000:0001]:0035 rr persistent 250 {want}\n"
        )));
    }

    #[test]
    fn proc_conn_example() {
        let mut conns = example_conns();
        conns.truncate(1);
        conns.push(example_conns()[3].clone());
        let mut sip = sip_conn();
        sip.expires_s = 298;
        conns.push(sip);
        conns.push(ConnSnapshot {
            proto_name: "TCP".into(),
            state: "ESTABLISHED".into(),
            expires_s: 890,
            caddr: ip("2001:db8::7"),
            cport: 40000,
            vaddr: ip("2001:db8::80"),
            vport: 80,
            daddr: ip("2001:db8::a0a0"),
            dport: 80,
            pe: None,
        });
        let want = lines(&[
            "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData",
            "TCP CB007107 C958 C0A80A64 0050 C0A80A0B 0050 ESTABLISHED     897",
            "TCP CB007100 0000 C0A80A64 01BB 0A000005 20FB NONE            355",
            "UDP C6336404 13C4 C0A80A64 13C4 C0A80A14 13C4 UDP             298 sip a84b4c76e66710",
            "TCP 2001:0db8:0000:0000:0000:0000:0000:0007 9C40 2001:0db8:0000:0000:0000:0000:0000:0080 0050 2001:0db8:0000:0000:0000:0000:0000:a0a0 0050 ESTABLISHED     890",
        ]);
        assert_eq!(render_proc_conn(&conns), want);
    }

    #[test]
    fn proc_stats_example() {
        let t = TableSnapshot {
            total: tot(1234, 98765, 0, 123456789, 0),
            total_rates: rates(12, 340, 0, 41234, 0),
            ..TableSnapshot::default()
        };
        let want = lines(&[
            "   Total Incoming Outgoing         Incoming         Outgoing",
            "   Conns  Packets  Packets            Bytes            Bytes",
            "     4D2    181CD        0          75BCD15                0",
            "",
            " Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s",
            "       C      154        0             A112                0",
        ]);
        assert_eq!(render_proc_stats(&t), want);
    }

    #[test]
    fn system_names_services_file() {
        let n = SystemNames::with_services(
            "# comment\nhttp\t\t80/tcp\t\twww # WorldWideWeb\nhttp 80/udp\nwww-alt 80/tcp\ndomain 53/udp\nsip 5060/sctp\n\nbad line\n",
        );
        assert_eq!(n.service(80, Protocol::Tcp).as_deref(), Some("http"));
        assert_eq!(n.service(53, Protocol::Tcp), None);
        assert_eq!(n.service(53, Protocol::Udp).as_deref(), Some("domain"));
        assert_eq!(n.service(5060, Protocol::Sctp).as_deref(), Some("sip"));
        // Reverse lookup of a documentation address normally has no name; it must not
        // panic either way, and the answer is cached.
        let a = ip("192.0.2.1");
        assert_eq!(n.host(a), n.host(a));
    }
}
