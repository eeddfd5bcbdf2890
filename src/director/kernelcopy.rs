//! `uvs run --drop-kernel-copy`: an AF_PACKET tap sees a *copy* of every frame; the
//! kernel still carries its own through the IP stack (routing lookup, and then a drop
//! because the VIP is not local and forwarding is off). That copy costs the director's
//! core about a sixth of its packet rate. An nftables `netdev` ingress rule runs after
//! the taps (so uvs still gets every frame) and drops the kernel's copy early.
//!
//! The rule matches only IPv4 to the VIPs uvs serves, on the interfaces it serves, in
//! the director's own network namespace, in a table of its own (`uvs_<pid>`) that is
//! deleted at exit. It drops ARP requests for those VIPs and for every VRRP address
//! (keepalived's `virtual_ipaddress`, e.g. the NAT real servers' gateway) too: uvs
//! answers them itself (`pipeline::arp`), and the kernel would answer for an address
//! that keepalived put on the interface, also after a SIGKILLed uvs's crash, where only
//! the stale table stops the dead master's kernel from claiming the addresses against
//! the new master (README "High availability"). Other ARP, traffic to the host's own
//! addresses (the gateway's included) and NAT replies are not touched. Trade-off: while the rule is in place the host kernel never sees VIP
//! traffic (tcpdump still does: it is a tap), uvs keeps CAP_NET_ADMIN (to update the
//! VIP set and remove the table), and if uvs is killed with SIGKILL the table stays
//! until the next director starts in that namespace ([`remove_stale`]) or
//! `nft delete table netdev uvs_<pid>`.
//!
//! It is the default ([`KernelCopy::Auto`]) because the copy is not merely wasted work:
//! measured with the pps harness, the kernel routing (and dropping) its copy of every
//! frame is what makes an AF_PACKET director livelock under overload and its loss-free
//! rate erratic; with `ip_forward=1` the kernel would even forward duplicates, and with
//! a VIP on a local interface it would answer clients itself. `--keep-kernel-copy`
//! opts out; `--drop-kernel-copy` makes a failure to install the rule fatal.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// What becomes of the kernel's own copy of the frames uvs handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelCopy {
    /// Drop it when `nft` can (and uvs stays root); warn otherwise.
    #[default]
    Auto,
    /// Drop it, or refuse to start.
    Drop,
    /// Leave it to the kernel.
    Keep,
}

pub struct KernelCopyDrop {
    table: String,
    ifaces: Vec<String>,
    /// The VIPs of the installed ruleset.
    vips: Vec<Ipv4Addr>,
    /// The VRRP addresses (fixed at start) whose ARP requests are dropped.
    vrrp: Vec<Ipv4Addr>,
}

fn nft(script: &str) -> Result<(), String> {
    let mut c = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e} (install nftables)"))?;
    c.stdin
        .take()
        .ok_or("nft: no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = c.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(match why.is_empty() {
            true => format!("nft: {} (no message)", out.status),
            false => format!("nft: {why}"),
        });
    }
    Ok(())
}

fn elements(vips: &[Ipv4Addr]) -> String {
    let v: Vec<String> = vips.iter().map(|v| v.to_string()).collect();
    v.join(", ")
}

/// The ruleset text for these interfaces, VIPs and VRRP addresses: the VIPs are a
/// named set the rule looks up, so a change of VIPs is a change of set elements
/// (measured with 50,000 VIPs on two interfaces: the whole table in 0.4 s, one element
/// added in 16 ms; an anonymous set in the rule had to be rebuilt whole, 0.8 s, on
/// every change).
pub fn ruleset(table: &str, ifaces: &[String], vips: &[Ipv4Addr], vrrp: &[Ipv4Addr]) -> String {
    let mut s = format!("table netdev {table} {{\n");
    for set in ["vips", "vrrp"] {
        s += &format!("  set {set} {{\n    type ipv4_addr\n  }}\n");
    }
    for (n, i) in ifaces.iter().enumerate() {
        s += &format!(
            "  chain in{n} {{\n    type filter hook ingress device \"{i}\" priority -500;\n    ip daddr @vips drop\n    \
             arp operation request arp daddr ip @vips drop\n    arp operation request arp daddr ip @vrrp drop\n  }}\n"
        );
    }
    s += "}\n";
    if !vips.is_empty() {
        s += &format!("add element netdev {table} vips {{ {} }}\n", elements(vips));
    }
    if !vrrp.is_empty() {
        s += &format!("add element netdev {table} vrrp {{ {} }}\n", elements(vrrp));
    }
    s
}

/// The commands that turn set `old` into `new` (empty: nothing to do).
pub fn changes(table: &str, old: &[Ipv4Addr], new: &[Ipv4Addr]) -> String {
    let (o, n): (std::collections::HashSet<_>, std::collections::HashSet<_>) =
        (old.iter().copied().collect(), new.iter().copied().collect());
    let mut gone: Vec<Ipv4Addr> = o.difference(&n).copied().collect();
    let mut added: Vec<Ipv4Addr> = n.difference(&o).copied().collect();
    gone.sort_unstable();
    added.sort_unstable();
    let mut s = String::new();
    if !gone.is_empty() {
        s += &format!("delete element netdev {table} vips {{ {} }}\n", elements(&gone));
    }
    if !added.is_empty() {
        s += &format!("add element netdev {table} vips {{ {} }}\n", elements(&added));
    }
    s
}

/// The pid in a table name of ours (`uvs_<pid>`).
pub fn table_pid(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("uvs_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Is `pid` a live process in this network namespace? (A pid in another namespace is
/// a reused number: a director makes its table in its own namespace.)
/// Limit: a director in another PID namespace sharing this network namespace names
/// its table with a pid this one cannot see; run one director per network namespace.
fn alive_here(pid: u32) -> bool {
    // Gone, or a zombie (its namespaces are already released).
    let Ok(theirs) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else {
        return false;
    };
    std::fs::read_link("/proc/self/ns/net").is_ok_and(|ours| ours == theirs)
}

/// Remove the `uvs_<pid>` tables of directors that are gone (killed with SIGKILL, so
/// their own cleanup never ran) from this network namespace. Tables of live
/// processes and tables of any other name are left alone. Returns what was removed.
pub fn remove_stale() -> Vec<String> {
    let Ok(out) = Command::new("nft").args(["list", "tables", "netdev"]).output() else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.trim().strip_prefix("table netdev ") else {
            continue;
        };
        let Some(pid) = table_pid(name) else {
            continue;
        };
        if pid == std::process::id() || alive_here(pid) {
            continue;
        }
        match nft(&format!("delete table netdev {name}\n")) {
            Ok(()) => {
                tracing::warn!("removed stale nftables table netdev {name}: process {pid} is gone");
                removed.push(name.to_string());
            }
            Err(e) => tracing::warn!("stale nftables table netdev {name} (process {pid} is gone): {e}"),
        }
    }
    removed
}

impl KernelCopyDrop {
    /// `vrrp`: the VRRP addresses (VIPs or not) whose ARP requests uvs answers itself.
    pub fn install(ifaces: &[String], vips: &[Ipv4Addr], vrrp: &[Ipv4Addr]) -> Result<KernelCopyDrop, String> {
        let mut k = KernelCopyDrop {
            table: format!("uvs_{}", std::process::id()),
            ifaces: ifaces.to_vec(),
            vips: Vec::new(),
            vrrp: vrrp.to_vec(),
        };
        k.rebuild(vips)?;
        Ok(k)
    }

    /// The whole table again (atomically: one nft transaction).
    fn rebuild(&mut self, vips: &[Ipv4Addr]) -> Result<(), String> {
        let mut script = format!("table netdev {t}\ndelete table netdev {t}\n", t = self.table);
        script += &ruleset(&self.table, &self.ifaces, vips, &self.vrrp);
        nft(&script)?;
        self.vips = vips.to_vec();
        Ok(())
    }

    /// Replace the VIP set: only the elements that change, in one nft transaction;
    /// should that fail (the table removed behind uvs's back), the whole table again.
    pub fn update(&mut self, vips: &[Ipv4Addr]) -> Result<(), String> {
        let script = changes(&self.table, &self.vips, vips);
        if script.is_empty() {
            return Ok(());
        }
        match nft(&script) {
            Ok(()) => {
                self.vips = vips.to_vec();
                Ok(())
            }
            Err(_) => self.rebuild(vips),
        }
    }
}

impl Drop for KernelCopyDrop {
    fn drop(&mut self) {
        let _ = nft(&format!("delete table netdev {}\n", self.table));
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    #[test]
    fn ruleset_matches_only_vips_on_served_interfaces() {
        let s = super::ruleset(
            "uvs_1",
            &["eth0".into(), "eth1".into()],
            &[Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 101)],
            &[Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 1, 0, 1)],
        );
        assert!(s.contains("hook ingress device \"eth0\""));
        assert!(s.contains("hook ingress device \"eth1\""));
        assert_eq!(s.matches("    ip daddr @vips drop").count(), 2);
        assert_eq!(s.matches("arp operation request arp daddr ip @vips drop").count(), 2);
        assert_eq!(s.matches("arp operation request arp daddr ip @vrrp drop").count(), 2);
        assert!(s.contains("add element netdev uvs_1 vips { 10.0.0.100, 10.0.0.101 }"));
        assert!(s.contains("add element netdev uvs_1 vrrp { 10.0.0.100, 10.1.0.1 }"));
        assert!(!super::ruleset("uvs_1", &["eth0".into()], &[], &[]).contains("add element"));
    }

    #[test]
    fn changes_touch_only_the_elements_that_change() {
        let (a, b, c) = ([10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]);
        assert_eq!(
            super::changes(
                "t",
                &[Ipv4Addr::from(a), Ipv4Addr::from(b)],
                &[Ipv4Addr::from(b), Ipv4Addr::from(a)]
            ),
            ""
        );
        assert_eq!(
            super::changes(
                "t",
                &[Ipv4Addr::from(a), Ipv4Addr::from(b)],
                &[Ipv4Addr::from(b), Ipv4Addr::from(c)]
            ),
            "delete element netdev t vips { 10.0.0.1 }\nadd element netdev t vips { 10.0.0.3 }\n"
        );
        assert_eq!(
            super::changes("t", &[], &[Ipv4Addr::from(c)]),
            "add element netdev t vips { 10.0.0.3 }\n"
        );
    }

    #[test]
    fn only_uvs_pid_tables_are_ours() {
        assert_eq!(super::table_pid("uvs_1234"), Some(1234));
        for other in [
            "uvs_",
            "uvs_12a",
            "uvs_-1",
            "uvsx_1",
            "filter",
            "uvs_1_2",
            "uvs_99999999999",
        ] {
            assert_eq!(super::table_pid(other), None, "{other}");
        }
    }
}
