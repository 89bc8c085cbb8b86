//! The raft log as append-only segment files, synced with `fdatasync`.
//!
//! Why not sled (where the log lived first): each group commit had to `flush` all
//! of sled — state machine pages included — and `fsync` its file, and replication
//! read every entry back out of sled's B-tree. Here an append is one `write` to the
//! end of a file and a commit one `fdatasync`; replication reads recent entries
//! from memory. Measured before/after in docs/performance.md.
//!
//! Layout: `<dir>/seg-<first index, 20 digits>.log`, each a run of records
//! `[len: u32][crc32: u32][index: u64][entry: len bytes of JSON]`, the CRC over
//! index and entry. A new segment starts past 64 MiB; purging deletes whole
//! segments. Recovery reads the segments in order and cuts a torn record off the
//! end of the last one (a crash mid-append: that entry was never acknowledged).
//!
//! A segment is allocated whole when it is created and written into, as etcd's WAL
//! does: an `fdatasync` that must also record a grown file size costs a filesystem
//! journal commit (0.15 ms against 0.10 ms per sync on the CI machine's disk). Past
//! its records a segment holds zeros, which recovery reads as its end; a segment
//! that is finished is cut back to its records.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::durability::Durability;

type Entry = openraft::Entry<crate::TypeConfig>;

const HEADER: usize = 16;
const SEGMENT_BYTES: u64 = 64 << 20;
/// Recent entries kept decoded for replication and apply.
const CACHE_ENTRIES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("raft log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("raft log {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("raft log: entry {got} appended where {expected} was next")]
    Gap { expected: u64, got: u64 },
    #[error("raft log: entry {0}: {1}")]
    Encoding(u64, serde_json::Error),
}

struct Segment {
    first: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

/// Where entry `base + i` is: segment (by its first index), offset, record length.
#[derive(Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

struct Inner {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Index of `locs[0]`; the next entry appended has `base + locs.len()`.
    base: u64,
    locs: VecDeque<Loc>,
    /// The last `cache.len()` entries, ending at the last one.
    cache: VecDeque<Cached>,
    /// The active segment's file, shared with the sync thread.
    active: Arc<Mutex<Option<File>>>,
}

pub struct Wal {
    inner: Mutex<Inner>,
    durability: Durability,
    /// Where each sync's duration goes, once the node gives one (`time_syncs`).
    sync_timer: Arc<OnceLock<prometheus::Histogram>>,
}

/// An entry of the cache, with the JSON its record holds when this node appended
/// it: a leader sends that to each peer rather than encoding the entry once per
/// peer (`Wal::encoded`).
struct Cached {
    entry: Entry,
    json: Option<Arc<[u8]>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("seg-{first:020}.log"))
}

/// Reserves a whole segment for `file`. Where the filesystem cannot, the file
/// grows with its appends instead.
fn preallocate(file: &File, path: &Path) {
    if let Err(e) =
        rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, SEGMENT_BYTES)
    {
        tracing::debug!(path = %path.display(), error = %e, "raft log segment not preallocated");
    }
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn crc(index: u64, bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(bytes);
    h.finalize()
}

fn encode_record(index: u64, entry: &Entry, out: &mut Vec<u8>) -> Result<(), WalError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    serde_json::to_writer(&mut *out, entry).map_err(|e| WalError::Encoding(index, e))?;
    let body = out.len() - start - HEADER;
    let c = crc(index, &out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&(body as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&c.to_le_bytes());
    out[start + 8..start + 16].copy_from_slice(&index.to_le_bytes());
    Ok(())
}

/// Entries encoded as records, one after another, and each record's size.
struct Records {
    buf: Vec<u8>,
    sizes: Vec<u64>,
}

impl Records {
    fn encode(entries: &[Entry]) -> Result<Records, WalError> {
        let mut buf = Vec::with_capacity(entries.len() * 512);
        let mut sizes = Vec::with_capacity(entries.len());
        for e in entries {
            let before = buf.len();
            encode_record(e.log_id.index, e, &mut buf)?;
            sizes.push((buf.len() - before) as u64);
        }
        Ok(Records { buf, sizes })
    }
}

/// Whether a valid record follows the bad one at `at`: then it is damage in the
/// middle of the log, not a torn append at its end, and must not be cut away.
fn good_record_after(bytes: &[u8], at: usize) -> bool {
    let Some((len, _, _)) = header_at(bytes, at) else {
        return false;
    };
    let next = at + HEADER + len;
    next < bytes.len() && !scan_records(&bytes[next..]).0.is_empty()
}

/// The header of the record at `at`: body length, CRC and index; None past the end.
fn header_at(bytes: &[u8], at: usize) -> Option<(usize, u32, u64)> {
    let h: &[u8; HEADER] = bytes.get(at..at.checked_add(HEADER)?)?.try_into().ok()?;
    let [l0, l1, l2, l3, c0, c1, c2, c3, i @ ..] = *h;
    Some((
        u32::from_le_bytes([l0, l1, l2, l3]) as usize,
        u32::from_le_bytes([c0, c1, c2, c3]),
        u64::from_le_bytes(i),
    ))
}

/// The records of `bytes`: (index, offset, body length) until the end or the
/// first torn or corrupt record, and where the valid part ends.
fn scan_records(bytes: &[u8]) -> (Vec<(u64, u64, u32)>, u64) {
    let mut out = vec![];
    let mut at = 0usize;
    while let Some((len, c, index)) = header_at(bytes, at) {
        let end = at + HEADER + len;
        if end > bytes.len() || crc(index, &bytes[at + HEADER..end]) != c {
            break;
        }
        out.push((index, at as u64, len as u32));
        at = end;
    }
    (out, at as u64)
}

impl Wal {
    /// Opens the log in `dir`, skipping entries at or below `last_purged` (a purge
    /// records its point before it deletes segments).
    pub fn open(dir: &Path, last_purged: Option<u64>) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        firsts.sort_unstable();
        let floor = last_purged.map_or(0, |p| p + 1);
        let mut segments = vec![];
        let mut locs: VecDeque<Loc> = VecDeque::new();
        let mut base = floor.max(1);
        let count = firsts.len();
        for (n, first) in firsts.into_iter().enumerate() {
            let path = segment_path(dir, first);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let (records, valid) = scan_records(&bytes);
            let last_segment = n + 1 == count;
            // Zeros past the records: the unwritten rest of a preallocated segment.
            let clean_end = bytes[valid as usize..].iter().all(|b| *b == 0);
            if !clean_end {
                if !last_segment || good_record_after(&bytes, valid as usize) {
                    return Err(WalError::Corrupt {
                        path,
                        what: format!("a damaged record at byte {valid} before the last segment"),
                    });
                }
                tracing::warn!(path = %path.display(), at = valid, "cutting a torn record off the end of the raft log");
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            if !clean_end {
                file.set_len(valid).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
            }
            for (index, offset, len) in records {
                if index < floor {
                    continue;
                }
                if locs.is_empty() {
                    base = index;
                } else if index != base + locs.len() as u64 {
                    return Err(WalError::Corrupt {
                        path,
                        what: format!(
                            "entry {index} follows entry {}",
                            base + locs.len() as u64 - 1
                        ),
                    });
                }
                locs.push_back(Loc {
                    segment: first,
                    offset,
                    len,
                });
            }
            segments.push(Segment {
                first,
                path,
                file,
                len: valid,
            });
        }
        let active = Arc::new(Mutex::new(
            segments
                .last()
                .map(|s| s.file.try_clone())
                .transpose()
                .map_err(io(dir))?,
        ));
        let synced = active.clone();
        let sync_timer: Arc<OnceLock<prometheus::Histogram>> = Arc::default();
        let timer = sync_timer.clone();
        let durability = Durability::start(
            "concord-wal",
            Arc::new(move || {
                let started = Instant::now();
                let r = match &*synced.lock().unwrap_or_else(|p| p.into_inner()) {
                    Some(f) => f.sync_data(),
                    None => Ok(()),
                };
                if let Some(h) = timer.get() {
                    h.observe(started.elapsed().as_secs_f64());
                }
                r
            }),
        )
        .map_err(io(dir))?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            segments,
            base,
            locs,
            cache: VecDeque::new(),
            active,
        };
        // Warm the cache with the tail, so a restarted leader replicates from memory.
        inner.refill_cache()?;
        Ok(Wal {
            inner: Mutex::new(inner),
            durability,
            sync_timer,
        })
    }

    /// Observes each sync's duration in `histogram` from now on (the first call
    /// wins).
    pub fn time_syncs(&self, histogram: prometheus::Histogram) {
        let _ = self.sync_timer.set(histogram);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `entries` (which must continue the log) and calls `done` once they
    /// are on stable storage.
    pub fn append(
        &self,
        entries: Vec<Entry>,
        done: impl FnOnce(std::io::Result<()>) + Send + 'static,
    ) -> Result<(), WalError> {
        // Encoded before the lock is taken: replication reads the log meanwhile.
        let records = Records::encode(&entries)?;
        self.lock().append(entries, records)?;
        self.durability.after_sync(done);
        Ok(())
    }

    /// Entries with index in `[from, to)` that the log holds.
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<Entry>, WalError> {
        self.lock().read_range(from, to)
    }

    /// The last entry's log id, if the log holds any.
    pub fn last(&self) -> Option<openraft::LogId<crate::NodeId>> {
        self.lock().cache.back().map(|c| c.entry.log_id)
    }

    /// Bytes on disk of the entries after `index` that the log holds: how much log
    /// a snapshot at `index` would leave to replay.
    pub fn bytes_after(&self, index: u64) -> u64 {
        let inner = self.lock();
        let first = index.saturating_add(1).max(inner.base);
        let Some(loc) = first
            .checked_sub(inner.base)
            .and_then(|i| inner.locs.get(i as usize))
        else {
            return 0;
        };
        inner
            .segments
            .iter()
            .filter(|s| s.first >= loc.segment)
            .map(|s| {
                if s.first == loc.segment {
                    s.len.saturating_sub(loc.offset)
                } else {
                    s.len
                }
            })
            .sum()
    }

    /// For each of `entries`, the JSON of its record if it is one this node
    /// appended and still holds in memory (the same log id, so not an entry a
    /// truncation replaced): the bytes `serde_json` gives for it.
    /// While an append holds the log, none: encoding them is quicker than waiting.
    pub fn encoded(&self, entries: &[Entry]) -> Vec<Option<Arc<[u8]>>> {
        let inner = match self.inner.try_lock() {
            Ok(inner) => inner,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return vec![None; entries.len()],
        };
        let cached_from = inner.next_index() - inner.cache.len() as u64;
        entries
            .iter()
            .map(|e| {
                let i = e.log_id.index.checked_sub(cached_from)?;
                let c = inner.cache.get(usize::try_from(i).ok()?)?;
                (c.entry.log_id == e.log_id)
                    .then(|| c.json.clone())
                    .flatten()
            })
            .collect()
    }

    /// Removes entries `from` and after, durably.
    pub fn truncate(&self, from: u64) -> Result<(), WalError> {
        self.lock().truncate(from)
    }

    /// Forgets entries up to `upto` and deletes the segments that hold nothing else.
    pub fn purge(&self, upto: u64) -> Result<(), WalError> {
        self.lock().purge(upto)
    }
}

impl Inner {
    fn next_index(&self) -> u64 {
        self.base + self.locs.len() as u64
    }

    /// Loads the last entries from disk into an empty cache.
    fn refill_cache(&mut self) -> Result<(), WalError> {
        let from = self
            .next_index()
            .saturating_sub(CACHE_ENTRIES as u64)
            .max(self.base);
        self.cache = self
            .read_range(from, self.next_index())?
            .into_iter()
            .map(|entry| Cached { entry, json: None })
            .collect();
        Ok(())
    }

    fn segment(&self, first: u64) -> Option<&Segment> {
        self.segments
            .binary_search_by_key(&first, |s| s.first)
            .ok()
            .map(|i| &self.segments[i])
    }

    fn start_segment(&mut self, first: u64) -> Result<(), WalError> {
        if let Some(old) = self.segments.last() {
            // The sync thread moves to the new file: make the old one durable first,
            // cut back to its records.
            old.file.set_len(old.len).map_err(io(&old.path))?;
            old.file.sync_data().map_err(io(&old.path))?;
        }
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io(&path))?;
        preallocate(&file, &path);
        sync_dir(&self.dir)?;
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(file.try_clone().map_err(io(&path))?);
        self.segments.push(Segment {
            first,
            path,
            file,
            len: 0,
        });
        Ok(())
    }

    fn append(&mut self, entries: Vec<Entry>, records: Records) -> Result<(), WalError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if self.locs.is_empty() {
            // After a purge past the end (a snapshot install), or on a new log.
            self.base = first.log_id.index;
        }
        for (i, e) in entries.iter().enumerate() {
            let expected = self.next_index() + i as u64;
            if e.log_id.index != expected {
                return Err(WalError::Gap {
                    expected,
                    got: e.log_id.index,
                });
            }
        }
        let Records { buf, sizes } = records;
        let needs_new = match self.segments.last() {
            None => true,
            Some(s) => s.len > 0 && s.len + buf.len() as u64 > SEGMENT_BYTES,
        };
        if needs_new {
            self.start_segment(first.log_id.index)?;
        }
        let seg = self.segments.last_mut().expect("an active segment");
        let offset = seg.len;
        (&seg.file)
            .write_all_at(&buf, offset)
            .map_err(io(&seg.path))?;
        seg.len += buf.len() as u64;
        let segment = seg.first;
        let mut at = 0;
        for (entry, &size) in entries.into_iter().zip(&sizes) {
            self.locs.push_back(Loc {
                segment,
                offset: offset + at as u64,
                len: (size as usize - HEADER) as u32,
            });
            debug_assert_eq!(entry.log_id.index + 1, self.base + self.locs.len() as u64);
            let json = Arc::<[u8]>::from(&buf[at + HEADER..at + size as usize]);
            at += size as usize;
            self.cache.push_back(Cached {
                entry,
                json: Some(json),
            });
        }
        while self.cache.len() > CACHE_ENTRIES {
            self.cache.pop_front();
        }
        Ok(())
    }

    fn read_range(&self, from: u64, to: u64) -> Result<Vec<Entry>, WalError> {
        let from = from.max(self.base);
        let to = to.min(self.next_index());
        if from >= to {
            return Ok(vec![]);
        }
        let cached_from = self.next_index() - self.cache.len() as u64;
        let mut out = Vec::with_capacity((to - from) as usize);
        let mut i = from;
        // Older entries: read contiguous runs of one segment with one pread.
        while i < to.min(cached_from) {
            let first = self.locs[(i - self.base) as usize];
            let mut j = i + 1;
            while j < to.min(cached_from)
                && self.locs[(j - self.base) as usize].segment == first.segment
            {
                j += 1;
            }
            let last = self.locs[(j - 1 - self.base) as usize];
            let seg = self
                .segment(first.segment)
                .ok_or_else(|| WalError::Corrupt {
                    path: self.dir.clone(),
                    what: format!("no segment {} for entry {i}", first.segment),
                })?;
            let end = last.offset + HEADER as u64 + last.len as u64;
            let mut bytes = vec![0u8; (end - first.offset) as usize];
            seg.file
                .read_exact_at(&mut bytes, first.offset)
                .map_err(io(&seg.path))?;
            for k in i..j {
                let loc = self.locs[(k - self.base) as usize];
                let at = (loc.offset - first.offset) as usize + HEADER;
                let entry: Entry = serde_json::from_slice(&bytes[at..at + loc.len as usize])
                    .map_err(|e| WalError::Encoding(k, e))?;
                out.push(entry);
            }
            i = j;
        }
        while i < to {
            out.push(self.cache[(i - cached_from) as usize].entry.clone());
            i += 1;
        }
        Ok(out)
    }

    fn truncate(&mut self, from: u64) -> Result<(), WalError> {
        if from >= self.next_index() {
            return Ok(());
        }
        let from = from.max(self.base);
        let cut = self.locs[(from - self.base) as usize];
        // Later segments go entirely; the one holding `from` is cut there.
        while let Some(s) = self.segments.last() {
            if s.first <= cut.segment {
                break;
            }
            let s = self.segments.pop().expect("a segment");
            std::fs::remove_file(&s.path).map_err(io(&s.path))?;
        }
        let seg = self
            .segments
            .last_mut()
            .expect("the segment holding the cut");
        seg.file.set_len(cut.offset).map_err(io(&seg.path))?;
        seg.file.sync_all().map_err(io(&seg.path))?;
        seg.len = cut.offset;
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(seg.file.try_clone().map_err(io(&seg.path))?);
        sync_dir(&self.dir)?;
        let keep = (from - self.base) as usize;
        self.locs.truncate(keep);
        while self
            .cache
            .back()
            .is_some_and(|c| c.entry.log_id.index >= from)
        {
            self.cache.pop_back();
        }
        if self.cache.is_empty() {
            self.refill_cache()?;
        }
        Ok(())
    }

    fn purge(&mut self, upto: u64) -> Result<(), WalError> {
        if upto < self.base {
            return Ok(());
        }
        if upto + 1 >= self.next_index() {
            // Everything goes (a snapshot install past the end of the log): start
            // afresh so no stale record stays in a segment being appended to.
            let old: Vec<Segment> = self.segments.drain(..).collect();
            self.locs.clear();
            self.cache.clear();
            self.base = upto + 1;
            *self.active.lock().unwrap_or_else(|p| p.into_inner()) = None;
            for s in old {
                std::fs::remove_file(&s.path).map_err(io(&s.path))?;
            }
            sync_dir(&self.dir)?;
            return Ok(());
        }
        let drop = (upto + 1 - self.base) as usize;
        self.locs.drain(..drop);
        self.base = upto + 1;
        while self
            .cache
            .front()
            .is_some_and(|c| c.entry.log_id.index <= upto)
        {
            self.cache.pop_front();
        }
        // A segment goes when the next one starts at or below the new base.
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].first <= self.base {
            let s = self.segments.remove(0);
            std::fs::remove_file(&s.path).map_err(io(&s.path))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_domain::{Command, Envelope, Principal};
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Envelope {
                actor: "SAMR".into(),
                principal: Principal::Member,
                request_id: format!("r-{index}"),
                timestamp_ms: index as i64,
                command: Command::Tick {
                    dedup_retention_ms: index as i64,
                },
            }),
        }
    }

    fn ids(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    fn append(wal: &Wal, range: std::ops::Range<u64>) {
        append_synced(wal, range.map(entry).collect()).unwrap();
    }

    /// Appends `entries` and waits until they are on disk.
    fn append_synced(wal: &Wal, entries: Vec<Entry>) -> anyhow::Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        wal.append(entries, move |r| {
            let _ = tx.send(r);
        })?;
        Ok(rx.recv()??)
    }

    /// A leader sends what its log wrote for an entry instead of encoding it again
    /// for each peer: those bytes must be what `serde_json` gives for the entry,
    /// and only ever for that entry, not one a truncation replaced at its index.
    #[test]
    fn the_json_of_an_appended_entry_is_kept_for_that_entry_only() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let wal = Wal::open(dir.path(), None)?;
        let mut entries: Vec<Entry> = (1..4)
            .map(|i| crate::test_entries::entry(i, i))
            .collect::<anyhow::Result<_>>()?;
        entries.push(Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 4),
            payload: EntryPayload::Blank,
        });
        append_synced(&wal, entries.clone())?;
        let json = wal.encoded(&entries);
        for (e, j) in entries.iter().zip(&json) {
            assert_eq!(j.as_deref(), Some(&serde_json::to_vec(e)?[..]));
        }

        // A new leader's entry 3 replaces the old one: the old one has no JSON here
        // any more, the new one has its own.
        wal.truncate(3)?;
        let mut newer = crate::test_entries::entry(3, 7)?;
        newer.log_id = LogId::new(CommittedLeaderId::new(2, 2), 3);
        append_synced(&wal, vec![newer.clone()])?;
        let json = wal.encoded(&[entries[2].clone(), newer.clone(), entries[3].clone()]);
        assert_eq!(json[0], None, "the replaced entry");
        assert_eq!(json[1].as_deref(), Some(&serde_json::to_vec(&newer)?[..]));
        assert_eq!(json[2], None, "past the end of the log");
        Ok(())
    }

    #[test]
    fn entries_survive_reopening_beyond_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), None).unwrap();
        append(&wal, 1..6000);
        drop(wal);
        let wal = Wal::open(dir.path(), None).unwrap();
        let all = wal.read(1, 6000).unwrap();
        assert_eq!(ids(&all), (1..6000).collect::<Vec<_>>());
        assert_eq!(all[10].payload_request_id(), "r-11");
        assert_eq!(wal.last().unwrap().index, 5999);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), None).unwrap();
        append(&wal, 1..11);
        drop(wal);
        let seg = segment_path(dir.path(), 1);
        let end = scan_records(&std::fs::read(&seg).unwrap()).1;
        // A crash in the middle of writing entry 10: its last bytes never reached
        // the disk, where the preallocated segment holds zeros.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .write_all_at(&[0u8; 5], end - 5)
            .unwrap();
        let wal = Wal::open(dir.path(), None).unwrap();
        assert_eq!(wal.last().unwrap().index, 9);
        append(&wal, 10..13);
        drop(wal);
        let wal = Wal::open(dir.path(), None).unwrap();
        assert_eq!(ids(&wal.read(0, 100).unwrap()), (1..13).collect::<Vec<_>>());
    }

    #[test]
    fn a_segment_is_allocated_whole_and_reopens_at_its_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), None).unwrap();
        append(&wal, 1..11);
        drop(wal);
        let seg = segment_path(dir.path(), 1);
        let len = || std::fs::metadata(&seg).unwrap().len();
        assert_eq!(len(), SEGMENT_BYTES, "allocated when created");
        // The zeros after the records are the segment's unwritten rest, not a torn
        // record: nothing is cut, and appends continue where the records end.
        let wal = Wal::open(dir.path(), None).unwrap();
        assert_eq!(wal.last().unwrap().index, 10);
        assert_eq!(len(), SEGMENT_BYTES, "kept whole on reopening");
        append(&wal, 11..21);
        drop(wal);
        let wal = Wal::open(dir.path(), None).unwrap();
        assert_eq!(ids(&wal.read(0, 100).unwrap()), (1..21).collect::<Vec<_>>());
    }

    #[test]
    fn a_damaged_record_before_good_ones_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), None).unwrap();
        append(&wal, 1..4);
        drop(wal);
        let seg = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[HEADER + 3] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        // Cutting here would silently drop acknowledged entries 1 to 3.
        let e = Wal::open(dir.path(), None).err().expect("refused");
        assert!(e.to_string().contains("damaged record at byte 0"), "{e}");
    }

    #[test]
    fn truncate_and_purge_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), None).unwrap();
        append(&wal, 1..100);
        wal.lock().start_segment(100).unwrap();
        append(&wal, 100..200);
        wal.lock().start_segment(200).unwrap();
        append(&wal, 200..300);
        let file_len = |first: u64| {
            std::fs::metadata(segment_path(dir.path(), first))
                .unwrap()
                .len()
        };
        let records_len =
            |first: u64| scan_records(&std::fs::read(segment_path(dir.path(), first)).unwrap()).1;
        // Finished segments are cut back to their records; the active one is whole.
        assert_eq!(file_len(1), records_len(1));
        assert_eq!(file_len(100), records_len(100));
        assert_eq!(file_len(200), SEGMENT_BYTES);
        // What a snapshot at an index would leave to replay: every byte after it.
        assert_eq!(
            wal.bytes_after(0),
            records_len(1) + records_len(100) + records_len(200)
        );
        assert_eq!(wal.bytes_after(99), records_len(100) + records_len(200));
        assert_eq!(wal.bytes_after(199), records_len(200));
        assert!(wal.bytes_after(150) < wal.bytes_after(149));
        assert_eq!(wal.bytes_after(299), 0);
        assert_eq!(wal.bytes_after(u64::MAX), 0);
        // A conflicting suffix from 150 on, replaced.
        wal.truncate(150).unwrap();
        assert_eq!(wal.last().unwrap().index, 149);
        append(&wal, 150..160);
        // Purging to 120 deletes the first segment only.
        wal.purge(120).unwrap();
        assert!(!segment_path(dir.path(), 1).exists());
        assert!(segment_path(dir.path(), 100).exists());
        assert!(!segment_path(dir.path(), 200).exists());
        drop(wal);
        let wal = Wal::open(dir.path(), Some(120)).unwrap();
        assert_eq!(
            ids(&wal.read(0, 1000).unwrap()),
            (121..160).collect::<Vec<_>>()
        );
        // A purge past the end (snapshot install), then the log continues after it.
        wal.purge(500).unwrap();
        assert!(wal.last().is_none());
        append(&wal, 501..505);
        drop(wal);
        let wal = Wal::open(dir.path(), Some(500)).unwrap();
        assert_eq!(
            ids(&wal.read(0, 1000).unwrap()),
            (501..505).collect::<Vec<_>>()
        );
    }

    trait RequestId {
        fn payload_request_id(&self) -> String;
    }
    impl RequestId for Entry {
        fn payload_request_id(&self) -> String {
            match &self.payload {
                EntryPayload::Normal(e) => e.request_id.clone(),
                _ => String::new(),
            }
        }
    }
}
