//! `concord backup` (an online, consistent backup of a running node, to a
//! checksummed file) and `concord restore` (a new cluster's first data directory
//! from such a file).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use concord_proto::cluster::v1::cluster_service_client::ClusterServiceClient;
use concord_proto::cluster::v1::BackupRequest;
use sha2::Digest;

#[derive(Args)]
pub struct BackupArgs {
    /// The node to back up (host:port); any member will do.
    #[arg(long)]
    addr: String,
    /// CA bundle, admin certificate and key (PEM).
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// Where to write the backup.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A file written by `concord backup`.
    #[arg(long)]
    from: PathBuf,
    /// The new node's data directory (must be empty or absent).
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    node_id: u64,
    #[arg(long)]
    department: String,
    /// host:port other nodes will reach the new node at.
    #[arg(long)]
    advertise: String,
    /// Revisions to skip: the restored cluster continues at the backup's revision
    /// plus this, and Watch history before that is OUT_OF_RANGE. Make it larger than
    /// the revisions the old cluster applied after the backup.
    #[arg(long, default_value_t = 1_000_000)]
    skip: u64,
}

pub async fn backup(a: BackupArgs) -> anyhow::Result<()> {
    let tls = concord_pki::ReloadingTls::load(concord_pki::TlsFiles {
        ca: a.ca,
        cert: a.cert,
        key: a.key,
    })
    .context("loading the admin certificate")?;
    let channel = concord_node::client::channel(&a.addr, Some(std::sync::Arc::new(tls)))?;
    let mut client = ClusterServiceClient::new(channel);
    let mut stream = client.backup(BackupRequest {}).await?.into_inner();
    let tmp = a.out.with_extension("partial");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut hash = sha2::Sha256::new();
    let (mut total, mut revision, mut expected) = (0u64, 0u64, None);
    while let Some(chunk) = stream.message().await? {
        revision = chunk.revision;
        hash.update(&chunk.data);
        file.write_all(&chunk.data)?;
        total += chunk.data.len() as u64;
        if !chunk.sha256.is_empty() {
            expected = Some((chunk.sha256, chunk.total_bytes));
        }
    }
    let Some((sha, bytes)) = expected else {
        bail!("the stream ended before the final chunk: the backup is incomplete");
    };
    let got = hex::encode(hash.finalize());
    if got != sha || total != bytes {
        bail!("transfer corrupted: {total} bytes with SHA-256 {got}, expected {bytes} bytes {sha}");
    }
    file.sync_all()?;
    drop(file);
    // The file's own structure and checksum, as a restore will check them.
    concord_store::snapshot::verify(&tmp).context("verifying the backup")?;
    std::fs::rename(&tmp, &a.out)?;
    println!(
        "backup of revision {revision}: {} ({total} bytes, sha256 {sha})",
        a.out.display()
    );
    Ok(())
}

pub fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    concord_domain::validate::department_code("department", &a.department)?;
    let r = concord_store::state_machine::restore(
        &a.data_dir,
        &a.from,
        a.node_id,
        concord_store::NodeInfo {
            addr: a.advertise.clone(),
            department: a.department.clone(),
        },
        a.skip,
    )?;
    println!(
        "restored revision {} into {} ({} records); the new cluster continues at revision {}",
        r.backup_revision,
        a.data_dir.display(),
        r.entries,
        r.base_revision + 1
    );
    println!(
        "start it as node {} of {} (no bootstrap, the same data_dir and advertise {}); add the other departments' nodes as learners",
        a.node_id, a.department, a.advertise
    );
    Ok(())
}
