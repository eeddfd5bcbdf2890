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
#[allow(clippy::large_enum_variant)] // parsed once; `run` has many options
enum Cmd {
    /// Run the director on one or more interfaces until SIGINT/SIGTERM.
    Run {
        /// Interface to serve (repeat for a NAT director's external and internal side).
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        /// Rules file: ipvsadm commands in `ipvsadm -S -n` form, one per line.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// keepalived.conf: run its virtual_server half (health checks included); SIGHUP
        /// reloads it. Combines with --rules and live ipvsadm.
        #[arg(long)]
        keepalived: Option<PathBuf>,
        /// keepalived's `-i`: which `@ID` lines of --keepalived apply (default: short host name).
        #[arg(long)]
        config_id: Option<String>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Control socket for `uvs adm` / `ipvsadm` (default /run/uvs/control.sock).
        #[arg(long, env = "UVS_CONTROL")]
        control: Option<PathBuf>,
        /// Serve Prometheus metrics on ADDR:PORT (GET /metrics).
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<String>,
        /// Hard cap on connection entries (all workers together).
        #[arg(long, default_value_t = 1 << 20)]
        max_conns: usize,
        /// Transmit path: `ring` (PACKET_TX_RING, default) or `sendmmsg`.
        #[arg(long, default_value = "ring", value_parser = ["ring", "sendmmsg"])]
        tx: String,
        /// Cores to pin the workers to, e.g. `1` or `0,2-3` (worker i on the i-th, cycling).
        #[arg(long)]
        cpus: Option<String>,
        /// Require dropping the kernel's own copy of VIP-bound frames (an nftables netdev
        /// ingress rule on the served interfaces, removed at exit): fail if `nft` cannot
        /// install it. By default uvs drops it when it can and says so when it cannot.
        #[arg(long, conflicts_with = "keep_kernel_copy")]
        drop_kernel_copy: bool,
        /// Leave the kernel its copy of VIP-bound frames (no nftables rule; the host's IP
        /// stack then routes and drops every one of them, at a cost in packet rate).
        #[arg(long)]
        keep_kernel_copy: bool,
        /// Overload shedding (experimental): an XDP program on the served interfaces drops
        /// VIP-bound frames while every worker's RX ring is backed up, before the taps,
        /// netfilter and the IP stack. Fails to start if it cannot be attached.
        #[arg(long)]
        xdp_shed: bool,
        /// XDP hook for the shedding program: `native` (the driver's), `generic` (after
        /// the skb, before the taps) or `auto` (native, but generic on veth and tun, whose
        /// native hook copies every frame on the sender's CPU).
        #[arg(long, default_value = "auto", value_parser = ["auto", "native", "generic"])]
        xdp_mode: String,
        /// Write the frames the director sends to this pcap file (Wireshark opens it).
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// With --pcap: also the frames it receives.
        #[arg(long)]
        pcap_rx: bool,
        #[command(flatten)]
        hardening: uvs::director::harden::Hardening,
    },
    /// The three LVS modes on one machine, in network namespaces (needs root).
    Lab {
        /// nat, dr, tun or all.
        #[arg(long, default_value = "all")]
        mode: String,
        #[arg(long, default_value = "rr")]
        scheduler: String,
        #[arg(long, default_value_t = 6)]
        requests: usize,
        /// Skip one tutorial step and explain what breaks: arp_ignore (DR),
        /// rp_filter (TUN) or gateway (NAT).
        #[arg(long = "break")]
        brk: Option<String>,
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
    Probe {
        proto: String,
        to: String,
        message: String,
        /// Repeat MESSAGE to this many bytes (e.g. more than the MTU, to test
        /// fragments); prints `NAME: N bytes intact` when the echo matches.
        #[arg(long)]
        size: Option<usize>,
    },
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
        /// A new flow (source address and port) for every frame.
        #[arg(long)]
        new_flows: bool,
        /// First flow number with --new-flows (to keep flows new across runs).
        #[arg(long, default_value_t = 0)]
        flow_offset: u64,
        /// Frames per kick of the kernel (and per pacing step).
        #[arg(long, default_value_t = 32)]
        burst: usize,
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        #[arg(long, default_value_t = 100_000_000)]
        max_packets: u64,
        #[arg(long, default_value_t = 0)]
        pps: u64,
        #[arg(long, default_value_t = 18)]
        payload: usize,
        /// TCP SYNs from random spoofed sources instead of UDP (a SYN flood).
        #[arg(long)]
        syn_flood: bool,
    },
    /// The packet-rate harness's minimal AF_PACKET forwarder (MAC rewrite only).
    #[command(hide = true)]
    Ceiling {
        #[arg(long)]
        iface: String,
        /// Output as IFACE=MAC (repeat: round robin).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        #[arg(long)]
        cpu: Option<usize>,
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
        /// What the director sends (ipvsadm's `--tun-type`): ipip, gue or gre.
        #[arg(long, default_value = "ipip", value_parser = ["ipip", "gue", "gre"])]
        tun_type: String,
        /// GUE's UDP port (ipvsadm's `--tun-port`); required with `--tun-type gue`.
        #[arg(long, default_value_t = 0)]
        tun_port: u16,
    },
    /// Stream one line per forwarded packet from a running director: service, real
    /// server, mode, headers before => after.
    Trace {
        /// Control socket of the director.
        #[arg(long, env = "UVS_CONTROL")]
        control: Option<PathBuf>,
        /// Only this service (VIP:PORT).
        #[arg(long)]
        service: Option<String>,
        /// Only this client address.
        #[arg(long)]
        client: Option<String>,
        /// Stop after N packets.
        #[arg(long)]
        count: Option<u64>,
        /// Also write the traced frames (received and sent) to this pcap file.
        #[arg(long)]
        pcap: Option<PathBuf>,
    },
    /// Every keepalived checker of a director run with --keepalived: state and last result.
    Checks {
        /// Control socket of the director.
        #[arg(long, env = "UVS_CONTROL")]
        control: Option<PathBuf>,
    },
    /// Check a rules file (or with --keepalived a keepalived.conf) and print the table it
    /// describes, without starting anything. keepalived.conf: exit 3 on a fatal error,
    /// 5 when there were warnings, 0 when clean.
    Check {
        #[arg(required_unless_present = "keepalived")]
        rules: Option<PathBuf>,
        /// keepalived.conf to check (its virtual_server half).
        #[arg(long, conflicts_with = "rules")]
        keepalived: Option<PathBuf>,
        /// keepalived's `-i`: which `@ID` lines apply (default: the short host name).
        #[arg(long)]
        config_id: Option<String>,
    },
    /// ipvsadm against the running director: `uvs adm -L -n`, `uvs adm -A -t VIP:80 -s rr`, …
    /// (exactly ipvsadm's arguments; also what runs when uvs is invoked as `ipvsadm`).
    #[command(disable_help_flag = true)]
    Adm {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Run a scenario (table commands, connect/packet/close, advance, list) through the
    /// real pipeline in virtual time; reads stdin when no FILE is given.
    Simulate { file: Option<PathBuf> },
}

fn main() -> ExitCode {
    // ipvsadm's command line, before clap sees it: `ipvsadm ARGS` (a symlink to uvs) or
    // `uvs adm ARGS` take exactly ipvsadm's arguments, `-h` and `--` included.
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let invoked_as = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or("");
    if invoked_as == "ipvsadm" {
        return adm_exit(uvs::control::client::main(&argv[0], &argv[1..]));
    }
    if argv.get(1).is_some_and(|a| a == "adm") {
        return adm_exit(uvs::control::client::main("ipvsadm", &argv[2..]));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UVS_LOG")
                .unwrap_or_else(|_| "warn,uvs::keepalived=info".into()),
        )
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
            cpus,
            drop_kernel_copy,
            keep_kernel_copy,
            xdp_shed,
            xdp_mode,
            pcap,
            pcap_rx,
            metrics,
            hardening,
            keepalived,
            config_id,
        } => uvs::director::run(uvs::director::RunOptions {
            keepalived,
            config_id,
            ifaces,
            rules,
            workers,
            control,
            max_conns,
            tx_sendmmsg: tx == "sendmmsg",
            cpus: match cpus.as_deref().map(uvs::director::parse_cpus).transpose() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("uvs: {e}");
                    return ExitCode::FAILURE;
                }
            },
            kernel_copy: if drop_kernel_copy {
                uvs::director::kernelcopy::KernelCopy::Drop
            } else if keep_kernel_copy {
                uvs::director::kernelcopy::KernelCopy::Keep
            } else {
                uvs::director::kernelcopy::KernelCopy::Auto
            },
            shed: if xdp_shed {
                uvs::director::Shedding::On
            } else {
                uvs::director::Shedding::Off
            },
            xdp_mode: xdp_mode.parse().unwrap_or_default(),
            pcap,
            pcap_rx,
            metrics,
            hardening,
        }),
        Cmd::Ceiling { iface, to, cpu } => to
            .iter()
            .map(|t| {
                let (i, m) = t.split_once('=').ok_or_else(|| format!("--to {t}: want IFACE=MAC"))?;
                Ok((i.to_string(), parse_mac(m)?))
            })
            .collect::<Result<Vec<_>, String>>()
            .and_then(|to| uvs::testbed::ceiling::run(&uvs::testbed::ceiling::CeilingOptions { iface, to, cpu })),
        Cmd::Checks { control } => uvs::keepalived::run::client(control.as_deref()).map(|t| print!("{t}")),
        Cmd::Check {
            keepalived: Some(k),
            config_id,
            ..
        } => return check_keepalived(&k, config_id.as_deref()),
        Cmd::Check { rules, .. } => check(rules.as_deref().unwrap_or(std::path::Path::new(""))),
        Cmd::Trace {
            control,
            service,
            client,
            count,
            pcap,
        } => {
            let mut words = Vec::new();
            for (k, v) in [
                ("--service", service),
                ("--client", client),
                ("--count", count.map(|c| c.to_string())),
            ] {
                if let Some(v) = v {
                    words.push(k.to_string());
                    words.push(v);
                }
            }
            uvs::director::trace::client(control.as_deref(), &words, pcap.as_deref())
        }
        Cmd::Adm { args } => return adm_exit(uvs::control::client::main("ipvsadm", &args)),
        Cmd::Tunnel {
            iface,
            vip,
            dev,
            tun_type,
            tun_port,
        } => uvs::tunnel::main(&uvs::tunnel::TunnelOptions {
            iface,
            vip,
            dev,
            kind: match tun_type.as_str() {
                "gue" => uvs::service::TunnelType::Gue,
                "gre" => uvs::service::TunnelType::Gre,
                _ => uvs::service::TunnelType::Ipip,
            },
            port: tun_port,
        }),
        Cmd::Simulate { file } => uvs::simulate::main(file.as_deref()),
        Cmd::Blast {
            iface,
            dst_mac,
            src,
            dst,
            flows,
            new_flows,
            flow_offset,
            burst,
            seconds,
            max_packets,
            pps,
            payload,
            syn_flood,
        } => parse_mac(&dst_mac).and_then(|dst_mac| {
            let o = uvs::testbed::blast::BlastOptions {
                iface,
                dst_mac,
                src: src.octets(),
                dst: dst.ip().octets(),
                dport: dst.port(),
                flows,
                new_flows,
                flow_offset,
                burst,
                seconds,
                max_packets,
                pps,
                payload,
                syn_flood,
            };
            uvs::testbed::blast::blast(&o).map(|r| println!("sent={} seconds={:.6}", r.sent, r.seconds))
        }),
        Cmd::Lab {
            mode,
            scheduler,
            requests,
            brk,
            keep,
        } => uvs::lab::run(&uvs::lab::LabOptions {
            mode,
            scheduler,
            requests,
            brk,
            keep,
        }),
        Cmd::Probe {
            proto,
            to,
            message,
            size,
        } => match (proto.as_str(), size) {
            ("udp", Some(n)) => uvs::testbed::serve::probe_udp_sized(&to, &message, n).map(|r| println!("{r}")),
            ("udp", None) => uvs::testbed::serve::probe_udp(&to, &message).map(|r| println!("{r}")),
            (other, _) => Err(format!("probe: unsupported protocol '{other}' (udp)")),
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

/// ipvsadm's exit status (0 … 255) as the process's.
fn adm_exit(code: i32) -> ExitCode {
    ExitCode::from((code & 0xff) as u8)
}

fn check(path: &std::path::Path) -> Result<(), String> {
    let ctl = uvs::ctl::Ctl::new(std::sync::Arc::new(uvs::pipeline::Shared::new(Vec::new())));
    let n = uvs::director::load_rules(&ctl, path)?;
    println!("{}: {n} rules OK", path.display());
    Ok(())
}

/// `uvs check --keepalived FILE`: keepalived's diagnostics on stderr, the table on stdout.
fn check_keepalived(path: &std::path::Path, config_id: Option<&str>) -> ExitCode {
    use uvs::keepalived as ka;
    let (cfg, diags) = ka::load(path, config_id);
    for d in &diags {
        eprintln!("{d}");
    }
    if ka::is_fatal(&diags) {
        eprintln!(
            "uvs: {}: fatal configuration error, nothing would start",
            path.display()
        );
        return ExitCode::from(ka::EXIT_FATAL);
    }
    match ka::translate::render(&cfg, &ka::translate::initial_table(&cfg)) {
        Ok(t) => print!("{t}"),
        Err(e) => {
            eprintln!("uvs: {}: {e}", path.display());
            return ExitCode::from(ka::EXIT_FATAL);
        }
    }
    if diags.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(ka::EXIT_WARNINGS)
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s.split(':').filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    v.try_into().map_err(|_| format!("bad MAC address '{s}'"))
}
