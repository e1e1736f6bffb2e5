//! Leases on a real PostgreSQL (`MISSIVE_TEST_POSTGRES_URL`; CI sets it, and there these tests
//! fail rather than skip): nodes share the partitions evenly, a node that stops renewing loses
//! its partitions to the others within the lease time, a paused former owner's write is
//! fenced off, and a node started with another partition count is refused. Each test works
//! in a schema of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod merges;
mod partition_state;
mod service;
mod stream_in;

use std::time::{Duration, Instant};

use missive_cluster::leases::connect;
use missive_cluster::{Fence, Fenced, Keeper, LeaseError, Leases, PartitionCount, verify};

const TTL: Duration = Duration::from_millis(1_500);

pub(crate) fn url() -> Option<String> {
    match std::env::var("MISSIVE_TEST_POSTGRES_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            eprintln!("MISSIVE_TEST_POSTGRES_URL is not set: the lease tests do not run");
            None
        }
    }
}

pub(crate) async fn schema(url: &str) -> String {
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let c = connect(url, None).await.unwrap();
    c.batch_execute(&format!("CREATE SCHEMA \"{name}\""))
        .await
        .unwrap();
    name
}

pub(crate) async fn keeper(url: &str, schema: &str, node: &str, partitions: i64) -> Keeper {
    let client = connect(url, Some(schema)).await.unwrap();
    let leases = Leases::open(client, PartitionCount::new(partitions).unwrap())
        .await
        .unwrap();
    Keeper::new(leases, node, format!("{node}.local:8080"), TTL)
}

fn keys(k: &Keeper) -> Vec<u16> {
    k.held().keys().copied().collect()
}

#[tokio::test]
async fn nodes_share_the_partitions_and_take_over_a_dead_nodes() {
    let Some(url) = url() else { return };
    let s = schema(&url).await;
    let mut a = keeper(&url, &s, "a", 8).await;
    a.round().await.unwrap();
    assert_eq!(keys(&a), (0..8).collect::<Vec<_>>(), "alone, a owns all");
    let first_tokens = a.held();

    // b joins: a gives up its extras on its next round, b claims them on its own.
    let mut b = keeper(&url, &s, "b", 8).await;
    b.round().await.unwrap();
    assert!(keys(&b).is_empty(), "nothing is free yet");
    a.round().await.unwrap();
    b.round().await.unwrap();
    assert_eq!(keys(&a), vec![0, 1, 2, 3]);
    assert_eq!(keys(&b), vec![4, 5, 6, 7]);
    for p in 4..8 {
        assert!(b.held()[&p] > first_tokens[&p], "a new owner, a larger token");
    }
    for p in 0..4 {
        assert_eq!(a.held()[&p], first_tokens[&p], "a renewal keeps the token");
    }

    // a dies (stops renewing, no goodbye): b owns everything within the lease time and a round.
    let died = Instant::now();
    drop(a);
    loop {
        b.round().await.unwrap();
        if keys(&b).len() == 8 {
            break;
        }
        assert!(died.elapsed() < TTL * 3, "b did not take over: {:?}", keys(&b));
        tokio::time::sleep(TTL / 3).await;
    }
    assert!(
        died.elapsed() >= TTL / 2,
        "not before a's leases could have expired"
    );

    // A node that leaves hands its partitions over at once.
    let mut c = keeper(&url, &s, "c", 8).await;
    c.round().await.unwrap();
    b.round().await.unwrap();
    c.round().await.unwrap();
    assert_eq!((keys(&b).len(), keys(&c).len()), (4, 4));
    c.leave().await.unwrap();
    b.round().await.unwrap();
    assert_eq!(keys(&b).len(), 8, "c's partitions were free at once");
}

#[tokio::test]
async fn a_paused_former_owner_writes_nothing() {
    let Some(url) = url() else { return };
    let s = schema(&url).await;
    let mut a = keeper(&url, &s, "a", 2).await;
    a.round().await.unwrap();
    let fence = a.fence(0).expect("a holds partition 0");
    // a's writes go through a transaction that verifies its fence first.
    let mut writer = connect(&url, Some(&s)).await.unwrap();
    writer
        .batch_execute("CREATE TABLE profiles_of_partition (partition INTEGER, note TEXT)")
        .await
        .unwrap();
    async fn write(c: &mut tokio_postgres::Client, fence: &Fence, note: &str) -> Result<(), Fenced> {
        let tx = c.transaction().await.unwrap();
        verify(&tx, std::slice::from_ref(fence)).await.unwrap()?;
        tx.execute(
            "INSERT INTO profiles_of_partition VALUES ($1, $2)",
            &[&i32::from(fence.partition), &note],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        Ok(())
    }
    write(&mut writer, &fence, "while owner").await.unwrap();

    // a is paused (no rounds) past its lease; b takes the partition over.
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    assert!(
        a.fence(0).is_none(),
        "a stops counting the lease before it expires"
    );
    let mut b = keeper(&url, &s, "b", 2).await;
    b.round().await.unwrap();
    assert_eq!(keys(&b), vec![0, 1]);
    let b_fence = b.fence(0).unwrap();
    assert!(b_fence.token > fence.token);

    // a wakes up and writes with what it had: refused, nothing written.
    assert_eq!(
        write(&mut writer, &fence, "after the pause").await,
        Err(Fenced {
            partition: 0,
            token: fence.token
        })
    );
    write(&mut writer, &b_fence, "new owner").await.unwrap();
    let notes: Vec<String> = writer
        .query("SELECT note FROM profiles_of_partition ORDER BY note", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(notes, ["new owner", "while owner"]);
    // a's next round finds the lease gone and holds nothing.
    a.round().await.unwrap();
    assert!(keys(&a).is_empty(), "{:?}", keys(&a));
}

#[tokio::test]
async fn the_partition_count_is_fixed_when_the_cluster_is_created() {
    let Some(url) = url() else { return };
    let s = schema(&url).await;
    let _first = keeper(&url, &s, "a", 16).await;
    let client = connect(&url, Some(&s)).await.unwrap();
    match Leases::open(client, PartitionCount::new(32).unwrap()).await {
        Err(LeaseError::PartitionMismatch {
            stored: 16,
            asked: 32,
        }) => {}
        other => panic!("{:?}", other.err()),
    }
}

#[tokio::test]
async fn status_shows_owners_and_their_partitions() {
    let Some(url) = url() else { return };
    let s = schema(&url).await;
    let mut a = keeper(&url, &s, "a", 4).await;
    a.round().await.unwrap();
    let fresh = schema(&url).await;
    let none = Leases::existing(connect(&url, Some(&fresh)).await.unwrap())
        .await
        .unwrap();
    assert!(none.is_none(), "no cluster in a schema that never ran one");
    let client = connect(&url, Some(&s)).await.unwrap();
    let leases = Leases::existing(client)
        .await
        .unwrap()
        .expect("the cluster a made");
    assert_eq!(leases.partitions().get(), 4);
    let (nodes, rows) = leases.status().await.unwrap();
    let text = missive_cluster::status::render(&nodes, &rows, TTL);
    assert!(
        text.contains("nodes (1):") && text.contains("a.local:8080"),
        "{text}"
    );
    assert!(text.contains("  a                           4  0-3"), "{text}");
}

/// The store's own commits carry the fences (`EventBatch::fences`, `Checkpoint::fences`): a
/// former owner's events, marks and profiles are refused whole, the new owner's go through.
#[tokio::test]
async fn the_stores_commits_under_a_former_owners_fence_write_nothing() {
    use missive_core::{EventKind, MessageId, Profile, ProfileId};
    use missive_store::{Checkpoint, EventBatch, StoreError, StoredEvent, postgres::PostgresStore};

    let Some(url) = url() else { return };
    let s = schema(&url).await;
    let store = missive_store::Store::new(PostgresStore::connect_cluster(&url, Some(&s)).await.unwrap());
    let mut a = keeper(&url, &s, "a", 2).await;
    a.round().await.unwrap();
    let fence = a.fence(1).expect("a holds partition 1");
    let profile = ProfileId::generate();
    let now = chrono::Utc::now();
    let batch = |seq: i64, id: &str, fence: &Fence| EventBatch {
        events: vec![StoredEvent {
            seq,
            message_id: MessageId::parse(id).unwrap(),
            profile_id: profile.clone(),
            origin_profile_id: profile.clone(),
            kind: EventKind::Track,
            name: "Viewed".into(),
            timestamp: now,
            received_at: now,
            body: serde_json::json!({"type": "track", "event": "Viewed", "userId": "u", "messageId": id}),
        }],
        fences: vec![fence.clone()],
        partitions: vec![1],
        applied: vec![(1, seq)],
        ..EventBatch::default()
    };
    let checkpoint = |version: u64, fence: &Fence| {
        let mut p = Profile::new(profile.clone(), now);
        p.version = version;
        Checkpoint {
            profiles: vec![p],
            partitions: vec![(1, 10 * version as i64)],
            fences: vec![fence.clone()],
            ..Checkpoint::default()
        }
    };
    store
        .events()
        .commit_events(batch(10, "m-10", &fence))
        .await
        .unwrap();
    store
        .events()
        .commit_checkpoint(checkpoint(1, &fence))
        .await
        .unwrap();

    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    let mut b = keeper(&url, &s, "b", 2).await;
    b.round().await.unwrap();
    let b_fence = b.fence(1).expect("b took partition 1 over");

    let refused = store.events().commit_events(batch(20, "m-20", &fence)).await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    let refused = store.events().commit_checkpoint(checkpoint(5, &fence)).await;
    assert!(matches!(refused, Err(StoreError::Fenced(_))), "{refused:?}");
    let events = store.events().partition_events_after(1, 0, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [10]);
    let mark = store.events().partition_marks(vec![1]).await.unwrap();
    assert_eq!((mark[0].applied_seq, mark[0].checkpoint_seq), (10, 10));
    assert_eq!(
        store
            .events()
            .load_profile(&profile)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );

    store
        .events()
        .commit_events(batch(20, "m-20", &b_fence))
        .await
        .unwrap();
    store
        .events()
        .commit_checkpoint(checkpoint(2, &b_fence))
        .await
        .unwrap();
    let mark = store.events().partition_marks(vec![1]).await.unwrap();
    assert_eq!((mark[0].applied_seq, mark[0].checkpoint_seq), (20, 20));
    assert_eq!(
        store
            .events()
            .load_profile(&profile)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
}

/// A schema the embedded mode wrote events to is not a cluster's: its event numbers would
/// collide with the log's, and its identities have no routes.
#[tokio::test]
async fn a_cluster_node_refuses_a_schema_with_embedded_mode_events() {
    use missive_core::{EventKind, MessageId, ProfileId};
    use missive_store::{EventBatch, StoreError, StoredEvent, postgres::PostgresStore};

    let Some(url) = url() else { return };
    let s = schema(&url).await;
    {
        let embedded = PostgresStore::connect(&url, Some(&s)).await.unwrap();
        let store = missive_store::Store::new(embedded);
        let p = ProfileId::generate();
        let now = chrono::Utc::now();
        store
            .events()
            .commit_events(EventBatch {
                events: vec![StoredEvent {
                    seq: 1,
                    message_id: MessageId::parse("e-1").unwrap(),
                    profile_id: p.clone(),
                    origin_profile_id: p,
                    kind: EventKind::Track,
                    name: "Viewed".into(),
                    timestamp: now,
                    received_at: now,
                    body: serde_json::json!({"type": "track", "event": "Viewed", "userId": "u", "messageId": "e-1"}),
                }],
                ..EventBatch::default()
            })
            .await
            .unwrap();
    }
    // The embedded process's session (and its lock) ends a moment after it is dropped.
    let started = Instant::now();
    let refused = loop {
        match PostgresStore::connect_cluster(&url, Some(&s)).await {
            Err(StoreError::Locked(_)) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other,
        }
    };
    match refused {
        Err(StoreError::Open(why)) => assert!(why.contains("embedded mode"), "{why}"),
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
}
