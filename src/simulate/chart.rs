//! `uvs simulate --html FILE`: the scenario as pictures a teacher can show. The
//! simulator records, at every virtual-time step, each real server's active and
//! inactive connection counts, and the pick of every new connection; this module
//! draws them: the picks in order (wrr's interleaving, sh/persistence pinning) and
//! the load per server over virtual time (lc's balancing, expiry). Pure functions
//! from the record to SVG/HTML text (golden-tested); no script, no fetch.

use std::fmt::Write;

use crate::lab::svg::esc;

/// One real server's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    pub active: u32,
    pub inactive: u32,
}

/// The loads of every real server (in [`Timeline::servers`] order) at virtual time
/// `t_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub t_ms: u64,
    pub loads: Vec<Load>,
}

/// A connection's pick: the `server` index, or `None` when no server was available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub t_ms: u64,
    pub client: String,
    pub server: Option<usize>,
}

/// What a scenario did, for drawing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Real servers as `RIP:PORT`, in the order first seen.
    pub servers: Vec<String>,
    pub samples: Vec<Sample>,
    pub picks: Vec<Pick>,
}

impl Timeline {
    /// Index of server `name`, adding it if new (earlier samples read as 0 for it).
    pub fn server(&mut self, name: &str) -> usize {
        match self.servers.iter().position(|s| s == name) {
            Some(i) => i,
            None => {
                self.servers.push(name.to_string());
                self.servers.len() - 1
            }
        }
    }

    /// Record the loads at `t_ms`; a sample at the same time replaces the last one.
    pub fn sample(&mut self, t_ms: u64, loads: Vec<(String, Load)>) {
        let mut v = vec![Load::default(); self.servers.len()];
        for (name, l) in loads {
            let i = self.server(&name);
            if v.len() <= i {
                v.resize(i + 1, Load::default());
            }
            v[i].active += l.active;
            v[i].inactive += l.inactive;
        }
        if self.samples.last().map(|s| (s.t_ms, &s.loads)) == Some((t_ms, &v)) {
            return;
        }
        match self.samples.last_mut() {
            Some(s) if s.t_ms == t_ms => s.loads = v,
            _ => self.samples.push(Sample { t_ms, loads: v }),
        }
    }
}

const WIDTH: u32 = 1200;
const LEFT: u32 = 170;
const RIGHT: u32 = 30;
/// Colours per server (text carries the names too).
const COLORS: [&str; 8] = [
    "#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777",
];

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn svg_open(o: &mut String, h: u32, label: &str) {
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"sim\" width=\"{WIDTH}\" height=\"{h}\" viewBox=\"0 0 {WIDTH} {h}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
}

fn label(o: &mut String, x: u32, y: u32, anchor: &str, s: &str) {
    let _ = writeln!(
        o,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"{anchor}\" xml:space=\"preserve\">{}</text>",
        esc(s)
    );
}

/// The picks in order: one row per server, one mark per new connection at its
/// sequence number, numbered, so interleaving and pinning read at a glance.
pub fn picks(t: &Timeline) -> String {
    let rows = t.servers.len() + usize::from(t.picks.iter().any(|p| p.server.is_none()));
    let row_h = 30;
    let h = 50 + rows as u32 * row_h + 30;
    let mut o = String::new();
    svg_open(&mut o, h, "the pick of each new connection, in order");
    let n = t.picks.len().max(1) as u32;
    let span = WIDTH - LEFT - RIGHT;
    let step = span as f64 / n as f64;
    label(
        &mut o,
        10,
        20,
        "start",
        &format!("the pick of each of the {} new connections, in order", t.picks.len()),
    );
    for r in 0..rows {
        let y = 50 + r as u32 * row_h;
        let name = t.servers.get(r).map_or("none (no server)", |s| s.as_str());
        let count = t
            .picks
            .iter()
            .filter(|p| p.server == if r < t.servers.len() { Some(r) } else { None })
            .count();
        label(&mut o, LEFT - 10, y + 4, "end", &format!("{name} ({count})"));
        let _ = writeln!(
            o,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" class=\"grid\"/>",
            WIDTH - RIGHT
        );
    }
    for (k, p) in t.picks.iter().enumerate() {
        let r = p.server.unwrap_or(t.servers.len());
        let x = LEFT as f64 + step * (k as f64 + 0.5);
        let y = 50 + r as u32 * row_h;
        let fill = p.server.map_or("#9ca3af", color);
        let radius = (step / 2.0 - 1.0).clamp(1.5, 9.0);
        let _ = writeln!(
            o,
            "<circle cx=\"{x:.1}\" cy=\"{y}\" r=\"{radius:.1}\" fill=\"{fill}\"><title>{} at {:.3} s: {} -&gt; {}</title></circle>",
            k + 1,
            p.t_ms as f64 / 1000.0,
            esc(&p.client),
            esc(p.server.map_or("none", |s| t.servers[s].as_str()))
        );
        if step >= 18.0 {
            let _ = writeln!(
                o,
                "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\" class=\"small\">{}</text>",
                y - 11,
                k + 1
            );
        }
    }
    label(
        &mut o,
        LEFT,
        h - 8,
        "start",
        "x: connection number (order of the scenario's connect/packet lines)",
    );
    o.push_str("</svg>\n");
    o
}

/// Active (solid) and inactive (dashed) connections per server over virtual time,
/// one band per server on a common scale.
pub fn loads(t: &Timeline) -> String {
    let band = 90;
    let top = 40;
    let h = top + t.servers.len().max(1) as u32 * (band + 20) + 40;
    let mut o = String::new();
    svg_open(
        &mut o,
        h,
        "active and inactive connections per real server over virtual time",
    );
    let t_end = t.samples.last().map_or(1, |s| s.t_ms).max(1);
    let max = t
        .samples
        .iter()
        .flat_map(|s| s.loads.iter().map(|l| l.active.max(l.inactive)))
        .max()
        .unwrap_or(0)
        .max(1);
    let span = (WIDTH - LEFT - RIGHT) as f64;
    let x_of = |ms: u64| LEFT as f64 + span * ms as f64 / t_end as f64;
    label(
        &mut o,
        10,
        20,
        "start",
        &format!(
            "connections per real server over {:.1} s of virtual time (solid: active, dashed: inactive; scale 0..{max})",
            t_end as f64 / 1000.0
        ),
    );
    for (i, name) in t.servers.iter().enumerate() {
        let y0 = top + i as u32 * (band + 20);
        let base = y0 + band;
        let y_of = |v: u32| base as f64 - (band - 10) as f64 * v as f64 / max as f64;
        let _ = writeln!(
            o,
            "<rect x=\"{LEFT}\" y=\"{y0}\" width=\"{span}\" height=\"{band}\" class=\"band\"/>"
        );
        let last = t
            .samples
            .last()
            .and_then(|s| s.loads.get(i))
            .copied()
            .unwrap_or_default();
        label(&mut o, LEFT - 10, y0 + 20, "end", name);
        label(
            &mut o,
            LEFT - 10,
            y0 + 38,
            "end",
            &format!("now: {} act, {} inact", last.active, last.inactive),
        );
        for (inactive, class) in [(false, "act"), (true, "inact")] {
            let mut d = String::new();
            let mut prev: Option<f64> = None;
            for s in &t.samples {
                let l = s.loads.get(i).copied().unwrap_or_default();
                let v = if inactive { l.inactive } else { l.active };
                let (x, y) = (x_of(s.t_ms), y_of(v));
                match prev {
                    None => {
                        let _ = write!(d, "M{x:.1} {y:.1}");
                    }
                    Some(py) => {
                        let _ = write!(d, " L{x:.1} {py:.1} L{x:.1} {y:.1}");
                    }
                }
                prev = Some(y);
            }
            if let Some(py) = prev {
                let _ = write!(d, " L{:.1} {py:.1}", x_of(t_end));
                let _ = writeln!(o, "<path d=\"{d}\" class=\"{class}\" stroke=\"{}\"/>", color(i));
            }
        }
        // The picks of this server as ticks on the band's bottom edge.
        for p in t.picks.iter().filter(|p| p.server == Some(i)) {
            let x = x_of(p.t_ms);
            let _ = writeln!(
                o,
                "<line x1=\"{x:.1}\" y1=\"{base}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"{}\" class=\"tick\"/>",
                base + 8,
                color(i)
            );
        }
    }
    // Time axis.
    let y = h - 30;
    let ticks = 10;
    for k in 0..=ticks {
        let ms = t_end * k / ticks;
        let x = x_of(ms);
        let _ = writeln!(
            o,
            "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" class=\"grid\"/>",
            y - 6,
            y
        );
        label(
            &mut o,
            x as u32,
            y + 14,
            "middle",
            &format!("{:.1} s", ms as f64 / 1000.0),
        );
    }
    o.push_str("</svg>\n");
    o
}

const CSS: &str = "\
body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1220px;margin:0 auto;padding:0 20px 40px}
pre{font-size:12px;background:#f4f4f4;padding:8px;white-space:pre-wrap}
svg.sim{display:block;max-width:100%;height:auto;margin:8px 0}
svg.sim text{font-family:'DejaVu Sans Mono',monospace;font-size:12px;fill:#111}
svg.sim text.small{font-size:10px;fill:#444}
svg.sim .grid{stroke:#cbd5e1}
svg.sim .band{fill:#f8fafc;stroke:#cbd5e1}
svg.sim .act{fill:none;stroke-width:2.5}
svg.sim .inact{fill:none;stroke-width:1.5;stroke-dasharray:6 4}
svg.sim .tick{stroke-width:1.5}
@media print{body{max-width:none;padding:0}svg.sim{break-inside:avoid;width:100%}}
";

/// The page: the two charts, the scenario and what it printed.
pub fn page(t: &Timeline, name: &str, scenario: &str, output: &str) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n<title>uvs simulate: {}</title>\n\
         <style>\n{CSS}</style>\n</head>\n<body>\n<h1>uvs simulate: {}</h1>\n\
         <p>The scenario ran through the director's real pipeline in virtual time. Every dot is one new \
         connection and the server the scheduler picked for it; the bands show each real server's active \
         (solid) and inactive (dashed) connection counts as the scenario went on.</p>\n\
         <h2>Picks</h2>\n{}\n<h2>Connections per real server</h2>\n{}\n\
         <h2>The scenario</h2>\n<pre>{}</pre>\n<h2>What it printed</h2>\n<pre>{}</pre>\n</body>\n</html>\n",
        crate::lab::html::CSP,
        esc(name),
        esc(name),
        picks(t),
        loads(t),
        esc(scenario),
        esc(output)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrr 3:1 over four connections, then one closes and time passes.
    fn fixture() -> Timeline {
        let mut t = Timeline::default();
        let l = |a, i| Load { active: a, inactive: i };
        t.sample(
            0,
            vec![("10.0.0.1:80".into(), l(0, 0)), ("10.0.0.2:80".into(), l(0, 0))],
        );
        for (k, s) in [0, 0, 1, 0].into_iter().enumerate() {
            t.picks.push(Pick {
                t_ms: k as u64 * 500,
                client: format!("192.168.0.{}:1000", k + 1),
                server: Some(s),
            });
        }
        t.sample(
            1500,
            vec![("10.0.0.1:80".into(), l(3, 0)), ("10.0.0.2:80".into(), l(1, 0))],
        );
        t.sample(
            2000,
            vec![("10.0.0.1:80".into(), l(2, 1)), ("10.0.0.2:80".into(), l(1, 0))],
        );
        t.sample(
            2000,
            vec![("10.0.0.1:80".into(), l(2, 1)), ("10.0.0.2:80".into(), l(1, 0))],
        );
        t.sample(
            12000,
            vec![("10.0.0.1:80".into(), l(2, 0)), ("10.0.0.2:80".into(), l(1, 0))],
        );
        t
    }

    fn golden(name: &str, got: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/simulate/golden")
            .join(name);
        if std::env::var_os("UVS_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (UVS_BLESS=1)", path.display()));
        assert!(
            want == got,
            "{} differs (if intended: UVS_BLESS=1 cargo test --lib simulate::chart, and review the diff)",
            path.display()
        );
    }

    #[test]
    fn samples_merge_and_servers_appear() {
        let t = fixture();
        assert_eq!(t.servers, ["10.0.0.1:80", "10.0.0.2:80"]);
        assert_eq!(
            t.samples.len(),
            4,
            "an identical sample at the same time is not repeated"
        );
        let mut t = t;
        t.sample(13000, vec![("10.0.0.3:80".into(), Load { active: 1, inactive: 0 })]);
        assert_eq!(t.servers.len(), 3);
        assert_eq!(
            t.samples.last().unwrap().loads,
            [Load::default(), Load::default(), Load { active: 1, inactive: 0 }]
        );
    }

    #[test]
    fn golden_charts() {
        let t = fixture();
        let p = picks(&t);
        assert!(p.contains("10.0.0.1:80 (3)") && p.contains("10.0.0.2:80 (1)"), "{p}");
        assert_eq!(p.matches("<circle").count(), 4);
        golden("picks.svg", &p);
        let l = loads(&t);
        assert!(l.contains("now: 2 act, 0 inact"), "{l}");
        assert_eq!(l.matches("class=\"act\"").count(), 2);
        assert_eq!(l.matches("class=\"inact\"").count(), 2);
        golden("loads.svg", &l);
        let page = page(
            &t,
            "wrr.txt",
            "-A -t 10.1.1.1:80 -s wrr\n",
            "TCP 192.168.0.1:1000 -> 10.0.0.1:80\n",
        );
        assert!(page.contains("default-src 'none'") && !page.contains("<script"));
    }
}
