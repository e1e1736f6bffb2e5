//! Journey instances, the outbox, suppressions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use missive_core::{MessageClass, MessageSource, ProfileId};
use serde::Serialize;

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

/// How many instances of a journey are at one step in one state: waiting there (active), or
/// having left the journey there (completed or exited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCount {
    pub step: String,
    pub status: InstanceStatus,
    pub instances: u64,
}

impl StepCount {
    /// From a `GROUP BY step, status` row of either backend.
    pub fn from_row(step: String, status: &str, instances: i64) -> Result<Self, crate::StoreError> {
        Ok(StepCount {
            step,
            status: InstanceStatus::parse(status)
                .ok_or_else(|| crate::StoreError::Corrupt(format!("instance status: {status}")))?,
            instances: u64::try_from(instances).unwrap_or(0),
        })
    }
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
    /// The journey step that decided it (`None` for a broadcast).
    pub step: Option<String>,
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

/// Messages of one source by status, and why those not sent were not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OutboxCounts {
    pub queued: u64,
    /// Of the queued, those a send-time rule put off (quiet hours).
    pub deferred: u64,
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Skipped messages by the reason recorded on them (`no_consent`, `suppressed: hard_bounce`).
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Deferred messages by reason (`quiet_hours`).
    pub deferred_by_reason: BTreeMap<String, u64>,
}

/// The prefix of a deferred message's detail: `deferred: quiet_hours`.
pub const DEFERRED: &str = "deferred: ";

impl OutboxCounts {
    /// Counts `n` messages of `status` whose detail is `detail`.
    pub fn add(&mut self, status: &str, detail: Option<&str>, n: u64) {
        match status {
            "queued" => {
                self.queued += n;
                if let Some(reason) = detail.and_then(|d| d.strip_prefix(DEFERRED)) {
                    self.deferred += n;
                    *self.deferred_by_reason.entry(reason.to_owned()).or_default() += n;
                }
            }
            "sent" => self.sent += n,
            "failed" => self.failed += n,
            _ => {
                self.skipped += n;
                let reason = detail.unwrap_or("unknown").to_owned();
                *self.skipped_by_reason.entry(reason).or_default() += n;
            }
        }
    }
}

/// Where a page of messages ends: the next page starts after it (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxCursor {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

/// The SQL that picks the detail counted by reason: a skip's, or a deferral's.
pub(crate) const REASON_DETAIL_SQL: &str =
    "CASE WHEN status = 'skipped' OR (status = 'queued' AND detail LIKE 'deferred: %') THEN detail END";
