//! `uvs simulate` end to end: every scenario under `scenarios/` is run through the
//! binary and its output compared byte for byte with the `.out` file next to it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "scn"))
        .collect();
    v.sort();
    v
}

#[test]
fn scenarios_match_their_expected_output() {
    let all = scenarios();
    for name in ["rr", "wrr", "dh", "persistence", "onepacket"] {
        assert!(
            all.iter().any(|p| p.file_stem().unwrap() == name),
            "scenarios/{name}.scn missing"
        );
    }
    for scn in all {
        let want = std::fs::read_to_string(scn.with_extension("out")).expect("expected output file");
        let out = Command::new(env!("CARGO_BIN_EXE_uvs"))
            .arg("simulate")
            .arg(&scn)
            .output()
            .expect("run uvs");
        assert!(
            out.status.success(),
            "{}: {}",
            scn.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).unwrap();
        assert!(got == want, "{}:\n--- got\n{got}--- want\n{want}", scn.display());
    }
}

/// `uvs simulate` reading `input` from its stdin.
fn simulate_stdin(input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uvs"))
        .arg("simulate")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn reads_stdin_without_a_file() {
    let out = simulate_stdin(
        b"-A -u 10.0.0.100:53 -s rr\n-a -u 10.0.0.100:53 -r 10.0.0.11\nconnect UDP 192.0.2.1:9 10.0.0.100:53\n",
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "UDP 192.0.2.1:9 -> 10.0.0.11:53\n"
    );
}

#[test]
fn errors_name_the_line_and_fail() {
    let out = simulate_stdin(b"-A -t 10.0.0.100:80 -s rr\nconnect TCP 192.0.2.1:9 10.0.0.100:80\nwibble 3\nlist\n");
    assert!(!out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "TCP 192.0.2.1:9 -> none\n");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("line 3: `wibble 3': unknown command 'wibble'"), "{err}");
}
