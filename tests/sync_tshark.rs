//! Independent wire check of the IPVS sync codec: uvs-encoded messages, in
//! Ethernet/IPv4/UDP frames to 224.0.0.81:8848 in a pcap file, decoded by
//! Wireshark's `ipvs` dissector (`tshark`, Debian package `tshark`). Its dissector
//! reads version 1 (`ipvs.type`, `ipvs.flags.v1`, `ipvs.fwmark`, `ipvs.timeout`,
//! IPv6 addresses) and version 0; both are checked. Skips loudly without tshark.

use pcap_file::pcap::{PcapPacket, PcapWriter};
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;
use uvs::sync::{Encoder, SyncConn, encode_v0, flags};

fn tshark() -> bool {
    match Command::new("tshark").arg("-v").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            assert!(std::env::var_os("CI").is_none(), "tshark missing in CI");
            eprintln!("SKIP: tshark not installed (apt-get install tshark)");
            false
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 1], [0x01, 0, 0x5e, 0, 0, 0x51])
        .ipv4([192, 168, 41, 181], uvs::sync::GROUP, uvs::sync::DEFAULT_TTL)
        .udp(8848, uvs::sync::PORT);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// Writes `msgs` as one frame each and returns tshark's `-T fields` lines.
fn dissect(name: &str, msgs: &[Vec<u8>], fields: &[&str]) -> Vec<String> {
    let path = std::env::temp_dir().join(format!("uvs-sync-tshark-{}-{name}.pcap", std::process::id()));
    {
        let f = std::fs::File::create(&path).unwrap();
        let mut w = PcapWriter::new(f).unwrap();
        for (i, m) in msgs.iter().enumerate() {
            let data = frame(m);
            w.write_packet(&PcapPacket::new(
                Duration::from_millis(i as u64),
                data.len() as u32,
                &data,
            ))
            .unwrap();
        }
    }
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"])
        .arg(&path)
        .args(["-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Dissects `msgs` (one message expected) and checks each field's value, in order.
fn expect(name: &str, msgs: &[Vec<u8>], fields_and_values: &[(&str, &str)]) {
    let fields: Vec<&str> = fields_and_values.iter().map(|(f, _)| *f).collect();
    let want: Vec<&str> = fields_and_values.iter().map(|(_, v)| *v).collect();
    let lines = dissect(name, msgs, &fields);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let got: Vec<&str> = lines[0].split('|').collect();
    eprintln!("tshark {name}: {got:?}");
    assert_eq!(got, want);
}

fn conn(i: u8) -> SyncConn {
    SyncConn {
        protocol: 6,
        caddr: IpAddr::from([203, 0, 113, i]),
        cport: 40000 + u16::from(i),
        vaddr: IpAddr::from([192, 168, 41, 249]),
        vport: 80,
        daddr: IpAddr::from([10, 0, 0, 10 + i]),
        dport: 8080,
        flags: flags::DROUTE,
        state: 1,
        fwmark: 7,
        timeout: 900,
        seq: None,
        pe: None,
    }
}

#[test]
fn tshark_decodes_uvs_v1_messages() {
    if !tshark() {
        return;
    }
    let tpl = SyncConn {
        cport: 0,
        flags: flags::TEMPLATE | flags::MASQ,
        state: 0,
        timeout: 360,
        ..conn(3)
    };
    let msgs = Encoder::encode_all(51, 1472, &[conn(1), conn(2), tpl]).unwrap();
    assert_eq!(msgs.len(), 1);
    expect(
        "v1",
        &msgs,
        &[
            ("ipvs.syncid", "51"),
            ("ipvs.conncount", "3"),
            ("ipvs.version", "1"),
            ("ipvs.size", "116"), // 8 + 3 * 36
            ("ipvs.proto", "0x06,0x06,0x06"),
            ("ipvs.caddr", "203.0.113.1,203.0.113.2,203.0.113.3"),
            ("ipvs.cport", "40001,40002,0"),
            ("ipvs.vaddr", "192.168.41.249,192.168.41.249,192.168.41.249"),
            ("ipvs.vport", "80,80,80"),
            ("ipvs.daddr", "10.0.0.11,10.0.0.12,10.0.0.13"),
            ("ipvs.dport", "8080,8080,8080"),
            ("ipvs.state", "0x0001,0x0001,0x0000"),
            ("ipvs.flags.v1", "0x00000003,0x00000003,0x00001000"),
            ("ipvs.fwmark", "0x00000007,0x00000007,0x00000007"),
            ("ipvs.timeout", "900,900,360"),
        ],
    );
}

#[test]
fn tshark_decodes_uvs_v0_messages() {
    if !tshark() {
        return;
    }
    let seq = SyncConn {
        flags: flags::MASQ | flags::IN_SEQ,
        seq: Some(Default::default()),
        ..conn(2)
    };
    let msgs = encode_v0(7, 1472, &[conn(1), seq]).unwrap();
    expect(
        "v0",
        &msgs,
        &[
            ("ipvs.conncount", "2"),
            ("ipvs.syncid", "7"),
            ("ipvs.size", "76"), // 4 + 24 + 48
            ("ipvs.proto", "0x06,0x06"),
            ("ipvs.caddr", "203.0.113.1,203.0.113.2"),
            ("ipvs.cport", "40001,40002"),
            ("ipvs.vaddr", "192.168.41.249,192.168.41.249"),
            ("ipvs.vport", "80,80"),
            ("ipvs.daddr", "10.0.0.11,10.0.0.12"),
            ("ipvs.dport", "8080,8080"),
            ("ipvs.flags", "0x0003,0x0400"),
            ("ipvs.state", "0x0001,0x0001"),
        ],
    );
}

#[test]
fn tshark_decodes_uvs_v1_ipv6_entries() {
    if !tshark() {
        return;
    }
    let c = SyncConn {
        caddr: "2001:db8::7".parse().unwrap(),
        vaddr: "2001:db8::100".parse().unwrap(),
        daddr: "2001:db8::11".parse().unwrap(),
        ..conn(1)
    };
    let msgs = Encoder::encode_all(9, 1472, &[c]).unwrap();
    expect(
        "v6",
        &msgs,
        &[
            ("ipvs.syncid", "9"),
            ("ipvs.type", "1"),
            ("ipvs.size.v1", "72"),
            ("ipvs.caddr6", "2001:db8::7"),
            ("ipvs.vaddr6", "2001:db8::100"),
            ("ipvs.daddr6", "2001:db8::11"),
            ("ipvs.cport", "40001"),
        ],
    );
}
