//! Store failures: a failed commit answers 503 to its senders, loses nothing acknowledged, and
//! the engine carries on (no hang) once the store works again. The store is the real SQLite
//! backend behind a switch that makes commits fail, since a real disk cannot be made to fail
//! on demand here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use missive_core::message::validate_message;
use missive_core::{IdentityKey, MessageId, Profile, ProfileId, SystemClock};
use missive_engine::profiles::{ProfileKey, find_profile};
use missive_engine::{Engine, EngineConfig};
use missive_store::{
    Checkpoint, ErasureCounts, EventBatch, EventQuery, EventStore, MergeRecord, ProfileVersion,
    SegmentChange, SqliteStore, Store, StoreError, StoreStats, StoredEvent,
};
use serde_json::json;

/// The event area of a real store, with switches that make its commits fail.
struct Flaky {
    inner: Arc<dyn EventStore>,
    fail_events: AtomicBool,
    fail_checkpoints: AtomicBool,
}

fn injected() -> StoreError {
    StoreError::Task("injected failure".into())
}

#[async_trait]
impl EventStore for Flaky {
    async fn commit_events(&self, batch: EventBatch) -> Result<(), StoreError> {
        if self.fail_events.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.commit_events(batch).await
    }
    async fn commit_checkpoint(&self, cp: Checkpoint) -> Result<(), StoreError> {
        if self.fail_checkpoints.load(Ordering::SeqCst) {
            return Err(injected());
        }
        self.inner.commit_checkpoint(cp).await
    }
    async fn last_event_seq(&self) -> Result<i64, StoreError> {
        self.inner.last_event_seq().await
    }
    async fn profile_checkpoint(&self) -> Result<i64, StoreError> {
        self.inner.profile_checkpoint().await
    }
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events_after(after, limit).await
    }
    async fn message_ids_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, MessageId)>, StoreError> {
        self.inner.message_ids_after(after, limit).await
    }
    async fn identity_keys_after(
        &self,
        after: Option<IdentityKey>,
        limit: u32,
    ) -> Result<Vec<IdentityKey>, StoreError> {
        self.inner.identity_keys_after(after, limit).await
    }
    async fn existing_message_ids(&self, ids: Vec<MessageId>) -> Result<HashSet<MessageId>, StoreError> {
        self.inner.existing_message_ids(ids).await
    }
    async fn resolve_identities(
        &self,
        keys: Vec<IdentityKey>,
    ) -> Result<HashMap<IdentityKey, ProfileId>, StoreError> {
        self.inner.resolve_identities(keys).await
    }
    async fn load_profile(&self, id: &ProfileId) -> Result<Option<Profile>, StoreError> {
        self.inner.load_profile(id).await
    }
    async fn profiles_after(&self, after: Option<ProfileId>, limit: u32) -> Result<Vec<Profile>, StoreError> {
        self.inner.profiles_after(after, limit).await
    }
    async fn profile_events(&self, q: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.profile_events(q).await
    }
    async fn profile_versions(
        &self,
        id: &ProfileId,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        self.inner.profile_versions(id, before, limit).await
    }
    async fn versions_for_as_of(
        &self,
        id: &ProfileId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ProfileVersion>, StoreError> {
        self.inner.versions_for_as_of(id, at).await
    }
    async fn merges_of(&self, id: &ProfileId) -> Result<Vec<MergeRecord>, StoreError> {
        self.inner.merges_of(id).await
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }
    async fn segment_members(
        &self,
        name: &str,
        after: Option<ProfileId>,
        limit: u32,
    ) -> Result<Vec<ProfileId>, StoreError> {
        self.inner.segment_members(name, after, limit).await
    }
    async fn segment_changes_of(&self, id: &ProfileId, limit: u32) -> Result<Vec<SegmentChange>, StoreError> {
        self.inner.segment_changes_of(id, limit).await
    }
    async fn segment_changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, SegmentChange)>, StoreError> {
        self.inner.segment_changes_after(after, limit).await
    }
    async fn track_events_since(
        &self,
        names: Vec<String>,
        since: DateTime<Utc>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner
            .track_events_since(names, since, after_seq, limit)
            .await
    }
    async fn erase_profiles(&self, ids: Vec<ProfileId>) -> Result<ErasureCounts, StoreError> {
        self.inner.erase_profiles(ids).await
    }
    async fn add_erased_identities(&self, hashes: Vec<String>, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.add_erased_identities(hashes, at).await
    }
    async fn reindex_identities(&self, changes: Vec<(IdentityKey, String)>) -> Result<u64, StoreError> {
        self.inner.reindex_identities(changes).await
    }
    async fn erased_identities(&self) -> Result<HashSet<String>, StoreError> {
        self.inner.erased_identities().await
    }
    async fn purge_events_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.inner.purge_events_before(before, limit).await
    }
    fn identity_index(&self, key: &IdentityKey) -> IdentityKey {
        self.inner.identity_index(key)
    }
}

fn views(user: &str, ids: std::ops::Range<u32>) -> Vec<missive_core::Event> {
    ids.map(|i| {
        validate_message(
            json!({"type": "track", "userId": user, "event": "Viewed", "messageId": format!("{user}-{i}")}),
            None,
            None,
            Utc::now(),
        )
        .unwrap()
    })
    .collect()
}

async fn viewed(store: &Store, user: &str) -> u64 {
    let p = find_profile(store, &ProfileKey::parse(user), 10)
        .await
        .unwrap()
        .unwrap();
    p.events["Viewed"].count
}

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_failed_event_commit_is_refused_and_the_engine_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let real = Store::new(SqliteStore::open(dir.path().join("m.db")).await.unwrap());
    let flaky = Arc::new(Flaky {
        inner: real.events().clone(),
        fail_events: AtomicBool::new(false),
        fail_checkpoints: AtomicBool::new(false),
    });
    let store = real.with_events(flaky.clone());
    // A long interval: checkpoints only when asked.
    let config = EngineConfig {
        flush_interval: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), config.clone())
        .await
        .unwrap();

    assert_eq!(engine.ingest(views("u", 0..3)).await.unwrap().stored, 3);
    flaky.fail_events.store(true, Ordering::SeqCst);
    let refused = tokio::time::timeout(PATIENCE, engine.ingest(views("u", 3..5)))
        .await
        .expect("ingest hung");
    assert!(refused.is_err(), "a failed commit must not be acknowledged");
    let (_, error) = engine
        .write_failure()
        .expect("the failed write is reported for /health");
    assert!(error.contains("injected failure"), "{error}");
    flaky.fail_events.store(false, Ordering::SeqCst);
    // The retry of the refused events, and new ones, go through.
    let retried = tokio::time::timeout(PATIENCE, engine.ingest(views("u", 3..8)))
        .await
        .expect("ingest hung");
    assert_eq!(retried.unwrap().stored, 5);
    assert!(engine.write_failure().is_none(), "a commit succeeded since");
    tokio::time::timeout(PATIENCE, engine.sync())
        .await
        .expect("sync hung after a failure")
        .unwrap();
    assert_eq!(viewed(&store, "u").await, 8);

    // A failed checkpoint: readers are told, then it is retried from the event log.
    flaky.fail_checkpoints.store(true, Ordering::SeqCst);
    assert_eq!(engine.ingest(views("u", 8..10)).await.unwrap().stored, 2);
    assert!(
        tokio::time::timeout(PATIENCE, engine.sync())
            .await
            .expect("sync hung")
            .is_err()
    );
    flaky.fail_checkpoints.store(false, Ordering::SeqCst);
    assert_eq!(engine.ingest(views("u", 10..11)).await.unwrap().stored, 1);
    tokio::time::timeout(PATIENCE, engine.sync())
        .await
        .expect("sync hung")
        .unwrap();
    assert_eq!(viewed(&store, "u").await, 11);

    // And a restart rebuilds the same.
    tokio::time::timeout(PATIENCE, engine.shutdown())
        .await
        .expect("shutdown hung");
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), config)
        .await
        .unwrap();
    assert_eq!(engine.ingest(views("u", 0..11)).await.unwrap().duplicates, 11);
    engine.sync().await.unwrap();
    assert_eq!(viewed(&store, "u").await, 11);
}
