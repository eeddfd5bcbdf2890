//! ARP on the director's interfaces: answer requests for VIPs, and for the VRRP
//! addresses the director holds (keepalived's MASTER: e.g. the NAT real servers'
//! gateway), with the interface's MAC, and report what senders say about themselves to the neighbour manager, which
//! only refreshes entries it asked for (unsolicited replies never create entries, and
//! claims on our own addresses or VIPs are ignored).

use super::classify::ArpFrame;
use super::{DropReason, Emit, Iface, Shared, Verdict};
use crate::service::ServiceTable;
use crate::wire::arp;

pub fn handle<E: Emit>(sh: &Shared, svcs: &ServiceTable, iface: &Iface, f: &ArpFrame, out: &mut E) -> Verdict {
    let a = &f.arp;
    if svcs.is_vip(a.spa) || sh.is_local_addr(a.spa) {
        // Somebody claims a VIP or one of our addresses (possibly a DR real server
        // without arp_ignore): never learn from it.
        return Verdict::Drop(DropReason::ArpClaimsOwnAddress);
    }
    // A VIP whose ownership follows VRRP is answered only while held (vipgate.rs);
    // so is any other VRRP address. The kernel's answers for them are dropped
    // (kernelcopy.rs), so that a SIGKILLed master's kernel, which keeps the addresses,
    // stays silent behind the dead uvs's table.
    let ours = (svcs.is_vip(a.tpa) && sh.vip_gate.serves(a.tpa)) || sh.vip_gate.holds(a.tpa);
    if a.op == arp::OP_REQUEST && ours && !a.is_gratuitous() {
        let reply = arp::Repr {
            op: arp::OP_REPLY,
            sha: iface.mac,
            spa: a.tpa,
            tha: a.sha,
            tpa: a.spa,
        };
        let Some(buf) = out.buffer(iface.ifindex) else {
            return Verdict::Drop(DropReason::TxFull);
        };
        let n = reply.emit_frame(buf, f.eth_src);
        out.commit(iface.ifindex, n);
        return Verdict::Answered;
    }
    if a.spa.is_unspecified() {
        return Verdict::Pass; // ARP probe (RFC 5227)
    }
    Verdict::Neigh {
        ifindex: iface.ifindex,
        ip: a.spa,
        mac: a.sha,
    }
}
