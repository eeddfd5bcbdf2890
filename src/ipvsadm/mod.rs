//! ipvsadm's command-line grammar, exactly as ipvsadm 1.31 parses it, plus the rules
//! file format read by `uvs run --rules FILE`.
//!
//! * [`parse_args`] turns one invocation (the words after `ipvsadm`) into a
//!   [`Command`], or a [`ParseError`] carrying the exact one-line message ipvsadm
//!   prints and its exit status.
//! * [`tokenize_line`] splits a line the way `ipvsadm -R` does.
//! * [`rules::parse_rules`] reads a whole rules file (one invocation per line, in
//!   `ipvsadm -S -n` form, with `#` comments as an extension).
//!
//! Layout: [`popt`] scans options the way popt does, `args` replays ipvsadm's
//! `parse_options`/`process_options` checks, [`addr`] holds the address and number
//! parsers, [`rules`] the rules file.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use crate::service::{DestConfig, ServiceAddr, ServiceConfig};

pub mod addr;
mod args;
mod build;
pub mod estimator;
pub mod list;
pub mod popt;
pub mod rules;
pub mod snapshot;
mod table;
pub mod usage;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;

pub use rules::{RulesError, parse_rules, parse_rules_with};

/// One ipvsadm invocation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// `-A`: add a virtual service.
    AddService(ServiceConfig),
    /// `-E`: replace a virtual service's settings (unspecified options are defaults).
    EditService(ServiceConfig),
    /// `-D`: delete a virtual service.
    DeleteService(ServiceAddr),
    /// `-C`: flush the table.
    Clear,
    /// `-R`: read invocations from stdin.
    Restore,
    /// `-S [-n]`: print the table as `-R` input.
    Save { numeric: bool },
    /// `-a`: add a real server.
    AddServer(ServiceAddr, DestConfig),
    /// `-e`: replace a real server's settings (unspecified options are defaults).
    EditServer(ServiceAddr, DestConfig),
    /// `-d`: delete a real server (address, port).
    DeleteServer(ServiceAddr, IpAddr, u16),
    /// `-L`/`-l` (also what an empty command line means).
    List(ListOptions),
    /// `-Z [service]`: zero counters of one or all services.
    Zero(Option<ServiceAddr>),
    /// `--set TCP TCPFIN UDP` (seconds; 0 keeps the current value).
    SetTimeouts { tcp: u32, tcpfin: u32, udp: u32 },
    /// `--start-daemon master|backup`.
    StartDaemon(DaemonConfig),
    /// `--stop-daemon master|backup`.
    StopDaemon { state: SyncState, syncid: u8 },
    /// `-h`: usage on stdout, exit 0.
    Help,
    /// `-v`: version line.
    Version,
}

/// Which columns `-L` shows. When several view options are given the first in this
/// order wins: stats, rate, thresholds, persistent-conn, tun-info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ListView {
    #[default]
    Default,
    /// `--stats`
    Stats,
    /// `--rate`
    Rate,
    /// `--thresholds`
    Thresholds,
    /// `--persistent-conn` (with `-c`: adds the PE columns to the connection list).
    PersistentConn,
    /// `--tun-info`
    TunInfo,
}

/// Options of `-L`. At most one of `service`, `connections`, `timeout`, `daemon`
/// is set (ipvsadm enforces it).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ListOptions {
    /// `-L -t|-u|-f …`: list one service.
    pub service: Option<ServiceAddr>,
    /// `-n`
    pub numeric: bool,
    /// `-c`: list the connection table.
    pub connections: bool,
    /// `--timeout`: list the three connection timeouts.
    pub timeout: bool,
    /// `--daemon`: list the sync daemons.
    pub daemon: bool,
    pub view: ListView,
    /// `-X`/`--exact`
    pub exact: bool,
    /// `--nosort`
    pub nosort: bool,
}

/// Sync daemon role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SyncState {
    Master,
    Backup,
}

impl SyncState {
    pub fn name(self) -> &'static str {
        match self {
            SyncState::Master => "master",
            SyncState::Backup => "backup",
        }
    }
}

/// `--start-daemon` settings. `None`/0 fields are left to the kernel's defaults
/// (group 224.0.0.81, port 8848, ttl 1, maxlen from the MTU), as ipvsadm sends 0.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DaemonConfig {
    pub state: SyncState,
    /// `--mcast-interface`, default `eth0` (at most 15 bytes, as ipvsadm truncates).
    pub mcast_ifn: String,
    /// `--syncid`, default 0 (= no filtering).
    pub syncid: u8,
    /// `--sync-maxlen` 1 … 65507.
    pub sync_maxlen: Option<u16>,
    /// `--mcast-group` (a multicast IPv4 or IPv6 address).
    pub mcast_group: Option<IpAddr>,
    /// `--mcast-port` 1 … 65535.
    pub mcast_port: Option<u16>,
    /// `--mcast-ttl` 1 … 255.
    pub mcast_ttl: Option<u8>,
}

/// A parse failure: the exact single line ipvsadm prints on stderr, and its exit status
/// (2 for ipvsadm's own checks, 255 for popt/usage errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub exit_code: i32,
}

impl ParseError {
    /// ipvsadm's `fail(2, …)`.
    pub(crate) fn fail(message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
            exit_code: 2,
        }
    }
    /// popt errors and the "Try …" hint.
    pub(crate) fn usage(message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
            exit_code: 255,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// The hint ipvsadm prints (exit 255) when the first option is not a command.
pub const TRY_HELP: &str = "Try `ipvsadm -h' or 'ipvsadm --help' for more information.";

/// The `-v` line.
pub const VERSION_LINE: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)";

/// Parse one invocation; `args` excludes argv[0]. No arguments at all means `-L`
/// (names resolved, i.e. not numeric).
pub fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    parse_args_with(args, addr::resolve_host_v4)
}

/// [`parse_args`] with host names resolved by `lookup` ([`addr::no_host_lookup`]:
/// numeric addresses only).
pub fn parse_args_with<S: AsRef<str>>(args: &[S], lookup: addr::HostLookup) -> Result<Command, ParseError> {
    if args.is_empty() {
        return Ok(Command::List(ListOptions::default()));
    }
    args::parse(args, lookup)
}

/// Split a line as `ipvsadm -R` does: on space, tab, CR (and LF), dropping every
/// token equal to `ipvsadm`. No quoting, no comments.
pub fn tokenize_line(line: &str) -> Vec<&str> {
    line.split([' ', '\t', '\r', '\n'])
        .filter(|t| !t.is_empty() && *t != "ipvsadm")
        .collect()
}
