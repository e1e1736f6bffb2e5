//! The data keys area on postgres (see [`crate::DataKeyStore`]).

use std::collections::HashMap;

use async_trait::async_trait;

use super::rows::*;
use super::*;

#[async_trait]
impl crate::DataKeyStore for PostgresStore {
    async fn put_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = keys.iter().map(|k| k.profile_id.as_str()).collect();
        let masters: Vec<&str> = keys.iter().map(|k| k.master_key_id.as_str()).collect();
        let wrapped: Vec<&str> = keys.iter().map(|k| k.wrapped.as_str()).collect();
        let at: Vec<i64> = keys.iter().map(|k| micros(k.created_at)).collect();
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "INSERT INTO data_keys (profile_id, master_key_id, wrapped, created_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])
                 ON CONFLICT (profile_id) DO NOTHING",
                &[&ids, &masters, &wrapped, &at],
            )
            .await?;
        Ok(())
    }

    async fn data_keys(&self, ids: Vec<ProfileId>) -> Result<HashMap<ProfileId, DataKeyRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT profile_id, master_key_id, wrapped, created_at FROM data_keys WHERE profile_id = ANY($1::text[])",
                &[&ids],
            )
            .await?;
        rows.iter()
            .map(|row| data_key_row(row).map(|k| (k.profile_id.clone(), k)))
            .collect()
    }

    async fn data_keys_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<DataKeyRecord>, StoreError> {
        let after = after.map(|a| a.as_str().to_owned()).unwrap_or_default();
        let r = self.reader();
        let rows = r
            .client
            .query(
                "SELECT profile_id, master_key_id, wrapped, created_at FROM data_keys WHERE profile_id COLLATE \"C\" > $1
                 ORDER BY profile_id COLLATE \"C\" LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(data_key_row).collect()
    }

    async fn rewrap_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError> {
        let ids: Vec<&str> = keys.iter().map(|k| k.profile_id.as_str()).collect();
        let masters: Vec<&str> = keys.iter().map(|k| k.master_key_id.as_str()).collect();
        let wrapped: Vec<&str> = keys.iter().map(|k| k.wrapped.as_str()).collect();
        let writer = self.inner.checkpoint_writer.lock().await;
        writer
            .client
            .execute(
                "UPDATE data_keys d SET master_key_id = u.m, wrapped = u.w
                 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(p, m, w) WHERE d.profile_id = u.p",
                &[&ids, &masters, &wrapped],
            )
            .await?;
        Ok(())
    }
}
