//! Scenarios written once against [`Faults`] and run on both harnesses: the
//! in-process cluster (nodes in the test process, a crash is a stop) and the Docker
//! cluster (containers, a crash is kill -9). What runs in-process is quick to debug;
//! the same steps in Docker show the fix holds against real crashes.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use concord_proto::common::v1::{Consistency, ReadOptions};
use concord_proto::item::v1::item_service_client::ItemServiceClient;
use concord_proto::item::v1::{CreateItemRequest, GetItemRequest};
use tonic::transport::Channel;

use crate::item_content;

/// What a scenario may do to a cluster, whichever harness runs it.
#[allow(async_fn_in_trait)]
pub trait Faults {
    /// Member node ids.
    fn node_ids(&self) -> Vec<u64>;
    /// The department whose node `id` is.
    fn department_of(&self, id: u64) -> String;
    /// A channel to node `id` as its department's client.
    fn client(&self, id: u64) -> Channel;
    /// The leader most nodes agree on (0: none yet).
    async fn current_leader(&self) -> u64;
    /// The harshest stop the harness has: kill -9 in Docker, a stop in-process.
    async fn crash(&mut self, id: u64) -> anyhow::Result<()>;
    /// Starts a crashed node again on its data.
    async fn recover(&mut self, id: u64) -> anyhow::Result<()>;
}

impl Faults for crate::Cluster {
    fn node_ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }
    fn department_of(&self, id: u64) -> String {
        self.nodes[&id].department.clone()
    }
    fn client(&self, id: u64) -> Channel {
        self.channel(id)
    }
    async fn current_leader(&self) -> u64 {
        self.must_leader().await
    }
    async fn crash(&mut self, id: u64) -> anyhow::Result<()> {
        self.stop(id).await;
        Ok(())
    }
    async fn recover(&mut self, id: u64) -> anyhow::Result<()> {
        self.restart(id).await;
        Ok(())
    }
}

impl Faults for crate::docker::DockerCluster {
    fn node_ids(&self) -> Vec<u64> {
        self.ids()
    }
    fn department_of(&self, id: u64) -> String {
        self.nodes[&id].department.clone()
    }
    fn client(&self, id: u64) -> Channel {
        self.channel(id)
    }
    async fn current_leader(&self) -> u64 {
        self.leader().await
    }
    async fn crash(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id).await
    }
    async fn recover(&mut self, id: u64) -> anyhow::Result<()> {
        self.start_node(id).await?;
        self.wait_serving(id, Duration::from_secs(60)).await
    }
}

async fn leader_within<F: Faults>(f: &F, within: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + within;
    loop {
        let l = f.current_leader().await;
        if l != 0 {
            return Ok(l);
        }
        if Instant::now() > deadline {
            bail!("no leader within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates item `name` at node `at`, retrying with the same request id until it is
/// acknowledged (applied once, whatever the retries); returns its id.
async fn create_acknowledged<F: Faults>(f: &F, at: u64, name: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = ItemServiceClient::new(f.client(at));
    loop {
        let mut req = tonic::Request::new(CreateItemRequest {
            request_id: format!("scenario-{name}"),
            content: Some(item_content(&f.department_of(at), name)),
        });
        req.set_timeout(Duration::from_secs(5));
        match client.create_item(req).await {
            Ok(r) => {
                return r
                    .into_inner()
                    .item
                    .map(|i| i.id)
                    .context("no item in reply")
            }
            Err(e) if Instant::now() > deadline => bail!("{name} never acknowledged: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A leader crash under writes: writes at a follower go on through the crash and
/// the election, the old leader comes back, and then every acknowledged write is
/// read, linearizably, at every node, and a write before the crash was applied once
/// (its retried request id did not create a second item).
pub async fn leader_crash_loses_no_acknowledged_write<F: Faults>(f: &mut F) -> anyhow::Result<()> {
    let leader = leader_within(f, Duration::from_secs(30)).await?;
    let writer = f
        .node_ids()
        .into_iter()
        .find(|id| *id != leader)
        .context("a follower")?;
    let mut acknowledged = vec![];
    for n in 0..10 {
        acknowledged.push(create_acknowledged(f, writer, &format!("before-{n}")).await?);
    }
    f.crash(leader).await?;
    for n in 0..10 {
        acknowledged.push(create_acknowledged(f, writer, &format!("during-{n}")).await?);
    }
    f.recover(leader).await?;
    // Retrying an acknowledged request id returns the same item, not a new one.
    let again = create_acknowledged(f, writer, "before-0").await?;
    if again != acknowledged[0] {
        bail!(
            "a retried request id created {again}, not {}",
            acknowledged[0]
        );
    }
    for id in f.node_ids() {
        let mut client = ItemServiceClient::new(f.client(id));
        for item in &acknowledged {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let r = client
                    .get_item(GetItemRequest {
                        id: item.clone(),
                        version: 0,
                        read: Some(ReadOptions {
                            consistency: Consistency::Linearizable as i32,
                            min_revision: 0,
                        }),
                    })
                    .await;
                match r {
                    Ok(_) => break,
                    Err(e) if e.code() == tonic::Code::NotFound => {
                        bail!("node {id}: acknowledged {item} is missing")
                    }
                    Err(e) if Instant::now() > deadline => bail!("node {id}: reading {item}: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
    }
    Ok(())
}
