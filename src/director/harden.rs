//! `uvs run` under attack and with least privilege: the anti-flood defense settings
//! (see [`crate::conn::defense`]), per-state timeouts, and dropping privileges once
//! every socket is open.
//!
//! Privileges. Everything that needs a capability happens at start: packet sockets
//! and rings (CAP_NET_RAW), ring sizes and fanout (no capability beyond the socket),
//! the control socket and the metrics port. After that the director only reads and
//! writes the sockets it holds (sends on a packet socket and PACKET_FANOUT_DATA
//! re-installs of the steering program are not capability-checked) and reads
//! /proc/net/route. So, before any worker or control thread starts, [`drop_privileges`]
//!
//! 1. empties the capability bounding set except CAP_NET_RAW (+ CAP_NET_ADMIN with
//!    `--drop-kernel-copy`, whose nftables updates run `nft` when the VIPs change;
//!    and CAP_BPF on kernels before 6.5 with unprivileged BPF disabled, where updating
//!    the steering program's VIP map needs it: [`crate::ring::fanout`]);
//! 2. with `--user NAME`, switches to that user's uid, gid and no supplementary
//!    groups (keeping capabilities across the switch), and hands the control socket
//!    to that user (still mode 0600);
//! 3. sets the permitted and effective sets to CAP_NET_RAW (+ CAP_NET_ADMIN as
//!    above, raised as ambient for `nft` when running as a user), and sets
//!    no_new_privs;
//! 4. reads its own /proc status back and fails if any other capability is left.
//!
//! Capabilities are per thread on Linux, so this runs while the process has a single
//! thread; threads started afterwards inherit the reduced sets. The user switch and
//! prctl's flags go through nix; capset(2) and the bounding/ambient prctls, which nix
//! lacks, are in [`crate::sys::caps`] (the `caps` crate would not remove the
//! single-thread requirement, and splits the one capset call into three).

use std::io;

use nix::sys::prctl;
use nix::unistd::{Gid, Uid, User, chown, geteuid, setgroups, setresgid, setresuid};

/// The `uvs run` options of this module.
#[derive(clap::Args, Debug, Clone)]
pub struct Hardening {
    /// Defense drop_entry: 0 off, 1 automatic (when a worker's table has fewer than
    /// --amemthresh % free), 3 always: randomly expire half-open entries.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub drop_entry: u8,
    /// Defense drop_packet: 0 off, 1 automatic (rate from the table fill), 3 always (1
    /// in --am-droprate new-connection packets dropped).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub drop_packet: u8,
    /// Defense secure_tcp: 0 off, 1 automatic, 3 always: the stricter TCP state table.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub secure_tcp: u8,
    /// Automatic defenses turn on when less than this percent of a worker's table is
    /// free (IPVS's amemthresh, in table slots rather than memory pages).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=99))]
    pub amemthresh: u8,
    /// drop_packet=3 drops 1 of this many new-connection packets.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub am_droprate: u32,
    /// New connections per second per worker (0: no cap); beyond it, packets that would
    /// create a connection are dropped (counter new_conn_rate_limit).
    #[arg(long, default_value_t = 0)]
    pub max_new_conns_per_sec: u32,
    /// A TCP state's timeout in seconds, e.g. `syn_recv=10` (repeatable; states as
    /// `ipvsadm -L -c` names them, plus `udp`).
    #[arg(long = "timeout", value_name = "STATE=SECS")]
    pub timeouts: Vec<String>,
    /// Set a `net.ipv4.vs.*` sysctl that uvs implements, e.g. `expire_nodest_conn=1`
    /// (repeatable; applied after the other options; `uvs sysctl -a` lists them).
    #[arg(long = "sysctl", value_name = "NAME=VALUE")]
    pub sysctls: Vec<String>,
    /// After opening its sockets, run as this user (keeping only CAP_NET_RAW).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Keep every capability (debugging only).
    #[arg(long)]
    pub keep_caps: bool,
    /// Probe a resolved real server's MAC after this many ms without an answer
    /// (default 30000; tests shorten it). Hidden: see README "Real servers' MACs".
    #[arg(long, hide = true, default_value_t = crate::director::neigh::REFRESH_MS)]
    pub arp_refresh_ms: u64,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            arp_refresh_ms: crate::director::neigh::REFRESH_MS,
            drop_entry: 0,
            drop_packet: 0,
            secure_tcp: 0,
            amemthresh: 10,
            am_droprate: 10,
            max_new_conns_per_sec: 0,
            timeouts: Vec::new(),
            sysctls: Vec::new(),
            user: None,
            keep_caps: false,
        }
    }
}

/// Apply the defense settings and timeouts to the director's shared state.
pub fn apply_settings(h: &Hardening, sh: &crate::pipeline::Shared) -> Result<(), String> {
    let d = &sh.ipvs.defense;
    let bad = |o: &str| format!("--{o}: want 0, 1, 2 or 3");
    d.set_drop_entry(h.drop_entry).map_err(|_| bad("drop-entry"))?;
    d.set_drop_packet(h.drop_packet).map_err(|_| bad("drop-packet"))?;
    d.set_secure_tcp(h.secure_tcp).map_err(|_| bad("secure-tcp"))?;
    d.set_amemthresh_pct(h.amemthresh);
    d.set_am_droprate(h.am_droprate);
    d.set_max_new_per_sec(h.max_new_conns_per_sec);
    for t in &h.timeouts {
        let err = || format!("--timeout {t}: want STATE=SECS, e.g. syn_recv=10 (SECS 1..=2147483)");
        let (name, secs) = t.split_once('=').ok_or_else(err)?;
        let secs: u32 = secs
            .parse()
            .ok()
            .filter(|s| (1..=2_147_483).contains(s))
            .ok_or_else(err)?;
        if name.eq_ignore_ascii_case("udp") {
            sh.ipvs.timeouts.set(0, 0, secs);
            continue;
        }
        let state = crate::conn::tcp::Timeouts::state_by_name(name).ok_or_else(err)?;
        sh.ipvs.timeouts.set_state(state, secs);
    }
    crate::sysctl::apply(&sh.ipvs, &h.sysctls).map_err(|e| format!("--sysctl {e}"))?;
    Ok(())
}

pub const CAP_SETPCAP: u32 = 8;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_BPF: u32 = 39;

fn check<T>(r: nix::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {}", io::Error::from(e)))
}

/// A capability set as /proc/PID/status prints it (`CapEff:` etc.), of this thread.
pub fn thread_caps(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// uid and gid of user `name`.
fn lookup_user(name: &str) -> Result<(Uid, Gid), String> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok((u.uid, u.gid)),
        Ok(None) => Err(format!("--user {name}: no such user")),
        Err(e) => Err(format!("--user {name}: {}", io::Error::from(e))),
    }
}

/// uid and gid of `--user`, if given.
pub fn user_ids(h: &Hardening) -> Result<Option<(u32, u32)>, String> {
    let ids = h.user.as_deref().map(lookup_user).transpose()?;
    Ok(ids.map(|(u, g)| (u.as_raw(), g.as_raw())))
}

/// Drop privileges as described in the module documentation. `net_admin`: keep
/// CAP_NET_ADMIN too. `bpf`: keep CAP_BPF too (the steering program's VIP map is
/// updated when the VIPs change; see [`crate::ring::fanout::Steering::needs_cap_bpf`]).
/// `socket`: the control socket to hand to `--user`.
pub fn drop_privileges(
    h: &Hardening,
    net_admin: bool,
    bpf: bool,
    socket: Option<&std::path::Path>,
) -> Result<(), String> {
    if h.keep_caps {
        return Ok(());
    }
    if !geteuid().is_root() && h.user.is_none() && thread_caps("CapEff:").unwrap_or(0) == 0 {
        return Ok(()); // nothing to drop
    }
    let wanted: u64 =
        (1 << CAP_NET_RAW) | if net_admin { 1 << CAP_NET_ADMIN } else { 0 } | if bpf { 1 << CAP_BPF } else { 0 };
    // Never ask for more than is permitted now (capset would refuse).
    let keep = wanted & thread_caps("CapPrm:").unwrap_or(wanted);
    let user = h.user.as_deref().map(lookup_user).transpose()?;
    // 1. The bounding set (needs CAP_SETPCAP, so first). A non-root uvs started with
    // file capabilities (setcap cap_net_raw+ep) has no CAP_SETPCAP: it cannot gain
    // anything beyond its permitted set anyway, so only that set is reduced.
    let setpcap = thread_caps("CapEff:").unwrap_or(0) & (1 << CAP_SETPCAP) != 0;
    for cap in (0..=last_cap()).filter(|_| setpcap) {
        if keep & (1 << cap) == 0 {
            match crate::sys::caps::bounding_drop(cap) {
                // EINVAL: a capability this kernel does not know.
                Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
                    return Err(format!("dropping capability {cap}: {e}"));
                }
                _ => {}
            }
        }
    }
    // 2. The user, keeping permitted capabilities across the switch.
    if let Some((uid, gid)) = user {
        if let Some(p) = socket {
            check(chown(p, Some(uid), Some(gid)), "chown control socket")?;
        }
        // glibc applies the id changes to every thread of the process.
        check(prctl::set_keepcaps(true), "PR_SET_KEEPCAPS")?;
        check(setgroups(&[gid]), "setgroups")?;
        check(setresgid(gid, gid, gid), "setresgid")?;
        check(setresuid(uid, uid, uid), "setresuid")?;
        check(prctl::set_keepcaps(false), "PR_SET_KEEPCAPS")?;
    }
    // 3. Permitted = effective = keep; ambient NET_ADMIN for nft as a user.
    let ambient = net_admin && user.is_some();
    crate::sys::caps::capset(keep, if ambient { 1 << CAP_NET_ADMIN } else { 0 }).map_err(|e| format!("capset: {e}"))?;
    if ambient {
        crate::sys::caps::ambient_raise(CAP_NET_ADMIN).map_err(|e| format!("raising ambient CAP_NET_ADMIN: {e}"))?;
    }
    check(prctl::set_no_new_privs(), "PR_SET_NO_NEW_PRIVS")?;
    // 4. Verify.
    let sets: &[&str] = if setpcap {
        &["CapEff:", "CapPrm:", "CapBnd:"]
    } else {
        &["CapEff:", "CapPrm:"]
    };
    for f in sets {
        let v = thread_caps(f).ok_or("cannot read /proc/thread-self/status")?;
        if v & !keep != 0 {
            return Err(format!("capabilities left after dropping: {f} {v:016x}"));
        }
    }
    Ok(())
}

/// `uvs run` opens AF_PACKET sockets, which need CAP_NET_RAW: checked before anything
/// is created (control socket, nftables table, claims), so an unprivileged start leaves
/// nothing behind and says what it lacks.
pub fn require_net_raw() -> Result<(), String> {
    const CAP_NET_RAW: u32 = 13;
    match thread_caps("CapEff:") {
        Some(eff) if eff & (1 << CAP_NET_RAW) == 0 => Err(
            "`uvs run` needs CAP_NET_RAW (root) to open packet sockets on its interfaces; nothing was started".into(),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_modes_apply() {
        let sh = crate::pipeline::Shared::new(Vec::new());
        let h = Hardening {
            drop_entry: 1,
            secure_tcp: 3,
            timeouts: vec!["syn_recv=5".into(), "UDP=7".into(), "established=99".into()],
            ..Default::default()
        };
        apply_settings(&h, &sh).unwrap();
        use crate::conn::tcp::TcpState;
        assert_eq!(sh.ipvs.timeouts.tcp(TcpState::SynRecv), 5);
        assert_eq!(sh.ipvs.timeouts.tcp(TcpState::Established), 99);
        assert_eq!(sh.ipvs.timeouts.udp(), 7);
        assert_eq!(sh.ipvs.timeouts.tcp(TcpState::TimeWait), 120, "others unchanged");
        assert_eq!(sh.ipvs.defense.modes(), (1, 0, 3));
        for bad in ["syn_recv", "nope=3", "syn_recv=0", "close=x"] {
            let h = Hardening {
                timeouts: vec![bad.into()],
                ..Default::default()
            };
            assert!(apply_settings(&h, &sh).is_err(), "{bad}");
        }
    }

    #[test]
    fn drops_everything_but_net_raw_in_a_child_thread() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // A thread of its own: capabilities are per thread, so the test runner's
        // other threads keep theirs.
        let r = std::thread::spawn(|| {
            drop_privileges(&Hardening::default(), false, false, None)?;
            let eff = thread_caps("CapEff:").unwrap();
            // A raw packet socket still opens; binding a port < 1024 does not.
            let raw = crate::ring::packet_socket(0).is_ok();
            let low = std::net::TcpListener::bind("127.0.0.1:1").is_ok();
            Ok::<_, String>((eff, raw, low))
        })
        .join()
        .unwrap();
        let (eff, raw, low) = r.unwrap();
        assert_eq!(eff, 1 << CAP_NET_RAW);
        assert!(raw, "CAP_NET_RAW kept");
        assert!(!low, "CAP_NET_BIND_SERVICE gone");
    }
}
