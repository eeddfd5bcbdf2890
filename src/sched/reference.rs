//! The kernel's linear scans as schedulers (`ip_vs_lc.c`, `ip_vs_wlc.c`, `ip_vs_sed.c`,
//! `ip_vs_nq.c`, `ip_vs_ovf.c`, `ip_vs_lblc.c`, `ip_vs_lblcr.c`: one pass over the
//! destination list per pick), for benchmarks to measure beside the tree versions
//! that uvs schedules with. The tests in `index.rs` check both pick alike.

use std::sync::Arc;

use super::{DestChange, SchedInput, Scheduler};
use super::{LocalityLeastConnection, LocalityLeastConnectionReplicated};
use crate::dest::Dest;

/// The schedulers that have a linear reference scan (the least-connection family).
pub const NAMES: &[&str] = &["lc", "wlc", "sed", "nq", "ovf", "lblc", "lblcr"];

/// A scheduler that runs the kernel's scan on every pick.
struct Scan {
    name: &'static str,
    scan: fn(&[Arc<Dest>]) -> Option<usize>,
}

impl Scheduler for Scan {
    fn name(&self) -> &'static str {
        self.name
    }
    fn update(&mut self, _dests: &[Arc<Dest>], _svc_flags: u32, _change: DestChange) {}
    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        (self.scan)(dests)
    }
}

/// The linear-scan version of scheduler `name` (one of [`NAMES`]), initialised for
/// `dests`.
pub fn new_reference_scheduler(name: &str, dests: &[Arc<Dest>], svc_flags: u32) -> Option<Box<dyn Scheduler>> {
    let scan = |name, scan| -> Box<dyn Scheduler> { Box::new(Scan { name, scan }) };
    let mut s: Box<dyn Scheduler> = match name {
        "lc" => scan("lc", super::lc::scan),
        "wlc" => scan("wlc", super::common::wlc_pick),
        "sed" => scan("sed", super::sed::scan),
        "nq" => scan("nq", super::nq::scan),
        "ovf" => scan("ovf", super::ovf::scan),
        "lblc" => Box::new(LocalityLeastConnection::reference()),
        "lblcr" => Box::new(LocalityLeastConnectionReplicated::reference()),
        _ => return None,
    };
    s.update(dests, svc_flags, DestChange::ServiceEdited);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::testutil::{dest_conns, pick1};

    #[test]
    fn scans_pick_like_the_trees() {
        let dests: Vec<_> = (1..=9u8)
            .map(|i| dest_conns(i, i32::from(i % 3 + 1), u32::from((i * 7) % 5), u32::from(i)))
            .collect();
        for name in NAMES {
            let mut fast = crate::sched::new_scheduler(name, &dests, 0).unwrap();
            let mut scan = new_reference_scheduler(name, &dests, 0).unwrap();
            assert_eq!(scan.name(), *name);
            assert_eq!(pick1(scan.as_mut(), &dests), pick1(fast.as_mut(), &dests), "{name}");
        }
        assert!(new_reference_scheduler("rr", &dests, 0).is_none());
    }
}
