//! Golden tests of the lab's drawings on fixed captured-frame fixtures: frames built
//! byte for byte as each mode's hosts put them on the wire (the addresses of
//! `testbed::lvs`, fixed MACs), decoded by `hops::decode`, arranged as `hop_table`
//! arranges them. A layout change shows up in review as a diff of `golden/*.svg`;
//! regenerate them with `UVS_BLESS=1 cargo test --lib lab::svg`.

use super::*;
use crate::lab::hops::decode;
use crate::lab::report::IfaceInfo;
use std::net::Ipv4Addr;

const CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const DIR: [u8; 6] = [2, 0, 0, 0, 0, 0x02];
const DIR1: [u8; 6] = [2, 0, 0, 0, 0, 0x22];
const RS1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const RS1_1: [u8; 6] = [2, 0, 0, 0, 0, 0x31];

fn names() -> MacNames {
    [
        (CLIENT, "client"),
        (DIR, "director"),
        (DIR1, "director eth1"),
        (RS1, "rs1"),
        (RS1_1, "rs1 eth1"),
        ([2, 0, 0, 0, 0, 0x12], "rs2"),
    ]
    .into_iter()
    .map(|(m, n)| (m, n.to_string()))
    .collect()
}

fn ip(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

/// A TCP SYN (or SYN-ACK) frame as captured.
fn tcp(smac: [u8; 6], dmac: [u8; 6], src: (&str, u16), dst: (&str, u16), ttl: u8, synack: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let b = etherparse::PacketBuilder::ethernet2(smac, dmac)
        .ipv4(ip(src.0), ip(dst.0), ttl)
        .tcp(src.1, dst.1, 1000, 64240)
        .syn();
    let b = if synack { b.ack(1001) } else { b };
    b.write(&mut v, &[]).unwrap();
    v
}

/// `inner` (a frame) in IPIP from `src` to `dst`, as the director sends it.
fn ipip(smac: [u8; 6], dmac: [u8; 6], src: &str, dst: &str, inner: &[u8]) -> Vec<u8> {
    use crate::forward::tun::Encap;
    use crate::service::{TunnelCsum, TunnelType};
    let e = Encap {
        kind: TunnelType::Ipip,
        csum: TunnelCsum::NoCsum,
        port: 0,
    };
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend(crate::forward::tun::encapsulated(
        &e,
        Ipv4Addr::from(ip(src)),
        Ipv4Addr::from(ip(dst)),
        &inner[14..],
    ));
    f
}

fn hop(title: &str, frame: &[u8], input: Option<&Hop>) -> Hop {
    let seen = decode(frame).expect("fixture frame decodes");
    Hop {
        title: title.to_string(),
        changed: input.map(|i| hops::diff(&i.seen, &seen, &names())),
        input: input.map(|i| i.seen.clone()),
        seen,
    }
}

fn iface(name: &str, addrs: &[&str], mac: &str) -> IfaceInfo {
    IfaceInfo {
        name: name.into(),
        addrs: addrs.iter().map(|a| a.to_string()).collect(),
        mac: mac.into(),
    }
}

fn host(name: &str, ifaces: Vec<IfaceInfo>) -> HostInfo {
    HostInfo {
        name: name.into(),
        ifaces,
    }
}

fn report(mode: Mode, hosts: Vec<HostInfo>, hops: Vec<Hop>, vip: &str) -> ModeReport {
    ModeReport {
        mode,
        title: match mode {
            Mode::Dr => "DR (direct routing, -g)",
            Mode::Tun => "TUN (IP tunnelling, -i)",
            _ => "NAT (masquerading, -m)",
        }
        .into(),
        blurb: String::new(),
        vip: vip.into(),
        scheduler: "rr".into(),
        rules: String::new(),
        hosts,
        names: names(),
        hops,
        answers: ["rs2", "rs1", "rs2", "rs1", "rs2", "rs1"].map(String::from).to_vec(),
        stats: String::new(),
        evidence: None,
    }
}

fn dr() -> ModeReport {
    let (c, v) = (("10.77.0.10", 40000), ("10.77.0.100", 80));
    let syn = tcp(CLIENT, DIR, c, v, 64, false);
    let h1 = hop("the client sends the SYN (captured on client eth0)", &syn, None);
    let h2 = hop("the director receives it (director, its own --pcap)", &syn, None);
    let out = tcp(DIR, RS1, c, v, 63, false);
    let h3 = hop("the director sends it on (director, its own --pcap)", &out, Some(&h2));
    let h4 = hop("the real server receives it (rs1 eth0)", &out, None);
    let rep = tcp(RS1, CLIENT, v, c, 64, true);
    let h5 = hop("the real server answers with SYN-ACK (rs1 eth0)", &rep, None);
    let h6 = hop("the client receives the reply (client eth0)", &rep, None);
    let hosts = vec![
        host("client", vec![iface("eth0", &["10.77.0.10/24"], "02:00:00:00:00:0a")]),
        host("director", vec![iface("eth0", &["10.77.0.2/24"], "02:00:00:00:00:02")]),
        host(
            "rs1",
            vec![
                iface("lo", &["10.77.0.100/32"], ""),
                iface("eth0", &["10.77.0.11/24"], "02:00:00:00:00:11"),
            ],
        ),
        host(
            "rs2",
            vec![
                iface("lo", &["10.77.0.100/32"], ""),
                iface("eth0", &["10.77.0.12/24"], "02:00:00:00:00:12"),
            ],
        ),
    ];
    report(Mode::Dr, hosts, vec![h1, h2, h3, h4, h5, h6], "10.77.0.100")
}

fn nat() -> ModeReport {
    let (c, v, r) = (("192.168.77.10", 40000), ("192.168.77.100", 80), ("10.78.1.11", 8080));
    let syn = tcp(CLIENT, DIR, c, v, 64, false);
    let h1 = hop("the client sends the SYN (captured on client eth0)", &syn, None);
    let h2 = hop("the director receives it (director, its own --pcap)", &syn, None);
    let out = tcp(DIR1, RS1, c, r, 63, false);
    let h3 = hop("the director sends it on (director, its own --pcap)", &out, Some(&h2));
    let h4 = hop("the real server receives it (rs1 eth0)", &out, None);
    let rep = tcp(RS1, DIR1, r, c, 64, true);
    let h5 = hop("the real server answers with SYN-ACK (rs1 eth0)", &rep, None);
    let back = tcp(DIR, CLIENT, v, c, 63, true);
    let h6 = hop(
        "the director sends the reply on (director, its own --pcap)",
        &back,
        Some(&h5),
    );
    let h7 = hop("the client receives the reply (client eth0)", &back, None);
    let hosts = vec![
        host(
            "client",
            vec![iface("eth0", &["192.168.77.10/24"], "02:00:00:00:00:0a")],
        ),
        host(
            "director",
            vec![
                iface("eth0", &["192.168.77.2/24"], "02:00:00:00:00:02"),
                iface("eth1", &["10.78.1.1/24"], "02:00:00:00:00:22"),
            ],
        ),
        host("rs1", vec![iface("eth0", &["10.78.1.11/24"], "02:00:00:00:00:11")]),
        host("rs2", vec![iface("eth0", &["10.78.1.12/24"], "02:00:00:00:00:12")]),
    ];
    report(
        Mode::NatTwoArm,
        hosts,
        vec![h1, h2, h3, h4, h5, h6, h7],
        "192.168.77.100",
    )
}

fn tun() -> ModeReport {
    let (c, v) = (("10.77.0.10", 40000), ("10.77.0.100", 80));
    let syn = tcp(CLIENT, DIR, c, v, 64, false);
    let h1 = hop("the client sends the SYN (captured on client eth0)", &syn, None);
    let h2 = hop("the director receives it (director, its own --pcap)", &syn, None);
    let out = ipip(DIR1, RS1, "10.79.0.2", "10.79.0.11", &tcp(DIR1, RS1, c, v, 63, false));
    let h3 = hop("the director sends it on (director, its own --pcap)", &out, Some(&h2));
    let h4 = hop("the real server receives it (rs1 eth0)", &out, None);
    let rep = tcp(RS1_1, CLIENT, v, c, 64, true);
    let h5 = hop("the real server answers with SYN-ACK (rs1 eth1)", &rep, None);
    let h6 = hop("the client receives the reply (client eth0)", &rep, None);
    let rs = |n: &str, k: u8| {
        host(
            n,
            vec![
                iface("eth0", &[&format!("10.79.0.1{k}/24")], &format!("02:00:00:00:00:1{k}")),
                iface("eth1", &[&format!("10.77.0.2{k}/24")], &format!("02:00:00:00:00:3{k}")),
                iface("tunl0", &["10.77.0.100/32"], ""),
            ],
        )
    };
    let hosts = vec![
        host("client", vec![iface("eth0", &["10.77.0.10/24"], "02:00:00:00:00:0a")]),
        host(
            "director",
            vec![
                iface("eth0", &["10.77.0.2/24"], "02:00:00:00:00:02"),
                iface("eth1", &["10.79.0.2/24"], "02:00:00:00:00:22"),
            ],
        ),
        rs("rs1", 1),
        rs("rs2", 2),
    ];
    report(Mode::Tun, hosts, vec![h1, h2, h3, h4, h5, h6], "10.77.0.100")
}

/// Compare `got` with `golden/NAME` (or write it with UVS_BLESS=1).
fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/lab/golden")
        .join(name);
    if std::env::var_os("UVS_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (create it with UVS_BLESS=1)", path.display()));
    if want != got {
        let (n, (w, g)) = want
            .lines()
            .zip(got.lines())
            .enumerate()
            .find(|(_, (w, g))| w != g)
            .unwrap_or((want.lines().count().min(got.lines().count()), ("<end>", "<end>")));
        panic!(
            "{} differs at line {}:\n want: {w}\n  got: {g}\n(if the change is intended: UVS_BLESS=1 cargo test --lib lab::svg, and review the diff)",
            path.display(),
            n + 1
        );
    }
}

/// Every drawing is well-formed enough for a browser: balanced tags, no script, no
/// reference to anything outside the page, no wider than WIDTH.
fn sane(svg: &str) {
    assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"), "{svg}");
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert!(!svg.contains("<script") && !svg.contains("href"));
    assert_eq!(svg.matches("http").count(), 1, "only the xmlns: {svg}");
    assert!(svg.contains(&format!("width=\"{WIDTH}\"")));
}

#[test]
fn golden_drawings_of_each_mode() {
    for (name, r) in [("dr", dr()), ("nat", nat()), ("tun", tun())] {
        for (what, svg) in [
            ("topology", topology(&r, None)),
            ("journey", journey(&r)),
            ("answers", answers(&r)),
        ] {
            sane(&svg);
            golden(&format!("{name}-{what}.svg"), &svg);
        }
    }
}

#[test]
fn golden_break_evidence() {
    let cases = [
        (
            "dr-break-arp_ignore.svg",
            dr(),
            Evidence::ArpIgnore {
                neigh: "10.77.0.100 dev eth0 lladdr 02:00:00:00:00:12 REACHABLE".into(),
                owner: "rs2".into(),
                via_director: 0,
                total: 6,
                servers: vec!["rs2".into()],
            },
        ),
        (
            "tun-break-rp_filter.svg",
            tun(),
            Evidence::RpFilter {
                tunnelled: 12,
                rpf: 12,
                client: "10.77.0.10".into(),
                answered: 0,
                total: 6,
            },
        ),
        (
            "nat-break-gateway.svg",
            nat(),
            Evidence::Gateway {
                rip_replies: 9,
                vip: "192.168.77.100".into(),
                answered: 0,
                total: 6,
                syns_at_director: 9,
            },
        ),
    ];
    for (file, r, e) in cases {
        let svg = topology(&r, Some(&e));
        sane(&svg);
        assert!(svg.contains("class=\"cross\""), "a cross marks what broke: {file}");
        golden(file, &svg);
    }
}

#[test]
fn journey_marks_what_the_director_changed_in_text() {
    // DR: only the MACs (and TTL) change; the addresses are not highlighted.
    let j = journey(&dr());
    assert_eq!(
        j.matches("<line x1=").count() - 4 - 3,
        3,
        "three arrows plus three guides"
    );
    assert!(j.contains("* changed dst MAC: 02:00:00:00:00:02 (director) -&gt; 02:00:00:00:00:11 (rs1)"));
    assert!(j.contains("<tspan class=\"chg\">02:00:00:00:00:11 (rs1)</tspan>"));
    assert!(!j.contains("<tspan class=\"chg\">10.77.0.100:80</tspan>"), "{j}");
    // NAT: the destination on the way in, the source on the way out.
    let j = journey(&nat());
    assert!(j.contains("* changed dst IP:port: 192.168.77.100:80 -&gt; 10.78.1.11:8080"));
    assert!(j.contains("* changed src IP:port: 10.78.1.11:8080 -&gt; 192.168.77.100:80"));
    assert!(j.contains("<tspan class=\"chg\">10.78.1.11:8080</tspan>"));
    // TUN: both IP headers, the outer one added.
    let j = journey(&tun());
    assert!(j.contains("outer IP  <tspan class=\"chg\">10.79.0.2 -&gt; 10.79.0.11   (IPIP)</tspan>"));
    assert!(j.contains("inner IP  10.77.0.10:40000 -&gt; 10.77.0.100:80"));
    assert!(j.contains("* changed outer IP header: none -&gt; 10.79.0.2 -&gt; 10.79.0.11 (IPIP)"));
}

#[test]
fn labels_fit_the_drawing() {
    for r in [dr(), nat(), tun()] {
        let j = journey(&r);
        for l in j.lines().filter(|l| l.starts_with("<text x=\"540\"")) {
            let inner = l.split('>').skip(1).collect::<Vec<_>>().join(">");
            let plain: String = inner
                .split('<')
                .map(|p| p.split_once('>').map_or(p, |x| x.1))
                .collect::<String>()
                .replace("&gt;", ">")
                .replace("&lt;", "<")
                .replace("&amp;", "&");
            let px = 540.0 + plain.chars().count() as f64 * CHAR;
            assert!(px <= WIDTH as f64, "{px} px: {plain}");
        }
    }
}

#[test]
fn answers_tally_and_no_answer() {
    let mut r = dr();
    r.answers = vec!["rs1".into(), String::new(), "rs1".into()];
    r.scheduler = "sh".into();
    let a = answers(&r);
    assert!(a.contains("rs1: 2   no answer (-): 1"), "{a}");
    assert!(a.contains("hashing"), "{a}");
    assert!(a.contains("class=\"cell none\""));
}
