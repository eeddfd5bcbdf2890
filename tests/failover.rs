//! Issue 18: a master and a backup director, each running `keepalived --vrrp -f conf`
//! beside `uvs run --keepalived conf` on the same file, two real servers and a
//! client, in DR and in NAT (the real servers' gateway a second VRRP address, both
//! instances in a `vrrp_sync_group`). The master dies (host death: its links go down;
//! process crash: SIGKILL of its keepalived and uvs) under load: ten long rate-limited
//! downloads and a steady stream of short requests (`curl --max-time 2`). The test
//! prints the takeover time and the failed requests, and asserts:
//! - while BACKUP (before the failure, and after the return), the director answers
//!   neither ARP nor ICMP echo for the VIP;
//! - after each takeover the client's neighbour entry for the VIP is the new master's
//!   MAC, and in NAT the real servers' entries for the gateway its inside MAC;
//! - short requests fail only within 3 × advert_int + skew (+ slack) of the failure,
//!   and at failback only if in flight at the switch;
//! - with connection sync (`ipvsadm --start-daemon` master and backup on both
//!   directors, through uvs, with `sync_threshold` "3 0" and `sync_refresh_period`
//!   2), no long download breaks, also when the old master returns (restarted as after
//!   a reboot with preempt_delay; restarted after its crash with nopreempt), in DR and
//!   NAT;
//! - after a crash the old master keeps its VRRP addresses, but its kernel answers no
//!   ARP for them (the dead uvs's nftables table drops the requests); a host whose
//!   entry is still on it loses its traffic there (shown, README "High availability").
//!
//! CI-sized by default (downloads of ~6 s); `UVS_FAILOVER_FULL=1` runs the issue's
//! ~20 s downloads (README "High availability" quotes that run).

mod common;
use common::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADVERT_INT: f64 = 1.0;
const VRID: u32 = 51;
/// `net.ipv4.vs.sync_refresh_period` both directors run with (seconds), with
/// `sync_threshold` "3 0" (time alone decides; README "High availability"): every
/// connection with traffic is synced again this often.
const SYNC_REFRESH: u64 = 2;
/// Long enough for sync to teach a returning master the connections it missed: more
/// than `SYNC_REFRESH` after its uvs and sync daemons are up.
const PREEMPT_DELAY: u64 = 5;

fn full() -> bool {
    std::env::var("UVS_FAILOVER_FULL").is_ok_and(|v| v == "1")
}

/// (body bytes, client rate limit bytes/s) of one long download.
fn download_size() -> (usize, usize) {
    if full() { (600_000, 30_000) } else { (180_000, 30_000) }
}

/// The keepalived.conf both directors run; `state`/`priority` differ, as usual. NAT
/// (`nat`: the real servers' gateway) adds an inside instance holding the gateway
/// address, both in a `vrrp_sync_group`.
fn conf(vip: &str, rs: &[String; 2], nat: Option<&str>, state: &str, priority: u32, preempt: &str) -> String {
    // nopreempt and preempt_delay work only from an initial state BACKUP (keepalived
    // clears nopreempt otherwise, and a MASTER takes over at start whatever the delay).
    let state = if preempt == "nopreempt" || preempt.starts_with("preempt_delay") {
        "BACKUP"
    } else {
        state
    };
    let instance = |name: &str, iface: &str, vrid: u32, addr: &str| {
        format!(
            "vrrp_instance {name} {{\n state {state}\n interface {iface}\n virtual_router_id {vrid}\n priority {priority}\n\
             advert_int {ADVERT_INT}\n {preempt}\n authentication {{\n auth_type PASS\n auth_pass 1111\n }}\n\
             virtual_ipaddress {{\n {addr}/32 dev {iface}\n }}\n}}\n"
        )
    };
    let mut c = format!("global_defs {{\n router_id {state}\n}}\n");
    c += &instance("VI_1", "eth0", VRID, vip);
    let (kind, port) = match nat {
        Some(gw) => {
            c += &instance("VI_GW", "eth1", VRID + 1, gw);
            c += "vrrp_sync_group VG_1 {\n group {\n VI_1\n VI_GW\n }\n}\n";
            ("NAT", 8080)
        }
        None => ("DR", 80),
    };
    c += &format!(
        "virtual_server {vip} 80 {{\n lb_algo rr\n lb_kind {kind}\n protocol TCP\n\
         real_server {} {port} {{\n weight 1\n }}\n real_server {} {port} {{\n weight 1\n }}\n}}\n",
        rs[0], rs[1]
    );
    c
}

struct Director {
    host: &'static str,
    conf: std::path::PathBuf,
    control: std::path::PathBuf,
    log: std::path::PathBuf,
    mac: String,
    /// NAT: the MAC of its inside interface (eth1), where the real servers' gateway is.
    inside_mac: Option<String>,
    ifaces: Vec<&'static str>,
    uvs: Option<u32>,
    keepalived: Option<u32>,
}

struct Ha {
    lvs: Lvs,
    d: [Director; 2],
    mode: &'static str,
    /// NAT: the real servers' gateway, the inside VRRP address.
    gw: Option<String>,
}

impl Ha {
    fn tmp(&self, name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}-{name}", self.lvs.bed.prefix))
    }

    fn start_keepalived(&mut self, i: usize) {
        let (host, conf) = (self.d[i].host, self.d[i].conf.to_string_lossy().to_string());
        let pid = self.tmp(&format!("{host}-ka.pid")).to_string_lossy().to_string();
        let vpid = self.tmp(&format!("{host}-vrrp.pid")).to_string_lossy().to_string();
        let log = std::fs::File::create(self.tmp(&format!("{host}-keepalived.log"))).unwrap();
        // A keepalived this test killed may linger as a zombie (not reaped yet) under
        // the pid its file names, and keepalived would then refuse to start ("daemon
        // is already running").
        let _ = std::fs::remove_file(&pid);
        let _ = std::fs::remove_file(&vpid);
        let p = self
            .lvs
            .bed
            .spawn(
                host,
                &[
                    "keepalived",
                    "--vrrp",
                    "-f",
                    &conf,
                    "-n",
                    "-l",
                    "-D",
                    "-p",
                    &pid,
                    "-r",
                    &vpid,
                    "-i",
                    host,
                ],
                Some(log),
            )
            .unwrap();
        self.d[i].keepalived = Some(p);
    }

    fn start_uvs(&mut self, i: usize) {
        let d = &self.d[i];
        let (host, conf, control, log) = (
            d.host,
            d.conf.to_string_lossy().to_string(),
            d.control.to_string_lossy().to_string(),
            d.log.clone(),
        );
        let exe = self.lvs.exe.clone();
        let f = std::fs::File::create(&log).unwrap();
        let mut args = vec![exe.as_str(), "run"];
        for i in &self.d[i].ifaces {
            args.extend(["--iface", i]);
        }
        args.extend(["--workers", "1", "--keepalived", &conf, "--control", &control]);
        let refresh = format!("sync_refresh_period={SYNC_REFRESH}");
        args.extend(["--sysctl", "sync_threshold=3 0", "--sysctl", &refresh]);
        let p = self.lvs.bed.spawn(host, &args, Some(f)).unwrap();
        self.d[i].uvs = Some(p);
        let ok = wait_file_has(&log, 10, "director ready");
        assert!(
            ok,
            "{host}: uvs not ready:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Which director has the VIP on its interface (keepalived's MASTER).
    fn holder(&self) -> Option<usize> {
        (0..2).find(|&i| self.has_vip(self.d[i].host))
    }

    /// Is `addr`/32 on `host`'s interface `dev`?
    fn has_addr(&self, host: &str, dev: &str, addr: &str) -> bool {
        self.lvs
            .bed
            .exec_any(host, &["ip", "-4", "-o", "addr", "show", "dev", dev])
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {addr}/32")))
    }

    /// Is the VIP on `host`'s eth0?
    fn has_vip(&self, host: &str) -> bool {
        self.has_addr(host, "eth0", &self.lvs.addrs.vip)
    }

    fn adm(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let mut words = vec!["adm"];
        words.extend_from_slice(args);
        let out = uvs_at(&self.d[i].control, &words);
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).to_string()),
            false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        }
    }

    /// `host`'s neighbour entry for `addr` on its eth0 (MAC), if any.
    fn neigh(&self, host: &str, addr: &str) -> Option<String> {
        let out = self
            .lvs
            .bed
            .exec_any(host, &["ip", "neigh", "show", addr, "dev", "eth0"])
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let w: Vec<&str> = text.split_whitespace().collect();
        w.iter().position(|x| *x == "lladdr").map(|p| w[p + 1].to_string())
    }

    /// The client's neighbour entry for the VIP (MAC), if any.
    fn client_neigh(&self) -> Option<String> {
        self.neigh("client", &self.lvs.addrs.vip)
    }

    /// NAT: each real server's neighbour entry for its gateway (MAC), if any.
    fn rs_gw_neigh(&self) -> Vec<Option<String>> {
        let gw = self.gw.as_deref().unwrap_or_default();
        ["rs1", "rs2"].iter().map(|h| self.neigh(h, gw)).collect()
    }

    /// Which director a MAC is (for the printouts).
    fn whose(&self, mac: &Option<String>) -> &'static str {
        let is = |d: &Director| {
            mac.as_deref()
                .is_some_and(|m| m == d.mac || Some(m) == d.inside_mac.as_deref())
        };
        self.d.iter().find(|d| is(d)).map_or("nobody", |d| d.host)
    }

    /// After director `i` took the addresses: the client's neighbour entry for the VIP
    /// is `i`'s MAC and, in NAT, each real server's entry for its gateway is `i`'s
    /// inside MAC (keepalived's gratuitous ARPs on both interfaces of the sync group).
    fn assert_neighbours_on(&self, i: usize, when: &str) {
        let d = &self.d[i];
        let ok = wait_until(3, || {
            self.client_neigh().as_deref() == Some(d.mac.as_str())
                && (self.gw.is_none() || self.rs_gw_neigh().iter().all(|m| *m == d.inside_mac))
        });
        assert!(
            ok,
            "{when}: neighbour entries not on {}: client's for the VIP {:?} (want {}), real servers' for the gateway {:?} (want {:?})",
            d.host,
            self.client_neigh(),
            d.mac,
            self.rs_gw_neigh(),
            d.inside_mac
        );
    }

    fn ping(&self) -> bool {
        self.lvs
            .bed
            .exec_any("client", &["ping", "-c", "1", "-W", "1", &self.lvs.addrs.vip])
            .is_ok_and(|o| o.status.success())
    }

    /// Every link of `host` up or down (host death and return).
    fn links(&self, host: &str, updown: &str) {
        let i = self.d.iter().position(|d| d.host == host).unwrap();
        for l in &self.d[i].ifaces {
            self.lvs.bed.exec_any(host, &["ip", "link", "set", l, updown]).unwrap();
        }
    }

    /// SIGKILL every process of `host`'s namespace whose command is `name`.
    fn kill_all(&self, host: &str, name: &str) -> usize {
        self.lvs.bed.kill_where(host, |pid| comm_is(pid, name))
    }

    /// A process crash of `host`: SIGKILL its keepalived (parent and VRRP child) and
    /// its uvs, none of which gets to clean up. All are stopped (SIGSTOP) first: a
    /// keepalived child told of its parent's death (SIGTERM) would otherwise have a
    /// moment to leave MASTER gracefully (remove the addresses, send priority 0).
    fn crash(&self, host: &str) -> usize {
        let pick = |p: &i32| comm_is(*p, "keepalived") || comm_is(*p, "uvs");
        let pids: Vec<i32> = self.lvs.bed.pids(host).into_iter().filter(pick).collect();
        for sig in [Signal::SIGSTOP, Signal::SIGKILL] {
            for &p in &pids {
                signal(p as u32, sig);
            }
        }
        pids.len()
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        // keepalived forks a VRRP child the bed does not know: end every process of
        // the directors' namespaces before the bed deletes them.
        for d in &self.d {
            for name in ["keepalived", "uvs"] {
                let _ = self.kill_all(d.host, name);
            }
        }
    }
}

fn setup(tag: &str, preempt: &str, nat: bool) -> Ha {
    let (mut lvs, gw, ifaces) = if nat {
        let mut lvs = Lvs::nat(tag, UVS, false, false, false).expect("NAT bed");
        // The real servers' gateway (10.78.1.1) becomes the inside VRRP address; the
        // directors get addresses of their own there.
        let (_, gw) = Lvs::nat_addrs();
        let bed = &mut lvs.bed;
        bed.exec("dir", &["ip", "addr", "del", &format!("{gw}/24"), "dev", "eth1"])
            .unwrap();
        bed.exec("dir", &["ip", "addr", "add", "10.78.1.2/24", "dev", "eth1"])
            .unwrap();
        (lvs, Some(gw), vec!["eth0", "eth1"])
    } else {
        (dr(tag), None, vec!["eth0"])
    };
    let vip = lvs.addrs.vip.clone();
    let rs = lvs.addrs.rs.clone();
    // dir2: the backup director on the same segment(s).
    lvs.bed.add_host("dir2").unwrap();
    let outside = if nat { "192.168.77.3/24" } else { "10.77.0.3/24" };
    let mac2 = lvs.bed.plug("dir2", "eth0", outside).unwrap();
    let inside = match nat {
        true => [
            Some(lvs.bed.mac("dir", "eth1").unwrap()),
            Some(lvs.bed.plug_into("br1", "dir2", "eth1", "10.78.1.3/24").unwrap()),
        ],
        false => [None, None],
    };
    // A small receive buffer on the client, so that a rate-limited download keeps
    // the server sending (and the director forwarding) for its whole duration.
    lvs.bed
        .sysctl("client", "net.ipv4.tcp_rmem", "4096 8192 16384")
        .unwrap();
    let mk = |lvs: &Lvs, host: &'static str, mac: String, inside_mac: Option<String>, state: &str, prio: u32| {
        let p = |n: &str| std::env::temp_dir().join(format!("{}-{host}-{n}", lvs.bed.prefix));
        std::fs::write(
            p("keepalived.conf"),
            conf(&vip, &rs, gw.as_deref(), state, prio, preempt),
        )
        .unwrap();
        Director {
            host,
            conf: p("keepalived.conf"),
            control: p("control.sock"),
            log: p("uvs.log"),
            mac,
            inside_mac,
            ifaces: ifaces.clone(),
            uvs: None,
            keepalived: None,
        }
    };
    let [in1, in2] = inside;
    let d1 = mk(&lvs, "dir", lvs.director_mac.clone(), in1, "MASTER", 150);
    let d2 = mk(&lvs, "dir2", mac2, in2, "BACKUP", 100);
    let mut ha = Ha {
        lvs,
        d: [d1, d2],
        mode: if nat { "NAT" } else { "DR" },
        gw,
    };
    for i in 0..2 {
        ha.start_uvs(i);
    }
    for i in 0..2 {
        ha.start_keepalived(i);
    }
    assert!(
        wait_until(10, || ha.holder() == Some(0)),
        "dir never became MASTER:\n{}",
        std::fs::read_to_string(ha.tmp("dir-keepalived.log")).unwrap_or_default()
    );
    ha
}

/// Start the sync daemons through uvs (as `ipvsadm --start-daemon`), both kinds on
/// both directors as keepalived's active/active setups do, so that either director
/// holds the other's connections when it takes over.
fn start_sync(ha: &Ha) -> bool {
    start_sync_on(ha, &[0, 1])
}

fn start_sync_on(ha: &Ha, which: &[usize]) -> bool {
    for &i in which {
        for kind in ["master", "backup"] {
            let r = ha.adm(
                i,
                &["--start-daemon", kind, "--mcast-interface", "eth0", "--syncid", "7"],
            );
            if let Err(e) = r {
                panic!("{}: --start-daemon {kind}: {e}", ha.d[i].host);
            }
        }
    }
    true
}

/// Traffic: ten long downloads and a stream of short requests.
struct Load {
    stop: Arc<AtomicBool>,
    /// (when, ok) of every short request.
    short: Arc<Mutex<Vec<(Instant, bool)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    downloads: Vec<std::thread::JoinHandle<Result<usize, String>>>,
}

impl Load {
    /// `extra`: seconds to add to the downloads' length.
    fn start(ha: &Ha, extra: usize) -> Load {
        let (size, rate) = download_size();
        Load::start_with(ha, size + extra * rate, rate)
    }

    /// Downloads of `size` bytes at `rate` bytes/s.
    fn start_with(ha: &Ha, size: usize, rate: usize) -> Load {
        let ns = ha.lvs.bed.ns("client");
        let vip = ha.lvs.addrs.vip.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let short = Arc::new(Mutex::new(Vec::new()));
        let downloads = (0..10)
            .map(|_| {
                let (ns, vip) = (ns.clone(), vip.clone());
                std::thread::spawn(move || {
                    let max = (size / rate * 2 + 4) as u64;
                    let url = format!("http://{vip}/size/{size}");
                    let (code, got) = finish(download_in(&ns, &url, &rate.to_string(), max, &[]));
                    match code == Some(0) && got == size {
                        true => Ok(got),
                        false => Err(format!("curl exit {code:?}, {got} of {size} bytes")),
                    }
                })
            })
            .collect();
        let (s, sh) = (stop.clone(), short.clone());
        let t = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let at = Instant::now();
                let ok = Command::new("ip")
                    .args(["netns", "exec", &ns, "curl", "-s", "-o", "/dev/null", "--max-time", "2"])
                    .arg(format!("http://{vip}/"))
                    .status()
                    .is_ok_and(|s| s.success());
                sh.lock().unwrap().push((at, ok));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Load {
            stop,
            short,
            threads: vec![t],
            downloads,
        }
    }

    /// Wait for the downloads; stop the short requests. Returns (broken downloads,
    /// failed short requests with their times).
    fn finish(self) -> (Vec<String>, Vec<Instant>, usize) {
        let broken: Vec<String> = self
            .downloads
            .into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect();
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let short = self.short.lock().unwrap();
        let failed = short.iter().filter(|(_, ok)| !ok).map(|(t, _)| *t).collect();
        (broken, failed, short.len())
    }
}

/// While `backup` is BACKUP: no ARP answer and no echo reply from its uvs.
fn check_backup_silent(ha: &mut Ha, backup: usize) {
    let (host, mac) = (ha.d[backup].host, ha.d[backup].mac.clone());
    let (pid, path) = tcpdump(&mut ha.lvs.bed, host, "eth0", &format!("arp and ether src {mac}"), 1000);
    let b = &ha.d[backup];
    // The client asks for the VIP afresh: only the master may answer.
    let _ = ha.lvs.bed.exec_any("client", &["ip", "neigh", "flush", "dev", "eth0"]);
    assert!(ha.ping(), "ping to the VIP through the master");
    std::thread::sleep(Duration::from_millis(300));
    let lines = std::fs::read_to_string(&path).unwrap_or_default();
    // Done with the capture (a later check of this host captures into the same file).
    ha.lvs.bed.stop(pid);
    let vip = &ha.lvs.addrs.vip;
    assert!(
        !lines.contains(&format!("Reply {vip} is-at")),
        "the backup answered ARP for the VIP:\n{lines}"
    );
    assert_eq!(ha.client_neigh().as_deref(), Some(ha.d[1 - backup].mac.as_str()));
    // Echo sent straight to the backup's MAC: not answered.
    let bed = &ha.lvs.bed;
    bed.pin_neigh("client", vip, &b.mac, "eth0").unwrap();
    let answered = ha.ping();
    bed.exec_any("client", &["ip", "neigh", "del", vip, "dev", "eth0"])
        .unwrap();
    assert!(!answered, "the backup answered ICMP echo to the VIP");
}

/// Kill, measure, report: returns (takeover time, failures outside the takeover window).
fn failover(ha: &mut Ha, how: &str, sync: bool) -> (Duration, usize) {
    let load = Load::start(ha, 0);
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    match how {
        "host death" => ha.links("dir", "down"),
        "process crash" => {
            let n = ha.crash("dir");
            assert!(n >= 3, "killed {n} processes (keepalived, its VRRP child, uvs)");
        }
        _ => unreachable!(),
    }
    let took = wait_until(15, || ha.has_vip("dir2"));
    let takeover = killed.elapsed();
    assert!(took, "{how}: dir2 never took the VIP");
    let (broken, failed, total) = load.finish();
    // keepalived: master down after 3 × advert_int + skew ((256 - priority) / 256).
    let window = Duration::from_secs_f64(
        3.0 * ADVERT_INT + (256.0 - 100.0) / 256.0 + 2.0, /* curl's --max-time */
    );
    let late: Vec<_> = failed
        .iter()
        .filter(|t| t.saturating_duration_since(killed) > window + Duration::from_millis(1500))
        .collect();
    let early = failed.iter().filter(|t| **t + Duration::from_secs(2) < killed).count();
    println!(
        "{} failover by {how}: takeover {:.2} s; short requests failed {} of {total} ({} after the window, {early} before the kill); long downloads broken {} of 10{}",
        ha.mode,
        takeover.as_secs_f64(),
        failed.len(),
        late.len(),
        broken.len(),
        if broken.is_empty() {
            String::new()
        } else {
            format!(": {broken:?}")
        }
    );
    assert_eq!(early, 0, "{how}: requests failed before the master died");
    if sync {
        assert!(broken.is_empty(), "{how}: long downloads broken with sync: {broken:?}");
    }
    (takeover, late.len())
}

fn have_keepalived() -> bool {
    if Command::new("keepalived").arg("--version").output().is_err() {
        eprintln!("\n*** SKIPPED: keepalived is not installed (apt-get install keepalived) ***\n");
        return false;
    }
    true
}

#[test]
fn dr_failover_by_host_death_then_the_old_master_returns_with_preempt_delay() {
    require_root!();
    if have_keepalived() {
        host_death_and_return(false);
    }
}

#[test]
fn nat_failover_with_a_sync_group_by_host_death_then_the_old_master_returns() {
    require_root!();
    if have_keepalived() {
        host_death_and_return(true);
    }
}

fn host_death_and_return(nat: bool) {
    let mut ha = setup(
        if nat { "hanat" } else { "hafo" },
        &format!("preempt_delay {PREEMPT_DELAY}"),
        nat,
    );
    let sync = start_sync(&ha);
    check_backup_silent(&mut ha, 1);
    // Served through the master (ARP answered by it; echo answered by its uvs).
    assert!(ha.ping());
    assert!(ha.lvs.curl(&format!("http://{}/", ha.lvs.addrs.vip)).is_ok());

    let (takeover, late) = failover(&mut ha, "host death", sync);
    assert!(takeover < Duration::from_secs(8), "takeover {takeover:?}");
    assert_eq!(late, 0, "short requests failed after the VRRP takeover window");
    // The client now reaches the VIP at the new master's MAC (keepalived's GARP), and
    // in NAT the real servers their gateway.
    ha.assert_neighbours_on(1, "host death");
    assert!(ha.ping(), "the new master's uvs answers echo");

    // The old master returns as a host does after a reboot: its processes start
    // afresh with an empty table (uvs and its sync daemons first, then keepalived, as
    // BACKUP), and it takes the VIP back after preempt_delay. The downloads started
    // now (on dir2) and before are taught to it by dir2's sync master, which sends
    // every connection with traffic again each sync_refresh_period.
    for name in ["keepalived", "uvs"] {
        ha.kill_all("dir", name);
    }
    // Downloads that outlast the restart and preempt_delay, slow enough (6 kB/s: a
    // few client ACKs a second) that the count-based resend of `sync_threshold 3 50`
    // (at the 53rd client packet) comes after the failback: only the refresh period
    // teaches the returning director in time (with "3 50" and no refresh, measured:
    // see README "High availability").
    let load = Load::start_with(&ha, 6_000 * (12 + PREEMPT_DELAY as usize), 6_000);
    std::thread::sleep(Duration::from_secs(1));
    ha.links("dir", "up");
    let back = Instant::now();
    // Addresses the killed keepalived left (README: ExecStartPre).
    let _ = ha.lvs.bed.exec_any(
        "dir",
        &["ip", "addr", "del", &format!("{}/32", ha.lvs.addrs.vip), "dev", "eth0"],
    );
    if let Some(gw) = &ha.gw {
        let _ = ha
            .lvs
            .bed
            .exec_any("dir", &["ip", "addr", "del", &format!("{gw}/32"), "dev", "eth1"]);
    }
    ha.start_uvs(0);
    start_sync_on(&ha, &[0]);
    ha.start_keepalived(0);
    assert!(wait_until(20, || ha.holder() == Some(0)), "dir never took the VIP back");
    let preempted = back.elapsed();
    let (broken, failed, total) = load.finish();
    // The failback is a takeover too (at once: the returning master preempts): a
    // short request may fail only if it was in flight then (sent up to curl's
    // --max-time before it), or sent while the gratuitous ARPs spread (+ slack).
    let switch = back + preempted;
    let outside = failed
        .iter()
        .filter(|t| **t + Duration::from_millis(2500) < switch || **t > switch + Duration::from_millis(1500))
        .count();
    println!(
        "{} return with preempt_delay {PREEMPT_DELAY}: VIP back after {:.2} s; short requests failed {} of {total} ({outside} outside the switch); long downloads broken {} of 10",
        ha.mode,
        preempted.as_secs_f64(),
        failed.len(),
        broken.len()
    );
    if sync {
        assert!(broken.is_empty(), "failback broke long downloads: {broken:?}");
    }
    assert_eq!(outside, 0, "short requests failed away from the failback");
    if let Some(gw) = &ha.gw {
        // The real servers' gateway follows the sync group back to dir.
        let gw_holder = ha.has_addr("dir", "eth1", gw);
        assert!(gw_holder, "the inside gateway address moved with the sync group");
    }
    ha.assert_neighbours_on(0, "failback");
    // dir2 is BACKUP again: silent for the VIP.
    check_backup_silent(&mut ha, 1);
}

#[test]
fn dr_failover_by_process_crash_with_nopreempt() {
    require_root!();
    if have_keepalived() {
        process_crash_and_nopreempt_return(false);
    }
}

#[test]
fn nat_failover_with_a_sync_group_by_process_crash_with_nopreempt() {
    require_root!();
    if have_keepalived() {
        process_crash_and_nopreempt_return(true);
    }
}

fn process_crash_and_nopreempt_return(nat: bool) {
    // nopreempt wants both instances to start as BACKUP (keepalived's rule).
    let mut ha = setup(if nat { "hancr" } else { "hacr" }, "nopreempt", nat);
    let sync = start_sync(&ha);
    check_backup_silent(&mut ha, 1);
    let (takeover, late) = failover(&mut ha, "process crash", sync);
    assert!(takeover < Duration::from_secs(8), "takeover {takeover:?}");
    assert_eq!(late, 0, "short requests failed after the VRRP takeover window");
    // keepalived's gratuitous ARPs (on both interfaces of the sync group) moved the
    // entries in use to the new master.
    ha.assert_neighbours_on(1, "process crash");
    // The old master's kernel still holds its VRRP addresses (keepalived had no time
    // to remove them) and answers ARP for them. Its dead uvs's nftables table still
    // drops the kernel's copy of VIP traffic, so that kernel sends clients no RSTs,
    // until a restarted uvs removes the stale table; traffic from the real servers to
    // the clients it drops too (not a local address, and ip_forward is 0 as uvs wants).
    let stale_vip = ha.has_vip("dir");
    let stale_gw = ha.gw.as_deref().map(|gw| ha.has_addr("dir", "eth1", gw));
    println!(
        "{} after the crash: old master still has the VIP: {stale_vip}, the inside gateway: {stale_gw:?}",
        ha.mode
    );
    assert!(stale_vip, "SIGKILL left no VIP on the old master");
    assert_ne!(
        stale_gw,
        Some(false),
        "SIGKILL left no gateway address on the old master"
    );
    // What the stale addresses do: a host that asks afresh (its entry expired or
    // flushed) would get answers from both the new master and the old master's
    // kernel, and keep the first (arp_process: a reply within `locktime` of the last
    // update is ignored; only a gratuitous ARP overrides it). But uvs answers ARP for
    // the VRRP addresses it holds itself, and its table drops the requests before the
    // kernel (kernelcopy.rs); the dead uvs's stale table still does, so the old
    // master's kernel answers neither for the VIP nor for the NAT gateway.
    let mut answered = Vec::new();
    let mut dead_answers = Vec::new();
    let mut asks = vec![("client", ha.lvs.addrs.vip.clone(), "eth0", ha.d[0].mac.clone())];
    if let (Some(gw), Some(m)) = (&ha.gw, &ha.d[0].inside_mac) {
        asks.extend([
            ("rs1", gw.clone(), "eth1", m.clone()),
            ("rs2", gw.clone(), "eth1", m.clone()),
        ]);
    }
    for (host, addr, dead_if, dead_mac) in &asks {
        let f = format!("arp and ether src {dead_mac}");
        let (pid, path) = tcpdump(&mut ha.lvs.bed, "dir", dead_if, &f, 100);
        let bed = &ha.lvs.bed;
        let _ = bed.exec_any(host, &["ip", "neigh", "flush", "dev", "eth0"]);
        let _ = bed.exec_any(host, &["ping", "-c", "1", "-W", "1", addr]);
        std::thread::sleep(Duration::from_millis(200));
        let lines = std::fs::read_to_string(&path).unwrap_or_default();
        ha.lvs.bed.stop(pid);
        answered.push(format!("{host} -> {}", ha.whose(&ha.neigh(host, addr))));
        dead_answers.push((*host, addr.clone(), lines.contains(&format!("Reply {addr} is-at"))));
    }
    let bed = &ha.lvs.bed;
    let url = format!("http://{}/", ha.lvs.addrs.vip);
    let short = ["curl", "-s", "-o", "/dev/null", "--max-time", "2", &url];
    let ok = |_: &usize| bed.exec_any("client", &short).is_ok_and(|o| o.status.success());
    let failed = (0..4).filter(|i| !ok(i)).count();
    println!(
        "{} fresh ARP after the crash: the crashed master answered {dead_answers:?}; answer kept: {}; then {failed} of 4 new short requests failed",
        ha.mode,
        answered.join(", ")
    );
    assert!(
        dead_answers.iter().all(|a| !a.2),
        "the crashed master's kernel answered ARP: {dead_answers:?}"
    );
    if answered.iter().all(|a| a.ends_with("dir2")) {
        assert_eq!(failed, 0, "served through the new master despite the stale addresses");
    }
    // A host whose entry is still on the old master (it missed keepalived's gratuitous
    // ARPs; here: pinned to it) loses its traffic there, until its unicast probes go
    // unanswered and it asks afresh: in NAT the real servers' replies (the old
    // master's kernel does not forward), in DR the client's frames (the stale table
    // drops them, no RST).
    let dead = &ha.d[0];
    let pins: Vec<(&str, &str, &str)> = match &ha.gw {
        None => vec![("client", &ha.lvs.addrs.vip, &dead.mac)],
        Some(gw) => {
            let m = dead.inside_mac.as_deref().unwrap();
            vec![("rs1", gw, m), ("rs2", gw, m)]
        }
    };
    for (host, addr, mac) in &pins {
        bed.pin_neigh(host, addr, mac, "eth0").unwrap();
    }
    let lost = (0..2).filter(|i| !ok(i)).count();
    for (host, addr, _) in &pins {
        let _ = bed.exec_any(host, &["ip", "neigh", "del", addr, "dev", "eth0"]);
    }
    let what = if nat {
        "real servers' entries for the gateway"
    } else {
        "client's entry for the VIP"
    };
    println!(
        "{} with the {what} on the crashed master: {lost} of 2 short requests lost",
        ha.mode
    );
    assert_eq!(lost, 2, "{}: the crashed master forwarded", ha.mode);
    // keepalived does not remove an address it finds on the interface when it starts
    // as BACKUP, and a restarted uvs would take it as held (it warns): the operator's
    // restart removes it first (README "High availability": ExecStartPre). Entries
    // still on the old master would move back once their unicast probes went
    // unanswered (or at keepalived's next gratuitous ARP): the test flushes them.
    let vip = format!("{}/32", ha.lvs.addrs.vip);
    bed.exec_any("dir", &["ip", "addr", "del", &vip, "dev", "eth0"])
        .unwrap();
    if let Some(gw) = &ha.gw {
        bed.exec_any("dir", &["ip", "addr", "del", &format!("{gw}/32"), "dev", "eth1"])
            .unwrap();
    }
    for (host, ..) in &asks {
        let _ = bed.exec_any(host, &["ip", "neigh", "flush", "dev", "eth0"]);
    }
    ha.start_keepalived(0);
    ha.start_uvs(0);
    start_sync_on(&ha, &[0]);
    let load = Load::start(&ha, 0);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(ha.holder(), Some(1), "nopreempt: dir2 stays MASTER");
    if let Some(gw) = &ha.gw {
        assert!(ha.has_addr("dir2", "eth1", gw), "nopreempt: dir2 keeps the gateway");
    }
    let (broken, failed, total) = load.finish();
    println!(
        "{} return with nopreempt: short requests failed {} of {total}; long downloads broken {} of 10",
        ha.mode,
        failed.len(),
        broken.len()
    );
    assert!(failed.is_empty(), "the old master's return broke short requests");
    assert!(
        broken.is_empty(),
        "the old master's return broke long downloads: {broken:?}"
    );
    ha.assert_neighbours_on(1, "nopreempt return");
    // The restarted old master is BACKUP: silent for the VIP.
    check_backup_silent(&mut ha, 0);
}

/// `uvs run --vrrp-vip` without a keepalived file: the VIP is served exactly while the
/// address is on the director's interface (whoever puts it there), followed by
/// rtnetlink notifications; ICMP echo to it is answered by uvs only then. And such a
/// VIP refuses `--keep-kernel-copy`.
#[test]
fn vrrp_vip_is_served_only_while_on_the_interface() {
    require_root!();
    let mut lvs = dr("havv");
    let vip = lvs.addrs.vip.clone();
    let rules = format!(
        "-A -t {vip}:80 -s rr\n-a -t {vip}:80 -r {}:80 -g -w 1\n-a -t {vip}:80 -r {}:80 -g -w 1\n",
        lvs.addrs.rs[0], lvs.addrs.rs[1]
    );
    // Refused: the kernel would answer clients of a VIP on its interface.
    let err = lvs
        .start_director(&rules, &["--workers", "1", "--vrrp-vip", &vip, "--keep-kernel-copy"])
        .unwrap_err();
    assert!(err.contains("--keep-kernel-copy cannot serve VRRP VIPs"), "{err}");
    lvs.stop_director();
    lvs.start_director(&rules, &["--workers", "1", "--vrrp-vip", &vip])
        .unwrap();
    let url = format!("http://{vip}/");
    let ping = |lvs: &Lvs| {
        lvs.bed
            .exec_any("client", &["ping", "-c", "1", "-W", "1", &vip])
            .is_ok_and(|o| o.status.success())
    };
    // Not on the interface: no ARP answer, so nothing reaches the director.
    assert!(lvs.curl(&url).is_err(), "served before the VIP is on the interface");
    assert!(!ping(&lvs));
    let cidr = format!("{vip}/32");
    lvs.bed
        .exec("dir", &["ip", "addr", "add", &cidr, "dev", "eth0"])
        .unwrap();
    assert!(
        wait_until(5, || lvs.curl(&url).is_ok()),
        "not served after `ip addr add`:\n{}",
        lvs.director_log()
    );
    assert!(ping(&lvs), "echo to the held VIP");
    assert!(lvs.director_log().contains("(VRRP MASTER): serving it"));
    lvs.bed
        .exec("dir", &["ip", "addr", "del", &cidr, "dev", "eth0"])
        .unwrap();
    // The client still has the director's MAC: frames arrive, and are not forwarded.
    assert!(
        wait_until(5, || lvs.curl(&url).is_err()),
        "still served after `ip addr del`"
    );
    assert!(!ping(&lvs), "echo answered after the VIP left");
    assert!(lvs.director_log().contains("(VRRP BACKUP): not serving it"));
}
