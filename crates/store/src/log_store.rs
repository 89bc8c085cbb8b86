//! The raft log on sled: entries keyed by big-endian index (so keys sort by index),
//! vote, committed and last-purged pointers under named keys of the `raft` tree.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{NodeId, Shared, StorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl LogStore {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        LogStore { shared }
    }

    fn meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>, StorageError> {
        let read_err = |e: &dyn std::error::Error| {
            StorageIOError::new(
                subject.clone(),
                ErrorVerb::Read,
                AnyError::error(e.to_string()),
            )
        };
        match self.shared.raft.get(key).map_err(|e| read_err(&e))? {
            Some(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).map_err(|e| read_err(&e))?,
            )),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| write_err(subject.clone(), &e))?;
        self.shared
            .raft
            .insert(key, bytes)
            .map_err(|e| write_err(subject, &e))?;
        Ok(())
    }
}

impl LogStore {
    /// Removes the entries whose keys fall in `range`, in one batch.
    fn remove_entries(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for kv in self.shared.log.range(range) {
            let (k, _) = kv.map_err(|e| logs_read_err(&e))?;
            batch.remove(k);
        }
        self.shared
            .log
            .apply_batch(batch)
            .map_err(|e| write_err(ErrorSubject::Logs, &e))
    }
}

fn write_err(subject: ErrorSubject<NodeId>, e: &dyn std::error::Error) -> StorageError {
    StorageIOError::new(subject, ErrorVerb::Write, AnyError::error(e.to_string())).into()
}

fn logs_read_err(e: &dyn std::error::Error) -> StorageError {
    StorageIOError::new(
        ErrorSubject::Logs,
        ErrorVerb::Read,
        AnyError::error(e.to_string()),
    )
    .into()
}

fn bound_to_key(b: Bound<&u64>) -> Bound<[u8; 8]> {
    b.map(|i| i.to_be_bytes())
}

impl LogStore {
    /// A restored store: no entries, the log purged up to the snapshot's last id
    /// (committed there), and `vote` so the term does not go backwards.
    pub(crate) fn init_restored(
        &self,
        last: LogId<NodeId>,
        vote: Vote<NodeId>,
    ) -> Result<(), StorageError> {
        self.put_meta(LAST_PURGED, &last, ErrorSubject::Logs)?;
        self.put_meta(COMMITTED, &Some(last), ErrorSubject::Logs)?;
        self.put_meta(VOTE, &vote, ErrorSubject::Vote)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let range = (
            bound_to_key(range.start_bound()),
            bound_to_key(range.end_bound()),
        );
        let mut out = vec![];
        for kv in self.shared.log.range(range) {
            let (_, v) = kv.map_err(|e| logs_read_err(&e))?;
            out.push(serde_json::from_slice(&v).map_err(|e| logs_read_err(&e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId<NodeId>> = self.meta(LAST_PURGED, ErrorSubject::Logs)?;
        let last = match self.shared.log.last().map_err(|e| logs_read_err(&e))? {
            Some((_, v)) => {
                let e: Entry = serde_json::from_slice(&v).map_err(|e| logs_read_err(&e))?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote, ErrorSubject::Vote)?;
        // A vote must be on disk before it is answered, or a restarted node could
        // vote twice in one term.
        self.shared
            .durability
            .sync_now()
            .map_err(|e| write_err(ErrorSubject::Vote, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta(VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        // Not synced: a lost committed pointer only delays re-applying after a crash.
        self.put_meta(COMMITTED, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self
            .meta::<Option<LogId<NodeId>>>(COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes =
                serde_json::to_vec(&entry).map_err(|e| write_err(ErrorSubject::Logs, &e))?;
            batch.insert(&entry.log_id.index.to_be_bytes(), bytes);
        }
        self.shared
            .log
            .apply_batch(batch)
            .map_err(|e| write_err(ErrorSubject::Logs, &e))?;
        self.shared
            .durability
            .after_sync(move |r| callback.log_io_completed(r));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.remove_entries(log_id.index.to_be_bytes()..)?;
        self.shared
            .durability
            .sync_now()
            .map_err(|e| write_err(ErrorSubject::Logs, &e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        // Record the purge point first: a crash in between leaves a harmless prefix.
        self.put_meta(LAST_PURGED, &log_id, ErrorSubject::Logs)?;
        self.remove_entries(..=log_id.index.to_be_bytes())
    }
}
