//! From a keepalived configuration to the IPVS table it builds (check/ipwrapper.c:
//! `init_services`, `ipvs_group_range_cmd`), and reconciliation of the services the
//! file owns through [`Ctl`], the same path (validation, errors) as ipvsadm.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::conf::{Config, GroupEntry, VirtualServer, VsAddr};
use crate::ctl::Ctl;
use crate::service::{DestConfig, Netmask, ServiceAddr, ServiceConfig, svc_flags};

/// Most addresses one `virtual_server_group` range may expand to (a /16).
pub const MAX_RANGE: u128 = 65536;

/// The IPVS services one `virtual_server` stands for (a group: one per address of
/// every range, and one per fwmark).
pub fn service_addrs(cfg: &Config, vs: &VirtualServer) -> Vec<ServiceAddr> {
    let proto = vs.protocol.unwrap_or(crate::service::Protocol::Udp);
    match &vs.addr {
        VsAddr::Inet(a, p) => vec![ServiceAddr::Inet {
            proto,
            addr: *a,
            port: *p,
        }],
        VsAddr::Fwmark(m) => vec![ServiceAddr::Fwmark {
            mark: *m,
            ipv6: vs.ipv6.unwrap_or(false),
        }],
        VsAddr::Group(g) => {
            let mut out = Vec::new();
            for e in cfg.group(g).unwrap_or(&[]) {
                match e {
                    GroupEntry::Fwmark { mark, ipv6 } => out.push(ServiceAddr::Fwmark {
                        mark: *mark,
                        ipv6: ipv6.or(vs.ipv6).unwrap_or(false),
                    }),
                    GroupEntry::Range { first, last, port } => {
                        let (a, b) = (ip_bits(*first), ip_bits(*last));
                        let n = (b - a + 1).min(MAX_RANGE);
                        for i in 0..n {
                            let addr = match first {
                                IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from((a + i) as u32)),
                                IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(a + i)),
                            };
                            out.push(ServiceAddr::Inet {
                                proto,
                                addr,
                                port: *port,
                            });
                        }
                    }
                }
            }
            out
        }
    }
}

/// How many services [`service_addrs`] returns for `vs`, without building them (the
/// fuzzers bound the table by it before expanding groups).
pub fn service_count(cfg: &Config, vs: &VirtualServer) -> u128 {
    match &vs.addr {
        VsAddr::Inet(..) | VsAddr::Fwmark(_) => 1,
        VsAddr::Group(g) => cfg
            .group(g)
            .unwrap_or(&[])
            .iter()
            .map(|e| match e {
                GroupEntry::Fwmark { .. } => 1,
                GroupEntry::Range { first, last, .. } => (ip_bits(*last) - ip_bits(*first) + 1).min(MAX_RANGE),
            })
            .sum(),
    }
}

fn ip_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// `-A` settings of a virtual server at `addr`.
pub fn service_config(vs: &VirtualServer, addr: ServiceAddr) -> ServiceConfig {
    let v6 = match addr {
        ServiceAddr::Inet { addr, .. } => addr.is_ipv6(),
        ServiceAddr::Fwmark { ipv6, .. } => ipv6,
    };
    let mut flags = vs.flags;
    if vs.persistence_timeout > 0 {
        flags |= svc_flags::PERSISTENT;
    }
    let netmask = match vs.granularity {
        Some(g) => g,
        None if v6 => Netmask::V6Prefix(128),
        None => Netmask::V4(std::net::Ipv4Addr::BROADCAST),
    };
    ServiceConfig {
        addr,
        scheduler: vs.scheduler.clone(),
        flags,
        timeout: vs.persistence_timeout,
        netmask,
        pe: vs.pe.clone(),
    }
}

/// `-a` settings of real server `rs` with `weight`.
pub fn dest_config(rs: &super::conf::RealServer, weight: i32) -> DestConfig {
    let m = rs
        .method
        .unwrap_or(super::conf::Method::of(crate::service::ForwardMethod::Masq));
    DestConfig {
        addr: rs.addr,
        port: rs.port,
        method: m.method,
        weight,
        u_threshold: rs.u_threshold,
        l_threshold: rs.l_threshold,
        tun_type: m.tun_type,
        tun_port: m.tun_port,
        tun_csum: m.tun_csum,
    }
}

/// What one real server contributes to the table: its weight when alive, 0 when
/// failed with `inhibit_on_failure`, nothing when failed otherwise.
pub fn rs_weight(rs: &super::conf::RealServer, alive: bool, dynamic_weight: Option<u32>) -> Option<i32> {
    let w = dynamic_weight.unwrap_or(rs.weight.unwrap_or(1)) as i32;
    if alive {
        Some(w)
    } else if rs.inhibit.unwrap_or(false) {
        Some(0)
    } else {
        None
    }
}

/// The desired table: for every owned service its settings and destinations.
pub type Table = Vec<(ServiceConfig, Vec<DestConfig>)>;

/// The table keepalived builds at start-up: every real server alive (with `alpha`
/// failed until its checkers succeed), the sorry server when the quorum is not met.
pub fn initial_table(cfg: &Config) -> Table {
    let mut t = Table::new();
    for vs in &cfg.services {
        let dests = dests_for(vs, &|rs| !rs.alpha.unwrap_or(false), &|_| None);
        for addr in service_addrs(cfg, vs) {
            t.push((service_config(vs, addr), dests.clone()));
        }
    }
    t
}

/// Destinations of `vs` given which real servers are alive (quorum and sorry server
/// included, check/ipwrapper.c `update_quorum_state`).
pub fn dests_for(
    vs: &VirtualServer,
    alive: &dyn Fn(&super::conf::RealServer) -> bool,
    weight: &dyn Fn(&super::conf::RealServer) -> Option<u32>,
) -> Vec<DestConfig> {
    let mut out = Vec::new();
    let mut sum: u64 = 0;
    for rs in &vs.real_servers {
        let up = alive(rs);
        if let Some(w) = rs_weight(rs, up, weight(rs)) {
            if up {
                sum += w as u64;
            }
            out.push(dest_config(rs, w));
        }
    }
    if let Some(s) = &vs.sorry
        && sum < vs.quorum as u64
        && !out.iter().any(|d| d.addr == s.addr && d.port == s.port)
    {
        out.push(dest_config(s, s.weight.unwrap_or(1) as i32));
    }
    out
}

/// Bring the services in `table` to their desired state and delete `previously_owned`
/// services no longer in it; other services are left alone. Validated on a scratch
/// copy first: a table the control plane refuses changes nothing.
///
/// The scratch validation runs as one [`Ctl::batch`], and so do the changes to `ctl`
/// when they add or remove services or destinations: one table snapshot at the end
/// instead of a copy of the whole table (and a recount of its NAT real servers) per
/// command, which made loading 10,000 real servers take seconds (quadratic; see README
/// "keepalived", Numbers). The workers see the new services at once, when it ends.
/// Edits alone (a weight set by a checker) change the services in place, and a
/// reconciliation with nothing to change publishes nothing.
pub fn reconcile(ctl: &Ctl, table: &Table, previously_owned: &HashSet<ServiceAddr>) -> Result<(), String> {
    let scratch = Ctl::new(std::sync::Arc::new(crate::pipeline::Shared::new(Vec::new())));
    scratch.batch(|scratch| {
        for (svc, dests) in table {
            scratch
                .add_service(svc)
                .map_err(|e| format!("{}: {e}", fmt_addr(&svc.addr)))?;
            for d in dests {
                scratch
                    .add_dest(&svc.addr, d)
                    .map_err(|e| format!("{} -> {}:{}: {e}", fmt_addr(&svc.addr), d.addr, d.port))?;
            }
        }
        Ok::<_, String>(())
    })?;
    drop(scratch);
    let wanted: HashSet<ServiceAddr> = table.iter().map(|(s, _)| s.addr).collect();
    let gone: Vec<&ServiceAddr> = previously_owned.difference(&wanted).collect();
    let mut ops = Vec::new();
    for (svc, dests) in table {
        plan_service(ctl, svc, dests, &mut ops);
    }
    let apply = |ctl: &Ctl| -> Result<(), String> {
        for addr in &gone {
            match ctl.delete_service(addr) {
                Ok(()) | Err(crate::ctl::E_NO_SVC) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        for op in &ops {
            let (addr, r) = match op {
                Op::AddService(svc) => (svc.addr, ctl.add_service(svc)),
                Op::EditService(svc) => (svc.addr, ctl.edit_service(svc)),
                Op::DeleteDest(addr, daddr, dport) => (*addr, ctl.delete_dest(addr, *daddr, *dport)),
                Op::AddDest(addr, d) => (*addr, ctl.add_dest(addr, d)),
                Op::EditDest(addr, d) => (*addr, ctl.edit_dest(addr, d)),
            };
            r.map_err(|e| format!("{}: {e}", fmt_addr(&addr)))?;
        }
        Ok(())
    };
    let reshapes = !gone.is_empty()
        || ops
            .iter()
            .any(|o| matches!(o, Op::AddService(_) | Op::AddDest(..) | Op::DeleteDest(..)));
    if reshapes { ctl.batch(apply) } else { apply(ctl) }
}

/// One command of a reconciliation.
enum Op<'a> {
    AddService(&'a ServiceConfig),
    EditService(&'a ServiceConfig),
    DeleteDest(ServiceAddr, IpAddr, u16),
    AddDest(ServiceAddr, &'a DestConfig),
    EditDest(ServiceAddr, &'a DestConfig),
}

/// The commands that bring `svc` from its state in `ctl` to `dests`: the service added
/// or edited, destinations no longer wanted deleted, then each wanted one added or
/// edited (in `dests` order).
fn plan_service<'a>(ctl: &Ctl, svc: &'a ServiceConfig, dests: &'a [DestConfig], ops: &mut Vec<Op<'a>>) {
    let current = ctl.shared().services.load();
    let existing = current.find(&svc.addr).map(|s| {
        let st = s.lock();
        (
            st.config.clone(),
            st.dests.iter().map(|d| d.config()).collect::<Vec<_>>(),
        )
    });
    drop(current);
    let have = match existing {
        None => {
            ops.push(Op::AddService(svc));
            Vec::new()
        }
        Some((cfg, have)) => {
            if cfg != *svc {
                ops.push(Op::EditService(svc));
            }
            have
        }
    };
    // By (address, port): a service with thousands of real servers is not compared
    // pairwise.
    let wanted: HashSet<(IpAddr, u16)> = dests.iter().map(|d| (d.addr, d.port)).collect();
    for h in &have {
        if !wanted.contains(&(h.addr, h.port)) {
            ops.push(Op::DeleteDest(svc.addr, h.addr, h.port));
        }
    }
    let have: HashMap<(IpAddr, u16), &DestConfig> = have.iter().map(|h| ((h.addr, h.port), h)).collect();
    for d in dests {
        match have.get(&(d.addr, d.port)) {
            None => ops.push(Op::AddDest(svc.addr, d)),
            Some(&h) if h != d => ops.push(Op::EditDest(svc.addr, d)),
            Some(_) => {}
        }
    }
}

/// `-t 10.0.0.1:80` / `-f 1` style name of a service for messages.
pub fn fmt_addr(a: &ServiceAddr) -> String {
    match a {
        ServiceAddr::Inet { proto, addr, port } => {
            let flag = match proto {
                crate::service::Protocol::Tcp => "-t",
                crate::service::Protocol::Udp => "-u",
                crate::service::Protocol::Sctp => "--sctp-service",
            };
            match addr {
                IpAddr::V4(a) => format!("{flag} {a}:{port}"),
                IpAddr::V6(a) => format!("{flag} [{a}]:{port}"),
            }
        }
        ServiceAddr::Fwmark { mark, .. } => format!("-f {mark}"),
    }
}

/// The table as `ipvsadm -S -n` prints it (for `uvs check --keepalived`).
pub fn render(cfg: &Config, table: &Table) -> Result<String, String> {
    let ctl = Ctl::new(std::sync::Arc::new(crate::pipeline::Shared::new(Vec::new())));
    if let Some((tcp, tcpfin, udp)) = cfg.lvs_timeouts {
        ctl.set_timeouts(tcp, tcpfin, udp);
    }
    reconcile(&ctl, table, &HashSet::new())?;
    let snap = crate::ipvsadm::snapshot::capture(&ctl.shared().services.load(), &ctl.shared().ipvs.timeouts, &|_| {
        Default::default()
    });
    Ok(crate::ipvsadm::list::render_save(
        &snap,
        true,
        &crate::ipvsadm::list::SystemNames::new(),
    ))
}
