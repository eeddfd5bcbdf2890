//! The default connection-table cap, sized from the memory available at start.
//!
//! Kernel IPVS has no fixed cap: memory bounds its table, defended by `amemthresh`
//! (ip_vs_ctl.c: update_defense_level reads free pages). uvs sizes its cap once, at
//! start: [`TABLE_SHARE`] of the memory available to it (the smaller of the host's
//! `MemAvailable` and what its cgroup's limit leaves), divided by
//! [`crate::conn::ENTRY_BYTES`] per entry. A full table then evicts idle entries
//! (`--when-full`), so the cap bounds memory without refusing new flows.

use std::path::Path;

/// The share of available memory the connection tables may take (a quarter: the
/// rings, the indexes' transient doubling while they grow and the rest of the host
/// keep the other three).
pub const TABLE_SHARE: u64 = 4;
/// Never below this (a container reporting almost nothing still forwards).
pub const MIN_CAP: usize = 65_536;

/// `--max-conns` when none is given: available memory / [`TABLE_SHARE`] /
/// [`crate::conn::ENTRY_BYTES`], at least [`MIN_CAP`]; and the bytes it was sized from.
pub fn default_max_conns() -> (usize, Option<u64>) {
    let avail = available_bytes();
    (cap_for(avail), avail)
}

/// The cap for `avail` bytes of available memory (`None`: unknown, 1 Mi entries).
pub fn cap_for(avail: Option<u64>) -> usize {
    match avail {
        Some(b) => ((b / TABLE_SHARE / crate::conn::ENTRY_BYTES as u64) as usize).max(MIN_CAP),
        None => 1 << 20,
    }
}

/// The memory available to this process: `MemAvailable`, lowered to what the cgroup's
/// memory limit leaves (v2 `memory.max - memory.current`, or v1
/// `memory.limit_in_bytes - memory.usage_in_bytes`).
pub fn available_bytes() -> Option<u64> {
    let host = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| mem_available(&s));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| cgroup_left(&s, Path::new("/sys/fs/cgroup")));
    match (host, cgroup) {
        (Some(h), Some(c)) => Some(h.min(c)),
        (h, c) => h.or(c),
    }
}

/// `MemAvailable:  N kB` of /proc/meminfo, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What the memory limit of this process's cgroup leaves, if it has one. `cgroup` is
/// /proc/self/cgroup; `root` the cgroup file system's mount point.
fn cgroup_left(cgroup: &str, root: &Path) -> Option<u64> {
    let read = |p: &Path| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let rel = path.trim_start_matches('/');
        if ctrls.is_empty() {
            // v2: "0::/path"; "max" parses as no limit.
            let dir = root.join(rel);
            if let (Some(max), Some(cur)) = (read(&dir.join("memory.max")), read(&dir.join("memory.current"))) {
                return Some(max.saturating_sub(cur));
            }
        } else if ctrls.split(',').any(|c| c == "memory") {
            let dir = root.join("memory").join(rel);
            let (max, cur) = (
                read(&dir.join("memory.limit_in_bytes"))?,
                read(&dir.join("memory.usage_in_bytes"))?,
            );
            // v1 reports "no limit" as a huge page-rounded number.
            if max < 1 << 60 {
                return Some(max.saturating_sub(cur));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_a_quarter_of_available_memory_over_the_entry_size() {
        let gib = 1u64 << 30;
        assert_eq!(
            cap_for(Some(8 * gib)),
            (2 * gib / crate::conn::ENTRY_BYTES as u64) as usize
        );
        assert_eq!(cap_for(Some(1 << 20)), MIN_CAP);
        assert_eq!(cap_for(None), 1 << 20);
        assert_eq!(
            mem_available("MemTotal: 100 kB\nMemAvailable:    2048 kB\n"),
            Some(2 << 20)
        );
    }

    #[test]
    fn a_cgroup_limit_lowers_the_available_memory() {
        let root = std::env::temp_dir().join(format!("uvs-memory-test-{}", std::process::id()));
        let v2 = root.join("system.slice/uvs.service");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "1073741824\n").unwrap();
        std::fs::write(v2.join("memory.current"), "73741824\n").unwrap();
        assert_eq!(
            cgroup_left("0::/system.slice/uvs.service\n", &root),
            Some(1_000_000_000)
        );
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_left("0::/system.slice/uvs.service\n", &root), None);
        let v1 = root.join("memory/docker/abc");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "536870912\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "36870912\n").unwrap();
        assert_eq!(
            cgroup_left("12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n", &root),
            Some(500_000_000)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
