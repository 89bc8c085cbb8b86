//! openraft storage for Concord: the raft log and vote ([`LogStore`]), the
//! replicated state machine ([`StateMachine`]) and the read side ([`StoreReader`]).
//! The log is in segment files of its own; everything else is in fjall (an LSM
//! tree): `raft` (vote and log pointers) and the state machine's keyspaces (`sm`,
//! and beside it one for each kind of key written in revision order: [`keyspaces`]).
//!
//! # Layout
//! - [`durability`]: group commit — one sync for every batch of waiters.
//! - [`wal`]: the raft log in append-only segment files (`fdatasync` per group commit).
//! - [`log_store`]: `RaftLogStorage` on the WAL and the `raft` keyspace.
//! - [`state_machine`]: `RaftStateMachine` on the state keyspaces; calls `concord_domain::apply`.
//! - [`keyspaces`]: which keyspace holds which key of the state machine.
//! - [`snapshot`]: the snapshot file format (checksummed dump of the state keyspaces).
//! - `legacy`: moves a data directory of the sled-based versions over on open.
//! - [`reader`]: what the node reads: domain state, events for Watch, applied revision.
//!
//! **Architecture invariant:** a log entry is acknowledged to openraft (`LogFlushed`)
//! only after `fdatasync` of its segment returned; `save_vote` syncs fjall's journal
//! before returning. The state machine is not synced on apply (each apply is one
//! atomic batch in the journal): after a crash it is a prefix of the log, and
//! openraft re-applies the rest; a purge syncs the journal first, so the log never
//! loses entries the recovered state machine still needs.

pub mod durability;
mod hot;
pub(crate) mod keyspaces;
mod legacy;
pub mod log_store;
pub mod reader;
mod request_ids;
pub mod snapshot;
pub mod state_machine;
#[cfg(test)]
mod test_entries;
pub mod timings;
pub mod wal;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use concord_domain::{Envelope, Response};
use serde::{Deserialize, Serialize};

pub use log_store::{EncodedEntries, LogStore};
pub use reader::StoreReader;
pub use state_machine::StateMachine;

/// How a member is reached and which department it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub addr: String,
    pub department: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.department, self.addr)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Envelope,
        R = Response,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open { path: PathBuf, source: fjall::Error },
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("store: {0}")]
    Engine(#[from] fjall::Error),
    #[error("moving the store of an older version over: {0}")]
    Legacy(#[from] sled::Error),
    #[error("state machine recovery: {0}")]
    Recovery(#[from] openraft::StorageError<u64>),
    #[error(transparent)]
    Wal(#[from] wal::WalError),
}

/// Store tuning that is not part of the replicated state.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Events kept for Watch replay, counted in revisions behind the applied one.
    pub event_retention: u64,
    /// fjall's block cache, bytes.
    pub cache_bytes: u64,
    /// The state keyspace's memtable (written, not yet flushed to a table), bytes.
    pub memtable_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            event_retention: 100_000,
            cache_bytes: 32 * 1024 * 1024,
            memtable_bytes: 16 * 1024 * 1024,
        }
    }
}

pub(crate) struct Shared {
    pub wal: wal::Wal,
    pub db: fjall::Database,
    pub raft: fjall::Keyspace,
    pub sm: keyspaces::StateKeyspaces,
    pub durability: durability::Durability,
    pub snapshot_dir: PathBuf,
    pub applied: tokio::sync::watch::Sender<u64>,
    /// Set from the first chunk of a snapshot received until its install ends, so
    /// a log purge issued with the install waits for it (see `LogStore::purge`).
    pub receiving_snapshot: std::sync::atomic::AtomicBool,
    /// Counts the starts and ends of snapshot installs: odd while one runs. An
    /// install clears the state and then loads it, so reads refuse while it is
    /// odd, and a reader that must see a consistent state across several reads
    /// (a Watch scan) checks that it did not change.
    pub installs: std::sync::atomic::AtomicU64,
    /// Held while the state machine is written, and while a snapshot's read view
    /// is taken.
    pub apply_lock: tokio::sync::Mutex<()>,
    /// Held for a whole snapshot build, which an install (that replaces the
    /// state under the dump) waits for.
    pub build_lock: tokio::sync::Mutex<()>,
    /// What the applies read most (`hot`).
    pub hot: std::sync::Mutex<hot::HotKeys>,
    /// Which request ids the state certainly does not remember (`request_ids`).
    pub request_ids: request_ids::RequestIds,
    pub options: StoreOptions,
    pub timings: timings::Timings,
}

/// Opens (or creates) the store under `dir`.
pub fn open(
    dir: &Path,
    options: StoreOptions,
) -> Result<(LogStore, StateMachine, StoreReader), StoreError> {
    let db_path = dir.join("fjall");
    let snapshot_dir = dir.join("snapshots");
    std::fs::create_dir_all(&snapshot_dir)?;
    let db = fjall::Database::builder(&db_path)
        .cache_size(options.cache_bytes)
        // Two background threads: fjall 3.1 keeps its first worker for flushes
        // when it has more than one. With one, a flush waited behind compactions
        // that take seconds at 1 M records; four sealed memtables then halt every
        // write (a sleeping tokio thread), followers stopped answering
        // AppendEntries in time and one fell so far behind it needed a snapshot.
        // The first worker used to spin on compaction requests meanwhile; the
        // patched fjall in vendor/fjall (PATCHED.md) makes it wait instead.
        .worker_threads(2)
        .open()
        .map_err(|source| StoreError::Open {
            path: db_path.clone(),
            source,
        })?;
    let raft = db.keyspace("raft", fjall::KeyspaceCreateOptions::default)?;
    let sm = keyspaces::StateKeyspaces::open(&db, options.memtable_bytes)?;
    let legacy = legacy::open(dir)?;
    if let Some(old) = &legacy {
        old.copy_into(&db, &raft, &sm.main)?;
    }
    let moved = sm.move_over(&db)?;
    if moved > 0 {
        tracing::info!(keys = moved, "moved keys into the keyspaces of their kind");
    }
    let last_purged: Option<openraft::LogId<NodeId>> = match raft.get(log_store::LAST_PURGED)? {
        Some(v) => serde_json::from_slice(&v).map_err(io_err)?,
        None => None,
    };
    let timings = timings::Timings::default();
    let wal = wal::Wal::open(&dir.join("log"), last_purged.map(|l| l.index))?;
    wal.time_syncs(timings.log_sync.clone());
    if let Some(old) = legacy {
        old.finish(&wal)?;
    }
    let durability = durability::Durability::for_fjall(db.clone())?;
    let applied = reader::read_applied_index(&sm.main).unwrap_or(0);
    let (applied_tx, _) = tokio::sync::watch::channel(applied);
    let shared = Arc::new(Shared {
        wal,
        db,
        raft,
        sm,
        durability,
        snapshot_dir,
        applied: applied_tx,
        receiving_snapshot: std::sync::atomic::AtomicBool::new(false),
        installs: std::sync::atomic::AtomicU64::new(0),
        apply_lock: tokio::sync::Mutex::new(()),
        build_lock: tokio::sync::Mutex::new(()),
        hot: Default::default(),
        request_ids: Default::default(),
        options,
        timings,
    });
    // No apply runs before `open` returns, so the build sees every remembered id
    // (an install by `recover` clears it and builds it again).
    state_machine::rebuild_request_ids(&shared);
    let sm = StateMachine::new(shared.clone());
    sm.recover()?;
    Ok((LogStore::new(shared.clone()), sm, StoreReader::new(shared)))
}

pub(crate) fn io_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> std::io::Error {
    std::io::Error::other(e)
}

/// Keys of the state machine. Domain state lives under `s/`, events under `e/` and
/// the state machine's own pointers under `m/`; one batch applies all three
/// (`keyspaces` says which keyspace holds which).
pub(crate) mod sm_keys {
    pub const STATE: &[u8] = b"s/";
    pub const EVENT: &[u8] = b"e/";
    pub const LAST_APPLIED: &[u8] = b"m/last_applied";
    pub const LAST_MEMBERSHIP: &[u8] = b"m/last_membership";
    pub const OLDEST_EVENT: &[u8] = b"m/oldest_event";

    pub fn state(key: &str) -> Vec<u8> {
        [STATE, key.as_bytes()].concat()
    }
    pub fn event(revision: u64, seq: u32) -> Vec<u8> {
        [EVENT, &revision.to_be_bytes(), &seq.to_be_bytes()].concat()
    }
    pub fn event_start(revision: u64) -> Vec<u8> {
        [EVENT, &revision.to_be_bytes()].concat()
    }
}
