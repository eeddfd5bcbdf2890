//! A small re-implementation of popt's `poptGetNextOpt` for ipvsadm's option table:
//! bundled short options (`-Lnc`), `-tADDR`, `-t=ADDR`, `--long value`, `--long=value`,
//! optional arguments that never swallow a word starting with `-`, `--` ending option
//! processing, and non-option words collected as leftovers wherever they appear.

/// Every option ipvsadm 1.31 registers with popt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opt {
    AddService,
    EditService,
    DeleteService,
    Clear,
    List,
    Zero,
    AddServer,
    EditServer,
    DeleteServer,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    TcpService,
    UdpService,
    SctpService,
    FwmarkService,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masquerading,
    Ipip,
    Gatewaying,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastInterface,
    Syncid,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgKind {
    None,
    Required,
    Optional,
}

struct Spec {
    long: &'static str,
    short: Option<char>,
    arg: ArgKind,
    opt: Opt,
}

const fn s(long: &'static str, short: Option<char>, arg: ArgKind, opt: Opt) -> Spec {
    Spec { long, short, arg, opt }
}

use ArgKind::{None as N, Optional as O, Required as R};

/// ipvsadm 1.31's `options_table`, in its order (popt searches it front to back).
const TABLE: &[Spec] = &[
    s("add-service", Some('A'), N, Opt::AddService),
    s("edit-service", Some('E'), N, Opt::EditService),
    s("delete-service", Some('D'), N, Opt::DeleteService),
    s("clear", Some('C'), N, Opt::Clear),
    s("list", Some('L'), N, Opt::List),
    s("list", Some('l'), N, Opt::List),
    s("zero", Some('Z'), N, Opt::Zero),
    s("add-server", Some('a'), N, Opt::AddServer),
    s("edit-server", Some('e'), N, Opt::EditServer),
    s("delete-server", Some('d'), N, Opt::DeleteServer),
    s("set", None, N, Opt::Set),
    s("help", Some('h'), N, Opt::Help),
    s("version", Some('v'), N, Opt::Version),
    s("restore", Some('R'), N, Opt::Restore),
    s("save", Some('S'), N, Opt::Save),
    s("start-daemon", None, R, Opt::StartDaemon),
    s("stop-daemon", None, R, Opt::StopDaemon),
    s("tcp-service", Some('t'), R, Opt::TcpService),
    s("udp-service", Some('u'), R, Opt::UdpService),
    s("sctp-service", None, R, Opt::SctpService),
    s("fwmark-service", Some('f'), R, Opt::FwmarkService),
    s("scheduler", Some('s'), R, Opt::Scheduler),
    s("persistent", Some('p'), O, Opt::Persistent),
    s("netmask", Some('M'), R, Opt::Netmask),
    s("real-server", Some('r'), R, Opt::RealServer),
    s("masquerading", Some('m'), N, Opt::Masquerading),
    s("ipip", Some('i'), N, Opt::Ipip),
    s("gatewaying", Some('g'), N, Opt::Gatewaying),
    s("weight", Some('w'), R, Opt::Weight),
    s("u-threshold", Some('x'), R, Opt::UThreshold),
    s("l-threshold", Some('y'), R, Opt::LThreshold),
    s("numeric", Some('n'), N, Opt::Numeric),
    s("connection", Some('c'), N, Opt::Connection),
    s("mcast-interface", None, R, Opt::McastInterface),
    s("syncid", None, R, Opt::Syncid),
    s("timeout", None, N, Opt::Timeout),
    s("daemon", None, N, Opt::Daemon),
    s("stats", None, N, Opt::Stats),
    s("rate", None, N, Opt::Rate),
    s("thresholds", None, N, Opt::Thresholds),
    s("persistent-conn", None, N, Opt::PersistentConn),
    s("nosort", None, N, Opt::NoSort),
    s("sort", None, N, Opt::Sort),
    s("exact", Some('X'), N, Opt::Exact),
    s("ipv6", Some('6'), N, Opt::Ipv6),
    s("ops", Some('o'), N, Opt::Ops),
    s("pe", None, R, Opt::Pe),
    s("sched-flags", Some('b'), R, Opt::SchedFlags),
    s("mcast-group", None, R, Opt::McastGroup),
    s("mcast-port", None, R, Opt::McastPort),
    s("mcast-ttl", None, R, Opt::McastTtl),
    s("sync-maxlen", None, R, Opt::SyncMaxlen),
    s("tun-info", None, N, Opt::TunInfo),
    s("tun-type", None, R, Opt::TunType),
    s("tun-port", None, R, Opt::TunPort),
    s("tun-nocsum", None, N, Opt::TunNocsum),
    s("tun-csum", None, N, Opt::TunCsum),
    s("tun-remcsum", None, N, Opt::TunRemcsum),
];

/// popt's error codes that ipvsadm can meet, with `poptStrerror`'s text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoptError {
    BadOpt,
    NoArg,
    UnwantedArg,
}

impl PoptError {
    pub fn text(self) -> &'static str {
        match self {
            PoptError::BadOpt => "unknown option",
            PoptError::NoArg => "missing argument",
            PoptError::UnwantedArg => "option does not take an argument",
        }
    }
}

/// Scanner state over the argument words (without argv[0]).
pub struct Popt<'a, S: AsRef<str>> {
    args: &'a [S],
    next: usize,
    /// Rest of a short-option bundle still to be processed: (word index, byte offset).
    next_char: Option<(usize, usize)>,
    rest_leftover: bool,
    leftovers: Vec<String>,
}

impl<'a, S: AsRef<str>> Popt<'a, S> {
    pub fn new(args: &'a [S]) -> Self {
        Popt {
            args,
            next: 0,
            next_char: None,
            rest_leftover: false,
            leftovers: Vec::new(),
        }
    }

    fn word(&self, i: usize) -> &'a str {
        self.args[i].as_ref()
    }

    /// `poptBadOption(POPT_BADOPTION_NOALIAS)`: the last word consumed.
    pub fn bad_option(&self) -> String {
        self.next
            .checked_sub(1)
            .map(|i| self.word(i).to_string())
            .unwrap_or_default()
    }

    /// `poptGetArg` after option processing: non-option words in order.
    pub fn leftovers(&self) -> &[String] {
        &self.leftovers
    }

    /// `poptGetNextOpt`: `None` when the words are exhausted.
    pub fn next_opt(&mut self) -> Option<Result<(Opt, Option<String>), PoptError>> {
        loop {
            let mut long_arg: Option<&'a str> = None;
            let mut spec: Option<&'static Spec> = None;
            if self.next_char.is_none() {
                if self.next == self.args.len() {
                    return None;
                }
                let wi = self.next;
                let word = self.word(wi);
                self.next += 1;
                if self.rest_leftover || !word.starts_with('-') || word == "-" {
                    self.leftovers.push(word.to_string());
                    continue;
                }
                if word == "--" {
                    self.rest_leftover = true;
                    continue;
                }
                let (body, one_dash) = match word.strip_prefix("--") {
                    Some(b) => (b, false),
                    None => (&word[1..], true),
                };
                let (name, arg) = match body.find('=') {
                    Some(p) => (&body[..p], Some(&body[p + 1..])),
                    None => (body, None),
                };
                // No ipvsadm option carries POPT_ARGFLAG_ONEDASH, so `-word` is
                // always a bundle of short options.
                if !one_dash {
                    match TABLE.iter().find(|sp| sp.long == name) {
                        Some(sp) => {
                            spec = Some(sp);
                            long_arg = arg;
                        }
                        None => return Some(Err(PoptError::BadOpt)),
                    }
                } else {
                    self.next_char = Some((wi, 1));
                }
            }
            if let Some((wi, off)) = self.next_char.take() {
                let rest = &self.word(wi)[off..];
                let c = rest.chars().next()?;
                match TABLE.iter().find(|sp| sp.short == Some(c)) {
                    Some(sp) => spec = Some(sp),
                    None => return Some(Err(PoptError::BadOpt)),
                }
                let after = off + c.len_utf8();
                if after < self.word(wi).len() {
                    self.next_char = Some((wi, after));
                }
            }
            let sp = spec?;
            if sp.arg == ArgKind::None {
                let eq_follows = self
                    .next_char
                    .is_some_and(|(wi, off)| self.word(wi)[off..].starts_with('='));
                if long_arg.is_some() || eq_follows {
                    return Some(Err(PoptError::UnwantedArg));
                }
                return Some(Ok((sp.opt, None)));
            }
            let value = if let Some(a) = long_arg {
                Some(a.to_string())
            } else if let Some((wi, off)) = self.next_char.take() {
                let rest = &self.word(wi)[off..];
                Some(rest.strip_prefix('=').unwrap_or(rest).to_string())
            } else if self.next == self.args.len() {
                if sp.arg != ArgKind::Optional {
                    return Some(Err(PoptError::NoArg));
                }
                None
            } else if sp.arg == ArgKind::Optional && self.word(self.next).starts_with('-') {
                None
            } else {
                self.next += 1;
                Some(self.word(self.next - 1).to_string())
            };
            return Some(Ok((sp.opt, value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Scan = (Vec<(Opt, Option<String>)>, Option<(PoptError, String)>, Vec<String>);

    fn scan(args: &[&str]) -> Scan {
        let mut p = Popt::new(args);
        let mut out = Vec::new();
        let mut err = None;
        while let Some(r) = p.next_opt() {
            match r {
                Ok(o) => out.push(o),
                Err(e) => {
                    err = Some((e, p.bad_option()));
                    break;
                }
            }
        }
        (out, err, p.leftovers().to_vec())
    }

    #[test]
    fn bundles_and_args() {
        let (o, e, l) = scan(&["-lnt", "10.0.0.1:80"]);
        assert_eq!(
            o,
            vec![
                (Opt::List, None),
                (Opt::Numeric, None),
                (Opt::TcpService, Some("10.0.0.1:80".into()))
            ]
        );
        assert!(e.is_none() && l.is_empty());
        let (o, _, _) = scan(&["-t10.0.0.1:80", "-u=1.2.3.4:53", "--scheduler=rr", "--weight", "3"]);
        assert_eq!(o[0], (Opt::TcpService, Some("10.0.0.1:80".into())));
        assert_eq!(o[1], (Opt::UdpService, Some("1.2.3.4:53".into())));
        assert_eq!(o[2], (Opt::Scheduler, Some("rr".into())));
        assert_eq!(o[3], (Opt::Weight, Some("3".into())));
    }

    #[test]
    fn optional_argument() {
        let (o, _, _) = scan(&["-p", "20"]);
        assert_eq!(o, vec![(Opt::Persistent, Some("20".into()))]);
        let (o, _, _) = scan(&["-p"]);
        assert_eq!(o, vec![(Opt::Persistent, None)]);
        let (o, _, _) = scan(&["-p", "-M", "1.2.3.0"]);
        assert_eq!(o[0], (Opt::Persistent, None));
        let (o, _, _) = scan(&["--persistent", "foo"]);
        assert_eq!(o, vec![(Opt::Persistent, Some("foo".into()))]);
        let (o, _, _) = scan(&["-p30", "--persistent=", "-p=7"]);
        assert_eq!(o[0].1.as_deref(), Some("30"));
        assert_eq!(o[1].1.as_deref(), Some(""));
        assert_eq!(o[2].1.as_deref(), Some("7"));
    }

    #[test]
    fn errors_and_leftovers() {
        let (_, e, _) = scan(&["-L", "--bogus"]);
        assert_eq!(e, Some((PoptError::BadOpt, "--bogus".into())));
        let (_, e, _) = scan(&["-Lq"]);
        assert_eq!(e, Some((PoptError::BadOpt, "-Lq".into())));
        let (_, e, _) = scan(&["-A", "-t"]);
        assert_eq!(e, Some((PoptError::NoArg, "-t".into())));
        let (_, e, _) = scan(&["-L", "--nosort=1"]);
        assert_eq!(e, Some((PoptError::UnwantedArg, "--nosort=1".into())));
        let (_, e, _) = scan(&["-L=1"]);
        assert_eq!(e, Some((PoptError::UnwantedArg, "-L=1".into())));
        let (o, e, l) = scan(&["a", "--set", "-", "b", "--", "-L"]);
        assert_eq!(o, vec![(Opt::Set, None)]);
        assert!(e.is_none());
        assert_eq!(l, vec!["a", "-", "b", "-L"]);
        // Long names must match exactly (no abbreviations).
        let (_, e, _) = scan(&["--lis"]);
        assert_eq!(e.map(|x| x.0), Some(PoptError::BadOpt));
    }
}
