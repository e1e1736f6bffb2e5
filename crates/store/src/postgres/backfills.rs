//! Where segment backfills have got to: the embedded mode's workspace-wide marks
//! (`segment_backfills`, resumed at start) and cluster mode's records of what each partition's
//! profiles were evaluated against in full (`partition_backfills`, finished by a partition's
//! next owner). Both are written in a checkpoint's transaction.

use std::collections::HashMap;

use missive_core::ProfileId;

use super::rows::{corrupt, partition_column};
use super::*;
use crate::{BackfillKind, BackfillMark, BackfillUpdate, PartitionBackfill};

/// A checkpoint's backfill marks, in order.
pub(super) async fn write_backfills(
    tx: &tokio_postgres::Transaction<'_>,
    updates: &[BackfillUpdate],
) -> Result<(), StoreError> {
    for update in updates {
        match update {
            BackfillUpdate::Progress(m) => {
                tx.execute(
                    "INSERT INTO segment_backfills (segment, is_new, after) VALUES ($1, $2, $3)
                     ON CONFLICT (segment) DO UPDATE SET is_new = excluded.is_new, after = excluded.after",
                    &[&m.segment, &m.is_new, &m.after.as_ref().map(|a| a.as_str())],
                )
                .await?;
            }
            BackfillUpdate::Finished { segment } => {
                tx.execute("DELETE FROM segment_backfills WHERE segment = $1", &[segment])
                    .await?;
            }
        }
    }
    Ok(())
}

/// A checkpoint's records of segment backfills and model scorings over partitions, in order
/// (under the partitions' fences, checked first in the transaction).
pub(super) async fn write_partition_backfills(
    tx: &tokio_postgres::Transaction<'_>,
    records: &[PartitionBackfill],
) -> Result<(), StoreError> {
    for b in records {
        let (partition, kind) = (partition_column(b.partition), b.kind.as_str());
        match &b.done {
            None => {
                tx.execute(
                    "DELETE FROM partition_backfills WHERE partition = $1 AND kind = $2 AND name = $3",
                    &[&partition, &kind, &b.name],
                )
                .await?
            }
            Some(definition) => {
                tx.execute(
                    "INSERT INTO partition_backfills (partition, kind, name, definition) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (partition, kind, name) DO UPDATE SET definition = excluded.definition",
                    &[&partition, &kind, &b.name, definition],
                )
                .await?
            }
        };
    }
    Ok(())
}

impl PostgresStore {
    pub(super) async fn read_unfinished_backfills(&self) -> Result<Vec<BackfillMark>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT segment, is_new, after FROM segment_backfills ORDER BY segment",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let after: Option<String> = row.try_get(2)?;
                Ok(BackfillMark {
                    segment: row.try_get(0)?,
                    is_new: row.try_get(1)?,
                    after: after
                        .map(|a| ProfileId::parse(&a).map_err(|e| corrupt("segment backfill position", e)))
                        .transpose()?,
                })
            })
            .collect()
    }

    pub(super) async fn read_partition_backfills(
        &self,
        partition: u16,
    ) -> Result<HashMap<(BackfillKind, String), String>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT kind, name, definition FROM partition_backfills WHERE partition = $1",
                &[&partition_column(partition)],
            )
            .await?;
        let mut found = HashMap::new();
        for row in &rows {
            let kind: &str = row.try_get(0)?;
            // A kind a newer version wrote: not this one's to finish.
            if let Some(kind) = BackfillKind::parse(kind) {
                found.insert((kind, row.try_get(1)?), row.try_get(2)?);
            }
        }
        Ok(found)
    }
}
