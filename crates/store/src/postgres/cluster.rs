//! Cluster mode's reads and claims (docs/ARCHITECTURE.md, "Cluster mode"): where each
//! partition's owner has got to, a partition's events for a new owner's replay, and the routes
//! of identities to partitions. The fenced writes are in the commits themselves (`events.rs`).

use std::collections::HashMap;

use missive_core::IdentityKey;

use super::rows::{corrupt, event_from_row, identity_key_from_row, partition_column};
use super::statements::EVENT_COLUMNS;
use super::*;
use crate::{PartitionMark, StoredEvent};

impl PostgresStore {
    pub(super) async fn cluster_partition_marks(
        &self,
        partitions: Vec<u16>,
    ) -> Result<Vec<PartitionMark>, StoreError> {
        let partitions: Vec<i16> = partitions.iter().map(|p| partition_column(*p)).collect();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT partition, applied_seq, checkpoint_seq FROM partition_log
                 WHERE partition = ANY($1) ORDER BY partition",
                &[&partitions],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let partition: i16 = row.try_get(0)?;
                Ok(PartitionMark {
                    partition: u16::try_from(partition).map_err(|e| corrupt("partition", e))?,
                    applied_seq: row.try_get(1)?,
                    checkpoint_seq: row.try_get(2)?,
                })
            })
            .collect()
    }

    pub(super) async fn cluster_partition_events_after(
        &self,
        partition: u16,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE partition = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                ),
                &[&partition_column(partition), &after, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(super) async fn cluster_identity_routes(
        &self,
        keys: Vec<IdentityKey>,
    ) -> Result<HashMap<IdentityKey, u16>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
        let values: Vec<&str> = keys.iter().map(|k| k.value.as_str()).collect();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT r.kind, r.value, r.partition FROM identity_routes r
                 JOIN UNNEST($1::text[], $2::text[]) AS k(kind, value) ON r.kind = k.kind AND r.value = k.value",
                &[&kinds, &values],
            )
            .await?;
        rows.iter().map(route_from_row).collect()
    }

    pub(super) async fn cluster_claim_routes(
        &self,
        claims: Vec<(IdentityKey, u16)>,
    ) -> Result<HashMap<IdentityKey, u16>, StoreError> {
        if claims.is_empty() {
            return Ok(HashMap::new());
        }
        let kinds: Vec<&str> = claims.iter().map(|(k, _)| k.kind.as_str()).collect();
        let values: Vec<&str> = claims.iter().map(|(k, _)| k.value.as_str()).collect();
        let partitions: Vec<i16> = claims.iter().map(|(_, p)| partition_column(*p)).collect();
        let r = self.reader();
        // One statement: the insert's snapshot cannot see rows another claim inserted
        // concurrently, so the routes are read back by the next statement, which can.
        r.client
            .execute(
                "INSERT INTO identity_routes (kind, value, partition)
                 SELECT DISTINCT ON (kind, value) kind, value, partition
                 FROM UNNEST($1::text[], $2::text[], $3::smallint[]) WITH ORDINALITY AS c(kind, value, partition, ord)
                 ORDER BY kind, value, ord
                 ON CONFLICT (kind, value) DO NOTHING",
                &[&kinds, &values, &partitions],
            )
            .await?;
        let keys = claims.into_iter().map(|(k, _)| k).collect();
        self.cluster_identity_routes(keys).await
    }
}

/// A checkpoint's route moves as the parallel arrays `move_routes` takes.
pub(super) struct RouteColumns<'a> {
    kinds: Vec<&'a str>,
    values: Vec<&'a str>,
    from: Vec<i16>,
    to: Vec<i16>,
}

impl<'a> RouteColumns<'a> {
    pub(super) fn new(moves: &'a [crate::RouteMove]) -> Self {
        RouteColumns {
            kinds: moves.iter().map(|m| m.key.kind.as_str()).collect(),
            values: moves.iter().map(|m| m.key.value.as_str()).collect(),
            from: moves.iter().map(|m| partition_column(m.from)).collect(),
            to: moves.iter().map(|m| partition_column(m.to)).collect(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    pub(super) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 4] {
        [&self.kinds, &self.values, &self.from, &self.to]
    }
}

impl PostgresStore {
    /// The cluster's watermark (what `profile_checkpoint` answers in cluster mode): every
    /// partition's profiles include its events up to the lowest checkpoint mark, and an idle
    /// partition's owner raises its mark to the stream's end (docs/ARCHITECTURE.md, "Log
    /// followers read behind a watermark"). Until every partition has a mark, nothing is settled.
    pub(super) async fn cluster_watermark(&self) -> Result<i64, StoreError> {
        let row = self
            .reader()
            .client
            .query_one(
                "SELECT CASE WHEN count(*) = (SELECT value::bigint FROM cluster_meta WHERE key = 'partitions')
                             THEN min(checkpoint_seq) ELSE 0 END
                 FROM partition_log",
                &[],
            )
            .await?;
        Ok(row.try_get::<_, Option<i64>>(0)?.unwrap_or(0))
    }

    pub(super) async fn cluster_profiles_in_partitions(
        &self,
        partitions: Vec<u16>,
    ) -> Result<Vec<(missive_core::ProfileId, u16)>, StoreError> {
        let partitions: Vec<i16> = partitions.iter().map(|p| partition_column(*p)).collect();
        let r = self.reader();
        // A profile's identities are routed to one partition (a merge moves them together).
        let rows = r
            .client
            .query(
                "SELECT DISTINCT ON (i.profile_id) i.profile_id, r.partition FROM identity_routes r
                 JOIN identities i ON i.kind = r.kind AND i.value = r.value
                 JOIN profiles p ON p.id = i.profile_id AND p.merged_into IS NULL
                 WHERE r.partition = ANY($1)
                 ORDER BY i.profile_id",
                &[&partitions],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id: &str = row.try_get(0)?;
                let partition: i16 = row.try_get(1)?;
                Ok((
                    missive_core::ProfileId::parse(id).map_err(|e| corrupt("profile id", e))?,
                    u16::try_from(partition).map_err(|e| corrupt("partition", e))?,
                ))
            })
            .collect()
    }
}

fn route_from_row(row: &Row) -> Result<(IdentityKey, u16), StoreError> {
    let partition: i16 = row.try_get(2)?;
    Ok((
        identity_key_from_row(row)?,
        u16::try_from(partition).map_err(|e| corrupt("route partition", e))?,
    ))
}
