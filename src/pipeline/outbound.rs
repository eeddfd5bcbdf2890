//! Real server to client (ip_vs_out), NAT only: a reply RIP:rport -> client:cport
//! that belongs to a connection gets its source rewritten to VIP:vport and goes to
//! the routing table's next hop toward the client, resolved by the director's own
//! ARP. ICMP errors from a NAT real server are translated likewise. Anything else
//! from a real server's address is left to the kernel.

use super::classify::{IcmpError, L4Packet, TunnelIcmp};
use super::{Ctx, DropReason, Emit, Event, Iface, Shared, Verdict, Worker};
use crate::conn::{Conn, OutKey};
use crate::forward::{RxCtx, nat};
use crate::wire::ipv4;
use std::net::Ipv4Addr;

impl Worker {
    pub(super) fn outbound<E: Emit>(&mut self, cx: &Ctx<'_>, pkt: &L4Packet<'_>, out: &mut E) -> Verdict {
        let (sh, now_ms) = (cx.sh, cx.now_ms);
        let ok = OutKey {
            proto: pkt.proto,
            daddr: pkt.saddr,
            dport: pkt.sport,
            caddr: pkt.daddr,
            cport: pkt.dport,
        };
        let secure = self.secure_tcp(sh);
        let Some((ik, conn)) = self.conns.get_out_mut(&ok) else {
            return Verdict::Pass;
        };
        if !nat::l4_checksum_ok(pkt.ip, cx.rx.csum_partial) {
            return Verdict::Drop(DropReason::L4Checksum);
        }
        let hop = match reverse_hop(sh, conn, ok.caddr) {
            Ok(h) => h,
            Err(e) => {
                // No route toward the client (e.g. a spoofed source): nothing to wait for.
                let Some(e) = e else {
                    return Verdict::Drop(DropReason::NoRoute);
                };
                self.event(e);
                return Verdict::Drop(DropReason::NeighUnresolved);
            }
        };
        let (oif, mac) = hop;
        if pkt.proto == ipv4::proto::TCP {
            super::passive::on_reply(conn, pkt.tcp_flags);
            conn.tcp_packet(pkt.tcp_flags, true, secure, &sh.ipvs.timeouts, now_ms);
        } else {
            conn.udp_packet(true, &sh.ipvs.timeouts, now_ms);
        }
        let ip_len = pkt.ip.len();
        conn.dest.stats.outbound(self.id, ip_len);
        conn.dest.svc_stats.outbound(self.id, ip_len);
        let rx_ctx = RxCtx {
            iface: cx.iface,
            eth_src: pkt.eth_src,
            csum_partial: cx.rx.csum_partial,
        };
        nat::transmit_out(&rx_ctx, oif, mac, pkt.ip, ik.vaddr, ik.vport, out)
    }

    /// An ICMP error from a NAT real server quotes client:cport -> RIP:rport as the
    /// server received it: translate it to come from the VIP (`ip_vs_core.c: ip_vs_out_icmp`).
    pub(super) fn icmp_outbound<E: Emit>(&mut self, cx: &Ctx<'_>, e: &IcmpError<'_>, out: &mut E) -> Verdict {
        let sh = cx.sh;
        let ok = OutKey {
            proto: e.proto,
            daddr: e.daddr,
            dport: e.dport,
            caddr: e.saddr,
            cport: e.sport,
        };
        let Some((ik, conn)) = self.conns.get_out_mut(&ok) else {
            return Verdict::Pass;
        };
        super::passive::on_icmp(conn, e.proto, e.ip);
        let (oif, mac) = match reverse_hop(sh, conn, ok.caddr) {
            Ok(h) => h,
            Err(ev) => {
                // No route toward the client (e.g. a spoofed source): nothing to wait for.
                let Some(ev) = ev else {
                    return Verdict::Drop(DropReason::NoRoute);
                };
                self.event(ev);
                return Verdict::Drop(DropReason::NeighUnresolved);
            }
        };
        conn.dest.stats.outbound(self.id, e.ip.len());
        conn.dest.svc_stats.outbound(self.id, e.ip.len());
        let rx_ctx = RxCtx {
            iface: cx.iface,
            eth_src: e.eth_src,
            csum_partial: false,
        };
        if let Err(v) = crate::forward::pre_xmit_checks(&rx_ctx, e.ip, oif.mtu.get(), oif.mtu.get(), out) {
            return v;
        }
        let (vip, vport) = (ik.vaddr, ik.vport);
        nat::emit_ip(out, oif, mac, e.ip, |b| {
            nat::rewrite_icmp(b, nat::Side::Src, vip, nat::Side::Dst, vip, vport)
        })
    }
}

impl Worker {
    /// An ICMP error about one of our tunnel packets (`ip_vs_core.c: ip_vs_in_icmp`, its
    /// tunnel case; IPIP, GUE or GRE to a real server with that
    /// tunnel type): fragmentation-needed updates the path MTU to the real server and,
    /// if the client's packet had DF, tells the client with the MTU less the outer
    /// headers (20 for IPIP); other errors are relayed to the client about its own
    /// packet.
    pub(super) fn tunnel_icmp<E: Emit>(&mut self, cx: &Ctx<'_>, e: &TunnelIcmp<'_>, out: &mut E) -> Verdict {
        use crate::wire::icmp;
        let (sh, svcs, now_ms) = (cx.sh, cx.svcs, cx.now_ms);
        let mut known = false;
        let frag_needed = e.icmp_type == icmp::TYPE_DEST_UNREACH && e.code == icmp::CODE_FRAG_NEEDED;
        let mut mtu = (e.rest & 0xffff).max(68);
        let overhead = (ipv4::MIN_HEADER_LEN + e.encap_len) as u32;
        for s in svcs.services() {
            for d in s.lock().dests.iter().filter(|d| {
                let c = d.config();
                d.v4() == Some(e.rip)
                    && c.method == crate::service::ForwardMethod::Tunnel
                    && c.tun_type == e.kind
                    && (e.kind != crate::service::TunnelType::Gue || c.tun_port == e.port)
            }) {
                known = true;
                if frag_needed {
                    d.learn_pmtu(mtu, now_ms);
                } else if let Some(i) = sh.iface(d.out_ifindex()) {
                    mtu = d.path_mtu(i.mtu.get(), now_ms);
                }
            }
        }
        if !known {
            return Verdict::Pass;
        }
        // The client's packet (the quote's inner header) tells where to send the news.
        let q = e.inner;
        let Ok(q) = ipv4::Header::new_checked(q) else {
            return Verdict::Answered;
        };
        let (client, vip, df) = (q.src(), q.dst(), q.dont_frag());
        let msg = if frag_needed {
            if !df {
                return Verdict::Answered;
            }
            // MTU less the outer headers (IPIP: 20, only above 88, as IPVS does).
            let m = if mtu > 68 + overhead { mtu - overhead } else { mtu };
            icmp::Message {
                icmp_type: icmp::TYPE_DEST_UNREACH,
                code: icmp::CODE_FRAG_NEEDED,
                rest: m,
            }
        } else {
            icmp::Message {
                icmp_type: e.icmp_type,
                code: e.code,
                rest: e.rest,
            }
        };
        let Some((ifx, hop)) = sh.route(client) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let (Some(oif), Some(mac)) = (sh.iface(ifx), sh.neighbour(ifx, hop)) else {
            self.event(Event::Solicit { ifindex: ifx, ip: hop });
            return Verdict::Drop(DropReason::NeighUnresolved);
        };
        if let Some(buf) = out.buffer(ifx)
            && let Some(n) = icmp::emit_error(buf, mac, oif.mac, vip, msg, e.inner)
        {
            out.commit(ifx, n);
        }
        Verdict::Answered
    }
}

/// The next hop toward a NAT connection's client: interface and MAC, cached in the
/// entry while the neighbour map is unchanged. `Err(Some(event))` asks the control
/// thread to resolve it.
fn reverse_hop<'s>(sh: &'s Shared, conn: &mut Conn, client: Ipv4Addr) -> Result<(&'s Iface, [u8; 6]), Option<Event>> {
    if conn.rev_ifindex == 0 {
        // No route toward the client when the connection was made: the routing table
        // is re-read once a second (`director::Control::tick`), so a connection made
        // just after a link came back up (its connected route gone while it was
        // down) would otherwise drop every reply for good. Look again.
        let (ifx, hop) = sh.route(client).ok_or(None)?;
        conn.rev_ifindex = ifx;
        conn.rev_hop = hop;
        conn.rev_gen = 0;
    }
    let Some(oif) = sh.iface(conn.rev_ifindex) else {
        return Err(None);
    };
    let generation = sh.neigh_gen.load(std::sync::atomic::Ordering::Acquire);
    if conn.rev_gen != generation {
        match sh.neighbour(conn.rev_ifindex, conn.rev_hop) {
            Some(mac) => {
                conn.rev_mac = mac;
                conn.rev_gen = generation;
            }
            None => {
                return Err(Some(Event::Solicit {
                    ifindex: conn.rev_ifindex,
                    ip: conn.rev_hop,
                }));
            }
        }
    }
    Ok((oif, conn.rev_mac))
}
