//! Data keys: one wrapped key per profile (encryption at rest). Kept apart from the data
//! they protect, so that destroying a key shreds every copy of a profile (see docs/privacy.md).

use std::collections::HashMap;

use async_trait::async_trait;
use missive_core::ProfileId;

use crate::StoreError;
use crate::types::*;

/// Wrapped per-profile data keys.
#[async_trait]
pub trait DataKeyStore: Send + Sync + 'static {
    /// Stores data keys; a profile that has one already keeps it (the first writer wins, and
    /// the caller reads back what is stored).
    async fn put_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError>;

    /// The data keys of those of `ids` that have one.
    async fn data_keys(&self, ids: Vec<ProfileId>) -> Result<HashMap<ProfileId, DataKeyRecord>, StoreError>;

    /// Data keys in profile-id order after `after`: what a master-key rotation walks.
    async fn data_keys_after(
        &self,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<DataKeyRecord>, StoreError>;

    /// Replaces the wrapping of existing data keys (a rotation re-wraps them).
    async fn rewrap_data_keys(&self, keys: Vec<DataKeyRecord>) -> Result<(), StoreError>;
}
