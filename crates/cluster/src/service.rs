//! Work one node does for the whole cluster at a time, under a named lease in PostgreSQL
//! (`service_leases`): the sending side ([`SENDING`]: journeys, the sender, broadcasts,
//! outbound webhooks and the schedules). The journeys and the outbox are shared by every
//! partition, and their rows are claimed by nobody, so exactly one node runs them.
//!
//! **Fencing**, as for partitions: every change of holder increments the lease's `token`, and
//! the holder's journey and outbox writes check `(owner, token, expiry)` in their own
//! transaction (`DeliveryStore::set_leader_fence`), locking the row `FOR KEY SHARE`. A
//! take-over locks it `FOR UPDATE`, so it waits for a write in progress; a former holder that
//! was paused past its lease writes nothing. Expiry is judged by PostgreSQL's clock only.
//!
//! **Holding it** ([`hold`]): every `ttl / 3` the node renews the lease or, when it is free or
//! expired, takes it. It counts the lease as its own only until `ttl − ttl/5` after it asked
//! (a monotonic clock), and publishes the fence while it does, so the sending side stops
//! before another node may start. A node that leaves releases the lease at once.

use std::time::{Duration, Instant};

use missive_store::LeaderFence;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::leases::{DB_NOW, LeaseError, micros};

/// The sending side's lease.
pub const SENDING: &str = "sending";

/// One named lease, as one node sees it.
pub struct ServiceLease {
    client: Client,
    name: String,
    node: String,
    ttl: Duration,
}

impl ServiceLease {
    /// The lease `name` for `node` (its row is created when missing).
    pub async fn open(client: Client, name: &str, node: &str, ttl: Duration) -> Result<Self, LeaseError> {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS service_leases (name TEXT PRIMARY KEY, owner TEXT,
                     token BIGINT NOT NULL DEFAULT 0, expires_us BIGINT NOT NULL DEFAULT 0)",
            )
            .await?;
        client
            .execute(
                "INSERT INTO service_leases (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&name],
            )
            .await?;
        Ok(ServiceLease {
            client,
            name: name.to_owned(),
            node: node.to_owned(),
            ttl,
        })
    }

    /// Renews the lease if this node holds it, else takes it if it is free or expired;
    /// answers the token held (`None`: another node holds it).
    pub async fn claim(&self) -> Result<Option<i64>, LeaseError> {
        let ttl = micros(self.ttl);
        let renewed = self
            .client
            .query_opt(
                &format!(
                    "UPDATE service_leases SET expires_us = {DB_NOW} + $3
                     WHERE name = $1 AND owner = $2 AND expires_us > {DB_NOW}
                     RETURNING token"
                ),
                &[&self.name, &self.node, &ttl],
            )
            .await?;
        let row = match renewed {
            Some(row) => Some(row),
            None => {
                self.client
                    .query_opt(
                        &format!(
                            "WITH open AS (
                                 SELECT name FROM service_leases
                                 WHERE name = $1 AND (owner IS NULL OR expires_us <= {DB_NOW})
                                 FOR UPDATE)
                             UPDATE service_leases SET token = token + 1, owner = $2,
                                 expires_us = {DB_NOW} + $3
                             WHERE name IN (SELECT name FROM open)
                               AND (owner IS NULL OR expires_us <= {DB_NOW})
                             RETURNING token"
                        ),
                        &[&self.name, &self.node, &ttl],
                    )
                    .await?
            }
        };
        Ok(match row {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    /// Gives the lease up, if this tenure still holds it.
    pub async fn release(&self, token: i64) -> Result<(), LeaseError> {
        self.client
            .execute(
                "UPDATE service_leases SET owner = NULL, expires_us = 0
                 WHERE name = $1 AND owner = $2 AND token = $3",
                &[&self.name, &self.node, &token],
            )
            .await?;
        Ok(())
    }

    fn fence(&self, token: i64) -> LeaderFence {
        LeaderFence {
            name: self.name.clone(),
            node: self.node.clone(),
            token,
        }
    }
}

/// Who holds the lease `name` now, for `missive cluster status`: the holder, its token and
/// the microseconds left (`None`: nobody, or it ran out).
pub async fn holder(client: &Client, name: &str) -> Result<Option<(String, i64, i64)>, LeaseError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT owner, token, expires_us - {DB_NOW} FROM service_leases
                 WHERE name = $1 AND owner IS NOT NULL AND expires_us > {DB_NOW}"
            ),
            &[&name],
        )
        .await;
    let row = match row {
        Ok(r) => r,
        // A cluster from before the sending lease existed.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(match row {
        Some(r) => Some((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)),
        None => None,
    })
}

/// The status line of a lease. Pure.
pub fn render_holder(name: &str, holder: Option<&(String, i64, i64)>) -> String {
    match holder {
        Some((node, token, left_us)) => format!(
            "{name}: {node} (token {token}, {:.1} s left)\n",
            *left_us as f64 / 1e6
        ),
        None => format!("{name}: nobody holds it (no node runs it until one takes it)\n"),
    }
}

/// Holds `lease` whenever it can until `stop`, publishing on `held` the fence while it is
/// safely this node's (and `None` otherwise); releases it on the way out.
pub async fn hold(
    lease: ServiceLease,
    mut stop: watch::Receiver<bool>,
    held: watch::Sender<Option<LeaderFence>>,
) {
    let round = lease.ttl / 3;
    let safe = lease.ttl - lease.ttl / 5;
    let mut tenure: Option<(i64, Instant)> = None;
    loop {
        let asked = Instant::now();
        match lease.claim().await {
            Ok(Some(token)) => {
                if tenure.is_none_or(|(t, _)| t != token) {
                    tracing::info!(lease = %lease.name, token, "cluster: this node holds the lease");
                }
                tenure = Some((token, asked + safe));
            }
            Ok(None) => tenure = None,
            Err(e) => tracing::warn!(lease = %lease.name, error = %e, "cluster: renewing the lease failed"),
        }
        if tenure.is_some_and(|(_, until)| Instant::now() >= until) {
            tracing::warn!(lease = %lease.name, "cluster: the lease ran out before it was renewed");
            tenure = None;
        }
        let fence = tenure.map(|(token, _)| lease.fence(token));
        held.send_if_modified(|current| {
            let changed = *current != fence;
            *current = fence;
            changed
        });
        // Wake in time to stop before the lease may be someone else's.
        let wake = match tenure {
            Some((_, until)) => round.min(until.saturating_duration_since(Instant::now())),
            None => round,
        };
        tokio::select! {
            _ = tokio::time::sleep(wake) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    held.send_replace(None);
    if let Some((token, _)) = tenure
        && let Err(e) = lease.release(token).await
    {
        tracing::warn!(lease = %lease.name, error = %e, "cluster: releasing the lease failed; it runs out by itself");
    }
}
