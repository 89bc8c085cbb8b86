//! `concord dev`: six `concord node` child processes, four voters and two learners (so any one can be killed and
//! restarted), a bootstrapped cluster, and ready-to-paste grpcurl commands.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::{bail, Context};
use concord_pki::ReloadingTls;
use concord_proto::cluster::v1::cluster_service_client::ClusterServiceClient;
use concord_proto::cluster::v1::{ListDepartmentsRequest, StatusRequest};
use concord_proto::common::v1::{Consistency, ReadOptions};

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
    std::fs::create_dir_all(&args.dir)?;
    let pki_dir = args.dir.join("pki");
    let identities = crate::pki::dev_identities(&DEPARTMENTS);
    let admin = identities
        .iter()
        .find(|i| i.role == concord_pki::CertRole::Admin)
        .cloned()
        .context("the dev PKI has an admin")?;
    let tls = if args.insecure_dev {
        eprintln!("WARNING: --insecure-dev: every port is PLAINTEXT and nobody is authenticated.");
        None
    } else {
        crate::pki::ensure_dev_pki(&pki_dir, &identities)
            .with_context(|| format!("creating the dev PKI in {}", pki_dir.display()))?;
        Some(crate::pki::load(&pki_dir, &admin)?)
    };
    let exe = std::env::current_exe().context("locating the concord binary")?;
    let addr = |i: usize| format!("127.0.0.1:{}", args.base_port as usize + i);
    let members: Vec<String> = (0..VOTERS)
        .map(|i| format!("{}={}@{}", i + 1, DEPARTMENTS[i], addr(i)))
        .collect();
    let mut children = vec![];
    for i in 0..DEPARTMENTS.len() {
        let data = args.dir.join(format!("node-{}", i + 1));
        let log_path = args.dir.join(format!("node-{}.log", i + 1));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut command = tokio::process::Command::new(&exe);
        if tls.is_some() {
            let node = identities
                .iter()
                .find(|id| {
                    id.department == DEPARTMENTS[i] && id.role == concord_pki::CertRole::Node
                })
                .context("the dev PKI has a node certificate per department")?;
            let files = concord_pki::layout::tls_files(&pki_dir, node);
            command
                .env("CONCORD_TLS_CA", files.ca)
                .env("CONCORD_TLS_CERT", files.cert)
                .env("CONCORD_TLS_KEY", files.key);
        } else {
            command.env("CONCORD_INSECURE", "true");
        }
        let child = command
            .arg("node")
            .env("CONCORD_NODE_ID", (i + 1).to_string())
            .env("CONCORD_DEPARTMENT", DEPARTMENTS[i])
            .env("CONCORD_LISTEN", addr(i))
            .env("CONCORD_DATA_DIR", &data)
            .env("CONCORD_BOOTSTRAP", if i == 0 { "true" } else { "false" })
            .env(
                "CONCORD_INITIAL_MEMBERS",
                if i < VOTERS {
                    members.join(",")
                } else {
                    String::new()
                },
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {}", i + 1))?;
        children.push(child);
    }
    let addrs: Vec<String> = (0..DEPARTMENTS.len()).map(addr).collect();
    // A child that exits during start (say, its port is taken) fails the start rather
    // than being masked by whatever else answers on that port.
    let started_ok = tokio::select! {
        ready = async {
            wait_ready(&addrs[..VOTERS], tls.clone(), Duration::from_secs(30)).await?;
            add_learners(&addrs, tls.clone()).await?;
            wait_ready(&addrs[VOTERS..], tls.clone(), Duration::from_secs(30)).await
        } => {
            ready.map_err(|e| anyhow::anyhow!("the dev cluster did not become ready: {e:#}"))
        }
        (i, status) = first_exit(&mut children) => {
            Err(anyhow::anyhow!("node {} exited during start ({status})", i + 1))
        }
    };
    if let Err(e) = started_ok {
        for c in &mut children {
            let _ = c.kill().await;
        }
        bail!("{e} (logs in {})", args.dir.display());
    }
    let ready_ms = started.elapsed().as_millis();
    println!(
        "Concord dev cluster ready in {ready_ms} ms (data and logs in {})",
        args.dir.display()
    );
    for (i, c) in children.iter().enumerate() {
        println!(
            "  node {}  {:<8}  {}  pid {}",
            i + 1,
            DEPARTMENTS[i],
            addr(i),
            c.id().unwrap_or(0)
        );
    }
    let flags = |dept: &str| match &tls {
        None => "-plaintext".to_string(),
        Some(_) => {
            let id = identities
                .iter()
                .find(|i| i.department == dept && i.role != concord_pki::CertRole::Node)
                .unwrap_or(&admin);
            let f = concord_pki::layout::tls_files(&pki_dir, id);
            format!(
                "-cacert {} -cert {} -key {}",
                f.ca.display(),
                f.cert.display(),
                f.key.display()
            )
        }
    };
    if tls.is_some() {
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
    for c in &mut children {
        if let Some(pid) = c.id() {
            // SIGTERM first, so nodes close their stores cleanly.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
    for c in &mut children {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
        let _ = c.kill().await;
    }
    Ok(())
}

/// Resolves when any child has exited, with its index and exit status.
async fn first_exit(children: &mut [tokio::process::Child]) -> (usize, std::process::ExitStatus) {
    loop {
        for (i, c) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                return (i, status);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ready = every node knows the leader and has applied the seeded department registry.
pub async fn wait_ready(
    addrs: &[String],
    tls: Option<Arc<ReloadingTls>>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for addr in addrs {
        loop {
            match node_ready(addr, tls.clone()).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context(format!("node at {addr}")))
                }
                Err(_) => {}
            }
            if Instant::now() > deadline {
                bail!("node at {addr} not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Adds the nodes after the voters as learners, at the leader (admin writes run
/// there only); a node that is a member already is left as it is.
async fn add_learners(addrs: &[String], tls: Option<Arc<ReloadingTls>>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in VOTERS..addrs.len() {
        loop {
            let mut first =
                ClusterServiceClient::new(concord_node::client::channel(&addrs[0], tls.clone())?);
            let status = first.status(StatusRequest {}).await?.into_inner();
            if status.members.iter().any(|m| m.node_id == i as u64 + 1) {
                break;
            }
            let leader = status.leader_id as usize;
            if leader >= 1 && leader <= VOTERS {
                let mut at_leader = ClusterServiceClient::new(concord_node::client::channel(
                    &addrs[leader - 1],
                    tls.clone(),
                )?);
                let added = at_leader
                    .add_learner(concord_proto::cluster::v1::AddLearnerRequest {
                        node_id: i as u64 + 1,
                        addr: addrs[i].clone(),
                        department: DEPARTMENTS[i].to_string(),
                        blocking: Some(true),
                    })
                    .await;
                if added.is_ok() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "could not add {} (node {}) as a learner",
                    DEPARTMENTS[i],
                    i + 1
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

async fn node_ready(addr: &str, tls: Option<Arc<ReloadingTls>>) -> anyhow::Result<bool> {
    let mut client = ClusterServiceClient::new(concord_node::client::channel(addr, tls)?);
    let status = client.status(StatusRequest {}).await?.into_inner();
    if status.leader_id == 0 {
        return Ok(false);
    }
    let read = Some(ReadOptions {
        consistency: Consistency::Serializable as i32,
        min_revision: 0,
    });
    let departments = client
        .list_departments(ListDepartmentsRequest { read })
        .await?
        .into_inner();
    Ok(!departments.departments.is_empty())
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
