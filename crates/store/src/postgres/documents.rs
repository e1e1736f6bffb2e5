//! The documents area on postgres (see [`crate::DocumentStore`]).

use std::collections::HashMap;

use async_trait::async_trait;

use super::rows::*;
use super::*;

#[async_trait]
impl crate::DocumentStore for PostgresStore {
    async fn save_segment(&self, seg: SegmentRecord) -> Result<(), StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO segments (name, expression, created_at, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET expression = excluded.expression, updated_at = excluded.updated_at",
                &[&seg.name, &seg.expression, &micros(seg.created_at), &micros(seg.updated_at)],
            )
            .await?;
        Ok(())
    }

    async fn delete_segment(&self, name: &str) -> Result<bool, StoreError> {
        let mut writer = self.inner.checkpoint_writer.lock().await;
        let tx = writer.client.transaction().await?;
        let n = tx
            .execute("DELETE FROM segments WHERE name = $1", &[&name])
            .await?;
        tx.execute("DELETE FROM segment_members WHERE segment = $1", &[&name])
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn list_segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT name, expression, created_at, updated_at FROM segments ORDER BY name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SegmentRecord {
                    name: row.try_get(0)?,
                    expression: row.try_get(1)?,
                    created_at: from_micros(row.try_get(2)?),
                    updated_at: from_micros(row.try_get(3)?),
                })
            })
            .collect()
    }

    async fn put_documents(&self, docs: Vec<DocumentRecord>) -> Result<Vec<i64>, StoreError> {
        // One statement for the whole batch; a name given twice keeps its last body, as if
        // saved in order.
        let mut last: BTreeMap<(&str, &str), &DocumentRecord> = BTreeMap::new();
        for d in &docs {
            last.insert((d.kind.as_str(), d.name.as_str()), d);
        }
        let (mut kinds, mut names, mut bodies, mut times) = (vec![], vec![], vec![], vec![]);
        for d in last.values() {
            kinds.push(d.kind.as_str());
            names.push(d.name.as_str());
            bodies.push(&d.body);
            times.push(micros(d.updated_at));
        }
        let writer = self.inner.checkpoint_writer.lock().await;
        let rows = writer
            .client
            .query(
                "INSERT INTO documents (kind, name, version, body, updated_at)
                 SELECT k, n, 1, b, t FROM UNNEST($1::text[], $2::text[], $3::json[], $4::bigint[]) AS u(k, n, b, t)
                 ON CONFLICT (kind, name) DO UPDATE SET version = documents.version + 1,
                     body = excluded.body, updated_at = excluded.updated_at
                 RETURNING kind, name, version",
                &[&kinds, &names, &bodies, &times],
            )
            .await?;
        drop(writer);
        let mut versions: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
        for row in &rows {
            versions.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
        }
        docs.iter()
            .map(|d| {
                versions
                    .get(&(d.kind.as_str().to_string(), d.name.clone()))
                    .copied()
                    .ok_or_else(|| corrupt("document version", "not returned"))
            })
            .collect()
    }

    async fn get_document(
        &self,
        kind: DocumentKind,
        name: &str,
    ) -> Result<Option<DocumentRecord>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt(
                "SELECT name, version, body, updated_at FROM documents WHERE kind = $1 AND name = $2",
                &[&kind.as_str(), &name],
            )
            .await?;
        row.map(|row| document_from_row(kind, &row)).transpose()
    }

    async fn list_documents(
        &self,
        kind: DocumentKind,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<DocumentRecord>, StoreError> {
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT name, version, body, updated_at FROM documents WHERE kind = $1 AND name COLLATE \"C\" > $2
                 ORDER BY name COLLATE \"C\" LIMIT $3",
                &[&kind.as_str(), &after.unwrap_or_default(), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(|row| document_from_row(kind, row)).collect()
    }

    async fn delete_document(&self, kind: DocumentKind, name: &str) -> Result<bool, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        let n = writer
            .client
            .execute(
                "DELETE FROM documents WHERE kind = $1 AND name = $2",
                &[&kind.as_str(), &name],
            )
            .await?;
        Ok(n > 0)
    }

    async fn meta_get_or_init(&self, key: &str, init: String) -> Result<String, StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &init],
            )
            .await?;
        let row = writer
            .client
            .query_one("SELECT value FROM meta WHERE key = $1", &[&key])
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let r = self.reader();
        let row = r
            .client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    async fn meta_set(&self, key: &str, value: String) -> Result<(), StoreError> {
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }
}
