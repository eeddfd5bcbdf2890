//! Per-hop packet tables from real captures: for one request and its reply, what the
//! frame looked like at each hop (MAC, IP and port, source and destination; both IP
//! headers for IPIP), and what the director changed. Pure functions over captured
//! frames, so they are unit-tested without namespaces.

use std::collections::HashMap;

pub use crate::director::tap::{Direction, epb_flags, read_capture, read_pcap};
pub use crate::wire::dissect::{Seen, decode, tunnelled};

/// A row of the table.
#[derive(Debug, Clone)]
pub struct Hop {
    pub title: String,
    pub seen: Seen,
    /// What the director changed relative to the previous row (director rows only).
    pub changed: Option<String>,
    /// The frame the director received, for the rows of frames it sent (what
    /// `changed` compares against).
    pub input: Option<Seen>,
}

/// A header field of a captured frame (what a drawing highlights).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    SrcMac,
    DstMac,
    /// The outer IP header of a tunnelled packet (added by the director).
    Outer,
    Src,
    Dst,
    Ttl,
}

/// One field the director changed, before and after, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: Field,
    pub before: String,
    pub after: String,
}

impl Change {
    /// "dst MAC: A -> B" (the text marker beside the highlight).
    pub fn describe(&self) -> String {
        let what = match self.field {
            Field::SrcMac => "src MAC",
            Field::DstMac => "dst MAC",
            Field::Outer => "outer IP header",
            Field::Src => "src IP:port",
            Field::Dst => "dst IP:port",
            Field::Ttl => "TTL",
        };
        format!("{what}: {} -> {}", self.before, self.after)
    }
}

/// `mac` with its name, e.g. `02:00:00:00:00:11 (rs1)`.
pub fn named_mac(m: &[u8; 6], names: &MacNames) -> String {
    match names.get(m) {
        Some(n) => format!("{} ({n})", mac(m)),
        None => mac(m),
    }
}

/// The fields in which `out` differs from `inp`, field by field (the structured
/// form of [`diff`], for drawings).
pub fn changes(inp: &Seen, out: &Seen, names: &MacNames) -> Vec<Change> {
    let mut v = Vec::new();
    let mut push = |field, before: String, after: String| v.push(Change { field, before, after });
    if inp.eth_src != out.eth_src {
        push(
            Field::SrcMac,
            named_mac(&inp.eth_src, names),
            named_mac(&out.eth_src, names),
        );
    }
    if inp.eth_dst != out.eth_dst {
        push(
            Field::DstMac,
            named_mac(&inp.eth_dst, names),
            named_mac(&out.eth_dst, names),
        );
    }
    match (inp.outer, out.outer) {
        (None, Some((s, d, _))) => push(
            Field::Outer,
            "none".into(),
            format!("{} -> {} ({})", ip(&s), ip(&d), out.encap),
        ),
        (Some((s, d, _)), None) => push(Field::Outer, format!("{} -> {}", ip(&s), ip(&d)), "none".into()),
        _ => {}
    }
    if inp.src != out.src || inp.sport != out.sport {
        push(
            Field::Src,
            format!("{}:{}", ip(&inp.src), inp.sport),
            format!("{}:{}", ip(&out.src), out.sport),
        );
    }
    if inp.dst != out.dst || inp.dport != out.dport {
        push(
            Field::Dst,
            format!("{}:{}", ip(&inp.dst), inp.dport),
            format!("{}:{}", ip(&out.dst), out.dport),
        );
    }
    if inp.ttl != out.ttl {
        push(Field::Ttl, inp.ttl.to_string(), out.ttl.to_string());
    }
    v
}

/// Names for MAC addresses (host and interface) to print beside them.
pub type MacNames = HashMap<[u8; 6], String>;

/// Does `m` print as `text` (`aa:bb:...`)?
pub fn fmt_mac_eq(m: &[u8; 6], text: &str) -> bool {
    mac(m) == text
}

/// `aa:bb:cc:dd:ee:ff` text of a MAC address.
pub fn mac(m: &[u8; 6]) -> String {
    crate::wire::ethernet::fmt_mac(m)
}

/// Dotted-quad text of an IPv4 address.
pub fn ip(a: &[u8; 4]) -> String {
    std::net::Ipv4Addr::from(*a).to_string()
}

/// Describe how `out` differs from `inp` (what the director did).
pub fn diff(inp: &Seen, out: &Seen, names: &MacNames) -> String {
    let mut parts = Vec::new();
    if let (None, Some((s, d, _))) = (inp.outer, out.outer) {
        parts.push(format!(
            "added an outer IP header {} -> {} ({})",
            ip(&s),
            ip(&d),
            out.encap
        ));
    }
    if inp.eth_dst != out.eth_dst {
        let n = names.get(&out.eth_dst).map(|n| format!(" ({n})")).unwrap_or_default();
        parts.push(format!("dst MAC -> {}{n}", mac(&out.eth_dst)));
    }
    if inp.eth_src != out.eth_src {
        parts.push("src MAC -> its own".to_string());
    }
    if inp.dst != out.dst || inp.dport != out.dport {
        parts.push(format!(
            "dst {}:{} -> {}:{}",
            ip(&inp.dst),
            inp.dport,
            ip(&out.dst),
            out.dport
        ));
    }
    if inp.src != out.src || inp.sport != out.sport {
        parts.push(format!(
            "src {}:{} -> {}:{}",
            ip(&inp.src),
            inp.sport,
            ip(&out.src),
            out.sport
        ));
    }
    if inp.ttl != out.ttl {
        parts.push(format!("TTL {} -> {}", inp.ttl, out.ttl));
    }
    let kept = match (inp.dst == out.dst && inp.src == out.src, out.outer.is_some()) {
        (true, true) => "; inner packet untouched",
        (true, false) => "; IP addresses and ports untouched",
        _ => "",
    };
    format!("{}{kept}", parts.join(", "))
}

/// Render the hops as a readable table (fits 80 columns).
pub fn render(hops: &[Hop], names: &MacNames, color: bool) -> String {
    let (b, r) = if color { ("\x1b[1m", "\x1b[0m") } else { ("", "") };
    let named = |m: &[u8; 6]| match names.get(m) {
        Some(n) => format!("{} {:<10}", mac(m), format!("({n})")),
        None => mac(m),
    };
    let mut s = String::new();
    for (i, h) in hops.iter().enumerate() {
        s.push_str(&format!("{b}{}. {}{r}\n", i + 1, h.title));
        let x = &h.seen;
        s.push_str(&format!("     MAC  {} -> {}\n", named(&x.eth_src), named(&x.eth_dst)));
        if let Some((os, od, _)) = x.outer {
            s.push_str(&format!(
                "     outer IP  {} -> {}   ({})\n",
                ip(&os),
                ip(&od),
                match x.encap {
                    "GUE" => "protocol 17, UDP + GUE",
                    "GRE" => "protocol 47, GRE",
                    _ => "protocol 4, IPIP",
                }
            ));
            s.push_str(&format!(
                "     inner IP  {}:{} -> {}:{}\n",
                ip(&x.src),
                x.sport,
                ip(&x.dst),
                x.dport
            ));
        } else {
            s.push_str(&format!(
                "     IP   {}:{} -> {}:{}\n",
                ip(&x.src),
                x.sport,
                ip(&x.dst),
                x.dport
            ));
        }
        if let Some(c) = &h.changed {
            s.push_str(&wrap(&format!("director changed: {c}"), 5, 80));
        }
    }
    s.lines().map(|l| l.trim_end().to_string() + "\n").collect()
}

/// Wrap `text` at `width` columns, every line indented by `indent` spaces (and
/// continuation lines by two more).
pub fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut line = " ".repeat(indent);
    let mut fresh = true;
    for word in text.split(' ') {
        if !fresh && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(indent + 2);
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        line.push_str(word);
        fresh = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn syn(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, ttl: u8) -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, ttl)
            .tcp(sp, dp, 1, 100)
            .syn()
            .write(&mut v, &[])
            .unwrap();
        v
    }

    #[test]
    fn decodes_plain_and_ipip_and_describes_changes() {
        let a = decode(&syn([10, 0, 0, 10], [10, 0, 0, 100], 4000, 80, 64)).unwrap();
        assert!(a.syn && !a.ack && a.outer.is_none());
        let mut b = a.clone();
        b.eth_dst = [2, 0, 0, 0, 0, 0x11];
        b.ttl = 63;
        let names: MacNames = [([2, 0, 0, 0, 0, 0x11], "rs1".to_string())].into_iter().collect();
        let d = diff(&a, &b, &names);
        assert!(
            d.contains("dst MAC -> 02:00:00:00:00:11 (rs1)") && d.contains("IP addresses and ports untouched"),
            "{d}"
        );
        // IPIP: outer header around the original, as the director builds it.
        use crate::forward::tun::Encap;
        use crate::service::{TunnelCsum, TunnelType};
        let inner = syn([10, 0, 0, 10], [10, 0, 0, 100], 4000, 80, 63);
        let tunnelled = |kind| {
            let e = Encap {
                kind,
                csum: TunnelCsum::Csum,
                port: 6080,
            };
            let mut f = inner[..14].to_vec();
            f.extend(crate::forward::tun::encapsulated(
                &e,
                Ipv4Addr::new(10, 0, 0, 2),
                Ipv4Addr::new(10, 0, 0, 11),
                &inner[14..],
            ));
            f
        };
        let t = decode(&tunnelled(TunnelType::Ipip)).unwrap();
        assert_eq!(t.outer.map(|o| (o.0, o.1)), Some(([10, 0, 0, 2], [10, 0, 0, 11])));
        assert_eq!((t.src, t.dst, t.dport), ([10, 0, 0, 10], [10, 0, 0, 100], 80));
        let d = diff(&a, &t, &names);
        assert!(
            d.contains("added an outer IP header 10.0.0.2 -> 10.0.0.11") && d.contains("inner packet untouched"),
            "{d}"
        );
        let out = render(
            &[Hop {
                title: "x".into(),
                seen: t,
                changed: Some(d),
                input: None,
            }],
            &names,
            false,
        );
        assert!(out.contains("outer IP") && out.contains("inner IP"));
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out}");
        assert!(out.contains("(protocol 4, IPIP)"), "{out}");

        // GUE and GRE.
        for (kind, name, shown) in [
            (TunnelType::Gue, "GUE", "(protocol 17, UDP + GUE)"),
            (TunnelType::Gre, "GRE", "(protocol 47, GRE)"),
        ] {
            let t = decode(&tunnelled(kind)).unwrap();
            assert_eq!(t.encap, name);
            assert_eq!((t.src, t.dst, t.dport), ([10, 0, 0, 10], [10, 0, 0, 100], 80));
            let d = diff(&a, &t, &names);
            assert!(d.contains(&format!("10.0.0.2 -> 10.0.0.11 ({name})")), "{d}");
            let out = render(
                &[Hop {
                    title: "x".into(),
                    seen: t,
                    changed: Some(d),
                    input: None,
                }],
                &names,
                false,
            );
            assert!(out.contains(shown), "{out}");
        }
        // An unencapsulated packet has no tunnel.
        assert_eq!(
            decode(&syn([10, 0, 0, 10], [10, 0, 0, 100], 4000, 80, 63))
                .unwrap()
                .encap,
            ""
        );
    }
}
