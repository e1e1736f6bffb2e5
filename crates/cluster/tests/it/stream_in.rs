//! A JetStream stream as an ingest source, on the real NATS (`MISSIVE_TEST_NATS_URL`; CI sets
//! it, and there this test fails rather than skips): every valid message is stored once,
//! repeats of a message id are stored once, invalid messages are refused for good without
//! stopping the rest, and a restart reads nothing again (everything was acknowledged after the
//! commit).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use missive_cluster::stream_in::{BatchOutcome, StreamIn, connect};
use missive_core::SystemClock;
use missive_engine::{Engine, EngineConfig};
use missive_store::{SqliteStore, Store};

async fn drain(source: &missive_cluster::stream_in::Source) -> BatchOutcome {
    let mut total = BatchOutcome::default();
    let mut idle = 0;
    while idle < 2 {
        let b = source.batch(Duration::from_millis(500)).await.unwrap();
        if b.read == 0 {
            idle += 1;
        }
        total.read += b.read;
        total.stored += b.stored;
        total.duplicates += b.duplicates;
        total.refused += b.refused;
    }
    total
}

#[tokio::test]
async fn a_jetstream_stream_feeds_the_engine_once_per_message_id() {
    let Ok(url) = std::env::var("MISSIVE_TEST_NATS_URL") else {
        eprintln!("MISSIVE_TEST_NATS_URL is not set: the JetStream ingest test does not run");
        return;
    };
    let name = format!("TEST_{}", uuid::Uuid::new_v4().simple());
    let subject = format!("{}.events", name.to_lowercase());
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        storage: jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let publish = |body: Vec<u8>| {
        let (js, subject) = (js.clone(), subject.clone());
        async move { js.publish(subject, body.into()).await.unwrap().await.unwrap() }
    };
    for i in 0..50 {
        let m = serde_json::json!({"type": "track", "userId": format!("u{}", i % 5), "event": "Order Completed",
            "messageId": format!("m-{i}"), "properties": {"revenue": 10 + i}});
        publish(serde_json::to_vec(&m).unwrap()).await;
    }
    // A producer retrying ten messages, and two that are not messages.
    for i in 0..10 {
        let m = serde_json::json!({"type": "track", "userId": format!("u{}", i % 5), "event": "Order Completed",
            "messageId": format!("m-{i}"), "properties": {"revenue": 10 + i}});
        publish(serde_json::to_vec(&m).unwrap()).await;
    }
    publish(b"{not json".to_vec()).await;
    publish(br#"{"type": "track", "event": "Order Completed", "messageId": "nobody"}"#.to_vec()).await;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(SqliteStore::open(&dir.path().join("m.db")).await.unwrap());
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), EngineConfig::default())
        .await
        .unwrap();
    let config = StreamIn {
        nats: url.clone(),
        stream: name.clone(),
        subject: None,
        durable: "missive-test".into(),
        create: false,
        batch: 16,
    };
    let source = connect(&config, engine.clone()).await.unwrap();
    let seen = drain(&source).await;
    assert_eq!(
        (seen.read, seen.stored, seen.duplicates, seen.refused),
        (62, 50, 10, 2),
        "{seen:?}"
    );
    engine.sync().await.unwrap();
    let stats = store.events().stats().await.unwrap();
    assert_eq!((stats.events, stats.profiles), (50, 5));

    // A restart resumes after the last acknowledgement: nothing is read again.
    drop(source);
    let again = connect(&config, engine.clone()).await.unwrap();
    let seen = drain(&again).await;
    assert_eq!(seen.read, 0, "{seen:?}");
    js.delete_stream(&name).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_nats_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(SqliteStore::open(&dir.path().join("m.db")).await.unwrap());
    let engine = Engine::start(store, Arc::new(SystemClock), EngineConfig::default())
        .await
        .unwrap();
    let config = StreamIn {
        nats: "nats://127.0.0.1:1".into(),
        stream: "NONE".into(),
        subject: None,
        durable: "x".into(),
        create: false,
        batch: 1,
    };
    match connect(&config, engine).await {
        Err(e) => assert!(
            e.to_string().contains("connecting to NATS at nats://127.0.0.1:1"),
            "{e}"
        ),
        Ok(_) => panic!("connected to nothing"),
    }
}
