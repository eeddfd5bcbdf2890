//! The control socket and /metrics against a live director: slow clients delay nobody,
//! bursts of listings queue instead of being refused, and the messages an operator
//! sees on day one (wrong user, second director, unprivileged start, bad trace
//! filters, services uvs cannot forward).

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RULES: &str = "\
-A -t 10.77.0.100:80 -s rr
-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 1
";

fn adm(socket: &std::path::Path, args: &[&str]) -> Output {
    Command::new(UVS)
        .arg("adm")
        .args(args)
        .env("UVS_CONTROL", socket)
        .output()
        .expect("spawn uvs adm")
}

/// A DR bed's director (one worker, the kernel's copy kept) and its control socket.
fn director(tag: &str) -> (Lvs, std::path::PathBuf) {
    let mut lvs = dr(tag);
    lvs.start_director(RULES, &["--workers", "1", "--keep-kernel-copy"])
        .unwrap();
    let sock = lvs.control_path();
    (lvs, sock)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Connect and send one byte every `every` until `stop`; returns what the director answered.
fn trickle(socket: std::path::PathBuf, every: Duration, stop: Arc<AtomicBool>) -> String {
    let mut c = UnixStream::connect(&socket).expect("connect");
    let mut sent = 0;
    for b in b"UVS1\x03\x00\x00\x00-L\x00" {
        if stop.load(Ordering::Relaxed) || c.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        let t = Instant::now();
        while t.elapsed() < every && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    format!("{sent} bytes sent; reply {:?}", text(&out))
}

#[test]
fn eight_slow_clients_do_not_lock_ipvsadm_out() {
    require_root!();
    let (lvs, sock) = director("cslow");
    let stop = Arc::new(AtomicBool::new(false));
    // Each slow client restarts as soon as it is cut off, so 8 are always trickling.
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let (s, stop) = (sock.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut replies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    replies.push(trickle(s.clone(), Duration::from_secs(3), stop.clone()));
                }
                replies
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let mut calls = 0;
    while t0.elapsed() < Duration::from_secs(8) {
        let t = Instant::now();
        let o = adm(&sock, &["-L", "-n"]);
        assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stderr), lvs.director_log());
        assert!(text(&o.stdout).contains("10.77.0.100:80"));
        assert!(t.elapsed() < Duration::from_secs(2), "one -L -n took {:?}", t.elapsed());
        calls += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let mut cut = 0;
    for h in slow {
        for r in h.join().unwrap() {
            if r.contains("not received within 2000 ms") {
                cut += 1;
            }
        }
    }
    eprintln!("{calls} calls of -L -n succeeded beside 8 slow clients; {cut} slow requests cut off at 2 s");
    assert!(cut >= 8, "the slow clients were answered at their deadline ({cut})");
}

#[test]
fn fifty_concurrent_listing_loops_nearly_all_succeed() {
    require_root!();
    let secs: u64 = env_or("UVS_CONTROL_LOOP_SECS", 10);
    let (_lvs, sock) = director("cloops");
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = Instant::now() + Duration::from_secs(secs);
    let loops: Vec<_> = (0..50)
        .map(|_| {
            let (s, ok, failed) = (sock.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut errors = Vec::new();
                while Instant::now() < until {
                    let o = adm(&s, &["-L", "-n"]);
                    if o.status.success() && text(&o.stdout).contains("10.77.0.100:80") {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(text(&o.stderr));
                    }
                }
                errors
            })
        })
        .collect();
    let errors: Vec<String> = loops.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let total = ok + failed;
    eprintln!(
        "50 loops of `uvs adm -L -n` for {secs} s: {ok} of {total} succeeded ({:.3} %)",
        100.0 * ok as f64 / total.max(1) as f64
    );
    assert!(total >= 100, "{total} calls");
    assert!(
        ok * 1000 >= total * 999,
        "{failed} of {total} failed: {:?}",
        &errors[..errors.len().min(5)]
    );
    // Whatever failed said why: no bare "Broken pipe".
    for e in &errors {
        assert!(e.starts_with("uvs: ") || e.contains("busy"), "{e}");
    }
}

/// Run `args` in the director's namespace as user nobody (setpriv drops every
/// capability with the uid).
fn as_nobody(lvs: &Lvs, args: &[&str]) -> Output {
    let mut v = vec!["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    v.extend_from_slice(args);
    lvs.bed.exec_any("dir", &v).expect("setpriv")
}

#[test]
fn trace_refuses_bad_filters() {
    // No director needed: the filter is checked first.
    let nowhere = std::env::temp_dir().join(format!("uvs-trace-none-{}.sock", std::process::id()));
    for (args, err) in [
        (
            ["--service", "bogus"],
            "uvs: trace: --service bogus: want an IPv4 VIP:PORT, e.g. 10.0.0.1:80\n",
        ),
        (
            ["--client", "notanip"],
            "uvs: trace: --client notanip: want an IPv4 address\n",
        ),
    ] {
        let o = Command::new(UVS)
            .arg("trace")
            .args(args)
            .env("UVS_CONTROL", &nowhere)
            .output()
            .unwrap();
        assert_eq!(
            (o.status.code(), text(&o.stderr), text(&o.stdout)),
            (Some(1), err.to_string(), String::new())
        );
    }
}

#[test]
fn non_root_ipvsadm_is_told_whose_socket_it_is() {
    require_root!();
    let (lvs, sock) = director("cperm");
    let env = format!("UVS_CONTROL={}", sock.display());
    let o = as_nobody(&lvs, &["env", &env, UVS, "adm", "-L", "-n"]);
    assert_eq!(
        (o.status.code(), text(&o.stderr)),
        (
            Some(2),
            format!(
                "Can't initialize ipvs: permission denied on control socket {}: it belongs to root (uid 0), \
                 who started `uvs run`; run ipvsadm as that user or as root\n",
                sock.display()
            )
        )
    );
}

#[test]
fn non_root_run_needs_net_raw_and_creates_nothing() {
    require_root!();
    let lvs = dr("cnoroot");
    let sock = std::env::temp_dir().join(format!("{}-nobody.sock", lvs.bed.prefix));
    let s = sock.to_string_lossy().to_string();
    let o = as_nobody(&lvs, &[UVS, "run", "--iface", &lvs.director_ifaces[0], "--control", &s]);
    assert_eq!(
        (o.status.code(), text(&o.stderr)),
        (
            Some(1),
            "uvs: `uvs run` needs CAP_NET_RAW (root) to open packet sockets on its interfaces; nothing was started\n"
                .to_string()
        )
    );
    assert!(!sock.exists(), "no control socket left behind");
    if let Ok(o) = lvs.bed.exec_any("dir", &["nft", "list", "tables"]) {
        assert!(
            !text(&o.stdout).contains("uvs_"),
            "no nftables table: {}",
            text(&o.stdout)
        );
    }
}

#[test]
fn a_second_director_on_a_served_interface_is_refused() {
    require_root!();
    let mut lvs = dr("csecond");
    lvs.start_director(RULES, &["--workers", "1"]).unwrap();
    let first = lvs.director_pid.unwrap();
    let sock = std::env::temp_dir().join(format!("{}-second.sock", lvs.bed.prefix));
    let s = sock.to_string_lossy().to_string();
    let iface = lvs.director_ifaces[0].clone();
    let o = lvs
        .bed
        .exec_any("dir", &[UVS, "run", "--iface", &iface, "--control", &s])
        .unwrap();
    assert_eq!(
        (o.status.code(), text(&o.stderr)),
        (
            Some(1),
            format!(
                "uvs: interface {iface} is already served by another uvs director (pid {first}); \
                 one director per interface: stop that one first\n"
            )
        )
    );
    assert!(!sock.exists());
    // The first one is untouched and still answers.
    let o = adm(&lvs.control_path(), &["-L", "-n"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let log = lvs.stop_director();
    // Once it is gone, the interface is free again.
    lvs.start_director(RULES, &["--workers", "1"])
        .unwrap_or_else(|e| panic!("{e}\n{log}"));
}

#[test]
fn ipvsadm_warns_about_services_uvs_does_not_forward() {
    require_root!();
    let (_lvs, sock) = director("cwarn");
    for (line, warning) in [
        (
            "-A -f 7 -s rr",
            "ipvsadm: warning: FWM 7 is not forwarded: AF_PACKET frames carry no firewall mark \
             (use an address-based service)\n",
        ),
        (
            "-A -t [2001:db8::1]:80 -s rr",
            "ipvsadm: warning: TCP [2001:db8::1]:80 is not forwarded: uvs forwards IPv4 TCP and UDP only\n",
        ),
        (
            "-a -t 10.77.0.100:80 -r [2001:db8::2]:80 -i",
            "ipvsadm: warning: real server [2001:db8::2]:80 of TCP 10.77.0.100:80: connections scheduled \
             to it are dropped (method_unsupported): uvs forwards IPv4 only\n",
        ),
        ("-A -u 10.77.0.100:53 -s rr", ""),
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        let o = adm(&sock, &args);
        assert_eq!(
            (o.status.code(), text(&o.stderr), text(&o.stdout)),
            (Some(0), warning.to_string(), String::new()),
            "ipvsadm {line}"
        );
    }
    // Accepted and listed, as the kernel does.
    let list = text(&adm(&sock, &["-L", "-n"]).stdout);
    assert!(
        list.contains("FWM  7 rr") && list.contains("[2001:db8::1]:80"),
        "{list}"
    );
    // A refused command warns about nothing.
    let o = adm(&sock, &["-A", "-f", "7", "-s", "rr"]);
    assert_eq!(
        (o.status.code(), text(&o.stderr)),
        (Some(255), "Service already exists\n".into())
    );
}

/// An `ipvsadm` of control protocol version 1 (raw argv, `UVS1`) against this director:
/// one line naming both versions, status 255, nothing applied; this version's
/// `ipvsadm` keeps working beside it.
#[test]
fn an_old_ipvsadm_is_told_both_protocol_versions() {
    require_root!();
    let (_lvs, sock) = director("cvers");
    let mut c = UnixStream::connect(&sock).expect("connect");
    // What version 1's `ipvsadm -C` sent: argv words NUL-terminated, then empty stdin.
    let _ = c.write_all(b"UVS1\x03\x00\x00\x00-C\x00\x00\x00\x00\x00");
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = c.read(&mut buf) {
        reply.extend_from_slice(&buf[..n]);
    }
    assert!(reply.len() > 16 && &reply[..4] == b"UVS1", "{reply:?}");
    assert_eq!(i32::from_le_bytes(reply[4..8].try_into().unwrap()), 255);
    let err = text(&reply[16..]);
    assert_eq!(
        err,
        "uvs: control protocol mismatch: this ipvsadm speaks version 1, the running director speaks \
         version 2; use the ipvsadm (uvs adm) of the uvs that runs the director\n"
    );
    let o = adm(&sock, &["-L", "-n"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("10.77.0.100:80"), "the -C was not applied");
}
