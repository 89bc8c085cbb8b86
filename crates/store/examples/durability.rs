//! Measures the two durable-log designs weighed in docs/architecture.md, with 256-byte
//! entries on this machine's disk:
//!   (a) sled insert + flush + fsync of the data file (what Concord does), and
//!   (b) a dedicated append-only file with fdatasync.
//! Each one-entry-per-sync and batched (one sync per 64 entries, as group commit does).
//!
//! cargo run --release -p concord-store --example durability [entries]

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Instant;

fn report(name: &str, n: usize, per_sync: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name:<28} batch {per_sync:>3}: {:>9.0} entries/s  {:>7.3} ms per sync",
        n as f64 / secs,
        secs * 1000.0 / (n / per_sync) as f64
    );
}

fn main() -> std::io::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let value = vec![7u8; 256];
    let dir = tempfile::tempdir_in(".")?;
    for per_sync in [1, 64] {
        let db = sled::open(dir.path().join(format!("sled-{per_sync}")))?;
        let tree = db.open_tree("log")?;
        let file = dir.path().join(format!("sled-{per_sync}")).join("db");
        let started = Instant::now();
        for i in 0..n {
            tree.insert((i as u64).to_be_bytes(), value.as_slice())?;
            if (i + 1) % per_sync == 0 {
                db.flush()?;
                std::fs::File::open(&file)?.sync_all()?;
            }
        }
        report("(a) sled + flush + fsync", n, per_sync, started);

        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join(format!("log-{per_sync}")))?;
        let started = Instant::now();
        for i in 0..n {
            log.write_all(&(i as u64).to_be_bytes())?;
            log.write_all(&value)?;
            if (i + 1) % per_sync == 0 {
                log.sync_data()?;
            }
        }
        report("(b) append-only + fdatasync", n, per_sync, started);
    }
    Ok(())
}
