//! Grammar tests: bundling, optional `-p`, defaults, port forcing, address forms.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::service::{ForwardMethod, Netmask, Protocol, TunnelCsum, TunnelType, svc_flags};

pub(super) fn p(line: &str) -> Result<Command, ParseError> {
    parse_args(&line.split_whitespace().collect::<Vec<_>>())
}

fn ok(line: &str) -> Command {
    p(line).unwrap_or_else(|e| panic!("{line}: {e:?}"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(a: &str, port: u16) -> ServiceAddr {
    ServiceAddr::Inet {
        proto: Protocol::Tcp,
        addr: ip(a),
        port,
    }
}

fn svc(line: &str) -> ServiceConfig {
    match ok(line) {
        Command::AddService(c) | Command::EditService(c) => c,
        other => panic!("{other:?}"),
    }
}

fn dest(line: &str) -> (ServiceAddr, DestConfig) {
    match ok(line) {
        Command::AddServer(s, d) | Command::EditServer(s, d) => (s, d),
        other => panic!("{other:?}"),
    }
}

fn list(line: &str) -> ListOptions {
    match ok(line) {
        Command::List(l) => l,
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_args_is_plain_list() {
    let none: [&str; 0] = [];
    assert_eq!(parse_args(&none), Ok(Command::List(ListOptions::default())));
}

#[test]
fn bundling() {
    let l = list("-Ln");
    assert!(l.numeric && !l.connections);
    let l = list("-Lnc");
    assert!(l.numeric && l.connections);
    let l = list("-lnt 10.0.0.1:80");
    assert!(l.numeric);
    assert_eq!(l.service, Some(tcp("10.0.0.1", 80)));
    let l = list("--list --numeric --stats --exact --nosort");
    assert_eq!(l.view, ListView::Stats);
    assert!(l.exact && l.nosort && l.numeric);
    assert_eq!(ok("-S -n"), Command::Save { numeric: true });
    assert_eq!(ok("--save"), Command::Save { numeric: false });
    assert_eq!(ok("-Sn"), Command::Save { numeric: true });
}

#[test]
fn long_option_values() {
    let c = svc("--add-service --tcp-service=10.0.0.1:80 --scheduler rr --persistent=20");
    assert_eq!(c.addr, tcp("10.0.0.1", 80));
    assert_eq!((c.scheduler.as_str(), c.timeout), ("rr", 20));
    let c = svc("-A -t10.0.0.1:80 -srr");
    assert_eq!(c.scheduler, "rr");
}

#[test]
fn optional_persistent_value() {
    let c = svc("-A -t 10.0.0.1:80 -p 20");
    assert_eq!((c.flags, c.timeout), (svc_flags::PERSISTENT, 20));
    let c = svc("-A -t 10.0.0.1:80 -p");
    assert_eq!((c.flags, c.timeout), (svc_flags::PERSISTENT, 360));
    let c = svc("-A -t 10.0.0.1:80 -p -s rr");
    assert_eq!((c.timeout, c.scheduler.as_str()), (360, "rr"));
    let c = svc("-A -p -t 10.0.0.1:80");
    assert_eq!(c.timeout, 360);
    let c = svc("-A -t 10.0.0.1:80 -p2678400");
    assert_eq!(c.timeout, 2_678_400);
    // popt hands the next word to -p whatever it is, if it does not start with '-'.
    let e = p("-A -t 10.0.0.1:80 -p foo").unwrap_err();
    assert_eq!(e.message, "invalid timeout value `foo' specified");
    assert_eq!(
        p("-A -t 10.0.0.1:80 -p 0").unwrap_err().message,
        "invalid timeout value `0' specified"
    );
    assert_eq!(
        p("-A -t 10.0.0.1:80 -p 2678401").unwrap_err().message,
        "invalid timeout value `2678401' specified"
    );
}

#[test]
fn service_defaults() {
    let c = svc("-A -t 10.0.0.1:80");
    assert_eq!(c.scheduler, "wlc");
    assert_eq!((c.flags, c.timeout, c.pe.as_deref()), (0, 0, None));
    assert_eq!(c.netmask, Netmask::V4(Ipv4Addr::BROADCAST));
    let c = svc("-A -t [2001:db8::80]:80");
    assert_eq!(c.netmask, Netmask::V6Prefix(128));
    // -E is a replace: the scheduler falls back to wlc.
    let c = svc("-E -t 10.0.0.1:80 -p 600");
    assert_eq!((c.scheduler.as_str(), c.timeout), ("wlc", 600));
    let c = svc("-A -t 10.0.0.1:0 -p -M 255.255.255.0 --pe sip -s sh -b sh-port,sh-fallback");
    assert_eq!(c.netmask, Netmask::V4(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!(c.pe.as_deref(), Some("sip"));
    assert_eq!(c.flags, svc_flags::PERSISTENT | svc_flags::SCHED1 | svc_flags::SCHED2);
    let c = svc("-A -t [2001:db8::80]:80 -p -M 64");
    assert_eq!(c.netmask, Netmask::V6Prefix(64));
    let c = svc("-A -f 7 -6 -p -M 48");
    assert_eq!(c.addr, ServiceAddr::Fwmark { mark: 7, ipv6: true });
    assert_eq!(c.netmask, Netmask::V6Prefix(48));
    let c = svc("-A -u 10.0.0.1:53 -o -b flag-1,flag-3");
    assert_eq!(c.flags, svc_flags::ONEPACKET | svc_flags::SCHED1 | svc_flags::SCHED3);
    let c = svc("-A -f 1 -o");
    assert_eq!(c.flags, svc_flags::ONEPACKET);
    let c = svc("-A --sctp-service 10.0.0.1:9 -s mh -b mh-port");
    assert_eq!(
        c.addr,
        ServiceAddr::Inet {
            proto: Protocol::Sctp,
            addr: ip("10.0.0.1"),
            port: 9
        }
    );
    // Scheduler names are not validated here (the kernel does it), only truncated.
    assert_eq!(
        svc("-A -t 10.0.0.1:80 -s abcdefghijklmnopq").scheduler,
        "abcdefghijklmno"
    );
}

#[test]
fn zero_port_allowed_when_persistent_or_fwmark() {
    assert_eq!(svc("-A -t 10.0.0.1 -p").addr, tcp("10.0.0.1", 0));
    assert_eq!(svc("-A -f 5").addr, ServiceAddr::Fwmark { mark: 5, ipv6: false });
}

#[test]
fn dest_defaults_and_port_forcing() {
    let (s, d) = dest("-a -t 10.0.0.1:80 -r 10.0.1.1");
    assert_eq!(s, tcp("10.0.0.1", 80));
    assert_eq!(
        (d.addr, d.port, d.method, d.weight),
        (ip("10.0.1.1"), 80, ForwardMethod::Route, 1)
    );
    assert_eq!((d.u_threshold, d.l_threshold), (0, 0));
    assert_eq!(
        (d.tun_type, d.tun_port, d.tun_csum),
        (TunnelType::Ipip, 0, TunnelCsum::NoCsum)
    );
    // -g and -i replace the real port by the virtual port; -m keeps it.
    assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1:8080").1.port, 80);
    assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -g").1.port, 80);
    assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -i").1.port, 80);
    let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 0 -x 10 -y 5").1;
    assert_eq!(
        (d.port, d.method, d.weight, d.u_threshold, d.l_threshold),
        (8080, ForwardMethod::Masq, 0, 10, 5)
    );
    assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1 -m").1.port, 80);
    // Fwmark services keep the given port whatever the method.
    assert_eq!(dest("-a -f 1 -r 10.0.1.1:8080 -g").1.port, 8080);
    assert_eq!(dest("-a -f 1 -r 10.0.1.1").1.port, 0);
    // -e is a replace: method and weight fall back to -g / 1.
    let d = dest("-e -t 10.0.0.1:80 -r 10.0.1.1 -w 5").1;
    assert_eq!((d.method, d.weight), (ForwardMethod::Route, 5));
    assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1 -m -w 65535").1.weight, 65535);
    let max = dest("-a -t 10.0.0.1:80 -r 10.0.1.1 -x 2147483647").1;
    assert_eq!(max.u_threshold, 2_147_483_647);
}

#[test]
fn tunnel_options() {
    let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-port 6080 --tun-remcsum").1;
    assert_eq!(
        (d.tun_type, d.tun_port, d.tun_csum),
        (TunnelType::Gue, 6080, TunnelCsum::RemCsum)
    );
    let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gre --tun-csum").1;
    assert_eq!((d.tun_type, d.tun_csum), (TunnelType::Gre, TunnelCsum::Csum));
    let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gre --tun-nocsum").1;
    assert_eq!(d.tun_csum, TunnelCsum::NoCsum);
    // A tunnel server may be of the other address family.
    let d = dest("-a -t 10.0.0.1:80 -r [2001:db8::1]:80 -i").1;
    assert_eq!(d.addr, ip("2001:db8::1"));
}

#[test]
fn delete_and_zero_and_clear() {
    assert_eq!(ok("-D -t 10.0.0.1:80"), Command::DeleteService(tcp("10.0.0.1", 80)));
    assert_eq!(
        ok("-D -u 10.0.0.1"),
        Command::DeleteService(ServiceAddr::Inet {
            proto: Protocol::Udp,
            addr: ip("10.0.0.1"),
            port: 0
        })
    );
    assert_eq!(
        ok("-d -t 10.0.0.1:80 -r 10.0.1.1:8080"),
        Command::DeleteServer(tcp("10.0.0.1", 80), ip("10.0.1.1"), 8080)
    );
    assert_eq!(
        ok("-d -t 10.0.0.1:80 -r 10.0.1.1"),
        Command::DeleteServer(tcp("10.0.0.1", 80), ip("10.0.1.1"), 80)
    );
    assert_eq!(ok("-Z"), Command::Zero(None));
    assert_eq!(
        ok("-Z -f 3"),
        Command::Zero(Some(ServiceAddr::Fwmark { mark: 3, ipv6: false }))
    );
    assert_eq!(ok("-C"), Command::Clear);
    assert_eq!(ok("--clear"), Command::Clear);
    assert_eq!(ok("-R"), Command::Restore);
}

#[test]
fn set_daemons_help_version() {
    assert_eq!(
        ok("--set 900 120 300"),
        Command::SetTimeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300
        }
    );
    assert_eq!(
        ok("--set 0 0 0"),
        Command::SetTimeouts {
            tcp: 0,
            tcpfin: 0,
            udp: 0
        }
    );
    assert_eq!(ok("-h"), Command::Help);
    assert_eq!(ok("--help -Z"), Command::Help);
    assert_eq!(ok("-v"), Command::Version);
    match ok("--start-daemon master") {
        Command::StartDaemon(d) => {
            assert_eq!(
                (d.state, d.mcast_ifn.as_str(), d.syncid),
                (SyncState::Master, "eth0", 0)
            );
            assert_eq!(
                (d.sync_maxlen, d.mcast_group, d.mcast_port, d.mcast_ttl),
                (None, None, None, None)
            );
        }
        other => panic!("{other:?}"),
    }
    let line = "--start-daemon=backup --mcast-interface eth1 --syncid 51 --sync-maxlen 1472 \
                --mcast-group 224.0.0.82 --mcast-port 8849 --mcast-ttl 2";
    match ok(line) {
        Command::StartDaemon(d) => {
            assert_eq!(
                (d.state, d.mcast_ifn.as_str(), d.syncid),
                (SyncState::Backup, "eth1", 51)
            );
            assert_eq!(d.sync_maxlen, Some(1472));
            assert_eq!(d.mcast_group, Some(ip("224.0.0.82")));
            assert_eq!((d.mcast_port, d.mcast_ttl), (Some(8849), Some(2)));
        }
        other => panic!("{other:?}"),
    }
    match ok("--start-daemon master --mcast-group ff02::81") {
        Command::StartDaemon(d) => assert_eq!(d.mcast_group, Some(ip("ff02::81"))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ok("--stop-daemon backup --syncid 3"),
        Command::StopDaemon {
            state: SyncState::Backup,
            syncid: 3
        }
    );
}

#[test]
fn list_variants() {
    assert!(list("-L --timeout").timeout);
    assert!(list("-L --daemon").daemon);
    assert!(list("-L --syncid 5").service.is_none());
    assert_eq!(list("-L --stats --rate").view, ListView::Stats);
    assert_eq!(list("-L --rate --thresholds").view, ListView::Rate);
    assert_eq!(list("-L --tun-info --persistent-conn").view, ListView::PersistentConn);
    assert_eq!(list("-L --tun-info").view, ListView::TunInfo);
    let l = list("-L -c --persistent-conn");
    assert!(l.connections && l.view == ListView::PersistentConn);
    assert_eq!(
        list("-L -f 9 -6").service,
        Some(ServiceAddr::Fwmark { mark: 9, ipv6: true })
    );
    assert!(!list("-L --sort --sort").nosort);
}

#[test]
fn address_forms() {
    assert_eq!(svc("-A -t [2001:db8::80]:80").addr, tcp("2001:db8::80", 80));
    assert_eq!(svc("-A -t 2001:db8::80 -p").addr, tcp("2001:db8::80", 0));
    assert_eq!(svc("-A -t 10.0.0.1:http").addr, tcp("10.0.0.1", 80));
    assert_eq!(
        svc("-A -u 10.0.0.1:domain").addr,
        ServiceAddr::Inet {
            proto: Protocol::Udp,
            addr: ip("10.0.0.1"),
            port: 53
        }
    );
    assert_eq!(svc("-A -t 10.1:80").addr, tcp("10.0.0.1", 80));
    let (s, d) = dest("-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:8080 -m");
    assert_eq!(s, tcp("2001:db8::80", 80));
    assert_eq!((d.addr, d.port), (ip("2001:db8::a0a0"), 8080));
    assert_eq!(dest("-a -t [2001:db8::80]:80 -r 2001:db8::a0a0").1.port, 80);
    // Host names resolve to their first IPv4 address (gethostbyname).
    assert_eq!(svc("-A -t localhost:80").addr, tcp("127.0.0.1", 80));
    // A fwmark service keeps an IPv4 netmask unless -6 follows -f.
    let c = svc("-A -f 2 -p 60 -M 255.255.0.0");
    assert_eq!(c.netmask, Netmask::V4(Ipv4Addr::new(255, 255, 0, 0)));
    // The port name is looked up for the service's protocol, also for -r.
    assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1:https -m").1.port, 443);
}

#[test]
fn save_example_lines_parse_back() {
    let c = svc("-A -t 192.168.10.100:443 -s rr -p 360 -M 255.255.255.0");
    assert_eq!(
        (c.timeout, c.netmask),
        (360, Netmask::V4(Ipv4Addr::new(255, 255, 255, 0)))
    );
    let c = svc("-A -u 192.168.10.100:53 -s rr -o");
    assert_eq!(c.flags, svc_flags::ONEPACKET);
    let d = dest("-a -u 192.168.10.100:53 -r 192.168.10.13:53 -g -w 0").1;
    assert_eq!(d.weight, 0);
    let c = svc("-A -f 1 -s sh -b sh-port");
    assert_eq!((c.scheduler.as_str(), c.flags), ("sh", svc_flags::SCHED2));
    let (s, d) = dest("-a -f 1 -r 192.168.10.11:0 -i -w 1 --tun-type ipip");
    assert_eq!(s, ServiceAddr::Fwmark { mark: 1, ipv6: false });
    assert_eq!(
        (d.port, d.method, d.tun_type),
        (0, ForwardMethod::Tunnel, TunnelType::Ipip)
    );
    let d = dest("-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1").1;
    assert_eq!(d.method, ForwardMethod::Masq);
    // Leading "ipvsadm" tokens are dropped by the -R tokenizer.
    let toks = tokenize_line("ipvsadm -A\t-t 10.0.0.1:80  -s rr\r");
    assert_eq!(toks, vec!["-A", "-t", "10.0.0.1:80", "-s", "rr"]);
    assert!(matches!(parse_args(&toks), Ok(Command::AddService(_))));
}

#[test]
fn order_dependent_quirks() {
    // -M before an IPv6 -t is parsed as an IPv4 mask, then reset to /128 by -t.
    assert_eq!(
        svc("-A -p -M 255.255.255.0 -t [2001:db8::1]:80").netmask,
        Netmask::V6Prefix(128)
    );
    // -r before -t without a port copies the (still zero) service port; -m keeps it.
    assert_eq!(dest("-a -r 10.0.1.1 -m -t 10.0.0.1:80").1.port, 0);
    assert_eq!(dest("-a -r 10.0.1.1 -t 10.0.0.1:80").1.port, 80);
    // Positional words may appear anywhere for --set (popt permutes them).
    assert_eq!(
        ok("1 --set 2 3"),
        Command::SetTimeouts {
            tcp: 1,
            tcpfin: 2,
            udp: 3
        }
    );
}
