//! Restarts (README "Restarts and the state file"): live ipvsadm edits survive a
//! SIGTERM restart through the state file; a SIGKILLed director is reported by the
//! next start, which still restores its last table; a changed rules file wins over a
//! state file saved from the old one; SIGHUP applies the rules file's difference and
//! keeps live edits; what a crash restart recovers with sloppy_tcp=1 and sh (a NAT and
//! a DR download through a SIGKILL) and what it does not without. Real directors in
//! namespaces (the DR bed of tests/dr.rs, the NAT bed of tests/nat.rs).

mod common;
use common::*;

use std::time::Duration;

/// `uvs adm ARGS` against the bed's director: (status, stdout + stderr).
fn adm(lvs: &Lvs, line: &str) -> (Option<i32>, String) {
    adm_at(&lvs.control_path(), line)
}

fn adm_ok(lvs: &Lvs, line: &str) -> String {
    let (code, out) = adm(lvs, line);
    assert_eq!(code, Some(0), "ipvsadm {line}: {out}");
    out
}

fn state_path(lvs: &Lvs) -> std::path::PathBuf {
    lvs.control_path().with_extension("state")
}

/// Wait (bounded) until the state file holds `line`.
fn wait_saved(lvs: &Lvs, line: &str) {
    let p = state_path(lvs);
    let ok = wait_file_has(&p, 5, line);
    assert!(ok, "state file never held `{line}`: {:?}", std::fs::read_to_string(&p));
}

fn sysctl(lvs: &Lvs, words: &[&str]) -> String {
    let mut args = vec!["sysctl"];
    args.extend_from_slice(words);
    uvs_out(lvs, &args)
}

#[test]
fn live_edits_survive_restart_and_crash_and_yield_to_changed_rules() {
    require_root!();
    let mut lvs = dr("rsa");
    let _cleanup = Cleanup(state_path(&lvs));
    lvs.start_director(DR_RULES, &["--workers", "1"]).unwrap();
    assert!(lvs.http_names(2).len() == 2, "forwards before the edits");
    // Live edits: a weight, a new service, a sysctl.
    adm_ok(&lvs, "-e -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 3");
    adm_ok(&lvs, "-A -u 10.77.0.100:53 -s sh");
    sysctl(&lvs, &["sloppy_tcp=1"]);
    wait_saved(&lvs, "-A -u 10.77.0.100:53 -s sh");
    wait_saved(&lvs, "sysctl sloppy_tcp=1");
    let before = adm_ok(&lvs, "-S -n");
    assert!(before.contains("-r 10.77.0.12:80 -g -w 3"), "{before}");

    // 1. A clean restart (SIGTERM, as systemctl restart): the edits are back, no warning.
    let log = lvs.stop_director();
    assert!(log.contains("uvs: stopped"), "{log}");
    assert!(
        std::fs::read_to_string(state_path(&lvs))
            .unwrap()
            .contains("\nclean 1\n")
    );
    lvs.start_director(DR_RULES, &["--workers", "1"]).unwrap();
    let log = lvs.director_log();
    assert!(log.contains("table restored from"), "{log}");
    assert!(!log.contains("did not stop cleanly"), "{log}");
    assert_eq!(adm_ok(&lvs, "-S -n"), before);
    assert_eq!(sysctl(&lvs, &["-n", "sloppy_tcp"]), "1\n");
    let names = lvs.http_names(8);
    assert_eq!(names.len(), 8, "forwards after the restart: {names:?}");

    // 2. SIGKILL: the next start says the connections were lost, and restores the table.
    adm_ok(&lvs, "-a -u 10.77.0.100:53 -r 10.77.0.11:53 -g -w 1");
    wait_saved(&lvs, "-a -u 10.77.0.100:53 -r 10.77.0.11:53 -g -w 1");
    let pid = lvs.director_pid.unwrap();
    signal(pid, Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(200));
    lvs.stop_director();
    assert!(
        std::fs::read_to_string(state_path(&lvs))
            .unwrap()
            .contains("\nclean 0\n")
    );
    lvs.start_director(DR_RULES, &["--workers", "1"]).unwrap();
    let log = lvs.director_log();
    assert!(
        log.contains(&format!("the previous director (pid {pid}) did not stop cleanly")),
        "{log}"
    );
    assert!(
        log.contains("connection table and persistence templates are lost"),
        "{log}"
    );
    assert!(log.contains("table restored from"), "{log}");
    let after = adm_ok(&lvs, "-S -n");
    assert!(
        after.contains("-a -u 10.77.0.100:53 -r 10.77.0.11:53 -g -w 1"),
        "{after}"
    );

    // 3. The rules file changed while stopped: the configuration wins, and the log says
    // the live table was not restored.
    lvs.stop_director();
    let changed = format!("{DR_RULES}-A -t 10.77.0.100:443 -s wlc\n");
    lvs.start_director(&changed, &["--workers", "1"]).unwrap();
    let log = lvs.director_log();
    assert!(log.contains("was saved from another configuration"), "{log}");
    let table = adm_ok(&lvs, "-S -n");
    assert!(table.contains("-A -t 10.77.0.100:443 -s wlc"), "{table}");
    assert!(!table.contains("10.77.0.100:53"), "{table}");
    assert!(table.contains("-r 10.77.0.12:80 -g -w 1"), "{table}");
    lvs.stop_director();
}

#[test]
fn sighup_applies_the_rules_difference_and_keeps_live_edits() {
    require_root!();
    let mut lvs = dr("rsh");
    let _cleanup = Cleanup(state_path(&lvs));
    lvs.start_director(DR_RULES, &["--workers", "1"]).unwrap();
    // A live edit the rules file knows nothing about…
    adm_ok(&lvs, "-A -u 10.77.0.100:53 -s rr");
    // …and a new rules file: one server's weight changes, the other goes, a service comes.
    let rules = std::env::temp_dir().join(format!("{}-rules", lvs.bed.prefix));
    std::fs::write(
        &rules,
        "-A -t 10.77.0.100:80 -s rr\n-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 4\n-A -t 10.77.0.100:443 -s rr\n",
    )
    .unwrap();
    let pid = lvs.director_pid.unwrap();
    signal(pid, Signal::SIGHUP);
    assert!(wait_until(5, || lvs
        .director_log()
        .contains("SIGHUP: applied `-A -t 10.77.0.100:443 -s rr`")));
    let table = adm_ok(&lvs, "-S -n");
    assert_eq!(
        table,
        "-A -t 10.77.0.100:80 -s rr\n-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 4\n\
         -A -t 10.77.0.100:443 -s rr\n-A -u 10.77.0.100:53 -s rr\n"
    );
    let log = lvs.director_log();
    assert!(
        log.contains("SIGHUP: applied `-d -t 10.77.0.100:80 -r 10.77.0.12:80`"),
        "{log}"
    );
    // The state file now belongs to the new rules: a restart restores the live edit.
    wait_saved(&lvs, "-A -t 10.77.0.100:443 -s rr");
    lvs.stop_director();
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    lvs.start_director(&rules_text, &["--workers", "1"]).unwrap();
    assert!(
        lvs.director_log().contains("table restored from"),
        "{}",
        lvs.director_log()
    );
    assert_eq!(adm_ok(&lvs, "-S -n"), table);
    assert!(lvs.stop_director().contains("uvs: stopped"));
}

/// A download through the director, SIGKILL, a new director (the same command line):
/// (curl's exit code, bytes received, the new director's log). `sloppy` is set live
/// with `uvs sysctl`, so the state file brings it back with the table. `keepalive`:
/// the client sends a TCP keepalive probe after 1 s without data.
fn crash_mid_download(
    lvs: &mut Lvs,
    rules: &str,
    sloppy: bool,
    keepalive: bool,
    max_secs: u64,
) -> (Option<i32>, usize, String) {
    const SIZE: usize = 6 << 20;
    let _cleanup = Cleanup(state_path(lvs));
    lvs.start_director(rules, &["--workers", "1"]).unwrap();
    if sloppy {
        sysctl(lvs, &["sloppy_tcp=1"]);
        wait_saved(lvs, "sysctl sloppy_tcp=1");
    }
    let probes: &[&str] = if keepalive { &["--keepalive-time", "1"] } else { &[] };
    let curl = download(lvs, SIZE, "1000K", max_secs, probes);
    // The crash must hit the connection mid-stream: its entry is established, and
    // about 2 MB (1000 KB/s) have gone through.
    assert!(
        wait_until(10, || adm(lvs, "-L -n -c").1.contains("ESTABLISHED")),
        "the download never started: {}",
        adm(lvs, "-L -n -c").1
    );
    std::thread::sleep(Duration::from_secs(2));
    let pid = lvs.director_pid.unwrap();
    signal(pid, Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    lvs.stop_director();
    lvs.start_director(rules, &["--workers", "1"]).unwrap();
    let (code, got) = finish(curl);
    let log = lvs.director_log();
    lvs.stop_director();
    assert!(log.contains("table restored from"), "{log}");
    assert!(log.contains("did not stop cleanly"), "{log}");
    println!(
        "crash mid-download, sloppy_tcp={}: curl exit {:?}, {got} of {SIZE} bytes",
        sloppy as u8, code
    );
    if sloppy {
        assert_eq!(
            (code, got),
            (Some(0), SIZE),
            "the download survives the crash with sloppy_tcp=1 and sh\n{log}"
        );
    }
    (code, got, log)
}

/// Issue 19.2 (README "Restarts and the state file"): after a SIGKILL the connection
/// entries are gone. In NAT with sloppy_tcp=1 and sh, the client's next segment (here
/// a keepalive probe: a downloading client sends nothing until data reaches it, and
/// the real server's retransmissions have no entry to be translated by) creates an
/// entry again, sh picks the same real server (same client address, same servers),
/// the server's next retransmission is translated again, and the download completes.
#[test]
fn nat_download_survives_a_crash_with_sloppy_tcp_and_sh() {
    require_root!();
    let mut lvs = Lvs::nat("rcn", UVS, false, false, false).expect("NAT bed");
    crash_mid_download(&mut lvs, &NAT_RULES.replace("-s rr", "-s sh"), true, true, 30);
}

/// The same in DR, with no help from the client: the real server's data never crosses
/// the director, so the client keeps acknowledging, and its ACKs reach the same real
/// server again.
#[test]
fn dr_download_survives_a_crash_with_sloppy_tcp_and_sh() {
    require_root!();
    let mut lvs = dr("rcd");
    crash_mid_download(&mut lvs, &DR_RULES.replace("-s rr", "-s sh"), true, false, 30);
}

/// Without sloppy_tcp (IPVS's default) the new director drops the mid-stream segments
/// (tcp_not_syn: only a SYN creates an entry), keepalive probes included, and the
/// download stalls until curl gives up.
#[test]
fn without_sloppy_tcp_a_crash_breaks_the_download() {
    require_root!();
    let mut lvs = Lvs::nat("rcx", UVS, false, false, false).expect("NAT bed");
    let (code, got, _) = crash_mid_download(&mut lvs, &NAT_RULES.replace("-s rr", "-s sh"), false, true, 10);
    assert!(code != Some(0) && got < 6 << 20, "curl {code:?}, {got} bytes");
}
