//! The data keys area on sqlite (see [`crate::DataKeyStore`]).

use std::collections::HashMap;

use async_trait::async_trait;

use super::rows::*;
use super::*;

#[async_trait]
impl crate::DataKeyStore for SqliteStore {
    async fn put_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.write_on(Db::Keys, move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO data_keys (profile_id, master_key_id, wrapped, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (profile_id) DO NOTHING",
                )?;
                for k in &keys {
                    stmt.execute(params![k.profile_id.as_str(), k.master_key_id, k.wrapped, micros(k.created_at)])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn data_keys(&self, ids: Vec<ProfileId>) -> Result<HashMap<ProfileId, DataKeyRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        self.read_on(Db::Keys, move |c| {
            let mut out = HashMap::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                let placeholders = vec!["?"; chunk.len()].join(",");
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT profile_id, master_key_id, wrapped, created_at FROM data_keys WHERE profile_id IN ({placeholders})"
                ))?;
                let rows = stmt.query_map(
                    rusqlite::params_from_iter(chunk.iter().map(|i| i.as_str())),
                    data_key_row,
                )?;
                for r in rows {
                    let k = r??;
                    out.insert(k.profile_id.clone(), k);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn data_keys_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<DataKeyRecord>, StoreError> {
        let after = after.map(|a| a.as_str().to_owned()).unwrap_or_default();
        self.read_on(Db::Keys, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT profile_id, master_key_id, wrapped, created_at FROM data_keys WHERE profile_id > ?1
                 ORDER BY profile_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], data_key_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn rewrap_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        self.write_on(Db::Keys, move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE data_keys SET master_key_id = ?2, wrapped = ?3 WHERE profile_id = ?1",
                )?;
                for k in &keys {
                    stmt.execute(params![k.profile_id.as_str(), k.master_key_id, k.wrapped])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
