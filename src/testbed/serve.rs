//! `uvs serve`: the real servers' little application. An HTTP server that answers
//! every request with its own name, and a UDP echo that prefixes its name, as the
//! tutorials' test pages do ("rs1", "rs2").

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};

/// Serve until killed. `tcp`/`udp` are `ADDR:PORT` to bind (for example `0.0.0.0:80`).
pub fn serve(name: &str, tcp: Option<&str>, udp: Option<&str>) -> Result<(), String> {
    let mut handles = Vec::new();
    if let Some(addr) = udp {
        let sock = UdpSocket::bind(addr).map_err(|e| format!("udp {addr}: {e}"))?;
        let name = name.to_string();
        handles.push(std::thread::spawn(move || udp_echo(sock, &name)));
    }
    if let Some(addr) = tcp {
        let l = TcpListener::bind(addr).map_err(|e| format!("tcp {addr}: {e}"))?;
        let name = name.to_string();
        handles.push(std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let name = name.clone();
                std::thread::spawn(move || http_once(s, &name));
            }
        }));
    }
    eprintln!("serving as {name}");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn http_once(mut s: std::net::TcpStream, name: &str) {
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the request head (bounded).
    while req.len() < 65536 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                req.extend_from_slice(&buf[..n]);
                if req.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    // `GET /size/N` answers with N bytes of body (for MTU tests); anything else with the name.
    let path = std::str::from_utf8(&req)
        .ok()
        .and_then(|r| r.split_whitespace().nth(1))
        .unwrap_or("/");
    let body = match path.strip_prefix("/size/").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => {
            let mut b = name.as_bytes().to_vec();
            b.resize(n.clamp(name.len(), 16 << 20), b'.');
            b
        }
        None => format!("{name}\n").into_bytes(),
    };
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&body);
}

/// `uvs probe udp ADDR:PORT MSG`: send one datagram, wait for the reply (3 tries of
/// 1 s), print it.
pub fn probe_udp(to: &str, msg: &str) -> Result<String, String> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    // Connected, so that an ICMP error (port unreachable) surfaces as ECONNREFUSED.
    sock.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 65536];
    let refused = || format!("connection refused by {to} (ICMP port unreachable)");
    for _ in 0..3 {
        match sock.send(msg.as_bytes()) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(refused()),
            Err(e) => return Err(format!("send to {to}: {e}")),
        }
        match sock.recv(&mut buf) {
            Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(refused()),
            Err(_) => {}
        }
    }
    Err(format!("no UDP reply from {to}"))
}

/// `uvs probe udp --size N`: `message` repeated to `n` bytes (at most 65000), sent as
/// one datagram; the echo must carry it back intact. Returns `NAME: N bytes intact`.
pub fn probe_udp_sized(to: &str, message: &str, n: usize) -> Result<String, String> {
    let seed = if message.is_empty() { "x" } else { message };
    let msg: String = seed.chars().cycle().take(n.min(65000)).collect();
    let reply = probe_udp(to, &msg)?;
    match reply.strip_suffix(msg.as_str()) {
        Some(prefix) => Ok(format!("{prefix}{} bytes intact", msg.len())),
        None => Err(format!(
            "echo of {} bytes from {to} came back as {} bytes, not intact",
            msg.len(),
            reply.len()
        )),
    }
}

/// UDP echo that answers from the address each datagram was sent to (IP_PKTINFO),
/// as a DNS server on an LVS real server must: with DR and TUN that is the VIP, not
/// the address the routing table would pick.
fn udp_echo(sock: UdpSocket, name: &str) {
    use nix::sys::socket::{
        ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt, sockopt,
    };
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let pktinfo = setsockopt(&sock, sockopt::Ipv4PacketInfo, &true).is_ok();
    let mut buf = [0u8; 65536];
    loop {
        let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
        let (n, peer, dst) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let Ok(m) = recvmsg::<SockaddrIn>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty()) else {
                return;
            };
            let dst = m.cmsgs().ok().and_then(|mut c| {
                c.find_map(|c| match c {
                    ControlMessageOwned::Ipv4PacketInfo(pi) => Some(pi.ipi_addr),
                    _ => None,
                })
            });
            (m.bytes, m.address, dst)
        };
        let Some(peer) = peer else { continue };
        let mut reply = format!("{name}: ").into_bytes();
        reply.extend_from_slice(&buf[..n]);
        let iov = [std::io::IoSlice::new(&reply)];
        match dst.filter(|_| pktinfo) {
            Some(addr) => {
                let pi = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: addr,
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let _ = sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&pi)],
                    MsgFlags::empty(),
                    Some(&peer),
                );
            }
            None => {
                let _ = sendmsg(fd, &iov, &[], MsgFlags::empty(), Some(&peer));
            }
        }
    }
}
