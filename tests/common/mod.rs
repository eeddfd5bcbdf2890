//! Shared helpers for the namespace end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

pub use uvs::testbed::Testbed;

pub const UVS: &str = env!("CARGO_BIN_EXE_uvs");

/// Skip (loudly) unless root: namespaces and AF_PACKET need it.
#[macro_export]
macro_rules! require_root {
    () => {
        if !uvs::testbed::is_root() {
            eprintln!("\n*** SKIPPED {}: needs root for network namespaces and AF_PACKET (run: sudo -E cargo test) ***\n", module_path!());
            return;
        }
    };
}

/// The classic LVS segment: client, director and two real servers on one bridge.
pub struct Lvs {
    pub bed: Testbed,
    pub vip: &'static str,
    pub client_ip: &'static str,
    pub dip: &'static str,
    pub rs: [&'static str; 2],
    pub rs_mac: [String; 2],
    pub director_mac: String,
    pub log: std::path::PathBuf,
    pub director_pid: Option<u32>,
}

impl Lvs {
    /// Build the DR topology of the tutorial (seed 001): VIP on the real servers' lo/32,
    /// arp_ignore=1, arp_announce=2; each real server runs `uvs serve`.
    pub fn dr(tag: &str) -> Lvs {
        let mut bed = Testbed::new(tag);
        let (vip, client_ip, dip) = ("10.77.0.100", "10.77.0.10", "10.77.0.2");
        let rs = ["10.77.0.11", "10.77.0.12"];
        for h in ["client", "dir", "rs1", "rs2"] {
            bed.add_host(h).unwrap();
        }
        bed.plug("client", "eth0", &format!("{client_ip}/24"))
            .unwrap();
        let director_mac = bed.plug("dir", "eth0", &format!("{dip}/24")).unwrap();
        let mut rs_mac = [String::new(), String::new()];
        for (i, ip) in rs.iter().enumerate() {
            let h = format!("rs{}", i + 1);
            // arp_ignore/arp_announce first, so the VIP is never announced.
            for (k, v) in [
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
            ] {
                bed.sysctl(&h, k, v).unwrap();
            }
            rs_mac[i] = bed.plug(&h, "eth0", &format!("{ip}/24")).unwrap();
            bed.exec(
                &h,
                &["ip", "addr", "add", &format!("{vip}/32"), "dev", "lo"],
            )
            .unwrap();
            bed.spawn(
                &h,
                &[
                    UVS,
                    "serve",
                    "--name",
                    &h,
                    "--tcp",
                    "0.0.0.0:80",
                    "--udp",
                    "0.0.0.0:53",
                ],
                None,
            )
            .unwrap();
        }
        let log = std::env::temp_dir().join(format!("{}-director.log", bed.prefix));
        Lvs {
            bed,
            vip,
            client_ip,
            dip,
            rs,
            rs_mac,
            director_mac,
            log,
            director_pid: None,
        }
    }

    /// Write `rules` to a file and start `uvs run` in the director namespace; waits
    /// for its "ready" line (bounded).
    pub fn start_director(&mut self, rules: &str, extra: &[&str]) {
        let path = std::env::temp_dir().join(format!("{}-rules", self.bed.prefix));
        std::fs::write(&path, rules).unwrap();
        let f = std::fs::File::create(&self.log).unwrap();
        let p = path.to_str().unwrap().to_string();
        let mut args = vec![
            UVS,
            "run",
            "--iface",
            "eth0",
            "--rules",
            &p,
            "--workers",
            "2",
        ];
        args.extend_from_slice(extra);
        self.director_pid = Some(self.bed.spawn("dir", &args, Some(f)).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains("director ready") {
                return;
            }
            let failed = text
                .lines()
                .any(|l| l.starts_with("uvs: ") && !l.starts_with("uvs: warning"));
            if failed || Instant::now() > deadline {
                panic!("director did not become ready:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn director_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One HTTP GET from the client with curl; returns the body (trimmed).
    pub fn curl(&self, url: &str) -> Result<String, String> {
        let out = self
            .bed
            .exec_any("client", &["curl", "-s", "--max-time", "3", url])
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "curl {url} exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// N requests, each on a new connection; returns the answering server names.
    pub fn http_names(&self, n: usize) -> Vec<String> {
        let url = format!("http://{}/", self.vip);
        (0..n)
            .map(|_| {
                self.curl(&url)
                    .unwrap_or_else(|e| format!("ERR {e}\n{}", self.director_log()))
            })
            .collect()
    }
}

/// Start `tcpdump` in namespace `ns` writing text lines to a file; returns (pid, path).
pub fn tcpdump(
    bed: &mut Testbed,
    ns: &str,
    iface: &str,
    filter: &str,
    count: usize,
) -> (u32, std::path::PathBuf) {
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
    // Wait until tcpdump is listening (it prints "listening on" to stderr).
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
pub fn wait_for_lines(
    path: &std::path::Path,
    secs: u64,
    pred: impl Fn(&[String]) -> bool,
) -> Vec<String> {
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

/// Send one UDP datagram from inside namespace `ns` and wait (bounded) for a reply.
pub fn udp_exchange(bed: &Testbed, ns: &str, to: &str, msg: &str) -> Result<String, String> {
    let out = bed
        .exec_any(ns, &[UVS, "probe", "udp", to, msg])
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
