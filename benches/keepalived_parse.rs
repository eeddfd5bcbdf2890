//! keepalived.conf reading speed (issue 17): the lexer and parser on the seed-003
//! configuration, on generated configurations of 1,000 and 10,000 real servers (100
//! per `virtual_server`, each with a TCP_CHECK), and on the fuzzer's slow input; plus
//! the whole load an operator's start or SIGHUP costs for 10,000 real servers (read
//! the file, parse, build the checkers, translate and reconcile into a fresh table).
//!
//! Run: cargo bench --bench keepalived_parse
//! Slowest inputs of a fuzz corpus: KPARSE_SCAN=DIR[:DIR...] cargo bench --bench keepalived_parse

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use uvs::ctl::Ctl;
use uvs::keepalived;
use uvs::pipeline::Shared;

/// `real_servers` NAT real servers with TCP_CHECK, 100 per `virtual_server`.
pub fn generated(real_servers: usize) -> String {
    let mut s = String::from("global_defs {\n router_id LB1\n}\n");
    let per = 100;
    for v in 0..real_servers.div_ceil(per) {
        s.push_str(&format!(
            "virtual_server 10.{}.{}.1 80 {{\n delay_loop 6\n lb_algo wrr\n lb_kind NAT\n protocol TCP\n",
            v / 256,
            v % 256
        ));
        for r in 0..per.min(real_servers - v * per) {
            let n = v * per + r;
            s.push_str(&format!(
                " real_server 172.{}.{}.{} 8080 {{\n  weight {}\n  TCP_CHECK {{\n   connect_timeout 3\n   retry 2\n   delay_before_retry 1\n  }}\n }}\n",
                16 + n / 65536,
                (n / 256) % 256,
                n % 256,
                1 + r % 5
            ));
        }
        s.push_str("}\n");
    }
    s
}

fn corpus(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/keepalived_conf_parse")
        .join(name);
    String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).into_owned()
}

fn parse(c: &mut Criterion) {
    let inputs = [
        ("seed003", corpus("seed003-restored.conf")),
        ("fuzz-slow-self-reference", corpus("regression-slow-self-reference")),
        ("rs1000", generated(1_000)),
        ("rs10000", generated(10_000)),
    ];
    let mut g = c.benchmark_group("keepalived_parse");
    g.sample_size(20);
    for (name, text) in &inputs {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            b.iter(|| keepalived::load_str("bench.conf", text, Some("lb1")))
        });
    }
    g.finish();

    // The fuzz target's body (parse and translate to the table description).
    let mut g = c.benchmark_group("keepalived_fuzz_parse");
    g.sample_size(20);
    for (name, text) in &inputs[..2] {
        g.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            b.iter(|| keepalived::fuzz_parse(text.as_bytes()))
        });
    }
    g.finish();

    // A start (or SIGHUP) with 10,000 real servers: file, parse, checkers, reconcile.
    let path = std::env::temp_dir().join(format!("uvs-bench-keepalived-{}.conf", std::process::id()));
    std::fs::write(&path, generated(10_000)).unwrap();
    let mut g = c.benchmark_group("keepalived_load");
    g.sample_size(10);
    g.bench_function("rs10000", |b| {
        b.iter(|| {
            let ctl = Arc::new(Ctl::new(Arc::new(Shared::new(Vec::new()))));
            keepalived::run::Keepalived::load(ctl, path.clone(), Some("lb1".into())).unwrap()
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&path);
}

/// `KPARSE_SCAN=DIR...`: time [`keepalived::fuzz_parse`] on every file of the
/// directories (a fuzz corpus) and print the slowest, instead of the benchmarks.
fn scan(dirs: &str) {
    let mut times = Vec::new();
    for dir in dirs.split(':') {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let runs: u32 = std::env::var("KPARSE_RUNS")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(20);
            let t = Instant::now();
            for _ in 0..runs {
                keepalived::fuzz_parse(std::hint::black_box(&data));
            }
            times.push((t.elapsed() / runs, data.len(), path));
        }
    }
    let total: Duration = times.iter().map(|t| t.0).sum();
    times.sort_by_key(|t| std::cmp::Reverse(t.0));
    println!(
        "{} inputs, mean {:?}, {:.0} inputs/s",
        times.len(),
        total / times.len().max(1) as u32,
        times.len() as f64 / total.as_secs_f64()
    );
    for (t, len, path) in times.iter().take(15) {
        println!("{t:>12.2?} {len:>6} B  {}", path.display());
    }
}

/// `KPARSE_DUMP=OUT KPARSE_SCAN=DIR...`: write what [`keepalived::load_str`] and
/// [`keepalived::run`]'s table make of every file to OUT (one block per file, sorted by
/// name): a before/after record that a speed change left the results alone.
fn dump(out: &str, dirs: &str) {
    use std::fmt::Write;
    let mut files: Vec<_> = dirs
        .split(':')
        .flat_map(|d| std::fs::read_dir(d).unwrap_or_else(|e| panic!("{d}: {e}")))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut s = String::new();
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&data);
        let (cfg, diags) = keepalived::load_str("fuzz.conf", &text, Some("lb1"));
        writeln!(s, "== {}", path.display()).unwrap();
        for d in &diags {
            writeln!(s, "{:?} {d}", d.severity).unwrap();
        }
        writeln!(s, "{cfg:?}").unwrap();
        if !keepalived::is_fatal(&diags) {
            let n: u128 = cfg
                .services
                .iter()
                .map(|vs| keepalived::translate::service_count(&cfg, vs))
                .sum();
            if n <= 4096 {
                writeln!(s, "{:?}", keepalived::translate::initial_table(&cfg)).unwrap();
            }
        }
    }
    std::fs::write(out, s).unwrap();
}

criterion_group!(benches, parse);

fn main() {
    match std::env::var("KPARSE_SCAN") {
        Ok(dirs) => match std::env::var("KPARSE_DUMP") {
            Ok(out) => dump(&out, &dirs),
            Err(_) => scan(&dirs),
        },
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
