//! openraft's log storage: entries in the segment files of [`crate::wal`]; vote,
//! committed and last-purged pointers under named keys of the `raft` keyspace.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{NodeId, Shared, StorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

/// The JSON the raft log wrote for recent entries: a leader sends each entry to
/// every peer, and encodes it once, when it appends it, rather than once per peer.
#[derive(Clone)]
pub struct EncodedEntries(Arc<Shared>);

impl EncodedEntries {
    /// For each of `entries`, its JSON (what `serde_json` gives for it) when the
    /// log still holds it in memory.
    pub fn of(&self, entries: &[Entry]) -> Vec<Option<Arc<[u8]>>> {
        self.0.wal.encoded(entries)
    }
}

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
pub(crate) const LAST_PURGED: &[u8] = b"last_purged";

#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl LogStore {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        LogStore { shared }
    }

    /// The JSON of recent entries as the log wrote them, for the transport.
    pub fn encoded_entries(&self) -> EncodedEntries {
        EncodedEntries(self.shared.clone())
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
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        self.shared
            .wal
            .read(from, to)
            .map_err(|e| logs_read_err(&e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId<NodeId>> = self.meta(LAST_PURGED, ErrorSubject::Logs)?;
        let last = self.shared.wal.last().or(last_purged);
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
        self.shared
            .wal
            .append(entries.into_iter().collect(), move |r| {
                callback.log_io_completed(r)
            })
            .map_err(|e| write_err(ErrorSubject::Logs, &e))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.shared
            .wal
            .truncate(log_id.index)
            .map_err(|e| write_err(ErrorSubject::Logs, &e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        // openraft 0.9 issues the purge that follows a snapshot install together
        // with the install, which runs on the state-machine worker: purging first
        // let a stop in between leave the log purged past the snapshot on disk,
        // and openraft then refuses to start ("purge_upto <= snapshot_last_log_id";
        // found by the fault campaign). So wait until the state machine covers
        // the purge point: at once for purges behind a snapshot this node built,
        // after the install for one it is receiving.
        let mut applied = self.shared.applied.subscribe();
        let receiving = self.shared.receiving_snapshot.load(Ordering::SeqCst);
        let covered = !receiving
            || tokio::time::timeout(
                std::time::Duration::from_secs(300),
                applied.wait_for(|a| *a >= log_id.index),
            )
            .await
            .is_ok_and(|r| r.is_ok());
        if !covered {
            return Err(write_err(
                ErrorSubject::Logs,
                &std::io::Error::other(format!(
                    "the state machine did not reach {} to purge the log behind it",
                    log_id.index
                )),
            ));
        }
        // The state machine (not synced on apply) must be on disk at least up to
        // the purge point: after a crash it is recovered from fjall's journal and the
        // log is re-applied from there. Then the purge point, then the segments: a
        // crash in between leaves a harmless prefix, skipped when the log is opened.
        self.put_meta(LAST_PURGED, &log_id, ErrorSubject::Logs)?;
        self.shared
            .durability
            .sync_now()
            .map_err(|e| write_err(ErrorSubject::Logs, &e))?;
        self.shared
            .wal
            .purge(log_id.index)
            .map_err(|e| write_err(ErrorSubject::Logs, &e))
    }
}
