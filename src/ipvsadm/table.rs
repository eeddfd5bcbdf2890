//! ipvsadm 1.31's tables: command and option names as its messages spell them, the
//! command × option legality table, the tunnel type × option table, and the checks
//! that walk them (`generic_opt_check`, `tunnel_opt_check`), plus `parse_sched_flags`.

use super::ParseError;
use crate::service::svc_flags;

/// Commands in ipvsadm's `CMD_*` order (index into [`CMD_NAMES`] and [`CMD_V_OPT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

#[rustfmt::skip]
pub(super) const CMD_NAMES: [&str; 14] = [
    "add-service", "edit-service", "delete-service", "flush", "list", "add-server",
    "delete-server", "edit-server", "set", "start-daemon", "stop-daemon", "restore", "save",
    "zero",
];

/// `optnames[]`: the names used in every option-related message.
#[rustfmt::skip]
pub(super) const OPT_NAMES: [&str; 34] = [
    "numeric", "connection", "service-address", "scheduler", "persistent", "netmask",
    "real-server", "forwarding-method", "weight", "u-threshold", "l-threshold",
    "mcast-interface", "timeout", "daemon", "stats", "rate", "thresholds",
    "persistent-conn", "nosort", "syncid", "exact", "ops", "pe", "sched-flags",
    "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen", "tun-info", "tun-type",
    "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum",
];

pub(super) const O_NUMERIC: usize = 0;
pub(super) const O_CONNECTION: usize = 1;
pub(super) const O_SERVICE: usize = 2;
pub(super) const O_SCHEDULER: usize = 3;
pub(super) const O_PERSISTENT: usize = 4;
pub(super) const O_NETMASK: usize = 5;
pub(super) const O_SERVER: usize = 6;
pub(super) const O_FORWARD: usize = 7;
pub(super) const O_WEIGHT: usize = 8;
pub(super) const O_UTHRESHOLD: usize = 9;
pub(super) const O_LTHRESHOLD: usize = 10;
pub(super) const O_MCAST: usize = 11;
pub(super) const O_TIMEOUT: usize = 12;
pub(super) const O_DAEMON: usize = 13;
pub(super) const O_STATS: usize = 14;
pub(super) const O_RATE: usize = 15;
pub(super) const O_THRESHOLDS: usize = 16;
pub(super) const O_PERSISTENTCONN: usize = 17;
pub(super) const O_NOSORT: usize = 18;
pub(super) const O_SYNCID: usize = 19;
pub(super) const O_EXACT: usize = 20;
pub(super) const O_ONEPACKET: usize = 21;
pub(super) const O_PE: usize = 22;
pub(super) const O_SCHED_FLAGS: usize = 23;
pub(super) const O_MCAST_GROUP: usize = 24;
pub(super) const O_MCAST_PORT: usize = 25;
pub(super) const O_MCAST_TTL: usize = 26;
pub(super) const O_SYNC_MAXLEN: usize = 27;
pub(super) const O_TUN_INFO: usize = 28;
pub(super) const O_TUN_TYPE: usize = 29;
pub(super) const O_TUN_PORT: usize = 30;
pub(super) const O_TUN_NOCSUM: usize = 31;
pub(super) const O_TUN_CSUM: usize = 32;
pub(super) const O_TUN_REMCSUM: usize = 33;

/// Tunnel checksum flag bits (`IP_VS_TUNNEL_ENCAP_FLAG_*`; NOCSUM is 0).
pub(super) const TUN_FLAG_CSUM: u32 = 1;
pub(super) const TUN_FLAG_REMCSUM: u32 = 2;

/// `commands_v_options`: '+' compulsory, 'x' illegal, '1' exclusive, ' ' optional.
pub(super) const CMD_V_OPT: [&[u8; 34]; 14] = [
    /* add-service    */ b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    /* edit-service   */ b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
    /* delete-service */ b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* flush          */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* list           */ b" 11xxxxxxxxx11       xxxxxxx xxxxx",
    /* add-server     */ b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    /* delete-server  */ b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* edit-server    */ b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
    /* set            */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* start-daemon   */ b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxx",
    /* stop-daemon    */ b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx",
    /* restore        */ b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* save           */ b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    /* zero           */ b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// `tunnel_types_v_options` over (tun-port, tun-nocsum, tun-csum, tun-remcsum).
pub(super) const TUN_OPTS: [usize; 4] = [O_TUN_PORT, O_TUN_NOCSUM, O_TUN_CSUM, O_TUN_REMCSUM];
pub(super) const TUN_V_OPT: [(&str, &[u8; 4]); 3] = [("ipip", b"xxxx"), ("gue", b"+111"), ("gre", b"x11x")];

/// Walk one row of a legality table over the options `opts` (indices into
/// [`OPT_NAMES`]); `what` names the row in messages ("'list' command").
fn check_row(row: &[u8], opts: &[usize], options: u64, what: &str) -> Result<(), ParseError> {
    let mut last: Option<usize> = None;
    for (&rule, &o) in row.iter().zip(opts) {
        let name = OPT_NAMES[o];
        let msg = if options & (1 << o) == 0 {
            match rule {
                b'+' => format!("You need to supply the '{name}' option for the {what}"),
                _ => continue,
            }
        } else {
            match (rule, last) {
                (b'x', _) => format!("Illegal '{name}' option with the {what}"),
                (b'1', None) => {
                    last = Some(o);
                    continue;
                }
                (b'1', Some(l)) => format!(
                    "The option '{name}' conflicts with the '{}' option in the {what}",
                    OPT_NAMES[l]
                ),
                _ => continue,
            }
        };
        return Err(ParseError::fail(msg));
    }
    Ok(())
}

/// `generic_opt_check`: `options` has bit `O_*` set for each option given.
pub(super) fn check_command(cmd: Cmd, options: u64) -> Result<(), ParseError> {
    let all: Vec<usize> = (0..OPT_NAMES.len()).collect();
    let what = format!("'{}' command", CMD_NAMES[cmd as usize]);
    check_row(CMD_V_OPT[cmd as usize], &all, options, &what)
}

/// `tunnel_opt_check` for tunnel type `tun_type` (index into [`TUN_V_OPT`]).
pub(super) fn check_tunnel(tun_type: usize, options: u64) -> Result<(), ParseError> {
    let (name, row) = TUN_V_OPT[tun_type];
    check_row(row, &TUN_OPTS, options, &format!("'{name}' tunnel type"))
}

/// ipvsadm's default scheduler.
pub(super) const DEF_SCHED: &str = "wlc";

/// `parse_sched_flags`.
pub(super) fn parse_sched_flags(sched: &str, arg: &str) -> Result<u32, ParseError> {
    let sched = if sched.is_empty() { DEF_SCHED } else { sched };
    let mut flags = 0;
    let mut any = false;
    for flag in arg.split(',').filter(|f| !f.is_empty()) {
        any = true;
        let (bit, only) = match flag {
            "flag-1" => (svc_flags::SCHED1, None),
            "flag-2" => (svc_flags::SCHED2, None),
            "flag-3" => (svc_flags::SCHED3, None),
            "sh-fallback" => (svc_flags::SCHED1, Some("sh")),
            "sh-port" => (svc_flags::SCHED2, Some("sh")),
            "mh-fallback" => (svc_flags::SCHED1, Some("mh")),
            "mh-port" => (svc_flags::SCHED2, Some("mh")),
            _ => return Err(ParseError::fail(format!("invalid scheduler flag `{flag}'"))),
        };
        if only.is_some_and(|s| s != sched) {
            return Err(ParseError::fail(format!("incompatible scheduler flag `{flag}'")));
        }
        flags |= bit;
    }
    if !any {
        // ipvsadm dereferences a NULL token here (e.g. `-b ,`); report it as invalid.
        return Err(ParseError::fail(format!("invalid scheduler flag `{arg}'")));
    }
    Ok(flags)
}
