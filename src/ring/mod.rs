//! AF_PACKET sockets: the TPACKET_V3 mmap RX ring joined to a fanout group, the
//! TPACKET_V2 TX ring, and interface facts (index, MAC, MTU, addresses).
//!
//! With [`crate::sys`] (the other system calls nix lacks) this is the only module with
//! `unsafe`: the kernel's ring interface demands raw socket options and shared memory
//! (and bpf(2) for the XDP shedding program). Every block says why it is sound.

pub mod bpf;
pub mod drive;
pub mod fanout;
pub mod mmsg;
pub mod rx;
pub mod shed;
pub mod tx;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub use mmsg::{MmsgSet, MmsgTx};
pub use rx::RxRing;
pub use tx::{TxRing, TxSet};

pub const ETH_P_ALL: u16 = 0x0003;

/// How a worker transmits: the mmap TX ring (default) or sendmmsg batches.
#[derive(Debug)]
pub enum Tx {
    Ring(TxSet),
    Mmsg(MmsgSet),
}

impl Tx {
    /// Frames a kick left queued (TX ring only), to be sent by the next flush.
    pub fn has_unsent(&self) -> bool {
        match self {
            Tx::Ring(t) => t.has_unsent(),
            Tx::Mmsg(_) => false,
        }
    }

    /// Room for `n` more frames on every interface (sendmmsg has no ring: always).
    pub fn room(&self, n: usize) -> bool {
        match self {
            Tx::Ring(t) => t.room(n),
            Tx::Mmsg(_) => true,
        }
    }

    pub fn flush(&mut self) {
        match self {
            Tx::Ring(t) => t.flush(),
            Tx::Mmsg(t) => t.flush(),
        }
    }

    /// Frames dropped because they were bigger than their interface's MTU, since the
    /// last call.
    pub fn take_too_big(&mut self) -> u64 {
        match self {
            Tx::Ring(t) => t.take_too_big(),
            Tx::Mmsg(t) => t.take_too_big(),
        }
    }
}

impl crate::dataplane::Emit for Tx {
    fn buffer(&mut self, ifindex: u32) -> Option<&mut [u8]> {
        match self {
            Tx::Ring(t) => t.buffer(ifindex),
            Tx::Mmsg(t) => t.buffer(ifindex),
        }
    }
    fn commit(&mut self, ifindex: u32, len: usize) {
        match self {
            Tx::Ring(t) => t.commit(ifindex, len),
            Tx::Mmsg(t) => t.commit(ifindex, len),
        }
    }
}

/// Open a raw AF_PACKET socket for `proto` (network byte order is applied here).
pub fn packet_socket(proto: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments; the returned descriptor is
    // checked and immediately owned.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto.to_be() as i32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// setsockopt(SOL_PACKET, opt, &val).
pub fn set_packet_opt<T: Copy>(fd: RawFd, opt: i32, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of exactly the size passed; the kernel only
    // reads it during the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// PACKET_STATISTICS of packet socket `fd`: (packets, drops, queue freezes) since the
/// last read (the kernel resets them on every read: `af_packet.c: packet_getsockopt`).
pub fn packet_stats(fd: &OwnedFd) -> io::Result<(u32, u32, u32)> {
    let mut st = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `st` is a valid out-buffer of `len` bytes; the kernel writes at most
    // `len` bytes and stores the length it wrote back into `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.tp_packets, st.tp_drops, st.tp_freeze_q_cnt))
}

/// Bind a packet socket to an interface and protocol (0 = receive nothing).
pub fn bind(fd: &OwnedFd, ifindex: u32, proto: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and the length matches it.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// An mmap'ed ring region, unmapped on drop.
#[derive(Debug)]
pub struct Mmap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by one ring object; access is coordinated with the
// kernel through the per-frame status words, never shared between threads.
unsafe impl Send for Mmap {}

impl Mmap {
    pub fn new(fd: &OwnedFd, len: usize) -> io::Result<Mmap> {
        // SAFETY: mapping a packet socket's ring as the kernel documents
        // (Documentation/networking/packet_mmap.rst); the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            // MAP_LOCKED may fail under RLIMIT_MEMLOCK; retry without it.
            // SAFETY: as above.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            return Ok(Mmap { ptr: p as *mut u8, len });
        }
        Ok(Mmap { ptr: p as *mut u8, len })
    }
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped only here.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

/// A socket to ask about interfaces with, and an ifreq naming `name`.
fn ifreq(name: &str) -> io::Result<(std::net::UdpSocket, libc::ifreq)> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("127.0.0.1:0"))?;
    // SAFETY: ifreq is plain old data; zeroed is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= ifr.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok((sock, ifr))
}

/// The interface's driver name (`veth`, `virtio_net`, `mlx5_core`...) via ethtool.
pub fn iface_driver(name: &str) -> io::Result<String> {
    // `struct ethtool_drvinfo` (libc does not define it for Linux).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 32 * 4 + 12 + 5 * 4],
    }
    const ETHTOOL_GDRVINFO: u32 = 3;
    let (sock, mut ifr) = ifreq(name)?;
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 32 * 4 + 12 + 5 * 4],
    };
    ifr.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GDRVINFO reads ifr_name and writes a struct
    // ethtool_drvinfo (the size of `DrvInfo`) at ifru_data, which points at `info`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// The facts of interface `name` in the current network namespace: index, MAC, IPv4
/// addresses (through pnet), MTU (SIOCGIFMTU). Fails on a missing, MAC-less or down
/// interface.
pub fn discover(name: &str) -> Result<crate::dataplane::Iface, String> {
    let all = pnet::datalink::interfaces();
    let i = all
        .iter()
        .find(|i| i.name == name)
        .ok_or_else(|| format!("no interface named '{name}' in this network namespace"))?;
    let mac = i
        .mac
        .map(|m| m.octets())
        .ok_or_else(|| format!("interface '{name}' has no MAC address"))?;
    if !i.is_up() {
        return Err(format!("interface '{name}' is down (ip link set {name} up)"));
    }
    let addrs = i
        .ips
        .iter()
        .filter_map(|n| match n.ip() {
            std::net::IpAddr::V4(a) => Some(a),
            _ => None,
        })
        .collect();
    let mtu = iface_mtu(name).map_err(|e| format!("cannot read the MTU of '{name}': {e}"))?;
    Ok(crate::dataplane::Iface {
        ifindex: i.index,
        name: name.to_string(),
        mac,
        addrs,
        mtu: mtu.into(),
    })
}

/// Interface MTU via SIOCGIFMTU.
pub fn iface_mtu(name: &str) -> io::Result<u32> {
    let (sock, mut ifr) = ifreq(name)?;
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifru_mtu inside our ifreq.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU as _, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the mtu member of the union.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu } as u32)
}

/// Wait until one of `fds` is readable or `timeout_ms` passes. Returns a bit mask of
/// the descriptors (by position, the first 8) that reported an error (POLLERR): a
/// socket keeps reporting it, so poll(2) no longer waits, until its error is read
/// ([`RxRing::take_error`]).
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> u32 {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 8];
    let n = fds.len().min(pfds.len());
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
        p.events = libc::POLLIN | libc::POLLERR;
    }
    // SAFETY: `pfds[..n]` is a valid array of pollfd for the duration of the call.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if r <= 0 {
        return 0;
    }
    pfds[..n]
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents & libc::POLLERR != 0)
        .fold(0, |m, (k, _)| m | 1 << k)
}

/// Send one frame on a bound packet socket (control-plane use: ARP).
pub fn send_frame(fd: &OwnedFd, ifindex: u32, frame: &[u8]) {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    // SAFETY: `frame` and `sll` are valid for the lengths passed.
    unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        );
    }
}

/// Receive bytes and the descriptors passed with them (SCM_RIGHTS) on a unix stream
/// socket, as owned descriptors (close-on-exec). The descriptor handover of
/// `director::handover` reads through this, so that its own code needs no `unsafe`.
pub fn recv_with_fds(sock: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel installed these descriptors in this process's table
            // while receiving (scm_detach_fds): they are open, and nothing else in the
            // process knows their numbers, so each is owned exactly once, here.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other("descriptors were cut off (MSG_CTRUNC)"));
    }
    Ok((msg.bytes, fds))
}

/// Descriptors passed in one message: the kernel's SCM_MAX_FD is 253.
pub const MAX_FDS_PER_MESSAGE: usize = 250;
