//! Golden messages written out field by field from the kernel's structs
//! (`ip_vs_sync.c`: `struct ip_vs_sync_mesg`, `ip_vs_sync_v4`, `ip_vs_sync_v6`,
//! `ip_vs_sync_mesg_v0`, `ip_vs_sync_conn_v0`, `ip_vs_sync_conn_options`), all
//! fields big-endian.

use super::*;
use crate::sync::{FwdMethod, Role, sync_maxlen};
use proptest::prelude::*;

/// Found by `mutated_golden_never_panics`: an entry whose size field is 0 made the
/// decoder index an empty slice. The kernel reads the type byte from the message and
/// then finds the entry too small (or of an unknown type).
#[test]
fn an_entry_of_size_zero_is_too_small_not_a_panic() {
    // Header: 1 entry, version 1; the entry: type 0, proto 6, ver_size 0.
    let mut m = vec![0u8, 0, 0, 44, 1, 1, 0, 0];
    m.extend_from_slice(&[0, 6, 0, 0]);
    m.resize(44, 0);
    assert_eq!(decode(&m, 0), Err(DecodeError::EntryTooSmall { index: 0, size: 0 }));
    m[8] = 0x80;
    assert_eq!(decode(&m, 0), Err(DecodeError::EntryType { index: 0, ty: 0x80 }));
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// TCP ESTABLISHED, DR, 203.0.113.7:51544 -> 192.168.10.100:80 -> 192.168.10.11:80, 900 s.
fn tcp_dr() -> SyncConn {
    SyncConn {
        protocol: 6,
        caddr: ip("203.0.113.7"),
        cport: 51544,
        vaddr: ip("192.168.10.100"),
        vport: 80,
        daddr: ip("192.168.10.11"),
        dport: 80,
        flags: flags::DROUTE,
        state: 1,
        fwmark: 0,
        timeout: 900,
        seq: None,
        pe: None,
    }
}

/// A `sip` persistence template: UDP, NAT, client port 0, 360 s, PE data "abc".
fn sip_template() -> SyncConn {
    SyncConn {
        protocol: 17,
        caddr: ip("198.51.100.4"),
        cport: 0,
        vaddr: ip("192.168.10.100"),
        vport: 5060,
        daddr: ip("192.168.10.20"),
        dport: 5060,
        flags: flags::TEMPLATE | flags::MASQ,
        state: 0,
        fwmark: 0,
        timeout: 360,
        seq: None,
        pe: Some(PeData {
            name: b"sip".to_vec(),
            data: b"abc".to_vec(),
        }),
    }
}

/// NAT TCP with sequence adjustment, fwmark 12, inactive (SYN_RECV = 3).
fn tcp_nat_seq() -> SyncConn {
    SyncConn {
        protocol: 6,
        caddr: ip("10.1.2.3"),
        cport: 40000,
        vaddr: ip("10.0.0.1"),
        vport: 21,
        daddr: ip("10.0.1.1"),
        dport: 2121,
        flags: flags::MASQ | flags::IN_SEQ | flags::OUT_SEQ | flags::INACTIVE,
        state: 3,
        fwmark: 12,
        timeout: 60,
        seq: Some(SeqOpts {
            in_seq: Seq {
                init_seq: 0x11223344,
                delta: 5,
                previous_delta: 0,
            },
            out_seq: Seq {
                init_seq: 0xaabbccdd,
                delta: 0xffff_fffb,
                previous_delta: 1,
            },
        }),
        pe: None,
    }
}

#[rustfmt::skip]
const GOLDEN_V1: [u8; 154] = [
    // struct ip_vs_sync_mesg
    0x00,                   // reserved, must be 0
    51,                     // syncid
    0x00, 154,              // size = 154, header included
    3,                      // nr_conns
    1,                      // version = SYNC_PROTO_VER
    0x00, 0x00,             // spare
    // entry 0 at 8: struct ip_vs_sync_v4, 36 bytes, no options
    0x00,                   // type: IPv4
    6,                      // protocol: TCP
    0x00, 36,               // ver_size: version 0, size 36
    0x00, 0x00, 0x00, 0x03, // flags: IP_VS_CONN_F_DROUTE
    0x00, 0x01,             // state: IP_VS_TCP_S_ESTABLISHED
    0xc9, 0x58,             // cport 51544
    0x00, 80,               // vport
    0x00, 80,               // dport
    0x00, 0x00, 0x00, 0x00, // fwmark
    0x00, 0x00, 0x03, 0x84, // timeout 900 s
    203, 0, 113, 7,         // caddr
    192, 168, 10, 100,      // vaddr
    192, 168, 10, 11,       // daddr
    // entry 1 at 44: 36 + PE data (2 + 3) + PE name (2 + 3) = 46 bytes
    0x00,                   // type: IPv4
    17,                     // protocol: UDP
    0x00, 46,               // ver_size
    0x00, 0x00, 0x10, 0x00, // flags: IP_VS_CONN_F_TEMPLATE | MASQ
    0x00, 0x00,             // state
    0x00, 0x00,             // cport 0
    0x13, 0xc4,             // vport 5060
    0x13, 0xc4,             // dport 5060
    0x00, 0x00, 0x00, 0x00, // fwmark
    0x00, 0x00, 0x01, 0x68, // timeout 360 s
    198, 51, 100, 4,        // caddr
    192, 168, 10, 100,      // vaddr
    192, 168, 10, 20,       // daddr
    2, 3, b'a', b'b', b'c', // IPVS_OPT_PE_DATA, len 3
    3, 3, b's', b'i', b'p', // IPVS_OPT_PE_NAME, len 3
    0x00, 0x00,             // padding to 32-bit alignment (90 -> 92)
    // entry 2 at 92: 36 + sequence option (2 + 24) = 62 bytes
    0x00,                   // type: IPv4
    6,                      // protocol: TCP
    0x00, 62,               // ver_size
    0x00, 0x00, 0x07, 0x00, // flags: IN_SEQ | OUT_SEQ | INACTIVE | MASQ
    0x00, 0x03,             // state: IP_VS_TCP_S_SYN_RECV
    0x9c, 0x40,             // cport 40000
    0x00, 21,               // vport
    0x08, 0x49,             // dport 2121
    0x00, 0x00, 0x00, 12,   // fwmark 12
    0x00, 0x00, 0x00, 60,   // timeout 60 s
    10, 1, 2, 3,            // caddr
    10, 0, 0, 1,            // vaddr
    10, 0, 1, 1,            // daddr
    1, 24,                  // IPVS_OPT_SEQ_DATA, len sizeof(ip_vs_sync_conn_options)
    0x11, 0x22, 0x33, 0x44, // in_seq.init_seq
    0x00, 0x00, 0x00, 0x05, // in_seq.delta
    0x00, 0x00, 0x00, 0x00, // in_seq.previous_delta
    0xaa, 0xbb, 0xcc, 0xdd, // out_seq.init_seq
    0xff, 0xff, 0xff, 0xfb, // out_seq.delta
    0x00, 0x00, 0x00, 0x01, // out_seq.previous_delta
];

#[rustfmt::skip]
const GOLDEN_V0: [u8; 76] = [
    // struct ip_vs_sync_mesg_v0
    2,                      // nr_conns
    7,                      // syncid
    0x00, 76,               // size
    // struct ip_vs_sync_conn_v0 (SIMPLE_CONN_SIZE = 24)
    0x00,                   // reserved
    6,                      // protocol: TCP
    0xc9, 0x58,             // cport 51544
    0x00, 80,               // vport
    0x00, 80,               // dport
    203, 0, 113, 7,         // caddr
    192, 168, 10, 100,      // vaddr
    192, 168, 10, 11,       // daddr
    0x00, 0x03,             // flags: DROUTE
    0x00, 0x01,             // state: ESTABLISHED
    // FULL_CONN_SIZE = 48: flags carry SEQ_MASK bits, so options follow
    0x00,                   // reserved
    6,                      // protocol
    0x9c, 0x40,             // cport 40000
    0x00, 21,               // vport
    0x08, 0x49,             // dport 2121
    10, 1, 2, 3,            // caddr
    10, 0, 0, 1,            // vaddr
    10, 0, 1, 1,            // daddr
    0x07, 0x00,             // flags: IN_SEQ | OUT_SEQ | INACTIVE | MASQ
    0x00, 0x03,             // state: SYN_RECV
    0x11, 0x22, 0x33, 0x44, 0, 0, 0, 5, 0, 0, 0, 0,             // in_seq
    0xaa, 0xbb, 0xcc, 0xdd, 0xff, 0xff, 0xff, 0xfb, 0, 0, 0, 1, // out_seq
];

fn v0_view(mut c: SyncConn) -> SyncConn {
    c.fwmark = 0;
    c.timeout = 0;
    c.pe = None;
    c
}

#[test]
fn v1_golden_encodes_byte_exact() {
    let out = Encoder::encode_all(51, 1472, &[tcp_dr(), sip_template(), tcp_nat_seq()]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0], GOLDEN_V1);
}

#[test]
fn v1_golden_decodes() {
    let m = decode(&GOLDEN_V1, 0).unwrap();
    assert_eq!((m.version, m.syncid), (1, 51));
    assert_eq!(m.conns, vec![tcp_dr(), sip_template(), tcp_nat_seq()]);
    assert!(m.skipped.is_empty());
    assert_eq!(m.conns[0].fwd_method(), FwdMethod::DirectRoute);
    assert!(m.conns[1].is_template());
    assert_eq!(m.conns[2].backup_flags(), 0x0720);
    assert_eq!(decode(&GOLDEN_V1, 51).unwrap(), m);
}

#[test]
fn v0_golden_encodes_and_decodes() {
    let conns = [tcp_dr(), tcp_nat_seq()];
    assert_eq!(encode_v0(7, 1472, &conns).unwrap(), vec![GOLDEN_V0.to_vec()]);
    let m = decode(&GOLDEN_V0, 7).unwrap();
    assert_eq!((m.version, m.syncid), (0, 7));
    assert_eq!(m.conns, conns.map(v0_view).to_vec());
}

#[test]
fn v6_entry_is_72_bytes() {
    let mut c = tcp_dr();
    c.caddr = ip("2001:db8::7");
    c.vaddr = ip("2001:db8::100");
    c.daddr = ip("2001:db8::11");
    let out = Encoder::encode_all(1, 1472, std::slice::from_ref(&c)).unwrap();
    assert_eq!(out[0].len(), 8 + 72);
    assert_eq!(out[0][8], 1); // type: STYPE_F_INET6
    assert_eq!(&out[0][10..12], &[0, 72]);
    assert_eq!(
        &out[0][32..48],
        &ip("2001:db8::7").to_string().parse::<Ipv6Addr>().unwrap().octets()
    );
    assert_eq!(decode(&out[0], 1).unwrap().conns, vec![c.clone()]);
    c.daddr = ip("10.0.0.1");
    assert_eq!(Encoder::encode_all(1, 1472, &[c]), Err(EncodeError::MixedFamilies));
}

#[test]
fn sizing_follows_start_sync_thread() {
    assert_eq!(sync_maxlen(Role::Master, 1500, None, false), 1472);
    assert_eq!(sync_maxlen(Role::Master, 9000, None, false), 1472);
    assert_eq!(sync_maxlen(Role::Master, 1500, None, true), 1452);
    assert_eq!(sync_maxlen(Role::Backup, 9000, None, false), 8972);
    assert_eq!(sync_maxlen(Role::Backup, 1280, None, false), 1472);
    assert_eq!(sync_maxlen(Role::Master, 1500, Some(100_000), false), 65507);
    assert_eq!(sync_maxlen(Role::Backup, 1500, Some(10), false), 1024);
    assert_eq!(sync_maxlen(Role::Master, 1500, Some(10), false), 10);
}

#[test]
fn encoder_fills_up_to_maxlen_then_starts_a_new_message() {
    // 8 + 40 * 36 = 1448; a 41st entry (1484) passes 1472.
    let conns: Vec<SyncConn> = (0..100u16)
        .map(|i| SyncConn {
            cport: 1000 + i,
            ..tcp_dr()
        })
        .collect();
    let out = Encoder::encode_all(51, 1472, &conns).unwrap();
    assert_eq!(out.iter().map(|m| m[4]).collect::<Vec<_>>(), vec![40, 40, 20]);
    assert!(out.iter().all(|m| m.len() <= 1472));
    assert_eq!(out[0].len(), 1448);
    let back: Vec<SyncConn> = out.iter().flat_map(|m| decode(m, 51).unwrap().conns).collect();
    assert_eq!(back, conns);
    // A maxlen below one entry still sends each entry, alone.
    let tiny = Encoder::encode_all(51, 10, &conns[..3]).unwrap();
    assert_eq!(tiny.iter().map(|m| m.len()).collect::<Vec<_>>(), vec![44, 44, 44]);
    // nr_conns is 8 bits: never more than 255 entries.
    let many: Vec<SyncConn> = (0..600u16).map(|i| SyncConn { cport: i, ..tcp_dr() }).collect();
    let out = Encoder::encode_all(51, 65507, &many).unwrap();
    assert_eq!(out.iter().map(|m| m[4]).collect::<Vec<_>>(), vec![255, 255, 90]);
    let v0 = encode_v0(51, 1472, &many).unwrap();
    assert!(v0.iter().all(|m| m.len() <= 1472 && (m.len() - 4) % 24 == 0));
}

#[test]
fn hashed_flag_never_sent() {
    let c = SyncConn {
        flags: flags::DROUTE | flags::HASHED,
        ..tcp_dr()
    };
    let out = Encoder::encode_all(1, 1472, &[c]).unwrap();
    assert_eq!(decode(&out[0], 0).unwrap().conns[0].flags, flags::DROUTE);
}

fn with(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = GOLDEN_V1.to_vec();
    f(&mut b);
    b
}

#[test]
fn bad_messages_are_typed_errors() {
    use DecodeError::*;
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (vec![0, 51, 0], HeaderTooShort { len: 3 }),
        (
            GOLDEN_V1[..150].to_vec(),
            SizeMismatch {
                header: 154,
                actual: 150,
            },
        ),
        (
            with(|b| b[2..4].copy_from_slice(&150u16.to_be_bytes())),
            SizeMismatch {
                header: 150,
                actual: 154,
            },
        ),
        // More entries counted than present.
        (with(|b| b[4] = 4), Truncated { index: 3 }),
        // Entry 0 claims 200 bytes.
        (with(|b| b[11] = 200), EntryBeyondMessage { index: 0, size: 200 }),
        // Entry version nibble 1.
        (with(|b| b[10] = 0x10), EntryVersion { index: 0, version: 1 }),
        (with(|b| b[8] = 2), EntryType { index: 0, ty: 2 }),
        // Size below the fixed part.
        (with(|b| b[11] = 20), EntryTooSmall { index: 0, size: 20 }),
        // IPv6 type on a 36-byte entry.
        (with(|b| b[8] = 1), EntryTooSmall { index: 0, size: 36 }),
        // PE data length 0, then one running past the entry.
        (with(|b| b[81] = 0), OptionLength { index: 1 }),
        (with(|b| b[81] = 9), OptionLength { index: 1 }),
        // Sequence option of 23 bytes (inside its entry): `ip_vs_proc_seqopt` refuses it.
        (with(|b| b[129] = 23), SeqOption { index: 2 }),
        // Entry 2 one byte longer: a lone option type byte.
        (
            with(|b| {
                b[95] = 63;
                b.push(0);
                b[2..4].copy_from_slice(&155u16.to_be_bytes());
            }),
            OptionLength { index: 2 },
        ),
        // PE name of 17 bytes > IP_VS_PENAME_MAXLEN.
        (
            {
                let mut c = sip_template();
                c.pe.as_mut().unwrap().name = b"sip".to_vec();
                let mut m = Encoder::encode_all(51, 1472, &[c]).unwrap().remove(0);
                // Rewrite the name option as a 17-byte one.
                m.truncate(m.len() - 5);
                m.extend_from_slice(&[3, 17]);
                m.extend_from_slice(&[b'x'; 17]);
                let n = m.len() as u16;
                m[2..4].copy_from_slice(&n.to_be_bytes());
                m[10..12].copy_from_slice(&(n - 8).to_be_bytes());
                m
            },
            PeOption { index: 0 },
        ),
    ];
    for (i, (bytes, want)) in cases.into_iter().enumerate() {
        assert_eq!(decode(&bytes, 0), Err(want), "case {i}");
        assert!(!want.reason().is_empty() && !want.to_string().is_empty());
    }
    assert_eq!(decode(&GOLDEN_V1, 52), Err(Syncid { got: 51, want: 52 }));
    assert_eq!(decode(&GOLDEN_V1, 52).unwrap_err().reason(), "syncid");
    // v0: count beyond the datagram, and options cut short.
    let mut v0 = GOLDEN_V0.to_vec();
    v0[0] = 3;
    assert_eq!(decode(&v0, 0), Err(Truncated { index: 2 }));
    let mut v0 = GOLDEN_V0[..60].to_vec();
    v0[3] = 60;
    assert_eq!(decode(&v0, 0), Err(Truncated { index: 1 }));
}

#[test]
fn sequence_option_twice_is_an_error() {
    let mut m = Encoder::encode_all(1, 1472, &[tcp_nat_seq()]).unwrap().remove(0);
    let opt = m[44..70].to_vec();
    m.extend_from_slice(&opt);
    let n = m.len() as u16;
    m[2..4].copy_from_slice(&n.to_be_bytes());
    m[10..12].copy_from_slice(&(n - 8).to_be_bytes());
    assert_eq!(decode(&m, 0), Err(DecodeError::SeqOption { index: 0 }));
}

#[test]
fn unknown_options_skip_the_entry_or_the_option() {
    let entry = |opt: &[u8]| {
        let mut m = Encoder::encode_all(1, 1472, &[tcp_dr(), tcp_dr()]).unwrap().remove(0);
        // Append `opt` to entry 0 (36 bytes at 8): re-lay the message.
        let mut e0 = m[8..44].to_vec();
        e0.extend_from_slice(opt);
        let size = e0.len() as u16;
        e0[2..4].copy_from_slice(&size.to_be_bytes());
        while !e0.len().is_multiple_of(4) {
            e0.push(0);
        }
        let mut out = m[..8].to_vec();
        out.extend_from_slice(&e0);
        out.extend_from_slice(&m.split_off(44));
        let n = out.len() as u16;
        out[2..4].copy_from_slice(&n.to_be_bytes());
        decode(&out, 0).unwrap()
    };
    // Type 9 without IPVS_OPT_F_PARAM: mandatory, the entry is dropped, not the message.
    let m = entry(&[9, 2, 0xde, 0xad]);
    assert_eq!(m.conns, vec![tcp_dr()]);
    assert_eq!(m.skipped, vec![Skipped::UnknownMandatoryParam(9)]);
    assert_eq!(m.skipped[0].reason(), "unknown_param");
    // Type 9 | IPVS_OPT_F_PARAM: optional, skipped.
    let m = entry(&[9 | 0x40, 1, 0xde]);
    assert_eq!(m.conns, vec![tcp_dr(), tcp_dr()]);
    assert!(m.skipped.is_empty());
    // PE data without a name: the entry is dropped.
    let m = entry(&[2, 2, b'i', b'd']);
    assert_eq!(m.skipped, vec![Skipped::PeDataWithoutName]);
    // A PE name alone is ignored.
    let m = entry(&[3, 3, b's', b'i', b'p']);
    assert_eq!(m.conns, vec![tcp_dr(), tcp_dr()]);
}

#[test]
fn v0_is_chosen_as_the_kernel_chooses() {
    // A v1 header with a non-zero spare field is read as v0: 0 connections here.
    let mut b = vec![0, 51, 0, 8, 0, 1, 0, 1];
    let m = decode(&b, 0).unwrap();
    assert_eq!((m.version, m.conns.len()), (0, 0));
    b[7] = 0;
    assert_eq!(decode(&b, 0).unwrap().version, 1);
    // Bad encoder input.
    let c = SyncConn {
        pe: Some(PeData {
            name: vec![],
            data: b"x".to_vec(),
        }),
        ..tcp_dr()
    };
    assert_eq!(Encoder::encode_all(1, 1472, &[c]), Err(EncodeError::PeData));
    let mut c = tcp_dr();
    c.caddr = ip("::1");
    c.vaddr = ip("::2");
    c.daddr = ip("::3");
    assert_eq!(encode_v0(1, 1472, &[c]), Err(EncodeError::V0NeedsIpv4));
}

// ---------------------------------------------------------------------------------
// Properties

fn arb_conn() -> impl Strategy<Value = SyncConn> {
    let addrs = prop_oneof![
        any::<[[u8; 4]; 3]>().prop_map(|a| a.map(IpAddr::from)),
        any::<[[u8; 16]; 3]>().prop_map(|a| a.map(IpAddr::from)),
    ];
    let seq = any::<[u32; 6]>().prop_map(|w| SeqOpts {
        in_seq: Seq {
            init_seq: w[0],
            delta: w[1],
            previous_delta: w[2],
        },
        out_seq: Seq {
            init_seq: w[3],
            delta: w[4],
            previous_delta: w[5],
        },
    });
    let pe = (
        proptest::collection::vec(any::<u8>(), 1..=16),
        proptest::collection::vec(any::<u8>(), 1..=255),
    )
        .prop_map(|(name, data)| PeData { name, data });
    (
        any::<u8>(),
        addrs,
        any::<[u16; 3]>(),
        any::<u32>().prop_map(|f| f & !flags::HASHED),
        any::<(u16, u32, u32)>(),
        proptest::option::of(seq),
        proptest::option::of(pe),
    )
        .prop_map(
            |(protocol, [caddr, vaddr, daddr], [cport, vport, dport], flags, (state, fwmark, timeout), seq, pe)| {
                SyncConn {
                    protocol,
                    caddr,
                    cport,
                    vaddr,
                    vport,
                    daddr,
                    dport,
                    flags,
                    state,
                    fwmark,
                    timeout,
                    seq,
                    pe,
                }
            },
        )
}

proptest! {
    #[test]
    fn v1_round_trip(conns in proptest::collection::vec(arb_conn(), 0..40), syncid: u8, maxlen in 1u32..3000) {
        let msgs = Encoder::encode_all(syncid, maxlen, &conns).unwrap();
        let mut back = Vec::new();
        for m in &msgs {
            let d = decode(m, syncid).unwrap();
            prop_assert_eq!(d.version, 1);
            prop_assert!(d.skipped.is_empty());
            prop_assert!(m.len() <= (maxlen as usize).max(8 + 72 + 26 + 2 + 255 + 2 + 16));
            back.extend(d.conns);
        }
        prop_assert_eq!(back, conns);
    }

    #[test]
    fn v0_round_trip(conns in proptest::collection::vec(arb_conn(), 0..80), syncid: u8) {
        let conns: Vec<SyncConn> = conns
            .into_iter()
            .filter(|c| c.caddr.is_ipv4())
            .map(|mut c| {
                c.flags &= 0xffff;
                if c.flags & flags::SEQ_MASK == 0 { c.seq = None } else { c.seq.get_or_insert_with(SeqOpts::default); }
                v0_view(c)
            })
            .collect();
        let msgs = encode_v0(syncid, 1472, &conns).unwrap();
        let back: Vec<SyncConn> = msgs.iter().flat_map(|m| decode(m, 0).unwrap().conns).collect();
        prop_assert_eq!(back, conns);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes, 0);
    }

    /// Arbitrary bytes behind a header that passes the size check, to reach the
    /// entry and option parsers.
    #[test]
    fn decode_never_panics_past_the_header(body in proptest::collection::vec(any::<u8>(), 0..600), n: u8, v1: bool) {
        let mut m = if v1 { vec![0, 1, 0, 0, n, 1, 0, 0] } else { vec![n, 1, 0, 0] };
        m.extend_from_slice(&body);
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        if let Ok(d) = decode(&m, 1) {
            prop_assert!(d.conns.len() + d.skipped.len() <= n as usize);
        }
    }

    /// Mutating one byte of a valid message gives a message or an error, never a panic.
    #[test]
    fn mutated_golden_never_panics(at in 0usize..154, val: u8) {
        let mut m = GOLDEN_V1.to_vec();
        m[at] = val;
        let _ = decode(&m, 0);
    }
}
