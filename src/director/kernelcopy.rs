//! `uvs run --drop-kernel-copy`: an AF_PACKET tap sees a *copy* of every frame; the
//! kernel still carries its own through the IP stack (routing lookup, and then a drop
//! because the VIP is not local and forwarding is off). That copy costs the director's
//! core about a sixth of its packet rate. An nftables `netdev` ingress rule runs after
//! the taps (so uvs still gets every frame) and drops the kernel's copy early.
//!
//! The rule matches only IPv4 to the VIPs uvs serves, on the interfaces it serves, in
//! the director's own network namespace, in a table of its own (`uvs_<pid>`) that is
//! deleted at exit. ARP, traffic to the host's own addresses and NAT replies are not
//! touched. Trade-off: while the rule is in place the host kernel never sees VIP
//! traffic (tcpdump still does: it is a tap), uvs keeps CAP_NET_ADMIN (to update the
//! VIP set and remove the table), and if uvs is killed with SIGKILL the table stays
//! until `nft delete table netdev uvs_<pid>`.
//!
//! It is the default ([`KernelCopy::Auto`]) because the copy is not merely wasted work:
//! measured with the pps harness, the kernel routing (and dropping) its copy of every
//! frame is what makes an AF_PACKET director livelock under overload and its loss-free
//! rate erratic; with `ip_forward=1` the kernel would even forward duplicates, and with
//! a VIP on a local interface it would answer clients itself. `--keep-kernel-copy`
//! opts out; `--drop-kernel-copy` makes a failure to install the rule fatal.

use std::io::Write;
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
    vips: Vec<[u8; 4]>,
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

/// The ruleset text for these interfaces and VIPs (no chain rule without VIPs).
pub fn ruleset(table: &str, ifaces: &[String], vips: &[[u8; 4]]) -> String {
    let mut s = format!("table netdev {table} {{\n");
    let set: Vec<String> = vips.iter().map(|v| std::net::Ipv4Addr::from(*v).to_string()).collect();
    for (n, i) in ifaces.iter().enumerate() {
        s += &format!("  chain in{n} {{\n    type filter hook ingress device \"{i}\" priority -500;\n");
        if !set.is_empty() {
            s += &format!("    ip daddr {{ {} }} drop\n", set.join(", "));
        }
        s += "  }\n";
    }
    s + "}\n"
}

impl KernelCopyDrop {
    pub fn install(ifaces: &[String], vips: &[[u8; 4]]) -> Result<KernelCopyDrop, String> {
        let mut k = KernelCopyDrop {
            table: format!("uvs_{}", std::process::id()),
            ifaces: ifaces.to_vec(),
            vips: Vec::new(),
        };
        k.update(vips)?;
        Ok(k)
    }

    /// Replace the VIP list (atomically: one nft transaction).
    pub fn update(&mut self, vips: &[[u8; 4]]) -> Result<(), String> {
        if self.vips == vips && !self.vips.is_empty() {
            return Ok(());
        }
        let mut script = format!("table netdev {t}\ndelete table netdev {t}\n", t = self.table);
        script += &ruleset(&self.table, &self.ifaces, vips);
        nft(&script)?;
        self.vips = vips.to_vec();
        Ok(())
    }
}

impl Drop for KernelCopyDrop {
    fn drop(&mut self) {
        let _ = nft(&format!("delete table netdev {}\n", self.table));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ruleset_matches_only_vips_on_served_interfaces() {
        let s = super::ruleset(
            "uvs_1",
            &["eth0".into(), "eth1".into()],
            &[[10, 0, 0, 100], [10, 0, 0, 101]],
        );
        assert!(s.contains("hook ingress device \"eth0\""));
        assert!(s.contains("hook ingress device \"eth1\""));
        assert_eq!(s.matches("ip daddr { 10.0.0.100, 10.0.0.101 } drop").count(), 2);
        assert!(!super::ruleset("uvs_1", &["eth0".into()], &[]).contains("drop"));
    }
}
