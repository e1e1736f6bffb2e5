//! The audit log as a service: who did what to which record, appended by the server and the
//! CLI, read by privacy officers. Entries cannot change once written (the store refuses).

use missive_store::{AuditEntry, AuditQuery, Store, StoreError};

/// The workspace's audit log ([`crate::Engine::audit`]).
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
}

impl AuditLog {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Appends entries (the store assigns their sequence numbers).
    pub async fn append(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.store.access().append_audit(entries).await
    }

    /// Entries matching `query`, newest first.
    pub async fn entries(&self, query: AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.access().audit_entries(query).await
    }
}
