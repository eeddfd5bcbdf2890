//! Fragments (issue 7): a UDP datagram larger than the MTU reaches the director as
//! IPv4 fragments; the kernel reassembles them for uvs (PACKET_FANOUT_FLAG_DEFRAG),
//! uvs forwards the datagram and fragments it again on output (DR, NAT; TUN fragments
//! its outer packet). The real server's echo, as large, comes back intact: directly
//! for DR and TUN, through the director (reassembled and fragmented again) for NAT.

mod common;
use common::*;

/// Bytes of UDP payload: three fragments on a 1500-byte MTU each way.
const SIZE: usize = 4000;

fn probe(lvs: &Lvs, to: &str) -> String {
    let n = SIZE.to_string();
    let out = lvs
        .bed
        .exec_any("client", &[&lvs.exe, "probe", "udp", to, "frag", "--size", &n])
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

#[test]
fn dr_forwards_a_datagram_larger_than_the_mtu() {
    require_root!();
    let mut lvs = dr("frdr");
    lvs.start_director(
        "-A -u 10.77.0.100:53 -s rr\n-a -u 10.77.0.100:53 -r 10.77.0.11:53 -g\n",
        &["--workers", "2"],
    )
    .unwrap();
    let r = probe(&lvs, "10.77.0.100:53");
    assert_eq!(r, format!("rs1: {SIZE} bytes intact"), "{}", lvs.director_log());
}

#[test]
fn nat_forwards_large_datagrams_both_ways() {
    require_root!();
    let mut lvs = Lvs::nat("frnat", UVS, false, false, false).unwrap();
    lvs.start_director(
        "-A -u 192.168.77.100:53 -s rr\n-a -u 192.168.77.100:53 -r 10.78.1.11:53 -m\n",
        &["--workers", "2"],
    )
    .unwrap();
    let r = probe(&lvs, "192.168.77.100:53");
    assert_eq!(r, format!("rs1: {SIZE} bytes intact"), "{}", lvs.director_log());
}

#[test]
fn tun_forwards_a_datagram_larger_than_the_mtu() {
    require_root!();
    let mut lvs = Lvs::tun("frtun", UVS, 1500, false, false).unwrap();
    lvs.start_director(
        "-A -u 10.77.0.100:53 -s rr\n-a -u 10.77.0.100:53 -r 10.79.0.11:53 -i\n",
        &["--workers", "2"],
    )
    .unwrap();
    let r = probe(&lvs, "10.77.0.100:53");
    assert_eq!(r, format!("rs1: {SIZE} bytes intact"), "{}", lvs.director_log());
}
