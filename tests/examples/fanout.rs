//! Issue 9's fan-out target: the write rate of 3 voters alone, then with 12
//! learners added (15 nodes), each node in its own container on this machine.
//! `cargo run -p concord-tests --example fanout -- [clients=64] [seconds=10]`
//! after the node image is built (`--example node_image`). Runs `concord bench`
//! (the workspace's debug-profile binary, the one in the image) against the voters'
//! published ports and prints both lines and their ratio.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use concord_tests::docker::{workspace_binary, DockerCluster};
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
    // The node defaults, as in `concord bench --local`.
    let mut cluster = DockerCluster::start_with_config(&VOTERS, "").await?;
    let bench = |cluster: &DockerCluster| -> anyhow::Result<String> {
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
        let out = cmd.output().context("running concord bench")?;
        if !out.status.success() {
            bail!("concord bench: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let alone = bench(&cluster)?;
    println!("3 voters:               {alone}");

    let leader = cluster.leader().await;
    let started = Instant::now();
    for department in LEARNERS {
        cluster.add_learner(department, leader).await?;
    }
    let head = cluster.status(leader).await?.commit_index;
    for id in cluster.ids() {
        let deadline = Instant::now() + Duration::from_secs(300);
        while cluster.status_within(id, Duration::from_secs(30)).await?.applied_index < head {
            if Instant::now() > deadline {
                bail!("node {id} did not catch up to {head}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!(
        "12 learners added and caught up to index {head} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let fanned = bench(&cluster)?;
    println!("3 voters + 12 learners: {fanned}");
    let rate = |line: &str| -> Option<f64> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| *w == "ops/s")?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    if let (Some(a), Some(b)) = (rate(&alone), rate(&fanned)) {
        println!(
            "write rate with 15 nodes: {:.0} % of 3 nodes (target: >= 80 %)",
            100.0 * b / a
        );
    }
    Ok(())
}
