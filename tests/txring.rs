//! The TX ring (issue 8): a frame the kernel could not send stays queued in the ring,
//! and the next flush sends it, even when nothing new was queued since.
//!
//! On veth, a frame the other side refuses makes the kick's `sendto` fail (ENOBUFS)
//! and the kernel puts the frame back as "send request". A ring that kicked only after
//! new frames would leave it there for good once the ring had filled (nothing new can
//! be queued into a full ring), and the interface would stay silent after its peer came
//! back. Here the peer is taken down, one frame is refused, the peer comes back, and
//! one flush with nothing new must deliver it.

mod common;
use common::*;

use uvs::pipeline::Mtu;
use uvs::ring::{MmsgTx, TxRing};

/// An Ethernet frame of a private test ethertype (IEEE 802 local experimental), so
/// nothing else on the link is counted.
fn frame(dst: [u8; 6], n: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x79, 0x01]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14] = n;
    f
}

/// Hosts "a" (`{net}.1/24`) and "b" (`{net}.2/24`) joined by a veth pair, without
/// IPv6 (router solicitations, DAD) on the link, so b's counter counts our frames;
/// b's MAC.
fn pair(tag: &str, net: &str) -> (Testbed, [u8; 6]) {
    let mut bed = Testbed::new(tag);
    bed.add_host("a").unwrap();
    bed.add_host("b").unwrap();
    for h in ["a", "b"] {
        for k in ["all", "default"] {
            bed.sysctl(h, &format!("net.ipv6.conf.{k}.disable_ipv6"), "1").unwrap();
        }
    }
    let (a, b) = (format!("{net}.1/24"), format!("{net}.2/24"));
    bed.link("a", "eth0", &a, "b", "eth0", &b).unwrap();
    let b_mac = bed.mac("b", "eth0").unwrap();
    let dst: Vec<u8> = b_mac.split(':').map(|x| u8::from_str_radix(x, 16).unwrap()).collect();
    (bed, dst.try_into().unwrap())
}

fn rx_packets(bed: &Testbed, host: &str) -> u64 {
    let out = bed
        .exec(host, &["cat", "/sys/class/net/eth0/statistics/rx_packets"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn frames_refused_while_a_link_was_down_go_out_at_the_next_flushes() {
    require_root!();
    let (bed, dst) = pair("txr", "10.79.0");
    let (a_ns, b_ns) = (bed.ns("a"), bed.ns("b"));
    let b_ifc = format!("ip -n {b_ns} link set eth0");

    let base = rx_packets(&bed, "b");
    let bed = std::sync::Arc::new(std::sync::Mutex::new(bed));
    let bed2 = bed.clone();
    let (first, refused_then_sent, own_down_then_sent) = in_ns(&a_ns, move || {
        let shell = |cmd: &str| {
            let ok = std::process::Command::new("sh").args(["-c", cmd]).status().unwrap();
            assert!(ok.success(), "{cmd}");
        };
        let got = || rx_packets(&bed2.lock().unwrap(), "b") - base;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        assert_ne!(ifindex, 0);
        let mut ring = TxRing::open(ifindex, 1600, 64, 1500.into()).expect("TX ring");
        let send = |ring: &mut TxRing, n: u8| {
            let f = frame(dst, n);
            let buf = ring.buffer().expect("a free slot");
            buf[..f.len()].copy_from_slice(&f);
            ring.commit(f.len());
            ring.flush();
        };

        // The link works: one frame arrives.
        send(&mut ring, 1);
        let first = wait_until(5, || got() == 1);

        let carrier_up = || {
            wait_until(5, || {
                std::fs::read_to_string("/sys/class/net/eth0/carrier").is_ok_and(|c| c.trim() == "1")
            })
        };
        // The peer goes down: the next frame is refused and stays queued.
        shell(&format!("{b_ifc} down"));
        send(&mut ring, 2);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(got(), 1, "nothing can arrive while b is down");
        shell(&format!("{b_ifc} up"));
        assert!(carrier_up(), "a's carrier did not come back");

        // Nothing new queued: this flush alone must send the refused frame.
        ring.flush();
        let refused_then_sent = wait_until(5, || got() == 2);

        // Our own interface goes down (ENETDOWN; the socket also keeps that error for
        // its next send): the frame stays queued, and flushes alone send it once the
        // interface is up again.
        shell("ip link set eth0 down");
        send(&mut ring, 3);
        shell("ip link set eth0 up");
        assert!(carrier_up(), "a's carrier did not come back");
        let own_down_then_sent = wait_until(5, || {
            ring.flush();
            got() == 3
        });
        (first, refused_then_sent, own_down_then_sent)
    });
    assert!(first, "the first frame never arrived");
    assert!(
        refused_then_sent,
        "the frame refused while the peer was down was not sent by the next flush"
    );
    assert!(
        own_down_then_sent,
        "the frame queued while our interface was down was not sent by later flushes"
    );
    drop(bed);
}

/// Issue 14 item 1: the interface's MTU is lowered under a TX ring (and a sendmmsg
/// socket) that still believes 1500. The kernel refuses the full-size frame; it is
/// dropped and counted, the MTU is learnt, and the frames behind it go out (before
/// PACKET_LOSS the ring's kernel head stayed on the refused slot for good).
#[test]
fn a_frame_too_big_for_a_lowered_mtu_is_counted_and_does_not_block_the_ring() {
    require_root!();
    let (bed, dst) = pair("txmtu", "10.79.1");
    let a_ns = bed.ns("a");
    let base = rx_packets(&bed, "b");
    let bed = std::sync::Arc::new(std::sync::Mutex::new(bed));
    let bed2 = bed.clone();
    let r = in_ns(&a_ns, move || {
        let shell = |cmd: &str| {
            let ok = std::process::Command::new("sh").args(["-c", cmd]).status().unwrap();
            assert!(ok.success(), "{cmd}");
        };
        let got = || rx_packets(&bed2.lock().unwrap(), "b") - base;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        let mtu = Mtu::new(1500);
        let mut ring = TxRing::open(ifindex, 1600, 64, mtu.clone()).expect("TX ring");
        let big = |n: u8| {
            let mut f = frame(dst, n);
            f.resize(1514, 0);
            f
        };
        let queue = |ring: &mut TxRing, f: &[u8]| {
            let buf = ring.buffer().expect("a free slot");
            buf[..f.len()].copy_from_slice(f);
            ring.commit(f.len());
        };
        queue(&mut ring, &big(1));
        ring.flush();
        let full_size_ok = wait_until(5, || got() == 1);

        shell("ip link set eth0 mtu 1400");
        // One kick: a refused full-size frame between two small ones.
        queue(&mut ring, &frame(dst, 2));
        queue(&mut ring, &big(3));
        queue(&mut ring, &frame(dst, 4));
        ring.flush();
        let around = wait_until(5, || got() == 3);
        let ring_counted = ring.too_big;
        let learnt = mtu.get();
        // Now known: refused without a system call, and the ring goes on.
        queue(&mut ring, &big(5));
        for n in 6..70u8 {
            queue(&mut ring, &frame(dst, n));
            ring.flush();
        }
        let ring_went_on = wait_until(5, || got() == 3 + 64);
        let ring_total = ring.too_big;

        // sendmmsg: the same, its batch goes on after the refused frame.
        let mtu2 = Mtu::new(1500);
        let mut m = MmsgTx::open(ifindex, 1600, mtu2.clone()).expect("sendmmsg socket");
        for f in [frame(dst, 100), big(101), frame(dst, 102)] {
            let buf = m.buffer().unwrap();
            buf[..f.len()].copy_from_slice(&f);
            m.commit(f.len());
        }
        m.flush();
        let mmsg_around = wait_until(5, || got() == 3 + 64 + 2);
        // MTU back: full-size frames go out again.
        shell("ip link set eth0 mtu 1500");
        mtu.set(1500);
        queue(&mut ring, &big(200));
        ring.flush();
        let restored = wait_until(5, || got() == 3 + 64 + 2 + 1);
        (
            full_size_ok,
            around,
            ring_counted,
            learnt,
            ring_went_on,
            ring_total,
            mmsg_around,
            m.too_big,
            mtu2.get(),
            restored,
        )
    });
    drop(bed);
    let (
        full_size_ok,
        around,
        ring_counted,
        learnt,
        ring_went_on,
        ring_total,
        mmsg_around,
        mmsg_counted,
        mmsg_learnt,
        restored,
    ) = r;
    assert!(full_size_ok, "a full-size frame at MTU 1500 did not arrive");
    assert!(around, "the frames around the refused one did not all arrive");
    assert_eq!(ring_counted, 1, "the refused frame is counted");
    assert_eq!(learnt, 1400, "the lowered MTU is learnt from the refusal");
    assert!(ring_went_on, "the ring stopped after the refused frame");
    assert_eq!(ring_total, 2, "the next too-big frame is refused before the kernel");
    assert!(mmsg_around, "sendmmsg: the batch stopped at the refused frame");
    assert_eq!(mmsg_counted, 1, "sendmmsg: the refused frame is counted");
    assert_eq!(mmsg_learnt, 1400, "sendmmsg: the lowered MTU is learnt");
    assert!(restored, "a full-size frame after the MTU came back did not arrive");
}
