//! Group commit. sled's `flush` ends in `sync_file_range`, which neither writes file
//! metadata nor flushes the drive's cache (sled issue #1452), so a power loss could
//! lose an acknowledged entry. Every waiter here is released only after `flush` and
//! then `fsync` of the data file; all waiters queued meanwhile share one `fsync`.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;

type Waiter = Box<dyn FnOnce(std::io::Result<()>) + Send>;

pub struct Durability {
    tx: mpsc::Sender<Waiter>,
    db: sled::Db,
    file: PathBuf,
}

impl Durability {
    pub(crate) fn start(db: sled::Db, file: PathBuf) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Waiter>();
        let worker_db = db.clone();
        let worker_file = file.clone();
        thread::Builder::new()
            .name("concord-fsync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiters = vec![first];
                    waiters.extend(rx.try_iter());
                    let result = sync(&worker_db, &worker_file);
                    for w in waiters {
                        w(result
                            .as_ref()
                            .map(|_| ())
                            .map_err(|e| std::io::Error::new(e.kind(), e.to_string())));
                    }
                }
            })?;
        Ok(Durability { tx, db, file })
    }

    /// Calls `done` once everything written before this call is on stable storage.
    pub fn after_sync(&self, done: impl FnOnce(std::io::Result<()>) + Send + 'static) {
        if let Err(mpsc::SendError(w)) = self.tx.send(Box::new(done)) {
            w(Err(std::io::Error::other("the fsync worker has stopped")));
        }
    }

    /// Syncs now, on the caller's thread (for votes and truncation, which are rare).
    pub fn sync_now(&self) -> std::io::Result<()> {
        sync(&self.db, &self.file)
    }
}

fn sync(db: &sled::Db, file: &PathBuf) -> std::io::Result<()> {
    db.flush().map_err(crate::io_err)?;
    File::open(file)?.sync_all()
}
