//! Typed views over packet bytes, one file per protocol (after smoltcp's `wire`).
//!
//! Every view is checked once on construction; after that no accessor can panic.
//! Offsets are named after the RFC fields. Nothing here allocates.
#![forbid(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod dissect;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod l4;
pub mod tunnel;

pub use ethernet::MacAddr;
