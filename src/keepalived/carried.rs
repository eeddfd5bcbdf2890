//! The checkers' state as it moves to a new process on a handover (`uvs run
//! --takeover`, director/handover.rs): what keepalived's checker process holds about
//! each checker (check_api.h `checker_t`: `is_up`, `has_run`, `retry_it`, the
//! misc_dynamic weight), each real server (`real_server_t`: `alive`, and uvs's
//! passive-check removal) and each virtual server (`virtual_server_t`:
//! `quorum_state_up`), plus what `uvs checks` shows (last result, latency,
//! transitions) and when each checker runs next.
//!
//! Text, one item a line, fields separated by one space:
//!
//! ```text
//! keepalived-checkers 1
//! vs VS QUORUM_UP
//! rs VS RS
//! chk VS RS INDEX CONF UP HAS_RUN RETRY_IT NEXT_MS DYN_WEIGHT TRANSITIONS LAST LATENCY_US [REASON...]
//! end ITEMS
//! ```
//!
//! `VS` is [`vs_word`] (protocol and address of the `virtual_server`), `RS` the real
//! server's `addr:port` (an `rs` line: a real server a passive check took out, which
//! stays out until its checker passes again), `INDEX` the checker's position in its real server, `CONF` a
//! hash of its configuration (a checker whose configuration changed starts afresh, as
//! on SIGHUP), booleans `0`/`1`, `DYN_WEIGHT` `-` or a number, `LAST` `-` (no result
//! yet), `up`, `w:N` (misc_dynamic weight N) or `down` followed by the reason (the
//! rest of the line). `end` counts the items: a truncated text is refused whole, as is
//! one of another format version; the new process then starts its checkers as
//! keepalived starts them.

use std::net::SocketAddr;
use std::time::Duration;

use super::conf::{VirtualServer, VsAddr};
use crate::check::Outcome;

/// The format this build writes and reads.
pub const FORMAT: u32 = 1;
const MAGIC: &str = "keepalived-checkers";

/// A virtual server in one word: `6/10.0.0.1/80`, `6/fwm/7`, `17/grp/NAME` (the
/// protocol number, `0` without `protocol`).
pub fn vs_word(vs: &VirtualServer) -> String {
    let p = vs.protocol.map_or(0, |p| p as u8);
    match &vs.addr {
        VsAddr::Inet(a, port) => format!("{p}/{a}/{port}"),
        VsAddr::Fwmark(m) => format!("{p}/fwm/{m}"),
        VsAddr::Group(g) => format!("{p}/grp/{g}"),
    }
}

/// FNV-1a of a checker's configuration text (the same function as
/// director/state.rs `fnv64`, which keepalived/ cannot import: director depends on
/// keepalived). Stable across builds, unlike std's hasher.
pub fn conf_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsState {
    pub vs: String,
    pub quorum_up: bool,
}

/// A real server taken out by a passive check (see [`super::passive`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveDown {
    pub vs: String,
    pub rs: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckerState {
    pub vs: String,
    pub rs: SocketAddr,
    pub index: usize,
    pub conf: u64,
    pub up: bool,
    pub has_run: bool,
    pub retry_it: u32,
    /// Time left until its next attempt (0: at once, also for an attempt that was
    /// running when the old process stopped).
    pub next: Duration,
    pub dyn_weight: Option<u32>,
    pub transitions: u64,
    pub last: Option<(Outcome, Duration)>,
}

/// Everything carried.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carried {
    pub vss: Vec<VsState>,
    /// Real servers taken out by passive checks.
    pub passive_down: Vec<PassiveDown>,
    pub checkers: Vec<CheckerState>,
}

fn b(v: bool) -> u8 {
    v as u8
}

impl Carried {
    pub fn encode(&self) -> String {
        let mut out = format!("{MAGIC} {FORMAT}\n");
        for v in &self.vss {
            out.push_str(&format!("vs {} {}\n", v.vs, b(v.quorum_up)));
        }
        for r in &self.passive_down {
            out.push_str(&format!("rs {} {}\n", r.vs, r.rs));
        }
        for c in &self.checkers {
            let dyn_w = c.dyn_weight.map_or("-".to_string(), |w| w.to_string());
            let (last, lat) = match &c.last {
                None => ("-".to_string(), 0),
                Some((Outcome::Up, d)) => ("up".to_string(), d.as_micros()),
                Some((Outcome::UpWeight(w), d)) => (format!("w:{w}"), d.as_micros()),
                // One line: a reason never spans two.
                Some((Outcome::Down(r), d)) => (format!("down {}", r.replace(['\n', '\r'], " ")), d.as_micros()),
            };
            let (last, reason) = last.split_once(' ').unwrap_or((&last, ""));
            out.push_str(&format!(
                "chk {} {} {} {:016x} {} {} {} {} {dyn_w} {} {last} {lat} {reason}\n",
                c.vs,
                c.rs,
                c.index,
                c.conf,
                b(c.up),
                b(c.has_run),
                c.retry_it,
                c.next.as_millis(),
                c.transitions,
            ));
        }
        let items = self.vss.len() + self.passive_down.len() + self.checkers.len();
        out.push_str(&format!("end {items}\n"));
        out
    }

    /// Read what [`Carried::encode`] wrote; any defect refuses the whole text (with
    /// the line at fault), never a part of it.
    pub fn decode(text: &str) -> Result<Carried, String> {
        let mut lines = text.lines().enumerate();
        let first = lines.next().map(|(_, l)| l).unwrap_or("");
        let version = first
            .strip_prefix(MAGIC)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .ok_or_else(|| "checker state: not a checker state (no header line)".to_string())?;
        if version != FORMAT {
            return Err(format!(
                "checker state format {version}, this build reads format {FORMAT}: not carried"
            ));
        }
        let mut out = Carried::default();
        for (n, line) in lines {
            let bad = || format!("checker state line {}: cannot read {line:?}", n + 1);
            let w: Vec<&str> = line.splitn(14, ' ').collect();
            let flag = |s: &str| match s {
                "0" => Ok(false),
                "1" => Ok(true),
                _ => Err(bad()),
            };
            let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
            let addr = |s: &str| s.parse::<SocketAddr>().map_err(|_| bad());
            match w.as_slice() {
                ["vs", vs, q] => out.vss.push(VsState {
                    vs: vs.to_string(),
                    quorum_up: flag(q)?,
                }),
                ["rs", vs, rs] => out.passive_down.push(PassiveDown {
                    vs: vs.to_string(),
                    rs: addr(rs)?,
                }),
                [
                    "chk",
                    vs,
                    rs,
                    index,
                    conf,
                    up,
                    has_run,
                    retry_it,
                    next,
                    dyn_w,
                    trans,
                    last,
                    lat,
                    rest @ ..,
                ] => {
                    let latency = Duration::from_micros(num(lat)?);
                    let reason = rest.first().copied().unwrap_or("");
                    let last = match *last {
                        "-" => None,
                        "up" => Some(Outcome::Up),
                        "down" => Some(Outcome::Down(reason.to_string())),
                        w => Some(Outcome::UpWeight(
                            w.strip_prefix("w:").and_then(|v| v.parse().ok()).ok_or_else(bad)?,
                        )),
                    };
                    out.checkers.push(CheckerState {
                        vs: vs.to_string(),
                        rs: addr(rs)?,
                        index: num(index)? as usize,
                        conf: u64::from_str_radix(conf, 16).map_err(|_| bad())?,
                        up: flag(up)?,
                        has_run: flag(has_run)?,
                        retry_it: u32::try_from(num(retry_it)?).map_err(|_| bad())?,
                        next: Duration::from_millis(num(next)?),
                        dyn_weight: match *dyn_w {
                            "-" => None,
                            w => Some(u32::try_from(num(w)?).map_err(|_| bad())?),
                        },
                        transitions: num(trans)?,
                        last: last.map(|o| (o, latency)),
                    });
                }
                ["end", items] => {
                    let want = out.vss.len() + out.passive_down.len() + out.checkers.len();
                    if num(items)? as usize != want {
                        return Err(format!(
                            "checker state: {want} items read, {items} written: truncated or damaged"
                        ));
                    }
                    return Ok(out);
                }
                _ => return Err(bad()),
            }
        }
        Err("checker state: truncated (no end line)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Carried {
        let rs: SocketAddr = "10.0.0.2:80".parse().unwrap();
        Carried {
            vss: vec![VsState {
                vs: "6/10.0.0.1/80".into(),
                quorum_up: false,
            }],
            passive_down: vec![
                PassiveDown {
                    vs: "6/10.0.0.1/80".into(),
                    rs,
                },
                PassiveDown {
                    vs: "0/fwm/7".into(),
                    rs: "[fd00::2]:0".parse().unwrap(),
                },
            ],
            checkers: vec![
                CheckerState {
                    vs: "6/10.0.0.1/80".into(),
                    rs,
                    index: 1,
                    conf: 0xdead_beef_0123_4567,
                    up: false,
                    has_run: true,
                    retry_it: 2,
                    next: Duration::from_millis(1500),
                    dyn_weight: None,
                    transitions: 3,
                    last: Some((
                        Outcome::Down("connect: Connection refused\n(os error 111)".into()),
                        Duration::from_micros(420),
                    )),
                },
                CheckerState {
                    vs: "0/fwm/7".into(),
                    rs: "[fd00::2]:0".parse().unwrap(),
                    index: 0,
                    conf: 1,
                    up: true,
                    has_run: true,
                    retry_it: 0,
                    next: Duration::ZERO,
                    dyn_weight: Some(17),
                    transitions: 0,
                    last: Some((Outcome::UpWeight(17), Duration::from_micros(9))),
                },
                CheckerState {
                    vs: "17/grp/web".into(),
                    rs: "10.0.0.3:53".parse().unwrap(),
                    index: 0,
                    conf: 2,
                    up: true,
                    has_run: false,
                    retry_it: 0,
                    next: Duration::from_millis(5),
                    dyn_weight: None,
                    transitions: 0,
                    last: None,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let c = sample();
        let text = c.encode();
        let mut want = c.clone();
        // A reason is one line.
        want.checkers[0].last = Some((
            Outcome::Down("connect: Connection refused (os error 111)".into()),
            Duration::from_micros(420),
        ));
        assert_eq!(Carried::decode(&text), Ok(want), "{text}");
        assert_eq!(Carried::decode(&Carried::default().encode()), Ok(Carried::default()));
    }

    /// Every cut of the text short of its end line, and garbage, is refused whole.
    #[test]
    fn truncated_or_garbage_is_refused() {
        let text = sample().encode();
        for cut in 0..text.len() - 1 {
            let Some(t) = text.get(..cut) else { continue };
            assert!(Carried::decode(t).is_err(), "accepted a cut at {cut}: {t:?}");
        }
        // A line lost from the middle: the count no longer matches.
        let lines: Vec<&str> = text.lines().collect();
        let missing = [&lines[..2], &lines[3..]].concat().join("\n");
        let e = Carried::decode(&missing).unwrap_err();
        assert!(e.contains("truncated or damaged"), "{e}");
        for junk in ["", "GET / HTTP/1.1\n", "\u{0}\u{ff}garbage", "keepalived-checkers x\n"] {
            assert!(Carried::decode(junk).is_err(), "{junk:?}");
        }
        let e = Carried::decode(&text.replace("chk 6/10.0.0.1/80 10.0.0.2:80 1", "chk 6/10.0.0.1/80 nowhere 1"))
            .unwrap_err();
        assert!(e.starts_with("checker state line 5: cannot read \"chk"), "{e}");
        let e = Carried::decode(&text.replace(" 0 1 2 1500", " 0 2 2 1500")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn another_format_is_refused_by_number() {
        let text = sample()
            .encode()
            .replace("keepalived-checkers 1", "keepalived-checkers 2");
        assert_eq!(
            Carried::decode(&text),
            Err("checker state format 2, this build reads format 1: not carried".into())
        );
    }
}
