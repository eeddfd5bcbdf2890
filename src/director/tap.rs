//! The frame tap behind `uvs run --pcap FILE` and `uvs trace`: copies of the frames a
//! worker sends (and optionally receives) go to a consumer thread over a bounded
//! channel. Off by default: a worker then checks one `Option` per frame and copies
//! nothing. When on, a frame is written into a scratch buffer, copied to the TX slot
//! and to the channel; when the channel is full the copy is dropped and counted,
//! never the frame itself. The capture files it writes (pcapng, with each frame's
//! direction) are read back by [`read_capture`], which also takes tcpdump's pcap.

use std::io::Write;

use crossbeam_channel::{Receiver, Sender};

use crate::dataplane::Emit;
pub use crate::dataplane::{TAP_QUEUE, Tap, TapDir, TapRecord};

/// An [`Emit`] that copies every committed frame to a tap.
pub struct TapEmit<'a, E: Emit> {
    pub inner: &'a mut E,
    pub tap: &'a Tap,
    pub scratch: &'a mut [u8],
    pub seq: u64,
}

impl<E: Emit> Emit for TapEmit<'_, E> {
    fn buffer(&mut self, ifindex: u32) -> Option<&mut [u8]> {
        let room = self.inner.buffer(ifindex)?.len();
        let n = room.min(self.scratch.len());
        Some(&mut self.scratch[..n])
    }
    fn commit(&mut self, ifindex: u32, len: usize) {
        // The inner sink hands out the same slot again until it is committed.
        if let Some(b) = self.inner.buffer(ifindex) {
            let n = len.min(b.len()).min(self.scratch.len());
            b[..n].copy_from_slice(&self.scratch[..n]);
            self.inner.commit(ifindex, n);
            self.tap.record(TapDir::Tx, ifindex, self.seq, &self.scratch[..n]);
        }
    }
}

/// The consumers of the tap: a pcap writer (`--pcap`) and any number of tracers
/// (`uvs trace`). The tap is installed on [`Shared`] only while one exists, so with
/// none attached the workers copy nothing.
pub struct TapHub {
    shared: std::sync::Arc<crate::pipeline::Shared>,
    inner: std::sync::Mutex<HubInner>,
}

#[derive(Default)]
struct HubInner {
    pcap: Option<(Sender<TapRecord>, bool)>,
    tracers: Vec<(u64, Sender<TapRecord>)>,
    next_id: u64,
    running: bool,
}

/// Records queued per consumer.
const CONSUMER_QUEUE: usize = 16384;

impl TapHub {
    pub fn new(shared: std::sync::Arc<crate::pipeline::Shared>) -> std::sync::Arc<TapHub> {
        std::sync::Arc::new(TapHub {
            shared,
            inner: Default::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attach the pcap writer (`rx_too`: also received frames).
    pub fn set_pcap(
        self: &std::sync::Arc<Self>,
        path: &std::path::Path,
        rx_too: bool,
    ) -> Result<std::thread::JoinHandle<()>, String> {
        let (tx, rx) = crossbeam_channel::bounded(CONSUMER_QUEUE);
        let h = pcap_writer(path, rx)?;
        self.lock().pcap = Some((tx, rx_too));
        self.ensure_running();
        Ok(h)
    }

    /// Attach a tracer; it receives every RX and TX record until [`TapHub::detach`].
    pub fn attach(self: &std::sync::Arc<Self>) -> (u64, Receiver<TapRecord>) {
        let (tx, rx) = crossbeam_channel::bounded(CONSUMER_QUEUE);
        let id = {
            let mut g = self.lock();
            g.next_id += 1;
            let id = g.next_id;
            g.tracers.push((id, tx));
            id
        };
        self.ensure_running();
        (id, rx)
    }

    pub fn detach(&self, id: u64) {
        let mut g = self.lock();
        g.tracers.retain(|(i, _)| *i != id);
        if g.tracers.is_empty() && g.pcap.is_none() {
            // Workers drop their copy of the tap at their next round; the dispatcher
            // then sees the channel close and ends.
            self.shared.tap.store(None);
            g.running = false;
        }
    }

    /// Detach everything (director shutdown): the pcap writer finishes its file.
    pub fn close(&self) {
        let mut g = self.lock();
        g.tracers.clear();
        g.pcap = None;
        self.shared.tap.store(None);
        g.running = false;
    }

    fn ensure_running(self: &std::sync::Arc<Self>) {
        let mut g = self.lock();
        if g.running {
            return;
        }
        g.running = true;
        let (tap, rx) = Tap::new(true);
        self.shared.tap.store(Some(std::sync::Arc::new(tap)));
        let hub = self.clone();
        std::thread::spawn(move || {
            while let Ok(r) = rx.recv() {
                let g = hub.lock();
                if let Some((tx, rx_too)) = &g.pcap
                    && (r.dir == TapDir::Tx || *rx_too)
                {
                    let _ = tx.try_send(r.clone());
                }
                for (_, t) in &g.tracers {
                    let _ = t.try_send(r.clone());
                }
            }
        });
    }
}

/// Write every tapped frame to a pcapng file until the channel closes: one interface
/// block per interface (its name, nanosecond timestamps), and each frame once, with
/// its direction in the packet's flags word (received: inbound, sent: outbound), as
/// tshark shows it (`frame.packet_flags_direction`). Flushes after each burst so
/// the file is readable while running.
pub fn pcap_writer(path: &std::path::Path, rx: Receiver<TapRecord>) -> Result<std::thread::JoinHandle<()>, String> {
    use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
    use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let path = path.to_path_buf();
    Ok(std::thread::spawn(move || {
        let file = Flushable(std::rc::Rc::new(std::cell::RefCell::new(std::io::BufWriter::new(f))));
        let handle = file.clone();
        let Ok(mut w) = pcap_file::pcapng::PcapNgWriter::new(file) else {
            tracing::error!("cannot write {}", path.display());
            return;
        };
        // ifindex -> interface id in the file, in order of first appearance.
        let mut ids: Vec<u32> = Vec::new();
        let names: std::collections::HashMap<u32, String> = pnet::datalink::interfaces()
            .into_iter()
            .map(|i| (i.index, i.name))
            .collect();
        while let Ok(r) = rx.recv() {
            let id = match ids.iter().position(|&i| i == r.ifindex) {
                Some(id) => id,
                None => {
                    let name = names
                        .get(&r.ifindex)
                        .cloned()
                        .unwrap_or_else(|| format!("if{}", r.ifindex));
                    let idb = InterfaceDescriptionBlock {
                        linktype: pcap_file::DataLink::ETHERNET,
                        snaplen: 0,
                        options: vec![
                            InterfaceDescriptionOption::IfName(name.into()),
                            // pcap-file writes timestamps in nanoseconds.
                            InterfaceDescriptionOption::IfTsResol(9),
                        ],
                    };
                    if w.write_pcapng_block(idb).is_err() {
                        return;
                    }
                    ids.push(r.ifindex);
                    ids.len() - 1
                }
            };
            let dir = match r.dir {
                TapDir::Rx => Direction::In,
                TapDir::Tx => Direction::Out,
            };
            let epb = EnhancedPacketBlock {
                interface_id: id as u32,
                timestamp: r.ts,
                original_len: r.frame.len() as u32,
                data: std::borrow::Cow::Borrowed(&r.frame),
                options: vec![EnhancedPacketOption::Flags(epb_flags(dir))],
            };
            if w.write_pcapng_block(epb).is_err() {
                return;
            }
            if rx.is_empty() {
                let _ = handle.0.borrow_mut().flush();
            }
        }
        let _ = handle.0.borrow_mut().flush();
    }))
}

/// Read every frame of a capture file (pcap or pcapng).
pub fn read_pcap(path: &std::path::Path) -> Vec<Vec<u8>> {
    read_capture(path).into_iter().map(|(_, f)| f).collect()
}

/// Which way a captured frame went, as a pcapng file records it (epb_flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// The pcapng Enhanced Packet Block flags word for a direction (pcapng spec,
/// section "Enhanced Packet Block Flags Word": bits 0-1, 01 inbound, 10 outbound).
pub fn epb_flags(d: Direction) -> u32 {
    match d {
        Direction::In => 0b01,
        Direction::Out => 0b10,
    }
}

/// Read every frame of a capture file with its direction when recorded: pcapng
/// (uvs run --pcap) or classic pcap (tcpdump -w; no direction).
pub fn read_capture(path: &std::path::Path) -> Vec<(Option<Direction>, Vec<u8>)> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let Ok(mut r) = pcap_file::pcapng::PcapNgReader::new(&bytes[..]) else {
            return out;
        };
        while let Some(Ok(block)) = r.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = block {
                let dir = p.options.iter().find_map(|o| match o {
                    pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Flags(f) => match f & 0b11 {
                        0b01 => Some(Direction::In),
                        0b10 => Some(Direction::Out),
                        _ => None,
                    },
                    _ => None,
                });
                out.push((dir, p.data.into_owned()));
            }
        }
        return out;
    }
    let Ok(mut r) = pcap_file::pcap::PcapReader::new(&bytes[..]) else {
        return out;
    };
    while let Some(Ok(p)) = r.next_packet() {
        out.push((None, p.data.into_owned()));
    }
    out
}

/// A buffered file the writer thread can flush while the pcap writer owns it.
#[derive(Clone)]
struct Flushable(std::rc::Rc<std::cell::RefCell<std::io::BufWriter<std::fs::File>>>);

impl std::io::Write for Flushable {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fixture::VecEmit;

    #[test]
    fn tap_emit_sends_the_same_bytes_and_copies_them() {
        let (tap, rx) = Tap::new(false);
        let mut inner = VecEmit::keeping();
        let mut scratch = vec![0u8; 2048];
        let mut e = TapEmit {
            inner: &mut inner,
            tap: &tap,
            scratch: &mut scratch,
            seq: 7,
        };
        let b = e.buffer(3).unwrap();
        b[..4].copy_from_slice(b"abcd");
        e.commit(3, 4);
        assert_eq!(inner.frames, vec![(3, b"abcd".to_vec())]);
        let r = rx.try_recv().unwrap();
        assert_eq!((r.ifindex, r.dir, r.seq, r.frame), (3, TapDir::Tx, 7, b"abcd".to_vec()));
    }

    #[test]
    fn pcap_file_round_trips() {
        let path = std::env::temp_dir().join(format!("uvs-tap-test-{}.pcap", std::process::id()));
        let (tap, rx) = Tap::new(true);
        let h = pcap_writer(&path, rx).unwrap();
        tap.record(TapDir::Rx, 1, 0, &[1u8; 60]);
        tap.record(TapDir::Tx, 1, 0, &[2u8; 64]);
        drop(tap);
        h.join().unwrap();
        let frames = read_capture(&path);
        assert_eq!(
            frames,
            vec![
                (Some(Direction::In), vec![1u8; 60]),
                (Some(Direction::Out), vec![2u8; 64])
            ]
        );
        let _ = std::fs::remove_file(path);
    }
}
