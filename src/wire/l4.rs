//! The parts of TCP (RFC 9293) and UDP (RFC 768) headers a director reads and rewrites:
//! ports, TCP flags and checksums.

use super::{Ipv4Addr, checksum};

pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

pub const TCP_MIN_LEN: usize = 20;
pub const UDP_LEN: usize = 8;

/// Minimum header length for a protocol we steer (`None`: not TCP/UDP).
pub fn min_header_len(proto: u8) -> Option<usize> {
    match proto {
        6 => Some(TCP_MIN_LEN),
        17 => Some(UDP_LEN),
        _ => None,
    }
}

/// Source and destination ports of a TCP or UDP header (the first 4 bytes).
pub fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    (l4.len() >= 4).then(|| (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]])))
}

/// TCP flags byte (FIN..ACK bits); callers must have checked the length.
pub fn tcp_flags(l4: &[u8]) -> u8 {
    l4.get(13).copied().unwrap_or(0)
}

/// Offset of the checksum field for a protocol.
pub fn checksum_offset(proto: u8) -> usize {
    if proto == 6 { 16 } else { 6 }
}

/// Full TCP/UDP checksum over IPv4 (with the checksum field treated as zero).
/// A UDP result of 0 is returned as 0xffff.
pub fn full_checksum(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> u16 {
    let off = checksum_offset(proto);
    let mut acc = checksum::pseudo_header(src, dst, proto, l4.len() as u16);
    acc = checksum::sum(acc, &l4[..off]);
    acc = checksum::sum(acc, &l4[off + 2..]);
    let c = checksum::finish(acc);
    if proto == 17 && c == 0 { 0xffff } else { c }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tv_10_13_tcp_checksums() {
        // TCP 40000 -> 80, seq 1, SYN, window 65535.
        let mut t = [0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = tcp_flags::SYN;
        t[14..16].copy_from_slice(&65535u16.to_be_bytes());
        assert_eq!(
            full_checksum(6, Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(203, 0, 113, 5), &t),
            0x1541
        );
        assert_eq!(ports(&t), Some((40000, 80)));
        assert_eq!(tcp_flags(&t), tcp_flags::SYN);
    }

    #[test]
    fn tv_10_13_udp_zero_checksum_after_nat() {
        let mut u = [0u8; 12];
        u[0..2].copy_from_slice(&5300u16.to_be_bytes());
        u[0..2].copy_from_slice(&5353u16.to_be_bytes());
        u[2..4].copy_from_slice(&5300u16.to_be_bytes());
        u[4..6].copy_from_slice(&12u16.to_be_bytes());
        u[8..12].copy_from_slice(b"abcd");
        assert_eq!(
            full_checksum(17, Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(10, 0, 0, 3), &u),
            0x4565
        );
    }
}
