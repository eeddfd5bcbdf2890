//! SVG drawings of a lab run, for `uvs lab --html`: the topology with the request and
//! reply paths, the packet's journey as a sequence diagram (one arrow per hop, drawn
//! from the captured frames of [`super::hops`]), who answered each request, and the
//! evidence of a `--break` drawn on the topology.
//!
//! Pure functions from [`ModeReport`] data to SVG text: no I/O, deterministic output
//! (golden-tested in `golden/`). Every drawing is at most [`WIDTH`] px wide, carries
//! its meaning in text as well as colour (changed fields are underlined, bold and
//! spelled out as `before -> after`), and is styled by the page's CSS classes.
//! The SVG is written with `format!`: a dozen element kinds, whose exact text the
//! golden files pin down, need no SVG crate.

use std::fmt::Write;

use super::hops::{self, Change, Field, Hop, MacNames, Seen};
use super::report::{Evidence, HostInfo, ModeReport};
use crate::testbed::lvs::Mode;

/// Width of every drawing (the page is 1280 px wide with its margins).
pub const WIDTH: u32 = 1200;
/// Line height of the 12 px monospace text.
const LINE: u32 = 16;
/// Width of one character of that text (DejaVu Sans Mono at 12 px: 7.22 px).
const CHAR: f64 = 7.3;

/// Escape text for XML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn open(out: &mut String, height: u32, label: &str) {
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"lab\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
    out.push_str(
        "<defs>\
         <marker id=\"ah\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerUnits=\"userSpaceOnUse\" markerWidth=\"14\" markerHeight=\"14\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" class=\"head\"/></marker>\
         <marker id=\"ahq\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerUnits=\"userSpaceOnUse\" markerWidth=\"14\" markerHeight=\"14\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" class=\"head-req\"/></marker>\
         <marker id=\"ahp\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerUnits=\"userSpaceOnUse\" markerWidth=\"14\" markerHeight=\"14\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" class=\"head-rep\"/></marker>\
         <marker id=\"ahx\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerUnits=\"userSpaceOnUse\" markerWidth=\"14\" markerHeight=\"14\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" class=\"head-bad\"/></marker>\
         </defs>\n",
    );
}

fn text(out: &mut String, x: u32, y: u32, class: &str, s: &str) {
    let _ = writeln!(
        out,
        "<text x=\"{x}\" y=\"{y}\" class=\"{class}\" xml:space=\"preserve\">{}</text>",
        esc(s)
    );
}

/// The lab's hosts in the order the drawings place them.
const LANES: [&str; 4] = ["client", "director", "rs1", "rs2"];

/// The host a MAC address belongs to (`client`, `director`, `rs1`, `rs2`), by the
/// names the lab gave the interfaces (`director eth1` belongs to `director`).
fn owner(m: &[u8; 6], names: &MacNames) -> Option<usize> {
    let n = names.get(m)?;
    let host = n.split(' ').next()?;
    LANES.iter().position(|l| *l == host)
}

// ---------------------------------------------------------------------------------
// Topology

/// Where a host's box is and how tall.
#[derive(Clone, Copy)]
struct Box {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

impl Box {
    fn mid_y(&self) -> u32 {
        self.y + self.h / 2
    }
    fn right(&self) -> u32 {
        self.x + self.w
    }
    fn mid_x(&self) -> u32 {
        self.x + self.w / 2
    }
    fn bottom(&self) -> u32 {
        self.y + self.h
    }
}

/// The text lines of a host's box: its interfaces with addresses and MAC.
fn host_lines(h: &HostInfo, vip: &str) -> Vec<String> {
    let mut v = Vec::new();
    for i in &h.ifaces {
        let addrs = if i.addrs.is_empty() {
            "(no address)".to_string()
        } else {
            i.addrs.join(", ")
        };
        v.push(format!("{:<6}{addrs}", i.name));
        if !i.mac.is_empty() {
            v.push(format!("{:<6}{}", "", i.mac));
        }
    }
    if h.name == "director" {
        // uvs answers for the VIP on eth0 in every mode (AF_PACKET: the address is
        // not configured on the interface).
        v.push(format!("VIP   {vip}:80 (uvs, on eth0)"));
    }
    v
}

fn host_title(name: &str) -> &str {
    match name {
        "director" => "director (uvs run)",
        n => n,
    }
}

fn draw_box(out: &mut String, b: Box, title: &str, lines: &[String], class: &str) {
    let _ = writeln!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"6\" class=\"host {class}\"/>",
        b.x, b.y, b.w, b.h
    );
    text(out, b.x + 10, b.y + 20, "hname", title);
    for (k, l) in lines.iter().enumerate() {
        text(out, b.x + 10, b.y + 40 + k as u32 * LINE, "mono", l);
    }
}

fn box_height(lines: usize) -> u32 {
    32 + lines as u32 * LINE + 4
}

/// A path with an arrow head; `kind` is `req`, `rep` or `bad`.
fn arrow_path(out: &mut String, d: &str, kind: &str) {
    let marker = match kind {
        "req" => "ahq",
        "rep" => "ahp",
        _ => "ahx",
    };
    let _ = writeln!(
        out,
        "<path d=\"{d}\" class=\"link {kind}\" marker-end=\"url(#{marker})\"/>"
    );
}

/// The topology: the four hosts with their interfaces (name, IP, MAC), the request
/// path (client -> director -> real servers) and the reply path (through the director
/// for NAT, around it for DR and TUN). With `evidence`, what a `--break` did, drawn on
/// the same picture.
pub fn topology(r: &ModeReport, evidence: Option<&Evidence>) -> String {
    let host = |n: &str| r.hosts.iter().find(|h| h.name == n);
    let lines: Vec<Vec<String>> = LANES
        .iter()
        .map(|n| host(n).map(|h| host_lines(h, &r.vip)).unwrap_or_default())
        .collect();
    let w = 310;
    let top = 70;
    let gap = 80;
    let h1 = box_height(lines[2].len());
    let h2 = box_height(lines[3].len());
    let rs1 = Box {
        x: WIDTH - w - 20,
        y: top,
        w,
        h: h1,
    };
    let rs2 = Box {
        x: rs1.x,
        y: top + h1 + gap,
        w,
        h: h2,
    };
    let mid = (top + rs2.bottom()) / 2;
    let hc = box_height(lines[0].len());
    let hd = box_height(lines[1].len());
    let client = Box {
        x: 20,
        y: mid - hc / 2,
        w: 300,
        h: hc,
    };
    let dir = Box {
        x: 450,
        y: mid - hd / 2,
        w: 320,
        h: hd,
    };
    let height = rs2.bottom() + 90;
    let label = match evidence {
        Some(e) => format!("{} topology, with the evidence of --break {}", r.title, e.step()),
        None => format!("{} topology: hosts, interfaces, request and reply paths", r.title),
    };
    let mut out = String::new();
    open(&mut out, height, &label);
    let nat = matches!(r.mode, Mode::NatOneArm | Mode::NatTwoArm);

    // The paths first, under the boxes.
    let broken_reply = matches!(
        evidence,
        Some(Evidence::RpFilter { .. }) | Some(Evidence::Gateway { .. })
    );
    let arp = matches!(evidence, Some(Evidence::ArpIgnore { .. }));
    // Request: client -> director -> rs1, rs2.
    let req_y = mid - 12;
    arrow_path(
        &mut out,
        &format!("M{} {req_y} L{} {req_y}", client.right(), dir.x),
        if arp { "bad-dim" } else { "req" },
    );
    text(&mut out, client.right() + 12, req_y - 6, "lbl req-t", "request");
    for (b, dy) in [(rs1, -10i32), (rs2, 10)] {
        let y0 = (mid as i32 + dy - 12) as u32;
        let y1 = b.mid_y() - 10;
        arrow_path(
            &mut out,
            &format!("M{} {y0} L{} {y1}", dir.right(), b.x),
            if arp { "bad-dim" } else { "req" },
        );
    }
    text(&mut out, dir.right() + 14, rs1.bottom() + 20, "lbl req-t", "request");
    // Reply.
    let rep_kind = if broken_reply { "bad-dim" } else { "rep" };
    if nat {
        let rep_y = mid + 12;
        for (b, dy) in [(rs1, -10i32), (rs2, 10)] {
            let y0 = b.mid_y() + 10;
            let y1 = (mid as i32 + dy + 12) as u32;
            arrow_path(&mut out, &format!("M{} {y0} L{} {y1}", b.x, dir.right()), rep_kind);
        }
        arrow_path(
            &mut out,
            &format!("M{} {rep_y} L{} {rep_y}", dir.x, client.right()),
            rep_kind,
        );
        text(&mut out, client.right() + 12, rep_y + 18, "lbl rep-t", "reply");
    } else {
        // Around the director: rs1 over the top, rs2 under the bottom.
        let ytop = top - 40;
        let ybot = rs2.bottom() + 40;
        let cx = client.mid_x();
        arrow_path(
            &mut out,
            &format!(
                "M{} {} L{} {ytop} L{cx} {ytop} L{cx} {}",
                rs1.mid_x(),
                rs1.y,
                rs1.mid_x(),
                client.y
            ),
            rep_kind,
        );
        arrow_path(
            &mut out,
            &format!(
                "M{} {} L{} {ybot} L{} {ybot} L{} {}",
                rs2.mid_x(),
                rs2.bottom(),
                rs2.mid_x(),
                cx + 10,
                cx + 10,
                client.bottom()
            ),
            rep_kind,
        );
        text(
            &mut out,
            dir.x,
            ytop - 6,
            "lbl rep-t",
            "reply: the real server answers the client directly (bypasses the director)",
        );
    }

    // The boxes.
    for (k, b) in [client, dir, rs1, rs2].into_iter().enumerate() {
        draw_box(&mut out, b, host_title(LANES[k]), &lines[k], LANES[k]);
    }

    // Legend.
    let ly = height - 14;
    let legend = if nat {
        "solid blue: request path   dashed green: reply path (NAT: both through the director)"
    } else {
        "solid blue: request path   dashed green: reply path (bypasses the director)"
    };
    text(&mut out, 20, ly, "lbl", legend);
    if evidence.is_some() {
        text(
            &mut out,
            700,
            ly,
            "lbl bad-t",
            "red dotted: what happened instead   X: where it broke",
        );
    }

    if let Some(e) = evidence {
        draw_evidence(&mut out, e, client, dir, [rs1, rs2], mid, top);
    }
    out.push_str("</svg>\n");
    out
}

/// A red cross at (x, y) with a caption (the text carries the meaning, too).
fn cross(out: &mut String, x: u32, y: u32) {
    let _ = writeln!(
        out,
        "<path d=\"M{} {} L{} {} M{} {} L{} {}\" class=\"cross\"/>",
        x - 9,
        y - 9,
        x + 9,
        y + 9,
        x - 9,
        y + 9,
        x + 9,
        y - 9
    );
}

/// A caption on a white background so it stays readable over the links.
fn note(out: &mut String, x: u32, y: u32, lines: &[String]) {
    let w = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64 * CHAR + 16.0;
    let h = lines.len() as u32 * LINE + 8;
    let _ = writeln!(
        out,
        "<rect x=\"{x}\" y=\"{}\" width=\"{:.0}\" height=\"{h}\" rx=\"4\" class=\"note\"/>",
        y - 14,
        w
    );
    for (k, l) in lines.iter().enumerate() {
        text(out, x + 8, y + k as u32 * LINE, "mono bad-t", l);
    }
}

fn draw_evidence(out: &mut String, e: &Evidence, client: Box, dir: Box, rs: [Box; 2], mid: u32, top: u32) {
    match e {
        Evidence::ArpIgnore {
            neigh,
            owner,
            via_director,
            total,
            servers,
        } => {
            let target = match owner.as_str() {
                "rs1" => Some(rs[0]),
                "rs2" => Some(rs[1]),
                _ => None,
            };
            cross(out, (client.right() + dir.x) / 2, mid - 12);
            if let Some(b) = target {
                // The client's SYNs go straight to the server that answered ARP.
                let y = if b.y == rs[0].y { top - 20 } else { rs[1].bottom() + 20 };
                arrow_path(
                    out,
                    &format!(
                        "M{} {} L{} {y} L{} {y} L{} {}",
                        client.mid_x() + 20,
                        if b.y == rs[0].y { client.y } else { client.bottom() },
                        client.mid_x() + 20,
                        b.mid_x() - 20,
                        b.mid_x() - 20,
                        if b.y == rs[0].y { b.y } else { b.bottom() }
                    ),
                    "bad",
                );
                let ly = if b.y == rs[0].y { y - 6 } else { y + 14 };
                text(
                    out,
                    dir.x,
                    ly,
                    "lbl bad-t",
                    &format!("SYNs straight to {owner}: it answered ARP for the VIP"),
                );
            }
            let short: String = neigh
                .split(" lladdr ")
                .nth(1)
                .unwrap_or(neigh)
                .chars()
                .take(40)
                .collect();
            note(
                out,
                client.x,
                client.bottom() + 34,
                &[
                    "X client's ARP entry for the VIP:".to_string(),
                    format!("  {short} ({owner})"),
                    format!("X the director forwarded {via_director} of {total}"),
                    format!("  answers came from: {}", servers.join(", ")),
                ],
            );
        }
        Evidence::RpFilter {
            tunnelled,
            rpf,
            answered,
            total,
            ..
        } => {
            for b in rs {
                cross(out, b.x - 14, b.mid_y() - 10);
            }
            note(
                out,
                dir.x,
                dir.bottom() + 34,
                &[
                    format!("{tunnelled} IPIP packets left the director"),
                    "X dropped on tunl0 by rp_filter=1".to_string(),
                    format!("  TcpExtIPReversePathFilter = {rpf}"),
                    format!("X no SYN-ACK: {answered} of {total} answered"),
                ],
            );
        }
        Evidence::Gateway {
            rip_replies,
            vip,
            answered,
            total,
            syns_at_director,
        } => {
            // The replies go straight to the client, untranslated.
            let ybot = rs[1].bottom() + 30;
            let cx = client.mid_x();
            arrow_path(
                out,
                &format!(
                    "M{} {} L{} {ybot} L{cx} {ybot} L{cx} {}",
                    rs[1].mid_x(),
                    rs[1].bottom(),
                    rs[1].mid_x(),
                    client.bottom()
                ),
                "bad",
            );
            text(
                out,
                dir.x,
                ybot - 6,
                "lbl bad-t",
                "SYN-ACKs straight from the real servers, untranslated",
            );
            cross(out, cx, client.bottom() + 16);
            note(
                out,
                client.x,
                client.y - 84,
                &[
                    format!("X {rip_replies} SYN-ACKs from 10.78.1.x:8080, not {vip}:80"),
                    "  reached the client, which answers with RST".to_string(),
                    format!("X {answered} of {total} answered; director saw {syns_at_director} SYNs"),
                ],
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// The packet's journey

/// One arrow of the sequence diagram: a frame on one wire, seen at one or more
/// capture points (consecutive hop rows with the same headers).
struct Arrow<'a> {
    number: usize,
    titles: Vec<&'a str>,
    seen: &'a Seen,
    changes: Vec<Change>,
}

fn same_headers(a: &Seen, b: &Seen) -> bool {
    (
        a.eth_src,
        a.eth_dst,
        a.outer.map(|o| (o.0, o.1)),
        a.src,
        a.dst,
        a.sport,
        a.dport,
    ) == (
        b.eth_src,
        b.eth_dst,
        b.outer.map(|o| (o.0, o.1)),
        b.src,
        b.dst,
        b.sport,
        b.dport,
    )
}

fn arrows<'a>(hops: &'a [Hop], names: &MacNames) -> Vec<Arrow<'a>> {
    let mut v: Vec<Arrow> = Vec::new();
    for h in hops {
        if let Some(last) = v.last_mut()
            && same_headers(last.seen, &h.seen)
            && h.input.is_none()
        {
            last.titles.push(&h.title);
            continue;
        }
        let changes = h
            .input
            .as_ref()
            .map(|i| hops::changes(i, &h.seen, names))
            .unwrap_or_default();
        v.push(Arrow {
            number: v.len() + 1,
            titles: vec![&h.title],
            seen: &h.seen,
            changes,
        });
    }
    v
}

fn changed(a: &Arrow, f: Field) -> bool {
    a.changes.iter().any(|c| c.field == f)
}

/// `<tspan>` of one field, underlined and bold when the director changed it.
fn field(s: &str, hl: bool) -> String {
    if hl {
        format!("<tspan class=\"chg\">{}</tspan>", esc(s))
    } else {
        esc(s)
    }
}

/// The label lines of an arrow, as SVG text content (with tspans).
fn arrow_label(a: &Arrow, names: &MacNames) -> Vec<(String, &'static str)> {
    let x = a.seen;
    let mut v = Vec::new();
    let title = format!("{}. {}", a.number, a.titles[0]);
    v.push((esc(&title), "ttl"));
    for t in &a.titles[1..] {
        v.push((esc(&format!("   same frame: {t}")), "mono dim"));
    }
    v.push((
        format!(
            "MAC       {} -&gt; {}",
            field(&hops::named_mac(&x.eth_src, names), changed(a, Field::SrcMac)),
            field(&hops::named_mac(&x.eth_dst, names), changed(a, Field::DstMac))
        ),
        "mono",
    ));
    let l4 = |ip: &[u8; 4], p: u16| format!("{}:{p}", hops::ip(ip));
    if let Some((os, od, _)) = x.outer {
        let proto = match x.encap {
            "GUE" => "UDP + GUE",
            "GRE" => "GRE",
            _ => "IPIP",
        };
        v.push((
            format!(
                "outer IP  {}",
                field(
                    &format!("{} -> {}   ({proto})", hops::ip(&os), hops::ip(&od)),
                    changed(a, Field::Outer)
                )
            ),
            "mono",
        ));
    }
    let name = if x.outer.is_some() { "inner IP  " } else { "IP        " };
    v.push((
        format!(
            "{name}{} -&gt; {}   TTL {}",
            field(&l4(&x.src, x.sport), changed(a, Field::Src)),
            field(&l4(&x.dst, x.dport), changed(a, Field::Dst)),
            field(&x.ttl.to_string(), changed(a, Field::Ttl)),
        ),
        "mono",
    ));
    for c in &a.changes {
        v.push((esc(&format!("* changed {}", c.describe())), "mono chg-t"));
    }
    if a.changes.is_empty() && a.titles.iter().any(|t| t.contains("director sends")) {
        v.push((esc("* changed nothing"), "mono chg-t"));
    }
    v
}

/// The packet's journey: one lane per host, one arrow per hop, each labelled with
/// its MAC, IP and port headers (both IP headers when tunnelled); fields the director
/// changed are underlined and bold and listed as `before -> after`.
pub fn journey(r: &ModeReport) -> String {
    let lane_x = |k: usize| 60 + k as u32 * 120;
    let label_x = 540;
    let head = 56;
    let arrows = arrows(&r.hops, &r.names);
    let labels: Vec<_> = arrows.iter().map(|a| arrow_label(a, &r.names)).collect();
    let rows: u32 = labels.iter().map(|l| l.len() as u32 * LINE + 18).sum();
    let height = head + rows.max(40) + 20;
    let mut out = String::new();
    open(
        &mut out,
        height,
        &format!("{}: one request and its reply, hop by hop", r.title),
    );
    for (k, name) in LANES.iter().enumerate() {
        let x = lane_x(k);
        let _ = writeln!(
            out,
            "<rect x=\"{}\" y=\"10\" width=\"100\" height=\"26\" rx=\"4\" class=\"host {name}\"/>",
            x - 50
        );
        let _ = writeln!(
            out,
            "<text x=\"{x}\" y=\"28\" class=\"hname\" text-anchor=\"middle\">{name}</text>"
        );
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"36\" x2=\"{x}\" y2=\"{}\" class=\"lifeline\"/>",
            height - 10
        );
    }
    if arrows.is_empty() {
        text(&mut out, label_x, head + 20, "mono", "(no request reached the wire)");
    }
    let mut y = head;
    for (a, lab) in arrows.iter().zip(&labels) {
        let from = owner(&a.seen.eth_src, &r.names);
        let to = owner(&a.seen.eth_dst, &r.names);
        let ay = y + LINE + 6;
        let reply = a.seen.syn && a.seen.ack;
        let kind = if !a.changes.is_empty() {
            "chg-a"
        } else if reply {
            "rep"
        } else {
            "req"
        };
        let marker = match kind {
            "req" => "ahq",
            "rep" => "ahp",
            _ => "ah",
        };
        if let (Some(f), Some(t)) = (from, to) {
            let (x0, x1) = (lane_x(f), lane_x(t));
            let dir: i32 = if x1 >= x0 { 1 } else { -1 };
            let _ = writeln!(
                out,
                "<line x1=\"{}\" y1=\"{ay}\" x2=\"{}\" y2=\"{ay}\" class=\"link {kind}\" marker-end=\"url(#{marker})\"/>",
                x0 as i32 + 4 * dir,
                x1 as i32 - 4 * dir
            );
            let what = match (a.seen.syn, a.seen.ack, a.seen.outer.is_some()) {
                (true, false, false) => "SYN",
                (true, false, true) => "SYN in IPIP",
                (true, true, _) => "SYN-ACK",
                _ => "",
            };
            let what = if a.seen.outer.is_some() && a.seen.encap != "IPIP" {
                format!("SYN in {}", a.seen.encap)
            } else {
                what.to_string()
            };
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" class=\"lbl\" text-anchor=\"middle\">{}{}</text>",
                (x0 + x1) / 2,
                ay - 6,
                a.number,
                if what.is_empty() {
                    String::new()
                } else {
                    format!(" {}", esc(&what))
                }
            );
        }
        // A faint guide from the arrow to its label.
        let _ = writeln!(
            out,
            "<line x1=\"{}\" y1=\"{ay}\" x2=\"{}\" y2=\"{ay}\" class=\"guide\"/>",
            lane_x(3) + 14,
            label_x - 6
        );
        for (k, (l, class)) in lab.iter().enumerate() {
            let _ = writeln!(
                out,
                "<text x=\"{label_x}\" y=\"{}\" class=\"{class}\" xml:space=\"preserve\">{l}</text>",
                y + LINE + 10 + k as u32 * LINE
            );
        }
        y += lab.len() as u32 * LINE + 18;
    }
    out.push_str("</svg>\n");
    out
}

// ---------------------------------------------------------------------------------
// Who answered

/// Who answered each request: one cell per request with the server's name, and the
/// tally per server.
pub fn answers(r: &ModeReport) -> String {
    let n = r.answers.len().max(1) as u32;
    let cell = (WIDTH - 40).min(64 * n) / n;
    let mut servers: Vec<&str> = r.answers.iter().filter(|a| !a.is_empty()).map(|a| a.as_str()).collect();
    servers.sort();
    servers.dedup();
    let height = 120;
    let mut out = String::new();
    open(
        &mut out,
        height,
        &format!("who answered each of {} requests ({})", r.answers.len(), r.scheduler),
    );
    text(
        &mut out,
        20,
        18,
        "lbl",
        &format!("request 1 .. {}, scheduler {}", r.answers.len(), r.scheduler),
    );
    for (k, a) in r.answers.iter().enumerate() {
        let x = 20 + k as u32 * cell;
        let class = match a.as_str() {
            "" => "none",
            s if s.starts_with("rs") => s,
            _ => "other",
        };
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"28\" width=\"{}\" height=\"30\" class=\"cell {class}\"/>",
            cell.saturating_sub(2).max(1)
        );
        if cell >= 30 {
            let shown = if a.is_empty() { "-" } else { a.as_str() };
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"48\" class=\"mono\" text-anchor=\"middle\">{}</text>",
                x + cell / 2 - 1,
                esc(shown)
            );
        }
    }
    let mut tally = servers
        .iter()
        .map(|s| format!("{s}: {}", r.answers.iter().filter(|a| a == s).count()))
        .collect::<Vec<_>>();
    let none = r.answers.iter().filter(|a| a.is_empty()).count();
    if none > 0 {
        tally.push(format!("no answer (-): {none}"));
    }
    text(&mut out, 20, 80, "mono", &tally.join("   "));
    let pattern = match r.scheduler.as_str() {
        "rr" | "wrr" => "round robin: the servers alternate",
        "sh" | "dh" | "mh" => "hashing: one client (or destination) always gets the same server",
        _ => "",
    };
    if !pattern.is_empty() {
        text(&mut out, 20, 100, "lbl", pattern);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
#[path = "svg_tests.rs"]
mod tests;
