//! The event log and the profiles folded from it: events, identities, profiles, versions,
//! merges, segment memberships and their changes, erasure and retention. Personal data: the
//! encrypting store wraps this area.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use missive_core::schema::{Declared, FieldKey, StoredField};
use missive_core::{IdentityKey, MessageId, ProfileId};

use crate::StoreError;
use crate::types::*;

/// Events and profiles of one workspace.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
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
    /// lookup filter uses it too. No default: a wrapper around another event area must pass
    /// it on, or lookups would skip the blind index.
    fn identity_index(&self, key: &IdentityKey) -> IdentityKey;

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

    /// Every stored schema field: what was observed of it (written with checkpoints) and
    /// what was declared.
    async fn schema_fields(&self) -> Result<Vec<StoredField>, StoreError>;

    /// Declares a field (`Some`) or withdraws its declaration (`None`); returns whether it
    /// was declared before. What was observed of it stays.
    async fn declare_schema_field(
        &self,
        key: FieldKey,
        declared: Option<Declared>,
    ) -> Result<bool, StoreError>;

    /// The highest event sequence number stored (0 when none).
    async fn last_event_seq(&self) -> Result<i64, StoreError>;

    /// The `through_seq` of the last checkpoint (0 when none): events after it must be
    /// replayed into the profiles after a restart.
    async fn profile_checkpoint(&self) -> Result<i64, StoreError>;
    /// Segment backfills started and not finished, as the last checkpoint left them.
    async fn unfinished_backfills(&self) -> Result<Vec<crate::BackfillMark>, StoreError>;

    /// Stored events with a sequence number above `after`, in arrival order.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;

    /// Cluster mode: where the owners of `partitions` have got to in the log; partitions
    /// never written are left out.
    async fn partition_marks(&self, partitions: Vec<u16>) -> Result<Vec<PartitionMark>, StoreError> {
        let _ = partitions;
        Err(cluster_unsupported())
    }

    /// Cluster mode: the events folded in `partition` with a sequence number above `after`,
    /// in arrival order (what a new owner replays after the partition's checkpoint).
    async fn partition_events_after(
        &self,
        partition: u16,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let _ = (partition, after, limit);
        Err(cluster_unsupported())
    }

    /// Cluster mode: the partitions the identities are routed to, for those that have a route.
    /// Keys as the caller has them (a wrapper applies its [`Self::identity_index`]).
    async fn identity_routes(&self, keys: Vec<IdentityKey>) -> Result<HashMap<IdentityKey, u16>, StoreError> {
        let _ = keys;
        Err(cluster_unsupported())
    }

    /// Cluster mode: routes each identity to its partition unless it has a route already
    /// (the first claim wins), and answers with the route of every key as it now stands.
    async fn claim_routes(
        &self,
        claims: Vec<(IdentityKey, u16)>,
    ) -> Result<HashMap<IdentityKey, u16>, StoreError> {
        let _ = claims;
        Err(cluster_unsupported())
    }

    /// Cluster mode: the live profiles of `partitions` (those whose identities are routed to
    /// one of them), each with its partition, for a segment backfill or the segment timers
    /// over what a node owns.
    async fn profiles_in_partitions(
        &self,
        partitions: Vec<u16>,
    ) -> Result<Vec<(ProfileId, u16)>, StoreError> {
        let _ = partitions;
        Err(cluster_unsupported())
    }

    /// Cluster mode: what every profile of `partition` was evaluated against by a segment
    /// backfill or a model's scoring that finished ((kind, name) → definition).
    async fn partition_backfills(
        &self,
        partition: u16,
    ) -> Result<HashMap<(crate::BackfillKind, String), String>, StoreError> {
        let _ = partition;
        Err(cluster_unsupported())
    }

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

    /// [`Self::load_profile`] for many ids in one read (the sender's batches): the rows found,
    /// in no particular order; ids not stored are left out.
    async fn load_profiles(&self, ids: Vec<ProfileId>) -> Result<Vec<missive_core::Profile>, StoreError>;

    /// The newest `limit` events (by event time) of each of `ids`, newest first, in one read:
    /// [`Self::profile_events`] for a batch. Profiles without events are left out.
    async fn recent_events(
        &self,
        ids: Vec<ProfileId>,
        limit: u32,
    ) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError>;

    /// Every event of each of `ids` at or after `since` (all of them when `None`), newest first,
    /// in one read: what a segment backfill adds to a page of profiles' windows. Profiles
    /// without such events are left out.
    async fn events_since(
        &self,
        ids: Vec<ProfileId>,
        since: Option<DateTime<Utc>>,
    ) -> Result<HashMap<ProfileId, Vec<StoredEvent>>, StoreError>;

    /// Live profiles (not merged into another) in id order, after `after` when given: a scan
    /// for previews and backfills.
    async fn profiles_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<missive_core::Profile>, StoreError>;

    /// The ids of live profiles in id order, after `after` when given: [`Self::profiles_after`]
    /// without reading (and opening) the profiles.
    async fn profile_ids_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError>;

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

    /// Merges recorded after `after` (a merge's position in the log), in the order recorded.
    async fn merges_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MergeRecord)>, StoreError>;

    /// Live profiles and stored events: counts both (the events a full count).
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Live profiles (not merged into another): a count of the profiles alone.
    async fn profile_count(&self) -> Result<u64, StoreError>;

    /// Hourly activity counts with `since <= hour < until`, in hour order (hours without
    /// activity are left out).
    async fn activity(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ActivityCount>, StoreError>;

    /// Members of a segment as of the last checkpoint, in id order, after `after` when given.
    async fn segment_members(
        &self,
        name: &str,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError>;

    /// Every segment with members or changes: its members as of the last checkpoint and its
    /// entries and exits at or after `since`, by segment name.
    async fn segment_sizes(&self, since: DateTime<Utc>) -> Result<Vec<SegmentSize>, StoreError>;

    /// A profile's entries into and exits from segments, newest first.
    async fn segment_changes_of(&self, id: &ProfileId, limit: u32) -> Result<Vec<SegmentChange>, StoreError>;

    /// Segment changes of every profile in the order they were recorded, after position
    /// `after` (0 for the start), with their positions: what segment-triggered journeys read.
    async fn segment_changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, SegmentChange)>, StoreError>;

    /// Track events named one of `names` with a time at or after `since`, in commit order
    /// after `after_seq`, at most `limit`: what recent-sales rankings read.
    async fn track_events_since(
        &self,
        names: Vec<String>,
        since: DateTime<Utc>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;
}

/// What a backend without cluster mode answers to its calls.
pub(crate) fn cluster_unsupported() -> StoreError {
    StoreError::Unsupported("cluster mode needs the PostgreSQL store ([store] postgres = …)".into())
}
