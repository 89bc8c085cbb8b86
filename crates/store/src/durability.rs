//! Group commit. sled's `flush` ends in `sync_file_range`, which neither writes file
//! metadata nor flushes the drive's cache (sled issue #1452), so a power loss could
//! lose an acknowledged entry. Every waiter here is released only after `flush` and
//! then `fsync` of the data file; all waiters queued meanwhile share one `fsync`.

use std::fs::File;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread;

type Waiter = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// What one sync makes durable: sled's buffers, then its data file. The file is
/// opened once (sled keeps the same file for its lifetime), not on every sync.
struct Target {
    db: sled::Db,
    file: File,
}

impl Target {
    fn sync(&self) -> std::io::Result<()> {
        self.db.flush().map_err(crate::io_err)?;
        self.file.sync_all()
    }
}

pub struct Durability {
    tx: mpsc::Sender<Waiter>,
    target: Arc<Target>,
}

impl Durability {
    pub(crate) fn start(db: sled::Db, file: &Path) -> std::io::Result<Self> {
        let target = Arc::new(Target {
            db,
            file: File::open(file)?,
        });
        let (tx, rx) = mpsc::channel::<Waiter>();
        let worker = target.clone();
        thread::Builder::new()
            .name("concord-fsync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiters = vec![first];
                    waiters.extend(rx.try_iter());
                    let result = worker.sync();
                    for w in waiters {
                        w(result
                            .as_ref()
                            .map(|_| ())
                            .map_err(|e| std::io::Error::new(e.kind(), e.to_string())));
                    }
                }
            })?;
        Ok(Durability { tx, target })
    }

    /// Calls `done` once everything written before this call is on stable storage.
    pub fn after_sync(&self, done: impl FnOnce(std::io::Result<()>) + Send + 'static) {
        if let Err(mpsc::SendError(w)) = self.tx.send(Box::new(done)) {
            w(Err(std::io::Error::other("the fsync worker has stopped")));
        }
    }

    /// Syncs now, on the caller's thread (for votes and truncation, which are rare).
    pub fn sync_now(&self) -> std::io::Result<()> {
        self.target.sync()
    }
}
