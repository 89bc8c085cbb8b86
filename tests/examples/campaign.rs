//! The long fault campaign: `cargo run -p concord-tests --example campaign --
//! [faults=100] [minutes=60] [seed]`. Prints one summary line; exits 1 on any anomaly.

use std::time::Duration;

use concord_tests::campaign::{self, CampaignOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let options = CampaignOptions {
        faults: num(0, 100) as usize,
        max_duration: Duration::from_secs(num(1, 60) * 60),
        seed: num(2, rand::random::<u64>() % 1_000_000),
    };
    let (report, summary) = campaign::run(options).await?;
    for a in report.anomalies.iter().take(50) {
        eprintln!("ANOMALY: {a}");
    }
    if report.anomalies.len() > 50 {
        eprintln!("… and {} more", report.anomalies.len() - 50);
    }
    println!("{summary}");
    if !report.anomalies.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
