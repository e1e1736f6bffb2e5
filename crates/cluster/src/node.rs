//! One node of a cluster (`missive serve --cluster`): its lease keeper, its partitions' owners,
//! and the log its ingest appends to.
//!
//! - The **keeper** claims, renews and gives up leases (`keeper`, `plan`).
//! - The **owners** follow what the keeper holds: an owner starts for every partition held
//!   and stops for every one given up. A lease given up on purpose (balance, leaving) is
//!   handed over: the owner stops, the engine checkpoints the partition under the lease still
//!   held, and only then is the lease released. A lease that ran out (the node was cut off or
//!   paused) is dropped: the engine forgets the partition and the next owner replays it from
//!   the store and the log. A lease renewed as a new tenure is treated as lost and taken on
//!   again, since another node may have owned it in between.
//! - **Ingest** on this node appends to the log (`Engine::set_log`) instead of folding here.
//! - **Saved segments** are followed: one saved or deleted through another node's API is taken
//!   on here within a second, and backfilled over this node's partitions.
//! - **The sending side** runs on one node of the cluster at a time, the one holding the
//!   `sending` lease (`service`); [`Node::sending`] says when this node does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use missive_engine::Engine;
use missive_store::{Fence, LeaderFence};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::keeper::{Held, Keeper};
use crate::leases::{self, LeaseError, Leases};
use crate::log::{ClusterLog, LogConfig, LogError, connect_jetstream};
use crate::owner;
use crate::partition::{Partition, PartitionCount};
use crate::router::Router;
use crate::seal::LogSeal;
use crate::service::{self, SENDING, ServiceLease};

/// A node's settings (`[cluster]` in missive.toml, with the store's PostgreSQL).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub log: LogConfig,
    /// This node's name: unique in the cluster and stable across its restarts.
    pub node: String,
    /// Where this node's HTTP API listens, for `missive cluster status`.
    pub address: String,
    pub partitions: PartitionCount,
    pub lease_ttl: Duration,
    /// Messages an owner reads per batch.
    pub batch: usize,
    /// The store's PostgreSQL and schema: the leases live beside the data.
    pub postgres_url: String,
    pub schema: Option<String>,
    /// The key file, when the store is encrypted: the log's records are sealed under the
    /// cluster's log key, wrapped by it (`seal`).
    pub keyring: Option<Arc<missive_privacy::Keyring>>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cluster leases: {0}")]
    Leases(#[from] LeaseError),
    #[error("connecting to PostgreSQL for the leases: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the cluster's log: {0}")]
    Log(#[from] LogError),
    #[error("the engine: {0}")]
    Engine(String),
}

/// A running node.
pub struct Node {
    stop: watch::Sender<bool>,
    keeper: JoinHandle<Result<(), LeaseError>>,
    supervisor: JoinHandle<()>,
    sending: watch::Receiver<Option<LeaderFence>>,
    sending_holder: JoinHandle<()>,
    definitions: JoinHandle<()>,
}

/// How often a node looks for segments saved and models activated through another node.
const DEFINITIONS_EVERY: Duration = Duration::from_secs(1);

/// Follows the segments saved, the models activated and the people erased through any
/// node's API: every [`DEFINITIONS_EVERY`], the store's are compared with those the engine
/// uses, and new or changed ones are taken on and backfilled (scored) over this node's
/// partitions (`missive_engine::segments::follow_saved`,
/// `missive_engine::models::follow_active`, `Engine::refresh_erased`).
async fn follow_definitions(engine: Engine, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DEFINITIONS_EVERY) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(e) = missive_engine::segments::follow_saved(&engine).await {
            tracing::warn!(error = %e, "cluster: taking on the saved segments failed; retrying");
        }
        if let Err(e) = missive_engine::models::follow_active(&engine).await {
            tracing::warn!(error = %e, "cluster: taking on the active models failed; retrying");
        }
        if let Err(e) = engine.refresh_erased().await {
            tracing::warn!(error = %e, "cluster: reading the erased identities failed; retrying");
        }
    }
}

/// The owners running on this node, by partition, with their tenure's token.
#[derive(Clone)]
struct Owners {
    running: Arc<Mutex<BTreeMap<Partition, Running>>>,
    js: jetstream::Context,
    log: LogConfig,
    engine: Engine,
    seal: Option<Arc<LogSeal>>,
    node: String,
    batch: usize,
}

struct Running {
    token: i64,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), owner::OwnerError>>,
}

impl Owners {
    async fn start(&self, running: &mut BTreeMap<Partition, Running>, partition: Partition, token: i64) {
        let fence = Fence {
            node: self.node.clone(),
            partition,
            token,
        };
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(owner::run(
            self.js.clone(),
            self.log.clone(),
            self.engine.clone(),
            self.seal.clone(),
            fence,
            self.batch,
            stop_rx,
        ));
        running.insert(partition, Running { token, stop, task });
    }

    /// Stops a partition's owner; `lost`: the lease is gone, so nothing more is committed for
    /// it, else the engine checkpoints it first.
    async fn stop(&self, running: &mut BTreeMap<Partition, Running>, partition: Partition, lost: bool) {
        let Some(r) = running.remove(&partition) else {
            return;
        };
        let _ = r.stop.send(true);
        match r.task.await {
            Ok(Err(e)) => tracing::warn!(partition, error = %e, "cluster: the partition's owner had stopped"),
            Err(e) => tracing::error!(partition, error = %e, "cluster: the partition's owner failed"),
            Ok(Ok(())) => {}
        }
        match self.engine.disown(partition, lost).await {
            Ok(()) if lost => tracing::warn!(
                partition,
                "cluster: partition lost; what was not committed is left to its next owner"
            ),
            Ok(()) => tracing::info!(partition, "cluster: partition handed over"),
            Err(e) => tracing::error!(partition, error = %e, "cluster: giving the partition up failed"),
        }
    }

    /// Makes the running owners match what the keeper holds, read once the owners' lock is
    /// taken (a hand-over holds it while the keeper has already published the release).
    async fn follow(&self, held: &watch::Receiver<Held>) {
        let mut running = self.running.lock().await;
        let held = held.borrow().clone();
        let held = &held;
        let gone: Vec<Partition> = running
            .iter()
            .filter(|(p, r)| held.get(p) != Some(&r.token) || r.task.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for p in gone {
            // A finished owner whose lease is still held is started again below.
            self.stop(&mut running, p, true).await;
        }
        for (p, token) in held {
            if !running.contains_key(p) {
                self.start(&mut running, *p, *token).await;
            }
        }
        metrics::gauge!("missive_cluster_partitions_owned").set(running.len() as f64);
    }

    async fn hand_over(&self, partition: Partition) {
        let mut running = self.running.lock().await;
        self.stop(&mut running, partition, false).await;
    }
}

impl Node {
    /// Joins the cluster: opens the leases (creating the cluster's tables on first use),
    /// connects the log, points the engine's ingest at it, and starts the keeper and owners.
    /// The engine must have been started with `EngineConfig::cluster`.
    pub async fn start(config: NodeConfig, engine: Engine) -> Result<Node, NodeError> {
        if !engine.config().cluster {
            return Err(NodeError::Engine(
                "the engine was not started in cluster mode".into(),
            ));
        }
        let client = leases::connect(&config.postgres_url, config.schema.as_deref()).await?;
        let leases = Leases::open(client, config.partitions).await?;
        let client = leases::connect(&config.postgres_url, config.schema.as_deref()).await?;
        let sending_lease = ServiceLease::open(client, SENDING, &config.node, config.lease_ttl).await?;
        let seal = match &config.keyring {
            Some(keyring) => Some(Arc::new(
                LogSeal::open_or_create(engine.store(), keyring)
                    .await
                    .map_err(|e| NodeError::Engine(e.to_string()))?,
            )),
            None => None,
        };
        let router = Router::new(engine.store().clone(), config.partitions);
        let log = ClusterLog::connect(config.log.clone(), router, seal.clone()).await?;
        engine
            .set_log(Arc::new(log))
            .map_err(|e| NodeError::Engine(e.to_string()))?;
        let js = connect_jetstream(&config.log, "missive-cluster-owners").await?;
        let owners = Owners {
            running: Arc::new(Mutex::new(BTreeMap::new())),
            js,
            log: config.log.clone(),
            engine,
            seal,
            node: config.node.clone(),
            batch: config.batch.clamp(1, 10_000),
        };
        let mut keeper = Keeper::new(
            leases,
            config.node.clone(),
            config.address.clone(),
            config.lease_ttl,
        );
        let hook_owners = owners.clone();
        keeper.on_release(Arc::new(move |p| {
            let owners = hook_owners.clone();
            Box::pin(async move { owners.hand_over(p).await })
        }));
        let mut held = keeper.watch();
        let (stop, stop_rx) = watch::channel(false);
        let (sending_tx, sending) = watch::channel(None);
        let sending_holder = tokio::spawn(service::hold(sending_lease, stop_rx.clone(), sending_tx));
        let keeper = tokio::spawn(keeper.run(stop_rx.clone()));
        let definitions = tokio::spawn(follow_definitions(owners.engine.clone(), stop_rx.clone()));
        let mut stop_supervisor = stop_rx;
        let supervisor = tokio::spawn(async move {
            // Also every second: an owner that stopped by itself is started again.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    changed = held.changed() => if changed.is_err() { break },
                    _ = tick.tick() => {}
                    _ = stop_supervisor.changed() => break,
                }
                held.mark_unchanged();
                owners.follow(&held).await;
            }
            // Leaving: the keeper hands every partition over before releasing it; whatever
            // is still running after that has lost its lease.
            let _ = held.wait_for(|h| h.is_empty()).await;
            owners.follow(&held).await;
        });
        tracing::info!(node = %config.node, partitions = config.partitions.get(), "cluster: node started");
        Ok(Node {
            stop,
            keeper,
            supervisor,
            sending,
            sending_holder,
            definitions,
        })
    }

    /// The sending lease's fence while this node holds it (`None` while another does): the
    /// sending side runs here only while it is `Some`, and its journey and outbox writes are
    /// made under it (`DeliveryStore::set_leader_fence`).
    pub fn sending(&self) -> watch::Receiver<Option<LeaderFence>> {
        self.sending.clone()
    }

    /// Leaves the cluster: every partition is handed over (checkpointed, then released).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.sending_holder.await;
        let _ = self.definitions.await;
        match self.keeper.await {
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster: leaving failed; the leases run out by themselves")
            }
            Err(e) => tracing::error!(error = %e, "cluster: the lease keeper failed"),
            Ok(Ok(())) => {}
        }
        let _ = self.supervisor.await;
    }
}
