//! The Docker fault campaign, bounded for CI: a three-department cluster in
//! containers built from the workspace binary, faults of every kind under a
//! workload, then the checks of [`concord_tests::campaign`]. Fails (not skips) in CI
//! when Docker is missing.

use std::time::Duration;

use concord_tests::campaign::{self, CampaignOptions};
use concord_tests::docker::require_docker;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bounded_fault_campaign_finds_no_anomaly() {
    if !require_docker() {
        return;
    }
    let seed = env_or("CONCORD_CAMPAIGN_SEED", rand::random::<u64>() % 1_000_000);
    let (report, summary) = campaign::run(CampaignOptions {
        faults: env_or("CONCORD_CAMPAIGN_FAULTS", 20),
        max_duration: Duration::from_secs(env_or("CONCORD_CAMPAIGN_SECONDS", 600)),
        seed,
    })
    .await
    .expect("campaign ran");
    println!("{summary}");
    eprintln!("{summary}");
    assert!(
        report.anomalies.is_empty(),
        "{} anomalies (rerun with CONCORD_CAMPAIGN_SEED={seed}):\n{}",
        report.anomalies.len(),
        report
            .anomalies
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The workload really ran through the faults.
    assert!(report.writes_ok > 200, "{summary}");
    assert!(report.reads_ok > 200, "{summary}");
    assert!(report.watch_events > 0, "{summary}");
}

/// The scenario `cluster::the_leader_crash_scenario_loses_nothing_in_process` runs
/// in-process; here the leader's container is killed with -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_crash_scenario_loses_nothing_in_docker() {
    if !require_docker() {
        return;
    }
    let mut cluster = concord_tests::docker::DockerCluster::start(&["SAMR", "TRANS", "JUST"])
        .await
        .expect("docker cluster");
    concord_tests::scenario::leader_crash_loses_no_acknowledged_write(&mut cluster)
        .await
        .expect("scenario");
}
