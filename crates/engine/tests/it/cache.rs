//! The profile cache: an engine that keeps only a few profiles in memory, and so reloads
//! evicted ones from the store (a batch's at once), folds the same events into the same
//! profiles as one that keeps them all. Real SQLite stores, one per engine.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::message::validate_message;
use missive_core::{Event, ManualClock};
use missive_engine::profiles::{ProfileKey, find_profile};
use missive_engine::{Engine, EngineConfig};
use missive_store::{SqliteStore, Store};
use serde_json::{Value, json};

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T10:00:00Z")
        .unwrap()
        .to_utc()
}

fn event(msg: Value, at: DateTime<Utc>) -> Event {
    validate_message(msg, None, None, at).unwrap()
}

async fn engine(dir: &tempfile::TempDir, profile_cache: usize) -> Engine {
    let store = Store::new(SqliteStore::open(dir.path().join("missive.db")).await.unwrap());
    let config = EngineConfig {
        profile_cache,
        flush_interval: Duration::from_millis(10),
        ..EngineConfig::default()
    };
    Engine::start(store, Arc::new(ManualClock::new(start())), config)
        .await
        .unwrap()
}

/// What the fold made of a person, without what differs by when checkpoints ran.
fn folded(p: &missive_core::Profile) -> Value {
    json!({
        "traits": p.traits.iter().map(|(k, t)| (k.clone(), t.value.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        "events": p.events.iter().map(|(k, a)| (k.clone(), (a.count, a.first_at, a.last_at))).collect::<Vec<_>>(),
        "orders": (p.orders.count, format!("{:?}", p.orders.revenue)),
        "seen": (p.first_seen, p.last_seen),
        "window": p.window_events.len(),
        "history": p.history.iter().map(|h| (h.name.clone(), h.at)).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn a_small_cache_folds_evicted_profiles_like_a_large_one() {
    let (small_dir, large_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let small = engine(&small_dir, 3).await;
    let large = engine(&large_dir, 10_000).await;
    let people = 12;
    let mut batches: Vec<Vec<Event>> = vec![
        (0..people)
            .map(|u| {
                event(
                    json!({"type": "identify", "userId": format!("u{u}"), "messageId": format!("id-{u}"),
                           "timestamp": start().to_rfc3339(),
                           "traits": {"email": format!("u{u}@example.com"), "plan": "basic"}}),
                    start(),
                )
            })
            .collect(),
    ];
    // Rounds in which everyone acts: with room for three, most profiles were evicted since
    // their last event, and a round's are loaded back together.
    for round in 1..6i64 {
        let at = start() + TimeDelta::hours(round);
        batches.push(
            (0..people)
                .map(|u| {
                    let name = if (u + round) % 3 == 0 {
                        "Order Completed"
                    } else {
                        "Product Viewed"
                    };
                    event(
                        json!({"type": "track", "userId": format!("u{u}"), "event": name,
                               "messageId": format!("t-{round}-{u}"), "timestamp": at.to_rfc3339(),
                               "properties": {"revenue": 10 * round, "product_id": format!("p{round}")}}),
                        at,
                    )
                })
                .collect(),
        );
        // A trait change for some, so that reloaded traits are folded on, not replaced.
        batches.push(vec![event(
            json!({"type": "identify", "userId": format!("u{}", round % people), "messageId": format!("i-{round}"),
                   "timestamp": at.to_rfc3339(), "traits": {"plan": format!("plan-{round}")}}),
            at,
        )]);
    }
    for batch in batches {
        small.ingest(batch.clone()).await.unwrap();
        large.ingest(batch).await.unwrap();
        // Let checkpoints commit, so that the small cache may evict.
        small.sync().await.unwrap();
        large.sync().await.unwrap();
    }
    for u in 0..people {
        let key = ProfileKey::parse(&format!("user_id:u{u}"));
        let a = find_profile(small.store(), &key, 50).await.unwrap().unwrap();
        let b = find_profile(large.store(), &key, 50).await.unwrap().unwrap();
        assert_eq!(folded(&a), folded(&b), "u{u}");
        // The first identify, five rounds, and the trait change of rounds 1 to 5 for u1 to u5.
        let expected = 6 + u64::from((1..6).contains(&u));
        assert_eq!(
            a.events.values().map(|e| e.count).sum::<u64>(),
            expected,
            "u{u}: every event folded once"
        );
    }
    small.shutdown().await;
    large.shutdown().await;
}
