//! The state file: the live table of `uvs run` kept on disk so that a restart (an
//! upgrade, `systemctl restart`, a crash) starts from the table the previous director
//! served, live ipvsadm changes included. With kernel IPVS the table lives in the
//! kernel and survives its user-space tools; here the process is the table.
//!
//! Format (text, versioned; README "Restarts and the state file"):
//!
//! ```text
//! # uvs state file: the live table of `uvs run`, rewritten after each change. Do not edit.
//! uvs-state 1
//! pid 4242
//! clean 0                       1 once that director stopped cleanly (SIGTERM/SIGINT)
//! config 9c1f0e3a5b7d2e11       FNV-1a of the table that --rules and the options give
//! saved 1765000000              Unix time of the write
//! sysctl am_droprate=10         every net.ipv4.vs.* key uvs implements (src/sysctl.rs)
//! --set 900 120 300             the timeouts
//! -A -t 10.0.0.1:80 -s rr       the table, as `ipvsadm -S -n` prints it
//! -a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1
//! end
//! ```
//!
//! Written atomically (temporary file, fsync, rename, fsync of the directory), so a
//! reader sees the old complete file or the new one, never a mix; the `end` line
//! catches a file cut short some other way. A file of another version is refused with
//! a message naming both versions, and never overwritten blindly: the director then
//! starts from its configuration.
//!
//! The writer is a thread ([`Persister`]) woken by the control socket's change counter:
//! it renders the table off the packet path and after the reply went out, and writes
//! only when the text differs, so an `ipvsadm -R` of 10,000 lines is one write.
//! Health-check transitions do not belong here (checkers decide again at start).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ctl::Ctl;
use crate::pipeline::Shared;

/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
const MAGIC: &str = "uvs-state";
const HEADER: &str = "# uvs state file: the live table of `uvs run`, rewritten after each change. Do not edit.";

/// Default state file: beside the control socket, `control.sock` → `control.state`
/// (so `/run/uvs/control.state`, and a director with its own socket has its own file).
pub fn default_path(control_socket: &Path) -> PathBuf {
    control_socket.with_extension("state")
}

/// One state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The director that wrote it.
    pub pid: u32,
    /// That director stopped cleanly (its last write).
    pub clean: bool,
    /// [`fnv64`] of the configured table ([`body`] of `--rules` plus the options) that
    /// director started from (or last re-read on SIGHUP).
    pub config: u64,
    /// Unix time of the write.
    pub saved: u64,
    /// sysctl, `--set` and ipvsadm `-S -n` lines.
    pub body: String,
}

/// FNV-1a, 64 bits: a stable fingerprint of a configuration's text (std's hashers
/// may change between Rust releases; this one is fixed by definition).
pub fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The table of `sh` as state-file lines: sysctls, timeouts, then `ipvsadm -S -n`.
pub fn body(sh: &Shared) -> String {
    use crate::ipvsadm::{list, snapshot};
    let mut out = String::new();
    for line in crate::sysctl::serve(&sh.ipvs, &["-a"]).out.lines() {
        if let Some((k, v)) = line
            .strip_prefix(crate::sysctl::PREFIX)
            .and_then(|l| l.split_once(" = "))
        {
            out.push_str(&format!("sysctl {k}={v}\n"));
        }
    }
    let table = sh.services.load();
    let snap = snapshot::capture(&table, &sh.ipvs.timeouts, &|_| snapshot::Rates::default());
    let (tcp, fin, udp) = snap.timeouts;
    out.push_str(&format!("--set {tcp} {fin} {udp}\n"));
    out.push_str(&list::render_save(&snap, true, &list::NumericNames));
    out
}

/// The file's text.
pub fn render(st: &State) -> String {
    format!(
        "{HEADER}\n{MAGIC} {VERSION}\npid {}\nclean {}\nconfig {:016x}\nsaved {}\n{}end\n",
        st.pid, st.clean as u8, st.config, st.saved, st.body
    )
}

/// Parse a state file: refuses another version, a missing header field, or a file
/// without its `end` line.
pub fn parse(text: &str) -> Result<State, String> {
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    match lines.next().and_then(|l| l.strip_prefix(MAGIC)).map(str::trim) {
        Some(v) if v == VERSION.to_string() => {}
        Some(v) => {
            return Err(format!(
                "state format version {v}, this uvs reads version {VERSION} only (written by another uvs \
                 release): not restored"
            ));
        }
        None => return Err(format!("not a uvs state file (no `{MAGIC}` line)")),
    }
    let mut field = |name: &str| -> Result<String, String> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|v| v.strip_prefix(' '))
            .map(str::to_string)
            .ok_or_else(|| format!("bad state file: no `{name}` line"))
    };
    let num = |s: String, radix| u64::from_str_radix(&s, radix).map_err(|_| format!("bad state file: `{s}`"));
    let pid = num(field("pid")?, 10)? as u32;
    let clean = field("clean")? == "1";
    let config = num(field("config")?, 16)?;
    let saved = num(field("saved")?, 10)?;
    let mut body = String::new();
    for l in lines {
        if l == "end" {
            return Ok(State {
                pid,
                clean,
                config,
                saved,
                body,
            });
        }
        body.push_str(l);
        body.push('\n');
    }
    Err("bad state file: cut short (no `end` line)".into())
}

/// Read `path`: `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<State>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => parse(&t).map(Some).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Replace `path` with `text` atomically: a temporary file in the same directory,
/// fsync, rename over `path`, fsync of the directory (so the rename itself is durable).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// `uvs run --user`: before the drop, make sure that user can keep writing the state
/// file at `path` (a temporary file in its directory renamed over it):
/// - an existing state file is given to the user (in a sticky directory such as /tmp
///   only its owner may rename over it);
/// - a directory the user cannot write is given to the user only when it is the control
///   socket's directory `socket_dir` (uvs's own runtime directory, /run/uvs by default,
///   whose socket goes to the user anyway) and only root may write it (never /tmp or a
///   shared directory); any other such directory is an error naming the way out.
pub fn hand_to_user(path: &Path, socket_dir: Option<&Path>, uid: u32, gid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(|e| format!("state file {}: {}: {e}", path.display(), dir.display()))?;
    if !may_write(meta.mode(), meta.uid(), meta.gid(), uid, gid) {
        let ours = socket_dir.is_some_and(|s| same_dir(s, dir));
        if !ours || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "state file {}: user {uid} cannot write {} (--user); give that directory to the user \
                 or choose --state in one it may write",
                path.display(),
                dir.display()
            ));
        }
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| format!("state file {}: chown {}: {e}", path.display(), dir.display()))?;
    }
    match std::os::unix::fs::chown(path, Some(uid), Some(gid)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("state file {}: chown: {e}", path.display())),
        _ => Ok(()),
    }
}

/// Whether `uid`/`gid` (a dropped user: no other groups, no capabilities) may create and
/// rename files in a directory of `mode`, owned by `owner`:`group`.
fn may_write(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> bool {
    let bits = if uid == owner {
        mode >> 6
    } else if gid == group {
        mode >> 3
    } else {
        mode
    };
    bits & 0o3 == 0o3
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Replace the table of `ctl` by a state file's body (sysctls last: some live in the
/// table's shared connection settings). Checked whole on a scratch table first, so a
/// bad body changes nothing. Returns the number of table lines.
pub fn restore(ctl: &Ctl, body: &str) -> Result<usize, String> {
    let (sysctls, table) = split_body(body);
    let cmds = crate::ipvsadm::rules::parse_rules(&table).map_err(|e| e.to_string())?;
    let scratch = Ctl::new(Arc::new(Shared::new(Vec::new())));
    for (line, cmd) in &cmds {
        scratch.apply(cmd).map_err(|e| format!("line {line}: {e}"))?;
    }
    crate::sysctl::apply(&scratch.shared().ipvs, &sysctls)?;
    ctl.clear();
    for (_, cmd) in &cmds {
        ctl.apply(cmd).map_err(|e| e.to_string())?;
    }
    crate::sysctl::apply(&ctl.shared().ipvs, &sysctls)?;
    Ok(cmds.len())
}

/// `sysctl NAME=VALUE` assignments, and the rest (rules-file lines).
fn split_body(body: &str) -> (Vec<String>, String) {
    let mut sysctls = Vec::new();
    let mut table = String::new();
    for l in body.lines() {
        match l.strip_prefix("sysctl ") {
            Some(a) => sysctls.push(a.to_string()),
            None => {
                table.push_str(l);
                table.push('\n');
            }
        }
    }
    (sysctls, table)
}

/// What identifies a body line across two versions of a configuration: the service
/// (`-A`), the real server of a service (`-a`), the timeouts, or a sysctl's name.
fn line_key(line: &str) -> Option<(u8, String)> {
    let t: Vec<&str> = line.split_whitespace().collect();
    match t.as_slice() {
        ["sysctl", a] => Some((5, a.split('=').next().unwrap_or(a).to_string())),
        ["--set", ..] => Some((4, String::new())),
        ["-A", kind, addr, ..] => Some((2, format!("{kind} {addr}"))),
        ["-a", kind, addr, rest @ ..] => {
            let rs = rest.iter().position(|w| *w == "-r").and_then(|i| rest.get(i + 1))?;
            Some((3, format!("{kind} {addr} -r {rs}")))
        }
        _ => None,
    }
}

/// The commands that take a live table from configuration `old` to configuration `new`
/// (both [`body`] texts) while keeping live edits to everything the two leave alone:
/// servers and services `old` has and `new` lacks are deleted, new ones added, changed
/// ones edited (`-E` / `-e`, which keeps their connections and counters), in the order
/// deletions of servers, of services, services, servers, timeouts, sysctls.
pub fn reload_diff(old: &str, new: &str) -> Vec<String> {
    use std::collections::BTreeMap;
    let keyed = |b: &str| -> BTreeMap<(u8, String), String> {
        b.lines()
            .filter_map(|l| line_key(l).map(|k| (k, l.to_string())))
            .collect()
    };
    let (o, n) = (keyed(old), keyed(new));
    let mut cmds: Vec<(u8, String)> = Vec::new();
    for ((kind, key), _) in o.iter().filter(|(k, _)| !n.contains_key(*k)) {
        match kind {
            3 => {
                let mut w = key.split(' ');
                let (k, a, _, rs) = (w.next(), w.next(), w.next(), w.next());
                cmds.push((
                    0,
                    format!("-d {} {} -r {}", k.unwrap_or(""), a.unwrap_or(""), rs.unwrap_or("")),
                ));
            }
            2 => cmds.push((1, format!("-D {key}"))),
            _ => {}
        }
    }
    for (k, line) in &n {
        match o.get(k) {
            Some(prev) if prev == line => {}
            Some(_) if k.0 == 2 => cmds.push((2, line.replacen("-A", "-E", 1))),
            Some(_) if k.0 == 3 => cmds.push((3, line.replacen("-a", "-e", 1))),
            _ => cmds.push((k.0, line.clone())),
        }
    }
    cmds.sort_by_key(|c| c.0);
    cmds.into_iter().map(|c| c.1).collect()
}

/// Apply one [`reload_diff`] command to the live table; an `-A`/`-a` of something a
/// live edit already added becomes `-E`/`-e`.
pub fn apply_line(ctl: &Ctl, line: &str) -> Result<(), String> {
    if let Some(a) = line.strip_prefix("sysctl ") {
        return crate::sysctl::apply(&ctl.shared().ipvs, &[a.to_string()]).map(|_| ());
    }
    let words = crate::ipvsadm::rules::line_tokens(line);
    let cmd = crate::ipvsadm::parse_args(&words).map_err(|e| e.message)?;
    match ctl.apply(&cmd) {
        Err(e) if e == crate::ctl::E_SVC_EXISTS || e == crate::ctl::E_DEST_EXISTS => {
            let edit = if e == crate::ctl::E_SVC_EXISTS {
                line.replacen("-A", "-E", 1)
            } else {
                line.replacen("-a", "-e", 1)
            };
            let words = crate::ipvsadm::rules::line_tokens(&edit);
            let cmd = crate::ipvsadm::parse_args(&words).map_err(|e| e.message)?;
            ctl.apply(&cmd).map_err(|e| e.to_string())
        }
        r => r.map_err(|e| e.to_string()),
    }
}

/// At start: read the state file at `path` and, when it was saved from the same
/// configuration (`config`: [`fnv64`] of the [`body`] that `--rules` and the options
/// give), replace the table by it. Says in the log what it found: no file, a director
/// that did not stop cleanly (its connections are lost), another configuration or
/// format (not restored). Returns what the ready line reports, if restored.
pub fn restore_at_start(ctl: &Ctl, path: &Path, config: u64) -> Option<String> {
    let st = match read(path) {
        Ok(Some(st)) => st,
        Ok(None) => {
            tracing::info!("no state file {}: starting from the configuration", path.display());
            return None;
        }
        Err(e) => {
            tracing::warn!("state file {e}; starting from the configuration");
            return None;
        }
    };
    let age = unix_now().saturating_sub(st.saved);
    if !st.clean {
        tracing::warn!(
            "the previous director (pid {}) did not stop cleanly (killed or crashed; its state \
             was last saved {age} s ago): its connection table and persistence templates are lost. \
             Established connections through it break unless sloppy_tcp=1 lets a mid-stream packet \
             create an entry again (README \"Restarts and the state file\")",
            st.pid
        );
    }
    if st.config != config {
        tracing::warn!(
            "state file {} was saved from another configuration (--rules or options changed \
             since): starting from the configuration; the previous live table is not restored",
            path.display()
        );
        return None;
    }
    match restore(ctl, &st.body) {
        Ok(n) => {
            let what = format!("table restored from {} ({n} lines, saved {age} s ago)", path.display());
            tracing::info!("{what}");
            Some(what)
        }
        Err(e) => {
            tracing::warn!("state file {}: {e}; starting from the configuration", path.display());
            None
        }
    }
}

/// SIGHUP: re-read `rules` with the options' settings into a scratch table, and apply
/// the difference between the configuration as last read (`config_body`) and now to
/// the live table ([`reload_diff`]: live edits to what the file leaves alone stay).
/// Each command is logged. A bad file changes nothing. Returns the new configuration's
/// fingerprint.
pub fn reread_rules(
    rules: &Path,
    hardening: &super::harden::Hardening,
    ctl: &Ctl,
    config_body: &mut String,
) -> Result<u64, String> {
    let scratch = Ctl::new(Arc::new(Shared::new(Vec::new())));
    super::harden::apply_settings(hardening, scratch.shared())?;
    let n = super::load_rules(&scratch, rules)?;
    let new = body(scratch.shared());
    let cmds = reload_diff(config_body, &new);
    tracing::warn!(
        "SIGHUP: re-read {} ({n} rules): {} change(s) to apply; live edits to anything else are kept",
        rules.display(),
        cmds.len()
    );
    for c in &cmds {
        match apply_line(ctl, c) {
            Ok(()) => tracing::warn!("SIGHUP: applied `{c}`"),
            Err(e) => tracing::warn!("SIGHUP: `{c}` failed: {e} (a live edit changed it)"),
        }
    }
    *config_body = new;
    Ok(fnv64(config_body.as_bytes()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The writer thread: rewrites the state file (coalesced, at most every `PERIOD`) when
/// the change counter moved and the table's text changed, and once more, marked clean,
/// when stopped.
pub struct Persister {
    stop: Arc<AtomicBool>,
    config: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

/// How often the writer looks at the change counter.
const PERIOD: Duration = Duration::from_millis(100);

impl Persister {
    /// Start writing `path` for the table of `sh`; `changes` is bumped by whoever may
    /// have changed it (the control socket, SIGHUP).
    pub fn start(path: PathBuf, sh: Arc<Shared>, changes: Arc<AtomicU64>, config: u64) -> Persister {
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = Arc::new(AtomicU64::new(config));
        let (s, c) = (stop.clone(), cfg.clone());
        let handle = std::thread::Builder::new()
            .name("uvs-state".into())
            .spawn(move || {
                let mut w = Writer {
                    path,
                    last: None,
                    failing: false,
                };
                let mut seen = None;
                loop {
                    let stopping = s.load(Ordering::Relaxed);
                    let now = changes.load(Ordering::Acquire);
                    if seen != Some(now) || stopping {
                        seen = Some(now);
                        w.write(&sh, c.load(Ordering::Relaxed), stopping);
                    }
                    if stopping {
                        return;
                    }
                    std::thread::sleep(PERIOD);
                }
            })
            .ok();
        Persister {
            stop,
            config: cfg,
            handle,
        }
    }

    /// The configuration the table now derives from (after a SIGHUP re-read).
    pub fn set_config(&self, config: u64) {
        self.config.store(config, Ordering::Relaxed);
    }

    /// The configuration fingerprint it writes (shared: a SIGHUP changes it).
    pub fn config(&self) -> Arc<AtomicU64> {
        self.config.clone()
    }

    /// Write a last time, marked clean, and end the thread.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Writer {
    path: PathBuf,
    /// What was last written: (config, clean, body).
    last: Option<(u64, bool, String)>,
    failing: bool,
}

impl Writer {
    fn write(&mut self, sh: &Shared, config: u64, clean: bool) {
        let body = body(sh);
        if self
            .last
            .as_ref()
            .is_some_and(|(c, k, b)| *c == config && *k == clean && *b == body)
        {
            return;
        }
        let st = State {
            pid: std::process::id(),
            clean,
            config,
            saved: unix_now(),
            body,
        };
        match write_atomic(&self.path, &render(&st)) {
            Ok(()) => {
                if self.failing {
                    tracing::warn!("state file {} written again", self.path.display());
                }
                self.failing = false;
                self.last = Some((config, clean, st.body));
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(
                        "cannot write the state file {}: {e} (the live table will not survive a restart)",
                        self.path.display()
                    );
                }
                self.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctl() -> Ctl {
        Ctl::new(Arc::new(Shared::new(Vec::new())))
    }

    fn load(ctl: &Ctl, rules: &str) {
        for (_, c) in crate::ipvsadm::rules::parse_rules(rules).unwrap() {
            ctl.apply(&c).unwrap();
        }
    }

    const RULES: &str = "-A -t 10.0.0.1:80 -s wlc -p 300\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 2\n\
                         -a -t 10.0.0.1:80 -r 10.1.0.2:80 -m\n-A -u 10.0.0.1:53 -s sh\n--set 900 60 200\n";

    #[test]
    fn body_round_trips_through_the_file_and_restore() {
        let a = ctl();
        load(&a, RULES);
        crate::sysctl::apply(&a.shared().ipvs, &["sloppy_tcp=1".into(), "am_droprate=7".into()]).unwrap();
        let st = State {
            pid: 42,
            clean: false,
            config: 0xdead_beef,
            saved: 1_765_000_000,
            body: body(a.shared()),
        };
        assert!(st.body.contains("sysctl sloppy_tcp=1\n"), "{}", st.body);
        assert!(st.body.contains("--set 900 60 200\n"), "{}", st.body);
        assert!(
            st.body.contains("-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 2\n"),
            "{}",
            st.body
        );
        let text = render(&st);
        assert_eq!(parse(&text), Ok(st.clone()));
        let b = ctl();
        load(&b, "-A -t 10.9.9.9:1 -s rr\n");
        assert_eq!(restore(&b, &st.body), Ok(5));
        assert_eq!(body(b.shared()), st.body);
    }

    #[test]
    fn refuses_other_versions_and_cut_files() {
        let st = State {
            pid: 1,
            clean: true,
            config: 1,
            saved: 2,
            body: "-A -t 10.0.0.1:80 -s rr\n".into(),
        };
        let text = render(&st);
        let v2 = text.replace("uvs-state 1", "uvs-state 2");
        assert_eq!(
            parse(&v2).unwrap_err(),
            "state format version 2, this uvs reads version 1 only (written by another uvs release): not restored"
        );
        let cut = &text[..text.len() - 4];
        assert_eq!(parse(cut).unwrap_err(), "bad state file: cut short (no `end` line)");
        assert!(parse("hello\n").unwrap_err().starts_with("not a uvs state file"));
        // A bad body restores nothing.
        let c = ctl();
        load(&c, "-A -t 10.9.9.9:1 -s rr\n");
        let before = body(c.shared());
        assert!(restore(&c, "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.2:80 -r 10.1.0.1\n").is_err());
        assert_eq!(body(c.shared()), before);
    }

    #[test]
    fn reload_keeps_live_edits_and_applies_the_rules_difference() {
        let old = ctl();
        load(&old, RULES);
        let new = ctl();
        // Changed: 10.1.0.1's weight and the UDP scheduler; gone: 10.1.0.2; new: a service.
        load(
            &new,
            "-A -t 10.0.0.1:80 -s wlc -p 300\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 5\n\
             -A -u 10.0.0.1:53 -s rr\n-A -t 10.0.0.2:443 -s rr\n-a -t 10.0.0.2:443 -r 10.1.0.9:443 -g\n--set 900 60 200\n",
        );
        let diff = reload_diff(&body(old.shared()), &body(new.shared()));
        assert_eq!(
            diff,
            [
                "-d -t 10.0.0.1:80 -r 10.1.0.2:80",
                "-A -t 10.0.0.2:443 -s rr",
                "-E -u 10.0.0.1:53 -s rr",
                "-e -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 5",
                "-a -t 10.0.0.2:443 -r 10.1.0.9:443 -g -w 1",
            ]
        );
        // The live table: the old rules plus a live edit (a third server).
        let live = ctl();
        load(&live, RULES);
        load(&live, "-a -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 3\n");
        for l in &diff {
            apply_line(&live, l).unwrap();
        }
        let b = body(live.shared());
        assert!(
            b.contains("-a -t 10.0.0.1:80 -r 10.1.0.3:80 -m -w 3\n"),
            "live edit kept: {b}"
        );
        assert!(b.contains("-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 5\n"), "{b}");
        assert!(!b.contains("10.1.0.2:80"), "{b}");
        assert!(b.contains("-A -u 10.0.0.1:53 -s rr\n"), "{b}");
        // An -A for a service that a live edit already added becomes -E.
        load(&old, "-A -t 10.0.0.7:80 -s rr\n");
        assert_eq!(apply_line(&old, "-A -t 10.0.0.7:80 -s wlc"), Ok(()));
        assert!(body(old.shared()).contains("-A -t 10.0.0.7:80 -s wlc\n"));
    }

    #[test]
    fn persister_coalesces_and_marks_a_clean_stop() {
        let dir = std::env::temp_dir().join(format!("uvs-state-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.state");
        let c = Arc::new(ctl());
        let changes = Arc::new(AtomicU64::new(0));
        let p = Persister::start(path.clone(), c.shared().clone(), changes.clone(), 7);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while read(&path).unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = read(&path).unwrap().expect("written at start");
        assert!(!first.clean);
        assert_eq!((first.pid, first.config), (std::process::id(), 7));
        // 2,000 changes in a burst: written within a few periods, whole.
        for i in 0..2000u32 {
            c.add_service(
                &crate::ipvsadm::parse_args(&["-A", "-t", &format!("10.2.{}.{}:80", i / 250, i % 250 + 1)])
                    .map(|c| match c {
                        crate::ipvsadm::Command::AddService(s) => s,
                        _ => unreachable!(),
                    })
                    .unwrap(),
            )
            .unwrap();
        }
        changes.fetch_add(1, Ordering::Release);
        p.finish();
        let last = read(&path).unwrap().unwrap();
        assert!(last.clean);
        assert_eq!(last.body.lines().filter(|l| l.starts_with("-A")).count(), 2000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dropped_user_may_write_only_where_its_bits_say() {
        assert!(may_write(0o700, 7, 0, 7, 7));
        assert!(!may_write(0o700, 0, 0, 7, 7));
        assert!(may_write(0o770, 0, 7, 7, 7));
        assert!(!may_write(0o750, 0, 7, 7, 7));
        assert!(may_write(0o1777, 0, 0, 7, 7));
        assert!(!may_write(0o755, 0, 0, 7, 7));
        // The owner's bits decide for the owner, even when others may write.
        assert!(!may_write(0o577, 7, 0, 7, 7));
    }

    /// `--user`: uvs's own runtime directory is handed over; /tmp-like directories
    /// are not, but the file in them is; any other directory is a clear error.
    #[test]
    fn hand_to_user_gives_the_runtime_directory_and_nothing_shared() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !nix::unistd::geteuid().is_root() {
            eprintln!("\n*** SKIPPED hand_to_user_...: needs root (chown) ***\n");
            return;
        }
        let base = std::env::temp_dir().join(format!("uvs-state-user-{}", std::process::id()));
        let run = base.join("run");
        let shared = base.join("shared");
        let other = base.join("other");
        for (d, mode) in [(&run, 0o700), (&shared, 0o1777), (&other, 0o755)] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let (uid, gid) = (65534, 65534);
        // The runtime directory (the socket's): given to the user, the file too.
        std::fs::write(run.join("control.state"), "x").unwrap();
        hand_to_user(&run.join("control.state"), Some(&run), uid, gid).unwrap();
        assert_eq!(std::fs::metadata(&run).unwrap().uid(), uid);
        assert_eq!(std::fs::metadata(run.join("control.state")).unwrap().uid(), uid);
        // A sticky shared directory stays root's; the existing file becomes the user's.
        std::fs::write(shared.join("control.state"), "x").unwrap();
        hand_to_user(&shared.join("control.state"), Some(&shared), uid, gid).unwrap();
        assert_eq!(std::fs::metadata(&shared).unwrap().uid(), 0);
        assert_eq!(std::fs::metadata(shared.join("control.state")).unwrap().uid(), uid);
        // No state file yet: nothing to give.
        hand_to_user(&shared.join("none.state"), None, uid, gid).unwrap();
        // A directory that is not uvs's own: refused, and left alone.
        let e = hand_to_user(&other.join("control.state"), Some(&run), uid, gid).unwrap_err();
        assert!(e.contains("cannot write") && e.contains("--state"), "{e}");
        assert_eq!(std::fs::metadata(&other).unwrap().uid(), 0);
        let _ = std::fs::remove_dir_all(&base);
    }

    /// The writer killed mid-write (SIGKILL, at random points of a loop rewriting a
    /// large table, in a child process): the file is always one of the complete tables.
    #[test]
    fn a_killed_writer_leaves_the_old_or_the_new_file() {
        let dir = std::env::temp_dir().join(format!("uvs-state-kill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.state");
        let exe = std::env::current_exe().unwrap();
        let mut seen = std::collections::HashSet::new();
        for round in 0..12u64 {
            let mut child = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "director::state::tests::writer_child",
                    "--ignored",
                    "--nocapture",
                ])
                .env("UVS_STATE_WRITER", &path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(60 + (round * 37) % 150));
            child.kill().unwrap();
            child.wait().unwrap();
            if let Some(st) = read(&path).unwrap() {
                let n = st.body.lines().filter(|l| l.starts_with("-a")).count();
                assert_eq!(n, 20_000, "round {round}: a complete table");
                assert_eq!(fnv64(st.body.as_bytes()), st.config, "round {round}: its own body");
                seen.insert(st.config);
            }
        }
        assert!(!seen.is_empty(), "the writer never finished a file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Child of the test above: rewrites a 20,000-server table in a loop, each version
    /// different (its fingerprint recorded in `config`).
    #[test]
    #[ignore]
    fn writer_child() {
        let Some(path) = std::env::var_os("UVS_STATE_WRITER") else {
            return;
        };
        for round in 0u64.. {
            let mut body = String::new();
            for i in 0..20_000u64 {
                body.push_str(&format!(
                    "-a -t 10.0.0.1:80 -r 10.{}.{}.{}:80 -m -w {}\n",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255,
                    round
                ));
            }
            let st = State {
                pid: 1,
                clean: false,
                config: fnv64(body.as_bytes()),
                saved: round,
                body,
            };
            write_atomic(Path::new(&path), &render(&st)).unwrap();
        }
    }
}
