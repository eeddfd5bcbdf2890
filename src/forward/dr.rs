//! DR (direct routing, `-g`, IPVS's DROUTE): the IP packet is kept, only its TTL is
//! decremented (with the header checksum); the frame goes to the real server's MAC
//! from the outgoing interface's MAC. The real server holds the VIP itself and
//! answers the client directly.

use super::{RxCtx, pre_xmit_checks};
use crate::dataplane::{DropReason, Emit, Iface, Verdict};
use crate::service::Dest;
use crate::wire::{ethernet, ipv4};

pub fn transmit<E: Emit>(ifaces: &[Iface], rx: &RxCtx<'_>, dest: &Dest, ip: &[u8], out: &mut E) -> Verdict {
    let ifx = dest.out_ifindex();
    let Some(oif) = crate::dataplane::iface(ifaces, ifx) else {
        return Verdict::Drop(DropReason::NoRoute);
    };
    let Some(mac) = dest.mac() else {
        return Verdict::Drop(DropReason::NeighUnresolved);
    };
    // A GRO/TSO aggregate skips the MTU check and is segmented on output.
    let mtu = if super::frag::is_aggregate(rx.iface.mtu.get(), rx.csum_partial, ip) {
        u32::MAX
    } else {
        oif.mtu.get()
    };
    if let Err(v) = pre_xmit_checks(rx, ip, mtu, oif.mtu.get(), out) {
        return v;
    }
    if ip.len() > oif.mtu.get() as usize {
        // A reassembled datagram bigger than the MTU (no DF): fragment on output.
        let partial = rx.csum_partial;
        return super::frag::emit_fragmented(out, oif, mac, ip, |b| {
            if partial {
                super::complete_l4_checksum(b);
            }
        });
    }
    let b = match super::ipv4_slot(out, oif, mac, ip.len()) {
        Ok(b) => b,
        Err(v) => return v,
    };
    b.copy_from_slice(ip);
    if let Ok(mut p) = ipv4::Packet::new_checked(&mut *b) {
        p.decrement_ttl();
    }
    if rx.csum_partial {
        super::complete_l4_checksum(b);
    }
    out.commit(ifx, ethernet::HEADER_LEN + ip.len());
    Verdict::Forwarded
}
