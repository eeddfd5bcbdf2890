//! keepalived.conf: the fuzz corpus replayed on stable, and Debian's sample
//! configurations with `keepalived -t` as the oracle.

use std::path::Path;
use std::process::Command;

const UVS: &str = env!("CARGO_BIN_EXE_uvs");
const SAMPLES: &str = "/usr/share/doc/keepalived/samples";

#[test]
fn fuzz_corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/keepalived_conf");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        uvs::keepalived::fuzz_one(&bytes);
        for cut in (0..bytes.len()).step_by(7) {
            uvs::keepalived::fuzz_one(&bytes[..cut]);
        }
        n += 1;
    }
    assert!(n >= 4, "corpus has {n} files");
}

/// `(FILE: Line N) Unknown keyword 'X'` lines of a diagnostic output, file name dropped.
fn unknown_keywords(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.contains("Unknown keyword"))
        .filter_map(|l| l.split_once(": Line ").map(|(_, r)| r.to_string()))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn debian_samples_agree_with_keepalived_t() {
    let have_keepalived = Command::new("keepalived").arg("--version").output().is_ok();
    if !have_keepalived || !Path::new(SAMPLES).is_dir() {
        eprintln!(
            "\n*** SKIPPED debian_samples_agree_with_keepalived_t: needs Debian's keepalived (apt-get install keepalived) ***\n"
        );
        return;
    }
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(SAMPLES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("keepalived.conf."))
        .collect();
    entries.sort();
    for path in entries {
        let ka = Command::new("keepalived")
            .args(["-t", "-l", "-D", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        let ka_rc = ka.status.code().unwrap_or(-1);
        let ka_err = String::from_utf8_lossy(&ka.stderr).to_string();
        let ours = Command::new(UVS)
            .args(["check", "--config-id", "uvs-test", "--keepalived"])
            .arg(&path)
            .output()
            .unwrap();
        let rc = ours.status.code().unwrap_or(-1);
        let err = String::from_utf8_lossy(&ours.stderr).to_string();
        let name = path.display();
        // keepalived 2.2.7 -t: 4 = cannot run the configuration, 0/5/6 = runs.
        assert_eq!(
            ka_rc == 4,
            rc == 3,
            "{name}: keepalived -t exit {ka_rc}, uvs exit {rc}\n{ka_err}\n---\n{err}"
        );
        assert!(rc == 0 || rc == 5, "{name}: uvs exit {rc}\n{err}");
        // Every keyword uvs does not know, keepalived does not know either (same line).
        let ka_unknown = unknown_keywords(&ka_err);
        for u in unknown_keywords(&err) {
            assert!(
                ka_unknown.contains(&u),
                "{name}: uvs reports Line {u}, keepalived does not:\n{ka_err}"
            );
        }
        // A sample keepalived takes without a word has no unknown keyword for uvs.
        if ka_rc == 0 {
            assert!(unknown_keywords(&err).is_empty(), "{name}: {err}");
        }
        // The virtual_server blocks keepalived reports unknown keywords in, uvs does too.
        let ours_unknown = unknown_keywords(&err);
        for u in &ka_unknown {
            let line: usize = u.split(')').next().unwrap_or("0").parse().unwrap_or(0);
            let in_vs = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .take(line)
                .filter(|l| {
                    let t = l.trim_start();
                    t.starts_with("virtual_server") || t.starts_with("vrrp_") || t.starts_with("global_defs")
                })
                .last()
                .is_some_and(|l| l.trim_start().starts_with("virtual_server"));
            if in_vs {
                assert!(
                    ours_unknown.contains(u),
                    "{name}: keepalived reports Line {u}, uvs does not:\n{err}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} samples");
}

#[test]
fn check_exit_status_and_table() {
    let dir = std::env::temp_dir().join(format!("uvs-ka-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let restored = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/keepalived/testdata/seed003-restored.conf");
    let out = Command::new(UVS)
        .args(["check", "--keepalived"])
        .arg(&restored)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-A -t 192.168.41.249:80 -s rr -p 50\n\
         -a -t 192.168.41.249:80 -r 192.168.41.31:80 -g -w 1\n\
         -a -t 192.168.41.249:80 -r 192.168.41.33:80 -g -w 1\n"
    );
    let clean = dir.join("clean.conf");
    std::fs::write(
        &clean,
        "virtual_server 10.0.0.1 80 {\n lvs_sched rr\n lvs_method DR\n protocol TCP\n real_server 10.0.0.2 80 {\n }\n}\n",
    )
    .unwrap();
    let out = Command::new(UVS)
        .args(["check", "--keepalived"])
        .arg(&clean)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = Command::new(UVS)
        .args(["check", "--keepalived"])
        .arg(dir.join("missing.conf"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let strict = dir.join("strict.conf");
    std::fs::write(&strict, "includer /nonexistent/uvs-ka-*.conf\n").unwrap();
    let out = Command::new(UVS)
        .args(["check", "--keepalived"])
        .arg(&strict)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Line 1) Config files missing"));
    std::fs::remove_dir_all(&dir).unwrap();
}
