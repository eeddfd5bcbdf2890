//! ARP for IPv4 over Ethernet (RFC 826), 28 bytes after the Ethernet header.

use super::Ipv4Addr;
use super::ethernet::{self, MacAddr, ethertype};

pub const PACKET_LEN: usize = 28;
/// Ethernet header + ARP, without padding.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;
/// Minimum Ethernet frame length without FCS; ARP frames are padded to it.
pub const MIN_FRAME_LEN: usize = 60;

pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// A parsed IPv4-over-Ethernet ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub op: u16,
    pub sha: MacAddr,
    pub spa: Ipv4Addr,
    pub tha: MacAddr,
    pub tpa: Ipv4Addr,
}

/// Why an ARP packet was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpError {
    Truncated,
    /// Not Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4).
    Unsupported,
}

impl Repr {
    /// Parse the ARP payload of an Ethernet frame.
    pub fn parse(b: &[u8]) -> Result<Repr, ArpError> {
        if b.len() < PACKET_LEN {
            return Err(ArpError::Truncated);
        }
        if b[0..2] != [0, 1] || b[2..4] != [0x08, 0x00] || b[4] != 6 || b[5] != 4 {
            return Err(ArpError::Unsupported);
        }
        let mac = |at: usize| -> MacAddr { [b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5]] };
        let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        Ok(Repr {
            op: u16::from_be_bytes([b[6], b[7]]),
            sha: mac(8),
            spa: ip(14),
            tha: mac(18),
            tpa: ip(24),
        })
    }

    /// Write a whole Ethernet frame (padded to 60 bytes) into `buf`; returns its length.
    pub fn emit_frame(&self, buf: &mut [u8], eth_dst: MacAddr) -> usize {
        let buf = &mut buf[..MIN_FRAME_LEN];
        buf.fill(0);
        ethernet::emit(buf, eth_dst, self.sha, ethertype::ARP);
        let b = &mut buf[ethernet::HEADER_LEN..];
        b[0..8].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 0]);
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sha);
        b[14..18].copy_from_slice(&self.spa.octets());
        b[18..24].copy_from_slice(&self.tha);
        b[24..28].copy_from_slice(&self.tpa.octets());
        MIN_FRAME_LEN
    }

    /// A request "who has `target`? tell `my_ip`".
    pub fn request(my_mac: MacAddr, my_ip: Ipv4Addr, target: Ipv4Addr) -> Repr {
        Repr {
            op: OP_REQUEST,
            sha: my_mac,
            spa: my_ip,
            tha: [0; 6],
            tpa: target,
        }
    }

    /// A gratuitous ARP for `ip` (a request with sender = target = ip), as keepalived sends.
    pub fn gratuitous(my_mac: MacAddr, ip: Ipv4Addr) -> Repr {
        Repr {
            op: OP_REQUEST,
            sha: my_mac,
            spa: ip,
            tha: [0xff; 6],
            tpa: ip,
        }
    }

    /// Is this a gratuitous announcement (sender address == target address)?
    pub fn is_gratuitous(&self) -> bool {
        self.spa == self.tpa
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_padding() {
        let r = Repr::request(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
        );
        let mut buf = [0xaau8; 100];
        let n = r.emit_frame(&mut buf, ethernet::BROADCAST);
        assert_eq!(n, 60);
        assert!(buf[FRAME_LEN..60].iter().all(|&b| b == 0));
        let p = Repr::parse(&buf[14..n]).unwrap();
        assert_eq!(p, r);
        assert!(!p.is_gratuitous());
        // etherparse agrees on the layout.
        let parsed = etherparse::SlicedPacket::from_ethernet(&buf[..n]).unwrap();
        match parsed.net {
            Some(etherparse::NetSlice::Arp(a)) => {
                assert_eq!(a.operation(), etherparse::ArpOperation::REQUEST);
                assert_eq!(a.target_protocol_addr(), &[10, 0, 0, 2]);
            }
            other => panic!("not ARP: {other:?}"),
        }
    }

    #[test]
    fn truncated_and_foreign_arp_rejected() {
        assert_eq!(Repr::parse(&[0u8; 27]), Err(ArpError::Truncated));
        let mut b = [0u8; 28];
        b[0..6].copy_from_slice(&[0, 6, 0x08, 0, 6, 4]);
        assert_eq!(Repr::parse(&b), Err(ArpError::Unsupported));
    }
}
