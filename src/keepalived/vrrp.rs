//! The addresses keepalived's VRRP process moves between directors: the
//! `virtual_ipaddress` and `virtual_ipaddress_excluded` blocks of every
//! `vrrp_instance` (vrrp/vrrp_parser.c: `vrrp_vip_handler`, `vrrp_evip_handler`;
//! each line is `ADDR[/PREFIX] [dev IF] [label L] [brd B] [scope S] ...`,
//! vrrp/vrrp_ipaddress.c: `parse_ipaddress`). The checker half ignores them; uvs
//! serves a VIP among them only while keepalived has it on one of uvs's interfaces
//! (see `pipeline::vipgate`).

use std::net::Ipv4Addr;

use super::lex::Line;

/// One VRRP-managed IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpVip {
    pub addr: Ipv4Addr,
    pub instance: String,
    /// `dev IF` on the address's line, else the instance's `interface`.
    pub dev: Option<String>,
    pub file: std::sync::Arc<str>,
    pub line: usize,
}

/// Scan the lexed lines for the VRRP instances' addresses. IPv6 addresses are skipped
/// (uvs forwards IPv4); a line that is not an address is left to keepalived to judge.
pub fn scan(lines: &[Line]) -> Vec<VrrpVip> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    // The instance being read: (name, depth of its block, its `interface`).
    let mut instance: Option<(String, usize, Option<String>)> = None;
    // Inside an address block: the depth of its lines.
    let mut vip_block: Option<usize> = None;
    let mut pending: Option<&str> = None;
    let mut first_of_instance = 0usize;
    for l in lines {
        let w0 = l.words[0].as_str();
        if l.is("{") {
            depth += 1;
            match pending.take() {
                Some("vrrp_instance") => {
                    if let Some(i) = instance.as_mut() {
                        i.1 = depth;
                    }
                }
                Some("addrs") => vip_block = Some(depth),
                _ => {}
            }
            continue;
        }
        if l.is("}") {
            if vip_block == Some(depth) {
                vip_block = None;
            }
            if instance.as_ref().is_some_and(|i| i.1 == depth) {
                // The instance's `interface` may come after its addresses.
                if let Some((_, _, Some(dev))) = &instance {
                    for v in out[first_of_instance..].iter_mut() {
                        let v: &mut VrrpVip = v;
                        v.dev.get_or_insert_with(|| dev.clone());
                    }
                }
                instance = None;
            }
            depth = depth.saturating_sub(1);
            continue;
        }
        pending = None;
        if depth == 0 && w0 == "vrrp_instance" {
            instance = Some((l.words.get(1).cloned().unwrap_or_default(), usize::MAX, None));
            first_of_instance = out.len();
            pending = Some("vrrp_instance");
            continue;
        }
        let Some((name, idepth, iface)) = instance.as_mut() else {
            continue;
        };
        if vip_block == Some(depth) {
            let a = w0.split('/').next().unwrap_or(w0);
            if let Ok(addr) = a.parse::<Ipv4Addr>() {
                let dev = l.words.windows(2).find(|p| p[0] == "dev").map(|p| p[1].clone());
                out.push(VrrpVip {
                    addr,
                    instance: name.clone(),
                    dev,
                    file: l.file.clone(),
                    line: l.line,
                });
            }
            continue;
        }
        if depth == *idepth {
            match w0 {
                "interface" => *iface = l.words.get(1).cloned(),
                "virtual_ipaddress" | "virtual_ipaddress_excluded" => pending = Some("addrs"),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vips(text: &str) -> Vec<(String, String, Option<String>)> {
        let mut lx = super::super::lex::Lexer::new(None);
        lx.feed(std::path::Path::new("t.conf"), text);
        lx.end();
        scan(&lx.lines)
            .into_iter()
            .map(|v| (v.addr.to_string(), v.instance, v.dev))
            .collect()
    }

    #[test]
    fn every_address_form_of_virtual_ipaddress() {
        let conf = "vrrp_sync_group G {\n group {\n VI_1\n VI_2\n }\n}\n\
            vrrp_instance VI_1 {\n state MASTER\n virtual_ipaddress {\n 192.168.41.249\n \
            10.0.0.5/24 dev eth1 label eth1:1\n 10.0.0.6/32 brd 10.0.0.255 scope global\n fe80::1/64\n }\n \
            interface eth0\n track_interface {\n eth0\n }\n}\n\
            vrrp_instance VI_2 { interface eth1\n virtual_ipaddress_excluded {\n 10.1.0.1\n }\n }\n\
            virtual_server 192.168.41.249 80 {\n real_server 10.1.0.2 80 {\n }\n}\n";
        assert_eq!(
            vips(conf),
            vec![
                ("192.168.41.249".into(), "VI_1".into(), Some("eth0".into())),
                ("10.0.0.5".into(), "VI_1".into(), Some("eth1".into())),
                ("10.0.0.6".into(), "VI_1".into(), Some("eth0".into())),
                ("10.1.0.1".into(), "VI_2".into(), Some("eth1".into())),
            ]
        );
    }

    #[test]
    fn no_vrrp_no_vips() {
        assert!(vips("virtual_server 10.0.0.1 80 {\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n").is_empty());
    }
}
