//! The control socket's typed, versioned protocol (one request per connection).
//!
//! ```text
//! request:  "UVSP" | u16 version | u32 len | postcard(Request)
//! reply:    "UVSP" | u16 version | u32 len | postcard(Response)
//! ```
//!
//! All integers are little-endian; the payload is [postcard], serde's compact varint
//! format with a frozen wire specification (chosen over serde_json because a `-L -c`
//! reply carries up to millions of connection rows, and over bincode, whose 2.x line
//! is no longer developed).
//!
//! The client parses ipvsadm's arguments itself ([`super::client`]) and sends
//! [`Command`]s; the director applies them and answers with [`Outcome`]s, listings
//! with a [`TableSnapshot`] that the client renders and resolves names for. The
//! director does no name resolution at all.
//!
//! **Versions.** The header's version is [`VERSION`]; any change to [`Request`] or
//! [`Response`] (or to the types they carry) bumps it. Each side checks it before
//! decoding the payload and reports a mismatch as one line naming both versions
//! ([`mismatch`]):
//! * a client of another version gets a reply whose header carries the director's
//!   version, and prints the line itself without decoding the payload;
//! * a version-1 client (the `UVS1` argv protocol, before this module) gets a reply in
//!   version 1's own format, which it prints as it is;
//! * a version-1 director answers any request with a `UVS1` reply, which the client
//!   recognises as version 1.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::ipvsadm::Command;
use crate::ipvsadm::snapshot::{ConnSnapshot, TableSnapshot};

/// This build's protocol version (version 1 carried raw argv; see the module doc).
pub const VERSION: u16 = 2;
/// The first four bytes of every request and reply of version 2 and later.
pub const MAGIC: &[u8; 4] = b"UVSP";
/// Version 1's magic (requests and replies).
pub const MAGIC_V1: &[u8; 4] = b"UVS1";
/// Largest request payload (a `-R` of ~100,000 lines encodes to a few MiB).
pub const MAX_REQUEST: usize = 64 << 20;
/// Most commands in one request: a `-R` input of a million lines. A command takes ~100
/// bytes in memory but may encode in one, so this, not [`MAX_REQUEST`], bounds what a
/// forged request can make the director allocate (~100 MiB).
pub const MAX_COMMANDS: usize = 1 << 20;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// ipvsadm commands, in order: one command line, or the lines of a `-R` input
    /// (`restore`: applied inside one [`crate::ctl::Ctl::batch`], published once).
    /// `-L` and `-S` are answered with a snapshot. The director stops after a listing
    /// that cannot be rendered (`-L -t` of a missing service), as ipvsadm `exit()`s
    /// there. `-h`, `-v` and `-R` are the client's own business and are refused.
    Apply {
        #[serde(deserialize_with = "bounded_commands")]
        commands: Vec<Command>,
        restore: bool,
    },
    /// `uvs sysctl WORDS…` ([`crate::sysctl`]).
    Sysctl(Vec<String>),
    /// `uvs checks` (keepalived checkers' states).
    Checks,
    /// `uvs trace WORDS…`: the connection becomes the trace stream
    /// ([`crate::control::Trace`], which the director implements).
    Trace(Vec<String>),
}

/// A command list of at most [`MAX_COMMANDS`], refused when its announced length (or
/// its count) goes beyond, before more is allocated.
fn bounded_commands<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Command>, D::Error> {
    use serde::de::{Error, SeqAccess, Visitor};
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<Command>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {MAX_COMMANDS} commands")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Command>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0);
            if hint > MAX_COMMANDS {
                return Err(A::Error::invalid_length(hint, &self));
            }
            let mut v = Vec::with_capacity(hint.min(4096));
            while let Some(c) = seq.next_element()? {
                if v.len() == MAX_COMMANDS {
                    return Err(A::Error::invalid_length(v.len() + 1, &self));
                }
                v.push(c);
            }
            Ok(v)
        }
    }
    d.deserialize_seq(Bounded)
}

/// What the director answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// One outcome per command of [`Request::Apply`] (fewer when it stopped early).
    Applied(Vec<Outcome>),
    /// Text to print and an exit status: sysctl, checks, and refusals (bad request,
    /// busy, deadline, permission).
    Text(Text),
}

/// What became of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied.
    Done,
    /// Refused with this message (the kernel's `strerror` text, as ipvsadm prints it;
    /// exit status 255, and a restore goes on).
    Refused(String),
    /// The table for `-L` / `-S`; `conns` holds the connection entries when `-L -c`
    /// asked for them (workers' entries and persistence templates, in listing order).
    Table {
        table: Box<TableSnapshot>,
        conns: Vec<ConnSnapshot>,
    },
}

/// Text output and an exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Text {
    /// Just one line on stderr.
    pub fn error(code: i32, line: &str) -> Text {
        Text {
            code,
            out: String::new(),
            err: format!("{line}\n"),
        }
    }
}

/// The one line both sides print when their versions differ.
pub fn mismatch(client: u16, director: u16) -> String {
    format!(
        "uvs: control protocol mismatch: this ipvsadm speaks version {client}, the running director \
         speaks version {director}; use the ipvsadm (uvs adm) of the uvs that runs the director"
    )
}

fn frame(version: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(10 + payload.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

fn encode<T: Serialize>(version: u16, msg: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail.
    frame(version, &postcard::to_stdvec(msg).unwrap_or_default())
}

/// A request as this client sends it.
pub fn encode_request(req: &Request) -> Vec<u8> {
    encode(VERSION, req)
}

/// A reply as this director sends it.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    encode(VERSION, resp)
}

/// A reply in version 1's format (`"UVS1" | i32 status | u32 len | stdout | u32 len |
/// stderr`), for a version-1 client: it prints stderr and exits with the status.
pub fn encode_v1_error(line: &str) -> Vec<u8> {
    let err = format!("{line}\n");
    let mut v = Vec::with_capacity(16 + err.len());
    v.extend_from_slice(MAGIC_V1);
    v.extend_from_slice(&255i32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&(err.len() as u32).to_le_bytes());
    v.extend_from_slice(err.as_bytes());
    v
}

fn bad(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// A message's header: its version, and its payload unless the version is not ours.
#[derive(Debug)]
pub enum Framed<T> {
    /// Our version, decoded.
    Ours(T),
    /// Another version (its payload left unread: its layout is unknown).
    Other(u16),
}

/// Read one message of at most `max` payload bytes.
fn read_framed<T: for<'de> Deserialize<'de>>(r: &mut dyn Read, max: usize) -> std::io::Result<Framed<T>> {
    let mut m = [0u8; 4];
    r.read_exact(&mut m)?;
    if &m == MAGIC_V1 {
        return Ok(Framed::Other(1));
    }
    if &m != MAGIC {
        return Err(bad("not a uvs control message".into()));
    }
    let mut h = [0u8; 6];
    r.read_exact(&mut h)?;
    let version = u16::from_le_bytes([h[0], h[1]]);
    if version != VERSION {
        return Ok(Framed::Other(version));
    }
    let n = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
    if n > max {
        return Err(bad(format!("message too large ({n} bytes, at most {max})")));
    }
    // Grow with the bytes that actually arrive: a peer announcing 64 MiB and sending
    // nothing costs nothing.
    let mut buf = Vec::with_capacity(n.min(64 * 1024));
    r.take(n as u64).read_to_end(&mut buf)?;
    if buf.len() != n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("message cut short ({} of {n} bytes)", buf.len()),
        ));
    }
    let msg = postcard::from_bytes(&buf).map_err(|e| bad(format!("undecodable message: {e}")))?;
    Ok(Framed::Ours(msg))
}

/// The director's side: one request (a version-1 request reads as `Other(1)` after
/// its magic, the rest left unread).
pub fn read_request(r: &mut dyn Read) -> std::io::Result<Framed<Request>> {
    read_framed(r, MAX_REQUEST)
}

/// The client's side: one reply of at most `max` bytes.
pub fn read_response(r: &mut dyn Read, max: usize) -> std::io::Result<Framed<Response>> {
    read_framed(r, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvsadm::parse_args;
    use crate::ipvsadm::snapshot::ConnSnapshot;

    fn round<T: Serialize + for<'de> Deserialize<'de>>(msg: &T) -> T {
        match read_framed::<T>(&mut &encode(VERSION, msg)[..], MAX_REQUEST).unwrap() {
            Framed::Ours(m) => m,
            Framed::Other(v) => panic!("version {v}"),
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let lines = [
            "-A -t 10.0.0.1:80 -s sh -p 60 -M 255.255.255.0 -b sh-port",
            "-a -u [2001:db8::1]:53 -r 2001:db8::2 -i --tun-type gue --tun-port 6080",
            "-L -n -c --persistent-conn",
            "--start-daemon master --mcast-interface eth1 --syncid 3 --mcast-group 224.0.0.82",
            "-d -f 7 -r 10.0.0.2",
            "--set 10 20 30",
        ];
        let commands = lines
            .iter()
            .map(|l| parse_args(&l.split_whitespace().collect::<Vec<_>>()).unwrap())
            .collect();
        for req in [
            Request::Apply {
                commands,
                restore: true,
            },
            Request::Sysctl(vec!["-w".into(), "x=1".into()]),
            Request::Checks,
            Request::Trace(vec![]),
        ] {
            assert_eq!(round(&req), req);
        }
        let table = TableSnapshot {
            timeouts: (1, 2, 3),
            ..TableSnapshot::default()
        };
        let conns = vec![ConnSnapshot {
            proto_name: "TCP".into(),
            state: "ESTABLISHED".into(),
            expires_s: 899,
            caddr: "192.0.2.1".parse().unwrap(),
            cport: 40000,
            vaddr: "10.0.0.1".parse().unwrap(),
            vport: 80,
            daddr: "10.0.1.1".parse().unwrap(),
            dport: 8080,
            pe: Some(("sip".into(), "abcd".into())),
        }];
        let resp = Response::Applied(vec![
            Outcome::Done,
            Outcome::Refused("No such service".into()),
            Outcome::Table {
                table: Box::new(table),
                conns,
            },
        ]);
        assert_eq!(round(&resp), resp);
        let t = Response::Text(Text::error(255, "x"));
        assert_eq!(round(&t), t);
    }

    #[test]
    fn other_versions_are_named_not_decoded() {
        // A future version's header, with a payload this build cannot read.
        let mut v = frame(VERSION + 1, b"\xff\xff\xff");
        assert!(matches!(read_request(&mut &v[..]), Ok(Framed::Other(3))));
        v = frame(VERSION + 1, b"");
        assert!(matches!(read_response(&mut &v[..], 10), Ok(Framed::Other(3))));
        // Version 1's magic, whatever follows.
        assert!(matches!(
            read_request(&mut &b"UVS1\x03\0\0\0-L\0"[..]),
            Ok(Framed::Other(1))
        ));
        assert!(matches!(
            read_response(&mut &encode_v1_error("x")[..], 10),
            Ok(Framed::Other(1))
        ));
        let m = mismatch(1, 2);
        assert!(!m.contains('\n'));
        assert!(m.contains("version 1") && m.contains("version 2"), "{m}");
    }

    #[test]
    fn hostile_messages_are_bounded() {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&VERSION.to_le_bytes());
        v.extend_from_slice(&u32::MAX.to_le_bytes());
        let e = read_request(&mut &v[..]).err().unwrap();
        assert!(e.to_string().contains("too large"), "{e}");
        assert!(read_response(&mut &encode_response(&Response::Applied(vec![]))[..], 1).is_err());
        assert!(read_request(&mut &b"HTTP/1.0"[..]).is_err());
        assert!(read_request(&mut &MAGIC[..]).is_err());
        // Cut short, and garbage of the right length.
        let ok = encode_request(&Request::Checks);
        assert!(read_request(&mut &ok[..ok.len() - 1]).is_err());
        // A forged command count: refused at the limit (postcard itself refuses a count
        // beyond the bytes that follow).
        let three = encode_request(&Request::Apply {
            commands: vec![Command::Clear; 3],
            restore: false,
        });
        assert_eq!(&three[10..], [0, 3, 3, 3, 3, 0], "variant, count, 3 x Clear, restore");
        let mut forged = vec![0u8];
        let mut n = MAX_COMMANDS + 1;
        while n >= 0x80 {
            forged.push(n as u8 | 0x80);
            n >>= 7;
        }
        forged.push(n as u8);
        forged.resize(forged.len() + MAX_COMMANDS + 2, 3);
        let e = read_request(&mut &frame(VERSION, &forged)[..]).err().unwrap();
        // (postcard keeps no custom message: the visitor's error reads as serde's.)
        assert!(e.to_string().contains("Serde Deserialization Error"), "{e}");
        let junk = frame(VERSION, &[0xff; 8]);
        let e = read_request(&mut &junk[..]).err().unwrap();
        assert!(e.to_string().contains("undecodable"), "{e}");
    }
}
