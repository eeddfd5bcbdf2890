//! The virtual director a simulation runs: one interface with its address, MAC and
//! gateway, the clients' MAC, and a frame sink that discards what the pipeline sends
//! (a simulation reads the verdicts and the tables, not the frames). The same values as
//! the unit tests' fixture, so a scenario and a test describe one machine.

use std::net::Ipv4Addr;

use crate::pipeline::Emit;

/// The director's one interface.
pub const IFINDEX: u32 = 2;
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Every client frame arrives from this MAC (the gateway's).
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
/// The director's address; its /24 is on-link.
pub const DIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The default route's gateway (the clients are behind it).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// An [`Emit`] that takes every frame and keeps none.
pub struct Discard {
    buf: Vec<u8>,
}

impl Discard {
    pub fn new() -> Discard {
        Discard { buf: vec![0; 16384] }
    }
}

impl Emit for Discard {
    fn buffer(&mut self, _ifindex: u32) -> Option<&mut [u8]> {
        Some(&mut self.buf)
    }
    fn commit(&mut self, _ifindex: u32, _len: usize) {}
}
