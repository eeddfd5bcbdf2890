//! Batched transmit with sendmmsg(2): frames are built in a private buffer and sent
//! with one system call per batch. The alternative to the TX ring (`--tx sendmmsg`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{bind, packet_socket};
use crate::pipeline::Emit;

const SLOT: usize = 2048;
const BATCH: usize = 64;

#[derive(Debug)]
pub struct MmsgTx {
    fd: OwnedFd,
    pub ifindex: u32,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    slot: usize,
}

impl MmsgTx {
    pub fn open(ifindex: u32, max_frame: usize) -> io::Result<MmsgTx> {
        let fd = packet_socket(0)?;
        bind(&fd, ifindex, 0)?;
        let slot = max_frame.max(SLOT);
        Ok(MmsgTx {
            fd,
            ifindex,
            bufs: vec![0; slot * BATCH],
            lens: Vec::with_capacity(BATCH),
            slot,
        })
    }

    pub fn buffer(&mut self) -> Option<&mut [u8]> {
        if self.lens.len() == BATCH {
            self.flush();
        }
        let i = self.lens.len();
        Some(&mut self.bufs[i * self.slot..(i + 1) * self.slot])
    }

    pub fn commit(&mut self, len: usize) {
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
            if r <= 0 {
                break;
            }
            sent += r as usize;
        }
        self.lens.clear();
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
