//! Data directories of the versions that kept votes, pointers and the state in
//! sled (`<dir>/sled`). On open, sled's `raft` and `sm` trees are copied into
//! fjall, the raft log still in sled's `log` tree (versions before the WAL) into
//! the WAL, and the sled directory is removed. The copy writes the same keys and
//! values again if a crash interrupted it, so the next open simply repeats it.

use std::path::{Path, PathBuf};

use crate::{io_err, wal, StoreError, TypeConfig};

/// Batched so a large state is not one batch in memory.
const COPY_BATCH: usize = 4096;

pub(crate) struct Legacy {
    db: sled::Db,
    path: PathBuf,
}

fn moved_path(dir: &Path) -> PathBuf {
    dir.join("sled.moved")
}

/// The sled store under `dir`, if there is one to move over.
pub(crate) fn open(dir: &Path) -> Result<Option<Legacy>, StoreError> {
    // A move that was interrupted while deleting the old directory.
    if moved_path(dir).exists() {
        std::fs::remove_dir_all(moved_path(dir))?;
    }
    let path = dir.join("sled");
    if !path.exists() {
        return Ok(None);
    }
    let db = sled::Config::new().path(&path).open()?;
    Ok(Some(Legacy { db, path }))
}

impl Legacy {
    /// Copies the `raft` and `sm` trees into their keyspaces, durably.
    pub(crate) fn copy_into(
        &self,
        db: &fjall::Database,
        raft: &fjall::Keyspace,
        sm: &fjall::Keyspace,
    ) -> Result<(), StoreError> {
        let mut copied = 0u64;
        for (name, to) in [("raft", raft), ("sm", sm)] {
            let tree = self.db.open_tree(name)?;
            let mut batch = db.batch();
            for kv in tree.iter() {
                let (k, v) = kv?;
                batch.insert(to, k.to_vec(), v.to_vec());
                copied += 1;
                if batch.len() >= COPY_BATCH {
                    std::mem::replace(&mut batch, db.batch()).commit()?;
                }
            }
            batch.commit()?;
        }
        db.persist(fjall::PersistMode::SyncAll)?;
        tracing::info!(
            keys = copied,
            "copied the state of an older version from sled"
        );
        Ok(())
    }

    /// Moves what sled's `log` tree still holds into the WAL, durably, then
    /// removes the sled directory.
    pub(crate) fn finish(self, wal: &wal::Wal) -> Result<(), StoreError> {
        let old = self.db.open_tree("log")?;
        let mut entries = vec![];
        for kv in old.iter() {
            let (_, v) = kv?;
            let e: openraft::Entry<TypeConfig> = serde_json::from_slice(&v).map_err(io_err)?;
            entries.push(e);
        }
        let next = wal.last().map_or(0, |l| l.index + 1);
        entries.retain(|e| e.log_id.index >= next);
        if !entries.is_empty() {
            let (tx, rx) = std::sync::mpsc::channel();
            wal.append(entries, move |r| {
                let _ = tx.send(r);
            })?;
            rx.recv().map_err(io_err)??;
            tracing::info!("moved the raft log from sled into segment files");
        }
        drop(old);
        drop(self.db);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        // Renamed first: a crash while deleting leaves a directory no open reads.
        std::fs::rename(&self.path, moved_path(dir))?;
        std::fs::File::open(dir)?.sync_all()?;
        std::fs::remove_dir_all(moved_path(dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::sm_keys;
    use concord_domain::StateRead;

    #[test]
    fn a_data_directory_of_the_sled_versions_opens_with_its_state_and_pointers() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = sled::open(dir.path().join("sled")).unwrap();
            let raft = old.open_tree("raft").unwrap();
            raft.insert(b"committed", b"null".as_slice()).unwrap();
            let sm = old.open_tree("sm").unwrap();
            sm.insert(
                sm_keys::state("dept/SAMR"),
                b"{\"code\":\"SAMR\"}".as_slice(),
            )
            .unwrap();
            old.flush().unwrap();
        }
        let (_log, _sm, reader) = crate::open(dir.path(), Default::default()).unwrap();
        assert_eq!(
            reader.get("dept/SAMR").unwrap().as_deref(),
            Some(b"{\"code\":\"SAMR\"}".as_slice())
        );
        assert!(!dir.path().join("sled").exists(), "the old store is gone");
        assert!(!dir.path().join("sled.moved").exists());
        drop((_log, _sm, reader));
        // Opening again finds nothing to move and keeps the state.
        let (_log, _sm, reader) = crate::open(dir.path(), Default::default()).unwrap();
        assert!(reader.get("dept/SAMR").unwrap().is_some());
    }
}
