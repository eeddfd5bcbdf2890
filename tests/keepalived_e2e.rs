//! `uvs run --keepalived`: the seed-003 virtual_server block (braces restored) on the
//! DR test bed with real servers that stop and start; HTTP_GET digests, MISC_CHECK's
//! misc_dynamic, quorum with a sorry server, SIGHUP reload.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// The seed's block with the test bed's addresses and shorter timers (the seed's
/// delay_loop 6, connect_timeout 10, nb_get_retry 3, delay_before_retry 3 would make
/// the test wait up to a minute).
fn seed_block(extra_vs: &str, extra_rs: &str) -> String {
    format!(
        "! Configuration File for keepalived (seed 003, braces restored)\n\
         global_defs {{\n router_id LVS_DEVEL\n}}\n\
         vrrp_instance VI_1 {{\n state MASTER\n interface eth0\n virtual_router_id 51\n priority 100\n advert_int 1\n\
         authentication {{\n auth_type PASS\n auth_pass 1111\n }}\n virtual_ipaddress {{\n 10.77.0.100\n }}\n}}\n\
         virtual_server 10.77.0.100 80 {{\n delay_loop 1\n lb_algo rr\n lb_kind DR\n nat_mask 255.255.255.0\n\
         {extra_vs}\n protocol TCP\n\
         real_server 10.77.0.11 80 {{\n weight 1\n {extra_rs}\n TCP_CHECK{{\n connect_timeout 1\n nb_get_retry 2\n delay_before_retry 1\n connect_port 80\n }}\n }}\n\
         real_server 10.77.0.12 80 {{\n weight 1\n {extra_rs}\n TCP_CHECK{{\n connect_timeout 1\n nb_get_retry 2\n delay_before_retry 1\n connect_port 80\n }}\n }}\n}}\n"
    )
}

/// Detection bound: delay_loop + (retry + 1) * connect_timeout + retry * delay_before_retry.
const BOUND: Duration = Duration::from_secs(1 + 3 + 2);

fn start(lvs: &mut Lvs, conf: &str) -> std::path::PathBuf {
    // The seed's vrrp_instance lists the VIP: uvs serves it only while keepalived
    // (MASTER) has it on the interface (README "High availability"). No keepalived
    // runs here: the test puts it there, as keepalived would.
    if conf.contains("virtual_ipaddress") {
        let vip = format!("{}/32", lvs.addrs.vip);
        lvs.bed
            .exec("dir", &["ip", "addr", "add", &vip, "dev", "eth0"])
            .unwrap();
    }
    start_keepalived(lvs, conf, &[])
}

#[test]
fn seed003_tcp_check_removes_and_restores_a_dead_server() {
    require_root!();
    let mut lvs = dr("kaseed");
    start(&mut lvs, &seed_block("persistence_timeout 50", ""));
    assert!(
        rs_line(&lvs, "10.77.0.11:80").is_some() && rs_line(&lvs, "10.77.0.12:80").is_some(),
        "{}",
        list(&lvs)
    );
    assert_eq!(lvs.http_names(1)[0].len(), 3);

    let t0 = Instant::now();
    stop_server(&lvs, "rs1");
    assert!(
        wait_until(BOUND.as_secs() + 2, || rs_line(&lvs, "10.77.0.11:80").is_none()),
        "rs1 still listed after {BOUND:?}:\n{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    let detected = t0.elapsed();
    assert!(
        detected <= BOUND + Duration::from_secs(1),
        "detection took {detected:?}"
    );
    // After detection every new connection goes to rs2; none fails.
    let names = lvs.http_names(10);
    assert!(names.iter().all(|n| n == "rs2"), "{names:?}");
    let log = lvs.director_log();
    assert!(
        log.contains("TCP_CHECK on service [10.77.0.11]:tcp:80 failed after 2 retries."),
        "{log}"
    );
    assert!(
        log.contains("Removing service [10.77.0.11]:tcp:80 from VS [10.77.0.100]:tcp:80"),
        "{log}"
    );

    // `uvs checks`: rs1's checker down, rs2's up.
    let text = uvs_out(&lvs, &["checks"]);
    let row = |rs: &str| text.lines().find(|l| l.contains(rs)).unwrap_or("").to_string();
    assert!(row("[10.77.0.11]:tcp:80").contains("TCP_CHECK  DOWN  dead"), "{text}");
    assert!(row("[10.77.0.12]:tcp:80").contains("TCP_CHECK  UP    alive"), "{text}");
    assert!(row("[10.77.0.12]:tcp:80").ends_with("success"), "{text}");

    start_server(&mut lvs, "rs1", &["--tcp", "0.0.0.0:80"]);
    assert!(
        wait_until(4, || rs_line(&lvs, "10.77.0.11:80").is_some_and(|l| l.contains(" 1 "))),
        "rs1 did not return:\n{}",
        list(&lvs)
    );
    let log = lvs.director_log();
    assert!(log.contains("TCP connection to [10.77.0.11]:tcp:80 success."), "{log}");
    assert!(
        log.contains("Adding service [10.77.0.11]:tcp:80 to VS [10.77.0.100]:tcp:80"),
        "{log}"
    );
}

#[test]
fn inhibit_on_failure_keeps_the_server_at_weight_zero() {
    require_root!();
    let mut lvs = dr("kainh");
    start(&mut lvs, &seed_block("", "inhibit_on_failure"));
    stop_server(&lvs, "rs1");
    assert!(
        wait_until(BOUND.as_secs() + 2, || rs_line(&lvs, "10.77.0.11:80")
            .is_some_and(|l| weight(&l) == Some("0"))),
        "rs1 not at weight 0:\n{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    let names = lvs.http_names(6);
    assert!(names.iter().all(|n| n == "rs2"), "{names:?}");
    assert!(
        lvs.director_log()
            .contains("Disabling service [10.77.0.11]:tcp:80 of VS [10.77.0.100]:tcp:80")
    );
    start_server(&mut lvs, "rs1", &["--tcp", "0.0.0.0:80"]);
    assert!(wait_until(4, || rs_line(&lvs, "10.77.0.11:80")
        .is_some_and(|l| weight(&l) == Some("1"))));
}

fn md5_of(lvs: &Lvs, url: &str) -> String {
    let out = lvs
        .bed
        .exec_any("dir", &["curl", "-s", "--max-time", "3", url])
        .unwrap();
    uvs::check::md5_hex(&out.stdout)
}

#[test]
fn http_get_digest_mismatch_fails_and_misc_dynamic_sets_a_weight() {
    require_root!();
    let mut lvs = dr("kahttp");
    // Digests taken as genhash would: the MD5 of rs1's page (rs2's page differs).
    let rs1_md5 = md5_of(&lvs, "http://10.77.0.11/");
    let conf = format!(
        "virtual_server 10.77.0.100 80 {{\n delay_loop 1\n lvs_sched rr\n lvs_method DR\n protocol TCP\n\
         real_server 10.77.0.11 80 {{\n  HTTP_GET {{\n   url {{\n    path /\n    status_code 200-299\n    digest {rs1_md5}\n   }}\n   connect_timeout 1\n   retry 1\n   delay_before_retry 0.2\n  }}\n\
          MISC_CHECK {{\n   misc_path \"/bin/sh -c 'exit 9'\"\n   misc_dynamic\n  }}\n }}\n\
         real_server 10.77.0.12 80 {{\n  HTTP_GET {{\n   url {{\n    path /\n    digest {rs1_md5}\n   }}\n   connect_timeout 1\n   retry 1\n   delay_before_retry 0.2\n  }}\n }}\n}}\n"
    );
    start(&mut lvs, &conf);
    assert!(
        wait_until(5, || rs_line(&lvs, "10.77.0.12:80").is_none()
            && rs_line(&lvs, "10.77.0.11:80").is_some_and(|l| weight(&l) == Some("7"))),
        "want rs2 removed (digest) and rs1 at weight 9-2=7:\n{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    let log = lvs.director_log();
    assert!(
        log.contains("HTTP_CHECK on service [10.77.0.12]:tcp:80 failed"),
        "{log}"
    );
    assert!(
        log.contains("Misc check for [[10.77.0.11]:tcp:80 VS [10.77.0.100]:tcp:80] by [/bin/sh] succeeded."),
        "{log}"
    );
    let names = lvs.http_names(4);
    assert!(names.iter().all(|n| n == "rs1"), "{names:?}");
}

#[test]
fn quorum_lost_brings_the_sorry_server_and_sighup_reloads() {
    require_root!();
    let mut lvs = dr("kaquorum");
    let conf = "virtual_server 10.77.0.100 80 {\n delay_loop 1\n lvs_sched rr\n lvs_method DR\n protocol TCP\n quorum 1\n sorry_server 10.77.0.12 80\n\
         real_server 10.77.0.11 80 {\n  TCP_CHECK {\n   connect_timeout 1\n   retry 1\n   delay_before_retry 0.2\n  }\n }\n}\n";
    let path = start(&mut lvs, conf);
    assert!(rs_line(&lvs, "10.77.0.12:80").is_none(), "{}", list(&lvs));
    stop_server(&lvs, "rs1");
    assert!(
        wait_until(5, || rs_line(&lvs, "10.77.0.12:80").is_some()
            && rs_line(&lvs, "10.77.0.11:80").is_none()),
        "sorry server not in:\n{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    assert_eq!(lvs.http_names(3), ["rs2", "rs2", "rs2"]);
    let log = lvs.director_log();
    assert!(
        log.contains("Lost quorum 1-0=1 > 0 for VS [10.77.0.100]:tcp:80"),
        "{log}"
    );
    assert!(
        log.contains("Adding sorry server [10.77.0.12]:tcp:80 to VS [10.77.0.100]:tcp:80"),
        "{log}"
    );
    start_server(&mut lvs, "rs1", &["--tcp", "0.0.0.0:80"]);
    assert!(
        wait_until(4, || rs_line(&lvs, "10.77.0.12:80").is_none()
            && rs_line(&lvs, "10.77.0.11:80").is_some()),
        "sorry server did not leave:\n{}",
        list(&lvs)
    );
    // SIGHUP with a bad file: logged, the running table stays.
    std::fs::write(&path, "includer /nonexistent/uvs-ka-*.conf\n").unwrap();
    let pid = lvs.director_pid.unwrap();
    signal(pid, Signal::SIGHUP);
    assert!(
        wait_until(3, || lvs.director_log().contains("reload refused")),
        "{}",
        lvs.director_log()
    );
    assert!(rs_line(&lvs, "10.77.0.11:80").is_some());
    // SIGHUP with a second real server and a new weight: applied, rs1's checker kept.
    std::fs::write(
        &path,
        conf.replace(
            "real_server 10.77.0.11 80 {\n",
            "real_server 10.77.0.12 80 {\n  weight 3\n }\n real_server 10.77.0.11 80 {\n",
        ),
    )
    .unwrap();
    signal(pid, Signal::SIGHUP);
    assert!(
        wait_until(3, || rs_line(&lvs, "10.77.0.12:80")
            .is_some_and(|l| weight(&l) == Some("3"))),
        "{}\n{}",
        list(&lvs),
        lvs.director_log()
    );
    assert!(
        lvs.director_log().contains("(1 kept their state)"),
        "{}",
        lvs.director_log()
    );
}
