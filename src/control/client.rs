//! `uvs adm ARGS…` and `ipvsadm ARGS…` (uvs invoked through a symlink of that name):
//! ipvsadm's command line against the running director.
//!
//! The arguments are checked here first, so `-h`, `-v` and parse errors work (with
//! ipvsadm's exact text and status) even when no director runs; everything else is
//! sent over the control socket ([`super::socket_path`]: `$UVS_CONTROL` or
//! `/run/uvs/control.sock`), with stdin for `-R`. The director re-parses and runs the
//! command and sends back stdout, stderr and the exit status, which are reproduced
//! byte for byte.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::{MAX_STDIN, decode_reply, encode_request, socket_path};
use crate::ipvsadm::{Command, TRY_HELP, VERSION_LINE, parse_args, usage::usage};

/// Largest reply accepted per stream (a listing of a very large connection table).
const MAX_REPLY: usize = 1 << 30;

/// ipvsadm's "Try …" hint with the program name it was run as.
fn try_help(program: &str) -> String {
    format!("Try `{program} -h' or '{program} --help' for more information.")
}

/// Run one invocation; returns the exit status. `program` is argv[0] as ipvsadm
/// would print it (`ipvsadm` for `uvs adm`).
pub fn main(program: &str, args: &[String]) -> i32 {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut stdin = Vec::new();
    let parsed = parse_args(&words);
    match &parsed {
        Err(e) => {
            eprintln!("{}", e.message.replace(TRY_HELP, &try_help(program)));
            return e.exit_code;
        }
        Ok(Command::Help) => {
            print!("{}", usage(program));
            return 0;
        }
        Ok(Command::Version) => {
            println!("{VERSION_LINE}");
            return 0;
        }
        Ok(Command::Restore) => {
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
        Ok(_) => {}
    }
    let path = socket_path(None);
    let reply = match exchange(&path, args, &stdin) {
        Ok(r) => r,
        Err(Failure::Connect(e)) => {
            eprintln!("{}", not_running(&path, &e));
            return 2;
        }
        Err(Failure::Talk(e)) => {
            eprintln!("{program}: control socket {}: {e}", path.display());
            return 255;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(reply.out.as_bytes());
    let _ = out.flush();
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(reply.err.replace(TRY_HELP, &try_help(program)).as_bytes());
    if reply.code == 0
        && let Ok(cmd) = &parsed
    {
        for w in not_forwarded(cmd, &String::from_utf8_lossy(&stdin)) {
            let _ = writeln!(err, "{program}: warning: {w}");
        }
    }
    reply.code & 0xff
}

/// `uvs sysctl WORDS…` against the director on `control` (else `$UVS_CONTROL` or the
/// default socket): prints its answer; returns the exit status ([`crate::sysctl`]).
pub fn sysctl(control: Option<&Path>, words: &[String]) -> i32 {
    let path = socket_path(control);
    let mut args = vec![crate::sysctl::REQUEST.to_string()];
    args.extend_from_slice(words);
    match exchange(&path, &args, &[]) {
        Ok(reply) => {
            print!("{}", reply.out);
            eprint!("{}", reply.err);
            reply.code & 0xff
        }
        Err(Failure::Connect(e)) => {
            eprintln!(
                "uvs sysctl: {}",
                not_running(&path, &e).replace("Can't initialize ipvs: ", "")
            );
            255
        }
        Err(Failure::Talk(e)) => {
            eprintln!("uvs sysctl: control socket {}: {e}", path.display());
            255
        }
    }
}

/// What the command added that uvs accepts but does not forward (fwmark, IPv6 and
/// SCTP services, IPv6 real servers): warned on stderr with status 0, as the kernel
/// accepts them and as the director says in its log (`ServiceTable::not_forwarded`).
/// For `-R`, each line of `stdin`.
fn not_forwarded(cmd: &Command, stdin: &str) -> Vec<String> {
    use crate::service::{dest_not_forwarded, service_not_forwarded};
    let one = |c: &Command| match c {
        Command::AddService(s) | Command::EditService(s) => service_not_forwarded(&s.addr),
        Command::AddServer(svc, d) | Command::EditServer(svc, d) => dest_not_forwarded(svc, d.addr, d.port),
        _ => None,
    };
    match cmd {
        Command::Restore => stdin
            .lines()
            .filter_map(|l| parse_args(&crate::ipvsadm::rules::line_tokens(l)).ok())
            .filter_map(|c| one(&c))
            .collect(),
        c => one(c).into_iter().collect(),
    }
}

enum Failure {
    Connect(std::io::Error),
    Talk(std::io::Error),
}

fn exchange(path: &Path, args: &[String], stdin: &[u8]) -> Result<super::Reply, Failure> {
    let mut s = UnixStream::connect(path).map_err(Failure::Connect)?;
    let sent = s.write_all(&encode_request(args, stdin));
    // The director may answer before reading everything (a refusal): its reply is
    // still there to read even though our write failed with EPIPE.
    match (decode_reply(&mut s, MAX_REPLY), sent) {
        (Ok(r), _) => Ok(r),
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
            not_forwarded(&parse_args(&a).unwrap(), stdin)
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
