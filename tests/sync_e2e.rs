//! Connection sync end to end (README "Connection sync"): a master director forwarding
//! real TCP connections (DR) and a backup director on the same LAN, each a real
//! `uvs run` in its own namespace. The master's sync daemon is started through the
//! control socket (`ipvsadm --start-daemon`), the backup's by `uvs run` flags. The
//! backup must list the master's established connection (state and real server) within
//! a bounded time, count a message of another syncid as dropped, and, once the master
//! is gone and the client's frames reach the backup, forward the next segment of that
//! connection (not a SYN) to the same real server; in NAT (a second test) the server's
//! answer also returns through the backup.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::Duration;

const BACKUP_IP: &str = "10.77.0.3";
/// The backup's /metrics, on its namespace's loopback.
const BACKUP_METRICS: &str = "127.0.0.1:9911";

/// The `-L -c -n` row of the connection from `client:cport`, if listed.
fn conn_row(control: &std::path::Path, client: &str, cport: u16) -> Option<String> {
    let (_, out) = adm_at(control, "-L -c -n");
    out.lines()
        .find(|l| l.contains(&format!("{client}:{cport} ")))
        .map(str::to_string)
}

/// A sample of the backup's /metrics (0 if absent).
fn backup_metric(bed: &Testbed, series: &str) -> f64 {
    metric_value(&scrape(bed, "bak", BACKUP_METRICS), series)
}

/// Start the master director with `rules` (2 workers) and its sync daemon with
/// `syncid` (and `more` `--start-daemon` options) through the control socket, as
/// keepalived/ipvsadm would; the client is pinned to its MAC for `vip` (both
/// directors serve the VIP: VIP ownership is keepalived's job, not tested here), as
/// its gratuitous ARP would. Its control socket.
fn start_master(lvs: &mut Lvs, vip: &str, rules: &str, syncid: &str, more: &str) -> std::path::PathBuf {
    lvs.bed.pin_neigh("client", vip, &lvs.director_mac, "eth0").unwrap();
    lvs.start_director(rules, &["--workers", "2"]).unwrap();
    let master_ctl = lvs.control_path();
    let start = format!("--start-daemon master --mcast-interface eth0 --syncid {syncid} {more}");
    let (code, out) = adm_at(&master_ctl, &start);
    assert_eq!(code, Some(0), "{out}");
    master_ctl
}

/// The backup director: `uvs run` in namespace "bak" with the same rules, its own
/// control socket and log, and a backup sync daemon (`--start-daemon backup`).
struct Backup {
    pid: u32,
    control: std::path::PathBuf,
    log: std::path::PathBuf,
    rules: std::path::PathBuf,
}

impl Backup {
    /// Start it on `ifaces` with `extra` flags; waits (bounded) for "director ready".
    fn start(lvs: &mut Lvs, rules: &str, ifaces: &[&str], extra: &[&str]) -> Backup {
        let prefix = lvs.bed.prefix.clone();
        let rules_path = std::env::temp_dir().join(format!("{prefix}-bak-rules"));
        std::fs::write(&rules_path, rules).unwrap();
        let control = std::env::temp_dir().join(format!("{prefix}-bak-control.sock"));
        let log = std::env::temp_dir().join(format!("{prefix}-bak.log"));
        let _ = std::fs::remove_file(control.with_extension("state"));
        let rp = rules_path.to_string_lossy().to_string();
        let bc = control.to_string_lossy().to_string();
        let mut args = vec![UVS, "run"];
        for i in ifaces {
            args.extend(["--iface", i]);
        }
        args.extend(["--rules", &rp, "--control", &bc, "--workers", "2"]);
        args.extend(["--start-daemon", "backup"]);
        args.extend_from_slice(extra);
        let pid = lvs
            .bed
            .spawn("bak", &args, Some(std::fs::File::create(&log).unwrap()))
            .unwrap();
        let ready = wait_file_has(&log, 10, "director ready");
        assert!(ready, "backup: {}", std::fs::read_to_string(&log).unwrap_or_default());
        Backup {
            pid,
            control,
            log,
            rules: rules_path,
        }
    }

    /// Stop it and remove its files; its log.
    fn stop(self, lvs: &mut Lvs) -> String {
        lvs.bed.stop(self.pid);
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.rules);
        let _ = std::fs::remove_file(self.control.with_extension("state"));
        log
    }
}

/// Three connections from the client to `vip`:80 through the master, each with 3
/// client packets (SYN, ACK, the first line of a request) and the request still open.
fn open_requests(client_ns: &str, vip: Ipv4Addr) -> Vec<TcpStream> {
    in_ns(client_ns, move || {
        (0..3)
            .map(|_| {
                let mut s = TcpStream::connect_timeout(&SocketAddrV4::new(vip, 80).into(), Duration::from_secs(3))
                    .expect("connect through the master");
                s.set_nodelay(true).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n").unwrap();
                s
            })
            .collect()
    })
}

/// The client's ports and the master's `-L -c -n` row of each connection.
fn master_rows(master: &std::path::Path, client: &str, streams: &[TcpStream]) -> (Vec<u16>, Vec<String>) {
    let ports: Vec<u16> = streams.iter().map(|s| s.local_addr().unwrap().port()).collect();
    let rows = ports
        .iter()
        .map(|&p| conn_row(master, client, p).unwrap_or_else(|| panic!("master lists :{p}")))
        .collect();
    (ports, rows)
}

/// The backup's row of the connection from `client:port`, waited for (bounded).
fn backup_row(backup: &std::path::Path, client: &str, port: u16, mrow: &str) -> String {
    let mut brow = None;
    let got = wait_until(10, || {
        brow = conn_row(backup, client, port);
        brow.is_some()
    });
    assert!(got, "the backup never listed :{port}; master has {mrow}");
    brow.unwrap_or_default()
}

/// Each of the master's rows (`ports`, `master_rows`) as the backup lists it, waited
/// for: the same protocol, client, virtual and real address. Returns the backup's rows.
fn backup_has_master_rows(
    backup: &std::path::Path,
    client: &str,
    ports: &[u16],
    master_rows: &[String],
) -> Vec<String> {
    let addrs = |r: &str| {
        r.split_whitespace()
            .skip(2)
            .take(4)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    ports
        .iter()
        .zip(master_rows)
        .map(|(p, mrow)| {
            let brow = backup_row(backup, client, *p, mrow);
            assert_eq!(addrs(&brow), addrs(mrow), "{brow} vs {mrow}");
            brow
        })
        .collect()
}

/// A header line on each open request (`uvs serve` gives a request 5 s between reads).
fn send_header(streams: &mut [TcpStream]) {
    for s in streams {
        s.write_all(b"X-Sync: 1\r\n").unwrap();
    }
}

/// End each request; the answering server's name (the body's last line) of each.
fn answers(client_ns: &str, streams: Vec<TcpStream>) -> Vec<String> {
    in_ns(client_ns, move || {
        streams
            .into_iter()
            .map(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.write_all(b"\r\n").unwrap();
                let mut body = String::new();
                let _ = s.read_to_string(&mut body);
                body.lines().last().unwrap_or("").to_string()
            })
            .collect()
    })
}

#[test]
fn backup_learns_established_connections_and_carries_them_after_failover() {
    require_root!();
    let mut lvs = dr("syn");
    // The backup director: on the same segment, same rules, its own control socket.
    lvs.bed.add_host("bak").unwrap();
    let backup_mac = lvs.bed.plug("bak", "eth0", &format!("{BACKUP_IP}/24")).unwrap();
    let client_ns = lvs.bed.ns("client");
    let master_ctl = start_master(&mut lvs, "10.77.0.100", DR_RULES, "7", "");
    let (_, out) = adm_at(&master_ctl, "--start-daemon master --mcast-interface eth0 --syncid 7");
    assert_eq!(out.trim(), "Daemon has already run");
    assert_eq!(
        adm_at(&master_ctl, "-L --daemon").1,
        "master sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );

    // The backup records what it receives (the master's messages among it) for tshark.
    let pcap = std::env::temp_dir().join(format!("{}-bak.pcapng", lvs.bed.prefix));
    let pc = pcap.to_string_lossy().to_string();
    let extra = ["--metrics", BACKUP_METRICS, "--syncid", "7", "--pcap", &pc, "--pcap-rx"];
    let backup = Backup::start(&mut lvs, DR_RULES, &["eth0"], &extra);
    assert_eq!(
        adm_at(&backup.control, "-L --daemon").1,
        "backup sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );

    // Three established connections through the master, each with a request still open.
    let mut streams = open_requests(&client_ns, Ipv4Addr::new(10, 77, 0, 100));
    let (ports, master_rows) = master_rows(&master_ctl, "10.77.0.10", &streams);
    // The backup learns each one, in the same state with the same real server, within a
    // few seconds (a partial message goes out after 1 s).
    for (p, mrow) in ports.iter().zip(&master_rows) {
        let brow = backup_row(&backup.control, "10.77.0.10", *p, mrow);
        let fields = |r: &str| {
            let f: Vec<String> = r.split_whitespace().map(str::to_string).collect();
            (f[0].clone(), f[2].clone(), f[3].clone(), f[4].clone(), f[5].clone())
        };
        let (mp, ms, mc, mv, md) = fields(mrow);
        let (bp, bs, bc, bv, bd) = fields(&brow);
        assert_eq!(
            (bp, bs.as_str(), bc, bv, bd),
            (mp, "ESTABLISHED", mc, mv, md),
            "{brow} vs {mrow}"
        );
        assert_eq!(ms, "ESTABLISHED");
    }
    assert!(backup_metric(&lvs.bed, "uvs_sync_installed_conns_total") >= 3.0);

    // Failover: the master goes, the client's frames go to the backup. The next segment
    // of each connection (no SYN) reaches the same real server, which answers.
    send_header(&mut streams);
    lvs.stop_director();
    lvs.bed.pin_neigh("client", "10.77.0.100", &backup_mac, "eth0").unwrap();
    let names = answers(&client_ns, streams);
    for (name, mrow) in names.iter().zip(&master_rows) {
        let rs = if mrow.contains("10.77.0.11:80") { "rs1" } else { "rs2" };
        assert_eq!(name, rs, "after failover, {mrow}");
    }
    // A message of another syncid is counted and dropped.
    in_ns(&client_ns, || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.set_multicast_if_v4(&Ipv4Addr::new(10, 77, 0, 10)).unwrap();
        let to = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 81), 8848);
        // An empty version-1 message: reserved 0, syncid 9, size 8, 0 entries, version 1.
        s.send_to(&[0, 9, 0, 8, 0, 1, 0, 0], &to.into()).unwrap();
    });
    let counted = wait_until(5, || {
        backup_metric(&lvs.bed, "uvs_sync_dropped_messages_total{reason=\"syncid\"}") >= 1.0
    });
    assert!(counted, "bad syncid not counted");

    let blog = backup.stop(&mut lvs);
    assert!(!blog.contains("panicked"), "{blog}");
    tshark_sees(&pcap, &ports, &master_rows);
    let _ = std::fs::remove_file(&pcap);
}

/// Wireshark's `ipvs` dissector reads the daemon's real messages: syncid 7, version 1,
/// each connection from its client port with state ESTABLISHED (1), the DR flag bits
/// and the real server the master chose. Skips (loudly) without tshark outside CI.
fn tshark_sees(pcap: &std::path::Path, ports: &[u16], master_rows: &[String]) {
    if Command::new("tshark").arg("-v").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "tshark missing in CI");
        eprintln!("SKIP the tshark check: tshark not installed (apt-get install tshark)");
        return;
    }
    let out = Command::new("tshark")
        .args(["-n", "-d", "udp.port==8848,ipvs", "-Y", "ipvs.syncid == 7", "-r"])
        .arg(pcap)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "ipvs.syncid",
            "-e",
            "ipvs.version",
        ])
        .args([
            "-e",
            "ipvs.cport",
            "-e",
            "ipvs.state",
            "-e",
            "ipvs.daddr",
            "-e",
            "ipvs.flags.v1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut seen = std::collections::HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f[1], "1", "version 1: {line}");
        let cols: Vec<Vec<&str>> = f[2..].iter().map(|c| c.split(',').collect()).collect();
        for (i, port) in cols[0].iter().enumerate() {
            let (state, daddr, flags) = (cols[1][i], cols[2][i], cols[3][i]);
            seen.insert(
                port.to_string(),
                (state.to_string(), daddr.to_string(), flags.to_string()),
            );
        }
    }
    for (p, row) in ports.iter().zip(master_rows) {
        let (state, daddr, flags) = seen.get(&p.to_string()).unwrap_or_else(|| panic!(":{p} not in {text}"));
        assert_eq!(state, "0x0001", "ESTABLISHED");
        assert!(row.contains(&format!("{daddr}:80")), "{daddr} vs {row}");
        // IP_VS_CONN_F_DROUTE | IP_VS_CONN_F_NOOUTPUT (0x83); INACTIVE not set.
        assert_eq!(flags, "0x00000083");
    }
}

/// NAT: the backup (on both segments) learns the master's NAT connections; after the
/// switch (the client's frames and the real servers' replies go to the backup, as a
/// VRRP sync group moving the VIP and the gateway would make them) the next segment of
/// each connection reaches its real server and the answer comes back to the client
/// through the backup.
#[test]
fn nat_backup_learns_connections_and_carries_both_directions_after_failover() {
    require_root!();
    let mut lvs = Lvs::nat("synn", UVS, false, false, false).expect("NAT bed");
    lvs.bed.add_host("bak").unwrap();
    let backup_mac = lvs.bed.plug("bak", "eth0", "192.168.77.3/24").unwrap();
    let backup_in_mac = lvs.bed.plug_into("br1", "bak", "eth1", "10.78.1.3/24").unwrap();
    let client_ns = lvs.bed.ns("client");
    let master_ctl = start_master(&mut lvs, "192.168.77.100", NAT_RULES, "8", "");
    let backup = Backup::start(&mut lvs, NAT_RULES, &["eth0", "eth1"], &["--syncid", "8"]);

    let mut streams = open_requests(&client_ns, Ipv4Addr::new(192, 168, 77, 100));
    let (ports, master_rows) = master_rows(&master_ctl, "192.168.77.10", &streams);
    for brow in backup_has_master_rows(&backup.control, "192.168.77.10", &ports, &master_rows) {
        assert!(brow.contains("ESTABLISHED"), "{brow}");
    }

    // The switch: the master goes; the client and the real servers send to the backup.
    send_header(&mut streams);
    lvs.stop_director();
    lvs.bed
        .pin_neigh("client", "192.168.77.100", &backup_mac, "eth0")
        .unwrap();
    for rs in ["rs1", "rs2"] {
        lvs.bed.pin_neigh(rs, "10.78.1.1", &backup_in_mac, "eth0").unwrap();
    }
    let names = answers(&client_ns, streams);
    let blog = backup.stop(&mut lvs);
    for (name, mrow) in names.iter().zip(&master_rows) {
        let rs = if mrow.contains("10.78.1.11:8080") { "rs1" } else { "rs2" };
        assert_eq!(name, rs, "after the switch, {mrow}\nbackup log:\n{blog}");
    }
    assert!(!blog.contains("panicked"), "{blog}");
}

/// Whether `short`'s eth0 has an IPv6 link-local address past duplicate address
/// detection (the master's source for a link-scope group).
fn link_local_ready(bed: &Testbed, short: &str) -> bool {
    let out = bed.exec_any(
        short,
        &["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"],
    );
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    text.contains("fe80::") && !text.contains("tentative")
}

/// A persistent DR service (`-p 300`) synced over an IPv6 group (`--mcast-group
/// ff02::81`, as kernels since 4.3 accept): both daemons list the group with the IPv6
/// message size (1500 - 48), and the backup learns the master's established
/// connections and their persistence template over it.
#[test]
fn an_ipv6_group_carries_the_masters_connections_to_the_backup() {
    require_root!();
    let mut lvs = dr("sy6");
    lvs.bed.add_host("bak").unwrap();
    lvs.bed.plug("bak", "eth0", &format!("{BACKUP_IP}/24")).unwrap();
    let client_ns = lvs.bed.ns("client");
    let ready = wait_until(10, || {
        link_local_ready(&lvs.bed, "dir") && link_local_ready(&lvs.bed, "bak")
    });
    assert!(ready, "no usable link-local address");
    let rules = DR_RULES.replace("-s rr\n", "-s rr -p 300\n");
    let master_ctl = start_master(&mut lvs, "10.77.0.100", &rules, "9", "--mcast-group ff02::81");
    assert_eq!(
        adm_at(&master_ctl, "-L --daemon").1,
        "master sync daemon (mcast=eth0, syncid=9, maxlen=1452, group=ff02::81, port=8848, ttl=1)\n"
    );
    let extra = ["--syncid", "9", "--mcast-group", "ff02::81"];
    let backup = Backup::start(&mut lvs, &rules, &["eth0"], &extra);
    assert_eq!(
        adm_at(&backup.control, "-L --daemon").1,
        "backup sync daemon (mcast=eth0, syncid=9, maxlen=1452, group=ff02::81, port=8848, ttl=1)\n"
    );
    let streams = open_requests(&client_ns, Ipv4Addr::new(10, 77, 0, 100));
    let (ports, master_rows) = master_rows(&master_ctl, "10.77.0.10", &streams);
    backup_has_master_rows(&backup.control, "10.77.0.10", &ports, &master_rows);
    // The template (client 10.77.0.10, port 0): on the backup with the master's server.
    let mtpl = conn_row(&master_ctl, "10.77.0.10", 0).expect("the master lists its template");
    let btpl = backup_row(&backup.control, "10.77.0.10", 0, &mtpl);
    let server = |r: &str| r.split_whitespace().last().map(str::to_string);
    assert_eq!(server(&btpl), server(&mtpl), "{btpl} vs {mtpl}");
    drop(streams);
    let blog = backup.stop(&mut lvs);
    assert!(!blog.contains("panicked"), "{blog}");
}
