//! Transmit path comparison, end to end in namespaces: the same DR director
//! (`--workers 1`) with `--tx ring` (PACKET_TX_RING) and `--tx sendmmsg`, fed by
//! `uvs blast` at full speed, counting what reaches the real servers. Needs root.
//!
//! Run: sudo cargo bench --bench txpath
//! Offered load is unpaced, so this measures the delivered rate under full load; the
//! paced loss-free-rate search is the pps harness's job.

use std::time::Duration;

use uvs::testbed::Testbed;

const UVS: &str = env!("CARGO_BIN_EXE_uvs");

fn rx_packets(bed: &Testbed, ns: &str) -> u64 {
    let o = bed
        .exec(ns, &["cat", "/sys/class/net/eth0/statistics/rx_packets"])
        .expect("read counter");
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0)
}

fn main() {
    if !uvs::testbed::is_root() {
        eprintln!("*** SKIPPED txpath bench: needs root ***");
        return;
    }
    let mut bed = Testbed::new("txp");
    for h in ["client", "dir", "rs1", "rs2"] {
        bed.add_host(h).unwrap();
    }
    bed.plug("client", "eth0", "10.78.0.10/24").unwrap();
    let dmac = bed.plug("dir", "eth0", "10.78.0.2/24").unwrap();
    // Sinks: the VIP is not local on them, so they drop the frames silently after
    // counting them (no replies to load the CPU).
    bed.plug("rs1", "eth0", "10.78.0.11/24").unwrap();
    bed.plug("rs2", "eth0", "10.78.0.12/24").unwrap();
    let rules = std::env::temp_dir().join(format!("{}-rules", bed.prefix));
    std::fs::write(
        &rules,
        "-A -u 10.78.0.100:9 -s rr\n-a -u 10.78.0.100:9 -r 10.78.0.11 -g\n-a -u 10.78.0.100:9 -r 10.78.0.12 -g\n",
    )
    .unwrap();
    let secs = 2.0;
    println!(
        "{:<10} {:>4} {:>12} {:>12} {:>8}",
        "tx", "run", "offered/s", "delivered/s", "ratio"
    );
    let mut best = std::collections::BTreeMap::new();
    for rep in 0..3 {
        for mode in ["ring", "sendmmsg"] {
            let log = std::fs::File::create(std::env::temp_dir().join(format!("{}-dir.log", bed.prefix))).unwrap();
            let pid = bed
                .spawn(
                    "dir",
                    &[
                        UVS,
                        "run",
                        "--iface",
                        "eth0",
                        "--rules",
                        rules.to_str().unwrap(),
                        "--workers",
                        "1",
                        "--tx",
                        mode,
                    ],
                    Some(log),
                )
                .unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            // Warm the ARP caches with a few packets.
            let _ = bed.exec(
                "client",
                &[
                    UVS,
                    "blast",
                    "--iface",
                    "eth0",
                    "--dst-mac",
                    &dmac,
                    "--src",
                    "10.78.0.10",
                    "--dst",
                    "10.78.0.100:9",
                    "--max-packets",
                    "100",
                    "--seconds",
                    "0.2",
                ],
            );
            std::thread::sleep(Duration::from_millis(300));
            let before = rx_packets(&bed, "rs1") + rx_packets(&bed, "rs2");
            let s = format!("{secs}");
            let out = bed
                .run(&[
                    "taskset",
                    "-c",
                    "1",
                    "ip",
                    "netns",
                    "exec",
                    &bed.ns("client"),
                    UVS,
                    "blast",
                    "--iface",
                    "eth0",
                    "--dst-mac",
                    &dmac,
                    "--src",
                    "10.78.0.10",
                    "--dst",
                    "10.78.0.100:9",
                    "--flows",
                    "64",
                    "--seconds",
                    &s,
                ])
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let sent: u64 = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("sent="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let got = rx_packets(&bed, "rs1") + rx_packets(&bed, "rs2") - before;
            bed.stop(pid);
            let (o, d) = (sent as f64 / secs, got as f64 / secs);
            println!("{mode:<10} {rep:>4} {o:>12.0} {d:>12.0} {:>8.3}", d / o);
            let e = best.entry(mode).or_insert(0f64);
            *e = e.max(d);
        }
    }
    let (r, m) = (best["ring"], best["sendmmsg"]);
    println!(
        "best delivered: ring {r:.0}/s, sendmmsg {m:.0}/s, ring/sendmmsg = {:.2}",
        r / m
    );
}
