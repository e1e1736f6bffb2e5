//! A node's lease keeper: every round it beats its heart, renews what it holds, gives up what
//! is above its fair share and claims what has no live owner (`plan`). What it holds is
//! published on a watch channel for the partition owners to follow.
//!
//! **Timing.** A lease lasts `ttl` (database time). A round runs every `ttl / 3`. The keeper
//! counts a lease as its own only until `ttl - ttl / 5` after the moment it *asked* for it
//! (a monotonic instant taken before the request), so that a renewal answered late, or a
//! process paused between rounds, stops counting a lease before the database lets anyone else
//! take it. A dead node's partitions are free `ttl` after its last renewal and claimed within
//! one more round: with the default 6 s, within 8 s.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::leases::{Fence, LeaseError, Leases};
use crate::partition::Partition;
use crate::plan::plan;

/// How long a lease lasts unless configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(6);

/// The partitions a node holds now, with their tenure's token.
pub type Held = BTreeMap<Partition, i64>;

/// What runs before a lease is given up on purpose (balance, leaving): the partition's owner
/// stops and checkpoints under the lease it still holds, so the next owner replays nothing.
pub type ReleaseHook = Arc<dyn Fn(Partition) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One node's keeper.
pub struct Keeper {
    leases: Leases,
    node: String,
    address: String,
    ttl: Duration,
    /// Each lease held, with the instant it stops counting here.
    held: BTreeMap<Partition, (i64, Instant)>,
    tx: watch::Sender<Held>,
    before_release: Option<ReleaseHook>,
}

impl Keeper {
    pub fn new(leases: Leases, node: impl Into<String>, address: impl Into<String>, ttl: Duration) -> Self {
        Keeper {
            leases,
            node: node.into(),
            address: address.into(),
            ttl,
            held: BTreeMap::new(),
            tx: watch::channel(Held::new()).0,
            before_release: None,
        }
    }

    /// Runs `hook` before each lease given up on purpose.
    pub fn on_release(&mut self, hook: ReleaseHook) {
        self.before_release = Some(hook);
    }

    async fn hand_over(&self, partition: Partition) {
        if let Some(hook) = &self.before_release {
            hook(partition).await;
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// What this node holds, as it changes.
    pub fn watch(&self) -> watch::Receiver<Held> {
        self.tx.subscribe()
    }

    /// What this node holds now (leases past their local deadline left out).
    pub fn held(&self) -> Held {
        let now = Instant::now();
        self.held
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(p, (t, _))| (*p, *t))
            .collect()
    }

    /// The fence a write for `partition` carries, if this node holds it.
    pub fn fence(&self, partition: Partition) -> Option<Fence> {
        self.held().get(&partition).map(|token| Fence {
            node: self.node.clone(),
            partition,
            token: *token,
        })
    }

    fn counts_until(&self, asked: Instant) -> Instant {
        asked + self.ttl - self.ttl / 5
    }

    /// One round: heartbeat, renewals, the plan's releases and claims. A failed renewal drops
    /// the lease here at once.
    pub async fn round(&mut self) -> Result<(), LeaseError> {
        let result = self.round_inner().await;
        // Whatever happened, stop counting what ran out.
        let now = Instant::now();
        self.held.retain(|_, (_, until)| *until > now);
        self.tx.send_replace(self.held());
        result
    }

    async fn round_inner(&mut self) -> Result<(), LeaseError> {
        self.leases.heartbeat(&self.node, &self.address).await?;
        let mine: Vec<Partition> = self.held.keys().copied().collect();
        if !mine.is_empty() {
            let asked = Instant::now();
            let renewed = self.leases.renew(&self.node, &mine, self.ttl).await?;
            let until = self.counts_until(asked);
            for p in mine {
                match renewed.iter().find(|l| l.partition == p) {
                    Some(lease) => {
                        self.held.insert(p, (lease.token, until));
                    }
                    None => {
                        // Expired or taken: a later round may claim it again, as a new tenure.
                        tracing::warn!(partition = p, "cluster: lease lost (expired or taken over)");
                        self.held.remove(&p);
                    }
                }
            }
        }
        let rows = self.leases.rows().await?;
        let live = self.leases.live_nodes(self.ttl).await?;
        let decided = plan(self.leases.partitions(), &self.node, &rows, &live);
        for p in decided.release {
            if let Some((token, until)) = self.held.remove(&p) {
                // Published first: the owners stop following it, then it is handed over.
                self.tx.send_replace(self.held());
                if until > Instant::now() {
                    self.hand_over(p).await;
                }
                self.leases.release(&self.node, p, token).await?;
                tracing::info!(partition = p, "cluster: partition handed over for balance");
            }
        }
        for p in decided.claim {
            let asked = Instant::now();
            if let Some(lease) = self.leases.claim(&self.node, p, self.ttl).await? {
                tracing::info!(partition = p, token = lease.token, "cluster: partition claimed");
                let until = self.counts_until(asked);
                self.held.insert(p, (lease.token, until));
            }
        }
        Ok(())
    }

    /// Leaves the cluster: releases every lease and forgets the node.
    pub async fn leave(mut self) -> Result<(), LeaseError> {
        let now = Instant::now();
        for (p, (_, until)) in self.held.clone() {
            self.held.remove(&p);
            self.tx.send_replace(self.held());
            if until > now {
                self.hand_over(p).await;
            }
        }
        self.held.clear();
        self.tx.send_replace(Held::new());
        self.leases.leave(&self.node).await
    }

    /// Runs rounds every `ttl / 3` until `stop` fires, then leaves.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), LeaseError> {
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.round().await {
                        tracing::error!(error = %e, "cluster: a lease round failed; holding nothing it could not renew");
                    }
                }
                _ = stop.changed() => break,
            }
        }
        self.leave().await
    }
}
