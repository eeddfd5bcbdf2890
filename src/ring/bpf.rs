//! The few bpf(2) calls uvs needs: create a map, load a program, attach it to an
//! interface's XDP hook through a BPF link, update map entries, run a program on a
//! test frame; and an eBPF instruction encoder for the two small programs uvs loads
//! (the XDP shedding program, [`super::shed`], and the fanout steering program,
//! [`super::fanout`]).
//!
//! Hand-written because the crates that load eBPF want the program as an ELF object
//! built by a separate toolchain (aya: nightly + bpf-linker; libbpf-rs: clang and
//! libelf at build time); uvs's programs are 26 and ~50 instructions, assembled at
//! run time with their map descriptors and thresholds as immediates.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// Array maps whose values userspace may mmap.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Hash maps that allocate an element when it is added (not all `max_entries` up front).
pub const BPF_F_NO_PREALLOC: u32 = 1;
pub const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// XDP attach modes: generic (after the skb is built) or the driver's own hook.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The kernel zero-extends a shorter `union bpf_attr`, so each command passes only
/// the fields it uses (padded to 8 bytes).
fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised repr(C) prefix of `union bpf_attr` for
    // `cmd`, and its size is passed along; the kernel reads (and for some commands
    // writes) only that many bytes.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn owned(r: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) returned a new descriptor (close-on-exec) that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    for (d, b) in n.iter_mut().zip(s.bytes().take(15)) {
        *d = b;
    }
    n
}

#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    _pad: u32,
}

pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut a = MapCreate {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: name16(name),
        _pad: 0,
    };
    sys_bpf(BPF_MAP_CREATE, &mut a).map(owned)
}

#[repr(C)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut a = MapElem {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags: 0, // BPF_ANY
    };
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
}

pub fn map_delete(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    let mut a = MapElem {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: 0,
        flags: 0,
    };
    sys_bpf(BPF_MAP_DELETE_ELEM, &mut a).map(|_| ())
}

#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// Load an XDP program; a verifier rejection comes back with the verifier's log.
pub fn prog_load_xdp(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    prog_load(BPF_PROG_TYPE_XDP, BPF_XDP, insns, name)
}

/// Load a socket filter program (also the type PACKET_FANOUT_EBPF takes).
pub fn prog_load_socket_filter(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    prog_load(BPF_PROG_TYPE_SOCKET_FILTER, 0, insns, name)
}

fn prog_load(prog_type: u32, expected_attach_type: u32, insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 1 << 16];
    let mut a = ProgLoad {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name16(name),
        prog_ifindex: 0,
        expected_attach_type,
    };
    sys_bpf(BPF_PROG_LOAD, &mut a).map(owned).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        let tail: Vec<&str> = text.lines().rev().take(4).collect();
        io::Error::new(
            e.kind(),
            format!(
                "{e}; verifier: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        )
    })
}

#[repr(C)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
}

/// Run `prog` once on `frame` (an Ethernet frame; a socket filter sees it from the
/// network header on, as on receive) and return the program's result
/// (BPF_PROG_TEST_RUN, `net/bpf/test_run.c: bpf_prog_test_run_skb`).
pub fn prog_test_run(prog: &OwnedFd, frame: &[u8]) -> io::Result<u32> {
    let mut a = TestRun {
        prog_fd: prog.as_raw_fd() as u32,
        retval: 0,
        data_size_in: frame.len() as u32,
        data_size_out: 0,
        data_in: frame.as_ptr() as u64,
        data_out: 0,
        repeat: 1,
        duration: 0,
        ctx_size_in: 0,
        ctx_size_out: 0,
        ctx_in: 0,
        ctx_out: 0,
        flags: 0,
        cpu: 0,
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok(a.retval)
}

#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 4],
}

/// Attach `prog` to `ifindex`'s XDP hook; it stays attached while the returned link
/// descriptor is open (so it goes away with the process, however it ends). Fails
/// with EBUSY if the interface already has an XDP program.
pub fn xdp_link(prog: &OwnedFd, ifindex: u32, mode: u32) -> io::Result<OwnedFd> {
    let mut a = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: mode,
        _rest: [0; 4],
    };
    sys_bpf(BPF_LINK_CREATE, &mut a).map(owned)
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// Registers: r0 return value, r1-r5 arguments, r6-r9 callee-saved, r10 frame pointer.
pub type Reg = u8;

/// The encoder: one function per instruction form the program uses.
pub mod asm {
    use super::{Insn, Reg};

    const BPF_LD: u8 = 0x00;
    const BPF_LDX: u8 = 0x01;
    const BPF_ST: u8 = 0x02;
    const BPF_STX: u8 = 0x03;
    const BPF_ALU: u8 = 0x04;
    const BPF_JMP: u8 = 0x05;
    const BPF_ALU64: u8 = 0x07;
    const BPF_W: u8 = 0x00;
    const BPF_H: u8 = 0x08;
    const BPF_B: u8 = 0x10;
    const BPF_DW: u8 = 0x18;
    const BPF_IMM: u8 = 0x00;
    const BPF_ABS: u8 = 0x20;
    const BPF_IND: u8 = 0x40;
    const BPF_MEM: u8 = 0x60;
    const BPF_ATOMIC: u8 = 0xc0;
    const BPF_K: u8 = 0x00;
    const BPF_X: u8 = 0x08;
    const BPF_ADD: u8 = 0x00;
    const BPF_MUL: u8 = 0x20;
    const BPF_AND: u8 = 0x50;
    const BPF_LSH: u8 = 0x60;
    const BPF_RSH: u8 = 0x70;
    const BPF_XOR: u8 = 0xa0;
    const BPF_MOV: u8 = 0xb0;
    const BPF_JA: u8 = 0x00;
    const BPF_JEQ: u8 = 0x10;
    const BPF_JGT: u8 = 0x20;
    const BPF_JNE: u8 = 0x50;
    const BPF_JLT: u8 = 0xa0;
    const BPF_CALL: u8 = 0x80;
    const BPF_EXIT: u8 = 0x90;
    const BPF_PSEUDO_MAP_FD: u8 = 1;

    /// Sizes for loads and stores.
    #[derive(Clone, Copy)]
    pub enum Size {
        B,
        W,
        H,
        DW,
    }
    fn size(s: Size) -> u8 {
        match s {
            Size::B => BPF_B,
            Size::W => BPF_W,
            Size::H => BPF_H,
            Size::DW => BPF_DW,
        }
    }

    fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (dst & 0xf) | (src << 4),
            off,
            imm,
        }
    }
    pub fn mov(dst: Reg, src: Reg) -> Insn {
        insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
    }
    pub fn mov_imm(dst: Reg, imm: i32) -> Insn {
        insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }
    pub fn add_imm(dst: Reg, imm: i32) -> Insn {
        insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm)
    }
    pub fn and_imm(dst: Reg, imm: i32) -> Insn {
        insn(BPF_ALU64 | BPF_AND | BPF_K, dst, 0, 0, imm)
    }
    pub fn lsh_imm(dst: Reg, imm: i32) -> Insn {
        insn(BPF_ALU64 | BPF_LSH | BPF_K, dst, 0, 0, imm)
    }
    /// 32-bit ALU (the upper half of `dst` is zeroed): dst = src.
    pub fn mov32(dst: Reg, src: Reg) -> Insn {
        insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
    }
    /// 32-bit: dst *= imm (the immediate's 32 bits, wrapping).
    pub fn mul32_imm(dst: Reg, imm: u32) -> Insn {
        insn(BPF_ALU | BPF_MUL | BPF_K, dst, 0, 0, imm as i32)
    }
    /// 32-bit: dst ^= src.
    pub fn xor32(dst: Reg, src: Reg) -> Insn {
        insn(BPF_ALU | BPF_XOR | BPF_X, dst, src, 0, 0)
    }
    /// 32-bit: dst >>= imm (logical).
    pub fn rsh32_imm(dst: Reg, imm: i32) -> Insn {
        insn(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, imm)
    }
    /// Socket programs' packet loads (r6 holds the skb): r0 = the `s`-sized value at
    /// network-header offset `off`, in host order; past the end the program returns 0
    /// (`kernel/bpf/verifier.c: check_ld_abs`). Clobbers r1-r5.
    pub fn ld_abs(s: Size, off: i32) -> Insn {
        insn(BPF_LD | BPF_ABS | size(s), 0, 0, 0, off)
    }
    /// As [`ld_abs`], at offset `src + off`.
    pub fn ld_ind(s: Size, src: Reg, off: i32) -> Insn {
        insn(BPF_LD | BPF_IND | size(s), 0, src, 0, off)
    }
    pub fn ja(off: i16) -> Insn {
        insn(BPF_JMP | BPF_JA, 0, 0, off, 0)
    }
    /// dst = *(size *)(src + off)
    pub fn load(s: Size, dst: Reg, src: Reg, off: i16) -> Insn {
        insn(BPF_LDX | BPF_MEM | size(s), dst, src, off, 0)
    }
    /// *(size *)(dst + off) = src
    pub fn store(s: Size, dst: Reg, off: i16, src: Reg) -> Insn {
        insn(BPF_STX | BPF_MEM | size(s), dst, src, off, 0)
    }
    /// *(size *)(dst + off) = imm
    pub fn store_imm(s: Size, dst: Reg, off: i16, imm: i32) -> Insn {
        insn(BPF_ST | BPF_MEM | size(s), dst, 0, off, imm)
    }
    /// lock *(u64 *)(dst + off) += src
    pub fn atomic_add64(dst: Reg, off: i16, src: Reg) -> Insn {
        insn(BPF_STX | BPF_ATOMIC | BPF_DW, dst, src, off, BPF_ADD as i32)
    }
    /// dst = the map behind descriptor `fd` (two instruction slots).
    pub fn ld_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
        [
            insn(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, fd),
            insn(0, 0, 0, 0, 0),
        ]
    }
    pub fn jeq_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        insn(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, off, imm)
    }
    pub fn jne_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
    }
    /// if dst < imm (unsigned) goto +off
    pub fn jlt_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        insn(BPF_JMP | BPF_JLT | BPF_K, dst, 0, off, imm)
    }
    /// if dst > src (unsigned) goto +off
    pub fn jgt(dst: Reg, src: Reg, off: i16) -> Insn {
        insn(BPF_JMP | BPF_JGT | BPF_X, dst, src, off, 0)
    }
    pub fn call(helper: i32) -> Insn {
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper)
    }
    pub fn exit() -> Insn {
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::asm::*;

    #[test]
    fn encodes_as_the_kernel_lays_out_struct_bpf_insn() {
        assert_eq!(std::mem::size_of::<super::Insn>(), 8);
        // r6 = r1: BPF_ALU64|BPF_MOV|BPF_X, dst 6, src 1.
        let i = mov(6, 1);
        assert_eq!((i.code, i.regs), (0xbf, 0x16));
        // r0 = *(u32 *)(r6 + 4)
        let i = load(Size::W, 0, 6, 4);
        assert_eq!((i.code, i.regs, i.off), (0x61, 0x60, 4));
        assert_eq!(load(Size::H, 1, 2, 12).code, 0x69);
        // lock *(u64 *)(r7 + 8) += r1
        let i = atomic_add64(7, 8, 1);
        assert_eq!((i.code, i.regs, i.off, i.imm), (0xdb, 0x17, 8, 0));
        let [a, b] = ld_map_fd(1, 5);
        assert_eq!((a.code, a.regs, a.imm), (0x18, 0x11, 5));
        assert_eq!(
            b,
            super::Insn {
                code: 0,
                regs: 0,
                off: 0,
                imm: 0
            }
        );
        assert_eq!(store_imm(Size::W, 10, -8, 3).code, 0x62);
        assert_eq!(jlt_imm(1, 2, 3).code, 0xa5);
        assert_eq!(exit().code, 0x95);
        assert_eq!(call(1).code, 0x85);
        // BPF_LD|BPF_ABS|BPF_H, BPF_LD|BPF_IND|BPF_W with src r7.
        assert_eq!(ld_abs(Size::H, 12).code, 0x28);
        let i = ld_ind(Size::W, 7, 20);
        assert_eq!((i.code, i.regs, i.imm), (0x40, 0x70, 20));
        assert_eq!(ld_abs(Size::B, 9).code, 0x30);
        // 32-bit ALU: mul imm 0x24, xor reg 0xac, rsh imm 0x74, mov reg 0xbc.
        assert_eq!(mul32_imm(0, 0x9e37_79b1).code, 0x24);
        assert_eq!(mul32_imm(0, 0x9e37_79b1).imm as u32, 0x9e37_79b1);
        assert_eq!(xor32(0, 1).code, 0xac);
        assert_eq!(rsh32_imm(1, 16).code, 0x74);
        assert_eq!(mov32(1, 0).code, 0xbc);
        assert_eq!(ja(3).code, 0x05);
        assert_eq!(and_imm(0, 0xf).code, 0x57);
        assert_eq!(lsh_imm(0, 2).code, 0x67);
    }
}
