//! Partition leases on PostgreSQL, with fencing tokens.
//!
//! **The contract.** A partition has at most one owner at a time: the node whose lease row
//! names it and has not expired. Every time a partition changes owner its `token` grows, so a
//! token names one tenure. A write on behalf of a partition runs, in its own transaction,
//! [`verify`] first: it locks the lease row (`FOR KEY SHARE`) and checks that the token is still
//! current, the owner still this node and the lease not expired; a node that was paused past
//! its lease (SIGSTOP, a long GC, a stalled VM) finds its token superseded or its lease expired
//! and writes nothing. Expiry is judged by the database's clock only (`clock_timestamp()`),
//! never by a node's: node clocks may disagree.
//!
//! Tables (created when missing, in the schema of the connection's `search_path`):
//! `cluster_meta` (the partition count, fixed at creation), `cluster_nodes` (heartbeats) and
//! `partition_leases`.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_postgres::{Client, GenericClient, NoTls};

use crate::partition::{Partition, PartitionCount};
use crate::plan::LeaseRow;

/// The database's clock in microseconds since the epoch.
pub(crate) const DB_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT";

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "the cluster has {stored} partitions; this node was started with {asked}: the count is fixed when a cluster is created (docs/operations.md, re-partitioning)"
    )]
    PartitionMismatch { stored: u16, asked: u16 },
    #[error("the cluster's partition count is unreadable: {0}")]
    Corrupt(String),
}

/// A write refused because its lease is no longer this node's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "partition {partition}: the lease with token {token} is no longer held by this node (it expired or moved); nothing was written"
)]
pub struct Fenced {
    pub partition: Partition,
    pub token: i64,
}

/// A lease held: the partition, its tenure's token, and when it ends (database time, µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub partition: Partition,
    pub token: i64,
    pub expires_at_us: i64,
}

/// What a write on behalf of a partition carries: the store checks it in the transaction of
/// every commit an owner makes (`missive_store::EventBatch::fences`).
pub use missive_store::Fence;

/// One lease as `cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub partition: Partition,
    pub owner: Option<String>,
    pub token: i64,
    /// Microseconds until it expires (negative: expired).
    pub remaining_us: i64,
}

/// One node as `cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub node: String,
    pub address: String,
    /// Microseconds since its last heartbeat.
    pub silent_us: i64,
}

/// The lease table of one cluster.
pub struct Leases {
    client: Client,
    partitions: PartitionCount,
}

/// Connects to `url`, working in `schema` when given (as the store does). Statements give up
/// after a few seconds, and waits for a row lock after one: a lease round must never hang
/// behind a stalled transaction (a paused former owner's write) past its own lease.
pub async fn connect(url: &str, schema: Option<&str>) -> Result<Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name("missive-cluster");
    let mut options = config.get_options().map(str::to_owned).unwrap_or_default();
    options.push_str(" -c lock_timeout=1000 -c statement_timeout=5000");
    // Only plain lowercase names, as the store allows: the name goes into the options.
    if let Some(s) = schema.filter(|s| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }) {
        options.push_str(&format!(" -c search_path=\"{s}\""));
    }
    config.options(options.trim());
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "cluster: the lease connection ended");
        }
    });
    Ok(client)
}

impl Leases {
    /// Creates the tables when missing, and records the partition count the first time;
    /// later, a node started with another count is refused.
    pub async fn open(client: Client, partitions: PartitionCount) -> Result<Leases, LeaseError> {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS cluster_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS cluster_nodes (node TEXT PRIMARY KEY, address TEXT NOT NULL,
                     heartbeat_us BIGINT NOT NULL);
                 CREATE TABLE IF NOT EXISTS partition_leases (partition INTEGER PRIMARY KEY,
                     owner TEXT, token BIGINT NOT NULL DEFAULT 0, expires_us BIGINT NOT NULL DEFAULT 0);",
            )
            .await?;
        client
            .execute(
                "INSERT INTO cluster_meta (key, value) VALUES ('partitions', $1) ON CONFLICT (key) DO NOTHING",
                &[&partitions.get().to_string()],
            )
            .await?;
        let stored: String = client
            .query_one("SELECT value FROM cluster_meta WHERE key = 'partitions'", &[])
            .await?
            .try_get(0)?;
        let stored: u16 = stored.parse().map_err(|_| LeaseError::Corrupt(stored.clone()))?;
        if stored != partitions.get() {
            return Err(LeaseError::PartitionMismatch {
                stored,
                asked: partitions.get(),
            });
        }
        client
            .execute(
                "INSERT INTO partition_leases (partition) SELECT g FROM generate_series(0, $1::INTEGER - 1) g
                 ON CONFLICT (partition) DO NOTHING",
                &[&i32::from(partitions.get())],
            )
            .await?;
        Ok(Leases { client, partitions })
    }

    /// The cluster of this schema as it is, without creating anything: `None` when no node
    /// ever ran in cluster mode here.
    pub async fn existing(client: Client) -> Result<Option<Leases>, LeaseError> {
        let exists: bool = client
            .query_one("SELECT to_regclass('cluster_meta') IS NOT NULL", &[])
            .await?
            .try_get(0)?;
        if !exists {
            return Ok(None);
        }
        let stored: Option<String> = client
            .query_opt("SELECT value FROM cluster_meta WHERE key = 'partitions'", &[])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        let Some(stored) = stored else { return Ok(None) };
        let n = stored
            .parse::<i64>()
            .ok()
            .and_then(|n| PartitionCount::new(n).ok())
            .ok_or_else(|| LeaseError::Corrupt(stored.clone()))?;
        Ok(Some(Leases {
            client,
            partitions: n,
        }))
    }

    pub fn partitions(&self) -> PartitionCount {
        self.partitions
    }

    /// Records that `node` (reachable at `address`) is alive now.
    pub async fn heartbeat(&self, node: &str, address: &str) -> Result<(), LeaseError> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO cluster_nodes (node, address, heartbeat_us) VALUES ($1, $2, {DB_NOW})
                     ON CONFLICT (node) DO UPDATE SET address = EXCLUDED.address, heartbeat_us = EXCLUDED.heartbeat_us"
                ),
                &[&node, &address],
            )
            .await?;
        Ok(())
    }

    /// Forgets `node` (it is leaving): its leases are released first.
    pub async fn leave(&self, node: &str) -> Result<(), LeaseError> {
        self.client
            .execute(
                &format!("UPDATE partition_leases SET owner = NULL, expires_us = {DB_NOW} WHERE owner = $1"),
                &[&node],
            )
            .await?;
        self.client
            .execute("DELETE FROM cluster_nodes WHERE node = $1", &[&node])
            .await?;
        Ok(())
    }

    /// Nodes whose last heartbeat is younger than `within`.
    pub async fn live_nodes(&self, within: Duration) -> Result<BTreeSet<String>, LeaseError> {
        let rows = self
            .client
            .query(
                &format!("SELECT node FROM cluster_nodes WHERE heartbeat_us > {DB_NOW} - $1"),
                &[&micros(within)],
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Every lease, by partition, with whether it has expired.
    pub async fn rows(&self) -> Result<Vec<LeaseRow>, LeaseError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT partition, owner, expires_us <= {DB_NOW} FROM partition_leases ORDER BY partition"
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LeaseRow {
                    partition: partition_of(r.try_get(0)?),
                    owner: r.try_get(1)?,
                    expired: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Claims `partition` for `node` for `ttl`, or renews it when `node` holds it: only when it
    /// is free, expired or already `node`'s. A new tenure gets a larger token.
    ///
    /// **Locks.** An owner's commits hold its lease rows `FOR KEY SHARE` (the fence check). A
    /// renewal is a plain update, which does not conflict with them, so a busy owner's commits
    /// never hold its renewals back. A take-over locks the row `FOR UPDATE` first, which waits
    /// for the commits in flight under the former tenure: the new owner then replays from a
    /// store that holds them.
    pub async fn claim(
        &self,
        node: &str,
        partition: Partition,
        ttl: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let renewed = self
            .client
            .query_opt(
                &format!(
                    "UPDATE partition_leases SET expires_us = {DB_NOW} + $3
                     WHERE partition = $2 AND owner = $1 AND expires_us > {DB_NOW}
                     RETURNING token, expires_us"
                ),
                &[&node, &i32::from(partition), &micros(ttl)],
            )
            .await?;
        let row = match renewed {
            Some(r) => Some(r),
            None => {
                self.client
                    .query_opt(
                        &format!(
                            "WITH open AS (
                                 SELECT partition FROM partition_leases
                                 WHERE partition = $2 AND (owner IS NULL OR owner = $1 OR expires_us <= {DB_NOW})
                                 FOR UPDATE)
                             UPDATE partition_leases
                             SET token = CASE WHEN owner = $1 AND expires_us > {DB_NOW} THEN token ELSE token + 1 END,
                                 owner = $1, expires_us = {DB_NOW} + $3
                             WHERE partition IN (SELECT partition FROM open)
                               AND (owner IS NULL OR owner = $1 OR expires_us <= {DB_NOW})
                             RETURNING token, expires_us"
                        ),
                        &[&node, &i32::from(partition), &micros(ttl)],
                    )
                    .await?
            }
        };
        Ok(match row {
            Some(r) => Some(Lease {
                partition,
                token: r.try_get(0)?,
                expires_at_us: r.try_get(1)?,
            }),
            None => None,
        })
    }

    /// Renews, in one statement, every lease of `partitions` that `node` still holds unexpired
    /// (same tenure, same token); answers with those renewed. One round trip whatever the
    /// number of partitions: a node's renewals never queue behind one another.
    pub async fn renew(
        &self,
        node: &str,
        partitions: &[Partition],
        ttl: Duration,
    ) -> Result<Vec<Lease>, LeaseError> {
        let parts: Vec<i32> = partitions.iter().map(|p| i32::from(*p)).collect();
        let rows = self
            .client
            .query(
                &format!(
                    "UPDATE partition_leases SET expires_us = {DB_NOW} + $3
                     WHERE owner = $1 AND partition = ANY($2) AND expires_us > {DB_NOW}
                     RETURNING partition, token, expires_us"
                ),
                &[&node, &parts, &micros(ttl)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Lease {
                    partition: partition_of(r.try_get(0)?),
                    token: r.try_get(1)?,
                    expires_at_us: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Gives up `partition` if `node` holds it under `token`.
    pub async fn release(&self, node: &str, partition: Partition, token: i64) -> Result<bool, LeaseError> {
        let n = self
            .client
            .execute(
                &format!(
                    "UPDATE partition_leases SET owner = NULL, expires_us = {DB_NOW}
                     WHERE partition = $1 AND owner = $2 AND token = $3"
                ),
                &[&i32::from(partition), &node, &token],
            )
            .await?;
        Ok(n == 1)
    }

    /// The cluster's leases and nodes, for `cluster status`.
    pub async fn status(&self) -> Result<(Vec<NodeView>, Vec<LeaseView>), LeaseError> {
        let nodes = self
            .client
            .query(
                &format!("SELECT node, address, {DB_NOW} - heartbeat_us FROM cluster_nodes ORDER BY node"),
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(NodeView {
                    node: r.try_get(0)?,
                    address: r.try_get(1)?,
                    silent_us: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, LeaseError>>()?;
        let leases = self
            .client
            .query(
                &format!("SELECT partition, owner, token, expires_us - {DB_NOW} FROM partition_leases ORDER BY partition"),
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(LeaseView {
                    partition: partition_of(r.try_get(0)?),
                    owner: r.try_get(1)?,
                    token: r.try_get(2)?,
                    remaining_us: r.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, LeaseError>>()?;
        Ok((nodes, leases))
    }
}

/// Checks, inside the transaction that is about to write for them, that every fence is still
/// current: the lease rows are locked (`FOR KEY SHARE`) until the transaction ends, so an owner
/// change (which locks the row `FOR UPDATE`, see [`Leases::claim`]) waits for the write, while
/// the owner's own renewals do not; and a write after an owner change is refused. Call it first in
/// the transaction; on `Err`, roll back.
pub async fn verify(
    tx: &impl GenericClient,
    fences: &[Fence],
) -> Result<Result<(), Fenced>, tokio_postgres::Error> {
    for f in fences {
        let row = tx
            .query_opt(
                &format!(
                    "SELECT 1 FROM partition_leases
                     WHERE partition = $1 AND owner = $2 AND token = $3 AND expires_us > {DB_NOW}
                     FOR KEY SHARE"
                ),
                &[&i32::from(f.partition), &f.node, &f.token],
            )
            .await?;
        if row.is_none() {
            return Ok(Err(Fenced {
                partition: f.partition,
                token: f.token,
            }));
        }
    }
    Ok(Ok(()))
}

pub(crate) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn partition_of(v: i32) -> Partition {
    Partition::try_from(v).unwrap_or(Partition::MAX)
}
