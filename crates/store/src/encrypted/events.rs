//! The events area, encrypted (see the module above).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use missive_core::schema::{Declared, FieldKey, StoredField};
use missive_core::{IdentityKey, MessageId, ProfileId};

use super::*;
use crate::types::*;

#[async_trait]
impl EventStore for EncryptedEvents {
    async fn erase_profiles(&self, ids: Vec<ProfileId>) -> Result<ErasureCounts, StoreError> {
        self.sealer.forget(&ids);
        let counts = self.inner.erase_profiles(ids.clone()).await?;
        self.sealer.forget(&ids);
        Ok(counts)
    }

    async fn add_erased_identities(&self, hashes: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.add_erased_identities(hashes, at).await
    }

    /// Names, types, seen times and numeric or boolean examples: stored as they are
    /// (missive_core::schema keeps no string or time value).
    async fn schema_fields(&self) -> Result<Vec<StoredField>, StoreError> {
        self.inner.schema_fields().await
    }

    async fn declare_schema_field(
        &self,
        key: FieldKey,
        declared: Option<Declared>,
    ) -> Result<bool, StoreError> {
        self.inner.declare_schema_field(key, declared).await
    }

    async fn erased_identities(&self) -> Result<HashSet<String>, StoreError> {
        self.inner.erased_identities().await
    }

    async fn purge_events_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.inner.purge_events_before(before, limit).await
    }

    fn identity_index(&self, key: &IdentityKey) -> IdentityKey {
        self.sealer.index(key)
    }

    async fn reindex_identities(&self, changes: Vec<(IdentityKey, String)>) -> Result<u64, StoreError> {
        let indexed = changes
            .iter()
            .map(|(old, new)| {
                let new = IdentityKey {
                    kind: old.kind,
                    value: new.clone(),
                };
                (self.sealer.index(old), self.sealer.index(&new).value)
            })
            .collect();
        self.inner.reindex_identities(indexed).await
    }

    async fn commit_events(&self, mut batch: EventBatch) -> Result<(), StoreError> {
        let keys = self
            .sealer
            .keys_for(batch.events.iter().map(|e| &e.origin_profile_id), true)
            .await?;
        for e in &mut batch.events {
            let aad = format!("event:{}", e.message_id);
            e.body = self
                .sealer
                .seal_json(&keys, &e.origin_profile_id, &e.body, &aad)?;
        }
        self.inner.commit_events(batch).await
    }

    async fn commit_checkpoint(&self, mut cp: Checkpoint) -> Result<(), StoreError> {
        let owners = cp
            .profiles
            .iter()
            .map(|p| &p.id)
            .chain(cp.versions.iter().map(|v| &v.profile_id));
        let keys = self.sealer.keys_for(owners, true).await?;
        cp.profiles = cp
            .profiles
            .iter()
            .map(|p| self.sealer.seal_profile(&keys, p))
            .collect::<Result<_, _>>()?;
        cp.versions = cp
            .versions
            .iter()
            .map(|v| self.sealer.seal_version(&keys, v))
            .collect::<Result<_, _>>()?;
        cp.identities = cp
            .identities
            .iter()
            .map(|(k, p)| (self.sealer.index(k), p.clone()))
            .collect();
        for m in &mut cp.routes {
            m.key = self.sealer.index(&m.key);
        }
        self.inner.commit_checkpoint(cp).await
    }

    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.inner.last_event_seq().await
    }

    async fn unfinished_backfills(&self) -> Result<Vec<crate::BackfillMark>, StoreError> {
        self.inner.unfinished_backfills().await
    }

    async fn profile_checkpoint(&self) -> Result<i64, StoreError> {
        self.inner.profile_checkpoint().await
    }

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.inner.events_after(after, limit).await?;
        self.sealer.open_events(events).await
    }

    async fn partition_marks(&self, partitions: Vec<u16>) -> Result<Vec<crate::PartitionMark>, StoreError> {
        self.inner.partition_marks(partitions).await
    }

    async fn partition_events_after(
        &self,
        partition: u16,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.inner.partition_events_after(partition, after, limit).await?;
        self.sealer.open_events(events).await
    }

    async fn identity_routes(&self, keys: Vec<IdentityKey>) -> Result<HashMap<IdentityKey, u16>, StoreError> {
        let indexed: Vec<(IdentityKey, IdentityKey)> =
            keys.into_iter().map(|k| (self.sealer.index(&k), k)).collect();
        let found = self
            .inner
            .identity_routes(indexed.iter().map(|(i, _)| i.clone()).collect())
            .await?;
        Ok(indexed
            .into_iter()
            .filter_map(|(i, k)| found.get(&i).map(|p| (k, *p)))
            .collect())
    }

    async fn profiles_in_partitions(
        &self,
        partitions: Vec<u16>,
    ) -> Result<Vec<(ProfileId, u16)>, StoreError> {
        self.inner.profiles_in_partitions(partitions).await
    }

    async fn partition_backfills(
        &self,
        partition: u16,
    ) -> Result<HashMap<(BackfillKind, String), String>, StoreError> {
        self.inner.partition_backfills(partition).await
    }

    async fn claim_routes(
        &self,
        claims: Vec<(IdentityKey, u16)>,
    ) -> Result<HashMap<IdentityKey, u16>, StoreError> {
        let indexed: Vec<(IdentityKey, IdentityKey, u16)> = claims
            .into_iter()
            .map(|(k, p)| (self.sealer.index(&k), k, p))
            .collect();
        let found = self
            .inner
            .claim_routes(indexed.iter().map(|(i, _, p)| (i.clone(), *p)).collect())
            .await?;
        Ok(indexed
            .into_iter()
            .filter_map(|(i, k, _)| found.get(&i).map(|p| (k, *p)))
            .collect())
    }

    async fn message_ids_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MessageId)>, StoreError> {
        self.inner.message_ids_after(after, limit).await
    }

    async fn identity_keys_after(
        &self,
        after: Option<IdentityKey>,
        limit: u32,
    ) -> Result<Vec<IdentityKey>, StoreError> {
        // The keys come back as stored (e-mail addresses as their blind index), and so does
        // the cursor: the engine's filter holds `identity_index` forms.
        self.inner.identity_keys_after(after, limit).await
    }

    async fn existing_message_ids(&self, ids: Vec<MessageId>) -> Result<HashSet<MessageId>, StoreError> {
        self.inner.existing_message_ids(ids).await
    }

    async fn resolve_identities(
        &self,
        keys: Vec<IdentityKey>,
    ) -> Result<HashMap<IdentityKey, ProfileId>, StoreError> {
        let indexed: Vec<(IdentityKey, IdentityKey)> =
            keys.into_iter().map(|k| (self.sealer.index(&k), k)).collect();
        let found = self
            .inner
            .resolve_identities(indexed.iter().map(|(i, _)| i.clone()).collect())
            .await?;
        Ok(indexed
            .into_iter()
            .filter_map(|(i, k)| found.get(&i).map(|p| (k, p.clone())))
            .collect())
    }

    async fn load_profile(&self, id: &ProfileId) -> Result<Option<Profile>, StoreError> {
        match self.inner.load_profile(id).await? {
            None => Ok(None),
            Some(p) => Ok(self.sealer.open_profiles(vec![p]).await?.pop()),
        }
    }

    async fn load_profiles(&self, ids: Vec<ProfileId>) -> Result<Vec<Profile>, StoreError> {
        let found = self.inner.load_profiles(ids).await?;
        self.sealer.open_profiles(found).await
    }

    async fn recent_events(
        &self,
        ids: Vec<ProfileId>,
        limit: u32,
    ) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError> {
        let found = self.inner.recent_events(ids, limit).await?;
        self.open_grouped(found).await
    }

    async fn events_since(
        &self,
        ids: Vec<ProfileId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError> {
        let found = self.inner.events_since(ids, since).await?;
        self.open_grouped(found).await
    }

    async fn profile_ids_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError> {
        self.inner.profile_ids_after(after, limit).await
    }

    async fn profiles_after(&self, after: Option<ProfileId>, limit: u32) -> Result<Vec<Profile>, StoreError> {
        let page = self.inner.profiles_after(after, limit).await?;
        self.sealer.open_profiles(page).await
    }

    async fn profile_events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self.inner.profile_events(query).await?;
        self.sealer.open_events(events).await
    }

    async fn profile_versions(
        &self,
        id: &ProfileId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        let versions = self.inner.profile_versions(id, before, limit).await?;
        self.sealer.open_versions(versions).await
    }

    async fn versions_for_as_of(
        &self,
        id: &ProfileId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        let versions = self.inner.versions_for_as_of(id, at).await?;
        self.sealer.open_versions(versions).await
    }

    async fn merges_of(&self, id: &ProfileId) -> Result<Vec<MergeRecord>, StoreError> {
        self.inner.merges_of(id).await
    }

    async fn merges_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MergeRecord)>, StoreError> {
        self.inner.merges_after(after, limit).await
    }

    async fn profile_count(&self) -> Result<u64, StoreError> {
        self.inner.profile_count().await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }

    /// Totals only: no personal data, stored as they are.
    async fn activity(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ActivityCount>, StoreError> {
        self.inner.activity(since, until).await
    }

    async fn segment_members(
        &self,
        name: &str,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError> {
        self.inner.segment_members(name, after, limit).await
    }

    async fn segment_sizes(&self, since: DateTime<Utc>) -> Result<Vec<SegmentSize>, StoreError> {
        self.inner.segment_sizes(since).await
    }

    async fn segment_changes_of(&self, id: &ProfileId, limit: u32) -> Result<Vec<SegmentChange>, StoreError> {
        self.inner.segment_changes_of(id, limit).await
    }

    async fn segment_changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, SegmentChange)>, StoreError> {
        self.inner.segment_changes_after(after, limit).await
    }

    async fn track_events_since(
        &self,
        names: Vec<String>,
        since: DateTime<Utc>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let events = self
            .inner
            .track_events_since(names, since, after_seq, limit)
            .await?;
        self.sealer.open_events(events).await
    }
}

impl EncryptedEvents {
    /// Opens events grouped by profile: all together (one pass over the data keys), then
    /// regrouped in the order they came.
    async fn open_grouped(
        &self,
        grouped: HashMap<ProfileId, Vec<StoredEvent>>,
    ) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError> {
        let events: Vec<StoredEvent> = grouped.into_values().flatten().collect();
        let mut out: HashMap<ProfileId, Vec<StoredEvent>> = HashMap::new();
        for e in self.sealer.open_events(events).await? {
            out.entry(e.profile_id.clone()).or_default().push(e);
        }
        Ok(out)
    }
}
