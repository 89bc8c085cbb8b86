//! A consistent cut of the `sm` tree taken while applies go on.
//!
//! A snapshot used to be dumped under the apply lock, so every write waited for the
//! whole dump — seconds to tens of seconds once the state holds a million cases.
//! Now the dump walks the tree in key order, a chunk at a time, and an apply first
//! saves the current value of each key it is about to change that the dump has not
//! reached yet; the dump emits those saved values instead of what it finds. So the
//! dump is exactly the state at the moment the cut began, and a write waits at most
//! for one chunk.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

/// Keys read from the tree per step of the dump.
const CHUNK: usize = 1024;

/// The cut in progress, if any (at most one: snapshot builds are serialised).
#[derive(Default)]
pub(crate) struct Cuts {
    active: Arc<Mutex<Option<CutState>>>,
}

struct CutState {
    /// The last key the dump has read (None: none yet).
    cursor: Option<Vec<u8>>,
    /// The whole tree has been read: later writes need no saving.
    finished: bool,
    /// The value at the cut (None: absent) of keys changed since and not yet read.
    saved: BTreeMap<Vec<u8>, Option<sled::IVec>>,
}

impl CutState {
    fn not_yet_read(&self, key: &[u8]) -> bool {
        !self.finished && self.cursor.as_deref().is_none_or(|c| key > c)
    }
}

fn lock(m: &Mutex<Option<CutState>>) -> MutexGuard<'_, Option<CutState>> {
    // The state is a plain map; a panic elsewhere cannot leave it half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cuts {
    /// Begins a cut of `tree` as it is now. The caller holds the apply lock, so no
    /// apply is between saving and writing. The cut ends when the returned dump is
    /// dropped.
    pub fn begin(&self, tree: sled::Tree) -> Dump {
        *lock(&self.active) = Some(CutState {
            cursor: None,
            finished: false,
            saved: BTreeMap::new(),
        });
        Dump {
            active: self.active.clone(),
            tree,
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// Called by an apply before it writes `keys` to `tree`.
    pub fn before_write<'k>(
        &self,
        tree: &sled::Tree,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> sled::Result<()> {
        let mut active = lock(&self.active);
        let Some(cut) = active.as_mut() else {
            return Ok(());
        };
        for key in keys {
            if cut.not_yet_read(key) && !cut.saved.contains_key(key) {
                let old = tree.get(key)?;
                cut.saved.insert(key.to_vec(), old);
            }
        }
        Ok(())
    }
}

/// The entries of the tree at the cut, in key order.
pub(crate) struct Dump {
    active: Arc<Mutex<Option<CutState>>>,
    tree: sled::Tree,
    pending: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl Dump {
    /// Reads the next chunk of keys, with the values they had at the cut.
    ///
    /// The tree is read without the lock, so applies never wait for the read. That
    /// is safe: the cursor has not moved yet, so any key of the chunk an apply
    /// changes meanwhile has its value at the cut saved first, and the saved
    /// value wins below whatever the read saw.
    fn next_chunk(&mut self) -> std::io::Result<()> {
        let lower = {
            let active = lock(&self.active);
            let cut = active
                .as_ref()
                .ok_or_else(|| std::io::Error::other("snapshot cut ended early"))?;
            match &cut.cursor {
                None => Bound::Unbounded,
                Some(c) => Bound::Excluded(c.clone()),
            }
        };
        let mut read = Vec::with_capacity(CHUNK);
        for kv in self
            .tree
            .range::<Vec<u8>, _>((lower.clone(), Bound::Unbounded))
            .take(CHUNK)
        {
            let (k, v) = kv.map_err(crate::io_err)?;
            read.push((k.to_vec(), v.to_vec()));
        }
        let mut active = lock(&self.active);
        let cut = active
            .as_mut()
            .ok_or_else(|| std::io::Error::other("snapshot cut ended early"))?;
        let last_read = read.last().map(|(k, _)| k.clone());
        let upper = match &last_read {
            Some(last) if read.len() == CHUNK => Bound::Included(last.clone()),
            _ => {
                cut.finished = true;
                Bound::Unbounded
            }
        };
        // Keys changed since the cut: their saved value wins, absent ones included
        // (written since: skipped; removed since: still emitted). Both lists are
        // in key order; they are merged.
        let saved: Vec<Vec<u8>> = cut
            .saved
            .range::<Vec<u8>, _>((lower, upper))
            .map(|(k, _)| k.clone())
            .collect();
        let mut saved = saved
            .into_iter()
            .filter_map(|k| cut.saved.remove(&k).map(|v| (k, v)))
            .peekable();
        let mut read = read.into_iter().peekable();
        loop {
            let from_saved = match (read.peek(), saved.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((r, _)), Some((s, _))) => s <= r,
            };
            if from_saved {
                if let Some((k, v)) = saved.next() {
                    if read.peek().is_some_and(|(r, _)| *r == k) {
                        read.next();
                    }
                    if let Some(v) = v {
                        self.pending.push_back((k, v.to_vec()));
                    }
                }
            } else if let Some(kv) = read.next() {
                self.pending.push_back(kv);
            }
        }
        if cut.finished {
            self.done = true;
        } else {
            cut.cursor = last_read;
        }
        Ok(())
    }
}

impl Iterator for Dump {
    type Item = std::io::Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.pending.is_empty() && !self.done {
            if let Err(e) = self.next_chunk() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.pending.pop_front().map(Ok)
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        *lock(&self.active) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("sm").unwrap()
    }

    fn write(cuts: &Cuts, tree: &sled::Tree, key: &[u8], value: Option<&[u8]>) {
        cuts.before_write(tree, [key]).unwrap();
        match value {
            Some(v) => tree.insert(key, v).unwrap(),
            None => tree.remove(key).unwrap(),
        };
    }

    fn contents(tree: &sled::Tree) -> Vec<(Vec<u8>, Vec<u8>)> {
        tree.iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    }

    #[test]
    fn the_dump_is_the_state_at_the_cut_whatever_is_written_during_it() {
        let t = tree();
        for i in 0..5000u32 {
            t.insert(format!("k{i:05}"), i.to_be_bytes().to_vec())
                .unwrap();
        }
        let at_cut = contents(&t);
        let cuts = Cuts::default();
        let mut dump = cuts.begin(t.clone());
        let mut got = vec![];
        // The first chunk is read, then keys behind and ahead of the dump change.
        got.push(dump.next().unwrap().unwrap());
        write(&cuts, &t, b"k00000", Some(b"changed behind"));
        write(&cuts, &t, b"k00001", None);
        write(&cuts, &t, b"k04000", Some(b"changed ahead"));
        write(&cuts, &t, b"k04001", None);
        write(&cuts, &t, b"k04001x", Some(b"new ahead"));
        write(&cuts, &t, b"a-new-behind", Some(b"new behind"));
        write(&cuts, &t, b"k04002", None);
        write(&cuts, &t, b"k04002", Some(b"removed then back"));
        write(&cuts, &t, b"zzz", Some(b"new at the end"));
        write(&cuts, &t, b"zzz", None);
        for kv in dump.by_ref() {
            got.push(kv.unwrap());
        }
        assert_eq!(got, at_cut);
        drop(dump);
        // Once the cut ends nothing is saved any more.
        write(&cuts, &t, b"k00002", None);
        assert!(lock(&cuts.active).is_none());
    }

    #[test]
    fn a_dump_racing_a_writer_thread_is_still_the_state_at_the_cut() {
        let t = tree();
        for i in 0..20_000u32 {
            t.insert(format!("k{:05}", i * 3), i.to_be_bytes().to_vec())
                .unwrap();
        }
        let cuts = Arc::new(Cuts::default());
        for round in 0..3u32 {
            let at_cut = contents(&t);
            let dump = cuts.begin(t.clone());
            let writer = {
                let (cuts, t) = (cuts.clone(), t.clone());
                std::thread::spawn(move || {
                    // A fixed pseudo-random walk: inserts, changes and removals
                    // spread over the whole key range, including new keys.
                    let mut x = 0x9e37_79b9u32.wrapping_add(round);
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let key = format!("k{:05}", x % 60_000);
                        let value = (x % 3 != 0).then(|| x.to_be_bytes());
                        write(&cuts, &t, key.as_bytes(), value.as_ref().map(|v| &v[..]));
                    }
                })
            };
            let got: Vec<_> = dump.map(|kv| kv.unwrap()).collect();
            writer.join().unwrap();
            assert_eq!(got, at_cut, "round {round}");
        }
    }
}
