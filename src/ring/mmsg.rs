//! Batched transmit with sendmmsg(2): frames are built in a private buffer and sent
//! with one system call per batch. The alternative to the TX ring (`--tx sendmmsg`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{bind, packet_socket};
use crate::dataplane::{Emit, Mtu};

const SLOT: usize = 2048;
/// Ethernet header bytes the kernel allows beyond the MTU.
const ETH_HLEN: usize = 14;
const BATCH: usize = 64;

#[derive(Debug)]
pub struct MmsgTx {
    fd: OwnedFd,
    pub ifindex: u32,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    slot: usize,
    /// The interface's MTU (see [`crate::ring::TxRing`]).
    mtu: Mtu,
    /// Frames refused because they are bigger than the interface's MTU, by `commit`
    /// or by the kernel (`EMSGSIZE`).
    pub too_big: u64,
}

impl MmsgTx {
    pub fn open(ifindex: u32, max_frame: usize, mtu: Mtu) -> io::Result<MmsgTx> {
        let fd = packet_socket(0)?;
        bind(&fd, ifindex, 0)?;
        let slot = max_frame.max(SLOT);
        Ok(MmsgTx {
            fd,
            ifindex,
            bufs: vec![0; slot * BATCH],
            lens: Vec::with_capacity(BATCH),
            slot,
            mtu,
            too_big: 0,
        })
    }

    pub fn buffer(&mut self) -> Option<&mut [u8]> {
        if self.lens.len() == BATCH {
            self.flush();
        }
        let i = self.lens.len();
        Some(&mut self.bufs[i * self.slot..(i + 1) * self.slot])
    }

    /// Queue the frame written into the last buffer; one bigger than the interface's
    /// MTU (plus the Ethernet header, as af_packet.c: packet_snd allows) is dropped
    /// and counted.
    pub fn commit(&mut self, len: usize) {
        if len > self.mtu.get() as usize + ETH_HLEN {
            self.too_big += 1;
            return;
        }
        self.lens.push(len.min(self.slot));
    }

    pub fn flush(&mut self) {
        if self.lens.is_empty() {
            return;
        }
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain old data; all-zero is a valid starting value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let n = self.lens.len();
        for i in 0..n {
            iov[i].iov_base = self.bufs[i * self.slot..].as_mut_ptr() as *mut libc::c_void;
            iov[i].iov_len = self.lens[i];
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: msgs[sent..n] point at iovecs that point into `self.bufs`, all
            // alive for the call; the socket is bound, so no address is needed.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[sent..].as_mut_ptr(),
                    (n - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                sent += r as usize;
                continue;
            }
            // The message at `sent` failed: a frame too big for the interface (its MTU
            // was lowered) is dropped and the batch goes on after it; any other error
            // (a full peer, a link down) drops the rest of the batch, as before.
            match nix::errno::Errno::last() {
                nix::errno::Errno::EMSGSIZE => {
                    self.too_big += 1;
                    self.refused();
                    sent += 1;
                }
                nix::errno::Errno::EINTR => {}
                _ => break,
            }
        }
        self.lens.clear();
    }

    /// The kernel refused a frame for size: learn the interface's MTU.
    #[cold]
    fn refused(&mut self) {
        if let Ok(name) = nix::net::if_::if_indextoname(self.ifindex)
            && let Ok(mtu) = super::iface_mtu(&name.to_string_lossy())
        {
            let mtu = mtu.min((self.slot - ETH_HLEN) as u32);
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
    }
}

/// One sendmmsg batch per interface: a worker's [`Emit`] sink.
#[derive(Debug, Default)]
pub struct MmsgSet {
    pub txs: Vec<MmsgTx>,
}

impl MmsgSet {
    pub fn flush(&mut self) {
        for t in &mut self.txs {
            t.flush();
        }
    }

    /// Frames refused for size since the last call.
    pub fn take_too_big(&mut self) -> u64 {
        self.txs.iter_mut().map(|t| std::mem::take(&mut t.too_big)).sum()
    }
}

impl Emit for MmsgSet {
    fn buffer(&mut self, ifindex: u32) -> Option<&mut [u8]> {
        self.txs.iter_mut().find(|t| t.ifindex == ifindex)?.buffer()
    }
    fn commit(&mut self, ifindex: u32, len: usize) {
        if let Some(t) = self.txs.iter_mut().find(|t| t.ifindex == ifindex) {
            t.commit(len);
        }
    }
}
