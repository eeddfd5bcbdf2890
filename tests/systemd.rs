//! The Debian package and the systemd unit (README "Install and run"), tested without
//! touching the host: `uvs run` started as the unit starts it, with a NOTIFY_SOCKET the
//! test binds, says READY=1 once it forwards (and STOPPING=1 at SIGTERM);
//! `systemd-analyze verify` accepts the unit; `cargo deb` builds a package holding the
//! binary, uvs-ipvsadm, the example rules, /etc/default/uvs and the unit, with the two
//! /etc files as conffiles. Tools that are missing make their test skip loudly.

mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RULES: &str = "\
-A -t 10.77.0.100:80 -s rr
-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 1
-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 1
";

fn skip(what: &str) {
    eprintln!("\n*** SKIPPED {what} ***\n");
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn run_as_the_unit_notifies_ready_once_it_forwards() {
    require_root!();
    let mut lvs = dr("sdn");
    let dir = std::env::temp_dir();
    let sock = dir.join(format!("{}-notify.sock", lvs.bed.prefix));
    let _ = std::fs::remove_file(&sock);
    let notify = UnixDatagram::bind(&sock).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let rules = dir.join(format!("{}-rules", lvs.bed.prefix));
    std::fs::write(&rules, RULES).unwrap();
    let control = lvs.control_path();
    let env = format!("NOTIFY_SOCKET={}", sock.display());
    let (r, c) = (
        rules.to_string_lossy().to_string(),
        control.to_string_lossy().to_string(),
    );
    let mut args = vec![
        "env",
        &env,
        UVS,
        "run",
        "--rules",
        &r,
        "--control",
        &c,
        "--workers",
        "2",
    ];
    let ifaces = lvs.director_ifaces.clone();
    for i in &ifaces {
        args.extend(["--iface", i.as_str()]);
    }
    let log = std::fs::File::create(&lvs.log).unwrap();
    lvs.director_pid = Some(lvs.bed.spawn("dir", &args, Some(log)).unwrap());
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a notification within 10 s");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert_eq!(msg.trim_end(), "READY=1");
    // Sent with the ready line, when the workers forward: traffic passes right away.
    assert!(lvs.director_log().contains("director ready"), "{}", lvs.director_log());
    let names = lvs.http_names(4);
    assert_eq!(names.len(), 4, "forwards once ready: {names:?}");
    let log = lvs.stop_director();
    let n = notify.recv(&mut buf).expect("STOPPING=1 at SIGTERM");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim_end(), "STOPPING=1");
    assert!(log.contains("uvs: stopped"), "{log}");
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(control.with_extension("state"));
}

#[test]
fn systemd_analyze_accepts_the_unit() {
    if !have("systemd-analyze") {
        return skip("systemd_analyze_accepts_the_unit: no systemd-analyze (apt-get install systemd)");
    }
    // The unit as installed, but with ExecStart on the binary under test (verify checks
    // that the command exists) and in a scratch directory.
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pkg/uvs.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/uvs run $UVS_OPTS"));
    let dir = std::env::temp_dir().join(format!("uvs-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("uvs.service");
    std::fs::write(&path, unit.replace("/usr/sbin/uvs", UVS)).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let _ = std::fs::remove_dir_all(&dir);
    // Only complaints about this unit count (verify also loads the host's units).
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("uvs.service")).collect();
    assert!(ours.is_empty() && o.status.success(), "systemd-analyze verify: {err}");
}

#[test]
fn cargo_deb_builds_the_package() {
    if Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        return skip(
            "cargo_deb_builds_the_package: no cargo-deb (cargo install cargo-deb; then `cargo deb` builds \
             target/debian/uvs_*.deb)",
        );
    }
    if !have("dpkg-deb") {
        return skip("cargo_deb_builds_the_package: no dpkg-deb");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("target/release/uvs").exists() {
        return skip("cargo_deb_builds_the_package: no target/release/uvs (run with --release)");
    }
    let out = std::env::temp_dir().join(format!("uvs-deb-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let o = Command::new("cargo")
        .args(["deb", "--no-build", "--no-strip", "--output"])
        .arg(&out)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(o.status.success(), "cargo deb: {}", String::from_utf8_lossy(&o.stderr));
    let deb = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb");
    let list = Command::new("dpkg-deb").arg("-c").arg(&deb).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    for f in [
        "./usr/sbin/uvs\n",
        "./usr/sbin/uvs-ipvsadm\n",
        "./etc/uvs/rules\n",
        "./etc/default/uvs\n",
        "/systemd/system/uvs.service\n",
    ] {
        assert!(list.contains(f), "{f} missing from the package:\n{list}");
    }
    assert!(
        !list.contains("sbin/ipvsadm\n"),
        "must not clash with Debian's ipvsadm:\n{list}"
    );
    let info = Command::new("dpkg-deb")
        .args(["-e"])
        .arg(&deb)
        .arg(out.join("control"))
        .output()
        .unwrap();
    assert!(info.status.success());
    let conffiles = std::fs::read_to_string(out.join("control/conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/uvs/rules") && conffiles.contains("/etc/default/uvs"),
        "{conffiles}"
    );
    let postinst = std::fs::read_to_string(out.join("control/postinst")).unwrap_or_default();
    assert!(
        !postinst.contains("enable uvs.service"),
        "the unit must not be enabled at install:\n{postinst}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
