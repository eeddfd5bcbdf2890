//! The system calls that neither `nix` nor `socket2` wraps, one file per kernel
//! interface. With [`crate::ring`] (the AF_PACKET rings, bpf(2)) this is the only
//! place in the crate with `unsafe`; every block says why it is sound, and every
//! function here is safe to call.
//!
//! * [`caps`]: capset(2), and prctl(2)'s bounding-set and ambient-set operations
//!   (`uvs run`'s privilege drop, `director/harden.rs`);
//! * [`tun`]: the TUNSETIFF ioctl on `/dev/net/tun` (`uvs tunnel`);
//! * [`fd`]: duplicating a descriptor known only by number.

pub mod caps;
pub mod fd;
pub mod tun;
