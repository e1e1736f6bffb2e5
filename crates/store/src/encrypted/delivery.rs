//! The delivery area, encrypted (see the module above).

use std::collections::HashMap;

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use missive_core::{MessageSource, ProfileId};

use super::*;
use crate::types::*;

#[async_trait]
impl DeliveryStore for EncryptedDelivery {
    fn set_leader_fence(&self, fence: Option<crate::LeaderFence>) {
        self.inner.set_leader_fence(fence);
    }

    async fn commit_journey(&self, mut commit: JourneyCommit) -> Result<(), StoreError> {
        let keys = self
            .sealer
            .keys_for(commit.instances.iter().map(|i| &i.profile_id), true)
            .await?;
        for i in &mut commit.instances {
            i.context =
                self.sealer
                    .seal_json(&keys, &i.profile_id, &i.context, &format!("instance:{}", i.id))?;
        }
        commit.outbox = self
            .sealer
            .seal_messages(std::mem::take(&mut commit.outbox))
            .await?;
        self.inner.commit_journey(commit).await
    }

    async fn journey_events_through(&self) -> Result<i64, StoreError> {
        self.inner.journey_events_through().await
    }

    async fn journey_segments_through(&self) -> Result<i64, StoreError> {
        self.inner.journey_segments_through().await
    }

    async fn active_instances(&self, profile: &ProfileId) -> Result<Vec<JourneyInstance>, StoreError> {
        let i = self.inner.active_instances(profile).await?;
        self.sealer.open_instances(i).await
    }

    async fn due_instances(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<JourneyInstance>, StoreError> {
        let i = self.inner.due_instances(now, limit).await?;
        self.sealer.open_instances(i).await
    }

    async fn next_instance_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_instance_wake().await
    }

    async fn journey_instances(&self, journey: &str, limit: u32) -> Result<Vec<JourneyInstance>, StoreError> {
        let i = self.inner.journey_instances(journey, limit).await?;
        self.sealer.open_instances(i).await
    }

    async fn journey_step_counts(&self, journey: &str) -> Result<Vec<StepCount>, StoreError> {
        // Steps and states are not personal: stored in the clear.
        self.inner.journey_step_counts(journey).await
    }

    async fn recent_failures(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let m = self.inner.recent_failures(since, limit).await?;
        self.sealer.open_messages(m).await
    }

    async fn due_in_lane(
        &self,
        lane: missive_core::outbox::Lane,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let m = self.inner.due_in_lane(lane, now, limit).await?;
        self.sealer.open_messages(m).await
    }

    async fn update_outbox(&self, messages: Vec<OutboxMessage>) -> Result<(), StoreError> {
        let sealed = self.sealer.seal_messages(messages).await?;
        self.inner.update_outbox(sealed).await
    }

    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        match self.inner.outbox_message(id).await? {
            None => Ok(None),
            Some(m) => Ok(self.sealer.open_messages(vec![m]).await?.pop()),
        }
    }

    async fn sent_among(&self, ids: Vec<String>) -> Result<std::collections::HashSet<String>, StoreError> {
        self.inner.sent_among(ids).await
    }

    async fn outbox_of(&self, profile: &ProfileId, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let m = self.inner.outbox_of(profile, limit).await?;
        self.sealer.open_messages(m).await
    }

    async fn marketing_sent_times(
        &self,
        profiles: Vec<ProfileId>,
        since: DateTime<Utc>,
    ) -> Result<HashMap<ProfileId, Vec<DateTime<Utc>>>, StoreError> {
        self.inner.marketing_sent_times(profiles, since).await
    }

    async fn suppress(&self, suppression: Suppression) -> Result<(), StoreError> {
        self.inner.suppress(suppression).await
    }

    async fn suppression(&self, address_hash: &str) -> Result<Option<Suppression>, StoreError> {
        self.inner.suppression(address_hash).await
    }

    async fn suppressions(&self, address_hashes: Vec<String>) -> Result<Vec<Suppression>, StoreError> {
        self.inner.suppressions(address_hashes).await
    }

    async fn outbox_counts(&self, source: &MessageSource) -> Result<OutboxCounts, StoreError> {
        self.inner.outbox_counts(source).await
    }

    async fn outbox_from(
        &self,
        source: &MessageSource,
        step: Option<&str>,
        before: Option<&OutboxCursor>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let m = self.inner.outbox_from(source, step, before, limit).await?;
        self.sealer.open_messages(m).await
    }

    async fn requeue_deferred(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.requeue_deferred(now).await
    }

    async fn skip_queued(&self, source: &MessageSource, detail: &str) -> Result<u64, StoreError> {
        self.inner.skip_queued(source, detail).await
    }

    async fn record_soft_bounce(&self, address_hash: &str, at: DateTime<Utc>) -> Result<u32, StoreError> {
        self.inner.record_soft_bounce(address_hash, at).await
    }
}
