//! The change feed. A stream replays retained events from its start revision, then
//! follows the applied revision. Its cursor only moves past revisions whose events
//! were all read, so a resumed stream neither skips nor repeats. It carries only
//! what the node's department may see under the data-sharing catalogue, as the
//! catalogue stands when the events are sent.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use concord_domain::event::{Event, RecordKind};
use concord_domain::sharing::Scope;
use concord_domain::validate;
use concord_proto::watch::v1::watch_service_server::WatchService;
use concord_proto::watch::v1::{WatchRequest, WatchResponse};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::core::NodeCore;
use crate::error::NodeError;

const SCAN_LIMIT: usize = 256;

pub struct WatchSvc {
    pub core: Arc<NodeCore>,
}

struct Filter {
    kinds: Vec<RecordKind>,
    department: Option<String>,
}

impl Filter {
    fn matches(&self, e: &Event, scope: &Scope) -> bool {
        scope.can_see_event(e)
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self
                .department
                .as_ref()
                .is_none_or(|d| e.departments.contains(d))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl WatchService for WatchSvc {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = req.into_inner();
        let kinds = r
            .kinds
            .iter()
            .enumerate()
            .map(|(i, k)| convert::record_kind(&format!("kinds[{i}]"), *k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(NodeError::from)?;
        let department = if r.department.is_empty() {
            None
        } else {
            validate::department_code("department", &r.department).map_err(NodeError::from)?;
            Some(r.department.clone())
        };
        let reader = self.core.reader.clone();
        let start = if r.start_revision == 0 {
            reader.applied() + 1
        } else {
            r.start_revision
        };
        // Mid-install the compaction point may be loaded before the events it
        // follows: `follow` decides once the install is over.
        let compacted = reader.without_install(|r| r.compacted_through());
        if let Some(compacted) = compacted.filter(|c| start <= *c) {
            return Err(NodeError::Compacted {
                requested: start,
                oldest: compacted + 1,
            }
            .into());
        }
        let (tx, rx) = mpsc::channel(16);
        let core = self.core.clone();
        let progress = (r.progress_interval_ms > 0)
            .then(|| Duration::from_millis(r.progress_interval_ms as u64));
        tokio::spawn(follow(
            core,
            Filter { kinds, department },
            start,
            progress,
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn follow(
    core: Arc<NodeCore>,
    filter: Filter,
    start: u64,
    progress: Option<Duration>,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
) {
    let reader = core.reader.clone();
    let mut applied_rx = reader.subscribe();
    let mut stopping = core.stopping.subscribe();
    let mut cursor = start;
    let _subscribed = Subscribed::new(core.metrics.clone());
    let mut scope = match core.scope() {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
    };
    loop {
        // Everything at or below `applied` is in the store before we scan.
        let applied = *applied_rx.borrow_and_update();
        // A snapshot install clears the state and loads it in no order: a scan
        // during one could see a later event without an earlier one and skip it.
        // So a scan counts only if no install ran at any time during it.
        let scanned =
            reader.without_install(|r| (r.compacted_through(), r.events_from(cursor, SCAN_LIMIT)));
        let Some((compacted, events)) = scanned else {
            // The install's end moves `applied`.
            tokio::select! {
                changed = applied_rx.changed() => if changed.is_err() { return },
                _ = async { let _ = stopping.wait_for(|s| *s).await; } => {
                    let _ = tx.send(Err(Status::unavailable("node is shutting down; resume on another node"))).await;
                    return;
                }
                _ = tx.closed() => return,
            }
            continue;
        };
        if cursor <= compacted {
            let oldest = compacted + 1;
            let _ = tx
                .send(Err(NodeError::Compacted {
                    requested: cursor,
                    oldest,
                }
                .into()))
                .await;
            return;
        }
        let events = match events {
            Ok(e) => e,
            Err(e) => {
                let _ = tx.send(Err(NodeError::from(e).into())).await;
                return;
            }
        };
        let truncated = events.len() >= SCAN_LIMIT;
        let last_seen = events.last().map(|e| e.revision);
        // Up to which revision this scan has covered everything.
        let covered = if truncated {
            last_seen.unwrap_or(applied)
        } else {
            applied.max(last_seen.unwrap_or(0))
        };
        // The catalogue or a department's roles changed: what this department may
        // see may have changed with them.
        if events
            .iter()
            .any(|e| matches!(e.kind, RecordKind::SharingRule | RecordKind::Department))
        {
            match core.scope() {
                Ok(s) => scope = s,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        }
        let matching: Vec<_> = events
            .iter()
            .filter(|e| filter.matches(e, &scope))
            .map(convert::event_to_wire)
            .collect();
        if !matching.is_empty()
            && tx
                .send(Ok(WatchResponse {
                    events: matching,
                    progress_revision: covered,
                }))
                .await
                .is_err()
        {
            return;
        }
        cursor = cursor.max(covered + 1);
        if truncated {
            continue;
        }
        let idle = async {
            match progress {
                Some(p) => tokio::time::sleep(p).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = applied_rx.changed() => if changed.is_err() { return },
            _ = idle => {
                if tx.send(Ok(WatchResponse { events: vec![], progress_revision: cursor - 1 })).await.is_err() {
                    return;
                }
            }
            _ = async { let _ = stopping.wait_for(|s| *s).await; } => {
                let _ = tx.send(Err(Status::unavailable("node is shutting down; resume on another node"))).await;
                return;
            }
            _ = tx.closed() => return,
        }
    }
}

/// Counts an open watch stream in the metrics for as long as it lives.
struct Subscribed(Arc<crate::metrics::Metrics>);

impl Subscribed {
    fn new(metrics: Arc<crate::metrics::Metrics>) -> Subscribed {
        metrics
            .watch_subscribers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Subscribed(metrics)
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0
            .watch_subscribers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
