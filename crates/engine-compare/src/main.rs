//! What the state machine's storage costs per `PushCase`, in sled as Concord
//! configures it and in fjall (an LSM tree): the keys and value sizes one applied
//! `PushCase` writes (read off a `concord bench` snapshot), in apply batches of
//! `batch` writes, with the reads an apply does (the request-id record, the
//! department registry, the deadline policy). Durability stays with the raft log,
//! so neither engine syncs per batch. Prints CPU (all threads) and bytes written
//! to disk per write; docs/performance.md carries the figures.
//!
//! `engine-compare <sled|fjall> <writes> [batch]`
use std::time::Instant;

type Error = Box<dyn std::error::Error>;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds of the whole process: background threads (sled's flusher, fjall's
/// compactions) count.
fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// The number after `field` in a `/proc/self/<file>` of "name: value" lines.
fn proc_field(file: &str, field: &str) -> Result<u64, Error> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}"))?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| format!("no {field} in /proc/self/{file}"))?;
    Ok(value.parse()?)
}

fn io_write_bytes() -> Result<u64, Error> {
    proc_field("io", "write_bytes")
}

fn rss_mb() -> Result<u64, Error> {
    Ok(proc_field("status", "VmRSS")? / 1024)
}

fn val(n: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b"{\"abcdefghijklmnop:,0123456789\"}"[(x % 32) as usize]);
    }
    v
}

/// The keys one PushCase at `rev` writes (sizes from a bench snapshot), and the
/// event it evicts once 10,000 are kept.
fn ops(rev: u64) -> (Vec<(Vec<u8>, Vec<u8>)>, Vec<Vec<u8>>) {
    let depts = ["SAMR", "TRANS", "JUST"];
    let d = depts[(rev % 3) as usize];
    let to = depts[((rev + 1) % 3) as usize];
    let ts = 1_796_000_000_000u64 + rev * 7;
    let case = format!("case-{rev}-1");
    let puts = vec![
        (format!("s/case/{case}").into_bytes(), val(790, rev)),
        (format!("s/caseaw/{to}/{case}").into_bytes(), b"1".to_vec()),
        (
            format!("s/casedue/{:020}/{case}", ts + 86_400_000).into_bytes(),
            b"1".to_vec(),
        ),
        (
            format!("s/caserem/{:020}/{case}", ts + 3_600_000).into_bytes(),
            b"1".to_vec(),
        ),
        (
            format!("s/dedup/{d}/bench-12320-{}-{}", rev % 64, rev / 64).into_bytes(),
            val(970, rev + 1),
        ),
        (
            format!(
                "s/dedupt/{:020}/{d}/bench-12320-{}-{}",
                ts,
                rev % 64,
                rev / 64
            )
            .into_bytes(),
            b"1".to_vec(),
        ),
        (format!("s/audit/{rev:020}").into_bytes(), val(390, rev + 2)),
        (b"s/meta/audit_head".to_vec(), val(100, rev + 3)),
        (
            [b"e/".as_slice(), &rev.to_be_bytes(), &0u32.to_be_bytes()].concat(),
            val(958, rev + 4),
        ),
    ];
    let mut dels = vec![];
    if rev > 10_000 {
        dels.push(
            [
                b"e/".as_slice(),
                &(rev - 10_000).to_be_bytes(),
                &0u32.to_be_bytes(),
            ]
            .concat(),
        );
    }
    (puts, dels)
}

/// Twenty departments and the deadline policy, as a seeded cluster holds them.
fn registry() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = (0..20)
        .map(|i| (format!("s/dept/D{i:02}").into_bytes(), val(600, 1000 + i)))
        .collect();
    out.push((b"s/meta/policy".to_vec(), val(300, 7)));
    out
}

/// What an apply reads besides the registry scan: the request id (a miss, as for
/// every new request), two departments and the policy.
fn reads_of(rev: u64) -> [String; 4] {
    [
        format!("s/dedup/SAMR/bench-x-{rev}"),
        "s/dept/D03".into(),
        "s/dept/D07".into(),
        "s/meta/policy".into(),
    ]
}

/// The four things an apply asks of the engine.
trait Engine {
    fn found(&self, key: &[u8]) -> Result<bool, Error>;
    fn count_prefix(&self, prefix: &[u8]) -> usize;
    /// One atomic batch: `Some` inserts, `None` removes.
    fn commit(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), Error>;
    /// Everything written reaches the disk (once, at the end: not timed per batch).
    fn finish(&self) -> Result<(), Error>;
}

struct Sled(sled::Db, sled::Tree);

impl Sled {
    /// As `concord_store::open` configures it.
    fn open(dir: &std::path::Path) -> Result<Self, Error> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .flush_every_ms(Some(1000))
            .open()?;
        let tree = db.open_tree("sm")?;
        Ok(Sled(db, tree))
    }
}

impl Engine for Sled {
    fn found(&self, key: &[u8]) -> Result<bool, Error> {
        Ok(self.1.get(key)?.is_some())
    }
    fn count_prefix(&self, prefix: &[u8]) -> usize {
        self.1.scan_prefix(prefix).count()
    }
    fn commit(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), Error> {
        let mut b = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        Ok(self.1.apply_batch(b)?)
    }
    fn finish(&self) -> Result<(), Error> {
        self.0.flush()?;
        Ok(())
    }
}

struct Fjall(fjall::Database, fjall::Keyspace);

impl Fjall {
    fn open(dir: &std::path::Path) -> Result<Self, Error> {
        let db = fjall::Database::builder(dir).cache_size(64 << 20).open()?;
        let keyspace = db.keyspace("sm", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall(db, keyspace))
    }
}

impl Engine for Fjall {
    fn found(&self, key: &[u8]) -> Result<bool, Error> {
        Ok(self.1.get(key)?.is_some())
    }
    fn count_prefix(&self, prefix: &[u8]) -> usize {
        self.1.prefix(prefix).count()
    }
    fn commit(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), Error> {
        let mut b = self.0.batch();
        for (k, v) in writes {
            match v {
                Some(v) => b.insert(&self.1, k, v),
                None => b.remove(&self.1, k),
            }
        }
        Ok(b.commit()?)
    }
    fn finish(&self) -> Result<(), Error> {
        Ok(self.0.persist(fjall::PersistMode::SyncAll)?)
    }
}

/// Seeds the registry, then applies `n` writes in batches of `batch`; returns how
/// many reads found their key.
fn run(engine: &dyn Engine, n: u64, batch: u64) -> Result<u64, Error> {
    engine.commit(registry().into_iter().map(|(k, v)| (k, Some(v))).collect())?;
    let mut reads = 0u64;
    let mut rev = 1;
    while rev <= n {
        let mut writes = vec![];
        for r in rev..(rev + batch).min(n + 1) {
            for k in reads_of(r) {
                reads += u64::from(engine.found(k.as_bytes())?);
            }
            reads += engine.count_prefix(b"s/dept/") as u64;
            let (puts, dels) = ops(r);
            writes.extend(puts.into_iter().map(|(k, v)| (k, Some(v))));
            writes.extend(dels.into_iter().map(|k| (k, None)));
        }
        writes.push((b"m/last_applied".to_vec(), Some(val(60, rev))));
        engine.commit(writes)?;
        rev += batch;
    }
    engine.finish()?;
    Ok(reads)
}

const USAGE: &str = "usage: engine-compare <sled|fjall> <writes> [batch, default 8]";

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(engine), Some(n)) = (args.get(1), args.get(2)) else {
        return Err(USAGE.into());
    };
    let n: u64 = n.parse().map_err(|e| format!("writes: {e}; {USAGE}"))?;
    let batch: u64 = match args.get(3) {
        Some(b) => b.parse().map_err(|e| format!("batch: {e}; {USAGE}"))?,
        None => 8,
    };
    if n == 0 || batch == 0 {
        return Err(format!("writes and batch must be positive; {USAGE}").into());
    }
    let dir = std::path::PathBuf::from(format!("/tmp/engines-data/{engine}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let engine_box: Box<dyn Engine> = match engine.as_str() {
        "sled" => Box::new(Sled::open(&dir)?),
        "fjall" => Box::new(Fjall::open(&dir)?),
        other => return Err(format!("unknown engine {other:?}; {USAGE}").into()),
    };
    let (c0, w0, t0) = (cpu_s(), io_write_bytes()?, Instant::now());
    let reads = run(engine_box.as_ref(), n, batch)?;
    let (c1, w1, t1) = (cpu_s(), io_write_bytes()?, t0.elapsed().as_secs_f64());
    let size = walk(&dir)?;
    println!(
        "{engine:6} writes {n} batch {batch}: cpu {:.1} us/write, wall {:.1} us/write, disk written {:.1} KB/write, dir {} MB, rss {} MB ({reads} reads found)",
        (c1 - c0) * 1e6 / n as f64,
        t1 * 1e6 / n as f64,
        (w1 - w0) as f64 / 1024.0 / n as f64,
        size >> 20,
        rss_mb()?
    );
    Ok(())
}

fn walk(p: &std::path::Path) -> std::io::Result<u64> {
    let mut s = 0;
    for e in std::fs::read_dir(p)? {
        let e = e?;
        let m = e.metadata()?;
        s += if m.is_dir() {
            walk(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(s)
}
