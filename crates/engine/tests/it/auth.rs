//! API keys: verified once, re-checked by a read, and one hash for many callers at once.

use std::time::Duration;

use chrono::Utc;
use missive_engine::auth::{Authenticator, mint_key};
use missive_store::{Role, SqliteStore, Store};

async fn store_with_key(dir: &std::path::Path) -> (Store, String, missive_core::ApiKeyId) {
    let store = Store::new(SqliteStore::open(dir.join("missive.db")).await.unwrap());
    let (record, secret) = mint_key(Role::Write, "test", Utc::now()).await.unwrap();
    let id = record.id.clone();
    store.access().create_api_key(record).await.unwrap();
    (store, secret.expose().to_owned(), id)
}

#[tokio::test]
async fn many_requests_presenting_one_new_key_at_once_hash_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key, _) = store_with_key(dir.path()).await;
    let auth = Authenticator::new(store);
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (auth, key) = (auth.clone(), key.clone());
            tokio::spawn(async move { auth.authenticate(&key).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().unwrap().is_some());
    }
    assert_eq!(auth.hashes_checked(), 1);
    // A wrong secret for the same key id is hashed and refused, and not remembered.
    // The last character changed (to one it is not: a random secret may end in `x`).
    let swap = if key.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{swap}", &key[..key.len() - 1]);
    assert!(auth.authenticate(&wrong).await.unwrap().is_none());
    assert!(auth.authenticate(&wrong).await.unwrap().is_none());
    assert_eq!(auth.hashes_checked(), 3);
}

#[tokio::test]
async fn a_key_past_its_cache_time_is_read_again_not_hashed_again_and_a_revocation_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key, id) = store_with_key(dir.path()).await;
    let auth = Authenticator::new(store.clone()).with_cache_ttl(Duration::ZERO);
    assert!(auth.authenticate(&key).await.unwrap().is_some());
    assert!(auth.authenticate(&key).await.unwrap().is_some());
    assert_eq!(auth.hashes_checked(), 1, "a known key is re-read, not re-hashed");
    // Revoked by another process: this one sees it at the next read.
    assert!(store.access().revoke_api_key(&id, Utc::now()).await.unwrap());
    assert!(auth.authenticate(&key).await.unwrap().is_none());
    assert!(auth.authenticate(&key).await.unwrap().is_none());
}
