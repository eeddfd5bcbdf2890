//! twos: power of two random choices (ip_vs_twos.c, recent kernels).
//!
//! Over the eligible dests (not OVERLOAD, weight > 0) with total weight `T - 1`, two
//! independent uniform draws `r1, r2` in `[0, T)` each select the first dest at which
//! the running `r - weight` reaches `<= 0`; the second choice wins when
//! `w2 * o1 > w1 * o2` (`o` = overhead), else the first. The kernel does this last
//! comparison in 32-bit `int` (wrapping); so does this port.
//!
//! The random source is injectable ([`TwoChoices::with_rng`]) so tests can replay the
//! kernel's draws; the default is a small xorshift generator with Lemire's unbiased
//! bounded reduction (as `get_random_u32_below`).
//!
//! The total and the two "first dest where the running sum reaches r" walks come from a
//! sum tree over the eligible weights (see `index.rs`), kept current from the dests'
//! load changes: O(log n) per pick. [`scan`] is the kernel's loop, the reference; it is
//! also used when the total would overflow the kernel's 32-bit arithmetic.

use std::sync::Arc;

use super::index::{LoadIndex, SumTree};
use super::{DestChange, SchedInput, Scheduler};
use crate::dest::Dest;

/// A random source: given `bound > 0`, returns a uniform value in `[0, bound)`.
pub type RandomSource = Box<dyn FnMut(u32) -> u32 + Send>;

pub struct TwoChoices {
    rng: RandomSource,
    index: LoadIndex<SumTree>,
}

impl std::fmt::Debug for TwoChoices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoChoices").finish_non_exhaustive()
    }
}

impl Default for TwoChoices {
    fn default() -> Self {
        TwoChoices::with_rng(default_rng())
    }
}

impl TwoChoices {
    /// Use `rng(bound)` (uniform in `[0, bound)`) for the two draws of each pick.
    pub fn with_rng(rng: RandomSource) -> Self {
        TwoChoices {
            rng,
            index: LoadIndex::default(),
        }
    }
}

/// xorshift64* seeded from the clock and a stack address, reduced to `[0, bound)` with
/// Lemire's multiply-and-reject method.
fn default_rng() -> RandomSource {
    let marker = 0u8;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = (t ^ (&marker as *const u8 as u64).rotate_left(32)) | 1;
    let mut next_u32 = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    };
    Box::new(move |bound: u32| {
        if bound <= 1 {
            return 0;
        }
        let mut m = u64::from(next_u32()) * u64::from(bound);
        if (m as u32) < bound {
            let threshold = bound.wrapping_neg() % bound;
            while (m as u32) < threshold {
                m = u64::from(next_u32()) * u64::from(bound);
            }
        }
        (m >> 32) as u32
    })
}

/// The kernel's scan (reference implementation), drawing from `rng`.
pub(crate) fn scan(dests: &[Arc<Dest>], rng: &mut dyn FnMut(u32) -> u32) -> Option<usize> {
    let mut total: i32 = 0;
    for d in dests {
        if !d.is_overloaded() {
            let w = d.weight();
            if w > 0 {
                total = total.wrapping_add(w);
            }
        }
    }
    let bound = total.wrapping_add(1) as u32;
    if dests.iter().all(|d| d.is_overloaded() || d.weight() <= 0) {
        return None;
    }
    let r1 = rng(bound) as i32;
    let r2 = rng(bound) as i32;
    walk(dests, r1, r2)
}

/// The kernel's walk for draws `r1`, `r2` (at least one dest is eligible).
fn walk(dests: &[Arc<Dest>], mut r1: i32, mut r2: i32) -> Option<usize> {
    // As in the kernel, choice 1 starts as the last eligible dest of the list.
    let last_eligible = dests.iter().rposition(|d| !d.is_overloaded() && d.weight() > 0);
    let (mut c1, mut w1, mut o1) = (last_eligible, -1i32, 0i32);
    let (mut c2, mut w2, mut o2) = (None, -1i32, 0i32);
    for (i, d) in dests.iter().enumerate() {
        if d.is_overloaded() {
            continue;
        }
        let w = d.weight();
        if w <= 0 {
            continue;
        }
        r1 = r1.wrapping_sub(w);
        r2 = r2.wrapping_sub(w);
        if r1 <= 0 && w1 == -1 {
            (c1, w1, o1) = (Some(i), w, d.overhead() as i32);
        }
        if r2 <= 0 && w2 == -1 {
            (c2, w2, o2) = (Some(i), w, d.overhead() as i32);
        }
        if w1 != -1 && w2 != -1 {
            break;
        }
    }
    if c2.is_some() && w2.wrapping_mul(o1) > w1.wrapping_mul(o2) {
        c2
    } else {
        c1
    }
}

impl Scheduler for TwoChoices {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn update(&mut self, dests: &[Arc<Dest>], _svc_flags: u32, change: DestChange) {
        self.index.update(dests, &change);
    }

    fn schedule(&mut self, dests: &[Arc<Dest>], _input: &SchedInput) -> Option<usize> {
        self.index.refresh(dests);
        let t = self.index.tree();
        let total = t.total();
        if total == 0 {
            return None;
        }
        if total >= i64::from(i32::MAX) {
            // The kernel's int sum would wrap: replay its arithmetic exactly.
            return scan(dests, &mut self.rng);
        }
        let bound = (total + 1) as u32;
        let r1 = (self.rng)(bound) as i32;
        let r2 = (self.rng)(bound) as i32;
        if !(0..=total).contains(&i64::from(r1)) || !(0..=total).contains(&i64::from(r2)) {
            // Only a random source breaking its contract gets here.
            return walk(dests, r1, r2);
        }
        // The first eligible dest where `r - running sum <= 0`, i.e. running sum >= r
        // (r = 0 -> the first eligible dest, whose sum is >= 1).
        let (c1, c2) = t.find2(i64::from(r1).max(1), i64::from(r2).max(1));
        let (w1, o1) = (t.weight(c1) as i32, t.overhead(c1) as i32);
        let (w2, o2) = (t.weight(c2) as i32, t.overhead(c2) as i32);
        Some(if w2.wrapping_mul(o1) > w1.wrapping_mul(o2) {
            c2
        } else {
            c1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dest_conns as d, pick1};
    use super::*;
    use std::sync::Mutex;

    /// A random source replaying fixed values (and checking the bound).
    fn fixed(values: &[u32], bound: u32) -> RandomSource {
        let v = Mutex::new(values.to_vec());
        Box::new(move |b| {
            assert_eq!(b, bound);
            v.lock().unwrap().remove(0)
        })
    }

    #[test]
    fn tv_twos_10_4() {
        // A(1, act 2) oh 512, B(2, act 1) oh 256, C(1, act 0) oh 0; T = 5.
        let dests = [d(1, 1, 2, 0), d(2, 2, 1, 0), d(3, 1, 0, 0)];
        for (r1, r2, want) in [(0, 4, 3), (1, 2, 2), (3, 1, 2), (2, 2, 2), (4, 0, 3)] {
            let mut s = TwoChoices::with_rng(fixed(&[r1, r2], 5));
            assert_eq!(pick1(&mut s, &dests), Some(want), "({r1},{r2})");
        }
    }

    #[test]
    fn none_when_nothing_eligible() {
        let dests = [d(1, 0, 0, 0), d(2, 3, 0, 0)];
        dests[1].set_overload(true);
        let mut s = TwoChoices::with_rng(Box::new(|_| panic!("no draw expected")));
        assert_eq!(pick1(&mut s, &dests), None);
    }

    #[test]
    fn default_rng_in_range_and_spreads() {
        let mut rng = default_rng();
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = rng(7);
            assert!(v < 7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 700), "{seen:?}");
        assert_eq!(rng(1), 0);
    }

    #[test]
    fn default_picks_only_eligible() {
        let dests = [d(1, 0, 0, 0), d(2, 2, 3, 1), d(3, 1, 0, 0), d(4, 4, 0, 0)];
        dests[3].set_overload(true);
        let mut s = TwoChoices::default();
        for _ in 0..200 {
            let p = pick1(&mut s, &dests).unwrap();
            assert!(p == 2 || p == 3);
        }
    }
}
