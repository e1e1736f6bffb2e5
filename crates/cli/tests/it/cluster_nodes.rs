//! Cluster mode with real processes: `missive serve --cluster` nodes on the PostgreSQL and the
//! NATS JetStream of `MISSIVE_TEST_POSTGRES_URL` and `MISSIVE_TEST_NATS_URL` (CI sets both; the
//! NATS restart test starts a `nats-server` of its own, never touching the shared one).
//!
//! - Three nodes under steady ingest, one killed with SIGKILL: every acknowledged event is
//!   stored once, and every profile's aggregates equal its stored events.
//! - A node paused (SIGSTOP) past its lease, then resumed: what it still held in memory is
//!   never written over what the new owner wrote (fencing).
//! - NATS restarted during ingest: ingest answers 503 while it is down, and after it is back
//!   nothing acknowledged is lost and nothing is stored twice.
//! - Sign-ins joining a visitor's and a user's profiles that live in different partitions,
//!   with a node killed while the merges travel between partitions: every person ends as one
//!   profile holding all their events, merged once.
//! - A segment saved through one node: backfilled over every partition, whichever node owns
//!   it, and evaluated on every node for the events that follow.
//! - An erasure asked of any node: the profile is gone from every partition's owner and the
//!   store, and later events naming the person are dropped wherever they land.
//! - The sending side on the node holding the sending lease, killed while journeys wait: the
//!   next holder fires every waiting journey once.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use missive_cluster::leases::connect;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    Keys, Load, LoadPlan, Server, assert_every_acknowledged_event_stored_once, stored_load_events,
};

const PARTITIONS: u16 = 16;
const TTL_SECONDS: &str = "3";

/// A cluster's shared settings: one PostgreSQL schema, one JetStream stream, one key file.
struct Cluster {
    env: Vec<(String, String)>,
    nats: String,
    stream: String,
    pg: tokio_postgres::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn new(nats: &str) -> Option<Cluster> {
        let Ok(url) = std::env::var("MISSIVE_TEST_POSTGRES_URL") else {
            eprintln!("MISSIVE_TEST_POSTGRES_URL is not set: the cluster node tests do not run");
            return None;
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let schema = format!("test_{id}");
        connect(&url, None)
            .await
            .unwrap()
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let store = format!("{url}{sep}options=-c%20search_path%3D{schema}");
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("MISSIVE_STORE".to_owned(), store),
            ("MISSIVE_CLUSTER__ENABLED".to_owned(), "true".to_owned()),
            ("MISSIVE_CLUSTER__NATS".to_owned(), nats.to_owned()),
            ("MISSIVE_CLUSTER__STREAM".to_owned(), format!("T_{id}")),
            ("MISSIVE_CLUSTER__SUBJECT_PREFIX".to_owned(), format!("t{id}.ev")),
            ("MISSIVE_CLUSTER__PARTITIONS".to_owned(), PARTITIONS.to_string()),
            (
                "MISSIVE_CLUSTER__LEASE_TTL_SECONDS".to_owned(),
                TTL_SECONDS.to_owned(),
            ),
            (
                "MISSIVE_CLUSTER__PUBLISH_TIMEOUT_MS".to_owned(),
                "1500".to_owned(),
            ),
            // Every node reads the data with the same master key, as in production.
            (
                "MISSIVE_PRIVACY__KEY_FILE".to_owned(),
                dir.path().join("missive.key").display().to_string(),
            ),
        ];
        Some(Cluster {
            env,
            nats: nats.to_owned(),
            stream: format!("T_{id}"),
            pg: connect(&url, Some(&schema)).await.unwrap(),
            _dir: dir,
        })
    }

    /// Starts node `name` (the first one writes the keys; the others are given them).
    async fn node(&self, name: &str, keys: Option<&Keys>, extra: &[(&str, &str)]) -> Server {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("MISSIVE_CLUSTER__NODE", name));
        env.extend_from_slice(extra);
        Server::start_sharing(&env, keys).await
    }

    /// Starts nodes `<prefix>-a`, `-b` and `-c` (b and c given a's keys) and waits until they
    /// share the partitions evenly.
    async fn three(&self, prefix: &str) -> [Server; 3] {
        let names = ["a", "b", "c"].map(|n| format!("{prefix}-{n}"));
        let a = self.node(&names[0], None, &[]).await;
        let keys = a.api().keys().clone();
        let b = self.node(&names[1], Some(&keys), &[]).await;
        let c = self.node(&names[2], Some(&keys), &[]).await;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.wait_for_owners(&names, Duration::from_secs(30)).await;
        [a, b, c]
    }

    /// Live leases per owner.
    async fn owners(&self) -> BTreeMap<String, i64> {
        self.pg
            .query(
                "SELECT owner, count(*) FROM partition_leases
                 WHERE owner IS NOT NULL AND expires_us > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
                 GROUP BY owner",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// Waits until exactly `nodes` own every partition, evenly; answers how long it took.
    async fn wait_for_owners(&self, nodes: &[&str], within: Duration) -> Duration {
        let started = Instant::now();
        let fair = i64::from(PARTITIONS.div_ceil(nodes.len() as u16));
        loop {
            let owners = self.owners().await;
            let names: Vec<&str> = owners.keys().map(String::as_str).collect();
            let total: i64 = owners.values().sum();
            if names == nodes && total == i64::from(PARTITIONS) && owners.values().all(|n| *n <= fair) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "the partitions did not settle on {nodes:?} within {within:?}: {owners:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes the test's stream from the shared NATS (a failed test leaves it; it holds
    /// a few thousand small messages).
    async fn remove_stream(&self) {
        if let Ok(client) = async_nats::connect(&self.nats).await {
            let _ = async_nats::jetstream::new(client)
                .delete_stream(&self.stream)
                .await;
        }
    }

    /// `missive cluster status` with the cluster's settings.
    fn status(&self) -> String {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_missive"))
            .current_dir(dir.path())
            .args(["cluster", "status"])
            .envs(self.env.iter().cloned())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    async fn stored_events(&self) -> i64 {
        self.pg
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until at least `acked` events are stored and the count has stopped moving, and
    /// every partition's profiles are checkpointed as far as its events.
    async fn wait_until_settled(&self, acked: usize) {
        let started = Instant::now();
        let mut last = (-1, Instant::now());
        loop {
            let n = self.stored_events().await;
            let behind: i64 = self
                .pg
                .query_one(
                    "SELECT count(*) FROM partition_log WHERE checkpoint_seq < applied_seq",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n != last.0 {
                last = (n, Instant::now());
            } else if n >= acked as i64 && behind == 0 && last.1.elapsed() > Duration::from_secs(2) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "not settled within 60 s: {n} events stored of {acked} acknowledged, {behind} partitions' profiles behind their events"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn nats_url() -> Option<String> {
    let url = std::env::var("MISSIVE_TEST_NATS_URL").ok();
    if url.is_none() {
        eprintln!("MISSIVE_TEST_NATS_URL is not set: the cluster node tests do not run");
    }
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_lose_nothing_when_one_is_killed_under_steady_ingest() {
    let Some(nats) = nats_url() else { return };
    let Some(cluster) = Cluster::new(&nats).await else {
        return;
    };
    let [a, mut b, c] = cluster.three("n").await;

    // Steady ingest through every node; the users' events land in every partition.
    let plan = |prefix| LoadPlan {
        clients: 3,
        events_per_batch: 20,
        users: 120,
        prefix,
    };
    let mut loads = vec![
        Load::start(a.api(), plan("ka")),
        Load::start(b.api(), plan("kb")),
        Load::start(c.api(), plan("kc")),
    ];
    for load in &mut loads {
        load.run_until(20, Duration::from_secs(2)).await;
    }
    // Node b dies in the middle of it: its clients' requests in flight may fail.
    loads[1].disrupt();
    let killed_at = Instant::now();
    b.kill();
    let b_report = loads.remove(1).finish().await;
    // Ingest goes on through the others while b's partitions move.
    cluster
        .wait_for_owners(&["n-a", "n-c"], Duration::from_secs(20))
        .await;
    let failover = killed_at.elapsed();
    eprintln!("fail-over: b's partitions owned again {failover:?} after the kill");
    assert!(
        failover < Duration::from_secs(10),
        "b's partitions took {failover:?} to move (the target is 10 s)"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut acked = b_report.acked;
    for load in loads {
        load.disrupt();
        let report = load.finish().await;
        assert!(
            report.failures_before_disruption.is_empty(),
            "ingest on a live node failed: {:?}",
            report.failures_before_disruption
        );
        acked.extend(report.acked);
    }
    let total: usize = acked.iter().map(|b| b.message_ids.len()).sum();
    cluster.wait_until_settled(total).await;
    let stored = stored_load_events(a.api(), &plan("ka")).await;
    assert_every_acknowledged_event_stored_once(&acked, &stored);
    let status = cluster.status();
    assert!(status.contains("n-a") && status.contains("n-c"), "{status}");
    assert!(
        status.contains(&format!("lag: 0 events behind in all {PARTITIONS} partitions")),
        "{status}"
    );
    cluster.remove_stream().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_paused_past_its_lease_writes_nothing_after_it_resumes() {
    let Some(nats) = nats_url() else { return };
    let Some(cluster) = Cluster::new(&nats).await else {
        return;
    };
    let a = cluster.node("p-a", None, &[]).await;
    let keys = a.api().keys().clone();
    // b checkpoints its profiles only every 4 s: when it is paused, what it folded is still
    // only in its memory, and it tries to write it as soon as it runs again.
    let b = cluster
        .node(
            "p-b",
            Some(&keys),
            &[("MISSIVE_ENGINE__FLUSH_INTERVAL_MS", "4000")],
        )
        .await;
    cluster
        .wait_for_owners(&["p-a", "p-b"], Duration::from_secs(30))
        .await;

    let plan = |prefix| LoadPlan {
        clients: 2,
        events_per_batch: 20,
        users: 80,
        prefix,
    };
    let mut first = Load::start(a.api(), plan("pa"));
    first.run_until(10, Duration::from_millis(1500)).await;
    first.disrupt();
    let mut acked = first.finish().await.acked;
    let total: usize = acked.iter().map(|b| b.message_ids.len()).sum();
    // Every event stored: b's partitions' events are committed, their profiles are not.
    let started = Instant::now();
    while cluster.stored_events().await < total as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "events not stored in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    signal(b.pid(), "-STOP");
    cluster.wait_for_owners(&["p-a"], Duration::from_secs(20)).await;
    // a took b's partitions over (replaying their events) and folds more of them.
    let mut second = Load::start(a.api(), plan("pb"));
    second.run_until(10, Duration::from_millis(1500)).await;
    second.disrupt();
    acked.extend(second.finish().await.acked);
    let total: usize = acked.iter().map(|b| b.message_ids.len()).sum();
    cluster.wait_until_settled(total).await;

    // b runs again, with profiles in memory that are older than the stored ones.
    signal(b.pid(), "-CONT");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let log = b.log();
    let refused = log.contains("fenced");
    let dropped = log.contains("partition lost");
    assert!(
        refused || dropped,
        "b neither had a write refused nor dropped its partitions after resuming:\n{log}"
    );
    eprintln!("after resuming, b: a write refused by its fence: {refused}; partitions dropped: {dropped}");
    cluster
        .wait_for_owners(&["p-a", "p-b"], Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Had b written its memory, its profiles would count fewer events than are stored.
    let stored = stored_load_events(a.api(), &plan("pa")).await;
    assert_every_acknowledged_event_stored_once(&acked, &stored);
    cluster.remove_stream().await;
}

/// Sends `events` through `api` until it is answered 200 (a request may fail while a node
/// dies; the message ids make a resend safe).
async fn send_until_acked(api: &crate::support::Api, events: Vec<serde_json::Value>) {
    let body = json!({ "batch": events });
    let started = Instant::now();
    loop {
        let (status, answer) = api.post_batch(&body).await;
        if status == StatusCode::OK {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a batch was refused for 30 s: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_ins_merge_profiles_across_partitions_when_a_node_dies_mid_merge() {
    let Some(nats) = nats_url() else { return };
    let Some(cluster) = Cluster::new(&nats).await else {
        return;
    };
    let [a, mut b, c] = cluster.three("m").await;

    // People whose user id and visitor id hash to different partitions.
    const PEOPLE: usize = 60;
    let count = missive_cluster::PartitionCount::new(i64::from(PARTITIONS)).unwrap();
    let partition = |key: &missive_core::IdentityKey| count.of(key.kind.as_str(), &key.value);
    let mut people = Vec::new();
    let mut n = 0;
    while people.len() < PEOPLE {
        n += 1;
        let (user, visitor) = (format!("mu-{n}"), format!("ma-{n}"));
        let apart = partition(&missive_core::IdentityKey::user_id(user.clone()))
            != partition(&missive_core::IdentityKey::anonymous_id(visitor.clone()));
        if apart {
            people.push((user, visitor));
        }
    }
    let viewed = |id: String, key: &str, value: &str| {
        let mut e = json!({"type": "track", "event": "Viewed", "messageId": id});
        e[key] = value.into();
        e
    };

    // 1. Each person browses signed in on one device and anonymously on another.
    for chunk in people.chunks(10) {
        let events = chunk
            .iter()
            .flat_map(|(u, v)| {
                [
                    viewed(format!("{u}-1"), "userId", u),
                    viewed(format!("{v}-1"), "anonymousId", v),
                ]
            })
            .collect();
        send_until_acked(a.api(), events).await;
    }
    cluster.wait_until_settled(2 * PEOPLE).await;

    // 2. Each signs in on the second device: a merge across partitions per person. Node b
    // dies while they travel between the partitions.
    for (i, chunk) in people.chunks(10).enumerate() {
        let events = chunk
            .iter()
            .map(|(u, v)| json!({"type": "identify", "userId": u, "anonymousId": v, "messageId": format!("{u}-signin")}))
            .collect();
        let api = if i % 2 == 0 { a.api() } else { c.api() };
        send_until_acked(api, events).await;
        if i == 2 {
            b.kill();
            let done: i64 = cluster
                .pg
                .query_one("SELECT count(*) FROM merges", &[])
                .await
                .unwrap()
                .get(0);
            eprintln!("b killed after 30 sign-ins were acknowledged, with {done} merges done");
        }
    }
    // 3. Each browses on anonymously: routed by the visitor id, moved or about to be.
    for chunk in people.chunks(10) {
        let events = chunk
            .iter()
            .map(|(_, v)| viewed(format!("{v}-2"), "anonymousId", v))
            .collect();
        send_until_acked(c.api(), events).await;
    }
    cluster
        .wait_for_owners(&["m-a", "m-c"], Duration::from_secs(20))
        .await;
    cluster.wait_until_settled(4 * PEOPLE).await;
    let started = Instant::now();
    let merges = loop {
        let row = cluster
            .pg
            .query_one("SELECT count(*), count(DISTINCT from_id) FROM merges", &[])
            .await
            .unwrap();
        let (all, distinct): (i64, i64) = (row.get(0), row.get(1));
        if all >= PEOPLE as i64 || started.elapsed() > Duration::from_secs(60) {
            break (all, distinct);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(merges, (PEOPLE as i64, PEOPLE as i64), "one merge per person");
    cluster.wait_until_settled(4 * PEOPLE).await;

    let mut wrong = Vec::new();
    for (u, v) in &people {
        let by_user = a.api().profile(&format!("user_id:{u}")).await.unwrap();
        let by_visitor = a.api().profile(&format!("anonymous_id:{v}")).await.unwrap();
        let viewed = by_user["aggregates"]["events"]["Viewed"]["count"].as_u64();
        let events = a.api().events(&format!("user_id:{u}")).await;
        let mut ids: Vec<&str> = events.iter().filter_map(|e| e["message_id"].as_str()).collect();
        ids.sort_unstable();
        let expected = [
            format!("{u}-1"),
            format!("{u}-signin"),
            format!("{v}-1"),
            format!("{v}-2"),
        ];
        let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        expected.sort_unstable();
        if by_user["id"] != by_visitor["id"] || viewed != Some(3) || ids != expected {
            wrong.push(format!(
                "{u}/{v}: profiles {} and {}, Viewed {viewed:?}, events {ids:?}",
                by_user["id"], by_visitor["id"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {PEOPLE} people are not one profile with all their events: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    cluster.remove_stream().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erasure_asked_of_any_node_erases_the_person_everywhere() {
    let Some(nats) = nats_url() else { return };
    let Some(cluster) = Cluster::new(&nats).await else {
        return;
    };
    let [a, b, c] = cluster.three("e").await;
    const PEOPLE: usize = 20;
    const ERASED: usize = 6;
    let viewed = |n: usize, round: usize| {
        json!({"type": "track", "event": "Viewed", "userId": format!("eu-{n}"),
               "messageId": format!("eu-{n}-{round}"),
               "context": {"traits": {"email": format!("eu-{n}@example.com")}}})
    };
    send_until_acked(a.api(), (0..PEOPLE).map(|n| viewed(n, 1)).collect()).await;
    cluster.wait_until_settled(PEOPLE).await;

    for n in 0..ERASED {
        let (status, answer) = c
            .api()
            .admin(
                reqwest::Method::DELETE,
                &format!("/v1/profiles/user_id:eu-{n}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["erased"]["deleted"]["events"], 1, "{answer}");
    }
    // The erased come back with events through another node, by user id and by address: those
    // are dropped by whichever partition they land in; the others' are stored.
    let mut later: Vec<serde_json::Value> = (0..PEOPLE).map(|n| viewed(n, 2)).collect();
    later.extend((0..ERASED).map(|n| {
        json!({"type": "identify", "anonymousId": format!("ea-{n}"), "messageId": format!("ea-{n}"),
               "traits": {"email": format!("eu-{n}@example.com")}})
    }));
    send_until_acked(b.api(), later).await;
    let expected = (2 * PEOPLE - 2 * ERASED) as i64;
    cluster.wait_until_settled(expected as usize).await;
    assert_eq!(cluster.stored_events().await, expected);
    for n in 0..PEOPLE {
        for node in [&a, &b, &c] {
            let found = node.api().profile(&format!("user_id:eu-{n}")).await;
            assert_eq!(found.is_some(), n >= ERASED, "eu-{n}: {found:?}");
        }
    }
    for n in 0..ERASED {
        assert!(a.api().profile(&format!("anonymous_id:ea-{n}")).await.is_none());
    }
    cluster.remove_stream().await;
}

/// Members of `segment` in the store.
async fn members(cluster: &Cluster, segment: &str) -> i64 {
    cluster
        .pg
        .query_one(
            "SELECT count(*) FROM segment_members WHERE segment = $1",
            &[&segment],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_segment_saved_through_one_node_is_evaluated_on_every_partition() {
    let Some(nats) = nats_url() else { return };
    let Some(cluster) = Cluster::new(&nats).await else {
        return;
    };
    let [a, b, c] = cluster.three("g").await;
    const PEOPLE: usize = 60;
    let tiers = |range: std::ops::Range<usize>| {
        range
            .map(|n| {
                let tier = if n % 2 == 0 { "gold" } else { "silver" };
                json!({"type": "identify", "userId": format!("gu-{n}"), "traits": {"tier": tier},
                       "messageId": format!("gu-{n}-1")})
            })
            .collect()
    };
    send_until_acked(b.api(), tiers(0..PEOPLE)).await;
    cluster.wait_until_settled(PEOPLE).await;

    // Saved through a: a backfills its partitions, b and c theirs.
    a.api().create_segment("gold", r#"traits.tier == "gold""#).await;
    let started = Instant::now();
    while members(&cluster, "gold").await < (PEOPLE / 2) as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} of {} gold members after 20 s",
            members(&cluster, "gold").await,
            PEOPLE / 2
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Events after it, folded by every node: new people enter, and silver ones who turn gold.
    let mut later: Vec<serde_json::Value> = tiers(PEOPLE..2 * PEOPLE);
    later.extend((0..PEOPLE).filter(|n| n % 2 == 1).map(|n| {
        json!({"type": "identify", "userId": format!("gu-{n}"), "traits": {"tier": "gold"},
               "messageId": format!("gu-{n}-2")})
    }));
    send_until_acked(c.api(), later).await;
    let expected = (PEOPLE + PEOPLE / 2) as i64;
    let started = Instant::now();
    while members(&cluster, "gold").await != expected {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} gold members after 20 s, expected {expected}",
            members(&cluster, "gold").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.remove_stream().await;
}

/// The node holding the sending lease, and its token, once one does.
async fn sending_holder(cluster: &Cluster) -> (String, i64) {
    let started = Instant::now();
    loop {
        let row = cluster
            .pg
            .query_opt(
                "SELECT owner, token FROM service_leases WHERE name = 'sending' AND owner IS NOT NULL
                   AND expires_us > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return (row.get(0), row.get(1));
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no node took the sending lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn journeys_waiting_on_a_killed_sending_node_fire_once_on_the_next() {
    let Some(nats) = nats_url() else { return };
    let Some(cluster) = Cluster::new(&nats).await else {
        return;
    };
    let [a, b, c] = cluster.three("s").await;
    let (holder, token) = sending_holder(&cluster).await;
    let mut nodes = vec![("s-a", a), ("s-b", b), ("s-c", c)];
    let at = nodes.iter().position(|(n, _)| *n == holder).unwrap();
    let (_, mut doomed) = nodes.remove(at);
    let api = nodes[0].1.api();

    let template = json!({"subject": "Welcome", "layout": "html",
        "body": "<html><body><p>Welcome</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></body></html>"});
    let (status, answer) = api
        .admin(reqwest::Method::PUT, "/v1/templates/welcome", Some(&template))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let journey = json!({"trigger": {"event": "Signed Up"}, "steps": [
        {"id": "pause", "type": "wait", "duration": "8s"},
        {"id": "hello", "type": "send", "template": "welcome"}
    ]});
    let (status, answer) = api
        .admin(reqwest::Method::PUT, "/v1/journeys/welcome", Some(&journey))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    const PEOPLE: i64 = 40;
    let events = (0..PEOPLE)
        .map(|n| {
            json!({"type": "track", "event": "Signed Up", "userId": format!("su-{n}"),
                   "messageId": format!("signup-{n}"),
                   "context": {"traits": {"email": format!("su-{n}@example.com")}}})
        })
        .collect();
    send_until_acked(api, events).await;
    // Every journey started, and waiting, on the node holding the sending lease.
    let started = Instant::now();
    loop {
        let waiting: i64 = cluster
            .pg
            .query_one(
                "SELECT count(*) FROM journey_instances WHERE status = 'active' AND step = 'pause'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == PEOPLE {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let marks: Vec<(i16, i64, i64)> = cluster
                .pg
                .query(
                    "SELECT partition, applied_seq, checkpoint_seq FROM partition_log ORDER BY 1",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let log = doomed.log();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("journey")
                        || l.contains("sending")
                        || l.contains("lease")
                        || l.contains("ERROR")
                        || l.contains("WARN")
                })
                .take(40)
                .collect();
            panic!(
                "{waiting} of {PEOPLE} journeys waiting after 20 s; marks {marks:?}; holder's log: {tail:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    doomed.kill();
    let killed_at = Instant::now();

    let (next, next_token) = loop {
        let (owner, t) = sending_holder(&cluster).await;
        if owner != holder {
            break (owner, t);
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "the sending lease did not move"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(next_token > token, "a new holder takes a new token");
    eprintln!(
        "sending lease: {holder} (token {token}) killed, {next} (token {next_token}) took over after {:?}",
        killed_at.elapsed()
    );
    let done = loop {
        let row = cluster
            .pg
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FROM journey_instances",
                &[],
            )
            .await
            .unwrap();
        let (completed, all): (i64, i64) = (row.get(0), row.get(1));
        if completed == PEOPLE || killed_at.elapsed() > Duration::from_secs(40) {
            break (completed, all);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done, (PEOPLE, PEOPLE), "every journey completed, once");
    let row = cluster
        .pg
        .query_one(
            "SELECT count(*), count(DISTINCT profile_id) FROM outbox WHERE source = 'journey:welcome'",
            &[],
        )
        .await
        .unwrap();
    let (messages, people): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((messages, people), (PEOPLE, PEOPLE), "one message per person");
    let status = cluster.status();
    assert!(
        status.contains(&format!("sending: {next} (token {next_token}")),
        "{status}"
    );
    cluster.remove_stream().await;
}

/// A `nats-server` with JetStream of this test's own, on a free port, keeping its data in
/// `dir` across restarts.
struct OwnNats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnNats {
    fn start() -> OwnNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut nats = OwnNats {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        nats.launch();
        nats
    }

    fn launch(&mut self) {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is not installed (CI installs it; see docs/operations.md)");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A restart's stop: SIGTERM, and wait. (A single server killed with SIGKILL may lose the
    /// messages it acknowledged last: it writes them to disk a moment later. Production runs
    /// three replicas for that; docs/operations.md.)
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_answers_503_while_nats_is_down_and_loses_nothing_after() {
    if nats_url().is_none() {
        return;
    }
    let mut nats = OwnNats::start();
    let Some(cluster) = Cluster::new(&nats.url()).await else {
        return;
    };
    let a = cluster.node("r-a", None, &[]).await;
    cluster.wait_for_owners(&["r-a"], Duration::from_secs(30)).await;
    let api = a.api().clone();
    let batch = |n: usize| {
        let ids: Vec<String> = (0..10).map(|i| format!("nr-{n}-{i}")).collect();
        let items: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({"type": "track", "messageId": id, "userId": crate::support::load_user_id((n * 10 + i) % 40),
                       "event": "Product Viewed", "properties": {"sku": "s-1"}})
            })
            .collect();
        (json!({ "batch": items }), ids)
    };
    let mut acked: Vec<crate::support::AckedBatch> = Vec::new();
    let mut answers: HashMap<u16, usize> = HashMap::new();
    let send = async |n: usize, acked: &mut Vec<crate::support::AckedBatch>| {
        let (body, ids) = batch(n);
        let (status, _) = api.post_batch(&body).await;
        if status == StatusCode::OK {
            acked.push(crate::support::AckedBatch {
                body,
                message_ids: ids,
            });
        }
        status
    };
    for n in 0..20 {
        assert_eq!(send(n, &mut acked).await, StatusCode::OK);
    }
    nats.stop();
    // While NATS is down every batch is refused, and says to retry.
    let mut n = 20;
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(4) {
        let status = send(n, &mut acked).await;
        *answers.entry(status.as_u16()).or_default() += 1;
        n += 1;
    }
    assert!(
        answers.get(&503).copied().unwrap_or(0) > 0 && answers.keys().all(|s| *s == 503),
        "answers while NATS was down: {answers:?}"
    );
    nats.launch();
    // Back: ingest recovers by itself (the client reconnects), without a restart of missive.
    let back = Instant::now();
    loop {
        let status = send(n, &mut acked).await;
        n += 1;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "ingest did not recover after NATS came back"
        );
    }
    for _ in 0..20 {
        assert_eq!(send(n, &mut acked).await, StatusCode::OK);
        n += 1;
    }
    eprintln!(
        "while NATS was down: {answers:?}; recovered {:?} after it was back",
        back.elapsed()
    );
    let total: usize = acked.iter().map(|b| b.message_ids.len()).sum();
    cluster.wait_until_settled(total).await;
    let plan = LoadPlan {
        clients: 1,
        events_per_batch: 10,
        users: 40,
        prefix: "nr",
    };
    let stored = stored_load_events(a.api(), &plan).await;
    assert_every_acknowledged_event_stored_once(&acked, &stored);
}
