//! The values of the keys nearly every command reads, kept between applies: the
//! department records (the actor's, the receiver's) and the `meta/` settings (the
//! deadline policy, the arbiters, the audit chain's head).
//!
//! Why: `perf` of `concord bench --apply` put a fifth of a loaded state machine's
//! time in fjall point reads, most of them these keys. A department written once
//! lives in the oldest table, so each read passed the memtables and every newer
//! table first.
//!
//! Only the apply path reads through the cache, under the apply lock. A batch's
//! writes to these keys update it once the batch is committed, and an install
//! clears it, so it always holds what the tree holds: a stale value would not be a
//! slow read but a replica that applies differently (`tests`).

use std::collections::HashMap;
use std::sync::Mutex;

use concord_domain::state::keys;
use concord_domain::{StateRead, StorageFault};

use crate::reader::KeyspaceView;
use crate::request_ids::RequestIds;

/// Keys under these prefixes are cached.
const META: &str = "meta/";
/// Cleared when it would grow past this (a registry of thousands of departments).
const MAX_KEYS: usize = 4096;

pub(crate) fn is_hot(key: &str) -> bool {
    key.starts_with(keys::DEPARTMENT) || key.starts_with(META)
}

#[derive(Default)]
pub(crate) struct HotKeys {
    values: HashMap<String, Option<Vec<u8>>>,
}

impl HotKeys {
    fn put(&mut self, key: String, value: Option<Vec<u8>>) {
        if self.values.len() >= MAX_KEYS && !self.values.contains_key(&key) {
            self.values.clear();
        }
        self.values.insert(key, value);
    }

    /// A committed batch's writes to hot keys (`None`: deleted).
    pub fn committed(&mut self, writes: Vec<(String, Option<Vec<u8>>)>) {
        for (k, v) in writes {
            self.put(k, v);
        }
    }

    pub fn clear(&mut self) {
        self.values.clear();
    }

    #[cfg(test)]
    pub fn entries(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

pub(crate) fn lock(hot: &Mutex<HotKeys>) -> std::sync::MutexGuard<'_, HotKeys> {
    hot.lock().unwrap_or_else(|p| p.into_inner())
}

/// The committed state as the apply path reads it: hot keys through the cache.
pub(crate) struct CachedView<'a> {
    pub base: KeyspaceView<'a>,
    pub hot: &'a Mutex<HotKeys>,
    pub request_ids: &'a RequestIds,
}

impl StateRead for CachedView<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageFault> {
        if key.starts_with(keys::DEDUP) && !self.request_ids.may_hold(key) {
            return Ok(None);
        }
        if !is_hot(key) {
            return self.base.get(key);
        }
        if let Some(v) = lock(self.hot).values.get(key) {
            return Ok(v.clone());
        }
        let v = self.base.get(key)?;
        lock(self.hot).put(key.to_string(), v.clone());
        Ok(v)
    }

    fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageFault> {
        self.base.scan(prefix, after, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

    use crate::Shared;

    async fn apply(
        sm: &mut crate::state_machine::StateMachine,
        indexes: std::ops::RangeInclusive<u64>,
    ) -> anyhow::Result<()> {
        let entries = indexes
            .map(|i| crate::test_entries::entry(i, i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for r in sm.apply(entries).await? {
            anyhow::ensure!(r.result.is_ok(), "refused: {r:?}");
        }
        Ok(())
    }

    /// Every cached key holds what the tree holds; returns how many there are.
    fn agrees(shared: &Shared) -> anyhow::Result<usize> {
        let entries = lock(&shared.hot).entries();
        for (k, v) in &entries {
            let stored = KeyspaceView(&shared.sm).get(k)?;
            anyhow::ensure!(*v == stored, "cached {k} differs from the tree");
        }
        Ok(entries.len())
    }

    fn audit(shared: &Shared, revision: u64) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(KeyspaceView(&shared.sm).get(&keys::audit(revision))?)
    }

    /// The audit head changes with every apply and the departments are read by
    /// every push: a cache that missed a batch's writes, or kept its values over an
    /// install, would chain audit records differently from a replica without it.
    #[tokio::test]
    async fn the_apply_cache_holds_what_the_tree_holds_across_batches_and_installs(
    ) -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (_log, mut sm, _reader) = crate::open(dir.path(), Default::default())?;
        let shared = sm.shared.clone();
        apply(&mut sm, 1..=1).await?;
        for first in (2..=42).step_by(7) {
            apply(&mut sm, first..=(first + 6).min(42)).await?;
            let cached = agrees(&shared)?;
            anyhow::ensure!(cached >= 3, "only {cached} keys cached");
        }
        let cached = lock(&shared.hot).entries();
        anyhow::ensure!(cached.iter().any(|(k, _)| k == keys::AUDIT_HEAD));
        anyhow::ensure!(cached.iter().any(|(k, _)| k == &keys::department("TRANS")));

        // A snapshot at 42, then more writes, then the snapshot installed again.
        sm.get_snapshot_builder().await.build_snapshot().await?;
        apply(&mut sm, 43..=60).await?;
        agrees(&shared)?;
        let first_time: Vec<_> = (43..=60)
            .map(|r| audit(&shared, r))
            .collect::<Result<_, _>>()?;
        crate::state_machine::reload_snapshot(&shared)?;
        agrees(&shared)?;
        anyhow::ensure!(
            audit(&shared, 43)?.is_none(),
            "the install kept revision 43"
        );
        // The same entries again give the same audit chain.
        apply(&mut sm, 43..=60).await?;
        agrees(&shared)?;
        let second_time: Vec<_> = (43..=60)
            .map(|r| audit(&shared, r))
            .collect::<Result<_, _>>()?;
        anyhow::ensure!(
            first_time == second_time,
            "the audit chain differs after the install"
        );
        Ok(())
    }
}
