//! Group commit: every waiter queued while one sync runs shares the next one.
//!
//! Two syncs use it. The raft log ([`crate::wal`]) is released after `fdatasync`
//! of its active segment. fjall (votes, the commit pointer, the state machine, the
//! install mark) is synced by `persist(SyncAll)` of its journal.
//!
//! fjall's journal is also synced every [`JOURNAL_SYNC_PERIOD`] while nothing asks.
//! fjall syncs it before each memtable flush, and what had piled up by then (a few
//! megabytes) took 100–140 ms to write on a slow virtual disk; ext4 made the raft
//! log's `fdatasync` on the same disk wait for it, so every write of the cluster
//! stalled that long at each flush (docs/performance.md, "A stall at each flush").
//! Synced every 20 ms, the journal never holds more than a few hundred kilobytes
//! unsynced.

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

/// How often fjall's journal is synced when no waiter asks sooner.
pub const JOURNAL_SYNC_PERIOD: Duration = Duration::from_millis(20);

type Waiter = Box<dyn FnOnce(std::io::Result<()>) + Send>;
type SyncFn = dyn Fn() -> std::io::Result<()> + Send + Sync;

pub struct Durability {
    tx: mpsc::Sender<Waiter>,
    sync: Arc<SyncFn>,
}

impl Durability {
    /// fjall's journal: every batch written before it, state machine included.
    pub(crate) fn for_fjall(db: fjall::Database) -> std::io::Result<Self> {
        Self::start_periodic(
            "concord-fsync",
            Arc::new(move || {
                db.persist(fjall::PersistMode::SyncAll)
                    .map_err(crate::io_err)
            }),
            Some(JOURNAL_SYNC_PERIOD),
        )
    }

    pub(crate) fn start(name: &str, sync: Arc<SyncFn>) -> std::io::Result<Self> {
        Self::start_periodic(name, sync, None)
    }

    /// As [`Self::start`], and with `period`, a sync also after each `period` in
    /// which no waiter came.
    fn start_periodic(
        name: &str,
        sync: Arc<SyncFn>,
        period: Option<Duration>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let worker = sync.clone();
        thread::Builder::new()
            .name(name.into())
            .spawn(move || loop {
                let first = match period {
                    None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    Some(p) => rx.recv_timeout(p),
                };
                let first = match first {
                    Ok(w) => w,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Err(e) = worker() {
                            tracing::warn!(error = %e, "periodic sync failed");
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let mut waiters = vec![first];
                waiters.extend(rx.try_iter());
                let result = worker();
                for w in waiters {
                    w(result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| std::io::Error::new(e.kind(), e.to_string())));
                }
            })?;
        Ok(Durability { tx, sync })
    }

    /// Calls `done` once everything written before this call is on stable storage.
    pub fn after_sync(&self, done: impl FnOnce(std::io::Result<()>) + Send + 'static) {
        if let Err(mpsc::SendError(w)) = self.tx.send(Box::new(done)) {
            w(Err(std::io::Error::other("the fsync worker has stopped")));
        }
    }

    /// Syncs now, on the caller's thread (for votes, truncation, purges: rare).
    pub fn sync_now(&self) -> std::io::Result<()> {
        (self.sync)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    fn counting() -> (Arc<AtomicUsize>, Arc<SyncFn>) {
        let n = Arc::new(AtomicUsize::new(0));
        let c = n.clone();
        (
            n,
            Arc::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
        )
    }

    /// fjall's journal is synced while no one asks, so it never piles up the
    /// megabytes whose sync stalled the raft log; the raft log's own durability
    /// syncs only when asked.
    #[test]
    fn a_periodic_durability_syncs_while_idle_and_a_plain_one_only_when_asked() {
        let (periodic, sync) = counting();
        let _journal =
            Durability::start_periodic("t-periodic", sync, Some(Duration::from_millis(5))).unwrap();
        let (plain, sync) = counting();
        let log = Durability::start("t-plain", sync).unwrap();

        let deadline = Instant::now() + Duration::from_secs(10);
        while periodic.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert!(periodic.load(Ordering::SeqCst) >= 3, "no sync while idle");
        assert_eq!(plain.load(Ordering::SeqCst), 0);

        let (tx, rx) = mpsc::channel();
        log.after_sync(move |r| tx.send(r.is_ok()).unwrap());
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        assert_eq!(plain.load(Ordering::SeqCst), 1);
    }
}
