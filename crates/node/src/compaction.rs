//! When a node builds a snapshot and how far it purges the raft log behind it.
//!
//! openraft's own policy builds a snapshot every N entries and purges the log
//! right behind it. At 1 M records that cost two things (docs/performance.md,
//! "Scale"): a 2.4 GB snapshot was rebuilt every ~20,000 writes, about 70 KB of
//! snapshot written per write; and a learner that was sent one snapshot found,
//! once it had installed it, the log it had to resume from purged behind a
//! newer one, and was sent a second. So openraft is told never to do either
//! (`NodeConfig::openraft_config`), and this task, on every node, once a tick:
//! - builds a snapshot when enough log has piled up since the last one: as many
//!   entries as `snapshot_after_entries` *and* as many bytes as
//!   `snapshot_log_percent` of the last snapshot, so the cost of dumping the state
//!   stays in proportion to the writes that have come in since;
//! - purges the log up to `keep_entries_behind_snapshot` behind the snapshot, but
//!   on the leader not past what a follower or learner still making progress will
//!   read next, nor past the snapshot a peer is being sent. A peer that makes no
//!   progress for `lagging_peer_grace_ms`, or would hold more log than the snapshot
//!   (then sending it the snapshot again is the cheaper way), is not waited for: it
//!   gets a snapshot when it is back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_store::NodeId;

use crate::config::RaftTuning;
use crate::core::NodeCore;

/// Where the log and the last snapshot stand on this node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogFacts {
    pub applied: u64,
    /// The last index the current snapshot covers.
    pub snapshot: Option<u64>,
    pub purged: Option<u64>,
    /// Bytes of log after the snapshot's last index.
    pub log_bytes_since_snapshot: u64,
    pub snapshot_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub after_entries: u64,
    pub log_percent: u64,
    pub keep: u64,
    /// A peer is waited for while the log after it is at most the snapshot's
    /// size, or this, whichever is larger.
    pub min_held_bytes: u64,
}

impl Policy {
    pub fn new(t: &RaftTuning) -> Policy {
        Policy {
            after_entries: t.snapshot_after_entries,
            log_percent: t.snapshot_log_percent,
            keep: t.keep_entries_behind_snapshot,
            min_held_bytes: 64 << 20,
        }
    }

    pub fn build_due(&self, f: &LogFacts) -> bool {
        let since = f.applied.saturating_sub(f.snapshot.unwrap_or(0));
        since >= self.after_entries.max(1)
            && f.log_bytes_since_snapshot.saturating_mul(100)
                >= f.snapshot_bytes.saturating_mul(self.log_percent)
    }

    /// How far to purge now, if further than the log is purged already.
    /// `resume_after`: for each peer waited for, the last index it holds (it reads
    /// the log from the next one), or None if it has reported none yet (a learner
    /// just added: the purge stays where it is, for `grace` at most).
    /// `log_bytes_after(i)`: bytes of log after index `i`.
    pub fn purge_upto(
        &self,
        f: &LogFacts,
        resume_after: &[Option<u64>],
        log_bytes_after: impl Fn(u64) -> u64,
    ) -> Option<u64> {
        let behind_snapshot = f.snapshot?.checked_sub(self.keep)?;
        let most = f.snapshot_bytes.max(self.min_held_bytes);
        let held = resume_after
            .iter()
            .filter_map(|at| match at {
                None => Some(f.purged.unwrap_or(0)),
                Some(at) => (log_bytes_after(*at) <= most).then_some(*at),
            })
            .min();
        let upto = held.map_or(behind_snapshot, |at| at.min(behind_snapshot));
        match f.purged {
            Some(p) if upto <= p => None,
            // Index 0 is openraft's placeholder, never an entry worth a purge.
            None if upto == 0 => None,
            _ => Some(upto),
        }
    }
}

/// The leader's view of which peers it still waits for.
#[derive(Default)]
pub struct PeerProgress {
    /// The matched index of each peer and when it last changed.
    progress: HashMap<NodeId, (Option<u64>, Instant)>,
}

impl PeerProgress {
    /// For each peer still waited for, the last index it holds: a peer being sent
    /// a snapshot resumes after the snapshot; a peer whose matched index changed
    /// within `grace` resumes after it; others (down, cut off) are not waited for.
    pub fn resume_after(
        &mut self,
        leader: NodeId,
        matched: &BTreeMap<NodeId, Option<u64>>,
        sending: &[(NodeId, u64)],
        grace: Duration,
        now: Instant,
    ) -> Vec<Option<u64>> {
        self.progress.retain(|id, _| matched.contains_key(id));
        let mut out = vec![];
        for (&id, &m) in matched {
            if id == leader {
                continue;
            }
            let seen = self.progress.entry(id).or_insert((m, now));
            if seen.0 != m {
                *seen = (m, now);
            }
            if let Some((_, last)) = sending.iter().find(|(to, _)| *to == id) {
                out.push(Some(*last));
            } else if now.duration_since(seen.1) < grace {
                out.push(m);
            }
        }
        out
    }
}

/// Runs the policy on this node until it stops.
pub async fn run(core: Arc<NodeCore>) {
    let policy = Policy::new(&core.config.raft);
    let grace = Duration::from_millis(core.config.raft.lagging_peer_grace_ms);
    let tick = Duration::from_millis(core.config.housekeeping.tick_interval_ms);
    let mut peers = PeerProgress::default();
    let mut stopping = core.stopping.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        // Copied out first: a borrow of the metrics blocks openraft's updates.
        let (applied, snapshot, purged, matched) = {
            let m = core.raft.metrics();
            let m = m.borrow();
            let matched: Option<BTreeMap<NodeId, Option<u64>>> = m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect());
            (
                m.last_applied.map_or(0, |l| l.index),
                m.snapshot.map(|l| l.index),
                m.purged.map(|l| l.index),
                matched,
            )
        };
        let facts = LogFacts {
            applied,
            snapshot,
            purged,
            log_bytes_since_snapshot: core.reader.log_bytes_after(snapshot.unwrap_or(0)),
            snapshot_bytes: core.reader.snapshot_bytes(),
        };
        if policy.build_due(&facts) {
            tracing::debug!(?facts, "log compaction: building a snapshot");
            if let Err(e) = core.raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "cannot trigger a snapshot");
            }
        }
        let resume_after = match &matched {
            Some(matched) => peers.resume_after(
                core.id,
                matched,
                &core.snapshot_sends.active(grace),
                grace,
                Instant::now(),
            ),
            None => {
                peers = PeerProgress::default();
                vec![]
            }
        };
        let log_bytes_after = |index| core.reader.log_bytes_after(index);
        if let Some(upto) = policy.purge_upto(&facts, &resume_after, log_bytes_after) {
            tracing::debug!(upto, ?resume_after, "log compaction: purging");
            if let Err(e) = core.raft.trigger().purge_log(upto).await {
                tracing::warn!(error = %e, "cannot purge the log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            after_entries: 1000,
            log_percent: 10,
            keep: 100,
            min_held_bytes: 1 << 20,
        }
    }

    fn facts(applied: u64, snapshot: u64, log_bytes: u64, snapshot_bytes: u64) -> LogFacts {
        LogFacts {
            applied,
            snapshot: Some(snapshot),
            purged: None,
            log_bytes_since_snapshot: log_bytes,
            snapshot_bytes,
        }
    }

    #[test]
    fn a_snapshot_is_built_once_both_entries_and_bytes_have_piled_up() {
        let p = policy();
        // No snapshot yet: entries alone decide.
        let first = LogFacts {
            snapshot: None,
            ..facts(1000, 0, 500_000, 0)
        };
        assert!(p.build_due(&first));
        assert!(!p.build_due(&LogFacts {
            applied: 999,
            ..first
        }));
        // A 1 GB state: 20,000 entries of 700 B are 1.4 % of it, not yet due.
        assert!(!p.build_due(&facts(120_000, 100_000, 14_000_000, 1 << 30)));
        assert!(p.build_due(&facts(260_000, 100_000, 112_000_000, 1 << 30)));
        // Bytes enough but too few entries (a few large writes).
        assert!(!p.build_due(&facts(100_500, 100_000, 1 << 30, 1 << 30)));
    }

    #[test]
    fn the_log_is_purged_behind_the_snapshot_but_not_past_a_peer_that_needs_it() {
        let p = policy();
        // Applied 60,000, a snapshot at 50,000 of 1.5 MB, 100 bytes of log per entry.
        let f = facts(60_000, 50_000, 0, 1_500_000);
        let log = |i: u64| 60_000u64.saturating_sub(i) * 100;
        assert_eq!(p.purge_upto(&f, &[], log), Some(49_900));
        // Already purged that far: nothing to do.
        let done = LogFacts {
            purged: Some(49_900),
            ..f
        };
        assert_eq!(p.purge_upto(&done, &[], log), None);
        // A peer being sent the snapshot of 45,000 resumes at 45,001.
        assert_eq!(
            p.purge_upto(&f, &[Some(59_990), Some(45_000)], log),
            Some(45_000)
        );
        let at_45k = LogFacts {
            purged: Some(45_000),
            ..f
        };
        assert_eq!(p.purge_upto(&at_45k, &[Some(45_000)], log), None);
        // A new learner (nothing matched yet) holds the purge where it is, however
        // far behind that is.
        assert_eq!(p.purge_upto(&f, &[None], log), None);
        assert_eq!(p.purge_upto(&at_45k, &[Some(59_990), None], log), None);
        // A peer that would hold more log than the snapshot (1.5 MB: 15,000
        // entries) is not waited for: the snapshot again is cheaper.
        assert_eq!(p.purge_upto(&f, &[Some(44_999)], log), Some(49_900));
        // Small snapshots: up to `min_held_bytes` (1 MiB, 10,485 entries) is held.
        let small = LogFacts {
            snapshot_bytes: 1000,
            ..f
        };
        assert_eq!(p.purge_upto(&small, &[Some(49_515)], log), Some(49_515));
        assert_eq!(p.purge_upto(&small, &[Some(49_514)], log), Some(49_900));
        // No snapshot, or keep reaching back past the start: nothing to purge.
        let none = LogFacts {
            snapshot: None,
            ..f
        };
        assert_eq!(p.purge_upto(&none, &[], log), None);
        assert_eq!(p.purge_upto(&facts(60, 50, 0, 0), &[], log), None);
    }

    #[test]
    fn a_peer_is_waited_for_while_it_progresses_or_receives_a_snapshot() {
        let grace = Duration::from_secs(30);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(31);
        let mut peers = PeerProgress::default();
        let matched: BTreeMap<NodeId, Option<u64>> =
            [(1, Some(500)), (2, Some(480)), (3, None)].into();
        // Node 1 leads; 2 progresses; 3 is a new learner being sent snapshot 400.
        assert_eq!(
            peers.resume_after(1, &matched, &[(3, 400)], grace, t0),
            vec![Some(480), Some(400)]
        );
        // Not yet sent anything: 3 reports nothing and holds the purge.
        assert_eq!(
            PeerProgress::default().resume_after(1, &matched, &[], grace, t0),
            vec![Some(480), None]
        );
        // 31 s on, 2 has not moved (down): no longer waited for; 3 still receives.
        assert_eq!(
            peers.resume_after(1, &matched, &[(3, 400)], grace, later),
            vec![Some(400)]
        );
        // 2 moves again: waited for from then on. 3's send is over and it stalled.
        let moved: BTreeMap<NodeId, Option<u64>> =
            [(1, Some(900)), (2, Some(890)), (3, None)].into();
        assert_eq!(
            peers.resume_after(1, &moved, &[], grace, later),
            vec![Some(890)]
        );
        // A peer removed from the cluster is forgotten.
        let removed: BTreeMap<NodeId, Option<u64>> = [(1, Some(900))].into();
        assert!(peers
            .resume_after(1, &removed, &[], grace, later)
            .is_empty());
        assert_eq!(peers.progress.len(), 0);
    }
}
