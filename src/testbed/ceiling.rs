//! `uvs ceiling` (hidden): the packet-rate harness's minimal AF_PACKET forwarder.
//! It receives on one interface and sends every IPv4 frame on, round robin over the
//! `--to` interfaces, rewriting only the MAC addresses: the least any DR director
//! must do. It uses the director's own ring code, ring geometry and loop
//! ([`crate::ring::drive`]), so the gap between it and `uvs run` is the pipeline.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::pipeline::{Emit, RxMeta};
use crate::ring::drive::{Handler, TX_FRAMES, drive};
use crate::ring::{RxRing, Tx, TxRing, TxSet, rx::RxConfig};
use crate::wire::{MacAddr, ethernet};

#[derive(Debug, Clone)]
pub struct CeilingOptions {
    pub iface: String,
    /// Output interfaces with the destination MAC to write.
    pub to: Vec<(String, MacAddr)>,
    /// Core to pin the forwarding thread to.
    pub cpu: Option<usize>,
}

struct Fwd {
    outs: Vec<(u32, MacAddr, MacAddr)>,
    next: usize,
    pub forwarded: u64,
}

impl Handler for Fwd {
    #[inline]
    fn frame(&mut self, _meta: RxMeta, frame: &[u8], tx: &mut Tx) {
        if frame.len() < ethernet::HEADER_LEN || frame[12..14] != [0x08, 0x00] {
            return;
        }
        let (ifindex, dst, src) = self.outs[self.next];
        self.next = if self.next + 1 == self.outs.len() {
            0
        } else {
            self.next + 1
        };
        if let Some(buf) = tx.buffer(ifindex)
            && buf.len() >= frame.len()
        {
            buf[..frame.len()].copy_from_slice(frame);
            buf[0..6].copy_from_slice(&dst);
            buf[6..12].copy_from_slice(&src);
            tx.commit(ifindex, frame.len());
            self.forwarded += 1;
        }
    }
    fn round(&mut self, _got: usize, _tx: &mut Tx) -> i32 {
        100
    }
}

/// Forward until SIGINT/SIGTERM.
pub fn run(o: &CeilingOptions) -> Result<(), String> {
    if o.to.is_empty() {
        return Err("ceiling: at least one --to IFACE=MAC".into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal handler: {e}"))?;
    }
    let input = crate::ring::discover(&o.iface)?;
    let group = (std::process::id() as u16)
        .wrapping_mul(31)
        .wrapping_add(input.ifindex as u16);
    let mut rx = vec![RxRing::open(input.ifindex, group, RxConfig::default()).map_err(|e| e.to_string())?];
    let mut set = TxSet::default();
    let mut outs = Vec::new();
    for (name, mac) in &o.to {
        let i = crate::ring::discover(name)?;
        if !set.rings.iter().any(|r| r.ifindex == i.ifindex) {
            let max_frame = (i.mtu.get() as usize + ethernet::HEADER_LEN + 20).max(1600);
            set.rings
                .push(TxRing::open(i.ifindex, max_frame, TX_FRAMES, i.mtu.clone()).map_err(|e| e.to_string())?);
        }
        outs.push((i.ifindex, *mac, i.mac));
    }
    let mut tx = Tx::Ring(set);
    if let Some(c) = o.cpu {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let mut f = Fwd {
        outs,
        next: 0,
        forwarded: 0,
    };
    eprintln!("uvs: ceiling ready on {}", o.iface);
    drive(&mut rx, &mut tx, &stop, &mut f);
    let (_, drops, _) = rx[0].stats().unwrap_or_default();
    let full: u64 = match &tx {
        Tx::Ring(t) => t.rings.iter().map(|r| r.full).sum(),
        Tx::Mmsg(_) => 0,
    };
    eprintln!(
        "uvs: ceiling stopped after {} frames (RX ring drops {drops}, TX ring full {full})",
        f.forwarded
    );
    Ok(())
}
