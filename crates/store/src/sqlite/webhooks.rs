//! Outbound webhooks on sqlite (see [`crate::WebhookStore`]): tables in the delivery file.

use async_trait::async_trait;
use rusqlite::Transaction;

use super::rows::*;
use super::*;
use crate::{DeadLetter, WebhookAttempt, WebhookNotice, WebhookPosition};

const NOTICE_COLUMNS: &str = "seq, kind, key, profile_id, endpoint, data, at";

fn notice_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<WebhookNotice, StoreError>> {
    let profile: Option<String> = r.get(3)?;
    let data: String = r.get(5)?;
    Ok((|| {
        Ok(WebhookNotice {
            seq: r.get(0)?,
            kind: r.get(1)?,
            key: r.get(2)?,
            profile_id: profile
                .map(|p| ProfileId::parse(&p).map_err(|e| corrupt("webhook notice profile", e)))
                .transpose()?,
            endpoint: r.get(4)?,
            data: serde_json::from_str(&data).map_err(|e| corrupt("webhook notice data", e))?,
            at: from_micros(r.get(6)?),
        })
    })())
}

/// Inserts notices (a (kind, key) already queued is skipped): also used by the delivery
/// area's commits, so that a completion or a send and its notice are one transaction.
pub(super) fn insert_notices(tx: &Transaction<'_>, notices: &[WebhookNotice]) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO webhook_queue (kind, key, profile_id, endpoint, data, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (kind, key) DO NOTHING",
    )?;
    for n in notices {
        insert.execute(params![
            n.kind,
            n.key,
            n.profile_id.as_ref().map(|p| p.as_str()),
            n.endpoint,
            n.data.to_string(),
            micros(n.at),
        ])?;
    }
    Ok(())
}

fn set_position(tx: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value.to_string()],
    )?;
    Ok(())
}

#[async_trait]
impl crate::WebhookStore for SqliteStore {
    async fn enqueue_webhooks(
        &self,
        notices: Vec<WebhookNotice>,
        positions: Vec<(String, i64)>,
    ) -> Result<(), StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            insert_notices(&tx, &notices)?;
            for (key, value) in &positions {
                set_position(&tx, key, *value)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn webhook_position(&self, key: &str) -> Result<i64, StoreError> {
        let key = key.to_owned();
        self.read_on(Db::Delivery, move |c| {
            let v: Option<String> = c
                .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0))
                .optional()?;
            v.map_or(Ok(0), |v| v.parse().map_err(|e| corrupt(&key, e)))
        })
        .await
    }

    async fn set_webhook_position(&self, key: &str, value: i64) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write_on(Db::Delivery, move |c| set_position(c, &key, value))
            .await
    }

    async fn last_webhook_seq(&self) -> Result<i64, StoreError> {
        self.read_on(Db::Delivery, |c| {
            Ok(
                c.query_row("SELECT coalesce(max(seq), 0) FROM webhook_queue", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn webhooks_after(&self, after: i64, limit: u32) -> Result<Vec<WebhookNotice>, StoreError> {
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {NOTICE_COLUMNS} FROM webhook_queue WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![after, limit], notice_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn trim_webhooks(&self, through: i64, attempts_before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM webhook_queue WHERE seq <= ?1", [through])?;
            tx.execute(
                "DELETE FROM webhook_attempts WHERE at < ?1",
                [micros(attempts_before)],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    async fn record_webhook_attempts(
        &self,
        attempts: Vec<WebhookAttempt>,
        position: Option<(String, i64)>,
    ) -> Result<(), StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO webhook_attempts (endpoint, seq, webhook_id, kind, status, error, at, duration_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for a in &attempts {
                    insert.execute(params![
                        a.endpoint,
                        a.seq,
                        a.webhook_id,
                        a.kind,
                        a.status,
                        a.error,
                        micros(a.at),
                        a.duration_ms,
                    ])?;
                }
            }
            if let Some((key, value)) = &position {
                set_position(&tx, key, *value)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn webhook_attempts(&self, endpoint: &str, limit: u32) -> Result<Vec<WebhookAttempt>, StoreError> {
        let endpoint = endpoint.to_owned();
        self.read_on(Db::Delivery, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT endpoint, seq, webhook_id, kind, status, error, at, duration_ms FROM webhook_attempts
                 WHERE endpoint = ?1 ORDER BY at DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![endpoint, limit], |r| {
                Ok(WebhookAttempt {
                    endpoint: r.get(0)?,
                    seq: r.get(1)?,
                    webhook_id: r.get(2)?,
                    kind: r.get(3)?,
                    status: r.get(4)?,
                    error: r.get(5)?,
                    at: from_micros(r.get(6)?),
                    duration_ms: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            let n = &letter.notice;
            tx.execute(
                "INSERT INTO webhook_dead_letters (endpoint, seq, kind, key, profile_id, data, queued_at, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
                params![
                    letter.endpoint,
                    n.seq,
                    n.kind,
                    n.key,
                    n.profile_id.as_ref().map(|p| p.as_str()),
                    n.data.to_string(),
                    micros(n.at),
                    letter.reason,
                    micros(letter.at),
                ],
            )?;
            set_position(&tx, &WebhookPosition::Endpoint(&letter.endpoint).key(), n.seq)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn dead_letters(&self, endpoint: &str, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let endpoint = endpoint.to_owned();
        self.read_on(Db::Delivery, move |c| dead_letters(c, &endpoint, limit))
            .await
    }

    async fn erase_webhook_profiles(&self, ids: Vec<ProfileId>) -> Result<u64, StoreError> {
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            let mut n = 0;
            for id in &ids {
                n += tx.execute(
                    "DELETE FROM webhook_queue WHERE profile_id = ?1 AND kind != 'profile.erased'",
                    [id.as_str()],
                )?;
                n += tx.execute(
                    "DELETE FROM webhook_dead_letters WHERE profile_id = ?1",
                    [id.as_str()],
                )?;
            }
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    async fn forget_webhook_endpoint(&self, endpoint: &str) -> Result<(), StoreError> {
        let endpoint = endpoint.to_owned();
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM webhook_dead_letters WHERE endpoint = ?1",
                [&endpoint],
            )?;
            tx.execute("DELETE FROM webhook_attempts WHERE endpoint = ?1", [&endpoint])?;
            tx.execute(
                "DELETE FROM meta WHERE key = ?1",
                [WebhookPosition::Endpoint(&endpoint).key()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn replay_dead_letters(
        &self,
        endpoint: &str,
        seqs: Option<Vec<i64>>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let endpoint = endpoint.to_owned();
        self.write_on(Db::Delivery, move |c| {
            let tx = c.transaction()?;
            let letters: Vec<DeadLetter> = dead_letters(&tx, &endpoint, u32::MAX)?
                .into_iter()
                .filter(|l| seqs.as_ref().is_none_or(|s| s.contains(&l.notice.seq)))
                .collect();
            let copies: Vec<WebhookNotice> = letters.iter().map(|l| l.replay(at)).collect();
            insert_notices(&tx, &copies)?;
            {
                let mut delete =
                    tx.prepare_cached("DELETE FROM webhook_dead_letters WHERE endpoint = ?1 AND seq = ?2")?;
                for l in &letters {
                    delete.execute(params![endpoint, l.notice.seq])?;
                }
            }
            tx.commit()?;
            Ok(letters.len() as u64)
        })
        .await
    }
}

fn dead_letters(c: &Connection, endpoint: &str, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, kind, key, profile_id, endpoint, data, queued_at, reason, at FROM webhook_dead_letters
         WHERE endpoint = ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![endpoint, limit], |r| {
        let notice = notice_row(r)?;
        let reason: String = r.get(7)?;
        let at: i64 = r.get(8)?;
        Ok(notice.map(|notice| DeadLetter {
            endpoint: endpoint.to_owned(),
            notice,
            reason,
            at: from_micros(at),
        }))
    })?;
    rows.map(|r| r?).collect()
}
