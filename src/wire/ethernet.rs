//! Ethernet II header (IEEE 802.3), 14 bytes.

pub type MacAddr = [u8; 6];

pub const HEADER_LEN: usize = 14;
pub const BROADCAST: MacAddr = [0xff; 6];

pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
}

mod field {
    pub const DST: core::ops::Range<usize> = 0..6;
    pub const SRC: core::ops::Range<usize> = 6..12;
    pub const ETHERTYPE: core::ops::Range<usize> = 12..14;
}

/// A checked view of an Ethernet frame.
#[derive(Debug)]
pub struct Frame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// `None` if the buffer is shorter than an Ethernet header.
    pub fn new_checked(buf: T) -> Option<Self> {
        (buf.as_ref().len() >= HEADER_LEN).then_some(Frame { buf })
    }
    pub fn dst(&self) -> MacAddr {
        self.buf.as_ref()[field::DST].try_into().unwrap_or_default()
    }
    pub fn src(&self) -> MacAddr {
        self.buf.as_ref()[field::SRC].try_into().unwrap_or_default()
    }
    pub fn ethertype(&self) -> u16 {
        let b = &self.buf.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buf.as_mut()[field::DST].copy_from_slice(&mac);
    }
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&mac);
    }
    pub fn set_ethertype(&mut self, t: u16) {
        self.buf.as_mut()[field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}

/// Write an Ethernet header at the start of `buf` (which must hold at least 14 bytes).
pub fn emit(buf: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    buf[field::DST].copy_from_slice(&dst);
    buf[field::SRC].copy_from_slice(&src);
    buf[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: &MacAddr) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buffer_is_rejected_and_fields_round_trip() {
        assert!(Frame::new_checked(&[0u8; 13][..]).is_none());
        let mut b = [0u8; 20];
        emit(&mut b, BROADCAST, [2, 0, 0, 0, 0, 1], ethertype::ARP);
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        assert_eq!(f.dst(), BROADCAST);
        assert_eq!(f.src(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), ethertype::ARP);
        f.set_dst([1; 6]);
        assert_eq!(f.dst(), [1; 6]);
        assert_eq!(f.payload().len(), 6);
        assert_eq!(fmt_mac(&[0xde, 0xad, 0, 1, 2, 3]), "de:ad:00:01:02:03");
    }
}
