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
