//! The fault campaign: a workload from three departments against a Docker cluster,
//! faults injected one after another (kill -9, stop, pause, partitions, restarts),
//! and the checks afterwards:
//! - every acknowledged write is on every replica, and no request id applied twice;
//! - the reads and writes of each register are linearizable ([`crate::lin`]);
//! - every watch, resumed across failures, saw each change exactly once, in order;
//! - every replica reports the same audit head.
//!
//! The registers are three supervision items in draft, one led by each department:
//! its lead rewrites the draft (`UpdateDraft`, a blind write under a unique request
//! id, retried with the same id when the outcome is unknown); every department
//! reads all three (`GetItem`, linearizable, and some serializable reads that are
//! counted but not checked).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord_proto::cluster::v1::{AuditHeadRequest, ListAuditRequest};
use concord_proto::common::v1::{Consistency, ReadOptions};
use concord_proto::item::v1::item_service_client::ItemServiceClient;
use concord_proto::item::v1::{CreateItemRequest, GetItemRequest, UpdateDraftRequest};
use concord_proto::watch::v1::watch_service_client::WatchServiceClient;
use concord_proto::watch::v1::{RecordKind, WatchRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::docker::DockerCluster;
use crate::item_content;
use crate::lin::{self, Operation, RegisterOp};

/// How long a client keeps retrying a write whose outcome it does not know.
const RETRY_FOR: Duration = Duration::from_secs(20);
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Refused for good (never applied).
    Failed,
    /// Unknown: may or may not have been applied.
    Ambiguous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Write,
    Read,
    StaleRead,
}

#[derive(Debug, Clone)]
pub struct OpRecord {
    pub client: String,
    pub key: String,
    pub kind: Kind,
    pub value: String,
    pub call: u64,
    pub ret: Option<u64>,
    pub status: Status,
    pub request_id: String,
    /// The revision the answer came from (0: none).
    pub revision: u64,
}

#[derive(Default)]
pub struct History {
    pub ops: Mutex<Vec<OpRecord>>,
    /// Per watcher: (revision, key, value) in the order received.
    pub events: Mutex<BTreeMap<String, Vec<(u64, String, String)>>>,
    /// Per watcher: the revision it is known to be complete up to.
    pub seen_upto: Mutex<BTreeMap<String, u64>>,
    /// Per watcher: streams it opened, and why the last one ended.
    pub watch_streams: Mutex<BTreeMap<String, (usize, String)>>,
}

/// One register: a draft item led by `department`, whose node is `node`.
#[derive(Debug, Clone)]
pub struct Register {
    pub department: String,
    pub node: u64,
    pub item: String,
    pub initial: String,
}

pub struct Workload {
    started: Instant,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The revision every watch must reach (set once the replicas converged).
    watch_until: watch::Sender<Option<u64>>,
    watchers: Vec<JoinHandle<()>>,
    pub history: Arc<History>,
    pub registers: Vec<Register>,
    pub start_revision: u64,
}

fn ns(started: Instant) -> u64 {
    started.elapsed().as_nanos() as u64
}

fn definitive(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument | Code::PermissionDenied | Code::NotFound | Code::AlreadyExists
    )
}

impl Workload {
    /// Creates one register per node's department and starts the clients.
    pub async fn start(cluster: &DockerCluster) -> anyhow::Result<Workload> {
        let mut registers = vec![];
        let mut start_revision = 0;
        for (id, node) in &cluster.nodes {
            let initial = format!("{}-0", node.department);
            let r = ItemServiceClient::new(cluster.channel(*id))
                .create_item(CreateItemRequest {
                    request_id: format!("register-{}", node.department),
                    content: Some(item_content(&node.department, &initial)),
                })
                .await?
                .into_inner();
            start_revision = start_revision.max(r.header.map(|h| h.revision).unwrap_or(0));
            registers.push(Register {
                department: node.department.clone(),
                node: *id,
                item: r.item.map(|i| i.id).unwrap_or_default(),
                initial,
            });
        }
        let started = Instant::now();
        let (stop, stopped) = watch::channel(false);
        let (watch_until, until) = watch::channel(None);
        let history = Arc::new(History::default());
        let mut tasks = vec![];
        let mut watchers = vec![];
        for reg in &registers {
            let channel = cluster.channel(reg.node);
            tasks.push(tokio::spawn(writer(
                reg.clone(),
                ItemServiceClient::new(channel.clone()),
                history.clone(),
                started,
                stopped.clone(),
            )));
            tasks.push(tokio::spawn(reader(
                reg.department.clone(),
                registers.iter().map(|r| r.item.clone()).collect(),
                ItemServiceClient::new(channel.clone()),
                history.clone(),
                started,
                stopped.clone(),
            )));
            watchers.push(tokio::spawn(watcher(
                reg.department.clone(),
                registers.iter().map(|r| r.item.clone()).collect(),
                WatchServiceClient::new(channel),
                start_revision + 1,
                history.clone(),
                until.clone(),
            )));
        }
        Ok(Workload {
            started,
            stop,
            tasks,
            watch_until,
            watchers,
            history,
            registers,
            start_revision,
        })
    }

    /// Stops the writers and readers (writes in doubt are retried to their end
    /// first). Watches go on until [`Workload::finish_watches`].
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let _ = self.started;
    }

    /// Lets every watch follow until it has seen revision `head` (the replicas'
    /// converged head), or until [`WATCH_CATCH_UP`] passes: a replica that has just
    /// installed a snapshot may serve its watch late, but not never.
    pub async fn finish_watches(&mut self, head: u64) {
        let _ = self.watch_until.send(Some(head));
        for t in self.watchers.drain(..) {
            let _ = t.await;
        }
    }
}

async fn writer(
    reg: Register,
    mut client: ItemServiceClient<tonic::transport::Channel>,
    history: Arc<History>,
    started: Instant,
    stopped: watch::Receiver<bool>,
) {
    let mut n = 0u64;
    while !*stopped.borrow() {
        n += 1;
        let value = format!("{}-{n}", reg.department);
        let request_id = format!("w-{}-{n}", reg.department);
        let call = ns(started);
        let first = Instant::now();
        let mut revision = 0;
        let (status, ret) = loop {
            let mut req = tonic::Request::new(UpdateDraftRequest {
                request_id: request_id.clone(),
                id: reg.item.clone(),
                content: Some(item_content(&reg.department, &value)),
                expected_revision: None,
            });
            req.set_timeout(CALL_TIMEOUT);
            match client.update_draft(req).await {
                Ok(r) => {
                    revision = r.get_ref().header.as_ref().map_or(0, |h| h.revision);
                    break (Status::Ok, Some(ns(started)));
                }
                Err(e) if definitive(e.code()) => break (Status::Failed, Some(ns(started))),
                Err(_) if first.elapsed() > RETRY_FOR => break (Status::Ambiguous, None),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        history.ops.lock().expect("history").push(OpRecord {
            client: reg.department.clone(),
            key: reg.item.clone(),
            kind: Kind::Write,
            value,
            call,
            ret,
            status,
            request_id,
            revision,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reader(
    department: String,
    items: Vec<String>,
    mut client: ItemServiceClient<tonic::transport::Channel>,
    history: Arc<History>,
    started: Instant,
    stopped: watch::Receiver<bool>,
) {
    let mut n = 0usize;
    while !*stopped.borrow() {
        n += 1;
        let key = items[n % items.len()].clone();
        let stale = n % 4 == 0;
        let call = ns(started);
        let mut req = tonic::Request::new(GetItemRequest {
            id: key.clone(),
            version: 0,
            read: Some(ReadOptions {
                consistency: if stale {
                    Consistency::Serializable
                } else {
                    Consistency::Linearizable
                } as i32,
                min_revision: 0,
            }),
        });
        req.set_timeout(CALL_TIMEOUT);
        let r = client.get_item(req).await;
        let ret = ns(started);
        let (status, value, revision) = match r {
            Ok(r) => {
                let r = r.into_inner();
                (
                    Status::Ok,
                    r.item
                        .and_then(|i| i.content)
                        .map(|c| c.name)
                        .unwrap_or_default(),
                    r.header.map_or(0, |h| h.revision),
                )
            }
            Err(_) => (Status::Failed, String::new(), 0),
        };
        history.ops.lock().expect("history").push(OpRecord {
            client: department.clone(),
            key,
            kind: if stale { Kind::StaleRead } else { Kind::Read },
            value,
            call,
            ret: Some(ret),
            status,
            request_id: String::new(),
            revision,
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How long a watch may take, after the replicas converged, to reach their head.
pub const WATCH_CATCH_UP: Duration = Duration::from_secs(60);

async fn watcher(
    department: String,
    items: Vec<String>,
    mut client: WatchServiceClient<tonic::transport::Channel>,
    mut next: u64,
    history: Arc<History>,
    until: watch::Receiver<Option<u64>>,
) {
    let name = format!("watch-{department}");
    let mut until_seen_at: Option<Instant> = None;
    // Done once the converged head is seen, or given up WATCH_CATCH_UP after it is known.
    let mut done = |next: u64| match *until.borrow() {
        Some(head) => {
            let at = *until_seen_at.get_or_insert_with(Instant::now);
            next > head || at.elapsed() > WATCH_CATCH_UP
        }
        None => false,
    };
    let ended = |why: String| {
        let mut s = history.watch_streams.lock().expect("streams");
        let e = s.entry(name.clone()).or_default();
        e.1 = why;
    };
    loop {
        if done(next) {
            return;
        }
        history
            .watch_streams
            .lock()
            .expect("streams")
            .entry(name.clone())
            .or_default()
            .0 += 1;
        let stream = client
            .watch(WatchRequest {
                start_revision: next,
                kinds: vec![RecordKind::Item as i32],
                department: String::new(),
                progress_interval_ms: 300,
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(e) => {
                ended(format!("refused at {next}: {:?} {}", e.code(), e.message()));
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(3), stream.next()).await;
            let msg = match msg {
                Ok(Some(Ok(msg))) => msg,
                Ok(Some(Err(e))) => {
                    ended(format!("broke at {next}: {:?} {}", e.code(), e.message()));
                    break;
                }
                Ok(None) => {
                    ended(format!("closed by the node at {next}"));
                    break;
                }
                Err(_) => {
                    ended(format!("silent for 3 s at {next}"));
                    break;
                }
            };
            for e in msg.events {
                if items.contains(&e.key) {
                    let value = match e.record {
                        Some(concord_proto::watch::v1::event::Record::Item(i)) => {
                            i.content.map(|c| c.name).unwrap_or_default()
                        }
                        _ => String::new(),
                    };
                    history
                        .events
                        .lock()
                        .expect("events")
                        .entry(name.clone())
                        .or_default()
                        .push((e.revision, e.key.clone(), value));
                }
                next = next.max(e.revision + 1);
            }
            if msg.progress_revision > 0 {
                next = next.max(msg.progress_revision + 1);
            }
            history
                .seen_upto
                .lock()
                .expect("seen")
                .insert(name.clone(), next.saturating_sub(1));
            if done(next) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counts and anomalies of one run.
#[derive(Debug, Default)]
pub struct Report {
    pub writes_ok: usize,
    pub writes_failed: usize,
    pub writes_ambiguous: usize,
    pub reads_ok: usize,
    pub reads_failed: usize,
    pub stale_reads: usize,
    pub watch_events: usize,
    pub final_revision: u64,
    pub anomalies: Vec<String>,
}

/// Waits until every node reports the same audit head; returns it.
async fn converged_head(cluster: &DockerCluster, report: &mut Report) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = vec![];
    while Instant::now() < deadline {
        let mut heads = vec![];
        for id in cluster.ids() {
            let mut req = tonic::Request::new(AuditHeadRequest {
                read: Some(ReadOptions {
                    consistency: Consistency::Serializable as i32,
                    min_revision: 0,
                }),
            });
            req.set_timeout(CALL_TIMEOUT);
            match cluster.admin(id).audit_head(req).await {
                Ok(h) => {
                    let h = h.into_inner();
                    heads.push((h.revision, h.hash, h.count));
                }
                Err(e) => heads.push((0, e.to_string(), 0)),
            }
        }
        if heads.windows(2).all(|w| w[0] == w[1]) && heads[0].0 > 0 {
            return heads[0].0;
        }
        last = heads;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    report
        .anomalies
        .push(format!("audit heads never converged: {last:?}"));
    0
}

/// (revision, request id) of every applied UpdateDraft of `item`, as node `id` has them.
async fn applied_writes(
    cluster: &DockerCluster,
    id: u64,
    item: &str,
    at_least: u64,
) -> anyhow::Result<Vec<(u64, String)>> {
    let mut out = vec![];
    let mut from = 0;
    loop {
        let r = cluster
            .admin(id)
            .list_audit(ListAuditRequest {
                from_revision: from,
                target: item.to_string(),
                limit: 1000,
                read: Some(ReadOptions {
                    consistency: Consistency::Serializable as i32,
                    min_revision: at_least,
                }),
            })
            .await?
            .into_inner();
        out.extend(
            r.records
                .into_iter()
                .filter(|a| a.kind == "update_draft" && a.outcome == "OK")
                .map(|a| (a.revision, a.request_id)),
        );
        if r.next_revision == 0 {
            return Ok(out);
        }
        from = r.next_revision;
    }
}

/// Runs every check on the quiet cluster after the workload stopped.
pub async fn check(cluster: &DockerCluster, w: &mut Workload) -> Report {
    let mut report = Report::default();
    let ops = w.history.ops.lock().expect("history").clone();
    for o in &ops {
        match (o.kind, o.status) {
            (Kind::Write, Status::Ok) => report.writes_ok += 1,
            (Kind::Write, Status::Failed) => report.writes_failed += 1,
            (Kind::Write, Status::Ambiguous) => report.writes_ambiguous += 1,
            (Kind::Read, Status::Ok) => report.reads_ok += 1,
            (Kind::StaleRead, Status::Ok) => report.stale_reads += 1,
            _ => report.reads_failed += 1,
        }
    }
    let head = converged_head(cluster, &mut report).await;
    report.final_revision = head;
    w.finish_watches(head).await;
    // The applied writes per register, from every replica's audit trail.
    let mut applied: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for reg in &w.registers {
        // Every replica's list, then each compared with the longest: a replica that
        // lags is reported as lagging, not as having lost what it has not received.
        let mut lists: Vec<(u64, Vec<(u64, String)>)> = vec![];
        for id in cluster.ids() {
            let list = match applied_writes(cluster, id, &reg.item, head).await {
                Ok(l) => l,
                Err(e) => {
                    report
                        .anomalies
                        .push(format!("node {id}: audit of {} unreadable: {e}", reg.item));
                    continue;
                }
            };
            let mut seen = BTreeSet::new();
            for (rev, rid) in &list {
                if !seen.insert(rid.clone()) {
                    report
                        .anomalies
                        .push(format!("node {id}: {rid} applied twice (again at {rev})"));
                }
            }
            lists.push((id, list));
        }
        let reference = lists
            .iter()
            .max_by_key(|(_, l)| l.len())
            .map(|(_, l)| l.clone())
            .unwrap_or_default();
        for (id, list) in &lists {
            if *list == reference {
                continue;
            }
            let what = if reference.starts_with(list) {
                "lags behind"
            } else {
                "DIVERGES from"
            };
            report.anomalies.push(format!(
                "node {id}: its writes of {} ({}) {what} the longest replica's ({})",
                reg.item,
                list.len(),
                reference.len()
            ));
        }
        applied.insert(
            reg.item.clone(),
            reference.into_iter().map(|(rev, rid)| (rid, rev)).collect(),
        );
    }
    for o in ops.iter().filter(|o| o.kind == Kind::Write) {
        let present = applied[&o.key].contains_key(&o.request_id);
        match o.status {
            Status::Ok if !present => report.anomalies.push(format!(
                "acknowledged write {} is on no replica",
                o.request_id
            )),
            Status::Failed if present => report
                .anomalies
                .push(format!("refused write {} was applied", o.request_id)),
            _ => {}
        }
    }
    // Linearizability per register. A write in doubt that no replica applied is
    // left out; one that was applied takes effect somewhere after its call.
    for reg in &w.registers {
        let history: Vec<Operation> = ops
            .iter()
            .filter(|o| o.key == reg.item)
            .filter_map(|o| match (o.kind, o.status) {
                (Kind::Write, Status::Ok) => Some(Operation {
                    op: RegisterOp::Write(o.value.clone()),
                    call: o.call,
                    ret: o.ret,
                }),
                (Kind::Write, Status::Ambiguous) if applied[&o.key].contains_key(&o.request_id) => {
                    Some(Operation {
                        op: RegisterOp::Write(o.value.clone()),
                        call: o.call,
                        ret: None,
                    })
                }
                (Kind::Read, Status::Ok) => Some(Operation {
                    op: RegisterOp::Read(o.value.clone()),
                    call: o.call,
                    ret: o.ret,
                }),
                _ => None,
            })
            .collect();
        if !lin::linearizable(&reg.initial, &history) {
            // Keep the evidence: every operation on the register, one JSON line each.
            let path = std::env::temp_dir().join(format!("concord-history-{}.jsonl", reg.item));
            let lines: Vec<String> = ops
                .iter()
                .filter(|o| o.key == reg.item)
                .map(|o| {
                    serde_json::json!({
                        "client": o.client, "kind": format!("{:?}", o.kind), "value": o.value,
                        "call": o.call, "ret": o.ret, "status": format!("{:?}", o.status),
                        "request_id": o.request_id, "revision": o.revision,
                    })
                    .to_string()
                })
                .collect();
            let _ = std::fs::write(&path, lines.join("\n"));
            report.anomalies.push(format!(
                "the history of {} ({} operations) is not linearizable (all operations in {})",
                reg.item,
                history.len(),
                path.display()
            ));
        }
    }
    // Watches: each change once, in order, none missing up to where it got.
    let value_of: BTreeMap<String, String> = ops
        .iter()
        .filter(|o| o.kind == Kind::Write)
        .map(|o| (o.request_id.clone(), o.value.clone()))
        .collect();
    let events = w.history.events.lock().expect("events").clone();
    let seen_upto = w.history.seen_upto.lock().expect("seen").clone();
    for reg in &w.registers {
        let name = format!("watch-{}", reg.department);
        let got = events.get(&name).cloned().unwrap_or_default();
        report.watch_events += got.len();
        let upto = seen_upto.get(&name).copied().unwrap_or(0);
        if upto < head {
            let (streams, why) = w
                .history
                .watch_streams
                .lock()
                .expect("streams")
                .get(&name)
                .cloned()
                .unwrap_or_default();
            report.anomalies.push(format!(
                "{name} only got to revision {upto} of {head} within {} s of convergence ({streams} streams opened; the last {why})",
                WATCH_CATCH_UP.as_secs()
            ));
        }
        if got.windows(2).any(|p| p[0].0 >= p[1].0) {
            report
                .anomalies
                .push(format!("{name} delivered a revision twice or out of order"));
        }
        let received: BTreeMap<u64, (String, String)> = got
            .iter()
            .map(|(rev, key, v)| (*rev, (key.clone(), v.clone())))
            .collect();
        let mut expected: BTreeMap<u64, (String, String)> = BTreeMap::new();
        for (item, writes) in &applied {
            for (rid, rev) in writes {
                if *rev > w.start_revision && *rev <= upto {
                    let v = value_of.get(rid).cloned().unwrap_or_default();
                    expected.insert(*rev, (item.clone(), v));
                }
            }
        }
        for (rev, kv) in &expected {
            match received.get(rev) {
                None => report
                    .anomalies
                    .push(format!("{name} missed revision {rev} ({})", kv.0)),
                Some(got) if got != kv => report.anomalies.push(format!(
                    "{name} at {rev}: got {got:?}, the write was {kv:?}"
                )),
                _ => {}
            }
        }
        for rev in received.keys() {
            if !expected.contains_key(rev) && *rev <= upto {
                report
                    .anomalies
                    .push(format!("{name} delivered {rev}, which changed no register"));
            }
        }
    }
    report
}

/// The faults the campaign draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    KillLeader,
    KillFollower,
    StopStartFollower,
    PauseLeader,
    PauseFollower,
    PartitionFollower,
    IsolateLeader,
    PartitionMajority,
    RestartAll,
    RollingRestart,
    /// A follower down until the leader purged its log past it: it comes back by
    /// snapshot installation.
    SnapshotInstall,
    /// A learner joins under load (half the time while a follower is partitioned).
    AddLearner,
}

/// Departments that join as learners, in order.
const LEARNERS: [&str; 2] = ["ECO", "EMER"];

pub const FAULTS: [Fault; 12] = [
    Fault::KillLeader,
    Fault::KillFollower,
    Fault::StopStartFollower,
    Fault::PauseLeader,
    Fault::PauseFollower,
    Fault::PartitionFollower,
    Fault::IsolateLeader,
    Fault::PartitionMajority,
    Fault::RestartAll,
    Fault::RollingRestart,
    Fault::SnapshotInstall,
    Fault::AddLearner,
];

async fn leader_or_wait(cluster: &DockerCluster) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = cluster.leader().await;
        if l != 0 {
            return Ok(l);
        }
        if Instant::now() > deadline {
            anyhow::bail!("no leader for 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Injects `fault`, holds it for `hold` under load, and heals it.
pub async fn inject(
    cluster: &mut DockerCluster,
    fault: Fault,
    hold: Duration,
    rng: &mut StdRng,
) -> anyhow::Result<String> {
    let leader = leader_or_wait(cluster).await?;
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|i| *i != leader).collect();
    let follower = followers[rng.gen_range(0..followers.len())];
    let what = match fault {
        Fault::KillLeader | Fault::KillFollower => {
            let n = if fault == Fault::KillLeader {
                leader
            } else {
                follower
            };
            cluster.kill(n).await?;
            tokio::time::sleep(hold).await;
            cluster.start_node(n).await?;
            format!("kill -9 node {n}")
        }
        Fault::StopStartFollower => {
            cluster.stop(follower).await?;
            tokio::time::sleep(hold).await;
            cluster.start_node(follower).await?;
            format!("stop/start node {follower}")
        }
        Fault::PauseLeader | Fault::PauseFollower => {
            let n = if fault == Fault::PauseLeader {
                leader
            } else {
                follower
            };
            cluster.pause(n).await?;
            tokio::time::sleep(hold).await;
            cluster.unpause(n).await?;
            format!("pause node {n}")
        }
        Fault::PartitionFollower | Fault::IsolateLeader => {
            let n = if fault == Fault::IsolateLeader {
                leader
            } else {
                follower
            };
            cluster.disconnect(n).await?;
            tokio::time::sleep(hold).await;
            cluster.reconnect(n).await?;
            format!("partition node {n}")
        }
        Fault::PartitionMajority => {
            // Every node alone: no quorum anywhere, so no progress and no second leader.
            cluster.disconnect(leader).await?;
            cluster.disconnect(follower).await?;
            tokio::time::sleep(hold).await;
            cluster.reconnect(leader).await?;
            cluster.reconnect(follower).await?;
            format!("partition nodes {leader} and {follower} from everyone")
        }
        Fault::RestartAll => {
            for id in cluster.ids() {
                cluster.kill(id).await?;
            }
            tokio::time::sleep(hold).await;
            for id in cluster.ids() {
                cluster.start_node(id).await?;
            }
            "kill -9 and restart every node".to_string()
        }
        Fault::RollingRestart => {
            for id in cluster.ids() {
                cluster.stop(id).await?;
                cluster.start_node(id).await?;
                cluster.wait_serving(id, Duration::from_secs(30)).await?;
            }
            "rolling restart".to_string()
        }
        Fault::SnapshotInstall => {
            // Right after a partition heals a node may take a few seconds to answer
            // (seen: a 2 s timeout at fault 99 of a 100-fault run): not an anomaly.
            let behind = cluster
                .status_within(follower, Duration::from_secs(30))
                .await?
                .last_log_index;
            cluster.kill(follower).await?;
            let deadline = Instant::now() + Duration::from_secs(90);
            let purged = loop {
                let p = cluster
                    .status(leader)
                    .await
                    .map(|s| s.purged_index)
                    .unwrap_or(0);
                if p > behind {
                    break p;
                }
                if Instant::now() > deadline {
                    cluster.start_node(follower).await?;
                    anyhow::bail!("the leader never purged its log past {behind}");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            cluster.start_node(follower).await?;
            // Back only by a snapshot covering the purged entries.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let s = cluster.status(follower).await.map(|s| s.snapshot_index);
                if s.as_ref().is_ok_and(|i| *i >= purged) {
                    break;
                }
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "node {follower} did not install a snapshot past {purged}: {s:?}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            format!("node {follower} down until the log was purged past {behind} (to {purged}); back by snapshot")
        }
        Fault::AddLearner => {
            let joined = cluster.nodes.len() - 3;
            let Some(department) = LEARNERS.get(joined) else {
                // Learners all joined: a follower kill instead.
                cluster.kill(follower).await?;
                tokio::time::sleep(hold).await;
                cluster.start_node(follower).await?;
                return Ok(format!("kill -9 node {follower} (no learner left to add)"));
            };
            let partitioned = rng.gen_bool(0.5);
            if partitioned {
                cluster.disconnect(follower).await?;
            }
            let id = cluster.add_learner(department, leader).await?;
            tokio::time::sleep(hold).await;
            if partitioned {
                cluster.reconnect(follower).await?;
            }
            format!(
                "learner {id} ({department}) added{}",
                if partitioned {
                    format!(" while node {follower} was partitioned")
                } else {
                    String::new()
                }
            )
        }
    };
    // Healed: every node serves with a leader again.
    for id in cluster.ids() {
        cluster.wait_serving(id, Duration::from_secs(30)).await?;
    }
    Ok(what)
}

pub struct CampaignOptions {
    pub faults: usize,
    /// Stop injecting after this long, whatever `faults` says.
    pub max_duration: Duration,
    pub seed: u64,
}

/// Runs a campaign on a fresh three-department Docker cluster and returns the
/// report and the one-line summary.
pub async fn run(options: CampaignOptions) -> anyhow::Result<(Report, String)> {
    let started = Instant::now();
    let mut cluster = DockerCluster::start(&["SAMR", "TRANS", "JUST"]).await?;
    let mut workload = Workload::start(&cluster).await?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut injected: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut recovery_failures = vec![];
    for i in 0..options.faults {
        if started.elapsed() > options.max_duration {
            break;
        }
        // Each kind once first, then at random.
        let fault = if i < FAULTS.len() {
            FAULTS[i]
        } else {
            FAULTS[rng.gen_range(0..FAULTS.len())]
        };
        let hold = Duration::from_millis(rng.gen_range(1_000..3_000));
        match inject(&mut cluster, fault, hold, &mut rng).await {
            Ok(what) => eprintln!("fault {}: {what} ({} ms)", i + 1, hold.as_millis()),
            Err(e) => recovery_failures.push(format!("fault {} ({fault:?}): {e:#}", i + 1)),
        }
        *injected.entry(fault).or_default() += 1;
        // Some load between faults.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..1_500))).await;
    }
    workload.stop().await;
    let mut report = check(&cluster, &mut workload).await;
    report.anomalies.extend(recovery_failures);
    let faults: usize = injected.values().sum();
    let summary = format!(
        "campaign: seed {} faults {faults} ({}) writes ok {} failed {} ambiguous {} reads ok {} failed {} stale {} watch events {} final revision {} anomalies {} in {:.0} s",
        options.seed,
        injected
            .iter()
            .map(|(f, n)| format!("{f:?} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.writes_ok,
        report.writes_failed,
        report.writes_ambiguous,
        report.reads_ok,
        report.reads_failed,
        report.stale_reads,
        report.watch_events,
        report.final_revision,
        report.anomalies.len(),
        started.elapsed().as_secs_f64()
    );
    if !report.anomalies.is_empty() {
        for id in cluster.ids() {
            let logs = cluster.logs(id).await;
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            eprintln!("--- node {id} (last 40 lines)");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
    Ok((report, summary))
}
