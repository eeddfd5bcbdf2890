//! `uvs lab --html`: the page rendered by a real browser. Debian's `chromium`, headless,
//! in a network namespace of its own with nothing in it (so any fetch the page tried
//! would fail, besides being refused by its Content-Security-Policy), dumps the DOM
//! and takes a screenshot. The DOM must hold the drawings and the hop arrows with the
//! fields the director changed; the page must fit 1280 px (`scrollWidth`, measured by
//! a copy of the page with a one-line script and no CSP, since the page itself allows
//! none) and the browser must report no CSP violation.
//!
//! CI installs chromium (.ci/run); elsewhere the test skips loudly without it.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `cmd` with its output captured, killing it after `secs` (a hung browser must
/// not hang the suite).
fn bounded(cmd: &mut Command, secs: u64) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (o, e) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let ok = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (ok, o.join().unwrap(), e.join().unwrap())
}

/// Headless chromium in namespace `ns` on `page` with `extra` flags; a fresh profile.
fn chromium(ns: &str, page: &Path, extra: &[&str]) -> (bool, String, String) {
    let profile = tempdir("profile");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()));
    let r = bounded(&mut cmd, 90);
    let _ = std::fs::remove_dir_all(&profile);
    r
}

fn tempdir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "uvs-labpage-{}-{what}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn have_chromium() -> bool {
    Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[1..4], b"PNG", "{} is a PNG", path.display());
    let be = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn lab_page_renders_in_headless_chromium() {
    require_root!();
    if !have_chromium() {
        assert!(
            std::env::var("CI").is_err(),
            "CI installs chromium (.ci/run), so it must be there"
        );
        eprintln!(
            "\n*** SKIPPED lab_page_renders_in_headless_chromium: no `chromium` (apt-get install chromium) ***\n"
        );
        return;
    }
    let dir = tempdir("page");
    let page = dir.join("lab.html");
    let out = Command::new(UVS)
        .args(["lab", "--mode", "all", "--html"])
        .arg(&page)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("page written to"), "{text}");
    assert!(
        text.contains("director changed: dst MAC ->"),
        "the text output is still there:\n{text}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("content=\"default-src 'none'; style-src 'unsafe-inline'\""));
    assert!(!html.contains("<script") && !html.contains("src="), "self-contained");

    // A network namespace with nothing in it for the browser.
    let mut bed = Testbed::new("chr");
    bed.add_host("web").unwrap();
    let ns = bed.ns("web");

    // The browser reports CSP violations on stderr: check that it does, on a page
    // that tries a fetch, so that the check below cannot pass by not looking.
    let bad = dir.join("fetches.html");
    std::fs::write(
        &bad,
        format!(
            "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\
             </head><body><img src=\"http://10.255.255.1/x.png\"></body></html>",
            uvs::lab::html::CSP
        ),
    )
    .unwrap();
    let (_, _, err) = chromium(&ns, &bad, &["--enable-logging=stderr", "--dump-dom"]);
    assert!(
        err.contains("Content Security Policy"),
        "violation not reported:\n{err}"
    );

    // The DOM as the browser built it: inline SVG elements, the changed fields.
    let (ok, dom, err) = chromium(&ns, &page, &["--enable-logging=stderr", "--dump-dom"]);
    assert!(ok, "chromium --dump-dom failed:\n{err}");
    assert!(
        !err.contains("Content Security Policy") && !err.contains("Refused to"),
        "the page tried to load something:\n{err}"
    );
    assert!(dom.matches("<svg ").count() >= 9, "3 modes x 3 drawings:\n{dom}");
    for mode in ["dr", "nat", "tun"] {
        assert!(dom.contains(&format!("<section id=\"{mode}\">")), "{mode}");
    }
    // The hop arrows, and the director's changes highlighted and spelled out.
    assert!(dom.contains("marker-end=\"url(#ah)\""), "arrows of changed hops");
    assert!(dom.contains("<tspan class=\"chg\">"), "highlighted fields");
    assert!(dom.contains("* changed dst MAC: "), "DR/NAT/TUN change the MAC");
    assert!(
        dom.contains("* changed dst IP:port: 192.168.77.100:80 -&gt; 10.78.1.1"),
        "NAT changes the destination"
    );
    assert!(
        dom.contains("* changed src IP:port: 10.78.1.1"),
        "and the reply's source"
    );
    assert!(dom.contains("* changed outer IP header: none -&gt; 10.79.0.2 -&gt; 10.79.0.1"));

    // A screenshot, 1280 px wide.
    let shot = dir.join("lab.png");
    let (ok, _, err) = chromium(&ns, &page, &[&format!("--screenshot={}", shot.display())]);
    assert!(ok, "chromium --screenshot failed:\n{err}");
    assert_eq!(png_size(&shot).0, 1280);
    assert!(std::fs::metadata(&shot).unwrap().len() > 20_000, "not blank");

    // scrollWidth: the page forbids scripts, so measure a copy without the CSP.
    let probe = dir.join("probe.html");
    let (head, rest) = html.split_once("<meta http-equiv=\"Content-Security-Policy\"").unwrap();
    let rest = rest.split_once('>').unwrap().1;
    let measured = format!("{head}{rest}").replace(
        "</body>",
        "<script>document.body.setAttribute('data-width', document.documentElement.scrollWidth)</script></body>",
    );
    std::fs::write(&probe, measured).unwrap();
    let (ok, dom, err) = chromium(&ns, &probe, &["--dump-dom"]);
    assert!(ok, "{err}");
    let width: u32 = dom
        .split("data-width=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no width measured:\n{dom}"));
    assert!(width > 1000, "measured: {width}");
    assert!(width <= 1280, "document.scrollWidth = {width} > 1280");
    eprintln!("lab page: document.scrollWidth = {width} at a 1280 px window");
    drop(bed);
    let _ = std::fs::remove_dir_all(&dir);
}
