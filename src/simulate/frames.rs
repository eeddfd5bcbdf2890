//! Client and real-server frames for the simulator, built with etherparse exactly as a
//! wire capture would show them (valid IPv4 and L4 checksums).

use std::net::SocketAddrV4;

use super::host::{CLIENT_MAC, DIRECTOR_MAC};
use crate::wire::l4::tcp_flags;

/// The MAC the simulator gives a real server: 02:00 followed by its IPv4 address.
pub fn dest_mac(ip: [u8; 4]) -> [u8; 6] {
    [0x02, 0x00, ip[0], ip[1], ip[2], ip[3]]
}

/// A TCP segment `src -> dst` with `flags` ([`tcp_flags`] bits), sent from `src_mac`.
pub fn tcp(src_mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src_mac, DIRECTOR_MAC).ipv4(src.ip().octets(), dst.ip().octets(), 64);
    let mut b = b.tcp(src.port(), dst.port(), 1000, 65535);
    if flags & tcp_flags::SYN != 0 {
        b = b.syn();
    }
    if flags & tcp_flags::ACK != 0 {
        b = b.ack(1);
    }
    if flags & tcp_flags::FIN != 0 {
        b = b.fin();
    }
    if flags & tcp_flags::RST != 0 {
        b = b.rst();
    }
    if flags & tcp_flags::PSH != 0 {
        b = b.psh();
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("build TCP frame");
    v
}

/// A client TCP segment.
pub fn client_tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Vec<u8> {
    tcp(CLIENT_MAC, src, dst, flags)
}

/// A client UDP datagram with a small payload.
pub fn client_udp(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let mut v = Vec::new();
    b.write(&mut v, b"uvs").expect("build UDP frame");
    v
}
