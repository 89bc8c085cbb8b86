//! The `concord` command: `node` runs one production node; `dev` runs a local
//! six-department cluster with embedded defaults; `pki` issues certificates;
//! `backup` and `restore`.

mod backup;
mod bench;
mod dev;
mod local;
mod pki;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

// glibc malloc was a tenth of a loaded node's CPU (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "concord",
    version,
    about = "Concord: replicated supervision data exchange between government departments"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(
        long,
        global = true,
        env = "CONCORD_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node from a TOML file, overridden by CONCORD_* environment variables.
    Node {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a local cluster of six departments on 127.0.0.1:7001-7006 (SAMR, TRANS, JUST, NDRC vote; PSB, APPROVAL learn).
    Dev(dev::DevArgs),
    /// Create a CA and issue node, client and admin certificates.
    #[command(subcommand)]
    Pki(pki::PkiCmd),
    /// Back up a running node (online, consistent) to a checksummed file.
    Backup(backup::BackupArgs),
    /// Build a new cluster's first data directory from a backup.
    Restore(backup::RestoreArgs),
    /// Closed-loop load against a cluster (or a fresh local one): ops/s and latency.
    Bench(bench::BenchArgs),
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,h2=warn,tower=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format must be text or json, not {other:?}"),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format)?;
    // One crypto provider for the whole process (rustls cannot pick between two).
    concord_pki::install_default_provider();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Node { config } => runtime.block_on(run_node(config)),
        Cmd::Dev(args) => runtime.block_on(dev::run(args)),
        Cmd::Pki(cmd) => pki::run(cmd),
        Cmd::Backup(args) => runtime.block_on(backup::backup(args)),
        Cmd::Restore(args) => backup::restore(args),
        Cmd::Bench(args) => runtime.block_on(bench::run(args)),
    }
}

async fn run_node(path: Option<PathBuf>) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CONCORD_"))
        .collect();
    let config = concord_node::NodeConfig::load(path.as_deref(), &env).context("configuration")?;
    let node = concord_node::start(config)
        .await
        .context("starting the node")?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
