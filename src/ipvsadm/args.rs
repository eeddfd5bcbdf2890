//! ipvsadm 1.31's `parse_options` + `process_options`, replayed step by step on the
//! option stream from [`super::popt`]. The state mirrors ipvsadm's
//! `struct ipvs_command_entry`, so order-dependent quirks (e.g. `-M` parsed according
//! to the address family known so far, `-r` copying the service port seen so far)
//! behave the same.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::addr::{HostLookup, atoi, parse_fwmark, parse_netmask_v4, parse_service_with, string_to_number};
use super::popt::{Opt, Popt};
use super::table::{self, *};
use super::{Command, ParseError, SyncState, TRY_HELP};
use crate::service::{ForwardMethod, Protocol, svc_flags};

/// `MAX_TIMEOUT`: 31 days.
const MAX_TIMEOUT: i64 = 86400 * 31;
/// libipvs `IPVS_SVC_PERSISTENT_TIMEOUT` (what a bare `-p` sends).
const DEFAULT_PERSISTENT_TIMEOUT: u32 = 6 * 60;
const DEF_MCAST_IFN: &str = "eth0";
/// Message for a second command option (`-A … -L`): ipvsadm.c's `set_command` wording
/// ("multiple commands specified"); ipvsadm 1.31 itself only accepts a command as the first option and
/// reports a later one as ``invalid option `-L'``, so `set_command`'s message is
/// unreachable there.
const MULTIPLE_COMMANDS: &str = "multiple commands specified";

/// `strncpy(dst, src, n - 1)` into a fixed buffer: keep at most `max` bytes.
fn truncated(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Address family as ipvsadm keeps it: 0 (unset), 4 or 6.
fn af_of(a: IpAddr) -> u8 {
    if a.is_ipv4() { 4 } else { 6 }
}

/// ipvsadm's `struct ipvs_command_entry` plus the option bits and format flags.
pub(super) struct Ce {
    pub(super) cmd: Cmd,
    pub(super) options: u64,
    pub(super) af: u8,
    pub(super) proto: Option<Protocol>,
    pub(super) addr: Option<IpAddr>,
    pub(super) port: u16,
    pub(super) fwmark: u32,
    pub(super) sched: String,
    pub(super) flags: u32,
    pub(super) timeout: u32,
    /// IPv4 mask bits (host order) or, for IPv6 services, the prefix length.
    pub(super) netmask: u32,
    pub(super) pe: String,
    pub(super) dest_af: u8,
    pub(super) dest_addr: Option<IpAddr>,
    pub(super) dest_port: u16,
    pub(super) method: ForwardMethod,
    pub(super) weight: i32,
    pub(super) u_threshold: u32,
    pub(super) l_threshold: u32,
    pub(super) tun_type: usize,
    pub(super) tun_port: u16,
    pub(super) tun_flags: u32,
    pub(super) state: SyncState,
    pub(super) mcast_ifn: String,
    pub(super) syncid: u8,
    pub(super) sync_maxlen: Option<u16>,
    pub(super) mcast_group: Option<IpAddr>,
    pub(super) mcast_port: Option<u16>,
    pub(super) mcast_ttl: Option<u8>,
    pub(super) sched_flags_arg: String,
    pub(super) timeouts: [u32; 3],
    /// Host names in addresses and netmasks.
    lookup: HostLookup,
}

impl Ce {
    fn new(cmd: Cmd, lookup: HostLookup) -> Ce {
        Ce {
            cmd,
            lookup,
            options: 0,
            af: 0,
            proto: None,
            addr: None,
            port: 0,
            fwmark: 0,
            sched: String::new(),
            flags: 0,
            timeout: 0,
            netmask: 0xffff_ffff,
            pe: String::new(),
            dest_af: 0,
            dest_addr: None,
            dest_port: 0,
            method: ForwardMethod::Route,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: 0,
            tun_port: 0,
            tun_flags: 0,
            state: SyncState::Master,
            mcast_ifn: String::new(),
            syncid: 0,
            sync_maxlen: None,
            mcast_group: None,
            mcast_port: None,
            mcast_ttl: None,
            sched_flags_arg: String::new(),
            timeouts: [0; 3],
        }
    }

    pub(super) fn has(&self, o: usize) -> bool {
        self.options & (1 << o) != 0
    }

    /// `set_option`.
    fn set_option(&mut self, o: usize) -> Result<(), ParseError> {
        if self.has(o) {
            return Err(ParseError::fail(format!(
                "multiple '{}' options specified",
                OPT_NAMES[o]
            )));
        }
        self.options |= 1 << o;
        Ok(())
    }

    fn number(arg: &str, min: i64, max: i64, msg: &str) -> Result<i64, ParseError> {
        string_to_number(arg, min, max).ok_or_else(|| ParseError::fail(msg))
    }

    /// One option of the `while (poptGetNextOpt(…))` loop.
    fn apply(&mut self, opt: Opt, arg: Option<String>) -> Result<(), ParseError> {
        let a = arg.clone().unwrap_or_default();
        match opt {
            Opt::TcpService | Opt::UdpService | Opt::SctpService => {
                self.set_option(O_SERVICE)?;
                self.proto = Some(match opt {
                    Opt::TcpService => Protocol::Tcp,
                    Opt::UdpService => Protocol::Udp,
                    _ => Protocol::Sctp,
                });
                let p = parse_service_with(&a, self.proto, self.lookup)
                    .ok_or_else(|| ParseError::fail("illegal virtual server address[:port] specified"))?;
                self.af = af_of(p.addr);
                if self.af == 6 {
                    self.netmask = 128;
                }
                self.addr = Some(p.addr);
                if let Some(port) = p.port {
                    self.port = port;
                }
            }
            Opt::FwmarkService => {
                self.set_option(O_SERVICE)?;
                self.af = 4;
                self.proto = Some(Protocol::Tcp);
                self.fwmark = parse_fwmark(&a)
                    .ok_or_else(|| ParseError::fail(format!("invalid fwmark value `{a}' specified")))?;
            }
            Opt::Scheduler => {
                self.set_option(O_SCHEDULER)?;
                self.sched = truncated(&a, 15);
            }
            Opt::Persistent => {
                self.set_option(O_PERSISTENT)?;
                self.flags |= svc_flags::PERSISTENT;
                self.timeout = match &arg {
                    None => DEFAULT_PERSISTENT_TIMEOUT,
                    Some(v) => parse_timeout(v, 1)?,
                };
            }
            Opt::Netmask => {
                self.set_option(O_NETMASK)?;
                if self.af != 6 {
                    let m = parse_netmask_v4(&a, self.lookup)
                        .ok_or_else(|| ParseError::fail("illegal virtual server persistent mask specified"))?;
                    self.netmask = m.to_bits();
                } else {
                    self.netmask = atoi(&a) as u32;
                    if !(1..=128).contains(&self.netmask) {
                        return Err(ParseError::fail("illegal ipv6 netmask specified"));
                    }
                }
            }
            Opt::RealServer => {
                self.set_option(O_SERVER)?;
                let p = parse_service_with(&a, self.proto, self.lookup)
                    .ok_or_else(|| ParseError::fail("illegal real server address[:port] specified"))?;
                self.dest_af = af_of(p.addr);
                self.dest_addr = Some(p.addr);
                self.dest_port = p.port.unwrap_or(self.port);
            }
            Opt::Ipip | Opt::Gatewaying | Opt::Masquerading => {
                self.set_option(O_FORWARD)?;
                self.method = match opt {
                    Opt::Ipip => ForwardMethod::Tunnel,
                    Opt::Gatewaying => ForwardMethod::Route,
                    _ => ForwardMethod::Masq,
                };
            }
            Opt::Weight => {
                self.set_option(O_WEIGHT)?;
                self.weight = Self::number(&a, 0, 65535, "illegal weight specified")? as i32;
            }
            Opt::UThreshold => {
                self.set_option(O_UTHRESHOLD)?;
                let max = i64::from(i32::MAX);
                self.u_threshold = Self::number(&a, 0, max, "illegal u_threshold specified")? as u32;
            }
            Opt::LThreshold => {
                self.set_option(O_LTHRESHOLD)?;
                let max = i64::from(i32::MAX);
                self.l_threshold = Self::number(&a, 0, max, "illegal l_threshold specified")? as u32;
            }
            Opt::Connection => self.set_option(O_CONNECTION)?,
            Opt::Numeric => self.set_option(O_NUMERIC)?,
            Opt::McastInterface => {
                self.set_option(O_MCAST)?;
                self.mcast_ifn = truncated(&a, 15);
            }
            Opt::Syncid => {
                self.set_option(O_SYNCID)?;
                self.syncid = Self::number(&a, 0, 255, "illegal syncid specified")? as u8;
            }
            Opt::Timeout => self.set_option(O_TIMEOUT)?,
            Opt::Daemon => self.set_option(O_DAEMON)?,
            Opt::Stats => self.set_option(O_STATS)?,
            Opt::Rate => self.set_option(O_RATE)?,
            Opt::Thresholds => self.set_option(O_THRESHOLDS)?,
            Opt::PersistentConn => self.set_option(O_PERSISTENTCONN)?,
            Opt::NoSort => self.set_option(O_NOSORT)?,
            Opt::Sort => {}
            Opt::Exact => self.set_option(O_EXACT)?,
            Opt::Ipv6 => {
                if self.fwmark == 0 {
                    return Err(ParseError::fail("-6 used before -f"));
                }
                self.af = 6;
                self.netmask = 128;
            }
            Opt::Ops => {
                self.set_option(O_ONEPACKET)?;
                self.flags |= svc_flags::ONEPACKET;
            }
            Opt::Pe => {
                self.set_option(O_PE)?;
                self.pe = truncated(&a, 16);
            }
            Opt::SchedFlags => {
                self.set_option(O_SCHED_FLAGS)?;
                self.sched_flags_arg = truncated(&a, 127);
            }
            Opt::McastGroup => {
                self.set_option(O_MCAST_GROUP)?;
                self.mcast_group = Some(if a.contains(':') {
                    match a.parse::<Ipv6Addr>() {
                        Ok(g) if g.is_multicast() => IpAddr::V6(g),
                        _ => {
                            let m = format!("invalid IPv6 mcast-group `{a}'");
                            return Err(ParseError::fail(m));
                        }
                    }
                } else {
                    match a.parse::<Ipv4Addr>() {
                        Ok(g) if g.is_multicast() => IpAddr::V4(g),
                        _ => {
                            let m = format!("invalid IPv4 mcast-group `{a}'");
                            return Err(ParseError::fail(m));
                        }
                    }
                });
            }
            Opt::McastPort => {
                self.set_option(O_MCAST_PORT)?;
                let v = Self::number(&a, 1, 65535, "illegal mcast-port specified")?;
                self.mcast_port = Some(v as u16);
            }
            Opt::McastTtl => {
                self.set_option(O_MCAST_TTL)?;
                let v = Self::number(&a, 1, 255, "illegal mcast-ttl specified")?;
                self.mcast_ttl = Some(v as u8);
            }
            Opt::SyncMaxlen => {
                self.set_option(O_SYNC_MAXLEN)?;
                let v = Self::number(&a, 1, 65535 - 20 - 8, "illegal sync-maxlen specified")?;
                self.sync_maxlen = Some(v as u16);
            }
            Opt::TunInfo => self.set_option(O_TUN_INFO)?,
            Opt::TunType => {
                self.set_option(O_TUN_TYPE)?;
                self.tun_type = TUN_V_OPT
                    .iter()
                    .position(|(n, _)| *n == a)
                    .ok_or_else(|| ParseError::fail("illegal tunnel type specified"))?;
            }
            Opt::TunPort => {
                self.set_option(O_TUN_PORT)?;
                self.tun_port = Self::number(&a, 1, 65535, "illegal tunnel port specified")? as u16;
            }
            Opt::TunNocsum => self.set_option(O_TUN_NOCSUM)?,
            Opt::TunCsum => {
                self.set_option(O_TUN_CSUM)?;
                self.tun_flags |= TUN_FLAG_CSUM;
            }
            Opt::TunRemcsum => {
                self.set_option(O_TUN_REMCSUM)?;
                self.tun_flags |= TUN_FLAG_REMCSUM;
            }
            // A second command option.
            Opt::AddService
            | Opt::EditService
            | Opt::DeleteService
            | Opt::Clear
            | Opt::List
            | Opt::Zero
            | Opt::AddServer
            | Opt::EditServer
            | Opt::DeleteServer
            | Opt::Set
            | Opt::Help
            | Opt::Version
            | Opt::Restore
            | Opt::Save
            | Opt::StartDaemon
            | Opt::StopDaemon => return Err(ParseError::fail(MULTIPLE_COMMANDS)),
        }
        Ok(())
    }
}

/// `parse_timeout(buf, min, MAX_TIMEOUT)` with a value present.
fn parse_timeout(v: &str, min: i64) -> Result<u32, ParseError> {
    string_to_number(v, min, MAX_TIMEOUT)
        .map(|n| n as u32)
        .ok_or_else(|| ParseError::fail(format!("invalid timeout value `{v}' specified")))
}

/// The whole of `process_options` up to the point where ipvsadm talks to the kernel.
pub(super) fn parse<S: AsRef<str>>(args: &[S], lookup: HostLookup) -> Result<Command, ParseError> {
    let mut popt = Popt::new(args);
    let (first, farg) = match popt.next_opt() {
        Some(Ok(x)) => x,
        _ => return Err(ParseError::usage(TRY_HELP)),
    };
    let cmd = match first {
        Opt::AddService => Cmd::Add,
        Opt::EditService => Cmd::Edit,
        Opt::DeleteService => Cmd::Del,
        Opt::AddServer => Cmd::AddDest,
        Opt::EditServer => Cmd::EditDest,
        Opt::DeleteServer => Cmd::DelDest,
        Opt::Clear => Cmd::Flush,
        Opt::List => Cmd::List,
        Opt::Zero => Cmd::Zero,
        Opt::Set => Cmd::Timeout,
        Opt::Restore => Cmd::Restore,
        Opt::Save => Cmd::Save,
        Opt::StartDaemon => Cmd::StartDaemon,
        Opt::StopDaemon => Cmd::StopDaemon,
        Opt::Help => return Ok(Command::Help),
        Opt::Version => return Ok(Command::Version),
        _ => return Err(ParseError::usage(TRY_HELP)),
    };
    let mut ce = Ce::new(cmd, lookup);
    if matches!(cmd, Cmd::StartDaemon | Cmd::StopDaemon) {
        ce.state = match farg.as_deref() {
            Some("master") => SyncState::Master,
            Some("backup") => SyncState::Backup,
            _ if cmd == Cmd::StartDaemon => {
                return Err(ParseError::fail("illegal start-daemon parameter specified"));
            }
            _ => return Err(ParseError::fail("illegal start_daemon specified")),
        };
    }

    while let Some(next) = popt.next_opt() {
        match next {
            Ok((opt, arg)) => ce.apply(opt, arg)?,
            Err(e) => {
                let m = format!("{}: {}", popt.bad_option(), e.text());
                return Err(ParseError::usage(m));
            }
        }
    }

    let mut leftovers = popt.leftovers().iter();
    if cmd == Cmd::Timeout {
        let (Some(a), Some(b), Some(c)) = (leftovers.next(), leftovers.next(), leftovers.next()) else {
            return Err(ParseError::fail("--set option requires 3 timeout values"));
        };
        ce.timeouts = [parse_timeout(a, 0)?, parse_timeout(b, 0)?, parse_timeout(c, 0)?];
    }
    if let Some(w) = leftovers.next() {
        return Err(ParseError::fail(format!("unexpected argument {w}")));
    }
    if !ce.sched_flags_arg.is_empty() {
        ce.flags &= !(svc_flags::SCHED1 | svc_flags::SCHED2 | svc_flags::SCHED3);
        ce.flags |= parse_sched_flags(&ce.sched, &ce.sched_flags_arg)?;
    }

    table::check_command(ce.cmd, ce.options)?;

    if matches!(cmd, Cmd::Add | Cmd::Edit) {
        if ce.fwmark == 0 && ce.port == 0 && ce.flags & svc_flags::PERSISTENT == 0 {
            return Err(ParseError::fail("Zero port specified for non-persistent service"));
        }
        if ce.flags & svc_flags::ONEPACKET != 0 && ce.fwmark == 0 && ce.proto != Some(Protocol::Udp) {
            return Err(ParseError::fail(
                "One-Packet Scheduling is only for UDP virtual services",
            ));
        }
        if ce.sched.is_empty() {
            ce.sched = DEF_SCHED.to_string();
        }
    }
    if cmd == Cmd::StartDaemon && ce.mcast_ifn.is_empty() {
        ce.mcast_ifn = DEF_MCAST_IFN.to_string();
    }
    if matches!(cmd, Cmd::AddDest | Cmd::EditDest) {
        let tunnel = ce.method == ForwardMethod::Tunnel;
        if ce.fwmark == 0 && (tunnel || ce.method == ForwardMethod::Route) {
            ce.dest_port = ce.port;
        }
        if ce.dest_af != ce.af && !tunnel {
            return Err(ParseError::fail(
                "Different address family is allowed only for tunneling servers",
            ));
        }
        let tun_opts = [O_TUN_TYPE, O_TUN_PORT, O_TUN_NOCSUM, O_TUN_CSUM, O_TUN_REMCSUM];
        if tun_opts.iter().any(|&o| ce.has(o)) && !tunnel {
            return Err(ParseError::fail("Tunnel options conflict with forward method"));
        }
        table::check_tunnel(ce.tun_type, ce.options)?;
    }

    ce.into_command()
}
