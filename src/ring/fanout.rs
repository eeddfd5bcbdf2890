//! The fanout program (PACKET_FANOUT_CBPF): steer both directions of a connection to
//! the same worker, so per-worker connection tables always see their replies.
//!
//! The key is the client endpoint (address ^ port): the source of packets to a VIP,
//! the destination of everything else (NAT replies). For ICMP errors it is read from
//! the quoted header (its destination toward a VIP, its source otherwise). The kernel
//! takes the program's result modulo the number of sockets in the group. Fragments
//! are reassembled first (PACKET_FANOUT_FLAG_DEFRAG), so ports are always present.

use std::io;
use std::os::fd::RawFd;

use super::set_packet_opt;

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

/// Build the steering program for these VIPs.
pub fn program(vips: &[[u8; 4]]) -> Result<Vec<libc::sock_filter>, String> {
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
        a.jeq(u32::from_be_bytes(*v), NEXT, SKIP);
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
    a.op(LDX_MEM, 0);
    a.op(XOR_X, 0); // A = address ^ port
    a.op(ST, 1);
    a.op(RSH_K, 16);
    a.op(LDX_MEM, 1);
    a.op(XOR_X, 0); // fold the high half into the low bits the modulo uses
    a.op(RET_A, 0);
    a.finish()
}

/// Pseudo-labels: the next instruction, and the one after it.
const NEXT: &str = "__next";
const SKIP: &str = "__skip";

/// Install the program on a fanout group (through any member socket).
pub fn install(fd: RawFd, vips: &[[u8; 4]]) -> io::Result<()> {
    let mut prog = program(vips).map_err(io::Error::other)?;
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    set_packet_opt(fd, libc::PACKET_FANOUT_DATA, &fprog)
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

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
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

    #[test]
    fn request_reply_and_icmp_of_one_connection_hash_alike() {
        let vips = [[10, 0, 0, 100], [10, 0, 0, 101]];
        let prog = program(&vips).unwrap();
        let (cip, cport, vip, rip) = ([192, 0, 2, 7], 40123u16, [10, 0, 0, 101], [10, 1, 0, 11]);
        let req = ipv4(cip, vip, 6, &ports(cport, 80));
        let reply = ipv4(rip, cip, 6, &ports(8080, cport));
        let k = run(&prog, 0x0800, &req);
        assert_ne!(k, 0);
        assert_eq!(run(&prog, 0x0800, &reply), k, "reply steers to the request's worker");
        // Port unreachable from the real server quoting client -> RIP:8080.
        let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend(ipv4(cip, rip, 17, &ports(cport, 8080)));
        assert_eq!(run(&prog, 0x0800, &ipv4(rip, cip, 1, &icmp)), k);
        // Frag-needed from the client's path to the VIP, quoting VIP:80 -> client.
        let mut icmp = vec![3u8, 4, 0, 0, 0, 0, 5, 0xdc];
        icmp.extend(ipv4(vip, cip, 6, &ports(80, cport)));
        assert_eq!(run(&prog, 0x0800, &ipv4([198, 51, 100, 1], vip, 1, &icmp)), k);
        // Other client ports spread.
        let distinct: std::collections::HashSet<u32> = (0..64u16)
            .map(|p| run(&prog, 0x0800, &ipv4(cip, vip, 6, &ports(40000 + p, 80))) % 2)
            .collect();
        assert_eq!(distinct.len(), 2);
        assert_eq!(run(&prog, 0x0806, &req), 0, "non-IPv4 goes to the first socket");
    }

    #[test]
    fn many_vips_fit() {
        let vips: Vec<[u8; 4]> = (0..1000u32).map(|i| (0x0a00_0000 + i).to_be_bytes()).collect();
        let prog = program(&vips).unwrap();
        assert!(prog.len() < 4096);
        let req = ipv4([192, 0, 2, 7], vips[999], 17, &ports(5, 53));
        assert_eq!(
            run(&prog, 0x0800, &req),
            run(&prog, 0x0800, &ipv4([10, 9, 9, 9], [192, 0, 2, 7], 17, &ports(53, 5)))
        );
    }
}
