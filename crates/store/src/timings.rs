//! How long this node's durable steps take, as Prometheus histograms the node
//! serves on /metrics (it registers them; the store only observes).
//!
//! A write's path through a node is its raft log sync, then, once a quorum has
//! it, the apply to the state machine. These two, beside the node's proposal
//! and AppendEntries round-trip histograms, split a slow write into disk, state
//! machine and replication without a profiler, as etcd's
//! `disk_wal_fsync_duration_seconds` and `disk_backend_commit_duration_seconds`
//! do for its operators.

use prometheus::core::Collector;
use prometheus::{exponential_buckets, Histogram, HistogramOpts};

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    // Fixed names and bucket layouts: valid by construction.
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric")
}

/// 100 µs to 1.6 s, doubling: from a sync on a fast SSD to a stalled disk. The
/// node's proposal and AppendEntries histograms use the same, so their buckets
/// line up with these.
pub fn duration_buckets() -> Vec<f64> {
    exponential_buckets(0.0001, 2.0, 15).expect("valid buckets")
}

#[derive(Clone)]
pub struct Timings {
    /// Each `fdatasync` of the raft log (one per group of appends).
    pub log_sync: Histogram,
    /// Each batch of committed entries applied to the state machine and written.
    pub apply: Histogram,
    /// The entries in each such batch.
    pub apply_entries: Histogram,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            log_sync: histogram(
                "log_sync_duration_seconds",
                "Raft log fdatasync time, one per group of appended entries",
                duration_buckets(),
            ),
            apply: histogram(
                "apply_batch_duration_seconds",
                "Time to apply a batch of committed entries to the state machine and write it",
                duration_buckets(),
            ),
            apply_entries: histogram(
                "apply_batch_entries",
                "Committed entries per applied batch",
                exponential_buckets(1.0, 2.0, 10).expect("valid buckets"),
            ),
        }
    }
}

impl Timings {
    /// The histograms, for the node's registry.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.log_sync.clone()),
            Box::new(self.apply.clone()),
            Box::new(self.apply_entries.clone()),
        ]
    }
}
