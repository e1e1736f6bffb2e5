use chrono::{DateTime, Utc};
use missive_core::{
    ApiKeyId, EventKind, IdentityKey, MessageClass, MessageId, MessageSource, Profile, ProfileDiff,
    ProfileId, WorkspaceId,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// What an API key (or a console session) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Segments, content, journeys and broadcasts; reads profiles.
    Marketer,
    /// Reports and pseudonymized profiles only.
    Analyst,
    /// Consent, export, erasure and the audit log.
    PrivacyOfficer,
    /// Ingest only, from web pages and apps: Segment's write key, public by design. Its events
    /// are client events (see `missive_core::Trust`).
    Write,
    /// Ingest only, from the retailer's own servers: a secret key, trusted to change what a
    /// client key may not (a known person's address).
    ServerWrite,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Marketer,
        Role::Analyst,
        Role::PrivacyOfficer,
        Role::Write,
        Role::ServerWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Analyst => "analyst",
            Role::PrivacyOfficer => "privacy_officer",
            Role::Write => "write",
            Role::ServerWrite => "server_write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The prefix of this role's keys, so that a leaked key says what it can do.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Role::Admin => "ak_",
            Role::Marketer => "mk_",
            Role::Analyst => "nk_",
            Role::PrivacyOfficer => "pk_",
            Role::Write => "wk_",
            Role::ServerWrite => "sk_",
        }
    }
}

/// An API key as stored: only a hash of the secret (argon2id in PHC form; SHA-256 hex for keys
/// minted before argon2).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub role: Role,
    pub secret_hash: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One line of the append-only audit log: who did what to what, when, with what outcome.
/// It never holds personal data: targets are profile ids, names of documents, key ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Assigned by the store, increasing.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// `key:key_…`, `session:key_…`, `link:preference-centre`, `cli`, or `anonymous`.
    pub actor: String,
    /// The actor's role (`admin`, …), or empty.
    pub role: String,
    /// `profile.read`, `profile.erase`, `template.save`, `auth.denied`, …
    pub action: String,
    /// What it was done to: `profile:prf_…`, `template:cart`, `key:key_…`, a route.
    pub target: String,
    /// The HTTP status of the outcome (0 outside HTTP).
    pub status: u16,
    pub detail: String,
}

/// What to read from the audit log: newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries with `seq` below this (the next page).
    pub before_seq: Option<i64>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<String>,
    pub limit: u32,
}

/// A profile's data key, wrapped under a master key (the key file's): destroying it makes
/// every copy of the profile's encrypted data unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    pub profile_id: ProfileId,
    pub master_key_id: String,
    /// The wrapped key (base64), as `missive_privacy::WrappedKey::blob`.
    pub wrapped: String,
    pub created_at: DateTime<Utc>,
}

/// What an erasure deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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
}

/// A saved segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    pub name: String,
    pub expression: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(m).unwrap_or_default()
}

/// A versioned content document: a template, a content block or a product. Its body is the
/// JSON the content layer defines; the store keeps the latest version of each.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRecord {
    pub kind: DocumentKind,
    pub name: String,
    /// 1 for the first save, then one more on each save.
    pub version: i64,
    pub body: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

/// The kinds of content documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    Template,
    Block,
    Product,
    Journey,
    Broadcast,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Template => "template",
            DocumentKind::Block => "block",
            DocumentKind::Product => "product",
            DocumentKind::Journey => "journey",
            DocumentKind::Broadcast => "broadcast",
        }
    }
}

/// Where a journey instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    Active,
    Completed,
    Exited,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Active => "active",
            InstanceStatus::Completed => "completed",
            InstanceStatus::Exited => "exited",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => InstanceStatus::Active,
            "completed" => InstanceStatus::Completed,
            "exited" => InstanceStatus::Exited,
            _ => return None,
        })
    }
}

/// One profile's passage through a journey.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyInstance {
    pub id: String,
    pub journey: String,
    pub journey_version: i64,
    pub profile_id: ProfileId,
    /// The instance key (`cart_id`, …), or "" for one instance per profile.
    pub key: String,
    /// The step it is at (waiting at, or last executed when no longer active).
    pub step: String,
    pub status: InstanceStatus,
    /// When a wait ends (the timeout of a wait for an event).
    pub wake_at: Option<DateTime<Utc>>,
    /// The event name a `wait_for_event` step waits for.
    pub waiting_for: Option<String>,
    /// The triggering event and anything steps recorded (JSON).
    pub context: serde_json::Value,
    pub entered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What happened to a message in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Waiting to be sent at `next_attempt_at`.
    Queued,
    Sent,
    /// Refused by the relay for good, or out of attempts.
    Failed,
    /// Not sent: the address is suppressed, consent is missing or a cap was reached.
    Skipped,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => OutboxStatus::Queued,
            "sent" => OutboxStatus::Sent,
            "failed" => OutboxStatus::Failed,
            "skipped" => OutboxStatus::Skipped,
            _ => return None,
        })
    }
}

/// A send decision: one message to one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Also the message's id in its `Message-ID` header (`msg_…`).
    pub id: String,
    /// Unique: the same decision made twice (a replay after a crash) is stored once.
    pub idempotency_key: String,
    pub profile_id: ProfileId,
    pub template: String,
    pub class: MessageClass,
    /// Stored as `journey:NAME` or `broadcast:ID`.
    pub source: MessageSource,
    /// The triggering event and other render context (JSON).
    pub context: serde_json::Value,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub recipient: Option<String>,
    /// Why it was skipped or failed, or the relay's answer.
    pub detail: Option<String>,
}

/// Journey progress committed atomically: instance changes, the send decisions they made,
/// and how far through the event log the journeys have read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JourneyCommit {
    pub instances: Vec<JourneyInstance>,
    pub outbox: Vec<OutboxMessage>,
    pub events_through: Option<i64>,
    /// How far through the segment changes the journeys have read.
    pub segments_through: Option<i64>,
}

/// A suppressed address, kept as a keyed hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub address_hash: String,
    /// `hard_bounce`, `complaint`, `unsubscribed`, `soft_bounces`, `manual`.
    pub reason: String,
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// Messages of one source by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl OutboxCounts {
    pub fn add(&mut self, status: &str, n: u64) {
        match status {
            "queued" => self.queued += n,
            "sent" => self.sent += n,
            "failed" => self.failed += n,
            _ => self.skipped += n,
        }
    }
}
