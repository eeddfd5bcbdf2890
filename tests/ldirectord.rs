//! Debian's ldirectord (a Perl checker that drives IPVS through the `ipvsadm` command
//! and parses `-L -n` and `-L -n --thresholds`) managing a uvs director unchanged
//! (issue 17 item 7). ldirectord runs in the director's namespace in debug mode (`-d`,
//! foreground), where it uses `./ipvsadm` when that file exists: the test runs it in a
//! directory of its own holding an `ipvsadm` symlink to the uvs binary, with
//! `UVS_CONTROL` naming the director's control socket, so nothing on the host changes
//! (with `-d` ldirectord writes no pid file; the `Drop` below removes one anyway).
//!
//! Skips loudly without root or without `/usr/sbin/ldirectord` (CI installs it).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LDIRECTORD: &str = "/usr/sbin/ldirectord";

macro_rules! require_ldirectord {
    () => {
        if !Path::new(LDIRECTORD).exists() {
            eprintln!(
                "\n*** SKIPPED {}: needs Debian's ldirectord (apt-get install --no-install-recommends ldirectord) ***\n",
                module_path!()
            );
            return;
        }
    };
}

/// ldirectord's working directory (with `./ipvsadm`), config file and log.
struct Ld {
    dir: PathBuf,
    cf: PathBuf,
    log: PathBuf,
    pid: Option<u32>,
}

impl Ld {
    fn new(lvs: &Lvs) -> Ld {
        let dir = std::env::temp_dir().join(format!("{}-ld", lvs.bed.prefix));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("ipvsadm");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(UVS, &link).unwrap();
        // The pid file is named after the config file: unique per bed.
        let cf = dir.join(format!("{}.cf", lvs.bed.prefix));
        let log = dir.join("ldirectord.log");
        Ld {
            dir,
            cf,
            log,
            pid: None,
        }
    }

    fn start(&mut self, lvs: &mut Lvs) {
        let f = std::fs::File::create(&self.log).unwrap();
        let script = format!(
            "cd {} && UVS_CONTROL={} exec {LDIRECTORD} -d {} start",
            self.dir.display(),
            lvs.control_path().display(),
            self.cf.display()
        );
        self.pid = Some(lvs.bed.spawn("dir", &["sh", "-c", &script], Some(f)).unwrap());
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hup(&self) {
        // The ldirectord we spawned (sh exec'd it: same pid).
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid.unwrap() as i32), Signal::SIGHUP).unwrap();
    }

    fn stop(&mut self, lvs: &mut Lvs) {
        if let Some(pid) = self.pid.take() {
            lvs.bed.stop(pid);
        }
    }
}

impl Drop for Ld {
    fn drop(&mut self) {
        if let Some(name) = self.cf.file_name() {
            let _ = std::fs::remove_file(format!("/var/run/ldirectord.{}.pid", name.to_string_lossy()));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ipvsadm(lvs: &Lvs, args: &[&str]) -> Output {
    Command::new(UVS)
        .arg("adm")
        .args(args)
        .env("UVS_CONTROL", lvs.control_path())
        .output()
        .unwrap()
}

fn list(lvs: &Lvs) -> String {
    let o = ipvsadm(lvs, &["-L", "-n"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The real-server lines of `-L -n`: (address:port, forward, weight).
fn reals(listing: &str) -> Vec<(String, String, u32)> {
    listing
        .lines()
        .filter_map(|l| l.strip_prefix("  -> "))
        .filter(|l| !l.starts_with("RemoteAddress"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect()
}

/// Poll `-L -n` (bounded) until `pred` holds on the real servers; the last listing.
fn wait_reals(lvs: &Lvs, ld: &Ld, secs: u64, what: &str, pred: impl Fn(&[(String, String, u32)]) -> bool) -> String {
    let mut last = String::new();
    let ok = wait_until(secs, || {
        last = list(lvs);
        pred(&reals(&last))
    });
    assert!(
        ok,
        "{what}: not within {secs} s\n{last}\n--- ldirectord:\n{}\n--- director:\n{}",
        ld.text(),
        lvs.director_log()
    );
    last
}

fn weight_of(r: &[(String, String, u32)], addr: &str) -> Option<u32> {
    r.iter().find(|(a, _, _)| a == addr).map(|x| x.2)
}

/// Wait (bounded) until ldirectord's log shows `needle` at least `n` times.
fn wait_log(ld: &Ld, lvs: &Lvs, secs: u64, needle: &str, n: usize) {
    let ok = wait_until(secs, || ld.text().matches(needle).count() >= n);
    assert!(ok, "{n} x {needle:?} not within {secs} s\n{}\n{}", ld.text(), list(lvs));
}

/// What must hold of ldirectord's log after a run: every ipvsadm command it ran
/// succeeded and every line of `-L -n` and `-L -n --thresholds` parsed (ldirectord
/// logs "Unknown line read from ipvsadm" for one it cannot).
fn assert_clean(text: &str) {
    assert!(
        !text.lines().any(|l| l.contains("system(") && l.contains(") failed")),
        "an ipvsadm command failed:\n{text}"
    );
    assert!(
        !text.contains("Unknown line read from ipvsadm") && !text.contains("doesn't seem to be inside"),
        "a listing line ldirectord could not parse:\n{text}"
    );
    assert!(
        text.contains("Running system(./ipvsadm -"),
        "ldirectord used ./ipvsadm:\n{text}"
    );
}

/// Kill rs1's HTTP server (the only process in rs1's namespace, started by the bed).
fn stop_rs1(lvs: &Lvs) {
    let ns = lvs.bed.ns("rs1");
    let o = Command::new("ip").args(["netns", "pids", &ns]).output().unwrap();
    let pids: Vec<i32> = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(!pids.is_empty(), "rs1 runs its server");
    for p in pids {
        // A process of the namespace this test created.
        signal(p as u32, Signal::SIGKILL);
    }
}

fn start_rs1(lvs: &mut Lvs) -> u32 {
    let exe = lvs.exe.clone();
    lvs.bed
        .spawn("rs1", &[&exe, "serve", "--name", "rs1", "--tcp", "0.0.0.0:80"], None)
        .unwrap()
}

fn config(lvs: &Lvs, quiescent: bool, check: &str, w1: u32) -> String {
    let a = &lvs.addrs;
    let check = match check {
        "negotiate" => "\tchecktype=negotiate\n\tservice=http\n\trequest=\"/\"\n\treceive=\"rs[12]\"\n",
        _ => "\tchecktype=connect\n",
    };
    format!(
        "# written by tests/ldirectord.rs\n\
         checktimeout=2\n\
         negotiatetimeout=2\n\
         checkinterval=1\n\
         autoreload=no\n\
         quiescent={}\n\
         virtual={}:80\n\
         \treal={}:80 gate {w1}\n\
         \treal={}:80 gate 1\n\
         {check}\
         \tscheduler=wrr\n\
         \tprotocol=tcp\n",
        if quiescent { "yes" } else { "no" },
        a.vip,
        a.rs[0],
        a.rs[1],
    )
}

#[test]
fn negotiate_check_quiescent_no_removes_readds_and_reloads() {
    require_root!();
    require_ldirectord!();
    let mut lvs = dr("ldneg");
    lvs.start_director("", &["--workers", "1"]).unwrap();
    let mut ld = Ld::new(&lvs);
    std::fs::write(&ld.cf, config(&lvs, false, "negotiate", 1)).unwrap();
    ld.start(&mut lvs);
    let (rs1, rs2) = (format!("{}:80", lvs.addrs.rs[0]), format!("{}:80", lvs.addrs.rs[1]));
    let vip = lvs.addrs.vip.clone();

    // ldirectord creates the service, adds both servers and takes them out again until
    // their first check passes (ld_start with readdquiescent=no), then adds them back.
    wait_log(&ld, &lvs, 15, &format!("Added real server: {rs1} "), 2);
    wait_log(&ld, &lvs, 15, &format!("Added real server: {rs2} "), 2);
    let l = wait_reals(&lvs, &ld, 5, "service and both servers", |r| r.len() == 2);
    assert!(
        l.contains(&format!("TCP  {vip}:80 wrr\n")),
        "the service as ldirectord declared it:\n{l}"
    );
    for (_, fwd, w) in reals(&l) {
        assert_eq!((fwd.as_str(), w), ("Route", 1), "{l}");
    }
    let names = lvs.http_names(4);
    assert!(
        names.contains(&"rs1".to_string()) && names.contains(&"rs2".to_string()),
        "{names:?}"
    );

    // rs1's server dies: gone within a couple of check intervals (plus the timeout).
    // Bound: checkinterval 1 + negotiatetimeout 2, with slack for a loaded machine.
    stop_rs1(&lvs);
    let t0 = std::time::Instant::now();
    let l = wait_reals(&lvs, &ld, 8, "rs1 removed (quiescent=no)", |r| {
        r.len() == 1 && r[0].0 == rs2
    });
    eprintln!("negotiate check: rs1 removed {:?} after its server died", t0.elapsed());
    assert!(!l.contains(&rs1), "{l}");
    assert_eq!(lvs.http_names(3), ["rs2", "rs2", "rs2"]);

    // It comes back: re-added.
    let pid = start_rs1(&mut lvs);
    wait_reals(&lvs, &ld, 8, "rs1 re-added", |r| weight_of(r, &rs1) == Some(1));

    // SIGHUP with a changed weight: applied in place.
    std::fs::write(&ld.cf, config(&lvs, false, "negotiate", 3)).unwrap();
    ld.hup();
    let l = wait_reals(&lvs, &ld, 10, "reload applies rs1's new weight", |r| {
        weight_of(r, &rs1) == Some(3) && weight_of(r, &rs2) == Some(1)
    });
    assert_eq!(reals(&l).len(), 2, "{l}");

    // Every ipvsadm command ldirectord ran succeeded and every listing parsed.
    ld.stop(&mut lvs);
    lvs.bed.stop(pid);
    assert_clean(&ld.text());
}

#[test]
fn connect_check_quiescent_yes_reconciles_a_prefilled_table() {
    require_root!();
    require_ldirectord!();
    let mut lvs = dr("ldcon");
    let a = lvs.addrs.clone();
    // A table left by an earlier run: the service with another scheduler, a stale real
    // server, rs1 with a wrong weight; and a service ldirectord does not manage.
    let rules = format!(
        "-A -t {vip}:80 -s rr\n\
         -a -t {vip}:80 -r {rs1}:80 -g -w 7\n\
         -a -t {vip}:80 -r 10.99.0.9:80 -g -w 1\n\
         -A -t {vip}:8080 -s rr\n",
        vip = a.vip,
        rs1 = a.rs[0]
    );
    lvs.start_director(&rules, &["--workers", "1"]).unwrap();
    let mut ld = Ld::new(&lvs);
    std::fs::write(&ld.cf, config(&lvs, true, "connect", 1)).unwrap();
    ld.start(&mut lvs);
    let (rs1, rs2) = (format!("{}:80", a.rs[0]), format!("{}:80", a.rs[1]));

    // rs2 (absent before) is added, quiesced until its first check passes, restored.
    wait_log(&ld, &lvs, 15, &format!("Restored real server: {rs2} "), 1);
    // Reconciled: the configured scheduler, the configured servers at their weights,
    // the stale server gone.
    let l = wait_reals(&lvs, &ld, 15, "prefilled table reconciled", |r| {
        r.len() >= 2
            && weight_of(r, &rs1) == Some(1)
            && weight_of(r, &rs2) == Some(1)
            && weight_of(r, "10.99.0.9:80").is_none()
    });
    assert!(l.contains(&format!("TCP  {}:80 wrr\n", a.vip)), "{l}");
    assert!(
        l.contains(&format!("TCP  {}:8080 rr\n", a.vip)),
        "a service ldirectord does not manage is left alone:\n{l}"
    );

    // quiescent=yes: a dead server stays listed at weight 0 and gets no new connection.
    stop_rs1(&lvs);
    let t0 = std::time::Instant::now();
    let l = wait_reals(&lvs, &ld, 8, "rs1 quiesced to weight 0", |r| {
        weight_of(r, &rs1) == Some(0) && weight_of(r, &rs2) == Some(1)
    });
    eprintln!(
        "connect check: rs1 at weight 0 {:?} after its server died",
        t0.elapsed()
    );
    assert_eq!(reals(&l).len(), 2, "{l}");
    assert_eq!(lvs.http_names(3), ["rs2", "rs2", "rs2"]);

    // Recovery restores the configured weight.
    let pid = start_rs1(&mut lvs);
    wait_reals(&lvs, &ld, 8, "rs1 back at weight 1", |r| weight_of(r, &rs1) == Some(1));

    // --thresholds (which ldirectord parses beside -L -n) lists both servers.
    let o = ipvsadm(&lvs, &["-L", "-n", "--thresholds"]);
    let th = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        th.contains(&format!("  -> {rs1}")) && th.contains(&format!("  -> {rs2}")),
        "{th}"
    );

    ld.stop(&mut lvs);
    lvs.bed.stop(pid);
    assert_clean(&ld.text());
}
