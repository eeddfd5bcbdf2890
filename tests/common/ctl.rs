//! The director's control socket from a test: `uvs adm` (ipvsadm), `uvs checks`,
//! `uvs sysctl`, and readers of `ipvsadm -L -n`; the rule sets several beds share.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{Lvs, UVS};

/// The DR bed's two real servers behind the VIP's port 80, round robin.
pub const DR_RULES: &str = "\
-A -t 10.77.0.100:80 -s rr
-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 1
-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 1
";

/// The NAT bed's two real servers (port 8080) behind the VIP's port 80, round robin.
pub const NAT_RULES: &str = "\
-A -t 192.168.77.100:80 -s rr
-a -t 192.168.77.100:80 -r 10.78.1.11:8080 -m -w 1
-a -t 192.168.77.100:80 -r 10.78.1.12:8080 -m -w 1
";

/// `uvs ARGS` against the director whose control socket is `control`.
pub fn uvs_at(control: &Path, args: &[&str]) -> Output {
    Command::new(UVS)
        .args(args)
        .env("UVS_CONTROL", control)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `uvs adm LINE` (words split on white space) against `control`: (exit status,
/// stdout followed by stderr).
pub fn adm_at(control: &Path, line: &str) -> (Option<i32>, String) {
    let mut args = vec!["adm"];
    args.extend(line.split_whitespace());
    let o = uvs_at(control, &args);
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code(), s)
}

/// stdout of `uvs ARGS` against the bed's director.
pub fn uvs_out(lvs: &Lvs, args: &[&str]) -> String {
    String::from_utf8_lossy(&uvs_at(&lvs.control_path(), args).stdout).into_owned()
}

/// `ipvsadm -L -n` of the bed's director.
pub fn list(lvs: &Lvs) -> String {
    uvs_out(lvs, &["adm", "-L", "-n"])
}

/// The first `-> RS` line of `ipvsadm -L -n` (`rs` as "10.77.0.11:80"), if listed.
pub fn rs_line(lvs: &Lvs, rs: &str) -> Option<String> {
    list(lvs)
        .lines()
        .find(|l| l.contains(&format!("-> {rs}")))
        .map(str::to_string)
}

/// The `-> RS` line under the service whose header contains `svc`.
pub fn svc_rs_line(lvs: &Lvs, svc: &str, rs: &str) -> Option<String> {
    let text = list(lvs);
    let mut inside = false;
    for l in text.lines() {
        if !l.trim_start().starts_with("->") {
            inside = l.contains(svc);
        } else if inside && l.contains(&format!("-> {rs}")) {
            return Some(l.to_string());
        }
    }
    None
}

/// The Weight column of a `-> RS` line.
pub fn weight(line: &str) -> Option<&str> {
    line.split_whitespace().nth(3)
}

/// Write `conf` to the bed's keepalived.conf and start `uvs run --workers 1
/// --keepalived FILE EXTRA…`; returns the file's path (to rewrite before a SIGHUP).
pub fn start_keepalived(lvs: &mut Lvs, conf: &str, extra: &[&str]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}-keepalived.conf", lvs.bed.prefix));
    std::fs::write(&path, conf).unwrap();
    let p = path.to_string_lossy().to_string();
    let mut args = vec!["--workers", "1", "--keepalived", &p];
    args.extend_from_slice(extra);
    lvs.start_director("", &args).unwrap();
    path
}

/// Removes a file (a director's state file) when dropped, also on panic.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
