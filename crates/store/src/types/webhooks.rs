//! Records of outbound webhooks: the queue of notices, attempts and dead letters.

use chrono::{DateTime, Utc};
use missive_core::ProfileId;

/// One change queued for outbound webhooks, in commit order. It carries no personal data:
/// what the change was (`kind`, for example `segment.entered`), whom it was about, and ids
/// and names (`data`); a payload's personal part is read when it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookNotice {
    /// Assigned by the store, increasing in commit order; 0 on a new notice.
    pub seq: i64,
    pub kind: String,
    /// What caused it, unique per kind (a message id, a change's sequence number): the same
    /// cause queued twice is one notice.
    pub key: String,
    pub profile_id: Option<ProfileId>,
    /// Only this endpoint receives it (a test or a replay); `None`: every subscriber.
    pub endpoint: Option<String>,
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// One try at delivering a notice to an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAttempt {
    pub endpoint: String,
    pub seq: i64,
    pub webhook_id: String,
    pub kind: String,
    /// The HTTP status of the answer; 0 when there was none (refused, timed out).
    pub status: u16,
    /// Why it failed, empty on success.
    pub error: String,
    pub at: DateTime<Utc>,
    pub duration_ms: u32,
}

/// A notice an endpoint did not take within its retry window.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub endpoint: String,
    pub notice: WebhookNotice,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The queue positions of outbound webhooks kept in the delivery area's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookPosition<'a> {
    /// How far the follower has read one committed log (`events`, `segments`, `merges`).
    Source(&'a str),
    /// The last notice an endpoint has taken (or dead-lettered).
    Endpoint(&'a str),
}

impl WebhookPosition<'_> {
    /// The metadata key.
    pub fn key(&self) -> String {
        match self {
            WebhookPosition::Source(log) => format!("webhooks.source.{log}"),
            WebhookPosition::Endpoint(name) => format!("webhooks.endpoint.{name}"),
        }
    }
}

impl DeadLetter {
    /// The copy a replay queues: for this endpoint alone, under a key of its own.
    pub fn replay(&self, at: DateTime<Utc>) -> WebhookNotice {
        WebhookNotice {
            seq: 0,
            kind: self.notice.kind.clone(),
            key: format!(
                "replay:{}:{}:{}",
                self.endpoint,
                self.notice.seq,
                at.timestamp_micros()
            ),
            profile_id: self.notice.profile_id.clone(),
            endpoint: Some(self.endpoint.clone()),
            data: self.notice.data.clone(),
            at: self.notice.at,
        }
    }
}
