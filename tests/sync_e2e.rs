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
use std::process::{Command, Stdio};
use std::time::Duration;

const RULES: &str = "\
-A -t 10.77.0.100:80 -s rr
-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 1
-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 1
";
const BACKUP_IP: &str = "10.77.0.3";

fn adm(control: &std::path::Path, line: &str) -> (Option<i32>, String) {
    let o = Command::new(UVS)
        .arg("adm")
        .args(line.split_whitespace())
        .env("UVS_CONTROL", control)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code(), s)
}

/// The `-L -c -n` row of the connection from `client:cport`, if listed.
fn conn_row(control: &std::path::Path, cport: u16) -> Option<String> {
    conn_row_of(control, "10.77.0.10", cport)
}

fn conn_row_of(control: &std::path::Path, client: &str, cport: u16) -> Option<String> {
    let (_, out) = adm(control, "-L -c -n");
    out.lines()
        .find(|l| l.contains(&format!("{client}:{cport} ")))
        .map(str::to_string)
}

fn metric(bed: &Testbed, host: &str, port: u16, series: &str) -> f64 {
    let out = bed
        .exec_any(
            host,
            &[
                "curl",
                "-s",
                "--max-time",
                "3",
                &format!("http://127.0.0.1:{port}/metrics"),
            ],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn backup_learns_established_connections_and_carries_them_after_failover() {
    require_root!();
    let mut lvs = dr("syn");
    // The backup director: on the same segment, same rules, its own control socket.
    lvs.bed.add_host("bak").unwrap();
    let backup_mac = lvs.bed.plug("bak", "eth0", &format!("{BACKUP_IP}/24")).unwrap();
    let client_ns = lvs.bed.ns("client");
    // Both directors serve the VIP (VIP ownership is keepalived's job, not tested here):
    // the client is pinned to the master's MAC, as its gratuitous ARP would.
    lvs.bed
        .exec(
            "client",
            &[
                "ip",
                "neigh",
                "replace",
                "10.77.0.100",
                "lladdr",
                &lvs.director_mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        )
        .unwrap();
    lvs.start_director(RULES, &["--workers", "2"]).unwrap();
    let master_ctl = lvs.control_path();
    // The master daemon through the control socket, as keepalived/ipvsadm would.
    let (code, out) = adm(&master_ctl, "--start-daemon master --mcast-interface eth0 --syncid 7");
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = adm(&master_ctl, "--start-daemon master --mcast-interface eth0 --syncid 7");
    assert_eq!(out.trim(), "Daemon has already run");
    assert_eq!(
        adm(&master_ctl, "-L --daemon").1,
        "master sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );

    let prefix = lvs.bed.prefix.clone();
    let rules_path = std::env::temp_dir().join(format!("{prefix}-bak-rules"));
    std::fs::write(&rules_path, RULES).unwrap();
    let backup_ctl = std::env::temp_dir().join(format!("{prefix}-bak-control.sock"));
    let backup_log = std::env::temp_dir().join(format!("{prefix}-bak.log"));
    let _ = std::fs::remove_file(backup_ctl.with_extension("state"));
    // The backup records what it receives (the master's messages among it) for tshark.
    let pcap = std::env::temp_dir().join(format!("{prefix}-bak.pcapng"));
    let pc = pcap.to_string_lossy().to_string();
    let rp = rules_path.to_string_lossy().to_string();
    let bc = backup_ctl.to_string_lossy().to_string();
    let backup_pid = lvs
        .bed
        .spawn(
            "bak",
            &[
                UVS,
                "run",
                "--iface",
                "eth0",
                "--rules",
                &rp,
                "--control",
                &bc,
                "--workers",
                "2",
                "--metrics",
                "127.0.0.1:9911",
                "--start-daemon",
                "backup",
                "--syncid",
                "7",
                "--pcap",
                &pc,
                "--pcap-rx",
            ],
            Some(std::fs::File::create(&backup_log).unwrap()),
        )
        .unwrap();
    let ready = wait_until(10, || {
        std::fs::read_to_string(&backup_log).is_ok_and(|t| t.contains("director ready"))
    });
    assert!(
        ready,
        "backup: {}",
        std::fs::read_to_string(&backup_log).unwrap_or_default()
    );
    assert_eq!(
        adm(&backup_ctl, "-L --daemon").1,
        "backup sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );

    // Three established connections through the master, each with 3 client packets
    // (SYN, ACK, the first line of a request) and a request still open.
    let streams: Vec<TcpStream> = in_ns(&client_ns, || {
        (0..3)
            .map(|_| {
                let mut s = TcpStream::connect_timeout(
                    &SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 100), 80).into(),
                    Duration::from_secs(3),
                )
                .expect("connect through the master");
                s.set_nodelay(true).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n").unwrap();
                s
            })
            .collect()
    });
    let ports: Vec<u16> = streams.iter().map(|s| s.local_addr().unwrap().port()).collect();
    let master_rows: Vec<String> = ports
        .iter()
        .map(|&p| conn_row(&master_ctl, p).unwrap_or_else(|| panic!("master lists :{p}")))
        .collect();
    // The backup learns each one, in the same state with the same real server, within a
    // few seconds (a partial message goes out after 1 s).
    for (p, mrow) in ports.iter().zip(&master_rows) {
        let mut brow = None;
        let got = wait_until(10, || {
            brow = conn_row(&backup_ctl, *p);
            brow.is_some()
        });
        let brow = brow.unwrap_or_default();
        assert!(got, "the backup never listed :{p}; master has {mrow}");
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
    assert!(metric(&lvs.bed, "bak", 9911, "uvs_sync_installed_conns_total") >= 3.0);

    // Failover: the master goes, the client's frames go to the backup. The next segment
    // of each connection (no SYN) reaches the same real server, which answers.
    // (A header line first: `uvs serve` gives a request 5 s between reads.)
    let streams: Vec<TcpStream> = streams
        .into_iter()
        .map(|mut s| {
            s.write_all(b"X-Sync: 1\r\n").unwrap();
            s
        })
        .collect();
    lvs.stop_director();
    lvs.bed
        .exec(
            "client",
            &[
                "ip",
                "neigh",
                "replace",
                "10.77.0.100",
                "lladdr",
                &backup_mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        )
        .unwrap();
    let names: Vec<String> = in_ns(&client_ns, move || {
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
    });
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
        metric(
            &lvs.bed,
            "bak",
            9911,
            "uvs_sync_dropped_messages_total{reason=\"syncid\"}",
        ) >= 1.0
    });
    assert!(counted, "bad syncid not counted");

    let blog = {
        lvs.bed.stop(backup_pid);
        std::fs::read_to_string(&backup_log).unwrap_or_default()
    };
    let _ = std::fs::remove_file(&rules_path);
    let _ = std::fs::remove_file(backup_ctl.with_extension("state"));
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

const NAT_RULES: &str = "\
-A -t 192.168.77.100:80 -s rr
-a -t 192.168.77.100:80 -r 10.78.1.11:8080 -m -w 1
-a -t 192.168.77.100:80 -r 10.78.1.12:8080 -m -w 1
";

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
    let pin = |lvs: &Lvs, host: &str, ip: &str, mac: &str| {
        lvs.bed
            .exec(
                host,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    mac,
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ],
            )
            .unwrap();
    };
    pin(&lvs, "client", "192.168.77.100", &lvs.director_mac.clone());
    lvs.start_director(NAT_RULES, &["--workers", "2"]).unwrap();
    let master_ctl = lvs.control_path();
    let (code, out) = adm(&master_ctl, "--start-daemon master --mcast-interface eth0 --syncid 8");
    assert_eq!(code, Some(0), "{out}");

    let prefix = lvs.bed.prefix.clone();
    let rules_path = std::env::temp_dir().join(format!("{prefix}-bak-rules"));
    std::fs::write(&rules_path, NAT_RULES).unwrap();
    let backup_ctl = std::env::temp_dir().join(format!("{prefix}-bak-control.sock"));
    let backup_log = std::env::temp_dir().join(format!("{prefix}-bak.log"));
    let _ = std::fs::remove_file(backup_ctl.with_extension("state"));
    let rp = rules_path.to_string_lossy().to_string();
    let bc = backup_ctl.to_string_lossy().to_string();
    let backup_pid = lvs
        .bed
        .spawn(
            "bak",
            &[
                UVS,
                "run",
                "--iface",
                "eth0",
                "--iface",
                "eth1",
                "--rules",
                &rp,
                "--control",
                &bc,
                "--workers",
                "2",
                "--start-daemon",
                "backup",
                "--syncid",
                "8",
            ],
            Some(std::fs::File::create(&backup_log).unwrap()),
        )
        .unwrap();
    let ready = wait_until(10, || {
        std::fs::read_to_string(&backup_log).is_ok_and(|t| t.contains("director ready"))
    });
    assert!(
        ready,
        "backup: {}",
        std::fs::read_to_string(&backup_log).unwrap_or_default()
    );

    let streams: Vec<TcpStream> = in_ns(&client_ns, || {
        (0..3)
            .map(|_| {
                let mut s = TcpStream::connect_timeout(
                    &SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 100), 80).into(),
                    Duration::from_secs(3),
                )
                .expect("connect through the master");
                s.set_nodelay(true).unwrap();
                s.write_all(b"GET / HTTP/1.0\r\n").unwrap();
                s
            })
            .collect()
    });
    let ports: Vec<u16> = streams.iter().map(|s| s.local_addr().unwrap().port()).collect();
    let master_rows: Vec<String> = ports
        .iter()
        .map(|&p| conn_row_of(&master_ctl, "192.168.77.10", p).unwrap_or_else(|| panic!("master lists :{p}")))
        .collect();
    for (p, mrow) in ports.iter().zip(&master_rows) {
        let mut brow = None;
        let got = wait_until(10, || {
            brow = conn_row_of(&backup_ctl, "192.168.77.10", *p);
            brow.is_some()
        });
        let brow = brow.unwrap_or_default();
        assert!(got, "the backup never listed :{p}; master has {mrow}");
        let f = |r: &str| {
            r.split_whitespace()
                .skip(2)
                .take(4)
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(f(&brow), f(mrow), "{brow} vs {mrow}");
        assert!(brow.contains("ESTABLISHED"), "{brow}");
    }

    // The switch: the master goes; the client and the real servers send to the backup.
    let streams: Vec<TcpStream> = streams
        .into_iter()
        .map(|mut s| {
            s.write_all(b"X-Sync: 1\r\n").unwrap();
            s
        })
        .collect();
    lvs.stop_director();
    pin(&lvs, "client", "192.168.77.100", &backup_mac);
    for rs in ["rs1", "rs2"] {
        pin(&lvs, rs, "10.78.1.1", &backup_in_mac);
    }
    let names: Vec<String> = in_ns(&client_ns, move || {
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
    });
    let blog = {
        lvs.bed.stop(backup_pid);
        std::fs::read_to_string(&backup_log).unwrap_or_default()
    };
    let _ = std::fs::remove_file(&rules_path);
    let _ = std::fs::remove_file(backup_ctl.with_extension("state"));
    for (name, mrow) in names.iter().zip(&master_rows) {
        let rs = if mrow.contains("10.78.1.11:8080") { "rs1" } else { "rs2" };
        assert_eq!(name, rs, "after the switch, {mrow}\nbackup log:\n{blog}");
    }
    assert!(!blog.contains("panicked"), "{blog}");
}
