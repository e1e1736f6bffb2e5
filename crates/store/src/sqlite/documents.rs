//! The documents area on sqlite (see [`crate::DocumentStore`]).

use std::collections::HashMap;

use async_trait::async_trait;

use super::rows::*;
use super::*;

#[async_trait]
impl crate::DocumentStore for SqliteStore {
    async fn save_segment(&self, seg: SegmentRecord) -> Result<(), StoreError> {
        self.write_on(Db::Main, move |c| {
            c.execute(
                "INSERT INTO segments (name, expression, created_at, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET expression = excluded.expression, updated_at = excluded.updated_at",
                params![seg.name, seg.expression, micros(seg.created_at), micros(seg.updated_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_segment(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            let n = tx.execute("DELETE FROM segments WHERE name = ?1", [&name])?;
            tx.execute("DELETE FROM segment_members WHERE segment = ?1", [&name])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn list_segments(&self) -> Result<Vec<SegmentRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, expression, created_at, updated_at FROM segments ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(SegmentRecord {
                    name: r.get(0)?,
                    expression: r.get(1)?,
                    created_at: from_micros(r.get(2)?),
                    updated_at: from_micros(r.get(3)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn put_documents(&self, docs: Vec<DocumentRecord>) -> Result<Vec<i64>, StoreError> {
        self.write_on(Db::Main, move |c| {
            let tx = c.transaction()?;
            let mut versions = Vec::with_capacity(docs.len());
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO documents (kind, name, version, body, updated_at) VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT (kind, name) DO UPDATE SET version = documents.version + 1,
                         body = excluded.body, updated_at = excluded.updated_at
                     RETURNING version",
                )?;
                // A name given twice keeps its last body and one new version, as in PostgreSQL.
                let mut last: HashMap<(&str, &str), usize> = HashMap::new();
                for (i, d) in docs.iter().enumerate() {
                    last.insert((d.kind.as_str(), d.name.as_str()), i);
                }
                let mut saved: HashMap<(&str, &str), i64> = HashMap::new();
                for (i, d) in docs.iter().enumerate() {
                    let key = (d.kind.as_str(), d.name.as_str());
                    if last.get(&key) != Some(&i) {
                        continue;
                    }
                    let body = serde_json::to_string(&d.body).map_err(|e| corrupt("document body", e))?;
                    let v: i64 = stmt.query_row(
                        params![d.kind.as_str(), d.name, body, micros(d.updated_at)],
                        |r| r.get(0),
                    )?;
                    saved.insert(key, v);
                }
                for d in &docs {
                    versions.push(
                        saved
                            .get(&(d.kind.as_str(), d.name.as_str()))
                            .copied()
                            .unwrap_or_default(),
                    );
                }
            }
            tx.commit()?;
            Ok(versions)
        })
        .await
    }

    async fn get_document(
        &self,
        kind: DocumentKind,
        name: &str,
    ) -> Result<Option<DocumentRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, version, body, updated_at FROM documents WHERE kind = ?1 AND name = ?2",
            )?;
            let row = stmt
                .query_row(params![kind.as_str(), name], document_columns)
                .optional()?;
            row.map(|r| document_from(kind, r)).transpose()
        })
        .await
    }

    async fn list_documents(
        &self,
        kind: DocumentKind,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<DocumentRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, version, body, updated_at FROM documents WHERE kind = ?1 AND name > ?2
                 ORDER BY name LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![kind.as_str(), after.unwrap_or_default(), limit],
                document_columns,
            )?;
            rows.map(|r| document_from(kind, r?)).collect()
        })
        .await
    }

    async fn delete_document(&self, kind: DocumentKind, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write_on(Db::Main, move |c| {
            Ok(c.execute(
                "DELETE FROM documents WHERE kind = ?1 AND name = ?2",
                params![kind.as_str(), name],
            )? > 0)
        })
        .await
    }

    async fn meta_get_or_init(&self, key: &str, init: String) -> Result<String, StoreError> {
        let key = key.to_owned();
        self.write_on(Db::Main, move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, init],
            )?;
            Ok(c.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0))?)
        })
        .await
    }

    async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            Ok(
                c.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn meta_set(&self, key: &str, value: String) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write_on(Db::Main, move |c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }
}
