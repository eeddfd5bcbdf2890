//! Rules files for `uvs run --rules FILE` and `uvs check FILE`: one ipvsadm invocation
//! per line, in the form `ipvsadm -S -n` prints and `ipvsadm -R` reads (tokens split on
//! space, tab and CR; tokens equal to `ipvsadm` dropped, so lines may start with
//! `ipvsadm`).
//!
//! Extensions over ipvsadm's own `-R`: blank lines and lines whose first non-blank
//! character is `#` are skipped, and a token starting with `#` starts a trailing
//! comment. [`line_tokens`] is that grammar, and uvs's `ipvsadm -R` reads its input
//! with it too, so a file that `--rules` and `uvs check` accept restores as well. Only
//! table-changing commands are allowed in a rules file (`-A -E -D -C -a -e -d
//! --set`), and `--start-daemon`, which `uvs run` obeys once its workers run (`-R`
//! input may also hold `-L`, `-S`, `-Z`, as ipvsadm's does). Parsing stops
//! at the first bad line, as `ipvsadm -R` stops at the first parse error.

use std::fmt;

use super::{Command, parse_args, tokenize_line};

/// The first bad line of a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    /// 1-based line number.
    pub line: usize,
    /// The offending line, without its line terminator.
    pub text: String,
    /// What is wrong, in ipvsadm's words where ipvsadm has words for it.
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: `{}': {}", self.line, self.text, self.message)
    }
}

impl std::error::Error for RulesError {}

/// The ipvsadm command name (`cmdnames[]` wording) of a command that may not appear in
/// a rules file, or `None` if it may.
fn forbidden_name(cmd: &Command) -> Option<&'static str> {
    match cmd {
        Command::AddService(_)
        | Command::EditService(_)
        | Command::DeleteService(_)
        | Command::Clear
        | Command::AddServer(..)
        | Command::EditServer(..)
        | Command::DeleteServer(..)
        | Command::SetTimeouts { .. } => None,
        Command::Restore => Some("restore"),
        Command::Save { .. } => Some("save"),
        Command::List(_) => Some("list"),
        Command::Zero(_) => Some("zero"),
        // Started by `uvs run` once its workers exist (see `crate::director`).
        Command::StartDaemon(_) => None,
        Command::StopDaemon { .. } => Some("stop-daemon"),
        Command::Help => Some("help"),
        Command::Version => Some("version"),
    }
}

/// The tokens of one line of a rules file or of `ipvsadm -R` input: `-R` splitting
/// ([`tokenize_line`]) up to the first token that starts with `#`. Empty for blank and
/// comment lines.
pub fn line_tokens(line: &str) -> Vec<&str> {
    let mut toks = tokenize_line(line);
    if let Some(i) = toks.iter().position(|t| t.starts_with('#')) {
        toks.truncate(i);
    }
    toks
}

/// Parse a whole rules file into `(line number, command)` pairs, in file order.
pub fn parse_rules(text: &str) -> Result<Vec<(usize, Command)>, RulesError> {
    let mut out = Vec::new();
    for (idx, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let toks = line_tokens(line);
        if toks.is_empty() {
            continue;
        }
        let err = |message: String| RulesError {
            line: idx + 1,
            text: line.to_string(),
            message,
        };
        let cmd = parse_args(&toks).map_err(|e| err(e.message))?;
        if let Some(name) = forbidden_name(&cmd) {
            return Err(err(format!(
                "the '{name}' command is not allowed in a rules file \
                 (only -A, -E, -D, -C, -a, -e, -d, --set and --start-daemon are)"
            )));
        }
        out.push((idx + 1, cmd));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{ForwardMethod, ServiceAddr};

    #[test]
    fn comments_blank_lines_and_numbers() {
        let text = "# saved rules\n\n   \t\n-A -t 10.0.0.1:80 -s rr # web\n\
                    ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.1 -m -w 2\r\n  # indented comment\n\
                    --set 900 120 300\n-C";
        let rules = parse_rules(text).unwrap();
        let lines: Vec<usize> = rules.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![4, 5, 7, 8]);
        match &rules[0].1 {
            Command::AddService(c) => assert_eq!(c.scheduler, "rr"),
            other => panic!("{other:?}"),
        }
        match &rules[1].1 {
            Command::AddServer(ServiceAddr::Inet { port: 80, .. }, d) => {
                assert_eq!((d.port, d.method, d.weight), (80, ForwardMethod::Masq, 2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            rules[2].1,
            Command::SetTimeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            }
        );
        assert_eq!(rules[3].1, Command::Clear);
    }

    #[test]
    fn empty_file() {
        assert_eq!(parse_rules("").unwrap(), vec![]);
        assert_eq!(parse_rules("\n# x\nipvsadm\n").unwrap(), vec![]);
    }

    #[test]
    fn first_bad_line_is_reported() {
        let text = "-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.0.1.1 -w 70000\n-C -x\n";
        let e = parse_rules(text).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.text, "-a -t 10.0.0.1:80 -r 10.0.1.1 -w 70000");
        assert_eq!(e.message, "illegal weight specified");
        assert_eq!(
            e.to_string(),
            "line 2: `-a -t 10.0.0.1:80 -r 10.0.1.1 -w 70000': illegal weight specified"
        );
    }

    #[test]
    fn usage_errors_and_forbidden_commands() {
        let e = parse_rules("-A -t 10.0.0.1:80\n\n-nL\n").unwrap_err();
        assert_eq!((e.line, e.text.as_str()), (3, "-nL"));
        assert_eq!(e.message, crate::ipvsadm::TRY_HELP);
        for (line, name) in [
            ("-L -n", "list"),
            ("-S -n", "save"),
            ("-R", "restore"),
            ("-Z", "zero"),
            ("-h", "help"),
            ("--stop-daemon master", "stop-daemon"),
        ] {
            let e = parse_rules(line).unwrap_err();
            assert_eq!(e.line, 1);
            assert!(e.message.contains(&format!("'{name}' command is not allowed")), "{e}");
        }
        // A bare word (what a comment looks like to ipvsadm when not at a token start).
        let e = parse_rules("-C foo#bar").unwrap_err();
        assert_eq!(e.message, "unexpected argument foo#bar");
    }

    #[test]
    fn save_example_round_trips() {
        let text = "\
-A -t 192.168.10.100:80 -s wlc
-a -t 192.168.10.100:80 -r 192.168.10.11:80 -g -w 1
-a -t 192.168.10.100:80 -r 192.168.10.12:80 -g -w 2
-A -t 192.168.10.100:443 -s rr -p 360 -M 255.255.255.0
-a -t 192.168.10.100:443 -r 10.0.0.5:8443 -m -w 1
-A -u 192.168.10.100:53 -s rr -o
-a -u 192.168.10.100:53 -r 192.168.10.13:53 -g -w 0
-A -t [2001:db8::80]:80 -s wlc
-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1
-A -f 1 -s sh -b sh-port
-a -f 1 -r 192.168.10.11:0 -i -w 1 --tun-type ipip
";
        let rules = parse_rules(text).unwrap();
        assert_eq!(rules.len(), 11);
        assert_eq!(rules[10].0, 11);
    }
}
