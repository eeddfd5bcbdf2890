//! README numbers (issue 17, "Numbers"): how many TCP_CHECKs per second the one
//! checker thread sustains, and what CPU it costs. 10,000 real servers with
//! `delay_loop 1` (10,000 checks/s asked), all answered by one listener namespace: its
//! veth peer routes 10.90.0.0/16 to it and `ip route add local 10.90.0.0/16 dev lo`
//! (AnyIP) makes every address of the /16 its own, so one wildcard listener accepts
//! them all. The checkers run in-process ([`uvs::keepalived::run::Keepalived`]) in the
//! director's namespace; the listener counts accepted connections (one per check);
//! the checker thread's CPU comes from /proc/self/task/TID/stat.
//!
//! Long and CPU-hungry, so ignored:
//! `sudo -E cargo test --release --test check_rate -- --ignored --nocapture`
//! (`UVS_SERVERS`, default 10000; `UVS_SECS`, default 10).

mod common;
use common::*;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn setns(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) on the calling thread only, with a namespace file we hold open.
    let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// utime + stime (clock ticks) of this process's thread named `name`.
fn thread_ticks(name: &str) -> Option<u64> {
    for e in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let p = e.path();
        if std::fs::read_to_string(p.join("comm")).ok()?.trim() == name {
            let stat = std::fs::read_to_string(p.join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
            return Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?);
        }
    }
    None
}

#[test]
#[ignore]
fn tcp_check_rate_of_one_checker_thread() {
    require_root!();
    let n: usize = env_or("UVS_SERVERS", 10_000);
    let secs: u64 = env_or("UVS_SECS", 10);
    assert!(n <= 65_000);
    let mut bed = Testbed::new("chkrate");
    bed.add_host("dir").unwrap();
    bed.add_host("srv").unwrap();
    bed.link("dir", "eth0", "10.91.0.1/30", "srv", "eth0", "10.91.0.2/30")
        .unwrap();
    bed.exec("dir", &["ip", "route", "add", "10.90.0.0/16", "via", "10.91.0.2"])
        .unwrap();
    bed.exec("srv", &["ip", "route", "add", "local", "10.90.0.0/16", "dev", "lo"])
        .unwrap();
    // Room for the checks' TIME_WAIT sockets and a deep accept queue.
    bed.sysctl("dir", "net.ipv4.ip_local_port_range", "1024 65000").unwrap();
    bed.sysctl("srv", "net.core.somaxconn", "65535").unwrap();

    // The listener: accept and drop, counting.
    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let srv_ns = bed.ns("srv");
    let (acc, st) = (accepted.clone(), stop.clone());
    let listener = std::thread::spawn(move || {
        setns(&srv_ns);
        let l = std::net::TcpListener::bind("0.0.0.0:80").unwrap();
        l.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        while !st.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    acc.fetch_add(1, Ordering::Relaxed);
                    let _ = s.set_nonblocking(true);
                    let _ = s.read(&mut buf);
                }
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    });

    let mut conf =
        String::from("virtual_server 10.92.0.100 80 {\n delay_loop 1\n lb_algo rr\n lb_kind DR\n protocol TCP\n");
    for i in 0..n {
        let (a, b) = (i / 250, i % 250 + 1);
        conf += &format!(" real_server 10.90.{a}.{b} 80 {{\n  TCP_CHECK {{\n   connect_timeout 2\n  }}\n }}\n");
    }
    conf += "}\n";
    let path = std::env::temp_dir().join(format!("{}-keepalived.conf", bed.prefix));
    std::fs::write(&path, conf).unwrap();

    let dir_ns = bed.ns("dir");
    let result = std::thread::spawn(move || {
        setns(&dir_ns);
        let ctl = Arc::new(uvs::ctl::Ctl::new(Arc::new(uvs::pipeline::Shared::new(Vec::new()))));
        let k = uvs::keepalived::run::Keepalived::load(ctl, path, Some("x".into())).unwrap();
        let running = k.spawn().unwrap();
        // Warm-up: the first round starts every check at once.
        std::thread::sleep(Duration::from_secs(3));
        let (c0, t0, at) = (
            accepted.load(Ordering::Relaxed),
            thread_ticks("uvs-checkers").unwrap(),
            Instant::now(),
        );
        std::thread::sleep(Duration::from_secs(secs));
        let (c1, t1, el) = (
            accepted.load(Ordering::Relaxed),
            thread_ticks("uvs-checkers").unwrap(),
            at.elapsed(),
        );
        let st = running.status();
        let up = st.iter().filter(|s| s.up).count();
        drop(running);
        // SAFETY: sysconf(3) reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let rate = (c1 - c0) as f64 / el.as_secs_f64();
        let cpu = (t1 - t0) as f64 / hz / el.as_secs_f64();
        (rate, cpu, up, st.len())
    })
    .join()
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    listener.join().unwrap();
    let (rate, cpu, up, total) = result;
    eprintln!(
        "TCP_CHECK, {n} real servers, delay_loop 1: {rate:.0} checks/s over {secs} s, checker thread CPU {:.1} % of one core \
         ({:.1} us per check); {up} of {total} checkers up at the end",
        cpu * 100.0,
        if rate > 0.0 { cpu / rate * 1e6 } else { 0.0 }
    );
    assert!(up > 0 && rate > 0.0, "no check succeeded");
}
