//! The `net.ipv4.vs.*` sysctls that change connection handling (spec §7.2), as atomics
//! so the control thread can flip them while workers read them without a lock.
//!
//! `secure_tcp` is not here: it already lives in `pipeline::Shared` because the
//! established path reads it on every TCP segment. Everything in this struct is read
//! only on the new-connection path (or, for `expire_nodest_conn` and
//! `conn_reuse_mode`, when a packet hits an entry that is about to be replaced).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

use super::template::TemplateTable;

/// Connection sysctls with the kernel's defaults.
#[derive(Debug)]
pub struct Settings {
    expire_nodest_conn: AtomicBool,
    expire_quiescent_template: AtomicBool,
    sloppy_tcp: AtomicBool,
    conn_reuse_mode: AtomicU8,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expire_nodest_conn: AtomicBool::new(false),
            expire_quiescent_template: AtomicBool::new(false),
            sloppy_tcp: AtomicBool::new(false),
            conn_reuse_mode: AtomicU8::new(1),
        }
    }
}

impl Settings {
    /// §5.3: expire (and reschedule the packet of) connections whose dest was deleted.
    pub fn expire_nodest_conn(&self) -> bool {
        self.expire_nodest_conn.load(Relaxed)
    }
    pub fn set_expire_nodest_conn(&self, on: bool) {
        self.expire_nodest_conn.store(on, Relaxed);
    }
    /// §5.2: a template whose dest has weight 0 is invalid.
    pub fn expire_quiescent_template(&self) -> bool {
        self.expire_quiescent_template.load(Relaxed)
    }
    pub fn set_expire_quiescent_template(&self, on: bool) {
        self.expire_quiescent_template.store(on, Relaxed);
    }
    /// §2.3: TCP connections may start on a non-SYN segment.
    pub fn sloppy_tcp(&self) -> bool {
        self.sloppy_tcp.load(Relaxed)
    }
    pub fn set_sloppy_tcp(&self, on: bool) {
        self.sloppy_tcp.store(on, Relaxed);
    }
    /// §2.2: bit 1 = a SYN on a TIME_WAIT/CLOSE entry reschedules; bit 2 = also on a
    /// FIN_WAIT entry of a DR/TUN connection. Default 1.
    pub fn conn_reuse_mode(&self) -> u8 {
        self.conn_reuse_mode.load(Relaxed)
    }
    pub fn set_conn_reuse_mode(&self, mode: u8) {
        self.conn_reuse_mode.store(mode, Relaxed);
    }
}

/// Connection state shared by every worker: the persistence templates and the
/// sysctls. It hangs off the service table (`ServiceTable::conn_shared`), whose
/// snapshots all share one instance, so every worker sees the same templates.
#[derive(Debug, Default)]
pub struct ConnShared {
    pub templates: TemplateTable,
    pub settings: Settings,
}
