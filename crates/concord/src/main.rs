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

extern "C" {
    // mimalloc's own setter and getter, linked in with the allocator.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    #[cfg(test)]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e`.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Freed memory goes back to the system after 100 ms, not mimalloc 3's 1 s: a
/// loaded node frees memtables and apply batches continuously, and the longer
/// delay was about 10 MB of a node's RSS at 1 M records
/// (docs/performance.md, "Memory at 1 M records"). `MIMALLOC_PURGE_DELAY` set in
/// the environment wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an option mimalloc reads at each purge; no memory is touched.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 100) };
    }
}

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
    tune_allocator();
    let cli = Cli::parse();
    init_logging(&cli.log_format)?;
    // One crypto provider for the whole process (rustls cannot pick between two).
    concord_pki::install_default_provider();

    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Cmd::Node { config } => runtime()?.block_on(run_node(config)),
        Cmd::Dev(args) => runtime()?.block_on(dev::run(args)),
        Cmd::Pki(cmd) => pki::run(cmd),
        Cmd::Backup(args) => runtime()?.block_on(backup::backup(args)),
        Cmd::Restore(args) => backup::restore(args),
        Cmd::Bench(args) => args.runtime()?.block_on(bench::run(args)),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number is mimalloc's enum position: a mimalloc that renumbered
    /// its options would have the 100 set some other option.
    #[test]
    fn freed_memory_is_returned_after_100_ms_unless_the_environment_says_otherwise() {
        tune_allocator();
        // SAFETY: reads an option.
        let delay = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        match std::env::var("MIMALLOC_PURGE_DELAY") {
            Ok(v) => assert_eq!(delay.to_string(), v),
            Err(_) => assert_eq!(delay, 100),
        }
    }
}
