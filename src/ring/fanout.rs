//! Steering (PACKET_FANOUT): both directions of a connection go to the same worker,
//! so per-worker connection tables always see their replies, and one client's
//! connections spread over the workers.
//!
//! The key is the client endpoint (address and port): the source of packets to a VIP,
//! the destination of everything else (NAT replies, two-armed and one-armed alike).
//! For ICMP errors it is read from the quoted header (its destination toward a VIP,
//! its source otherwise). Fragments are reassembled first
//! (PACKET_FANOUT_FLAG_DEFRAG), so ports are always present. The key is mixed by
//! [`steer_hash`] (multiply, then murmur3's 32-bit finaliser: every output bit depends
//! on every bit of address and port, so Linux's even source ports spread too) and the
//! kernel takes the result modulo the number of sockets in the group
//! (`net/packet/af_packet.c: fanout_demux_bpf`), which join in worker order:
//! [`worker_of`] is the whole function, for anyone (a sync backup) who must reproduce
//! it. The kernel's own PACKET_FANOUT_HASH will not do: it hashes the whole 4-tuple
//! with a per-boot seed, so a NAT request and its reply would land apart.
//!
//! "Is the destination a VIP?" is a lookup in a BPF hash map
//! ([`Steering::set_vips`] updates it), so the program, an eBPF socket filter attached
//! with PACKET_FANOUT_EBPF ([`ebpf_program`], ~50 instructions), does not grow with the
//! VIP count. Where eBPF cannot be loaded (no CAP_BPF, a kernel without it) uvs falls
//! back to a classic BPF program that lists the VIPs ([`program`]: 2 instructions
//! each, so at most [`CBPF_MAX_VIPS`]); beyond that it steers everything to the first
//! worker, which is correct but uses one core, and says so.

use std::collections::HashSet;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use super::bpf::{self, Insn, asm::*};
use super::set_packet_opt;

/// The steering hash of a client endpoint: the program's result, before the kernel's
/// modulo. Multiply the address by the golden ratio, add in the port, then murmur3's
/// fmix32. Any change here must be made in both programs ([`program`],
/// [`ebpf_program`]); the tests run all three on the same frames.
pub fn steer_hash(addr: Ipv4Addr, port: u16) -> u32 {
    let mut h = addr.to_bits().wrapping_mul(MIX_ADDR) ^ port as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(MIX_K1);
    h ^= h >> 13;
    h = h.wrapping_mul(MIX_K2);
    h ^ (h >> 16)
}

/// The worker (0-based, in the order the workers' sockets joined) that handles the
/// connection of client `addr:port` among `workers`.
pub fn worker_of(addr: Ipv4Addr, port: u16, workers: usize) -> usize {
    (steer_hash(addr, port) % workers.max(1) as u32) as usize
}

const MIX_ADDR: u32 = 0x9e37_79b1;
const MIX_K1: u32 = 0x85eb_ca6b;
const MIX_K2: u32 = 0xc2b2_ae35;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LD_W_IND: u16 = 0x40;
const LDX_B_MSH: u16 = 0xb1;
const LDX_MEM: u16 = 0x61;
const ST: u16 = 0x02;
const JEQ_K: u16 = 0x15;
const JA: u16 = 0x05;
const XOR_X: u16 = 0xac;
const MUL_K: u16 = 0x24;
const TAX: u16 = 0x07;
const RSH_K: u16 = 0x74;
const RET_A: u16 = 0x16;
const RET_K: u16 = 0x06;
/// SKF_AD_OFF + SKF_AD_PROTOCOL: the frame's ethertype.
const AD_PROTOCOL: u32 = 0xfffff000;

#[derive(Clone, Copy)]
enum Jump {
    None,
    Eq { k: u32, t: &'static str, f: &'static str },
    Always(&'static str),
}

struct Asm {
    ins: Vec<(u16, u32, Jump)>,
    labels: Vec<(&'static str, usize)>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) {
        self.ins.push((code, k, Jump::None));
    }
    fn label(&mut self, l: &'static str) {
        self.labels.push((l, self.ins.len()));
    }
    fn jeq(&mut self, k: u32, t: &'static str, f: &'static str) {
        self.ins.push((JEQ_K, k, Jump::Eq { k, t, f }));
    }

    fn ja(&mut self, l: &'static str) {
        self.ins.push((JA, 0, Jump::Always(l)));
    }
    fn at(&self, l: &str) -> usize {
        self.labels
            .iter()
            .find(|(n, _)| *n == l)
            .map(|(_, i)| *i)
            .expect("label")
    }
    fn finish(self) -> Result<Vec<libc::sock_filter>, String> {
        let mut out = Vec::with_capacity(self.ins.len());
        for (i, (code, k, j)) in self.ins.iter().enumerate() {
            let rel = |l: &str| -> Result<usize, String> {
                match l {
                    NEXT => return Ok(0),
                    SKIP => return Ok(1),
                    _ => {}
                }
                let t = self.at(l);
                t.checked_sub(i + 1).ok_or_else(|| "backward jump".to_string())
            };
            let f = match *j {
                Jump::None => libc::sock_filter {
                    code: *code,
                    jt: 0,
                    jf: 0,
                    k: *k,
                },
                Jump::Eq { k, t, f } => {
                    let (jt, jf) = (rel(t)?, rel(f)?);
                    if jt > 255 || jf > 255 {
                        return Err("jump too far".into());
                    }
                    libc::sock_filter {
                        code: *code,
                        jt: jt as u8,
                        jf: jf as u8,
                        k,
                    }
                }
                Jump::Always(l) => libc::sock_filter {
                    code: *code,
                    jt: 0,
                    jf: 0,
                    k: rel(l)? as u32,
                },
            };
            out.push(f);
        }
        Ok(out)
    }
}

/// Classic BPF lists VIPs in the program: 2 instructions each, under the kernel's
/// 4,096-instruction limit (BPF_MAXINSNS).
pub const CBPF_MAX_VIPS: usize = 2000;

/// The classic BPF fallback program for these VIPs.
pub fn program(vips: &[Ipv4Addr]) -> Result<Vec<libc::sock_filter>, String> {
    if vips.len() > CBPF_MAX_VIPS {
        return Err(format!(
            "{} VIPs: a classic BPF program holds at most {CBPF_MAX_VIPS}",
            vips.len()
        ));
    }
    let mut a = Asm {
        ins: Vec::new(),
        labels: Vec::new(),
    };
    a.op(LD_H_ABS, AD_PROTOCOL);
    a.jeq(0x0800, SKIP, NEXT);
    a.op(RET_K, 0); // not IPv4 (ARP...): the first socket
    a.op(LDX_B_MSH, 0); // X = 4 * (IHL)
    a.op(LD_W_ABS, 16); // A = destination address
    // Conditional jumps reach at most 255 instructions, so each compare skips over
    // its own unconditional jump to `to_vip` when it misses.
    for v in vips {
        a.jeq(v.to_bits(), NEXT, SKIP);
        a.ja("to_vip");
    }
    // Not to a VIP: the client is the destination.
    a.op(LD_B_ABS, 9);
    a.jeq(1, "out_icmp", "out_l4");
    a.label("out_l4");
    a.op(LD_H_IND, 2);
    a.op(ST, 0);
    a.op(LD_W_ABS, 16);
    a.ja("mix");
    a.label("out_icmp");
    a.op(LD_H_IND, 28); // quoted source port
    a.op(ST, 0);
    a.op(LD_W_IND, 20); // quoted source address
    a.ja("mix");
    a.label("to_vip");
    a.op(LD_B_ABS, 9);
    a.jeq(1, "in_icmp", "in_l4");
    a.label("in_l4");
    a.op(LD_H_IND, 0);
    a.op(ST, 0);
    a.op(LD_W_ABS, 12);
    a.ja("mix");
    a.label("in_icmp");
    a.op(LD_H_IND, 30); // quoted destination port
    a.op(ST, 0);
    a.op(LD_W_IND, 24); // quoted destination address
    a.label("mix");
    // steer_hash: A = address, M[0] = port.
    a.op(MUL_K, MIX_ADDR);
    a.op(LDX_MEM, 0);
    a.op(XOR_X, 0);
    for (shift, k) in [(16, Some(MIX_K1)), (13, Some(MIX_K2)), (16, None)] {
        a.op(TAX, 0);
        a.op(RSH_K, shift);
        a.op(XOR_X, 0);
        if let Some(k) = k {
            a.op(MUL_K, k);
        }
    }
    a.op(RET_A, 0);
    a.finish()
}

/// Pseudo-labels: the next instruction, and the one after it.
const NEXT: &str = "__next";
const SKIP: &str = "__skip";

/// Install a classic program on a fanout group (through any member socket).
fn install_cbpf(fd: RawFd, mut prog: Vec<libc::sock_filter>) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    set_packet_opt(fd, libc::PACKET_FANOUT_DATA, &fprog)
}

/// Up to this many VIPs in the eBPF program's map (elements are allocated as they
/// are added, so the cap costs nothing until used).
pub const MAX_VIPS: u32 = 1 << 20;

const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
/// `struct __sk_buff`'s `protocol` (the EtherType, network order).
const SKB_PROTOCOL: i16 = 16;

/// The key of a VIP in the map: the address as the program loads it (LD_ABS yields
/// host order).
fn vip_key(v: Ipv4Addr) -> [u8; 4] {
    v.to_bits().to_ne_bytes()
}

/// The eBPF steering program, looking VIPs up in hash map `vips_fd` (key: the address
/// as [`vip_key`] lays it out, any value). Registers: r6 the skb (as LD_ABS wants),
/// r7 the IP header length, r8 the IP protocol, r9 the client port, r0 the client
/// address, then the hash.
pub fn ebpf_program(vips_fd: i32) -> Vec<Insn> {
    let mut p: Vec<Insn> = Vec::with_capacity(64);
    let mut fix: Vec<(usize, &'static str)> = Vec::new();
    let mut labels: Vec<(&'static str, usize)> = Vec::new();
    // A conditional or unconditional jump to a label, aimed in the end.
    let jump = |p: &mut Vec<Insn>, fix: &mut Vec<(usize, &'static str)>, i: Insn, l: &'static str| {
        fix.push((p.len(), l));
        p.push(i);
    };
    p.push(mov(6, 1));
    p.push(load(Size::W, 0, 6, SKB_PROTOCOL));
    jump(&mut p, &mut fix, jne_imm(0, 0x0800u16.to_be() as i32, 0), "first");
    p.push(ld_abs(Size::B, 0));
    p.push(and_imm(0, 0xf));
    p.push(lsh_imm(0, 2));
    p.push(mov(7, 0));
    p.push(ld_abs(Size::B, 9));
    p.push(mov(8, 0));
    // Destination a VIP?
    p.push(ld_abs(Size::W, 16));
    p.push(store(Size::W, 10, -4, 0));
    p.extend(ld_map_fd(1, vips_fd));
    p.push(mov(2, 10));
    p.push(add_imm(2, -4));
    p.push(call(BPF_FUNC_MAP_LOOKUP_ELEM));
    jump(&mut p, &mut fix, jeq_imm(0, 0, 0), "out");
    // To a VIP: the client is the source (ICMP: the quoted destination).
    jump(&mut p, &mut fix, jeq_imm(8, 1, 0), "in_icmp");
    p.push(ld_ind(Size::H, 7, 0));
    p.push(mov(9, 0));
    p.push(ld_abs(Size::W, 12));
    jump(&mut p, &mut fix, ja(0), "mix");
    labels.push(("in_icmp", p.len()));
    p.push(ld_ind(Size::H, 7, 30));
    p.push(mov(9, 0));
    p.push(ld_ind(Size::W, 7, 24));
    jump(&mut p, &mut fix, ja(0), "mix");
    // Not to a VIP (NAT replies): the client is the destination (ICMP: the quoted
    // source).
    labels.push(("out", p.len()));
    jump(&mut p, &mut fix, jeq_imm(8, 1, 0), "out_icmp");
    p.push(ld_ind(Size::H, 7, 2));
    p.push(mov(9, 0));
    p.push(ld_abs(Size::W, 16));
    jump(&mut p, &mut fix, ja(0), "mix");
    labels.push(("out_icmp", p.len()));
    p.push(ld_ind(Size::H, 7, 28));
    p.push(mov(9, 0));
    p.push(ld_ind(Size::W, 7, 20));
    // steer_hash, in 32-bit arithmetic.
    labels.push(("mix", p.len()));
    p.push(mul32_imm(0, MIX_ADDR));
    p.push(xor32(0, 9));
    for (shift, k) in [(16, Some(MIX_K1)), (13, Some(MIX_K2)), (16, None)] {
        p.push(mov32(1, 0));
        p.push(rsh32_imm(1, shift));
        p.push(xor32(0, 1));
        if let Some(k) = k {
            p.push(mul32_imm(0, k));
        }
    }
    p.push(exit());
    // Not IPv4 (ARP...): the first socket.
    labels.push(("first", p.len()));
    p.push(mov_imm(0, 0));
    p.push(exit());
    for (i, l) in fix {
        let at = labels.iter().find(|(n, _)| *n == l).expect("label").1;
        p[i].off = (at - i - 1) as i16;
    }
    p
}

/// Is kernel release `release` (`6.1.0-18-amd64`) older than `(major, minor)`?
/// Unparseable: assume old.
fn kernel_before(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut it = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b))) => (a, b) < (major, minor),
        _ => true,
    }
}

/// How the workers' sockets are steered; see the module documentation.
pub struct Steering {
    kind: Kind,
    /// One member socket per interface (classic programs are reinstalled through it).
    fds: Mutex<Vec<RawFd>>,
    /// The VIPs the program knows (eBPF: the map's keys; classic: the list).
    state: Mutex<Applied>,
}

#[derive(Default)]
struct Applied {
    vips: HashSet<Ipv4Addr>,
    /// Classic: the program in place lists `vips` (not the one-worker stand-in).
    listed: bool,
}

enum Kind {
    /// One worker: a group without a program delivers everything to its first member.
    Single,
    Ebpf {
        prog: OwnedFd,
        map: OwnedFd,
    },
    /// Classic fallback; why eBPF was not used.
    Cbpf {
        why: String,
    },
}

impl Steering {
    /// Prepare steering for `workers` workers (before their sockets join the group:
    /// the group's mode depends on it). Tries eBPF and falls back to classic BPF,
    /// warning why.
    pub fn load(workers: usize) -> Steering {
        let kind = if workers <= 1 {
            Kind::Single
        } else {
            match Self::load_ebpf() {
                Ok((prog, map)) => Kind::Ebpf { prog, map },
                Err(e) => {
                    let why = e.to_string();
                    tracing::warn!(
                        "eBPF fanout steering unavailable ({why}); falling back to a classic BPF program that \
                         lists the VIPs: up to {CBPF_MAX_VIPS} VIPs, beyond that every frame goes to worker 0"
                    );
                    Kind::Cbpf { why }
                }
            }
        };
        Steering {
            kind,
            fds: Mutex::default(),
            state: Mutex::default(),
        }
    }

    fn load_ebpf() -> io::Result<(OwnedFd, OwnedFd)> {
        let map = bpf::map_create(
            bpf::BPF_MAP_TYPE_HASH,
            4,
            1,
            MAX_VIPS,
            bpf::BPF_F_NO_PREALLOC,
            "uvs_steer_vips",
        )
        .map_err(|e| io::Error::new(e.kind(), format!("creating the VIP map: {e}")))?;
        let prog = bpf::prog_load_socket_filter(&ebpf_program(map.as_raw_fd()), "uvs_steer")
            .map_err(|e| io::Error::new(e.kind(), format!("loading the program: {e}")))?;
        Ok((prog, map))
    }

    /// The PACKET_FANOUT mode (with flags) the workers' sockets join with.
    pub fn fanout_mode(&self) -> u32 {
        let mode = match self.kind {
            Kind::Ebpf { .. } => libc::PACKET_FANOUT_EBPF,
            _ => libc::PACKET_FANOUT_CBPF,
        };
        mode | libc::PACKET_FANOUT_FLAG_DEFRAG
    }

    /// Attach the program to the groups, through one member socket of each; the
    /// classic program is installed by [`Steering::set_vips`] (it lists the VIPs).
    /// Again after a group was rebuilt (its last member closed): a group's program
    /// lives as long as the group.
    pub fn attach(&self, fds: Vec<RawFd>) -> io::Result<()> {
        if let Kind::Ebpf { prog, .. } = &self.kind {
            for fd in &fds {
                set_packet_opt(*fd, libc::PACKET_FANOUT_DATA, &(prog.as_raw_fd() as u32))?;
            }
        }
        *self.fds.lock().unwrap_or_else(|e| e.into_inner()) = fds;
        if let Kind::Cbpf { .. } = self.kind {
            // Reinstall the classic program through the new sockets.
            self.state.lock().unwrap_or_else(|e| e.into_inner()).listed = false;
            let vips: Vec<Ipv4Addr> = self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .vips
                .iter()
                .copied()
                .collect();
            if !vips.is_empty() {
                let _ = self.set_vips(&vips);
            }
        }
        Ok(())
    }

    /// Attach the program again through the sockets of the last [`Steering::attach`]:
    /// after a takeover attempt that gave up, the group may run the other process's
    /// program (same function, but its own VIP map, which this one no longer fills).
    pub fn reattach(&self) -> io::Result<()> {
        let fds = self.fds.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.attach(fds)
    }

    /// `eBPF (VIP map)`, `classic BPF (why)` or `one worker`: for the log.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Single => "one worker, no steering program".into(),
            Kind::Ebpf { .. } => "eBPF program with a VIP hash map".into(),
            Kind::Cbpf { why } => format!("classic BPF program listing the VIPs (no eBPF: {why})"),
        }
    }

    /// Does changing the VIP set use bpf(2) (which needs CAP_BPF on kernels before
    /// 6.5 when unprivileged BPF is disabled: the check moved from every command into
    /// map and program creation in 6.5, `kernel/bpf/syscall.c`)?
    pub fn uses_bpf_maps(&self) -> bool {
        matches!(self.kind, Kind::Ebpf { .. })
    }

    /// Must the director keep CAP_BPF to change the VIP set later? Only with eBPF
    /// steering, unprivileged BPF disabled (`kernel.unprivileged_bpf_disabled`, the
    /// distributions' default) and a kernel before 6.5: from 6.5 on, bpf(2) checks
    /// capabilities when maps and programs are created, not on every command
    /// (`kernel/bpf/syscall.c: __sys_bpf`), so updating a map uvs already holds needs
    /// none.
    pub fn needs_cap_bpf(&self) -> bool {
        let disabled = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
            .map(|s| s.trim() != "0")
            .unwrap_or(true);
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        self.uses_bpf_maps() && disabled && kernel_before(&release, (6, 5))
    }

    /// Test hook: the loaded eBPF program, if any.
    pub fn ebpf_prog(&self) -> Option<&OwnedFd> {
        match &self.kind {
            Kind::Ebpf { prog, .. } => Some(prog),
            _ => None,
        }
    }
}

impl Steering {
    /// Make `vips` the set of VIPs the program tells apart (any order, duplicates
    /// ignored). eBPF: only the changes go to the map, one bpf(2) call each; classic:
    /// the program is rebuilt and reinstalled. Synchronous: when it returns, frames
    /// are steered by the new set. An error leaves the VIPs that were applied
    /// applied (the next call retries the rest).
    pub fn set_vips(&self, vips: &[Ipv4Addr]) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let want: HashSet<Ipv4Addr> = vips.iter().copied().collect();
        match &self.kind {
            Kind::Single => {
                st.vips = want;
                Ok(())
            }
            Kind::Ebpf { map, .. } => {
                let mut first_err = Ok(());
                let gone: Vec<Ipv4Addr> = st.vips.difference(&want).copied().collect();
                for v in gone {
                    match bpf::map_delete(map, &vip_key(v)) {
                        Ok(()) => {
                            st.vips.remove(&v);
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                            st.vips.remove(&v);
                        }
                        Err(e) => first_err = first_err.and(Err(e)),
                    }
                }
                let new: Vec<Ipv4Addr> = want.difference(&st.vips).copied().collect();
                for v in new {
                    match bpf::map_update(map, &vip_key(v), &[1]) {
                        Ok(()) => {
                            st.vips.insert(v);
                        }
                        Err(e) => first_err = first_err.and(Err(e)),
                    }
                }
                first_err.map_err(|e| io::Error::new(e.kind(), format!("updating the steering VIP map: {e}")))
            }
            Kind::Cbpf { .. } => {
                if st.listed && st.vips == want {
                    return Ok(());
                }
                let mut sorted: Vec<Ipv4Addr> = want.iter().copied().collect();
                sorted.sort_unstable();
                let (prog, listed, err) = match program(&sorted) {
                    Ok(p) => (p, true, None),
                    // Everything to the first socket: one worker's worth, but correct.
                    Err(e) => (
                        vec![libc::sock_filter {
                            code: RET_K,
                            jt: 0,
                            jf: 0,
                            k: 0,
                        }],
                        false,
                        Some(e),
                    ),
                };
                for fd in self.fds.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    install_cbpf(*fd, prog.clone())?;
                }
                st.vips = want;
                st.listed = listed;
                match err {
                    Some(e) => Err(io::Error::other(format!(
                        "{e}, and eBPF is unavailable: every frame now goes to worker 0"
                    ))),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Run a program the way the kernel would, for the instructions [`program`] emits
/// (tests check that both directions of a connection get the same value).
pub fn run(prog: &[libc::sock_filter], ethertype: u16, pkt: &[u8]) -> u32 {
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    let ld = |off: usize, n: usize| -> Option<u32> {
        let b = pkt.get(off..off + n)?;
        Some(b.iter().fold(0u32, |acc, &v| (acc << 8) | v as u32))
    };
    while pc < prog.len() {
        let i = prog[pc];
        pc += 1;
        match i.code {
            LD_H_ABS if i.k == AD_PROTOCOL => a = ethertype as u32,
            LD_W_ABS => match ld(i.k as usize, 4) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_H_ABS => match ld(i.k as usize, 2) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_B_ABS => match ld(i.k as usize, 1) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_W_IND => match ld((x + i.k) as usize, 4) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_H_IND => match ld((x + i.k) as usize, 2) {
                Some(v) => a = v,
                None => return 0,
            },
            LDX_B_MSH => match ld(i.k as usize, 1) {
                Some(v) => x = (v & 0xf) * 4,
                None => return 0,
            },
            LDX_MEM => x = mem[i.k as usize],
            ST => mem[i.k as usize] = a,
            JEQ_K => pc += if a == i.k { i.jt as usize } else { i.jf as usize },
            JA => pc += i.k as usize,
            XOR_X => a ^= x,
            MUL_K => a = a.wrapping_mul(i.k),
            TAX => x = a,
            RSH_K => a >>= i.k,
            RET_A => return a,
            RET_K => return i.k,
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 20];
        crate::wire::ipv4::Repr {
            tos: 0,
            total_len: (20 + l4.len()) as u16,
            ident: 0,
            dont_frag: false,
            ttl: 64,
            protocol: proto,
            src,
            dst,
        }
        .emit(&mut v);
        v.extend_from_slice(l4);
        v
    }
    fn ports(s: u16, d: u16) -> Vec<u8> {
        let mut p = vec![0u8; 8];
        p[0..2].copy_from_slice(&s.to_be_bytes());
        p[2..4].copy_from_slice(&d.to_be_bytes());
        p
    }

    /// One connection's frames: request to the VIP, NAT reply, the real server's ICMP
    /// error toward the client, an ICMP error toward the VIP quoting a reply. Each
    /// must steer by the client endpoint.
    fn connection(cip: Ipv4Addr, cport: u16, vip: Ipv4Addr, rip: Ipv4Addr) -> Vec<Vec<u8>> {
        let mut icmp_rs = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        icmp_rs.extend(ipv4(cip, rip, 17, &ports(cport, 8080)));
        let mut icmp_vip = vec![3u8, 4, 0, 0, 0, 0, 5, 0xdc];
        icmp_vip.extend(ipv4(vip, cip, 6, &ports(80, cport)));
        vec![
            ipv4(cip, vip, 6, &ports(cport, 80)),
            ipv4(rip, cip, 6, &ports(8080, cport)),
            ipv4(rip, cip, 1, &icmp_rs),
            ipv4(Ipv4Addr::new(198, 51, 100, 1), vip, 1, &icmp_vip),
        ]
    }

    #[test]
    fn request_reply_and_icmp_of_one_connection_hash_alike() {
        let vips = [Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 101)];
        let prog = program(&vips).unwrap();
        let (cip, cport, vip, rip) = (
            Ipv4Addr::new(192, 0, 2, 7),
            40123u16,
            Ipv4Addr::new(10, 0, 0, 101),
            Ipv4Addr::new(10, 1, 0, 11),
        );
        let k = steer_hash(cip, cport);
        for (i, f) in connection(cip, cport, vip, rip).iter().enumerate() {
            assert_eq!(run(&prog, 0x0800, f), k, "frame {i} steers by the client endpoint");
        }
        assert_eq!(
            run(&prog, 0x0806, &connection(cip, cport, vip, rip)[0]),
            0,
            "non-IPv4 goes to the first socket"
        );
    }

    #[test]
    fn one_clients_even_ports_spread_evenly() {
        // Linux picks even source ports for connect() (net/ipv4/inet_hashtables.c:
        // __inet_hash_connect), from the default range 32768-60999.
        for client in [
            [192, 0, 2, 7],
            [10, 0, 0, 1],
            [172, 16, 200, 33],
            [0, 0, 0, 0],
            [192, 168, 77, 10],
        ] {
            for n in [2usize, 4] {
                let mut count = vec![0usize; n];
                let ports: Vec<u16> = (32768..=60998).step_by(2).collect();
                for &p in &ports {
                    count[worker_of(Ipv4Addr::from(client), p, n)] += 1;
                }
                let max = *count.iter().max().unwrap() as f64 / ports.len() as f64;
                assert!(max <= 1.1 / n as f64, "{client:?} over {n}: {count:?}");
            }
        }
        // And many clients on one port spread too.
        let mut count = [0usize; 2];
        for a in 0..4096u32 {
            count[worker_of(Ipv4Addr::from_bits(0x0a00_0000 + a), 5000, 2)] += 1;
        }
        assert!(count.iter().all(|&c| c > 4096 * 45 / 100), "{count:?}");
    }

    #[test]
    fn classic_program_too_big_is_refused() {
        let vips: Vec<Ipv4Addr> = (0..CBPF_MAX_VIPS as u32 + 1)
            .map(|i| Ipv4Addr::from_bits(0x0a00_0000 + i))
            .collect();
        assert!(program(&vips).is_err());
        let prog = program(&vips[..CBPF_MAX_VIPS]).unwrap();
        assert!(prog.len() <= 4096, "{}", prog.len());
    }

    #[test]
    fn classic_fallback_degrades_to_one_worker_past_its_limit_and_recovers() {
        let s = Steering {
            kind: Kind::Cbpf { why: "test".into() },
            fds: Mutex::default(),
            state: Mutex::default(),
        };
        assert_eq!(s.fanout_mode() & 0xff, libc::PACKET_FANOUT_CBPF);
        assert!(!s.uses_bpf_maps() && !s.needs_cap_bpf());
        let vips: Vec<Ipv4Addr> = (0..CBPF_MAX_VIPS as u32 + 1)
            .map(|i| Ipv4Addr::from_bits(0x0a00_0000 + i))
            .collect();
        s.set_vips(&vips[..10]).unwrap();
        assert!(s.state.lock().unwrap().listed);
        let e = s.set_vips(&vips).unwrap_err().to_string();
        assert!(e.contains("worker 0"), "{e}");
        assert!(!s.state.lock().unwrap().listed);
        s.set_vips(&vips[..CBPF_MAX_VIPS]).unwrap();
        assert!(s.state.lock().unwrap().listed);
    }

    #[test]
    fn kernel_release_compare() {
        assert!(kernel_before("5.15.0-91-generic", (6, 5)));
        assert!(kernel_before("6.1.0-18-amd64", (6, 5)));
        assert!(!kernel_before("6.5.0", (6, 5)));
        assert!(!kernel_before("6.18.44-fc-v1300", (6, 5)));
        assert!(kernel_before("garbage", (6, 5)));
    }

    #[test]
    fn many_vips_fit() {
        let vips: Vec<Ipv4Addr> = (0..1000u32).map(|i| Ipv4Addr::from_bits(0x0a00_0000 + i)).collect();
        let prog = program(&vips).unwrap();
        assert!(prog.len() < 4096);
        let req = ipv4(Ipv4Addr::new(192, 0, 2, 7), vips[999], 17, &ports(5, 53));
        assert_eq!(
            run(&prog, 0x0800, &req),
            run(
                &prog,
                0x0800,
                &ipv4(
                    Ipv4Addr::new(10, 9, 9, 9),
                    Ipv4Addr::new(192, 0, 2, 7),
                    17,
                    &ports(53, 5)
                )
            )
        );
    }

    #[test]
    fn ebpf_jumps_land_inside_the_program() {
        let p = ebpf_program(3);
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 && ins.code != 0x85 && ins.code != 0x95 {
                let t = i as i64 + 1 + ins.off as i64;
                assert!(t > i as i64 && t < p.len() as i64, "jump at {i} to {t}");
            }
        }
        assert!(p.len() < 64, "{}", p.len());
    }

    /// The kernel runs the eBPF program (BPF_PROG_TEST_RUN) on frames of many
    /// connections; it must agree with `steer_hash` on every one, with 50,000 VIPs in
    /// the map, and after VIPs are removed.
    #[test]
    fn kernel_runs_the_ebpf_program_as_steer_hash_says() {
        if !crate::testbed::is_root() {
            eprintln!("*** SKIPPED kernel_runs_the_ebpf_program_as_steer_hash_says: needs root (bpf) ***");
            return;
        }
        let s = Steering::load(2);
        assert!(s.uses_bpf_maps(), "eBPF steering loads as root: {}", s.describe());
        s.attach(Vec::new()).unwrap();
        let vips: Vec<Ipv4Addr> = (0..50_000u32).map(|i| Ipv4Addr::from_bits(0x0a40_0000 + i)).collect();
        s.set_vips(&vips).unwrap();
        let prog = s.ebpf_prog().unwrap();
        let eth = |ethertype: u16, ip: &[u8]| {
            let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend_from_slice(ip);
            f
        };
        let cprog = program(&[vips[0], vips[49_999], vips[1234]]).unwrap();
        let mut clients = 0;
        for (i, &vip) in [vips[0], vips[49_999], vips[1234]].iter().enumerate() {
            for c in 0..40u32 {
                let cip = (0xc000_0200 + c * 7 + i as u32).to_be_bytes();
                let cport = 32768 + (c as u16) * 734;
                let want = steer_hash(Ipv4Addr::from(cip), cport);
                for (j, f) in connection(Ipv4Addr::from(cip), cport, vip, Ipv4Addr::new(10, 1, 0, 11))
                    .iter()
                    .enumerate()
                {
                    let got = bpf::prog_test_run(prog, &eth(0x0800, f)).unwrap();
                    assert_eq!(got, want, "frame {j} of {cip:?}:{cport} to {vip:?}");
                    assert_eq!(run(&cprog, 0x0800, f), want, "classic program, frame {j}");
                }
                clients += 1;
            }
        }
        assert_eq!(clients, 120);
        // ARP goes to the first socket; a truncated IPv4 frame too.
        let req = connection(Ipv4Addr::new(192, 0, 2, 7), 40000, vips[5], Ipv4Addr::new(10, 1, 0, 11)).remove(0);
        assert_eq!(bpf::prog_test_run(prog, &eth(0x0806, &req)).unwrap(), 0);
        // (an IPv4 header and one byte of ports: the port load runs off the end)
        assert_eq!(bpf::prog_test_run(prog, &eth(0x0800, &req[..21])).unwrap(), 0);
        // Remove the VIP: a packet to it is now keyed on its destination (the VIP).
        s.set_vips(&vips[6..]).unwrap();
        assert_eq!(
            bpf::prog_test_run(prog, &eth(0x0800, &req)).unwrap(),
            steer_hash(vips[5], 80),
            "no longer a VIP"
        );
        s.set_vips(&vips).unwrap();
        assert_eq!(
            bpf::prog_test_run(prog, &eth(0x0800, &req)).unwrap(),
            steer_hash(Ipv4Addr::new(192, 0, 2, 7), 40000)
        );
    }
}
