//! New connections (ip_vs_schedule / ip_vs_sched_persist): find the service, check
//! that the packet may open a connection, ask the scheduler for a destination, and
//! create the entry. Runs only for packets without a connection; takes the
//! service's mutex (never on the established path).

use super::classify;
use super::{DropReason, Shared, Worker};
use crate::conn::{Conn, ConnKey};
use crate::service::{ForwardMethod, ServiceTable};

impl Worker {
    /// Create a connection for the first packet of a flow (ip_vs_schedule).
    pub(super) fn schedule(
        &mut self,
        sh: &Shared,
        svcs: &ServiceTable,
        now_ms: u64,
        pkt: &classify::L4Packet<'_>,
        key: ConnKey,
    ) -> Result<(), DropReason> {
        use crate::wire::l4::tcp_flags::{RST, SYN};
        let Some(svc) = svcs.get(pkt.proto, pkt.daddr, pkt.dport) else {
            return Err(DropReason::NoService);
        };
        if pkt.proto == crate::wire::ipv4::proto::TCP && (pkt.tcp_flags & RST != 0 || pkt.tcp_flags & SYN == 0) {
            return Err(DropReason::NotSyn);
        }
        if pkt.sport == 20 {
            // IPVS quirk: a client source port of 20 is never scheduled.
            return Err(DropReason::SourcePort20);
        }
        let _ = sh;
        let dest = {
            let mut st = svc.lock();
            let input = crate::sched::SchedInput {
                proto: crate::service::Protocol::from_ip_proto(pkt.proto).unwrap_or(crate::service::Protocol::Tcp),
                saddr: pkt.saddr.into(),
                sport: pkt.sport,
                daddr: pkt.daddr.into(),
                dport: pkt.dport,
                svc_flags: st.config.flags,
                now_ms,
            };
            let st = &mut *st;
            let idx = st
                .scheduler
                .schedule(&st.dests, &input)
                .ok_or(DropReason::NoDestination)?;
            st.dests[idx].clone()
        };
        let daddr = match dest.addr {
            std::net::IpAddr::V4(a) => a.octets(),
            std::net::IpAddr::V6(_) => return Err(DropReason::MethodUnsupported),
        };
        let dport = if dest.port != 0 { dest.port } else { pkt.dport };
        let no_output = dest.method() != ForwardMethod::Masq;
        let conn = Conn::new(dest, daddr, dport, no_output, now_ms);
        let c = self.conns.insert(key, conn).map_err(|_| DropReason::TableFull)?;
        c.dest.stats.conn(self.id);
        c.dest.svc_stats.conn(self.id);
        Ok(())
    }
}
