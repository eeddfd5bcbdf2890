//! The receive/transmit loop shared by the director's workers and the harness's
//! minimal forwarder (`uvs ceiling`), so both have literally the same ring geometry,
//! batching, flushing and idle policy; they differ only in what they do per frame.
//!
//! One round: take at most [`MAX_BLOCKS_PER_ROUND`] retired RX blocks from each ring,
//! hand every frame to the handler (which writes into the TX rings), kick each TX
//! ring once, then let the handler do its per-round work. With nothing to read, wait
//! in poll(2) for the handler's timeout.
//!
//! Backpressure: a block is read only when every TX ring has room for as many frames
//! as it holds. Otherwise it stays in the RX ring (8 MiB deep, ~50 000 small frames)
//! and the worker sleeps [`HOLD_SLEEP`] and tries again, so a short stall of whoever
//! frees the TX slots (on veth: the receiving side's backlog) costs nothing instead of
//! every frame forwarded meanwhile (`tx_queue_full`). A hold ends when the RX ring
//! is three quarters full, and lasts at most [`HOLD_MAX`]; after one ran out the loop
//! does not hold for [`HOLD_COOLDOWN`]: a TX ring that stays full (a congested link)
//! must not stop the traffic of the others, so the worker then reads on and drops
//! what does not fit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{RxRing, Tx, poll_readable};
use crate::dataplane::RxMeta;

/// RX blocks taken per ring before the TX rings are kicked: bounds the latency a
/// full burst adds and keeps the TX rings from filling before the kernel sees them.
pub const MAX_BLOCKS_PER_ROUND: usize = 8;

/// TX ring slots per interface (and worker).
pub const TX_FRAMES: usize = 1024;

/// Longest time RX blocks are left unread because a TX ring is full.
pub const HOLD_MAX: Duration = Duration::from_millis(50);

/// Sleep between looks at a full TX ring while holding.
pub const HOLD_SLEEP: Duration = Duration::from_micros(200);

/// After a hold ran out, how long the loop reads on without holding; doubled after
/// each further hold that runs out, up to [`HOLD_COOLDOWN_MAX`], and back to this
/// after a hold that ends in room. A link that stays congested (or down) then delays
/// the other links' traffic by [`HOLD_MAX`] per second at first, and per minute
/// soon after.
pub const HOLD_COOLDOWN: Duration = Duration::from_secs(1);
pub const HOLD_COOLDOWN_MAX: Duration = Duration::from_secs(64);

/// What a loop does with its frames.
pub trait Handler {
    /// One received frame; write what to send into `tx`.
    fn frame(&mut self, meta: RxMeta, frame: &[u8], tx: &mut Tx);
    /// After every round (TX already kicked): housekeeping. `got` frames were read.
    /// Returns how long to wait (ms) in poll(2) if the round read nothing.
    fn round(&mut self, got: usize, tx: &mut Tx) -> i32;
}

/// The backpressure state: when the current hold began, until when holding is
/// suspended because the last hold ran out, and how long the next suspension lasts.
struct Hold {
    since: Option<Instant>,
    suspended_until: Option<Instant>,
    cooldown: Duration,
}

impl Default for Hold {
    fn default() -> Hold {
        Hold {
            since: None,
            suspended_until: None,
            cooldown: HOLD_COOLDOWN,
        }
    }
}

impl Hold {
    /// May the next block be read? Yes if the TX rings have `room` for it, while
    /// holding is suspended, or once the RX ring itself is `filling` up (waiting
    /// longer would only move the loss from the TX ring to the RX ring, and to every
    /// link's traffic).
    fn admit(&self, room: bool, filling: impl FnOnce() -> bool) -> bool {
        room || self.suspended_until.is_some() || filling()
    }

    /// After a round at `now`: `held` = a block was left unread for lack of TX room.
    /// Returns whether to sleep before the next round.
    fn after_round(&mut self, held: bool, now: Instant) -> bool {
        if self.suspended_until.is_some_and(|t| now >= t) {
            self.suspended_until = None;
        }
        if !held {
            if self.since.take().is_some() {
                // The hold ended in room: the link drains.
                self.cooldown = HOLD_COOLDOWN;
            }
            return false;
        }
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) >= HOLD_MAX {
            self.suspended_until = Some(now + self.cooldown);
            self.cooldown = (self.cooldown * 2).min(HOLD_COOLDOWN_MAX);
            self.since = None;
            return false;
        }
        true
    }
}

/// Read the pending error of every ring in the mask `errs` (see
/// [`RxRing::take_error`]), so poll(2) waits again.
#[cold]
fn clear_errors(rx: &[RxRing], errs: u32) {
    for (_, r) in rx.iter().enumerate().filter(|(k, _)| errs & 1 << k != 0) {
        if let Some(e) = r.take_error() {
            tracing::info!(
                ifindex = r.ifindex,
                error = %std::io::Error::from_raw_os_error(e),
                "RX socket error cleared (interface went down?)"
            );
        }
    }
}

/// Run rounds until `stop` is set.
pub fn drive<H: Handler>(rx: &mut [RxRing], tx: &mut Tx, stop: &AtomicBool, h: &mut H) {
    let fds: Vec<_> = rx.iter().map(|r| r.raw_fd()).collect();
    let mut hold = Hold::default();
    let mut first = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut got = 0;
        let mut held = false;
        // The ring read first takes the TX room that frees up: take turns.
        let n = rx.len();
        first = if first + 1 >= n { 0 } else { first + 1 };
        for k in 0..n {
            let ring = &mut rx[(first + k) % n];
            for _ in 0..MAX_BLOCKS_PER_ROUND {
                let Some(ready) = ring.ready() else {
                    break;
                };
                if !hold.admit(tx.room(ready), || ring.filling()) {
                    held = true;
                    break;
                }
                got += ring.drain_block(|meta, frame| h.frame(meta, frame, tx));
            }
            ring.update_shed();
        }
        tx.flush();
        let wait = h.round(got, tx);
        // The clock is read only while a hold or its cool-down is on.
        let engaged = held || hold.since.is_some() || hold.suspended_until.is_some();
        if engaged && hold.after_round(held, Instant::now()) {
            std::thread::sleep(HOLD_SLEEP);
        } else if got == 0 && !held {
            // Frames a kick left queued go out at the next flush: come back soon.
            let errs = poll_readable(&fds, if tx.has_unsent() { wait.min(1) } else { wait });
            if errs != 0 {
                clear_errors(rx, errs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_waits_for_room_then_gives_up_for_a_while() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let max = HOLD_MAX.as_millis() as u64;
        let cool = HOLD_COOLDOWN.as_millis() as u64;
        let mut h = Hold::default();
        let never = || false;
        // Room: read, no sleep.
        assert!(h.admit(true, never));
        assert!(!h.after_round(false, ms(0)));
        // No room: hold (leave the block, sleep) for up to HOLD_MAX.
        assert!(!h.admit(false, never));
        assert!(h.after_round(true, ms(1)));
        assert!(!h.admit(false, never));
        assert!(h.after_round(true, ms(max)));
        // ...unless the RX ring is filling up.
        assert!(h.admit(false, || true));
        // The hold ran out: read on (and drop at TX) without sleeping, even when the
        // rings have room now and then, for HOLD_COOLDOWN.
        assert!(!h.admit(false, never));
        assert!(!h.after_round(true, ms(1 + max)));
        assert!(h.admit(false, never));
        assert!(!h.after_round(false, ms(2 + max)));
        assert!(h.admit(true, never));
        assert!(h.admit(false, never));
        assert!(!h.after_round(false, ms(max + cool)));
        assert!(h.admit(false, never));
        // Then holding resumes.
        let t = 1 + max + cool;
        assert!(!h.after_round(false, ms(t)));
        assert!(!h.admit(false, never));
        assert!(h.after_round(true, ms(t + 1)));
        // A second hold that runs out suspends holding twice as long.
        assert!(!h.after_round(true, ms(t + 1 + max)));
        let t = t + 1 + max;
        assert!(!h.after_round(false, ms(t + cool)));
        assert!(h.admit(false, never), "still suspended after one cool-down");
        assert!(!h.after_round(false, ms(t + 2 * cool)));
        assert!(!h.admit(false, never), "holding again after two");
        // A hold that ends in room resets the cool-down and the hold's clock.
        let t = t + 2 * cool;
        assert!(h.after_round(true, ms(t + 1)));
        assert!(!h.after_round(false, ms(t + 2)));
        assert_eq!(h.cooldown, HOLD_COOLDOWN);
        assert!(h.after_round(true, ms(t + 2 + max - 1)));
    }

    #[test]
    fn a_link_that_stays_full_costs_less_and_less() {
        let t0 = Instant::now();
        let mut h = Hold::default();
        let mut now = t0;
        let mut held_ms = 0u64;
        // Ten minutes of a TX ring that never has room, one round per millisecond.
        while now < t0 + Duration::from_secs(600) {
            let admit = h.admit(false, || false);
            if h.after_round(!admit, now) {
                held_ms += 1;
            }
            now += Duration::from_millis(1);
        }
        // 50 ms holds at 0, then after 1, 2, 4, ... 32 s, then every 64 s: 15 holds in
        // ten minutes (a fixed 1 s cool-down would have held ~570 times).
        assert!(held_ms <= 15 * HOLD_MAX.as_millis() as u64, "held {held_ms} ms");
        assert_eq!(h.cooldown, HOLD_COOLDOWN_MAX);
    }
}
