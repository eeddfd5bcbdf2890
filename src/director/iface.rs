//! The director's hold on its interfaces: their facts at start (`discover`, which
//! lives in [`crate::ring`] beside the other interface ioctls), the MTU followed at run
//! time, and the claims that keep two directors off one interface.

use crate::pipeline::{Iface, Mtu};

pub use crate::ring::discover;

/// How often the control thread re-reads the served interfaces' MTUs.
pub const MTU_POLL_MS: u64 = 200;

/// Follows the MTU of the served interfaces at run time, so forwarding (fragmentation,
/// ICMP fragmentation-needed) uses the current one. Polled from the control loop with
/// SIOCGIFMTU; the TX sockets also re-read it at once when the kernel refuses a frame
/// for size (`ring::TxRing`, `ring::MmsgTx`), so a lowered MTU costs at most the
/// frames of one kick before the pipeline knows it.
///
/// An MTU raised above the one at start is followed only up to that one: the TX
/// sockets' slots were sized for it (restart uvs to use a bigger one).
#[derive(Debug)]
pub struct MtuWatch {
    /// (name, the shared MTU, the MTU at start).
    ifaces: Vec<(String, Mtu, u32)>,
    next_ms: u64,
}

impl MtuWatch {
    pub fn new(ifaces: &[Iface]) -> MtuWatch {
        MtuWatch {
            ifaces: ifaces
                .iter()
                .map(|i| (i.name.clone(), i.mtu.clone(), i.mtu.get()))
                .collect(),
            next_ms: 0,
        }
    }

    /// Re-read every interface's MTU if [`MTU_POLL_MS`] have passed.
    pub fn poll(&mut self, now_ms: u64) {
        if now_ms < self.next_ms {
            return;
        }
        self.next_ms = now_ms + MTU_POLL_MS;
        for (name, mtu, at_start) in &self.ifaces {
            // An interface that cannot be read (gone, renamed) keeps its last MTU.
            if let Ok(now) = crate::ring::iface_mtu(name) {
                let used = now.min(*at_start);
                let old = mtu.set(used);
                if old != used {
                    tracing::info!(iface = %name, old, mtu = now, used, "interface MTU changed");
                }
            }
        }
    }
}

/// Where the per-interface claims live (beside the default control socket).
pub const CLAIM_DIR: &str = "/run/uvs/iface";

/// Held for the life of `uvs run`: an exclusive `flock` on one file per interface,
/// named by the network namespace's inode and the interface index, so two directors in
/// different namespaces never collide and a director that died (even by SIGKILL)
/// releases its claims with its file descriptors. The restart issue's handover will be
/// the one way to take a claimed interface over.
#[derive(Debug)]
pub struct Claims(#[allow(dead_code)] Vec<nix::fcntl::Flock<std::fs::File>>);

impl Claims {
    /// The lock files' descriptors, to hand over (`director::handover`): a `flock`
    /// belongs to the open file, so whoever holds a copy of the descriptor holds the
    /// claim.
    pub fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.0.iter().map(|f| f.as_fd()).collect()
    }

    /// The claims of the director this one takes over from (its lock files, received
    /// by SCM_RIGHTS): locked already through the same open files; they now name
    /// this process.
    pub fn inherit(files: Vec<std::os::fd::OwnedFd>) -> Result<Claims, String> {
        use nix::fcntl::{Flock, FlockArg};
        use std::io::Write;
        let mut held = Vec::new();
        for fd in files {
            let mut f = Flock::lock(std::fs::File::from(fd), FlockArg::LockExclusiveNonblock)
                .map_err(|(_, e)| format!("inherited interface claim: flock: {e}"))?;
            let _ = std::io::Seek::rewind(&mut *f);
            let name = std::io::read_to_string(&*f).unwrap_or_default();
            let name = name.lines().nth(1).unwrap_or("").to_string();
            let _ = f.set_len(0);
            let _ = std::io::Seek::rewind(&mut *f);
            let _ = writeln!(*f, "{}\n{name}", std::process::id());
            held.push(f);
        }
        Ok(Claims(held))
    }
}

/// Claim `ifaces` in `dir` ([`CLAIM_DIR`]); an interface another live director serves
/// is an error naming it and that director's pid.
pub fn claim(ifaces: &[Iface], dir: &std::path::Path) -> Result<Claims, String> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let netns = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .map_err(|e| format!("/proc/self/ns/net: {e}"))?;
    let mut held = Vec::new();
    // A director without the rights to write there (a non-root user with CAP_NET_RAW)
    // still runs, unguarded, and says so.
    let unguarded = |e: String| {
        tracing::warn!("cannot claim the interfaces ({e}): a second director on them would not be refused");
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        unguarded(format!("{}: {e}", dir.display()));
        return Ok(Claims(held));
    }
    for i in ifaces {
        let path = dir.join(format!("net{netns}-if{}.lock", i.ifindex));
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path);
        let f = match opened {
            Ok(f) => f,
            Err(e) => {
                unguarded(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let mut f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let owner = std::fs::read_to_string(&path).unwrap_or_default();
                let pid = owner.lines().next().unwrap_or("?").trim().to_string();
                return Err(format!(
                    "interface {} is already served by another uvs director (pid {pid}); \
                     one director per interface: stop that one first",
                    i.name
                ));
            }
            Err((_, e)) => return Err(format!("{}: flock: {e}", path.display())),
        };
        // Who holds it, for the next one's message.
        let _ = f.set_len(0);
        let _ = writeln!(*f, "{}\n{}", std::process::id(), i.name);
        held.push(f);
    }
    Ok(Claims(held))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo(mtu: u32) -> Iface {
        Iface {
            ifindex: 1,
            name: "lo".into(),
            mac: [0; 6],
            addrs: vec![],
            mtu: mtu.into(),
        }
    }

    /// Reads the loopback interface's MTU (read-only): followed up to the MTU at
    /// start, and not re-read before MTU_POLL_MS.
    #[test]
    fn mtu_watch_follows_up_to_the_mtu_at_start() {
        let Ok(real) = crate::ring::iface_mtu("lo") else {
            return;
        };
        let (small, big) = (lo(real - 100), lo(real + 100));
        // Pretend the MTU changed since start.
        let mut w = MtuWatch::new(&[small.clone(), big.clone()]);
        small.mtu.set(576);
        big.mtu.set(576);
        w.poll(1000);
        assert_eq!(small.mtu.get(), real - 100, "capped at the MTU at start");
        assert_eq!(big.mtu.get(), real, "followed");
        big.mtu.set(576);
        w.poll(1000 + MTU_POLL_MS - 1);
        assert_eq!(big.mtu.get(), 576, "not re-read before MTU_POLL_MS");
        w.poll(1000 + MTU_POLL_MS);
        assert_eq!(big.mtu.get(), real);
    }

    #[test]
    fn an_interface_is_claimed_once_until_released() {
        let dir = std::env::temp_dir().join(format!("uvs-claims-{}", std::process::id()));
        let lo = lo(65536);
        let first = claim(std::slice::from_ref(&lo), &dir).unwrap();
        let e = claim(std::slice::from_ref(&lo), &dir).unwrap_err();
        assert_eq!(
            e,
            format!(
                "interface lo is already served by another uvs director (pid {}); \
                 one director per interface: stop that one first",
                std::process::id()
            )
        );
        drop(first);
        let again = claim(&[lo], &dir).unwrap();
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
