//! Parser cases: the seed-003 configuration as published and restored, keepalived's
//! defaults and warnings (texts from check/check_data.c and check/check_parser.c).

use super::conf::{CheckKind, Config, GroupEntry, SEC, VsAddr};
use super::translate;
use super::{Diag, Severity, load_str};
use crate::service::{ForwardMethod, Protocol};

fn parse(text: &str) -> (Config, Vec<String>) {
    let (c, d) = load_str("k.conf", text, Some("lb1"));
    (c, d.iter().map(Diag::to_string).collect())
}

fn save(cfg: &Config) -> String {
    translate::render(cfg, &translate::initial_table(cfg)).unwrap()
}

const SEED_PUBLISHED: &str = include_str!("testdata/seed003-published.conf");
const SEED_RESTORED: &str = include_str!("testdata/seed003-restored.conf");

#[test]
fn seed003_as_published_builds_one_real_server_with_keepalived_warnings() {
    let (cfg, diags) = parse(SEED_PUBLISHED);
    assert_eq!(
        diags,
        [
            "(k.conf: Line 29) nat_mask is obsolete (keepalived 1.x) and has no effect - ignoring",
            "(k.conf: Line 36) nb_get_retry is deprecated - please use 'retry'",
            "(k.conf: Line 40) Unknown keyword 'real_server'",
            "(k.conf: Line 40) Unexpected '{' - ignoring",
            "(k.conf: Line 44) nb_get_retry is deprecated - please use 'retry'",
            "There are 2 missing '}'s or extra '{'s",
        ]
    );
    assert_eq!(cfg.router_id.as_deref(), Some("LVS_DEVEL"));
    let vs = &cfg.services[0];
    assert_eq!(
        vs.real_servers.len(),
        1,
        "keepalived reads the second block into the first server"
    );
    // ... which therefore has two TCP_CHECKs.
    assert_eq!(vs.real_servers[0].checkers.len(), 2);
    assert_eq!(
        save(&cfg),
        "-A -t 192.168.41.249:80 -s rr -p 50\n-a -t 192.168.41.249:80 -r 192.168.41.31:80 -g -w 1\n"
    );
}

#[test]
fn seed003_restored_gives_two_dr_servers_with_tcp_checks() {
    let (cfg, diags) = parse(SEED_RESTORED);
    assert_eq!(
        diags,
        [
            "(k.conf: Line 29) nat_mask is obsolete (keepalived 1.x) and has no effect - ignoring",
            "(k.conf: Line 36) nb_get_retry is deprecated - please use 'retry'",
            "(k.conf: Line 45) nb_get_retry is deprecated - please use 'retry'",
        ]
    );
    let vs = &cfg.services[0];
    assert_eq!(vs.addr, VsAddr::Inet("192.168.41.249".parse().unwrap(), 80));
    assert_eq!(vs.protocol, Some(Protocol::Tcp));
    assert_eq!(vs.persistence_timeout, 50);
    assert_eq!(vs.delay_loop, 6 * SEC);
    assert_eq!(vs.real_servers.len(), 2);
    for rs in &vs.real_servers {
        assert_eq!(rs.method.unwrap().method, ForwardMethod::Route);
        let c = &rs.checkers[0];
        assert_eq!(c.kind, CheckKind::Tcp);
        assert_eq!(c.connect_timeout, Some(10 * SEC));
        assert_eq!(c.retry, Some(3), "nb_get_retry taken as retry");
        assert_eq!(c.delay_before_retry, Some(3 * SEC));
        assert_eq!(c.connect_port, Some(80));
        assert_eq!(c.delay_loop, Some(6 * SEC));
    }
    assert_eq!(
        save(&cfg),
        "-A -t 192.168.41.249:80 -s rr -p 50\n\
         -a -t 192.168.41.249:80 -r 192.168.41.31:80 -g -w 1\n\
         -a -t 192.168.41.249:80 -r 192.168.41.33:80 -g -w 1\n"
    );
}

#[test]
fn defaults_udp_nat_wlc_with_keepalived_warnings() {
    let (cfg, diags) = parse("virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 8080 {\n }\n}\n");
    assert_eq!(
        diags,
        [
            "Virtual server [10.0.0.1]:none:80: no protocol set - defaulting to UDP",
            "Virtual server [10.0.0.1]:udp:80: no scheduler set, setting default 'wlc'",
            "Virtual server [10.0.0.1]:udp:80: no forwarding method set, setting default NAT",
        ]
    );
    // NAT keeps the real server's own port.
    assert_eq!(
        save(&cfg),
        "-A -u 10.0.0.1:80 -s wlc\n-a -u 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 1\n"
    );
}

#[test]
fn dr_port_mismatch_reset_and_zero_port_persistent() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 0 {\n lvs_sched rr\n lvs_method DR\n protocol tcp\n real_server 10.0.0.2 80 {\n }\n}\n",
    );
    assert_eq!(
        diags,
        [
            "Virtual server [10.0.0.1]:tcp:0: zero port only valid for persistent services - setting",
            "WARNING - virtual server [10.0.0.1]:tcp:0 and real server [10.0.0.2]:tcp:80 ports don't match - resetting",
        ]
    );
    assert_eq!(cfg.services[0].persistence_timeout, 360);
}

#[test]
fn unknown_keywords_and_bad_values_name_the_line() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 80 {\n lb_algo bogus\n lb_kind XX\n protocol TCP\n real_server 10.0.0.2 80 {\n  weight abc\n  frobnicate 1\n }\n}\n",
    );
    assert_eq!(
        diags,
        [
            "(k.conf: Line 2) Invalid lvs_scheduler 'bogus' - ignoring",
            "(k.conf: Line 3) PARSER : unknown [XX] routing method for virtual server.",
            "(k.conf: Line 6) Real server weight abc is outside range 0-2147483647",
            "(k.conf: Line 7) Unknown keyword 'frobnicate'",
            "Virtual server [10.0.0.1]:tcp:80: no scheduler set, setting default 'wlc'",
            "Virtual server [10.0.0.1]:tcp:80: no forwarding method set, setting default NAT",
        ]
    );
    assert_eq!(cfg.services[0].real_servers[0].weight, Some(1));
}

#[test]
fn invalid_virtual_server_skips_its_block() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.300 80 {\n lb_algo rr\n real_server 10.0.0.2 80 {\n  weight 2\n }\n}\nglobal_defs {\n router_id X\n}\n",
    );
    assert_eq!(
        diags,
        ["(k.conf: Line 1) Invalid virtual server IP address/port 10.0.0.300/80 - skipping"]
    );
    assert!(cfg.services.is_empty());
    assert_eq!(cfg.router_id.as_deref(), Some("X"));
}

#[test]
fn extra_brace_at_top_level() {
    let (_, diags) = parse("global_defs {\n}\n}\n");
    assert_eq!(
        diags,
        [
            "(k.conf: Line 3) Extra '}' found",
            "(k.conf: Line 3) Unknown keyword '}'"
        ]
    );
}

#[test]
fn vrrp_blocks_are_skipped_and_global_defs_read() {
    let (cfg, diags) = parse(
        "global_defs {\n notification_email {\n a@b\n }\n router_id LB1\n lvs_timeouts tcp 900 tcpfin 120 udp 300\n lvs_flush\n smtp_server 127.0.0.1\n}\n\
         vrrp_instance VI_1 {\n state MASTER\n whatever_vrrp_takes 1\n authentication {\n auth_type PASS\n }\n}\n\
         vrrp_script chk {\n script \"/bin/true\"\n}\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(cfg.router_id.as_deref(), Some("LB1"));
    assert_eq!(cfg.lvs_timeouts, Some((900, 120, 300)));
    assert!(cfg.lvs_flush);
}

#[test]
fn groups_with_ranges_cidr_and_fwmarks() {
    let (cfg, diags) = parse(
        "virtual_server_group G {\n 10.1.0.10-12 80\n 10.2.0.0/31 443\n 10.3.0.1-10.3.0.2 25\n fwmark 7\n 10.4.0.5-3 80\n 10.5.0.1/24 80\n}\n\
         virtual_server group G {\n lvs_sched rr\n lvs_method DR\n protocol TCP\n real_server 10.9.0.1 {\n }\n}\n",
    );
    assert_eq!(
        diags,
        [
            "(k.conf: Line 6) Address range end is not greater than address range start - 10.4.0.5-3 - skipping",
            "(k.conf: Line 7) Address mask bits not empty - 10.5.0.1/24 - skipping",
        ]
    );
    let g = cfg.group("G").unwrap();
    assert_eq!(g.len(), 4);
    assert!(matches!(g[3], GroupEntry::Fwmark { mark: 7, ipv6: None }));
    let addrs: Vec<_> = translate::service_addrs(&cfg, &cfg.services[0])
        .iter()
        .map(translate::fmt_addr)
        .collect();
    assert_eq!(
        addrs,
        [
            "-t 10.1.0.10:80",
            "-t 10.1.0.11:80",
            "-t 10.1.0.12:80",
            "-t 10.2.0.0:443",
            "-t 10.2.0.1:443",
            "-t 10.3.0.1:25",
            "-t 10.3.0.2:25",
            "-f 7"
        ]
    );
    assert_eq!(translate::service_count(&cfg, &cfg.services[0]), 8);
}

#[test]
fn service_count_bounds_groups_without_expanding_them() {
    let (cfg, d) = parse(
        "virtual_server_group BIG {\n 10.0.0.0/8 80\n 2001:db8::/64 80\n fwmark 1\n}\n\
         virtual_server group BIG {\n protocol TCP\n real_server 10.9.0.1 80 {\n }\n}\n\
         virtual_server 10.0.0.1 80 {\n real_server 10.9.0.1 80 {\n }\n}\n",
    );
    let n: Vec<u128> = cfg
        .services
        .iter()
        .map(|vs| translate::service_count(&cfg, vs))
        .collect();
    // Each range is cut at MAX_RANGE addresses, as service_addrs cuts it.
    assert_eq!(n, [2 * translate::MAX_RANGE + 1, 1], "{d:?}");
    assert_eq!(translate::service_addrs(&cfg, &cfg.services[0]).len() as u128, n[0]);
}

#[test]
fn inherited_timers_and_checker_defaults() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n delay_loop 2.5\n connect_timeout 3\n retry 4\n inhibit_on_failure\n weight 7\n\
         real_server 10.0.0.2 80 {\n  delay_before_retry 0.5\n  TCP_CHECK {\n  }\n  HTTP_GET {\n   url {\n    path /h\n    status_code 200 300-302\n    digest 9b3a0c85a887a256d6939da88aabd8cd\n   }\n   retry 2\n  }\n  MISC_CHECK {\n   misc_path \"/bin/check 1\"\n   misc_dynamic\n  }\n }\n}\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    let rs = &cfg.services[0].real_servers[0];
    assert_eq!(rs.weight, Some(7));
    assert_eq!(rs.inhibit, Some(true));
    let [tcp, http, misc] = &rs.checkers[..] else { panic!() };
    assert_eq!(tcp.delay_loop, Some(2_500_000));
    assert_eq!(tcp.warmup, Some(2_500_000), "warmup defaults to delay_loop");
    assert_eq!(tcp.connect_timeout, Some(3 * SEC));
    assert_eq!(tcp.retry, Some(4));
    assert_eq!(tcp.delay_before_retry, Some(500_000));
    assert_eq!(http.retry, Some(2));
    let CheckKind::Http { urls, .. } = &http.kind else {
        panic!()
    };
    assert!(urls[0].status_ok(301) && urls[0].status_ok(200) && !urls[0].status_ok(204));
    assert_eq!(urls[0].digest.unwrap()[0], 0x9b);
    let CheckKind::Misc { script, dynamic, .. } = &misc.kind else {
        panic!()
    };
    assert!(*dynamic);
    assert_eq!(script.as_ref().unwrap().argv, ["/bin/check", "1"]);
    assert_eq!(misc.retry, Some(4), "the real server's retry wins over MISC_CHECK's 0");
}

#[test]
fn checker_defaults_per_kind() {
    let (cfg, _) = parse(
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n real_server 10.0.0.2 80 {\n  HTTP_GET {\n   url {\n    path /\n   }\n  }\n  MISC_CHECK {\n   misc_path /bin/true\n  }\n  TCP_CHECK {\n  }\n }\n}\n",
    );
    let c = &cfg.services[0].real_servers[0].checkers;
    assert_eq!((c[0].retry, c[0].delay_before_retry), (Some(1), Some(3 * SEC)));
    assert_eq!((c[1].retry, c[1].delay_before_retry), (Some(0), Some(SEC)));
    assert_eq!(
        (c[2].retry, c[2].delay_before_retry, c[2].connect_timeout),
        (Some(1), Some(SEC), Some(5 * SEC))
    );
    assert_eq!(c[2].delay_loop, Some(60 * SEC));
}

#[test]
fn quorum_sorry_server_and_alpha_in_the_initial_table() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n quorum 5\n sorry_server 10.0.0.9 80\n\
         real_server 10.0.0.2 80 {\n  weight 2\n }\n real_server 10.0.0.3 80 {\n  weight 3\n  alpha\n }\n real_server 10.0.0.4 80 {\n  alpha\n  inhibit_on_failure\n }\n}\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    // Live: .2 (2) only; .3 alpha = failed, absent; .4 alpha + inhibit = weight 0.
    // 2 < quorum 5: the sorry server is in.
    assert_eq!(
        save(&cfg),
        "-A -t 10.0.0.1:80 -s rr\n\
         -a -t 10.0.0.1:80 -r 10.0.0.2:80 -g -w 2\n\
         -a -t 10.0.0.1:80 -r 10.0.0.4:80 -g -w 0\n\
         -a -t 10.0.0.1:80 -r 10.0.0.9:80 -g -w 1\n"
    );
}

#[test]
fn quorum_above_total_weight_is_reduced() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n quorum 9\n hysteresis 9\n real_server 10.0.0.2 80 {\n }\n}\n",
    );
    assert_eq!(
        diags,
        [
            "Warning - quorum 9 for [10.0.0.1]:tcp:80 exceeds total weight of real servers 1, reducing quorum to 1",
            "Virtual server [10.0.0.1]:tcp:80: hysteresis 9 >= quorum 1; setting hysteresis to 0",
        ]
    );
    assert_eq!(cfg.services[0].quorum, 1);
}

#[test]
fn fwmark_service_ignores_protocol_and_real_server_ports() {
    let (cfg, diags) = parse(
        "virtual_server fwmark 3 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n persistence_timeout\n real_server 10.0.0.2 80 {\n }\n}\n",
    );
    assert_eq!(
        diags,
        [
            "Warning: Virtual server FWM 3: protocol specified for fwmark - protocol will be ignored",
            "WARNING - fwmark virtual server FWM 3, real server [10.0.0.2]:none:80 has port specified - clearing",
        ]
    );
    assert_eq!(save(&cfg), "-A -f 3 -s rr -p 360\n-a -f 3 -r 10.0.0.2:0 -g -w 1\n");
}

#[test]
fn tunnel_options_and_flags() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n lvs_sched sh\n sh-port\n lvs_method TUN type gue port 6080\n persistence_granularity 255.255.255.0\n real_server 10.0.0.2 80 {\n  lvs_method TUN type ipip csum\n }\n}\n",
    );
    assert_eq!(diags, ["(k.conf: Line 8) ipip tunnels do not support checksum option."]);
    assert_eq!(
        save(&cfg),
        "-A -t 10.0.0.1:80 -s sh -p 360 -M 255.255.255.0 -b sh-port\n\
         -a -t 10.0.0.1:80 -r 10.0.0.2:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum\n"
    );
}

/// A configuration held in memory includes nothing from the disk: the fuzzer's
/// `include /**/*///*` walked the whole filesystem through glob(3) (a 10 s timeout).
#[test]
fn include_from_memory_does_not_walk_the_disk() {
    let (_, d) = load_str("k.conf", "include /**/*\ninclude /etc/*\n", None);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(
        d.iter()
            .all(|d| d.severity == Severity::Warning && d.msg.starts_with("Config files missing"))
    );
}

#[test]
fn strict_include_missing_is_fatal() {
    let (_, d) = load_str("k.conf", "includer /nonexistent/uvs-*.conf\n", None);
    assert!(super::is_fatal(&d));
    let (_, d) = load_str("k.conf", "include /nonexistent/uvs-*.conf\n", None);
    assert!(!super::is_fatal(&d));
    assert_eq!(d[0].severity, Severity::Warning);
}

#[test]
fn timers_and_numbers() {
    use super::conf::{read_timer, read_unsigned};
    assert_eq!(read_timer("2.5", 0, u64::MAX), Some(2_500_000));
    assert_eq!(read_timer("0.000001", 1, u64::MAX), Some(1));
    assert_eq!(read_timer("1.0000001", 0, u64::MAX), None);
    assert_eq!(read_timer("0", 1, u64::MAX), None);
    assert_eq!(read_timer("-1", 0, u64::MAX), None);
    assert_eq!(read_unsigned("12", 1, 12), Some(12));
    assert_eq!(read_unsigned("13", 1, 12), None);
    assert_eq!(read_unsigned("+1", 0, 12), None);
}

#[test]
fn script_command_lines_split_like_a_shell() {
    use super::conf::shell_words;
    assert_eq!(shell_words("/bin/sh -c 'exit 9'").unwrap(), ["/bin/sh", "-c", "exit 9"]);
    assert_eq!(shell_words(r#"a "b c" d\ e"#).unwrap(), ["a", "b c", "d e"]);
    assert_eq!(shell_words("a 'b"), None);
}

#[test]
fn checks_listing_and_metrics() {
    use super::run::{Status, render, render_metrics};
    let v = vec![Status {
        vs: "[10.0.0.1]:tcp:80".into(),
        rs: "[10.0.0.2]:tcp:80".into(),
        kind: "TCP_CHECK",
        up: false,
        rs_alive: false,
        weight: 1,
        transitions: 2,
        last: "failed: Connection refused".into(),
        latency_ms: 0.25,
    }];
    let t = render(&v);
    assert!(t.lines().nth(1).unwrap().contains("TCP_CHECK  DOWN  dead"), "{t}");
    let mut m = String::new();
    render_metrics(&mut m, &std::sync::Arc::new(std::sync::Mutex::new(v)));
    let samples = crate::control::metrics::parse_exposition(&m).unwrap();
    assert!(!samples.is_empty());
    assert!(m.contains(
        "uvs_keepalived_checker_transitions_total{virtual_server=\"[10.0.0.1]:tcp:80\",real_server=\"[10.0.0.2]:tcp:80\",checker=\"TCP_CHECK\"} 2"
    ));
    assert!(m.contains(
        "uvs_keepalived_real_server_up{virtual_server=\"[10.0.0.1]:tcp:80\",real_server=\"[10.0.0.2]:tcp:80\"} 0"
    ));
}

#[test]
fn udp_dns_ping_and_ssl_checkers_are_read() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 53 {\n protocol UDP\n lb_algo rr\n lb_kind DR\n real_server 10.0.0.2 53 {\n\
         UDP_CHECK {\n   payload 68 69 0a\n   require_reply 72 73 3x\n   min_reply_length 3\n  }\n\
         DNS_CHECK {\n   type aaaa\n   name www.example.org\n  }\n\
         PING_CHECK {\n  }\n\
         SSL_GET {\n   url {\n    path /\n   }\n   enable_sni\n  }\n }\n\
         real_server 10.0.0.3 53 {\n  DNS_CHECK {\n   type BOGUS\n   name a..b\n  }\n  UDP_CHECK {\n   payload zz\n   min_reply_length 9\n   max_reply_length 2\n  }\n }\n}\n",
    );
    let rs = &cfg.services[0].real_servers[0];
    let [udp, dns, ping, ssl] = &rs.checkers[..] else {
        panic!("{:?}", rs.checkers)
    };
    let CheckKind::Udp(u) = &udp.kind else { panic!() };
    assert_eq!(u.payload, b"hi\n");
    assert!(u.require_reply);
    assert_eq!((&u.reply[..], &u.reply_mask[..]), (&b"rs0"[..], &[0, 0, 0x0f][..]));
    assert_eq!((u.min_reply_len, u.max_reply_len), (3, 255));
    assert_eq!(
        dns.kind,
        CheckKind::Dns {
            qtype: 28,
            name: "www.example.org".into()
        }
    );
    assert_eq!(
        (dns.retry, dns.delay_before_retry),
        (Some(3), dns.delay_loop),
        "check_dns.c defaults"
    );
    assert_eq!(ping.kind, CheckKind::Ping);
    assert!(matches!(
        ssl.kind,
        CheckKind::Http {
            ssl: true,
            enable_sni: true,
            ..
        }
    ));
    let rs = &cfg.services[0].real_servers[1];
    assert_eq!(
        rs.checkers[0].kind,
        CheckKind::Dns {
            qtype: 6,
            name: String::new()
        },
        "SOA of the root by default; the bad values are ignored"
    );
    let want = [
        "Unknown DNS check type BOGUS - ignoring",
        "DNS_CHECK name 'a..b' has empty label - ignoring",
        "Invalid hex string for UDP_CHECK payload",
        "UDP_CHECK min_reply length 9 > max_reply_length 2 - will always fail",
    ];
    for w in want {
        assert!(diags.iter().any(|d| d.contains(w)), "{w}: {diags:?}");
    }
}

#[test]
fn smtp_check_helo_name_and_defaults() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 25 {\n protocol TCP\n lb_algo rr\n lb_kind NAT\n real_server 10.0.0.2 2525 {\n\
         SMTP_CHECK {\n   helo_name mx.example.org\n   connect_timeout 3\n  }\n  SMTP_CHECK {\n   helo_name\n  }\n }\n}\n",
    );
    let c = &cfg.services[0].real_servers[0].checkers;
    assert_eq!(
        c[0].kind,
        CheckKind::Smtp {
            helo_name: "mx.example.org".into()
        }
    );
    assert_eq!(
        c[1].kind,
        CheckKind::Smtp {
            helo_name: "smtpchecker.keepalived.org".into()
        },
        "check_smtp.h SMTP_DEFAULT_HELO"
    );
    // check_api.c's defaults (check_smtp.c sets none of its own): retry 1, 1 s.
    assert_eq!(
        (c[0].retry, c[0].delay_before_retry, c[0].connect_timeout),
        (Some(1), Some(SEC), Some(3 * SEC))
    );
    assert_eq!(c[1].connect_timeout, Some(5 * SEC));
    // No connect_port: the real server's port (smtp_check_end_handler), not 25.
    assert_eq!((c[0].connect_ip, c[0].connect_port), (None, None));
    assert!(
        diags.contains(&"(k.conf: Line 11) SMTP_CHECK helo name missing".to_string()),
        "{diags:?}"
    );
    assert!(c.iter().all(|c| c.note.is_none()));
}

#[test]
fn smtp_check_host_blocks_become_checkers() {
    // 2.x smtp_check_end_handler: without connection options of its own, the first
    // host block takes the checker's place and every other one is a checker of its own
    // (with the SMTP_CHECK's helo_name, retry and timers).
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 25 {\n protocol TCP\n real_server 10.0.0.2 25 {\n\
         SMTP_CHECK {\n   helo_name a.example\n   retry 3\n   host {\n    connect_ip 10.0.0.5\n    connect_port 587\n   }\n   host {\n    connect_timeout 2\n    helo_name x\n   }\n  }\n\
         SMTP_CHECK {\n   connect_port 2525\n   host {\n    connect_ip 10.0.0.6\n   }\n  }\n }\n}\n",
    );
    let c = &cfg.services[0].real_servers[0].checkers;
    assert_eq!(c.len(), 4, "{c:#?}");
    let co = |c: &super::conf::Checker| (c.connect_ip, c.connect_port, c.connect_timeout);
    let ip = |s: &str| Some(s.parse().unwrap());
    assert_eq!(co(&c[0]), (ip("10.0.0.5"), Some(587), Some(5 * SEC)));
    assert_eq!(co(&c[1]), (None, None, Some(2 * SEC)));
    assert_eq!(co(&c[2]), (None, Some(2525), Some(5 * SEC)), "its own options stay");
    assert_eq!(co(&c[3]), (ip("10.0.0.6"), None, Some(5 * SEC)));
    for k in &c[..2] {
        assert_eq!(
            (&k.kind, k.retry),
            (
                &CheckKind::Smtp {
                    helo_name: "a.example".into()
                },
                Some(3)
            )
        );
    }
    let notes: Vec<_> = c.iter().map(|c| c.note.is_some()).collect();
    assert_eq!(notes, [true, false, true, false], "one deprecation note per SMTP_CHECK");
    // helo_name is not a host block keyword.
    let unknown: Vec<_> = diags.iter().filter(|d| d.contains("Unknown keyword")).collect();
    assert_eq!(unknown, ["(k.conf: Line 13) Unknown keyword 'helo_name'"], "{diags:?}");
}

/// Found by keepalived_conf_parse: a 32-byte digest holding a multi-byte character
/// panicked (a str slice inside the character); now keepalived's warning.
#[test]
fn digest_with_multibyte_characters_is_a_warning() {
    let (cfg, diags) = parse(
        "virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n real_server 10.0.0.2 80 {\n  HTTP_GET {\n   url {\n    path /\n    digest 0123456\u{4de}89abcdef0123456789abcde\n   }\n  }\n }\n}\n",
    );
    assert!(
        diags
            .iter()
            .any(|d| d.contains("Unable to interpret hex digit in") && d.contains("at offset 6/7")),
        "{diags:?}"
    );
    let CheckKind::Http { urls, .. } = &cfg.services[0].real_servers[0].checkers[0].kind else {
        panic!()
    };
    assert_eq!(urls[0].digest, None);
}
