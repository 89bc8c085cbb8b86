//! `concord bench`: closed-loop load against a cluster, one line of figures per run.
//!
//! Each client sends its next request when the previous one returns. Clients are
//! spread over the endpoints (one department's node each, with that department's
//! client certificate) and over `--conns` HTTP/2 connections. `--local` starts a
//! fresh three-node cluster and runs the standard suite of docs/performance.md.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use concord_pki::{CertRole, Identity, ReloadingTls};
use concord_proto::case::v1::case_service_client::CaseServiceClient;
use concord_proto::case::v1::{
    Case, CaseKind, CaseSource, GetCaseRequest, Priority, PushCaseRequest,
};
use concord_proto::common::v1::{Consistency, ReadOptions};
use concord_proto::watch::v1::watch_service_client::WatchServiceClient;
use concord_proto::watch::v1::{RecordKind, WatchRequest};
use prost::Message;
use tonic::transport::Channel;

use crate::local::{LocalCluster, Spec};

mod apply;
mod etcd;
mod scale;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// CaseService/PushCase: a clue handed to the next endpoint's department.
    PushCase,
    /// CaseService/GetCase, LINEARIZABLE (a read index from the leader).
    GetLinearizable,
    /// CaseService/GetCase, SERIALIZABLE (the local replica).
    GetSerializable,
    /// WatchService/Watch on every endpoint while 16 clients push cases: events
    /// delivered per second, latency from the push to each watcher's receipt.
    Watch,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Start a fresh local three-node cluster (SAMR, TRANS, JUST) in --dir and run
    /// the standard suite, or only --op if given.
    #[arg(long)]
    local: bool,
    /// A node to load, as DEPARTMENT=HOST:PORT; repeat for several nodes.
    #[arg(long = "endpoint", value_name = "DEPT=ADDR")]
    endpoints: Vec<String>,
    /// A `concord pki` directory: ca.pem and <DEPT>-client-<name>.pem/.key per endpoint.
    #[arg(long)]
    pki: Option<PathBuf>,
    /// The <name> of the client certificates in --pki.
    #[arg(long, default_value = "app")]
    client_name: String,
    /// Plaintext (a cluster started with --insecure-dev).
    #[arg(long)]
    insecure: bool,
    #[arg(long, value_enum)]
    op: Option<Op>,
    /// Concurrent clients (watchers, for --op watch).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// HTTP/2 connections, spread over the endpoints (default: one per 4 clients, at most 32).
    #[arg(long)]
    conns: Option<usize>,
    /// Seconds each run lasts (after one second of warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Encoded size of a pushed case in bytes.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// --local: where the nodes keep data and logs (wiped first).
    #[arg(long, default_value = ".concord-bench")]
    dir: PathBuf,
    /// --local: port of the first node.
    #[arg(long, default_value_t = 7101)]
    base_port: u16,
    /// --local: instead of the suite, load this many cases into a fresh cluster and
    /// measure the scale targets (node RSS and disk, restart to serving after
    /// kill -9, a new learner's catch-up by snapshot). --clients sets the loaders.
    #[arg(long, value_name = "RECORDS")]
    scale: Option<u64>,
    /// Instead of a cluster, apply this many pushed cases to a fresh store in --dir
    /// (one node's state machine: no network, no raft log) and print the CPU time
    /// per write, with fjall and with the domain alone.
    #[arg(long, value_name = "WRITES", conflicts_with_all = ["local", "endpoints"])]
    apply: Option<u64>,
    /// --apply: log entries per apply call (a loaded leader applies about 20).
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Threads the load generator runs on; 0 for one per core.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// --local: start three etcd members (the `etcd` on PATH) instead of Concord and
    /// run the suite's write and read lines against them with the same load
    /// generator: the anchor, measured in the same minutes.
    #[arg(long, requires = "local", conflicts_with_all = ["scale", "insecure"])]
    etcd: bool,
}

impl BenchArgs {
    /// Wipes `--dir` and creates it again: every mode starts from nothing.
    pub fn fresh_dir(&self) -> anyhow::Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("wiping {}", self.dir.display()))?;
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))
    }

    /// The runtime the load generator runs on. One thread by default: with
    /// `--local` the clients share the machine with the nodes, and on one thread a
    /// call's hand-offs (client task, channel buffer, connection) are queue pushes,
    /// not wake-ups of another thread (docs/performance.md, "The shipped build, and
    /// the load generator").
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        match self.client_threads {
            1 => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            n => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                if n > 1 {
                    b.worker_threads(n);
                }
                b.enable_all().build()
            }
        }
    }
}

struct Endpoint {
    department: String,
    addr: String,
    tls: Option<Arc<ReloadingTls>>,
}

/// What one run measured.
struct Figures {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// When the measured window (after the warm-up) began.
    measured_from: Instant,
    latencies_us: Vec<u32>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(writes) = args.apply {
        return apply::run(&args, writes).await;
    }
    if let (true, Some(records)) = (args.local, args.scale) {
        return scale::run(&args, records).await;
    }
    if args.local && args.etcd {
        return etcd::run(&args).await;
    }
    if args.local {
        return run_local(&args).await;
    }
    if args.endpoints.is_empty() {
        bail!("give --local, or at least one --endpoint DEPT=ADDR");
    }
    let endpoints = args
        .endpoints
        .iter()
        .map(|e| {
            let (department, addr) = e
                .split_once('=')
                .with_context(|| format!("--endpoint {e}: expected DEPT=HOST:PORT"))?;
            let tls = match (&args.pki, args.insecure) {
                (_, true) => None,
                (Some(dir), false) => {
                    let id = Identity::new(department, CertRole::Client, &args.client_name)
                        .with_context(|| format!("--endpoint {e}: department"))?;
                    Some(crate::pki::load(dir, &id)?)
                }
                (None, false) => bail!("give --pki DIR (or --insecure)"),
            };
            Ok(Endpoint {
                department: department.to_string(),
                addr: addr.to_string(),
                tls,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let op = args.op.unwrap_or(Op::PushCase);
    let figures = run_one(&endpoints, op, &args, args.clients).await?;
    println!(
        "{}",
        line(
            &format!("{op:?}"),
            args.clients,
            conns(&args, args.clients),
            &figures,
            None
        )
    );
    Ok(())
}

/// The standard suite (docs/performance.md), with the target for each line.
const SUITE: [(Op, usize, &str); 6] = [
    (Op::PushCase, 1, "p50 <= 0.70 ms"),
    (Op::PushCase, 64, ">= 11500/s"),
    (Op::PushCase, 256, ">= 16500/s"),
    (Op::GetLinearizable, 64, ">= 11000/s"),
    (Op::GetSerializable, 64, ">= 21000/s"),
    (Op::Watch, 64, "(no target)"),
];

async fn run_local(args: &BenchArgs) -> anyhow::Result<()> {
    args.fresh_dir()?;
    let started = Instant::now();
    let mut cluster = LocalCluster::start(Spec {
        dir: &args.dir,
        departments: &["SAMR", "TRANS", "JUST"],
        voters: 3,
        base_port: args.base_port,
        insecure: args.insecure,
        env: vec![],
        later: 0,
    })
    .await?;
    println!(
        "concord bench: 3 voters on 127.0.0.1:{}-{} (mutual TLS: {}, fsync per commit), ready in {} ms; {} cores",
        args.base_port,
        args.base_port + 2,
        !args.insecure,
        started.elapsed().as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let endpoints = cluster
        .departments
        .iter()
        .zip(&cluster.addrs)
        .map(|(d, a)| {
            Ok(Endpoint {
                department: d.clone(),
                addr: a.clone(),
                tls: cluster.client_tls(d)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runs: Vec<(Op, usize, &str)> = match args.op {
        Some(op) => vec![(op, args.clients, "")],
        None => SUITE.to_vec(),
    };
    let mut result = Ok(());
    for (op, clients, target) in runs {
        match run_one(&endpoints, op, args, clients).await {
            Ok(f) => {
                let rss = rss_mb(&cluster.pids());
                println!(
                    "{}  {target}",
                    line(
                        &format!("{op:?}"),
                        clients,
                        conns(args, clients),
                        &f,
                        Some(&rss)
                    )
                );
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    cluster.stop().await;
    result
}

fn conns(args: &BenchArgs, clients: usize) -> usize {
    args.conns.unwrap_or(clients.div_ceil(4).clamp(1, 32))
}

fn line(label: &str, clients: usize, conns: usize, f: &Figures, rss: Option<&[u64]>) -> String {
    let mut lat = f.latencies_us.clone();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    let rate = f.ops as f64 / f.elapsed.as_secs_f64();
    let mut s = format!(
        "{:<17} clients {:>3} conns {:>2}  {:>8.0} ops/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ops {:>7}  errors {}",
        label,
        clients,
        conns,
        rate,
        pct(0.50),
        pct(0.99),
        lat.last().map_or(0.0, |m| *m as f64 / 1000.0),
        f.ops,
        f.errors,
    );
    if let Some(rss) = rss {
        let shown: Vec<String> = rss.iter().map(|m| m.to_string()).collect();
        s.push_str(&format!("  rss MB {}", shown.join("/")));
    }
    if let Some(e) = &f.first_error {
        s.push_str(&format!("  (first error: {e})"));
    }
    s
}

/// The figures gathered so far; a poisoned lock still holds them.
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resident set size of each process, in MB (Linux; 0 where unreadable).
fn rss_mb(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|kb| kb.parse::<u64>().ok())
                })
                .map_or(0, |kb| kb / 1024)
        })
        .collect()
}

/// `n` channels spread round-robin over the endpoints; channel i goes to endpoint i % len.
fn channels(endpoints: &[Endpoint], n: usize) -> anyhow::Result<Vec<(usize, Channel)>> {
    let n = n.max(endpoints.len());
    (0..n)
        .map(|i| {
            let e = &endpoints[i % endpoints.len()];
            Ok((
                i % endpoints.len(),
                concord_node::client::channel(&e.addr, e.tls.clone())?,
            ))
        })
        .collect()
}

/// A clue from `from` to `to` whose PushCaseRequest encodes to about `size` bytes.
fn case_request(to: &str, request_id: String, size: usize) -> PushCaseRequest {
    let mut req = PushCaseRequest {
        request_id,
        case: Some(Case {
            kind: CaseKind::Clue as i32,
            source: CaseSource::Hotline12345 as i32,
            source_ref: "12345-bench".into(),
            uscc: "91140311729YDWUJ0U".into(),
            title: "加油站夜间违规卸油".into(),
            description: String::new(),
            to: vec![to.to_string()],
            priority: Priority::Normal as i32,
            ..Default::default()
        }),
    };
    let base = req.encoded_len() + 3;
    if let Some(c) = req.case.as_mut() {
        c.description = "x".repeat(size.saturating_sub(base).max(1));
    }
    req
}

/// Where endpoint `i`'s department hands its cases: the next endpoint's department,
/// or TRANS/SAMR when there is one endpoint only.
fn receiver(endpoints: &[Endpoint], i: usize) -> String {
    if endpoints.len() > 1 {
        return endpoints[(i + 1) % endpoints.len()].department.clone();
    }
    if endpoints[i].department == "TRANS" {
        "SAMR".into()
    } else {
        "TRANS".into()
    }
}

/// `receiver` of every endpoint, by endpoint index.
fn receivers(endpoints: &[Endpoint]) -> Vec<String> {
    (0..endpoints.len())
        .map(|i| receiver(endpoints, i))
        .collect()
}

async fn run_one(
    endpoints: &[Endpoint],
    op: Op,
    args: &BenchArgs,
    clients: usize,
) -> anyhow::Result<Figures> {
    let chans = channels(endpoints, conns(args, clients))?;
    match op {
        Op::PushCase => {
            let receivers = receivers(endpoints);
            let size = args.size;
            closed_loop(
                clients,
                &chans,
                args.duration,
                move |client, (endpoint, chan), seq| {
                    let req = case_request(
                        &receivers[*endpoint],
                        format!("bench-{}-{client}-{seq}", std::process::id()),
                        size,
                    );
                    let mut c = CaseServiceClient::new(chan.clone());
                    async move { c.push_case(req).await.map(|_| ()) }
                },
            )
            .await
        }
        Op::GetLinearizable | Op::GetSerializable => {
            let ids = prefill(endpoints, &chans, args.size).await?;
            let consistency = if op == Op::GetLinearizable {
                Consistency::Linearizable
            } else {
                Consistency::Serializable
            };
            closed_loop(
                clients,
                &chans,
                args.duration,
                move |_, (endpoint, chan), seq| {
                    let mine = &ids[*endpoint];
                    let id = mine[seq as usize % mine.len()].clone();
                    let mut c = CaseServiceClient::new(chan.clone());
                    async move {
                        c.get_case(GetCaseRequest {
                            id,
                            read: Some(ReadOptions {
                                consistency: consistency as i32,
                                min_revision: 0,
                            }),
                        })
                        .await
                        .map(|_| ())
                    }
                },
            )
            .await
        }
        Op::Watch => watch_fanout(endpoints, &chans, args, clients).await,
    }
}

/// Pushes 100 cases from each endpoint's department; returns their ids per endpoint.
async fn prefill(
    endpoints: &[Endpoint],
    chans: &[(usize, Channel)],
    size: usize,
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut ids = vec![vec![]; endpoints.len()];
    for (e, ids) in ids.iter_mut().enumerate() {
        let chan = chans
            .iter()
            .find(|(i, _)| *i == e)
            .map(|(_, c)| c.clone())
            .context("a channel per endpoint")?;
        let mut c = CaseServiceClient::new(chan);
        for n in 0..100 {
            let req = case_request(
                &receiver(endpoints, e),
                format!("bench-prefill-{}-{e}-{n}", std::process::id()),
                size,
            );
            let r = c
                .push_case(req)
                .await
                .with_context(|| format!("prefilling cases at {}", endpoints[e].addr))?;
            ids.extend(r.into_inner().cases.into_iter().map(|c| c.id));
        }
    }
    Ok(ids)
}

/// Runs `clients` closed loops of `call` for one warm-up second plus `duration`
/// seconds; only calls that start after the warm-up count.
async fn closed_loop<F, Fut>(
    clients: usize,
    chans: &[(usize, Channel)],
    duration: f64,
    call: F,
) -> anyhow::Result<Figures>
where
    F: Fn(usize, &(usize, Channel), u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(1);
    let end = measure_from + Duration::from_secs_f64(duration);
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let call = Arc::new(call);
    // Each loop is a task of its own that awaits its calls in place: a client
    // costs no hand-off between threads beyond the channel's own.
    let loops: Vec<_> = (0..clients)
        .map(|client| {
            let chan = chans[client % chans.len()].clone();
            let first_error = first_error.clone();
            let errors = errors.clone();
            let call = call.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                let mut seq = 0u64;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let r = call(client, &chan, seq).await;
                    seq += 1;
                    let counted = t0 >= measure_from;
                    match r {
                        Ok(()) if counted => lat.push(t0.elapsed().as_micros() as u32),
                        Ok(()) => {}
                        Err(status) => {
                            if counted {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            locked(&first_error).get_or_insert_with(|| {
                                format!("{:?}: {}", status.code(), status.message())
                            });
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut latencies_us: Vec<u32> = vec![];
    for l in futures::future::join_all(loops).await {
        latencies_us.extend(l.context("a client loop panicked")?);
    }
    let first_error = locked(&first_error).take();
    Ok(Figures {
        ops: latencies_us.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        elapsed: end - measure_from,
        measured_from: measure_from,
        latencies_us,
    })
}

/// `watchers` streams (spread over the endpoints, CASE events) while 16 clients push
/// cases. Counts events received after the warm-up; latency is from the start of
/// the push that wrote an event's revision to its receipt by each watcher.
async fn watch_fanout(
    endpoints: &[Endpoint],
    chans: &[(usize, Channel)],
    args: &BenchArgs,
    watchers: usize,
) -> anyhow::Result<Figures> {
    let stop = Arc::new(AtomicBool::new(false));
    let received: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let mut streams = vec![];
    for w in 0..watchers {
        let (_, chan) = &chans[w % chans.len()];
        let mut c = WatchServiceClient::new(chan.clone());
        let stream = c
            .watch(WatchRequest {
                kinds: vec![RecordKind::Case as i32],
                ..Default::default()
            })
            .await
            .context("opening a watch")?
            .into_inner();
        let stop = stop.clone();
        let received = received.clone();
        streams.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut seen = vec![];
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                    Ok(Ok(Some(m))) => {
                        let now = Instant::now();
                        seen.extend(m.events.iter().map(|e| (e.revision, now)));
                    }
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
            locked(&received).extend(seen);
        }));
    }
    // Writers: 16 clients, recording when the push of each revision started.
    let started_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let writes = {
        let started_at = started_at.clone();
        let receivers = receivers(endpoints);
        let size = args.size;
        closed_loop(
            16,
            chans,
            args.duration,
            move |client, (endpoint, chan), seq| {
                let req = case_request(
                    &receivers[*endpoint],
                    format!("bench-w-{}-{client}-{seq}", std::process::id()),
                    size,
                );
                let mut c = CaseServiceClient::new(chan.clone());
                let started_at = started_at.clone();
                async move {
                    let t0 = Instant::now();
                    let r = c.push_case(req).await?;
                    if let Some(h) = r.into_inner().header {
                        locked(&started_at).insert(h.revision, t0);
                    }
                    Ok(())
                }
            },
        )
        .await?
    };
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for s in streams {
        let _ = s.await;
    }
    let started_at = locked(&started_at);
    let received = locked(&received);
    let measure_from = writes.measured_from;
    let mut latencies_us = vec![];
    for (revision, at) in received.iter() {
        if let Some(t0) = started_at.get(revision) {
            if *t0 >= measure_from {
                latencies_us.push(at.duration_since(*t0).as_micros() as u32);
            }
        }
    }
    Ok(Figures {
        ops: latencies_us.len() as u64,
        errors: writes.errors,
        first_error: writes.first_error,
        elapsed: writes.elapsed,
        measured_from: writes.measured_from,
        latencies_us,
    })
}
