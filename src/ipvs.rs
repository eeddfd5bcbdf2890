//! The director's IPVS settings in one object, the counterpart of the kernel's
//! `struct netns_ipvs` (include/net/ip_vs.h): the `net.ipv4.vs.*` sysctls, the
//! protocol timeouts, the anti-flood defenses and the sync settings.
//!
//! One instance lives in the workers' shared state (`pipeline::Shared::ipvs`), so
//! every worker and the control thread see the same values; each is an atomic (or a
//! set of atomics) that the control thread writes and the workers read without a
//! lock. Every sysctl read and write (`uvs sysctl`, `uvs run --sysctl`, the state
//! file) goes through [`crate::sysctl`], which reads and writes only this object;
//! `ipvsadm --set` writes the timeouts.
//!
//! What is not here is state rather than settings: the persistence templates (on the
//! service table, `conn::settings::ConnShared`), the service table itself, and the
//! forwarding context (interfaces, routes, neighbours) in `pipeline::Shared`.
#![forbid(unsafe_code)]

use crate::conn::defense::Defense;
use crate::conn::settings::Settings;
use crate::conn::tcp::Timeouts;

/// The IPVS settings of one director (`struct netns_ipvs`), with the kernel's
/// defaults.
#[derive(Debug, Default)]
pub struct Ipvs {
    /// Protocol timeouts (`ipvsadm --set`, `uvs run --timeout`; the kernel's
    /// per-protocol `timeout_table`).
    pub timeouts: Timeouts,
    /// The anti-flood defenses (`drop_entry`, `drop_packet`, `secure_tcp`,
    /// `amemthresh`, `am_droprate`; `ip_vs_ctl.c: update_defense_level`) and the new
    /// connections per second cap.
    pub defense: Defense,
    /// The connection sysctls read on the new-connection path: `expire_nodest_conn`,
    /// `sloppy_tcp`, `conn_reuse_mode`, and the persistence-template policy
    /// `expire_quiescent_template`.
    pub conn: Settings,
    /// The sync sysctls (`net.ipv4.vs.sync_*`), read by the master sync hook and the
    /// sync daemons.
    pub sync: crate::sync::Settings,
}
