//! The receive/transmit loop shared by the director's workers and the harness's
//! minimal forwarder (`uvs ceiling`), so both have literally the same ring geometry,
//! batching, flushing and idle policy; they differ only in what they do per frame.
//!
//! One round: take at most [`MAX_BLOCKS_PER_ROUND`] retired RX blocks from each ring,
//! hand every frame to the handler (which writes into the TX rings), kick each TX
//! ring once, then let the handler do its per-round work. With nothing to read, wait
//! in poll(2) for the handler's timeout.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{RxRing, Tx, poll_readable};
use crate::pipeline::RxMeta;

/// RX blocks taken per ring before the TX rings are kicked: bounds the latency a
/// full burst adds and keeps the TX rings from filling before the kernel sees them.
pub const MAX_BLOCKS_PER_ROUND: usize = 8;

/// TX ring slots per interface (and worker).
pub const TX_FRAMES: usize = 1024;

/// What a loop does with its frames.
pub trait Handler {
    /// One received frame; write what to send into `tx`.
    fn frame(&mut self, meta: RxMeta, frame: &[u8], tx: &mut Tx);
    /// After every round (TX already kicked): housekeeping. `got` frames were read.
    /// Returns how long to wait (ms) in poll(2) if the round read nothing.
    fn round(&mut self, got: usize, tx: &mut Tx) -> i32;
}

/// Run rounds until `stop` is set.
pub fn drive<H: Handler>(rx: &mut [RxRing], tx: &mut Tx, stop: &AtomicBool, h: &mut H) {
    let fds: Vec<_> = rx.iter().map(|r| r.raw_fd()).collect();
    while !stop.load(Ordering::Relaxed) {
        let mut got = 0;
        for ring in rx.iter_mut() {
            for _ in 0..MAX_BLOCKS_PER_ROUND {
                let n = ring.drain_block(|meta, frame| h.frame(meta, frame, tx));
                got += n;
                if n == 0 {
                    break;
                }
            }
            ring.update_shed();
        }
        tx.flush();
        let wait = h.round(got, tx);
        if got == 0 {
            poll_readable(&fds, wait);
        }
    }
}
