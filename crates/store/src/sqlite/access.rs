//! The access area on sqlite (see [`crate::AccessStore`]).

use async_trait::async_trait;

use super::rows::*;
use super::*;

#[async_trait]
impl crate::AccessStore for SqliteStore {
    async fn workspace(&self) -> Result<Option<Workspace>, StoreError> {
        self.read(|c| {
            let row = c
                .query_row("SELECT id, name, created_at FROM workspaces LIMIT 1", [], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .optional()?;
            row.map(|(id, name, at)| {
                Ok(Workspace {
                    id: WorkspaceId::parse(&id).map_err(|e| corrupt("workspace id", e))?,
                    name,
                    created_at: from_micros(at),
                })
            })
            .transpose()
        })
        .await
    }

    async fn bootstrap_workspace(&self, ws: Workspace, keys: Vec<ApiKeyRecord>) -> Result<(), StoreError> {
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            let exists: i64 = tx.query_row("SELECT COUNT(*) FROM workspaces", [], |r| r.get(0))?;
            if exists > 0 {
                return Err(StoreError::Conflict("a workspace exists already".into()));
            }
            tx.execute(
                "INSERT INTO workspaces (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![ws.id.as_str(), ws.name, micros(ws.created_at)],
            )?;
            for k in &keys {
                tx.execute(
                    "INSERT INTO api_keys (id, role, secret_hash, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![k.id.as_str(), k.role.as_str(), k.secret_hash, k.label, micros(k.created_at)],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = secret_hash.to_owned();
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys WHERE secret_hash = ?1 AND revoked_at IS NULL",
                )?
                .query_row([&hash], api_key_row)
                .optional()?;
            row.transpose()
        })
        .await
    }

    async fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys WHERE id = ?1",
            )?
            .query_row([&id], api_key_row)
            .optional()?
            .transpose()
        })
        .await
    }

    async fn create_api_key(&self, k: ApiKeyRecord) -> Result<(), StoreError> {
        self.write_on(Db::Main, move |c| {
            c.execute(
                "INSERT INTO api_keys (id, role, secret_hash, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    k.id.as_str(),
                    k.role.as_str(),
                    k.secret_hash,
                    k.label,
                    micros(k.created_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, role, secret_hash, label, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([], api_key_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.write_on(Db::Main, move |c| {
            let n = c.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, micros(at)],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO audit_log (at, actor, role, action, target, status, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for e in &entries {
                    stmt.execute(params![micros(e.at), e.actor, e.role, e.action, e.target, e.status, e.detail])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn audit_entries(&self, q: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, at, actor, role, action, target, status, detail FROM audit_log
                 WHERE seq < ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR target = ?3)
                   AND (?4 IS NULL OR action = ?4)
                 ORDER BY seq DESC LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![
                    q.before_seq.unwrap_or(i64::MAX),
                    q.actor,
                    q.target,
                    q.action,
                    q.limit
                ],
                |r| {
                    Ok(AuditEntry {
                        seq: r.get(0)?,
                        at: from_micros(r.get(1)?),
                        actor: r.get(2)?,
                        role: r.get(3)?,
                        action: r.get(4)?,
                        target: r.get(5)?,
                        status: r.get(6)?,
                        detail: r.get(7)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
