//! Client to VIP (ip_vs_in): connection lookup, or scheduling of a new connection,
//! then the state machine, the counters, and the connection's forwarding method.
//! ICMP errors sent to a VIP are relayed to the real server of their connection.

use super::classify::{IcmpError, L4Packet};
use super::synced;
use super::{Ctx, DropReason, Emit, Iface, Shared, Verdict, Worker, reuse_expected, send_port_unreachable};
use crate::conn::{Conn, ConnKey};
use crate::forward::{self, RxCtx, nat};
use crate::service::{Dest, ForwardMethod};
use crate::wire::{ipv4, l4::tcp_flags};

impl Worker {
    pub(super) fn inbound<E: Emit>(&mut self, cx: &Ctx<'_>, pkt: &L4Packet<'_>, out: &mut E) -> Verdict {
        let (sh, now_ms) = (cx.sh, cx.now_ms);
        let key = ConnKey {
            proto: pkt.proto,
            caddr: pkt.saddr,
            cport: pkt.sport,
            vaddr: pkt.daddr,
            vport: pkt.dport,
        };
        let is_tcp = pkt.proto == ipv4::proto::TCP;
        let syn = is_tcp && pkt.tcp_flags & tcp_flags::SYN != 0;

        // A SYN on a finished TCP entry reuses the tuple (conn_reuse_mode): the old
        // entry goes and the SYN is scheduled afresh. With expire_nodest_conn, an entry
        // whose server was deleted (or, for a SYN, quiesced) goes the same way.
        let settings = &sh.ipvs.conn;
        let secure = self.secure_tcp(sh);
        // One table lookup for an established connection: it is used right here.
        let replace = match self.conns.get_mut(&key) {
            None => false,
            Some(c) => {
                // ip_vs_in: a quiesced (weight 0) server's entry gives way to a SYN only
                // inside the conn_reuse_mode block; a deleted server's always.
                let reuse_mode = settings.conn_reuse_mode();
                let nodest = settings.expire_nodest_conn()
                    && (!c.dest.is_available() || (syn && reuse_mode != 0 && c.dest.weight() == 0 && c.tpl.is_none()));
                let replace = (syn && reuse_expected(c, reuse_mode)) || nodest;
                if !replace {
                    let (v, _) = send(self.id, &mut self.ip_ident, cx, secure, pkt, c, out);
                    if let Some(h) = &self.sync {
                        if !matches!(v, Verdict::Drop(_)) {
                            h.packet(&sh.ipvs.sync, &key, c, now_ms);
                        }
                    } else {
                        synced::no_master(c);
                    }
                    return v;
                }
                true
            }
        };
        if replace {
            self.conns.remove(&key);
        }
        if let Err(reason) = self.schedule(cx, pkt, key) {
            if reason == DropReason::NoDestination {
                send_port_unreachable(cx.iface, pkt, pkt.ip, out);
            }
            return Verdict::Drop(reason);
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            return Verdict::Drop(DropReason::TableFull);
        };
        if conn.dest.method() == ForwardMethod::Masq
            && let Some((ifx, hop)) = sh.route(pkt.saddr)
        {
            // Where replies to this client go: the routing table's next hop.
            conn.rev_ifindex = ifx;
            conn.rev_hop = hop;
        }
        let (v, forget) = send(self.id, &mut self.ip_ident, cx, secure, pkt, conn, out);
        if forget {
            self.conns.remove(&key);
        } else if let Some(h) = &self.sync {
            if !matches!(v, Verdict::Drop(_)) {
                h.packet(&sh.ipvs.sync, &key, conn, now_ms);
            }
        } else {
            synced::no_master(conn);
        }
        v
    }

    /// An ICMP error addressed to a VIP quotes a packet the VIP sent to a client
    /// (source VIP:vport, destination client:cport): find that connection and relay
    /// the error to its real server (`ip_vs_core.c: ip_vs_in_icmp`).
    pub(super) fn icmp_inbound<E: Emit>(&mut self, cx: &Ctx<'_>, e: &IcmpError<'_>, out: &mut E) -> Verdict {
        let (sh, now_ms) = (cx.sh, cx.now_ms);
        let key = ConnKey {
            proto: e.proto,
            caddr: e.daddr,
            cport: e.dport,
            vaddr: e.saddr,
            vport: e.sport,
        };
        let Some(conn) = self.conns.get_mut(&key) else {
            return Verdict::Pass;
        };
        if !conn.dest.is_available() {
            return Verdict::Drop(DropReason::DestDeleted);
        }
        let Some((oif, mac)) = next_hop(sh, &conn.dest) else {
            return Verdict::Drop(DropReason::NeighUnresolved);
        };
        conn.dest.stats.inbound(self.id, e.ip.len());
        conn.dest.svc_stats.inbound(self.id, e.ip.len());
        let rx_ctx = RxCtx {
            iface: cx.iface,
            eth_src: e.eth_src,
            csum_partial: false,
        };
        match conn.dest.method() {
            ForwardMethod::Route | ForwardMethod::Local => {
                forward::dr::transmit(&sh.ifaces, &rx_ctx, &conn.dest, e.ip, out)
            }
            ForwardMethod::Tunnel => {
                let dest = conn.dest.clone();
                forward::tun::transmit(&sh.ifaces, &rx_ctx, &dest, e.ip, &mut self.ip_ident, now_ms, out)
            }
            ForwardMethod::Masq => {
                if let Err(v) = forward::pre_xmit_checks(&rx_ctx, e.ip, oif.mtu.get(), oif.mtu.get(), out) {
                    return v;
                }
                let (rip, rport) = (conn.daddr, conn.dport);
                nat::emit_ip(out, oif, mac, e.ip, |b| {
                    nat::rewrite_icmp(b, nat::Side::Dst, rip, nat::Side::Src, rip, rport)
                })
            }
        }
    }
}

/// The connection is known: run its state machine, account the packet and send it by
/// the connection's method. The flag asks the caller to forget the connection (a new
/// one whose first packet failed the L4 checksum check).
/// (A free function, not a method: the caller holds `conn` borrowed from the worker's
/// table, so the worker's other fields come separately.)
#[inline]
fn send<E: Emit>(
    worker: usize,
    ip_ident: &mut u16,
    cx: &Ctx<'_>,
    secure: bool,
    pkt: &L4Packet<'_>,
    conn: &mut Conn,
    out: &mut E,
) -> (Verdict, bool) {
    let (sh, now_ms, rx) = (cx.sh, cx.now_ms, cx.rx);
    if !conn.dest.is_available() {
        // The destination was deleted: expire_nodest_conn = 0 drops silently.
        return (Verdict::Drop(DropReason::DestDeleted), false);
    }
    // Resolve where the frame goes before anything is accounted.
    let method = conn.dest.method();
    let Some((oif, mac)) = next_hop(sh, &conn.dest) else {
        let reason = if sh.iface(conn.dest.out_ifindex()).is_none() {
            DropReason::NoRoute
        } else {
            DropReason::NeighUnresolved
        };
        return (Verdict::Drop(reason), false);
    };
    if method == ForwardMethod::Masq && !nat::l4_checksum_ok(pkt.ip, rx.csum_partial) {
        // NAT rewrites the L4 header: verify first (see nat::l4_checksum_ok). A
        // connection this very packet created goes again.
        return (Verdict::Drop(DropReason::L4Checksum), conn.in_pkts == 0);
    }
    if pkt.proto == ipv4::proto::TCP {
        conn.tcp_packet(pkt.tcp_flags, false, secure, &sh.ipvs.timeouts, now_ms);
    } else {
        conn.udp_packet(false, &sh.ipvs.timeouts, now_ms);
    }
    let ip_len = pkt.ip.len();
    conn.dest.stats.inbound(worker, ip_len);
    conn.dest.svc_stats.inbound(worker, ip_len);
    let rx_ctx = RxCtx {
        iface: cx.iface,
        eth_src: pkt.eth_src,
        csum_partial: rx.csum_partial,
    };
    let v = match method {
        ForwardMethod::Route | ForwardMethod::Local => {
            forward::dr::transmit(&sh.ifaces, &rx_ctx, &conn.dest, pkt.ip, out)
        }
        ForwardMethod::Masq => nat::transmit_in(&rx_ctx, oif, mac, pkt.ip, conn.daddr, conn.dport, out),
        ForwardMethod::Tunnel => forward::tun::transmit(&sh.ifaces, &rx_ctx, &conn.dest, pkt.ip, ip_ident, now_ms, out),
    };
    (v, false)
}

/// The outgoing interface and next-hop MAC of a destination, if both are known.
#[inline]
pub(super) fn next_hop<'s>(sh: &'s Shared, dest: &Dest) -> Option<(&'s Iface, [u8; 6])> {
    let oif = sh.iface(dest.out_ifindex())?;
    Some((oif, dest.mac()?))
}
