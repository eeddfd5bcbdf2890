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
    /// `$NAME=value` definitions by name (a later one replaces an earlier one), with
    /// keepalived's built-in `_HASH` and `_BANG`.
    defs: HashMap<String, Def>,
    pub lines: Vec<Line>,
    pub diags: Vec<Diag>,
    /// keepalived's `block_depth` (read_line): `{` minus `}` seen so far.
    depth: i64,
    /// Include nesting guard.
    nesting: usize,
    /// Work done by `$NAME` substitutions so far (bytes moved and scanned; bounded
    /// per physical line by MAX_WORK_PER_LINE).
    expanded: usize,
    /// Source of file contents (the file system, or a map in tests and the fuzzer).
    read: FileReader,
    /// Expands an `include` pattern to the files it names (the filesystem's glob, or
    /// nothing for a configuration held in memory).
    glob: GlobFn,
}

/// One `$NAME=value` definition (lib/parser.c `def_t`): a multi-line value holds its
/// lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Def {
    value: String,
    multiline: bool,
}

/// What one `replace_param` pass did.
enum Replaced {
    Nothing,
    Some,
    /// The line would have reached MAXBUF: keepalived stops the pass there.
    Overflow,
    /// Past MAX_WORK_PER_LINE: a definition that names itself without growing the line
    /// (`$A=$A`), on which keepalived 2.2.7 never returns.
    Endless,
}

/// keepalived's line buffer (lib/parser.h `MAXBUF`): replace_param refuses a
/// substitution that would make the line MAXBUF bytes or longer ("would exceed maximum
/// line length"), which is what bounds a value that names itself and grows (`$A=x $A`).
const MAXBUF: usize = 1024;
/// The substitution work one physical line may cost: bytes moved and scanned, plus
/// STEP_COST per substitution and LINE_COST per line produced. A value that names
/// itself without growing the line (`$A=$A`, or `$A=$B` and `$B=$A`), or a multi-line
/// value whose lines name it again, makes keepalived 2.2.7 loop forever; uvs stops
/// there with a warning, after about 2,000 substitutions. A line growing to MAXBUF by
/// the smallest steps (about 1,000 substitutions) stays well below it.
const MAX_WORK_PER_LINE: usize = 512 * 1024;
const STEP_COST: usize = 256;
/// The cost of one line: a physical line expands to at most 512 lines (the longest
/// multi-line value uvs reads; longer ones are cut with the warning).
const LINE_COST: usize = 1024;

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
            // lib/parser.c set_std_definitions (`_PWD`, `_INSTANCE` and `_RANDOM` are
            // not supported).
            defs: [("_HASH", "#"), ("_BANG", "!")]
                .into_iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        Def {
                            value: v.to_string(),
                            multiline: false,
                        },
                    )
                })
                .collect(),
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
            // The line, then the further lines of any multi-line value it expands to
            // (read_line's `next_ptr` and `multiline_stack`: a stack, so that a value
            // expanded inside another one is read before the rest of the outer one).
            pending.clear();
            pending.push(buf);
            out.clear();
            let mut work = 0usize;
            while let Some(buf) = pending.pop() {
                match self.expand_line(buf, &mut raw, &file, lineno, &mut pending, &mut work) {
                    Some(b) if !b.is_empty() => out.push(b),
                    Some(_) => {}
                    None => {
                        // A substitution that does not terminate: the rest of the line goes.
                        pending.clear();
                        break;
                    }
                }
            }
            self.expanded += work;
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

    /// read_line's loop over one decommented line: `@ID` lines, `$NAME=value`
    /// definitions (reading the further lines of a value ending in `\`), a line
    /// starting `~` left alone, and `replace_param` passes, each followed by
    /// `decomment` and repeated while the line still holds a `$` (or starts `@`).
    /// Returns the line to use (empty: nothing), or None when the substitutions do not
    /// terminate (keepalived 2.2.7 loops forever there; uvs warns and drops the line).
    fn expand_line<'a>(
        &mut self,
        mut buf: String,
        raw: &mut std::iter::Peekable<std::iter::Enumerate<std::str::Split<'a, char>>>,
        file: &Arc<str>,
        lineno: usize,
        pending: &mut Vec<String>,
        work: &mut usize,
    ) -> Option<String> {
        // Each line (the physical one, and each further line of a multi-line value)
        // costs LINE_COST: a multi-line value whose lines expand it again (`$A=x\`,
        // `$A`) gives keepalived an endless stream of lines, and each line costs the
        // parser far more than a substitution.
        *work += LINE_COST;
        loop {
            if *work > MAX_WORK_PER_LINE {
                self.diag(
                    Severity::Warning,
                    file,
                    lineno,
                    format!(
                        "Parameter substitution on line '{}' does not terminate (keepalived 2.2 loops \
                         forever here) - ignoring the rest of the line",
                        buf.chars().take(80).collect::<String>()
                    ),
                );
                return None;
            }
            if let Some(rest) = buf.strip_prefix('@') {
                let (neg, rest) = match rest.strip_prefix('^') {
                    Some(r) => (true, r),
                    None => (false, rest),
                };
                let Some(sp) = rest.find([' ', '\t']) else {
                    return Some(String::new());
                };
                let matches = self.config_id.as_deref() == Some(&rest[..sp]);
                if matches == neg {
                    return Some(String::new());
                }
                buf = rest[sp..].trim_start_matches([' ', '\t']).to_string();
            }
            if let Some((name, value)) = check_definition(&buf) {
                self.define(name, value, raw);
                return Some(String::new());
            }
            // `~SEQ` / `~LST` (not supported by uvs) and any line starting `~`: no
            // substitution (read_line: `if (buf[0] == '~') break;`).
            if buf.starts_with('~') || !buf.contains('$') || self.defs.is_empty() {
                return Some(buf);
            }
            *work += buf.len();
            match self.replace_param(&mut buf, pending, work) {
                Replaced::Nothing => return Some(buf),
                Replaced::Overflow => {
                    // keepalived logs it and uses the line as far as it got, without
                    // decommenting it again.
                    // LOG_INFO there: no part of `keepalived -t`'s exit status.
                    self.diag(
                        Severity::Info,
                        file,
                        lineno,
                        format!("Parameter substitution on line '{buf}' would exceed maximum line length"),
                    );
                    return Some(buf);
                }
                // Over MAX_WORK_PER_LINE: reported at the top of the loop.
                Replaced::Endless => continue,
                Replaced::Some => {}
            }
            let (d, unterminated) = decomment(&buf);
            if unterminated {
                self.diag(Severity::Warning, file, lineno, format!("Unterminated quote '{d}'"));
            }
            buf = d;
            if !(buf.starts_with('@') || buf.contains('$')) {
                return Some(buf);
            }
        }
    }

    /// `check_definition` and read_line's multi-line definitions: a value ending in
    /// `\` goes on with the next lines (each decommented; a line holding only a comment
    /// is skipped, an empty line ends the value) until one that does not end in `\`.
    /// The lines are joined with `\n`, blank ones left out.
    fn define<'a>(
        &mut self,
        name: &str,
        value: &str,
        raw: &mut std::iter::Peekable<std::iter::Enumerate<std::str::Split<'a, char>>>,
    ) {
        let Some(head) = value.strip_suffix('\\') else {
            self.defs.insert(
                name.to_string(),
                Def {
                    value: value.to_string(),
                    multiline: false,
                },
            );
            return;
        };
        let mut v = head.trim_end_matches([' ', '\t']).to_string();
        if !v.is_empty() {
            v.push('\n');
        }
        let mut multiline = true;
        for (_, next) in raw.by_ref() {
            let next = next.trim_end_matches(['\r', '\n']);
            if next.is_empty() {
                // An empty line ends the value; an empty value is then not multi-line.
                multiline = !v.is_empty();
                break;
            }
            let (d, _) = decomment(next);
            if d.is_empty() {
                continue;
            }
            match d.strip_suffix('\\') {
                Some(h) => {
                    let h = h.trim_end_matches([' ', '\t']);
                    if !h.is_empty() {
                        v.push_str(h);
                        v.push('\n');
                    }
                }
                None => {
                    v.push_str(&d);
                    break;
                }
            }
        }
        self.defs.insert(name.to_string(), Def { value: v, multiline });
    }

    /// `find_definition` (definition=false) at the `$` at `at`: `${NAME}`, or a bare
    /// `$NAME` followed by a blank, `,`, `)` or the end of the line. A multi-line value
    /// is found only where the reference ends the line. Returns the length of the text
    /// replaced and the definition. (`${NAME }` is found too, and then, as in
    /// keepalived, only `${NAME` and the blank are replaced: the `}` stays.)
    fn find_definition(&self, buf: &str, at: usize) -> Option<(usize, &Def)> {
        let b = buf.as_bytes();
        let braced = b.get(at + 1) == Some(&b'{');
        let n = at + 1 + usize::from(braced);
        if !b.get(n).is_some_and(|&c| is_name_start(c)) {
            return None;
        }
        let mut e = n + 1;
        while e < b.len() && is_name(b[e]) {
            e += 1;
        }
        if braced {
            // `${NAME 1 2}`: parameters, which only the built-in `_RANDOM` takes (not
            // supported by uvs): never a match for a user's definition.
            let mut q = e;
            while q < b.len() && (b[q] == b' ' || b[q].is_ascii_digit()) {
                if b[q] != b' ' {
                    return None;
                }
                q += 1;
            }
            if b.get(q) != Some(&b'}') {
                return None;
            }
        } else if e < b.len() && !matches!(b[e], b' ' | b'\t' | b',' | b')') {
            return None;
        }
        let ends_line = if braced { e + 1 == b.len() } else { e == b.len() };
        let def = self.defs.get(&buf[n..e])?;
        if def.multiline && !ends_line {
            return None;
        }
        Some((e - at + if braced { 1 } else { 0 }, def))
    }

    /// One `replace_param` pass: from the start of the line, each reference found is
    /// replaced and the scan goes on from the start of the inserted value (so the value
    /// is scanned for references, the text before it is not); a value starting with
    /// `~` ends the pass. A multi-line value puts its first line in place and its other
    /// lines on `pending`. A line that would reach keepalived's line buffer (MAXBUF)
    /// stops the pass, as far as it got.
    fn replace_param(&self, buf: &mut String, pending: &mut Vec<String>, work: &mut usize) -> Replaced {
        let mut cur = 0;
        let mut found = false;
        let mut rest_lines: Vec<&str> = Vec::new();
        while let Some(p) = memchr::memchr(b'$', &buf.as_bytes()[cur..]) {
            let p = cur + p;
            if p + 1 >= buf.len() {
                break;
            }
            let Some((span, def)) = self.find_definition(buf, p) else {
                cur = p + 1;
                continue;
            };
            let (first, rest) = if def.multiline {
                match def.value.split_once('\n') {
                    Some((f, r)) => (f, Some(r)),
                    None => (def.value.as_str(), None),
                }
            } else {
                (def.value.as_str(), None)
            };
            if buf.len() + first.len() - span >= MAXBUF {
                return Replaced::Overflow;
            }
            *work += buf.len() - p + STEP_COST;
            if *work > MAX_WORK_PER_LINE {
                return Replaced::Endless;
            }
            buf.replace_range(p..p + span, first);
            if let Some(rest) = rest {
                rest_lines.push(rest);
            }
            found = true;
            cur = p;
            if def.value.trim_start_matches([' ', '\t']).starts_with('~') {
                break;
            }
        }
        if !found {
            return Replaced::Nothing;
        }
        for rest in rest_lines {
            pending.extend(rest.rsplit('\n').filter(|l| !l.is_empty()).map(str::to_string));
        }
        Replaced::Some
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

/// `check_definition`: `$NAME=value`, NAME a letter or `_` then letters, digits and
/// `_`, the `=` right after it (`$A =x` is no definition); blanks after the `=` skipped.
fn check_definition(buf: &str) -> Option<(&str, &str)> {
    let rest = buf.strip_prefix('$')?;
    let b = rest.as_bytes();
    if !b.first().is_some_and(|&c| is_name_start(c)) {
        return None;
    }
    let mut e = 1;
    while e < b.len() && is_name(b[e]) {
        e += 1;
    }
    let value = rest[e..].strip_prefix('=')?;
    Some((&rest[..e], value.trim_start_matches([' ', '\t'])))
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
    /// every substitution. Each line stops at keepalived's line buffer (MAXBUF), so the
    /// work per line using it is bounded.
    #[test]
    fn expansion_work_per_line_is_bounded() {
        let mut text = String::from("$A=x $A $A\n");
        for _ in 0..200 {
            text.push_str("$A\n");
        }
        text.push_str("next 1\n");
        let lx = lex_map(&[("/k.conf", &text)], None);
        assert!(lx.expanded <= 200 * MAX_WORK_PER_LINE, "{} bytes of work", lx.expanded);
        assert!(lx.expanded >= 200 * MAXBUF / 2, "{} bytes of work", lx.expanded);
        assert_eq!(words(&lx).last().map(String::as_str), Some("next 1"));
        assert!(lx.lines.iter().all(|l| l.words.join(" ").len() < MAXBUF));
        let warned = lx
            .diags
            .iter()
            .filter(|d| d.msg.contains("would exceed maximum line length"))
            .count();
        assert_eq!(warned, 200, "one warning per line that uses $A");
    }

    fn global_defs(body: &str) -> Vec<String> {
        let lx = lex_map(&[("/k.conf", &format!("global_defs {{\n{body}}}\n"))], None);
        let w = words(&lx);
        w[2..w.len() - 1].to_vec()
    }

    /// A bare `$NAME` is a reference only when a blank, `,`, `)` or the end of the line
    /// follows the name (lib/parser.c find_definition); `${NAME}` anywhere. Checked with
    /// Debian's keepalived 2.2.7 (`keepalived -t`): `$V=router_id`, then `$V-3 x` gives
    /// "Unknown keyword '$V-3'", `${V}-3 y` "Unknown keyword 'router_id-3'", `$V, x`
    /// "'foo,'" and `$V) y` "'foo)'" (with `$V=foo`).
    #[test]
    fn bare_reference_needs_a_blank_or_the_end_after_it() {
        assert_eq!(
            global_defs("$VIP=10.1.1.1\n$VIP-3 a\n${VIP}-3 b\nc $VIP\nd $VIP\tx\ne $VIP, $VIP)\nf $VIP.1 $VIPX\n"),
            [
                "$VIP-3 a",
                "10.1.1.1-3 b",
                "c 10.1.1.1",
                "d 10.1.1.1 x",
                "e 10.1.1.1, 10.1.1.1)",
                "f $VIP.1 $VIPX"
            ]
        );
    }

    /// A value holding a reference is expanded, the definition it names may come after
    /// it (keepalived 2.2.7: `$A=foo $B`, `$B=bar`, `$A` gives "Unknown keyword
    /// 'foo'", the line being `foo bar`); and a value can define (`$X=$Y=w1`: `$X`
    /// defines Y, and `$Y` then gives "Unknown keyword 'w1'").
    #[test]
    fn values_are_scanned_for_references() {
        assert_eq!(global_defs("$A=foo $B\n$B=bar\n$A\n"), ["foo bar"]);
        assert_eq!(global_defs("$X=$Y=w1\n$X\n$Y\n"), ["w1"]);
        // `$A =x` is no definition (keepalived: "Unknown keyword '$A'" on both lines).
        assert_eq!(global_defs("$A =x1\n$A\n"), ["$A =x1", "$A"]);
    }

    /// replace_param scans on from the start of each inserted value, never back: in
    /// `$Z$E` the `$Z` is no reference (a `$` follows it) and stays in the first pass,
    /// though `$E` becomes empty. read_line then runs another pass because a `$` is
    /// left, and there `$Z` ends the line. keepalived 2.2.7: `$E=`, `$Z=zz`, `$Z$E`
    /// gives "Unknown keyword 'zz'".
    #[test]
    fn text_before_a_substitution_is_not_rescanned_in_the_same_pass() {
        let lx = lex_map(&[("/k.conf", "$E=\n$Z=zz\n")], None);
        let mut buf = String::from("$Z$E");
        let (mut pending, mut work) = (Vec::new(), 0);
        assert!(matches!(
            lx.replace_param(&mut buf, &mut pending, &mut work),
            Replaced::Some
        ));
        assert_eq!(buf, "$Z");
        assert!(matches!(
            lx.replace_param(&mut buf, &mut pending, &mut work),
            Replaced::Some
        ));
        assert_eq!(buf, "zz");
        assert_eq!(global_defs("$E=\n$Z=zz\n$Z$E\n"), ["zz"]);
    }

    /// `$A=x $A`: each substitution inserts `x $A` and the scan goes on into it, so the
    /// line grows until the next one would reach MAXBUF; keepalived logs "would exceed
    /// maximum line length" and uses the line as far as it got (keepalived 2.2.7 -t on
    /// `$A=x $A`, `$A`: "Unknown keyword 'x'"; the log line is LOG_INFO, not shown).
    #[test]
    fn self_referential_value_grows_to_the_line_buffer() {
        let lx = lex_map(&[("/k.conf", "$A=x $A\nk $A\nnext 1\n")], None);
        let w = &lx.lines[0].words;
        let line = w.join(" ");
        assert_eq!(w[0], "k");
        assert_eq!(w.last().unwrap(), "$A");
        assert!(w[1..w.len() - 1].iter().all(|x| x == "x"));
        assert!(line.len() < MAXBUF && line.len() + 2 >= MAXBUF, "{}", line.len());
        assert_eq!(words(&lx)[1], "next 1");
        assert_eq!(lx.diags.len(), 1, "{:?}", lx.diags);
        assert!(lx.diags[0].msg.starts_with("Parameter substitution on line 'k x x"));
        assert!(lx.diags[0].msg.ends_with("would exceed maximum line length"));
        assert_eq!(lx.diags[0].severity, Severity::Info, "LOG_INFO: no warning exit status");
        assert!(!crate::keepalived::has_warnings(&lx.diags));
    }

    /// `$A=$A` (or a multi-line value whose first line is itself) never grows the line:
    /// keepalived 2.2.7 loops forever (`keepalived -t` on `router_id $A` was killed by
    /// `timeout 5`, status 124). uvs stops with a warning and drops the line.
    #[test]
    fn self_referential_value_that_does_not_grow_stops() {
        for text in [
            "$A=$A\nrouter_id $A\nnext 1\n",
            "$A=$B\n$B=$A\nrouter_id $A\nnext 1\n",
            // Each further line of the value is `$A` again: an endless stream of lines
            // `x` (keepalived -t: killed by `timeout 5` too).
            "$A=x\\\n$A\nrouter_id $A\nnext 1\n",
        ] {
            let lx = lex_map(&[("/k.conf", text)], None);
            let w = words(&lx);
            assert_eq!(w.last().map(String::as_str), Some("next 1"), "{text:?}");
            assert!(
                w.len() <= MAX_WORK_PER_LINE / STEP_COST + 1,
                "{text:?}: {} lines",
                w.len()
            );
            assert_eq!(lx.diags.len(), 1, "{text:?}");
            assert!(lx.diags[0].msg.contains("does not terminate"), "{:?}", lx.diags);
            assert!(lx.expanded <= MAX_WORK_PER_LINE + MAXBUF + 4 * LINE_COST);
        }
    }

    /// Multi-line values: found only where the reference ends the line (keepalived
    /// 2.2.7: `$M tail` gives "Unknown keyword '$M'"); a line holding only a comment
    /// inside the value is skipped, not its end (`$M=\`, `# c`, ` m3`, `$M`: "Unknown
    /// keyword 'm3'"); an empty line ends it.
    #[test]
    fn multi_line_values() {
        assert_eq!(
            global_defs("$M=m1 \\\n m2\n$M\n$M tail\nx ${M}\n"),
            ["m1", "m2", "$M tail", "x m1", "m2"]
        );
        assert_eq!(global_defs("$M=\\\n# c\n m3\n$M\n"), ["m3"]);
        assert_eq!(global_defs("$M=a \\\n\nb\n$M\n"), ["b", "a"]);
        // A multi-line value expanded inside another one's lines comes first.
        assert_eq!(
            global_defs("$I=i1 \\\n i2\n$O=o1 $I\\\n o2\n$O\n"),
            ["o1 i1", "i2", "o2"]
        );
    }

    /// After a substitution the line is decommented again; `${_HASH}` and `${_BANG}`
    /// are keepalived's built-in `#` and `!`; `${NAME }` replaces `${NAME ` only. All
    /// checked with keepalived 2.2.7 -t: `k1${_HASH}x` gives "Unknown keyword 'k1'",
    /// `"k2${_HASH}${_BANG}"` "'k2#!'", `$Q="q` then `$Q` a second "Unterminated quote
    /// '\"q'", and `${A } q` (`$A=a1`) "'a1'", the `}` closing global_defs, then "'q'".
    #[test]
    fn substituted_lines_are_decommented_again() {
        assert_eq!(global_defs("k1${_HASH}x\n\"k2${_HASH}${_BANG}\"\n"), ["k1", "k2#!"]);
        let lx = lex_map(&[("/k.conf", "$Q=\"q\n$Q\n")], None);
        let msgs: Vec<_> = lx.diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "(/k.conf: Line 1) Unterminated quote '$Q=\"q'",
                "(/k.conf: Line 2) Unterminated quote '\"q'",
                "(/k.conf: Line 2) Unmatched quote: '\"q'"
            ]
        );
        let lx = lex_map(&[("/k.conf", "$A=a1\n${A } q\n")], None);
        assert_eq!(words(&lx), ["a1", "}", "q"]);
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
