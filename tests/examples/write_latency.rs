//! Single-client, sequential CreateItem latency against a running cluster (e.g.
//! `concord dev`). A quick figure for development; `concord bench` is the real tool.
//!
//! cargo run -p concord-tests --example write_latency -- 127.0.0.1:7001 SAMR 1000 .concord-dev/pki
//!
//! The fourth argument is a `concord pki` directory holding `<DEPT>-client-app.pem`
//! (as `concord dev` creates); without it the connection is plaintext.

use std::time::Instant;

use concord_proto::item::v1::item_service_client::ItemServiceClient;
use concord_proto::item::v1::CreateItemRequest;
use concord_tests::item_content;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7001".into());
    let dept = args.get(2).cloned().unwrap_or_else(|| "SAMR".into());
    let n: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let tls = match args.get(4) {
        Some(dir) => {
            concord_pki::install_default_provider();
            let id = concord_pki::Identity::new(&dept, concord_pki::CertRole::Client, "app")?;
            let files = concord_pki::layout::tls_files(std::path::Path::new(dir), &id);
            Some(std::sync::Arc::new(concord_pki::ReloadingTls::load(files)?))
        }
        None => None,
    };
    let mut client = ItemServiceClient::new(concord_node::client::channel(&addr, tls)?);
    let run = uuid::Uuid::new_v4();
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let req = CreateItemRequest {
            request_id: format!("lat-{run}-{i}"),
            content: Some(item_content(&dept, &format!("事项{i}"))),
        };
        let t = Instant::now();
        client.create_item(req).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let total = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{n} sequential writes at {addr}: {:.0}/s  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        n as f64 / total,
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );
    Ok(())
}
