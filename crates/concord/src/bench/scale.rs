//! `concord bench --local --scale RECORDS`: the scale targets of docs/performance.md,
//! measured on a fresh local cluster that has been loaded with RECORDS cases:
//! node memory and disk, a node's restart after kill -9 until it serves again, and a
//! new learner's catch-up (by snapshot, the log having been purged long before).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use concord_node::metrics::dir_size;
use concord_proto::case::v1::case_service_client::CaseServiceClient;
use concord_proto::cluster::v1::cluster_service_client::ClusterServiceClient;
use concord_proto::cluster::v1::{StatusRequest, StatusResponse};

use super::{case_request, channels, conns, receiver, rss_mb, BenchArgs, Endpoint};
use crate::local::{first_exit, wait_ready, LocalCluster, Spec};

const DEPARTMENTS: [&str; 4] = ["SAMR", "TRANS", "JUST", "ECO"];

pub async fn run(args: &BenchArgs, records: u64) -> anyhow::Result<()> {
    args.fresh_dir()?;
    // ECO's node is held back: it joins the loaded cluster as a learner.
    let mut cluster = LocalCluster::start(Spec {
        dir: &args.dir,
        departments: &DEPARTMENTS,
        voters: 3,
        base_port: args.base_port,
        insecure: args.insecure,
        env: vec![],
        later: 1,
    })
    .await?;
    let result = measure(args, records, &mut cluster).await;
    cluster.stop().await;
    result
}

async fn measure(args: &BenchArgs, records: u64, cluster: &mut LocalCluster) -> anyhow::Result<()> {
    let endpoints = (0..3)
        .map(|i| {
            Ok(Endpoint {
                department: cluster.departments[i].clone(),
                addr: cluster.addrs[i].clone(),
                tls: cluster.client_tls(&cluster.departments[i])?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "concord bench --scale {records}: 3 voters (SAMR, TRANS, JUST) on 127.0.0.1:{}-{}, ECO's node held back; {} clients load PushCase ({} bytes)",
        args.base_port,
        args.base_port + 2,
        args.clients,
        args.size
    );

    let started = Instant::now();
    let retried = load(&endpoints, args, records).await?;
    let load_s = started.elapsed().as_secs_f64();
    let head = status(cluster, 0).await?;
    for i in 0..3 {
        wait_applied(cluster, i, head.commit_index, Duration::from_secs(120)).await?;
    }
    println!(
        "scale: {records} cases loaded in {load_s:.0} s ({:.0}/s, {retried} retried), log index {}",
        records as f64 / load_s,
        head.commit_index
    );
    println!(
        "scale: rss MB {}  data MB {}  (target: rss <= 150 MB with 1,000,000 records)",
        joined(&rss_mb(&cluster.pids())),
        joined(
            &(0..3)
                .map(|i| dir_size(&args.dir.join(format!("node-{}", i + 1))) / (1024 * 1024))
                .collect::<Vec<_>>()
        ),
    );

    // A follower killed with -9 and started again on its data.
    let leader = status(cluster, 0).await?.leader_id as usize;
    let i = (0..3).find(|i| i + 1 != leader).unwrap_or(1);
    let target = status(cluster, leader.saturating_sub(1))
        .await?
        .commit_index;
    let started = Instant::now();
    cluster.kill_and_restart(i).await?;
    tokio::select! {
        ready = wait_ready(
            &cluster.addrs[i..=i],
            cluster.tls.clone(),
            Duration::from_secs(300),
        ) => ready?,
        (n, status) = first_exit(&mut cluster.children) => {
            bail!("node {} exited after its restart ({status})", n + 1)
        }
    }
    let serving = started.elapsed().as_secs_f64();
    wait_applied(cluster, i, target, Duration::from_secs(300)).await?;
    println!(
        "scale: node {} ({}) kill -9 and restart: serving in {serving:.2} s, applied to the head in {:.2} s  (target: serving <= 5 s)",
        i + 1,
        cluster.departments[i],
        started.elapsed().as_secs_f64()
    );

    // A new learner, long after the log was purged: it catches up by snapshot.
    let target = status(cluster, leader.saturating_sub(1))
        .await?
        .commit_index;
    let started = Instant::now();
    let j = cluster.start_later().await?;
    wait_applied(cluster, j, target, Duration::from_secs(600)).await?;
    let caught = started.elapsed().as_secs_f64();
    let log =
        std::fs::read_to_string(args.dir.join(format!("node-{}.log", j + 1))).unwrap_or_default();
    // A snapshot counted as failed by the leader is sent and installed again.
    let how = match log.matches("installed snapshot").count() {
        0 => "from the log".to_string(),
        1 => "by snapshot".to_string(),
        n => format!("by snapshot, installed {n} times"),
    };
    println!(
        "scale: learner {} (node {}) caught up {how} to log index {target} in {caught:.1} s  rss MB {}  (target: <= 30 s)",
        cluster.departments[j],
        j + 1,
        joined(&rss_mb(&cluster.pids())),
    );
    Ok(())
}

/// Pushes `records` cases from the endpoints' departments with `args.clients`
/// closed loops; a failed push is retried with its request id (applied once).
/// Returns how many attempts were retried.
async fn load(endpoints: &[Endpoint], args: &BenchArgs, records: u64) -> anyhow::Result<u64> {
    let chans = channels(endpoints, conns(args, args.clients))?;
    let next = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let pid = std::process::id();
    let progress = {
        let next = next.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let n = next.load(Ordering::Relaxed).min(records);
                eprintln!(
                    "  loaded {n} of {records} in {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let loops = (0..args.clients).map(|client| {
        let (endpoint, chan) = chans[client % chans.len()].clone();
        let to = receiver(endpoints, endpoint);
        let (next, retried) = (next.clone(), retried.clone());
        let size = args.size;
        tokio::spawn(async move {
            let mut c = CaseServiceClient::new(chan);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= records {
                    return Ok::<(), anyhow::Error>(());
                }
                let mut attempt = 0;
                loop {
                    let req = case_request(&to, format!("scale-{pid}-{n}"), size);
                    match c.push_case(req).await {
                        Ok(_) => break,
                        Err(e) if attempt < 20 => {
                            attempt += 1;
                            retried.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(error = %e, "push retried");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => bail!("case {n} refused 20 times: {e}"),
                    }
                }
            }
        })
    });
    let results = futures::future::join_all(loops).await;
    progress.abort();
    for r in results {
        r.context("a load task panicked")??;
    }
    Ok(retried.load(Ordering::Relaxed))
}

async fn status(cluster: &LocalCluster, i: usize) -> anyhow::Result<StatusResponse> {
    let channel = concord_node::client::channel(&cluster.addrs[i], cluster.tls.clone())?;
    Ok(ClusterServiceClient::new(channel)
        .status(StatusRequest {})
        .await
        .with_context(|| format!("Status of node {}", i + 1))?
        .into_inner())
}

/// Waits until node `i` has applied log index `index`.
async fn wait_applied(
    cluster: &mut LocalCluster,
    i: usize,
    index: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        cluster.check_running()?;
        if let Ok(s) = status(cluster, i).await {
            if s.applied_index >= index {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "node {} did not apply index {index} within {timeout:?}",
                i + 1
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn joined(v: &[u64]) -> String {
    v.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("/")
}
