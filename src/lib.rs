//! uvs: a userspace IPVS/LVS director on AF_PACKET sockets.
//!
//! A frame's path through the crate: [`ring`] (AF_PACKET RX/TX rings) → [`pipeline`]
//! (classify → connection lookup or schedule → rewrite), a pure function with no I/O →
//! [`forward`] (one file per forwarding method) → back to [`ring`] for transmit.
//! [`director`] holds the thin threads and sockets around the pipeline.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod check;
pub mod conn;
pub mod control;
pub mod ctl;
pub mod dataplane;
pub mod dest;
pub mod director;
pub mod forward;
#[cfg(any(test, feature = "tools"))]
pub mod fuzzing;
pub mod ipvs;
pub mod ipvsadm;
pub mod keepalived;
pub mod lab;
/// The Prometheus endpoint is part of the control plane ([`control::metrics`]).
pub use control::metrics;
pub mod pipeline;
pub mod ring;
pub mod sched;
pub mod service;
pub mod simulate;
pub mod stats;
pub mod sync;
pub mod sys;
pub mod sysctl;
pub mod testbed;
pub mod tunnel;
pub mod wire;
