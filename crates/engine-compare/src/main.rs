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

fn io_write_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/io").unwrap();
    s.lines()
        .find(|l| l.starts_with("write_bytes"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}
fn rss_mb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine = args[1].as_str();
    let n: u64 = args[2].parse().unwrap();
    let batch: u64 = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(8);
    let dir = std::path::PathBuf::from(format!("/tmp/engines-data/{engine}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (c0, w0, t0) = (cpu_s(), io_write_bytes(), Instant::now());
    let mut reads = 0u64;
    match engine {
        "sled" => {
            let db = sled::Config::new()
                .path(&dir)
                .cache_capacity(64 << 20)
                .flush_every_ms(Some(1000))
                .open()
                .unwrap();
            let t = db.open_tree("sm").unwrap();
            for (k, v) in registry() {
                t.insert(k, v).unwrap();
            }
            let mut rev = 1;
            while rev <= n {
                let mut b = sled::Batch::default();
                for r in rev..(rev + batch).min(n + 1) {
                    // the reads an apply does: request id, departments, policy
                    for k in reads_of(r) {
                        if t.get(k.as_bytes()).unwrap().is_some() {
                            reads += 1;
                        }
                    }
                    reads += t.scan_prefix(b"s/dept/").count() as u64;
                    let (puts, dels) = ops(r);
                    for (k, v) in puts {
                        b.insert(k, v);
                    }
                    for k in dels {
                        b.remove(k);
                    }
                }
                b.insert(b"m/last_applied".as_slice(), val(60, rev));
                t.apply_batch(b).unwrap();
                rev += batch;
            }
            db.flush().unwrap();
        }
        "fjall" => {
            let db = fjall::Database::builder(&dir)
                .cache_size(64 << 20)
                .open()
                .unwrap();
            let t = db
                .keyspace("sm", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            for (k, v) in registry() {
                t.insert(k, v).unwrap();
            }
            let mut rev = 1;
            while rev <= n {
                let mut b = db.batch();
                for r in rev..(rev + batch).min(n + 1) {
                    for k in reads_of(r) {
                        if t.get(k.as_bytes()).unwrap().is_some() {
                            reads += 1;
                        }
                    }
                    reads += t.prefix(b"s/dept/").count() as u64;
                    let (puts, dels) = ops(r);
                    for (k, v) in puts {
                        b.insert(&t, k, v);
                    }
                    for k in dels {
                        b.remove(&t, k);
                    }
                }
                b.insert(&t, b"m/last_applied".as_slice(), val(60, rev));
                b.commit().unwrap();
                rev += batch;
            }
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        _ => panic!("sled or fjall"),
    }
    let (c1, w1, t1) = (cpu_s(), io_write_bytes(), t0.elapsed().as_secs_f64());
    let size: u64 = walk(&dir);
    println!(
        "{engine:6} writes {n} batch {batch}: cpu {:.1} us/write, wall {:.1} us/write, disk written {:.1} KB/write, dir {} MB, rss {} MB ({reads} reads found)",
        (c1 - c0) * 1e6 / n as f64, t1 * 1e6 / n as f64, (w1 - w0) as f64 / 1024.0 / n as f64, size >> 20, rss_mb()
    );
}

fn walk(p: &std::path::Path) -> u64 {
    let mut s = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        s += if m.is_dir() { walk(&e.path()) } else { m.len() };
    }
    s
}
