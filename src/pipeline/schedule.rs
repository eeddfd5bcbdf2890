//! New connections (`ip_vs_core.c`: ip_vs_try_schedule / ip_vs_schedule /
//! ip_vs_sched_persist): find the service, check that the packet may open a connection,
//! find or create the persistence template, ask the scheduler for a destination, and
//! create the entry. Runs only for packets without a connection: it takes the
//! service's mutex and, for persistent services, one shard lock of the shared
//! template table (never on the established path).
//!
//! Templates are shared by all workers (`ServiceTable::conn_shared`), so two workers
//! can never send one client network to two servers; the lock order is service mutex,
//! then template shard.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::classify;
use super::{Ctx, DropReason, Worker};
use crate::conn::template::{TemplateKey, TemplateRef};
use crate::conn::{Conn, ConnKey, conn_flags};
use crate::service::{
    Dest, ForwardMethod, Netmask, ServiceAddr, ServiceState, ServiceTable, VirtualService, svc_flags,
};
use crate::wire::ipv4::proto;

/// The destination chosen for a new connection.
struct Chosen {
    dest: Arc<Dest>,
    dport: u16,
    tpl: Option<TemplateRef>,
}

/// Service lookup (`ip_vs_ctl.c: ip_vs_service_find`) for an IPv4 address-based service: exact, then the FTP data
/// heuristic (TCP to port 20 or >= 1024 on a VIP with a port-21 service), then the
/// port-0 catch-all.
pub(crate) fn lookup_service(
    svcs: &ServiceTable,
    proto_: u8,
    daddr: Ipv4Addr,
    dport: u16,
) -> Option<&Arc<VirtualService>> {
    /// net.ipv4.ip_unprivileged_port_start default.
    const UNPRIVILEGED_PORT_START: u16 = 1024;
    svcs.get(proto_, daddr, dport)
        .or_else(|| {
            (proto_ == proto::TCP && (dport == 20 || dport >= UNPRIVILEGED_PORT_START))
                .then(|| svcs.get(proto_, daddr, 21))
                .flatten()
        })
        .or_else(|| svcs.get(proto_, daddr, 0))
}

/// The client network of `caddr` under the service netmask.
fn masked(caddr: Ipv4Addr, mask: &Netmask) -> Ipv4Addr {
    match mask {
        Netmask::V4(m) => Ipv4Addr::from_bits(caddr.to_bits() & m.to_bits()),
        Netmask::V6Prefix(_) => caddr,
    }
}

impl Worker {
    /// Create a connection for the first packet of a flow (ip_vs_schedule).
    pub(super) fn schedule(
        &mut self,
        cx: &Ctx<'_>,
        pkt: &classify::L4Packet<'_>,
        key: ConnKey,
    ) -> Result<(), DropReason> {
        let (sh, svcs, now_ms) = (cx.sh, cx.svcs, cx.now_ms);
        use crate::wire::l4::tcp_flags::{RST, SYN};
        let Some(svc) = lookup_service(svcs, pkt.proto, pkt.daddr, pkt.dport) else {
            return Err(DropReason::NoService);
        };
        if pkt.proto == proto::TCP
            && (pkt.tcp_flags & RST != 0 || (pkt.tcp_flags & SYN == 0 && !sh.ipvs.conn.sloppy_tcp()))
        {
            return Err(DropReason::NotSyn);
        }
        // drop_packet and the new-connection rate cap (after the service lookup,
        // before scheduling, as ip_vs_todrop).
        self.defense.admit(&sh.ipvs.defense, now_ms)?;
        if pkt.sport == 20 {
            // IPVS quirk: a client source port of 20 is never scheduled.
            return Err(DropReason::SourcePort20);
        }
        let svc_port = match svc.addr {
            ServiceAddr::Inet { port, .. } => port,
            ServiceAddr::Fwmark { .. } => pkt.dport,
        };
        let (chosen, one_packet) = {
            let mut guard = svc.lock();
            let st = &mut *guard;
            let one_packet = st.config.flags & svc_flags::ONEPACKET != 0 && pkt.proto == proto::UDP;
            // A full table refuses before the scheduler moves or a persistence template
            // is created: under a flood, templates (360 s) would otherwise pile up for
            // connections that can never be inserted.
            if !one_packet && !self.conns.make_room(now_ms) {
                return Err(DropReason::TableFull);
            }
            let chosen = if st.config.flags & svc_flags::PERSISTENT != 0 {
                schedule_persistent(&sh.ipvs, svcs, st, svc_port, pkt, now_ms)
            } else if pkt.dport != svc_port {
                // Port-0 and FTP-fallback services only work when persistent.
                None
            } else {
                pick(st, pkt, now_ms).map(|dest| {
                    let dport = if dest.port != 0 { dest.port } else { pkt.dport };
                    Chosen { dest, dport, tpl: None }
                })
            };
            (chosen.ok_or_else(|| leave(svc_port, pkt.dport))?, one_packet)
        };
        let Some(daddr) = chosen.dest.v4() else {
            return Err(DropReason::MethodUnsupported);
        };
        let no_output = chosen.dest.method() != ForwardMethod::Masq;
        let mut conn = Conn::new(chosen.dest, daddr, chosen.dport, no_output, now_ms);
        if one_packet {
            conn.flags |= conn_flags::ONE_PACKET;
        }
        conn.tpl = chosen.tpl;
        let c = self.conns.insert(key, conn).map_err(|_| DropReason::TableFull)?;
        c.dest.stats.conn(self.id);
        c.dest.svc_stats.conn(self.id);
        Ok(())
    }
}

/// ip_vs_leave without cache_bypass: an FTP service passes data-port packets to the
/// local stack; anything else is answered with ICMP port-unreachable.
fn leave(svc_port: u16, dport: u16) -> DropReason {
    if svc_port == 21 && dport != 21 {
        DropReason::NoService
    } else {
        DropReason::NoDestination
    }
}

/// The scheduler's pick.
fn pick(st: &mut ServiceState, pkt: &classify::L4Packet<'_>, now_ms: u64) -> Option<Arc<Dest>> {
    let input = crate::sched::SchedInput {
        proto: crate::service::Protocol::from_ip_proto(pkt.proto).unwrap_or(crate::service::Protocol::Tcp),
        saddr: pkt.saddr.into(),
        sport: pkt.sport,
        daddr: pkt.daddr.into(),
        dport: pkt.dport,
        svc_flags: st.config.flags,
        now_ms,
    };
    let idx = st.scheduler.schedule(&st.dests, &input)?;
    Some(st.dests[idx].clone())
}

/// ip_vs_sched_persist: the template decides, or the scheduler picks and a new
/// template remembers the pick.
fn schedule_persistent(
    ipvs: &crate::ipvs::Ipvs,
    svcs: &ServiceTable,
    st: &mut ServiceState,
    svc_port: u16,
    pkt: &classify::L4Packet<'_>,
    now_ms: u64,
) -> Option<Chosen> {
    let dport = pkt.dport;
    let own_port = dport == svc_port;
    let key = TemplateKey {
        proto: pkt.proto,
        snet: masked(pkt.saddr, &st.config.netmask),
        vaddr: pkt.daddr,
        vport: if own_port && svc_port != 21 { dport } else { 0 },
    };
    let cs = svcs.conn_shared();
    let timeout_ms = u64::from(st.config.timeout) * 1000;
    let tpl = cs
        .templates
        .find_or_create(key, now_ms, ipvs.conn.expire_quiescent_template(), || {
            let dest = pick(st, pkt, now_ms)?;
            let tpl_dport = if own_port && svc_port != 21 { dest.port } else { 0 };
            Some((dest, tpl_dport, timeout_ms))
        })?;
    let dest = tpl.dest.clone();
    let conn_dport = if own_port && dest.port != 0 { dest.port } else { dport };
    Some(Chosen {
        dest,
        dport: conn_dport,
        tpl: Some(tpl.control()),
    })
}
