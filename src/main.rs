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

/// `uvs run --when-full` (see uvs::conn::WhenFull).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WhenFull {
    Evict,
    Refuse,
}

// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
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
        /// keepalived.conf: run its virtual_server half (health checks included); SIGHUP
        /// reloads it. Combines with --rules and live ipvsadm.
        #[arg(long)]
        keepalived: Option<PathBuf>,
        /// keepalived's `-i`: which `@ID` lines of --keepalived apply (default: short host name).
        #[arg(long)]
        config_id: Option<String>,
        /// Passive health checks for a NAT virtual_server of --keepalived (repeat per
        /// virtual server): a real server that resets SYNs, answers with ICMP unreachable
        /// or leaves SYNs unanswered (1-2 s) FAILURES times within WINDOW seconds
        /// (default 3 within 10) is taken out as its checker would take it out, and comes
        /// back only when its active checker next succeeds. README "Passive health checks".
        #[arg(
            long = "passive-check",
            value_name = "VIP:PORT[,failures=N][,window=SECS]",
            requires = "keepalived"
        )]
        passive_check: Vec<uvs::keepalived::passive::PassiveSpec>,
        /// A VIP whose ownership follows VRRP (repeatable): served only while keepalived
        /// (MASTER) has it on one of the --iface interfaces. The addresses of the
        /// --keepalived file's vrrp_instance blocks are such VIPs too.
        #[arg(long = "vrrp-vip", value_name = "ADDR")]
        vrrp_vips: Vec<std::net::Ipv4Addr>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Control socket for `uvs adm` / `ipvsadm` (default /run/uvs/control.sock).
        #[arg(long, env = "UVS_CONTROL")]
        control: Option<PathBuf>,
        /// Serve Prometheus metrics on ADDR:PORT (GET /metrics).
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<String>,
        /// Cap on connection entries (all workers together). Default: sized from the
        /// memory available at start, a quarter of it (MemAvailable, or less if the
        /// cgroup's memory limit leaves less) divided by 96 bytes per entry; at least 65536.
        #[arg(long)]
        max_conns: Option<usize>,
        /// What a full connection table does with a new connection: `evict` the least
        /// recently used entry (never an established TCP connection with a packet in the
        /// last second; counted in uvs_connection_evictions_total) or `refuse` it
        /// (dropped as conn_table_full).
        #[arg(long, value_enum, default_value_t = WhenFull::Evict)]
        when_full: WhenFull,
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
        /// Write the frames the director sends to this pcapng file (Wireshark and
        /// tcpdump -r open it); each frame's direction is in its flags.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// With --pcap: also the frames it receives (each once, marked inbound).
        #[arg(long)]
        pcap_rx: bool,
        #[command(flatten)]
        hardening: uvs::director::harden::Hardening,
        /// State file: the live table, rewritten after each change and restored by the
        /// next start (default: the control socket's path with `.state`, so
        /// /run/uvs/control.state). README "Restarts and the state file".
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        #[command(flatten)]
        sync: uvs::director::syncd::SyncArgs,
        /// Take over from the director running with the same --control socket,
        /// interfaces and worker count, without breaking a connection: its ring
        /// sockets, table, counters, templates and connections move to this process,
        /// and it exits. README "Restart and upgrade".
        #[arg(long)]
        takeover: bool,
    },
    /// The three LVS modes on one machine, in network namespaces (needs root).
    Lab {
        /// nat, dr, tun or all.
        #[arg(long, default_value = "all")]
        mode: String,
        /// Scheduler of the lab's virtual service (ipvsadm's `-s`: rr, wrr, lc, wlc, sh, mh, …).
        #[arg(long, default_value = "rr")]
        scheduler: String,
        /// HTTP requests the lab's client sends through the director in each mode.
        #[arg(long, default_value_t = 6)]
        requests: usize,
        /// Skip one tutorial step and explain what breaks: arp_ignore (DR),
        /// rp_filter (TUN) or gateway (NAT).
        #[arg(long = "break")]
        brk: Option<String>,
        /// Leave the namespaces in place afterwards.
        #[arg(long)]
        keep: bool,
        /// Also write the run as one self-contained HTML page (inline SVG drawings
        /// of the topology, each hop and who answered).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Real-server side test application: HTTP answering with NAME, UDP echo (the
    /// lab's real servers; not listed in --help).
    #[command(hide = true)]
    Serve {
        /// The server's name, sent as the HTTP body and prefixed to UDP echoes.
        #[arg(long)]
        name: String,
        /// TCP address to serve HTTP on, e.g. 0.0.0.0:80.
        #[arg(long)]
        tcp: Option<String>,
        /// UDP address to echo on, e.g. 0.0.0.0:53.
        #[arg(long)]
        udp: Option<String>,
    },
    /// Test client: `probe udp ADDR:PORT MESSAGE` sends one datagram and prints the reply
    /// (the lab's client; not listed in --help).
    #[command(hide = true)]
    Probe {
        /// Protocol: `udp`.
        proto: String,
        /// Where to send it, ADDR:PORT (the VIP).
        to: String,
        /// The datagram's text.
        message: String,
        /// Repeat MESSAGE to this many bytes (e.g. more than the MTU, to test
        /// fragments); prints `NAME: N bytes intact` when the echo matches.
        #[arg(long)]
        size: Option<usize>,
    },
    /// Measurement traffic generator (test beds only): UDP frames through a TX ring.
    /// Built with `--features tools` (tests and benches turn it on).
    #[cfg(feature = "tools")]
    #[command(hide = true)]
    Blast {
        /// Interface to send on (its TX ring).
        #[arg(long)]
        iface: String,
        /// Destination MAC (the director's), aa:bb:cc:dd:ee:ff.
        #[arg(long)]
        dst_mac: String,
        /// Source IPv4 address (with --new-flows, later flows step it too).
        #[arg(long)]
        src: std::net::Ipv4Addr,
        /// Destination IP:port (the VIP).
        #[arg(long)]
        dst: std::net::SocketAddrV4,
        /// Flows to cycle over: source ports 1024, 1025, … of --src.
        #[arg(long, default_value_t = 1)]
        flows: u16,
        /// A new flow (source address and port) for every frame.
        #[arg(long)]
        new_flows: bool,
        /// First flow number with --new-flows (to keep flows new across runs).
        #[arg(long, default_value_t = 0)]
        flow_offset: u64,
        /// Frames per new flow with --new-flows (each flow's frames interleaved with
        /// those of --interleave flows).
        #[arg(long, default_value_t = 1, requires = "new_flows")]
        pkts_per_flow: u32,
        /// New flows whose frames are interleaved (1: a flow's frames back to back).
        #[arg(long, default_value_t = 1, requires = "new_flows")]
        interleave: u32,
        /// Frames per kick of the kernel (and per pacing step).
        #[arg(long, default_value_t = 32)]
        burst: usize,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Stop after this many frames.
        #[arg(long, default_value_t = 100_000_000)]
        max_packets: u64,
        /// Frames per second to pace to (0: as fast as the ring takes them).
        #[arg(long, default_value_t = 0)]
        pps: u64,
        /// UDP payload bytes per frame.
        #[arg(long, default_value_t = 18)]
        payload: usize,
        /// TCP SYNs from random spoofed sources instead of UDP (a SYN flood).
        #[arg(long)]
        syn_flood: bool,
    },
    /// The packet-rate harness's minimal AF_PACKET forwarder (MAC rewrite only).
    /// Built with `--features tools` (tests and benches turn it on).
    #[cfg(feature = "tools")]
    #[command(hide = true)]
    Ceiling {
        /// Interface to receive on.
        #[arg(long)]
        iface: String,
        /// Output as IFACE=MAC (repeat: round robin).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// Core to pin the forwarder to.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Real-server side of LVS-TUN without the ipip module: decapsulate IPIP into a
    /// TUN device holding the VIP.
    Tunnel {
        /// Interface the director's encapsulated packets arrive on.
        #[arg(long)]
        iface: String,
        /// The VIP, added to the TUN device so that this host accepts the decapsulated packets.
        #[arg(long)]
        vip: std::net::Ipv4Addr,
        /// Name of the TUN device to create.
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
        /// Also write the traced frames (received and sent) to this pcapng file.
        #[arg(long)]
        pcap: Option<PathBuf>,
    },
    /// Every keepalived checker of a director run with --keepalived: state and last result.
    Checks {
        /// Control socket of the director.
        #[arg(long, env = "UVS_CONTROL")]
        control: Option<PathBuf>,
    },
    /// Check a rules file without starting anything: print the table it describes as
    /// `ipvsadm -L -n` would list it, then `FILE: N rules OK (…)` on stderr; on any error
    /// print it (naming the line) and exit 1. With --keepalived, check a keepalived.conf
    /// and print its table in `ipvsadm -S -n` form: exit 3 on a fatal error, 5 when there
    /// were warnings, 0 when clean.
    Check {
        /// The rules file (one ipvsadm command per line, as `ipvsadm -S -n` prints them).
        #[arg(required_unless_present = "keepalived")]
        rules: Option<PathBuf>,
        /// keepalived.conf to check (its virtual_server half).
        #[arg(long, conflicts_with = "rules")]
        keepalived: Option<PathBuf>,
        /// keepalived's `-i`: which `@ID` lines apply (default: the short host name).
        #[arg(long)]
        config_id: Option<String>,
    },
    /// Read or set the `net.ipv4.vs.*` sysctls of the running director, as `sysctl`
    /// does: `uvs sysctl -a`, `uvs sysctl expire_nodest_conn`,
    /// `uvs sysctl net.ipv4.vs.expire_nodest_conn=1`.
    Sysctl {
        /// Control socket of the director.
        #[arg(long, env = "UVS_CONTROL")]
        control: Option<PathBuf>,
        /// List every key uvs implements.
        #[arg(short = 'a', long = "all")]
        all: bool,
        /// Print values only.
        #[arg(short = 'n', long = "values")]
        values: bool,
        /// Accepted for sysctl's sake (NAME=VALUE writes anyway).
        #[arg(short = 'w', long = "write")]
        write: bool,
        /// `[net.ipv4.vs.]NAME` to read, `[net.ipv4.vs.]NAME=VALUE` to write (all
        /// writes are checked before any is made).
        keys: Vec<String>,
    },
    /// ipvsadm against the running director: `uvs adm -L -n`, `uvs adm -A -t VIP:80 -s rr`, …
    /// (exactly ipvsadm's arguments; also what runs when uvs is invoked as `ipvsadm`).
    #[command(disable_help_flag = true)]
    Adm {
        /// ipvsadm's arguments (`uvs adm -h` prints ipvsadm's own help).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Run a scenario (table commands, connect/packet/close, advance, list) through the
    /// real pipeline in virtual time; reads stdin when no FILE is given.
    Simulate {
        /// The scenario file (default: standard input).
        file: Option<PathBuf>,
        /// Also draw the picks and each real server's connections over virtual time
        /// on a self-contained HTML page.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
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
    // Priorities for the journal under systemd (see uvs::director::journal).
    uvs::director::journal::init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run {
            ifaces,
            rules,
            workers,
            control,
            max_conns,
            when_full,
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
            passive_check,
            vrrp_vips,
            state,
            sync,
            takeover,
        } => uvs::director::run(uvs::director::RunOptions {
            takeover,
            keepalived,
            config_id,
            passive_check,
            vrrp_vips,
            ifaces,
            rules,
            workers,
            control,
            max_conns,
            when_full: match when_full {
                WhenFull::Evict => uvs::conn::WhenFull::Evict,
                WhenFull::Refuse => uvs::conn::WhenFull::Refuse,
            },
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
            state,
            sync,
        }),
        #[cfg(feature = "tools")]
        Cmd::Ceiling { iface, to, cpu } => to
            .iter()
            .map(|t| {
                let (i, m) = t.split_once('=').ok_or_else(|| format!("--to {t}: want IFACE=MAC"))?;
                Ok((i.to_string(), parse_mac(m)?))
            })
            .collect::<Result<Vec<_>, String>>()
            .and_then(|to| uvs::testbed::ceiling::run(&uvs::testbed::ceiling::CeilingOptions { iface, to, cpu })),
        Cmd::Checks { control } => uvs::control::client::checks(control.as_deref()).map(|t| print!("{t}")),
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
        Cmd::Sysctl {
            control,
            all,
            values,
            write: _,
            keys,
        } => {
            let flags = [(all, "-a"), (values, "-n")];
            let mut words: Vec<String> = flags.iter().filter(|f| f.0).map(|f| f.1.to_string()).collect();
            words.extend(keys);
            return adm_exit(uvs::control::client::sysctl(control.as_deref(), &words));
        }
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
        Cmd::Simulate { file, html } => uvs::simulate::main(file.as_deref(), html.as_deref()),
        #[cfg(feature = "tools")]
        Cmd::Blast {
            iface,
            dst_mac,
            src,
            dst,
            flows,
            new_flows,
            flow_offset,
            pkts_per_flow,
            interleave,
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
                pkts_per_flow,
                interleave,
                burst,
                seconds,
                max_packets,
                pps,
                payload,
                syn_flood,
            };
            uvs::testbed::blast::blast(&o).map(|r| {
                // `flows=` (new flows started) only where it is news: --new-flows.
                let flows = if o.new_flows {
                    format!(" flows={}", r.flows)
                } else {
                    String::new()
                };
                println!("sent={} seconds={:.6}{flows}", r.sent, r.seconds)
            })
        }),
        Cmd::Lab {
            mode,
            scheduler,
            requests,
            brk,
            keep,
            html,
        } => uvs::lab::run(&uvs::lab::LabOptions {
            mode,
            scheduler,
            requests,
            brk,
            keep,
            html,
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

/// `uvs check FILE`: load the rules into a table of its own (the whole file is checked
/// as `uvs run --rules` checks it: grammar, then every command against the table), print
/// that table as `ipvsadm -L -n` lists it, warn about what is accepted but not
/// forwarded, and end with a count on stderr. Any error: its message (naming the
/// line) and exit status 1.
fn check(path: &std::path::Path) -> Result<(), String> {
    use uvs::ipvsadm::{ListOptions, list, snapshot};
    let ctl = uvs::ctl::Ctl::new(std::sync::Arc::new(uvs::pipeline::Shared::new(Vec::new())));
    let n = uvs::director::load_rules(&ctl, path)?;
    let sh = ctl.shared();
    let table = sh.services.load();
    let snap = snapshot::capture(&table, &sh.ipvs.timeouts, &|_| snapshot::Rates::default());
    let opts = ListOptions {
        numeric: true,
        ..Default::default()
    };
    let listing = list::render_list(&opts, &snap, &[], &list::NumericNames).map_err(|e| e.message)?;
    print!("{listing}");
    for w in table.not_forwarded() {
        eprintln!("uvs check: warning: {w}");
    }
    let (tcp, fin, udp) = snap.timeouts;
    let svcs = snap.services.len();
    let plural = if svcs == 1 { "" } else { "s" };
    eprintln!(
        "{}: {n} rules OK ({svcs} service{plural}; timeouts tcp {tcp} tcpfin {fin} udp {udp})",
        path.display()
    );
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
    if !ka::has_warnings(&diags) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(ka::EXIT_WARNINGS)
    }
}

#[cfg(feature = "tools")]
fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s.split(':').filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    v.try_into().map_err(|_| format!("bad MAC address '{s}'"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Arguments and subcommands of `cmd` (recursively) without a description.
    fn missing_help(cmd: &clap::Command) -> Vec<String> {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{p} (no description)"));
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(cmd, cmd.get_name(), &mut missing);
        missing
    }

    /// Every subcommand says what it does and every argument of every subcommand has a
    /// description in `--help` (hidden ones included: the harness reads them too).
    #[test]
    fn every_argument_has_help() {
        let cmd = super::Cli::command();
        let missing = missing_help(&cmd);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
        // The walk does see the arguments (a tree without any would pass vacuously)…
        let run = cmd.find_subcommand("run").expect("run");
        assert!(run.get_arguments().any(|a| a.get_id() == "ifaces"));
        assert!(cmd.get_subcommands().count() >= 10);
        // …and would name an undocumented one, however deep.
        let bad = clap::Command::new("uvs").subcommand(
            clap::Command::new("lab")
                .about("x")
                .arg(clap::Arg::new("scheduler").long("scheduler"))
                .subcommand(clap::Command::new("deeper").arg(clap::Arg::new("n").help("documented"))),
        );
        assert_eq!(
            missing_help(&bad),
            ["uvs lab scheduler", "uvs lab deeper (no description)"]
        );
    }

    /// `uvs --help` lists the operator's and the lab's commands, not the test beds' and
    /// the harness's (serve and probe are hidden; blast and ceiling exist only in a
    /// `tools` build, which tests are).
    #[test]
    fn help_lists_no_harness_tools() {
        let help = super::Cli::command().render_help().to_string();
        let listed: Vec<&str> = help
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(listed.contains(&"run") && listed.contains(&"lab"), "{help}");
        for tool in ["blast", "ceiling", "serve", "probe"] {
            assert!(!listed.contains(&tool), "{tool} listed:\n{help}");
        }
        let cmd = super::Cli::command();
        assert_eq!(
            cmd.find_subcommand("blast").is_some(),
            cfg!(feature = "tools"),
            "blast exactly in a tools build"
        );
    }
}
