//! Every error path of the grammar, with ipvsadm's exact text and exit status.

use super::tests::p;
use super::{ParseError, TRY_HELP};

#[track_caller]
fn err(line: &str, code: i32, message: &str) {
    let want = ParseError {
        message: message.to_string(),
        exit_code: code,
    };
    assert_eq!(p(line), Err(want), "{line}");
}

#[track_caller]
fn fail(line: &str, message: &str) {
    err(line, 2, message);
}

#[test]
fn command_must_come_first() {
    err("-nL", 255, TRY_HELP);
    err("-n -L", 255, TRY_HELP);
    err("-t 10.0.0.1:80 -A", 255, TRY_HELP);
    err("foo", 255, TRY_HELP);
    err("--bogus", 255, TRY_HELP);
    err("--clear=1", 255, TRY_HELP);
    err("--start-daemon", 255, TRY_HELP);
    err("--", 255, TRY_HELP);
}

#[test]
fn popt_errors_after_the_command() {
    err("-L --bogus", 255, "--bogus: unknown option");
    err("-Lq", 255, "-Lq: unknown option");
    err("-L -q", 255, "-q: unknown option");
    err("-A -t", 255, "-t: missing argument");
    err("-L --nosort=1", 255, "--nosort=1: option does not take an argument");
    err("-Ln=1", 255, "-Ln=1: option does not take an argument");
    // Long names must be spelt out.
    err("-L --num", 255, "--num: unknown option");
}

#[test]
fn multiple_commands_and_options() {
    fail("-A -t 10.0.0.1:80 -L", "multiple commands specified");
    fail("-LA", "multiple commands specified");
    fail("-L -h", "multiple commands specified");
    fail(
        "-A -t 10.0.0.1:80 -s rr -s wlc",
        "multiple 'scheduler' options specified",
    );
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -w 1 -w 2",
        "multiple 'weight' options specified",
    );
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -g -m",
        "multiple 'forwarding-method' options specified",
    );
    fail("-A -t 10.0.0.1:80 -f 1", "multiple 'service-address' options specified");
    fail("-L -n -n", "multiple 'numeric' options specified");
    fail("-A -t 10.0.0.1:80 -p -p", "multiple 'persistent' options specified");
}

#[test]
fn stray_words() {
    fail("-L foo", "unexpected argument foo");
    fail("-A -t 10.0.0.1:80 rr", "unexpected argument rr");
    fail("-C -- -L", "unexpected argument -L");
    fail("--set 1 2", "--set option requires 3 timeout values");
    fail("--set", "--set option requires 3 timeout values");
    fail("--set 1 2 3 4", "unexpected argument 4");
    fail("--set 1 x 3", "invalid timeout value `x' specified");
    err("--set 1 2 -1", 255, "-1: unknown option");
    fail("--set 1 2 2678401", "invalid timeout value `2678401' specified");
}

#[test]
fn value_errors() {
    fail("-a -t 10.0.0.1:80 -r 10.0.1.1 -w 65536", "illegal weight specified");
    fail("-a -t 10.0.0.1:80 -r 10.0.1.1 -w x", "illegal weight specified");
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -x 2147483648",
        "illegal u_threshold specified",
    );
    fail("-a -t 10.0.0.1:80 -r 10.0.1.1 -y 1.5", "illegal l_threshold specified");
    fail("-A -t 10.0.0.1:80 -p 1x", "invalid timeout value `1x' specified");
    fail(
        "-A -t 10.0.0.1:80 -p -M 1.2.3.999",
        "illegal virtual server persistent mask specified",
    );
    fail("-A -t [::1]:80 -p -M 129", "illegal ipv6 netmask specified");
    fail("-A -t [::1]:80 -p -M 0", "illegal ipv6 netmask specified");
    fail("-A -f 0", "invalid fwmark value `0' specified");
    fail("-A -f 4294967296", "invalid fwmark value `4294967296' specified");
    fail("-A -f x", "invalid fwmark value `x' specified");
    fail("-A -t 10.0.0.1:80 -6", "-6 used before -f");
    fail("-A -6 -f 1", "-6 used before -f");
    fail("--start-daemon primary", "illegal start-daemon parameter specified");
    fail("--stop-daemon primary", "illegal start_daemon specified");
    fail("--start-daemon master --syncid 256", "illegal syncid specified");
    fail("--start-daemon master --mcast-port 0", "illegal mcast-port specified");
    fail("--start-daemon master --mcast-ttl 256", "illegal mcast-ttl specified");
    fail(
        "--start-daemon master --sync-maxlen 65508",
        "illegal sync-maxlen specified",
    );
    fail(
        "--start-daemon master --mcast-group 10.0.0.1",
        "invalid IPv4 mcast-group `10.0.0.1'",
    );
    fail(
        "--start-daemon master --mcast-group 2001:db8::1",
        "invalid IPv6 mcast-group `2001:db8::1'",
    );
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type vxlan",
        "illegal tunnel type specified",
    );
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-port 0",
        "illegal tunnel port specified",
    );
}

#[test]
fn address_errors() {
    let bad_vs = "illegal virtual server address[:port] specified";
    fail("-A -t 80", bad_vs);
    fail("-A -t 10.0.0.1:65536", bad_vs);
    fail("-A -t 10.0.0.1:nosuchservicename", bad_vs);
    fail("-A -t [2001:db8::1]", bad_vs);
    fail("-A -t [2001:db8::1]:", bad_vs);
    fail("-L -u 10.0.0.1:99999", bad_vs);
    let bad_rs = "illegal real server address[:port] specified";
    fail("-a -t 10.0.0.1:80 -r 8080", bad_rs);
    fail("-a -t 10.0.0.1:80 -r 10.0.1.1:70000", bad_rs);
    fail("-a -t 10.0.0.1:80 -r [2001:db8::1]", bad_rs);
    fail(
        "-a -t 10.0.0.1:80 -r [2001:db8::1]:80 -m",
        "Different address family is allowed only for tunneling servers",
    );
    fail(
        "-a -f 1 -6 -r 10.0.1.1",
        "Different address family is allowed only for tunneling servers",
    );
    err("-A -t 10.0.0.1:80 -p -M", 255, "-M: missing argument");
}

#[test]
fn service_checks() {
    fail("-A -t 10.0.0.1", "Zero port specified for non-persistent service");
    fail("-E -t 10.0.0.1:0", "Zero port specified for non-persistent service");
    fail(
        "-A -t [2001:db8::1]:0",
        "Zero port specified for non-persistent service",
    );
    fail(
        "-A -t 10.0.0.1:80 -o",
        "One-Packet Scheduling is only for UDP virtual services",
    );
    fail("-A -t 10.0.0.1:80 -b flag-4", "invalid scheduler flag `flag-4'");
    fail("-A -t 10.0.0.1:80 -b sh-port", "incompatible scheduler flag `sh-port'");
    fail(
        "-A -t 10.0.0.1:80 -s rr -b sh-fallback",
        "incompatible scheduler flag `sh-fallback'",
    );
    fail(
        "-A -t 10.0.0.1:80 -s sh -b mh-port",
        "incompatible scheduler flag `mh-port'",
    );
    fail(
        "-A -t 10.0.0.1:80 -s mh -b flag-1,mh-fallback,sh-port",
        "incompatible scheduler flag `sh-port'",
    );
    fail("-A -t 10.0.0.1:80 -b ,", "invalid scheduler flag `,'");
    // Flags are checked before the command × option table.
    fail("-L -b foo", "invalid scheduler flag `foo'");
}

#[test]
fn command_option_table() {
    fail(
        "-A",
        "You need to supply the 'service-address' option for the 'add-service' command",
    );
    fail(
        "-E -s rr",
        "You need to supply the 'service-address' option for the 'edit-service' command",
    );
    fail(
        "-D",
        "You need to supply the 'service-address' option for the 'delete-service' command",
    );
    fail(
        "-a -t 10.0.0.1:80",
        "You need to supply the 'real-server' option for the 'add-server' command",
    );
    fail(
        "-e -r 10.0.1.1",
        "You need to supply the 'service-address' option for the 'edit-server' command",
    );
    fail(
        "-d -t 10.0.0.1:80 -r 10.0.1.1 -w 1",
        "Illegal 'weight' option with the 'delete-server' command",
    );
    fail(
        "-d -t 10.0.0.1:80 -w 1",
        "You need to supply the 'real-server' option for the 'delete-server' command",
    );
    fail(
        "-d -t 10.0.0.1:80",
        "You need to supply the 'real-server' option for the 'delete-server' command",
    );
    fail(
        "-A -t 10.0.0.1:80 -w 1",
        "Illegal 'weight' option with the 'add-service' command",
    );
    fail(
        "-A -t 10.0.0.1:80 -r 10.0.1.1",
        "Illegal 'real-server' option with the 'add-service' command",
    );
    fail(
        "-A -t 10.0.0.1:80 -n",
        "Illegal 'numeric' option with the 'add-service' command",
    );
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -s rr",
        "Illegal 'scheduler' option with the 'add-server' command",
    );
    fail(
        "-D -t 10.0.0.1:80 -s rr",
        "Illegal 'scheduler' option with the 'delete-service' command",
    );
    fail("-C -n", "Illegal 'numeric' option with the 'flush' command");
    fail(
        "-C -t 10.0.0.1:80",
        "Illegal 'service-address' option with the 'flush' command",
    );
    fail("-R -n", "Illegal 'numeric' option with the 'restore' command");
    fail("-S -c", "Illegal 'connection' option with the 'save' command");
    fail("-Z -n", "Illegal 'numeric' option with the 'zero' command");
    fail("--set 1 2 3 -n", "Illegal 'numeric' option with the 'set' command");
    fail("-L -s rr", "Illegal 'scheduler' option with the 'list' command");
    fail("-L -p", "Illegal 'persistent' option with the 'list' command");
    fail("-L --pe sip", "Illegal 'pe' option with the 'list' command");
    fail(
        "--start-daemon master -n",
        "Illegal 'numeric' option with the 'start-daemon' command",
    );
    fail(
        "--stop-daemon master --mcast-interface eth0",
        "Illegal 'mcast-interface' option with the 'stop-daemon' command",
    );
    fail(
        "-L -c -t 10.0.0.1:80",
        "The option 'service-address' conflicts with the 'connection' option in the 'list' command",
    );
    fail(
        "-L --timeout --daemon",
        "The option 'daemon' conflicts with the 'timeout' option in the 'list' command",
    );
    fail(
        "-L -t 10.0.0.1:80 --timeout",
        "The option 'timeout' conflicts with the 'service-address' option in the 'list' command",
    );
}

#[test]
fn list_conflicts() {
    let m = "options conflicts in the list command";
    fail("-L -c --stats", m);
    fail("-L --timeout --rate", m);
    fail("-L --daemon --thresholds", m);
    fail("-L --timeout --persistent-conn", m);
    fail("-L --daemon --persistent-conn", m);
}

#[test]
fn tunnel_checks() {
    let m = "Tunnel options conflict with forward method";
    fail("-a -t 10.0.0.1:80 -r 10.0.1.1 --tun-type ipip", m);
    fail("-a -t 10.0.0.1:80 -r 10.0.1.1 -m --tun-csum", m);
    fail("-e -t 10.0.0.1:80 -r 10.0.1.1 -g --tun-port 5", m);
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue",
        "You need to supply the 'tun-port' option for the 'gue' tunnel type",
    );
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-port 5",
        "Illegal 'tun-port' option with the 'ipip' tunnel type",
    );
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-csum",
        "Illegal 'tun-csum' option with the 'ipip' tunnel type",
    );
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gre --tun-remcsum",
        "Illegal 'tun-remcsum' option with the 'gre' tunnel type",
    );
    fail(
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-port 5 --tun-nocsum --tun-csum",
        "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type",
    );
    fail(
        "-d -t 10.0.0.1:80 -r 10.0.1.1 --tun-type gue",
        "Illegal 'tun-type' option with the 'delete-server' command",
    );
}
