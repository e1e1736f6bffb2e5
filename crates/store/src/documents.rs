//! Documents (templates, blocks, journeys, broadcasts, products), saved segments and the
//! store's metadata: what people write and configure, no personal data.

use async_trait::async_trait;

use crate::StoreError;
use crate::types::*;

/// Documents, saved segments and metadata.
#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// Creates or replaces a saved segment.
    async fn save_segment(&self, segment: SegmentRecord) -> Result<(), StoreError>;

    /// Deletes a saved segment and its member list; false when there was none.
    async fn delete_segment(&self, name: &str) -> Result<bool, StoreError>;

    /// Saved segments by name.
    async fn list_segments(&self) -> Result<Vec<SegmentRecord>, StoreError>;

    /// Saves documents (creating or replacing each), in one transaction; returns the new
    /// version of each, in order. `version` and `updated_at` of the input are ignored except
    /// for `updated_at`, which is stored.
    async fn put_documents(&self, docs: Vec<DocumentRecord>) -> Result<Vec<i64>, StoreError>;

    async fn get_document(
        &self,
        kind: DocumentKind,
        name: &str,
    ) -> Result<Option<DocumentRecord>, StoreError>;

    /// Documents of a kind by name, after `after`, at most `limit`.
    async fn list_documents(
        &self,
        kind: DocumentKind,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<DocumentRecord>, StoreError>;

    async fn delete_document(&self, kind: DocumentKind, name: &str) -> Result<bool, StoreError>;

    /// A value from the store's metadata, set to `init` first if absent (workspace secrets).
    async fn meta_get_or_init(&self, key: &str, init: String) -> Result<String, StoreError>;

    /// A value from the store's metadata, if it is set.
    async fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Sets the metadata value of `key`, replacing any.
    async fn meta_set(&self, key: &str, value: String) -> Result<(), StoreError>;
}

/// Every document of `kind`, by name, read in pages.
pub async fn all_documents(
    docs: &dyn DocumentStore,
    kind: DocumentKind,
) -> Result<Vec<DocumentRecord>, StoreError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = docs.list_documents(kind, after.clone(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        out.extend(page);
    }
    Ok(out)
}
