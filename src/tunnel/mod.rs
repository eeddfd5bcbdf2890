//! `uvs tunnel`: the real-server side of LVS-TUN for kernels without the ipip module.
//!
//! It does what the tutorials' `modprobe ipip` plus `tunl0` setup does: a raw
//! IPPROTO_IPIP socket receives the IPIP packets addressed to this host (because a
//! raw socket takes them, the kernel sends no protocol-unreachable back), the outer
//! header is stripped, and the inner packet is written to a TUN device (default
//! `tunl0`) that holds the VIP. With `--tun-type gre` a raw IPPROTO_GRE socket takes
//! GRE instead (what `ip link add … type gre` would), with `--tun-type gue --tun-port
//! N` a UDP socket on port N takes GUE (what `ip fou add port N gue` would). The host's own stack then answers the client
//! directly from the VIP. With strict reverse-path filtering the kernel would drop
//! those packets (they arrive on tunl0 from a client routed via another interface),
//! so the command checks `rp_filter` and says how to turn it off.

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::wire::ipv4;

/// Options of `uvs tunnel`.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    pub iface: String,
    pub vip: std::net::Ipv4Addr,
    pub dev: String,
    pub kind: crate::service::TunnelType,
    /// GUE's UDP port.
    pub port: u16,
}

/// A raw socket receiving every packet of IP protocol `proto` (4 IPIP, 47 GRE)
/// addressed to this host.
pub fn raw_socket(proto: libc::c_int) -> io::Result<socket2::Socket> {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(proto)),
    )
}

use crate::wire::tunnel::inner_packet;
pub use crate::wire::tunnel::{decapsulate_gre, decapsulate_gue};

/// The inner packet of an IPIP packet, if it is well formed (outer header checked,
/// inner header checked, lengths consistent).
pub fn decapsulate(pkt: &[u8]) -> Option<&[u8]> {
    let outer = ipv4::Packet::new_checked(pkt).ok()?;
    if outer.protocol() != ipv4::proto::IPIP || outer.is_fragment() {
        return None;
    }
    inner_packet(&pkt[outer.header_len()..outer.total_len()])
}

fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn run(cmd: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{}: {e}", cmd[0]))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.contains("File exists") {
            return Err(format!("`{}`: {}", cmd.join(" "), err.trim()));
        }
    }
    Ok(())
}

/// Run until SIGINT/SIGTERM.
pub fn main(o: &TunnelOptions) -> Result<(), String> {
    let mut tun = crate::sys::tun::open(&o.dev).map_err(|e| format!("cannot open TUN device {}: {e}", o.dev))?;
    let vip = format!("{}/32", o.vip);
    run(&["ip", "addr", "add", &vip, "dev", &o.dev])?;
    run(&["ip", "link", "set", &o.dev, "up"])?;
    for dev in ["all", o.dev.as_str(), o.iface.as_str()] {
        let p = format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter");
        if sysctl(&p).as_deref() == Some("1") {
            tracing::warn!(
                "rp_filter=1 on {dev}: the kernel will drop the decapsulated packets. \
                 Fix: sysctl -w net.ipv4.conf.{dev}.rp_filter=0"
            );
        }
    }
    use crate::service::TunnelType;
    let sock = match o.kind {
        TunnelType::Ipip => raw_socket(libc::IPPROTO_IPIP).map_err(|e| format!("raw IPIP socket: {e}"))?,
        TunnelType::Gre => raw_socket(libc::IPPROTO_GRE).map_err(|e| format!("raw GRE socket: {e}"))?,
        TunnelType::Gue => {
            if o.port == 0 {
                return Err("--tun-type gue needs --tun-port".into());
            }
            let s = std::net::UdpSocket::bind(("0.0.0.0", o.port)).map_err(|e| format!("UDP port {}: {e}", o.port))?;
            socket2::Socket::from(s)
        }
    };
    let decap: fn(&[u8]) -> Option<&[u8]> = match o.kind {
        TunnelType::Ipip => decapsulate,
        TunnelType::Gre => decapsulate_gre,
        TunnelType::Gue => decapsulate_gue,
    };
    // Wake up now and then to notice a stop request.
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
    }
    let what = match o.kind {
        TunnelType::Ipip => "IPIP".to_string(),
        TunnelType::Gre => "GRE".to_string(),
        TunnelType::Gue => format!("GUE (UDP port {})", o.port),
    };
    tracing::info!("decapsulating {what} on {} into {} (VIP {})", o.iface, o.dev, o.vip);
    let mut buf = vec![0u8; 65536];
    let (mut packets, mut bad) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let n = match (&sock).read(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => continue, // the timeout, or a signal
        };
        match decap(&buf[..n]) {
            Some(inner) => {
                // A packet the TUN device refuses is lost, as a full queue would lose it.
                let _ = tun.write(inner);
                packets += 1;
            }
            None => bad += 1,
        }
    }
    tracing::info!("stopped ({packets} packets, {bad} malformed)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    use crate::service::{TunnelCsum, TunnelType};

    /// A client's UDP packet, as it goes into the tunnel.
    fn inner() -> Vec<u8> {
        let mut inner = vec![0u8; 28];
        ipv4::Repr {
            tos: 0,
            total_len: 28,
            ident: 1,
            dont_frag: true,
            ttl: 63,
            protocol: 17,
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(10, 0, 0, 100),
        }
        .emit(&mut inner);
        inner
    }

    /// An outer packet built by the director's own encapsulation.
    fn encapsulated(kind: TunnelType, csum: TunnelCsum, inner: &[u8]) -> Vec<u8> {
        let e = crate::forward::tun::Encap { kind, csum, port: 6080 };
        crate::forward::tun::encapsulated(&e, Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 11), inner)
    }

    #[test]
    fn decapsulates_only_well_formed_ipip() {
        let inner = inner();
        let pkt = encapsulated(TunnelType::Ipip, TunnelCsum::NoCsum, &inner);
        assert_eq!(pkt.len(), 48);
        assert_eq!(decapsulate(&pkt), Some(&inner[..]));
        assert_eq!(decapsulate(&pkt[..40]), None, "truncated outer");
        let mut bad = pkt.clone();
        bad[20] = 0x44;
        assert_eq!(decapsulate(&bad), None, "bad inner IHL");
        let mut udp = pkt.clone();
        udp[9] = 17;
        assert_eq!(decapsulate(&udp), None, "not IPIP");
    }

    #[test]
    fn decapsulates_what_the_director_sends_as_gre_and_gue() {
        let inner = inner();
        for csum in [TunnelCsum::NoCsum, TunnelCsum::Csum] {
            let gre = encapsulated(TunnelType::Gre, csum, &inner);
            assert_eq!(decapsulate_gre(&gre), Some(&inner[..]), "{csum:?}");
            assert_eq!(decapsulate(&gre), None, "GRE is not IPIP");
            let mut v1 = gre.clone();
            v1[21] |= 1;
            assert_eq!(decapsulate_gre(&v1), None, "GRE version 1");
        }
        let mut bad = encapsulated(TunnelType::Gre, TunnelCsum::Csum, &inner);
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decapsulate_gre(&bad), None, "GRE checksum must verify");
        let mut eth = encapsulated(TunnelType::Gre, TunnelCsum::NoCsum, &inner);
        eth[22..24].copy_from_slice(&[0x65, 0x58]);
        assert_eq!(decapsulate_gre(&eth), None, "not an IPv4 payload");
        // GUE: the socket hands over the UDP payload.
        let gue = encapsulated(TunnelType::Gue, TunnelCsum::Csum, &inner);
        assert_eq!(decapsulate_gue(&gue[28..]), Some(&inner[..]));
        let mut ctl = gue[28..].to_vec();
        ctl[0] |= 0x20;
        assert_eq!(decapsulate_gue(&ctl), None, "GUE control message");
        let mut v6 = gue[28..].to_vec();
        v6[1] = 41;
        assert_eq!(decapsulate_gue(&v6), None, "inner not IPv4");
        assert_eq!(decapsulate_gue(&gue[28..30]), None, "truncated");
    }
}
