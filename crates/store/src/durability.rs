//! Group commit: every waiter queued while one sync runs shares the next one.
//!
//! Two syncs use it. The raft log ([`crate::wal`]) is released after `fdatasync`
//! of its active segment. fjall (votes, the commit pointer, the state machine, the
//! install mark) is synced by `persist(SyncAll)` of its journal.

use std::sync::{mpsc, Arc};
use std::thread;

type Waiter = Box<dyn FnOnce(std::io::Result<()>) + Send>;
type SyncFn = dyn Fn() -> std::io::Result<()> + Send + Sync;

pub struct Durability {
    tx: mpsc::Sender<Waiter>,
    sync: Arc<SyncFn>,
}

impl Durability {
    /// fjall's journal: every batch written before it, state machine included.
    pub(crate) fn for_fjall(db: fjall::Database) -> std::io::Result<Self> {
        Self::start(
            "concord-fsync",
            Arc::new(move || {
                db.persist(fjall::PersistMode::SyncAll)
                    .map_err(crate::io_err)
            }),
        )
    }

    pub(crate) fn start(name: &str, sync: Arc<SyncFn>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let worker = sync.clone();
        thread::Builder::new().name(name.into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut waiters = vec![first];
                waiters.extend(rx.try_iter());
                let result = worker();
                for w in waiters {
                    w(result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| std::io::Error::new(e.kind(), e.to_string())));
                }
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
