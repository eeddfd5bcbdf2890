//! `uvs lab`: an LVS experiment on one machine. Builds the tutorials' topology in
//! network namespaces, configures it as the tutorials do (printing every step as the
//! shell command it stands for), starts a uvs director, sends requests from the
//! client and shows which real server answered each one. Tears everything down
//! afterwards, also on error.
//!
//! This first version runs DR (seed 001); NAT and TUN follow with those modes.

use crate::testbed::lvs::{Addrs, Lvs};

/// Options of `uvs lab`.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub mode: String,
    pub scheduler: String,
    pub requests: usize,
    pub keep: bool,
}

pub fn run(opts: &LabOptions) -> Result<(), String> {
    if !crate::testbed::is_root() {
        return Err("uvs lab needs root (network namespaces, AF_PACKET): run it with sudo".into());
    }
    match opts.mode.as_str() {
        "dr" | "all" => {}
        other => {
            return Err(format!("mode '{other}' is not available yet (this build has: dr)"));
        }
    }
    let exe = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .to_string_lossy()
        .to_string();
    let a = Addrs::default();
    println!("== DR (direct routing, -g): the director rewrites only the destination MAC");
    println!("-- building the topology: client, director, rs1, rs2 on one bridge");
    let mut lvs = Lvs::dr("lab", &exe, a.clone(), false, true)?;
    let rules = format!(
        "-A -t {vip}:80 -s {s}\n-a -t {vip}:80 -r {r1}:80 -g -w 1\n-a -t {vip}:80 -r {r2}:80 -g -w 1\n",
        vip = a.vip,
        s = opts.scheduler,
        r1 = a.rs[0],
        r2 = a.rs[1]
    );
    println!("-- director rules (what you would type):");
    for l in rules.lines() {
        println!("  $ ipvsadm {l}");
    }
    lvs.start_director(&rules, &[])?;
    println!(
        "-- {} HTTP requests from the client ({}) to http://{}/",
        opts.requests, a.client, a.vip
    );
    for (i, name) in lvs.http_names(opts.requests).iter().enumerate() {
        println!("  request {:>2} -> {name}", i + 1);
    }
    if opts.keep {
        println!(
            "-- kept. Enter a host with: ip netns exec {} bash",
            lvs.bed.ns("client")
        );
        println!(
            "   remove everything with: for n in $(ip netns list | grep -o '^{}-[a-z0-9]*'); do ip netns del $n; done",
            lvs.bed.prefix
        );
        lvs.bed.disarm();
    } else {
        println!("-- tearing down");
    }
    Ok(())
}
