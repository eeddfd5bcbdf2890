//! Traffic and processes in a bed's namespaces: `uvs serve` started and killed,
//! curl downloads, Prometheus scrapes of a director's `/metrics`.

use std::process::{Child, Command, Stdio};

pub use nix::sys::signal::Signal;

use super::{Lvs, Testbed};

/// Start `uvs serve --name HOST LISTEN…` in namespace `host` (as the bed starts its
/// real servers; `listen` e.g. `["--tcp", "0.0.0.0:80"]`).
pub fn start_server(lvs: &mut Lvs, host: &str, listen: &[&str]) {
    let exe = lvs.exe.clone();
    let mut args = vec![exe.as_str(), "serve", "--name", host];
    args.extend_from_slice(listen);
    lvs.bed.spawn(host, &args, None).unwrap();
}

/// Is `pid` a `uvs serve` (its command line says so)?
pub fn is_server(pid: i32) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmd).contains("serve")
}

/// Is `pid`'s command name (`/proc/PID/comm`) `name`?
pub fn comm_is(pid: i32, name: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
}

/// The `uvs serve` processes of namespace `host`.
pub fn server_pids(lvs: &Lvs, host: &str) -> Vec<i32> {
    lvs.bed.pids(host).into_iter().filter(|p| is_server(*p)).collect()
}

/// SIGKILL `uvs serve` in namespace `host`: its listeners vanish, the kernel answers
/// SYNs with RST and UDP with ICMP port unreachable.
pub fn stop_server(lvs: &Lvs, host: &str) {
    lvs.bed.kill_where(host, is_server);
}

/// A rate-limited download of `url` by curl in namespace `ns`, in the background;
/// curl prints the bytes it received. `extra` goes before curl's `-w`. Bounded by
/// `--max-time`.
pub fn download_in(ns: &str, url: &str, rate: &str, max_secs: u64, extra: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "-o", "/dev/null"])
        .args(extra)
        .args(["-w", "%{size_download}", "--limit-rate", rate, "--max-time"])
        .arg(max_secs.to_string())
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl")
}

/// [`download_in`] of `size` bytes from the bed's VIP by its client.
pub fn download(lvs: &Lvs, size: usize, rate: &str, max_secs: u64, extra: &[&str]) -> Child {
    let url = format!("http://{}/size/{size}", lvs.addrs.vip);
    download_in(&lvs.bed.ns("client"), &url, rate, max_secs, extra)
}

/// Wait for a download; (curl's exit code, bytes received).
pub fn finish(c: Child) -> (Option<i32>, usize) {
    let out = c.wait_with_output().expect("curl");
    let got = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (out.status.code(), got)
}

/// The `/metrics` page served at `addr` (e.g. "127.0.0.1:9108") inside namespace
/// `host`; empty if the scrape failed.
pub fn scrape(bed: &Testbed, host: &str, addr: &str) -> String {
    bed.exec_any(
        host,
        &["curl", "-s", "--max-time", "3", &format!("http://{addr}/metrics")],
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    .unwrap_or_default()
}

/// The sum of a metrics family's samples (`name{labels} value` or `name value`)
/// whose line contains `filter`.
pub fn metric_sum(page: &str, name: &str, filter: &str) -> u64 {
    page.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The value of the first sample written exactly `series` (name and labels), 0 if none.
pub fn metric_value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Environment variable `name` parsed, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Send `sig` to `pid`, a process this test started (a director, a server).
pub fn signal(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}
