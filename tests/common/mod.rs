//! Shared helpers for the namespace end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

pub use uvs::testbed::Testbed;
pub use uvs::testbed::lvs::{Addrs, Lvs};

pub const UVS: &str = env!("CARGO_BIN_EXE_uvs");

mod ctl;
mod traffic;
// A test binary may use nothing of one of them.
#[allow(unused_imports)]
pub use ctl::*;
#[allow(unused_imports)]
pub use traffic::*;

/// Skip (loudly) unless root: namespaces and AF_PACKET need it.
#[macro_export]
macro_rules! require_root {
    () => {
        if !uvs::testbed::is_root() {
            eprintln!(
                "\n*** SKIPPED {}: needs root for network namespaces and AF_PACKET (run: sudo -E cargo test) ***\n",
                module_path!()
            );
            return;
        }
    };
}

/// The DR topology with default addresses.
pub fn dr(tag: &str) -> Lvs {
    Lvs::dr(tag, UVS, Addrs::default(), false, false).expect("build DR test bed")
}

/// Start `tcpdump` in namespace `ns` writing text lines to a file; returns (pid, path).
pub fn tcpdump(bed: &mut Testbed, ns: &str, iface: &str, filter: &str, count: usize) -> (u32, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("{}-{ns}-tcpdump.txt", bed.prefix));
    let f = std::fs::File::create(&path).unwrap();
    let c = count.to_string();
    let pid = bed
        .spawn(
            ns,
            &["tcpdump", "-l", "-nn", "-e", "-i", iface, "-c", &c, filter],
            Some(f),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains("listening on")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (pid, path)
}

/// Read lines of a file until `pred` holds or time runs out.
pub fn wait_for_lines(path: &std::path::Path, secs: u64, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let lines: Vec<String> = std::fs::File::open(path)
            .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
            .unwrap_or_default();
        if pred(&lines) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `f` on a thread that has entered network namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: setns(2) on this thread only, with a namespace file we hold open.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// Wait (up to `secs` seconds) until the file at `path` contains `text`.
pub fn wait_file_has(path: &std::path::Path, secs: u64, text: &str) -> bool {
    wait_until(secs, || std::fs::read_to_string(path).is_ok_and(|t| t.contains(text)))
}

/// Poll `f` every 20 ms for up to `secs` seconds.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
