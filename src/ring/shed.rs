//! Overload shedding in front of the rings: an XDP program that drops VIP-bound frames
//! while every worker's RX ring on that interface is backed up.
//!
//! Why: an AF_PACKET ring drops a frame only after the kernel has built its skb,
//! steered it to the worker's core (RPS), run the taps and copied it, all in softirq
//! on the core the worker needs. Offered more than it can forward, the worker's core
//! spends itself on frames that are then dropped (receive livelock): delivery falls
//! to a fraction of the loss-free rate and varies wildly from run to run. XDP runs
//! where the driver receives (for veth: the sender's core), before any of that, so a
//! frame shed there costs the worker's core nothing.
//!
//! How: each ring publishes whether it is backed up ([`ShedSlot::update`]): at least
//! [`high_blocks`] of its blocks handed over and unread. It then adds itself to its
//! interface's count in a shared, mmapped BPF array; below [`low_blocks`] it takes
//! itself off again. The program reads that count first (the whole cost while not
//! shedding: one array lookup) and, when all `workers` rings of the interface are
//! backed up, drops IPv4 frames whose destination is in the VIP hash map and counts
//! them. ARP, the host's own traffic and NAT replies always pass. The program is
//! attached through a BPF link, so it is gone when uvs exits, however it exits.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Mmap;
use super::bpf::{self, Insn, asm::*};

/// A ring is backed up when this many of its blocks wait for the worker (7/8: the
/// ring keeps its depth for bursts and stalls, shedding starts just before the
/// kernel would drop anyway)...
pub fn high_blocks(block_nr: u32) -> u32 {
    (block_nr - block_nr / 8).max(1)
}
/// ...and recovered below half (hysteresis: a backed-up ring drains a good part of
/// its depth before frames are admitted again).
pub fn low_blocks(block_nr: u32) -> u32 {
    (block_nr / 2).max(1)
}

/// At most this many VIPs are shed (more are served, just never shed).
const MAX_VIPS: u32 = 4096;
/// Per interface in the state array: rings backed up, frames shed.
const SLOT_BYTES: usize = 16;

const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;

/// The program under construction: instructions, and the jumps to PASS still to be
/// aimed (PASS is the last block, so its index is known only at the end).
struct Builder {
    p: Vec<Insn>,
    to_pass: Vec<usize>,
}

impl Builder {
    fn push(&mut self, i: Insn) {
        self.p.push(i);
    }
    /// A conditional jump (offset ignored) that goes to PASS.
    fn or_pass(&mut self, i: Insn) {
        self.to_pass.push(self.p.len());
        self.p.push(i);
    }
    /// r0 = bpf_map_lookup_elem(map, r10 + key_off); no entry: pass.
    fn lookup(&mut self, map_fd: i32, key_off: i16) {
        self.p.extend(ld_map_fd(1, map_fd));
        self.push(mov(2, 10));
        self.push(add_imm(2, key_off as i32));
        self.push(call(BPF_FUNC_MAP_LOOKUP_ELEM));
        self.or_pass(jeq_imm(0, 0, 0));
    }
    /// Append PASS (return XDP_PASS) and aim every jump at it.
    fn finish(mut self) -> Vec<Insn> {
        let pass = self.p.len();
        self.push(mov_imm(0, XDP_PASS));
        self.push(exit());
        for i in self.to_pass {
            self.p[i].off = (pass - i - 1) as i16;
        }
        self.p
    }
}

/// The program for interface slot `slot` of the state map, shedding when `workers`
/// rings are backed up.
pub fn program(state_fd: i32, vips_fd: i32, slot: u32, workers: u32) -> Vec<Insn> {
    let mut b = Builder {
        p: Vec::with_capacity(32),
        to_pass: Vec::new(),
    };
    // r6 = ctx; r7 = &state[slot]
    b.push(mov(6, 1));
    b.push(store_imm(Size::W, 10, -8, slot as i32));
    b.lookup(state_fd, -8);
    b.push(mov(7, 0));
    // Not every ring backed up: pass (the whole cost while not overloaded).
    b.push(load(Size::DW, 1, 7, 0));
    b.or_pass(jlt_imm(1, workers as i32, 0));
    // Ethernet + IPv4 header present, EtherType IPv4 (the load is little-endian).
    b.push(load(Size::W, 2, 6, 0));
    b.push(load(Size::W, 3, 6, 4));
    b.push(mov(4, 2));
    b.push(add_imm(4, 34));
    b.or_pass(jgt(4, 3, 0));
    b.push(load(Size::H, 4, 2, 12));
    b.or_pass(jne_imm(4, 0x0008, 0));
    // Destination one of our VIPs?
    b.push(load(Size::W, 4, 2, 30));
    b.push(store(Size::W, 10, -4, 4));
    b.lookup(vips_fd, -4);
    // Shed it, and count it.
    b.push(mov_imm(1, 1));
    b.push(atomic_add64(7, 8, 1));
    b.push(mov_imm(0, XDP_DROP));
    b.push(exit());
    b.finish()
}

/// The shared state array, mmapped: per interface slot, the number of backed-up
/// rings (written by the workers) and the frames shed (written by the program).
pub struct StateMap {
    fd: OwnedFd,
    map: Mmap,
    slots: usize,
}

// SAFETY: the mapping is only read and written through atomics (`word`), by the
// workers, the control thread and the kernel alike; the descriptor is just held.
unsafe impl Send for StateMap {}
// SAFETY: as above.
unsafe impl Sync for StateMap {}

impl StateMap {
    fn word(&self, slot: usize, i: usize) -> &AtomicU64 {
        assert!(slot < self.slots && i < 2);
        // SAFETY: the mapping holds `slots` values of SLOT_BYTES (8-aligned: page
        // aligned base, 16-byte stride); the kernel and the workers only ever access
        // these words atomically, and the mapping lives as long as `self`.
        unsafe { &*(self.map.ptr().add(slot * SLOT_BYTES + i * 8) as *const AtomicU64) }
    }
    /// Frames shed on interface slot `slot` so far.
    pub fn shed(&self, slot: usize) -> u64 {
        self.word(slot, 1).load(Ordering::Relaxed)
    }
    /// Rings of interface slot `slot` backed up right now.
    pub fn backed_up(&self, slot: usize) -> u64 {
        self.word(slot, 0).load(Ordering::Relaxed)
    }
}

/// A ring's handle on its interface's count.
pub struct ShedSlot {
    state: Arc<StateMap>,
    slot: usize,
    backed_up: bool,
}

impl std::fmt::Debug for ShedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShedSlot({}, backed up: {})", self.slot, self.backed_up)
    }
}

impl ShedSlot {
    /// `waiting(n)`: are at least `n` blocks handed over and unread? Called once per
    /// round; one or two reads of a block status word.
    #[inline]
    pub fn update(&mut self, block_nr: u32, waiting: impl Fn(u32) -> bool) {
        if !self.backed_up && waiting(high_blocks(block_nr)) {
            self.backed_up = true;
            self.state.word(self.slot, 0).fetch_add(1, Ordering::Relaxed);
        } else if self.backed_up && !waiting(low_blocks(block_nr)) {
            self.backed_up = false;
            self.state.word(self.slot, 0).fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for ShedSlot {
    fn drop(&mut self) {
        if self.backed_up {
            self.state.word(self.slot, 0).fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Which XDP hook the program goes on.
///
/// The driver's own (native) hook runs before any skb exists, in the driver's receive
/// path: on a NIC the cheapest place to drop. veth and tun have one too, but theirs
/// converts every skb (a page allocated and the frame copied when the skb lacks 256
/// bytes of headroom, as sent frames do) and runs on the *sender's* CPU: measured
/// with the pps harness, attaching it to the director's veth cut what one generator
/// core could send to the director from ~700 to ~200 kpps. The generic hook runs in
/// the receiving core's softirq after RPS, still before the taps (the AF_PACKET rings,
/// tcpdump), netfilter and the IP stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native, except generic on veth and tun (and where native fails).
    #[default]
    Auto,
    Native,
    Generic,
}

impl std::str::FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<XdpMode, String> {
        match s {
            "auto" => Ok(XdpMode::Auto),
            "native" => Ok(XdpMode::Native),
            "generic" => Ok(XdpMode::Generic),
            _ => Err(format!("{s}: want auto, native or generic")),
        }
    }
}

/// The program attached to the served interfaces, and its maps.
pub struct Shed {
    state: Arc<StateMap>,
    vips_map: OwnedFd,
    vips: Vec<Ipv4Addr>,
    /// (interface, attach mode, link): detached when dropped.
    links: Vec<(String, &'static str, OwnedFd)>,
}

impl Shed {
    /// Load and attach the program on every interface (index, name), for `workers`
    /// rings each. Fails, attaching nothing, if any interface refuses (another XDP
    /// program there, no BPF in this kernel, no CAP_BPF/CAP_NET_ADMIN).
    pub fn attach(ifaces: &[(u32, String)], workers: usize, mode: XdpMode) -> io::Result<Shed> {
        let slots = ifaces.len().max(1);
        let state_fd = bpf::map_create(
            bpf::BPF_MAP_TYPE_ARRAY,
            4,
            SLOT_BYTES as u32,
            slots as u32,
            bpf::BPF_F_MMAPABLE,
            "uvs_shed_state",
        )?;
        let len = (slots * SLOT_BYTES).next_multiple_of(4096);
        let map = Mmap::new(&state_fd, len)?;
        let state = Arc::new(StateMap {
            fd: state_fd,
            map,
            slots,
        });
        let vips_map = bpf::map_create(bpf::BPF_MAP_TYPE_HASH, 4, 4, MAX_VIPS, 0, "uvs_shed_vips")?;
        let mut links = Vec::new();
        for (slot, (ifindex, name)) in ifaces.iter().enumerate() {
            let insns = program(state.fd.as_raw_fd(), vips_map.as_raw_fd(), slot as u32, workers as u32);
            let prog = bpf::prog_load_xdp(&insns, "uvs_shed")?;
            let native = match mode {
                XdpMode::Native => true,
                XdpMode::Generic => false,
                XdpMode::Auto => !matches!(super::iface_driver(name).as_deref(), Ok("veth" | "tun")),
            };
            let busy = |e: io::Error| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    io::Error::new(e.kind(), format!("{name} already has an XDP program"))
                } else {
                    io::Error::new(e.kind(), format!("XDP on {name}: {e}"))
                }
            };
            let link = if native {
                match bpf::xdp_link(&prog, *ifindex, bpf::XDP_FLAGS_DRV_MODE) {
                    Ok(l) => (name.clone(), "native", l),
                    Err(e) if mode == XdpMode::Native || e.raw_os_error() == Some(libc::EBUSY) => return Err(busy(e)),
                    Err(_) => (
                        name.clone(),
                        "generic",
                        bpf::xdp_link(&prog, *ifindex, bpf::XDP_FLAGS_SKB_MODE).map_err(busy)?,
                    ),
                }
            } else {
                (
                    name.clone(),
                    "generic",
                    bpf::xdp_link(&prog, *ifindex, bpf::XDP_FLAGS_SKB_MODE).map_err(busy)?,
                )
            };
            links.push(link);
        }
        Ok(Shed {
            state,
            vips_map,
            vips: Vec::new(),
            links,
        })
    }

    /// The handle a worker's ring on interface slot `slot` updates.
    pub fn slot(&self, slot: usize) -> ShedSlot {
        ShedSlot {
            state: self.state.clone(),
            slot,
            backed_up: false,
        }
    }

    pub fn state(&self) -> Arc<StateMap> {
        self.state.clone()
    }

    /// Where and how the program is attached, e.g. `eth0 (native)`.
    pub fn describe(&self) -> String {
        let v: Vec<String> = self.links.iter().map(|(n, m, _)| format!("{n} ({m})")).collect();
        v.join(", ")
    }

    /// Make `vips` the set of destinations that may be shed.
    pub fn set_vips(&mut self, vips: &[Ipv4Addr]) -> io::Result<()> {
        if self.vips == vips {
            return Ok(());
        }
        // Every change is tried; the first failure is reported once (the set is taken
        // as applied, so a full map does not warn again on every tick).
        // Sets, not list searches: tens of thousands of VIPs would make this quadratic.
        let mut first_err = Ok(());
        let (old, new): (std::collections::HashSet<_>, std::collections::HashSet<_>) =
            (self.vips.iter().collect(), vips.iter().collect());
        for v in &self.vips {
            if !new.contains(v)
                && let Err(e) = bpf::map_delete(&self.vips_map, &v.octets())
            {
                first_err = first_err.and(Err(e));
            }
        }
        for v in vips {
            if !old.contains(v)
                && let Err(e) = bpf::map_update(&self.vips_map, &v.octets(), &1u32.to_ne_bytes())
            {
                first_err = first_err.and(Err(e));
            }
        }
        self.vips = vips.to_vec();
        first_err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_inside_the_program_and_both_exits_return() {
        let p = program(3, 4, 0, 2);
        let exits: Vec<usize> = (0..p.len()).filter(|&i| p[i].code == 0x95).collect();
        assert_eq!(exits, vec![p.len() - 3, p.len() - 1]);
        for (i, ins) in p.iter().enumerate() {
            // BPF_JMP class, not call/exit: a conditional jump.
            if ins.code & 0x07 == 0x05 && ins.code != 0x85 && ins.code != 0x95 {
                let t = i as i64 + 1 + ins.off as i64;
                assert_eq!(t, p.len() as i64 - 2, "jump at {i} must go to PASS");
            }
        }
        // The drop path counts before returning XDP_DROP; PASS returns XDP_PASS.
        assert_eq!(p[p.len() - 4].imm, XDP_DROP);
        assert_eq!(p[p.len() - 2].imm, XDP_PASS);
        // The worker threshold is the immediate of the "not every ring" test.
        assert!(p.iter().any(|i| i.code == 0xa5 && i.imm == 2));
    }
}
