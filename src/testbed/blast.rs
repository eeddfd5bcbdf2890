//! `uvs blast`: a traffic generator for measurements. Writes UDP frames into an
//! AF_PACKET TX ring as fast as it can (or paced, busy-waiting) for a bounded time
//! and count. Test beds only: it sends inside namespaces.
//!
//! Flows: by default it cycles over `flows` source ports of one source address. With
//! `new_flows` every frame is a flow never sent before: the source port walks
//! 1024..=65535 and the source address steps up by one every 64512 frames, starting
//! at flow number `flow_offset` (so consecutive runs can keep every flow new).
//! With `pkts_per_flow` N > 1 each new flow gets N frames, interleaved: rounds of
//! `interleave` W flows, each round sending packet 1 of its W flows, then packet 2,
//! and so on ([`flow_of`]), so a flow's packets are W frames apart as other flows'
//! packets come between them (W = 1: back to back).
//!
//! With `syn_flood` it sends TCP SYNs instead (no payload), each from a random
//! spoofed source address and port with a random sequence number and a valid
//! checksum: the SYN flood of the hostile-input tests.
//!
//! It reports what it actually queued and for how long: `sent=N seconds=S`.

use std::time::{Duration, Instant};

use crate::ring::TxRing;
use crate::wire::{MacAddr, ethernet, ipv4};

/// Paced runs sleep rather than spin when the next burst is further off than this.
const SLEEP_OVER: Duration = Duration::from_micros(200);

/// Time-bounded pacing in bursts: the first frame of each burst waits for its due
/// time (sleeping while it is far off, since the sinks' receive work shares this
/// core, then spinning for precision).
struct Pacer {
    start: Instant,
    end: Instant,
    burst: u64,
    ns_per_pkt: f64,
}

impl Pacer {
    fn new(o: &BlastOptions) -> Pacer {
        let start = Instant::now();
        Pacer {
            start,
            end: start + Duration::from_secs_f64(o.seconds),
            burst: o.burst.clamp(1, 2048) as u64,
            ns_per_pkt: if o.pps > 0 { 1e9 / o.pps as f64 } else { 0.0 },
        }
    }

    /// Wait until frame number `sent` is due; false once the time is up.
    fn wait(&self, sent: u64) -> bool {
        if sent.is_multiple_of(64) && Instant::now() >= self.end {
            return false;
        }
        if self.ns_per_pkt > 0.0 && sent.is_multiple_of(self.burst) {
            let due = self.start + Duration::from_nanos((sent as f64 * self.ns_per_pkt) as u64);
            let now = Instant::now();
            if due > now + SLEEP_OVER {
                std::thread::sleep(due - now - SLEEP_OVER / 2);
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        true
    }
}

/// Source ports a new-flow run walks per source address.
pub const PORTS_PER_ADDR: u64 = 65536 - 1024;

#[derive(Debug, Clone)]
pub struct BlastOptions {
    pub iface: String,
    pub dst_mac: MacAddr,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub dport: u16,
    pub flows: u16,
    /// A new flow (source address and port) for every frame.
    pub new_flows: bool,
    /// First flow number of a `new_flows` run.
    pub flow_offset: u64,
    /// Frames per new flow (1: a new flow per frame).
    pub pkts_per_flow: u32,
    /// New flows whose frames are interleaved (see the module documentation).
    pub interleave: u32,
    pub seconds: f64,
    pub max_packets: u64,
    /// Packets per second; 0 = as fast as possible.
    pub pps: u64,
    /// Frames queued per kick of the kernel (sendto on the TX ring).
    pub burst: usize,
    pub payload: usize,
    /// TCP SYNs from random spoofed sources (see the module documentation).
    pub syn_flood: bool,
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct BlastReport {
    /// Frames handed to the kernel.
    pub sent: u64,
    /// From the first frame to the last kick.
    pub seconds: f64,
    /// New flows started (their first frame sent): the next run's `flow_offset` step.
    pub flows: u64,
}

/// Flow number (before `flow_offset`) of frame `i` of a new-flow run with `pkts`
/// frames per flow interleaved over `window` flows: round `i / (pkts * window)` holds
/// flows `round * window ..`, and frame `j` of a round goes to its flow `j % window`
/// (that flow's packet `j / window`).
pub fn flow_of(i: u64, pkts: u64, window: u64) -> u64 {
    let (pkts, window) = (pkts.max(1), window.max(1));
    let round = pkts * window;
    i / round * window + i % round % window
}

/// Flows whose first frame is among the first `sent` frames (see [`flow_of`]).
pub fn flows_started(sent: u64, pkts: u64, window: u64) -> u64 {
    let (pkts, window) = (pkts.max(1), window.max(1));
    let round = pkts * window;
    sent / round * window + (sent % round).min(window)
}

/// A random unicast source outside 0/8, 10/8, 127/8, 169.254/16, 192.168/16 and
/// 224/3 (so never a test bed's own subnet).
fn spoofed(x: u64) -> [u8; 4] {
    let mut a = (x >> 16) as u32;
    loop {
        let b = a.to_be_bytes();
        let bad =
            matches!(b[0], 0 | 10 | 127 | 224..=255) || (b[0] == 169 && b[1] == 254) || (b[0] == 192 && b[1] == 168);
        if !bad {
            return b;
        }
        a = a.wrapping_mul(0x9e37_79b9).wrapping_add(0x7f4a_7c15);
    }
}

/// `uvs blast --syn-flood`: SYNs from random sources, as fast as the ring takes them
/// (or paced), for the time and count given.
fn syn_flood(o: &BlastOptions, iface: &crate::pipeline::Iface, ring: &mut TxRing) -> BlastReport {
    let mut frame = [0u8; ethernet::HEADER_LEN + 40];
    ethernet::emit(&mut frame, o.dst_mac, iface.mac, ethernet::ethertype::IPV4);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(std::process::id()) ^ o.flow_offset;
    let pace = Pacer::new(o);
    let mut sent = 0u64;
    while sent < o.max_packets {
        if !pace.wait(sent) {
            break;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let src = spoofed(rng);
        let ip = &mut frame[ethernet::HEADER_LEN..];
        ipv4::Repr {
            tos: 0,
            total_len: 40,
            ident: rng as u16,
            dont_frag: true,
            ttl: 64,
            protocol: ipv4::proto::TCP,
            src: src.into(),
            dst: o.dst.into(),
        }
        .emit(ip);
        let t = &mut ip[20..40];
        t[0..2].copy_from_slice(&(1024 + (rng as u16 % 64000)).to_be_bytes());
        t[2..4].copy_from_slice(&o.dport.to_be_bytes());
        t[4..8].copy_from_slice(&((rng >> 32) as u32).to_be_bytes());
        t[8..12].copy_from_slice(&[0; 4]);
        t[12] = 5 << 4;
        t[13] = crate::wire::l4::tcp_flags::SYN;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t[16..20].copy_from_slice(&[0; 4]);
        let c = crate::wire::l4::full_checksum(ipv4::proto::TCP, src.into(), o.dst.into(), t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        match ring.buffer() {
            Some(b) => {
                b[..frame.len()].copy_from_slice(&frame);
                ring.commit(frame.len());
                sent += 1;
                if sent.is_multiple_of(pace.burst) {
                    ring.flush();
                }
            }
            None => ring.flush(),
        }
    }
    ring.flush();
    BlastReport {
        sent,
        seconds: pace.start.elapsed().as_secs_f64(),
        flows: sent,
    }
}

/// Send as configured; returns what was actually sent.
pub fn blast(o: &BlastOptions) -> Result<BlastReport, String> {
    let iface = crate::ring::discover(&o.iface)?;
    let mut ring = TxRing::open(iface.ifindex, 2048, 4096, iface.mtu.clone()).map_err(|e| e.to_string())?;
    if o.syn_flood {
        return Ok(syn_flood(o, &iface, &mut ring));
    }
    let mut frame = vec![0u8; ethernet::HEADER_LEN + 28 + o.payload];
    ethernet::emit(&mut frame, o.dst_mac, iface.mac, ethernet::ethertype::IPV4);
    let total = (28 + o.payload) as u16;
    let ip_header = |frame: &mut [u8], src: [u8; 4]| {
        ipv4::Repr {
            tos: 0,
            total_len: total,
            ident: 0,
            dont_frag: true,
            ttl: 64,
            protocol: 17,
            src: src.into(),
            dst: o.dst.into(),
        }
        .emit(&mut frame[ethernet::HEADER_LEN..]);
    };
    ip_header(&mut frame, o.src);
    let u = ethernet::HEADER_LEN + 20;
    frame[u + 2..u + 4].copy_from_slice(&o.dport.to_be_bytes());
    frame[u + 4..u + 6].copy_from_slice(&(8 + o.payload as u16).to_be_bytes());
    frame[u + 6..u + 8].copy_from_slice(&[0, 0]); // UDP checksum 0: none
    let pace = Pacer::new(o);
    let mut sent = 0u64;
    let flows = o.flows.max(1) as u64;
    let (pkts, window) = (u64::from(o.pkts_per_flow.max(1)), u64::from(o.interleave.max(1)));
    let mut addr_step = u64::MAX;
    while sent < o.max_packets {
        if !pace.wait(sent) {
            break;
        }
        let sport = if o.new_flows {
            let n = o.flow_offset + flow_of(sent, pkts, window);
            let step = n / PORTS_PER_ADDR;
            if step != addr_step {
                addr_step = step;
                let src = u32::from_be_bytes(o.src).wrapping_add(step as u32).to_be_bytes();
                ip_header(&mut frame, src);
            }
            1024 + (n % PORTS_PER_ADDR) as u16
        } else {
            1024 + (sent % flows) as u16
        };
        frame[u..u + 2].copy_from_slice(&sport.to_be_bytes());
        match ring.buffer() {
            Some(b) => {
                b[..frame.len()].copy_from_slice(&frame);
                ring.commit(frame.len());
                sent += 1;
                if sent.is_multiple_of(pace.burst) {
                    ring.flush();
                }
            }
            None => ring.flush(),
        }
    }
    ring.flush();
    Ok(BlastReport {
        sent,
        seconds: pace.start.elapsed().as_secs_f64(),
        flows: if o.new_flows {
            flows_started(sent, pkts, window)
        } else {
            flows.min(sent)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_per_flow_is_the_frame_number() {
        for i in [0, 1, 2, 63, 64_512, 1 << 40] {
            assert_eq!(flow_of(i, 1, 1), i);
            assert_eq!(flows_started(i, 1, 1), i);
        }
    }

    #[test]
    fn interleaved_flows_get_their_frames_round_robin() {
        // 3 frames per flow over windows of 4 flows: 0 1 2 3 0 1 2 3 0 1 2 3 4 5 ...
        let seq: Vec<u64> = (0..14).map(|i| flow_of(i, 3, 4)).collect();
        assert_eq!(seq, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5]);
        // Back to back (window 1): 0 0 0 1 1 1 ...
        let seq: Vec<u64> = (0..7).map(|i| flow_of(i, 3, 1)).collect();
        assert_eq!(seq, [0, 0, 0, 1, 1, 1, 2]);
        // Every flow of the complete rounds gets exactly 3 frames; the next run's
        // offset (flows started) is past every flow number this run touched.
        for sent in [0u64, 1, 4, 5, 12, 13, 100, 3 * 1024 * 7 + 5] {
            let mut count = std::collections::BTreeMap::new();
            for i in 0..sent {
                *count.entry(flow_of(i, 3, 1024)).or_insert(0u32) += 1;
            }
            let started = flows_started(sent, 3, 1024);
            assert_eq!(count.len() as u64, started, "sent {sent}");
            assert!(count.keys().all(|&f| f < started));
            let full_rounds = sent / (3 * 1024) * 1024;
            assert!(count.iter().filter(|(f, _)| **f < full_rounds).all(|(_, n)| *n == 3));
        }
    }
}
