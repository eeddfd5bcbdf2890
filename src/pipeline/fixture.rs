//! A fixed director setup and frame builders, shared by unit tests, benches and the
//! fuzz targets (so they all exercise the same table).

use std::sync::Arc;

use super::{Emit, Iface, Shared};
use crate::ctl::Ctl;

pub const IFINDEX: u32 = 2;
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
pub const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
pub const DIP: [u8; 4] = [10, 0, 0, 2];
pub const VIP: [u8; 4] = [10, 0, 0, 100];
pub const CLIENT: [u8; 4] = [192, 0, 2, 10];
pub const RS1: [u8; 4] = [10, 0, 0, 11];
pub const RS2: [u8; 4] = [10, 0, 0, 12];

/// The rules of the fixture: TCP VIP:80 and UDP VIP:53 (rr), both real servers DR.
pub const RULES: &str = "\
-A -t 10.0.0.100:80 -s rr
-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1
-a -t 10.0.0.100:80 -r 10.0.0.12:80 -g -w 1
-A -u 10.0.0.100:53 -s rr
-a -u 10.0.0.100:53 -r 10.0.0.11:53 -g -w 1
-a -u 10.0.0.100:53 -r 10.0.0.12:53 -g -w 1
";

/// One interface (eth0, MTU 1500), the fixture rules applied, real servers resolved.
pub fn director() -> (Arc<Shared>, Ctl) {
    director_with(RULES)
}

/// Like [`director`] with other rules.
pub fn director_with(rules: &str) -> (Arc<Shared>, Ctl) {
    let iface = Iface {
        ifindex: IFINDEX,
        name: "eth0".into(),
        mac: DIRECTOR_MAC,
        addrs: vec![DIP],
        mtu: 1500,
    };
    let sh = Arc::new(Shared::new(vec![iface]));
    let ctl = Ctl::new(sh.clone());
    for (_, cmd) in crate::ipvsadm::parse_rules(rules).expect("fixture rules parse") {
        ctl.apply(&cmd).expect("fixture rules apply");
    }
    for d in ctl.all_dests() {
        d.out_ifindex
            .store(IFINDEX, std::sync::atomic::Ordering::Relaxed);
        let mac = if d.addr == std::net::IpAddr::from(RS1) {
            RS1_MAC
        } else {
            RS2_MAC
        };
        d.set_mac(mac);
    }
    (sh, ctl)
}

/// A client TCP segment to VIP:`dport` as an Ethernet frame.
pub fn tcp_frame(sport: u16, dport: u16, syn: bool, ack: bool, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC).ipv4(CLIENT, VIP, 64);
    let mut b = b.tcp(sport, dport, 1000, 65535);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build frame");
    v
}

/// A client UDP datagram to VIP:`dport`.
pub fn udp_frame(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT, VIP, 64)
        .udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build frame");
    v
}

/// An [`Emit`] sink that keeps every frame (tests) or only counts them (benches).
#[derive(Debug, Default)]
pub struct VecEmit {
    pub frames: Vec<(u32, Vec<u8>)>,
    buf: Vec<u8>,
    pub keep: bool,
    pub count: usize,
}

impl VecEmit {
    pub fn keeping() -> VecEmit {
        VecEmit {
            keep: true,
            buf: vec![0; 16384],
            ..Default::default()
        }
    }
    pub fn counting() -> VecEmit {
        VecEmit {
            keep: false,
            buf: vec![0; 16384],
            ..Default::default()
        }
    }
}

impl Emit for VecEmit {
    fn buffer(&mut self, _ifindex: u32) -> Option<&mut [u8]> {
        Some(&mut self.buf)
    }
    fn commit(&mut self, ifindex: u32, len: usize) {
        self.count += 1;
        if self.keep {
            self.frames.push((ifindex, self.buf[..len].to_vec()));
        }
    }
}
