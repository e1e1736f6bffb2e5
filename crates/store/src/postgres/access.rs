//! The access area on postgres (see [`crate::AccessStore`]).

use async_trait::async_trait;

use super::rows::*;
use super::*;

#[async_trait]
impl crate::AccessStore for PostgresStore {
    async fn workspace(&self) -> Result<Option<Workspace>, StoreError> {
        let r = self.reader();
        let Some(row) = r.client.query_opt(&r.statements.workspace, &[]).await? else {
            return Ok(None);
        };
        Ok(Some(Workspace {
            id: WorkspaceId::parse(row.try_get(0)?).map_err(|e| corrupt("workspace id", e))?,
            name: row.try_get(1)?,
            created_at: from_micros(row.try_get(2)?),
        }))
    }

    async fn bootstrap_workspace(&self, ws: Workspace, keys: Vec<ApiKeyRecord>) -> Result<(), StoreError> {
        let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
        let roles: Vec<&str> = keys.iter().map(|k| k.role.as_str()).collect();
        let hashes: Vec<&str> = keys.iter().map(|k| k.secret_hash.as_str()).collect();
        let labels: Vec<&str> = keys.iter().map(|k| k.label.as_str()).collect();
        let created: Vec<i64> = keys.iter().map(|k| micros(k.created_at)).collect();

        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        // The writer lock makes this check and the insert atomic: no other process writes.
        let exists: i64 = tx
            .query_one("SELECT COUNT(*) FROM workspaces", &[])
            .await?
            .try_get(0)?;
        if exists > 0 {
            return Err(StoreError::Conflict("a workspace exists already".into()));
        }
        tx.execute(
            "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)",
            &[&ws.id.as_str(), &ws.name, &micros(ws.created_at)],
        )
        .await?;
        tx.execute(
            "INSERT INTO api_keys (id, role, secret_hash, label, created_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])",
            &[&ids, &roles, &hashes, &labels, &created],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let r = self.reader();
        let Some(row) = r
            .client
            .query_opt(&r.statements.api_key_by_hash, &[&secret_hash])
            .await?
        else {
            return Ok(None);
        };
        api_key_row(&row).map(Some)
    }

    async fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        row.as_ref().map(api_key_row).transpose()
    }

    async fn create_api_key(&self, k: ApiKeyRecord) -> Result<(), StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO api_keys (id, role, secret_hash, label, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &k.id.as_str(),
                    &k.role.as_str(),
                    &k.secret_hash,
                    &k.label,
                    &micros(k.created_at),
                ],
            )
            .await?;
        Ok(())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
                &[],
            )
            .await?;
        rows.iter().map(api_key_row).collect()
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        let n = writer
            .client
            .execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id.as_str(), &micros(at)],
            )
            .await?;
        Ok(n > 0)
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let at: Vec<i64> = entries.iter().map(|e| micros(e.at)).collect();
        let actor: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
        let role: Vec<&str> = entries.iter().map(|e| e.role.as_str()).collect();
        let action: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
        let target: Vec<&str> = entries.iter().map(|e| e.target.as_str()).collect();
        let status: Vec<i32> = entries.iter().map(|e| i32::from(e.status)).collect();
        let detail: Vec<&str> = entries.iter().map(|e| e.detail.as_str()).collect();
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO audit_log (at, actor, role, action, target, status, detail)
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[])",
                &[&at, &actor, &role, &action, &target, &status, &detail],
            )
            .await?;
        Ok(())
    }

    async fn audit_entries(&self, q: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT seq, at, actor, role, action, target, status, detail FROM audit_log
                 WHERE seq < $1 AND ($2::text IS NULL OR actor = $2) AND ($3::text IS NULL OR target = $3)
                   AND ($4::text IS NULL OR action = $4)
                 ORDER BY seq DESC LIMIT $5",
                &[
                    &q.before_seq.unwrap_or(i64::MAX),
                    &q.actor,
                    &q.target,
                    &q.action,
                    &i64::from(q.limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let status: i32 = row.try_get(6)?;
                Ok(AuditEntry {
                    seq: row.try_get(0)?,
                    at: from_micros(row.try_get(1)?),
                    actor: row.try_get(2)?,
                    role: row.try_get(3)?,
                    action: row.try_get(4)?,
                    target: row.try_get(5)?,
                    status: u16::try_from(status).unwrap_or(0),
                    detail: row.try_get(7)?,
                })
            })
            .collect()
    }
}
