//! The state machine's keyspaces, and which key lives in which.
//!
//! Most of the state is in `sm`. Keys written in the order of revisions — the
//! events Watch replays, the audit trail, the cases — have keyspaces of their own.
//! There each table a memtable flushes holds keys above those of the tables before
//! it, so fjall's compaction moves it down a level without rewriting it; in `sm`
//! the same bytes overlapped every older table and were merged again at each
//! level. `bench --apply`: fjall's own threads 17–18 → about 10 µs of CPU per
//! write (docs/performance.md, "Keys in revision order, in keyspaces of their own").
//!
//! The split is invisible outside the store: a snapshot is one key-ordered dump of
//! all the keyspaces, the same file as before the split, so snapshots of older
//! versions install here and the other way round; a data directory of an older
//! version has its keys moved over when it is opened ([`StateKeyspaces::move_over`]).

use std::ops::Bound;
use std::sync::Arc;

use fjall::compaction::Leveled;
use fjall::config::CompressionPolicy;
use fjall::{Keyspace, KeyspaceCreateOptions};

/// Keys under these prefixes live in the keyspace named beside them. The prefixes
/// end in `/`, so no key matches two of them and none is a prefix of another
/// kind's (`s/case/` is not `s/casedue/`).
const ROUTES: [(&[u8], &str); 3] = [
    (b"e/", "events"),
    (b"s/audit/", "audit"),
    (b"s/case/", "cases"),
];

/// Flushed tables a state keyspace gathers before merging them into the next level.
const L0_TABLES: u8 = 12;

/// Keys moved per batch when an older data directory is opened.
const MOVE_BATCH: usize = 4096;

pub(crate) struct StateKeyspaces {
    /// Everything no route takes, and the state machine's own pointers (`m/`).
    pub main: Keyspace,
    /// The keyspaces of [`ROUTES`], in its order.
    routed: [Keyspace; ROUTES.len()],
}

impl StateKeyspaces {
    pub fn open(db: &fjall::Database, memtable_bytes: u64) -> fjall::Result<Self> {
        // LZ4 from the first flush (fjall leaves its first two levels plain). The
        // records are JSON and shrink about threefold, and on this project's VMs
        // writing a page cache page the guest has not touched yet costs a host
        // fault: flushing plain tables was 12 % of a loaded cluster's CPU, LZ4 costs
        // 1 %. fjall stores a keyspace's policy when it creates it, so a data
        // directory of an earlier version keeps the old one.
        //
        // Twelve flushed tables gathered before they are merged into the first
        // level, not fjall's four. `sm`'s keys (request ids, deadlines) and the
        // events' pruning tombstones span their whole key range, so each merge
        // rewrites the whole first level: three times fewer merges, 10–16 % less of
        // a node's CPU per write (`bench --apply`, 200,000 writes). fjall slows
        // writes at 20 tables and halts them at 30, which leaves room for a slow
        // merge. Stored, like the compression, when a keyspace is created.
        //
        // Every table's block index in partitions, read through the block cache,
        // with only their small top level kept in memory. fjall partitions only
        // from the fourth level and keeps a first- or second-level table's whole
        // index in memory for the table's life — moved down a level, it keeps it.
        // In the keyspaces written in revision order tables are moved, not
        // rewritten, so the held indexes grew with the state: 22 MB of a node's
        // 107 MB of heap at 1 M records (heaptrack; docs/performance.md, "Memory
        // at 1 M records"). Also stored at creation.
        let options = |memtable: u64| {
            move || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(memtable)
                    .data_block_compression_policy(CompressionPolicy::all(
                        fjall::CompressionType::Lz4,
                    ))
                    .index_block_partitioning_policy(fjall::config::PartitioningPolicy::all(true))
                    .compaction_strategy(Arc::new(Leveled::default().with_l0_threshold(L0_TABLES)))
            }
        };
        let main = db.keyspace("sm", options(memtable_bytes))?;
        // A quarter of the memtable: flushed tables here are moved, not merged, so
        // smaller ones cost little, and each keyspace holds a memtable of its own
        // in memory (docs/performance.md, "Memory at 1 M records").
        let quarter = options((memtable_bytes / 4).max(1 << 20));
        let [a, b, c] = ROUTES.map(|(_, name)| name);
        Ok(StateKeyspaces {
            main,
            routed: [
                db.keyspace(a, quarter)?,
                db.keyspace(b, quarter)?,
                db.keyspace(c, quarter)?,
            ],
        })
    }

    /// The keyspace that holds `key` (a full key of the state machine: `s/…`, `e/…`, `m/…`).
    /// A scan of a prefix goes to the keyspace of that prefix: no scan spans two,
    /// because the domain scans whole kinds (`case/`, `audit/`), never part of a name.
    pub fn for_key(&self, key: &[u8]) -> &Keyspace {
        match Self::index_of(key) {
            0 => &self.main,
            i => &self.routed[i - 1],
        }
    }

    /// Where the keyspace of `key` is in [`Self::all`].
    pub fn index_of(key: &[u8]) -> usize {
        ROUTES
            .iter()
            .position(|(prefix, _)| key.starts_with(prefix))
            .map_or(0, |i| i + 1)
    }

    pub fn events(&self) -> &Keyspace {
        &self.routed[0]
    }

    /// Every keyspace of the state machine: `main` first, then those of [`ROUTES`].
    pub fn all(&self) -> impl Iterator<Item = &Keyspace> {
        std::iter::once(&self.main).chain(self.routed.iter())
    }

    /// Every key and value of the state machine as of `snapshot`, in key order:
    /// the keyspaces' ordered streams merged.
    ///
    /// The streams do not keep `snapshot` open, only the memtables and tables they
    /// read (a table compacted away meanwhile stays on disk until its last reader
    /// is dropped). fjall keeps every version of a keyspace, and the memtable each
    /// one held, for as long as any snapshot older than it is open, and its own
    /// iterators hold their snapshot: a dump running under load held every memtable
    /// written meanwhile, and a follower's heap climbed by about 150 MB during each
    /// build at 300,000 records (docs/performance.md, "Memory at 1 M records").
    pub fn dump(
        &self,
        snapshot: &fjall::Snapshot,
    ) -> impl Iterator<Item = std::io::Result<(fjall::Slice, fjall::Slice)>> + Send + 'static {
        use lsm_tree::Guard as _;
        let seqno = snapshot.seqno();
        let streams = self.all().map(|ks| {
            fjall::AbstractTree::iter(&ks.tree, seqno, None)
                .map(|kv| kv.into_inner().map_err(crate::io_err))
        });
        merge(streams.collect())
    }

    /// Moves keys a version before the split kept in `main` into their keyspaces,
    /// in batches that each move atomically (an interrupted move resumes on the next
    /// open). Returns how many were moved.
    pub fn move_over(&self, db: &fjall::Database) -> fjall::Result<u64> {
        let mut moved = 0;
        for (i, (prefix, _)) in ROUTES.iter().enumerate() {
            let (_, end) = fjall::util::prefix_to_range(prefix);
            loop {
                let range = (Bound::Included(fjall::Slice::from(*prefix)), end.clone());
                let mut batch = db.batch();
                let mut n = 0;
                for kv in self.main.range::<fjall::Slice, _>(range).take(MOVE_BATCH) {
                    let (k, v) = kv.into_inner()?;
                    batch.insert(&self.routed[i], k.clone(), v);
                    batch.remove(&self.main, k);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                batch.commit()?;
                moved += n;
            }
        }
        if moved > 0 {
            db.persist(fjall::PersistMode::SyncAll)?;
        }
        Ok(moved)
    }
}

/// The next item of a stream, read ahead.
type Head<K, V> = Option<std::io::Result<(K, V)>>;

/// Merges streams that are each in key order into one in key order. An error
/// comes out as soon as a stream meets it (the consumer stops there).
pub(crate) fn merge<K: Ord, V, I>(streams: Vec<I>) -> impl Iterator<Item = std::io::Result<(K, V)>>
where
    I: Iterator<Item = std::io::Result<(K, V)>>,
{
    let mut heads: Vec<(Head<K, V>, I)> = streams.into_iter().map(|mut s| (s.next(), s)).collect();
    std::iter::from_fn(move || {
        let mut pick: Option<usize> = None;
        for (i, (head, _)) in heads.iter().enumerate() {
            match head {
                None => {}
                Some(Err(_)) => {
                    pick = Some(i);
                    break;
                }
                Some(Ok((k, _))) => {
                    let lower = match pick.map(|p| &heads[p].0) {
                        Some(Some(Ok((least, _)))) => k < least,
                        _ => true,
                    };
                    if lower {
                        pick = Some(i);
                    }
                }
            }
        }
        let (head, stream) = &mut heads[pick?];
        let next = stream.next();
        std::mem::replace(head, next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(keys: &[&str]) -> std::vec::IntoIter<std::io::Result<(String, ())>> {
        keys.iter()
            .map(|k| Ok((k.to_string(), ())))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn merged_streams_come_out_in_key_order_and_stop_at_an_error() {
        let merged: Vec<String> = merge(vec![
            ok(&["e/1", "e/2"]),
            ok(&["m/a", "s/dept/X", "s/zz"]),
            ok(&[]),
            ok(&["s/audit/1", "s/audit/2"]),
        ])
        .map(|kv| kv.map(|(k, _)| k))
        .collect::<std::io::Result<_>>()
        .unwrap();
        assert_eq!(
            merged,
            [
                "e/1",
                "e/2",
                "m/a",
                "s/audit/1",
                "s/audit/2",
                "s/dept/X",
                "s/zz"
            ]
        );

        let failing = vec![
            Ok(("a".to_string(), ())),
            Err(std::io::Error::other("disk")),
        ]
        .into_iter();
        let out: Vec<_> = merge(vec![ok(&["b", "c"]), failing]).collect();
        assert_eq!(out[0].as_ref().unwrap().0, "a");
        assert!(out[1].is_err(), "the error comes before the keys after it");
    }

    #[test]
    fn every_keyspace_writes_its_tables_compressed_from_the_first_flush() {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = StateKeyspaces::open(&db, 4 << 20).unwrap();
        // Records as the state machine writes them: JSON whose field names repeat.
        let record = |i: usize| {
            format!(
                r#"{{"id":"case-{i}-1","handoff":"case-{i}","from":"SAMR","to":"TRANS","spec":{{"entity":"91110000{i:010}","summary":"storage of goods outside the licensed premises, number {i}","legal_basis":"Regulation art. {}"}},"status":"pushed","due_ms":{},"steps":[{{"action":"push","by":"SAMR","at_ms":{},"revision":{i}}}]}}"#,
                i % 97,
                1_700_000_000_000u64 + i as u64 * 7919,
                1_700_000_000_000u64 + i as u64 * 31,
            )
        };
        for (n, target) in ks.all().enumerate() {
            let mut raw = 0;
            for i in 0..4_000 {
                let (k, v) = (format!("{n}/{i:08}"), record(i));
                raw += k.len() + v.len();
                target.insert(k, v).unwrap();
            }
            target.rotate_memtable_and_wait().unwrap();
            assert!(target.table_count() > 0, "keyspace {n} flushed");
            let on_disk = target.disk_space() as usize;
            assert!(
                on_disk < raw / 2,
                "keyspace {n}: {on_disk} bytes on disk for {raw} bytes written"
            );
        }
    }

    /// What a keyspace keeps in memory of its tables' indexes does not grow with
    /// the tables: in a keyspace written in revision order flushed tables are
    /// moved down, not rewritten, and each used to keep its whole index.
    #[test]
    fn tables_keep_only_the_top_of_their_index_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = StateKeyspaces::open(&db, 2 << 20).unwrap();
        let cases = ks.for_key(b"s/case/");
        let mut written = 0;
        for i in 0..60_000u32 {
            let (k, v) = (format!("s/case/{i:010}"), format!("{i:0800}"));
            written += k.len() + v.len();
            cases.insert(k, v).unwrap();
        }
        cases.rotate_memtable_and_wait().unwrap();
        let pinned = fjall::AbstractTree::pinned_block_index_size(&cases.tree);
        assert!(cases.table_count() > 10, "{} tables", cases.table_count());
        // About 12,000 data blocks: whole indexes would be 300-400 KB.
        assert!(
            pinned < 16 << 10,
            "{pinned} bytes of index held in memory for {written} bytes in {} tables",
            cases.table_count()
        );
    }

    /// A snapshot build reads the state as of its start for as long as it takes,
    /// while writes go on, memtables are flushed and tables are merged away; and
    /// it does not keep what those writes put in memory.
    #[test]
    fn a_dump_reads_the_state_at_its_start_and_holds_no_memtable_written_after() {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = StateKeyspaces::open(&db, 1 << 20).unwrap();
        let key = |i: usize| match i % 4 {
            0 => format!("s/dept/{i:06}"),
            1 => format!("e/{i:06}"),
            2 => format!("s/audit/{i:06}"),
            _ => format!("s/case/{i:06}"),
        };
        let write = |round: usize, range: std::ops::Range<usize>| {
            for i in range {
                let k = key(i);
                ks.for_key(k.as_bytes())
                    .insert(k, format!("{round}:{}", "x".repeat(200)))
                    .unwrap();
            }
        };
        write(0, 0..2_000);
        for k in ks.all() {
            k.rotate_memtable_and_wait().unwrap();
        }
        write(1, 0..1_000); // some of the state still in memtables
        let expected: Vec<(String, String)> = (0..2_000)
            .map(|i| (key(i), if i < 1_000 { "1:" } else { "0:" }.to_string()))
            .collect();

        let dump = ks.dump(&db.snapshot());

        // What comes after: every key overwritten or removed, new ones, memtables
        // flushed round after round, and every table merged into new ones.
        for round in 2..12 {
            write(round, 0..2_000);
            for i in (0..2_000).step_by(7) {
                let k = key(i);
                ks.for_key(k.as_bytes()).remove(k).unwrap();
            }
            write(round, 2_000..2_100);
            for k in ks.all() {
                k.rotate_memtable_and_wait().unwrap();
            }
        }
        for k in ks.all() {
            k.major_compact().unwrap();
            // fjall keeps a keyspace's versions (each with the memtable it held)
            // back to the oldest open snapshot's: with the dump holding one, that
            // was every version of the ten rounds above.
            assert!(
                fjall::AbstractTree::version_free_list_len(&k.tree) <= 2,
                "{}: {} old versions kept",
                k.name(),
                fjall::AbstractTree::version_free_list_len(&k.tree)
            );
        }

        let mut got: Vec<(String, String)> = dump
            .map(|kv| {
                let (k, v) = kv.unwrap();
                let v = String::from_utf8(v.to_vec()).unwrap();
                (String::from_utf8(k.to_vec()).unwrap(), v[..2].to_string())
            })
            .collect();
        got.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the dump is the state at its start");
    }

    #[test]
    fn each_kind_of_key_has_one_keyspace_and_older_directories_are_moved_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = StateKeyspaces::open(&db, 4 << 20).unwrap();
        let name = |k: &[u8]| {
            let target = ks.for_key(k);
            if std::ptr::eq(target, &ks.main) {
                "sm"
            } else {
                ROUTES[ks
                    .routed
                    .iter()
                    .position(|r| std::ptr::eq(r, target))
                    .unwrap()]
                .1
            }
        };
        assert_eq!(name(b"e/\0\0\0\0\0\0\0\x07"), "events");
        assert_eq!(name(b"s/audit/00000000000000000007"), "audit");
        assert_eq!(name(b"s/case/case-7-1"), "cases");
        assert_eq!(name(b"s/casedue/0001/case-7-1"), "sm");
        assert_eq!(name(b"s/caseaw/TRANS/case-7-1"), "sm");
        assert_eq!(name(b"s/dept/SAMR"), "sm");
        assert_eq!(name(b"m/last_applied"), "sm");

        // A directory of a version before the split: everything in `sm`.
        let keys: Vec<&[u8]> = vec![
            b"e/1",
            b"e/2",
            b"m/last_applied",
            b"s/audit/1",
            b"s/case/case-1-1",
            b"s/casedue/1",
            b"s/dept/SAMR",
        ];
        for (i, k) in keys.iter().enumerate() {
            ks.main.insert(*k, format!("v{i}")).unwrap();
        }
        assert_eq!(ks.move_over(&db).unwrap(), 4);
        assert_eq!(ks.move_over(&db).unwrap(), 0, "nothing left to move");
        for (i, k) in keys.iter().enumerate() {
            let target = ks.for_key(k);
            assert_eq!(
                target.get(k).unwrap().as_deref(),
                Some(format!("v{i}").as_bytes()),
                "{}",
                String::from_utf8_lossy(k)
            );
            for other in ks.all().filter(|o| !std::ptr::eq(*o, target)) {
                assert!(other.get(k).unwrap().is_none(), "one copy only");
            }
        }
        let dumped: Vec<Vec<u8>> = ks
            .dump(&db.snapshot())
            .map(|kv| kv.unwrap().0.to_vec())
            .collect();
        assert_eq!(
            dumped,
            keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>(),
            "one dump, in key order"
        );
    }
}
