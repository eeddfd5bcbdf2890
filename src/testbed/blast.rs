//! `uvs blast`: a traffic generator for measurements. Writes UDP frames into an
//! AF_PACKET TX ring as fast as it can (or paced) for a bounded time and count,
//! cycling over `flows` source ports. Test beds only: it sends inside namespaces.

use std::time::{Duration, Instant};

use crate::ring::TxRing;
use crate::wire::{MacAddr, ethernet, ipv4};

#[derive(Debug, Clone)]
pub struct BlastOptions {
    pub iface: String,
    pub dst_mac: MacAddr,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub dport: u16,
    pub flows: u16,
    pub seconds: f64,
    pub max_packets: u64,
    /// Packets per second; 0 = as fast as possible.
    pub pps: u64,
    pub payload: usize,
}

/// Returns the number of frames queued.
pub fn blast(o: &BlastOptions) -> Result<u64, String> {
    let iface = crate::director::iface::discover(&o.iface)?;
    let mut ring = TxRing::open(iface.ifindex, 2048, 4096).map_err(|e| e.to_string())?;
    let mut frame = vec![0u8; ethernet::HEADER_LEN + 28 + o.payload];
    ethernet::emit(&mut frame, o.dst_mac, iface.mac, ethernet::ethertype::IPV4);
    let total = (28 + o.payload) as u16;
    ipv4::Repr {
        tos: 0,
        total_len: total,
        ident: 0,
        dont_frag: true,
        ttl: 64,
        protocol: 17,
        src: o.src,
        dst: o.dst,
    }
    .emit(&mut frame[ethernet::HEADER_LEN..]);
    let u = ethernet::HEADER_LEN + 20;
    frame[u + 2..u + 4].copy_from_slice(&o.dport.to_be_bytes());
    frame[u + 4..u + 6].copy_from_slice(&(8 + o.payload as u16).to_be_bytes());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.seconds);
    let mut sent = 0u64;
    let flows = o.flows.max(1);
    while sent < o.max_packets {
        if sent.is_multiple_of(64) && Instant::now() >= end {
            break;
        }
        if o.pps > 0 {
            let due = start + Duration::from_secs_f64(sent as f64 / o.pps as f64);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        let sport = 1024 + (sent % flows as u64) as u16;
        frame[u..u + 2].copy_from_slice(&sport.to_be_bytes());
        frame[u + 6..u + 8].copy_from_slice(&[0, 0]); // UDP checksum 0: none
        match ring.buffer() {
            Some(b) => {
                b[..frame.len()].copy_from_slice(&frame);
                ring.commit(frame.len());
                sent += 1;
            }
            None => ring.flush(),
        }
        if sent.is_multiple_of(32) {
            ring.flush();
        }
    }
    ring.flush();
    Ok(sent)
}
