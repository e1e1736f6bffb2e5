//! The delivery area on sqlite (see [`crate::DeliveryStore`]).

use std::collections::HashMap;

use async_trait::async_trait;

use super::rows::*;
use super::*;
use crate::{OutboxCursor, REASON_DETAIL_SQL, StepCount};
use missive_core::MessageSource;

#[async_trait]
impl crate::DeliveryStore for SqliteStore {
    async fn commit_journey(&self, commit: JourneyCommit) -> Result<(), StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO journey_instances (id, journey, journey_version, profile_id, key, step, status,
                         wake_at, waiting_for, context, entered_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                     ON CONFLICT (id) DO UPDATE SET step = excluded.step, status = excluded.status,
                         wake_at = excluded.wake_at, waiting_for = excluded.waiting_for,
                         context = excluded.context, updated_at = excluded.updated_at",
                )?;
                for i in &commit.instances {
                    upsert.execute(params![
                        i.id,
                        i.journey,
                        i.journey_version,
                        i.profile_id.as_str(),
                        i.key,
                        i.step,
                        i.status.as_str(),
                        i.wake_at.map(micros),
                        i.waiting_for,
                        i.context.to_string(),
                        micros(i.entered_at),
                        micros(i.updated_at),
                    ])?;
                }
                let mut insert = tx.prepare_cached(
                    "INSERT INTO outbox (id, idempotency_key, profile_id, template, class, source, context, status,
                         attempts, next_attempt_at, created_at, sent_at, recipient, detail, step, lane)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                     ON CONFLICT DO NOTHING",
                )?;
                for m in &commit.outbox {
                    insert.execute(params![
                        m.id,
                        m.idempotency_key,
                        m.profile_id.as_str(),
                        m.template,
                        m.class.as_str(),
                        m.source.to_string(),
                        m.context.to_string(),
                        m.status.as_str(),
                        m.attempts,
                        micros(m.next_attempt_at),
                        micros(m.created_at),
                        m.sent_at.map(micros),
                        m.recipient,
                        m.detail,
                        m.step,
                        m.source.lane().as_i16(),
                    ])?;
                }
                let completed: Vec<_> = commit
                    .instances
                    .iter()
                    .filter(|i| i.status == InstanceStatus::Completed)
                    .map(crate::journey_completed)
                    .collect();
                super::webhooks::insert_notices(&tx, &completed)?;
                if let Some(seq) = commit.events_through {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('journeys_through_seq', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [seq.to_string()],
                    )?;
                }
                if let Some(seq) = commit.segments_through {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('journeys_segments_through', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [seq.to_string()],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn journey_events_through(&self) -> Result<i64, StoreError> {
        self.read_on(Db::Delivery, |c| {
            let v: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'journeys_through_seq'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            v.map_or(Ok(0), |v| {
                v.parse().map_err(|e| corrupt("journeys_through_seq", e))
            })
        })
        .await
    }

    async fn journey_segments_through(&self) -> Result<i64, StoreError> {
        self.read_on(Db::Delivery, |c| {
            let v: Option<String> = c
                .query_row(
                    "SELECT value FROM meta WHERE key = 'journeys_segments_through'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            v.map_or(Ok(0), |v| {
                v.parse().map_err(|e| corrupt("journeys_segments_through", e))
            })
        })
        .await
    }

    async fn active_instances(&self, profile: &ProfileId) -> Result<Vec<JourneyInstance>, StoreError> {
        let profile = profile.as_str().to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE profile_id = ?1 AND status = 'active'
                 ORDER BY entered_at, id"
            ))?;
            let rows = stmt.query_map([profile], instance_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn due_instances(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<JourneyInstance>, StoreError> {
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {INSTANCE_COLUMNS} FROM journey_instances
                 WHERE status = 'active' AND wake_at IS NOT NULL AND wake_at <= ?1 ORDER BY wake_at, id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![micros(now), limit], instance_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn next_instance_wake(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read_on(Db::Delivery, |c| {
            let v: Option<i64> = c.query_row(
                "SELECT MIN(wake_at) FROM journey_instances WHERE status = 'active' AND wake_at IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            Ok(v.map(from_micros))
        })
        .await
    }

    async fn journey_instances(&self, journey: &str, limit: u32) -> Result<Vec<JourneyInstance>, StoreError> {
        let journey = journey.to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE journey = ?1
                 ORDER BY entered_at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![journey, limit], instance_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn journey_step_counts(&self, journey: &str) -> Result<Vec<StepCount>, StoreError> {
        let journey = journey.to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT step, status, COUNT(*) FROM journey_instances WHERE journey = ?1 GROUP BY step, status",
            )?;
            let rows = stmt.query_map(params![journey], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })?;
            rows.map(|r| {
                let (step, status, n) = r?;
                StepCount::from_row(step, &status, n)
            })
            .collect()
        })
        .await
    }

    async fn recent_failures(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'failed' AND next_attempt_at >= ?1
                 ORDER BY next_attempt_at DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![micros(since), limit], outbox_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn due_in_lane(
        &self,
        lane: missive_core::outbox::Lane,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'queued' AND lane = ?3 AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, rowid LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![micros(now), limit, lane.as_i16()], outbox_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn update_outbox(&self, messages: Vec<OutboxMessage>) -> Result<(), StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE outbox SET status = ?2, attempts = ?3, next_attempt_at = ?4, sent_at = ?5,
                         recipient = ?6, detail = ?7, context = ?8
                     WHERE id = ?1 AND (status = 'queued' OR (?2 = 'sent' AND status = 'skipped'))",
                )?;
                let mut sent = Vec::new();
                for m in &messages {
                    let changed = stmt.execute(params![
                        m.id,
                        m.status.as_str(),
                        m.attempts,
                        micros(m.next_attempt_at),
                        m.sent_at.map(micros),
                        m.recipient,
                        m.detail,
                        m.context.to_string(),
                    ])?;
                    if changed == 1 && m.status == OutboxStatus::Sent {
                        sent.push(crate::message_sent(m));
                    }
                }
                super::webhooks::insert_notices(&tx, &sent)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn sent_among(&self, ids: Vec<String>) -> Result<std::collections::HashSet<String>, StoreError> {
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id FROM outbox WHERE status = 'sent' AND id IN (SELECT value FROM json_each(?1))",
            )?;
            let mut out = std::collections::HashSet::new();
            for chunk in ids.chunks(5_000) {
                let list = serde_json::to_string(chunk).map_err(|e| corrupt("message ids", e))?;
                for id in stmt.query_map([list], |r| r.get::<_, String>(0))? {
                    out.insert(id?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let id = id.to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?1"))?;
            stmt.query_row([id], outbox_row).optional()?.transpose()
        })
        .await
    }

    async fn outbox_of(&self, profile: &ProfileId, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let profile = profile.as_str().to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE profile_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![profile, limit], outbox_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn marketing_sent_times(
        &self,
        profiles: Vec<ProfileId>,
        since: DateTime<Utc>,
    ) -> Result<HashMap<ProfileId, Vec<DateTime<Utc>>>, StoreError> {
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT sent_at FROM outbox WHERE profile_id = ?1 AND class = 'marketing' AND status = 'sent'
                 AND sent_at >= ?2",
            )?;
            let mut out = HashMap::new();
            for p in profiles {
                let times = stmt
                    .query_map(params![p.as_str(), micros(since)], |r| r.get::<_, i64>(0))?
                    .map(|t| Ok(from_micros(t?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                if !times.is_empty() {
                    out.insert(p, times);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn suppress(&self, s: Suppression) -> Result<(), StoreError> {
        self.write_on(Db::Delivery, move |c| {
            c.execute(
                "INSERT INTO suppressions (address_hash, reason, detail, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (address_hash) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, at = excluded.at",
                params![s.address_hash, s.reason, s.detail, micros(s.at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn suppression(&self, address_hash: &str) -> Result<Option<Suppression>, StoreError> {
        let h = address_hash.to_owned();
        self.read_on(Db::Delivery, move |c| {
            Ok(c.query_row(
                "SELECT address_hash, reason, detail, at FROM suppressions WHERE address_hash = ?1",
                [h],
                suppression_row,
            )
            .optional()?)
        })
        .await
    }

    async fn suppressions(&self, address_hashes: Vec<String>) -> Result<Vec<Suppression>, StoreError> {
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT address_hash, reason, detail, at FROM suppressions WHERE address_hash = ?1",
            )?;
            let mut out = Vec::new();
            for h in &address_hashes {
                out.extend(stmt.query_row([h], suppression_row).optional()?);
            }
            Ok(out)
        })
        .await
    }

    async fn outbox_counts(&self, source: &MessageSource) -> Result<OutboxCounts, StoreError> {
        let source = source.to_string();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT status, {REASON_DETAIL_SQL}, COUNT(*) FROM outbox WHERE source = ?1 GROUP BY 1, 2"
            ))?;
            let mut counts = OutboxCounts::default();
            let rows = stmt.query_map([source], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (status, detail, n) = row?;
                counts.add(&status, detail.as_deref(), u64::try_from(n).unwrap_or(0));
            }
            Ok(counts)
        })
        .await
    }

    async fn outbox_from(
        &self,
        source: &MessageSource,
        step: Option<&str>,
        before: Option<&OutboxCursor>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let (source, step) = (source.to_string(), step.map(str::to_owned));
        let (before_at, before_id) = (before.map(|b| micros(b.created_at)), before.map(|b| b.id.clone()));
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE source = ?1 AND (?2 IS NULL OR step = ?2)
                 AND (?3 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id < ?4))
                 ORDER BY created_at DESC, id DESC LIMIT ?5"
            ))?;
            let rows = stmt.query_map(params![source, step, before_at, before_id, limit], outbox_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn requeue_deferred(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let n = c.execute(
                "UPDATE outbox SET next_attempt_at = ?1
                 WHERE status = 'queued' AND detail LIKE 'deferred: %' AND next_attempt_at > ?1",
                params![micros(now)],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn skip_queued(&self, source: &MessageSource, detail: &str) -> Result<u64, StoreError> {
        let (source, detail) = (source.to_string(), detail.to_owned());
        self.write_on(Db::Delivery, move |c| {
            let n = c.execute(
                "UPDATE outbox SET status = 'skipped', detail = ?2 WHERE source = ?1 AND status = 'queued'",
                params![source, detail],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn record_soft_bounce(&self, address_hash: &str, at: DateTime<Utc>) -> Result<u32, StoreError> {
        let h = address_hash.to_owned();
        self.write_on(Db::Delivery, move |c| {
            Ok(c.query_row(
                "INSERT INTO soft_bounces (address_hash, count, last_at) VALUES (?1, 1, ?2)
                 ON CONFLICT (address_hash) DO UPDATE SET count = soft_bounces.count + 1, last_at = excluded.last_at
                 RETURNING count",
                params![h, micros(at)],
                |r| r.get(0),
            )?)
        })
        .await
    }
}

fn suppression_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Suppression> {
    Ok(Suppression {
        address_hash: r.get(0)?,
        reason: r.get(1)?,
        detail: r.get(2)?,
        at: from_micros(r.get(3)?),
    })
}
