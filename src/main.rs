//! The `uvs` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "uvs",
    version,
    about = "userspace virtual server: an IPVS/LVS director on AF_PACKET sockets"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the director on one or more interfaces until SIGINT/SIGTERM.
    Run {
        /// Interface to serve (repeat for a NAT director's external and internal side).
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        /// Rules file: ipvsadm commands in `ipvsadm -S -n` form, one per line.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Control socket path.
        #[arg(long, env = "UVS_CONTROL")]
        control: Option<PathBuf>,
        /// Hard cap on connection entries (all workers together).
        #[arg(long, default_value_t = 1 << 20)]
        max_conns: usize,
        /// Transmit path: `ring` (PACKET_TX_RING, default) or `sendmmsg`.
        #[arg(long, default_value = "ring", value_parser = ["ring", "sendmmsg"])]
        tx: String,
    },
    /// The three LVS modes on one machine, in network namespaces (needs root).
    Lab {
        #[arg(long, default_value = "all")]
        mode: String,
        #[arg(long, default_value = "rr")]
        scheduler: String,
        #[arg(long, default_value_t = 6)]
        requests: usize,
        /// Leave the namespaces in place afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Real-server side test application: HTTP answering with NAME, UDP echo.
    Serve {
        #[arg(long)]
        name: String,
        /// TCP address to serve HTTP on, e.g. 0.0.0.0:80.
        #[arg(long)]
        tcp: Option<String>,
        /// UDP address to echo on, e.g. 0.0.0.0:53.
        #[arg(long)]
        udp: Option<String>,
    },
    /// Test client: `probe udp ADDR:PORT MESSAGE` sends one datagram and prints the reply.
    Probe { proto: String, to: String, message: String },
    /// Measurement traffic generator (test beds only): UDP frames through a TX ring.
    Blast {
        #[arg(long)]
        iface: String,
        /// Destination MAC (the director's), aa:bb:cc:dd:ee:ff.
        #[arg(long)]
        dst_mac: String,
        #[arg(long)]
        src: std::net::Ipv4Addr,
        /// Destination IP:port (the VIP).
        #[arg(long)]
        dst: std::net::SocketAddrV4,
        #[arg(long, default_value_t = 1)]
        flows: u16,
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        #[arg(long, default_value_t = 100_000_000)]
        max_packets: u64,
        #[arg(long, default_value_t = 0)]
        pps: u64,
        #[arg(long, default_value_t = 18)]
        payload: usize,
    },
    /// Real-server side of LVS-TUN without the ipip module: decapsulate IPIP into a
    /// TUN device holding the VIP.
    Tunnel {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        vip: std::net::Ipv4Addr,
        #[arg(long, default_value = "tunl0")]
        dev: String,
    },
    /// Check a rules file and print the table it describes, without starting anything.
    Check { rules: PathBuf },
    /// Run a scenario (table commands, connect/packet/close, advance, list) through the
    /// real pipeline in virtual time; reads stdin when no FILE is given.
    Simulate { file: Option<PathBuf> },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("UVS_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run {
            ifaces,
            rules,
            workers,
            control,
            max_conns,
            tx,
        } => uvs::director::run(uvs::director::RunOptions {
            ifaces,
            rules,
            workers,
            control,
            max_conns,
            tx_sendmmsg: tx == "sendmmsg",
        }),
        Cmd::Check { rules } => check(&rules),
        Cmd::Tunnel { iface, vip, dev } => uvs::tunnel::main(&uvs::tunnel::TunnelOptions { iface, vip, dev }),
        Cmd::Simulate { file } => uvs::simulate::main(file.as_deref()),
        Cmd::Blast {
            iface,
            dst_mac,
            src,
            dst,
            flows,
            seconds,
            max_packets,
            pps,
            payload,
        } => parse_mac(&dst_mac).and_then(|dst_mac| {
            let o = uvs::testbed::blast::BlastOptions {
                iface,
                dst_mac,
                src: src.octets(),
                dst: dst.ip().octets(),
                dport: dst.port(),
                flows,
                seconds,
                max_packets,
                pps,
                payload,
            };
            uvs::testbed::blast::blast(&o).map(|n| println!("{n}"))
        }),
        Cmd::Lab {
            mode,
            scheduler,
            requests,
            keep,
        } => uvs::lab::run(&uvs::lab::LabOptions {
            mode,
            scheduler,
            requests,
            keep,
        }),
        Cmd::Probe { proto, to, message } => match proto.as_str() {
            "udp" => uvs::testbed::serve::probe_udp(&to, &message).map(|r| println!("{r}")),
            other => Err(format!("probe: unsupported protocol '{other}' (udp)")),
        },
        Cmd::Serve { name, tcp, udp } => uvs::testbed::serve::serve(&name, tcp.as_deref(), udp.as_deref()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("uvs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> Result<(), String> {
    let ctl = uvs::ctl::Ctl::new(std::sync::Arc::new(uvs::pipeline::Shared::new(Vec::new())));
    let n = uvs::director::load_rules(&ctl, path)?;
    println!("{}: {n} rules OK", path.display());
    Ok(())
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s.split(':').filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    v.try_into().map_err(|_| format!("bad MAC address '{s}'"))
}
