//! Outbound webhooks: the queue of notices (changes in commit order, no personal data), the
//! positions of the follower and of each endpoint, attempts and dead letters. Journey
//! completions and sent messages are queued by the delivery area in the same transaction as
//! the change itself ([`crate::DeliveryStore::commit_journey`], `update_outbox`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::types::*;

/// The outbound webhooks' durable state.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Queues notices and moves positions in one transaction; a notice whose (kind, key) is
    /// already queued is skipped.
    async fn enqueue_webhooks(
        &self,
        notices: Vec<WebhookNotice>,
        positions: Vec<(String, i64)>,
    ) -> Result<(), StoreError>;

    /// A position (0 when never set): see [`WebhookPosition::key`].
    async fn webhook_position(&self, key: &str) -> Result<i64, StoreError>;

    /// Sets a position.
    async fn set_webhook_position(&self, key: &str, value: i64) -> Result<(), StoreError>;

    /// The last queued notice's position (0 when the queue is empty): where a new endpoint
    /// starts, so that it receives changes from its creation on.
    async fn last_webhook_seq(&self) -> Result<i64, StoreError>;

    /// Queued notices after `after`, ascending.
    async fn webhooks_after(&self, after: i64, limit: u32) -> Result<Vec<WebhookNotice>, StoreError>;

    /// Deletes notices at or before `through` (every endpoint has passed them) and attempts
    /// recorded before `attempts_before`.
    async fn trim_webhooks(&self, through: i64, attempts_before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Records attempts and, after a delivery, moves a position, in one transaction (one
    /// commit per delivery: on SQLite, one fsync).
    async fn record_webhook_attempts(
        &self,
        attempts: Vec<WebhookAttempt>,
        position: Option<(String, i64)>,
    ) -> Result<(), StoreError>;

    /// An endpoint's attempts, newest first.
    async fn webhook_attempts(&self, endpoint: &str, limit: u32) -> Result<Vec<WebhookAttempt>, StoreError>;

    /// Keeps a notice the endpoint did not take and moves the endpoint's position past it,
    /// in one transaction.
    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError>;

    /// An endpoint's dead letters, oldest first.
    async fn dead_letters(&self, endpoint: &str, limit: u32) -> Result<Vec<DeadLetter>, StoreError>;

    /// Forgets erased people: their queued notices and dead letters go (a `profile.erased`
    /// notice stays, to be delivered). Returns how many rows were deleted.
    async fn erase_webhook_profiles(&self, ids: Vec<missive_core::ProfileId>) -> Result<u64, StoreError>;

    /// Forgets a deleted endpoint: its position, attempts and dead letters.
    async fn forget_webhook_endpoint(&self, endpoint: &str) -> Result<(), StoreError>;

    /// Queues copies of an endpoint's dead letters (those named, or all) for that endpoint
    /// alone and removes them, in one transaction. Returns how many.
    async fn replay_dead_letters(
        &self,
        endpoint: &str,
        seqs: Option<Vec<i64>>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// The notice a journey instance completing queues (`journey.completed`).
pub fn journey_completed(i: &JourneyInstance) -> WebhookNotice {
    WebhookNotice {
        seq: 0,
        kind: "journey.completed".into(),
        key: i.id.clone(),
        profile_id: Some(i.profile_id.clone()),
        endpoint: None,
        data: serde_json::json!({"journey": i.journey, "instance_id": i.id}),
        at: i.updated_at,
    }
}

/// The notice a message handed over queues (`message.sent`).
pub fn message_sent(m: &OutboxMessage) -> WebhookNotice {
    WebhookNotice {
        seq: 0,
        kind: "message.sent".into(),
        key: m.id.clone(),
        profile_id: Some(m.profile_id.clone()),
        endpoint: None,
        data: serde_json::json!({
            "message_id": m.id,
            "template": m.template,
            "source": m.source.to_string(),
        }),
        at: m.sent_at.unwrap_or(m.next_attempt_at),
    }
}

/// The notice an erasure queues (`profile.erased`), after the erasure committed.
pub fn profile_erased(profile: &missive_core::ProfileId, at: DateTime<Utc>) -> WebhookNotice {
    WebhookNotice {
        seq: 0,
        kind: "profile.erased".into(),
        key: profile.as_str().into(),
        profile_id: Some(profile.clone()),
        endpoint: None,
        data: serde_json::json!({}),
        at,
    }
}
