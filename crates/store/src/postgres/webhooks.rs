//! Outbound webhooks on postgres (see [`crate::WebhookStore`]). Writes go through the
//! checkpoint writer, as the delivery area's do, so queue order is commit order.

use async_trait::async_trait;

use super::rows::*;
use super::*;
use crate::{DeadLetter, WebhookAttempt, WebhookNotice, WebhookPosition};

const NOTICE_COLUMNS: &str = "seq, kind, key, profile_id, endpoint, data, at";

fn notice_row(r: &Row) -> Result<WebhookNotice, StoreError> {
    let profile: Option<String> = r.get(3);
    Ok(WebhookNotice {
        seq: r.get(0),
        kind: r.get(1),
        key: r.get(2),
        profile_id: profile
            .map(|p| ProfileId::parse(&p).map_err(|e| corrupt("webhook notice profile", e)))
            .transpose()?,
        endpoint: r.get(4),
        data: r.get(5),
        at: from_micros(r.get(6)),
    })
}

/// Inserts notices (a (kind, key) already queued is skipped): also used by the delivery
/// area's commits, so that a completion or a send and its notice are one transaction.
pub(super) async fn insert_notices(
    tx: &Transaction<'_>,
    notices: &[WebhookNotice],
) -> Result<(), StoreError> {
    if notices.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare(
            "INSERT INTO webhook_queue (kind, key, profile_id, endpoint, data, at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (kind, key) DO NOTHING",
        )
        .await?;
    for n in notices {
        tx.execute(
            &insert,
            &[
                &n.kind,
                &n.key,
                &n.profile_id.as_ref().map(|p| p.as_str()),
                &n.endpoint,
                &n.data,
                &micros(n.at),
            ],
        )
        .await?;
    }
    Ok(())
}

async fn set_position(tx: &Transaction<'_>, key: &str, value: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value.to_string()],
    )
    .await?;
    Ok(())
}

const DEAD_LETTER_COLUMNS: &str = "seq, kind, key, profile_id, endpoint, data, queued_at, reason, at";

fn dead_letter_row(endpoint: &str, r: &Row) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        endpoint: endpoint.to_owned(),
        notice: notice_row(r)?,
        reason: r.get(7),
        at: from_micros(r.get(8)),
    })
}

#[async_trait]
impl crate::WebhookStore for PostgresStore {
    async fn enqueue_webhooks(
        &self,
        notices: Vec<WebhookNotice>,
        positions: Vec<(String, i64)>,
    ) -> Result<(), StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        insert_notices(&tx, &notices).await?;
        for (key, value) in &positions {
            set_position(&tx, key, *value).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn webhook_position(&self, key: &str) -> Result<i64, StoreError> {
        let row = self
            .reader()
            .client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await?;
        row.map_or(Ok(0), |r| {
            r.get::<_, String>(0).parse().map_err(|e| corrupt(key, e))
        })
    }

    async fn set_webhook_position(&self, key: &str, value: i64) -> Result<(), StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        set_position(&tx, key, value).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn last_webhook_seq(&self) -> Result<i64, StoreError> {
        let row = self
            .reader()
            .client
            .query_one("SELECT coalesce(max(seq), 0) FROM webhook_queue", &[])
            .await?;
        Ok(row.get(0))
    }

    async fn webhooks_after(&self, after: i64, limit: u32) -> Result<Vec<WebhookNotice>, StoreError> {
        let rows = self
            .reader()
            .client
            .query(
                &format!("SELECT {NOTICE_COLUMNS} FROM webhook_queue WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&after, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(notice_row).collect()
    }

    async fn trim_webhooks(&self, through: i64, attempts_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        let n = tx
            .execute("DELETE FROM webhook_queue WHERE seq <= $1", &[&through])
            .await?;
        tx.execute(
            "DELETE FROM webhook_attempts WHERE at < $1",
            &[&micros(attempts_before)],
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn record_webhook_attempts(
        &self,
        attempts: Vec<WebhookAttempt>,
        position: Option<(String, i64)>,
    ) -> Result<(), StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        let insert = tx
            .prepare(
                "INSERT INTO webhook_attempts (endpoint, seq, webhook_id, kind, status, error, at, duration_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .await?;
        for a in &attempts {
            tx.execute(
                &insert,
                &[
                    &a.endpoint,
                    &a.seq,
                    &a.webhook_id,
                    &a.kind,
                    &i32::from(a.status),
                    &a.error,
                    &micros(a.at),
                    &i64::from(a.duration_ms),
                ],
            )
            .await?;
        }
        if let Some((key, value)) = &position {
            set_position(&tx, key, *value).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn webhook_attempts(&self, endpoint: &str, limit: u32) -> Result<Vec<WebhookAttempt>, StoreError> {
        let rows = self
            .reader()
            .client
            .query(
                "SELECT endpoint, seq, webhook_id, kind, status, error, at, duration_ms FROM webhook_attempts
                 WHERE endpoint = $1 ORDER BY at DESC, id DESC LIMIT $2",
                &[&endpoint, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WebhookAttempt {
                    endpoint: r.get(0),
                    seq: r.get(1),
                    webhook_id: r.get(2),
                    kind: r.get(3),
                    status: u16::try_from(r.get::<_, i32>(4)).map_err(|e| corrupt("attempt status", e))?,
                    error: r.get(5),
                    at: from_micros(r.get(6)),
                    duration_ms: u32::try_from(r.get::<_, i64>(7)).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        let n = &letter.notice;
        tx.execute(
            "INSERT INTO webhook_dead_letters (endpoint, seq, kind, key, profile_id, data, queued_at, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            &[
                &letter.endpoint,
                &n.seq,
                &n.kind,
                &n.key,
                &n.profile_id.as_ref().map(|p| p.as_str()),
                &n.data,
                &micros(n.at),
                &letter.reason,
                &micros(letter.at),
            ],
        )
        .await?;
        set_position(&tx, &WebhookPosition::Endpoint(&letter.endpoint).key(), n.seq).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn dead_letters(&self, endpoint: &str, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = self
            .reader()
            .client
            .query(
                &format!(
                    "SELECT {DEAD_LETTER_COLUMNS} FROM webhook_dead_letters WHERE endpoint = $1 ORDER BY seq LIMIT $2"
                ),
                &[&endpoint, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(|r| dead_letter_row(endpoint, r)).collect()
    }

    async fn erase_webhook_profiles(&self, ids: Vec<ProfileId>) -> Result<u64, StoreError> {
        let ids: Vec<String> = ids.iter().map(|p| p.as_str().to_owned()).collect();
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        let mut n = tx
            .execute(
                "DELETE FROM webhook_queue WHERE profile_id = ANY($1) AND kind != 'profile.erased'",
                &[&ids],
            )
            .await?;
        n += tx
            .execute(
                "DELETE FROM webhook_dead_letters WHERE profile_id = ANY($1)",
                &[&ids],
            )
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn forget_webhook_endpoint(&self, endpoint: &str) -> Result<(), StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        tx.execute(
            "DELETE FROM webhook_dead_letters WHERE endpoint = $1",
            &[&endpoint],
        )
        .await?;
        tx.execute("DELETE FROM webhook_attempts WHERE endpoint = $1", &[&endpoint])
            .await?;
        tx.execute(
            "DELETE FROM meta WHERE key = $1",
            &[&WebhookPosition::Endpoint(endpoint).key()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn replay_dead_letters(
        &self,
        endpoint: &str,
        seqs: Option<Vec<i64>>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {DEAD_LETTER_COLUMNS} FROM webhook_dead_letters WHERE endpoint = $1 ORDER BY seq FOR UPDATE"
                ),
                &[&endpoint],
            )
            .await?;
        let letters: Vec<DeadLetter> = rows
            .iter()
            .map(|r| dead_letter_row(endpoint, r))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|l| seqs.as_ref().is_none_or(|s| s.contains(&l.notice.seq)))
            .collect();
        let copies: Vec<WebhookNotice> = letters.iter().map(|l| l.replay(at)).collect();
        insert_notices(&tx, &copies).await?;
        for l in &letters {
            tx.execute(
                "DELETE FROM webhook_dead_letters WHERE endpoint = $1 AND seq = $2",
                &[&endpoint, &l.notice.seq],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(letters.len() as u64)
    }
}
