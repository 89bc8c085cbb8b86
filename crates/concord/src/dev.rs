//! `concord dev`: six `concord node` child processes, four voters and two learners (so any one can be killed and
//! restarted), a bootstrapped cluster, and ready-to-paste grpcurl commands.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::local::{LocalCluster, Spec};

#[derive(clap::Args)]
pub struct DevArgs {
    /// Wipe the data directory first.
    #[arg(long)]
    fresh: bool,
    /// Where the nodes keep their data and logs.
    #[arg(long, default_value = ".concord-dev")]
    dir: PathBuf,
    /// Port of the first node; the others use the next ones.
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Run every port in PLAINTEXT, without certificates. For debugging only.
    #[arg(long)]
    insecure_dev: bool,
}

/// Market regulation (leads items, registers entities), transport (cooperates),
/// justice (legality review) and development & reform (credit authority).
/// The public security bureau (a judicial organ, for 行刑衔接) and the approval
/// bureau (licensing, for 审管联动) join as learners.
const DEPARTMENTS: [&str; 6] = ["SAMR", "TRANS", "JUST", "NDRC", "PSB", "APPROVAL"];
/// The first four vote.
const VOTERS: usize = 4;

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("wiping {}", args.dir.display()))?;
    }
    if args.insecure_dev {
        eprintln!("WARNING: --insecure-dev: every port is PLAINTEXT and nobody is authenticated.");
    }
    let mut cluster = LocalCluster::start(Spec {
        dir: &args.dir,
        departments: &DEPARTMENTS,
        voters: VOTERS,
        base_port: args.base_port,
        insecure: args.insecure_dev,
        env: vec![],
        later: 0,
    })
    .await?;
    let ready_ms = started.elapsed().as_millis();
    println!(
        "Concord dev cluster ready in {ready_ms} ms (data and logs in {})",
        args.dir.display()
    );
    let addr = |i: usize| cluster.addrs[i].clone();
    for (i, c) in cluster.children.iter().enumerate() {
        println!(
            "  node {}  {:<8}  {}  pid {}",
            i + 1,
            DEPARTMENTS[i],
            addr(i),
            c.id().unwrap_or(0)
        );
    }
    let pki_dir = &cluster.pki_dir;
    let flags = |dept: &str| match &cluster.tls {
        None => "-plaintext".to_string(),
        Some(_) => {
            let id = cluster
                .identities
                .iter()
                .find(|i| i.department == dept && i.role != concord_pki::CertRole::Node)
                .unwrap_or(&cluster.admin);
            let f = concord_pki::layout::tls_files(pki_dir, id);
            format!(
                "-cacert {} -cert {} -key {}",
                f.ca.display(),
                f.cert.display(),
                f.key.display()
            )
        }
    };
    if cluster.tls.is_some() {
        println!(
            "\nMutual TLS on every port. Certificates are in {} (CA, one node and one client\ncertificate per department, and an admin certificate for BIGDATA).",
            pki_dir.display()
        );
    }
    print_examples(
        [
            (addr(0), flags("SAMR")),
            (addr(1), flags("TRANS")),
            (addr(2), flags("JUST")),
        ],
        &flags("BIGDATA"),
    );
    print_credit_examples(
        &addr(0),
        &flags("SAMR"),
        &addr(3),
        &flags("NDRC"),
        &addr(1),
        &flags("TRANS"),
    );
    println!("\nCtrl-C stops the cluster. Kill one node's pid to see the others carry on; run `concord dev` again (without --fresh) to bring it back with its data.");
    crate::shutdown_signal().await;
    cluster.stop().await;
    Ok(())
}

/// grpcurl commands for the running cluster; `nodes` are (address, grpcurl TLS flags)
/// of SAMR, TRANS and JUST, `admin` the flags of the admin certificate.
fn print_examples(nodes: [(String, String); 3], admin: &str) {
    let [(samr, s), (trans, t), (just, j)] = nodes;
    println!(
        r#"
With grpcurl (no .proto files needed; each department's systems use its own node):

  grpcurl {s} {samr} list
  grpcurl {s} {samr} concord.cluster.v1.ClusterService/Status
  grpcurl {t} {trans} concord.cluster.v1.ClusterService/ListDepartments
  grpcurl {admin} {just} concord.cluster.v1.ClusterService/AuditHead

  # Follow changes at the transport bureau's node (leave running in another terminal)
  grpcurl {t} -d '{{"kinds":["ITEM"]}}' {trans} concord.watch.v1.WatchService/Watch

  # Market regulation drafts an item it leads, with transport cooperating
  grpcurl {s} -d '{{"request_id":"demo-1","content":{{"name":"成品油流通","field":"refined_oil",
    "lead":{{"department":"SAMR","duty":"质量监管","legal_basis":"《产品质量法》"}},
    "cooperating":[{{"department":"TRANS","duty":"运输监管","legal_basis":"《道路运输条例》"}}],
    "targets":"加油站、油库","level":"CITY","methods":["DOUBLE_RANDOM"],"public":true}}}}' \
    {samr} concord.item.v1.ItemService/CreateItem

  # Submit it, have the justice bureau approve it, publish it (use the id returned above)
  grpcurl {s} -d '{{"id":"ITEM_ID"}}' {samr} concord.item.v1.ItemService/SubmitForReview
  grpcurl {j} -d '{{"id":"ITEM_ID","approve":true,"opinion":"合法"}}' {just} concord.item.v1.ItemService/ReviewItem
  grpcurl {s} -d '{{"id":"ITEM_ID"}}' {samr} concord.item.v1.ItemService/PublishItem
  grpcurl {t} -d '{{"status":"PUBLISHED"}}' {trans} concord.item.v1.ItemService/ListItems"#
    );
}

/// grpcurl commands for the entity directory and credit tiers.
fn print_credit_examples(samr: &str, s: &str, ndrc: &str, n: &str, trans: &str, t: &str) {
    println!(
        r#"

  # Market regulation registers an entity; transport records a violation it found;
  # everyone reads the tier (and so the sampling ratio) that follows
  grpcurl {s} -d '{{"entity":{{"uscc":"91140311729YDWUJ0U","name":"郊区成品油经营有限公司","district":"郊区",
    "industry":"refined_oil","licence":"ACTIVE"}}}}' {samr} concord.entity.v1.EntityService/RegisterEntity
  grpcurl {t} -d '{{"record":{{"uscc":"91140311729YDWUJ0U","kind":"VIOLATION","severity":"SERIOUS",
    "description":"超载运输危险品","legal_basis":"《道路危险货物运输管理规定》","effective_ms":"'$(date +%s000)'"}}}}' \
    {trans} concord.credit.v1.CreditService/RecordCredit
  grpcurl {s} -d '{{"uscc":"91140311729YDWUJ0U"}}' {samr} concord.credit.v1.CreditService/GetTier

  # The credit authority reads and changes the tier policy
  grpcurl {n} {ndrc} concord.credit.v1.CreditService/GetTierPolicy"#
    );
}
