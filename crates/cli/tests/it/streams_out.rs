//! missive's change stream on the NATS JetStream of `MISSIVE_TEST_NATS_URL` (CI sets it; the
//! test fails there when NATS is unreachable): segment entries and consent changes published to
//! a subject per kind, each once, across a `kill -9` of the server as soon as the first are out.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::support::Server;

const PEOPLE: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_entries_and_consent_changes_reach_the_change_stream_once_across_a_kill() {
    let Ok(nats) = std::env::var("MISSIVE_TEST_NATS_URL") else {
        eprintln!("MISSIVE_TEST_NATS_URL is not set: the change stream test does not run");
        return;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (stream, prefix) = (format!("CH_{id}"), format!("ch{id}.changes"));
    let mut server = Server::start_with_env(&[
        ("MISSIVE_STREAMS__CHANGES__NATS", nats.as_str()),
        ("MISSIVE_STREAMS__CHANGES__STREAM", stream.as_str()),
        ("MISSIVE_STREAMS__CHANGES__SUBJECT_PREFIX", prefix.as_str()),
    ])
    .await;
    // The schema learns `tier` from a first person; then the segment.
    let identify = |users: std::ops::Range<usize>, tier: &str, consent: bool| {
        let batch: Vec<Value> = users
            .map(|i| {
                let mut traits = json!({"tier": tier});
                if consent {
                    traits["consent"] = json!({"email_marketing": i % 2 == 0});
                }
                json!({"type": "identify", "userId": format!("cs-{i}"), "traits": traits,
                       "messageId": format!("cs-{tier}-{i}")})
            })
            .collect();
        json!({ "batch": batch })
    };
    let (status, _) = server.api().post_batch(&identify(0..1, "bronze", false)).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server
        .api()
        .create_segment("gold", r#"traits.tier == "gold""#)
        .await;

    let js = jetstream::new(async_nats::connect(&nats).await.unwrap());
    let (status, _) = server.api().post_batch(&identify(0..PEOPLE, "gold", true)).await;
    assert_eq!(status, 200);
    // Killed once the first changes are out, before it can have published them all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = js.get_stream(&stream).await
            && let Ok(info) = s.info().await
            && info.state.messages > 0
        {
            eprintln!(
                "killed with {} of {} changes published",
                info.state.messages,
                2 * PEOPLE
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing published within 30 s\n{}",
            server.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    server.restart().await;

    // Every change, once: read the whole stream until all are there.
    let expected = 2 * PEOPLE;
    let consumer = js
        .get_stream(&stream)
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut repeated = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while by_kind.values().map(Vec::len).sum::<usize>() < expected {
        let next = tokio::time::timeout_at(deadline, messages.next()).await;
        let Ok(Some(Ok(m))) = next else {
            panic!(
                "{} of {expected} changes in the stream after 60 s: {by_kind:?}\n{}",
                by_kind.values().map(Vec::len).sum::<usize>(),
                server.diagnostics()
            );
        };
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        let kind = m
            .subject
            .as_str()
            .strip_prefix(&format!("{prefix}."))
            .unwrap()
            .to_owned();
        assert_eq!(body["type"], kind.as_str(), "{body}");
        // One change per kind and person: a second is a repeat.
        let change = format!("{kind} {}", body["data"]["profile_id"]);
        if !ids.insert(change.clone()) {
            repeated.push(change);
        }
        by_kind.entry(kind).or_default().push(body);
    }
    assert!(repeated.is_empty(), "published twice: {repeated:?}");
    // Nothing more comes: the stream holds each change once (a repeat after the restart was
    // dropped by its message id).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = js
        .get_stream(&stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(
        held, expected as u64,
        "the stream holds {held} messages for {expected} changes"
    );
    let entered = &by_kind["segment.entered"];
    assert_eq!(entered.len(), PEOPLE, "{by_kind:?}");
    assert!(
        entered.iter().all(|b| b["data"]["segment"] == "gold"),
        "{entered:?}"
    );
    let people: HashSet<&str> = entered
        .iter()
        .filter_map(|b| b["data"]["profile_id"].as_str())
        .collect();
    assert_eq!(people.len(), PEOPLE);
    let consents = &by_kind["consent.changed"];
    assert_eq!(consents.len(), PEOPLE, "{by_kind:?}");
    let opted_in = consents
        .iter()
        .filter(|b| b["data"]["consent"]["email_marketing"] == true)
        .count();
    assert_eq!(opted_in, PEOPLE / 2);
    // Nothing personal: ids and names only.
    assert!(
        by_kind
            .values()
            .flatten()
            .all(|b| b["data"].get("profile").is_none()),
        "{by_kind:?}"
    );
    let _ = js.delete_stream(&stream).await;
}
