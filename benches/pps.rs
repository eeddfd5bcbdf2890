//! End-to-end packet-rate harness (issue 8): the max loss-free rate (MLR, ≤ 0.5 %
//! loss) of uvs next to an AF_PACKET ceiling and the kernel's own forwarding and NAT,
//! in one run on one namespace topology. Needs root; without it, it says SKIPPED.
//!
//! ```text
//! sudo apt-get install -y --no-install-recommends nftables   # (the bench also tries)
//! sudo cargo bench --bench pps              # full run, a few minutes
//! sudo PPS_QUICK=1 cargo bench --bench pps  # fewer points, ~1 minute
//! sudo PPS_ONLY=sync cargo bench --bench pps # only the sync master's cost (issue 18)
//! ```
//!
//! Topology: direct veth pairs, no bridge.
//!
//! ```text
//!  gen eth0 10.90.0.10/16 ── eth0 dut eth1 10.91.1.1 ── s1 eth0 10.91.1.11
//!        (VIP 10.90.0.100)  10.90.0.2/16  eth2 10.91.2.1 ── s2 eth0 10.91.2.12
//!  gen eth1 10.92.0.10/24 ── eth3 dut   (the ceiling's input in the paired rows)
//!                               eth4 dut 10.93.0.2 ── sb eth0 10.93.0.10
//!                                    (the sync group's multicast link, made by it)
//! ```
//!
//! The generator (`uvs blast`, a TX-ring UDP generator with busy-wait pacing, 64-byte
//! frames) and the sinks' receive processing run on core 0 (the harness pins itself
//! and its children there; RPS on the sinks); the DUT runs on core 1 (RPS on the DUT's
//! interfaces, `uvs run --cpus 1`, `uvs ceiling --cpu 1`). Sinks count frames with
//! their interface rx counters and drop them at nftables netdev ingress (ARP passes).
//! A trial offers a paced rate for a bounded time and count, then waits until the
//! sinks' counters stop moving (frames still in rings and backlogs), so loss is
//! `1 - received / sent`. The MLR is found by bisection over the offered rate,
//! starting from the generator's own ceiling.
//!
//! Rows: generator ceiling; `ceiling` (the harness's minimal forwarder: the director's
//! ring code and loop, MAC rewrite only), with the kernel's copy of each frame dropped
//! by the same nftables rule `uvs run` installs by default, and with the copy kept;
//! kernel IP forwarding; kernel nftables DNAT (`numgen inc mod 2`, conntrack) with one
//! flow and a new flow per frame; uvs DR, NAT and TUN (rr over both sinks), one flow
//! and a new flow per frame, 1 and 2 workers; the same with `--keep-kernel-copy` (1
//! worker) against the ceiling that keeps the copy; the same with overload shedding
//! (`--xdp-shed`, 1 worker, one flow); overload (unpaced offered load, repeated) for
//! uvs and the ceiling; and **paired** rows: uvs and the ceiling (or, for new flows,
//! the kernel's NAT) running at the same time on separate input links, their
//! bisections taking turns trial by trial (`Harness::paired`), which is what the
//! /ceiling and new-flow goals are judged on; and the **sync** row: uvs NAT (one
//! worker) with new flows of 3 packets (`UVS_PPS_SYNC_PKTS`), its connection-sync
//! master (multicast out of eth4) started and stopped through its control socket so
//! that bisections with and without it take turns trial by trial
//! (`Harness::sync_group`; it fails if the master sent no record). The turns matter
//! because this
//! VM's speed drifts by tens of percent within seconds (the machine reference, a
//! fixed CPU loop timed on the DUT's core through the run, shows how much). CPU per
//! packet is the DUT core's busy time (wall clock minus its exact idle time, see
//! `CoreClock`) over the frames delivered, plus the second worker's time when it runs
//! on core 0. Results go to target/pps.json as well.
//!
//! Other work on the machine distorts every row (the load average is printed at the
//! end): run it on a quiet machine. Renicing the DUT does not help: the kernel's
//! deferred receive work (ksoftirqd) then starves instead.
//!
//! uvs rows use `--set 0 0 2` (UDP entries expire after 2 s) so that new-flow trials
//! do not accumulate millions of entries; the kernel NAT rows set
//! nf_conntrack_udp_timeout=2 in the DUT namespace likewise.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use uvs::testbed::Testbed;

const UVS: &str = env!("CARGO_BIN_EXE_uvs");
const VIP: &str = "10.90.0.100";
const S_IP: [&str; 2] = ["10.91.1.11", "10.91.2.12"];
const MAX_LOSS: f64 = 0.005;
/// Wire bits per 64-byte frame (60 bytes sent + 4 FCS), for Mbit/s.
const BITS_PER_FRAME: f64 = 64.0 * 8.0;
const DUT_CPU: usize = 1;
/// The sync group's multicast interface in the DUT and its `/metrics` there.
const SYNC_IF: &str = "eth4";
const SYNC_METRICS: &str = "127.0.0.1:9108";
const GEN_CPU: usize = 0;

#[derive(Clone, Copy)]
struct Cfg {
    quick: bool,
    trial_s: f64,
    steps: usize,
    overload_runs: usize,
    /// Repetitions of each paired comparison.
    paired_reps: usize,
}

#[derive(Clone, Copy, Debug, Default)]
struct Trial {
    offered: f64,
    delivered: f64,
    loss: f64,
    cpu_ns: f64,
}

#[derive(Clone, Debug, Default)]
struct Row {
    name: String,
    group: &'static str,
    mlr: f64,
    cpu_ns: f64,
    trials: usize,
    gen_bound: bool,
}

#[derive(Clone, Debug, Default)]
struct Overload {
    name: String,
    runs: Vec<f64>,
    mlr: f64,
}

impl Overload {
    fn mean(&self) -> f64 {
        self.runs.iter().sum::<f64>() / self.runs.len().max(1) as f64
    }
    fn variation(&self) -> f64 {
        let max = self.runs.iter().cloned().fold(0.0, f64::max);
        let min = self.runs.iter().cloned().fold(f64::INFINITY, f64::min);
        if self.runs.is_empty() {
            0.0
        } else {
            (max - min) / self.mean()
        }
    }
}

/// What a trial sends.
#[derive(Clone)]
struct Load {
    /// 0: gen eth0 -> dut eth0 (every row); 1: gen eth1 -> dut eth3 (the ceiling's
    /// input while it runs beside uvs in the paired rows).
    link: usize,
    dst: String,
    new_flows: bool,
    /// Frames per new flow (1: a new flow per frame) and how many flows' frames are
    /// interleaved (`uvs blast --pkts-per-flow --interleave`).
    pkts_per_flow: u32,
    interleave: u32,
    /// A uvs process whose worker thread `uvs-worker-1` runs on the generator's core.
    extra_thread: Option<u32>,
}

struct Harness {
    bed: Testbed,
    cfg: Cfg,
    /// The DUT's MAC on each input link (eth0, eth3).
    dut_mac: [String; 2],
    sink_mac: [String; 2],
    flow_offset: u64,
    dut_pid: Option<u32>,
    log: std::path::PathBuf,
    /// Timings of [`machine_sample`] taken during the run (ms).
    machine: Vec<f64>,
    /// The sync group's DUT (its sync master toggled between trials).
    sync: Option<SyncDut>,
}

/// The `uvs_sync_*` counters of the master, from the DUT's `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
struct SyncCounters {
    conns: u64,
    messages: u64,
    queue_dropped: u64,
    send_errors: u64,
}

impl SyncCounters {
    fn parse(page: &str) -> SyncCounters {
        let get = |name: &str| {
            page.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        };
        SyncCounters {
            conns: get("uvs_sync_sent_conns_total"),
            messages: get("uvs_sync_sent_messages_total"),
            queue_dropped: get("uvs_sync_queue_dropped_total"),
            send_errors: get("uvs_sync_send_errors_total"),
        }
    }

    fn since(&self, earlier: &SyncCounters) -> SyncCounters {
        SyncCounters {
            conns: self.conns.saturating_sub(earlier.conns),
            messages: self.messages.saturating_sub(earlier.messages),
            queue_dropped: self.queue_dropped.saturating_sub(earlier.queue_dropped),
            send_errors: self.send_errors.saturating_sub(earlier.send_errors),
        }
    }

    fn add(&mut self, d: &SyncCounters) {
        self.conns += d.conns;
        self.messages += d.messages;
        self.queue_dropped += d.queue_dropped;
        self.send_errors += d.send_errors;
    }
}

/// The sync group's DUT: `uvs run` with a control socket and `/metrics`, its sync
/// master (`ipvsadm --start-daemon master` through the control socket) on or off, and
/// what the master sent in each stretch it ran, against the flows offered meanwhile.
struct SyncDut {
    control: std::path::PathBuf,
    on: bool,
    /// The counters when the master last stopped (or at the start).
    last: SyncCounters,
    /// New flows offered since the master last started.
    flows: u64,
    /// Over every stretch the master ran: counters, flows offered, frames the sinks
    /// received (lossy trials deliver fewer 3rd packets than flows offered; each
    /// delivered 3rd packet went through the hook), stretches, and stretches with flows
    /// offered but no record sent.
    total: SyncCounters,
    total_flows: u64,
    delivered: u64,
    stretches: usize,
    silent: usize,
}

/// The bisection for one max loss-free rate: first an unpaced trial (if even that
/// is loss-free, the generator is the bottleneck), then bisection below what it
/// offered, starting just under the rate the DUT delivered. A state machine, so
/// that two searches can take turns ([`Harness::paired`]).
struct Bisect {
    steps: usize,
    n: usize,
    lo: f64,
    hi: f64,
    /// Offered rate of the next trial (0 = unpaced).
    probe: f64,
    /// What the unpaced trial offered.
    full: f64,
    best: Option<Trial>,
    gen_bound: bool,
    done: bool,
    trace: String,
}

impl Bisect {
    fn new(steps: usize) -> Bisect {
        Bisect {
            steps: steps.max(1),
            n: 0,
            lo: 0.0,
            hi: 0.0,
            probe: 0.0,
            full: 0.0,
            best: None,
            gen_bound: false,
            done: false,
            trace: String::new(),
        }
    }

    /// The rate to offer next, or `None` when the search is over.
    fn next(&self) -> Option<f64> {
        (!self.done).then_some(self.probe)
    }

    fn record(&mut self, t: Trial) {
        self.n += 1;
        let pass = t.loss <= MAX_LOSS;
        if self.n == 1 {
            let _ = write!(self.trace, " max {:.0}k->{:.0}k", t.offered / 1e3, t.delivered / 1e3);
            self.full = t.offered;
            self.hi = t.offered;
            self.probe = t.delivered * 0.98;
            if pass {
                self.gen_bound = true;
                self.best = Some(t);
                self.done = true;
            }
        } else {
            let _ = write!(self.trace, " {:.0}k{}", t.offered / 1e3, if pass { "+" } else { "-" });
            if pass {
                self.lo = self.probe;
                if self.best.is_none_or(|b| t.delivered > b.delivered) {
                    self.best = Some(t);
                }
            } else {
                self.hi = self.probe.min(self.hi);
            }
            self.done = self.hi - self.lo < 0.01 * self.full;
            self.probe = (self.lo + self.hi) / 2.0;
        }
        self.done |= self.n >= self.steps;
    }

    fn row(&self, name: &str, group: &'static str) -> Row {
        let b = self.best.unwrap_or_default();
        println!(
            "  {name:<28} {:>7.0} kpps  ({} trials:{})",
            b.delivered / 1e3,
            self.n,
            self.trace
        );
        Row {
            name: name.to_string(),
            group,
            mlr: b.delivered,
            cpu_ns: b.cpu_ns,
            trials: self.n,
            gen_bound: self.gen_bound,
        }
    }
}

/// uvs next to the ceiling or the kernel's NAT, measured in turns
/// ([`Harness::paired`]); index 0 is uvs, 1 the other (`against`).
#[derive(Clone, Debug, Default)]
struct Paired {
    name: String,
    against: &'static str,
    mlr: [Vec<f64>; 2],
    common_pps: f64,
    cpu: [Vec<f64>; 2],
}

impl Paired {
    /// Median over repetitions of uvs's MLR / the other's.
    fn mlr_ratio(&self) -> f64 {
        median(&ratios(&self.mlr[0], &self.mlr[1]))
    }
    /// Median over pairs of the other's CPU per packet / uvs's (≥ 1: uvs cheaper).
    fn cpu_ratio(&self) -> f64 {
        median(&ratios(&self.cpu[1], &self.cpu[0]))
    }
}

fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).filter(|(_, b)| **b > 0.0).map(|(a, b)| a / b).collect()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The machine's own speed, for reading the variation of the other rows: the DR
/// pipeline loop (100 000 frames, no sockets) on the DUT's core while it is idle,
/// in ms. On a VM this moves with whatever the host runs beside it.
fn machine_sample() -> f64 {
    std::thread::spawn(|| {
        core_affinity::set_for_current(core_affinity::CoreId { id: DUT_CPU });
        let (sh, _ctl, rx) = pipeline_fixture();
        let svcs = sh.services.load();
        let mut w = uvs::pipeline::Worker::new(0, 1 << 22);
        let mut out = uvs::pipeline::fixture::VecEmit::counting();
        let f = uvs::pipeline::fixture::udp_frame(40000, 53, &[0u8; 18]);
        w.process(&sh, &svcs, 0, rx, &f, &mut out);
        let t = Instant::now();
        for _ in 0..100_000 {
            std::hint::black_box(w.process(&sh, &svcs, 1, rx, std::hint::black_box(&f), &mut out));
        }
        t.elapsed().as_secs_f64() * 1e3
    })
    .join()
    .unwrap_or(0.0)
}

/// `uvs blast`'s report: frames sent, seconds, new flows started (if it says).
fn parse_sent(text: &str) -> (u64, f64, Option<u64>) {
    let mut sent = 0;
    let mut secs = 0.0;
    let mut flows = None;
    for w in text.split_whitespace() {
        if let Some(v) = w.strip_prefix("sent=") {
            sent = v.parse().unwrap_or(0);
        } else if let Some(v) = w.strip_prefix("seconds=") {
            secs = v.parse().unwrap_or(0.0);
        } else if let Some(v) = w.strip_prefix("flows=") {
            flows = v.parse().ok();
        }
    }
    (sent, secs, flows)
}

/// A core's clock: how long it has been busy, exactly. /proc/stat's user, system
/// and softirq split is sampled at the tick (HZ 250 here), and the DUT's work phase-
/// locks with it (an RX ring's retire timer runs on jiffies): the same run then reads
/// 1 µs or 5 µs per packet depending on where the ticks fall. Idle time is exact
/// (cpuidle residency in µs; or /proc/stat's idle + iowait, which NO_HZ keeps
/// exactly too), so busy = wall clock - idle - steal. Everything else runs on the
/// generator's core, so what core 1 is busy with is the DUT's work.
#[derive(Clone, Copy)]
struct CoreClock {
    at: Instant,
    idle_ns: f64,
    steal_ns: f64,
}

impl CoreClock {
    fn read(cpu: usize) -> CoreClock {
        let at = Instant::now();
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let tag = format!("cpu{cpu} ");
        let v: Vec<f64> = stat
            .lines()
            .find(|l| l.starts_with(&tag))
            .map(|l| l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default();
        let field = |i: usize| v.get(i).copied().unwrap_or(0.0) * jiffy_ns();
        let mut idle_us = None;
        if let Ok(dir) = std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle")) {
            for e in dir.flatten() {
                if let Some(t) = std::fs::read_to_string(e.path().join("time"))
                    .ok()
                    .and_then(|t| t.trim().parse::<f64>().ok())
                {
                    *idle_us.get_or_insert(0.0) += t;
                }
            }
        }
        CoreClock {
            at,
            idle_ns: idle_us.map_or(field(3) + field(4), |us| us * 1e3),
            steal_ns: field(7),
        }
    }

    /// ns the core was busy between `earlier` and `self`.
    fn busy_since(&self, earlier: &CoreClock) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_nanos() as f64;
        (wall - (self.idle_ns - earlier.idle_ns) - (self.steal_ns - earlier.steal_ns)).max(0.0)
    }
}

/// utime + stime (jiffies) of the threads of `pid` named `name`.
fn thread_time(pid: u32, name: &str) -> u64 {
    let mut t = 0;
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    for e in dir.flatten() {
        let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(a), Some(b)) = (s.find('('), s.rfind(')')) else {
            continue;
        };
        if &s[a + 1..b] != name {
            continue;
        }
        let f: Vec<&str> = s[b + 2..].split_whitespace().collect();
        // Fields after the comm: state is [0]; utime and stime are fields 14, 15 of stat.
        t += f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        t += f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    }
    t
}

fn jiffy_ns() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1e9 / if hz > 0 { hz as f64 } else { 100.0 }
}

impl Harness {
    fn setup(cfg: Cfg) -> Result<Harness, String> {
        let mut bed = Testbed::new("pps");
        for h in ["gen", "dut", "s1", "s2"] {
            bed.add_host(h)?;
        }
        bed.link("gen", "eth0", "10.90.0.10/16", "dut", "eth0", "10.90.0.2/16")?;
        bed.link("dut", "eth1", "10.91.1.1/24", "s1", "eth0", "10.91.1.11/24")?;
        bed.link("dut", "eth2", "10.91.2.1/24", "s2", "eth0", "10.91.2.12/24")?;
        // A second input link, used only by the paired rows (the ceiling's input).
        bed.link("gen", "eth1", "10.92.0.10/24", "dut", "eth3", "10.92.0.2/24")?;
        let dut_mac = [bed.mac("dut", "eth0")?, bed.mac("dut", "eth3")?];
        let sink_mac = [bed.mac("s1", "eth0")?, bed.mac("s2", "eth0")?];
        // Receive processing: the DUT's on its core, the sinks' on the generator's.
        let dut_mask = format!("{:x}", 1u32 << DUT_CPU);
        let gen_mask = format!("{:x}", 1u32 << GEN_CPU);
        for (ns, ifs, mask) in [
            ("dut", &["eth0", "eth1", "eth2", "eth3"][..], &dut_mask),
            ("s1", &["eth0"][..], &gen_mask),
            ("s2", &["eth0"][..], &gen_mask),
            ("gen", &["eth0", "eth1"][..], &gen_mask),
        ] {
            for i in ifs {
                bed.exec(
                    ns,
                    &[
                        "sh",
                        "-c",
                        &format!("echo {mask} > /sys/class/net/{i}/queues/rx-0/rps_cpus"),
                    ],
                )?;
            }
        }
        for s in ["s1", "s2"] {
            nft(
                &bed,
                s,
                "table netdev sink {\n chain in {\n  type filter hook ingress device \"eth0\" priority 0;\n  meta protocol ip drop;\n }\n}\n",
            )?;
        }
        bed.sysctl("dut", "net.ipv4.conf.all.rp_filter", "0")?;
        bed.sysctl("dut", "net.ipv4.conf.default.rp_filter", "0")?;
        let log = std::env::temp_dir().join(format!("{}-dut.log", bed.prefix));
        Ok(Harness {
            bed,
            cfg,
            dut_mac,
            sink_mac,
            flow_offset: 0,
            dut_pid: None,
            log,
            machine: Vec::new(),
            sync: None,
        })
    }

    fn counter(&self, ns: &str, path: &str) -> u64 {
        self.bed
            .exec(ns, &["cat", path])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0))
            .unwrap_or(0)
    }

    fn sink_rx(&self) -> u64 {
        let p = "/sys/class/net/eth0/statistics/rx_packets";
        self.counter("s1", p) + self.counter("s2", p)
    }

    /// Wait until the sinks' counters stop moving (bounded), then return them.
    fn settled_rx(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = self.sink_rx();
        loop {
            std::thread::sleep(Duration::from_millis(30));
            let now = self.sink_rx();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    fn blast(&mut self, load: &Load, pps: f64, secs: f64, max: u64) -> (u64, f64) {
        let gen_ns = self.bed.ns("gen");
        let (p, s, m) = (format!("{}", pps as u64), format!("{secs}"), max.to_string());
        let off = self.flow_offset.to_string();
        let (per_flow, window) = (load.pkts_per_flow.to_string(), load.interleave.to_string());
        let mut args = vec![
            "taskset",
            "-c",
            "0",
            "ip",
            "netns",
            "exec",
            &gen_ns,
            UVS,
            "blast",
            "--iface",
            ["eth0", "eth1"][load.link],
            "--dst-mac",
            &self.dut_mac[load.link],
            "--src",
            "10.90.1.1",
            "--dst",
            &load.dst,
            "--pps",
            &p,
            "--seconds",
            &s,
            "--max-packets",
            &m,
        ];
        if load.new_flows {
            args.extend_from_slice(&["--new-flows", "--flow-offset", &off]);
            if load.pkts_per_flow > 1 {
                args.extend_from_slice(&["--pkts-per-flow", &per_flow, "--interleave", &window]);
            }
        }
        let out = self.bed.run(&args).unwrap_or_else(|e| panic!("blast: {e}"));
        let (sent, secs, flows) = parse_sent(&String::from_utf8_lossy(&out.stdout));
        if load.new_flows {
            let flows = flows.unwrap_or(sent);
            self.flow_offset += flows;
            if let Some(s) = self.sync.as_mut().filter(|s| s.on) {
                s.flows += flows;
            }
        }
        (sent, secs.max(1e-6))
    }

    /// One bounded run at `pps` offered (0 = unpaced).
    fn trial(&mut self, load: &Load, pps: f64, secs: f64) -> Trial {
        let before = self.sink_rx();
        let (c0, t0) = (
            CoreClock::read(DUT_CPU),
            load.extra_thread.map(|p| thread_time(p, "uvs-worker-1")),
        );
        let max = if pps > 0.0 {
            (pps * secs).ceil() as u64 + 1
        } else {
            100_000_000
        };
        let (sent, took) = self.blast(load, pps, secs, max);
        let got = self.settled_rx().saturating_sub(before);
        if let Some(s) = self.sync.as_mut().filter(|s| s.on) {
            s.delivered += got;
        }
        let mut busy = CoreClock::read(DUT_CPU).busy_since(&c0);
        // The second worker of the 2-worker rows runs on the generator's core: its own
        // (tick-sampled) time.
        if let (Some(p), Some(t0)) = (load.extra_thread, t0) {
            busy += thread_time(p, "uvs-worker-1").saturating_sub(t0) as f64 * jiffy_ns();
        }
        let t = Trial {
            offered: sent as f64 / took,
            delivered: got as f64 / took,
            loss: if sent == 0 {
                1.0
            } else {
                1.0 - got.min(sent) as f64 / sent as f64
            },
            cpu_ns: busy / got.max(1) as f64,
        };
        std::thread::sleep(Duration::from_millis(if self.cfg.quick { 50 } else { 150 }));
        t
    }

    /// The max loss-free rate of one DUT (see [`Bisect`]).
    fn mlr(&mut self, name: &str, group: &'static str, load: &Load) -> Row {
        let mut b = Bisect::new(self.cfg.steps);
        while let Some(pps) = b.next() {
            let t = self.trial(load, pps, self.cfg.trial_s);
            b.record(t);
        }
        b.row(name, group)
    }

    /// uvs (input dut eth0) and `against` (the ceiling, or the kernel's NAT, on input
    /// dut eth3) run at the same time, same sinks, and their bisections take turns
    /// trial by trial (who goes first alternates), `reps` times; then `reps` pairs of
    /// trials at one common rate below both MLRs compare CPU per packet. So each ratio
    /// comes from trials seconds apart, which matters on a VM whose speed drifts (see
    /// [`machine_sample`]). The idle side has its own input interface and costs the
    /// other nothing but a wake-up every 100 ms (uvs, the ceiling) or nothing (the
    /// kernel; uvs's own nftables rule keeps the kernel from forwarding uvs's traffic).
    fn paired(&mut self, name: &str, against: &'static str, new_flows: bool, reps: usize) -> Paired {
        let uvs_load = Load {
            link: 0,
            dst: format!("{VIP}:9"),
            new_flows,
            pkts_per_flow: 1,
            interleave: 1,
            extra_thread: None,
        };
        let other_load = Load {
            link: 1,
            ..uvs_load.clone()
        };
        self.in_turns(name, against, [&uvs_load, &other_load], reps, &mut |_, _| {})
    }

    /// The turns of [`Harness::paired`] for any two sides: side 0 (reported as uvs)
    /// and side 1 (`against`), `before(self, side)` called before each of the side's
    /// trials (the sync group starts or stops the sync master there).
    fn in_turns(
        &mut self,
        name: &str,
        against: &'static str,
        sides: [&Load; 2],
        reps: usize,
        before: &mut dyn FnMut(&mut Harness, usize),
    ) -> Paired {
        let mut p = Paired {
            name: name.to_string(),
            against,
            ..Default::default()
        };
        for rep in 0..reps {
            let mut b = [Bisect::new(self.cfg.steps), Bisect::new(self.cfg.steps)];
            self.machine.push(machine_sample());
            loop {
                let mut any = false;
                for k in [rep % 2, 1 - rep % 2] {
                    if let Some(pps) = b[k].next() {
                        before(self, k);
                        let t = self.trial(sides[k], pps, self.cfg.trial_s);
                        b[k].record(t);
                        any = true;
                    }
                }
                if !any {
                    break;
                }
            }
            p.mlr[0].push(b[0].best.unwrap_or_default().delivered);
            p.mlr[1].push(b[1].best.unwrap_or_default().delivered);
        }
        let common = 0.7 * median(&p.mlr[0]).min(median(&p.mlr[1]));
        for rep in 0..reps {
            for k in [rep % 2, 1 - rep % 2] {
                before(self, k);
                let t = self.trial(sides[k], common, self.cfg.trial_s);
                p.cpu[k].push(t.cpu_ns);
            }
        }
        p.common_pps = common;
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{:.0}k", x / 1e3))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "  paired {name:<21} MLR uvs {} / {against} {}; at {:.0}k CPU ns/pkt uvs {} / {against} {}",
            list(&p.mlr[0]),
            list(&p.mlr[1]),
            common / 1e3,
            p.cpu[0].iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" "),
            p.cpu[1].iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" "),
        );
        p
    }

    fn overload(&mut self, name: &str, load: &Load, mlr: f64) -> Overload {
        let mut o = Overload {
            name: name.to_string(),
            runs: Vec::new(),
            mlr,
        };
        for _ in 0..self.cfg.overload_runs {
            self.machine.push(machine_sample());
            let t = self.trial(load, 0.0, self.cfg.trial_s);
            o.runs.push(t.delivered);
        }
        let runs: Vec<String> = o.runs.iter().map(|r| format!("{:.0}k", r / 1e3)).collect();
        println!("  overload {name:<19} {}", runs.join(" "));
        o
    }

    /// Stop whatever runs in the DUT and put it back to plain (no forwarding, no
    /// rules, no static neighbours).
    fn reset_dut(&mut self) {
        if let Some(pid) = self.dut_pid.take() {
            self.bed.stop(pid);
        }
        let _ = self.bed.exec_any("dut", &["nft", "flush", "ruleset"]);
        let _ = self.bed.sysctl("dut", "net.ipv4.ip_forward", "0");
        for i in ["eth1", "eth2"] {
            let _ = self.bed.exec_any("dut", &["ip", "neigh", "flush", "dev", i]);
        }
    }

    fn spawn_dut(&mut self, args: &[&str], ready: &str) -> Result<u32, String> {
        let log = self.log.clone();
        let pid = self.spawn_logged(args, ready, &log)?;
        self.dut_pid = Some(pid);
        Ok(pid)
    }

    /// Start a process in the DUT with stderr to `log` and wait for `ready` there.
    fn spawn_logged(&mut self, args: &[&str], ready: &str, log: &std::path::Path) -> Result<u32, String> {
        let f = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let pid = self.bed.spawn("dut", args, Some(f))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(ready) {
                return Ok(pid);
            }
            if Instant::now() > deadline || text.lines().any(|l| l.starts_with("uvs: ") && !l.contains("warning")) {
                return Err(format!("DUT did not start: {text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kernel_setup(&mut self, nat: bool) -> Result<(), String> {
        self.reset_dut();
        self.kernel_config(nat, None)
    }

    /// Kernel forwarding (and NAT) in the DUT, for frames arriving on `iif` (any if
    /// `None`), beside whatever runs there.
    fn kernel_config(&mut self, nat: bool, iif: Option<&str>) -> Result<(), String> {
        self.bed.sysctl("dut", "net.ipv4.ip_forward", "1")?;
        for (i, (ip, mac)) in S_IP.iter().zip(&self.sink_mac).enumerate() {
            let dev = format!("eth{}", i + 1);
            self.bed.pin_neigh("dut", ip, mac, &dev)?;
        }
        if nat {
            let _ = self.bed.sysctl("dut", "net.netfilter.nf_conntrack_udp_timeout", "2");
            nft(
                &self.bed,
                "dut",
                &format!(
                    "table ip bench {{\n chain pre {{\n  type nat hook prerouting priority dstnat;\n  {}ip daddr {VIP} udp dport 9 dnat to numgen inc mod 2 map {{ 0 : {}, 1 : {} }};\n }}\n}}\n",
                    iif.map(|i| format!("iifname \"{i}\" ")).unwrap_or_default(),
                    S_IP[0],
                    S_IP[1]
                ),
            )?;
        }
        Ok(())
    }

    fn uvs_setup(&mut self, method: &str, workers: usize, extra: &[&str]) -> Result<u32, String> {
        self.reset_dut();
        let rules = std::env::temp_dir().join(format!("{}-rules", self.bed.prefix));
        std::fs::write(
            &rules,
            format!(
                "--set 0 0 2\n-A -u {VIP}:9 -s rr\n-a -u {VIP}:9 -r {}:9 {method}\n-a -u {VIP}:9 -r {}:9 {method}\n",
                S_IP[0], S_IP[1]
            ),
        )
        .map_err(|e| e.to_string())?;
        let r = rules.to_string_lossy().to_string();
        let w = workers.to_string();
        let cpus = if workers == 1 { "1" } else { "1,0" };
        let mut args = vec![
            UVS,
            "run",
            "--iface",
            "eth0",
            "--iface",
            "eth1",
            "--iface",
            "eth2",
            "--rules",
            &r,
            "--workers",
            &w,
            "--cpus",
            cpus,
            "--max-conns",
            "4194304",
        ];
        // Its own control socket (and so its own state file) unless the caller names
        // one: never the machine's /run/uvs/control.sock, whose state file another
        // director on this machine would read back at its start.
        let control = std::env::temp_dir().join(format!("{}-control.sock", self.bed.prefix));
        let control = control.to_string_lossy().to_string();
        if !extra.contains(&"--control") {
            // Each DUT starts from its rules, not from the last DUT's state file.
            let _ = std::fs::remove_file(std::path::Path::new(&control).with_extension("state"));
            args.extend_from_slice(&["--control", &control]);
        }
        args.extend_from_slice(extra);
        let pid = self.spawn_dut(&args, "director ready")?;
        Ok(pid)
    }

    fn warm(&mut self, load: &Load) {
        let _ = self.trial(load, 20_000.0, 0.05);
    }
    /// The sync group (issue 18: "sync must not slow the data path"): new UDP flows of
    /// `UVS_PPS_SYNC_PKTS` (default 3) packets, so that each reaches its 3rd packet,
    /// where the master queues its record (`sync_threshold` 3 50,
    /// `ip_vs_sync_conn_needed`); the flows' packets interleaved over
    /// `UVS_PPS_SYNC_WINDOW` (default 64) flows as on a real link, so a flow's packets
    /// are separate lookups, and at most that many flows of a trial end short of their
    /// 3rd. One uvs (`UVS_PPS_SYNC_MODE`: nat, the default and the hardest new-flow
    /// case, dr or tun; one worker), its sync master started and stopped through the
    /// control socket between trials: bisections with and without it taking turns trial
    /// by trial, `reps` times, as [`Harness::paired`]. Err if a run of the master sent
    /// nothing (then the ratio would measure nothing).
    fn sync_group(&mut self, reps: usize) -> Result<Paired, String> {
        let num = |name: &str, default: u32| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(default)
        };
        let pkts = num("UVS_PPS_SYNC_PKTS", 3);
        if pkts < 3 {
            return Err(format!(
                "UVS_PPS_SYNC_PKTS={pkts}: IPVS syncs a UDP connection at its 3rd packet; shorter flows sync nothing"
            ));
        }
        let window = num("UVS_PPS_SYNC_WINDOW", 64).max(1);
        let mode = std::env::var("UVS_PPS_SYNC_MODE").unwrap_or_else(|_| "nat".into());
        let (method, flag) = match mode.to_ascii_lowercase().as_str() {
            "nat" => ("NAT", "-m"),
            "dr" => ("DR", "-g"),
            "tun" => ("TUN", "-i"),
            other => return Err(format!("UVS_PPS_SYNC_MODE={other}: want nat, dr or tun")),
        };
        self.sync_link()?;
        self.sync_setup(flag)?;
        let load = Load {
            link: 0,
            dst: format!("{VIP}:9"),
            new_flows: true,
            pkts_per_flow: pkts,
            interleave: window,
            extra_thread: None,
        };
        // Warm both ways (the first start also proves the daemon starts at all).
        self.set_sync(true);
        self.warm(&load);
        self.set_sync(false);
        self.warm(&load);
        let name = format!("uvs {method} {pkts}-pkt flows sync");
        let p = self.in_turns(&name, "no sync", [&load, &load], reps, &mut |h, k| h.set_sync(k == 0));
        self.set_sync(false);
        let dut = self.sync.take().ok_or("sync group: no DUT")?;
        self.reset_dut();
        let far_rx = self.counter("sb", "/sys/class/net/eth0/statistics/rx_packets");
        let t = dut.total;
        let delivered_flows = dut.delivered / u64::from(pkts);
        println!(
            "  sync master ({method}, flows of {pkts} packets interleaved over {window}; {:.0}k flows/s at the MLR with \
             it): in {} runs it sent {} records in {} messages out of {SYNC_IF}, for {} flows offered and {} flows' \
             worth of frames delivered meanwhile ({:.1} % of those), queue drops {}, send errors {}; the sync link's \
             far end received {far_rx} frames",
            median(&p.mlr[0]) / f64::from(pkts) / 1e3,
            dut.stretches,
            t.conns,
            t.messages,
            dut.total_flows,
            delivered_flows,
            100.0 * t.conns as f64 / delivered_flows.max(1) as f64,
            t.queue_dropped,
            t.send_errors,
        );
        if t.conns == 0 || dut.silent > 0 {
            return Err(format!(
                "the sync master sent no record in {} of its {} runs ({} records in all): a ratio would measure nothing",
                dut.silent, dut.stretches, t.conns
            ));
        }
        Ok(p)
    }

    /// The sync group's link: DUT eth4 (10.93.0.2, the sync daemon's
    /// `--mcast-interface`) to a namespace that only counts what arrives, so the sync
    /// multicast leaves on a link that carries none of the measured traffic.
    fn sync_link(&mut self) -> Result<(), String> {
        self.bed.add_host("sb")?;
        self.bed
            .link("dut", SYNC_IF, "10.93.0.2/24", "sb", "eth0", "10.93.0.10/24")?;
        // As the sinks: its receive work on the generator's core, IP dropped at ingress.
        let gen_mask = format!("{:x}", 1u32 << GEN_CPU);
        self.bed.exec(
            "sb",
            &[
                "sh",
                "-c",
                &format!("echo {gen_mask} > /sys/class/net/eth0/queues/rx-0/rps_cpus"),
            ],
        )?;
        nft(
            &self.bed,
            "sb",
            "table netdev sink {\n chain in {\n  type filter hook ingress device \"eth0\" priority 0;\n  meta protocol ip drop;\n }\n}\n",
        )
    }

    /// uvs (`flag`: -g, -m, -i; one worker) with a control socket and `/metrics`, the
    /// sync master off; then [`Harness::set_sync`] turns it on and off.
    fn sync_setup(&mut self, flag: &str) -> Result<(), String> {
        let control = std::env::temp_dir().join(format!("{}-sync-control.sock", self.bed.prefix));
        // No table (or daemon) restored from an earlier run's state file.
        let _ = std::fs::remove_file(control.with_extension("state"));
        let c = control.to_string_lossy().to_string();
        self.uvs_setup(flag, 1, &["--control", &c, "--metrics", SYNC_METRICS])?;
        let mut dut = SyncDut {
            control,
            on: false,
            last: SyncCounters::default(),
            flows: 0,
            total: SyncCounters::default(),
            total_flows: 0,
            delivered: 0,
            stretches: 0,
            silent: 0,
        };
        dut.last = self.sync_counters();
        self.sync = Some(dut);
        Ok(())
    }

    fn sync_counters(&self) -> SyncCounters {
        let url = format!("http://{SYNC_METRICS}/metrics");
        // A few tries: the listener may come up just after "director ready".
        let mut last = String::new();
        for _ in 0..20 {
            match self.bed.exec("dut", &["curl", "-sf", "--max-time", "3", &url]) {
                Ok(page) => return SyncCounters::parse(&String::from_utf8_lossy(&page.stdout)),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sync group: scraping the DUT's /metrics: {last}")
    }

    /// Start or stop the DUT's sync master through its control socket, as an operator
    /// would (`ipvsadm --start-daemon master --mcast-interface eth4 --syncid 18`;
    /// `--stop-daemon master`). Each stop flushes the master's last message and
    /// accounts what it sent while it ran.
    fn set_sync(&mut self, on: bool) {
        let Some(dut) = self.sync.as_ref() else {
            return;
        };
        if dut.on == on {
            return;
        }
        let env = format!("UVS_CONTROL={}", dut.control.display());
        let mut args = vec!["env", &env, UVS, "adm"];
        if on {
            args.extend_from_slice(&[
                "--start-daemon",
                "master",
                "--mcast-interface",
                SYNC_IF,
                "--syncid",
                "18",
            ]);
        } else {
            args.extend_from_slice(&["--stop-daemon", "master"]);
        }
        if let Err(e) = self.bed.exec("dut", &args) {
            panic!("sync group: {e}");
        }
        let now = (!on).then(|| self.sync_counters());
        let Some(dut) = self.sync.as_mut() else {
            return;
        };
        dut.on = on;
        if let Some(now) = now {
            let d = now.since(&dut.last);
            dut.stretches += 1;
            if dut.flows > 0 && d.conns == 0 {
                dut.silent += 1;
            }
            dut.total.add(&d);
            dut.total_flows += dut.flows;
            dut.flows = 0;
            dut.last = now;
        }
    }
}

fn nft(bed: &Testbed, ns: &str, script: &str) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("{}-{ns}.nft", bed.prefix));
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    bed.exec(ns, &["nft", "-f", &path.to_string_lossy()]).map(|_| ())
}

/// Install nftables if it is missing (root only; the bench is not part of CI).
fn ensure_nft() -> bool {
    let have = || {
        std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if have() {
        return true;
    }
    eprintln!("pps: installing nftables (apt-get install -y nftables)");
    let _ = std::process::Command::new("sh")
        .args([
            "-c",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables >/dev/null 2>&1 \
             || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables) >/dev/null 2>&1",
        ])
        .status();
    have()
}

/// The pipeline's test director (UDP services: port 53 DR, 54 NAT, 55 TUN) and the
/// receive metadata of a frame from the client.
fn pipeline_fixture() -> (
    std::sync::Arc<uvs::pipeline::Shared>,
    uvs::ctl::Ctl,
    uvs::pipeline::RxMeta,
) {
    use uvs::pipeline::fixture::*;
    let rx = uvs::pipeline::RxMeta {
        ifindex: IFINDEX,
        pkttype: uvs::pipeline::pkttype::HOST,
        csum_partial: false,
        vlan_tci: None,
    };
    let rules = format!("{RULES_ALL}-A -u 10.0.0.100:55 -s rr\n-a -u 10.0.0.100:55 -r 10.0.0.12:55 -i -w 1\n");
    let (sh, ctl) = director_with(&rules);
    (sh, ctl, rx)
}

/// Per-packet cost of the pipeline alone (no sockets), ns: warmed loop, best of 5.
fn pipeline_costs() -> Vec<(&'static str, f64)> {
    use uvs::pipeline::Worker;
    use uvs::pipeline::fixture::*;
    let (sh, _ctl, rx) = pipeline_fixture();
    let svcs = sh.services.load();
    let mut out = VecEmit::counting();
    let mut res = Vec::new();
    for (name, port) in [("DR", 53u16), ("NAT", 54), ("TUN", 55)] {
        let mut w = Worker::new(0, 1 << 22);
        let f = udp_frame(40000, port, &[0u8; 18]);
        w.process(&sh, &svcs, 0, rx, &f, &mut out);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..200_000 {
                std::hint::black_box(w.process(&sh, &svcs, 1, rx, std::hint::black_box(&f), &mut out));
            }
            best = best.min(t.elapsed().as_nanos() as f64 / 200_000.0);
        }
        res.push((name, best));
    }
    for (name, port) in [("DR new flow", 53u16), ("NAT new flow", 54)] {
        let frames: Vec<Vec<u8>> = (0..200_000u32)
            .map(|i| {
                let mut f = udp_frame(1024 + (i % 60000) as u16, port, &[0u8; 18]);
                f[26..30].copy_from_slice(&(0xC000_0000u32 + i / 60000).to_be_bytes());
                f[24..26].copy_from_slice(&[0, 0]);
                let c = uvs::wire::checksum::checksum(&f[14..34]);
                f[24..26].copy_from_slice(&c.to_be_bytes());
                f
            })
            .collect();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let mut w = Worker::new(0, 1 << 22);
            let t = Instant::now();
            for f in &frames {
                std::hint::black_box(w.process(&sh, &svcs, 1, rx, f, &mut out));
            }
            best = best.min(t.elapsed().as_nanos() as f64 / frames.len() as f64);
        }
        res.push((name, best));
    }
    res
}

fn main() {
    if !uvs::testbed::is_root() {
        eprintln!("*** SKIPPED pps bench: needs root (namespaces, AF_PACKET) ***");
        return;
    }
    if !ensure_nft() {
        eprintln!("*** SKIPPED pps bench: needs nft (apt-get install nftables) ***");
        return;
    }
    if core_affinity::get_core_ids().unwrap_or_default().len() < 2 {
        eprintln!("*** SKIPPED pps bench: needs 2 cores ***");
        return;
    }
    let quick = std::env::var("PPS_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
    // PPS_ONLY=ceiling,kernel,dr,nat,tun,shed,copy,paired,sync: run only those groups (for
    // iterating on one number; the goals then compare with whatever ran).
    let only = std::env::var("PPS_ONLY").unwrap_or_default();
    let want = |g: &str| only.is_empty() || only.split(',').any(|x| x.trim().eq_ignore_ascii_case(g));
    let mut cfg = if quick {
        Cfg {
            quick,
            trial_s: 0.25,
            steps: 5,
            overload_runs: 3,
            paired_reps: 3,
        }
    } else {
        Cfg {
            quick,
            trial_s: 1.0,
            steps: 8,
            overload_runs: 5,
            paired_reps: 3,
        }
    };
    if let Some(s) = std::env::var("PPS_TRIAL_S").ok().and_then(|v| v.parse::<f64>().ok()) {
        cfg.trial_s = s.clamp(0.05, 10.0);
    }
    // The harness and every child it starts run on the generator's core; the DUT
    // pins itself to its own.
    core_affinity::set_for_current(core_affinity::CoreId { id: GEN_CPU });
    let started = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let costs = pipeline_costs();
    let mut h = match Harness::setup(cfg) {
        Ok(h) => h,
        Err(e) => panic!("pps: topology: {e}"),
    };
    println!(
        "pps harness ({} mode, {:.2} s trials, ≤ {} % loss, 64-byte UDP frames)",
        if quick { "quick" } else { "full" },
        cfg.trial_s,
        MAX_LOSS * 100.0
    );
    let vip = Load {
        link: 0,
        dst: format!("{VIP}:9"),
        new_flows: false,
        pkts_per_flow: 1,
        interleave: 1,
        extra_thread: None,
    };
    let vip_new = Load {
        new_flows: true,
        ..vip.clone()
    };

    // Generator ceiling: unpaced into the DUT with nothing listening; counted at the
    // DUT's own interface.
    h.reset_dut();
    let mut gen_pps = 0.0f64;
    let mut gen_delivered = 0.0f64;
    for _ in 0..3 {
        let p = "/sys/class/net/eth0/statistics/rx_packets";
        let before = h.counter("dut", p);
        let (sent, secs) = h.blast(&vip, 0.0, cfg.trial_s, 100_000_000);
        std::thread::sleep(Duration::from_millis(50));
        let got = h.counter("dut", p) - before;
        gen_pps = gen_pps.max(sent as f64 / secs);
        gen_delivered = gen_delivered.max(got as f64 / secs);
    }
    println!(
        "  generator ceiling            {:>7.0} kpps sent, {:.0} kpps received by the DUT",
        gen_pps / 1e3,
        gen_delivered / 1e3
    );
    let mut rows = vec![Row {
        name: "generator".into(),
        group: "gen",
        mlr: gen_delivered.min(gen_pps),
        ..Default::default()
    }];
    let mut overloads = Vec::new();

    // The ceiling.
    h.reset_dut();
    if want("ceiling") {
        let to1 = format!("eth1={}", h.sink_mac[0]);
        let to2 = format!("eth2={}", h.sink_mac[1]);
        h.spawn_dut(
            &[
                UVS, "ceiling", "--iface", "eth0", "--to", &to1, "--to", &to2, "--cpu", "1",
            ],
            "ceiling ready",
        )
        .expect("start ceiling");
        // The kernel's copy of every frame dropped at netdev ingress by exactly the
        // rule `uvs run` installs by default; then without it.
        let rules = uvs::director::kernelcopy::ruleset(
            "uvs_ceiling",
            &["eth0".to_string()],
            &[Ipv4Addr::new(10, 90, 0, 100)],
            &[],
        );
        nft(&h.bed, "dut", &rules).expect("ceiling: drop-copy rule");
        h.warm(&vip);
        let ceiling = h.mlr(CEILING, "ceiling", &vip);
        overloads.push(h.overload("ceiling", &vip, ceiling.mlr));
        rows.push(ceiling);
        let _ = h.bed.exec_any("dut", &["nft", "flush", "ruleset"]);
        h.warm(&vip);
        let ceiling = h.mlr(CEILING_KEPT, "ceiling", &vip);
        overloads.push(h.overload("ceiling copy kept", &vip, ceiling.mlr));
        rows.push(ceiling);
    }

    // Kernel forwarding and NAT.
    if want("kernel") {
        h.kernel_setup(false).expect("kernel forwarding");
        let kfwd = Load {
            dst: format!("{}:9", S_IP[0]),
            ..vip.clone()
        };
        h.warm(&kfwd);
        rows.push(h.mlr("kernel forwarding", "kfwd", &kfwd));
        h.kernel_setup(true).expect("kernel NAT");
        h.warm(&vip);
        rows.push(h.mlr("kernel NAT (nft DNAT) 1 flow", "knat", &vip));
        rows.push(h.mlr("kernel NAT new flow/pkt", "knat_new", &vip_new));
    }

    // uvs.
    for (method, flag) in [("DR", "-g"), ("NAT", "-m"), ("TUN", "-i")] {
        if !want(method) {
            continue;
        }
        for workers in [1usize, 2] {
            let pid = match h.uvs_setup(flag, workers, &[]) {
                Ok(p) => p,
                Err(e) => panic!("uvs {method}: {e}"),
            };
            let extra = (workers == 2).then_some(pid);
            let one = Load {
                extra_thread: extra,
                ..vip.clone()
            };
            let new = Load {
                extra_thread: extra,
                ..vip_new.clone()
            };
            h.warm(&one);
            let r = h.mlr(&format!("uvs {method} {workers}w 1 flow"), "uvs", &one);
            if workers == 1 {
                overloads.push(h.overload(&format!("uvs {method}"), &one, r.mlr));
            }
            rows.push(r);
            rows.push(h.mlr(&format!("uvs {method} {workers}w new flow/pkt"), "uvs_new", &new));
        }
    }
    // One worker with one option: overload shedding (`--xdp-shed`: what the XDP
    // program costs at the loss-free rate and buys under overload); the kernel's copy
    // left to the kernel (`--keep-kernel-copy`, against the ceiling without the rule).
    for (group, option, label, new_flow) in [
        ("shed", "--xdp-shed", "xdp shed", false),
        ("copy", "--keep-kernel-copy", "copy kept", true),
    ] {
        for (method, flag) in [("DR", "-g"), ("NAT", "-m"), ("TUN", "-i")] {
            if !want(group) && !want(method) {
                continue;
            }
            if let Err(e) = h.uvs_setup(flag, 1, &[option]) {
                panic!("uvs {method} {option}: {e}");
            }
            h.warm(&vip);
            let r = h.mlr(&format!("uvs {method} 1w 1 flow, {label}"), "uvs", &vip);
            overloads.push(h.overload(&format!("uvs {method} {label}"), &vip, r.mlr));
            rows.push(r);
            if new_flow {
                rows.push(h.mlr(&format!("uvs {method} 1w new flow/pkt, {label}"), "uvs_new", &vip_new));
            }
        }
    }
    // uvs beside the ceiling, in turns (see `Harness::paired`).
    let mut paired = Vec::new();
    if want("paired") {
        h.reset_dut();
        let to1 = format!("eth1={}", h.sink_mac[0]);
        let to2 = format!("eth2={}", h.sink_mac[1]);
        let log = std::env::temp_dir().join(format!("{}-ceiling.log", h.bed.prefix));
        let ceiling = h
            .spawn_logged(
                &[
                    UVS, "ceiling", "--iface", "eth3", "--to", &to1, "--to", &to2, "--cpu", "1",
                ],
                "ceiling ready",
                &log,
            )
            .expect("start ceiling on eth3");
        let copy_rule = uvs::director::kernelcopy::ruleset(
            "uvs_ceiling",
            &["eth3".to_string()],
            &[Ipv4Addr::new(10, 90, 0, 100)],
            &[],
        );
        let other_link = Load { link: 1, ..vip.clone() };
        for (method, flag) in [("DR", "-g"), ("NAT", "-m"), ("TUN", "-i")] {
            // uvs_setup flushes the DUT's ruleset: the ceiling's rule goes back after.
            h.uvs_setup(flag, 1, &[])
                .unwrap_or_else(|e| panic!("uvs {method}: {e}"));
            nft(&h.bed, "dut", &copy_rule).expect("ceiling: drop-copy rule");
            h.warm(&vip);
            h.warm(&other_link);
            paired.push(h.paired(&format!("uvs {method}"), "ceiling", false, cfg.paired_reps));
        }
        h.reset_dut();
        h.bed.stop(ceiling);
        // uvs NAT beside the kernel's NAT (nftables DNAT on eth3), a new flow per frame.
        // uvs's own rule keeps the kernel from forwarding uvs's VIP traffic too.
        h.uvs_setup("-m", 1, &[]).unwrap_or_else(|e| panic!("uvs NAT: {e}"));
        h.kernel_config(true, Some("eth3")).expect("kernel NAT on eth3");
        h.warm(&vip);
        h.warm(&other_link);
        paired.push(h.paired("uvs NAT new flow/pkt", "kernel NAT", true, cfg.paired_reps));
        h.reset_dut();
    }
    // The sync master's cost on new flows of 3 packets, with and without it in turns.
    let mut sync_failed = None;
    if want("sync") {
        match h.sync_group(cfg.paired_reps) {
            Ok(p) => paired.push(p),
            Err(e) => {
                eprintln!("*** FAILED sync group: {e} ***");
                sync_failed = Some(e);
            }
        }
    }
    h.reset_dut();
    let machine = std::mem::take(&mut h.machine);
    drop(h);

    report(
        &rows,
        &overloads,
        &paired,
        &machine,
        &costs,
        gen_pps,
        cfg,
        started.elapsed(),
    );
    // Other work on the machine skews everything: say how busy it was.
    let load_at_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at start: {}; at end: {} (the harness itself keeps about 1-2 busy; more means other work ran)",
        load_at_start.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        load_at_end.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    if let Some(e) = sync_failed {
        eprintln!("*** FAILED sync group: {e} (no sync row reported) ***");
        std::process::exit(1);
    }
}

const CEILING: &str = "ceiling (AF_PACKET fwd)";
const CEILING_KEPT: &str = "ceiling, copy kept";

fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.name == name)
}

#[allow(clippy::too_many_arguments)]
fn report(
    rows: &[Row],
    overloads: &[Overload],
    paired: &[Paired],
    machine: &[f64],
    costs: &[(&str, f64)],
    gen_pps: f64,
    cfg: Cfg,
    took: Duration,
) {
    let ceiling = find(rows, CEILING).map_or(0.0, |r| r.mlr);
    let ceiling_kept = find(rows, CEILING_KEPT).map_or(0.0, |r| r.mlr);
    // Each row against the ceiling that treats the kernel's copy the same way.
    let ceiling_for = |r: &Row| {
        if r.name.ends_with("copy kept") {
            ceiling_kept
        } else {
            ceiling
        }
    };
    let knat = find(rows, "kernel NAT (nft DNAT) 1 flow").map_or(0.0, |r| r.mlr);
    let knat_new = find(rows, "kernel NAT new flow/pkt").map_or(0.0, |r| r.mlr);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!();
    println!(
        "{:<30} {:>9} {:>8} {:>9} {:>8} {:>10}",
        "MLR (≤ 0.5 % loss)", "kpps", "Mbit/s", "/ceiling", "/kNAT", "CPU ns/pkt"
    );
    let mut json = String::from("{\n  \"rows\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let base_nat = if r.group.ends_with("_new") { knat_new } else { knat };
        let note = if r.gen_bound { "  (generator-bound)" } else { "" };
        let cpu = if r.cpu_ns > 0.0 {
            format!("{:.0}", r.cpu_ns)
        } else {
            "-".into()
        };
        println!(
            "{:<30} {:>9.0} {:>8.0} {:>9.2} {:>8.2} {:>10}{note}",
            r.name,
            r.mlr / 1e3,
            r.mlr * BITS_PER_FRAME / 1e6,
            ratio(r.mlr, ceiling_for(r)),
            ratio(r.mlr, base_nat),
            cpu
        );
        let _ = writeln!(
            json,
            "    {{\"name\": \"{}\", \"pps\": {:.0}, \"mbit_s\": {:.1}, \"ratio_ceiling\": {:.4}, \"ratio_kernel_nat\": {:.4}, \"cpu_ns_per_pkt\": {:.1}, \"trials\": {}, \"generator_bound\": {}}}{}",
            r.name,
            r.mlr,
            r.mlr * BITS_PER_FRAME / 1e6,
            ratio(r.mlr, ceiling_for(r)),
            ratio(r.mlr, base_nat),
            r.cpu_ns,
            r.trials,
            r.gen_bound,
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    json += "  ],\n  \"overload\": [\n";
    println!();
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>10} {:>9}",
        "overload (unpaced)", "mean kpps", "min", "max", "variation", "/own MLR"
    );
    for (i, o) in overloads.iter().enumerate() {
        let min = o.runs.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = o.runs.iter().cloned().fold(0.0, f64::max);
        println!(
            "{:<22} {:>10.0} {:>9.0} {:>9.0} {:>9.1}% {:>9.2}",
            o.name,
            o.mean() / 1e3,
            min / 1e3,
            max / 1e3,
            o.variation() * 100.0,
            ratio(o.mean(), o.mlr)
        );
        let runs: Vec<String> = o.runs.iter().map(|r| format!("{r:.0}")).collect();
        let _ = writeln!(
            json,
            "    {{\"name\": \"{}\", \"runs_pps\": [{}], \"mean_pps\": {:.0}, \"variation\": {:.4}, \"ratio_own_mlr\": {:.4}}}{}",
            o.name,
            runs.join(", "),
            o.mean(),
            o.variation(),
            ratio(o.mean(), o.mlr),
            if i + 1 < overloads.len() { "," } else { "" }
        );
    }
    json += "  ],\n  \"paired\": [\n";
    if !paired.is_empty() {
        println!();
        println!(
            "{:<34} {:>8} {:>10} {:>8} {:>12} {:>10}",
            "paired, in turns", "uvs MLR", "other MLR", "uvs/other", "CPU at kpps", "other/uvs"
        );
    }
    for (i, p) in paired.iter().enumerate() {
        println!(
            "{:<34} {:>8.0} {:>10.0} {:>8.2} {:>12.0} {:>10.2}",
            format!("{} / {}", p.name, p.against),
            median(&p.mlr[0]) / 1e3,
            median(&p.mlr[1]) / 1e3,
            p.mlr_ratio(),
            p.common_pps / 1e3,
            p.cpu_ratio()
        );
        let list = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            json,
            "    {{\"name\": \"{}\", \"against\": \"{}\", \"mlr_uvs_pps\": [{}], \"mlr_other_pps\": [{}], \"ratio\": {:.4}, \"common_pps\": {:.0}, \"cpu_ns_uvs\": [{}], \"cpu_ns_other\": [{}], \"cpu_ratio_other_over_uvs\": {:.4}}}{}",
            p.name,
            p.against,
            list(&p.mlr[0]),
            list(&p.mlr[1]),
            p.mlr_ratio(),
            p.common_pps,
            list(&p.cpu[0]),
            list(&p.cpu[1]),
            p.cpu_ratio(),
            if i + 1 < paired.len() { "," } else { "" }
        );
    }
    if !paired.is_empty() {
        println!("(uvs/other: median over repetitions of uvs's MLR / the other's, taken in turns; other/uvs: the");
        println!(" other's CPU per packet / uvs's at the common rate, median over pairs; ≥ 1.0 = uvs no dearer)");
    }
    let machine_var = if machine.is_empty() {
        0.0
    } else {
        let max = machine.iter().cloned().fold(0.0, f64::max);
        let min = machine.iter().cloned().fold(f64::INFINITY, f64::min);
        (max - min) / (machine.iter().sum::<f64>() / machine.len() as f64)
    };
    if !machine.is_empty() {
        println!();
        println!(
            "machine reference (the DR pipeline loop, 100 000 frames on the DUT's idle core, {} samples): \
             median {:.1} ms, min {:.1}, max {:.1}, variation {:.1} %",
            machine.len(),
            median(machine),
            machine.iter().cloned().fold(f64::INFINITY, f64::min),
            machine.iter().cloned().fold(0.0, f64::max),
            machine_var * 100.0
        );
    }
    let _ = write!(
        json,
        "  ],\n  \"machine_reference_ms\": [{}],\n  \"pipeline_ns_per_pkt\": {{",
        machine.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
    );
    println!();
    println!("pipeline alone (no sockets, ns/pkt): {}", {
        let v: Vec<String> = costs.iter().map(|(n, c)| format!("{n} {c:.0}")).collect();
        v.join(", ")
    });
    let c: Vec<String> = costs.iter().map(|(n, v)| format!("\"{n}\": {v:.1}")).collect();
    json += &c.join(", ");
    let _ = write!(
        json,
        "}},\n  \"generator_pps\": {gen_pps:.0},\n  \"quick\": {},\n  \"trial_seconds\": {},\n  \"cores\": {}\n}}\n",
        cfg.quick,
        cfg.trial_s,
        core_affinity::get_core_ids().unwrap_or_default().len()
    );

    // Goals of issue 8.
    println!();
    let get = |n: &str| find(rows, n).map_or(0.0, |r| r.mlr);
    let goal = |name: &str, value: f64, target: f64| {
        println!(
            "goal {name:<44} {value:>6.2} (want ≥ {target:.2}) {}",
            if value >= target { "met" } else { "NOT met" }
        );
    };
    for (m, want) in [("DR", 0.95), ("NAT", 0.85), ("TUN", 0.85)] {
        goal(
            &format!("{m} / ceiling"),
            ratio(get(&format!("uvs {m} 1w 1 flow")), ceiling),
            want,
        );
        goal(
            &format!("{m} copy kept / ceiling copy kept"),
            ratio(get(&format!("uvs {m} 1w 1 flow, copy kept")), ceiling_kept),
            want,
        );
    }
    goal(
        "NAT new flow/pkt / kernel NAT new flow/pkt",
        ratio(get("uvs NAT 1w new flow/pkt"), knat_new),
        1.5,
    );
    goal(
        "NAT new flow/pkt copy kept / kernel NAT new",
        ratio(get("uvs NAT 1w new flow/pkt, copy kept"), knat_new),
        1.5,
    );
    for p in paired {
        let want = match (p.against, p.name.ends_with("DR")) {
            ("kernel NAT", _) => 1.5,
            ("no sync", _) => 0.9,
            (_, true) => 0.95,
            _ => 0.85,
        };
        goal(&format!("{} / {}, paired", p.name, p.against), p.mlr_ratio(), want);
    }
    for o in overloads.iter().filter(|o| o.name.starts_with("uvs")) {
        goal(&format!("overload {} / own MLR", o.name), ratio(o.mean(), o.mlr), 0.9);
        println!(
            "goal {:<44} {:>5.1}% (want < 10 %) {}; machine reference: {:.1} %",
            format!("overload {} run-to-run variation", o.name),
            o.variation() * 100.0,
            if o.variation() < 0.1 { "met" } else { "NOT met" },
            machine_var * 100.0
        );
    }
    for m in ["DR", "NAT", "TUN"] {
        let two = get(&format!("uvs {m} 2w new flow/pkt"));
        let one = get(&format!("uvs {m} 1w new flow/pkt"));
        println!(
            "goal {:<44} {:>6.2} (want ≥ 1.80; on 2 cores the second worker shares the generator's core)",
            format!("{m} 2 workers / 1 worker (new flows)"),
            ratio(two, one)
        );
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pps.json");
    match std::fs::write(path, json) {
        Ok(()) => println!("\nwrote {path} ({:.0} s)", took.as_secs_f64()),
        Err(e) => eprintln!("pps: cannot write {path}: {e}"),
    }
}
