//! `uvs lab` end to end: all three modes in one run, the per-hop tables, the
//! `--break` cases, and that nothing is left behind.

mod common;
use common::*;

fn lab(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(UVS)
        .arg("lab")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The text with wrapped lines joined (explanations are wrapped at 80 columns).
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every namespace prefix the lab reported tearing down must be gone.
fn assert_torn_down(text: &str) {
    let prefixes: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("(namespaces ").nth(1))
        .map(|p| p.trim_end_matches("-*)"))
        .collect();
    assert!(!prefixes.is_empty(), "teardown reported:\n{text}");
    for p in prefixes {
        assert!(
            namespaces_with(&format!("{p}-")).is_empty(),
            "namespaces {p}-* left behind"
        );
    }
}

/// The part of the output between a section heading and the next one.
fn section<'a>(text: &'a str, title: &str) -> &'a str {
    let start = text
        .find(title)
        .unwrap_or_else(|| panic!("no section {title}:\n{text}"));
    let rest = &text[start + title.len()..];
    &rest[..rest.find("\n== ").unwrap_or(rest.len())]
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn all_modes_alternate_and_show_what_the_director_changes() {
    require_root!();
    let t0 = std::time::Instant::now();
    let (ok, text) = lab(&["--mode", "all"]);
    let took = t0.elapsed();
    assert!(ok, "{text}");
    for mode in ["== DR", "== NAT", "== TUN"] {
        let s = section(&text, mode);
        let answers: Vec<&str> = s
            .lines()
            .filter_map(|l| l.trim().strip_prefix("request "))
            .map(|l| l.split("-> ").nth(1).unwrap_or(""))
            .collect();
        assert_eq!(answers, ["rs2", "rs1", "rs2", "rs1", "rs2", "rs1"], "{mode}:\n{s}");
        assert!(s.contains("IP Virtual Server version 1.2.1"), "stats listed:\n{s}");
    }
    let dr = section(&text, "== DR");
    assert!(dr.contains("director changed: dst MAC ->"), "{dr}");
    assert!(
        dr.contains("IP addresses and ports untouched"),
        "DR keeps the IP destination: {dr}"
    );
    let nat = section(&text, "== NAT");
    assert!(
        nat.contains("dst 192.168.77.100:80 -> 10.78.1."),
        "NAT rewrites the destination: {nat}"
    );
    assert!(
        nat.contains("src 10.78.1.") && nat.contains("-> 192.168.77.100:80"),
        "and the reply's source: {nat}"
    );
    let tun = section(&text, "== TUN");
    assert!(
        tun.contains("outer IP  10.79.0.2 -> 10.79.0.1") && tun.contains("inner IP  10.77.0.10:"),
        "two IP headers: {tun}"
    );
    assert!(
        text.lines().all(|l| l.chars().count() <= 80),
        "fits 80 columns:\n{text}"
    );
    assert!(took.as_secs() < 15, "lab took {took:?}");
    assert_torn_down(&text);
    // No interface of the lab's is left on the host either.
    let links = std::process::Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("uvslab"),
        "no interface left"
    );
}

#[test]
fn break_steps_fail_the_way_they_explain() {
    require_root!();
    let (ok, text) = lab(&["--break", "arp_ignore"]);
    assert!(ok, "{text}");
    assert_torn_down(&text);
    let text = flat(&text);
    assert!(
        text.contains("without the arp_ignore step") && text.contains("answer ARP for the VIP"),
        "{text}"
    );
    assert!(text.contains("the director forwarded only"), "{text}");

    let (ok, text) = lab(&["--break", "rp_filter", "--requests", "2"]);
    assert!(ok, "{text}");
    assert_torn_down(&text);
    let text = flat(&text);
    assert!(
        text.contains("no answer") && text.contains("reverse-path check"),
        "{text}"
    );
    assert!(
        !text.contains("TcpExtIPReversePathFilter = 0)"),
        "evidence counter moved: {text}"
    );

    let (ok, text) = lab(&["--break", "gateway", "--requests", "2"]);
    assert!(ok, "{text}");
    assert_torn_down(&text);
    let text = flat(&text);
    assert!(text.contains("no answer") && text.contains("reset"), "{text}");
    assert!(!text.contains("(0 SYN-ACKs"), "the bypassing replies were seen: {text}");
}
