//! TPACKET_V3 RX ring: the kernel fills blocks of frames; the worker walks a block
//! when the kernel hands it over (block full or retire timeout) and gives it back.
//! All sockets of one interface join a PACKET_FANOUT group, so each flow lands on one
//! worker (and its private connection table).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{Ordering, fence};

use super::{ETH_P_ALL, Mmap, bind, packet_socket, set_packet_opt};
use crate::dataplane::RxMeta;

/// Ring geometry.
#[derive(Debug, Clone, Copy)]
pub struct RxConfig {
    pub block_size: u32,
    pub block_nr: u32,
    /// Largest frame the ring hands over whole (snap length bound).
    pub frame_size: u32,
    /// Milliseconds before a partly filled block is handed over.
    pub retire_tov_ms: u32,
    /// PACKET_FANOUT mode and flags (see [`crate::ring::fanout::Steering::fanout_mode`]).
    pub fanout_mode: u32,
}

impl Default for RxConfig {
    fn default() -> Self {
        // Many small blocks: at low rates the 1 ms retire timeout hands over a block
        // per millisecond however little it holds, so the ring's depth in time is
        // block_nr ms; 64 KiB still holds ~400 minimum-size frames (1 ms at 400 kpps).
        // 8 MiB per ring, as before with 32 blocks of 256 KiB (32 ms deep).
        RxConfig {
            block_size: 1 << 16,
            block_nr: 128,
            frame_size: 1 << 11,
            retire_tov_ms: 1,
            fanout_mode: FANOUT_MODE,
        }
    }
}

/// Default fanout mode: a classic steering program (see `ring::fanout`; the director
/// uses eBPF where it can), reassembling fragments first.
pub const FANOUT_MODE: u32 = libc::PACKET_FANOUT_CBPF | libc::PACKET_FANOUT_FLAG_DEFRAG;

#[derive(Debug)]
pub struct RxRing {
    fd: OwnedFd,
    map: Mmap,
    cfg: RxConfig,
    next_block: u32,
    pub ifindex: u32,
    /// Overload shedding: this ring's say in its interface's XDP drop decision.
    shed: Option<super::shed::ShedSlot>,
}

impl RxRing {
    /// Open a ring on `ifindex` and join fanout group `group` (shared by all workers
    /// of this interface).
    pub fn open(ifindex: u32, group: u16, cfg: RxConfig) -> io::Result<RxRing> {
        let fd = packet_socket(ETH_P_ALL)?;
        let raw = fd.as_raw_fd();
        set_packet_opt(
            raw,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as libc::c_int),
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_nr,
            tp_frame_size: cfg.frame_size,
            tp_frame_nr: cfg.block_size / cfg.frame_size * cfg.block_nr,
            tp_retire_blk_tov: cfg.retire_tov_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_packet_opt(raw, libc::PACKET_RX_RING, &req)?;
        let map = Mmap::new(&fd, (cfg.block_size * cfg.block_nr) as usize)?;
        bind(&fd, ifindex, ETH_P_ALL)?;
        // Frames the host itself sends (including our own TX) are not ours to handle.
        set_packet_opt(raw, libc::PACKET_IGNORE_OUTGOING, &(1 as libc::c_int))?;
        let fanout: u32 = group as u32 | (cfg.fanout_mode << 16);
        set_packet_opt(raw, libc::PACKET_FANOUT, &fanout)?;
        Ok(RxRing {
            fd,
            map,
            cfg,
            next_block: 0,
            ifindex,
            shed: None,
        })
    }

    /// Take over a ring another process opened (handed over by SCM_RIGHTS, see
    /// `director::handover`): map it again with the geometry it was made with and go
    /// on reading at block `next_block`, where its last reader stopped. The socket
    /// stays bound and in its fanout group, at the same place in it.
    pub fn adopt(fd: OwnedFd, ifindex: u32, cfg: RxConfig, next_block: u32) -> io::Result<RxRing> {
        if next_block >= cfg.block_nr {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring position out of range",
            ));
        }
        let map = Mmap::new(&fd, (cfg.block_size * cfg.block_nr) as usize)?;
        Ok(RxRing {
            fd,
            map,
            cfg,
            next_block,
            ifindex,
            shed: None,
        })
    }

    /// The block the next read starts at (handed to the process taking over).
    pub fn position(&self) -> u32 {
        self.next_block
    }

    /// Move the read position (a ring adopted before its old reader stopped).
    pub fn set_position(&mut self, next_block: u32) {
        self.next_block = next_block % self.cfg.block_nr;
    }

    pub fn config(&self) -> RxConfig {
        self.cfg
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Read (and so clear) the socket's pending error. When its interface goes down,
    /// af_packet.c: packet_notifier sets `sk_err = ENETDOWN` on every socket bound to
    /// it, and poll(2) reports POLLERR at once, every time, until SO_ERROR is read: a
    /// worker that did not read it would spin at 100 % CPU from the first link flap
    /// on. The socket itself stays as it is: on link-up the kernel re-registers it,
    /// in its fanout group, by itself (the group's order is the sockets' creation
    /// order, unchanged because no socket is recreated).
    pub fn take_error(&self) -> Option<i32> {
        match nix::sys::socket::getsockopt(&self.fd, nix::sys::socket::sockopt::SocketError) {
            Ok(0) => None,
            Ok(e) => Some(e),
            Err(e) => Some(e as i32),
        }
    }

    fn block_ptr(&self, i: u32) -> *mut libc::tpacket_block_desc {
        // SAFETY: i < block_nr, so the offset stays inside the mapping.
        unsafe { self.map.ptr().add((i * self.cfg.block_size) as usize) as *mut libc::tpacket_block_desc }
    }

    /// How many frames the next block holds if the kernel has handed it over.
    pub fn ready(&self) -> Option<usize> {
        let bd = self.block_ptr(self.next_block);
        // SAFETY: as in drain_block: a block descriptor inside our mapping, its status
        // read volatile because the kernel writes it; num_pkts is read only once the
        // block is ours (acquire fence).
        unsafe {
            if std::ptr::read_volatile(&(*bd).hdr.bh1.block_status) & libc::TP_STATUS_USER == 0 {
                return None;
            }
            fence(Ordering::Acquire);
            Some((*bd).hdr.bh1.num_pkts as usize)
        }
    }

    /// Process every frame of the next block if the kernel has handed it over.
    /// Returns the number of frames, or 0 if the block is still the kernel's.
    pub fn drain_block<F: FnMut(RxMeta, &[u8])>(&mut self, mut f: F) -> usize {
        let bd = self.block_ptr(self.next_block);
        // SAFETY: `bd` points at a block descriptor inside our mapping. block_status is
        // read volatile because the kernel writes it concurrently; the acquire fence
        // orders the frame reads after the status read.
        let status = unsafe { std::ptr::read_volatile(&(*bd).hdr.bh1.block_status) };
        if status & libc::TP_STATUS_USER == 0 {
            return 0;
        }
        fence(Ordering::Acquire);
        // SAFETY: the block belongs to us until we write TP_STATUS_KERNEL back.
        let (num, first) = unsafe { ((*bd).hdr.bh1.num_pkts, (*bd).hdr.bh1.offset_to_first_pkt) };
        let base = bd as *const u8;
        let bsize = self.cfg.block_size as usize;
        let mut off = first as usize;
        let sll_off = tpacket_align(std::mem::size_of::<libc::tpacket3_hdr>());
        for _ in 0..num {
            if off + sll_off + std::mem::size_of::<libc::sockaddr_ll>() > bsize {
                break;
            }
            // SAFETY: `off` was bounds-checked against the block size above; the header
            // and its sockaddr_ll lie inside the block the kernel handed to us.
            let (hdr, sll) = unsafe {
                let h = &*(base.add(off) as *const libc::tpacket3_hdr);
                let s = &*(base.add(off + sll_off) as *const libc::sockaddr_ll);
                (h, s)
            };
            let start = off + hdr.tp_mac as usize;
            let len = hdr.tp_snaplen as usize;
            if start + len <= bsize {
                // SAFETY: the frame bytes [start, start+len) are inside the block.
                let frame = unsafe { std::slice::from_raw_parts(base.add(start), len) };
                let csum_partial = hdr.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
                // The tag the driver (or veth) took off the frame: af_packet.c's
                // prb_fill_vlan_info reports it in the V3 header.
                let vlan_tci = (hdr.tp_status & libc::TP_STATUS_VLAN_VALID != 0).then_some(hdr.hv1.tp_vlan_tci as u16);
                f(
                    RxMeta {
                        ifindex: self.ifindex,
                        pkttype: sll.sll_pkttype,
                        csum_partial,
                        vlan_tci,
                    },
                    frame,
                );
            }
            if hdr.tp_next_offset == 0 {
                break;
            }
            off += hdr.tp_next_offset as usize;
        }
        fence(Ordering::Release);
        // SAFETY: handing the block back to the kernel, as packet_mmap.rst prescribes.
        unsafe { std::ptr::write_volatile(&mut (*bd).hdr.bh1.block_status, libc::TP_STATUS_KERNEL) };
        self.next_block = (self.next_block + 1) % self.cfg.block_nr;
        num as usize
    }

    /// Take part in overload shedding ([`super::shed`]).
    pub fn set_shed(&mut self, slot: super::shed::ShedSlot) {
        self.shed = Some(slot);
    }

    /// Are at least `n` blocks handed over and unread? The kernel fills blocks in
    /// order, so that is whether the `n`-th block from the worker's position is ours.
    fn waiting(&self, n: u32) -> bool {
        let i = (self.next_block + n.min(self.cfg.block_nr) - 1) % self.cfg.block_nr;
        let bd = self.block_ptr(i);
        // SAFETY: as in drain_block: a block descriptor inside our mapping, its status
        // read volatile because the kernel writes it.
        let status = unsafe { std::ptr::read_volatile(&(*bd).hdr.bh1.block_status) };
        status & libc::TP_STATUS_USER != 0
    }

    /// Are three quarters of the blocks handed over and unread?
    pub fn filling(&self) -> bool {
        self.waiting(self.cfg.block_nr * 3 / 4)
    }

    /// After a round: tell the shedding program whether this ring is backed up.
    #[inline]
    pub fn update_shed(&mut self) {
        if let Some(mut s) = self.shed.take() {
            s.update(self.cfg.block_nr, |n| self.waiting(n));
            self.shed = Some(s);
        }
    }

    /// PACKET_STATISTICS: (packets, drops, freeze count) since the last call.
    pub fn stats(&self) -> io::Result<(u32, u32, u32)> {
        super::packet_stats(&self.fd)
    }
}

pub fn tpacket_align(x: usize) -> usize {
    (x + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1)
}
