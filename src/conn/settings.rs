//! The `net.ipv4.vs.*` sysctls that change connection handling, as atomics so the
//! control thread can flip them (`uvs sysctl`, see `crate::sysctl`) while workers read
//! them without a lock. They are one part of the director's IPVS settings
//! (`crate::ipvs::Ipvs`, beside the timeouts, the defenses (`secure_tcp` among them)
//! and the sync settings).
//!
//! Everything in this struct is read only on the new-connection path (or, for
//! `expire_nodest_conn` and `conn_reuse_mode`, when a packet hits an entry that is
//! about to be replaced).

use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

use super::template::TemplateTable;

/// One of the connection sysctls, by its `net.ipv4.vs.*` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    ExpireNodestConn,
    ExpireQuiescentTemplate,
    SloppyTcp,
    ConnReuseMode,
}

/// Connection sysctls with the kernel's defaults. Each holds the integer written, as
/// the kernel's `proc_dointvec` stores it (`ip_vs_ctl.c: vs_vars`); the getters read
/// it as the kernel's code does (non-zero = on; `conn_reuse_mode` as a bit map).
#[derive(Debug)]
pub struct Settings {
    expire_nodest_conn: AtomicI32,
    expire_quiescent_template: AtomicI32,
    sloppy_tcp: AtomicI32,
    conn_reuse_mode: AtomicI32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expire_nodest_conn: AtomicI32::new(0),
            expire_quiescent_template: AtomicI32::new(0),
            sloppy_tcp: AtomicI32::new(0),
            conn_reuse_mode: AtomicI32::new(1),
        }
    }
}

impl Settings {
    fn cell(&self, k: Knob) -> &AtomicI32 {
        match k {
            Knob::ExpireNodestConn => &self.expire_nodest_conn,
            Knob::ExpireQuiescentTemplate => &self.expire_quiescent_template,
            Knob::SloppyTcp => &self.sloppy_tcp,
            Knob::ConnReuseMode => &self.conn_reuse_mode,
        }
    }
    /// The value as written (what `sysctl` reads back).
    pub fn get(&self, k: Knob) -> i32 {
        self.cell(k).load(Relaxed)
    }
    /// Write a value; workers see it on their next packet.
    pub fn set(&self, k: Knob, v: i32) {
        self.cell(k).store(v, Relaxed);
    }
    /// `ip_vs_core.c: ip_vs_in`: expire (and reschedule the packet of) connections
    /// whose dest was deleted.
    pub fn expire_nodest_conn(&self) -> bool {
        self.get(Knob::ExpireNodestConn) != 0
    }
    pub fn set_expire_nodest_conn(&self, on: bool) {
        self.set(Knob::ExpireNodestConn, i32::from(on));
    }
    /// `ip_vs_core.c: ip_vs_sched_persist`: a template whose dest has weight 0 is
    /// invalid.
    pub fn expire_quiescent_template(&self) -> bool {
        self.get(Knob::ExpireQuiescentTemplate) != 0
    }
    pub fn set_expire_quiescent_template(&self, on: bool) {
        self.set(Knob::ExpireQuiescentTemplate, i32::from(on));
    }
    /// `ip_vs_proto_tcp.c: tcp_conn_schedule`: TCP connections may start on a
    /// non-SYN segment.
    pub fn sloppy_tcp(&self) -> bool {
        self.get(Knob::SloppyTcp) != 0
    }
    pub fn set_sloppy_tcp(&self, on: bool) {
        self.set(Knob::SloppyTcp, i32::from(on));
    }
    /// `ip_vs_core.c: is_new_conn_expected`: bit 1 (any non-zero value) = a SYN on a
    /// TIME_WAIT/CLOSE entry reschedules; bit 2 = also on a FIN_WAIT entry of a DR/TUN
    /// connection. Default 1. Returned as those two bits (the kernel tests the value
    /// for non-zero and `& 2`).
    pub fn conn_reuse_mode(&self) -> u8 {
        let v = self.get(Knob::ConnReuseMode);
        u8::from(v != 0) | (v & 2) as u8
    }
    pub fn set_conn_reuse_mode(&self, mode: u8) {
        self.set(Knob::ConnReuseMode, i32::from(mode));
    }
}

/// Connection state shared by every worker: the persistence templates (their policy
/// knob, `expire_quiescent_template`, is a sysctl in `crate::ipvs::Ipvs`). It hangs
/// off the service table (`ServiceTable::conn_shared`), whose snapshots all share one
/// instance, so every worker sees the same templates.
#[derive(Debug, Default)]
pub struct ConnShared {
    pub templates: TemplateTable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_as_written_and_read_as_the_kernel_reads_them() {
        let s = Settings::default();
        assert_eq!((s.get(Knob::ConnReuseMode), s.conn_reuse_mode()), (1, 1));
        s.set(Knob::ExpireNodestConn, 7);
        assert!(s.expire_nodest_conn());
        assert_eq!(s.get(Knob::ExpireNodestConn), 7);
        s.set(Knob::ExpireNodestConn, 0);
        assert!(!s.expire_nodest_conn());
        // conn_reuse_mode: non-zero enables, bit 2 adds FIN_WAIT of DR/TUN.
        for (v, bits) in [(0, 0), (1, 1), (2, 3), (3, 3), (4, 1), (256, 1), (-1, 3)] {
            s.set(Knob::ConnReuseMode, v);
            assert_eq!(s.conn_reuse_mode(), bits, "conn_reuse_mode={v}");
        }
        s.set_sloppy_tcp(true);
        assert_eq!(s.get(Knob::SloppyTcp), 1);
    }
}
