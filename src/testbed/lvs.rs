//! The tutorials' LVS segment as a test bed: a client, a director and two real
//! servers on one bridge, each real server running `uvs serve` (HTTP that answers
//! its own name, and a UDP echo). Shared by the end-to-end tests and `uvs lab`.

use std::time::{Duration, Instant};

use super::Testbed;

/// Addresses of the default topology (private, and only inside the bed's namespaces).
#[derive(Debug, Clone)]
pub struct Addrs {
    pub vip: String,
    pub client: String,
    pub dip: String,
    pub rs: [String; 2],
    pub prefix_len: u8,
}

impl Default for Addrs {
    fn default() -> Self {
        Addrs {
            vip: "10.77.0.100".into(),
            client: "10.77.0.10".into(),
            dip: "10.77.0.2".into(),
            rs: ["10.77.0.11".into(), "10.77.0.12".into()],
            prefix_len: 24,
        }
    }
}

/// The LVS forwarding mode a bed is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Dr,
    /// NAT with an external and an internal interface on the director.
    NatTwoArm,
    /// NAT with both subnets on one interface.
    NatOneArm,
    Tun,
}

pub struct Lvs {
    pub bed: Testbed,
    pub mode: Mode,
    pub addrs: Addrs,
    /// Interfaces the director serves.
    pub director_ifaces: Vec<String>,
    pub rs_mac: [String; 2],
    pub client_mac: String,
    pub director_mac: String,
    /// The `uvs` executable to run in the namespaces.
    pub exe: String,
    pub log: std::path::PathBuf,
    pub director_pid: Option<u32>,
}

impl Lvs {
    /// Build the DR topology of the tutorial (seed 001): the VIP on the real servers'
    /// lo/32 with arp_ignore=1 and arp_announce=2. `skip_arp_ignore` leaves those two
    /// sysctls out (to show what breaks).
    pub fn dr(tag: &str, exe: &str, addrs: Addrs, skip_arp_ignore: bool, narrate: bool) -> Result<Lvs, String> {
        let mut bed = Testbed::new(tag);
        bed.narrate = narrate;
        for h in ["client", "dir", "rs1", "rs2"] {
            bed.add_host(h)?;
        }
        let pl = addrs.prefix_len;
        let client_mac = bed.plug("client", "eth0", &format!("{}/{pl}", addrs.client))?;
        let director_mac = bed.plug("dir", "eth0", &format!("{}/{pl}", addrs.dip))?;
        let mut rs_mac = [String::new(), String::new()];
        for (i, ip) in addrs.rs.iter().enumerate() {
            let h = format!("rs{}", i + 1);
            if !skip_arp_ignore {
                // Before the VIP is added, so that it is never announced.
                bed.say(&h, "sysctl -w net.ipv4.conf.all.arp_ignore=1");
                bed.sysctl(&h, "net.ipv4.conf.all.arp_ignore", "1")?;
                bed.say(&h, "sysctl -w net.ipv4.conf.all.arp_announce=2");
                bed.sysctl(&h, "net.ipv4.conf.all.arp_announce", "2")?;
            } else {
                bed.say(
                    &h,
                    "# SKIPPED: sysctl -w net.ipv4.conf.all.arp_ignore=1 / arp_announce=2",
                );
            }
            rs_mac[i] = bed.plug(&h, "eth0", &format!("{ip}/{pl}"))?;
            bed.say(&h, &format!("ip addr add {}/32 dev lo", addrs.vip));
            bed.exec(&h, &["ip", "addr", "add", &format!("{}/32", addrs.vip), "dev", "lo"])?;
            bed.spawn(
                &h,
                &[exe, "serve", "--name", &h, "--tcp", "0.0.0.0:80", "--udp", "0.0.0.0:53"],
                None,
            )?;
        }
        let log = std::env::temp_dir().join(format!("{}-director.log", bed.prefix));
        // A new bed starts from no table: a state file left by an earlier bed of the
        // same name (same test process) would be restored by its director.
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}-control.state", bed.prefix)));
        Ok(Lvs {
            bed,
            mode: Mode::Dr,
            addrs,
            director_ifaces: vec!["eth0".into()],
            rs_mac,
            client_mac,
            director_mac,
            exe: exe.to_string(),
            log,
            director_pid: None,
        })
    }

    /// Addresses of the NAT tutorial (seed 002): clients outside, real servers on a
    /// private subnet behind the director, which is their default gateway. Returns
    /// the addresses and the director's internal (gateway) address.
    pub fn nat_addrs() -> (Addrs, String) {
        let a = Addrs {
            vip: "192.168.77.100".into(),
            client: "192.168.77.10".into(),
            dip: "192.168.77.2".into(),
            rs: ["10.78.1.11".into(), "10.78.1.12".into()],
            prefix_len: 24,
        };
        (a, "10.78.1.1".into())
    }

    /// The NAT topology: real servers' default gateway is the director's internal
    /// address; `one_arm` puts both subnets on the director's single interface.
    /// `skip_gateway` leaves the real servers' default route out (to show what breaks).
    /// Real servers serve HTTP on port 8080 (the rules map VIP:80 to it) and UDP on 53.
    pub fn nat(tag: &str, exe: &str, one_arm: bool, skip_gateway: bool, narrate: bool) -> Result<Lvs, String> {
        let (addrs, gw) = Lvs::nat_addrs();
        let mut bed = Testbed::new(tag);
        bed.narrate = narrate;
        for h in ["client", "dir", "rs1", "rs2"] {
            bed.add_host(h)?;
        }
        let inside = if one_arm { "br0" } else { "br1" };
        let client_mac = bed.plug("client", "eth0", &format!("{}/24", addrs.client))?;
        let director_mac = bed.plug("dir", "eth0", &format!("{}/24", addrs.dip))?;
        let director_ifaces = if one_arm {
            bed.exec("dir", &["ip", "addr", "add", &format!("{gw}/24"), "dev", "eth0"])?;
            vec!["eth0".to_string()]
        } else {
            bed.plug_into(inside, "dir", "eth1", &format!("{gw}/24"))?;
            vec!["eth0".to_string(), "eth1".to_string()]
        };
        let mut rs_mac = [String::new(), String::new()];
        for (i, ip) in addrs.rs.iter().enumerate() {
            let h = format!("rs{}", i + 1);
            rs_mac[i] = bed.plug_into(inside, &h, "eth0", &format!("{ip}/24"))?;
            if !skip_gateway {
                bed.say(&h, &format!("ip route add default via {gw}"));
                bed.exec(&h, &["ip", "route", "add", "default", "via", &gw])?;
            } else {
                // The mistake: the real server reaches the clients' network directly
                // (its usual router), not through the director.
                bed.say(&h, &format!("# SKIPPED: ip route add default via {gw}"));
                bed.say(
                    &h,
                    "ip route add 192.168.77.0/24 dev eth0   # replies go straight to the client",
                );
                bed.exec(&h, &["ip", "route", "add", "192.168.77.0/24", "dev", "eth0"])?;
            }
            bed.spawn(
                &h,
                &[
                    exe,
                    "serve",
                    "--name",
                    &h,
                    "--tcp",
                    "0.0.0.0:8080",
                    "--udp",
                    "0.0.0.0:53",
                ],
                None,
            )?;
        }
        let log = std::env::temp_dir().join(format!("{}-director.log", bed.prefix));
        // A new bed starts from no table: a state file left by an earlier bed of the
        // same name (same test process) would be restored by its director.
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}-control.state", bed.prefix)));
        let mode = if one_arm { Mode::NatOneArm } else { Mode::NatTwoArm };
        Ok(Lvs {
            bed,
            mode,
            addrs,
            director_ifaces,
            rs_mac,
            client_mac,
            director_mac,
            exe: exe.to_string(),
            log,
            director_pid: None,
        })
    }

    /// The TUN topology (seed 000): the director tunnels to the real servers over a
    /// link of its own with MTU `rs_mtu`; the real servers answer the client directly
    /// over the client's segment. Each real server runs `uvs tunnel` (no ipip module
    /// needed) with the VIP on tunl0, rp_filter off, arp_ignore=1/arp_announce=2.
    /// `keep_rp_filter` leaves rp_filter at 1 (to show what breaks).
    pub fn tun(tag: &str, exe: &str, rs_mtu: u32, keep_rp_filter: bool, narrate: bool) -> Result<Lvs, String> {
        Lvs::tun_with(tag, exe, rs_mtu, keep_rp_filter, narrate, &[])
    }

    /// [`Lvs::tun`] with extra `uvs tunnel` arguments on the real servers, e.g.
    /// `["--tun-type", "gue", "--tun-port", "6080"]`.
    pub fn tun_with(
        tag: &str,
        exe: &str,
        rs_mtu: u32,
        keep_rp_filter: bool,
        narrate: bool,
        tunnel_args: &[&str],
    ) -> Result<Lvs, String> {
        let addrs = Addrs {
            vip: "10.77.0.100".into(),
            client: "10.77.0.10".into(),
            dip: "10.77.0.2".into(),
            rs: ["10.79.0.11".into(), "10.79.0.12".into()],
            prefix_len: 24,
        };
        let mut bed = Testbed::new(tag);
        bed.narrate = narrate;
        for h in ["client", "dir", "rs1", "rs2"] {
            bed.add_host(h)?;
        }
        let client_mac = bed.plug("client", "eth0", "10.77.0.10/24")?;
        let director_mac = bed.plug("dir", "eth0", "10.77.0.2/24")?;
        bed.plug_into("br1", "dir", "eth1", "10.79.0.2/24")?;
        bed.set_mtu("dir", "eth1", rs_mtu)?;
        let mut rs_mac = [String::new(), String::new()];
        for (i, ip) in addrs.rs.iter().enumerate() {
            let h = format!("rs{}", i + 1);
            bed.sysctl(&h, "net.ipv4.conf.all.arp_ignore", "1")?;
            bed.sysctl(&h, "net.ipv4.conf.all.arp_announce", "2")?;
            let rp = if keep_rp_filter { "1" } else { "0" };
            if keep_rp_filter {
                bed.say(&h, "# SKIPPED: sysctl -w net.ipv4.conf.all.rp_filter=0 (left at 1)");
            } else {
                bed.say(&h, "sysctl -w net.ipv4.conf.all.rp_filter=0");
            }
            bed.say(&h, "sysctl -w net.ipv4.conf.all.arp_ignore=1");
            bed.say(&h, "sysctl -w net.ipv4.conf.all.arp_announce=2");
            bed.sysctl(&h, "net.ipv4.conf.all.rp_filter", rp)?;
            bed.sysctl(&h, "net.ipv4.conf.default.rp_filter", rp)?;
            rs_mac[i] = bed.plug_into("br1", &h, "eth0", &format!("{ip}/24"))?;
            bed.set_mtu(&h, "eth0", rs_mtu)?;
            // The reply path to the client's segment.
            bed.plug(&h, "eth1", &format!("10.77.0.{}/24", 21 + i))?;
            let log = std::fs::File::create(std::env::temp_dir().join(format!("{}-{h}-tunnel.log", bed.prefix))).ok();
            let mut args = vec![exe, "tunnel", "--iface", "eth0", "--vip", "10.77.0.100"];
            args.extend_from_slice(tunnel_args);
            bed.say(&h, &format!("uvs {} &  # VIP on tunl0", args[1..].join(" ")));
            bed.spawn(&h, &args, log)?;
            bed.spawn(
                &h,
                &[exe, "serve", "--name", &h, "--tcp", "0.0.0.0:80", "--udp", "0.0.0.0:53"],
                None,
            )?;
        }
        // Wait (bounded) until both tunnels are up.
        let deadline = Instant::now() + Duration::from_secs(5);
        for h in ["rs1", "rs2"] {
            while bed
                .exec_any(h, &["ip", "link", "show", "tunl0"])
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                if Instant::now() > deadline {
                    return Err(format!("uvs tunnel did not create tunl0 on {h}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let log = std::env::temp_dir().join(format!("{}-director.log", bed.prefix));
        // A new bed starts from no table: a state file left by an earlier bed of the
        // same name (same test process) would be restored by its director.
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}-control.state", bed.prefix)));
        Ok(Lvs {
            bed,
            mode: Mode::Tun,
            addrs,
            director_ifaces: vec!["eth0".into(), "eth1".into()],
            rs_mac,
            client_mac,
            director_mac,
            exe: exe.to_string(),
            log,
            director_pid: None,
        })
    }

    /// Write `rules` to a file and start `uvs run` in the director namespace; waits
    /// (bounded) for its "ready" line.
    pub fn start_director(&mut self, rules: &str, extra: &[&str]) -> Result<(), String> {
        let path = std::env::temp_dir().join(format!("{}-rules", self.bed.prefix));
        std::fs::write(&path, rules).map_err(|e| e.to_string())?;
        let f = std::fs::File::create(&self.log).map_err(|e| e.to_string())?;
        let p = path.to_string_lossy().to_string();
        let exe = self.exe.clone();
        let mut args = vec![exe.as_str(), "run", "--rules", &p];
        let ifaces = self.director_ifaces.clone();
        for i in &ifaces {
            args.push("--iface");
            args.push(i);
        }
        // Each bed's director gets its own control socket (beds share the filesystem).
        let control = self.control_path().to_string_lossy().to_string();
        if !extra.contains(&"--control") {
            args.extend_from_slice(&["--control", &control]);
        }
        args.extend_from_slice(extra);
        self.director_pid = Some(self.bed.spawn("dir", &args, Some(f))?);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.director_log();
            if text.contains("director ready") {
                return Ok(());
            }
            let failed = text
                .lines()
                .any(|l| l.starts_with("uvs: ") && !l.starts_with("uvs: warning"));
            if failed || Instant::now() > deadline {
                return Err(format!("director did not become ready:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The director's control socket (`UVS_CONTROL` for `uvs adm` / `ipvsadm`).
    pub fn control_path(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}-control.sock", self.bed.prefix))
    }

    /// Stop the director (SIGTERM) and return its log.
    pub fn stop_director(&mut self) -> String {
        if let Some(pid) = self.director_pid.take() {
            self.bed.stop(pid);
        }
        self.director_log()
    }

    pub fn director_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP GET from the client with curl; returns the body (trimmed).
    pub fn curl(&self, url: &str) -> Result<String, String> {
        let out = self.bed.exec_any("client", &["curl", "-s", "--max-time", "3", url])?;
        if !out.status.success() {
            return Err(format!("curl {url}: exit {:?}", out.status.code()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `n` requests to the VIP, each on a new connection; the answering names.
    pub fn http_names(&self, n: usize) -> Vec<String> {
        let url = format!("http://{}/", self.addrs.vip);
        (0..n)
            .map(|_| self.curl(&url).unwrap_or_else(|e| format!("ERR {e}")))
            .collect()
    }

    /// One UDP datagram from the client to `to`, with a bounded wait for the reply.
    pub fn udp(&self, to: &str, msg: &str) -> Result<String, String> {
        let out = self.bed.exec_any("client", &[&self.exe, "probe", "udp", to, msg])?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}
