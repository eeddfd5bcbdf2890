//! The `net.ipv4.vs.*` sysctls that uvs implements, by the kernel's names
//! (`ip_vs_ctl.c: vs_vars`), with the kernel's ranges and validation, read and written
//! on a running director (`uvs sysctl`, over the control socket) or given at start
//! (`uvs run --sysctl NAME=VALUE`).
//!
//! | name | kernel handler | uvs accepts | where it lives (in [`Ipvs`]) |
//! |------|----------------|-------------|----------------|
//! | `am_droprate` | `proc_dointvec` | 0 … 2³¹-1 | `defense` (`conn::defense::Defense`) |
//! | `amemthresh` | `proc_dointvec` (pages) | 1 … 99 (% of a worker's table free) | `defense` |
//! | `conn_reuse_mode` | `proc_dointvec` | any int | `conn` (`conn::settings::Settings`) |
//! | `drop_entry`, `drop_packet`, `secure_tcp` | `proc_do_defense_mode`: 0 … 3 | 0 … 3 | `defense` |
//! | `expire_nodest_conn`, `expire_quiescent_template`, `sloppy_tcp` | `proc_dointvec` | any int (non-zero = on) | `conn` |
//! | `sync_qlen_max` | `proc_doulongvec_minmax` | 0 … 2³²-1 | `sync` (`sync::Settings`; read when a master daemon starts) |
//! | `sync_refresh_period` | `proc_dointvec_jiffies` (seconds) | 0 … 2³¹-1 | `sync` |
//! | `sync_retries` | `proc_dointvec_minmax` | 0 … 3 | `sync` |
//! | `sync_threshold` | `proc_do_sync_threshold`: two ints | `T P`, 0 ≤ T < P or P = 0; ≤ 65535 | `sync` |
//! | `sync_version` | `proc_do_sync_mode` | 0 … 1 | `sync` (read per message) |
//!
//! Values are parsed as the kernel's `proc_dointvec` parses them (optional sign, then
//! decimal, `0x` hex or `0` octal; surrounding blanks ignored) and must fit an `int`.
//! `sync_threshold` is a vector of two (threshold and period, separated by blanks; read
//! back tab-separated, as `/proc` prints it); uvs wants both numbers where the kernel
//! would keep the period when given one, and caps them at 65535 (a connection's packet
//! count is 16 bits here).
//! `amemthresh` keeps the kernel's name but uvs's meaning: uvs has no page allocator to
//! watch, so it is the percent of a worker's connection table that must stay free
//! (see [`crate::conn::defense`]), and `am_droprate` refuses negative values (the
//! kernel takes them as "drop every new connection").
//!
//! Changes take effect without a restart: the connection sysctls on the workers' next
//! packet (they read `Ipvs::conn` on every lookup), the defense modes at each worker's
//! next once-a-second defense tick (`Worker::defend`; IPVS's `proc_do_defense_mode`
//! calls `update_defense_level` at once). A write of several keys is checked whole
//! first: an unknown key or a bad value changes nothing.
//!
//! Knobs uvs does not implement (`nat_icmp_send`, `snat_reroute`, `cache_bypass`,
//! `schedule_icmp`, `ignore_tunneled`, `pmtu_disc`, `backup_only`, `conntrack`,
//! `sloppy_sctp`, `sync_ports`, `sync_persist_mode`, `sync_sock_size`, the estimator's and the lblc(r) expirations) are unknown
//! keys rather than settings that would silently do nothing.

#![forbid(unsafe_code)]

use crate::conn::settings::Knob;
use crate::ipvs::Ipvs;

/// The common prefix of every key.
pub const PREFIX: &str = "net.ipv4.vs.";

/// What a sysctl is and which values it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Conn(Knob),
    DropEntry,
    DropPacket,
    SecureTcp,
    Amemthresh,
    AmDroprate,
    SyncQlenMax,
    SyncRefreshPeriod,
    SyncRetries,
    SyncThreshold,
    SyncVersion,
}

/// A value: one integer, or two for `sync_threshold`.
type Value = Vec<i64>;

/// Every key, in `sysctl -a` (alphabetical) order.
const VARS: &[(&str, Var)] = &[
    ("am_droprate", Var::AmDroprate),
    ("amemthresh", Var::Amemthresh),
    ("conn_reuse_mode", Var::Conn(Knob::ConnReuseMode)),
    ("drop_entry", Var::DropEntry),
    ("drop_packet", Var::DropPacket),
    ("expire_nodest_conn", Var::Conn(Knob::ExpireNodestConn)),
    ("expire_quiescent_template", Var::Conn(Knob::ExpireQuiescentTemplate)),
    ("secure_tcp", Var::SecureTcp),
    ("sloppy_tcp", Var::Conn(Knob::SloppyTcp)),
    ("sync_qlen_max", Var::SyncQlenMax),
    ("sync_refresh_period", Var::SyncRefreshPeriod),
    ("sync_retries", Var::SyncRetries),
    ("sync_threshold", Var::SyncThreshold),
    ("sync_version", Var::SyncVersion),
];

/// The names uvs implements, without the prefix.
pub fn names() -> impl Iterator<Item = &'static str> {
    VARS.iter().map(|(n, _)| *n)
}

/// `net.ipv4.vs.NAME`, `net/ipv4/vs/NAME` or `NAME` -> the variable.
fn lookup(key: &str) -> Result<(&'static str, Var), String> {
    let dotted = key.trim().replace('/', ".");
    let short = dotted.strip_prefix(PREFIX).unwrap_or(&dotted);
    VARS.iter().find(|(n, _)| *n == short).copied().ok_or_else(|| {
        format!(
            "unknown key \"{}\" (uvs implements {PREFIX}{{{}}})",
            key.trim(),
            names().collect::<Vec<_>>().join(",")
        )
    })
}

/// An integer as the kernel's `proc_dointvec` reads it (`proc_get_long`, base 0).
fn parse_int(s: &str) -> Option<i32> {
    parse_long(s).and_then(|v| i32::try_from(v).ok())
}

/// A `long` as `proc_get_long` reads it (for `proc_doulongvec_minmax`).
fn parse_long(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let mag = if let Some(h) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        u64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<u64>().ok()?
    };
    let v = if neg { -(mag as i128) } else { mag as i128 };
    i64::try_from(v).ok()
}

/// The value range of a variable, and what it means (for error messages).
fn range(var: Var) -> (i64, i64, &'static str) {
    match var {
        Var::Conn(_) => (i32::MIN.into(), i32::MAX.into(), "an integer"),
        Var::DropEntry | Var::DropPacket | Var::SecureTcp => {
            (0, 3, "0 (off), 1 (automatic), 2 (automatic, on now) or 3 (always)")
        }
        Var::Amemthresh => (1, 99, "1 ... 99 (percent of a worker's connection table kept free)"),
        Var::AmDroprate | Var::SyncRefreshPeriod => (0, i32::MAX.into(), "0 ... 2147483647"),
        Var::SyncQlenMax => (0, u32::MAX.into(), "0 ... 4294967295"),
        Var::SyncRetries => (0, 3, "0 ... 3"),
        Var::SyncVersion => (0, 1, "0 or 1"),
        Var::SyncThreshold => (
            0,
            65535,
            "two integers THRESHOLD PERIOD, 0 <= THRESHOLD < PERIOD <= 65535, or PERIOD 0",
        ),
    }
}

/// Check `text` for `var`: the value to store, or why not.
fn validate(key: &str, var: Var, text: &str) -> Result<Value, String> {
    let (lo, hi, what) = range(var);
    let bad = || {
        format!(
            "setting key \"{PREFIX}{key}\": Invalid argument (\"{}\"; want {what})",
            text.trim()
        )
    };
    let one = |t: &str| match var {
        Var::SyncQlenMax => parse_long(t),
        _ => parse_int(t).map(i64::from),
    };
    if var == Var::SyncThreshold {
        // ip_vs_ctl.c: proc_do_sync_threshold refuses negatives and a threshold not
        // below a non-zero period.
        let v: Vec<i64> = text
            .split_whitespace()
            .map(one)
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        return match v[..] {
            [t, p] if (lo..=hi).contains(&t) && (lo..=hi).contains(&p) && (p == 0 || t < p) => Ok(v),
            _ => Err(bad()),
        };
    }
    match one(text) {
        Some(v) if (lo..=hi).contains(&v) => Ok(vec![v]),
        _ => Err(bad()),
    }
}

/// A value as `/proc` prints it (a vector's numbers tab-separated).
fn show(v: &[i64]) -> String {
    v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("\t")
}

/// The current value of a variable.
fn get(ipvs: &Ipvs, var: Var) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let d = &ipvs.defense;
    let (de, dp, st) = d.modes();
    let y = &ipvs.sync;
    vec![match var {
        Var::Conn(k) => ipvs.conn.get(k).into(),
        Var::DropEntry => de.into(),
        Var::DropPacket => dp.into(),
        Var::SecureTcp => st.into(),
        Var::Amemthresh => d.amemthresh_pct().into(),
        Var::AmDroprate => d.am_droprate().into(),
        Var::SyncQlenMax => y.qlen_max.load(Relaxed).into(),
        Var::SyncRefreshPeriod => y.refresh_period.load(Relaxed).into(),
        Var::SyncRetries => y.retries.load(Relaxed).into(),
        Var::SyncVersion => y.version.load(Relaxed).into(),
        Var::SyncThreshold => {
            return vec![y.threshold.load(Relaxed).into(), y.period.load(Relaxed).into()];
        }
    }]
}

/// Store a validated value.
fn set(ipvs: &Ipvs, var: Var, val: &[i64]) {
    use std::sync::atomic::Ordering::Relaxed;
    let v = i32::try_from(val[0]).unwrap_or(0);
    let u = u32::try_from(val[0]).unwrap_or(0);
    let y = &ipvs.sync;
    let d = &ipvs.defense;
    // The ranges were checked by `validate`, so the setters cannot refuse.
    let mode = u8::try_from(v).unwrap_or(0);
    match var {
        Var::Conn(k) => ipvs.conn.set(k, v),
        Var::DropEntry => d.set_drop_entry(mode).unwrap_or(()),
        Var::DropPacket => d.set_drop_packet(mode).unwrap_or(()),
        Var::SecureTcp => d.set_secure_tcp(mode).unwrap_or(()),
        Var::Amemthresh => d.set_amemthresh_pct(mode),
        Var::AmDroprate => d.set_am_droprate(u),
        Var::SyncQlenMax => y.qlen_max.store(u, Relaxed),
        Var::SyncRefreshPeriod => y.refresh_period.store(u, Relaxed),
        Var::SyncRetries => y.retries.store(u, Relaxed),
        Var::SyncVersion => y.version.store(u, Relaxed),
        Var::SyncThreshold => {
            // The period first: a worker reading between the two stores sees the new
            // period with the old threshold, which the checks above kept valid too
            // only when it is below; either way one packet's decision at most.
            y.period.store(u32::try_from(val[1]).unwrap_or(0), Relaxed);
            y.threshold.store(u, Relaxed);
        }
    }
}

/// `NAME=VALUE` assignments, checked whole, then applied in order. Used by
/// `uvs run --sysctl` (after the other options, so it has the last word).
pub fn apply(ipvs: &Ipvs, assignments: &[String]) -> Result<Vec<(&'static str, String)>, String> {
    let mut todo = Vec::with_capacity(assignments.len());
    for a in assignments {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("\"{a}\": want NAME=VALUE, e.g. expire_nodest_conn=1"))?;
        let (name, var) = lookup(k)?;
        todo.push((name, var, validate(name, var, v)?));
    }
    Ok(todo
        .into_iter()
        .map(|(name, var, v)| {
            set(ipvs, var, &v);
            (name, show(&v))
        })
        .collect())
}

/// What `uvs sysctl` prints and its exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub code: i32,
    pub out: String,
    pub err: String,
}

/// `uvs sysctl` usage.
pub const USAGE: &str = "usage: uvs sysctl [-n] -a | [-n] [-w] [net.ipv4.vs.]NAME[=VALUE] ...";

/// Run `uvs sysctl WORDS` against `ipvs` (the director's side of the request): `-a`
/// lists every key, `NAME` reads one, `NAME=VALUE` writes one and prints it back as
/// `sysctl -w` does; `-n` prints values only, `-w` is accepted. All writes are
/// checked before any is made; any error makes the status 255 (as procps `sysctl`).
pub fn serve(ipvs: &Ipvs, words: &[&str]) -> Answer {
    let mut a = Answer::default();
    let mut values_only = false;
    let mut all = false;
    let mut keys = Vec::new();
    for w in words {
        match *w {
            "-n" | "--values" => values_only = true,
            "-a" | "-A" | "-X" | "--all" => all = true,
            "-w" | "--write" => {}
            o if o.starts_with('-') && !o.contains('=') => {
                a.err = format!("uvs sysctl: unknown option {o}\n{USAGE}\n");
                a.code = 255;
                return a;
            }
            k => keys.push(k),
        }
    }
    if !all && keys.is_empty() {
        a.err = format!("{USAGE}\n");
        a.code = 255;
        return a;
    }
    let line = |out: &mut String, name: &str, v: &str| {
        if values_only {
            out.push_str(&format!("{v}\n"));
        } else {
            out.push_str(&format!("{PREFIX}{name} = {v}\n"));
        }
    };
    if all {
        for (name, var) in VARS {
            line(&mut a.out, name, &show(&get(ipvs, *var)));
        }
    }
    // Writes first, all or nothing.
    let writes: Vec<String> = keys.iter().filter(|k| k.contains('=')).map(|k| k.to_string()).collect();
    if let Err(e) = check_all(&writes) {
        a.err = format!("uvs sysctl: {e}\n");
        a.code = 255;
        return a;
    }
    for k in keys {
        match k.split_once('=') {
            Some(_) => {
                let done = apply(ipvs, &[k.to_string()]).unwrap_or_default();
                for (name, v) in done {
                    tracing::info!("sysctl {PREFIX}{name} = {v}");
                    line(&mut a.out, name, &v);
                }
            }
            None => match lookup(k) {
                Ok((name, var)) => line(&mut a.out, name, &show(&get(ipvs, var))),
                Err(e) => {
                    a.err.push_str(&format!("uvs sysctl: {e}\n"));
                    a.code = 255;
                }
            },
        }
    }
    a
}

/// Check assignments without applying any.
fn check_all(assignments: &[String]) -> Result<(), String> {
    for a in assignments {
        let (k, v) = a.split_once('=').ok_or_else(|| format!("\"{a}\": want NAME=VALUE"))?;
        let (name, var) = lookup(k)?;
        validate(name, var, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ipvs: &Ipvs, line: &str) -> Answer {
        let words: Vec<&str> = line.split_whitespace().collect();
        serve(ipvs, &words)
    }

    const DEFAULTS: &str = "net.ipv4.vs.am_droprate = 10
net.ipv4.vs.amemthresh = 10
net.ipv4.vs.conn_reuse_mode = 1
net.ipv4.vs.drop_entry = 0
net.ipv4.vs.drop_packet = 0
net.ipv4.vs.expire_nodest_conn = 0
net.ipv4.vs.expire_quiescent_template = 0
net.ipv4.vs.secure_tcp = 0
net.ipv4.vs.sloppy_tcp = 0
net.ipv4.vs.sync_qlen_max = 131072
net.ipv4.vs.sync_refresh_period = 0
net.ipv4.vs.sync_retries = 0
net.ipv4.vs.sync_threshold = 3\t50
net.ipv4.vs.sync_version = 1
";

    #[test]
    fn list_read_and_write_in_sysctl_format() {
        let ipvs = Ipvs::default();
        assert_eq!(
            run(&ipvs, "-a"),
            Answer {
                code: 0,
                out: DEFAULTS.into(),
                err: String::new()
            }
        );
        let r = run(&ipvs, "net.ipv4.vs.expire_nodest_conn=1");
        assert_eq!(
            (r.code, r.out.as_str(), r.err.as_str()),
            (0, "net.ipv4.vs.expire_nodest_conn = 1\n", "")
        );
        assert!(ipvs.conn.expire_nodest_conn());
        // Short names, slashes, -w, -n, several keys at once.
        let r = run(&ipvs, "-w sloppy_tcp=1 net/ipv4/vs/drop_entry=3 conn_reuse_mode=0x2");
        assert_eq!(
            r.out,
            "net.ipv4.vs.sloppy_tcp = 1\nnet.ipv4.vs.drop_entry = 3\nnet.ipv4.vs.conn_reuse_mode = 2\n"
        );
        assert_eq!(run(&ipvs, "-n expire_nodest_conn drop_entry").out, "1\n3\n");
        let s = &ipvs.conn;
        assert!(s.sloppy_tcp());
        assert_eq!(s.conn_reuse_mode(), 3, "2: bit 2, and non-zero");
        assert_eq!(ipvs.defense.modes(), (3, 0, 0));
        // proc_dointvec keeps what was written: non-zero reads back as written.
        assert_eq!(
            run(&ipvs, "expire_quiescent_template=-5").out,
            "net.ipv4.vs.expire_quiescent_template = -5\n"
        );
        assert!(ipvs.conn.expire_quiescent_template());
        assert_eq!(run(&ipvs, "am_droprate=010 amemthresh=25").code, 0);
        assert_eq!(
            (ipvs.defense.am_droprate(), ipvs.defense.amemthresh_pct()),
            (8, 25),
            "010 is octal"
        );
    }

    #[test]
    fn bad_keys_and_values_change_nothing() {
        let ipvs = Ipvs::default();
        let before = run(&ipvs, "-a").out;
        for (line, err) in [
            (
                "drop_entry=4",
                "uvs sysctl: setting key \"net.ipv4.vs.drop_entry\": Invalid argument (\"4\"; want 0 (off), 1 \
                 (automatic), 2 (automatic, on now) or 3 (always))\n",
            ),
            (
                "expire_nodest_conn=1 secure_tcp=-1",
                "uvs sysctl: setting key \"net.ipv4.vs.secure_tcp\": Invalid argument (\"-1\"; want 0 (off), 1 \
                 (automatic), 2 (automatic, on now) or 3 (always))\n",
            ),
            (
                "expire_nodest_conn=1 nat_icmp_send=1",
                "uvs sysctl: unknown key \"nat_icmp_send\" (uvs implements net.ipv4.vs.{am_droprate,amemthresh,\
                 conn_reuse_mode,drop_entry,drop_packet,expire_nodest_conn,expire_quiescent_template,secure_tcp,\
                 sloppy_tcp,sync_qlen_max,sync_refresh_period,sync_retries,sync_threshold,sync_version})\n",
            ),
            (
                "sloppy_tcp=2147483648",
                "uvs sysctl: setting key \"net.ipv4.vs.sloppy_tcp\": Invalid argument (\"2147483648\"; want an \
                 integer)\n",
            ),
            (
                "sloppy_tcp=yes",
                "uvs sysctl: setting key \"net.ipv4.vs.sloppy_tcp\": Invalid argument (\"yes\"; want an integer)\n",
            ),
            (
                "amemthresh=0",
                "uvs sysctl: setting key \"net.ipv4.vs.amemthresh\": Invalid argument (\"0\"; want 1 ... 99 \
                 (percent of a worker's connection table kept free))\n",
            ),
            (
                "am_droprate=-1",
                "uvs sysctl: setting key \"net.ipv4.vs.am_droprate\": Invalid argument (\"-1\"; want 0 ... \
                 2147483647)\n",
            ),
        ] {
            let r = run(&ipvs, line);
            assert_eq!((r.code, r.out.as_str(), r.err.as_str()), (255, "", err), "{line}");
            assert_eq!(run(&ipvs, "-a").out, before, "{line} changed something");
        }
        let r = run(&ipvs, "net.ipv4.vs.nope");
        assert_eq!(r.code, 255);
        assert!(
            r.err.starts_with("uvs sysctl: unknown key \"net.ipv4.vs.nope\""),
            "{}",
            r.err
        );
        assert_eq!(run(&ipvs, "").err, format!("{USAGE}\n"));
        assert_eq!(run(&ipvs, "-q").code, 255);
    }

    #[test]
    fn run_option_assignments() {
        let ipvs = Ipvs::default();
        let set = apply(
            &ipvs,
            &["expire_nodest_conn=1".into(), "net.ipv4.vs.drop_packet=1".into()],
        )
        .unwrap();
        assert_eq!(
            set,
            vec![
                ("expire_nodest_conn", "1".to_string()),
                ("drop_packet", "1".to_string())
            ]
        );
        assert_eq!(ipvs.defense.modes(), (0, 1, 0));
        let e = apply(&ipvs, &["sloppy_tcp".into()]).unwrap_err();
        assert_eq!(e, "\"sloppy_tcp\": want NAME=VALUE, e.g. expire_nodest_conn=1");
        assert!(apply(&ipvs, &["sloppy_tcp=1".into(), "drop_packet=9".into()]).is_err());
        assert!(!ipvs.conn.sloppy_tcp(), "nothing applied");
    }

    #[test]
    fn kernel_integer_syntax() {
        for (s, v) in [
            ("0", Some(0)),
            (" 12\n", Some(12)),
            ("-3", Some(-3)),
            ("+4", Some(4)),
            ("0x1f", Some(31)),
            ("017", Some(15)),
            ("2147483647", Some(i32::MAX)),
            ("-2147483648", Some(i32::MIN)),
            ("2147483648", None),
            ("", None),
            ("1.5", None),
            ("08", None),
            ("--1", None),
        ] {
            assert_eq!(parse_int(s), v, "{s:?}");
        }
    }

    #[test]
    fn sync_settings() {
        use std::sync::atomic::Ordering::Relaxed;
        let ipvs = Ipvs::default();
        let r = serve(
            &ipvs,
            &[
                "net.ipv4.vs.sync_threshold=3\t0",
                "sync_refresh_period=10",
                "sync_retries=3",
            ],
        );
        assert_eq!(
            (r.code, r.out.as_str()),
            (
                0,
                "net.ipv4.vs.sync_threshold = 3\t0\nnet.ipv4.vs.sync_refresh_period = 10\n\
                 net.ipv4.vs.sync_retries = 3\n"
            )
        );
        let y = &ipvs.sync;
        assert_eq!(
            (
                y.threshold.load(Relaxed),
                y.period.load(Relaxed),
                y.refresh_period.load(Relaxed)
            ),
            (3, 0, 10)
        );
        // The words of `uvs sysctl sync_threshold="2 40"`.
        assert_eq!(serve(&ipvs, &["sync_threshold=2 40"]).code, 0);
        assert_eq!((y.threshold.load(Relaxed), y.period.load(Relaxed)), (2, 40));
        assert_eq!(run(&ipvs, "sync_version=0 sync_qlen_max=4294967295").code, 0);
        assert_eq!((y.version.load(Relaxed), y.qlen_max.load(Relaxed)), (0, u32::MAX));
        let before = run(&ipvs, "-a").out;
        for bad in [
            "sync_threshold=50\t50",
            "sync_threshold=3",
            "sync_threshold=-1\t5",
            "sync_threshold=3\t65536",
            "sync_retries=4",
            "sync_version=2",
            "sync_refresh_period=-1",
            "sync_qlen_max=4294967296",
        ] {
            assert_eq!(serve(&ipvs, &[bad]).code, 255, "{bad}");
        }
        assert_eq!(run(&ipvs, "-a").out, before);
        // What the state file keeps reads back.
        assert_eq!(apply(&ipvs, &["sync_threshold=3\t50".into()]).unwrap()[0].1, "3\t50");
    }
}
