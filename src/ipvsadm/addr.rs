//! Number and address parsing exactly as ipvsadm 1.31 does it (`string_to_number`,
//! `parse_service`, `parse_netmask`, `service_to_port`, glibc `inet_aton`/`strtol`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::sync::OnceLock;

use crate::service::Protocol;

/// C `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Result of C `strtol(s, &end, 10)`: the value (saturated like glibc), whether it
/// overflowed (`ERANGE`), and how many bytes were consumed (0 if no digits).
struct StrtolResult {
    value: i64,
    overflow: bool,
    consumed: usize,
}

fn strtol10(s: &str) -> StrtolResult {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut mag: u64 = 0;
    let mut overflow = false;
    while i < b.len() && b[i].is_ascii_digit() {
        match mag.checked_mul(10).and_then(|m| m.checked_add(u64::from(b[i] - b'0'))) {
            Some(m) => mag = m,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start {
        return StrtolResult {
            value: 0,
            overflow: false,
            consumed: 0,
        };
    }
    let limit = if neg { i64::MAX as u64 + 1 } else { i64::MAX as u64 };
    if mag > limit {
        overflow = true;
    }
    let value = match (overflow, neg) {
        (true, false) => i64::MAX,
        (true, true) => i64::MIN,
        (false, false) => mag as i64,
        (false, true) => (mag as i64).wrapping_neg(),
    };
    StrtolResult {
        value,
        overflow,
        consumed: i,
    }
}

/// ipvsadm's `string_to_number`: base-10 `strtol` that must consume the whole word and
/// fall in `min..=max`. `None` where the C code returns -1.
pub fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    let r = strtol10(s);
    (r.consumed != 0 && r.consumed == s.len() && !r.overflow && (min..=max).contains(&r.value)).then_some(r.value)
}

/// C `atoi` (glibc: `(int) strtol(s, NULL, 10)`).
pub fn atoi(s: &str) -> i32 {
    strtol10(s).value as i32
}

/// ipvsadm's `parse_fwmark`: 1 … 4294967295.
pub fn parse_fwmark(s: &str) -> Option<u32> {
    let r = strtol10(s);
    if r.consumed == 0 || r.consumed != s.len() || r.overflow || r.value <= 0 {
        return None;
    }
    u32::try_from(r.value).ok()
}

/// glibc `inet_aton`: 1 to 4 parts, each decimal, octal (`0…`) or hex (`0x…`); the
/// last part fills the remaining bytes. Trailing whitespace (and anything after it)
/// is accepted, as glibc does.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut parts: Vec<u64> = Vec::with_capacity(4);
    let mut val: u64;
    let mut digit;
    loop {
        if i >= b.len() || !b[i].is_ascii_digit() {
            return None;
        }
        val = 0;
        digit = false;
        let mut base = 10;
        if b[i] == b'0' {
            i += 1;
            if i < b.len() && (b[i] == b'x' || b[i] == b'X') {
                base = 16;
                i += 1;
            } else {
                base = 8;
                digit = true;
            }
        }
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_digit() {
                if base == 8 && (c == b'8' || c == b'9') {
                    return None;
                }
                val = val.saturating_mul(base).saturating_add(u64::from(c - b'0'));
            } else if base == 16 && c.is_ascii_hexdigit() {
                let d = (c as char).to_digit(16).unwrap_or(0);
                val = val.saturating_mul(16).saturating_add(u64::from(d));
            } else {
                break;
            }
            digit = true;
            i += 1;
        }
        if i < b.len() && b[i] == b'.' {
            if parts.len() >= 3 || val > 0xff {
                return None;
            }
            parts.push(val);
            i += 1;
        } else {
            break;
        }
    }
    if i < b.len() && !is_c_space(b[i]) {
        return None;
    }
    if !digit {
        return None;
    }
    let max: u64 = [0xffff_ffff, 0xff_ffff, 0xffff, 0xff][parts.len()];
    if val > max {
        return None;
    }
    let mut addr = val;
    for (k, p) in parts.iter().enumerate() {
        addr |= p << (24 - 8 * k);
    }
    Some(Ipv4Addr::from(addr as u32))
}

/// How the parser turns a host name into an address (ipvsadm's `gethostbyname`):
/// [`resolve_host_v4`] for the ipvsadm client and rules files, [`no_host_lookup`] where
/// a blocking resolver call per input has no place (the fuzz targets).
pub type HostLookup = fn(&str) -> Option<Ipv4Addr>;

/// `gethostbyname` stand-in: the first IPv4 address of `name`, if it resolves.
pub fn resolve_host_v4(name: &str) -> Option<Ipv4Addr> {
    if name.is_empty() {
        return None;
    }
    (name, 0u16).to_socket_addrs().ok()?.find_map(|sa| match sa.ip() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    })
}

/// A [`HostLookup`] under which no name resolves (only numeric addresses parse).
pub fn no_host_lookup(_: &str) -> Option<Ipv4Addr> {
    None
}

/// Built-in port names used when `/etc/services` is missing.
const FALLBACK_SERVICES: &[(&str, u16)] = &[
    ("http", 80),
    ("www", 80),
    ("https", 443),
    ("domain", 53),
    ("ftp", 21),
    ("ssh", 22),
    ("smtp", 25),
];

fn services_db() -> &'static HashMap<(String, String), u16> {
    static DB: OnceLock<HashMap<(String, String), u16>> = OnceLock::new();
    DB.get_or_init(|| match std::fs::read_to_string("/etc/services") {
        Ok(text) => parse_services(&text),
        Err(_) => {
            let mut m = HashMap::new();
            for &(name, port) in FALLBACK_SERVICES {
                for proto in ["tcp", "udp"] {
                    m.insert((name.to_string(), proto.to_string()), port);
                }
            }
            m
        }
    })
}

/// Parse `/etc/services` text into `(name or alias, proto) -> port`; the first entry
/// for a key wins, as `getservbyname` returns the first match.
pub(crate) fn parse_services(text: &str) -> HashMap<(String, String), u16> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_ascii_whitespace();
        let (Some(name), Some(pp)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        for n in std::iter::once(name).chain(words) {
            m.entry((n.to_string(), proto.to_string())).or_insert(port);
        }
    }
    m
}

/// ipvsadm's `service_to_port`: look a port name up for the service's protocol.
pub fn service_to_port(name: &str, proto: Option<Protocol>) -> Option<u16> {
    let p = match proto? {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    };
    services_db().get(&(name.to_string(), p.to_string())).copied()
}

/// What `parse_service` found: the address, and the port if one was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedAddr {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

/// ipvsadm's `parse_service` (`host[:port]`, `[v6]:port`, bare v6). `None` is
/// `SERVICE_NONE` (no usable address). `proto` selects the services database.
pub fn parse_service(buf: &str, proto: Option<Protocol>) -> Option<ParsedAddr> {
    parse_service_with(buf, proto, resolve_host_v4)
}

/// [`parse_service`] with host names resolved by `lookup`.
pub fn parse_service_with(buf: &str, proto: Option<Protocol>, lookup: HostLookup) -> Option<ParsedAddr> {
    if buf.bytes().all(|c| c.is_ascii_digit()) {
        return None; // includes the empty word
    }
    let mut host = buf;
    let mut port_str: Option<&str> = None;
    if let Some(rest) = buf.strip_prefix('[') {
        let close = rest.find(']')?;
        let after = &rest[close + 1..];
        if !after.starts_with(':') {
            return None;
        }
        host = &rest[..close];
        port_str = Some(&after[1..]);
    }
    let addr = if let Ok(a6) = host.parse::<Ipv6Addr>() {
        IpAddr::V6(a6)
    } else {
        // The IPv4 branch looks for its own ':' (so `[1.2.3.4]:80` loses its port).
        port_str = None;
        if let Some(pos) = host.rfind(':') {
            port_str = Some(&host[pos + 1..]);
            host = &host[..pos];
        }
        IpAddr::V4(inet_aton(host).or_else(|| lookup(host))?)
    };
    let port = match port_str {
        None => None,
        Some(p) => Some(match string_to_number(p, 0, 65535) {
            Some(n) => n as u16,
            None => service_to_port(p, proto)?,
        }),
    };
    Some(ParsedAddr { addr, port })
}

/// ipvsadm's `parse_netmask` for IPv4 services: `inet_aton`, else a host name.
pub fn parse_netmask_v4(buf: &str, lookup: HostLookup) -> Option<Ipv4Addr> {
    inet_aton(buf).or_else(|| lookup(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_rules() {
        assert_eq!(string_to_number("80", 0, 65535), Some(80));
        assert_eq!(string_to_number(" +80", 0, 65535), Some(80));
        assert_eq!(string_to_number("-0", 0, 65535), Some(0));
        assert_eq!(string_to_number("80 ", 0, 65535), None);
        assert_eq!(string_to_number("", 0, 65535), None);
        assert_eq!(string_to_number("+", 0, 65535), None);
        assert_eq!(string_to_number("65536", 0, 65535), None);
        assert_eq!(string_to_number("99999999999999999999", 0, i64::MAX), None);
        assert_eq!(atoi("64abc"), 64);
        assert_eq!(atoi("4294967360"), 64);
        assert_eq!(atoi("x"), 0);
    }

    #[test]
    fn fwmark_range() {
        assert_eq!(parse_fwmark("1"), Some(1));
        assert_eq!(parse_fwmark("4294967295"), Some(u32::MAX));
        assert_eq!(parse_fwmark("4294967296"), None);
        assert_eq!(parse_fwmark("0"), None);
        assert_eq!(parse_fwmark("-1"), None);
        assert_eq!(parse_fwmark("1x"), None);
    }

    #[test]
    fn inet_aton_forms() {
        let a = |s: &str| inet_aton(s).map(|a| a.to_string());
        assert_eq!(a("192.168.1.2").as_deref(), Some("192.168.1.2"));
        assert_eq!(a("10.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("0x0a000001").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("010.0.0.1").as_deref(), Some("8.0.0.1"));
        assert_eq!(a("255.255.255.0").as_deref(), Some("255.255.255.0"));
        assert_eq!(a("1.2.3.4 x").as_deref(), Some("1.2.3.4"));
        assert_eq!(a("1.2.3.256"), None);
        assert_eq!(a("1.2.3.4.5"), None);
        assert_eq!(a("09"), None);
        assert_eq!(a("0x"), None);
        assert_eq!(a("1.2.3."), None);
        assert_eq!(a("abc"), None);
    }

    #[test]
    fn services_file_parsing() {
        let db = parse_services("# c\nhttp\t80/tcp www # web\nfoo 7/udp\nbad x/tcp\n");
        assert_eq!(db.get(&("www".into(), "tcp".into())), Some(&80));
        assert_eq!(db.get(&("foo".into(), "udp".into())), Some(&7));
        assert_eq!(db.get(&("foo".into(), "tcp".into())), None);
        assert_eq!(db.get(&("web".into(), "tcp".into())), None);
    }

    #[test]
    fn service_forms() {
        let t = Some(Protocol::Tcp);
        let p = |s: &str| parse_service(s, t);
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::80".parse().unwrap();
        assert_eq!(
            p("10.0.0.1:80"),
            Some(ParsedAddr {
                addr: v4,
                port: Some(80)
            })
        );
        assert_eq!(p("10.0.0.1"), Some(ParsedAddr { addr: v4, port: None }));
        assert_eq!(
            p("10.0.0.1:http"),
            Some(ParsedAddr {
                addr: v4,
                port: Some(80)
            })
        );
        assert_eq!(
            p("[2001:db8::80]:80"),
            Some(ParsedAddr {
                addr: v6,
                port: Some(80)
            })
        );
        assert_eq!(p("2001:db8::80"), Some(ParsedAddr { addr: v6, port: None }));
        assert_eq!(p("[1.2.3.4]:80").map(|x| x.port), Some(None));
        assert_eq!(p("[2001:db8::80]"), None);
        assert_eq!(p("[2001:db8::80]:"), None);
        assert_eq!(p("[2001:db8::80"), None);
        assert_eq!(p("80"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("10.0.0.1:65536"), None);
        assert_eq!(p("10.0.0.1:nosuchportname"), None);
        assert_eq!(parse_service("10.0.0.1:http", None), None);
    }
}
