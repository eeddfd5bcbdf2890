//! Descriptors known only by number.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A close-on-exec duplicate of descriptor `fd` (`F_DUPFD_CLOEXEC`), owned by the
/// caller. An `fd` that is not open gives EBADF; the original is left alone.
pub fn dup_raw(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) only reads the descriptor table: on a number
    // that is not open it fails with EBADF, and it never closes or changes `fd`.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    #[test]
    fn duplicates_an_open_descriptor_and_refuses_a_bad_one() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let d = super::dup_raw(f.as_raw_fd()).unwrap();
        assert_ne!(d.as_raw_fd(), f.as_raw_fd());
        assert!(super::dup_raw(-1).is_err());
    }
}
