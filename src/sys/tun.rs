//! TUN devices: the TUNSETIFF ioctl (`drivers/net/tun.c: __tun_chr_ioctl`), which nix
//! does not wrap.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Open (or create) TUN device `name` without packet-information headers
/// (`IFF_TUN | IFF_NO_PI`): each read or write is one IP packet.
pub fn open(name: &str) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is a C struct of integers, arrays and unions of them, for which
    // all zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "device name too long"));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq we pass, which lives for the call;
    // the name is NUL-terminated (checked shorter than the zeroed array).
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}
