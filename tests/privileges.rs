//! Least privilege (issue 7): `uvs run` drops every capability but CAP_NET_RAW once its
//! sockets are open (in every thread), optionally becomes `--user`, keeps forwarding
//! (the fanout program is installed after the drop), and a user who may not use the
//! control socket gets a clear error from `uvs adm`.

mod common;
use common::*;

use std::os::unix::process::CommandExt;

const RULES: &str = "\
-A -t 10.77.0.100:80 -s rr
-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 1
-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 1
";

const NOBODY: u32 = 65534;

/// `field` (e.g. "CapEff:") of every thread of `pid`.
fn per_thread(pid: u32, field: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let s = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap();
            let l = s.lines().find(|l| l.starts_with(field)).unwrap();
            l[field.len()..].trim().to_string()
        })
        .collect()
}

fn adm_as(uid: u32, socket: &std::path::Path) -> std::process::Output {
    std::process::Command::new(UVS)
        .args(["adm", "-L", "-n"])
        .env("UVS_CONTROL", socket)
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap()
}

#[test]
fn run_keeps_only_net_raw_in_every_thread_and_still_forwards() {
    require_root!();
    let mut lvs = dr("priv");
    lvs.start_director(RULES, &["--workers", "2", "--user", "nobody"])
        .unwrap();
    let pid = lvs.director_pid.unwrap();
    let eff = per_thread(pid, "CapEff:");
    assert!(eff.len() >= 3, "workers and control threads: {eff:?}");
    for f in ["CapEff:", "CapPrm:", "CapBnd:"] {
        for v in per_thread(pid, f) {
            assert_eq!(v, "0000000000002000", "{f} of every thread is CAP_NET_RAW only");
        }
    }
    for v in per_thread(pid, "Uid:") {
        assert!(v.split_whitespace().all(|u| u == "65534"), "running as nobody: {v}");
    }
    for v in per_thread(pid, "NoNewPrivs:") {
        assert_eq!(v, "1");
    }
    let names = lvs.http_names(4);
    assert!(
        names.iter().all(|n| n == "rs1" || n == "rs2"),
        "{names:?}\n{}",
        lvs.director_log()
    );
    // The control socket now belongs to the director's user.
    let out = adm_as(NOBODY, &lvs.control_path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.77.0.100:80"));
}

#[test]
fn adm_without_permission_gets_a_clear_error() {
    require_root!();
    let mut lvs = dr("padm");
    lvs.start_director(RULES, &["--workers", "1", "--keep-kernel-copy"])
        .unwrap();
    let pid = lvs.director_pid.unwrap();
    for v in per_thread(pid, "CapEff:") {
        assert_eq!(v, "0000000000002000", "root without --user keeps CAP_NET_RAW only");
    }
    let out = adm_as(NOBODY, &lvs.control_path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("permission denied on control socket"), "{err}");
}

#[test]
fn dropping_the_kernel_copy_by_default_keeps_net_admin_for_nft() {
    require_root!();
    if std::process::Command::new("nft").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no nft");
        return;
    }
    let mut lvs = dr("pnft");
    // No flag: the default drops the kernel's copy when nft is there.
    lvs.start_director(RULES, &["--workers", "1"]).unwrap();
    let pid = lvs.director_pid.unwrap();
    for v in per_thread(pid, "CapEff:") {
        assert_eq!(v, "0000000000003000", "CAP_NET_RAW and CAP_NET_ADMIN");
    }
    let table = format!("uvs_{pid}");
    let list = lvs.bed.exec_any("dir", &["nft", "list", "tables"]).unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains(&table));
    let names = lvs.http_names(2);
    assert!(names.iter().all(|n| n == "rs1" || n == "rs2"), "{names:?}");
    let log = lvs.stop_director();
    let list = lvs.bed.exec_any("dir", &["nft", "list", "tables"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&table),
        "the table is removed at exit (needs CAP_NET_ADMIN after the drop)\n{log}"
    );
}

/// `--user` keeps the state file (issue 19.3): the runtime directory (here a fresh one,
/// as systemd's RuntimeDirectory=uvs is /run/uvs, root's, 0700) is handed to the user
/// before the drop, so live edits made while running as nobody are saved and a
/// restart restores them, and the table a root director saved is taken over.
#[test]
fn user_keeps_writing_the_state_file() {
    require_root!();
    let mut lvs = dr("pst");
    let dir = std::env::temp_dir().join(format!("{}-run", lvs.bed.prefix));
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = RemoveDir(dir.clone());
    let sock = dir.join("control.sock");
    let state = dir.join("control.state");
    let s = sock.to_string_lossy().to_string();
    let adm = |line: &str| {
        let o = std::process::Command::new(UVS)
            .arg("adm")
            .args(line.split_whitespace())
            .env("UVS_CONTROL", &sock)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "ipvsadm {line}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let saved = |line: &str| wait_file_has(&state, 5, line);
    // 1. As root: a live edit, saved in a root-owned directory and file.
    lvs.start_director(RULES, &["--workers", "1", "--control", &s]).unwrap();
    adm("-A -u 10.77.0.100:53 -s rr");
    assert!(saved("-A -u 10.77.0.100:53 -s rr"), "{}", lvs.director_log());
    lvs.stop_director();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), 0);
    // 2. As nobody: root's table restored, then a live edit saved, a clean stop marked.
    lvs.start_director(RULES, &["--workers", "1", "--control", &s, "--user", "nobody"])
        .unwrap();
    let log = lvs.director_log();
    assert!(log.contains("table restored from"), "{log}");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().uid(),
        NOBODY,
        "the runtime directory is the user's"
    );
    adm("-e -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 5");
    assert!(
        saved("-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 5"),
        "{}",
        lvs.director_log()
    );
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), NOBODY);
    let log = lvs.stop_director();
    assert!(!log.contains("cannot write the state file"), "{log}");
    assert!(std::fs::read_to_string(&state).unwrap().contains("\nclean 1\n"));
    // 3. Restarted (as nobody again): both edits are back.
    lvs.start_director(RULES, &["--workers", "1", "--control", &s, "--user", "nobody"])
        .unwrap();
    let table = adm("-S -n");
    assert!(table.contains("-A -u 10.77.0.100:53 -s rr"), "{table}");
    assert!(table.contains("-r 10.77.0.12:80 -g -w 5"), "{table}");
    assert!(lvs.http_names(2).len() == 2, "forwards");
    lvs.stop_director();
}

/// Removes a directory at the end (even on panic).
struct RemoveDir(std::path::PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
