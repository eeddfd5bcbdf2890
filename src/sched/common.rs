//! Helpers shared by several schedulers: the kernel's `hash_32`, the IPv6 address fold,
//! gcd, the eligibility tests and the weighted-least-connection pick that wlc, lblc and
//! lblcr share (`__ip_vs_lblc_schedule` / `__ip_vs_lblcr_schedule` are wlc verbatim).

use std::net::IpAddr;
use std::sync::Arc;

use super::index::{ArgTree, Key, LoadIndex};
use crate::dest::Dest;

/// `GOLDEN_RATIO_32` of `include/linux/hash.h` (since v4.7).
pub(crate) const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// Marker for an empty slot in an index table (dh/sh/mh).
pub(crate) const NO_DEST: u32 = u32::MAX;

/// `hash_32(v, bits) = (v * GOLDEN_RATIO_32) >> (32 - bits)` (mod 2^32), `1 <= bits <= 32`.
#[inline]
pub(crate) fn hash_32(v: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits));
    v.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// An address as the host-order u32 the hashing schedulers use: IPv4 as is, IPv6 as
/// the XOR of its four 32-bit words (`addr->ip6[0] ^ .. ^ ip6[3]`, then `ntohl`).
#[inline]
pub(crate) fn fold_addr(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// Greatest common divisor (Euclid); `gcd(x, 0) = x`.
#[inline]
pub(crate) fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// sh/mh "unavailable": weight <= 0 or OVERLOAD (AVAILABLE is not looked at).
#[inline]
pub(crate) fn is_unavailable(d: &Dest) -> bool {
    d.weight() <= 0 || d.is_overloaded()
}

/// The weighted least-connection pick (ip_vs_wlc.c): the first non-OVERLOAD dest with
/// weight > 0 starts, later non-OVERLOAD dests replace it only when strictly lighter
/// per unit of weight (`loh * w > doh * lw`, signed 64-bit). Ties keep the earlier dest.
pub(crate) fn wlc_pick(dests: &[Arc<Dest>]) -> Option<usize> {
    weighted_least_by(dests, |d| i64::from(d.overhead()))
}

/// The kernel's weighted-least scan with any per-dest cost (wlc: overhead; sed:
/// active + 1).
pub(crate) fn weighted_least_by(dests: &[Arc<Dest>], cost: impl Fn(&Dest) -> i64) -> Option<usize> {
    let first = dests.iter().position(|d| !d.is_overloaded() && d.weight() > 0)?;
    let mut least = first;
    let mut loh = cost(&dests[first]);
    let mut lw = i64::from(dests[first].weight());
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        if d.is_overloaded() {
            continue;
        }
        let doh = cost(d);
        let w = i64::from(d.weight());
        if loh * w > doh * lw {
            least = i;
            loh = doh;
            lw = w;
        }
    }
    Some(least)
}

/// `lnum / lw > rnum / rw` for the ratio keys (wlc, sed, nq), where `w == 0` marks an
/// ineligible dest that is never better. Exact: numerators < 2^33, weights < 2^31.
#[inline]
pub(crate) fn ratio_better(lnum: u64, lw: u32, rnum: u64, rw: u32) -> bool {
    rw != 0 && (lw == 0 || lnum * u64::from(rw) > rnum * u64::from(lw))
}

/// wlc's key: `overhead / weight` for a dest that is not OVERLOAD and has weight > 0
/// (the scan's later dests with weight <= 0 can never replace the least: `loh * w`
/// is <= 0 while `doh * lw` is >= 0), `w == 0` otherwise. The flag is lblc's "below
/// half of its weight" (`2 * active < weight`), counted over every listed dest.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct WlcKey {
    oh: u64,
    w: u32,
    below_half: bool,
}

impl Key for WlcKey {
    #[inline]
    fn of(d: &Dest) -> Self {
        let w = d.weight();
        let below_half = i64::from(d.active()) * 2 < i64::from(w);
        if d.is_overloaded() || w <= 0 {
            WlcKey {
                oh: 0,
                w: 0,
                below_half,
            }
        } else {
            WlcKey {
                oh: u64::from(d.overhead()),
                w: w as u32,
                below_half,
            }
        }
    }
    #[inline]
    fn better(l: &Self, r: &Self) -> bool {
        ratio_better(l.oh, l.w, r.oh, r.w)
    }
    #[inline]
    fn eligible(&self) -> bool {
        self.w != 0
    }
    #[inline]
    fn flag(&self) -> bool {
        self.below_half
    }
}

/// The wlc tree of wlc, lblc and lblcr.
pub(crate) type WlcIndex = LoadIndex<ArgTree<WlcKey>>;

/// [`wlc_pick`] from the index (refresh it first).
#[inline]
pub(crate) fn wlc_best(ix: &WlcIndex) -> Option<usize> {
    ix.tree().best()
}

/// lblc/lblcr's wlc pick: from the (refreshed) index, or by the kernel's scan when
/// `reference` is set (tests compare both).
#[inline]
pub(crate) fn lb_wlc(reference: bool, ix: &WlcIndex, dests: &[Arc<Dest>]) -> Option<usize> {
    if reference { wlc_pick(dests) } else { wlc_best(ix) }
}

/// [`overloaded_lb`] with the "some dest below half of its weight" part from the
/// (refreshed) index, or the kernel's scan when `reference` is set.
#[inline]
pub(crate) fn lb_overloaded(reference: bool, ix: &WlcIndex, d: &Dest, dests: &[Arc<Dest>]) -> bool {
    if reference {
        overloaded_lb(d, dests)
    } else {
        i64::from(d.active()) > i64::from(d.weight()) && ix.tree().flagged() > 0
    }
}

/// lblc/lblcr `is_overloaded()`: the dest has more active connections than its weight
/// while some dest of the service is below half of its own weight.
pub(crate) fn overloaded_lb(d: &Dest, dests: &[Arc<Dest>]) -> bool {
    i64::from(d.active()) > i64::from(d.weight())
        && dests.iter().any(|m| i64::from(m.active()) * 2 < i64::from(m.weight()))
}

/// The dests with weight > 0 ordered by weight (descending), then list order: walking
/// it and stopping at the first acceptable dest yields exactly "highest weight, earliest
/// among equals" (fo, ovf) without scanning the whole list in the common case. Weights
/// only change together with a scheduler update, so the order is rebuilt there.
#[derive(Debug, Default)]
pub(crate) struct WeightOrder {
    order: Vec<(i32, u32)>,
    len: usize,
}

impl WeightOrder {
    pub fn rebuild(&mut self, dests: &[Arc<Dest>]) {
        self.order.clear();
        self.order.extend(
            dests
                .iter()
                .enumerate()
                .filter(|(_, d)| d.weight() > 0)
                .map(|(i, d)| (d.weight(), i as u32)),
        );
        self.order.sort_unstable_by_key(|&(w, i)| (std::cmp::Reverse(w), i));
        self.len = dests.len();
    }

    /// The first dest in weight order accepted by `ok`. `None` from the outer option
    /// means the order is stale (the list changed without an update) and the caller
    /// must fall back to a plain scan.
    #[inline]
    pub fn first(&self, dests: &[Arc<Dest>], ok: impl Fn(&Dest, i32) -> bool) -> Option<Option<usize>> {
        if self.len != dests.len() {
            return None;
        }
        for &(w, i) in &self.order {
            let d = &dests[i as usize];
            if d.weight() != w {
                return None;
            }
            if ok(d, w) {
                return Some(Some(i as usize));
            }
        }
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        fold_addr(&s.parse().unwrap())
    }

    #[test]
    fn tv_hash_32_table_10_5() {
        // (address, host u32, 8-bit bucket, 10-bit bucket)
        let rows: &[(&str, u32, u32, Option<u32>)] = &[
            ("0.0.0.0", 0x0000_0000, 0, Some(0)),
            ("0.0.0.1", 0x0000_0001, 97, Some(391)),
            ("10.0.0.1", 0x0A00_0001, 39, Some(159)),
            ("10.0.0.2", 0x0A00_0002, 137, Some(550)),
            ("192.168.1.1", 0xC0A8_0101, 136, Some(547)),
            ("192.168.1.100", 0xC0A8_0164, 89, Some(357)),
            ("172.16.0.5", 0xAC10_0005, 1, Some(5)),
            ("255.255.255.255", 0xFFFF_FFFF, 158, Some(632)),
            ("2001:db8::1", 0x2001_0DB9, 63, None),
        ];
        let products = [
            0x0000_0000u32,
            0x61C8_8647,
            0x27C8_8647,
            0x8991_0C8E,
            0x88E6_CD47,
            0x5972_BABC,
            0x015A_9F63,
            0x9E37_79B9,
            0x3F01_A44F,
        ];
        for (&(addr, host, b8, b10), &prod) in rows.iter().zip(&products) {
            assert_eq!(v4(addr), host, "{addr}");
            assert_eq!(host.wrapping_mul(GOLDEN_RATIO_32), prod, "{addr}");
            assert_eq!(hash_32(host, 8), b8, "{addr}");
            if let Some(b10) = b10 {
                assert_eq!(hash_32(host, 10), b10, "{addr}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_lc_family_never_picks_ineligible(
            spec in proptest::collection::vec(
                (0i32..=4, 0u32..6, 0u32..600, proptest::bool::weighted(0.3)),
                0..=12,
            ),
            draws in proptest::collection::vec(0u32..1000, 2),
        ) {
            use super::super::testutil::{dest_conns, input};
            use crate::sched::{TwoChoices, new_scheduler};
            let dests: Vec<_> = spec
                .iter()
                .enumerate()
                .map(|(i, &(w, a, n, o))| {
                    let d = dest_conns(i as u8 + 1, w, a, n);
                    d.set_overload(o);
                    d
                })
                .collect();
            let eligible = |d: &Dest| d.weight() > 0 && !d.is_overloaded();
            let any = dests.iter().any(|d| eligible(d));
            let inp = input([192, 0, 2, 1], 1000, [10, 1, 1, 1]);
            for name in ["lc", "wlc", "sed", "nq", "fo", "ovf", "twos"] {
                let mut s: Box<dyn crate::sched::Scheduler> = if name == "twos" {
                    let mut it = draws.clone().into_iter();
                    Box::new(TwoChoices::with_rng(Box::new(move |b| it.next().unwrap() % b)))
                } else {
                    new_scheduler(name, &dests, 0).unwrap()
                };
                match s.schedule(&dests, &inp) {
                    Some(i) => {
                        proptest::prop_assert!(eligible(&dests[i]), "{} picked {}", name, i);
                        if name == "ovf" {
                            proptest::prop_assert!(i64::from(dests[i].active()) <= i64::from(dests[i].weight()));
                        }
                    }
                    None => proptest::prop_assert!(
                        !any || name == "ovf",
                        "{} found nothing although a dest is eligible", name
                    ),
                }
            }
        }
    }

    #[test]
    fn gcd_basics() {
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(7, 0), 7);
        assert_eq!(gcd(0, 5), 5);
        assert_eq!(gcd(1, 100), 1);
    }
}
