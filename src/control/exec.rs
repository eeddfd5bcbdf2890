//! Run one ipvsadm invocation against the live director, producing exactly what
//! ipvsadm 1.31 would print and its exit status.
//!
//! * parse errors: the one line from [`parse_args`], exit 2 (255 for popt errors);
//! * table changes: applied through [`crate::ctl::Ctl`]; a refused change prints the
//!   kernel's message and exits 255 (libipvs returns -1);
//! * `-L`/`-S`: rendered from a snapshot; `-L -t X` of a missing service prints
//!   `No such service` and exits 1;
//! * `-R`: every stdin line is an invocation; kernel errors are printed and the restore
//!   goes on, anything that makes ipvsadm `exit()` (parse errors, `-R` again, `-h`,
//!   a failed `-L`) ends it; the status is the last line's. Lines are read with the
//!   rules files' grammar ([`crate::ipvsadm::rules::line_tokens`]): blank lines and
//!   `#` comments, whole-line or trailing, are skipped (an extension: ipvsadm itself
//!   rejects them, which is why `ipvsadm-restore` strips them).

use super::Hub;
use crate::ipvsadm::list::{self, NumericNames, SystemNames};
use crate::ipvsadm::{Command, TRY_HELP, VERSION_LINE, parse_args, rules::line_tokens, usage::usage};

/// What the client prints and its exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Reply {
    /// Just one line on stderr.
    pub fn error(code: i32, line: &str) -> Reply {
        Reply {
            code,
            out: String::new(),
            err: format!("{line}\n"),
        }
    }
}

/// How a command ended: `Done` lets a restore go on, `Exit` is ipvsadm calling
/// `exit()` (which ends a restore too).
enum End {
    Done(i32),
    Exit(i32),
}

/// Run `args` (without argv[0]). `stdin` is the input of `-R`; `None` means the command
/// comes from a `-R` line itself (a nested `-R` is refused as ipvsadm refuses it).
pub fn execute(hub: &Hub, args: &[&str], stdin: Option<&str>) -> Reply {
    if let Some((&crate::sysctl::REQUEST, words)) = args.split_first() {
        // `uvs sysctl`: not an ipvsadm command line (see crate::sysctl).
        let a = crate::sysctl::serve(hub.ctl.shared(), words);
        return Reply {
            code: a.code,
            out: a.out,
            err: a.err,
        };
    }
    let mut r = Reply::default();
    let generation = hub.ctl.generation();
    r.code = match run(hub, args, stdin, &mut r) {
        End::Done(c) | End::Exit(c) => c,
    };
    // Routes, steering and the kernel-copy rule are in place before the reply goes.
    hub.ctl.settle(generation);
    r
}

fn run(hub: &Hub, args: &[&str], stdin: Option<&str>, r: &mut Reply) -> End {
    if args == [crate::keepalived::run::CHECKS_REQUEST] {
        return End::Exit(crate::keepalived::run::answer(
            hub.checks.as_ref(),
            &mut r.out,
            &mut r.err,
        ));
    }
    let cmd = match parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            r.err.push_str(&e.message);
            r.err.push('\n');
            return End::Exit(e.exit_code);
        }
    };
    match cmd {
        Command::Help => {
            r.out.push_str(&usage("ipvsadm"));
            End::Exit(0)
        }
        Command::Version => {
            r.out.push_str(VERSION_LINE);
            r.out.push('\n');
            End::Exit(0)
        }
        Command::Restore => match stdin {
            Some(text) => restore(hub, text, r),
            None => {
                r.err.push_str(TRY_HELP);
                r.err.push('\n');
                End::Exit(255)
            }
        },
        Command::List(opts) => {
            let snap = hub.snapshot();
            let conns = if opts.connections {
                hub.connections()
            } else {
                Vec::new()
            };
            let rendered = if opts.numeric {
                list::render_list(&opts, &snap, &conns, &NumericNames)
            } else {
                list::render_list(&opts, &snap, &conns, &SystemNames::new())
            };
            match rendered {
                Ok(s) => {
                    r.out.push_str(&s);
                    End::Done(0)
                }
                Err(e) => {
                    r.err.push_str(&e.message);
                    r.err.push('\n');
                    End::Exit(e.exit_code)
                }
            }
        }
        Command::Save { numeric } => {
            let snap = hub.snapshot();
            let s = if numeric {
                list::render_save(&snap, true, &NumericNames)
            } else {
                list::render_save(&snap, false, &SystemNames::new())
            };
            r.out.push_str(&s);
            End::Done(0)
        }
        Command::StartDaemon(ref cfg) => daemon_reply(r, hub.start_daemon(cfg)),
        Command::StopDaemon { state, .. } => daemon_reply(r, hub.stop_daemon(state)),
        Command::Zero(ref sel) => match hub.ctl.apply(&cmd) {
            Ok(()) => {
                hub.rates.zero(sel.as_ref());
                End::Done(0)
            }
            Err(e) => kernel_error(r, e),
        },
        other => match hub.ctl.apply(&other) {
            Ok(()) => End::Done(0),
            Err(e) => kernel_error(r, e),
        },
    }
}

/// A sync daemon's start or stop: a refusal prints the kernel's message, exit 255.
fn daemon_reply(r: &mut Reply, res: Result<(), String>) -> End {
    match res {
        Ok(()) => End::Done(0),
        Err(e) => {
            r.err.push_str(&e);
            r.err.push('\n');
            End::Done(255)
        }
    }
}

fn kernel_error(r: &mut Reply, e: crate::ctl::CtlError) -> End {
    r.err.push_str(e.0);
    r.err.push('\n');
    End::Done(255)
}

/// `ipvsadm -R`: one invocation per line (see the module documentation).
fn restore(hub: &Hub, text: &str, r: &mut Reply) -> End {
    // One snapshot for the whole input (Ctl::batch): 10,000 lines in well under 1 s.
    hub.ctl.batch(|_| {
        let mut status = 0;
        for line in text.split('\n') {
            let toks = line_tokens(line);
            if toks.is_empty() {
                continue;
            }
            match run(hub, &toks, None, r) {
                End::Done(c) => status = c,
                End::Exit(c) => return End::Exit(c),
            }
        }
        End::Done(status)
    })
}
