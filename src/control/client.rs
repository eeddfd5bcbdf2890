//! `uvs adm ARGS…` and `ipvsadm ARGS…` (uvs invoked through a symlink of that name):
//! ipvsadm's command line against the running director.
//!
//! The client does everything but apply: it parses the arguments (so `-h`, `-v` and
//! parse errors work, with ipvsadm's exact text and status, even when no director
//! runs), reads and parses `-R`'s lines, resolves host and port names in arguments,
//! sends the commands as one typed request ([`super::proto`]) over the control socket
//! ([`super::socket_path`]: `$UVS_CONTROL` or `/run/uvs/control.sock`), and renders
//! the outcomes: kernel errors, and the listings from the director's table snapshot,
//! with reverse host lookups and `/etc/services` names unless `-n`.

use std::cell::OnceCell;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::proto::{self, Framed, Outcome, Request, Response, Text, VERSION};
use super::{MAX_STDIN, socket_path};
use crate::ipvsadm::addr::{HostLookup, resolve_host_v4};
use crate::ipvsadm::list::{self, Names, SystemNames};
use crate::ipvsadm::{
    Command, ParseError, TRY_HELP, VERSION_LINE, parse_args, parse_args_with, rules::line_tokens, usage::usage,
};
use crate::service::Protocol;

/// Largest reply accepted (a listing of a very large connection table).
const MAX_REPLY: usize = 1 << 30;

/// ipvsadm's "Try …" hint with the program name it was run as.
fn try_help(program: &str) -> String {
    format!("Try `{program} -h' or '{program} --help' for more information.")
}

/// What an invocation needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Answered without a director (`-h`, `-v`).
    Local(Text),
    /// Ask the director to apply `commands`; `tail` (what ends a restore early: a line
    /// that does not parse, `-h`, `-v`, a nested `-R`) is printed after their outcomes
    /// and gives the exit status.
    Remote {
        commands: Vec<Command>,
        restore: bool,
        tail: Option<Text>,
    },
}

impl Plan {
    /// The request to send, if any.
    pub fn request(&self) -> Option<Request> {
        match self {
            Plan::Local(_) => None,
            Plan::Remote { commands, restore, .. } => Some(Request::Apply {
                commands: commands.clone(),
                restore: *restore,
            }),
        }
    }
}

fn parse_failure(e: ParseError) -> Text {
    Text::error(e.exit_code, &e.message)
}

/// `-h`, `-v`, and `-R` inside `-R` (which ipvsadm refuses: its stdin is taken).
fn local(cmd: &Command) -> Option<Text> {
    let out = |out: String| Text {
        code: 0,
        out,
        err: String::new(),
    };
    match cmd {
        Command::Help => Some(out(usage("ipvsadm"))),
        Command::Version => Some(out(format!("{VERSION_LINE}\n"))),
        Command::Restore => Some(Text::error(255, TRY_HELP)),
        _ => None,
    }
}

/// Plan one parsed invocation; `stdin` is `-R`'s input, its host names resolved by
/// `lookup`. A restore sends every line
/// up to the first that makes ipvsadm `exit()`; blank lines and `#` comments are
/// skipped ([`line_tokens`]: an extension, ipvsadm itself rejects them, which is why
/// `ipvsadm-restore` strips them).
pub fn plan(cmd: Command, stdin: &str, lookup: HostLookup) -> Plan {
    match cmd {
        Command::Help | Command::Version => Plan::Local(local(&cmd).unwrap_or_default()),
        Command::Restore => {
            let (mut commands, mut tail) = (Vec::new(), None);
            for line in stdin.split('\n') {
                let toks = line_tokens(line);
                if toks.is_empty() {
                    continue;
                }
                match parse_args_with(&toks, lookup) {
                    Err(e) => tail = Some(parse_failure(e)),
                    Ok(c) => match local(&c) {
                        Some(t) => tail = Some(t),
                        None => commands.push(c),
                    },
                }
                if tail.is_some() {
                    break;
                }
            }
            Plan::Remote {
                commands,
                restore: true,
                tail,
            }
        }
        c => Plan::Remote {
            commands: vec![c],
            restore: false,
            tail: None,
        },
    }
}

/// Resolves names only when a listing asks for them (reading `/etc/services` once).
#[derive(Default)]
pub struct LazyNames(OnceCell<SystemNames>);

impl Names for LazyNames {
    fn host(&self, addr: IpAddr) -> Option<String> {
        self.0.get_or_init(SystemNames::new).host(addr)
    }
    fn service(&self, port: u16, proto: Protocol) -> Option<String> {
        self.0.get_or_init(SystemNames::new).service(port, proto)
    }
}

/// What ipvsadm prints for the director's `outcomes` of `commands` (then `tail`):
/// kernel errors on stderr (status 255, a restore goes on), listings on stdout; a
/// listing that fails ends everything with its status, as ipvsadm `exit()`s. The
/// status is the last command's.
pub fn render(commands: &[Command], outcomes: Vec<Outcome>, tail: Option<Text>, names: &dyn Names) -> Text {
    let mut r = Text::default();
    let answered = outcomes.len();
    for (cmd, o) in commands.iter().zip(outcomes) {
        r.code = match (cmd, o) {
            (_, Outcome::Done) => 0,
            (_, Outcome::Refused(m)) => {
                r.err.push_str(&m);
                r.err.push('\n');
                255
            }
            (Command::List(opts), Outcome::Table { table, conns }) => {
                match list::render_list(opts, &table, &conns, names) {
                    Ok(s) => {
                        r.out.push_str(&s);
                        0
                    }
                    Err(e) => {
                        r.err.push_str(&e.message);
                        r.err.push('\n');
                        r.code = e.exit_code;
                        return r;
                    }
                }
            }
            (Command::Save { numeric }, Outcome::Table { table, .. }) => {
                r.out.push_str(&list::render_save(&table, *numeric, names));
                0
            }
            (_, Outcome::Table { .. }) => return bad_answer(r, "a table for a command that is not a listing"),
        };
    }
    if answered != commands.len() {
        return bad_answer(r, &format!("{answered} outcomes for {} commands", commands.len()));
    }
    if let Some(t) = tail {
        r.out.push_str(&t.out);
        r.err.push_str(&t.err);
        r.code = t.code;
    }
    r
}

fn bad_answer(mut r: Text, what: &str) -> Text {
    r.err.push_str(&format!("uvs: bad answer from the director: {what}\n"));
    r.code = 255;
    r
}

/// Run one invocation; returns the exit status. `program` is argv[0] as ipvsadm
/// would print it (`ipvsadm` for `uvs adm`).
pub fn main(program: &str, args: &[String]) -> i32 {
    let cmd = match parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.message.replace(TRY_HELP, &try_help(program)));
            return e.exit_code;
        }
    };
    if cmd == Command::Help {
        print!("{}", usage(program));
        return 0;
    }
    let mut stdin = Vec::new();
    if cmd == Command::Restore {
        let limit = MAX_STDIN as u64 + 1;
        if let Err(e) = std::io::stdin().lock().take(limit).read_to_end(&mut stdin) {
            eprintln!("{program}: reading standard input: {e}");
            return 255;
        }
        if stdin.len() > MAX_STDIN {
            eprintln!("{program}: -R input is larger than {} MiB", MAX_STDIN >> 20);
            return 255;
        }
    }
    let plan = plan(cmd, &String::from_utf8_lossy(&stdin), resolve_host_v4);
    if let Plan::Remote { commands, .. } = &plan
        && commands.len() > proto::MAX_COMMANDS
    {
        eprintln!("{program}: -R input has more than {} commands", proto::MAX_COMMANDS);
        return 255;
    }
    let path = socket_path(None);
    let reply = match (plan.request(), plan) {
        (_, Plan::Local(t)) => t,
        (Some(req), Plan::Remote { commands, tail, .. }) => match ask(&path, &req) {
            Ok(Response::Applied(outcomes)) => {
                let mut r = render(&commands, outcomes, tail, &LazyNames::default());
                if r.code == 0 {
                    for w in not_forwarded(&commands) {
                        r.err.push_str(&format!("{program}: warning: {w}\n"));
                    }
                }
                r
            }
            Ok(Response::Text(t)) => t,
            Err(e) => {
                eprintln!("{}", e.describe(&path, program));
                return e.status();
            }
        },
        (None, Plan::Remote { .. }) => unreachable!("a remote plan has a request"),
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(reply.out.as_bytes());
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(reply.err.replace(TRY_HELP, &try_help(program)).as_bytes());
    reply.code & 0xff
}

/// `uvs sysctl WORDS…` against the director on `control` (else `$UVS_CONTROL` or the
/// default socket): prints its answer; returns the exit status ([`crate::sysctl`]).
pub fn sysctl(control: Option<&Path>, words: &[String]) -> i32 {
    let path = socket_path(control);
    match ask(&path, &Request::Sysctl(words.to_vec())) {
        Ok(Response::Text(reply)) => {
            print!("{}", reply.out);
            eprint!("{}", reply.err);
            reply.code & 0xff
        }
        Ok(Response::Applied(_)) => {
            eprintln!("uvs sysctl: bad answer from the director");
            255
        }
        Err(Failure::Connect(e)) => {
            eprintln!(
                "uvs sysctl: {}",
                not_running(&path, &e).replace("Can't initialize ipvs: ", "")
            );
            255
        }
        Err(e) => {
            eprintln!("{}", e.describe(&path, "uvs sysctl"));
            255
        }
    }
}

/// What the commands add that uvs accepts but does not forward (fwmark, IPv6 and
/// SCTP services, IPv6 real servers): warned on stderr with status 0, as the kernel
/// accepts them and as the director says in its log (`ServiceTable::not_forwarded`).
fn not_forwarded(commands: &[Command]) -> Vec<String> {
    use crate::service::{dest_not_forwarded, service_not_forwarded};
    commands
        .iter()
        .filter_map(|c| match c {
            Command::AddService(s) | Command::EditService(s) => service_not_forwarded(&s.addr),
            Command::AddServer(svc, d) | Command::EditServer(svc, d) => dest_not_forwarded(svc, d.addr, d.port),
            _ => None,
        })
        .collect()
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum Failure {
    /// No director listens (or the socket is another user's).
    Connect(std::io::Error),
    /// The director speaks another protocol version (this one).
    Version(u16),
    /// The exchange failed midway.
    Talk(std::io::Error),
}

impl Failure {
    /// The line to print; `program` prefixes errors other than ipvsadm's own.
    pub fn describe(&self, path: &Path, program: &str) -> String {
        match self {
            Failure::Connect(e) => not_running(path, e),
            Failure::Version(v) => proto::mismatch(VERSION, *v),
            Failure::Talk(e) => format!("{program}: control socket {}: {e}", path.display()),
        }
    }

    /// ipvsadm's status: 2 when it cannot reach IPVS at all, else 255.
    pub fn status(&self) -> i32 {
        match self {
            Failure::Connect(_) => 2,
            _ => 255,
        }
    }
}

/// `uvs checks`: ask a running director for its checkers' status
/// (`keepalived::run::answer` writes the answer).
pub fn checks(control: Option<&std::path::Path>) -> Result<String, String> {
    let path = socket_path(control);
    match ask(&path, &Request::Checks) {
        Ok(Response::Text(r)) if r.code == 0 => Ok(r.out),
        Ok(Response::Text(r)) => Err(r.err.trim_end().trim_start_matches("uvs: ").to_string()),
        Ok(Response::Applied(_)) => Err("bad answer from the director".into()),
        Err(e) => Err(e.describe(&path, "uvs checks")),
    }
}

/// Send `req` to the director on `path` and read its answer.
pub fn ask(path: &Path, req: &Request) -> Result<Response, Failure> {
    let mut s = UnixStream::connect(path).map_err(Failure::Connect)?;
    let sent = s.write_all(&proto::encode_request(req));
    // The director may answer before reading everything (a refusal): its reply is
    // still there to read even though our write failed with EPIPE.
    match (proto::read_response(&mut s, MAX_REPLY), sent) {
        (Ok(Framed::Ours(r)), _) => Ok(r),
        (Ok(Framed::Other(v)), _) => Err(Failure::Version(v)),
        (Err(e), Ok(())) | (Err(_), Err(e)) => Err(Failure::Talk(e)),
    }
}

/// What `ipvsadm` prints when the control socket cannot be opened: the two lines of
/// ipvsadm's own "Can't initialize ipvs" when no director answers (same exit status,
/// 2), or, when one runs but the socket is another user's, whose it is.
pub fn not_running(path: &Path, e: &std::io::Error) -> String {
    let p = path.display();
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => format!("control socket {p} does not exist"),
        std::io::ErrorKind::ConnectionRefused => format!("nothing listens on control socket {p}"),
        std::io::ErrorKind::PermissionDenied => return permission_denied(path),
        _ => format!("control socket {p}: {e}"),
    };
    format!(
        "Can't initialize ipvs: no uvs director is running ({why})\n\
         Are you sure that `uvs run` is running? Set {} if it was started with another --control path.",
        super::SOCKET_ENV
    )
}

/// A director runs, but its socket (mode 0600) belongs to another user.
fn permission_denied(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let owner = match std::fs::metadata(path) {
        Ok(m) => {
            let uid = m.uid();
            match nix::unistd::User::from_uid(uid.into()) {
                Ok(Some(u)) => format!("{} (uid {uid})", u.name),
                _ => format!("uid {uid}"),
            }
        }
        Err(_) => "another user".into(),
    };
    format!(
        "Can't initialize ipvs: permission denied on control socket {}: it belongs to {owner}, \
         who started `uvs run`; run ipvsadm as that user or as root",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwmark_ipv6_and_sctp_additions_are_warned() {
        let w = |line: &str, stdin: &str| {
            let a: Vec<&str> = line.split_whitespace().collect();
            match plan(parse_args(&a).unwrap(), stdin, resolve_host_v4) {
                Plan::Remote { commands, .. } => not_forwarded(&commands),
                Plan::Local(_) => Vec::new(),
            }
        };
        assert_eq!(
            w("-A -f 7 -s rr", ""),
            ["FWM 7 is not forwarded: AF_PACKET frames carry no firewall mark (use an address-based service)"]
        );
        assert_eq!(
            w("-A -t [2001:db8::1]:80", ""),
            ["TCP [2001:db8::1]:80 is not forwarded: uvs forwards IPv4 TCP and UDP only"]
        );
        assert_eq!(
            w("-a -t 10.0.0.1:80 -r [2001:db8::2]:80 -i", ""),
            [
                "real server [2001:db8::2]:80 of TCP 10.0.0.1:80: connections scheduled to it are dropped \
              (method_unsupported): uvs forwards IPv4 only"
            ]
        );
        assert!(w("-A -t 10.0.0.1:80", "").is_empty());
        assert!(w("-a -t 10.0.0.1:80 -r 10.0.0.2", "").is_empty());
        assert!(w("-L -n", "").is_empty());
        // Only the fwmark service's own line: its IPv6 real server adds nothing new.
        let r = w("-R", "-A -f 3\n-a -f 3 -r [::1]:80\n-A -t 10.0.0.1:80\n# -A -f 4\n");
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].starts_with("FWM 3 is not forwarded"));
    }

    #[test]
    fn not_running_names_the_socket() {
        let p = Path::new("/run/uvs/nowhere.sock");
        let e = UnixStream::connect(p).unwrap_err();
        let m = not_running(p, &e);
        assert!(m.starts_with("Can't initialize ipvs: no uvs director is running (control socket /run/uvs/nowhere.sock does not exist)"), "{m}");
        assert!(m.contains("UVS_CONTROL"));
        assert_eq!(
            try_help("/sbin/ipvsadm"),
            "Try `/sbin/ipvsadm -h' or '/sbin/ipvsadm --help' for more information."
        );
        assert_eq!(try_help("ipvsadm"), TRY_HELP);
    }
}
