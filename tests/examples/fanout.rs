//! Issue 9's fan-out target: the write rate of 3 voters alone, then with 12
//! learners added (15 nodes), each node in its own container on this machine.
//! `cargo run -p concord-tests --example fanout -- [clients=64] [seconds=10] [learner-cpu-shares]`
//! after the node image is built (`--example node_image`). With learner-cpu-shares
//! (Docker's `--cpu-shares`; 1024 is every container's default) the learners' containers
//! get that CPU weight once caught up, as read replicas placed on a voter's host
//! would be, so they run on what the voters leave; the run then prints how far the
//! learners trailed and how long they took to catch up. Runs `concord bench`
//! (the workspace's debug-profile binary, the one in the image) against the voters'
//! published ports and prints both lines, their ratio, and the CPU time each kind
//! of node spent per write: on one machine the nodes share its cores, so the
//! leader's share tells what the rate would be with a machine per department.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use concord_tests::docker::{run, workspace_binary, DockerCluster};
use concord_tests::TestPki;

const VOTERS: [&str; 3] = ["SAMR", "TRANS", "JUST"];
/// Twelve learners from the other registered departments (ECO twice: a
/// department may run more than one node).
const LEARNERS: [&str; 12] = [
    "ECO", "EMER", "HEALTH", "HOUSING", "URBAN", "AGRI", "WATER", "NDRC", "APPROVAL", "BIGDATA",
    "PSB", "ECO",
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let clients: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let learner_shares: Option<u32> = match args.get(2) {
        Some(a) => Some(a.parse().context("learner-cpu-shares: a number")?),
        None => None,
    };
    // The node defaults, as in `concord bench --local`.
    let mut cluster = DockerCluster::start_with_config(&VOTERS, "").await?;
    let leader = cluster.leader().await;
    let bench = |cluster: &DockerCluster| -> anyhow::Result<String> {
        let before = cpu_ns(cluster)?;
        let mut cmd = Command::new(workspace_binary()?);
        cmd.args(["bench", "--op", "push-case", "--pki"])
            .arg(&cluster.pki.dir)
            .args(["--clients", &clients.to_string()])
            .args(["--duration", &seconds.to_string()]);
        for (id, department) in (1u64..).zip(VOTERS) {
            cluster.pki.files(&TestPki::client(department));
            let port = cluster.ports.lock().expect("ports")[&id];
            cmd.args(["--endpoint", &format!("{department}=127.0.0.1:{port}")]);
        }
        let line = run(&mut cmd)?.trim().to_string();
        let after = cpu_ns(cluster)?;
        let writes = number_beside(&line, "ops", Side::After).context("ops in bench line")?;
        let mut per_role: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for (id, ns) in &after {
            let spent = ns.saturating_sub(before.get(id).copied().unwrap_or(0));
            per_role
                .entry(role(*id, leader))
                .or_default()
                .push(spent as f64 / 1e3 / writes);
        }
        let cpu = per_role
            .iter()
            .map(|(r, v)| {
                format!(
                    "{r} {:.0} µs{}",
                    v.iter().sum::<f64>() / v.len() as f64,
                    if v.len() > 1 { " each" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let total: f64 = per_role.values().flatten().sum();
        Ok(format!(
            "{line}\n    CPU per write: {cpu}; all nodes {total:.0} µs"
        ))
    };
    let alone = bench(&cluster)?;
    println!("3 voters:               {alone}");

    let started = Instant::now();
    for department in LEARNERS {
        cluster.add_learner(department, leader).await?;
    }
    let head = cluster.status(leader).await?.commit_index;
    catch_up(&cluster, head).await?;
    println!(
        "12 learners added and caught up to index {head} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(shares) = learner_shares {
        for (id, node) in &cluster.nodes {
            if role(*id, leader) == "learner" {
                run(Command::new("docker").args([
                    "update",
                    "--cpu-shares",
                    &shares.to_string(),
                    node.container.id(),
                ]))?;
            }
        }
        println!("learners' containers now at --cpu-shares {shares} (voters 1024)");
    }
    let fanned = bench(&cluster)?;
    println!("3 voters + 12 learners: {fanned}");
    let head = cluster.status(leader).await?.commit_index;
    let started = Instant::now();
    let trailing = catch_up(&cluster, head).await?;
    println!(
        "at the run's end the learners trailed the head ({head}) by up to {trailing} entries; caught up {:.1} s later",
        started.elapsed().as_secs_f64()
    );
    let rate = |line: &str| number_beside(line, "ops/s", Side::Before);
    if let (Some(a), Some(b)) = (rate(&alone), rate(&fanned)) {
        println!(
            "write rate with 15 nodes: {:.0} % of 3 nodes (target: >= 80 %)",
            100.0 * b / a
        );
    }
    Ok(())
}

/// Waits until every node has applied `head`; returns how many entries the
/// furthest-behind node trailed it by at the start.
async fn catch_up(cluster: &DockerCluster, head: u64) -> anyhow::Result<u64> {
    let mut trailing = 0;
    for id in cluster.ids() {
        let applied = cluster.status_within(id, Duration::from_secs(30)).await?;
        trailing = trailing.max(head.saturating_sub(applied.applied_index));
    }
    for id in cluster.ids() {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let applied = cluster
                .status_within(id, Duration::from_secs(30))
                .await?
                .applied_index;
            if applied >= head {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {id} did not catch up to {head}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(trailing)
}

enum Side {
    Before,
    After,
}

/// The number beside the word `word` in a bench line, which reads
/// `… 902 ops/s … ops 9016 …`: `Side::Before` "ops/s", `Side::After` "ops".
fn number_beside(line: &str, word: &str, side: Side) -> Option<f64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == word)?;
    let at = match side {
        Side::Before => i.checked_sub(1)?,
        Side::After => i + 1,
    };
    words.get(at)?.parse().ok()
}

/// CPU time each node's container has used so far, in ns (cgroup v1 or v2).
fn cpu_ns(cluster: &DockerCluster) -> anyhow::Result<BTreeMap<u64, u64>> {
    let mut out = BTreeMap::new();
    for (id, node) in &cluster.nodes {
        let cid = node.container.id();
        let v1 = format!("/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage");
        let v2 = format!("/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat");
        let ns = if let Ok(s) = std::fs::read_to_string(&v1) {
            s.trim().parse::<u64>()?
        } else {
            let s = std::fs::read_to_string(&v2)
                .with_context(|| format!("no CPU accounting for container {cid}"))?;
            let usec = s
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .context("usage_usec")?;
            usec.trim().parse::<u64>()? * 1000
        };
        out.insert(*id, ns);
    }
    Ok(out)
}

fn role(id: u64, leader: u64) -> &'static str {
    match id {
        _ if id == leader => "leader",
        1..=3 => "follower",
        _ => "learner",
    }
}
