//! TPACKET_V2 TX ring: the worker writes frames straight into the shared ring and
//! kicks the kernel once per batch with one `sendto`. PACKET_QDISC_BYPASS skips the
//! qdisc layer, as a director forwarding at line rate wants.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{Ordering, fence};

use super::rx::tpacket_align;
use super::{Mmap, bind, packet_socket, set_packet_opt};
use crate::dataplane::{Emit, Mtu};

#[derive(Debug)]
pub struct TxRing {
    fd: OwnedFd,
    map: Mmap,
    frame_size: usize,
    frame_nr: usize,
    head: usize,
    /// Frames committed since the last kick.
    pending: usize,
    /// The last kick left frames queued: the peer dropped one (`ENOBUFS`), the send
    /// buffer was full, the interface was down (`ENETDOWN`)... The kernel puts the
    /// frame it could not send back as TP_STATUS_SEND_REQUEST, and it and every frame
    /// behind it wait for another kick. Read off the ring, not the error: the kernel
    /// sends in order, so frames are left exactly when the last one committed is still
    /// a send request.
    unsent: bool,
    /// The ring was found full and kicked since the last flush: until the next flush,
    /// a refused frame only looks at the slot (no system call per refused frame).
    refusing: bool,
    pub ifindex: u32,
    /// Frames that could not be queued because the ring was full.
    pub full: u64,
    /// The interface's MTU (followed by the control thread, and re-read here when the
    /// kernel refuses a frame for size).
    mtu: Mtu,
    /// Bytes committed since the last kick (what the kick should report sent).
    pending_bytes: usize,
    /// Frames refused because they are bigger than the interface's MTU: by
    /// [`TxRing::commit`] against the known MTU, or by the kernel (see `flush`).
    pub too_big: u64,
}

/// Ethernet header bytes the kernel allows beyond the MTU (`dev->hard_header_len`).
const ETH_HLEN: usize = 14;

/// Where the frame data starts inside a V2 TX slot.
fn data_offset() -> usize {
    tpacket_align(std::mem::size_of::<libc::tpacket2_hdr>())
}

impl TxRing {
    /// A TX ring on `ifindex` able to carry frames up to `max_frame` bytes, for an
    /// interface whose MTU is `mtu`.
    pub fn open(ifindex: u32, max_frame: usize, frame_nr: usize, mtu: Mtu) -> io::Result<TxRing> {
        let fd = packet_socket(0)?;
        let raw = fd.as_raw_fd();
        set_packet_opt(
            raw,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V2 as libc::c_int),
        )?;
        // A frame the kernel refuses (af_packet.c: tpacket_snd, `packet size is too
        // long` after the MTU was lowered) is otherwise marked TP_STATUS_WRONG_FORMAT
        // and the kernel's ring head stays on it: it never sends another frame from
        // this ring. With PACKET_LOSS it frees the slot and goes on. (Settable only
        // before the ring exists.) The frame is counted in `flush`.
        set_packet_opt(raw, libc::PACKET_LOSS, &(1 as libc::c_int))?;
        let frame_size = tpacket_align(max_frame + data_offset()).next_power_of_two().max(2048);
        let block_size = frame_size.max(4096);
        let frames_per_block = block_size / frame_size;
        let block_nr = frame_nr.div_ceil(frames_per_block);
        let frame_nr = block_nr * frames_per_block;
        let req = libc::tpacket_req {
            tp_block_size: block_size as u32,
            tp_block_nr: block_nr as u32,
            tp_frame_size: frame_size as u32,
            tp_frame_nr: frame_nr as u32,
        };
        set_packet_opt(raw, libc::PACKET_TX_RING, &req)?;
        let _ = set_packet_opt(raw, libc::PACKET_QDISC_BYPASS, &(1 as libc::c_int));
        set_sndbuf(raw, frame_nr * (frame_size + 1024));
        let map = Mmap::new(&fd, block_size * block_nr)?;
        bind(&fd, ifindex, 0)?;
        Ok(TxRing {
            fd,
            map,
            frame_size,
            frame_nr,
            head: 0,
            pending: 0,
            unsent: false,
            refusing: false,
            ifindex,
            full: 0,
            mtu,
            pending_bytes: 0,
            too_big: 0,
        })
    }

    /// The largest frame the kernel sends on the interface now: af_packet.c:
    /// tpacket_snd refuses `tp_len > dev->mtu + reserve` (the Ethernet header).
    fn max_len(&self) -> usize {
        self.mtu.get() as usize + ETH_HLEN
    }

    fn slot_len(&self, i: usize) -> usize {
        // SAFETY: reading tp_len of a slot inside our mapping; the kernel leaves it as
        // we wrote it.
        unsafe { std::ptr::read_volatile(&(*self.slot(i)).tp_len) as usize }
    }

    fn slot(&self, i: usize) -> *mut libc::tpacket2_hdr {
        // SAFETY: i < frame_nr and frames are laid out contiguously (block size is a
        // multiple of the frame size), so the slot lies inside the mapping.
        unsafe { self.map.ptr().add(i * self.frame_size) as *mut libc::tpacket2_hdr }
    }

    fn slot_free(&self, i: usize) -> bool {
        // SAFETY: reading the status word of a slot inside our mapping; volatile
        // because the kernel updates it when transmission completes.
        let st = unsafe { std::ptr::read_volatile(&(*self.slot(i)).tp_status) };
        st == libc::TP_STATUS_AVAILABLE || st & libc::TP_STATUS_WRONG_FORMAT != 0
    }

    /// Are the next `n` slots free (as far as one look tells: the kernel frees slots
    /// in the order it sent them, so the `n`-th from the head being free means the
    /// ones before it are)? At most half the ring is asked for.
    pub fn room(&self, n: usize) -> bool {
        let n = n.clamp(1, (self.frame_nr / 2).max(1));
        self.slot_free((self.head + n - 1) % self.frame_nr)
    }

    /// The data area of the next free slot.
    pub fn buffer(&mut self) -> Option<&mut [u8]> {
        if !self.slot_free(self.head) {
            // Full: kick the kernel once per flush, then only look at the slot.
            if !self.refusing {
                self.flush();
                self.refusing = true;
            }
            if !self.slot_free(self.head) {
                self.full += 1;
                return None;
            }
        }
        fence(Ordering::Acquire);
        let off = data_offset();
        // SAFETY: the slot is free (the kernel is done with it) and the data area
        // [off, frame_size) lies inside it; we hold &mut self, so no alias exists.
        Some(unsafe {
            std::slice::from_raw_parts_mut((self.slot(self.head) as *mut u8).add(off), self.frame_size - off)
        })
    }

    /// Hand the slot filled through [`TxRing::buffer`] to the kernel. A frame bigger
    /// than the interface's MTU is dropped (counted in `too_big`) and its slot reused.
    pub fn commit(&mut self, len: usize) {
        if len > self.max_len() {
            self.too_big += 1;
            return;
        }
        let s = self.slot(self.head);
        // SAFETY: `s` is the slot returned by `buffer`; tp_len is written before the
        // status (release fence) so the kernel never sees a half-written frame.
        unsafe {
            (*s).tp_len = len as u32;
            fence(Ordering::Release);
            std::ptr::write_volatile(&mut (*s).tp_status, libc::TP_STATUS_SEND_REQUEST);
        }
        self.head = (self.head + 1) % self.frame_nr;
        self.pending += 1;
        self.pending_bytes += len;
        if self.pending >= self.frame_nr / 2 {
            self.flush();
        }
    }

    /// Ask the kernel to transmit every queued frame, including frames an earlier
    /// kick left queued.
    ///
    /// Why `unsent` matters: on veth a frame the peer cannot take (its backlog is
    /// full, or it is down) makes `sendto` fail with `ENOBUFS` and leave that frame and
    /// all behind it in the ring; so does an interface that is down (`ENETDOWN`). Without another kick they would sit there until frames already in
    /// flight complete and new ones are committed; meanwhile the ring stays full and
    /// every frame the worker forwards is refused (`tx_queue_full`). Measured: after
    /// one such drop, 3 000 of 4 096 slots waiting to be sent while the worker
    /// dropped tens of thousands of frames.
    pub fn flush(&mut self) {
        self.refusing = false;
        if self.pending == 0 && !self.unsent {
            return;
        }
        // SAFETY: a zero-length sendto on a TX-ring socket only kicks transmission.
        // It returns the bytes of the frames it queued; otherwise the ring's slots say
        // what was sent.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        let last = (self.head + self.frame_nr - 1) % self.frame_nr;
        // SAFETY: reading the status word of a slot inside our mapping (volatile: the
        // kernel writes it).
        let st = unsafe { std::ptr::read_volatile(&(*self.slot(last)).tp_status) };
        let was_unsent = self.unsent;
        self.unsent = st == libc::TP_STATUS_SEND_REQUEST;
        // Every frame of this kick left the ring but fewer bytes were queued: the
        // kernel skipped frames it refused (PACKET_LOSS), which after an MTU change
        // are the ones too big for it. Re-read the MTU (the pipeline then fragments or
        // answers fragmentation-needed at once) and count the frames over it.
        if !was_unsent && !self.unsent && sent >= 0 && (sent as usize) < self.pending_bytes {
            self.refused(self.pending);
        }
        self.pending = 0;
        self.pending_bytes = 0;
    }

    /// The kernel refused some of the last `n` frames for size: learn the MTU and
    /// count those over it.
    #[cold]
    fn refused(&mut self, n: usize) {
        if let Ok(name) = nix::net::if_::if_indextoname(self.ifindex)
            && let Ok(mtu) = super::iface_mtu(&name.to_string_lossy())
        {
            // Never more than a slot carries.
            let mtu = mtu.min((self.frame_size - data_offset() - ETH_HLEN) as u32);
            let old = self.mtu.set(mtu);
            if old != mtu {
                tracing::warn!(
                    ifindex = self.ifindex,
                    old,
                    mtu,
                    "interface MTU changed (a frame was refused)"
                );
            }
        }
        let max = self.max_len();
        let over = (1..=n)
            .map(|k| (self.head + self.frame_nr - k) % self.frame_nr)
            .filter(|&i| self.slot_len(i) > max)
            .count();
        self.too_big += over.max(1) as u64;
    }

    /// Frames a kick left queued (see `unsent`): the next flush sends them.
    pub fn has_unsent(&self) -> bool {
        self.unsent
    }
}

/// Every frame the kernel has taken from the ring but not yet freed (on veth: until
/// the peer's backlog has processed it) is charged to the socket's send buffer. With
/// the default `wmem_default` (~200 KiB, a few hundred frames) `sendto` stops taking
/// frames long before the ring is empty and the ring fills up under load, so size the
/// buffer for the whole ring: the ring, not the buffer, is then the bound. As root
/// `SO_SNDBUFFORCE` passes `wmem_max`; otherwise `SO_SNDBUF` gets what the limit allows.
fn set_sndbuf(fd: std::os::fd::RawFd, bytes: usize) {
    let v = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: setsockopt with a valid int option value of the stated size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

/// One TX ring per interface: the worker's [`Emit`] sink.
#[derive(Debug, Default)]
pub struct TxSet {
    pub rings: Vec<TxRing>,
}

impl TxSet {
    /// Frames left queued by a kick on some interface.
    pub fn has_unsent(&self) -> bool {
        self.rings.iter().any(|r| r.has_unsent())
    }

    /// Room for `n` more frames on every interface.
    pub fn room(&self, n: usize) -> bool {
        self.rings.iter().all(|r| r.room(n))
    }

    pub fn flush(&mut self) {
        for r in &mut self.rings {
            r.flush();
        }
    }

    /// Frames refused for size (see [`TxRing::too_big`]) since the last call.
    pub fn take_too_big(&mut self) -> u64 {
        self.rings.iter_mut().map(|r| std::mem::take(&mut r.too_big)).sum()
    }
}

impl Emit for TxSet {
    fn buffer(&mut self, ifindex: u32) -> Option<&mut [u8]> {
        self.rings.iter_mut().find(|r| r.ifindex == ifindex)?.buffer()
    }
    fn commit(&mut self, ifindex: u32, len: usize) {
        if let Some(r) = self.rings.iter_mut().find(|r| r.ifindex == ifindex) {
            r.commit(len);
        }
    }
}
