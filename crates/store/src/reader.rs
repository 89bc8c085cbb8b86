//! The read side of a replica: domain state, retained events and the applied revision.

use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use concord_domain::event::Event;
use concord_domain::{StateRead, StorageFault};
use openraft::LogId;

use crate::{sm_keys, NodeId, Shared};

/// The domain's view of the state keyspaces.
pub(crate) struct KeyspaceView<'a>(pub &'a crate::keyspaces::StateKeyspaces);

fn fault(e: impl std::fmt::Display) -> StorageFault {
    StorageFault(e.to_string())
}

impl StateRead for KeyspaceView<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageFault> {
        let key = sm_keys::state(key);
        Ok(self
            .0
            .for_key(&key)
            .get(&key)
            .map_err(fault)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageFault> {
        let full_prefix = sm_keys::state(prefix);
        // Bounded above by the prefix, not left open: an LSM iterator resolves
        // every version of the key it stops on, and the key after a prefix may be
        // one rewritten by every apply (found by profile: a case's audience scan
        // of `dept/` resolving thousands of versions of `meta/audit_head`).
        let (first, end) = fjall::util::prefix_to_range(&full_prefix);
        let start = match after {
            Some(a) => Bound::Excluded(sm_keys::state(a).into()),
            None => first,
        };
        let mut out = vec![];
        for kv in self
            .0
            .for_key(&full_prefix)
            .range::<fjall::Slice, _>((start, end))
        {
            let (k, v) = kv.into_inner().map_err(fault)?;
            if !k.starts_with(&full_prefix) || out.len() == limit {
                break;
            }
            let key = std::str::from_utf8(&k[sm_keys::STATE.len()..])
                .map_err(fault)?
                .to_string();
            out.push((key, v.to_vec()));
        }
        Ok(out)
    }
}

pub(crate) fn read_applied_index(sm: &fjall::Keyspace) -> Option<u64> {
    let bytes = sm.get(sm_keys::LAST_APPLIED).ok()??;
    let id: Option<LogId<NodeId>> = serde_json::from_slice(&bytes).ok()?;
    id.map(|l| l.index)
}

pub(crate) fn compacted_through(sm: &fjall::Keyspace) -> u64 {
    sm.get(sm_keys::OLDEST_EVENT)
        .ok()
        .flatten()
        .and_then(|v| v[..].try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0)
}

/// Cheap to clone; shared by every request handler and watch stream of a node.
#[derive(Clone)]
pub struct StoreReader {
    shared: Arc<Shared>,
}

impl StoreReader {
    /// The store's histograms, for the node's /metrics.
    pub fn timings(&self) -> &crate::timings::Timings {
        &self.shared.timings
    }

    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        StoreReader { shared }
    }

    /// The revision (log index) this replica has applied.
    pub fn applied(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// Changes whenever the applied revision moves.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }

    /// Waits until `revision` is applied here; false if `timeout` passed first.
    pub async fn wait_applied(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Events with revision >= `start`, in order, at most `limit` (a revision's events
    /// are never split, so the result may exceed `limit` by one revision's worth).
    pub fn events_from(&self, start: u64, limit: usize) -> Result<Vec<Event>, StorageFault> {
        self.readable()?;
        let mut out: Vec<Event> = vec![];
        // Bounded by the events' prefix (see `KeyspaceView::scan`): `m/last_applied`,
        // rewritten by every apply, comes right after them.
        let (_, end) = fjall::util::prefix_to_range(sm_keys::EVENT);
        let from = Bound::Included(fjall::Slice::from(sm_keys::event_start(start)));
        for kv in self
            .shared
            .sm
            .events()
            .range::<fjall::Slice, _>((from, end))
        {
            let v = kv.value().map_err(fault)?;
            let ev: Event = serde_json::from_slice(&v).map_err(fault)?;
            if out.len() >= limit && out.last().is_some_and(|last| last.revision != ev.revision) {
                break;
            }
            out.push(ev);
        }
        Ok(out)
    }

    /// Where the current snapshot file is (it may not exist yet).
    pub fn snapshot_path(&self) -> std::path::PathBuf {
        crate::state_machine::current_path(&self.shared)
    }

    /// Size of the current snapshot file (0: none yet).
    pub fn snapshot_bytes(&self) -> u64 {
        std::fs::metadata(crate::state_machine::current_path(&self.shared)).map_or(0, |m| m.len())
    }

    /// Counts snapshot installs begun and ended: odd while one runs (see
    /// `Shared::installs`).
    fn install_generation(&self) -> u64 {
        self.shared.installs.load(Ordering::SeqCst)
    }

    /// What `read` returns, if no snapshot install ran at any moment of it: several
    /// reads that must see one state (a Watch scan: the compaction point, then the
    /// events) get None when an install may have shown them a half-loaded one.
    pub fn without_install<T>(&self, read: impl FnOnce(&Self) -> T) -> Option<T> {
        let before = self.install_generation();
        if before % 2 == 1 {
            return None;
        }
        let out = read(self);
        (self.install_generation() == before).then_some(out)
    }

    /// Refuses reads while a snapshot install has the state half loaded.
    fn readable(&self) -> Result<(), StorageFault> {
        if self.install_generation() % 2 == 1 {
            return Err(StorageFault::installing());
        }
        Ok(())
    }

    /// Bytes of raft log held after `index` (see `Wal::bytes_after`).
    pub fn log_bytes_after(&self, index: u64) -> u64 {
        self.shared.wal.bytes_after(index)
    }

    /// Events of revisions up to this one have been compacted away (0: none).
    pub fn compacted_through(&self) -> u64 {
        compacted_through(&self.shared.sm.main)
    }
}

impl StateRead for StoreReader {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageFault> {
        self.readable()?;
        KeyspaceView(&self.shared.sm).get(key)
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageFault> {
        self.readable()?;
        KeyspaceView(&self.shared.sm).scan(prefix, after, limit)
    }
}
