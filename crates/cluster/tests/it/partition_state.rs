//! What a partition's owner keeps besides its profiles, handed over with the partition: the
//! segment timers its profiles hold, and the segment backfills not finished over it. Two
//! engines on one real PostgreSQL; the second takes the partition over from the first, as a
//! node does when another leaves or dies. (`cli/tests/it/cluster_nodes.rs` runs real nodes.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use missive_core::{Clock, IdentityKey, ManualClock, ProfileId};
use missive_engine::{Engine, EngineConfig, LogPosition};
use missive_store::Store;
use missive_store::postgres::PostgresStore;

use crate::{keeper, schema, url};

const VIEWED_TODAY: &str = r#"count(event "Product Viewed" within 1d) >= 1"#;

async fn engine(store: &Store, clock: &ManualClock) -> Engine {
    let config = EngineConfig {
        cluster: true,
        ..EngineConfig::default()
    };
    Engine::start(store.clone(), Arc::new(clock.clone()), config)
        .await
        .unwrap()
}

/// `user`'s "Product Viewed" at `seq` of partition 0, received at the clock's time, with the
/// user routed to partition 0 as the router would have claimed it.
async fn viewed(engine: &Engine, clock: &ManualClock, user: &str, seq: i64) {
    engine
        .store()
        .events()
        .claim_routes(vec![(IdentityKey::user_id(user), 0)])
        .await
        .unwrap();
    let body = serde_json::json!({"type": "track", "event": "Product Viewed", "userId": user, "messageId": format!("v-{seq}")});
    let e = missive_core::message::validate_message(body, None, None, clock.now()).unwrap();
    let at = LogPosition { partition: 0, seq };
    engine.ingest_logged(vec![e], vec![at]).await.unwrap();
}

async fn profile_of(store: &Store, user: &str) -> ProfileId {
    let key = IdentityKey::user_id(user);
    let found = store
        .events()
        .resolve_identities(vec![key.clone()])
        .await
        .unwrap();
    found[&key].clone()
}

/// The segments `user`'s stored profile is in.
async fn stored_segments(store: &Store, user: &str) -> Vec<String> {
    let id = profile_of(store, user).await;
    let p = store.events().load_profile(&id).await.unwrap().unwrap();
    p.segments.segments.iter().cloned().collect()
}

/// Waits (syncing `engine`) until `check` holds, for at most 10 s.
async fn eventually<F, Fut>(engine: &Engine, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        engine.sync().await.unwrap();
        if check().await {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_segment_timer_armed_by_one_owner_fires_on_the_next() {
    let Some(url) = url() else { return };
    let s = schema(&url).await;
    let store = Store::new(PostgresStore::connect_cluster(&url, Some(&s)).await.unwrap());
    let clock = ManualClock::new(chrono::Utc::now());
    let first = engine(&store, &clock).await;
    let mut a = keeper(&url, &s, "a", 1).await;
    a.round().await.unwrap();
    first.own(a.fence(0).unwrap()).await.unwrap();
    missive_engine::segments::save_segment(&first, "viewed-today", VIEWED_TODAY, None)
        .await
        .unwrap();
    viewed(&first, &clock, "u-1", 1).await;
    first.sync().await.unwrap();
    assert_eq!(stored_segments(&store, "u-1").await, vec!["viewed-today"]);

    // The first owner hands the partition over (a rolling restart) with the timer armed.
    first.disown(0, false).await.unwrap();
    first.shutdown().await;
    a.leave().await.unwrap();
    let second = engine(&store, &clock).await;
    let mut b = keeper(&url, &s, "b", 1).await;
    b.round().await.unwrap();
    second.own(b.fence(0).unwrap()).await.unwrap();

    // A day later the view leaves the window: the next owner's timer takes the profile out,
    // and the profile as stored says so.
    clock.advance(TimeDelta::hours(25));
    let id = profile_of(&store, "u-1").await;
    eventually(&second, "the exit recorded by the new owner", || async {
        let changes = store.events().segment_changes_of(&id, 10).await.unwrap();
        changes.iter().any(|c| !c.entered && c.segment == "viewed-today")
    })
    .await;
    assert!(stored_segments(&store, "u-1").await.is_empty());
    let changes = store.events().segment_changes_of(&id, 10).await.unwrap();
    assert_eq!(changes.len(), 2, "one entry, one exit: {changes:?}");
    second.shutdown().await;
}

#[tokio::test]
async fn a_segment_the_partitions_owner_did_not_backfill_is_backfilled_by_the_next() {
    let Some(url) = url() else { return };
    let s = schema(&url).await;
    let store = Store::new(PostgresStore::connect_cluster(&url, Some(&s)).await.unwrap());
    let clock = ManualClock::new(chrono::Utc::now());
    let first = engine(&store, &clock).await;
    let mut a = keeper(&url, &s, "a", 1).await;
    a.round().await.unwrap();
    first.own(a.fence(0).unwrap()).await.unwrap();
    for (n, user) in ["u-1", "u-2", "u-3"].into_iter().enumerate() {
        viewed(&first, &clock, user, n as i64 + 1).await;
    }
    first.disown(0, false).await.unwrap();
    a.leave().await.unwrap();

    // Saved through a node that owns no partition at that moment: nobody backfills partition
    // 0 with it (as when its owner died in the middle of the backfill).
    missive_engine::segments::save_segment(&first, "viewed-today", VIEWED_TODAY, None)
        .await
        .unwrap();
    assert!(store.events().partition_backfills(0).await.unwrap().is_empty());

    // The next owner finds it missing and backfills it: every viewer a member, recorded done.
    let second = engine(&store, &clock).await;
    let mut b = keeper(&url, &s, "b", 1).await;
    b.round().await.unwrap();
    second.own(b.fence(0).unwrap()).await.unwrap();
    eventually(&second, "the partition backfilled", || async {
        store
            .events()
            .partition_backfills(0)
            .await
            .unwrap()
            .get("viewed-today")
            == Some(&VIEWED_TODAY.to_owned())
    })
    .await;
    for user in ["u-1", "u-2", "u-3"] {
        assert_eq!(
            stored_segments(&store, user).await,
            vec!["viewed-today"],
            "{user}"
        );
        let id = profile_of(&store, user).await;
        let changes = store.events().segment_changes_of(&id, 10).await.unwrap();
        assert_eq!(changes.len(), 1, "{user} entered once: {changes:?}");
    }

    // Taken on again, a partition backfilled in full is not backfilled again.
    second.disown(0, false).await.unwrap();
    second.own(b.fence(0).unwrap()).await.unwrap();
    second.sync().await.unwrap();
    let id = profile_of(&store, "u-1").await;
    assert_eq!(store.events().segment_changes_of(&id, 10).await.unwrap().len(), 1);
    first.shutdown().await;
    second.shutdown().await;
}
