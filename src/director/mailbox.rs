//! Per-worker mailboxes: how other threads put connection entries into a worker's
//! table or read them out, without a lock on the data path. Each worker drains its
//! mailbox once per round (`worker::State::round`): an empty mailbox costs one atomic
//! load.
//!
//! - [`Command::Install`]: create or update entries from sync records (the backup sync
//!   daemon, a restart handing its table over); see
//!   [`crate::pipeline::synced`] for what an entry becomes.
//! - [`Command::Export`]: every entry of the worker as records (the handover).
//! - [`Command::SyncHook`]: start or stop the master sync daemon's per-packet hook.
//!
//! [`Mailboxes`] is the director-wide handle: it routes each record to the worker that
//! owns its flow (the fanout steering key, [`crate::ring::fanout::worker_of`]) and
//! installs templates (shared by all workers) itself, before the connections that
//! they control.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::pipeline::Shared;
use crate::pipeline::synced::{self, InstallReport};
use crate::sync::SyncConn;

/// Commands a mailbox holds at most; a full mailbox refuses (the sender counts it).
pub const MAILBOX_DEPTH: usize = 256;

/// What a worker is asked to do between two rounds.
pub enum Command {
    /// Create or update connections (templates are installed by [`Mailboxes`]).
    /// `threshold` is `sync_threshold`, the packet count an installed entry starts at.
    /// The report goes back when `reply` is set.
    Install {
        recs: Vec<SyncConn>,
        threshold: u32,
        reply: Option<Sender<InstallReport>>,
    },
    /// Send every connection of the worker, as records.
    Export(Sender<Vec<SyncConn>>),
    /// Set (or with `None` clear) the master sync hook.
    SyncHook(Option<crate::pipeline::SyncHook>),
}

/// A worker's end of its mailbox.
pub type Inbox = Receiver<Command>;

/// Where each client endpoint's flow is handled: `(addr, port) -> worker`.
pub type Router = Arc<dyn Fn(Ipv4Addr, u16) -> usize + Send + Sync>;

/// The director's handle on every worker's mailbox.
#[derive(Clone)]
pub struct Mailboxes {
    txs: Vec<Sender<Command>>,
    route: Router,
    shared: Arc<Shared>,
    epoch: Instant,
}

/// Mailboxes for `workers` workers: the handle, and each worker's inbox in worker
/// order. `route` names the worker of a client endpoint.
pub fn mailboxes(workers: usize, route: Router, shared: Arc<Shared>, epoch: Instant) -> (Mailboxes, Vec<Inbox>) {
    let (txs, rxs) = (0..workers.max(1))
        .map(|_| crossbeam_channel::bounded(MAILBOX_DEPTH))
        .unzip();
    (
        Mailboxes {
            txs,
            route,
            shared,
            epoch,
        },
        rxs,
    )
}

/// The router of a director with `workers` workers steered by the fanout program.
pub fn fanout_router(workers: usize) -> Router {
    Arc::new(move |addr, port| crate::ring::fanout::worker_of(addr, port, workers))
}

impl Mailboxes {
    pub fn workers(&self) -> usize {
        self.txs.len()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Install records: templates at once (shared table), connections through their
    /// owning workers' mailboxes (applied at the workers' next round, not waited for).
    /// The report counts the templates and the records that could not be queued
    /// (`mailbox_full`: the worker is [`MAILBOX_DEPTH`] commands behind) or routed
    /// (`unsupported`); each worker's own outcome (`table_full` among them) is only
    /// known through [`Mailboxes::install_wait`].
    pub fn install(&self, recs: Vec<SyncConn>, threshold: u32) -> InstallReport {
        self.install_inner(recs, threshold, None)
    }

    /// [`Mailboxes::install`], then wait up to `timeout` for every worker's report.
    pub fn install_wait(&self, recs: Vec<SyncConn>, threshold: u32, timeout: Duration) -> InstallReport {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut rep = self.install_inner(recs, threshold, Some(tx));
        let deadline = Instant::now() + timeout;
        while let Ok(r) = rx.recv_deadline(deadline) {
            rep.add(&r);
        }
        rep
    }

    fn install_inner(
        &self,
        recs: Vec<SyncConn>,
        threshold: u32,
        reply: Option<Sender<InstallReport>>,
    ) -> InstallReport {
        let svcs = self.shared.services.load();
        let mut rep = synced::install_templates(&svcs, self.now_ms(), &recs, threshold);
        let mut per: Vec<Vec<SyncConn>> = vec![Vec::new(); self.txs.len()];
        for r in recs {
            if r.is_template() {
                continue;
            }
            match synced::record_client(&r) {
                Some((addr, port)) => per[(self.route)(addr, port).min(self.txs.len() - 1)].push(r),
                None => rep.unsupported += 1,
            }
        }
        for (tx, recs) in self.txs.iter().zip(per) {
            if recs.is_empty() {
                continue;
            }
            let n = recs.len() as u64;
            let cmd = Command::Install {
                recs,
                threshold,
                reply: reply.clone(),
            };
            if tx.try_send(cmd).is_err() {
                rep.mailbox_full += n;
            }
        }
        rep
    }

    /// Every entry of the director as records: the templates, then each worker's
    /// connections. Workers that do not answer within `timeout` (stopped, or stuck)
    /// are left out; the second value says how many answered.
    pub fn export_all(&self, timeout: Duration) -> (Vec<SyncConn>, usize) {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut asked = 0;
        for t in &self.txs {
            if t.send_deadline(Command::Export(tx.clone()), deadline).is_ok() {
                asked += 1;
            }
        }
        drop(tx);
        let mut out = synced::export_templates(&self.shared.services.load());
        let mut answered = 0;
        while answered < asked {
            match rx.recv_deadline(deadline) {
                Ok(v) => {
                    out.extend(v);
                    answered += 1;
                }
                Err(_) => break,
            }
        }
        (out, answered)
    }

    /// Give every worker the master sync hook (or take it away with `None`).
    /// Returns how many workers were told (a full mailbox is retried for 1 s).
    pub fn set_sync_hook(&self, hook: impl Fn(usize) -> Option<crate::pipeline::SyncHook>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut told = 0;
        for (i, t) in self.txs.iter().enumerate() {
            let mut cmd = Command::SyncHook(hook(i));
            loop {
                match t.try_send(cmd) {
                    Ok(()) => {
                        told += 1;
                        break;
                    }
                    Err(TrySendError::Full(c)) if Instant::now() < deadline => {
                        cmd = c;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => break,
                }
            }
        }
        told
    }
}

/// Run one mailbox command against a worker (the worker thread calls this each round,
/// for every command waiting).
pub fn handle(
    cmd: Command,
    w: &mut crate::pipeline::Worker,
    sh: &Shared,
    svcs: &crate::service::ServiceTable,
    now_ms: u64,
) {
    match cmd {
        Command::Install { recs, threshold, reply } => {
            let rep = w.install_synced(sh, svcs, now_ms, &recs, threshold);
            if let Some(r) = reply {
                let _ = r.send(rep);
            }
        }
        Command::Export(reply) => {
            let _ = reply.send(w.export_synced(now_ms));
        }
        Command::SyncHook(h) => w.sync = h,
    }
}

/// Drain a worker's mailbox (what `worker::State::round` calls).
pub fn drain(
    inbox: &Inbox,
    w: &mut crate::pipeline::Worker,
    sh: &Shared,
    svcs: &crate::service::ServiceTable,
    now_ms: u64,
) {
    while let Ok(cmd) = inbox.try_recv() {
        handle(cmd, w, sh, svcs, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Worker;
    use crate::pipeline::fixture::*;
    use crate::sync::flags;

    fn rec(cport: u16, cl: Ipv4Addr) -> SyncConn {
        SyncConn {
            protocol: 6,
            caddr: cl.into(),
            cport,
            vaddr: VIP.into(),
            vport: 80,
            daddr: RS1.into(),
            dport: 80,
            flags: flags::DROUTE | flags::NOOUTPUT,
            state: 1,
            fwmark: 0,
            timeout: 900,
            seq: None,
            pe: None,
        }
    }

    /// Workers simulated on this thread: drained by hand.
    #[test]
    fn records_reach_their_owning_worker_and_come_back() {
        let (sh, _ctl) = director();
        let n = 3;
        let (mb, inboxes) = mailboxes(n, fanout_router(n), sh.clone(), Instant::now());
        let mut ws: Vec<_> = (0..n).map(|i| Worker::new(i, 1000)).collect();
        let recs: Vec<_> = (0..60u16)
            .map(|p| rec(10_000 + p, Ipv4Addr::new(192, 0, 2, (p % 7) as u8 + 1)))
            .collect();
        let rep = mb.install(recs.clone(), 3);
        assert_eq!(rep, InstallReport::default(), "all queued");
        let svcs = sh.services.load();
        for (w, inbox) in ws.iter_mut().zip(&inboxes) {
            drain(inbox, w, &sh, &svcs, 0);
        }
        for r in &recs {
            let (a, p) = synced::record_client(r).unwrap();
            let owner = crate::ring::fanout::worker_of(a, p, n);
            for (i, w) in ws.iter().enumerate() {
                let k = crate::conn::ConnKey {
                    proto: 6,
                    caddr: a,
                    cport: p,
                    vaddr: VIP,
                    vport: 80,
                };
                assert_eq!(w.conns.get(&k).is_some(), i == owner, "{a:?}:{p} in worker {i}");
            }
        }
        assert!(ws.iter().all(|w| !w.conns.is_empty()), "60 flows spread over 3 workers");
        // Export: answered by the workers' next round (here: a thread per worker).
        let total: usize = ws.iter().map(|w| w.conns.len()).sum();
        let handles: Vec<_> = ws
            .into_iter()
            .zip(inboxes)
            .map(|(mut w, inbox)| {
                let sh = sh.clone();
                std::thread::spawn(move || {
                    let svcs = sh.services.load();
                    let cmd = inbox.recv_timeout(Duration::from_secs(5)).unwrap();
                    handle(cmd, &mut w, &sh, &svcs, 0);
                })
            })
            .collect();
        let (out, answered) = mb.export_all(Duration::from_secs(5));
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!((out.len(), answered, total), (60, 3, 60));
    }

    #[test]
    fn install_wait_collects_the_workers_reports() {
        let (sh, _ctl) = director();
        let (mb, inboxes) = mailboxes(1, fanout_router(1), sh.clone(), Instant::now());
        let inbox = inboxes.into_iter().next().unwrap();
        let sh2 = sh.clone();
        let t = std::thread::spawn(move || {
            let mut w = Worker::new(0, 10);
            let svcs = sh2.services.load();
            let cmd = inbox.recv_timeout(Duration::from_secs(5)).unwrap();
            handle(cmd, &mut w, &sh2, &svcs, 0);
            w.conns.len()
        });
        let mut bad = rec(1, CLIENT);
        bad.daddr = [10, 9, 9, 9].into();
        let rep = mb.install_wait(vec![rec(2, CLIENT), bad], 3, Duration::from_secs(5));
        assert_eq!((rep.created, rep.no_dest), (1, 1));
        assert_eq!(t.join().unwrap(), 1);
    }

    #[test]
    fn a_full_mailbox_is_counted_as_such_not_as_a_full_table() {
        let (sh, _ctl) = director();
        let (mb, inboxes) = mailboxes(1, fanout_router(1), sh.clone(), Instant::now());
        // A worker that does not drain: its mailbox fills up.
        for p in 0..MAILBOX_DEPTH as u16 {
            assert_eq!(mb.install(vec![rec(p, CLIENT)], 3), InstallReport::default());
        }
        let rep = mb.install(vec![rec(60_000, CLIENT), rec(60_001, CLIENT)], 3);
        assert_eq!(
            rep,
            InstallReport {
                mailbox_full: 2,
                ..Default::default()
            }
        );
        assert_eq!(rep.dropped(), 2);
        // Once drained, the worker's own full table is `table_full`.
        let mut w = Worker::new(0, 16);
        let svcs = sh.services.load();
        drain(&inboxes[0], &mut w, &sh, &svcs, 0);
        let rep = w.install_synced(&sh, &svcs, 0, &[rec(60_002, CLIENT)], 3);
        assert_eq!((rep.table_full, rep.mailbox_full), (1, 0));
    }
}
