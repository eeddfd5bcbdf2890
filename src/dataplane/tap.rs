//! The frame tap's worker side: a bounded channel of frame copies and its counters.
//! The consumers (the pcap writer, `uvs trace`) live in `director::tap`; the workers
//! see only this, installed on `pipeline::Shared` while a consumer exists.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapDir {
    Rx,
    Tx,
}

/// One copied frame.
#[derive(Debug, Clone)]
pub struct TapRecord {
    pub ts: Duration,
    pub ifindex: u32,
    pub dir: TapDir,
    /// Frames of one packet's processing share a sequence number (the RX frame and
    /// everything sent because of it), so a tracer can pair before and after.
    pub seq: u64,
    pub frame: Vec<u8>,
}

/// Copies received by the tap's consumer.
pub const TAP_QUEUE: usize = 65536;

#[derive(Debug)]
pub struct Tap {
    tx: Sender<TapRecord>,
    /// Also copy received frames (pcap with `--pcap-rx`, and every tracer).
    pub rx_too: bool,
    /// Copies dropped because the consumer was behind.
    pub dropped: AtomicU64,
    seq: AtomicU64,
}

impl Tap {
    pub fn new(rx_too: bool) -> (Tap, Receiver<TapRecord>) {
        let (tx, rx) = crossbeam_channel::bounded(TAP_QUEUE);
        (
            Tap {
                tx,
                rx_too,
                dropped: AtomicU64::new(0),
                seq: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// A new sequence number for one received frame.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn record(&self, dir: TapDir, ifindex: u32, seq: u64, frame: &[u8]) {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let r = TapRecord {
            ts,
            ifindex,
            dir,
            seq,
            frame: frame.to_vec(),
        };
        if self.tx.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
