//! Store failures: a failed commit answers 503 to its senders, loses nothing acknowledged, and
//! the engine carries on (no hang) once the store works again. The store is the real SQLite
//! backend; its commits are made to fail inside SQLite itself, by triggers that abort the
//! writes of an event commit or of a profile checkpoint (a real disk cannot be made to fail
//! on demand here).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use missive_core::SystemClock;
use missive_core::message::validate_message;
use missive_engine::profiles::{ProfileKey, find_profile};
use missive_engine::{Engine, EngineConfig};
use missive_store::{SqliteStore, Store};
use serde_json::json;

/// Switches that make a SQLite store's commits fail, from a connection of its own.
struct Faults {
    main: PathBuf,
    events: PathBuf,
}

impl Faults {
    fn of(path: &Path) -> Self {
        Self {
            main: path.to_path_buf(),
            events: path.with_extension("events.db"),
        }
    }

    fn run(file: &Path, sql: &str) {
        let db = rusqlite::Connection::open(file).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.execute_batch(sql).unwrap();
    }

    /// Every event commit fails (its insert into `events` aborts).
    fn fail_events(&self, on: bool) {
        Self::run(
            &self.events,
            if on {
                "CREATE TRIGGER injected_failure BEFORE INSERT ON events
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            } else {
                "DROP TRIGGER injected_failure;"
            },
        );
    }

    /// Every profile checkpoint fails (its write of the checkpoint's position aborts).
    fn fail_checkpoints(&self, on: bool) {
        Self::run(
            &self.main,
            if on {
                "CREATE TRIGGER injected_failure BEFORE INSERT ON meta
                 WHEN NEW.key = 'profiles_through_seq'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            } else {
                "DROP TRIGGER injected_failure;"
            },
        );
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
    p.events.get("Viewed").map_or(0, |a| a.count)
}

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_failed_event_commit_is_refused_and_the_engine_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let store = Store::new(SqliteStore::open(&path).await.unwrap());
    let faults = Faults::of(&path);
    // A long interval: checkpoints only when asked.
    let config = EngineConfig {
        flush_interval: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), config.clone())
        .await
        .unwrap();

    assert_eq!(engine.ingest(views("u", 0..3)).await.unwrap().stored, 3);
    faults.fail_events(true);
    let refused = tokio::time::timeout(PATIENCE, engine.ingest(views("u", 3..5)))
        .await
        .expect("ingest hung");
    assert!(refused.is_err(), "a failed commit must not be acknowledged");
    let (_, error) = engine
        .write_failure()
        .expect("the failed write is reported for /health");
    assert!(error.contains("injected failure"), "{error}");
    faults.fail_events(false);
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
    faults.fail_checkpoints(true);
    assert_eq!(engine.ingest(views("u", 8..10)).await.unwrap().stored, 2);
    assert!(
        tokio::time::timeout(PATIENCE, engine.sync())
            .await
            .expect("sync hung")
            .is_err()
    );
    faults.fail_checkpoints(false);
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
