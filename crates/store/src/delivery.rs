//! Delivery: journey instances, the outbox, suppressions and soft bounces. Journey and
//! outbox contexts and recipients are personal data: the encrypting store wraps this area.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use missive_core::{MessageSource, ProfileId};

use crate::StoreError;
use crate::types::*;

/// Journeys' progress and the messages they and broadcasts queue.
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Applies journey progress in one transaction. Outbox rows whose idempotency key is
    /// already stored are ignored. In cluster mode it commits only under the sending lease
    /// ([`DeliveryStore::set_leader_fence`]), checked in the transaction, and is refused with
    /// [`StoreError::Fenced`] otherwise; so is [`DeliveryStore::update_outbox`].
    async fn commit_journey(&self, commit: JourneyCommit) -> Result<(), StoreError>;

    /// Cluster mode: the sending lease this node holds from now on (`None`: none). A backend
    /// that is not a cluster's ignores it.
    fn set_leader_fence(&self, _fence: Option<LeaderFence>) {}

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

    /// A journey's instances counted by step and state, in no particular order.
    async fn journey_step_counts(&self, journey: &str) -> Result<Vec<StepCount>, StoreError>;

    /// Queued messages of `lane` due at or before `now`, soonest first; those due at the same
    /// time in an order of the backend's choosing (SQLite: the order they were queued in).
    async fn due_in_lane(
        &self,
        lane: missive_core::outbox::Lane,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Queued messages due at or before `now`: the triggered lane first, then the bulk lane
    /// fills what is left of `limit` (each as [`Self::due_in_lane`]).
    async fn due_outbox(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut due = Vec::new();
        for lane in missive_core::outbox::Lane::ALL {
            let left = limit.saturating_sub(u32::try_from(due.len()).unwrap_or(u32::MAX));
            if left == 0 {
                break;
            }
            due.extend(self.due_in_lane(lane, now, left).await?);
        }
        Ok(due)
    }

    /// Records what happened to messages (status, attempts, next attempt, sent time, detail,
    /// and the context, which gains the experiment variant a message got).
    /// Only messages still queued change: one skipped meanwhile (a cancelled broadcast) stays
    /// skipped, unless the outcome is that it was sent (the relay accepted it while the cancel
    /// was made: what happened is recorded, and counted by the frequency checks).
    async fn update_outbox(&self, messages: Vec<OutboxMessage>) -> Result<(), StoreError>;

    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError>;

    /// Messages that failed for good at or after `since` (by when they were last due), newest
    /// first.
    async fn recent_failures(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Which of the messages `ids` were sent (handed over and accepted by the relay).
    async fn sent_among(&self, ids: Vec<String>) -> Result<std::collections::HashSet<String>, StoreError>;

    /// Messages of a profile, newest first.
    async fn outbox_of(&self, profile: &ProfileId, limit: u32) -> Result<Vec<OutboxMessage>, StoreError>;

    /// When marketing messages were sent to each of `profiles` since `since` (the frequency
    /// cap and the person's own frequency choice), in one read. Profiles sent nothing are left
    /// out.
    async fn marketing_sent_times(
        &self,
        profiles: Vec<ProfileId>,
        since: DateTime<Utc>,
    ) -> Result<HashMap<ProfileId, Vec<DateTime<Utc>>>, StoreError>;

    async fn suppress(&self, suppression: Suppression) -> Result<(), StoreError>;

    async fn suppression(&self, address_hash: &str) -> Result<Option<Suppression>, StoreError>;

    /// [`Self::suppression`] for many address hashes in one read: the suppressed ones.
    async fn suppressions(&self, address_hashes: Vec<String>) -> Result<Vec<Suppression>, StoreError>;

    /// How many messages of a source (`broadcast:ID`, `journey:NAME`) are in each status.
    async fn outbox_counts(&self, source: &MessageSource) -> Result<OutboxCounts, StoreError>;

    /// Messages of a source, newest first: only those of journey step `step` when given, and
    /// only those after `before` (the last of the previous page).
    async fn outbox_from(
        &self,
        source: &MessageSource,
        step: Option<&str>,
        before: Option<&OutboxCursor>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Makes the queued messages a send-time rule deferred (`deferred: …`) due at `now`, so
    /// that they are decided again under the rules in force now; returns how many.
    async fn requeue_deferred(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Marks the still-queued messages of a source skipped (a cancelled broadcast); returns
    /// how many.
    async fn skip_queued(&self, source: &MessageSource, detail: &str) -> Result<u64, StoreError>;

    /// Counts a soft bounce of an address (keyed hash) at `at`; returns how many it has had.
    async fn record_soft_bounce(&self, address_hash: &str, at: DateTime<Utc>) -> Result<u32, StoreError>;
}
