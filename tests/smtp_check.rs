//! `uvs run --keepalived` with SMTP_CHECK (keepalived 2.2's check/check_smtp.c) on the
//! DR test bed: a small SMTP responder in each real server's namespace, a server that
//! greets with a wrong banner and one that answers HELO with a 5xx taken out (logged in
//! keepalived's words, gone from `ipvsadm -L -n`, clients sent to the other server) and
//! brought back when they answer properly again.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a responder answers.
const GOOD: u8 = 0;
const BAD_BANNER: u8 = 1;
const HELO_5XX: u8 = 2;

fn enter_netns(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) on the calling thread only, with a namespace file we hold open.
    assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
}

/// An SMTP responder on TCP 25 in namespace `ns`, one connection at a time: banner
/// `220 NAME ESMTP` (or `554` with BAD_BANNER), `250` to HELO (or `550` with
/// HELO_5XX), `221` to QUIT. Records every HELO line. Runs until `stop` (bounded to
/// 2 minutes).
fn smtp_responder(
    ns: String,
    name: &'static str,
    mode: Arc<AtomicU8>,
    helos: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        enter_netns(&ns);
        let l = std::net::TcpListener::bind("0.0.0.0:25").unwrap();
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let m = mode.load(Ordering::Relaxed);
            let banner = if m == BAD_BANNER {
                format!("554 {name} no service\r\n")
            } else {
                format!("220 {name} ESMTP\r\n")
            };
            if s.write_all(banner.as_bytes()).is_err() {
                continue;
            }
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                let reply = if line.starts_with("HELO") {
                    helos.lock().unwrap().push(line.clone());
                    if m == HELO_5XX {
                        "550 not you\r\n".to_string()
                    } else {
                        format!("250 {name}\r\n")
                    }
                } else if line.starts_with("QUIT") {
                    "221 bye\r\n".to_string()
                } else {
                    "502 unknown\r\n".to_string()
                };
                if s.write_all(reply.as_bytes()).is_err() || line.starts_with("QUIT") {
                    break;
                }
                line.clear();
            }
        }
    })
}

/// The banners that `n` new client connections to VIP:25 from the client namespace get
/// (each connection's first line).
fn client_banners(ns: String, n: usize) -> Vec<String> {
    std::thread::spawn(move || {
        enter_netns(&ns);
        (0..n)
            .map(|_| {
                let Ok(s) =
                    std::net::TcpStream::connect_timeout(&"10.77.0.100:25".parse().unwrap(), Duration::from_secs(2))
                else {
                    return "connect failed".to_string();
                };
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut line = String::new();
                let _ = BufReader::new(&s).read_line(&mut line);
                let _ = (&s).write_all(b"QUIT\r\n");
                line
            })
            .collect()
    })
    .join()
    .unwrap()
}

fn list(lvs: &Lvs) -> String {
    let out = Command::new(UVS)
        .args(["adm", "-L", "-n"])
        .env("UVS_CONTROL", lvs.control_path())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn listed(lvs: &Lvs, rs: &str) -> bool {
    list(lvs).contains(&format!("-> {rs}:25"))
}

fn wait_log(lvs: &Lvs, secs: u64, text: &str, times: usize) {
    assert!(
        wait_until(secs, || lvs.director_log().matches(text).count() >= times),
        "not {times}x {text:?} in the log:\n{}\n{}",
        lvs.director_log(),
        list(lvs)
    );
}

#[test]
fn smtp_check_takes_failing_servers_out_and_back() {
    require_root!();
    let mut lvs = dr("smtpc");
    let stop = Arc::new(AtomicBool::new(false));
    let modes = [Arc::new(AtomicU8::new(GOOD)), Arc::new(AtomicU8::new(GOOD))];
    let helos = Arc::new(Mutex::new(Vec::new()));
    let servers: Vec<_> = [("rs1", &modes[0]), ("rs2", &modes[1])]
        .into_iter()
        .map(|(h, m)| smtp_responder(lvs.bed.ns(h), h, m.clone(), helos.clone(), stop.clone()))
        .collect();
    for h in ["rs1", "rs2"] {
        assert!(
            wait_until(10, || lvs
                .bed
                .exec_any(h, &["sh", "-c", "ss -ltn | grep -q ':25 '"])
                .is_ok_and(|o| o.status.success())),
            "no SMTP responder in {h}"
        );
    }
    // rs1 with keepalived's default helo_name, rs2 with its own.
    let conf = "virtual_server 10.77.0.100 25 {\n delay_loop 1\n lvs_sched rr\n lvs_method DR\n protocol TCP\n\
                  real_server 10.77.0.11 25 {\n  SMTP_CHECK {\n   connect_timeout 1\n   retry 1\n   delay_before_retry 0.2\n  }\n }\n\
                  real_server 10.77.0.12 25 {\n  SMTP_CHECK {\n   helo_name checker.uvs.test\n   connect_timeout 1\n   retry 1\n   delay_before_retry 0.2\n  }\n }\n}\n";
    let path = std::env::temp_dir().join(format!("{}-keepalived.conf", lvs.bed.prefix));
    std::fs::write(&path, conf).unwrap();
    let p = path.to_string_lossy().to_string();
    lvs.start_director("", &["--workers", "1", "--keepalived", &p]).unwrap();

    let up1 = "Remote SMTP server [10.77.0.11]:tcp:25 succeed on service.";
    let up2 = "Remote SMTP server [10.77.0.12]:tcp:25 succeed on service.";
    wait_log(&lvs, 5, up1, 1);
    wait_log(&lvs, 5, up2, 1);
    assert!(
        listed(&lvs, "10.77.0.11") && listed(&lvs, "10.77.0.12"),
        "{}",
        list(&lvs)
    );
    {
        let h = helos.lock().unwrap();
        assert!(h.iter().any(|l| l == "HELO smtpchecker.keepalived.org\r\n"), "{h:?}");
        assert!(h.iter().any(|l| l == "HELO checker.uvs.test\r\n"), "{h:?}");
    }
    let b = client_banners(lvs.bed.ns("client"), 4);
    assert!(
        b.iter().any(|l| l.contains("rs1")) && b.iter().any(|l| l.contains("rs2")),
        "{b:?}"
    );

    // rs1 greets with 554: out after its retry, clients all go to rs2.
    modes[0].store(BAD_BANNER, Ordering::Relaxed);
    wait_log(&lvs, 6, "SMTP_CHECK Bad greeting banner from server [10.77.0.11]:25", 1);
    wait_log(
        &lvs,
        2,
        "Removing service [10.77.0.11]:tcp:25 from VS [10.77.0.100]:tcp:25",
        1,
    );
    assert!(wait_until(2, || !listed(&lvs, "10.77.0.11")), "{}", list(&lvs));
    let b = client_banners(lvs.bed.ns("client"), 4);
    assert!(b.iter().all(|l| l.starts_with("220 rs2")), "{b:?}");
    // Back when it greets properly.
    modes[0].store(GOOD, Ordering::Relaxed);
    wait_log(&lvs, 6, up1, 2);
    assert!(wait_until(2, || listed(&lvs, "10.77.0.11")), "{}", list(&lvs));

    // rs2 answers HELO with 550: out, then back.
    modes[1].store(HELO_5XX, Ordering::Relaxed);
    wait_log(&lvs, 6, "SMTP_CHECK Bad HELO response from server [10.77.0.12]:25", 1);
    assert!(wait_until(2, || !listed(&lvs, "10.77.0.12")), "{}", list(&lvs));
    let b = client_banners(lvs.bed.ns("client"), 4);
    assert!(b.iter().all(|l| l.starts_with("220 rs1")), "{b:?}");
    modes[1].store(GOOD, Ordering::Relaxed);
    wait_log(&lvs, 6, up2, 2);
    assert!(wait_until(2, || listed(&lvs, "10.77.0.12")), "{}", list(&lvs));
    // A failure is logged once per transition, not on every retry of a down checker.
    let log = lvs.director_log();
    assert_eq!(log.matches("Bad greeting banner").count(), 1, "{log}");
    assert_eq!(log.matches("Bad HELO response").count(), 1, "{log}");

    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap();
    }
}
