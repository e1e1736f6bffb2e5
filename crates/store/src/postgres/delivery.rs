//! The delivery area on postgres (see [`crate::DeliveryStore`]).

use std::collections::HashMap;

use async_trait::async_trait;

use super::rows::*;
use super::*;
use crate::{OutboxCursor, REASON_DETAIL_SQL, StepCount};
use missive_core::MessageSource;

#[async_trait]
impl crate::DeliveryStore for PostgresStore {
    fn set_leader_fence(&self, fence: Option<crate::LeaderFence>) {
        if let Ok(mut held) = self.inner.leader.write() {
            *held = fence;
        }
    }

    async fn commit_journey(&self, commit: JourneyCommit) -> Result<(), StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        self.check_leader(&tx).await?;
        if !commit.instances.is_empty() {
            let upsert = tx
                .prepare(
                    "INSERT INTO journey_instances (id, journey, journey_version, profile_id, key, step, status,
                         wake_at, waiting_for, context, entered_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (id) DO UPDATE SET step = excluded.step, status = excluded.status,
                         wake_at = excluded.wake_at, waiting_for = excluded.waiting_for,
                         context = excluded.context, updated_at = excluded.updated_at",
                )
                .await?;
            for i in &commit.instances {
                tx.execute(
                    &upsert,
                    &[
                        &i.id,
                        &i.journey,
                        &i.journey_version,
                        &i.profile_id.as_str(),
                        &i.key,
                        &i.step,
                        &i.status.as_str(),
                        &i.wake_at.map(micros),
                        &i.waiting_for,
                        &i.context,
                        &micros(i.entered_at),
                        &micros(i.updated_at),
                    ],
                )
                .await?;
            }
        }
        if !commit.outbox.is_empty() {
            let insert = tx
                .prepare(
                    "INSERT INTO outbox (id, idempotency_key, profile_id, template, class, source, context, status,
                         attempts, next_attempt_at, created_at, sent_at, recipient, detail, step, lane)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            for m in &commit.outbox {
                tx.execute(
                    &insert,
                    &[
                        &m.id,
                        &m.idempotency_key,
                        &m.profile_id.as_str(),
                        &m.template,
                        &m.class.as_str(),
                        &m.source.to_string(),
                        &m.context,
                        &m.status.as_str(),
                        &i64::from(m.attempts),
                        &micros(m.next_attempt_at),
                        &micros(m.created_at),
                        &m.sent_at.map(micros),
                        &m.recipient,
                        &m.detail,
                        &m.step,
                        &m.source.lane().as_i16(),
                    ],
                )
                .await?;
            }
        }
        let completed: Vec<_> = commit
            .instances
            .iter()
            .filter(|i| i.status == InstanceStatus::Completed)
            .map(crate::journey_completed)
            .collect();
        super::webhooks::insert_notices(&tx, &completed).await?;
        if let Some(seq) = commit.events_through {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('journeys_through_seq', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&seq.to_string()],
            )
            .await?;
        }
        if let Some(seq) = commit.segments_through {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('journeys_segments_through', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&seq.to_string()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn journey_events_through(&self) -> Result<i64, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt("SELECT value FROM meta WHERE key = 'journeys_through_seq'", &[])
            .await?;
        match row {
            Some(row) => {
                let v: String = row.try_get(0)?;
                v.parse().map_err(|e| corrupt("journeys_through_seq", e))
            }
            None => Ok(0),
        }
    }

    async fn journey_segments_through(&self) -> Result<i64, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                "SELECT value FROM meta WHERE key = 'journeys_segments_through'",
                &[],
            )
            .await?;
        match row {
            Some(row) => {
                let v: String = row.try_get(0)?;
                v.parse().map_err(|e| corrupt("journeys_segments_through", e))
            }
            None => Ok(0),
        }
    }

    async fn active_instances(&self, profile: &ProfileId) -> Result<Vec<JourneyInstance>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE profile_id = $1 AND status = 'active'
                     ORDER BY entered_at, id COLLATE \"C\""
                ),
                &[&profile.as_str()],
            )
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn due_instances(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<JourneyInstance>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM journey_instances
                     WHERE status = 'active' AND wake_at IS NOT NULL AND wake_at <= $1
                     ORDER BY wake_at, id COLLATE \"C\" LIMIT $2"
                ),
                &[&micros(now), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn next_instance_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_one(
                "SELECT MIN(wake_at) FROM journey_instances WHERE status = 'active' AND wake_at IS NOT NULL",
                &[],
            )
            .await?;
        let v: Option<i64> = row.try_get(0)?;
        Ok(v.map(from_micros))
    }

    async fn journey_instances(&self, journey: &str, limit: u32) -> Result<Vec<JourneyInstance>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE journey = $1
                     ORDER BY entered_at DESC, id COLLATE \"C\" DESC LIMIT $2"
                ),
                &[&journey, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn journey_step_counts(&self, journey: &str) -> Result<Vec<StepCount>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT step, status, COUNT(*) FROM journey_instances WHERE journey = $1 GROUP BY step, status",
                &[&journey],
            )
            .await?;
        rows.iter()
            .map(|row| StepCount::from_row(row.try_get(0)?, row.try_get::<_, &str>(1)?, row.try_get(2)?))
            .collect()
    }

    async fn recent_failures(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'failed' AND next_attempt_at >= $1
                     ORDER BY next_attempt_at DESC LIMIT $2"
                ),
                &[&micros(since), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn due_in_lane(
        &self,
        lane: missive_core::outbox::Lane,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = self
            .reader()
            .client
            .query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'queued' AND lane = $3
                     AND next_attempt_at <= $1 ORDER BY next_attempt_at, id COLLATE \"C\" LIMIT $2"
                ),
                &[&micros(now), &i64::from(limit), &lane.as_i16()],
            )
            .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn update_outbox(&self, messages: Vec<OutboxMessage>) -> Result<(), StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        self.check_leader(&tx).await?;
        let stmt = tx
            .prepare(
                "UPDATE outbox SET status = $2, attempts = $3, next_attempt_at = $4, sent_at = $5,
                     recipient = $6, detail = $7, context = $8
                     WHERE id = $1 AND (status = 'queued' OR ($2 = 'sent' AND status = 'skipped'))",
            )
            .await?;
        let mut sent = Vec::new();
        for m in &messages {
            let changed = tx
                .execute(
                    &stmt,
                    &[
                        &m.id,
                        &m.status.as_str(),
                        &i64::from(m.attempts),
                        &micros(m.next_attempt_at),
                        &m.sent_at.map(micros),
                        &m.recipient,
                        &m.detail,
                        &m.context,
                    ],
                )
                .await?;
            if changed == 1 && m.status == OutboxStatus::Sent {
                sent.push(crate::message_sent(m));
            }
        }
        super::webhooks::insert_notices(&tx, &sent).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sent_among(&self, ids: Vec<String>) -> Result<std::collections::HashSet<String>, StoreError> {
        let r = self.reader();
        let mut out = std::collections::HashSet::new();
        for chunk in ids.chunks(5_000) {
            let rows = r
                .client
                .query(
                    "SELECT id FROM outbox WHERE status = 'sent' AND id = ANY($1)",
                    &[&chunk],
                )
                .await?;
            out.extend(rows.iter().map(|row| row.get::<_, String>(0)));
        }
        Ok(out)
    }

    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(outbox_from_row).transpose()
    }

    async fn outbox_of(&self, profile: &ProfileId, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE profile_id = $1
                     ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT $2"
                ),
                &[&profile.as_str(), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn marketing_sent_times(
        &self,
        profiles: Vec<ProfileId>,
        since: DateTime<Utc>,
    ) -> Result<HashMap<ProfileId, Vec<DateTime<Utc>>>, StoreError> {
        let ids: Vec<&str> = profiles.iter().map(ProfileId::as_str).collect();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT profile_id, sent_at FROM outbox WHERE profile_id = ANY($1) AND class = 'marketing'
                 AND status = 'sent' AND sent_at >= $2",
                &[&ids, &micros(since)],
            )
            .await?;
        let mut out: HashMap<ProfileId, Vec<DateTime<Utc>>> = HashMap::new();
        for row in &rows {
            let id: &str = row.try_get(0)?;
            let at: i64 = row.try_get(1)?;
            let id = ProfileId::parse(id).map_err(|e| corrupt("outbox profile id", e))?;
            out.entry(id).or_default().push(from_micros(at));
        }
        Ok(out)
    }

    async fn suppress(&self, s: Suppression) -> Result<(), StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO suppressions (address_hash, reason, detail, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (address_hash) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, at = excluded.at",
                &[&s.address_hash, &s.reason, &s.detail, &micros(s.at)],
            )
            .await?;
        Ok(())
    }

    async fn suppression(&self, address_hash: &str) -> Result<Option<Suppression>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                "SELECT address_hash, reason, detail, at FROM suppressions WHERE address_hash = $1",
                &[&address_hash],
            )
            .await?;
        row.as_ref().map(suppression_row).transpose()
    }

    async fn suppressions(&self, address_hashes: Vec<String>) -> Result<Vec<Suppression>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT address_hash, reason, detail, at FROM suppressions WHERE address_hash = ANY($1)",
                &[&address_hashes],
            )
            .await?;
        rows.iter().map(suppression_row).collect()
    }

    async fn outbox_counts(&self, source: &MessageSource) -> Result<OutboxCounts, StoreError> {
        let source = source.to_string();
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT status, {REASON_DETAIL_SQL}, COUNT(*) FROM outbox WHERE source = $1 GROUP BY 1, 2"
                ),
                &[&source],
            )
            .await?;
        let mut counts = OutboxCounts::default();
        for row in &rows {
            let status: &str = row.try_get(0)?;
            let detail: Option<&str> = row.try_get(1)?;
            let n: i64 = row.try_get(2)?;
            counts.add(status, detail, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    async fn outbox_from(
        &self,
        source: &MessageSource,
        step: Option<&str>,
        before: Option<&OutboxCursor>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let source = source.to_string();
        let (before_at, before_id) = (
            before.map(|b| micros(b.created_at)),
            before.map(|b| b.id.as_str()),
        );
        let r = self.reader();
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE source = $1 AND ($2::TEXT IS NULL OR step = $2)
                     AND ($3::BIGINT IS NULL OR created_at < $3
                          OR (created_at = $3 AND id COLLATE \"C\" < $4::TEXT COLLATE \"C\"))
                     ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT $5"
                ),
                &[&source, &step, &before_at, &before_id, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn requeue_deferred(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        Ok(writer
            .client
            .execute(
                "UPDATE outbox SET next_attempt_at = $1
                 WHERE status = 'queued' AND detail LIKE 'deferred: %' AND next_attempt_at > $1",
                &[&micros(now)],
            )
            .await?)
    }

    async fn skip_queued(&self, source: &MessageSource, detail: &str) -> Result<u64, StoreError> {
        let source = source.to_string();
        let writer = self.inner.checkpoint_writer.lock().await;
        Ok(writer
            .client
            .execute(
                "UPDATE outbox SET status = 'skipped', detail = $2 WHERE source = $1 AND status = 'queued'",
                &[&source, &detail],
            )
            .await?)
    }

    async fn record_soft_bounce(&self, address_hash: &str, at: DateTime<Utc>) -> Result<u32, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        let row = writer
            .client
            .query_one(
                "INSERT INTO soft_bounces (address_hash, count, last_at) VALUES ($1, 1, $2)
                 ON CONFLICT (address_hash) DO UPDATE SET count = soft_bounces.count + 1, last_at = excluded.last_at
                 RETURNING count",
                &[&address_hash, &micros(at)],
            )
            .await?;
        let n: i64 = row.try_get(0)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

fn suppression_row(row: &tokio_postgres::Row) -> Result<Suppression, StoreError> {
    Ok(Suppression {
        address_hash: row.try_get(0)?,
        reason: row.try_get(1)?,
        detail: row.try_get(2)?,
        at: from_micros(row.try_get(3)?),
    })
}

impl PostgresStore {
    /// Cluster mode: refuses the transaction unless this node holds the sending lease it was
    /// given, by the database's clock. The lease row is locked `FOR KEY SHARE` to the commit,
    /// so a take-over (which locks it `FOR UPDATE`) waits for a write in progress.
    async fn check_leader(&self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), StoreError> {
        if !self.inner.clustered {
            return Ok(());
        }
        let fence = self.inner.leader.read().ok().and_then(|f| f.clone());
        let Some(fence) = fence else {
            return Err(StoreError::Fenced(
                "this node does not hold the sending lease: journeys and the outbox are written by the node that does".into(),
            ));
        };
        let held = tx
            .query_opt(
                "SELECT 1 FROM service_leases WHERE name = $1 AND owner = $2 AND token = $3
                   AND expires_us > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
                 FOR KEY SHARE",
                &[&fence.name, &fence.node, &fence.token],
            )
            .await?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::Fenced(format!(
                "the {} lease (token {}) is no longer {}'s",
                fence.name, fence.token, fence.node
            ))),
        }
    }
}
