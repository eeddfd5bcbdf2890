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

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const TCP_SEQ: usize = 4;
    pub const TCP_OFFSET: usize = 12;
    pub const TCP_FLAGS: usize = 13;
}

/// A checked view of a TCP or UDP header: the buffer (the segment or datagram, header
/// first) holds at least the protocol's minimum header, so no accessor can panic.
#[derive(Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buf: T,
    proto: u8,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// `None` for another protocol or a buffer shorter than its minimum header.
    pub fn new_checked(proto: u8, buf: T) -> Option<Self> {
        (buf.as_ref().len() >= min_header_len(proto)?).then_some(Header { buf, proto })
    }
    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buf.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }
    pub fn checksum(&self) -> u16 {
        self.u16_at(checksum_offset(self.proto))
    }
    /// TCP: the sequence number (UDP: 0).
    pub fn seq(&self) -> u32 {
        let b = self.buf.as_ref();
        match self.proto {
            6 => u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            _ => 0,
        }
    }
    /// TCP: the flags byte, CWR..FIN (UDP: 0).
    pub fn flags(&self) -> u8 {
        match self.proto {
            6 => self.buf.as_ref()[field::TCP_FLAGS],
            _ => 0,
        }
    }
    /// TCP: the header length from the data offset (not checked against the buffer);
    /// UDP: 8.
    pub fn header_len(&self) -> usize {
        match self.proto {
            6 => usize::from(self.buf.as_ref()[field::TCP_OFFSET] >> 4) * 4,
            _ => UDP_LEN,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    fn set_u16(&mut self, at: usize, v: u16) {
        self.buf.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    /// Set the source port (the checksum is left alone: see [`Self::patch_checksum`]).
    pub fn set_src_port(&mut self, port: u16) {
        self.set_u16(field::SRC_PORT, port);
    }
    /// Set the destination port (the checksum is left alone).
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_u16(field::DST_PORT, port);
    }
    pub fn set_checksum(&mut self, c: u16) {
        self.set_u16(checksum_offset(self.proto), c);
    }
    /// TCP: set the sequence number (UDP: nothing).
    pub fn set_seq(&mut self, seq: u32) {
        if self.proto == 6 {
            self.buf.as_mut()[field::TCP_SEQ..field::TCP_SEQ + 4].copy_from_slice(&seq.to_be_bytes());
        }
    }
    /// TCP: set the flags byte (UDP: nothing).
    pub fn set_flags(&mut self, flags: u8) {
        if self.proto == 6 {
            self.buf.as_mut()[field::TCP_FLAGS] = flags;
        }
    }
    /// Patch the checksum incrementally (RFC 1624) for an address of the pseudo-header
    /// changed from `old_addr` to `new_addr` and a port from `old_port` to `new_port`.
    /// A UDP result of 0 is sent as 0xffff (RFC 768: 0 means no checksum).
    pub fn patch_checksum(&mut self, old_addr: Ipv4Addr, new_addr: Ipv4Addr, old_port: u16, new_port: u16) {
        let c = checksum::update32(self.checksum(), old_addr.to_bits(), new_addr.to_bits());
        let mut c = checksum::update16(c, old_port, new_port);
        if self.proto == 17 && c == 0 {
            c = 0xffff;
        }
        self.set_checksum(c);
    }
    /// Compute the checksum in full over the whole buffer (the segment or datagram)
    /// with the pseudo-header of `src` -> `dst`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = full_checksum(self.proto, src, dst, self.buf.as_ref());
        self.set_checksum(c);
    }
}

/// Set the ports of a TCP or UDP header that may be truncated to its first 4 bytes
/// (the 8 bytes an ICMP error quotes); nothing when it is shorter. The checksum is
/// left alone.
pub fn set_port(l4: &mut [u8], dst: bool, port: u16) {
    let at = if dst { field::DST_PORT } else { field::SRC_PORT };
    if let Some(p) = l4.get_mut(at..at + 2) {
        p.copy_from_slice(&port.to_be_bytes());
    }
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
    fn header_view_setters_and_incremental_checksum_match_a_full_one() {
        let (c, v, r) = (
            Ipv4Addr::new(192, 0, 2, 10),
            Ipv4Addr::new(203, 0, 113, 5),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        let mut t = [0u8; 26];
        t[12] = 5 << 4;
        t[13] = tcp_flags::SYN;
        t[20..].copy_from_slice(b"hello!");
        let mut h = Header::new_checked(6, &mut t[..]).unwrap();
        h.set_src_port(40000);
        h.set_dst_port(80);
        h.set_seq(1);
        h.fill_checksum(c, v);
        assert_eq!(
            (h.src_port(), h.dst_port(), h.seq(), h.flags(), h.header_len()),
            (40000, 80, 1, tcp_flags::SYN, 20)
        );
        // DNAT to r:8080, incrementally.
        h.set_dst_port(8080);
        h.patch_checksum(v, r, 80, 8080);
        assert_eq!(h.checksum(), full_checksum(6, c, r, &t));
        assert!(Header::new_checked(6, &t[..19]).is_none());
        assert!(Header::new_checked(1, &t[..]).is_none());
        // UDP: no flags or sequence; a patched checksum of 0 goes out as 0xffff.
        let mut u = [0u8; 8];
        let mut h = Header::new_checked(17, &mut u[..]).unwrap();
        h.set_flags(0xff);
        h.set_seq(5);
        assert_eq!((h.flags(), h.seq(), h.header_len()), (0, 0, 8));
        h.set_checksum(0xffff);
        h.patch_checksum(c, c, 0, 0);
        assert_eq!(h.checksum(), 0xffff);
        let mut q = [0u8; 4];
        set_port(&mut q, true, 53);
        set_port(&mut q[..3], true, 1); // does not fit: nothing
        assert_eq!(ports(&q), Some((0, 53)));
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
