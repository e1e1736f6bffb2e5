//! Events, profiles' versions and merges, checkpoints, segment changes, paging.

use chrono::{DateTime, Utc};
use missive_core::{EventKind, IdentityKey, MessageId, Profile, ProfileDiff, ProfileId};
use serde::Serialize;

/// What an erasure deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErasureCounts {
    pub profiles: u64,
    pub events: u64,
    pub versions: u64,
    pub identities: u64,
    pub segment_memberships: u64,
    pub journey_instances: u64,
    pub messages: u64,
    pub data_keys: u64,
}

/// An event as stored, attributed to the profile it was folded into.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Arrival order, assigned by the engine: strictly increasing, never reused.
    pub seq: i64,
    pub message_id: MessageId,
    /// The profile it belongs to now (merges re-point it).
    pub profile_id: ProfileId,
    /// The profile it was first folded into, never re-pointed: replay recreates that profile
    /// under the same id.
    pub origin_profile_id: ProfileId,
    pub kind: EventKind,
    pub name: String,
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub body: serde_json::Value,
}

/// One version of a profile: what changed, when it was recorded, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileVersion {
    pub profile_id: ProfileId,
    pub version: u64,
    pub recorded_at: DateTime<Utc>,
    /// What caused it: `track:Order Completed`, `identify`, `merge`, or `N events`.
    pub cause: String,
    pub diff: ProfileDiff,
    /// The whole profile after this version, kept every few versions so that rebuilding a
    /// past state replays a bounded number of diffs.
    pub snapshot: Option<Profile>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MergeRecord {
    pub from: ProfileId,
    pub into: ProfileId,
    pub at: DateTime<Utc>,
    /// The message that caused it.
    pub cause: String,
}

/// One group commit of events: durable once [`crate::Store::commit_events`] returns.
#[derive(Debug, Clone, Default)]
pub struct EventBatch {
    /// New events with their `seq` set, ascending; a message id already stored is skipped.
    pub events: Vec<StoredEvent>,
    /// Merges made while folding them, `(from, into)` in order: the events of `from` now
    /// belong to `into`. Applied after the inserts.
    pub repoint: Vec<(ProfileId, ProfileId)>,
    /// What these events add to the hourly activity counts (the console's overview), summed
    /// per hour and metric; written in the same transaction as the events.
    pub activity: Vec<ActivityCount>,
    /// Cluster mode: the leases this commit is made under, checked first in its transaction
    /// (a former owner's commit is refused with [`crate::StoreError::Fenced`]). Empty in the
    /// embedded mode.
    pub fences: Vec<Fence>,
    /// Cluster mode: the partition of each event, in the order of `events` (empty in the
    /// embedded mode).
    pub partitions: Vec<u16>,
    /// Cluster mode: per partition, the last stream sequence this commit settles (stored or
    /// found a duplicate): where the partition's next owner resumes reading the log.
    pub applied: Vec<(u16, i64)>,
}

/// A partition owner's proof of ownership (cluster mode): a write made under it commits only
/// while `node` still holds the partition's lease with this `token`, by the database's clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub node: String,
    pub partition: u16,
    pub token: i64,
}

/// Cluster mode: proof that `node` holds the service lease `name` (the sending side's): the
/// journey and outbox writes made under it commit only while it does, by the database's clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaderFence {
    pub name: String,
    pub node: String,
    pub token: i64,
}

/// Where a partition's owner has got to in the log (cluster mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionMark {
    pub partition: u16,
    /// The last stream sequence whose event is stored (or was found a duplicate).
    pub applied_seq: i64,
    /// The last stream sequence the stored profiles include.
    pub checkpoint_seq: i64,
}

/// What the hourly activity rollup counts: no personal data, only totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActivityMetric {
    /// Every stored event.
    Events,
    /// Messages the relay accepted (`Email Delivered`).
    Delivered,
    /// `Email Opened`.
    Opened,
    /// `Email Link Clicked`.
    Clicked,
    /// Orders (`Order Completed`): conversions.
    Orders,
    /// Their revenue, in minor units (cents).
    RevenueMinor,
}

impl ActivityMetric {
    pub const ALL: [ActivityMetric; 6] = [
        ActivityMetric::Events,
        ActivityMetric::Delivered,
        ActivityMetric::Opened,
        ActivityMetric::Clicked,
        ActivityMetric::Orders,
        ActivityMetric::RevenueMinor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityMetric::Events => "events",
            ActivityMetric::Delivered => "delivered",
            ActivityMetric::Opened => "opened",
            ActivityMetric::Clicked => "clicked",
            ActivityMetric::Orders => "orders",
            ActivityMetric::RevenueMinor => "revenue_minor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// One hour's count of one metric (the hour of the events' own timestamps, truncated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityCount {
    pub hour: DateTime<Utc>,
    pub metric: ActivityMetric,
    pub value: i64,
}

impl ActivityCount {
    /// Sums counts of the same hour and metric into one (a backend adds each pair once per
    /// statement), in hour and metric order.
    pub fn summed(counts: impl IntoIterator<Item = ActivityCount>) -> Vec<ActivityCount> {
        let mut by: std::collections::BTreeMap<(DateTime<Utc>, ActivityMetric), i64> = Default::default();
        for c in counts {
            let v = by.entry((c.hour, c.metric)).or_default();
            *v = v.saturating_add(c.value);
        }
        by.into_iter()
            .map(|((hour, metric), value)| ActivityCount { hour, metric, value })
            .collect()
    }
}

/// One profile checkpoint: the profiles, versions, identities and merges changed since the
/// last one, written atomically with the sequence number of the last event they include.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub merges: Vec<MergeRecord>,
    pub identities: Vec<(IdentityKey, ProfileId)>,
    pub profiles: Vec<Profile>,
    pub versions: Vec<ProfileVersion>,
    /// Entries into and exits from segments since the last checkpoint, in order.
    pub segment_changes: Vec<SegmentChange>,
    /// Every event with a `seq` up to this one is included in the stored profiles.
    pub through_seq: i64,
    /// The schema fields observed since the last checkpoint, with all that was observed of
    /// each. Types add up to what is stored and seen times widen; the examples replace the
    /// stored ones (the writer loaded those at start-up and kept them).
    pub schema: Vec<(missive_core::schema::FieldKey, missive_core::schema::Observed)>,
    /// How far segment backfills have come, in order, recorded with the memberships they
    /// changed.
    pub backfills: Vec<BackfillUpdate>,
    /// Cluster mode: the leases it is made under (see [`EventBatch::fences`]).
    pub fences: Vec<Fence>,
    /// Cluster mode: per partition, the last stream sequence the profiles include; written
    /// instead of `through_seq`, which belongs to the embedded mode's single owner. The
    /// partition's `applied_seq` is raised to it too (a control record of the log is settled
    /// by the checkpoint it causes, not by an events commit).
    pub partitions: Vec<(u16, i64)>,
    /// Cluster mode: identities whose profile was merged into one of another partition, and
    /// the partition they are routed to from now on (only a route still pointing at `from` moves).
    pub routes: Vec<RouteMove>,
    /// Cluster mode: segment backfills over a partition started (its record dropped) or
    /// finished, in order; a partition's new owner finishes what is not recorded done.
    pub partition_backfills: Vec<PartitionBackfill>,
}

/// Cluster mode: a segment backfill or a model's scoring over one partition's profiles, as a
/// checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionBackfill {
    pub partition: u16,
    pub kind: BackfillKind,
    /// The segment's or the model's name.
    pub name: String,
    /// What every profile of the partition was evaluated against (a segment's expression, a
    /// model's version and batch-scoring time); `None`: what was recorded no longer holds.
    pub done: Option<String>,
}

/// What a partition's profiles are evaluated against in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackfillKind {
    Segment,
    Model,
}

impl BackfillKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillKind::Segment => "segment",
            BackfillKind::Model => "model",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "segment" => Some(BackfillKind::Segment),
            "model" => Some(BackfillKind::Model),
            _ => None,
        }
    }
}

/// Cluster mode: an identity's route moved from one partition to another (its profile was
/// merged into one of the other partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMove {
    pub key: IdentityKey,
    pub from: u16,
    pub to: u16,
}

/// A segment backfill not finished yet: where to resume when the engine starts again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillMark {
    pub segment: String,
    /// The segment's name was new: a membership left from an earlier segment of that name
    /// is dropped, not compared with.
    pub is_new: bool,
    /// The last profile id done, in id order (`None`: none yet).
    pub after: Option<ProfileId>,
}

/// What a checkpoint records of a segment backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackfillUpdate {
    /// Started, or done up to `mark.after`.
    Progress(BackfillMark),
    /// Done (or given up: the segment was deleted or replaced): nothing to resume.
    Finished { segment: String },
}

/// A profile entering or leaving a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentChange {
    pub profile_id: ProfileId,
    pub segment: String,
    pub entered: bool,
    pub at: DateTime<Utc>,
    /// `event`, `time`, `segment:NAME` or `backfill`.
    pub cause: String,
}

/// A saved segment's size as of the last checkpoint, and its movement since an instant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentSize {
    pub segment: String,
    pub members: u64,
    /// Entries and exits recorded at or after the instant asked about.
    pub entered: u64,
    pub exited: u64,
}

#[derive(Debug, Clone)]
pub struct EventQuery {
    pub profile_id: ProfileId,
    /// Only events received at or before this time (for the profile as of a past time).
    pub received_before: Option<DateTime<Utc>>,
    /// Continue after this cursor (from the last page's last event).
    pub cursor: Option<EventCursor>,
    pub limit: u32,
}

/// Position in the newest-first event order: event time, then arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    pub timestamp_micros: i64,
    pub seq: i64,
}

impl EventCursor {
    pub fn of(e: &StoredEvent) -> Self {
        Self {
            timestamp_micros: e.timestamp.timestamp_micros(),
            seq: e.seq,
        }
    }

    pub fn encode(&self) -> String {
        format!("{}.{}", self.timestamp_micros, self.seq)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (t, s) = s.split_once('.')?;
        Some(Self {
            timestamp_micros: t.parse().ok()?,
            seq: s.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StoreStats {
    /// Live profiles (not merged into another).
    pub profiles: u64,
    pub events: u64,
}
