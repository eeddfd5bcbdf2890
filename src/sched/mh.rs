//! mh: Maglev hashing (ip_vs_mh.c), table size M = 4093 (CONFIG_IP_VS_MH_TAB_INDEX 12).
//!
//! Hash `H(key, addr, port, offset)` = 64-bit kernel `hsiphash` (SipHash-1-3, low 32
//! bits) of the 4 native-order (little-endian) bytes of
//! `v = offset + port + addr` (IPv6 folded), with the kernel's fixed keys. Each dest (in
//! list order) gets `offset = H(key1) mod M`, `skip = H(key2) mod (M-1) + 1` and
//! `turns` from its `last_weight` (gcd-reduced, right-shifted so the largest fits in 6
//! bits, at least 1 when non-zero). Rounds over the list let each dest claim `turns`
//! slots in a row from its permutation until all M slots are taken. Rebuilt on add,
//! delete and edit; because it keys on `last_weight`, quiescing (weight 0) leaves the
//! table unchanged.
//!
//! Lookup: `table[H(key1, saddr, sport or 0, 0) mod M]` (sport with mh-port = SCHED2)
//! unless unavailable (weight <= 0 or OVERLOAD). With mh-fallback (SCHED1):
//! `table[H(key1, saddr, sport, (off + ihash) mod M) mod M]` for `off = 0..M`.

use std::net::IpAddr;
use std::sync::Arc;

use super::common::{NO_DEST, fold_addr, gcd, is_unavailable};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::{Dest, svc_flags};

/// Lookup table size (a prime).
pub const TAB_SIZE: u32 = 4093;
/// `CONFIG_IP_VS_MH_TAB_INDEX / 2`: bits kept of `max_weight / gcd`.
const TAB_BITS: u32 = 6;

/// hsiphash keys: `generate_hash_secret()`.
const KEY1: (u64, u64) = (2_654_435_761, 2_654_435_761);
const KEY2: (u64, u64) = (2_654_446_892, 2_654_446_892);

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// The 64-bit kernel's `hsiphash()` of a 4-byte message: SipHash-1-3 with the length
/// byte in the top byte of the final block, returning the low 32 bits of
/// `v0 ^ v1 ^ v2 ^ v3`. `msg` is the message read as a little-endian u32.
pub fn hsiphash_1_3(msg: u32, k0: u64, k1: u64) -> u32 {
    let mut v = [
        0x736f_6d65_7073_6575 ^ k0,
        0x646f_7261_6e64_6f6d ^ k1,
        0x6c79_6765_6e65_7261 ^ k0,
        0x7465_6462_7974_6573 ^ k1,
    ];
    let b: u64 = (4u64 << 56) | u64::from(msg);
    v[3] ^= b;
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    ((v[0] ^ v[1]) ^ (v[2] ^ v[3])) as u32
}

/// `ip_vs_mh_hashkey()`: the hashed value is the u32 `v` in native byte order, which on
/// the little-endian kernels the vectors describe is `v` read as little-endian.
#[inline]
fn hashkey(addr: &IpAddr, port: u16, key: (u64, u64), offset: u32) -> u32 {
    let v = offset.wrapping_add(u32::from(port)).wrapping_add(fold_addr(addr));
    hsiphash_1_3(v, key.0, key.1)
}

#[derive(Debug)]
pub struct MaglevHashing {
    /// Slot -> index into the dest list, or `NO_DEST`.
    lookup: Vec<u32>,
    /// Scratch for the rebuild (kept to avoid reallocating).
    taken: Vec<bool>,
    setup: Vec<Setup>,
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    skip: u32,
    perm: u32,
    turns: u32,
}

impl Default for MaglevHashing {
    fn default() -> Self {
        MaglevHashing {
            lookup: vec![NO_DEST; TAB_SIZE as usize],
            taken: Vec::new(),
            setup: Vec::new(),
        }
    }
}

impl MaglevHashing {
    /// `ip_vs_mh_dest_changed()`: recompute gcd/shift and repopulate. Returns false
    /// when the kernel refuses (more dests than slots; the old table stays).
    fn reassign(&mut self, dests: &[Arc<Dest>]) -> bool {
        if dests.len() > TAB_SIZE as usize {
            return false;
        }
        let lws: Vec<i32> = dests.iter().map(|d| d.last_weight()).collect();
        let g = lws.iter().filter(|&&w| w > 0).fold(0u32, |g, &w| gcd(w as u32, g));
        if g == 0 {
            self.lookup.fill(NO_DEST);
            return true;
        }
        let mw = lws.iter().copied().fold(0, i32::max) as u32 / g;
        let fls = u32::BITS - mw.leading_zeros();
        let rshift = fls.saturating_sub(TAB_BITS);

        self.setup.clear();
        self.setup.extend(dests.iter().zip(&lws).map(|(d, &lw)| {
            let offset = hashkey(&d.addr, d.port, KEY1, 0) % TAB_SIZE;
            let skip = hashkey(&d.addr, d.port, KEY2, 0) % (TAB_SIZE - 1) + 1;
            let lw = lw.max(0) as u32;
            let t = (lw / g) >> rshift;
            let turns = if t == 0 { u32::from(lw != 0) } else { t };
            Setup {
                skip,
                perm: offset,
                turns,
            }
        }));

        self.taken.clear();
        self.taken.resize(TAB_SIZE as usize, false);
        let mut n = 0u32;
        'fill: loop {
            for (i, ds) in self.setup.iter_mut().enumerate() {
                for _ in 0..ds.turns {
                    let mut c = ds.perm;
                    while self.taken[c as usize] {
                        ds.perm += ds.skip;
                        if ds.perm >= TAB_SIZE {
                            ds.perm -= TAB_SIZE;
                        }
                        c = ds.perm;
                    }
                    self.taken[c as usize] = true;
                    self.lookup[c as usize] = i as u32;
                    n += 1;
                    if n == TAB_SIZE {
                        break 'fill;
                    }
                }
            }
        }
        true
    }

    #[inline]
    fn slot(&self, dests: &[Arc<Dest>], h: u32) -> Option<(usize, bool)> {
        let i = self.lookup[(h % TAB_SIZE) as usize] as usize;
        dests.get(i).map(|d| (i, !is_unavailable(d)))
    }
}

impl Scheduler for MaglevHashing {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, change: DestChange) {
        if self.reassign(dests) {
            return;
        }
        // Refused (more than M dests): the kernel keeps its table of dest pointers.
        // Follow the list shift so the surviving entries still name the same dests;
        // a deleted dest's slots become empty.
        match change {
            DestChange::Added => {
                for s in self.lookup.iter_mut().filter(|s| **s != NO_DEST) {
                    *s += 1;
                }
            }
            DestChange::Deleted { index } => {
                let index = index as u32;
                for s in self.lookup.iter_mut().filter(|s| **s != NO_DEST) {
                    if *s == index {
                        *s = NO_DEST;
                    } else if *s > index {
                        *s -= 1;
                    }
                }
            }
            DestChange::Edited { .. } | DestChange::ServiceEdited => {}
        }
    }

    #[inline]
    fn schedule(&mut self, dests: &[Arc<Dest>], input: &SchedInput) -> Option<usize> {
        let port = if input.svc_flags & svc_flags::SCHED2 != 0 {
            input.sport
        } else {
            0
        };
        let ihash = hashkey(&input.saddr, port, KEY1, 0) % TAB_SIZE;
        let (i, ok) = self.slot(dests, ihash)?;
        if ok {
            return Some(i);
        }
        if input.svc_flags & svc_flags::SCHED1 == 0 {
            return None;
        }
        for off in 0..TAB_SIZE {
            let roffset = (off + ihash) % TAB_SIZE;
            let (i, ok) = self.slot(dests, hashkey(&input.saddr, port, KEY1, roffset))?;
            if ok {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest, input, octet};
    use super::*;
    use crate::sched::new_scheduler;
    use proptest::prelude::*;

    fn mh(dests: &[Arc<Dest>]) -> MaglevHashing {
        let mut s = MaglevHashing::default();
        s.update(dests, 0, DestChange::ServiceEdited);
        s
    }

    fn counts(s: &MaglevHashing, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &i in &s.lookup {
            c[i as usize] += 1;
        }
        c
    }

    fn pick(s: &mut MaglevHashing, dests: &[Arc<Dest>], saddr: [u8; 4], sport: u16, flags: u32) -> Option<u8> {
        let mut inp = input(saddr, sport, [10, 1, 1, 1]);
        inp.svc_flags = flags;
        octet(dests, s.schedule(dests, &inp))
    }

    fn edit_weight(d: &Dest, w: i32) {
        let mut cfg = d.config();
        cfg.weight = w;
        d.edit(&cfg);
    }

    #[test]
    fn tv_siphash_self_check() {
        let msg = u32::from_le_bytes([0, 1, 2, 3]);
        assert_eq!(
            hsiphash_1_3(msg, 0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908),
            0x88D3_8328
        );
    }

    #[test]
    fn tv_mh_dest_hashes() {
        for (n, h1, h2, off, skip) in [
            (1u8, 0x439C_0CBEu32, 0x97B3_DC47u32, 3167u32, 700u32),
            (2, 0xA1CF_683B, 0xFA5D_46DF, 1231, 3544),
            (3, 0x2CDF_0AFA, 0xEDEB_33D0, 1631, 3453),
        ] {
            let a = IpAddr::from([10, 0, 0, n]);
            assert_eq!(fold_addr(&a) + 80, 0x0A00_0050 + u32::from(n));
            assert_eq!(hashkey(&a, 80, KEY1, 0), h1);
            assert_eq!(hashkey(&a, 80, KEY2, 0), h2);
            assert_eq!(h1 % TAB_SIZE, off);
            assert_eq!(h2 % (TAB_SIZE - 1) + 1, skip);
        }
    }

    #[test]
    fn tv_mh_1_equal_weights() {
        let dests = vec![dest(1, 1), dest(2, 1), dest(3, 1)];
        let s = mh(&dests);
        // First nine claims: R1@3167, R2@1231, R3@1631, R1@3867, R2@682, R3@991,
        // R1@474, R2@133, R3@351.
        for (slot, owner) in [
            (3167, 0),
            (1231, 1),
            (1631, 2),
            (3867, 0),
            (682, 1),
            (991, 2),
            (474, 0),
            (133, 1),
            (351, 2),
        ] {
            assert_eq!(s.lookup[slot], owner, "slot {slot}");
        }
        assert_eq!(counts(&s, 3), vec![1365, 1364, 1364]);
    }

    #[test]
    fn tv_mh_2_lookups() {
        let dests = vec![dest(1, 1), dest(2, 1), dest(3, 1)];
        let mut s = mh(&dests);
        let key = |a: [u8; 4], p| hashkey(&IpAddr::from(a), p, KEY1, 0);
        assert_eq!(key([192, 168, 1, 1], 0), 0xD3F1_B4D3);
        assert_eq!(key([192, 168, 1, 100], 0), 0xC15D_2CF8);
        assert_eq!(key([172, 16, 0, 5], 0), 0xED73_5258);
        assert_eq!(key([8, 8, 8, 8], 0), 0x3251_70EC);
        assert_eq!(key([192, 168, 1, 1], 0) % TAB_SIZE, 2456);
        assert_eq!(key([192, 168, 1, 100], 0) % TAB_SIZE, 1341);
        assert_eq!(key([172, 16, 0, 5], 0) % TAB_SIZE, 82);
        assert_eq!(key([8, 8, 8, 8], 0) % TAB_SIZE, 502);
        assert_eq!(key([192, 168, 1, 1], 12345) % TAB_SIZE, 1278);

        assert_eq!(pick(&mut s, &dests, [192, 168, 1, 1], 12345, 0), Some(1));
        assert_eq!(pick(&mut s, &dests, [192, 168, 1, 100], 1, 0), Some(2));
        assert_eq!(pick(&mut s, &dests, [172, 16, 0, 5], 1, 0), Some(3));
        assert_eq!(pick(&mut s, &dests, [8, 8, 8, 8], 1, 0), Some(2));
        let port = svc_flags::SCHED2;
        assert_eq!(pick(&mut s, &dests, [192, 168, 1, 1], 12345, port), Some(2));
    }

    #[test]
    fn tv_mh_3_weight_shift() {
        let dests = vec![dest(1, 100), dest(2, 1)];
        assert_eq!(counts(&mh(&dests), 2), vec![4013, 80]);
    }

    #[test]
    fn tv_mh_4_weights_2_1_1() {
        let dests = vec![dest(1, 2), dest(2, 1), dest(3, 1)];
        assert_eq!(counts(&mh(&dests), 3), vec![2047, 1023, 1023]);
    }

    #[test]
    fn tv_mh_5_quiesce_keeps_table() {
        let dests = vec![dest(1, 1), dest(2, 1), dest(3, 1)];
        let mut s = new_scheduler("mh", &dests, 0).unwrap();
        let before = mh(&dests).lookup;
        edit_weight(&dests[1], 0);
        s.update(&dests, 0, DestChange::Edited { index: 1 });
        assert_eq!(mh(&dests).lookup, before, "last_weight keeps the table");
        let fb = svc_flags::SCHED1;
        let p = |s: &mut Box<dyn Scheduler>, a: [u8; 4], f: u32| {
            let mut inp = input(a, 1, [10, 1, 1, 1]);
            inp.svc_flags = f;
            octet(&dests, s.schedule(&dests, &inp))
        };
        assert_eq!(p(&mut s, [192, 168, 1, 100], 0), None);
        assert_eq!(p(&mut s, [192, 168, 1, 100], fb), Some(1));
        assert_eq!(p(&mut s, [8, 8, 8, 8], 0), None);
        assert_eq!(p(&mut s, [8, 8, 8, 8], fb), Some(1));
        assert_eq!(p(&mut s, [192, 168, 1, 1], 0), Some(1));
        assert_eq!(p(&mut s, [172, 16, 0, 5], 0), Some(3));
        // The fallback hits: slot 2215 for 192.168.1.100, slot 62 for 8.8.8.8.
        let mhs = mh(&dests);
        assert_eq!(mhs.lookup[2215], 0);
        assert_eq!(mhs.lookup[62], 0);
    }

    #[test]
    fn tv_mh_6_delete_remaps_few() {
        let mut dests = vec![dest(1, 1), dest(2, 1), dest(3, 1)];
        let mut s = mh(&dests);
        let before: Vec<_> = s.lookup.iter().map(|&i| octet(&dests, Some(i as usize))).collect();
        dests.remove(1);
        s.update(&dests, 0, DestChange::Deleted { index: 1 });
        let after: Vec<_> = s.lookup.iter().map(|&i| octet(&dests, Some(i as usize))).collect();
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != Some(2) && b != a)
            .count();
        assert_eq!(moved, 6);
        assert_eq!(counts(&s, 2), vec![2047, 2046]);
    }

    #[test]
    fn all_last_weights_zero_empties_table() {
        let dests = vec![dest(1, 0), dest(2, 0)];
        let mut s = mh(&dests);
        assert!(s.lookup.iter().all(|&i| i == NO_DEST));
        assert_eq!(pick(&mut s, &dests, [1, 2, 3, 4], 1, svc_flags::SCHED1), None);
    }

    #[test]
    fn more_dests_than_slots_keeps_old_table() {
        let mut dests = n_dests(TAB_SIZE as usize);
        let mut s = mh(&dests);
        let owners = |s: &MaglevHashing, d: &[Arc<Dest>]| -> Vec<Option<IpAddr>> {
            s.lookup.iter().map(|&i| d.get(i as usize).map(|x| x.addr)).collect()
        };
        let before = owners(&s, &dests);
        assert!(before.iter().all(Option::is_some));
        // Two more dests: each rebuild is refused, the old table still names the same
        // dests although their indices moved.
        for k in 0..2 {
            let cfg = crate::dest::DestConfig {
                addr: IpAddr::from([10, 255, 0, k]),
                ..dest(1, 1).config()
            };
            dests.insert(0, Arc::new(Dest::new(&cfg)));
            s.update(&dests, 0, DestChange::Added);
            assert_eq!(owners(&s, &dests), before);
        }
        // Deleting an original dest at M + 1 dests: still refused; its slots empty.
        let victim = dests.remove(5);
        s.update(&dests, 0, DestChange::Deleted { index: 5 });
        let after = owners(&s, &dests);
        for (b, a) in before.iter().zip(&after) {
            if *b == Some(victim.addr) {
                assert_eq!(*a, None);
            } else {
                assert_eq!(a, b);
            }
        }
        // Back to M dests: rebuilt.
        dests.remove(0);
        s.update(&dests, 0, DestChange::Deleted { index: 0 });
        assert!(owners(&s, &dests).iter().all(Option::is_some));
    }

    fn n_dests(n: usize) -> Vec<Arc<Dest>> {
        (0..n)
            .map(|i| {
                let d = dest(1, 1);
                Arc::new(Dest::new(&crate::dest::DestConfig {
                    addr: IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
                    ..d.config()
                }))
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        #[test]
        fn prop_balanced_for_equal_weights(n in 1usize..=40) {
            // M = 4093 > 100 * N.
            let dests = n_dests(n);
            let s = mh(&dests);
            let ideal = f64::from(TAB_SIZE) / n as f64;
            for c in counts(&s, n) {
                prop_assert!((c as f64 - ideal).abs() <= (ideal * 0.01).max(1.0),
                    "count {} vs ideal {}", c, ideal);
            }
        }

        #[test]
        fn prop_removal_remaps_about_one_nth(n in 3usize..=40, victim in 0usize..40) {
            let victim = victim % n;
            let mut dests = n_dests(n);
            let mut s = mh(&dests);
            let addr = |d: &[Arc<Dest>], i: u32| d[i as usize].addr;
            let before: Vec<_> = s.lookup.iter().map(|&i| addr(&dests, i)).collect();
            let gone = dests.remove(victim);
            s.update(&dests, 0, DestChange::Deleted { index: victim });
            let after: Vec<_> = s.lookup.iter().map(|&i| addr(&dests, i)).collect();
            let moved = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| **b != gone.addr && b != a)
                .count();
            prop_assert!((moved as f64) < 2.0 * f64::from(TAB_SIZE) / n as f64,
                "{} slots of surviving servers moved (n = {})", moved, n);
        }
    }
}
