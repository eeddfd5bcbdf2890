//! The frame dissector that `uvs trace` and `uvs lab` share: an Ethernet frame
//! carrying TCP or UDP over IPv4, seen through LVS-TUN's encapsulations (IPIP, GRE,
//! GUE), reduced to the fields a hop table shows. Built on etherparse's slices; the
//! tunnels through [`super::tunnel`].

/// One captured frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    /// The outer header of a tunnelled packet: (src, dst, ttl).
    pub outer: Option<([u8; 4], [u8; 4], u8)>,
    /// The tunnel: "IPIP", "GUE" or "GRE" ("" when not tunnelled).
    pub encap: &'static str,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub sport: u16,
    pub dport: u16,
    pub syn: bool,
    pub ack: bool,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
}

/// The packet inside an IPv4 packet `ip` (header included) if it is one of LVS-TUN's
/// encapsulations: IPIP, GRE, or GUE (a UDP payload that parses as GUE carrying IPv4).
pub fn tunnelled(ip: &[u8]) -> Option<(&'static str, &[u8])> {
    use super::ipv4;
    let p = ipv4::Packet::new_checked(ip).ok()?;
    let payload = &ip[p.header_len()..p.total_len()];
    match p.protocol() {
        ipv4::proto::IPIP => Some(("IPIP", payload)),
        ipv4::proto::GRE => super::tunnel::decapsulate_gre(ip).map(|i| ("GRE", i)),
        ipv4::proto::UDP => super::tunnel::decapsulate_gue(payload.get(8..)?).map(|i| ("GUE", i)),
        _ => None,
    }
}

/// Decode an Ethernet frame carrying TCP or UDP over IPv4 (possibly tunnelled).
pub fn decode(frame: &[u8]) -> Option<Seen> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let eth = match &p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e.clone(),
        _ => return None,
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else { return None };
    let mut outer = None;
    let tunnel = tunnelled(frame.get(14..)?).filter(|(_, i)| SlicedPacket::from_ip(i).is_ok());
    let encap = tunnel.map_or("", |t| t.0);
    let (ip_src, ip_dst, ttl, transport) = if let Some((_, inner)) = tunnel {
        outer = Some((ip.header().source(), ip.header().destination(), ip.header().ttl()));
        let inner = SlicedPacket::from_ip(inner).ok()?;
        let Some(NetSlice::Ipv4(iip)) = &inner.net else {
            return None;
        };
        (
            iip.header().source(),
            iip.header().destination(),
            iip.header().ttl(),
            inner.transport.clone(),
        )
    } else {
        (
            ip.header().source(),
            ip.header().destination(),
            ip.header().ttl(),
            p.transport.clone(),
        )
    };
    let (sport, dport, syn, ack, proto) = match transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port(), t.syn(), t.ack(), 6),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port(), false, false, 17),
        _ => return None,
    };
    Some(Seen {
        eth_src: eth.source(),
        eth_dst: eth.destination(),
        outer,
        encap,
        src: ip_src,
        dst: ip_dst,
        ttl,
        sport,
        dport,
        syn,
        ack,
        proto,
    })
}
