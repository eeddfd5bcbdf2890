//! The director's rate estimators: one IPVS [`Estimator`] per service and per real
//! server, fed every [`crate::ipvsadm::estimator::INTERVAL_SECS`] seconds by a sampler thread from the summed
//! per-worker counters. Nothing here runs on the packet path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::ipvsadm::estimator::Estimator;
use crate::ipvsadm::snapshot::{RateKey, Rates};
use crate::service::{ServiceAddr, ServiceTable};
use crate::stats::{Stats, Totals};

/// Identity of a counter block: the service, the real server (if any) and the address
/// of the live counters (so a re-created service starts a fresh estimator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    svc: ServiceAddr,
    dest: Option<(IpAddr, u16)>,
    stats: usize,
}

fn key_of(k: RateKey<'_>) -> Key {
    match k {
        RateKey::Service { svc, stats } => Key {
            svc: *svc,
            dest: None,
            stats: stats as *const Stats as usize,
        },
        RateKey::Dest { svc, addr, port, stats } => Key {
            svc: *svc,
            dest: Some((addr, port)),
            stats: stats as *const Stats as usize,
        },
    }
}

/// All estimators of a director.
#[derive(Debug, Default)]
pub struct RateTable {
    map: Mutex<HashMap<Key, Estimator>>,
}

impl RateTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Estimator>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One estimator tick: sample every service and real server of `table`; blocks
    /// that left the table are forgotten, new ones start from their current counters.
    pub fn sample(&self, table: &ServiceTable) {
        // Read the counters first (service locks), then update (estimator lock): the
        // two locks are never held in the opposite order from `rates`.
        let mut seen: Vec<(Key, Totals)> = Vec::new();
        for svc in table.services() {
            seen.push((
                key_of(RateKey::Service {
                    svc: &svc.addr,
                    stats: &svc.stats,
                }),
                svc.stats.totals(),
            ));
            for d in svc.lock().dests.iter() {
                let k = key_of(RateKey::Dest {
                    svc: &svc.addr,
                    addr: d.addr,
                    port: d.port,
                    stats: &d.stats,
                });
                seen.push((k, d.stats.totals()));
            }
        }
        let mut map = self.lock();
        let mut next = HashMap::with_capacity(seen.len());
        for (k, t) in seen {
            let e = match map.remove(&k) {
                Some(mut e) => {
                    e.sample(t);
                    e
                }
                None => Estimator::new(t),
            };
            next.insert(k, e);
        }
        *map = next;
    }

    /// Every block of `table`: how [`RateTable::export`] names it, its key and its
    /// counters (read under the service locks, before the estimator lock is taken).
    fn blocks(table: &ServiceTable, svc_id: impl Fn(&ServiceAddr) -> String) -> Vec<(String, Key, Totals)> {
        let mut v = Vec::new();
        for svc in table.services() {
            let id = svc_id(&svc.addr);
            let k = key_of(RateKey::Service {
                svc: &svc.addr,
                stats: &svc.stats,
            });
            v.push((id.clone(), k, svc.stats.totals()));
            for d in svc.lock().dests.iter() {
                let k = key_of(RateKey::Dest {
                    svc: &svc.addr,
                    addr: d.addr,
                    port: d.port,
                    stats: &d.stats,
                });
                v.push((format!("{id} {} {}", d.addr, d.port), k, d.stats.totals()));
            }
        }
        v
    }

    /// Every block's averages as `rate SVC [RADDR RPORT] A A A A A` lines
    /// (`director::carry`'s service words), for a handover.
    pub fn export(&self, table: &ServiceTable, svc_id: impl Fn(&ServiceAddr) -> String) -> String {
        let blocks = Self::blocks(table, svc_id);
        let map = self.lock();
        let mut out = String::new();
        for (who, k, _) in blocks {
            if let Some(e) = map.get(&k) {
                let a = e.averages();
                out.push_str(&format!("rate {who} {} {} {} {} {}\n", a[0], a[1], a[2], a[3], a[4]));
            }
        }
        out
    }

    /// Go on from the averages [`RateTable::export`] wrote (another process's), for
    /// the blocks of `table` they name, from their counters as they are now. Returns
    /// how many were taken.
    pub fn import(&self, table: &ServiceTable, text: &str, svc_id: impl Fn(&ServiceAddr) -> String) -> usize {
        let mut given: HashMap<String, [u64; 5]> = HashMap::new();
        for l in text.lines() {
            let Some(rest) = l.strip_prefix("rate ") else {
                continue;
            };
            let w: Vec<&str> = rest.split(' ').collect();
            let (who, nums) = w.split_at(w.len().saturating_sub(5));
            let nums: Vec<u64> = nums.iter().filter_map(|n| n.parse().ok()).collect();
            if let Ok(a) = <[u64; 5]>::try_from(nums) {
                given.insert(who.join(" "), a);
            }
        }
        let blocks = Self::blocks(table, svc_id);
        let mut map = self.lock();
        let mut n = 0;
        for (who, k, t) in blocks {
            if let Some(a) = given.get(&who) {
                map.insert(k, Estimator::resume(t, *a));
                n += 1;
            }
        }
        n
    }

    /// The current rates of one block (zero before its first interval).
    pub fn rates(&self, k: RateKey<'_>) -> Rates {
        self.lock().get(&key_of(k)).map(Estimator::rates).unwrap_or_default()
    }

    /// `ipvsadm -Z [service]`: forget the averages of the service(s) and their real
    /// servers, as `ip_vs_zero_estimator` does; counting restarts from zero.
    pub fn zero(&self, svc: Option<&ServiceAddr>) {
        for (k, e) in self.lock().iter_mut() {
            if svc.is_none_or(|s| *s == k.svc) {
                e.zero(Totals::default());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ctl::Ctl;
    use crate::ipvsadm::{Command, parse_args};
    use crate::pipeline::Shared;

    fn ctl_with(lines: &[&str]) -> Ctl {
        let ctl = Ctl::new(Arc::new(Shared::new(vec![])));
        for l in lines {
            let args: Vec<&str> = l.split_whitespace().collect();
            ctl.apply(&parse_args(&args).unwrap()).unwrap();
        }
        ctl
    }

    /// A handover's rates go on from the old process's averages.
    #[test]
    fn averages_move_to_another_table() {
        let lines = ["-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 10.0.0.2 -m"];
        let (a, b) = (ctl_with(&lines), ctl_with(&lines));
        let (ta, tb) = (a.shared().services.load(), b.shared().services.load());
        let (svc, rt) = (ta.services()[0].clone(), RateTable::default());
        let id = |s: &ServiceAddr| crate::director::carry::svc_id(s);
        rt.sample(&ta);
        for _ in 0..1000 {
            svc.stats.inbound(0, 100);
        }
        rt.sample(&ta);
        let text = rt.export(&ta, id);
        assert_eq!(text.lines().count(), 2, "{text}");
        let rb = RateTable::default();
        assert_eq!(rb.import(&tb, &text, id), 2);
        let sb = tb.services()[0].clone();
        let got = rb.rates(RateKey::Service {
            svc: &sb.addr,
            stats: &sb.stats,
        });
        let want = rt.rates(RateKey::Service {
            svc: &svc.addr,
            stats: &svc.stats,
        });
        assert_eq!(got, want);
        assert!(got.inpps > 0);
    }

    #[test]
    fn samples_summed_counters_and_zeroes() {
        let ctl = ctl_with(&["-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 10.0.0.2 -m"]);
        let table = ctl.shared().services.load();
        let svc = table.services()[0].clone();
        let dest = svc.lock().dests[0].clone();
        let rt = RateTable::default();
        rt.sample(&table);
        // 20 packets of 100 bytes over two workers in one interval, 8 connections.
        for i in 0..20 {
            dest.stats.inbound(i % 2, 100);
            svc.stats.inbound(i % 2, 100);
        }
        for _ in 0..8 {
            svc.stats.conn(0);
        }
        rt.sample(&table);
        let r = rt.rates(RateKey::Service {
            svc: &svc.addr,
            stats: &svc.stats,
        });
        // cps: 8 << 9 >> 2 = 1024 → 1; inpps: 20 << 9 >> 2 = 2560 → (2560 + 511) >> 10 = 2; inbps: 2000 << 4 >> 2 = 8000 → 250.
        assert_eq!((r.cps, r.inpps, r.inbps), (1, 2, 250));
        let d = rt.rates(RateKey::Dest {
            svc: &svc.addr,
            addr: dest.addr,
            port: dest.port,
            stats: &dest.stats,
        });
        assert_eq!((d.cps, d.inpps, d.inbps), (0, 2, 250));
        ctl.apply(&Command::Zero(None)).unwrap();
        rt.zero(None);
        let r = rt.rates(RateKey::Service {
            svc: &svc.addr,
            stats: &svc.stats,
        });
        assert_eq!(r, Rates::default());
        rt.sample(&table);
        assert_eq!(
            rt.rates(RateKey::Service {
                svc: &svc.addr,
                stats: &svc.stats
            }),
            Rates::default()
        );
        // A deleted service's estimator is forgotten at the next tick.
        ctl.apply(&Command::Clear).unwrap();
        rt.sample(&ctl.shared().services.load());
        assert!(rt.lock().is_empty());
    }
}
