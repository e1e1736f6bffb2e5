//! The schema of a store written before missive kept one: observed once, at the first start,
//! from the stored events.

use std::sync::Arc;

use chrono::Utc;
use missive_core::SystemClock;
use missive_core::message::validate_message;
use missive_core::schema::{FieldKey, FieldType, SchemaField};
use missive_engine::{Engine, EngineConfig};
use missive_store::{SqliteStore, Store};
use serde_json::json;

fn find<'a>(fields: &'a [SchemaField], key: &FieldKey) -> Option<&'a SchemaField> {
    fields.iter().find(|f| &f.key() == key)
}

#[tokio::test]
async fn a_store_from_before_the_schema_is_observed_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missive.db");
    let store = Store::new(SqliteStore::open(&path).await.unwrap());
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), EngineConfig::default())
        .await
        .unwrap();
    let events = [
        json!({"type": "identify", "userId": "ann", "traits": {"shoe_size": 38, "plan": "pro"}}),
        json!({"type": "track", "userId": "ann", "event": "Size Chosen", "properties": {"size": "M", "width": 3}}),
        json!({"type": "identify", "userId": "bob", "traits": {"partner_score": 7},
               "context": {"missive": {"party": "third"}}}),
    ];
    let events = events
        .into_iter()
        .map(|v| validate_message(v, None, None, Utc::now()).unwrap())
        .collect();
    engine.ingest(events).await.unwrap();
    engine.shutdown().await;

    // What the previous version left: the events and profiles, no schema.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("DELETE FROM schema_fields; DELETE FROM meta WHERE key = 'schema_backfilled';")
        .unwrap();
    drop(db);
    assert!(store.events().schema_fields().await.unwrap().is_empty());

    let engine = Engine::start(store.clone(), Arc::new(SystemClock), EngineConfig::default())
        .await
        .unwrap();
    let fields = missive_engine::schema::fields(&store).await.unwrap();
    let shoe = find(&fields, &FieldKey::trait_("shoe_size")).expect("a trait from the log");
    assert_eq!(shoe.check_type(), Some(FieldType::Number));
    assert_eq!(
        shoe.observed.as_ref().unwrap().examples,
        Vec::<serde_json::Value>::new()
    );
    let width = find(&fields, &FieldKey::property("Size Chosen", "width")).expect("a property");
    assert_eq!(width.observed.as_ref().unwrap().examples, vec![json!(3)]);
    assert!(
        find(&fields, &FieldKey::trait_("partner_score")).is_none(),
        "a third-party trait whose consent is unknown is left out"
    );
    engine.shutdown().await;

    // Once only: a withdrawn observation is not read back from the log at the next start.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("DELETE FROM schema_fields;").unwrap();
    drop(db);
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), EngineConfig::default())
        .await
        .unwrap();
    assert!(store.events().schema_fields().await.unwrap().is_empty());
    engine.shutdown().await;
}
