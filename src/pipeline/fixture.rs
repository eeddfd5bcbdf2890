//! A fixed director setup and frame builders, shared by unit tests, benches and the
//! fuzz targets (so they all exercise the same table).

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{Emit, Iface, Shared};
use crate::ctl::Ctl;

pub const IFINDEX: u32 = 2;
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const RS1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
pub const RS2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
pub const DIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const RS1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
pub const RS2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);

/// The rules of the fixture: TCP VIP:80 and UDP VIP:53 (rr), both real servers DR.
pub const RULES: &str = "\
-A -t 10.0.0.100:80 -s rr
-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1
-a -t 10.0.0.100:80 -r 10.0.0.12:80 -g -w 1
-A -u 10.0.0.100:53 -s rr
-a -u 10.0.0.100:53 -r 10.0.0.11:53 -g -w 1
-a -u 10.0.0.100:53 -r 10.0.0.12:53 -g -w 1
";

/// The client side's router (the default gateway); its MAC is [`CLIENT_MAC`].
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// All three forwarding methods: TCP VIP:80 DR, TCP VIP:8080 NAT to port 8888, TCP
/// VIP:443 TUN, UDP VIP:53 DR, UDP VIP:54 NAT.
pub const RULES_ALL: &str = "\
-A -t 10.0.0.100:80 -s rr
-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 1
-a -t 10.0.0.100:80 -r 10.0.0.12:80 -g -w 1
-A -t 10.0.0.100:8080 -s rr
-a -t 10.0.0.100:8080 -r 10.0.0.11:8888 -m -w 1
-A -t 10.0.0.100:443 -s rr
-a -t 10.0.0.100:443 -r 10.0.0.12:443 -i -w 1
-A -u 10.0.0.100:53 -s rr
-a -u 10.0.0.100:53 -r 10.0.0.11:53 -g -w 1
-a -u 10.0.0.100:53 -r 10.0.0.12:53 -g -w 1
-A -u 10.0.0.100:54 -s rr
-a -u 10.0.0.100:54 -r 10.0.0.11:5454 -m -w 1
";

/// [`RULES_ALL`] applied (see [`director`]).
pub fn director_all() -> (Arc<Shared>, Ctl) {
    director_with(RULES_ALL)
}

/// A reply from real server `rs`:`sport` to the client's `dport`, as the real server
/// sends it to its gateway (the director).
pub fn reply_frame(rs: Ipv4Addr, rs_mac: [u8; 6], sport: u16, dport: u16, syn_ack: bool, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(rs_mac, DIRECTOR_MAC).ipv4(rs.octets(), CLIENT.octets(), 64);
    let mut b = b.tcp(sport, dport, 5000, 65535).ack(1001);
    if syn_ack {
        b = b.syn();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build frame");
    v
}

/// One interface (eth0, MTU 1500), the fixture rules applied, real servers resolved,
/// a default route via [`GATEWAY`] (resolved to [`CLIENT_MAC`]).
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
        mtu: 1500.into(),
    };
    let sh = Arc::new(Shared::new(vec![iface]));
    let ctl = Ctl::new(sh.clone());
    for (_, cmd) in crate::ipvsadm::parse_rules(rules).expect("fixture rules parse") {
        ctl.apply(&cmd).expect("fixture rules apply");
    }
    sh.routes.store(Arc::new(vec![
        super::RouteEntry {
            dst: Ipv4Addr::new(10, 0, 0, 0),
            mask: Ipv4Addr::new(255, 255, 255, 0),
            ifindex: IFINDEX,
            gateway: Ipv4Addr::UNSPECIFIED,
            metric: 0,
        },
        super::RouteEntry {
            dst: Ipv4Addr::UNSPECIFIED,
            mask: Ipv4Addr::UNSPECIFIED,
            ifindex: IFINDEX,
            gateway: GATEWAY,
            metric: 0,
        },
    ]));
    sh.publish_neigh([((IFINDEX, GATEWAY), CLIENT_MAC)].into_iter().collect());
    for d in ctl.all_dests() {
        d.out_ifindex.store(IFINDEX, std::sync::atomic::Ordering::Relaxed);
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
    let b = etherparse::PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC).ipv4(CLIENT.octets(), VIP.octets(), 64);
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
        .ipv4(CLIENT.octets(), VIP.octets(), 64)
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

thread_local! {
    static FUZZ: std::cell::RefCell<Option<(Arc<Shared>, Ctl, super::Worker)>> = const { std::cell::RefCell::new(None) };
}

/// One fuzz input through the pipeline (used by `fuzz/` and the corpus replay test).
/// Byte 0 selects the metadata; the rest is the frame. The worker persists across
/// inputs so that sequences reach established-connection paths; its table is capped.
pub fn fuzz_one(data: &[u8]) {
    let Some((&meta, frame)) = data.split_first() else {
        return;
    };
    FUZZ.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (sh, _ctl, w) = cell.get_or_insert_with(|| {
            let (sh, ctl) = director_all();
            (sh, ctl, super::Worker::new(0, 256))
        });
        let rx = super::RxMeta {
            ifindex: IFINDEX,
            pkttype: meta & 0x7,
            csum_partial: meta & 0x8 != 0,
            vlan_tci: None,
        };
        let svcs = sh.services.load();
        let mut out = VecEmit::counting();
        let now = u64::from(meta >> 4) * 10_000;
        let _ = w.process(sh, &svcs, now, rx, frame, &mut out);
        w.expire(now);
    });
}

/// Seed inputs for the fuzzer: golden frames of every class, in `fuzz_one` form.
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let with = |meta: u8, f: Vec<u8>| {
        let mut v = vec![meta];
        v.extend(f);
        v
    };
    let mut arp_req = vec![0u8; 60];
    crate::wire::arp::Repr::request(CLIENT_MAC, CLIENT, VIP).emit_frame(&mut arp_req, crate::wire::ethernet::BROADCAST);
    let mut arp_reply = vec![0u8; 60];
    crate::wire::arp::Repr {
        op: 2,
        sha: RS1_MAC,
        spa: RS1,
        tha: DIRECTOR_MAC,
        tpa: DIP,
    }
    .emit_frame(&mut arp_reply, DIRECTOR_MAC);
    let syn = tcp_frame(40000, 80, true, false, b"");
    vec![
        ("tcp_syn", with(0, syn.clone())),
        (
            "tcp_ack_data",
            with(0, tcp_frame(40000, 80, false, true, b"GET / HTTP/1.0\r\n\r\n")),
        ),
        ("tcp_fin", with(0x10, tcp_frame(40000, 80, false, true, b""))),
        ("udp", with(0, udp_frame(5353, 53, b"abcd"))),
        ("udp_partial_csum", with(0x8, udp_frame(5353, 53, b"abcd"))),
        ("arp_request_vip", with(1, arp_req)),
        ("arp_reply_rs", with(0, arp_reply)),
        ("truncated_ip", with(0, syn[..30].to_vec())),
        ("no_service_port", with(0, tcp_frame(1, 443, true, false, b""))),
    ]
}
