//! The behaviour every [`Store`] backend must show, as plain async functions over
//! `&dyn Store`. The store's integration tests run each one against SQLite and PostgreSQL.

// Test code: a failed unwrap is a failed conformance case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::{ApiKeyId, EventKind, IdentityKey, MessageId, Profile, ProfileId, Touched, WorkspaceId};
use serde_json::json;

use crate::{
    ApiKeyRecord, AuditEntry, AuditQuery, Checkpoint, DataKeyRecord, DocumentKind, DocumentRecord,
    EventBatch, EventCursor, EventQuery, InstanceStatus, JourneyCommit, JourneyInstance, MergeRecord,
    OutboxMessage, OutboxStatus, ProfileVersion, Role, Store, StoreError, StoredEvent, Suppression,
    Workspace,
};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn event(seq: i64, id: &str, profile: &ProfileId, name: &str, at: DateTime<Utc>) -> StoredEvent {
    StoredEvent {
        seq,
        message_id: MessageId::parse(id).unwrap(),
        profile_id: profile.clone(),
        origin_profile_id: profile.clone(),
        kind: EventKind::Track,
        name: name.into(),
        timestamp: at,
        received_at: at + TimeDelta::seconds(1),
        body: json!({"type": "track", "event": name, "messageId": id, "properties": {"sku": "A-1"}}),
    }
}

fn events(events: Vec<StoredEvent>) -> EventBatch {
    EventBatch {
        events,
        repoint: vec![],
    }
}

fn ids(events: &[StoredEvent]) -> Vec<&str> {
    events.iter().map(|e| e.message_id.as_str()).collect()
}

fn version(p: &Profile, cause: &str, snapshot: bool) -> ProfileVersion {
    let touched = Touched {
        seen: true,
        ..Touched::default()
    };
    ProfileVersion {
        profile_id: p.id.clone(),
        version: p.version,
        recorded_at: p.updated_at,
        cause: cause.into(),
        diff: p.diff_for(&touched),
        snapshot: snapshot.then(|| p.clone()),
    }
}

pub async fn bootstrap_creates_the_workspace_once(store: &dyn Store) {
    assert_eq!(store.workspace().await.unwrap(), None);
    let ws = Workspace {
        id: WorkspaceId::generate(),
        name: "default".into(),
        created_at: t("2026-01-01T00:00:00Z"),
    };
    let key = ApiKeyRecord {
        id: ApiKeyId::generate(),
        role: Role::Write,
        secret_hash: "h1".into(),
        label: "write key".into(),
        created_at: ws.created_at,
        revoked_at: None,
    };
    store
        .bootstrap_workspace(ws.clone(), vec![key.clone()])
        .await
        .unwrap();
    assert_eq!(store.workspace().await.unwrap(), Some(ws.clone()));
    assert_eq!(store.api_key_by_hash("h1").await.unwrap(), Some(key));
    assert_eq!(store.api_key_by_hash("nope").await.unwrap(), None);
    let again = store.bootstrap_workspace(ws, vec![]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

pub async fn committed_events_profiles_and_identities_read_back(store: &dyn Store) {
    let now = t("2026-02-01T10:00:00Z");
    let mut p = Profile::new(ProfileId::generate(), now);
    p.version = 1;
    p.identities.insert(&IdentityKey::user_id("u-1"));
    store
        .commit_events(events(vec![
            event(1, "m-1", &p.id, "Product Viewed", now),
            event(2, "m-2", &p.id, "Order Completed", now + TimeDelta::minutes(5)),
        ]))
        .await
        .unwrap();
    store
        .commit_checkpoint(Checkpoint {
            identities: vec![(IdentityKey::user_id("u-1"), p.id.clone())],
            profiles: vec![p.clone()],
            versions: vec![version(&p, "2 events", true)],
            merges: vec![],
            segment_changes: vec![],
            through_seq: 2,
        })
        .await
        .unwrap();

    assert_eq!(store.load_profile(&p.id).await.unwrap(), Some(p.clone()));
    let resolved = store
        .resolve_identities(vec![IdentityKey::user_id("u-1"), IdentityKey::user_id("nobody")])
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[&IdentityKey::user_id("u-1")], p.id);

    let listed = store
        .profile_events(EventQuery {
            profile_id: p.id.clone(),
            received_before: None,
            cursor: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(ids(&listed), ["m-2", "m-1"]);
    assert_eq!(listed[1].body["properties"]["sku"], json!("A-1"));
    assert_eq!(listed[0].timestamp, now + TimeDelta::minutes(5));
    assert_eq!(
        (listed[0].seq, listed[0].origin_profile_id.clone()),
        (2, p.id.clone())
    );

    let stats = store.stats().await.unwrap();
    assert_eq!((stats.profiles, stats.events), (1, 2));
    assert_eq!(store.last_event_seq().await.unwrap(), 2);
}

pub async fn a_message_id_is_stored_once(store: &dyn Store) {
    let now = t("2026-02-01T10:00:00Z");
    let p = ProfileId::generate();
    store
        .commit_events(events(vec![event(1, "dup-1", &p, "Signed Up", now)]))
        .await
        .unwrap();
    store
        .commit_events(events(vec![
            event(2, "dup-1", &p, "Signed Up", now),
            event(3, "dup-2", &p, "Signed Up", now),
        ]))
        .await
        .unwrap();
    let existing = store
        .existing_message_ids(vec![
            MessageId::parse("dup-1").unwrap(),
            MessageId::parse("dup-2").unwrap(),
            MessageId::parse("dup-3").unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(existing.len(), 2);
    assert_eq!(store.stats().await.unwrap().events, 2);
}

pub async fn events_page_newest_first_with_a_cursor(store: &dyn Store) {
    let p = ProfileId::generate();
    let base = t("2026-02-01T00:00:00Z");
    let batch: Vec<_> = (0..5)
        .map(|i| {
            event(
                i + 1,
                &format!("pg-{i}"),
                &p,
                "Page",
                base + TimeDelta::minutes(i),
            )
        })
        .collect();
    store.commit_events(events(batch)).await.unwrap();
    let query = |cursor, received_before, limit| EventQuery {
        profile_id: p.clone(),
        received_before,
        cursor,
        limit,
    };
    let first = store.profile_events(query(None, None, 2)).await.unwrap();
    assert_eq!(ids(&first), ["pg-4", "pg-3"]);
    let next = store
        .profile_events(query(Some(EventCursor::of(&first[1])), None, 10))
        .await
        .unwrap();
    assert_eq!(ids(&next), ["pg-2", "pg-1", "pg-0"]);
    let as_of = store
        .profile_events(query(
            None,
            Some(base + TimeDelta::minutes(1) + TimeDelta::seconds(1)),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(as_of.len(), 2);
}

pub async fn merges_repoint_events_and_identities_along_a_chain(store: &dyn Store) {
    let now = t("2026-02-01T10:00:00Z");
    let (a, b, c) = (
        ProfileId::generate(),
        ProfileId::generate(),
        ProfileId::generate(),
    );
    store
        .commit_events(events(vec![
            event(1, "ch-a", &a, "Viewed", now),
            event(2, "ch-b", &b, "Viewed", now),
        ]))
        .await
        .unwrap();
    store
        .commit_checkpoint(Checkpoint {
            identities: vec![
                (IdentityKey::anonymous_id("anon-a"), a.clone()),
                (IdentityKey::anonymous_id("anon-b"), b.clone()),
            ],
            through_seq: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let merge = |from: &ProfileId, into: &ProfileId| MergeRecord {
        from: from.clone(),
        into: into.clone(),
        at: now,
        cause: "test".into(),
    };
    // Both merges in one batch and one checkpoint: the chain must still end at c.
    store
        .commit_events(EventBatch {
            events: vec![event(3, "ch-a2", &a, "Viewed", now)],
            repoint: vec![(a.clone(), b.clone()), (b.clone(), c.clone())],
        })
        .await
        .unwrap();
    store
        .commit_checkpoint(Checkpoint {
            merges: vec![merge(&a, &b), merge(&b, &c)],
            through_seq: 3,
            ..Default::default()
        })
        .await
        .unwrap();

    let resolved = store
        .resolve_identities(vec![
            IdentityKey::anonymous_id("anon-a"),
            IdentityKey::anonymous_id("anon-b"),
        ])
        .await
        .unwrap();
    assert_eq!(resolved.len(), 2);
    assert!(resolved.values().all(|p| p == &c), "{resolved:?}");
    let listed = store
        .profile_events(EventQuery {
            profile_id: c.clone(),
            received_before: None,
            cursor: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    // Where each event was first folded is kept.
    let origin_a = listed.iter().find(|e| e.message_id.as_str() == "ch-a2").unwrap();
    assert_eq!(origin_a.origin_profile_id, a);
    let merges = store.merges_of(&b).await.unwrap();
    assert_eq!(merges.len(), 2);
    assert_eq!((merges[0].from.clone(), merges[1].into.clone()), (a, c));
}

pub async fn versions_list_newest_first_and_rebuild_from_the_nearest_snapshot(store: &dyn Store) {
    let start = t("2026-02-01T10:00:00Z");
    let mut p = Profile::new(ProfileId::generate(), start);
    for v in 1..=5u64 {
        p.version = v;
        p.updated_at = start + TimeDelta::minutes(v as i64);
        p.last_seen = Some(p.updated_at);
        store
            .commit_checkpoint(Checkpoint {
                profiles: vec![p.clone()],
                versions: vec![version(&p, "1 event", v == 1 || v == 3)],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let listed = store.profile_versions(&p.id, None, 2).await.unwrap();
    assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), [5, 4]);
    let older = store.profile_versions(&p.id, Some(4), 10).await.unwrap();
    assert_eq!(older.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2, 1]);

    let chain = store
        .versions_for_as_of(&p.id, start + TimeDelta::minutes(4) + TimeDelta::seconds(30))
        .await
        .unwrap();
    assert_eq!(chain.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 4]);
    assert!(chain[0].snapshot.is_some());
    assert_eq!(chain[1].diff.last_seen, Some(start + TimeDelta::minutes(4)));
    assert!(store.versions_for_as_of(&p.id, start).await.unwrap().is_empty());
}

pub async fn the_profile_checkpoint_names_the_last_event_the_profiles_include(store: &dyn Store) {
    assert_eq!(store.profile_checkpoint().await.unwrap(), 0);
    let now = t("2026-02-01T10:00:00Z");
    let mut p = Profile::new(ProfileId::generate(), now);
    p.version = 1;
    store
        .commit_events(events(vec![
            event(1, "cp-1", &p.id, "A", now),
            event(2, "cp-2", &p.id, "B", now),
        ]))
        .await
        .unwrap();
    store
        .commit_checkpoint(Checkpoint {
            profiles: vec![p.clone()],
            through_seq: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    // Events after the checkpoint are the ones to replay.
    store
        .commit_events(events(vec![event(3, "cp-3", &p.id, "C", now)]))
        .await
        .unwrap();
    assert_eq!(store.profile_checkpoint().await.unwrap(), 2);
    assert_eq!(ids(&store.events_after(2, 10).await.unwrap()), ["cp-3"]);
    assert_eq!(
        ids(&store.events_after(0, 10).await.unwrap()),
        ["cp-1", "cp-2", "cp-3"]
    );
    assert_eq!(store.events_after(0, 2).await.unwrap().len(), 2);
    assert_eq!(store.last_event_seq().await.unwrap(), 3);
}

pub async fn message_ids_and_identity_keys_can_be_scanned_in_pages(store: &dyn Store) {
    let now = t("2026-02-01T10:00:00Z");
    let p = ProfileId::generate();
    let batch: Vec<_> = (1..=5)
        .map(|i| event(i, &format!("scan-{i}"), &p, "E", now))
        .collect();
    store.commit_events(events(batch)).await.unwrap();
    let first = store.message_ids_after(0, 3).await.unwrap();
    assert_eq!(first.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);
    let rest = store.message_ids_after(3, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(),
        ["scan-4", "scan-5"]
    );

    let keys = vec![
        (IdentityKey::user_id("b"), p.clone()),
        (IdentityKey::user_id("a"), p.clone()),
        (IdentityKey::anonymous_id("z"), p.clone()),
    ];
    store
        .commit_checkpoint(Checkpoint {
            identities: keys,
            through_seq: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.identity_keys_after(after.clone(), 2).await.unwrap();
        let Some(last) = page.last().cloned() else { break };
        seen.extend(page);
        after = Some(last);
    }
    assert_eq!(seen.len(), 3);
    // Keys come back in their stored form (the encrypting store's blind index).
    let stored = |k: IdentityKey| store.identity_index(&k);
    assert!(
        seen.contains(&stored(IdentityKey::anonymous_id("z")))
            && seen.contains(&stored(IdentityKey::user_id("a")))
    );
}

pub async fn event_bodies_keep_the_key_order_written(store: &dyn Store) {
    let now = t("2026-02-01T10:00:00Z");
    let p = ProfileId::generate();
    let mut e = event(1, "order-1", &p, "Order Completed", now);
    let written = r#"{"type":"track","event":"Order Completed","properties":{"zeta":1,"alpha":{"title":"Hat","description":"Warm","a":2},"mid":[{"z":1,"b":2}]}}"#;
    e.body = serde_json::from_str(written).unwrap();
    store.commit_events(events(vec![e])).await.unwrap();
    let back = store.events_after(0, 10).await.unwrap();
    assert_eq!(serde_json::to_string(&back[0].body).unwrap(), written);
}

pub async fn identities_can_be_reindexed_in_place(store: &dyn Store) {
    let p = ProfileId::generate();
    store
        .commit_checkpoint(Checkpoint {
            identities: vec![(IdentityKey::user_id("old-form"), p.clone())],
            ..Default::default()
        })
        .await
        .unwrap();
    let changes = vec![
        (IdentityKey::user_id("old-form"), "new-form".to_owned()),
        (IdentityKey::user_id("not-stored"), "other".to_owned()),
    ];
    assert_eq!(store.reindex_identities(changes).await.unwrap(), 1);
    let found = store
        .resolve_identities(vec![
            IdentityKey::user_id("old-form"),
            IdentityKey::user_id("new-form"),
        ])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found.get(&IdentityKey::user_id("new-form")), Some(&p));
}

pub async fn live_profiles_can_be_scanned_in_pages(store: &dyn Store) {
    let now = t("2026-02-01T10:00:00Z");
    let mut profiles: Vec<Profile> = (0..5).map(|_| Profile::new(ProfileId::generate(), now)).collect();
    profiles[2].merged_into = Some(profiles[0].id.clone());
    store
        .commit_checkpoint(Checkpoint {
            profiles: profiles.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.profiles_after(after.clone(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        seen.extend(page.into_iter().map(|p| p.id));
    }
    let mut live: Vec<_> = profiles
        .iter()
        .filter(|p| p.merged_into.is_none())
        .map(|p| p.id.clone())
        .collect();
    live.sort();
    assert_eq!(seen, live);
}

pub async fn segments_are_saved_and_checkpoints_keep_their_members(store: &dyn Store) {
    use crate::{SegmentChange, SegmentRecord};
    let now = t("2026-02-01T10:00:00Z");
    let rec = |name: &str, expr: &str| SegmentRecord {
        name: name.into(),
        expression: expr.into(),
        created_at: now,
        updated_at: now,
    };
    store.save_segment(rec("vip", "orders.count > 5")).await.unwrap();
    store
        .save_segment(rec("browsers", "count(event \"Viewed\" within 7d) >= 1"))
        .await
        .unwrap();
    store.save_segment(rec("vip", "orders.count > 10")).await.unwrap();
    let listed = store.list_segments().await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["browsers", "vip"]
    );
    assert_eq!(listed[1].expression, "orders.count > 10");

    let (a, b) = (ProfileId::generate(), ProfileId::generate());
    let change = |p: &ProfileId, entered: bool, minutes: i64| SegmentChange {
        profile_id: p.clone(),
        segment: "vip".into(),
        entered,
        at: now + TimeDelta::minutes(minutes),
        cause: "event".into(),
    };
    store
        .commit_checkpoint(Checkpoint {
            segment_changes: vec![change(&a, true, 1), change(&b, true, 1)],
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .commit_checkpoint(Checkpoint {
            segment_changes: vec![change(&a, false, 2)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.segment_members("vip", None, 10).await.unwrap(),
        vec![b.clone()]
    );
    let history = store.segment_changes_of(&a, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|c| c.entered).collect::<Vec<_>>(),
        [false, true]
    );
    // Every change, in the order recorded, from a position.
    let all = store.segment_changes_after(0, 10).await.unwrap();
    let order: Vec<(ProfileId, bool)> = all
        .iter()
        .map(|(_, c)| (c.profile_id.clone(), c.entered))
        .collect();
    assert_eq!(
        order,
        vec![(a.clone(), true), (b.clone(), true), (a.clone(), false)]
    );
    let rest = store.segment_changes_after(all[0].0, 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(store.delete_segment("vip").await.unwrap());
    assert!(!store.delete_segment("vip").await.unwrap());
    assert!(store.segment_members("vip", None, 10).await.unwrap().is_empty());
}

pub async fn documents_are_versioned_listed_in_pages_and_deleted(store: &dyn Store) {
    let doc = |kind, name: &str, body| DocumentRecord {
        kind,
        name: name.into(),
        version: 0,
        body,
        updated_at: t("2026-11-28T10:00:00Z"),
    };
    let v = store
        .put_documents(vec![
            doc(DocumentKind::Template, "cart", json!({"subject": "Hi"})),
            doc(DocumentKind::Block, "cart", json!({"slot": "hero"})),
        ])
        .await
        .unwrap();
    assert_eq!(v, vec![1, 1]);
    let v = store
        .put_documents(vec![doc(
            DocumentKind::Template,
            "cart",
            json!({"subject": "Hello"}),
        )])
        .await
        .unwrap();
    assert_eq!(v, vec![2]);
    let got = store
        .get_document(DocumentKind::Template, "cart")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.version, got.body), (2, json!({"subject": "Hello"})));
    assert_eq!(got.updated_at, t("2026-11-28T10:00:00Z"));
    assert!(
        store
            .get_document(DocumentKind::Product, "cart")
            .await
            .unwrap()
            .is_none()
    );

    // Mixed case and digits: pages must follow byte order in both backends.
    let names = ["B-2", "a-1", "b-1", "A-1", "0-x"];
    let products: Vec<DocumentRecord> = names
        .iter()
        .map(|n| doc(DocumentKind::Product, n, json!({"id": n})))
        .collect();
    store.put_documents(products).await.unwrap();
    let page = store
        .list_documents(DocumentKind::Product, None, 3)
        .await
        .unwrap();
    let got: Vec<&str> = page.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(got, vec!["0-x", "A-1", "B-2"]);
    let page = store
        .list_documents(DocumentKind::Product, Some("B-2".into()), 3)
        .await
        .unwrap();
    let got: Vec<&str> = page.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(got, vec!["a-1", "b-1"]);
    // A name twice in one call: saved in order, the last body wins, both get its version.
    let v = store
        .put_documents(vec![
            doc(DocumentKind::Product, "a-1", json!({"n": 1})),
            doc(DocumentKind::Product, "a-1", json!({"n": 2})),
        ])
        .await
        .unwrap();
    assert_eq!(v[1], v[0]);
    let got = store
        .get_document(DocumentKind::Product, "a-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.body, json!({"n": 2}));

    assert!(store.delete_document(DocumentKind::Block, "cart").await.unwrap());
    assert!(!store.delete_document(DocumentKind::Block, "cart").await.unwrap());
    assert!(
        store
            .get_document(DocumentKind::Template, "cart")
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn recent_track_events_are_read_by_name_and_time(store: &dyn Store) {
    let p = ProfileId::generate();
    store
        .commit_events(events(vec![
            event(1, "m-1", &p, "Order Completed", t("2026-11-01T00:00:00Z")),
            event(2, "m-2", &p, "Product Viewed", t("2026-11-20T00:00:00Z")),
            event(3, "m-3", &p, "Order Completed", t("2026-11-20T00:00:00Z")),
            event(4, "m-4", &p, "Order Completed", t("2026-11-21T00:00:00Z")),
        ]))
        .await
        .unwrap();
    let names = vec!["Order Completed".to_string()];
    let got = store
        .track_events_since(names.clone(), t("2026-11-10T00:00:00Z"), 0, 10)
        .await
        .unwrap();
    assert_eq!(ids(&got), vec!["m-3", "m-4"]);
    let got = store
        .track_events_since(names, t("2026-11-10T00:00:00Z"), 3, 10)
        .await
        .unwrap();
    assert_eq!(ids(&got), vec!["m-4"]);
}

fn instance(id: &str, profile: &ProfileId, step: &str, wake: Option<DateTime<Utc>>) -> JourneyInstance {
    JourneyInstance {
        id: id.into(),
        journey: "cart".into(),
        journey_version: 1,
        profile_id: profile.clone(),
        key: "cart-1".into(),
        step: step.into(),
        status: InstanceStatus::Active,
        wake_at: wake,
        waiting_for: Some("Order Completed".into()),
        context: json!({"event": {"name": "Product Added"}}),
        entered_at: t("2026-11-28T10:00:00Z"),
        updated_at: t("2026-11-28T10:00:00Z"),
    }
}

fn message(id: &str, key: &str, profile: &ProfileId, due: DateTime<Utc>) -> OutboxMessage {
    OutboxMessage {
        id: id.into(),
        idempotency_key: key.into(),
        profile_id: profile.clone(),
        template: "cart".into(),
        class: "marketing".into(),
        source: "journey:cart".into(),
        context: json!({"cart": 1}),
        status: OutboxStatus::Queued,
        attempts: 0,
        next_attempt_at: due,
        created_at: t("2026-11-28T10:00:00Z"),
        sent_at: None,
        recipient: None,
        detail: None,
    }
}

pub async fn journey_progress_and_send_decisions_commit_together_once(store: &dyn Store) {
    let p = ProfileId::generate();
    assert_eq!(store.journey_events_through().await.unwrap(), 0);
    let first = instance("ji-1", &p, "wait", Some(t("2026-11-28T11:00:00Z")));
    let other = instance("ji-2", &p, "wait", Some(t("2026-11-28T10:30:00Z")));
    store
        .commit_journey(JourneyCommit {
            instances: vec![first.clone(), other.clone()],
            outbox: vec![],
            events_through: Some(7),
            segments_through: None,
        })
        .await
        .unwrap();
    assert_eq!(store.journey_events_through().await.unwrap(), 7);
    assert_eq!(
        store.active_instances(&p).await.unwrap(),
        vec![first.clone(), other.clone()]
    );
    let due = store.due_instances(t("2026-11-28T11:00:00Z"), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec!["ji-2", "ji-1"]
    );
    assert!(
        store
            .due_instances(t("2026-11-28T10:29:00Z"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.next_instance_wake().await.unwrap(),
        Some(t("2026-11-28T10:30:00Z"))
    );

    // The instance moves on and decides a send, in one commit; the same decision again is
    // stored once.
    let mut sent = first.clone();
    sent.step = "done".into();
    sent.status = InstanceStatus::Completed;
    sent.wake_at = None;
    sent.waiting_for = None;
    sent.updated_at = t("2026-11-28T11:00:00Z");
    let m = message("msg_1", "ji-1:send", &p, t("2026-11-28T11:00:00Z"));
    for _ in 0..2 {
        store
            .commit_journey(JourneyCommit {
                instances: vec![sent.clone()],
                outbox: vec![m.clone()],
                events_through: None,
                segments_through: None,
            })
            .await
            .unwrap();
    }
    let dup = message("msg_2", "ji-1:send", &p, t("2026-11-28T11:00:00Z"));
    store
        .commit_journey(JourneyCommit {
            instances: vec![],
            outbox: vec![dup],
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    assert_eq!(store.journey_events_through().await.unwrap(), 7);
    assert_eq!(store.active_instances(&p).await.unwrap(), vec![other.clone()]);
    assert_eq!(store.journey_instances("cart", 10).await.unwrap().len(), 2);
    let due = store.due_outbox(t("2026-11-28T12:00:00Z"), 10).await.unwrap();
    assert_eq!(due, vec![m.clone()]);
    assert!(store.outbox_message("msg_2").await.unwrap().is_none());

    // Sending records the outcome; the frequency cap counts marketing sends.
    let mut done = m.clone();
    done.status = OutboxStatus::Sent;
    done.attempts = 1;
    done.sent_at = Some(t("2026-11-28T11:00:05Z"));
    done.recipient = Some("ann@example.com".into());
    done.detail = Some("250 2.0.0 Ok".into());
    store.update_outbox(vec![done.clone()]).await.unwrap();
    assert!(
        store
            .due_outbox(t("2026-11-28T12:00:00Z"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.outbox_message("msg_1").await.unwrap(), Some(done.clone()));
    assert_eq!(store.outbox_of(&p, 10).await.unwrap(), vec![done]);
    assert_eq!(
        store
            .marketing_sent_since(&p, t("2026-11-28T00:00:00Z"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .marketing_sent_since(&p, t("2026-11-28T11:00:06Z"))
            .await
            .unwrap(),
        0
    );

    // Counting and cancelling by source.
    let mut other = message("msg_3", "b:1", &p, t("2026-11-28T12:00:00Z"));
    other.source = "broadcast:b".into();
    let mut third = message("msg_4", "b:2", &p, t("2026-11-28T12:00:00Z"));
    third.source = "broadcast:b".into();
    store
        .commit_journey(JourneyCommit {
            instances: vec![],
            outbox: vec![other, third],
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    let counts = store.outbox_counts("broadcast:b").await.unwrap();
    assert_eq!((counts.queued, counts.sent), (2, 0));
    assert_eq!(store.outbox_counts("journey:cart").await.unwrap().sent, 1);
    assert_eq!(store.skip_queued("broadcast:b", "cancelled").await.unwrap(), 2);
    let counts = store.outbox_counts("broadcast:b").await.unwrap();
    assert_eq!((counts.queued, counts.skipped), (0, 2));
}

pub async fn suppressions_and_metadata_are_kept(store: &dyn Store) {
    assert!(store.suppression("h1").await.unwrap().is_none());
    let s = Suppression {
        address_hash: "h1".into(),
        reason: "hard_bounce".into(),
        detail: "550 5.1.1".into(),
        at: t("2026-11-28T10:00:00Z"),
    };
    store.suppress(s.clone()).await.unwrap();
    assert_eq!(store.suppression("h1").await.unwrap(), Some(s.clone()));
    let again = Suppression {
        reason: "complaint".into(),
        ..s
    };
    store.suppress(again.clone()).await.unwrap();
    assert_eq!(store.suppression("h1").await.unwrap(), Some(again));

    assert_eq!(
        store
            .record_soft_bounce("h2", t("2026-11-28T10:00:00Z"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .record_soft_bounce("h2", t("2026-11-28T11:00:00Z"))
            .await
            .unwrap(),
        2
    );

    let a = store
        .meta_get_or_init("secret.test", "first".into())
        .await
        .unwrap();
    let b = store
        .meta_get_or_init("secret.test", "second".into())
        .await
        .unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("first", "first"));
}

/// Runs a named conformance case; used by the backends' test macros.
pub async fn api_keys_are_created_listed_and_revoked(store: &dyn Store) {
    let key = |role: Role, hash: &str, at: &str| ApiKeyRecord {
        id: ApiKeyId::generate(),
        role,
        secret_hash: hash.into(),
        label: format!("{} key", role.as_str()),
        created_at: t(at),
        revoked_at: None,
    };
    let a = key(Role::Marketer, "$argon2id$a", "2026-01-01T00:00:00Z");
    let b = key(Role::PrivacyOfficer, "$argon2id$b", "2026-01-02T00:00:00Z");
    store.create_api_key(a.clone()).await.unwrap();
    store.create_api_key(b.clone()).await.unwrap();
    assert_eq!(store.api_key(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.api_key(&ApiKeyId::generate()).await.unwrap(), None);
    assert_eq!(store.list_api_keys().await.unwrap(), vec![a.clone(), b.clone()]);

    let at = t("2026-01-03T00:00:00Z");
    assert!(store.revoke_api_key(&a.id, at).await.unwrap());
    assert!(!store.revoke_api_key(&a.id, at).await.unwrap(), "revoked once");
    assert_eq!(store.api_key(&a.id).await.unwrap().unwrap().revoked_at, Some(at));
    assert_eq!(store.api_key_by_hash("$argon2id$a").await.unwrap(), None);
}

pub async fn the_audit_log_is_append_only_and_queried_newest_first(store: &dyn Store) {
    let entry = |actor: &str, action: &str, target: &str, at: &str| AuditEntry {
        seq: 0,
        at: t(at),
        actor: actor.into(),
        role: "admin".into(),
        action: action.into(),
        target: target.into(),
        status: 200,
        detail: String::new(),
    };
    store
        .append_audit(vec![
            entry("key:a", "profile.read", "profile:p1", "2026-01-01T00:00:00Z"),
            entry("key:b", "template.save", "template:cart", "2026-01-01T00:00:01Z"),
        ])
        .await
        .unwrap();
    store
        .append_audit(vec![entry(
            "key:a",
            "profile.erase",
            "profile:p1",
            "2026-01-01T00:00:02Z",
        )])
        .await
        .unwrap();
    let all = store
        .audit_entries(AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["profile.erase", "template.save", "profile.read"]);
    assert!(all[0].seq > all[1].seq && all[1].seq > all[2].seq);
    assert_eq!(all[2].at, t("2026-01-01T00:00:00Z"));
    assert_eq!(all[2].status, 200);

    let of_p1 = store
        .audit_entries(AuditQuery {
            target: Some("profile:p1".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(of_p1.len(), 2);
    let page = store
        .audit_entries(AuditQuery {
            actor: Some("key:a".into()),
            before_seq: Some(all[0].seq),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].action, "profile.read");
}

pub async fn data_keys_are_kept_once_per_profile_and_rewrapped(store: &dyn Store) {
    let p = ProfileId::generate();
    let q = ProfileId::generate();
    let key = |id: &ProfileId, master: &str, wrapped: &str| DataKeyRecord {
        profile_id: id.clone(),
        master_key_id: master.into(),
        wrapped: wrapped.into(),
        created_at: t("2026-01-01T00:00:00Z"),
    };
    store
        .put_data_keys(vec![key(&p, "k1", "first"), key(&q, "k1", "q")])
        .await
        .unwrap();
    // A second writer racing for the same profile does not replace the first key.
    store.put_data_keys(vec![key(&p, "k1", "second")]).await.unwrap();
    let got = store
        .data_keys(vec![p.clone(), ProfileId::generate()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[&p].wrapped, "first");

    store
        .rewrap_data_keys(vec![key(&p, "k2", "rewrapped")])
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.data_keys_after(after.clone(), 1).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.profile_id.clone());
        all.extend(page);
    }
    assert_eq!(all.len(), 2);
    let mine = all.iter().find(|k| k.profile_id == p).unwrap();
    assert_eq!(
        (mine.master_key_id.as_str(), mine.wrapped.as_str()),
        ("k2", "rewrapped")
    );
}

pub async fn erasure_deletes_everything_about_the_profiles_and_nothing_else(store: &dyn Store) {
    let now = t("2026-02-01T10:00:00Z");
    let mut gone = Profile::new(ProfileId::generate(), now);
    gone.version = 1;
    let mut kept = Profile::new(ProfileId::generate(), now);
    kept.version = 1;
    store
        .commit_events(events(vec![
            event(1, "e-1", &gone.id, "Product Viewed", now),
            event(2, "e-2", &kept.id, "Product Viewed", now),
            event(3, "e-3", &gone.id, "Order Completed", now),
        ]))
        .await
        .unwrap();
    store
        .save_segment(crate::SegmentRecord {
            name: "all".into(),
            expression: "true".into(),
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let entered = |p: &ProfileId| crate::SegmentChange {
        profile_id: p.clone(),
        segment: "all".into(),
        entered: true,
        at: now,
        cause: "event".into(),
    };
    store
        .commit_checkpoint(Checkpoint {
            identities: vec![
                (IdentityKey::user_id("gone"), gone.id.clone()),
                (IdentityKey::user_id("kept"), kept.id.clone()),
            ],
            profiles: vec![gone.clone(), kept.clone()],
            versions: vec![version(&gone, "1 event", true), version(&kept, "1 event", true)],
            merges: vec![],
            segment_changes: vec![entered(&gone.id), entered(&kept.id)],
            through_seq: 3,
        })
        .await
        .unwrap();
    store
        .commit_journey(JourneyCommit {
            instances: vec![instance("ji-gone", &gone.id, "wait", None)],
            outbox: vec![message("msg-gone", "gone:send", &gone.id, now)],
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    let dk = |p: &ProfileId| DataKeyRecord {
        profile_id: p.clone(),
        master_key_id: "k1".into(),
        wrapped: "w".into(),
        created_at: now,
    };
    store
        .put_data_keys(vec![dk(&gone.id), dk(&kept.id)])
        .await
        .unwrap();

    let counts = store.erase_profiles(vec![gone.id.clone()]).await.unwrap();
    assert_eq!(
        (counts.profiles, counts.events, counts.versions, counts.identities),
        (1, 2, 1, 1)
    );
    assert_eq!(
        (
            counts.segment_memberships,
            counts.journey_instances,
            counts.messages,
            counts.data_keys
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(store.load_profile(&gone.id).await.unwrap(), None);
    assert!(
        store
            .profile_versions(&gone.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let q = |p: &ProfileId| EventQuery {
        profile_id: p.clone(),
        received_before: None,
        cursor: None,
        limit: 10,
    };
    assert!(store.profile_events(q(&gone.id)).await.unwrap().is_empty());
    assert!(store.segment_changes_of(&gone.id, 10).await.unwrap().is_empty());
    assert!(store.outbox_message("msg-gone").await.unwrap().is_none());
    assert!(store.active_instances(&gone.id).await.unwrap().is_empty());
    assert!(store.data_keys(vec![gone.id.clone()]).await.unwrap().is_empty());
    let resolved = store
        .resolve_identities(vec![IdentityKey::user_id("gone"), IdentityKey::user_id("kept")])
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        store.segment_members("all", None, 10).await.unwrap(),
        vec![kept.id.clone()]
    );
    // The other profile is untouched.
    assert_eq!(store.load_profile(&kept.id).await.unwrap(), Some(kept.clone()));
    assert_eq!(store.profile_events(q(&kept.id)).await.unwrap().len(), 1);
    assert_eq!(store.data_keys(vec![kept.id.clone()]).await.unwrap().len(), 1);

    store
        .add_erased_identities(vec!["h1".into(), "h2".into(), "h1".into()], now)
        .await
        .unwrap();
    let erased = store.erased_identities().await.unwrap();
    assert_eq!(erased.len(), 2);
    assert!(erased.contains("h1"));
}

pub async fn retention_purges_events_older_than_the_cutoff(store: &dyn Store) {
    let p = ProfileId::generate();
    let old = t("2025-01-01T00:00:00Z");
    let new = t("2026-06-01T00:00:00Z");
    store
        .commit_events(events(vec![
            event(1, "r-1", &p, "Product Viewed", old),
            event(2, "r-2", &p, "Product Viewed", new),
            event(3, "r-3", &p, "Product Viewed", old + TimeDelta::days(1)),
        ]))
        .await
        .unwrap();
    let cutoff = t("2026-01-01T00:00:00Z");
    assert_eq!(store.purge_events_before(cutoff, 1).await.unwrap(), 1);
    assert_eq!(store.purge_events_before(cutoff, 100).await.unwrap(), 1);
    assert_eq!(store.purge_events_before(cutoff, 100).await.unwrap(), 0);
    let left = store
        .profile_events(EventQuery {
            profile_id: p,
            received_before: None,
            cursor: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(ids(&left), ["r-2"]);
}

#[macro_export]
macro_rules! conformance_cases {
    ($make:expr) => {
        $crate::conformance_cases!(@case $make,
            bootstrap_creates_the_workspace_once,
            committed_events_profiles_and_identities_read_back,
            a_message_id_is_stored_once,
            events_page_newest_first_with_a_cursor,
            merges_repoint_events_and_identities_along_a_chain,
            the_profile_checkpoint_names_the_last_event_the_profiles_include,
            message_ids_and_identity_keys_can_be_scanned_in_pages,
            identities_can_be_reindexed_in_place,
            event_bodies_keep_the_key_order_written,
            live_profiles_can_be_scanned_in_pages,
            segments_are_saved_and_checkpoints_keep_their_members,
            versions_list_newest_first_and_rebuild_from_the_nearest_snapshot,
            documents_are_versioned_listed_in_pages_and_deleted,
            recent_track_events_are_read_by_name_and_time,
            journey_progress_and_send_decisions_commit_together_once,
            suppressions_and_metadata_are_kept,
            api_keys_are_created_listed_and_revoked,
            the_audit_log_is_append_only_and_queried_newest_first,
            data_keys_are_kept_once_per_profile_and_rewrapped,
            erasure_deletes_everything_about_the_profiles_and_nothing_else,
            retention_purges_events_older_than_the_cutoff
        );
    };
    (@case $make:expr, $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                if let Some(store) = $make.await {
                    $crate::conformance::$name(&*store).await;
                }
            }
        )*
    };
}
