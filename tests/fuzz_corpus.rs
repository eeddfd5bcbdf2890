//! Replays the fuzzers' checked-in seed corpora on stable Rust, so CI guards them
//! without nightly or libFuzzer. Also checks the corpus still holds the generated
//! seeds (regenerate with `UVS_WRITE_CORPUS=1 cargo test --test fuzz_corpus`).

use std::path::Path;

#[test]
fn pipeline_corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pipeline");
    if std::env::var_os("UVS_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in uvs::pipeline::fixture::seed_inputs() {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("fuzz/corpus/pipeline exists") {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        uvs::pipeline::fixture::fuzz_one(&bytes);
        // Every prefix too: truncation at every length must be handled.
        for cut in 0..bytes.len().min(128) {
            uvs::pipeline::fixture::fuzz_one(&bytes[..cut]);
        }
        n += 1;
    }
    assert!(n >= uvs::pipeline::fixture::seed_inputs().len(), "corpus has {n} files");
}

/// Replays `fuzz/corpus/<target>/` through `f`; with `UVS_WRITE_CORPUS` set, first
/// writes the target's generated seeds there. Returns the number of inputs.
fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let seeds = uvs::fuzzing::seeds(target);
    if std::env::var_os("UVS_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    // The seeds themselves, whatever the directory holds.
    for (_, bytes) in &seeds {
        f(bytes);
    }
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}")) {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| f(&bytes));
        assert!(r.is_ok(), "{target}: {} fails", path.display());
        n += 1;
    }
    assert!(n > 0, "fuzz/corpus/{target} is empty");
    n
}

#[test]
fn pipeline_flow_corpus_replays() {
    replay("pipeline_flow", uvs::fuzzing::pipeline_flow);
}

#[test]
fn arp_corpus_replays() {
    replay("arp", uvs::fuzzing::arp);
}

#[test]
fn ipvsadm_args_corpus_replays() {
    replay("ipvsadm_args", uvs::fuzzing::ipvsadm_args);
}

#[test]
fn rules_corpus_replays() {
    replay("rules", uvs::fuzzing::rules);
}

#[test]
fn control_corpus_replays() {
    replay("control", uvs::fuzzing::control);
}

#[test]
fn sync_corpus_replays() {
    replay("sync", uvs::fuzzing::sync);
}

#[test]
fn keepalived_conf_corpus_replays() {
    replay("keepalived_conf", uvs::keepalived::fuzz_one);
}

#[test]
fn keepalived_conf_parse_corpus_replays() {
    replay("keepalived_conf_parse", uvs::keepalived::fuzz_parse);
}
