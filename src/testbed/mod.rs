//! Network-namespace test beds: the hosts of an LVS experiment (client, director,
//! real servers) as namespaces on one machine, joined by veth pairs to a bridge that
//! lives in a namespace of its own. Used by the end-to-end tests and by `uvs lab`.
//!
//! Safety rules: everything is created inside namespaces this bed made, with names
//! carrying a per-bed prefix; nothing touches the host's interfaces, routes or
//! sysctls. Dropping the bed (also while unwinding from a panic) kills its processes
//! and deletes its namespaces, which removes their interfaces.

#![forbid(unsafe_code)]

#[cfg(feature = "tools")]
pub mod blast;
#[cfg(feature = "tools")]
pub mod ceiling;
pub mod lvs;
pub mod serve;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static BEDS: AtomicU32 = AtomicU32::new(0);

/// Is this process root (needed for namespaces and AF_PACKET)?
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A set of namespaces with one shared L2 segment.
pub struct Testbed {
    pub prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    switch: Option<String>,
    ports: u32,
    /// Print every command as the equivalent shell line.
    pub verbose: bool,
    /// Print the tutorial steps (see [`Testbed::say`]).
    pub narrate: bool,
}

impl Testbed {
    /// A new bed; `tag` (a few letters) goes into every name with the pid and a counter.
    pub fn new(tag: &str) -> Testbed {
        let n = BEDS.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag.chars().filter(|c| c.is_ascii_alphanumeric()).take(4).collect();
        let prefix = format!("uvs{tag}{}{n}", std::process::id() % 100_000);
        Testbed {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            switch: None,
            ports: 0,
            verbose: false,
            narrate: false,
        }
    }

    /// Full name of namespace `short`.
    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Run a command on the host side (only `ip netns …` style commands are used).
    pub fn run(&self, args: &[&str]) -> Result<Output, String> {
        if self.verbose {
            println!("  $ {}", args.join(" "));
        }
        let out = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", args[0]))?;
        if !out.status.success() {
            return Err(format!(
                "`{}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out)
    }

    /// Print a tutorial step as the shell command a student would type on `host`.
    pub fn say(&self, host: &str, cmd: &str) {
        if self.narrate {
            println!("  {host:>6}$ {cmd}");
        }
    }

    /// Create namespace `short` with loopback up.
    pub fn add_host(&mut self, short: &str) -> Result<String, String> {
        let ns = self.ns(short);
        self.run(&["ip", "netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        self.run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn ensure_switch(&mut self) -> Result<String, String> {
        if let Some(s) = &self.switch {
            return Ok(s.clone());
        }
        let sw = self.add_host("sw")?;
        self.run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        // No STP/forward delay: ports forward at once.
        self.run(&[
            "ip",
            "-n",
            &sw,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        ])?;
        self.run(&["ip", "-n", &sw, "link", "set", "br0", "up"])?;
        self.switch = Some(sw.clone());
        Ok(sw)
    }

    /// Plug namespace `short` into the shared segment as interface `ifname` with
    /// address `cidr` (e.g. "10.77.0.2/24"); returns the interface's MAC.
    pub fn plug(&mut self, short: &str, ifname: &str, cidr: &str) -> Result<String, String> {
        self.plug_into("br0", short, ifname, cidr)
    }

    /// Like [`Testbed::plug`], on another segment (`bridge` is created on first use).
    pub fn plug_into(&mut self, bridge: &str, short: &str, ifname: &str, cidr: &str) -> Result<String, String> {
        let sw = self.ensure_switch()?;
        if bridge != "br0" && self.run(&["ip", "-n", &sw, "link", "show", bridge]).is_err() {
            self.run(&["ip", "-n", &sw, "link", "add", bridge, "type", "bridge"])?;
            let no_delay = ["forward_delay", "0", "stp_state", "0"];
            let mut args = vec!["ip", "-n", &sw, "link", "set", bridge, "type", "bridge"];
            args.extend_from_slice(&no_delay);
            self.run(&args)?;
            self.run(&["ip", "-n", &sw, "link", "set", bridge, "up"])?;
        }
        let ns = self.ns(short);
        self.ports += 1;
        let port = format!("p{}", self.ports);
        self.run(&[
            "ip", "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", &ns,
        ])?;
        self.run(&["ip", "-n", &sw, "link", "set", &port, "master", bridge])?;
        self.run(&["ip", "-n", &sw, "link", "set", &port, "up"])?;
        self.run(&["ip", "-n", &ns, "addr", "add", cidr, "dev", ifname])?;
        self.run(&["ip", "-n", &ns, "link", "set", ifname, "up"])?;
        self.mac(short, ifname)
    }

    /// Join two namespaces directly with a veth pair (no bridge).
    pub fn link(&mut self, a: &str, a_if: &str, a_cidr: &str, b: &str, b_if: &str, b_cidr: &str) -> Result<(), String> {
        let (na, nb) = (self.ns(a), self.ns(b));
        self.run(&[
            "ip", "-n", &na, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &nb,
        ])?;
        for (ns, i, c) in [(&na, a_if, a_cidr), (&nb, b_if, b_cidr)] {
            self.run(&["ip", "-n", ns, "addr", "add", c, "dev", i])?;
            self.run(&["ip", "-n", ns, "link", "set", i, "up"])?;
        }
        Ok(())
    }

    /// Set the MTU of `ifname` in `short` and of its switch port (the bridge follows).
    pub fn set_mtu(&self, short: &str, ifname: &str, mtu: u32) -> Result<(), String> {
        let m = mtu.to_string();
        // The peer (switch port) first, so the link is never asymmetric for long.
        let out = self.run(&["ip", "-n", &self.ns(short), "-o", "link", "show", ifname])?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if let (Some(sw), Some(at)) = (&self.switch, text.find("@if")) {
            let idx: String = text[at + 3..].chars().take_while(|c| c.is_ascii_digit()).collect();
            let list = self.run(&["ip", "-n", sw, "-o", "link", "show"])?;
            for line in String::from_utf8_lossy(&list.stdout).lines() {
                if line.starts_with(&format!("{idx}: ")) {
                    let name: String = line[idx.len() + 2..]
                        .chars()
                        .take_while(|c| *c != '@' && *c != ':')
                        .collect();
                    self.run(&["ip", "-n", sw, "link", "set", &name, "mtu", &m])?;
                }
            }
        }
        self.run(&["ip", "-n", &self.ns(short), "link", "set", ifname, "mtu", &m])?;
        Ok(())
    }

    /// MAC address of `ifname` in namespace `short`.
    pub fn mac(&self, short: &str, ifname: &str) -> Result<String, String> {
        let out = self.run(&["ip", "-n", &self.ns(short), "-o", "link", "show", ifname])?;
        let s = String::from_utf8_lossy(&out.stdout);
        s.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| format!("no MAC on {ifname}"))
    }

    /// Run `args` inside namespace `short` and wait for it.
    pub fn exec(&self, short: &str, args: &[&str]) -> Result<Output, String> {
        let ns = self.ns(short);
        let mut v = vec!["ip", "netns", "exec", &ns];
        v.extend_from_slice(args);
        self.run(&v)
    }

    /// Like [`Testbed::exec`] but returns the output whatever the exit status.
    pub fn exec_any(&self, short: &str, args: &[&str]) -> Result<Output, String> {
        let ns = self.ns(short);
        if self.verbose {
            println!("  $ ip netns exec {ns} {}", args.join(" "));
        }
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())
    }

    /// Pin `ip`'s neighbour entry on `dev` in namespace `short` to `mac` (`nud
    /// permanent`), as a gratuitous ARP or a static entry would.
    pub fn pin_neigh(&self, short: &str, ip: &str, mac: &str, dev: &str) -> Result<(), String> {
        let args = [
            "ip",
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ];
        self.exec(short, &args).map(|_| ())
    }

    /// The processes inside namespace `short` (`ip netns pids`).
    pub fn pids(&self, short: &str) -> Vec<i32> {
        let Ok(o) = Command::new("ip").args(["netns", "pids", &self.ns(short)]).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// SIGKILL every process inside namespace `short` that `pick(pid)` selects (e.g. by
    /// its `/proc/PID/comm`, for processes the bed did not spawn itself, such as a
    /// daemon's forked children); returns how many were signalled.
    pub fn kill_where(&self, short: &str, pick: impl Fn(i32) -> bool) -> usize {
        let mut n = 0;
        for pid in self.pids(short).into_iter().filter(|p| pick(*p)) {
            // A process inside a namespace this bed created.
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Set a sysctl inside namespace `short` (never on the host).
    pub fn sysctl(&self, short: &str, key: &str, value: &str) -> Result<(), String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        if self.verbose {
            println!("  $ ip netns exec {} sysctl -w {key}={value}", self.ns(short));
        }
        let ns = self.ns(short);
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "sh", "-c", &format!("echo {value} > {path}")])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "sysctl {key} in {ns}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Start a long-running process in namespace `short`; it is killed when the bed
    /// is dropped. Its stdout/stderr go to `log` if given.
    pub fn spawn(&mut self, short: &str, args: &[&str], log: Option<std::fs::File>) -> Result<u32, String> {
        let ns = self.ns(short);
        if self.verbose {
            println!("  $ ip netns exec {ns} {} &", args.join(" "));
        }
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ns]).args(args).stdin(Stdio::null());
        match log {
            Some(f) => {
                let f2 = f.try_clone().map_err(|e| e.to_string())?;
                c.stdout(f).stderr(f2);
            }
            None => {
                c.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = c.spawn().map_err(|e| format!("{}: {e}", args[0]))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Send SIGTERM to a spawned process and wait for it (bounded).
    pub fn stop(&mut self, pid: u32) -> Option<std::process::ExitStatus> {
        let i = self.children.iter().position(|c| c.id() == pid)?;
        let mut c = self.children.remove(i);
        // A child we spawned and have not reaped: the pid is still ours.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Leave the namespaces in place when the bed is dropped (`uvs lab --keep`);
    /// processes started in them keep running.
    pub fn disarm(&mut self) {
        self.namespaces.clear();
        for c in self.children.drain(..) {
            std::mem::forget(c);
        }
    }

    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Tear down now (Drop does the same).
    pub fn teardown(&mut self) {
        // SIGTERM first so a director removes its control socket (and any nftables
        // table it installed); whatever is still running after a second is killed.
        for c in &self.children {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        for c in &mut self.children {
            while std::time::Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "pids", &ns]).output().map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(p) = pid.parse::<i32>() {
                        // A process still inside our namespace.
                        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                    }
                }
            });
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        // The state file a director of this bed wrote (`uvs run` defaults it beside the
        // bed's control socket, see testbed::lvs).
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}-control.state", self.prefix)));
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.teardown();
    }
}
