//! Prometheus metrics: per-RPC counts and latency (a tower layer over every
//! service), and at scrape time the raft position, replication lag per member,
//! snapshot and storage sizes, watch subscribers and the case backlog per
//! department. Served in text format on the ops port with the health service.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::NodeCore;

pub struct Metrics {
    registry: Registry,
    rpc_requests: IntCounterVec,
    rpc_seconds: HistogramVec,
    /// Open watch streams.
    pub watch_subscribers: AtomicI64,
    raft: IntGaugeVec,
    replication_lag: IntGaugeVec,
    sizes: IntGaugeVec,
    watchers: IntGauge,
    case_backlog: IntGaugeVec,
    /// Writes this node passed to the leader, and the RPCs that carried them.
    pub forwarded_writes: IntCounter,
    pub forward_batches: IntCounter,
    /// On the leader, each write from its proposal to its applied result.
    pub proposals: Histogram,
    /// On the leader, each AppendEntries from its send to the follower's answer,
    /// by follower: replication's share of `proposals`.
    pub peer_appends: HistogramVec,
}

impl Metrics {
    pub fn new(node_id: u64, department: &str) -> Arc<Metrics> {
        let labels = std::collections::HashMap::from([
            ("node_id".to_string(), node_id.to_string()),
            ("department".to_string(), department.to_string()),
        ]);
        let registry =
            Registry::new_custom(Some("concord".into()), Some(labels)).unwrap_or_default();
        // Registering fresh collectors with distinct names cannot fail; a failure
        // would only drop that family from the output, never stop the node.
        let rpc_requests = IntCounterVec::new(
            Opts::new(
                "rpc_requests_total",
                "gRPC requests by method and status code",
            ),
            &["method", "code"],
        )
        .expect("valid metric");
        let rpc_seconds = HistogramVec::new(
            HistogramOpts::new("rpc_duration_seconds", "gRPC time to response headers").buckets(
                vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ],
            ),
            &["method"],
        )
        .expect("valid metric");
        let raft = IntGaugeVec::new(
            Opts::new(
                "raft",
                "Raft position: term, leader, commit, applied, last_log, snapshot, purged, voter",
            ),
            &["field"],
        )
        .expect("valid metric");
        let replication_lag = IntGaugeVec::new(
            Opts::new(
                "replication_lag_entries",
                "On the leader: entries each member is behind the leader's log",
            ),
            &["member"],
        )
        .expect("valid metric");
        let sizes = IntGaugeVec::new(
            Opts::new(
                "storage_bytes",
                "Bytes on disk: data directory, last snapshot",
            ),
            &["what"],
        )
        .expect("valid metric");
        let watchers =
            IntGauge::new("watch_subscribers", "Open watch streams").expect("valid metric");
        let case_backlog = IntGaugeVec::new(
            Opts::new(
                "case_backlog",
                "Cases awaiting each department's move (the arbiter role as @arbiter)",
            ),
            &["owner"],
        )
        .expect("valid metric");
        let forwarded_writes = IntCounter::new(
            "forwarded_writes_total",
            "Writes this node passed to the leader",
        )
        .expect("valid metric");
        let forward_batches = IntCounter::new(
            "forward_batches_total",
            "Forwarding RPCs that carried them (many writes per RPC under load)",
        )
        .expect("valid metric");
        let steps = concord_store::timings::duration_buckets;
        let proposals = Histogram::with_opts(
            HistogramOpts::new(
                "proposal_duration_seconds",
                "On the leader, a write from its proposal to its applied result",
            )
            .buckets(steps()),
        )
        .expect("valid metric");
        let peer_appends = HistogramVec::new(
            HistogramOpts::new(
                "peer_append_duration_seconds",
                "On the leader, an AppendEntries from its send to the follower's answer",
            )
            .buckets(steps()),
            &["peer"],
        )
        .expect("valid metric");
        for c in [
            Box::new(rpc_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(proposals.clone()),
            Box::new(peer_appends.clone()),
            Box::new(rpc_seconds.clone()),
            Box::new(raft.clone()),
            Box::new(replication_lag.clone()),
            Box::new(sizes.clone()),
            Box::new(watchers.clone()),
            Box::new(case_backlog.clone()),
            Box::new(forwarded_writes.clone()),
            Box::new(forward_batches.clone()),
        ] {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "a metric family was not registered");
            }
        }
        Arc::new(Metrics {
            registry,
            rpc_requests,
            rpc_seconds,
            watch_subscribers: AtomicI64::new(0),
            raft,
            replication_lag,
            sizes,
            watchers,
            case_backlog,
            forwarded_writes,
            forward_batches,
            proposals,
            peer_appends,
        })
    }

    /// Adds collectors kept elsewhere (the store's `Timings`) to this node's output.
    pub fn register(&self, collectors: Vec<Box<dyn prometheus::core::Collector>>) {
        for c in collectors {
            if let Err(e) = self.registry.register(c) {
                tracing::warn!(error = %e, "a metric family was not registered");
            }
        }
    }

    pub fn observe(&self, method: &str, code: &str, seconds: f64) {
        self.rpc_requests.with_label_values(&[method, code]).inc();
        self.rpc_seconds
            .with_label_values(&[method])
            .observe(seconds);
    }

    /// The text exposition, with the gauges read from the node now.
    pub async fn render(&self, core: &NodeCore) -> String {
        let m = core.raft.metrics().borrow().clone();
        let committed = core
            .raft
            .with_raft_state(|s| s.committed.map_or(0, |l| l.index))
            .await
            .unwrap_or(0);
        let last_log = m.last_log_index.unwrap_or(0);
        let voter = m
            .membership_config
            .membership()
            .get_joint_config()
            .iter()
            .any(|c| c.contains(&core.id));
        for (field, v) in [
            ("term", m.current_term as i64),
            ("leader", m.current_leader.unwrap_or(0) as i64),
            ("commit", committed as i64),
            ("applied", core.reader.applied() as i64),
            ("last_log", last_log as i64),
            ("snapshot", m.snapshot.map_or(0, |l| l.index) as i64),
            ("purged", m.purged.map_or(0, |l| l.index) as i64),
            ("voter", voter as i64),
        ] {
            self.raft.with_label_values(&[field]).set(v);
        }
        self.replication_lag.reset();
        if let Some(replication) = &m.replication {
            for (member, matched) in replication {
                let at = matched.map_or(0, |l| l.index);
                self.replication_lag
                    .with_label_values(&[&member.to_string()])
                    .set(last_log.saturating_sub(at) as i64);
            }
        }
        self.sizes
            .with_label_values(&["data_dir"])
            .set(dir_size(&core.config.data_dir) as i64);
        self.sizes
            .with_label_values(&["snapshot"])
            .set(core.reader.snapshot_bytes() as i64);
        self.watchers
            .set(self.watch_subscribers.load(Ordering::Relaxed));
        self.case_backlog.reset();
        if let Ok(departments) = concord_domain::query::departments(&core.reader) {
            let owners = departments
                .iter()
                .map(|d| d.code().to_string())
                .chain([concord_domain::apply::ARBITER.to_string()]);
            for owner in owners {
                let n = concord_domain::state::scan_prefix(
                    &core.reader,
                    &concord_domain::state::keys::cases_awaiting(&owner),
                )
                .map(|v| v.len())
                .unwrap_or(0);
                self.case_backlog.with_label_values(&[&owner]).set(n as i64);
            }
        }
        let mut out = vec![];
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Bytes of every file under `path` (0 where unreadable).
pub fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Counts each request by its gRPC method and the status code in the response
/// headers (errors are trailers-only responses; a response whose status comes in
/// trailers counts as OK here, which is what a unary success looks like).
#[derive(Clone)]
pub struct MetricsLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// A bounded label: known gRPC paths only (a client cannot grow the series).
fn method_label(path: &str) -> String {
    let ok = path.len() <= 96
        && (path.starts_with("/concord.") || path.starts_with("/grpc."))
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._".contains(&b));
    if ok {
        path.trim_start_matches('/').to_string()
    } else {
        "other".to_string()
    }
}

fn code_name(v: &str) -> &'static str {
    match v.parse::<i32>().map(tonic::Code::from) {
        Ok(tonic::Code::Ok) => "OK",
        Ok(tonic::Code::Cancelled) => "CANCELLED",
        Ok(tonic::Code::InvalidArgument) => "INVALID_ARGUMENT",
        Ok(tonic::Code::DeadlineExceeded) => "DEADLINE_EXCEEDED",
        Ok(tonic::Code::NotFound) => "NOT_FOUND",
        Ok(tonic::Code::AlreadyExists) => "ALREADY_EXISTS",
        Ok(tonic::Code::PermissionDenied) => "PERMISSION_DENIED",
        Ok(tonic::Code::ResourceExhausted) => "RESOURCE_EXHAUSTED",
        Ok(tonic::Code::FailedPrecondition) => "FAILED_PRECONDITION",
        Ok(tonic::Code::Aborted) => "ABORTED",
        Ok(tonic::Code::OutOfRange) => "OUT_OF_RANGE",
        Ok(tonic::Code::Unimplemented) => "UNIMPLEMENTED",
        Ok(tonic::Code::Internal) => "INTERNAL",
        Ok(tonic::Code::Unavailable) => "UNAVAILABLE",
        Ok(tonic::Code::DataLoss) => "DATA_LOSS",
        Ok(tonic::Code::Unauthenticated) => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map_or("OK", code_name),
                Err(_) => "TRANSPORT_ERROR",
            };
            metrics.observe(&method, code, started.elapsed().as_secs_f64());
            r
        })
    }
}
