//! ipvsadm invocations against a live table (no workers): outputs, every error path and
//! its exit status, `-R` semantics, the `-S -n` / `-R` round trip, `-Z` and rates.

use std::sync::Arc;
use std::time::Instant;

use super::{Hub, Reply, execute};
use crate::ctl::Ctl;
use crate::ipvsadm::{TRY_HELP, VERSION_LINE};
use crate::pipeline::Shared;

fn hub() -> Hub {
    Hub::new(Arc::new(Ctl::new(Arc::new(Shared::new(vec![])))), Instant::now())
}

fn run(h: &Hub, line: &str) -> Reply {
    let words: Vec<&str> = line.split_whitespace().collect();
    execute(h, &words, Some(""))
}

fn ok(h: &Hub, line: &str) -> String {
    let r = run(h, line);
    assert_eq!((r.code, r.err.as_str()), (0, ""), "{line}");
    r.out
}

/// `line` fails with exactly `err` (one line) and `code`, printing nothing on stdout.
fn fails(h: &Hub, line: &str, code: i32, err: &str) {
    let r = run(h, line);
    assert_eq!(
        (r.code, r.err.as_str(), r.out.as_str()),
        (code, format!("{err}\n").as_str(), ""),
        "{line}"
    );
}

fn restore(h: &Hub, input: &str) -> Reply {
    execute(h, &["-R"], Some(input))
}

const SEED_LIST: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.40.17:80 rr persistent 20
  -> 192.168.41.31:80             Route   10     0          0         
  -> 192.168.41.33:80             Route   10     0          0         
";

#[test]
fn the_seed_tutorial_session() {
    let h = hub();
    ok(&h, "-C");
    ok(&h, "-A -t 192.168.40.17:80 -s rr -p 20");
    ok(&h, "-a -t 192.168.40.17:80 -r 192.168.41.31:80 -g -w 10");
    ok(&h, "-a -t 192.168.40.17:80 -r 192.168.41.33:80 -g -w 10");
    assert_eq!(ok(&h, "-L -n"), SEED_LIST);
    assert_eq!(ok(&h, "-ln"), SEED_LIST);
    assert_eq!(
        ok(&h, "-S -n"),
        "-A -t 192.168.40.17:80 -s rr -p 20\n\
         -a -t 192.168.40.17:80 -r 192.168.41.31:80 -g -w 10\n\
         -a -t 192.168.40.17:80 -r 192.168.41.33:80 -g -w 10\n"
    );
    ok(&h, "-D -t 192.168.40.17:80");
    assert_eq!(
        ok(&h, "-L -n"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    );
}

#[test]
fn kernel_errors_exit_255_and_leave_the_table_untouched() {
    let h = hub();
    ok(&h, "-A -t 10.0.0.1:80 -s rr");
    ok(&h, "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 2 -x 10 -y 5");
    let before = ok(&h, "-L -n --thresholds");
    let save = ok(&h, "-S -n");
    fails(&h, "-A -t 10.0.0.1:80 -s wlc", 255, "Service already exists");
    fails(
        &h,
        "-A -t 10.0.0.2:80 -s nosuch",
        255,
        "Scheduler or persistence engine not found",
    );
    fails(
        &h,
        "-E -t 10.0.0.1:80 -s nosuch",
        255,
        "Scheduler or persistence engine not found",
    );
    fails(&h, "-E -t 10.0.0.9:80 -s rr", 255, "No such service");
    fails(&h, "-D -t 10.0.0.9:80", 255, "No such service");
    fails(&h, "-Z -t 10.0.0.9:80", 255, "No such service");
    fails(&h, "-a -t 10.0.0.9:80 -r 10.0.1.1", 255, "Service not defined");
    fails(&h, "-e -t 10.0.0.9:80 -r 10.0.1.1", 255, "Service not defined");
    fails(&h, "-d -t 10.0.0.9:80 -r 10.0.1.1", 255, "Service not defined");
    fails(
        &h,
        "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m",
        255,
        "Destination already exists",
    );
    fails(&h, "-e -t 10.0.0.1:80 -r 10.0.1.2:80 -m", 255, "No such destination");
    fails(&h, "-d -t 10.0.0.1:80 -r 10.0.1.2:80", 255, "No such destination");
    fails(
        &h,
        "-e -t 10.0.0.1:80 -r 10.0.1.1:80 -m -x 1 -y 5",
        255,
        "Numerical result out of range",
    );
    // Listing a missing service: exit 1.
    fails(&h, "-L -n -t 10.0.0.9:80", 1, "No such service");
    // Without workers there is nothing to sync: a refusal in ipvsadm's shape.
    fails(
        &h,
        "--start-daemon master",
        255,
        "Operation not supported: this director has no workers to sync",
    );
    fails(&h, "--stop-daemon master", 255, "No daemon is running");
    assert_eq!(ok(&h, "-L -n --thresholds"), before);
    assert_eq!(ok(&h, "-S -n"), save);
    assert_eq!(ok(&h, "-L --daemon"), "");
}

#[test]
fn parse_errors_exit_2_or_255_and_change_nothing() {
    let h = hub();
    ok(&h, "-A -t 10.0.0.1:80 -s rr");
    let save = ok(&h, "-S -n");
    fails(
        &h,
        "-A -t 10.0.0.2 -s rr",
        2,
        "Zero port specified for non-persistent service",
    );
    fails(
        &h,
        "-A -t 10.0.0.2:80 -s rr -s wlc",
        2,
        "multiple 'scheduler' options specified",
    );
    fails(&h, "-A -t 10.0.0.2:80 -D", 2, "multiple commands specified");
    fails(
        &h,
        "-A -t 10.0.0.2:80 -r 10.0.1.1",
        2,
        "Illegal 'real-server' option with the 'add-service' command",
    );
    fails(
        &h,
        "-a -t 10.0.0.1:80",
        2,
        "You need to supply the 'real-server' option for the 'add-server' command",
    );
    fails(
        &h,
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -w 70000",
        2,
        "illegal weight specified",
    );
    fails(
        &h,
        "-A -t 10.0.0.999:80",
        2,
        "illegal virtual server address[:port] specified",
    );
    fails(
        &h,
        "-A -u 10.0.0.2:53 -o -p x",
        2,
        "invalid timeout value `x' specified",
    );
    fails(
        &h,
        "-A -t 10.0.0.2:80 -o",
        2,
        "One-Packet Scheduling is only for UDP virtual services",
    );
    fails(&h, "-L -c --stats", 2, "options conflicts in the list command");
    fails(&h, "--set 1 2", 2, "--set option requires 3 timeout values");
    fails(&h, "-L extra", 2, "unexpected argument extra");
    fails(&h, "-nL", 255, TRY_HELP);
    fails(&h, "-L --bogus", 255, "--bogus: unknown option");
    assert_eq!(ok(&h, "-S -n"), save);
}

#[test]
fn help_version_timeouts() {
    let h = hub();
    let r = run(&h, "-h");
    assert_eq!(r.code, 0);
    assert!(
        r.out
            .starts_with(&format!("{VERSION_LINE}\nUsage:\n  ipvsadm -A|E virtual-service"))
    );
    assert_eq!(ok(&h, "-v"), format!("{VERSION_LINE}\n"));
    assert_eq!(ok(&h, "-L --timeout"), "Timeout (tcp tcpfin udp): 900 120 300\n");
    ok(&h, "--set 100 0 30");
    assert_eq!(ok(&h, "-L --timeout"), "Timeout (tcp tcpfin udp): 100 120 30\n");
    // No workers: the connection list is just its header.
    assert_eq!(
        ok(&h, "-L -n -c"),
        "IPVS connection entries\npro expire state       source             virtual            destination\n"
    );
}

/// A table using every rule feature `-S` writes.
const RICH: &str = "\
-A -t 192.168.10.100:80 -s wlc
-a -t 192.168.10.100:80 -r 192.168.10.11:80 -g -w 1
-a -t 192.168.10.100:80 -r 192.168.10.12:80 -g -w 2
-A -t 192.168.10.100:443 -s rr -p 360 -M 255.255.255.0
-a -t 192.168.10.100:443 -r 10.0.0.5:8443 -m -w 1
-A -u 192.168.10.100:53 -s rr -o
-a -u 192.168.10.100:53 -r 192.168.10.13:53 -g -w 0
-A -t [2001:db8::80]:80 -s wlc
-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1
-A -f 1 -s sh -b sh-port
-a -f 1 -r 192.168.10.11:0 -i -w 1 --tun-type ipip
-A -f 2 -s mh -b mh-fallback,mh-port
-a -f 2 -r 192.168.10.12:0 -i -w 3 --tun-type gue --tun-port 6080 --tun-csum
-a -f 2 -r 192.168.10.14:0 -i -w 3 --tun-type gre --tun-nocsum
";

#[test]
fn save_then_restore_reproduces_the_table() {
    let a = hub();
    let r = restore(&a, RICH);
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    let saved = ok(&a, "-S -n");
    assert_eq!(saved, RICH, "-S -n writes the reference's example back");
    let b = hub();
    let r = restore(&b, &saved);
    assert_eq!((r.code, r.err.as_str()), (0, ""));
    assert_eq!(ok(&b, "-S -n"), saved);
    assert_eq!(ok(&b, "-L -n"), ok(&a, "-L -n"));
    // ipvsadm-save | ipvsadm-restore shape: "ipvsadm" prefixes and CRLF are fine too.
    let c = hub();
    let dos: String = saved.lines().map(|l| format!("ipvsadm {l}\r\n")).collect();
    assert_eq!(restore(&c, &dos).code, 0);
    assert_eq!(ok(&c, "-S -n"), saved);
}

#[test]
fn restore_line_semantics() {
    let h = hub();
    // Kernel errors are printed and the restore goes on; the status is the last line's.
    let r = restore(
        &h,
        "# comment (uvs extension)\n\n-A -t 10.0.0.1:80 -s rr\n-A -t 10.0.0.1:80 -s rr\n\
         -a -t 10.0.0.1:80 -r 10.0.1.1\n",
    );
    assert_eq!((r.code, r.err.as_str()), (0, "Service already exists\n"));
    let r = restore(&h, "-a -t 10.0.0.1:80 -r 10.0.1.1\n");
    assert_eq!((r.code, r.err.as_str()), (255, "Destination already exists\n"));
    // A parse error ends the restore there; earlier lines stay applied.
    let r = restore(&h, "-A -t 10.0.0.2:80 -s rr\n-A -t 10.0.0.3 -s rr\n-A -t 10.0.0.4:80\n");
    assert_eq!(
        (r.code, r.err.as_str()),
        (2, "Zero port specified for non-persistent service\n")
    );
    let save = ok(&h, "-S -n");
    assert!(save.contains("10.0.0.2:80") && !save.contains("10.0.0.4"), "{save}");
    // -R inside -R is refused with the usage hint (exit 255), ending the restore.
    let r = restore(&h, "-R\n-A -t 10.0.0.5:80\n");
    assert_eq!((r.code, r.err.as_str()), (255, format!("{TRY_HELP}\n").as_str()));
    assert!(!ok(&h, "-S -n").contains("10.0.0.5"));
    // Listing lines print, as with ipvsadm.
    let r = restore(&h, "-L -n --timeout\n-C\n");
    assert_eq!((r.code, r.out.as_str()), (0, "Timeout (tcp tcpfin udp): 900 120 300\n"));
    assert_eq!(ok(&h, "-S -n"), "");
}

#[test]
fn edit_commands_reset_unspecified_options() {
    let h = hub();
    ok(&h, "-A -t 10.0.0.1:80 -s rr -p 60");
    ok(&h, "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 5 -x 100 -y 50");
    ok(&h, "-E -t 10.0.0.1:80 -p 600");
    ok(&h, "-e -t 10.0.0.1:80 -r 10.0.1.1:80 -w 3");
    // Scheduler back to wlc; method back to -g, thresholds back to 0.
    assert_eq!(
        ok(&h, "-S -n"),
        "-A -t 10.0.0.1:80 -s wlc -p 600\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 3\n"
    );
    assert_eq!(
        ok(&h, "-L -n --thresholds"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n\
         \x20 -> RemoteAddress:Port\n\
         TCP  10.0.0.1:80 wlc persistent 600\n\
         \x20 -> 10.0.1.1:80                  0          0          0          0         \n"
    );
    // -g/-i force the real port to the virtual port: :8080 names the same server.
    ok(&h, "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -g -w 4");
    fails(
        &h,
        "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -i",
        255,
        "Destination already exists",
    );
    // With -m a different port is another server.
    fails(&h, "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m", 255, "No such destination");
}

#[test]
fn stats_rates_and_zero() {
    let h = hub();
    ok(&h, "-A -u 10.0.0.1:53 -s rr");
    ok(&h, "-a -u 10.0.0.1:53 -r 10.0.1.1 -m");
    let table = h.ctl.shared().services.load();
    let svc = table.services()[0].clone();
    let dest = svc.lock().dests[0].clone();
    h.rates.sample(&table);
    for w in 0..4 {
        for _ in 0..250 {
            svc.stats.inbound(w, 100);
            dest.stats.inbound(w, 100);
            svc.stats.outbound(w, 50);
            dest.stats.outbound(w, 50);
        }
        svc.stats.conn(w);
        dest.stats.conn(w);
    }
    h.rates.sample(&table);
    assert_eq!(
        ok(&h, "-L -n --stats"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
         \x20 -> RemoteAddress:Port\n\
         UDP  10.0.0.1:53                         4     1000     1000   100000    50000\n\
         \x20 -> 10.0.1.1:53                         4     1000     1000   100000    50000\n"
    );
    // One interval of 1000 packets: 1000/2 s · 1/4 = 125 pkt/s; 100 kB → 12500 B/s;
    // 4 connections: (4 << 9 >> 2) = 512 rounds to 0 conn/s.
    assert_eq!(
        ok(&h, "-L -n --rate"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n\
         \x20 -> RemoteAddress:Port\n\
         UDP  10.0.0.1:53                         0      125      125    12500     6250\n\
         \x20 -> 10.0.1.1:53                         0      125      125    12500     6250\n"
    );
    ok(&h, "-Z");
    let z = ok(&h, "-L -n --stats --exact");
    assert!(
        z.ends_with(
            "UDP  10.0.0.1:53                         0        0        0        0        0\n\
         \x20 -> 10.0.1.1:53                         0        0        0        0        0\n"
        ),
        "{z}"
    );
    let r = ok(&h, "-L -n --rate");
    assert!(r.ends_with("       0        0        0        0        0\n"), "{r}");
    ok(&h, "-Z -u 10.0.0.1:53");
}

/// One grammar for rules files (`--rules`, `uvs check`) and `-R`: whatever the rules
/// parser accepts restores to the same table, trailing comments included.
#[test]
fn restore_reads_the_rules_file_grammar() {
    let text = "# saved by hand\n\
                ipvsadm -A -t 10.0.0.1:80 -s wlc   # the web VIP\r\n\
                \t# indented comment\n\
                -a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 2 #no space needed after #\n\
                -a -t 10.0.0.1:80 -r 10.0.1.2:80 -g\t#tab before\n\
                \n\
                --set 900 60 300 # timeouts\n";
    let loaded = hub();
    let rules = crate::ipvsadm::parse_rules(text).expect("rules grammar");
    assert_eq!(rules.len(), 4);
    for (_, cmd) in &rules {
        loaded.ctl.apply(cmd).unwrap();
    }
    let restored = hub();
    let r = restore(&restored, text);
    assert_eq!((r.code, r.err.as_str(), r.out.as_str()), (0, "", ""));
    assert_eq!(ok(&restored, "-S -n"), ok(&loaded, "-S -n"));
    assert_eq!(
        ok(&restored, "-S -n"),
        "-A -t 10.0.0.1:80 -s wlc\n-a -t 10.0.0.1:80 -r 10.0.1.1:80 -g -w 2\n\
         -a -t 10.0.0.1:80 -r 10.0.1.2:80 -g -w 1\n"
    );
    assert_eq!(
        ok(&restored, "-L -n --timeout"),
        "Timeout (tcp tcpfin udp): 900 60 300\n"
    );
    // `#` inside a token is not a comment, for either reader.
    let r = restore(&hub(), "-C foo#bar\n");
    assert_eq!((r.code, r.err.as_str()), (2, "unexpected argument foo#bar\n"));
    assert_eq!(
        crate::ipvsadm::parse_rules("-C foo#bar").unwrap_err().message,
        "unexpected argument foo#bar"
    );
}
