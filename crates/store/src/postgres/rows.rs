//! Row mapping of the postgres backend: columns and conversions shared by its areas.

use super::*;

pub(super) const INSTANCE_COLUMNS: &str = "id, journey, journey_version, profile_id, key, step, status, wake_at, waiting_for, context, entered_at, updated_at";

pub(super) fn instance_from_row(row: &Row) -> Result<JourneyInstance, StoreError> {
    let profile: &str = row.try_get(3)?;
    let status: &str = row.try_get(6)?;
    let wake_at: Option<i64> = row.try_get(7)?;
    Ok(JourneyInstance {
        id: row.try_get(0)?,
        journey: row.try_get(1)?,
        journey_version: row.try_get(2)?,
        profile_id: ProfileId::parse(profile).map_err(|e| corrupt("instance profile id", e))?,
        key: row.try_get(4)?,
        step: row.try_get(5)?,
        status: InstanceStatus::parse(status).ok_or_else(|| corrupt("instance status", status))?,
        wake_at: wake_at.map(from_micros),
        waiting_for: row.try_get(8)?,
        context: row.try_get(9)?,
        entered_at: from_micros(row.try_get(10)?),
        updated_at: from_micros(row.try_get(11)?),
    })
}

pub(super) const OUTBOX_COLUMNS: &str = "id, idempotency_key, profile_id, template, class, source, context, status, attempts, next_attempt_at, created_at, sent_at, recipient, detail, step";

pub(super) fn outbox_from_row(row: &Row) -> Result<OutboxMessage, StoreError> {
    let profile: &str = row.try_get(2)?;
    let status: &str = row.try_get(7)?;
    let attempts: i64 = row.try_get(8)?;
    let sent_at: Option<i64> = row.try_get(11)?;
    Ok(OutboxMessage {
        id: row.try_get(0)?,
        idempotency_key: row.try_get(1)?,
        profile_id: ProfileId::parse(profile).map_err(|e| corrupt("outbox profile id", e))?,
        template: row.try_get(3)?,
        class: missive_core::MessageClass::from_stored(row.try_get(4)?),
        source: missive_core::MessageSource::parse(row.try_get(5)?),
        step: row.try_get(14)?,
        context: row.try_get(6)?,
        status: OutboxStatus::parse(status).ok_or_else(|| corrupt("outbox status", status))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at: from_micros(row.try_get(9)?),
        created_at: from_micros(row.try_get(10)?),
        sent_at: sent_at.map(from_micros),
        recipient: row.try_get(12)?,
        detail: row.try_get(13)?,
    })
}

pub(super) fn document_from_row(kind: DocumentKind, row: &Row) -> Result<DocumentRecord, StoreError> {
    Ok(DocumentRecord {
        kind,
        name: row.try_get(0)?,
        version: row.try_get(1)?,
        body: row.try_get(2)?,
        updated_at: from_micros(row.try_get(3)?),
    })
}

pub(super) fn api_key_row(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    let role: &str = row.try_get(1)?;
    let revoked: Option<i64> = row.try_get(5)?;
    Ok(ApiKeyRecord {
        id: ApiKeyId::parse(row.try_get(0)?).map_err(|e| corrupt("api key id", e))?,
        role: Role::parse(role).ok_or_else(|| corrupt("api key role", role))?,
        secret_hash: row.try_get(2)?,
        label: row.try_get(3)?,
        created_at: from_micros(row.try_get(4)?),
        revoked_at: revoked.map(from_micros),
    })
}

pub(super) fn data_key_row(row: &Row) -> Result<DataKeyRecord, StoreError> {
    Ok(DataKeyRecord {
        profile_id: ProfileId::parse(row.try_get(0)?).map_err(|e| corrupt("data key profile id", e))?,
        master_key_id: row.try_get(1)?,
        wrapped: row.try_get(2)?,
        created_at: from_micros(row.try_get(3)?),
    })
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// An event from a row of [`EVENT_COLUMNS`].
pub(super) fn event_from_row(row: &Row) -> Result<StoredEvent, StoreError> {
    let kind: &str = row.try_get(4)?;
    Ok(StoredEvent {
        seq: row.try_get(0)?,
        message_id: MessageId::parse(row.try_get(1)?).map_err(|e| corrupt("event message id", e))?,
        profile_id: ProfileId::parse(row.try_get(2)?).map_err(|e| corrupt("event profile id", e))?,
        origin_profile_id: ProfileId::parse(row.try_get(3)?)
            .map_err(|e| corrupt("event origin profile id", e))?,
        kind: EventKind::parse(kind).ok_or_else(|| corrupt("event kind", kind))?,
        name: row.try_get(5)?,
        timestamp: from_micros(row.try_get(6)?),
        received_at: from_micros(row.try_get(7)?),
        body: row.try_get(8)?,
    })
}

pub(super) fn version_from_row(row: &Row) -> Result<ProfileVersion, StoreError> {
    let version: i64 = row.try_get(1)?;
    let diff: &str = row.try_get(4)?;
    let snapshot: Option<&str> = row.try_get(5)?;
    Ok(ProfileVersion {
        profile_id: ProfileId::parse(row.try_get(0)?).map_err(|e| corrupt("version profile id", e))?,
        version: version as u64,
        recorded_at: from_micros(row.try_get(2)?),
        cause: row.try_get(3)?,
        diff: serde_json::from_str(diff)?,
        snapshot: snapshot.map(serde_json::from_str).transpose()?,
    })
}

/// The re-pointing that applying `merges` (`(from, into)` pairs) one after another amounts to,
/// as (from, to) columns: every profile some merge moves rows away from, with the profile its
/// rows end up in. One UPDATE per table with these pairs does what one UPDATE per merge, in
/// order, does, chains (a→b then b→c) included.
pub(super) fn net_repointing<'a, I>(merges: I) -> (Vec<&'a str>, Vec<&'a str>)
where
    I: IntoIterator<Item = (&'a ProfileId, &'a ProfileId)>,
    I::IntoIter: DoubleEndedIterator,
{
    // Built from the last merge back: `dest[x]` is where the merges after the current one
    // take rows of x (x absent: they stay).
    let mut dest: BTreeMap<&str, &str> = BTreeMap::new();
    for (from, into) in merges.into_iter().rev() {
        let into = into.as_str();
        let end = dest.get(into).copied().unwrap_or(into);
        dest.insert(from.as_str(), end);
    }
    dest.into_iter().filter(|(from, to)| from != to).unzip()
}

/// The items whose key does not come again later, in order. Upserting them in one statement
/// leaves what upserting all the items one by one would (the last write wins), where
/// PostgreSQL refuses to upsert the same row twice in one statement.
pub(super) fn last_per_key<'a, T, K: Eq + Hash>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let last: HashMap<K, usize> = items.iter().enumerate().map(|(i, item)| (key(item), i)).collect();
    items
        .iter()
        .enumerate()
        .filter(|(i, item)| last.get(&key(item)) == Some(i))
        .map(|(_, item)| item)
        .collect()
}

/// Runs `statement` in `tx` unless it has no rows to write. Sends on first poll, so that
/// polling several of these together pipelines them in the order they are listed.
pub(super) async fn execute_unless_empty(
    tx: &Transaction<'_>,
    statement: &Statement,
    empty: bool,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    if empty {
        return Ok(0);
    }
    tx.execute(statement, params).await
}

/// Cluster mode: a commit's fences as the parallel arrays `CHECK_FENCES` takes.
pub(super) struct FenceColumns<'a> {
    nodes: Vec<&'a str>,
    partitions: Vec<i32>,
    tokens: Vec<i64>,
}

impl<'a> FenceColumns<'a> {
    pub(super) fn new(fences: &'a [crate::Fence]) -> Self {
        Self {
            nodes: fences.iter().map(|f| f.node.as_str()).collect(),
            partitions: fences.iter().map(|f| i32::from(f.partition)).collect(),
            tokens: fences.iter().map(|f| f.token).collect(),
        }
    }

    /// Runs the check (pipelined with the commit's writes, which PostgreSQL runs after it):
    /// how many fences are current, or `None` without fences.
    pub(super) async fn count(
        &self,
        tx: &Transaction<'_>,
        statement: &Statement,
    ) -> Result<Option<i64>, tokio_postgres::Error> {
        if self.nodes.is_empty() {
            return Ok(None);
        }
        let row = tx
            .query_one(statement, &[&self.nodes, &self.partitions, &self.tokens])
            .await?;
        Ok(Some(row.try_get(0)?))
    }

    /// `Err(Fenced)` unless every fence was current: the caller then drops the transaction,
    /// which rolls back what was pipelined behind the check.
    pub(super) fn require(&self, current: Option<i64>) -> Result<(), StoreError> {
        match current {
            Some(n) if n < self.nodes.len() as i64 => Err(StoreError::Fenced(format!(
                "node {} no longer holds all of partitions {:?} under tokens {:?}; nothing was written",
                self.nodes.first().copied().unwrap_or_default(),
                self.partitions,
                self.tokens
            ))),
            _ => Ok(()),
        }
    }
}

/// `(partition, seq)` pairs as the parallel arrays of `partition_log`'s upserts.
pub(super) fn mark_columns(marks: &[(u16, i64)]) -> (Vec<i16>, Vec<i64>) {
    marks.iter().map(|(p, s)| (partition_column(*p), *s)).unzip()
}

/// A partition as its `SMALLINT` column holds it (partitions are at most 1,024).
pub(super) fn partition_column(p: u16) -> i16 {
    i16::try_from(p).unwrap_or(i16::MAX)
}

/// An identity key from a row's `kind` and `value` columns (0 and 1).
pub(super) fn identity_key_from_row(row: &Row) -> Result<IdentityKey, StoreError> {
    let kind: &str = row.try_get(0)?;
    Ok(IdentityKey {
        kind: IdentityKind::parse(kind).ok_or_else(|| corrupt("identity kind", kind))?,
        value: row.try_get(1)?,
    })
}
