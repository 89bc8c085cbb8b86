//! Which request ids the state remembers: a Bloom filter over the `dedup/` keys, so
//! the apply of a write with a new request id (nearly every write) learns that it
//! is new without a read of the tree.
//!
//! Why: `perf` of a 64-client write load put 3.2 % of the whole machine's CPU in
//! that one lookup, on each node a point read that misses: the memtable's skip list
//! searched to the bottom, then a filter probe per table.
//!
//! The filter only ever answers "absent" for a key the state does not hold; a
//! false "present" costs the read the apply did before. So it must hold every
//! remembered request id:
//! - built on a thread of its own from a snapshot of the state's `dedupt/` index
//!   (keys only; each remembered id has one, written and purged with it in the
//!   same transition), while the applies after the snapshot add their ids to it
//!   too. Snapshot and start are taken under the apply lock, or before the first
//!   apply, so no commit falls between them;
//! - until a build finishes, lookups use the previous filter (which applies
//!   still feed) or, if there is none, read the tree as before;
//! - an install clears it, and builds it again from the installed state.
//!
//! Purged ids stay in the filter (a filter cannot forget); once the ids added
//! exceed what it was sized for, it is built again from the state, sized for
//! twice the ids the state holds. Past [`MAX_IDS`] it is dropped and lookups read
//! the tree, so its memory stays bounded (about 1.25 bytes per remembered id).

use std::hash::Hasher;
use std::sync::{Arc, Mutex, MutexGuard};

use concord_domain::state::keys;

/// Bits per expected key; with 7 probes in one 512-bit block, about 1 % false
/// "present".
const BITS_PER_KEY: u64 = 10;
const PROBES: u32 = 7;
/// The smallest filter built (80 KiB).
const MIN_IDS: u64 = 1 << 16;
/// Above this many remembered ids the filter is dropped (it would take 20 MiB).
const MAX_IDS: u64 = 1 << 24;
/// Hashes inserted per lock taken by a build.
const BUILD_CHUNK: usize = 4096;

/// The hash of a `dedup/` key, as [`RequestIds::applied`] takes it.
pub(crate) fn hash(key: &str) -> u64 {
    // SipHash with fixed keys: the filter lives in memory only, so the function
    // need not be stable across versions, and keys are not chosen against it
    // (a crafted collision would only cost a read).
    let mut h = std::hash::DefaultHasher::new();
    h.write(key.as_bytes());
    h.finish()
}

/// splitmix64's finaliser: the probe positions, independent of the block index.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A blocked Bloom filter: every probe of a key falls in one cache line.
struct Bloom {
    blocks: Vec<[u64; 8]>,
    /// Ids it was sized for.
    capacity: u64,
    /// Ids inserted (purged ones included).
    inserted: u64,
}

impl Bloom {
    fn new(capacity: u64) -> Bloom {
        let capacity = capacity.clamp(MIN_IDS, MAX_IDS);
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512) as usize;
        Bloom {
            blocks: vec![[0; 8]; blocks],
            capacity,
            inserted: 0,
        }
    }

    fn block(&self, h: u64) -> usize {
        ((u128::from(h) * self.blocks.len() as u128) >> 64) as usize
    }

    fn bits(h: u64) -> impl Iterator<Item = (usize, u64)> {
        let g = mix(h);
        (0..PROBES).map(move |i| {
            let bit = (g >> (i * 9)) & 511;
            ((bit >> 6) as usize, 1u64 << (bit & 63))
        })
    }

    fn insert(&mut self, h: u64) {
        let b = self.block(h);
        let block = &mut self.blocks[b];
        for (word, mask) in Self::bits(h) {
            block[word] |= mask;
        }
        self.inserted += 1;
    }

    fn contains(&self, h: u64) -> bool {
        let block = &self.blocks[self.block(h)];
        Self::bits(h).all(|(word, mask)| block[word] & mask != 0)
    }
}

struct Build {
    generation: u64,
    bloom: Bloom,
    /// Ids added and purged by applies since the build's snapshot.
    added: u64,
    purged: u64,
}

#[derive(Default)]
struct Inner {
    /// Complete: holds every id the state remembers.
    current: Option<Bloom>,
    /// Remembered ids, while `current` is complete.
    live: u64,
    next: Option<Build>,
    generation: u64,
}

/// See the module's documentation.
#[derive(Default, Clone)]
pub(crate) struct RequestIds {
    inner: Arc<Mutex<Inner>>,
}

impl RequestIds {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False when `key` (a `dedup/` key) is certainly not in the state.
    pub fn may_hold(&self, key: &str) -> bool {
        match &self.lock().current {
            Some(bloom) => bloom.contains(hash(key)),
            None => true,
        }
    }

    /// After a committed apply: the `dedup/` keys it wrote and how many it purged.
    /// Returns whether the filter should be built again (see [`Self::rebuild`]).
    pub fn applied(&self, added: &[u64], purged: u64) -> bool {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(bloom) = &mut inner.current {
            for &h in added {
                bloom.insert(h);
            }
            inner.live = (inner.live + added.len() as u64).saturating_sub(purged);
        }
        if let Some(build) = &mut inner.next {
            for &h in added {
                build.bloom.insert(h);
            }
            build.added += added.len() as u64;
            build.purged += purged;
        }
        inner.next.is_none()
            && inner
                .current
                .as_ref()
                .is_some_and(|b| b.inserted > b.capacity && inner.live < MAX_IDS)
    }

    /// The state is about to be replaced: nothing is known until a rebuild.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.current = None;
        inner.next = None;
    }

    /// Builds the filter again from the state's `dedupt/` index as of now, on a
    /// thread of its own. The caller holds the apply lock (or no apply can run
    /// yet), so every id committed after the snapshot reaches [`Self::applied`].
    pub fn rebuild(&self, db: &fjall::Database, index: &fjall::Keyspace) {
        let snapshot = db.snapshot();
        let generation = {
            let mut inner = self.lock();
            inner.generation += 1;
            let capacity = 2 * inner.live.max(MIN_IDS / 2);
            inner.next = Some(Build {
                generation: inner.generation,
                bloom: Bloom::new(capacity),
                added: 0,
                purged: 0,
            });
            inner.generation
        };
        let prefix = crate::sm_keys::state(keys::DEDUP_BY_TIME);
        let ids = fjall::AbstractTree::prefix(&index.tree, &prefix, snapshot.seqno(), None);
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("concord-request-ids".into())
            .spawn(move || {
                let _snapshot = snapshot;
                let started = std::time::Instant::now();
                match this.scan(generation, prefix.len(), ids) {
                    Ok(Some(ids)) => tracing::debug!(
                        ids,
                        ms = started.elapsed().as_millis() as u64,
                        "request-id filter built"
                    ),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        "request-id filter not built: applies read the tree for request ids"
                    ),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "request-id filter not built: no thread");
            self.lock().next = None;
        }
    }

    /// Adds the snapshot's ids to build `generation`, then makes it current.
    /// `Ok(None)`: a newer build or a clear superseded it.
    fn scan(
        &self,
        generation: u64,
        prefix_len: usize,
        index: impl Iterator<Item = lsm_tree::IterGuardImpl>,
    ) -> lsm_tree::Result<Option<u64>> {
        use lsm_tree::Guard as _;
        let mut scanned = 0u64;
        let mut chunk = Vec::with_capacity(BUILD_CHUNK);
        let mut index = index.peekable();
        let mut key = String::new();
        while index.peek().is_some() {
            chunk.clear();
            for guard in index.by_ref().take(BUILD_CHUNK) {
                let k = guard.key()?;
                // dedupt/<time:20>/<owner>/<request id> → dedup/<owner>/<request id>
                let Some(rest) = k.get(prefix_len + 21..) else {
                    continue;
                };
                key.clear();
                key.push_str(keys::DEDUP);
                key.push_str(&String::from_utf8_lossy(rest));
                chunk.push(hash(&key));
            }
            scanned += chunk.len() as u64;
            let mut inner = self.lock();
            match &mut inner.next {
                Some(build) if build.generation == generation => {
                    for &h in &chunk {
                        build.bloom.insert(h);
                    }
                }
                _ => return Ok(None),
            }
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(build) = inner.next.take_if(|b| b.generation == generation) else {
            return Ok(None);
        };
        let live = (scanned + build.added).saturating_sub(build.purged);
        if live > MAX_IDS {
            tracing::info!(
                ids = live,
                "more request ids remembered than the filter holds: applies read the tree for them"
            );
            inner.current = None;
        } else {
            inner.current = Some(build.bloom);
            inner.live = live;
        }
        Ok(Some(live))
    }

    #[cfg(test)]
    fn is_complete(&self) -> bool {
        self.lock().current.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_domain::Response;
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

    use crate::state_machine::StateMachine;
    use crate::test_entries::entry;

    async fn apply_one(sm: &mut StateMachine, index: u64, push: u64) -> anyhow::Result<Response> {
        let mut responses = sm.apply(vec![entry(index, push)?]).await?;
        let r = responses
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no response"))?;
        anyhow::ensure!(r.result.is_ok(), "refused: {r:?}");
        Ok(r)
    }

    async fn complete(ids: &RequestIds) -> anyhow::Result<()> {
        for _ in 0..500 {
            if ids.is_complete() {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        anyhow::bail!("the request-id filter was not built in 5 s")
    }

    /// A retry must get the remembered answer whatever the filter's history: built
    /// at open from the state, fed by applies, cleared and built again by an
    /// install. A filter missing one id would apply the retry a second time.
    #[tokio::test]
    async fn a_retry_is_recognised_after_applies_a_restart_and_an_install() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let (_log, mut sm, _reader) = crate::open(dir.path(), Default::default())?;
            for i in 1..=30 {
                apply_one(&mut sm, i, i).await?;
            }
            complete(&sm.shared.request_ids).await?;
            // Ids applied after the build are in the filter as well.
            anyhow::ensure!(
                apply_one(&mut sm, 31, 20).await?.replayed,
                "r-20 applied twice"
            );
            anyhow::ensure!(!apply_one(&mut sm, 32, 32).await?.replayed);
            anyhow::ensure!(
                apply_one(&mut sm, 33, 32).await?.replayed,
                "r-32 applied twice"
            );
        }

        let (_log, mut sm, _reader) = crate::open(dir.path(), Default::default())?;
        let ids = sm.shared.request_ids.clone();
        complete(&ids).await?;
        anyhow::ensure!(
            !ids.may_hold(&keys::dedup("SAMR", "never-sent")),
            "the filter answers nothing: every lookup still reads the tree"
        );
        for (index, push) in [(34, 2), (35, 10), (36, 32)] {
            let r = apply_one(&mut sm, index, push).await?;
            anyhow::ensure!(r.replayed, "after a restart r-{push} was applied twice");
        }

        // A snapshot at 36; r-40 is applied after it, so the install forgets it.
        sm.get_snapshot_builder().await.build_snapshot().await?;
        apply_one(&mut sm, 37, 40).await?;
        crate::state_machine::reload_snapshot(&sm.shared)?;
        complete(&ids).await?;
        anyhow::ensure!(
            apply_one(&mut sm, 38, 5).await?.replayed,
            "after an install r-5 was applied twice"
        );
        anyhow::ensure!(
            !apply_one(&mut sm, 39, 40).await?.replayed,
            "r-40 was answered from a state the install replaced"
        );
        Ok(())
    }

    #[test]
    fn the_filter_holds_every_id_inserted_and_few_others() {
        let mut bloom = Bloom::new(100_000);
        let key = |i: u32| keys::dedup("TRANS", &format!("req-{i}"));
        for i in 0..100_000 {
            bloom.insert(hash(&key(i)));
        }
        assert!((0..100_000).all(|i| bloom.contains(hash(&key(i)))));
        let false_present = (100_000..200_000)
            .filter(|&i| bloom.contains(hash(&key(i))))
            .count();
        assert!(
            false_present < 3_000,
            "{false_present} of 100,000 new ids look remembered"
        );
    }

    /// Purged ids stay in the filter: past its size it asks to be built again.
    #[test]
    fn a_filter_past_its_size_asks_to_be_built_again() {
        let ids = RequestIds::default();
        ids.lock().current = Some(Bloom::new(MIN_IDS));
        let added: Vec<u64> = (0..MIN_IDS).map(|i| hash(&i.to_string())).collect();
        assert!(!ids.applied(&added, MIN_IDS), "rebuilt before it was full");
        assert!(ids.applied(&[hash("one more")], 0));
    }
}
