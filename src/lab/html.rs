//! The lab as one self-contained HTML page (`uvs lab --html FILE`): per mode the
//! topology, the packet's journey, who answered, the `--break` evidence and the
//! director's statistics. Inline SVG and CSS only: no script, no fetch (the page's
//! Content-Security-Policy, `default-src 'none'`, would make any fetch fail visibly),
//! at most 1280 px wide, printable.

use std::fmt::Write;

use super::report::ModeReport;
use super::svg::{self, esc};

/// The page's Content-Security-Policy: nothing may be fetched, inline styles only.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

const CSS: &str = "\
body{font-family:'DejaVu Sans',Arial,sans-serif;max-width:1220px;margin:0 auto;padding:0 20px 40px;color:#111;background:#fff}
h1{font-size:24px}h2{font-size:20px;border-bottom:2px solid #333;margin-top:36px}h3{font-size:15px;margin:18px 0 6px}
pre{font-family:'DejaVu Sans Mono',monospace;font-size:12px;background:#f4f4f4;padding:8px;overflow-x:auto;white-space:pre-wrap}
p.explain{background:#fdecec;border-left:4px solid #b91c1c;padding:8px 12px}
svg.lab{display:block;max-width:100%;height:auto;margin:6px 0}
svg.lab text{font-family:'DejaVu Sans Mono',monospace;font-size:12px;fill:#111}
svg.lab text.hname{font-family:'DejaVu Sans',Arial,sans-serif;font-weight:bold;font-size:13px}
svg.lab text.ttl{font-family:'DejaVu Sans',Arial,sans-serif;font-weight:bold}
svg.lab text.lbl{font-size:11px;fill:#333}
svg.lab text.dim{fill:#666}
svg.lab .req-t{fill:#1d4ed8}svg.lab .rep-t{fill:#15803d}
svg.lab .chg{font-weight:bold;text-decoration:underline;fill:#b91c1c}
svg.lab text.chg-t{fill:#b91c1c;font-weight:bold}
svg.lab text.bad-t{fill:#b91c1c;font-weight:bold}
svg.lab rect.host{fill:#f8fafc;stroke:#334155;stroke-width:1.5}
svg.lab rect.director{fill:#eef2ff}
svg.lab rect.note{fill:#fff;stroke:#b91c1c;stroke-width:1.5}
svg.lab .link{fill:none;stroke-width:2.5}
svg.lab .link.req{stroke:#1d4ed8}
svg.lab .link.rep{stroke:#15803d;stroke-dasharray:8 5}
svg.lab .link.chg-a{stroke:#b91c1c;stroke-width:3.5}
svg.lab .link.bad{stroke:#b91c1c;stroke-dasharray:3 3;stroke-width:3}
svg.lab .link.bad-dim{stroke:#aaa;stroke-dasharray:8 5}
svg.lab .head{fill:#b91c1c}svg.lab .head-req{fill:#1d4ed8}svg.lab .head-rep{fill:#15803d}svg.lab .head-bad{fill:#b91c1c}
svg.lab .cross{stroke:#b91c1c;stroke-width:4}
svg.lab .lifeline{stroke:#94a3b8;stroke-dasharray:4 4}
svg.lab .guide{stroke:#cbd5e1;stroke-dasharray:2 4}
svg.lab rect.cell{stroke:#fff}svg.lab rect.rs1{fill:#bfdbfe}svg.lab rect.rs2{fill:#fed7aa}
svg.lab rect.none{fill:#e5e7eb}svg.lab rect.other{fill:#ddd6fe}
@media print{body{max-width:none;padding:0}section+section{break-before:page}h3{break-after:avoid}svg.lab,pre{break-inside:avoid}svg.lab{width:100%}}
";

/// The whole page for the modes run.
pub fn page(reports: &[ModeReport], command: &str) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>uvs lab</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n\
         <h1>uvs lab: the LVS forwarding modes, from captured frames</h1>\n\
         <p>Made by <code>{}</code>. Every drawing comes from this run: the addresses were read back from \
         the network namespaces, the hops from frames captured at every host (tcpdump) and by the director \
         itself (<code>--pcap</code>). Fields the director changed are <b>bold, underlined and red</b> and \
         listed as <i>before -&gt; after</i> under the hop.</p>\n",
        esc(command)
    );
    for r in reports {
        section(&mut o, r);
    }
    o.push_str("</body>\n</html>\n");
    o
}

fn section(o: &mut String, r: &ModeReport) {
    let id = r.title.split(' ').next().unwrap_or("mode").to_lowercase();
    let _ = writeln!(
        o,
        "<section id=\"{id}\">\n<h2>{}</h2>\n<p>{}.</p>",
        esc(&r.title),
        esc(&r.blurb)
    );
    let _ = writeln!(
        o,
        "<h3>The rules</h3>\n<pre>{}</pre>",
        esc(&r
            .rules
            .lines()
            .map(|l| format!("dir$ ipvsadm {l}"))
            .collect::<Vec<_>>()
            .join("\n"))
    );
    let _ = writeln!(o, "<h3>Topology</h3>\n{}", svg::topology(r, None));
    let _ = writeln!(o, "<h3>Who answered</h3>\n{}", svg::answers(r));
    let _ = writeln!(o, "<h3>One request and its reply, hop by hop</h3>\n{}", svg::journey(r));
    if let Some(e) = &r.evidence {
        let _ = writeln!(
            o,
            "<h3>What went wrong without the {} step</h3>\n{}",
            e.step(),
            svg::topology(r, Some(e))
        );
        for para in e.text().lines() {
            let _ = writeln!(o, "<p class=\"explain\">{}</p>", esc(para.trim()));
        }
    }
    let _ = writeln!(
        o,
        "<h3>dir$ ipvsadm -L -n --stats</h3>\n<pre>{}</pre>\n</section>",
        esc(&r.stats)
    );
}
