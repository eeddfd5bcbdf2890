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
        handles.push(std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let mut reply = format!("{name}: ").into_bytes();
                reply.extend_from_slice(&buf[..n]);
                let _ = sock.send_to(&reply, peer);
            }
        }));
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
