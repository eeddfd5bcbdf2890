//! The crate's layering (issue 16): modules depend in one direction.
//!
//! Reads src/**/*.rs as text, takes every `crate::X` reference outside test code
//! (files named `tests.rs`, `tests_*.rs`, `*_tests.rs`, and the item under each
//! `#[cfg(test)]` line, where the test modules sit) and builds the graph of
//! top-level modules. Fails when the data-plane modules (wire, dataplane, forward,
//! pipeline) form a cycle again, when wire or dataplane import anything above them,
//! when conn/defense.rs reaches back into the pipeline, or when any top-level
//! modules import each other in a cycle (a cycle still known would be listed in
//! `KNOWN_CYCLES`, and struck from the list once broken; none is left).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Test fixtures in the library, built only with the `tools` feature (outside the
/// production API). They build whole directors, so the layering checks skip them.
const FIXTURES: &[&str] = &["pipeline/fixture.rs"];

/// The data plane, bottom to top: each may import only those before it.
const DATA_PLANE: &[&str] = &["wire", "dataplane", "forward", "pipeline"];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src/") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_test_file(p: &Path) -> bool {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    stem == "tests" || stem.starts_with("tests_") || stem.ends_with("_tests")
}

/// The modules named by `crate::X` in the non-test part of `text`: the item under
/// a `#[cfg(test)]` line (a `mod tests { ... }`, a `mod tests;`, a function) is
/// skipped to its closing brace or semicolon.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    // Inside a `#[cfg(test)]` item: the brace depth, and whether its body has opened.
    let mut test_item: Option<(i64, bool)> = None;
    for line in text.lines() {
        let t = line.trim_start();
        // Drop a trailing comment (doc links such as [`crate::x`] name no dependency).
        let code = if t.starts_with("//") {
            ""
        } else {
            t.split("//").next().unwrap_or("")
        };
        if let Some((depth, opened)) = test_item.as_mut() {
            *depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
            *opened |= code.contains('{');
            if (*opened && *depth <= 0) || (!*opened && code.trim_end().ends_with(';')) {
                test_item = None;
            }
            continue;
        }
        if t.starts_with("#[cfg(test)]") {
            test_item = Some((0, false));
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            // Skip `$crate::` and identifiers ending in "crate" (e.g. `my_crate::`).
            let before = rest[..i].chars().next_back();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

/// (top-level module, path below src/) of every non-test source file, with its references.
fn scan() -> Vec<(String, String, BTreeSet<String>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&src)
            .expect("under src/")
            .to_string_lossy()
            .replace('\\', "/");
        if is_test_file(&f) || rel == "lib.rs" || rel == "main.rs" {
            continue;
        }
        let top = rel.split('/').next().unwrap_or("").trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&f).expect("read source file");
        out.push((top, rel, crate_refs(&text)));
    }
    out
}

/// The graph of the crate's own modules (the fixtures left out).
fn project_graph() -> Graph {
    let files: Vec<_> = scan()
        .into_iter()
        .filter(|(_, rel, _)| !FIXTURES.contains(&rel.as_str()))
        .collect();
    graph(&files)
}

fn graph(files: &[(String, String, BTreeSet<String>)]) -> Graph {
    let tops: BTreeSet<&str> = files.iter().map(|(t, _, _)| t.as_str()).collect();
    let mut g = Graph::new();
    for (top, _, refs) in files {
        let e = g.entry(top.clone()).or_default();
        for r in refs {
            if r != top && tops.contains(r.as_str()) {
                e.insert(r.clone());
            }
        }
    }
    g
}

fn reachable(g: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(n) = stack.pop() {
        for m in g.get(&n).into_iter().flatten() {
            if seen.insert(m.clone()) {
                stack.push(m.clone());
            }
        }
    }
    seen
}

/// Strongly connected components with more than one module.
fn cycles(g: &Graph) -> Vec<BTreeSet<String>> {
    let reach: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|k| (k, reachable(g, k))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for k in g.keys() {
        if done.contains(k) || !reach[k].contains(k) {
            continue;
        }
        let scc: BTreeSet<String> = reach[k]
            .iter()
            .filter(|m| reach.get(m).is_some_and(|r| r.contains(k)))
            .cloned()
            .collect();
        done.extend(scc.iter().cloned());
        if scc.len() > 1 {
            out.push(scc);
        }
    }
    out
}

#[test]
fn the_parser_sees_known_edges() {
    let g = graph(&scan());
    // Guards against a test that passes because it read nothing.
    assert!(g["pipeline"].contains("dataplane"), "{g:?}");
    assert!(g["pipeline"].contains("forward"));
    assert!(g["forward"].contains("wire"));
    assert_eq!(
        crate_refs(
            "use crate::a::b;\nx = crate::c::d(); // crate::e\n$crate::f; my_crate::g;\n#[cfg(test)]\nuse crate::h;"
        ),
        ["a", "c"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn the_data_plane_depends_in_one_direction() {
    let g = project_graph();
    for (i, m) in DATA_PLANE.iter().enumerate() {
        for dep in g.get(*m).into_iter().flatten() {
            if let Some(j) = DATA_PLANE.iter().position(|d| d == dep) {
                assert!(j < i, "{m} imports {dep}, which sits above it in {DATA_PLANE:?}");
            }
        }
    }
    // wire is the bottom; dataplane sits on wire alone.
    let wire: Vec<_> = g.get("wire").into_iter().flatten().collect();
    assert!(wire.is_empty(), "wire imports {wire:?}");
    let leaf: Vec<_> = g
        .get("dataplane")
        .into_iter()
        .flatten()
        .filter(|d| *d != "wire")
        .collect();
    assert!(leaf.is_empty(), "dataplane imports {leaf:?}");
    // No cycle through any module outside the set either.
    for m in DATA_PLANE {
        let below: BTreeSet<&str> = DATA_PLANE.iter().copied().take_while(|d| d != m).collect();
        for dep in g.get(*m).into_iter().flatten() {
            if below.contains(dep.as_str()) || DATA_PLANE.contains(&dep.as_str()) {
                continue;
            }
            let back: Vec<_> = DATA_PLANE.iter().filter(|d| reachable(&g, dep).contains(**d)).collect();
            assert!(
                back.iter()
                    .all(|d| DATA_PLANE.iter().position(|x| x == *d) < DATA_PLANE.iter().position(|x| x == m)),
                "{m} imports {dep}, which leads back to {back:?}"
            );
        }
    }
}

#[test]
fn conn_defense_stays_below_the_pipeline() {
    let files = scan();
    let (_, _, refs) = files
        .iter()
        .find(|(_, rel, _)| rel == "conn/defense.rs")
        .expect("conn/defense.rs");
    for up in ["pipeline", "forward", "director"] {
        assert!(!refs.contains(up), "conn/defense.rs imports {up}");
    }
    let (_, _, refs) = files
        .iter()
        .find(|(_, rel, _)| rel == "director/tap.rs")
        .expect("director/tap.rs");
    let (_, _, pipe) = files
        .iter()
        .find(|(_, rel, _)| rel == "pipeline/mod.rs")
        .expect("pipeline/mod.rs");
    assert!(
        !(refs.contains("pipeline") && pipe.contains("director")),
        "pipeline/mod.rs and director/tap.rs import each other"
    );
}

/// The cycles among top-level modules that are known and not broken yet. Each entry
/// is one strongly connected component; the test fails when the graph has any other,
/// and when one of these is gone (then delete it here).
///
/// None is left: the last, control <-> director, was broken by having the director
/// own the control server (director -> control) and reach its runtime (the frame
/// tap, the sync daemons) only through the traits `control::Trace` and
/// `control::SyncControl`, which the director implements.
const KNOWN_CYCLES: &[&[&str]] = &[];

fn render(g: &Graph, scc: &BTreeSet<String>) -> String {
    let edges: Vec<String> = scc
        .iter()
        .flat_map(|a| {
            g[a].iter()
                .filter(|b| scc.contains(*b))
                .map(move |b| format!("{a}->{b}"))
        })
        .collect();
    format!("cycle among {scc:?}: {}", edges.join(", "))
}

#[test]
fn no_cycle_among_top_level_modules() {
    let g = project_graph();
    let found = cycles(&g);
    for scc in &found {
        println!("{}", render(&g, scc));
    }
    let known: Vec<BTreeSet<String>> = KNOWN_CYCLES
        .iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect();
    let new: Vec<String> = found
        .iter()
        .filter(|c| !known.contains(c))
        .map(|c| render(&g, c))
        .collect();
    assert!(
        new.is_empty(),
        "import cycles among top-level modules:\n{}",
        new.join("\n")
    );
    let gone: Vec<_> = known.iter().filter(|c| !found.contains(c)).collect();
    assert!(
        gone.is_empty(),
        "{gone:?} is no longer a cycle: remove it from KNOWN_CYCLES"
    );
}
