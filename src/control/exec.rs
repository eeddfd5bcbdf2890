//! The director's side of a [`Request`]: apply ipvsadm commands already parsed by
//! the client and answer with typed outcomes ([`super::proto`]). No argument parsing,
//! no name resolution, no `/etc/services` here: the client does all of that.
//!
//! * table changes: applied through [`crate::ctl::Ctl`]; a refused change answers the
//!   kernel's message ([`Outcome::Refused`]: ipvsadm prints it and exits 255);
//! * `-L`/`-S`: a [`Outcome::Table`] snapshot (with the connection entries for `-c`);
//! * `-R`: the client sends every line's command in one [`Request::Apply`] with
//!   `restore` set, applied inside one [`Ctl::batch`](crate::ctl::Ctl::batch); a refused
//!   line does not stop it, a listing ipvsadm would fail on (`-L -t` of a missing
//!   service: ipvsadm `exit()`s) does, so no later line is applied.

use super::Hub;
use super::proto::{Outcome, Request, Response, Text};
use crate::ipvsadm::Command;
use crate::ipvsadm::list;

/// Answer one request (all but [`Request::Trace`], which takes over the connection).
pub fn serve(hub: &Hub, req: Request) -> Response {
    match req {
        Request::Apply { commands, restore } => Response::Applied(apply(hub, &commands, restore)),
        Request::Sysctl(words) => {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let a = crate::sysctl::serve(&hub.ctl.shared().ipvs, &words);
            Response::Text(Text {
                code: a.code,
                out: a.out,
                err: a.err,
            })
        }
        Request::Checks => {
            let mut t = Text::default();
            t.code = crate::keepalived::run::answer(hub.checks.as_ref(), &mut t.out, &mut t.err);
            Response::Text(t)
        }
        Request::Trace(_) => Response::Text(Text::error(255, "uvs: trace requests stream (bad request)")),
    }
}

/// Apply `commands` in order (see the module documentation).
pub fn apply(hub: &Hub, commands: &[Command], restore: bool) -> Vec<Outcome> {
    let generation = hub.ctl.generation();
    let run = || {
        let mut out = Vec::with_capacity(commands.len());
        for cmd in commands {
            let o = one(hub, cmd);
            let stop = matches!((cmd, &o), (Command::List(opts), Outcome::Table { table, .. })
                if list::check_list(opts, table).is_err());
            out.push(o);
            if stop {
                break;
            }
        }
        out
    };
    // One snapshot for the whole input (Ctl::batch): 10,000 lines in well under 1 s.
    let out = if restore { hub.ctl.batch(|_| run()) } else { run() };
    // Routes, steering and the kernel-copy rule are in place before the reply goes.
    hub.ctl.settle(generation);
    out
}

fn one(hub: &Hub, cmd: &Command) -> Outcome {
    match cmd {
        Command::List(opts) => Outcome::Table {
            table: Box::new(hub.snapshot()),
            conns: if opts.connections {
                hub.connections()
            } else {
                Vec::new()
            },
        },
        Command::Save { .. } => Outcome::Table {
            table: Box::new(hub.snapshot()),
            conns: Vec::new(),
        },
        Command::StartDaemon(_) | Command::StopDaemon { .. } => daemon(hub, cmd),
        Command::Help | Command::Version | Command::Restore => {
            Outcome::Refused("uvs: -h, -v and -R are handled by the client (bad request)".into())
        }
        Command::Zero(sel) => match hub.ctl.apply(cmd) {
            Ok(()) => {
                hub.rates.zero(sel.as_ref());
                Outcome::Done
            }
            Err(e) => Outcome::Refused(e.0.to_string()),
        },
        other => match hub.ctl.apply(other) {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Refused(e.0.to_string()),
        },
    }
}

/// `--start-daemon` / `--stop-daemon` through the sync daemons' handle; a refusal is
/// the line ipvsadm prints (exit 255).
fn daemon(hub: &Hub, cmd: &Command) -> Outcome {
    let res = match cmd {
        Command::StartDaemon(cfg) => hub.start_daemon(cfg),
        Command::StopDaemon { state, .. } => hub.stop_daemon(*state),
        _ => return Outcome::Refused("uvs: not a daemon command (bad request)".into()),
    };
    match res {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Refused(e),
    }
}
