//! `uvs lab`: the three LVS forwarding modes on one machine, in one command.
//!
//! For each mode it builds the tutorials' topology in network namespaces (names unique
//! to the run), configures the real servers as the tutorials do and prints each step
//! as the shell command it stands for, starts a uvs director with the printed ipvsadm
//! rules, sends HTTP requests from the client and shows which real server answered,
//! then prints a per-hop table for one request and its reply built from frames
//! captured at every hop, and the director's `ipvsadm -L -n --stats`. `--break STEP`
//! skips one tutorial step and explains, with the evidence seen, what goes wrong.
//! Everything is torn down afterwards (also on error or Ctrl-C) unless `--keep`.

#![forbid(unsafe_code)]

pub mod hops;
pub mod html;
pub mod report;
pub mod svg;
pub mod term;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::testbed::lvs::{Addrs, Lvs, Mode};
use hops::{Hop, MacNames, Seen};
use report::{Evidence, HostInfo, IfaceInfo, ModeReport};
use term::Term;

/// Options of `uvs lab`.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub mode: String,
    pub scheduler: String,
    pub requests: usize,
    pub brk: Option<String>,
    pub keep: bool,
    /// Also write the run as one self-contained HTML page here.
    pub html: Option<std::path::PathBuf>,
}

/// The tutorial steps `--break` can skip, and the mode each belongs to.
pub const BREAKS: &[(&str, &str)] = &[("arp_ignore", "dr"), ("rp_filter", "tun"), ("gateway", "nat")];

pub fn run(opts: &LabOptions) -> Result<(), String> {
    if !crate::testbed::is_root() {
        return Err("uvs lab needs root (network namespaces, AF_PACKET): run it with sudo".into());
    }
    let modes: Vec<&str> = match (opts.mode.as_str(), &opts.brk) {
        (_, Some(b)) => {
            let Some((_, m)) = BREAKS.iter().find(|(n, _)| n == b) else {
                let names: Vec<_> = BREAKS.iter().map(|(n, _)| *n).collect();
                return Err(format!("unknown --break step '{b}' (one of: {})", names.join(", ")));
            };
            if opts.mode != "all" && opts.mode != *m {
                return Err(format!("--break {b} belongs to mode {m}, not {}", opts.mode));
            }
            vec![m]
        }
        ("all", None) => vec!["dr", "nat", "tun"],
        (m @ ("dr" | "nat" | "tun"), None) => vec![m],
        (other, _) => return Err(format!("unknown mode '{other}' (nat, dr, tun or all)")),
    };
    if crate::sched::new_scheduler(&opts.scheduler, &[], 0).is_none() {
        return Err(format!("unknown scheduler '{}'", opts.scheduler));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let exe = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .to_string_lossy()
        .to_string();
    let t = Term::detect();
    let started = Instant::now();
    let mut reports = Vec::new();
    for m in modes {
        reports.push(run_mode(m, opts, &exe, &t, &stop)?);
    }
    if let Some(path) = &opts.html {
        let command: Vec<String> = std::env::args().collect();
        let command = format!("uvs {}", command.get(1..).unwrap_or_default().join(" "));
        std::fs::write(path, html::page(&reports, &command))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("\n{}", t.dim(&format!("(page written to {})", path.display())));
    }
    println!(
        "\n{}",
        t.dim(&format!("(lab finished in {:.1} s)", started.elapsed().as_secs_f64()))
    );
    Ok(())
}

fn check(stop: &AtomicBool) -> Result<(), String> {
    if stop.load(Ordering::Relaxed) {
        Err("interrupted: tearing everything down".into())
    } else {
        Ok(())
    }
}

/// Where to capture with tcpdump in each mode: (host, interface). The director's own
/// frames come from its `--pcap` file (it sends through a TX ring that bypasses the
/// qdisc layer, where tcpdump would see them).
fn capture_points(mode: Mode) -> Vec<(&'static str, &'static str)> {
    match mode {
        Mode::Dr | Mode::NatOneArm | Mode::NatTwoArm => vec![("client", "eth0"), ("rs1", "eth0"), ("rs2", "eth0")],
        Mode::Tun => vec![
            ("client", "eth0"),
            ("rs1", "eth0"),
            ("rs1", "eth1"),
            ("rs2", "eth0"),
            ("rs2", "eth1"),
        ],
    }
}

fn run_mode(mode: &str, o: &LabOptions, exe: &str, t: &Term, stop: &AtomicBool) -> Result<ModeReport, String> {
    let brk = o.brk.as_deref();
    let (title, blurb) = match mode {
        "dr" => (
            "DR (direct routing, -g)",
            "the director rewrites only the destination MAC; replies bypass it",
        ),
        "nat" => (
            "NAT (masquerading, -m)",
            "the director rewrites addresses both ways; it is the servers' gateway",
        ),
        _ => (
            "TUN (IP tunnelling, -i)",
            "the director wraps each packet in IPIP; replies bypass it",
        ),
    };
    t.section(title);
    println!("   {blurb}");
    t.step("configuring the hosts as the tutorial does");
    let mut lvs = match mode {
        "dr" => Lvs::dr("lab", exe, Addrs::default(), brk == Some("arp_ignore"), true)?,
        "nat" => Lvs::nat("lab", exe, brk == Some("gateway"), brk == Some("gateway"), true)?,
        _ => Lvs::tun("lab", exe, 1500, brk == Some("rp_filter"), true)?,
    };
    check(stop)?;
    let a = lvs.addrs.clone();
    let (vport, rport, flag) = match lvs.mode {
        Mode::Dr => (80, 80, "-g"),
        Mode::NatOneArm | Mode::NatTwoArm => (80, 8080, "-m"),
        Mode::Tun => (80, 80, "-i"),
    };
    let rules = format!(
        "-A -t {vip}:{vport} -s {s}\n-a -t {vip}:{vport} -r {r1}:{rport} {flag} -w 1\n-a -t {vip}:{vport} -r {r2}:{rport} {flag} -w 1\n",
        vip = a.vip,
        s = o.scheduler,
        r1 = a.rs[0],
        r2 = a.rs[1]
    );
    t.step("starting the uvs director with these rules");
    for l in rules.lines() {
        println!("     dir$ ipvsadm {l}");
    }
    // Capture at every hop, then start the director.
    let mut caps = Vec::new();
    for (host, ifname) in capture_points(lvs.mode) {
        let path = std::env::temp_dir().join(format!("{}-{host}-{ifname}.pcap", lvs.bed.prefix));
        let log = std::fs::File::create(path.with_extension("log")).map_err(|e| e.to_string())?;
        let p = path.to_string_lossy().to_string();
        let filter = "tcp port 80 or tcp port 8080 or ip proto 4";
        let pid = lvs.bed.spawn(
            host,
            &[
                "tcpdump",
                "--immediate-mode",
                "-U",
                "-n",
                "-i",
                ifname,
                "-w",
                &p,
                filter,
            ],
            Some(log),
        )?;
        caps.push((host, ifname, path, pid));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for (_, _, path, _) in &caps {
        while !std::fs::read_to_string(path.with_extension("log"))
            .unwrap_or_default()
            .contains("listening on")
        {
            if Instant::now() > deadline {
                return Err("tcpdump did not start".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let control = std::env::temp_dir().join(format!("{}-control.sock", lvs.bed.prefix));
    let ctl_arg = control.to_string_lossy().to_string();
    let dir_pcap = std::env::temp_dir().join(format!("{}-director.pcap", lvs.bed.prefix));
    let dir_pcap_arg = dir_pcap.to_string_lossy().to_string();
    lvs.start_director(
        &rules,
        &[
            "--workers",
            "2",
            "--control",
            &ctl_arg,
            "--pcap",
            &dir_pcap_arg,
            "--pcap-rx",
        ],
    )?;
    check(stop)?;

    t.step(&format!(
        "{} HTTP requests from the client ({}) to http://{}/",
        o.requests, a.client, a.vip
    ));
    let url = format!("http://{}/", a.vip);
    let max_time = if brk.is_some() { "1" } else { "3" };
    let mut names = Vec::new();
    for i in 0..o.requests {
        check(stop)?;
        t.progress(i, o.requests);
        let out = lvs
            .bed
            .exec_any("client", &["curl", "-s", "--max-time", max_time, &url])?;
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        names.push(if out.status.success() && !body.is_empty() {
            body
        } else {
            String::new()
        });
    }
    t.progress(o.requests, o.requests);
    for (i, n) in names.iter().enumerate() {
        let shown = if n.is_empty() {
            t.red("no answer (timed out)")
        } else {
            t.green(n)
        };
        println!("  request {:>2} -> {shown}", i + 1);
    }
    std::thread::sleep(Duration::from_millis(100));
    for (_, _, _, pid) in &caps {
        lvs.bed.stop(*pid);
    }

    // The per-hop table.
    let mut frames: Vec<(String, Vec<Seen>)> = Vec::new();
    let stats = director_stats(&lvs, exe, &ctl_arg);
    lvs.stop_director();
    let seen = hops::read_pcap(&dir_pcap)
        .iter()
        .filter_map(|f| hops::decode(f))
        .collect();
    frames.push(("director, its own --pcap".to_string(), seen));
    let _ = std::fs::remove_file(&dir_pcap);
    // The lab's director leaves no state file behind (README "Restarts and the state file").
    let _ = std::fs::remove_file(control.with_extension("state"));
    for (host, ifname, path, _) in &caps {
        let raw = hops::read_pcap(path);
        tracing::debug!("{host} {ifname}: {} frames in {}", raw.len(), path.display());
        let seen = raw.iter().filter_map(|f| hops::decode(f)).collect();
        frames.push((format!("{host} {ifname}"), seen));
        if std::env::var_os("UVS_LAB_DEBUG").is_none() {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(path.with_extension("log"));
        }
    }
    let mac_names = mac_names(&lvs);
    let table = hop_table(&lvs, &frames, &mac_names);
    t.step("one request and its reply, hop by hop (from captured frames)");
    if table.is_empty() {
        println!("  (no request reached the wire)");
    } else {
        print!("{}", hops::render(&table, &mac_names, t.color));
    }

    t.step("dir$ ipvsadm -L -n --stats");
    print!("{stats}");

    let ev = brk.map(|b| evidence(b, &lvs, &names, &frames));
    if let Some(ev) = &ev {
        t.step(&format!("what went wrong without the {} step", ev.step()));
        for para in ev.text().lines() {
            print!("{}", hops::wrap(para.trim(), 2, 80));
        }
    }
    let report = ModeReport {
        mode: lvs.mode,
        title: title.to_string(),
        blurb: blurb.to_string(),
        vip: a.vip.clone(),
        scheduler: o.scheduler.clone(),
        rules: rules.clone(),
        hosts: hosts(&lvs),
        names: mac_names,
        hops: table,
        answers: names,
        stats,
        evidence: ev,
    };
    if o.keep {
        t.step("kept: the namespaces stay");
        for h in ["client", "dir", "rs1", "rs2", "sw"] {
            println!("  enter {h:<6}: ip netns exec {} bash", lvs.bed.ns(h));
        }
        println!(
            "  remove all : for n in $(ip netns list | grep -o '^{}-[a-z0-9]*'); do ip netns pids $n | xargs -r kill; ip netns del $n; done",
            lvs.bed.prefix
        );
        lvs.bed.disarm();
    } else {
        let prefix = lvs.bed.prefix.clone();
        drop(lvs);
        println!("{}", t.dim(&format!("-- torn down (namespaces {prefix}-*)")));
    }
    Ok(report)
}

/// The lab's hosts with their interfaces as the namespaces have them (`ip -o -4 addr`,
/// `ip -o link`): only interfaces with an address other than loopback's.
fn hosts(lvs: &Lvs) -> Vec<HostInfo> {
    [
        ("client", "client"),
        ("director", "dir"),
        ("rs1", "rs1"),
        ("rs2", "rs2"),
    ]
    .iter()
    .map(|(name, short)| {
        let out = lvs
            .bed
            .exec_any(short, &["ip", "-o", "-4", "addr", "show"])
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let mut ifaces: Vec<IfaceInfo> = Vec::new();
        for l in out.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            let (Some(ifname), Some(addr)) = (w.get(1), w.iter().skip_while(|x| **x != "inet").nth(1)) else {
                continue;
            };
            if addr.starts_with("127.") {
                continue;
            }
            match ifaces.iter_mut().find(|i| i.name == *ifname) {
                Some(i) => i.addrs.push(addr.to_string()),
                None => ifaces.push(IfaceInfo {
                    name: ifname.to_string(),
                    addrs: vec![addr.to_string()],
                    mac: lvs.bed.mac(short, ifname).unwrap_or_default(),
                }),
            }
        }
        HostInfo {
            name: name.to_string(),
            ifaces,
        }
    })
    .collect()
}

/// `ipvsadm -L -n --stats` from the running director, through its control socket.
fn director_stats(lvs: &Lvs, exe: &str, control: &str) -> String {
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &lvs.bed.ns("dir"), exe, "adm", "-L", "-n", "--stats"])
        .env("UVS_CONTROL", control)
        .output();
    match o {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).to_string(),
        Ok(o) => format!("  (not available: {})\n", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("  (not available: {e})\n"),
    }
}

fn mac_names(lvs: &Lvs) -> MacNames {
    let mut m = MacNames::new();
    let ifs: &[(&str, &str, &str)] = &[
        ("client", "eth0", "client"),
        ("dir", "eth0", "director"),
        ("dir", "eth1", "director eth1"),
        ("rs1", "eth0", "rs1"),
        ("rs1", "eth1", "rs1 eth1"),
        ("rs2", "eth0", "rs2"),
        ("rs2", "eth1", "rs2 eth1"),
    ];
    for (h, i, n) in ifs {
        if let Ok(mac) = lvs.bed.mac(h, i) {
            let b: Vec<u8> = mac.split(':').filter_map(|x| u8::from_str_radix(x, 16).ok()).collect();
            if let Ok(b) = <[u8; 6]>::try_from(b) {
                m.insert(b, n.to_string());
            }
        }
    }
    m
}

fn parse_ip(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().map(|a| a.octets()).unwrap_or_default()
}

/// Pick one request (the client's first SYN to the VIP) and follow it and its reply
/// through the captures.
fn hop_table(lvs: &Lvs, frames: &[(String, Vec<Seen>)], names: &MacNames) -> Vec<Hop> {
    let vip = parse_ip(&lvs.addrs.vip);
    let is_dir = |m: &[u8; 6]| names.get(m).is_some_and(|n| n.starts_with("director"));
    let at = |prefix: &'static str| {
        frames
            .iter()
            .filter(move |(n, _)| n.starts_with(prefix))
            .flat_map(|(n, v)| v.iter().map(move |s| (n, s)))
    };
    let Some((_, first)) = at("client").find(|(_, s)| s.syn && !s.ack && s.dst == vip) else {
        return Vec::new();
    };
    let cport = first.sport;
    let req = |s: &Seen| s.syn && !s.ack && s.sport == cport;
    let rep = |s: &Seen| s.syn && s.ack && s.dport == cport;
    let mut rows = Vec::new();
    let mut push = |title: String, s: &Seen, changed: Option<(&Seen, String)>| {
        rows.push(Hop {
            title,
            seen: s.clone(),
            input: changed.as_ref().map(|c| c.0.clone()),
            changed: changed.map(|c| c.1),
        })
    };
    push("the client sends the SYN (captured on client eth0)".into(), first, None);
    let dir_in = at("director").find(|(_, s)| req(s) && is_dir(&s.eth_dst) && s.outer.is_none());
    let dir_out = at("director").find(|(_, s)| req(s) && is_dir(&s.eth_src));
    if let Some((n, s)) = dir_in {
        push(format!("the director receives it ({n})"), s, None);
    }
    if let (Some((_, i)), Some((n, s))) = (dir_in, dir_out) {
        push(
            format!("the director sends it on ({n})"),
            s,
            Some((i, hops::diff(i, s, names))),
        );
    }
    if let Some((n, s)) = at("rs").find(|(_, s)| req(s)) {
        push(format!("the real server receives it ({n})"), s, None);
    }
    if let Some((n, s)) = at("rs").find(|(_, s)| rep(s)) {
        push(format!("the real server answers with SYN-ACK ({n})"), s, None);
    }
    if matches!(lvs.mode, Mode::NatOneArm | Mode::NatTwoArm) {
        let r_in = at("director").find(|(_, s)| rep(s) && is_dir(&s.eth_dst));
        let r_out = at("director").find(|(_, s)| rep(s) && is_dir(&s.eth_src));
        if let (Some((_, i)), Some((n, s))) = (r_in, r_out) {
            push(
                format!("the director sends the reply on ({n})"),
                s,
                Some((i, hops::diff(i, s, names))),
            );
        }
    }
    if let Some((n, s)) = at("client").find(|(_, s)| rep(s)) {
        push(format!("the client receives the reply ({n})"), s, None);
    }
    rows
}

/// The evidence of what broke without step `b`.
fn evidence(b: &str, lvs: &Lvs, names: &[String], frames: &[(String, Vec<Seen>)]) -> Evidence {
    let answered = names.iter().filter(|n| !n.is_empty()).count();
    let total = names.len();
    let vip = parse_ip(&lvs.addrs.vip);
    // SYNs to the VIP the director received (its own capture, frames to its MAC).
    let syns_at_director = || {
        frames
            .iter()
            .filter(|(n, _)| n.starts_with("director"))
            .flat_map(|(_, v)| v.iter())
            .filter(|s| s.syn && !s.ack && s.dst == vip && hops::fmt_mac_eq(&s.eth_dst, &lvs.director_mac))
            .count()
    };
    match b {
        "arp_ignore" => {
            let neigh = lvs
                .bed
                .exec_any("client", &["ip", "neigh", "show", &lvs.addrs.vip])
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            let owner = if neigh.contains(&lvs.director_mac) {
                "the director".to_string()
            } else if neigh.contains(&lvs.rs_mac[0]) {
                "rs1".to_string()
            } else if neigh.contains(&lvs.rs_mac[1]) {
                "rs2".to_string()
            } else {
                "nobody".to_string()
            };
            let mut servers: Vec<String> = names.iter().filter(|n| !n.is_empty()).cloned().collect();
            servers.sort();
            servers.dedup();
            Evidence::ArpIgnore {
                neigh,
                owner,
                via_director: syns_at_director(),
                total,
                servers,
            }
        }
        "rp_filter" => {
            let tunnelled = frames
                .iter()
                .filter(|(n, _)| n.starts_with("director"))
                .flat_map(|(_, v)| v.iter())
                .filter(|s| s.outer.is_some())
                .count();
            let rpf: u64 = ["rs1", "rs2"]
                .iter()
                .map(|h| {
                    lvs.bed
                        .exec_any(h, &["nstat", "-az", "TcpExtIPReversePathFilter"])
                        .map(|o| {
                            String::from_utf8_lossy(&o.stdout)
                                .lines()
                                .find(|l| l.starts_with("TcpExtIPReversePathFilter"))
                                .and_then(|l| l.split_whitespace().nth(1))
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0)
                        })
                        .unwrap_or(0)
                })
                .sum();
            Evidence::RpFilter {
                tunnelled,
                rpf,
                client: lvs.addrs.client.clone(),
                answered,
                total,
            }
        }
        _ => {
            let rip_replies = frames
                .iter()
                .filter(|(n, _)| n.starts_with("client"))
                .flat_map(|(_, v)| v.iter())
                .filter(|s| s.syn && s.ack && s.src != vip)
                .count();
            Evidence::Gateway {
                rip_replies,
                vip: lvs.addrs.vip.clone(),
                answered,
                total,
                syns_at_director: syns_at_director(),
            }
        }
    }
}
