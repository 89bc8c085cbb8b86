//! `concord bench --local --etcd`: the anchor, etcd, measured on the same
//! machine in the same minutes and by the same load generator as Concord.
//!
//! Three etcd members (the `etcd` on PATH, 3.4 or later, as Debian's `etcd-server`)
//! start on 127.0.0.1 in `--dir`, each syncing its WAL before acknowledging, and the
//! suite's write and read lines run against them: a write is a `Put` of a new key
//! with a `--size`-byte value, a read a `Range` of one of 300 keys put beforehand,
//! linearizable or serializable. Clients, connections, warm-up and figures are those
//! of the Concord suite (`closed_loop`), so the two tables differ only in the server.
//! etcd runs without TLS, as its own benchmark does, which favours it: every Concord
//! connection is mutual TLS.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use super::{closed_loop, conns, line, rss_mb, BenchArgs, Endpoint, Op};

/// The fields of etcd's `etcdserverpb` messages that the benchmark sets or reads
/// (api/etcdserverpb/rpc.proto); prost skips the others.
#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {}

#[derive(Clone, PartialEq, prost::Message)]
struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bool, tag = "7")]
    serializable: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RangeResponse {
    #[prost(int64, tag = "4")]
    count: i64,
}

/// One unary call of etcd's KV service.
async fn call<Req, Resp>(chan: Channel, path: &'static str, req: Req) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(chan);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connection: {e}")))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    grpc.unary(
        tonic::Request::new(req),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(|r| r.into_inner())
}

async fn put(chan: Channel, key: Vec<u8>, value: Vec<u8>) -> Result<(), tonic::Status> {
    call::<_, PutResponse>(chan, "/etcdserverpb.KV/Put", PutRequest { key, value })
        .await
        .map(|_| ())
}

async fn get(chan: Channel, key: Vec<u8>, serializable: bool) -> Result<(), tonic::Status> {
    let r: RangeResponse = call(
        chan,
        "/etcdserverpb.KV/Range",
        RangeRequest { key, serializable },
    )
    .await?;
    // A read that finds nothing would measure a miss, not a read.
    match r.count {
        1 => Ok(()),
        n => Err(tonic::Status::not_found(format!("{n} keys"))),
    }
}

/// Three etcd members on 127.0.0.1: clients on `base_port`.., peers on `base_port + 10`..
struct EtcdCluster {
    members: Vec<tokio::process::Child>,
    addrs: Vec<String>,
}

impl EtcdCluster {
    async fn start(dir: &Path, base_port: u16) -> anyhow::Result<EtcdCluster> {
        let names = ["m1", "m2", "m3"];
        let peer = |i: usize| format!("http://127.0.0.1:{}", base_port + 10 + i as u16);
        let initial: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}={}", peer(i)))
            .collect();
        let mut members = vec![];
        let mut addrs = vec![];
        for (i, name) in names.iter().enumerate() {
            let addr = format!("127.0.0.1:{}", base_port + i as u16);
            let log = std::fs::File::create(dir.join(format!("{name}.log")))
                .with_context(|| format!("creating {}", dir.display()))?;
            let child = tokio::process::Command::new("etcd")
                .args(["--name", name, "--data-dir"])
                .arg(dir.join(name))
                .args(["--listen-client-urls", &format!("http://{addr}")])
                .args(["--advertise-client-urls", &format!("http://{addr}")])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "concord-bench"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .context("starting `etcd` (is etcd-server installed and on PATH?)")?;
            members.push(child);
            addrs.push(addr);
        }
        let cluster = EtcdCluster { members, addrs };
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Until a put succeeds at every member: a leader is elected and each member
    /// reaches it.
    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for addr in &self.addrs {
            let chan = concord_node::client::channel(addr, None)?;
            loop {
                match put(chan.clone(), b"bench-ready".to_vec(), vec![]).await {
                    Ok(()) => break,
                    Err(e) if Instant::now() > deadline => {
                        bail!("etcd at {addr} not ready after {timeout:?}: {e}")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|c| c.id()).collect()
    }

    async fn stop(&mut self) {
        for c in &mut self.members {
            let _ = c.kill().await;
        }
    }
}

/// The lines of the standard suite that etcd has a counterpart for.
const SUITE: [(Op, usize); 5] = [
    (Op::PushCase, 1),
    (Op::PushCase, 64),
    (Op::PushCase, 256),
    (Op::GetLinearizable, 64),
    (Op::GetSerializable, 64),
];

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    args.fresh_dir()?;
    let started = Instant::now();
    let mut cluster = EtcdCluster::start(&args.dir, args.base_port).await?;
    println!(
        "concord bench: etcd, 3 members on 127.0.0.1:{}-{} (plaintext, fsync per commit), ready in {} ms; {} cores",
        args.base_port,
        args.base_port + 2,
        started.elapsed().as_millis(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let runs: Vec<(Op, usize)> = match args.op {
        Some(Op::Watch) => bail!("--etcd has no watch run"),
        Some(op) => vec![(op, args.clients)],
        None => SUITE.to_vec(),
    };
    let result = suite(&cluster, args, &runs).await;
    cluster.stop().await;
    result
}

async fn suite(
    cluster: &EtcdCluster,
    args: &BenchArgs,
    runs: &[(Op, usize)],
) -> anyhow::Result<()> {
    let endpoints: Vec<Endpoint> = cluster
        .addrs
        .iter()
        .map(|a| Endpoint {
            department: String::new(),
            addr: a.clone(),
            tls: None,
        })
        .collect();
    let value = vec![b'x'; args.size];
    let keys: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("bench-read-{i}").into_bytes())
        .collect();
    let first = concord_node::client::channel(&cluster.addrs[0], None)?;
    for k in &keys {
        put(first.clone(), k.clone(), value.clone())
            .await
            .context("putting the keys the reads read")?;
    }
    for &(op, clients) in runs {
        let chans = super::channels(&endpoints, conns(args, clients))?;
        let pid = std::process::id();
        let figures = match op {
            Op::PushCase => {
                let value = value.clone();
                closed_loop(
                    clients,
                    &chans,
                    args.duration,
                    move |client, (_, chan), seq| {
                        let key = format!("bench-{pid}-{client}-{seq}").into_bytes();
                        put(chan.clone(), key, value.clone())
                    },
                )
                .await?
            }
            Op::GetLinearizable | Op::GetSerializable => {
                let keys = keys.clone();
                let serializable = op == Op::GetSerializable;
                closed_loop(clients, &chans, args.duration, move |_, (_, chan), seq| {
                    let key = keys[seq as usize % keys.len()].clone();
                    get(chan.clone(), key, serializable)
                })
                .await?
            }
            Op::Watch => bail!("--etcd has no watch run"),
        };
        let rss = rss_mb(&cluster.pids());
        println!(
            "{}",
            line(
                &label(op),
                clients,
                conns(args, clients),
                &figures,
                Some(&rss)
            )
        );
    }
    Ok(())
}

/// What etcd ran in place of each Concord operation.
fn label(op: Op) -> &'static str {
    match op {
        Op::PushCase => "etcd Put",
        Op::GetLinearizable => "etcd RangeLinear",
        Op::GetSerializable => "etcd RangeSerial",
        Op::Watch => "etcd Watch",
    }
}
