//! Access: the workspace, its API keys and the append-only audit log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use missive_core::ApiKeyId;

use crate::StoreError;
use crate::types::*;

/// The workspace, keys and audit log.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// The workspace this store holds, once bootstrapped.
    async fn workspace(&self) -> Result<Option<Workspace>, StoreError>;

    /// Creates the workspace and its first keys, atomically; fails with
    /// [`StoreError::Conflict`] when a workspace exists already.
    async fn bootstrap_workspace(&self, ws: Workspace, keys: Vec<ApiKeyRecord>) -> Result<(), StoreError>;

    /// The live (not revoked) key whose secret hashes to `secret_hash` (SHA-256 hex: keys
    /// minted before argon2).
    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// A key by id, revoked or not.
    async fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError>;

    async fn create_api_key(&self, key: ApiKeyRecord) -> Result<(), StoreError>;

    /// Every key, oldest first, revoked ones included.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes a key at `at`; false when there is no such live key.
    async fn revoke_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Appends to the audit log (the store assigns `seq`). Nothing can change or delete an
    /// entry afterwards.
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError>;

    /// Audit entries matching `query`, newest first.
    async fn audit_entries(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
}
