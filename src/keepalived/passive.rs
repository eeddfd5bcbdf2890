//! Passive health checks, the control half (`uvs run --passive-check`; beyond
//! keepalived). The workers count failed connection attempts per NAT real server
//! ([`crate::pipeline::passive`]); the checker thread reads those counters every
//! 100 ms and, when a live real server of an opted-in virtual server reaches
//! `failures` within `window`, takes it out as its checker would (removed, or weight 0
//! with `inhibit_on_failure`). It comes back only through its active checker: the
//! first successful check that started after the removal (its checkers are made due
//! at once, so a false alarm costs one check's time).
//!
//! Only real servers with at least one active checker are taken out: without one,
//! nothing could ever bring them back.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Failures that take a real server out, by default.
pub const DEFAULT_FAILURES: u32 = 3;
/// Within this window, by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// How often the counters are read.
pub const POLL: Duration = Duration::from_millis(100);

/// One `--passive-check VIP:PORT[,failures=N][,window=SECS]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PassiveSpec {
    pub addr: IpAddr,
    pub port: u16,
    pub failures: u32,
    pub window: Duration,
}

impl std::str::FromStr for PassiveSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<PassiveSpec, String> {
        let bad = |why: &str| format!("--passive-check {s}: {why} (want VIP:PORT[,failures=N][,window=SECS])");
        let mut parts = s.split(',');
        let sa: SocketAddr = parts
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| bad("not an address and port"))?;
        let mut spec = PassiveSpec {
            addr: sa.ip(),
            port: sa.port(),
            failures: DEFAULT_FAILURES,
            window: DEFAULT_WINDOW,
        };
        for p in parts {
            match p.trim().split_once('=') {
                Some(("failures", v)) => {
                    spec.failures = v
                        .parse()
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| bad("failures must be 1 or more"))?
                }
                Some(("window", v)) => {
                    let secs: f64 = v.parse().map_err(|_| bad("window must be seconds"))?;
                    if !(0.1..=86_400.0).contains(&secs) {
                        return Err(bad("window must be 0.1 to 86400 seconds"));
                    }
                    spec.window = Duration::from_secs_f64(secs);
                }
                _ => return Err(bad(&format!("unknown option `{p}'"))),
            }
        }
        Ok(spec)
    }
}

/// The recent failures of one real server: the counter's last value and the
/// increments seen within the window.
#[derive(Debug, Default)]
pub struct Window {
    base: Option<u64>,
    recent: VecDeque<(Instant, u64)>,
}

impl Window {
    /// Feed the destination's counter `total` read at `now`; returns the failures
    /// within `window` before `now`. The first reading is the baseline (failures from
    /// before are not held against the server); a counter that went back belongs to a
    /// destination deleted and added again, and is a new baseline.
    pub fn observe(&mut self, now: Instant, total: u64, window: Duration) -> u64 {
        match self.base {
            Some(b) if total > b => self.recent.push_back((now, total - b)),
            _ => {}
        }
        self.base = Some(total);
        while self
            .recent
            .front()
            .is_some_and(|&(t, _)| now.duration_since(t) > window)
        {
            self.recent.pop_front();
        }
        self.recent.iter().map(|&(_, n)| n).sum()
    }

    /// Forget everything (the server was taken out; counting restarts when it is back).
    pub fn reset(&mut self) {
        *self = Window::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_options_and_errors() {
        let s: PassiveSpec = "10.0.0.100:80".parse().unwrap();
        assert_eq!((s.failures, s.window), (DEFAULT_FAILURES, DEFAULT_WINDOW));
        let s: PassiveSpec = "10.0.0.100:80,failures=5,window=2.5".parse().unwrap();
        assert_eq!((s.port, s.failures, s.window), (80, 5, Duration::from_millis(2500)));
        let s: PassiveSpec = "[2001:db8::1]:443,window=30".parse().unwrap();
        assert_eq!(
            (s.addr.to_string(), s.window),
            ("2001:db8::1".into(), Duration::from_secs(30))
        );
        for bad in [
            "10.0.0.100",
            "10.0.0.100:80,failures=0",
            "10.0.0.100:80,window=0",
            "10.0.0.100:80,window=x",
            "10.0.0.100:80,retries=2",
        ] {
            let e = bad.parse::<PassiveSpec>().unwrap_err();
            assert!(e.starts_with(&format!("--passive-check {bad}: ")), "{e}");
        }
    }

    #[test]
    fn window_counts_increments_within_it_only() {
        let t0 = Instant::now();
        let w10 = Duration::from_secs(10);
        let mut w = Window::default();
        assert_eq!(w.observe(t0, 7, w10), 0, "the first reading is the baseline");
        assert_eq!(w.observe(t0 + Duration::from_secs(1), 8, w10), 1);
        assert_eq!(w.observe(t0 + Duration::from_secs(2), 10, w10), 3);
        // 11.5 s: the failure at 1 s left the window, those at 2 s are still in it.
        assert_eq!(w.observe(t0 + Duration::from_millis(11_500), 10, w10), 2);
        assert_eq!(w.observe(t0 + Duration::from_secs(13), 10, w10), 0);
        // A counter that went back (the destination was re-created): new baseline.
        assert_eq!(w.observe(t0 + Duration::from_secs(14), 1, w10), 0);
        assert_eq!(w.observe(t0 + Duration::from_secs(15), 2, w10), 1);
        w.reset();
        assert_eq!(w.observe(t0 + Duration::from_secs(16), 50, w10), 0);
    }
}
