//! The command line's exact text: `uvs check` on good and bad rules files, `uvs sysctl`
//! against a running director (list, read, write, refusals; the write reaching the
//! workers: expire_nodest_conn ends the stall on a deleted server's stale FIN_WAIT
//! entry), and `ipvsadm -R` reading the rules files' grammar.

mod common;
use common::*;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A file in the temp directory, unique to this process and `name`.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("uvs-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, contents).unwrap();
    p
}

/// Run `uvs ARGS` with `stdin`, in `dir`; (status, stdout, stderr).
fn uvs(dir: &Path, control: Option<&Path>, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut c = Command::new(UVS);
    c.args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = control {
        c.env("UVS_CONTROL", p);
    }
    let mut child = c.spawn().expect("spawn uvs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    (status.code(), text(&stdout), text(&stderr))
}

const GOOD_RULES: &str = "\
# web (comments are a uvs extension)
ipvsadm -A -t 10.77.0.100:80 -s wlc   # trailing comment
-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 2 #no space
\t# indented

-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g
-A -u 10.77.0.100:53 -s rr
-A -f 7 -s rr
--set 900 60 300
";

const GOOD_LIST: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.77.0.100:80 wlc
  -> 10.77.0.11:80                Route   2      0          0         
  -> 10.77.0.12:80                Route   1      0          0         
UDP  10.77.0.100:53 rr
FWM  7 rr
";

#[test]
fn check_prints_the_table_and_fails_on_any_error() {
    let good = temp_file("good.rules", GOOD_RULES);
    let dir = good.parent().unwrap();
    let name = good.file_name().unwrap().to_str().unwrap();
    let (code, out, err) = uvs(dir, None, &["check", name], "");
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            Some(0),
            GOOD_LIST,
            format!(
                "uvs check: warning: FWM 7 is not forwarded: AF_PACKET frames carry no firewall mark (use an \
                 address-based service)\n{name}: 6 rules OK (3 services; timeouts tcp 900 tcpfin 60 udp 300)\n"
            )
            .as_str()
        )
    );
    // Every kind of error: exit 1, the message naming the line, nothing on stdout.
    for (i, (rules, want)) in [
        (
            "-A -t 10.77.0.100:80 -s rr\n-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 70000 # heavy\n",
            "line 2: `-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 70000 # heavy': illegal weight specified",
        ),
        (
            "-A -t 10.77.0.100:80 -s rr\n\n-A -t 10.77.0.100:80 -s wlc\n",
            "line 3: `-A -t 10.77.0.100:80 -s wlc': Service already exists",
        ),
        (
            "-L -n\n",
            "line 1: `-L -n': the 'list' command is not allowed in a rules file (only -A, -E, -D, -C, -a, -e, -d, \
             --set and --start-daemon are)",
        ),
        (
            "-A -t 10.77.0.100:80 -s nosuch\n",
            "line 1: `-A -t 10.77.0.100:80 -s nosuch': Scheduler or persistence engine not found",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let f = temp_file(&format!("bad{i}.rules"), rules);
        let fname = f.file_name().unwrap().to_str().unwrap();
        let (code, out, err) = uvs(dir, None, &["check", fname], "");
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (Some(1), "", format!("uvs: {fname}: {want}\n").as_str()),
            "{rules}"
        );
        let _ = std::fs::remove_file(f);
    }
    let (code, out, err) = uvs(dir, None, &["check", "no-such-uvs-rules-file"], "");
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            Some(1),
            "",
            "uvs: no-such-uvs-rules-file: No such file or directory (os error 2)\n"
        )
    );
    let _ = std::fs::remove_file(good);
}

const RULES: &str = "\
-A -t 10.77.0.100:80 -s rr
-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g -w 1
-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g -w 1
";

#[test]
fn sysctl_against_a_running_director() {
    require_root!();
    let mut lvs = dr("syct");
    lvs.start_director(
        RULES,
        &[
            "--workers",
            "1",
            "--sysctl",
            "net.ipv4.vs.am_droprate=20",
            "--sysctl",
            "drop_packet=0",
        ],
    )
    .unwrap();
    let ctl = lvs.control_path();
    let tmp = std::env::temp_dir();
    let sysctl = |args: &[&str]| {
        let mut a = vec!["sysctl"];
        a.extend_from_slice(args);
        uvs(&tmp, Some(&ctl), &a, "")
    };
    let listing = "net.ipv4.vs.am_droprate = 20
net.ipv4.vs.amemthresh = 10
net.ipv4.vs.conn_reuse_mode = 1
net.ipv4.vs.drop_entry = 0
net.ipv4.vs.drop_packet = 0
net.ipv4.vs.expire_nodest_conn = 0
net.ipv4.vs.expire_quiescent_template = 0
net.ipv4.vs.secure_tcp = 0
net.ipv4.vs.sloppy_tcp = 0
net.ipv4.vs.sync_qlen_max = 131072
net.ipv4.vs.sync_refresh_period = 0
net.ipv4.vs.sync_retries = 0
net.ipv4.vs.sync_threshold = 3\t50
net.ipv4.vs.sync_version = 1
";
    assert_eq!(sysctl(&["-a"]), (Some(0), listing.to_string(), String::new()));
    assert_eq!(
        sysctl(&["net.ipv4.vs.conn_reuse_mode"]),
        (Some(0), "net.ipv4.vs.conn_reuse_mode = 1\n".into(), String::new())
    );
    assert_eq!(sysctl(&["-n", "amemthresh"]), (Some(0), "10\n".into(), String::new()));
    // Refused writes: status 255, a clear message, nothing changed.
    assert_eq!(
        sysctl(&["secure_tcp=1", "drop_entry=7"]),
        (
            Some(255),
            String::new(),
            "uvs sysctl: setting key \"net.ipv4.vs.drop_entry\": Invalid argument (\"7\"; want 0 (off), 1 \
             (automatic), 2 (automatic, on now) or 3 (always))\n"
                .into()
        )
    );
    let (code, out, err) = sysctl(&["net.ipv4.vs.nat_icmp_send=1"]);
    assert_eq!((code, out.as_str()), (Some(255), ""));
    assert!(
        err.starts_with("uvs sysctl: unknown key \"net.ipv4.vs.nat_icmp_send\" (uvs implements "),
        "{err}"
    );
    assert_eq!(sysctl(&["-a"]).1, listing, "a refused write changes nothing");
    // No director on the socket: a clear error.
    let (code, _, err) = uvs(&tmp, None, &["sysctl", "--control", "/nonexistent/uvs.sock", "-a"], "");
    assert_eq!(code, Some(255));
    assert!(
        err.contains("no uvs director is running (control socket /nonexistent/uvs.sock does not exist)"),
        "{err}"
    );

    // The stall the knob is for: a client's connection served by a real server that is
    // then deleted leaves a FIN_WAIT entry (DR: the director sees the client's FIN
    // only); the client's next connection from the same port hits it. Without
    // expire_nodest_conn its SYNs are dropped for as long as the entry lives.
    let url = "http://10.77.0.100/";
    let get = |max: &str| {
        let t = Instant::now();
        let o = lvs
            .bed
            .exec_any(
                "client",
                &["curl", "-s", "--max-time", max, "--local-port", "40123", url],
            )
            .unwrap();
        (o.status.success(), text(&o.stdout).trim().to_string(), t.elapsed())
    };
    let (ok, first, _) = get("3");
    assert!(ok, "first request\n{}", lvs.director_log());
    let (served, other) = match first.as_str() {
        "rs1" => ("10.77.0.11:80", "rs2"),
        "rs2" => ("10.77.0.12:80", "rs1"),
        x => panic!("answered by {x:?}"),
    };
    let (_, conns, _) = uvs(&tmp, Some(&ctl), &["adm", "-L", "-n", "-c"], "");
    assert!(
        conns
            .lines()
            .any(|l| l.contains("FIN_WAIT") && l.contains(":40123") && l.contains(served)),
        "{conns}"
    );
    let (code, _, err) = uvs(
        &tmp,
        Some(&ctl),
        &["adm", "-d", "-t", "10.77.0.100:80", "-r", served],
        "",
    );
    assert_eq!((code, err.as_str()), (Some(0), ""));
    let (ok, _, took) = get("2");
    assert!(
        !ok,
        "the stale entry of the deleted server swallows the SYNs (took {took:?})"
    );
    // Set at runtime: the worker's next packet sees it.
    assert_eq!(
        sysctl(&["net.ipv4.vs.expire_nodest_conn=1"]),
        (Some(0), "net.ipv4.vs.expire_nodest_conn = 1\n".into(), String::new())
    );
    let (ok, name, took) = get("3");
    assert!(
        ok && name == other,
        "rescheduled at once to {other}: {ok} {name:?} {took:?}\n{}",
        lvs.director_log()
    );
    assert!(took < Duration::from_millis(900), "no SYN retransmission: {took:?}");

    // ipvsadm -R reads the rules files' grammar (trailing comments).
    let (code, out, err) = uvs(
        &tmp,
        Some(&ctl),
        &["adm", "-R"],
        "-A -u 10.77.0.100:53 -s rr   # DNS\n-a -u 10.77.0.100:53 -r 10.77.0.11:53 -g # rs1\n",
    );
    assert_eq!((code, out.as_str(), err.as_str()), (Some(0), "", ""));
    let (_, saved, _) = uvs(&tmp, Some(&ctl), &["adm", "-S", "-n"], "");
    assert!(
        saved.contains("-a -u 10.77.0.100:53 -r 10.77.0.11:53 -g -w 1\n"),
        "{saved}"
    );
    let log = lvs.stop_director();
    assert!(!log.contains("panicked"), "{log}");
}

/// `uvs run --iface lo --sysctl SETTING` with a control socket it cannot create.
fn run_with_sysctl(setting: &str) -> (Option<i32>, String, String) {
    let args = [
        "run",
        "--iface",
        "lo",
        "--control",
        "/nonexistent/x.sock",
        "--sysctl",
        setting,
    ];
    uvs(&std::env::temp_dir(), None, &args, "")
}

#[test]
fn run_refuses_a_bad_sysctl_before_starting() {
    // --sysctl is checked with the other options, before any socket is opened, so no
    // root is needed; `uvs run` does look its interface up first, hence loopback.
    let (code, out, err) = run_with_sysctl("expire_nodest_conn");
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            Some(1),
            "",
            "uvs: --sysctl \"expire_nodest_conn\": want NAME=VALUE, e.g. expire_nodest_conn=1\n"
        )
    );
    let (code, _, err) = run_with_sysctl("drop_entry=4");
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("uvs: --sysctl setting key \"net.ipv4.vs.drop_entry\": Invalid argument"),
        "{err}"
    );
}
