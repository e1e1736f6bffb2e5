//! Storage of missive: the [`Store`] trait and its two backends, SQLite (the embedded default:
//! one file in WAL mode) and PostgreSQL, each with its migrations, plus the conformance suite
//! that both must pass ([`conformance`]).
//!
//! The store owns durability and nothing else: it does not fold events or resolve identities
//! (the engine does), and it never decides what a profile means. One engine process writes a
//! store at a time; [`Store::open`]-style constructors take a writer lock to guarantee it.

#[cfg(feature = "conformance")]
pub mod conformance;
mod encrypted;
mod error;
pub mod postgres;
pub mod sqlite;
mod types;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use missive_core::{ApiKeyId, IdentityKey, MessageId, ProfileId};

pub use encrypted::EncryptedStore;
pub use error::StoreError;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use types::*;

/// Durable state of one missive workspace.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// The workspace this store holds, once bootstrapped.
    async fn workspace(&self) -> Result<Option<Workspace>, StoreError>;

    /// Creates the workspace and its first keys, atomically; fails with
    /// [`StoreError::Conflict`] when a workspace exists already.
    async fn bootstrap_workspace(&self, ws: Workspace, keys: Vec<ApiKeyRecord>) -> Result<(), StoreError>;

    /// The live (not revoked) key whose secret hashes to `secret_hash` (SHA-256 hex: keys
    /// minted before argon2).
    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// A key by id, revoked or not.
    async fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError>;

    async fn create_api_key(&self, key: ApiKeyRecord) -> Result<(), StoreError>;

    /// Every key, oldest first, revoked ones included.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes a key at `at`; false when there is no such live key.
    async fn revoke_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Appends to the audit log (the store assigns `seq`). Nothing can change or delete an
    /// entry afterwards.
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError>;

    /// Audit entries matching `query`, newest first.
    async fn audit_entries(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    /// Stores data keys; a profile that has one already keeps it (the first writer wins, and
    /// the caller reads back what is stored).
    async fn put_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError>;

    /// The data keys of those of `ids` that have one.
    async fn data_keys(&self, ids: Vec<ProfileId>) -> Result<HashMap<ProfileId, DataKeyRecord>, StoreError>;

    /// Data keys in profile-id order after `after`: what a master-key rotation walks.
    async fn data_keys_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<DataKeyRecord>, StoreError>;

    /// Replaces the wrapping of existing data keys (a rotation re-wraps them).
    async fn rewrap_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError>;

    /// Deletes everything stored about these profiles: events (by current and original
    /// profile), profile rows, versions, identities, merges, segment memberships and changes,
    /// journey instances, messages, and last their data keys. Suppressions (keyed hashes) and
    /// the audit log stay.
    async fn erase_profiles(&self, ids: Vec<ProfileId>) -> Result<ErasureCounts, StoreError>;

    /// Records keyed hashes of erased identities: events naming one are dropped from then on.
    async fn add_erased_identities(&self, hashes: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Every erased identity hash.
    async fn erased_identities(&self) -> Result<HashSet<String>, StoreError>;

    /// Deletes up to `limit` events with an event time before `before` (retention); returns
    /// how many. Profiles keep their aggregates.
    async fn purge_events_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// Store-side form of an identity for lookups: the encrypting store replaces every
    /// identity (user ids, anonymous ids, e-mail addresses) by its blind index. The engine's
    /// lookup filter uses it too.
    fn identity_index(&self, key: &IdentityKey) -> IdentityKey {
        key.clone()
    }

    /// Replaces stored identity values in place (`(kind, old value) → new value`, same kind
    /// and profile), atomically; returns how many rows changed. For upgrading the stored form
    /// of identities (the encrypting store blind-indexes ids it once stored in clear).
    async fn reindex_identities(&self, changes: Vec<(IdentityKey, String)>) -> Result<u64, StoreError>;

    /// Stores a group commit of events atomically: the inserts (a message id already stored is
    /// skipped), then the re-pointing of merged profiles' events.
    async fn commit_events(&self, batch: EventBatch) -> Result<(), StoreError>;

    /// Writes a profile checkpoint atomically, in this order: merges (re-pointing identities),
    /// identities, profiles, versions, and `through_seq`. It may run while events are being
    /// committed; the caller commits it only once the events it includes are stored.
    async fn commit_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StoreError>;

    /// The highest event sequence number stored (0 when none).
    async fn last_event_seq(&self) -> Result<i64, StoreError>;

    /// The `through_seq` of the last checkpoint (0 when none): events after it must be
    /// replayed into the profiles after a restart.
    async fn profile_checkpoint(&self) -> Result<i64, StoreError>;

    /// Stored events with a sequence number above `after`, in arrival order.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// Message ids of stored events with a sequence number above `after`, in that order, with
    /// their sequence numbers (to build the engine's in-memory filter at start-up).
    async fn message_ids_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MessageId)>, StoreError>;

    /// Identity keys in (kind, value) order, after `after` when given.
    async fn identity_keys_after(
        &self,
        after: Option<IdentityKey>,
        limit: u32,
    ) -> Result<Vec<IdentityKey>, StoreError>;

    /// Which of `ids` are stored already.
    async fn existing_message_ids(&self, ids: Vec<MessageId>) -> Result<HashSet<MessageId>, StoreError>;

    /// The profile each identity belongs to, for those that are known.
    async fn resolve_identities(
        &self,
        keys: Vec<IdentityKey>,
    ) -> Result<HashMap<IdentityKey, ProfileId>, StoreError>;

    /// A profile row as stored, without following `merged_into` and without history.
    async fn load_profile(&self, id: &ProfileId) -> Result<Option<missive_core::Profile>, StoreError>;

    /// Live profiles (not merged into another) in id order, after `after` when given: a scan
    /// for previews and backfills.
    async fn profiles_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<missive_core::Profile>, StoreError>;

    /// Events of a profile, newest (by event time) first.
    async fn profile_events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// Versions of a profile, newest first, with `version < before` when given.
    async fn profile_versions(
        &self,
        id: &ProfileId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ProfileVersion>, StoreError>;

    /// What rebuilds the profile as recorded at `at`: the newest version carrying a snapshot
    /// at or before `at` (or version 1 when none does: replay starts from an empty profile),
    /// then every later version up to `at`, oldest first.
    async fn versions_for_as_of(
        &self,
        id: &ProfileId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ProfileVersion>, StoreError>;

    /// Merges into or out of a profile, oldest first.
    async fn merges_of(&self, id: &ProfileId) -> Result<Vec<MergeRecord>, StoreError>;

    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Creates or replaces a saved segment.
    async fn save_segment(&self, segment: SegmentRecord) -> Result<(), StoreError>;

    /// Deletes a saved segment and its member list; false when there was none.
    async fn delete_segment(&self, name: &str) -> Result<bool, StoreError>;

    /// Saved segments by name.
    async fn list_segments(&self) -> Result<Vec<SegmentRecord>, StoreError>;

    /// Members of a segment as of the last checkpoint, in id order, after `after` when given.
    async fn segment_members(
        &self,
        name: &str,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError>;

    /// A profile's entries into and exits from segments, newest first.
    async fn segment_changes_of(&self, id: &ProfileId, limit: u32) -> Result<Vec<SegmentChange>, StoreError>;

    /// Segment changes of every profile in the order they were recorded, after position
    /// `after` (0 for the start), with their positions: what segment-triggered journeys read.
    async fn segment_changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, SegmentChange)>, StoreError>;

    /// Saves documents (creating or replacing each), in one transaction; returns the new
    /// version of each, in order. `version` and `updated_at` of the input are ignored except
    /// for `updated_at`, which is stored.
    async fn put_documents(&self, docs: Vec<DocumentRecord>) -> Result<Vec<i64>, StoreError>;

    async fn get_document(
        &self,
        kind: DocumentKind,
        name: &str,
    ) -> Result<Option<DocumentRecord>, StoreError>;

    /// Documents of a kind by name, after `after`, at most `limit`.
    async fn list_documents(
        &self,
        kind: DocumentKind,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<DocumentRecord>, StoreError>;

    async fn delete_document(&self, kind: DocumentKind, name: &str) -> Result<bool, StoreError>;

    /// Track events named one of `names` with a time at or after `since`, in commit order
    /// after `after_seq`, at most `limit`: what recent-sales rankings read.
    async fn track_events_since(
        &self,
        names: Vec<String>,
        since: DateTime<Utc>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// A value from the store's metadata, set to `init` first if absent (workspace secrets).
    async fn meta_get_or_init(&self, key: &str, init: String) -> Result<String, StoreError>;

    /// Sets the metadata value of `key`, replacing any.
    async fn meta_set(&self, key: &str, value: String) -> Result<(), StoreError>;

    /// Applies journey progress in one transaction. Outbox rows whose idempotency key is
    /// already stored are ignored.
    async fn commit_journey(&self, commit: JourneyCommit) -> Result<(), StoreError>;

    /// How far through the event log the journeys have read (0 at first).
    async fn journey_events_through(&self) -> Result<i64, StoreError>;

    /// How far through the segment changes the journeys have read (0 at first).
    async fn journey_segments_through(&self) -> Result<i64, StoreError>;

    /// The active instances of a profile.
    async fn active_instances(&self, profile: &ProfileId) -> Result<Vec<JourneyInstance>, StoreError>;

    /// Active instances whose wait ends at or before `now`, soonest first.
    async fn due_instances(&self, now: DateTime<Utc>, limit: u32)
    -> Result<Vec<JourneyInstance>, StoreError>;

    /// The soonest end of any active wait.
    async fn next_instance_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Instances of one journey, newest first.
    async fn journey_instances(&self, journey: &str, limit: u32) -> Result<Vec<JourneyInstance>, StoreError>;

    /// Queued messages due at or before `now`, soonest first.
    async fn due_outbox(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Records what happened to messages (status, attempts, next attempt, sent time, detail).
    /// Only messages still queued change: one skipped meanwhile (a cancelled broadcast) stays
    /// skipped.
    async fn update_outbox(&self, messages: Vec<OutboxMessage>) -> Result<(), StoreError>;

    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError>;

    /// Messages of a profile, newest first.
    async fn outbox_of(&self, profile: &ProfileId, limit: u32) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Marketing messages sent to a profile since `since` (the frequency cap).
    async fn marketing_sent_since(
        &self,
        profile: &ProfileId,
        since: DateTime<Utc>,
    ) -> Result<u32, StoreError>;

    async fn suppress(&self, suppression: Suppression) -> Result<(), StoreError>;

    async fn suppression(&self, address_hash: &str) -> Result<Option<Suppression>, StoreError>;

    /// How many messages of a source (`broadcast:ID`, `journey:NAME`) are in each status.
    async fn outbox_counts(&self, source: &str) -> Result<OutboxCounts, StoreError>;

    /// Marks the still-queued messages of a source skipped (a cancelled broadcast); returns
    /// how many.
    async fn skip_queued(&self, source: &str, detail: &str) -> Result<u64, StoreError>;

    /// Counts a soft bounce of an address (keyed hash) at `at`; returns how many it has had.
    async fn record_soft_bounce(&self, address_hash: &str, at: DateTime<Utc>) -> Result<u32, StoreError>;
}

/// Opens the store a URL names: `sqlite:PATH` / a plain path, or `postgres://…`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url, None).await?))
    } else {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        Ok(Arc::new(SqliteStore::open(path).await?))
    }
}
