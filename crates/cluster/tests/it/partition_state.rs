//! What a partition's owner keeps besides its profiles, handed over with the partition: the
//! segment timers its profiles hold, and the segment backfills not finished over it. Two
//! engines on one real PostgreSQL; the second takes the partition over from the first, as a
//! node does when another leaves or dies. (`cli/tests/it/cluster_nodes.rs` runs real nodes.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use missive_core::{Clock, IdentityKey, ManualClock, ProfileId};
use missive_engine::{Engine, EngineConfig, LogPosition};
use missive_store::postgres::PostgresStore;
use missive_store::{BackfillKind, Store};

use crate::{keeper, schema, url};

const VIEWED_TODAY: &str = r#"count(event "Product Viewed" within 1d) >= 1"#;

/// A schema of its own on the test PostgreSQL (its URL and name), a cluster store on it, and
/// a manual clock; `None` without PostgreSQL.
async fn place() -> Option<(String, String, Store, ManualClock)> {
    let url = url()?;
    let s = schema(&url).await;
    let store = Store::new(PostgresStore::connect_cluster(&url, Some(&s)).await.unwrap());
    Some((url, s, store, ManualClock::new(chrono::Utc::now())))
}

/// A new engine owning the only partition of a one-partition cluster, under node `node`'s
/// lease (the partition must be free).
async fn sole_owner(
    url: &str,
    s: &str,
    store: &Store,
    clock: &ManualClock,
    node: &str,
) -> (Engine, missive_cluster::Keeper) {
    let owner = engine(store, clock).await;
    let mut k = keeper(url, s, node, 1).await;
    k.round().await.unwrap();
    owner.own(k.fence(0).unwrap()).await.unwrap();
    (owner, k)
}

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
    let Some((url, s, store, clock)) = place().await else {
        return;
    };
    let (first, a) = sole_owner(&url, &s, &store, &clock, "a").await;
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
    let (second, _b) = sole_owner(&url, &s, &store, &clock, "b").await;

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
    let Some((url, s, store, clock)) = place().await else {
        return;
    };
    let (first, a) = sole_owner(&url, &s, &store, &clock, "a").await;
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
    let (second, _b) = sole_owner(&url, &s, &store, &clock, "b").await;
    eventually(&second, "the partition backfilled", || async {
        store
            .events()
            .partition_backfills(0)
            .await
            .unwrap()
            .get(&(BackfillKind::Segment, "viewed-today".to_owned()))
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

    first.shutdown().await;
    second.shutdown().await;
}

/// Customer `n`'s consent and orders (big spenders and small ones), routed to partition
/// `n % 2` and folded by its owner, `owners[n % 2]`.
async fn customer(owners: [&Engine; 2], n: usize, seq: &mut i64) {
    let (user, partition) = (format!("c-{n}"), (n % 2) as u16);
    let owner = owners[n % 2];
    owner
        .store()
        .events()
        .claim_routes(vec![(IdentityKey::user_id(&user), partition)])
        .await
        .unwrap();
    let (orders, revenue) = if n % 4 < 2 { (4, 400) } else { (1, 15) };
    let mut bodies = vec![serde_json::json!({
        "type": "identify", "userId": user, "messageId": format!("{user}-consent"),
        "traits": {"consent": {"profiling": true, "email_marketing": true}}
    })];
    for o in 0..orders {
        let at = chrono::Utc::now() - TimeDelta::days(10 * (o + 1));
        bodies.push(serde_json::json!({
            "type": "track", "userId": user, "event": "Order Completed",
            "messageId": format!("{user}-order-{o}"), "timestamp": at.to_rfc3339(),
            "properties": {"revenue": revenue}
        }));
    }
    for body in bodies {
        let e = missive_core::message::validate_message(body, None, None, chrono::Utc::now()).unwrap();
        *seq += 1;
        let at = LogPosition { partition, seq: *seq };
        owner.ingest_logged(vec![e], vec![at]).await.unwrap();
    }
}

/// How many of the customers' stored profiles carry a score of model `name`.
async fn scored_by(store: &Store, customers: usize, name: &str) -> usize {
    let mut n = 0;
    for c in 0..customers {
        let id = profile_of(store, &format!("c-{c}")).await;
        let p = store.events().load_profile(&id).await.unwrap().unwrap();
        n += usize::from(p.scores.get("_versions").and_then(|v| v.get(name)).is_some());
    }
    n
}

/// The model's definition recorded done for each of the two partitions.
async fn scored_partitions(store: &Store, name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for p in [0, 1] {
        let done = store.events().partition_backfills(p).await.unwrap();
        out.push(done.get(&(BackfillKind::Model, name.to_owned())).cloned());
    }
    out
}

#[tokio::test]
async fn models_are_scored_by_each_partitions_owner_and_finished_by_the_next() {
    let Some((url, s, store, clock)) = place().await else {
        return;
    };
    let (first, second) = (engine(&store, &clock).await, engine(&store, &clock).await);
    let mut a = keeper(&url, &s, "a", 2).await;
    a.round().await.unwrap();
    first.own(a.fence(0).unwrap()).await.unwrap();
    second.own(a.fence(1).unwrap()).await.unwrap();
    let mut seq = 0;
    const CUSTOMERS: usize = 40;
    for n in 0..CUSTOMERS {
        customer([&first, &second], n, &mut seq).await;
    }
    first.sync().await.unwrap();
    second.sync().await.unwrap();
    let models = missive_engine::models::Models::new(store.clone(), first.clone());
    let now = clock.now();
    models
        .train_cluster(
            missive_engine::models::ClusterRequest {
                name: "spend".into(),
                cutoff: now,
                k: Some(2),
                max_k: 2,
                features: missive_models::features::FeatureSpec::default(),
                traits: Vec::new(),
                max_profiles: 10_000,
                seed: 7,
                trained_by: "test".into(),
            },
            now,
        )
        .await
        .unwrap();

    // Activated through the first node: it scores partition 0; the second follows and
    // scores partition 1.
    let (_, scored) = models.activate("spend", None, false, None, now).await.unwrap();
    assert_eq!(scored, (CUSTOMERS / 2) as u64, "the first node's partition");
    first.sync().await.unwrap();
    assert_eq!(scored_by(&store, CUSTOMERS, "spend").await, CUSTOMERS / 2);
    let followed = missive_engine::models::follow_active(&second).await.unwrap();
    assert_eq!(followed, vec!["spend"]);
    second.sync().await.unwrap();
    assert_eq!(scored_by(&store, CUSTOMERS, "spend").await, CUSTOMERS);
    let activated = scored_partitions(&store, "spend").await;
    assert!(
        activated.iter().all(|d| d.is_some() && *d == activated[0]),
        "{activated:?}"
    );
    assert!(
        missive_engine::models::follow_active(&second)
            .await
            .unwrap()
            .is_empty()
    );

    // Scored in batch again while partition 1 has no owner (its owner left before following):
    // the first node's next tenure of it finishes the scoring.
    second.disown(1, false).await.unwrap();
    clock.advance(TimeDelta::minutes(1));
    models.score("spend").await.unwrap();
    assert!(missive_engine::models::follow_active(&second).await.unwrap() == vec!["spend"]);
    first.sync().await.unwrap();
    let rescored = scored_partitions(&store, "spend").await;
    assert_ne!(rescored[0], activated[0], "partition 0 scored again");
    assert_eq!(rescored[1], activated[1], "nobody scored partition 1");
    first.own(a.fence(1).unwrap()).await.unwrap();
    first.sync().await.unwrap();
    let finished = scored_partitions(&store, "spend").await;
    assert_eq!(finished[1], finished[0], "its next owner scored partition 1");

    // Deactivated through the node that owns nothing: the owner of both follows, and every
    // profile's scores are removed.
    let on_second = missive_engine::models::Models::new(store.clone(), second.clone());
    on_second.deactivate("spend", clock.now()).await.unwrap();
    assert_eq!(
        missive_engine::models::follow_active(&first).await.unwrap(),
        vec!["spend"]
    );
    first.sync().await.unwrap();
    assert_eq!(scored_by(&store, CUSTOMERS, "spend").await, 0);
    assert_eq!(scored_partitions(&store, "spend").await, vec![None, None]);
    first.shutdown().await;
    second.shutdown().await;
}
