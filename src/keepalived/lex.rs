//! keepalived.conf's lexical layer, as keepalived's `lib/parser.c` reads a file
//! (`read_line`, `decomment`, `check_include`, `check_definition`, `replace_param`,
//! `alloc_strvec`): comments, `include` with globs, `@ID` lines, `$NAME=value`
//! parameters, and every `{` / `}` split off onto a line of its own (same line number),
//! which is what gives keepalived its behaviour with missing or extra braces.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Diag, Severity};

/// One logical line: words after comment stripping, parameter expansion and brace
/// splitting. `{` and `}` are always lines of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub file: Arc<str>,
    pub line: usize,
    pub words: Vec<String>,
}

impl Line {
    pub fn is(&self, w: &str) -> bool {
        self.words.len() == 1 && self.words[0] == w
    }
}

/// Reads a configuration into lines.
pub struct Lexer {
    config_id: Option<String>,
    /// `$NAME=value` definitions by name (a later one replaces an earlier one).
    defs: HashMap<String, Vec<String>>,
    pub lines: Vec<Line>,
    pub diags: Vec<Diag>,
    /// keepalived's `block_depth` (read_line): `{` minus `}` seen so far.
    depth: i64,
    /// Include nesting guard.
    nesting: usize,
    /// Bytes produced by `$NAME` substitutions so far (the lexer's work beyond the
    /// input's own size; bounded per physical line by MAX_EXPANDED_PER_LINE).
    expanded: usize,
    /// Source of file contents (the file system, or a map in tests and the fuzzer).
    read: FileReader,
    /// Expands an `include` pattern to the files it names (the filesystem's glob, or
    /// nothing for a configuration held in memory).
    glob: GlobFn,
}

/// Substitutions of `$NAME` allowed within one physical line; the longest line a
/// substitution may produce (keepalived's replace_param is bounded by its line buffer,
/// lib/parser.h `MAXBUF`); and the most text all substitutions of one physical line may
/// produce together (multi-line values, each line re-expanded: without it a
/// self-doubling definition costs MAX_EXPANSIONS x the line length per line that uses
/// it, which the keepalived_conf_parse fuzzer found as its slow inputs).
const MAX_EXPANSIONS: usize = 256;
const MAX_EXPANDED_LINE: usize = 1024;
const MAX_EXPANDED_PER_LINE: usize = 16 * 1024;

/// Where file contents come from.
pub type FileReader = Box<dyn Fn(&Path) -> std::io::Result<String>>;
/// An `include` pattern's expansion: the matching files (not directories), sorted.
pub type GlobFn = Box<dyn Fn(&Path) -> Vec<PathBuf>>;

/// `include`'s expansion on the filesystem, as keepalived's glob(3) call.
fn filesystem_glob(pattern: &Path) -> Vec<PathBuf> {
    match glob::glob(&pattern.to_string_lossy()) {
        Ok(paths) => {
            let mut v: Vec<_> = paths.filter_map(Result::ok).filter(|p| !p.is_dir()).collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

/// A `"` without its closing partner (keepalived: "Unmatched quote").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnmatchedQuote;

/// The keyword `include` and its strict variants (`includer`, `includem`, ...): all of
/// them make a missing file an error, `include` only logs it.
fn include_kind(words: &str) -> Option<(bool, &str)> {
    let rest = words.strip_prefix("include")?;
    let mut chars = rest.chars();
    match chars.next() {
        Some(c) if c == ' ' || c == '\t' => Some((false, rest.trim_start())),
        Some(c) if "rmwba".contains(c) && chars.next().is_some_and(|c| c == ' ' || c == '\t') => {
            Some((true, rest[2..].trim_start()))
        }
        _ => None,
    }
}

/// `decomment`: drop leading and trailing blanks and everything from an unquoted `#` or
/// `!`; `\\#` and `\\!` outside quotes stand for the character itself.
///
/// It jumps from one of `"`, `\\`, `#`, `!` to the next with `memchr` (SIMD) and copies
/// the text between at once: every `$NAME` substitution decomments the line it
/// produces, up to [`MAX_EXPANDED_PER_LINE`] bytes per physical line, and a byte loop
/// made that most of the parser's time (and, instrumented, most of the fuzzer's). All
/// four are ASCII, which never occurs inside a UTF-8 sequence, so the result is the
/// same as walking characters.
pub fn decomment(s: &str) -> (String, bool) {
    let s = s.trim_start_matches([' ', '\t']);
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut quote = false;
    // Start of the text not copied yet.
    let mut run = 0;
    let mut i = 0;
    let mut end = b.len();
    // The next `!` at or after `i` (b.len() for none), found again once passed.
    let mut bang = memchr::memchr(b'!', b).unwrap_or(b.len());
    loop {
        if bang < i {
            bang = memchr::memchr(b'!', &b[i..]).map_or(b.len(), |p| i + p);
        }
        let other = memchr::memchr3(b'"', b'\\', b'#', &b[i..]).map_or(b.len(), |p| i + p);
        i = other.min(bang);
        if i >= b.len() {
            break;
        }
        match b[i] {
            b'"' => quote = !quote,
            b'\\' => match b.get(i + 1) {
                Some(b'#' | b'!') if !quote => {
                    // The backslash goes, the character stays.
                    out.push_str(&s[run..i]);
                    run = i + 1;
                    i += 1;
                }
                // Kept with the character after it, which is not interpreted (a `\\"`
                // does not open a quote).
                Some(_) => i += 1,
                None => {}
            },
            // `#` or `!`
            _ if !quote => {
                end = i;
                break;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&s[run..end]);
    let t = out.trim_end_matches([' ', '\t']).len();
    out.truncate(t);
    (out, quote)
}

/// `alloc_strvec`: words separated by blanks; a `"…"` is one word without its quotes.
pub fn split_words(s: &str) -> Result<Vec<String>, UnmatchedQuote> {
    let mut words = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b'\r' || b[i] == b'\n') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'"' {
            let start = i + 1;
            let end = s[start..].find('"').ok_or(UnmatchedQuote)? + start;
            words.push(s[start..end].to_string());
            i = end + 1;
        } else {
            let start = i;
            while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n' | b'"') {
                i += 1;
            }
            words.push(s[start..i].to_string());
        }
    }
    Ok(words)
}

/// Split a decommented line at every `{` / `}` outside quotes (read_line's
/// `line_residue`): `TCP_CHECK{` gives `TCP_CHECK` and `{`. The parts borrow from `s`;
/// the three bytes it acts on are found with `memchr3` (see [`decomment`]).
fn split_braces(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote = false;
    let mut start = 0;
    let mut from = 0;
    while let Some(p) = memchr::memchr3(b'"', b'{', b'}', &s.as_bytes()[from..]) {
        let i = from + p;
        from = i + 1;
        if s.as_bytes()[i] == b'"' {
            quote = !quote;
        } else if !quote {
            let t = s[start..i].trim();
            if !t.is_empty() {
                parts.push(t);
            }
            parts.push(&s[i..i + 1]);
            start = i + 1;
        }
    }
    let t = s[start..].trim();
    if !t.is_empty() {
        parts.push(t);
    }
    parts
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}
fn is_name(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl Lexer {
    pub fn new(config_id: Option<String>) -> Lexer {
        Lexer::with_reader(config_id, Box::new(|p: &Path| std::fs::read_to_string(p)))
    }

    pub fn with_reader(config_id: Option<String>, read: FileReader) -> Lexer {
        Lexer {
            config_id,
            defs: HashMap::new(),
            lines: Vec::new(),
            diags: Vec::new(),
            depth: 0,
            nesting: 0,
            expanded: 0,
            read,
            glob: Box::new(filesystem_glob),
        }
    }

    /// Expand `include` patterns with `glob` instead of the filesystem (a configuration
    /// held in memory, the fuzzers: a pattern such as `/**/*` must not walk the disk).
    pub fn with_glob(mut self, glob: GlobFn) -> Lexer {
        self.glob = glob;
        self
    }

    fn diag(&mut self, sev: Severity, file: &Arc<str>, line: usize, msg: String) {
        self.diags.push(Diag {
            severity: sev,
            file: Some(file.clone()),
            line: Some(line),
            msg,
        });
    }

    /// Read the main file. A main file that cannot be read is fatal.
    pub fn read_main(&mut self, path: &Path) -> bool {
        match (self.read)(path) {
            Ok(text) => {
                self.feed(path, &text);
                self.end();
                true
            }
            Err(e) => {
                self.diags.push(Diag {
                    severity: Severity::Fatal,
                    file: None,
                    line: None,
                    msg: format!("Unable to read configuration file {}: {e}", path.display()),
                });
                false
            }
        }
    }

    /// End of the configuration (init_data): report unclosed blocks.
    pub fn end(&mut self) {
        if self.depth > 0 {
            self.diags.push(Diag {
                severity: Severity::Warning,
                file: None,
                line: None,
                msg: format!("There are {} missing '}}'s or extra '{{'s", self.depth),
            });
        }
    }

    /// Lex `text` as the contents of `path`.
    pub fn feed(&mut self, path: &Path, text: &str) {
        let file: Arc<str> = Arc::from(path.display().to_string());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut raw = text.split('\n').enumerate().peekable();
        // Per-line work lists, kept across lines (no allocation per line).
        let mut pending: Vec<String> = Vec::new();
        let mut out: Vec<String> = Vec::new();
        while let Some((i, l)) = raw.next() {
            let lineno = i + 1;
            let l = l.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                continue;
            }
            let (buf, unterminated) = decomment(l);
            if unterminated {
                self.diag(Severity::Warning, &file, lineno, format!("Unterminated quote '{buf}'"));
            }
            if buf.is_empty() {
                continue;
            }
            // `$NAME=value` (and a value continued with a trailing `\`).
            pending.clear();
            pending.push(buf);
            out.clear();
            // A definition that names itself (`$A=x $A`, or one line of a multi-line
            // value being `$A`) would expand forever: keepalived's replace_param stops at
            // its line buffer's size; here each physical line gets a bounded number of
            // substitutions and a bounded length, then the rest is dropped with a warning.
            let mut expansions = 0usize;
            let mut expanded_bytes = 0usize;
            while let Some(mut buf) = pending.pop() {
                if let Some(rest) = buf.strip_prefix('@') {
                    let (neg, rest) = match rest.strip_prefix('^') {
                        Some(r) => (true, r),
                        None => (false, rest),
                    };
                    let Some(sp) = rest.find([' ', '\t']) else { continue };
                    let matches = self.config_id.as_deref() == Some(&rest[..sp]);
                    if matches == neg {
                        continue;
                    }
                    buf = rest[sp..].trim_start().to_string();
                }
                if let Some((name, value)) = definition(&buf) {
                    let mut values = Vec::new();
                    let mut v = value;
                    loop {
                        match v.strip_suffix('\\') {
                            Some(head) => {
                                let head = head.trim_end();
                                if !head.is_empty() {
                                    values.push(head.to_string());
                                }
                                match raw.next() {
                                    Some((_, next)) => v = decomment(next.trim_end_matches('\r')).0,
                                    None => break,
                                }
                            }
                            None => {
                                if !v.is_empty() {
                                    values.push(v);
                                }
                                break;
                            }
                        }
                    }
                    self.defs.insert(name, values);
                    continue;
                }
                if buf.contains('$') && !self.defs.is_empty() {
                    let expanded = self.replace_params(&buf);
                    if expanded.len() != 1 || expanded[0] != buf {
                        expansions += 1;
                        let n = expanded.iter().map(String::len).sum::<usize>();
                        expanded_bytes += n;
                        self.expanded += n;
                        if expansions > MAX_EXPANSIONS
                            || expanded_bytes > MAX_EXPANDED_PER_LINE
                            || expanded.iter().any(|e| e.len() > MAX_EXPANDED_LINE)
                        {
                            self.diag(
                                Severity::Warning,
                                &file,
                                lineno,
                                format!(
                                    "Parameter substitution on line '{}' recurses or exceeds the maximum line \
                                     length - ignoring the rest of the line",
                                    l.chars().take(80).collect::<String>()
                                ),
                            );
                            pending.clear();
                            continue;
                        }
                        for e in expanded.into_iter().rev() {
                            let (d, _) = decomment(&e);
                            if !d.is_empty() {
                                pending.push(d);
                            }
                        }
                        continue;
                    }
                }
                out.push(buf);
            }
            for buf in out.drain(..) {
                if let Some((strict, pattern)) = include_kind(&buf) {
                    self.include(&file, lineno, &dir, strict, pattern);
                    continue;
                }
                for part in split_braces(&buf) {
                    if part == "{" {
                        self.depth += 1;
                    } else if part == "}" {
                        self.depth -= 1;
                        if self.depth < 0 {
                            self.diag(Severity::Warning, &file, lineno, "Extra '}' found".into());
                            self.depth = 0;
                        }
                    }
                    match split_words(part) {
                        Ok(words) if !words.is_empty() => self.lines.push(Line {
                            file: file.clone(),
                            line: lineno,
                            words,
                        }),
                        Ok(_) => {}
                        Err(UnmatchedQuote) => {
                            self.diag(Severity::Warning, &file, lineno, format!("Unmatched quote: '{part}'"))
                        }
                    }
                }
            }
        }
    }

    /// `replace_param`: `$NAME` / `${NAME}` for every defined NAME; a multi-line
    /// value gives several lines.
    fn replace_params(&self, s: &str) -> Vec<String> {
        let b = s.as_bytes();
        let mut i = 0;
        while let Some(d) = s[i..].find('$') {
            i += d;
            let (name_start, braced) = if b.get(i + 1) == Some(&b'{') {
                (i + 2, true)
            } else {
                (i + 1, false)
            };
            if b.get(name_start).is_some_and(|&c| is_name_start(c)) {
                let mut e = name_start + 1;
                while e < b.len() && is_name(b[e]) {
                    e += 1;
                }
                let end = if braced {
                    if b.get(e) == Some(&b'}') { Some(e + 1) } else { None }
                } else {
                    Some(e)
                };
                if let Some(end) = end
                    && let Some(vals) = self.defs.get(&s[name_start..e])
                {
                    let head = &s[..i];
                    let tail = &s[end..];
                    let mut out = Vec::new();
                    match vals.len() {
                        0 => out.push(format!("{head}{tail}")),
                        1 => out.push(format!("{head}{}{tail}", vals[0])),
                        n => {
                            out.push(format!("{head}{}", vals[0]));
                            out.extend(vals[1..n - 1].iter().cloned());
                            out.push(format!("{}{tail}", vals[n - 1]));
                        }
                    }
                    return out;
                }
            }
            i += 1;
        }
        vec![s.to_string()]
    }

    fn include(&mut self, file: &Arc<str>, lineno: usize, dir: &Path, strict: bool, pattern: &str) {
        let pattern = split_words(pattern)
            .ok()
            .and_then(|w| w.into_iter().next())
            .unwrap_or_default();
        let full: PathBuf = if Path::new(&pattern).is_absolute() {
            PathBuf::from(&pattern)
        } else {
            dir.join(&pattern)
        };
        if self.nesting >= 32 {
            self.diag(
                Severity::Fatal,
                file,
                lineno,
                format!("include nesting too deep at '{pattern}'"),
            );
            return;
        }
        let matches = (self.glob)(&full);
        if matches.is_empty() {
            // keepalived: `include` logs and goes on; the strict forms are fatal.
            let sev = if strict { Severity::Fatal } else { Severity::Warning };
            self.diag(sev, file, lineno, format!("Config files missing '{pattern}'."));
            return;
        }
        for m in matches {
            match (self.read)(&m) {
                Ok(text) => {
                    self.nesting += 1;
                    self.feed(&m, &text);
                    self.nesting -= 1;
                }
                Err(e) => {
                    let sev = if strict { Severity::Fatal } else { Severity::Warning };
                    self.diag(
                        sev,
                        file,
                        lineno,
                        format!("Unable to read configuration file {}: {e}", m.display()),
                    );
                }
            }
        }
    }
}

/// `check_definition`: `$NAME=value` (NAME: a letter or `_`, then letters, digits, `_`).
fn definition(buf: &str) -> Option<(String, String)> {
    let rest = buf.strip_prefix('$')?;
    let b = rest.as_bytes();
    if !b.first().is_some_and(|&c| is_name_start(c)) {
        return None;
    }
    let mut e = 1;
    while e < b.len() && is_name(b[e]) {
        e += 1;
    }
    let after = rest[e..].trim_start_matches([' ', '\t']);
    let value = after.strip_prefix('=')?;
    Some((rest[..e].to_string(), value.trim_start_matches([' ', '\t']).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lex_map(files: &[(&str, &str)], id: Option<&str>) -> Lexer {
        let map: HashMap<PathBuf, String> = files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect();
        let mut lx = Lexer::with_reader(
            id.map(str::to_string),
            Box::new(move |p: &Path| {
                map.get(p)
                    .cloned()
                    .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not found"))
            }),
        );
        lx.read_main(Path::new(files[0].0));
        lx
    }

    fn words(lx: &Lexer) -> Vec<String> {
        lx.lines.iter().map(|l| l.words.join(" ")).collect()
    }

    #[test]
    fn comments_and_braces_split() {
        let lx = lex_map(
            &[(
                "/k.conf",
                "! comment\nvirtual_server 10.0.0.1 80 { # c\n  TCP_CHECK{\n  path \"/a b#c\" }\n}\n",
            )],
            None,
        );
        assert_eq!(
            words(&lx),
            [
                "virtual_server 10.0.0.1 80",
                "{",
                "TCP_CHECK",
                "{",
                "path /a b#c",
                "}",
                "}"
            ]
        );
        assert_eq!(lx.lines[4].line, 4);
        assert!(lx.diags.is_empty(), "{:?}", lx.diags);
    }

    /// `decomment` as keepalived states it, one character at a time (the reference the
    /// memchr version must equal).
    fn decomment_by_chars(s: &str) -> (String, bool) {
        let s = s.trim_start_matches([' ', '\t']);
        let mut out = String::new();
        let mut quote = false;
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            match c {
                '"' => {
                    quote = !quote;
                    out.push(c);
                }
                '\\' => match it.peek() {
                    Some(&n) if !quote && (n == '#' || n == '!') => {
                        out.push(n);
                        it.next();
                    }
                    Some(&n) => {
                        out.push(c);
                        out.push(n);
                        it.next();
                    }
                    None => out.push(c),
                },
                '#' | '!' if !quote => break,
                _ => out.push(c),
            }
        }
        let t = out.trim_end_matches([' ', '\t']).len();
        out.truncate(t);
        (out, quote)
    }

    /// `split_braces`, one character at a time.
    fn split_braces_by_chars(s: &str) -> Vec<String> {
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut quote = false;
        for c in s.chars() {
            match c {
                '"' => {
                    quote = !quote;
                    cur.push(c);
                }
                '{' | '}' if !quote => {
                    if !cur.trim().is_empty() {
                        parts.push(cur.trim().to_string());
                    }
                    cur.clear();
                    parts.push(c.to_string());
                }
                _ => cur.push(c),
            }
        }
        if !cur.trim().is_empty() {
            parts.push(cur.trim().to_string());
        }
        parts
    }

    proptest::proptest! {
        /// The byte-jumping `decomment` and `split_braces` give what walking the
        /// characters gives, on text dense in the characters they act on (and in
        /// multi-byte and Unicode-blank characters).
        #[test]
        fn decomment_and_split_braces_equal_the_char_walk(s in "[ \t\"\\\\#!{}a$é\u{3000}\u{a0}\r]{0,40}") {
            proptest::prop_assert_eq!(decomment(&s), decomment_by_chars(&s));
            let got: Vec<String> = split_braces(&s).into_iter().map(str::to_string).collect();
            proptest::prop_assert_eq!(got, split_braces_by_chars(&s));
        }
    }

    #[test]
    fn escaped_comment_chars() {
        assert_eq!(decomment("  a \\# b # c").0, "a # b");
        assert_eq!(decomment("a \"x!y\" ! z").0, "a \"x!y\"");
    }

    #[test]
    fn config_id_lines() {
        let text = "@lb1 router_id ONE\n@lb2 router_id TWO\n@^lb1 notify NOT1\nplain x\n";
        let lx = lex_map(&[("/k.conf", text)], Some("lb1"));
        assert_eq!(words(&lx), ["router_id ONE", "plain x"]);
        let lx = lex_map(&[("/k.conf", text)], Some("lb2"));
        assert_eq!(words(&lx), ["router_id TWO", "notify NOT1", "plain x"]);
    }

    #[test]
    fn parameters_single_and_multi_line() {
        let text =
            "$VIP=10.1.1.1\n$RS=real_server 10.2.2.2 80 { \\\n weight 3 \\\n }\nvirtual_server ${VIP} 80 {\n$RS\n}\n";
        let lx = lex_map(&[("/k.conf", text)], None);
        assert_eq!(
            words(&lx),
            [
                "virtual_server 10.1.1.1 80",
                "{",
                "real_server 10.2.2.2 80",
                "{",
                "weight 3",
                "}",
                "}"
            ]
        );
    }

    /// Found by the keepalived_conf fuzz target (a 745-byte input that never returned):
    /// a definition naming itself expanded forever.
    #[test]
    fn self_referential_parameters_terminate_with_a_warning() {
        for text in [
            "$VIP=10.0.0.1 $VIP\nvirtual_server $VIP 80 {\n}\nnext 1\n",
            "$A=\\\n$A \\\n y\nvirtual_server $A\nnext 1\n",
            // Found by keepalived_conf_parse as a slow input: a self-doubling value.
            "$A=x $A $A\n$A\nnext 1\n",
        ] {
            let lx = lex_map(&[("/k.conf", text)], None);
            let msgs: Vec<_> = lx.diags.iter().map(|d| d.to_string()).collect();
            assert!(
                msgs.iter()
                    .any(|m| m.contains("Parameter substitution on line") && m.contains("Line ")),
                "{text:?}: {msgs:?}"
            );
            // The lines after it are read as usual.
            assert_eq!(words(&lx).last().map(String::as_str), Some("next 1"), "{text:?}");
        }
    }

    /// keepalived_conf_parse's slow inputs: a value that names itself twice doubles on
    /// every pass. Lines are bounded as keepalived's line buffer bounds them (MAXBUF),
    /// so each line using it costs a few KiB of work, not 64 KiB lines re-expanded.
    #[test]
    fn expansion_work_per_line_is_bounded() {
        let mut text = String::from("$A=x $A $A\n");
        for _ in 0..200 {
            text.push_str("$A\n");
        }
        text.push_str("next 1\n");
        let lx = lex_map(&[("/k.conf", &text)], None);
        assert!(lx.expanded <= 200 * 20 * 1024, "{} bytes of expansions", lx.expanded);
        assert_eq!(words(&lx).last().map(String::as_str), Some("next 1"));
        let warned = lx
            .diags
            .iter()
            .filter(|d| d.msg.contains("Parameter substitution"))
            .count();
        assert_eq!(warned, 200, "one warning per line that uses $A");
    }

    #[test]
    fn extra_and_missing_braces_counted() {
        let lx = lex_map(&[("/k.conf", "a {\n}\n}\nb {\n")], None);
        let msgs: Vec<_> = lx.diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "(/k.conf: Line 3) Extra '}' found",
                "There are 1 missing '}'s or extra '{'s"
            ]
        );
    }

    #[test]
    fn missing_main_file_is_fatal() {
        let lx = lex_map(&[("/nope/k.conf", "")], None);
        assert!(lx.diags.is_empty());
        let mut lx = Lexer::new(None);
        assert!(!lx.read_main(Path::new("/nonexistent/uvs-keepalived.conf")));
        assert_eq!(lx.diags[0].severity, Severity::Fatal);
    }

    #[test]
    fn includes_with_globs_relative_to_the_including_file() {
        let dir = std::env::temp_dir().join(format!("uvs-ka-inc-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "include conf.d/*.conf\nincluder missing/*.x\nend\n",
        )
        .unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "second\n").unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "first\n").unwrap();
        let mut lx = Lexer::new(None);
        assert!(lx.read_main(&dir.join("main.conf")));
        assert_eq!(words(&lx), ["first", "second", "end"]);
        assert_eq!(
            lx.lines[0].file.as_ref(),
            dir.join("conf.d/a.conf").display().to_string()
        );
        assert_eq!(lx.diags.len(), 1);
        assert_eq!(lx.diags[0].severity, Severity::Fatal);
        assert!(lx.diags[0].msg.contains("Config files missing 'missing/*.x'"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
