//! IPVS's rate estimator (`net/netfilter/ipvs/ip_vs_est.c`), in the kernel's integer
//! fixed point so that `--rate` and `/proc/net/ip_vs_stats` show the same numbers.
//!
//! Every 2 seconds the cumulative counters are sampled and each average moves a quarter
//! of the way towards the rate seen over the last interval:
//!
//! ```text
//! cps, inpps, outpps:  rate = delta << 9   (delta/2 s, scaled by 2^10)
//! inbps, outbps:       rate = delta << 4   (delta/2 s, scaled by 2^5)
//! avg += (rate - avg) >> 2                 (signed, arithmetic shift: floor)
//! ```
//!
//! Reported values round the scaled average: `(avg + 0x1FF) >> 10` for the connection
//! and packet rates, `(avg + 0xF) >> 5` for the byte rates. `ipvsadm -Z` resets the
//! averages and re-bases the counters ([`Estimator::zero`]).

use super::snapshot::Rates;
use crate::stats::Totals;

/// Sampling period in seconds.
pub const INTERVAL_SECS: u64 = 2;

/// The estimator of one counter block (a service, a real server, or the total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimator {
    last: Totals,
    /// Scaled averages: cps/pps by 2^10, bps by 2^5.
    cps: u64,
    inpps: u64,
    outpps: u64,
    inbps: u64,
    outbps: u64,
}

/// `avg += (rate - avg) >> 2` on the kernel's u64 with a signed difference.
fn smooth(avg: &mut u64, rate: u64) {
    let diff = (rate as i64).wrapping_sub(*avg as i64) >> 2;
    *avg = avg.wrapping_add(diff as u64);
}

impl Estimator {
    /// An estimator whose counters start at `totals` (a new service starts at zero, so
    /// [`Estimator::default`] is the kernel's starting point).
    pub fn new(totals: Totals) -> Estimator {
        Estimator {
            last: totals,
            ..Estimator::default()
        }
    }

    /// Feed the cumulative counters; call every [`INTERVAL_SECS`] seconds. A counter
    /// that went backwards means the counters were zeroed (`-Z`) without
    /// [`Estimator::zero`] being called: the estimator is reset as the kernel's
    /// `ip_vs_zero_estimator` does, counting from zero.
    pub fn sample(&mut self, t: Totals) {
        let l = self.last;
        if t.conns < l.conns
            || t.inpkts < l.inpkts
            || t.outpkts < l.outpkts
            || t.inbytes < l.inbytes
            || t.outbytes < l.outbytes
        {
            *self = Estimator::default();
        }
        let l = self.last;
        smooth(&mut self.cps, t.conns.wrapping_sub(l.conns) << 9);
        smooth(&mut self.inpps, t.inpkts.wrapping_sub(l.inpkts) << 9);
        smooth(&mut self.outpps, t.outpkts.wrapping_sub(l.outpkts) << 9);
        smooth(&mut self.inbps, t.inbytes.wrapping_sub(l.inbytes) << 4);
        smooth(&mut self.outbps, t.outbytes.wrapping_sub(l.outbytes) << 4);
        self.last = t;
    }

    /// `ip_vs_zero_estimator`: forget the averages, count from `totals` on.
    pub fn zero(&mut self, totals: Totals) {
        *self = Estimator::new(totals);
    }

    /// The scaled averages (cps, inpps, outpps, inbps, outbps), to hand over to
    /// another process (`director::handover`).
    pub fn averages(&self) -> [u64; 5] {
        [self.cps, self.inpps, self.outpps, self.inbps, self.outbps]
    }

    /// An estimator that goes on from `averages` ([`Estimator::averages`] of another
    /// process's) with its counters at `totals`.
    pub fn resume(totals: Totals, averages: [u64; 5]) -> Estimator {
        let [cps, inpps, outpps, inbps, outbps] = averages;
        Estimator {
            last: totals,
            cps,
            inpps,
            outpps,
            inbps,
            outbps,
        }
    }

    /// The rates as the kernel reports them (`ip_vs_read_estimator`).
    pub fn rates(&self) -> Rates {
        Rates {
            cps: self.cps.wrapping_add(0x1FF) >> 10,
            inpps: self.inpps.wrapping_add(0x1FF) >> 10,
            outpps: self.outpps.wrapping_add(0x1FF) >> 10,
            inbps: self.inbps.wrapping_add(0xF) >> 5,
            outbps: self.outbps.wrapping_add(0xF) >> 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tot(conns: u64, inpkts: u64, outpkts: u64, inbytes: u64, outbytes: u64) -> Totals {
        Totals {
            conns,
            inpkts,
            outpkts,
            inbytes,
            outbytes,
        }
    }

    #[test]
    fn hand_computed_steps() {
        let mut e = Estimator::default();
        // 10 conns and 1000 bytes in 2 s: rate 5120 (cps<<10) and 16000 (bps<<5).
        e.sample(tot(10, 20, 0, 1000, 0));
        // cps avg = 5120 >> 2 = 1280 → (1280 + 511) >> 10 = 1
        // inpps: 20<<9 = 10240 → avg 2560 → (2560 + 511) >> 10 = 2
        // inbps: 1000<<4 = 16000 → avg 4000 → (4000 + 15) >> 5 = 125
        assert_eq!(
            e.rates(),
            Rates {
                cps: 1,
                inpps: 2,
                outpps: 0,
                inbps: 125,
                outbps: 0
            }
        );
        assert_eq!((e.cps, e.inpps, e.inbps), (1280, 2560, 4000));
        // Same deltas again: 1280 + (5120 - 1280) / 4 = 2240 → (2240 + 511) >> 10 = 2.
        e.sample(tot(20, 40, 0, 2000, 0));
        assert_eq!(e.cps, 2240);
        assert_eq!(e.rates().cps, 2);
        // inbps: 4000 + (16000 - 4000) / 4 = 7000 → (7000 + 15) >> 5 = 219.
        assert_eq!(e.rates().inbps, 219);
        // Idle: the signed difference shifts arithmetically (floor).
        e.sample(tot(20, 40, 0, 2000, 0));
        assert_eq!(e.cps, 2240 - 560);
        let mut one = Estimator {
            cps: 1,
            ..Estimator::default()
        };
        one.sample(Totals::default());
        assert_eq!(one.cps, 0, "(0 - 1) >> 2 = -1");
    }

    #[test]
    fn constant_rate_converges() {
        let mut e = Estimator::default();
        let mut t = Totals::default();
        // 50 conn/s, 1000 pkt/s in, 800 out, 1.5 MB/s in, 64 kB/s out.
        for _ in 0..60 {
            t.conns += 100;
            t.inpkts += 2000;
            t.outpkts += 1600;
            t.inbytes += 3_000_000;
            t.outbytes += 128_000;
            e.sample(t);
        }
        assert_eq!(
            e.rates(),
            Rates {
                cps: 50,
                inpps: 1000,
                outpps: 800,
                inbps: 1_500_000,
                outbps: 64_000
            }
        );
        // Rising monotonically towards the rate, never past it.
        let mut e = Estimator::default();
        let mut t = Totals::default();
        let mut prev = 0;
        for _ in 0..30 {
            t.conns += 1000;
            e.sample(t);
            let r = e.rates().cps;
            assert!(r >= prev && r <= 500);
            prev = r;
        }
        assert_eq!(prev, 500);
    }

    #[test]
    fn zero_and_counter_reset() {
        let mut e = Estimator::default();
        e.sample(tot(100, 100, 100, 100, 100));
        e.zero(tot(100, 100, 100, 100, 100));
        assert_eq!(e.rates(), Rates::default());
        e.sample(tot(110, 100, 100, 100, 100));
        assert_eq!(e.cps, 1280);
        // Counters went back to small values (zeroed elsewhere): count from zero.
        let mut e = Estimator::new(tot(1000, 1000, 0, 0, 0));
        e.sample(tot(10, 0, 0, 0, 0));
        assert_eq!(e.cps, 1280);
        assert_eq!(e.inpps, 0);
    }
}
