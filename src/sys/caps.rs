//! Capabilities of the calling thread: capset(2) (version 3, two 32-bit words per
//! set, as `linux/capability.h` lays them out) and prctl(2)'s `PR_CAPBSET_DROP` and
//! `PR_CAP_AMBIENT_RAISE`. nix has prctl's other operations (`nix::sys::prctl`) but
//! not these; reading the sets needs no system call (`/proc/thread-self/status`).

use std::io;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Set this thread's effective and permitted sets to `keep` and its inheritable set
/// to `inheritable` (bit N = capability N).
pub fn capset(keep: u64, inheritable: u64) -> io::Result<()> {
    let mut h = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let d = [
        CapData {
            effective: keep as u32,
            permitted: keep as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (keep >> 32) as u32,
            permitted: (keep >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: capset(2) reads a version-3 header and the two data elements that
    // version 3 defines; both live on this stack frame for the whole call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Remove capability `cap` from this thread's bounding set (`PR_CAPBSET_DROP`).
/// EINVAL means a capability this kernel does not know.
pub fn bounding_drop(cap: u32) -> io::Result<()> {
    // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes integers only and changes nothing but
    // this thread's bounding set.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Add capability `cap` to this thread's ambient set (`PR_CAP_AMBIENT_RAISE`); it must
/// be in the permitted and inheritable sets.
pub fn ambient_raise(cap: u32) -> io::Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap) takes integers only and
    // changes nothing but this thread's ambient set.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
            0,
            0,
        )
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
