//! The fuzz targets' bodies, in the library so that `tests/fuzz_corpus.rs` replays the
//! checked-in corpora on stable Rust (no libFuzzer needed) and CI guards them.
//! `fuzz/fuzz_targets/*.rs` are one-line wrappers around these functions.
//!
//! Every target asserts invariants besides "does not panic":
//! * [`pipeline_flow`]: frames the director emits are well formed (valid IPv4 header
//!   checksum, total length = frame length, at most the interface MTU, L4 checksums
//!   valid when the input's were), and the connection table never exceeds its cap.
//! * [`arp`]: no ARP packet changes a real server's MAC unless the director had just
//!   asked for it, VIPs and the director's own addresses are never learned, replies
//!   are only sent for VIPs.
//! * [`ipvsadm_args`] and [`rules`]: a rules file that parses applies (or is refused)
//!   without panicking.
//! * [`control`]: any request bytes decode (bounded) and execute without panicking.

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::ctl::Ctl;
use crate::director::neigh::Neighbours;
use crate::pipeline::fixture::{self, DIRECTOR_MAC, IFINDEX};
use crate::pipeline::{Emit, RxMeta, Shared, Verdict, Worker, pkttype};
use crate::wire::{MacAddr, arp as warp, checksum, ethernet, ipv4, l4};

/// Connection-table cap of the fuzzed worker (small, so the fuzzer can fill it).
pub const FLOW_CAP: usize = 64;
/// At most this many frames per input.
pub const MAX_RECORDS: usize = 64;

/// How the targets parse host names: never (a blocking resolver call per input would
/// make them crawl and depend on the network).
const OFFLINE: crate::ipvsadm::addr::HostLookup = crate::ipvsadm::addr::no_host_lookup;

// ---------------------------------------------------------------------------------
// ipvsadm grammar and rules files

/// The ipvsadm argument grammar: `data` is NUL-separated tokens (lossy UTF-8), at most
/// 40 of them.
pub fn ipvsadm_args(data: &[u8]) {
    let toks: Vec<String> = data
        .split(|b| *b == 0)
        .take(40)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    let _ = crate::ipvsadm::parse_args_with(&toks, OFFLINE);
    // The -R tokenizer on the same bytes as one line.
    let line = String::from_utf8_lossy(data);
    let toks = crate::ipvsadm::tokenize_line(&line);
    if toks.len() <= 40 {
        let _ = crate::ipvsadm::parse_args_with(&toks, OFFLINE);
    }
}

/// A rules file: parse it; if it parses, apply its first 64 commands to a fresh table
/// (as `uvs run --rules` / `uvs check` do).
pub fn rules(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(cmds) = crate::ipvsadm::parse_rules_with(&text, OFFLINE) else {
        return;
    };
    let ctl = Ctl::new(Arc::new(Shared::new(Vec::new())));
    for (_, c) in cmds.iter().take(64) {
        let _ = ctl.apply(c);
    }
    let _ = ctl.all_dests();
}

/// The control socket's protocol ([`crate::control::proto`]), both sides, on the same
/// bytes:
/// * as the director reads a request: one of this version is served against a fresh
///   director table (as `ipvsadm` requests are), its outcomes rendered as the client
///   renders them; the director must answer every command up to the first failing
///   listing (the client never reports a bad answer). Another version is answered with
///   the mismatch line;
/// * as the client reads a reply;
/// * inputs in version 1's format (`"UVS1" | u32 len | NUL-terminated argv | u32 len |
///   stdin`, most of the checked-in corpus) also run as an ipvsadm invocation through
///   the client's parser and plan, the typed request and the director
///   ([`crate::control::execute_with`]), so they keep exercising the whole path.
pub fn control(data: &[u8]) {
    use crate::control::proto::{self, Framed, Request, Response};
    let _ = proto::read_response(&mut &data[..], 1 << 16);
    let hub = || {
        let (_sh, ctl) = fixture::director_with(fixture::RULES);
        crate::control::Hub::new(Arc::new(ctl), std::time::Instant::now())
    };
    match proto::read_request(&mut &data[..]) {
        Ok(Framed::Ours(Request::Apply { mut commands, restore })) => {
            commands.truncate(64);
            let hub = hub();
            let outcomes = crate::control::exec::apply(&hub, &commands, restore);
            let resp = proto::encode_response(&Response::Applied(outcomes.clone()));
            assert!(matches!(
                proto::read_response(&mut &resp[..], usize::MAX),
                Ok(Framed::Ours(Response::Applied(back))) if back == outcomes
            ));
            let r = crate::control::client::render(&commands, outcomes, None, &crate::ipvsadm::list::NumericNames);
            assert!(!reports(&r.err, "bad answer from the director", data), "{}", r.err);
        }
        Ok(Framed::Ours(Request::Trace(_))) => {}
        Ok(Framed::Ours(req)) => {
            let _ = proto::encode_response(&crate::control::exec::serve(&hub(), req));
        }
        Ok(Framed::Other(_)) | Err(_) => {}
    }
    if let Some((args, stdin)) = v1_request(data) {
        let words: Vec<&str> = args.iter().map(String::as_str).take(64).collect();
        let r = crate::control::execute_with(
            &hub(),
            &words,
            Some(&stdin),
            OFFLINE,
            &crate::ipvsadm::list::NumericNames,
        );
        assert!(
            !reports(&r.err, "bad answer from the director", data)
                && !reports(&r.err, "request did not survive its encoding", data)
                && !reports(&r.err, "response did not survive its encoding", data),
            "{}",
            r.err
        );
    }
}

/// Whether `err` holds a line that is `msg` (after the `uvs: ` prefix), as the client
/// or director writes it, and the input did not hold it: error messages echo arguments
/// and `-R` lines (`unexpected argument wbad answer`, a restore line reading `request
/// did not survive its encoding`: the fuzzer found both).
fn reports(err: &str, msg: &str, input: &[u8]) -> bool {
    err.lines().any(|l| l.trim_start_matches("uvs: ").starts_with(msg)) && !String::from_utf8_lossy(input).contains(msg)
}

/// A version-1 request: (argv, stdin), bounded as version 1's director bounded them.
fn v1_request(data: &[u8]) -> Option<(Vec<String>, String)> {
    let rest = data.strip_prefix(crate::control::proto::MAGIC_V1)?;
    let blob = |b: &[u8], max: usize| -> Option<(Vec<u8>, usize)> {
        let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        (n <= max).then(|| b.get(4..4 + n).map(|v| (v.to_vec(), 4 + n)))?
    };
    let (words, used) = blob(rest, 64 * 1024)?;
    let (stdin, _) = blob(&rest[used..], 16 << 20)?;
    let args = match words.strip_suffix(&[0]) {
        None => Vec::new(),
        Some(w) => w
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    };
    Some((args, String::from_utf8_lossy(&stdin).into_owned()))
}

// ---------------------------------------------------------------------------------
// The pipeline, every forwarding mode, both directions

/// An [`Emit`] that checks every frame the director transmits.
struct CheckEmit {
    buf: Vec<u8>,
    /// The input's L4 checksum was valid (and not offloaded): outputs must be too.
    expect_l4_valid: bool,
    pub frames: usize,
}

impl Emit for CheckEmit {
    fn buffer(&mut self, _ifindex: u32) -> Option<&mut [u8]> {
        Some(&mut self.buf)
    }
    fn commit(&mut self, ifindex: u32, len: usize) {
        assert_eq!(ifindex, IFINDEX);
        self.frames += 1;
        check_frame(&self.buf[..len], 1500, self.expect_l4_valid);
    }
}

/// Assert that `f` is a frame the director may put on a wire with MTU `mtu`.
pub fn check_frame(f: &[u8], mtu: usize, expect_l4_valid: bool) {
    assert!(f.len() >= ethernet::HEADER_LEN, "runt frame");
    assert!(
        f.len() <= ethernet::HEADER_LEN + mtu,
        "frame of {} bytes exceeds the MTU",
        f.len()
    );
    let eth = ethernet::Frame::new_checked(f).expect("ethernet");
    assert_eq!(eth.src(), DIRECTOR_MAC, "frames leave from the director's MAC");
    match eth.ethertype() {
        ethernet::ethertype::ARP => {
            assert_eq!(f.len(), warp::MIN_FRAME_LEN);
            let a = warp::Repr::parse(eth.payload()).expect("ARP reply parses");
            assert_eq!(a.op, warp::OP_REPLY);
            assert_eq!(a.sha, DIRECTOR_MAC);
        }
        ethernet::ethertype::IPV4 => check_ip(&f[ethernet::HEADER_LEN..], true, expect_l4_valid),
        t => panic!("unexpected ethertype {t:#06x}"),
    }
}

/// An IPv4 packet: header valid; L4 (or the IPIP inner packet) checked when whole.
fn check_ip(ip: &[u8], exact_len: bool, expect_l4_valid: bool) {
    let p = ipv4::Packet::new_checked(ip).expect("well-formed IPv4 header");
    if exact_len {
        assert_eq!(p.total_len(), ip.len(), "total length = frame length");
    }
    assert!(p.verify_checksum(), "IPv4 header checksum");
    if p.is_fragment() {
        return;
    }
    let (hl, tl) = (p.header_len(), p.total_len());
    let body = &ip[hl..tl];
    match p.protocol() {
        ipv4::proto::IPIP => check_ip(body, true, expect_l4_valid),
        ipv4::proto::ICMP if body.len() >= 8 && crate::wire::icmp::is_related_error(body[0]) => {
            assert_eq!(checksum::checksum(body), 0, "ICMP checksum");
        }
        proto @ (ipv4::proto::TCP | ipv4::proto::UDP) if expect_l4_valid => {
            let min = l4::min_header_len(proto).unwrap_or(8);
            if body.len() >= min {
                let off = l4::checksum_offset(proto);
                let c = u16::from_be_bytes([body[off], body[off + 1]]);
                if !(proto == ipv4::proto::UDP && c == 0) {
                    assert_eq!(c, l4::full_checksum(proto, p.src(), p.dst(), body), "L4 checksum");
                }
            }
        }
        _ => {}
    }
}

/// Recompute the IPv4 header checksum (`ip`) and the TCP/UDP/ICMP checksum (`l4`) of
/// an Ethernet frame in place where the headers allow. Returns whether the L4 checksum
/// is now known valid.
pub fn fix_checksums(frame: &mut [u8], ip: bool, l4c: bool) -> bool {
    if frame.len() < ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN
        || frame[12..14] != ethernet::ethertype::IPV4.to_be_bytes()
    {
        return false;
    }
    let b = &mut frame[ethernet::HEADER_LEN..];
    let hl = usize::from(b[0] & 0x0f) * 4;
    if b[0] >> 4 != 4 || hl < ipv4::MIN_HEADER_LEN || hl > b.len() {
        return false;
    }
    if ip {
        b[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&b[..hl]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let tl = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let frag = u16::from_be_bytes([b[6], b[7]]) & 0x3fff != 0;
    if !l4c || tl < hl || tl > b.len() || frag {
        return false;
    }
    let Some((src, dst, proto)) = ipv4::peek(b) else {
        return false;
    };
    let body = &mut b[hl..tl];
    match proto {
        ipv4::proto::ICMP if body.len() >= 8 => {
            body[2..4].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(body);
            body[2..4].copy_from_slice(&c.to_be_bytes());
            true
        }
        ipv4::proto::TCP | ipv4::proto::UDP if body.len() >= l4::min_header_len(proto).unwrap_or(8) => {
            let c = l4::full_checksum(proto, src, dst, body);
            let off = l4::checksum_offset(proto);
            body[off..off + 2].copy_from_slice(&c.to_be_bytes());
            true
        }
        _ => false,
    }
}

/// Frames that open one connection of each kind before the fuzzed frames: NAT TCP
/// (client SYN, server SYN-ACK, client ACK), DR TCP, TUN TCP, NAT UDP both ways.
pub fn prime_frames() -> Vec<Vec<u8>> {
    use fixture::*;
    vec![
        tcp_frame(40000, 8080, true, false, b""),
        reply_frame(RS1, RS1_MAC, 8888, 40000, true, b""),
        tcp_frame(40000, 8080, false, true, b"hello"),
        tcp_frame(40001, 80, true, false, b""),
        tcp_frame(40002, 443, true, false, b""),
        udp_frame(5353, 54, b"q"),
        udp_reply(RS1, 5454, 5353, b"a"),
    ]
}

/// A UDP datagram from real server `rs`:`sport` to the client.
pub fn udp_reply(rs: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mac = if rs == fixture::RS1 {
        fixture::RS1_MAC
    } else {
        fixture::RS2_MAC
    };
    let b = etherparse::PacketBuilder::ethernet2(mac, DIRECTOR_MAC)
        .ipv4(rs.octets(), fixture::CLIENT.octets(), 64)
        .udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("build frame");
    v
}

fn rx_meta(ctl: u8) -> RxMeta {
    let pkttype = match ctl >> 5 {
        4 => pkttype::BROADCAST,
        5 => pkttype::MULTICAST,
        6 => pkttype::OTHERHOST,
        7 => pkttype::OUTGOING,
        _ => pkttype::HOST,
    };
    RxMeta {
        ifindex: IFINDEX,
        pkttype,
        csum_partial: ctl & 0x04 != 0,
        vlan_tci: None,
    }
}

thread_local! {
    static FLOW: RefCell<Option<(Arc<Shared>, Ctl)>> = const { RefCell::new(None) };
}

/// Frames through the pipeline of the all-modes fixture ([`fixture::RULES_ALL`]:
/// DR, NAT and TUN services; NAT requests and replies), from a fresh worker that
/// already holds one connection of each kind ([`prime_frames`]).
///
/// Input: records `[ctl][len lo][len hi][frame…]`. `ctl` bits: 0–1 advance the clock
/// (0, 1 s, 100 s, 1000 s); 2 the frame's L4 checksum is offloaded (`csum_partial`);
/// 3 recompute the L4 (TCP/UDP/ICMP) checksum; 4 recompute the IPv4 header checksum;
/// 5–7 packet type (4 broadcast, 5 multicast, 6 other host, 7 outgoing, else host).
/// The harness fixes checksums so that mutated frames get past validation.
pub fn pipeline_flow(data: &[u8]) {
    FLOW.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (sh, _ctl) = cell.get_or_insert_with(fixture::director_all);
        let svcs = sh.services.load();
        let mut w = Worker::new(0, FLOW_CAP);
        let mut out = CheckEmit {
            buf: vec![0; 16384],
            expect_l4_valid: true,
            frames: 0,
        };
        let mut now = 1_000u64;
        for f in prime_frames() {
            let v = w.process(sh, &svcs, now, rx_meta(0), &f, &mut out);
            assert_eq!(v, Verdict::Forwarded, "priming frames are forwarded");
        }
        let mut rest = data;
        let mut n = 0;
        while rest.len() >= 3 && n < MAX_RECORDS {
            n += 1;
            let ctl = rest[0];
            let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
            rest = &rest[3..];
            let take = len.min(rest.len());
            let mut frame = rest[..take].to_vec();
            rest = &rest[take..];
            now += [0, 1_000, 100_000, 1_000_000][usize::from(ctl & 3)];
            let meta = rx_meta(ctl);
            let valid = fix_checksums(&mut frame, ctl & 0x10 != 0, ctl & 0x08 != 0);
            out.expect_l4_valid = valid && !meta.csum_partial;
            let _ = w.process(sh, &svcs, now, meta, &frame, &mut out);
            assert!(w.conns.len() <= FLOW_CAP, "connection table over its cap");
            if ctl & 3 != 0 {
                w.expire(now);
            }
        }
    });
}

/// `f` with its DF bit cleared (the header checksum is left for the harness to fix).
pub fn no_df(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() > ethernet::HEADER_LEN + 7 {
        f[ethernet::HEADER_LEN + 6] &= !0x40;
    }
    f
}

/// Encode frames as a [`pipeline_flow`] input (every checksum recomputed).
pub fn flow_input(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (ctl, f) in frames {
        v.push(*ctl);
        v.extend_from_slice(&(f.len() as u16).to_le_bytes());
        v.extend_from_slice(f);
    }
    v
}

// ---------------------------------------------------------------------------------
// ARP

/// ARP packets through the pipeline and into the control thread's neighbour table
/// (real servers RS1 and RS2 of the fixture are its users).
///
/// Input: records of 1 + 6 + 28 bytes: `ctl`, the Ethernet source MAC, the ARP
/// packet. `ctl` bits: 0 the control thread sends its due solicitations first; 1–2
/// advance the clock (0, 0.5 s, 5 s, 40 s); 3 use the ARP sender MAC as the Ethernet
/// source; 4 broadcast packet type; 5 the packet is padded to 60 bytes.
pub fn arp(data: &[u8]) {
    FLOW.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (sh, _ctl) = cell.get_or_insert_with(fixture::director_all);
        let svcs = sh.services.load();
        let mut w = Worker::new(0, 4);
        let mut neigh = Neighbours::default();
        let users = [(fixture::RS1, fixture::RS1_MAC), (fixture::RS2, fixture::RS2_MAC)];
        let dests: Vec<_> = users.iter().map(|(ip, _)| dest_at(*ip)).collect();
        neigh.set_users(
            users
                .iter()
                .zip(&dests)
                .map(|((ip, _), d)| ((IFINDEX, *ip), d.clone()))
                .collect(),
        );
        let mut out = CheckEmit {
            buf: vec![0; 256],
            expect_l4_valid: true,
            frames: 0,
        };
        let mut now = 0u64;
        // Resolve both real servers properly first.
        let _ = neigh.due(now);
        for (ip, mac) in users {
            assert!(neigh.on_arp(IFINDEX, ip, mac, now));
        }
        let mut solicited: Vec<(Ipv4Addr, u64)> = Vec::new();
        for rec in data.chunks_exact(35).take(MAX_RECORDS) {
            let ctl = rec[0];
            now += [0, 500, 5_000, 40_000][usize::from((ctl >> 1) & 3)];
            if ctl & 1 != 0 {
                for ((_, ip), _) in neigh.due(now) {
                    solicited.push((ip, now));
                }
            }
            let mut frame = [0u8; 60];
            let eth_src: MacAddr = rec[1..7].try_into().unwrap_or_default();
            let pkt = &rec[7..35];
            let sha: MacAddr = pkt[8..14].try_into().unwrap_or_default();
            ethernet::emit(
                &mut frame,
                ethernet::BROADCAST,
                if ctl & 8 != 0 { sha } else { eth_src },
                ethernet::ethertype::ARP,
            );
            frame[ethernet::HEADER_LEN..ethernet::HEADER_LEN + 28].copy_from_slice(pkt);
            let len = if ctl & 0x20 != 0 { 60 } else { ethernet::HEADER_LEN + 28 };
            let meta = RxMeta {
                ifindex: IFINDEX,
                pkttype: if ctl & 0x10 != 0 {
                    pkttype::BROADCAST
                } else {
                    pkttype::HOST
                },
                csum_partial: false,
                vlan_tci: None,
            };
            let before: Vec<_> = dests.iter().map(|d| d.mac()).collect();
            let v = w.process(sh, &svcs, now, meta, &frame[..len], &mut out);
            match v {
                Verdict::Neigh { ifindex, ip, mac } => {
                    assert!(
                        !svcs.is_vip(ip) && !sh.is_local_addr(ip),
                        "never learn a VIP or our own address"
                    );
                    neigh.on_arp(ifindex, ip, mac, now);
                }
                Verdict::Answered => {
                    let a = warp::Repr::parse(pkt).expect("answered ARP parses");
                    assert!(svcs.is_vip(a.tpa), "answers only for VIPs");
                }
                _ => {}
            }
            for ((d, was), (ip, _)) in dests.iter().zip(before).zip(users) {
                let now_mac = d.mac();
                // A known MAC is never replaced by an ARP packet: it is given up
                // first (after unanswered probes) and resolved again.
                assert!(
                    was.is_none() || now_mac.is_none() || now_mac == was,
                    "real server {ip:?}: known MAC replaced by an ARP packet"
                );
                if now_mac.is_some() && now_mac != was {
                    let asked = solicited
                        .iter()
                        .any(|(s, at)| *s == ip && now.saturating_sub(*at) < crate::director::neigh::RETRY_MS);
                    assert!(asked, "real server {ip:?} MAC changed by an unsolicited ARP packet");
                }
            }
            assert!(neigh.resolved_map().len() <= users.len(), "only users are resolved");
        }
    });
}

fn dest_at(ip: Ipv4Addr) -> Arc<crate::service::Dest> {
    use crate::service::{Dest, DestConfig, ForwardMethod, TunnelCsum, TunnelType};
    Arc::new(Dest::new(&DestConfig {
        addr: ip.into(),
        port: 80,
        method: ForwardMethod::Route,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        tun_type: TunnelType::Ipip,
        tun_port: 0,
        tun_csum: TunnelCsum::NoCsum,
    }))
}

/// Fuzz target `sync`: an IPVS sync datagram, decoded with the sync-id filter off.
/// Checks: a decoded message re-encodes (v1 by [`crate::sync::Encoder`], v0 by
/// [`crate::sync::encode_v0`]) into messages that decode to the same connections.
pub fn sync(data: &[u8]) {
    use crate::sync::{self, flags};
    let Ok(m) = sync::decode(data, 0) else { return };
    assert!(m.conns.len() + m.skipped.len() <= 255);
    let mut conns = m.conns;
    for c in &mut conns {
        c.flags &= !flags::HASHED;
    }
    let out = if m.version == 1 {
        sync::Encoder::encode_all(m.syncid, 1472, &conns).expect("decoded v1 entries re-encode")
    } else {
        sync::encode_v0(m.syncid, 1472, &conns).expect("decoded v0 entries re-encode")
    };
    let back: Vec<_> = out
        .iter()
        .flat_map(|b| sync::decode(b, m.syncid).expect("re-encoded message decodes").conns)
        .collect();
    assert_eq!(back, conns);
}

// ---------------------------------------------------------------------------------
// Seeds

/// Seed inputs per target (`pipeline_flow`, `arp`, `ipvsadm_args`, `rules`, `control`, `sync`).
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    use fixture::*;
    let named = |v: Vec<(&str, Vec<u8>)>| v.into_iter().map(|(n, b)| (n.to_string(), b)).collect();
    match target {
        "pipeline_flow" => {
            let all = 0x18; // fix both checksums
            let mut icmp_rs = Vec::new();
            {
                // Port unreachable from RS1 quoting client:5353 -> RS1:5454.
                let quoted = {
                    let b = etherparse::PacketBuilder::ipv4(CLIENT.octets(), RS1.octets(), 63).udp(5353, 5454);
                    let mut v = Vec::new();
                    b.write(&mut v, b"q").unwrap();
                    v
                };
                let b = etherparse::PacketBuilder::ethernet2(RS1_MAC, DIRECTOR_MAC)
                    .ipv4(RS1.octets(), CLIENT.octets(), 64)
                    .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                        etherparse::icmpv4::DestUnreachableHeader::Port,
                    ));
                b.write(&mut icmp_rs, &quoted).unwrap();
            }
            let big_udp = no_df(udp_frame(5353, 53, &[7u8; 3000]));
            let big_nat = no_df(udp_frame(5353, 54, &[8u8; 4000]));
            let big_reply = no_df(udp_reply(RS1, 5454, 5353, &[9u8; 2000]));
            let big_tun = no_df(tcp_frame(40002, 443, false, true, &[1u8; 1490]));
            named(vec![
                (
                    "nat_tcp_both_ways",
                    flow_input(&[
                        (all, tcp_frame(40000, 8080, false, true, b"more")),
                        (all, reply_frame(RS1, RS1_MAC, 8888, 40000, false, b"reply")),
                        (all | 1, tcp_frame(40000, 8080, false, true, b"")),
                    ]),
                ),
                (
                    "dr_tun_data",
                    flow_input(&[
                        (all, tcp_frame(40001, 80, false, true, b"dr")),
                        (all, tcp_frame(40002, 443, false, true, b"tun")),
                    ]),
                ),
                (
                    "udp_nat_and_icmp",
                    flow_input(&[(all, udp_frame(5353, 54, b"again")), (all, icmp_rs)]),
                ),
                ("new_conns", flow_input(&[(all, tcp_frame(1, 8080, true, false, b""))])),
                ("jumbo_udp_dr", flow_input(&[(all, big_udp)])),
                (
                    "big_nat_both_ways_and_tun",
                    flow_input(&[(all, big_nat), (all, big_reply), (all, big_tun)]),
                ),
                (
                    "partial_csum",
                    flow_input(&[(all | 4, udp_frame(5353, 54, b"offloaded"))]),
                ),
            ])
        }
        "arp" => {
            let rec = |ctl: u8, eth_src: MacAddr, a: warp::Repr| {
                let mut f = [0u8; 60];
                a.emit_frame(&mut f, ethernet::BROADCAST);
                let mut v = vec![ctl];
                v.extend_from_slice(&eth_src);
                v.extend_from_slice(&f[14..42]);
                v
            };
            let evil = [0x02, 0xee, 0, 0, 0, 1];
            let reply = |sha, spa| warp::Repr {
                op: warp::OP_REPLY,
                sha,
                spa,
                tha: DIRECTOR_MAC,
                tpa: DIP,
            };
            named(vec![
                ("request_vip", rec(0, CLIENT_MAC, warp::Repr::request(CLIENT_MAC, CLIENT, VIP))),
                ("claim_vip", rec(8, evil, reply(evil, VIP))),
                ("claim_rs", rec(8, evil, reply(evil, RS1))),
                ("gratuitous_rs", rec(8, evil, warp::Repr::gratuitous(evil, RS2))),
                ("solicited_answer", [rec(1 | 4, RS1_MAC, reply(RS1_MAC, RS1))].concat()),
            ])
        }
        "ipvsadm_args" => {
            let j = |s: &[&str]| s.join("\0").into_bytes();
            named(vec![
                ("add_service", j(&["-A", "-t", "10.0.0.1:80", "-s", "wrr", "-p", "60"])),
                (
                    "add_server",
                    j(&["-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1:8080", "-m", "-w", "3", "-x", "10"]),
                ),
                ("list", j(&["-L", "-n", "--stats", "--exact"])),
                ("fwmark", j(&["-A", "-f", "12", "-s", "mh", "-b", "mh-port,mh-fallback"])),
                ("tunnel", j(&["-a", "-u", "[2001:db8::1]:53", "-r", "2001:db8::2", "-i", "--tun-type", "gue", "--tun-port", "6080"])),
                ("set", j(&["--set", "900", "120", "300"])),
                ("daemon", j(&["--start-daemon", "master", "--mcast-interface", "eth0", "--syncid", "3"])),
            ])
        }
        "control" => {
            // Requests as `ipvsadm` sends them: the client's parse and plan.
            let req = |args: &[&str], stdin: &str| {
                let cmd = crate::ipvsadm::parse_args_with(args, OFFLINE).expect("seed parses");
                let plan = crate::control::client::plan(cmd, stdin, OFFLINE);
                crate::control::proto::encode_request(&plan.request().expect("a remote command"))
            };
            use crate::control::proto::{Request, encode_request};
            named(vec![
                ("v2_list", req(&["-L", "-n"], "")),
                ("v2_list_conns", req(&["-L", "-n", "-c", "--persistent-conn"], "")),
                ("v2_add", req(&["-A", "-t", "10.0.0.100:81", "-s", "wlc"], "")),
                ("v2_restore", req(&["-R"], RULES_ALL)),
                ("v2_save", req(&["-S", "-n"], "")),
                ("v2_zero_set", req(&["--set", "10", "20", "30"], "")),
                ("v2_missing_service", req(&["-R"], "-L -t 10.9.9.9:1\n-C\n")),
                ("v2_sysctl", encode_request(&Request::Sysctl(vec!["-a".into()]))),
                ("v2_checks", encode_request(&Request::Checks)),
            ])
        }
        "rules" => named(vec![
            ("fixture", RULES_ALL.as_bytes().to_vec()),
            (
                "persistent",
                b"# saved\n-A -t 10.0.0.1:0 -s sh -p 360 -M 255.255.255.0\n-a -t 10.0.0.1:0 -r 10.0.1.1 -g -w 0\n-e -t 10.0.0.1:0 -r 10.0.1.1 -g -w 5\n--set 10 10 10\n-d -t 10.0.0.1:0 -r 10.0.1.1\n-D -t 10.0.0.1:0\n-C\n"
                    .to_vec(),
            ),
            ("bad_line", b"-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 300.1.1.1 -g\n".to_vec()),
        ]),
        "sync" => {
            use crate::sync::{Encoder, PeData, SyncConn, encode_v0, flags};
            let conn = |i: u8| SyncConn {
                protocol: 6,
                caddr: [203, 0, 113, i].into(),
                cport: 40000 + u16::from(i),
                vaddr: [192, 168, 10, 100].into(),
                vport: 80,
                daddr: [192, 168, 10, 11].into(),
                dport: 80,
                flags: flags::DROUTE,
                state: 1,
                fwmark: 0,
                timeout: 900,
                seq: None,
                pe: None,
            };
            let tpl = SyncConn {
                protocol: 17,
                cport: 0,
                flags: flags::TEMPLATE,
                state: 0,
                pe: Some(PeData { name: b"sip".to_vec(), data: b"call-id".to_vec() }),
                ..conn(9)
            };
            let seq = SyncConn { flags: flags::MASQ | flags::SEQ_MASK, seq: Some(Default::default()), ..conn(5) };
            let v6 = SyncConn {
                caddr: "2001:db8::7".parse().unwrap(),
                vaddr: "2001:db8::100".parse().unwrap(),
                daddr: "2001:db8::11".parse().unwrap(),
                ..conn(6)
            };
            let v1 = |c: &[SyncConn]| Encoder::encode_all(51, 1472, c).unwrap().remove(0);
            named(vec![
                ("v1_conns", v1(&[conn(1), conn(2), conn(3)])),
                ("v1_template_pe_seq", v1(&[tpl.clone(), seq.clone(), conn(4)])),
                ("v1_ipv6", v1(&[v6, conn(7)])),
                ("v0_conns", encode_v0(51, 1472, &[conn(1), seq]).unwrap().remove(0)),
            ])
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_forward_and_oracles_bite() {
        use fixture::*;
        let (sh, _ctl) = director_all();
        let svcs = sh.services.load();
        let mut w = Worker::new(0, 8);
        let mut out = CheckEmit {
            buf: vec![0; 16384],
            expect_l4_valid: true,
            frames: 0,
        };
        let f = udp_frame(5353, 53, &[7u8; 3000]);
        let v = w.process(&sh, &svcs, 0, rx_meta(0), &f, &mut out);
        assert_eq!(v, Verdict::Drop(crate::pipeline::DropReason::FragNeeded), "DF set");
        let mut f = no_df(f);
        fix_checksums(&mut f, true, true);
        let v = w.process(&sh, &svcs, 0, rx_meta(0), &f, &mut out);
        assert_eq!(v, Verdict::Forwarded);
        assert_eq!(out.frames, 1 + 3, "ICMP frag-needed, then 3 fragments");
        // The oracle catches an oversized frame.
        let big = vec![0u8; 1600];
        assert!(std::panic::catch_unwind(|| check_frame(&big, 1500, true)).is_err());
    }
}
