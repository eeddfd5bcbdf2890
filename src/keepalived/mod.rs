//! keepalived.conf's `virtual_server` half, read as keepalived 2.2 reads it.
//!
//! - [`lex`]: lines, comments, `include`, `@ID`, `$NAME=value`, braces (lib/parser.c);
//! - [`conf`]: the keyword tables and their defaults and warnings
//!   (check/check_parser.c, check/check_data.c `validate_check_config`, the checkers'
//!   own keywords, core/global_parser.c for `global_defs`);
//! - [`translate`]: the IPVS table the configuration asks for, as ipvsadm commands
//!   applied through [`crate::ctl::Ctl`] (so the same validation and errors as ipvsadm).
//!
//! Diagnostics carry keepalived's own texts, `(FILE: Line N) message`.

#![forbid(unsafe_code)]

pub mod carried;
pub mod conf;
pub mod lex;
pub mod passive;
pub mod run;
pub mod translate;
pub mod vrrp;

use std::path::Path;
use std::sync::Arc;

/// How bad a diagnostic is. keepalived's `config_err_t`: the file-not-found / fatal
/// class stops keepalived from running the configuration; everything else is logged
/// and the configuration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Logged at LOG_INFO by keepalived: not a configuration problem, and no part of
    /// `keepalived -t`'s exit status.
    Info,
    Warning,
    Fatal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub severity: Severity,
    pub file: Option<Arc<str>>,
    pub line: Option<usize>,
    pub msg: String,
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "({file}: Line {line}) {}", self.msg),
            (None, Some(line)) => write!(f, "(Line {line}) {}", self.msg),
            _ => f.write_str(&self.msg),
        }
    }
}

/// Exit status of `uvs check --keepalived` for a fatal configuration (nothing starts).
pub const EXIT_FATAL: u8 = 3;
/// Exit status when the configuration runs but produced warnings (keepalived -t's 5).
pub const EXIT_WARNINGS: u8 = 5;

/// The short host name (keepalived's default `config_id`, as `-i` sets it).
pub fn short_hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    Some(h.split('.').next().unwrap_or(h).to_string())
}

/// Read and interpret a configuration file. The diagnostics come in file order, then
/// the end-of-configuration checks (validate_check_config).
pub fn load(path: &Path, config_id: Option<&str>) -> (conf::Config, Vec<Diag>) {
    let id = config_id.map(str::to_string).or_else(short_hostname);
    let mut lx = lex::Lexer::new(id);
    lx.read_main(path);
    finish(lx)
}

/// As [`load`], from text (tests, the fuzzer).
pub fn load_str(name: &str, text: &str, config_id: Option<&str>) -> (conf::Config, Vec<Diag>) {
    let mut lx = lex::Lexer::with_reader(
        config_id.map(str::to_string),
        Box::new(|p: &Path| {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                p.display().to_string(),
            ))
        }),
    )
    // Held in memory: an include names no file (a fuzzed `/**/*` walked the whole disk).
    .with_glob(Box::new(|_: &Path| Vec::new()));
    lx.feed(Path::new(name), text);
    lx.end();
    finish(lx)
}

fn finish(lx: lex::Lexer) -> (conf::Config, Vec<Diag>) {
    let mut diags = lx.diags;
    // The brace count's report comes last in keepalived (init_data), after parsing.
    let tail: Vec<Diag> = {
        let (t, rest): (Vec<_>, Vec<_>) = diags.drain(..).partition(|d| d.file.is_none() && d.line.is_none());
        diags = rest;
        t
    };
    let mut p = conf::Parser::new(&lx.lines);
    p.run();
    let (mut cfg, mut more) = p.finish();
    cfg.vrrp_vips = vrrp::scan(&lx.lines);
    // Lexer diagnostics and parser diagnostics in line order of appearance.
    diags.append(&mut more);
    diags.sort_by_key(|d| d.line.is_none());
    diags.extend(tail);
    (cfg, diags)
}

/// Whether the diagnostics include a warning or worse (`uvs check`'s exit status 5).
pub fn has_warnings(diags: &[Diag]) -> bool {
    diags.iter().any(|d| d.severity >= Severity::Warning)
}

/// Whether the diagnostics forbid running the configuration.
pub fn is_fatal(diags: &[Diag]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Fatal)
}

#[cfg(test)]
mod tests;

/// Fuzz body (`fuzz/fuzz_targets/keepalived_conf.rs`): any bytes as a configuration.
/// Invariants besides "no panic": every diagnostic names a line of the input (or none),
/// and a configuration without a fatal error translates to a table the control plane
/// accepts (translate::reconcile validates it on a scratch table).
pub fn fuzz_one(data: &[u8]) {
    if let Some(table) = fuzz_parse_table(data) {
        let ctl = crate::ctl::Ctl::new(Arc::new(crate::pipeline::Shared::new(Vec::new())));
        let _ = translate::reconcile(&ctl, &table, &Default::default());
    }
}

/// Fuzz body of `fuzz/fuzz_targets/keepalived_conf_parse.rs`: [`fuzz_one`] without the
/// control plane (no `Ctl`, which costs most of `fuzz_one`'s time): lexer, parser and
/// translation to the table description only, so it runs fast enough for 10 M inputs.
pub fn fuzz_parse(data: &[u8]) {
    let _ = fuzz_parse_table(data);
}

/// Most services the fuzz bodies translate (group expansion is bounded per range by
/// `translate::MAX_RANGE`, but not per group).
const FUZZ_MAX_SERVICES: u128 = 4096;

/// Lexes, parses and, for a configuration without a fatal error and with at most
/// [`FUZZ_MAX_SERVICES`] services, translates `data`, checking the invariants that need
/// no control plane: every diagnostic names a line of the input (or none); the table
/// holds exactly the services the configuration counts
/// ([`translate::service_count`]), and every weight is one ipvsadm accepts
/// (0..=`conf::WEIGHT_LIMIT`).
fn fuzz_parse_table(data: &[u8]) -> Option<translate::Table> {
    let text = String::from_utf8_lossy(data);
    let lines = text.split('\n').count();
    let (cfg, diags) = load_str("fuzz.conf", &text, Some("lb1"));
    for d in &diags {
        if let Some(l) = d.line {
            assert!(l >= 1 && l <= lines, "{d}: line outside the input");
        }
    }
    if is_fatal(&diags) {
        return None;
    }
    let count: u128 = cfg.services.iter().map(|vs| translate::service_count(&cfg, vs)).sum();
    if count > FUZZ_MAX_SERVICES {
        return None;
    }
    let table = translate::initial_table(&cfg);
    assert_eq!(table.len() as u128, count, "service_count disagrees with initial_table");
    for (svc, dests) in &table {
        for d in dests {
            assert!(
                (0..=conf::WEIGHT_LIMIT as i32).contains(&d.weight),
                "{} -> {}:{}: weight {}",
                translate::fmt_addr(&svc.addr),
                d.addr,
                d.port,
                d.weight
            );
        }
    }
    Some(table)
}
