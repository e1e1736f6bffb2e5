//! The event log: ids stored once, pages, key order, recent events by name, retention.

use super::*;

pub async fn a_message_id_is_stored_once(store: &Store) {
    let now = t("2026-02-01T10:00:00Z");
    let p = ProfileId::generate();
    store
        .events()
        .commit_events(events(vec![event(1, "dup-1", &p, "Signed Up", now)]))
        .await
        .unwrap();
    store
        .events()
        .commit_events(events(vec![
            event(2, "dup-1", &p, "Signed Up", now),
            event(3, "dup-2", &p, "Signed Up", now),
        ]))
        .await
        .unwrap();
    let existing = store
        .events()
        .existing_message_ids(vec![
            MessageId::parse("dup-1").unwrap(),
            MessageId::parse("dup-2").unwrap(),
            MessageId::parse("dup-3").unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(existing.len(), 2);
    assert_eq!(store.events().stats().await.unwrap().events, 2);
}

pub async fn hourly_activity_adds_up_across_commits(store: &Store) {
    let h9 = t("2026-02-01T09:00:00Z");
    let h10 = t("2026-02-01T10:00:00Z");
    let count = |hour, metric, value| ActivityCount { hour, metric, value };
    let p = ProfileId::generate();
    for (i, activity) in [
        vec![
            count(h9, ActivityMetric::Events, 3),
            count(h9, ActivityMetric::RevenueMinor, 8_990),
        ],
        vec![
            count(h9, ActivityMetric::Events, 2),
            count(h10, ActivityMetric::Orders, 1),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let mut batch = events(vec![event(i as i64 + 1, &format!("act-{i}"), &p, "Page", h9)]);
        batch.activity = activity;
        store.events().commit_events(batch).await.unwrap();
    }
    let all = store
        .events()
        .activity(h9, h10 + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![
            count(h9, ActivityMetric::Events, 5),
            count(h9, ActivityMetric::RevenueMinor, 8_990),
            count(h10, ActivityMetric::Orders, 1),
        ]
    );
    // The end is exclusive.
    assert_eq!(store.events().activity(h9, h10).await.unwrap().len(), 2);
    // Sums saturate instead of overflowing (and failing every later commit of that hour).
    for i in 0..2 {
        let mut batch = events(vec![event(10 + i, &format!("act-big-{i}"), &p, "Page", h9)]);
        batch.activity = vec![count(h9, ActivityMetric::RevenueMinor, i64::MAX - 5)];
        store.events().commit_events(batch).await.unwrap();
    }
    let all = store.events().activity(h9, h10).await.unwrap();
    assert_eq!(all[1], count(h9, ActivityMetric::RevenueMinor, i64::MAX));
}

pub async fn events_page_newest_first_with_a_cursor(store: &Store) {
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
    store.events().commit_events(events(batch)).await.unwrap();
    let query = |cursor, received_before, limit| EventQuery {
        profile_id: p.clone(),
        received_before,
        cursor,
        limit,
    };
    let first = store.events().profile_events(query(None, None, 2)).await.unwrap();
    assert_eq!(ids(&first), ["pg-4", "pg-3"]);
    let next = store
        .events()
        .profile_events(query(Some(EventCursor::of(&first[1])), None, 10))
        .await
        .unwrap();
    assert_eq!(ids(&next), ["pg-2", "pg-1", "pg-0"]);
    let as_of = store
        .events()
        .profile_events(query(
            None,
            Some(base + TimeDelta::minutes(1) + TimeDelta::seconds(1)),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(as_of.len(), 2);

    // The same newest-first order for a batch of profiles, each cut at the limit.
    let q = ProfileId::generate();
    let none = ProfileId::generate();
    store
        .events()
        .commit_events(events(vec![event(6, "q-0", &q, "Page", base)]))
        .await
        .unwrap();
    let recent = store
        .events()
        .recent_events(vec![p.clone(), q.clone(), none], 3)
        .await
        .unwrap();
    assert_eq!(recent.len(), 2, "a profile without events is left out");
    assert_eq!(ids(&recent[&p]), ["pg-4", "pg-3", "pg-2"]);
    assert_eq!(ids(&recent[&q]), ["q-0"]);
    let since = store
        .events()
        .events_since(vec![p.clone(), q.clone()], Some(base + TimeDelta::minutes(3)))
        .await
        .unwrap();
    assert_eq!(since.len(), 1, "q has nothing that recent");
    assert_eq!(ids(&since[&p]), ["pg-4", "pg-3"]);
    let all = store.events().events_since(vec![q.clone()], None).await.unwrap();
    assert_eq!(ids(&all[&q]), ["q-0"]);
}

pub async fn message_ids_and_identity_keys_can_be_scanned_in_pages(store: &Store) {
    let now = t("2026-02-01T10:00:00Z");
    let p = ProfileId::generate();
    let batch: Vec<_> = (1..=5)
        .map(|i| event(i, &format!("scan-{i}"), &p, "E", now))
        .collect();
    store.events().commit_events(events(batch)).await.unwrap();
    let first = store.events().message_ids_after(0, 3).await.unwrap();
    assert_eq!(first.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);
    let rest = store.events().message_ids_after(3, 10).await.unwrap();
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
        .events()
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
        let page = store
            .events()
            .identity_keys_after(after.clone(), 2)
            .await
            .unwrap();
        let Some(last) = page.last().cloned() else { break };
        seen.extend(page);
        after = Some(last);
    }
    assert_eq!(seen.len(), 3);
    // Keys come back in their stored form (the encrypting store's blind index).
    let stored = |k: IdentityKey| store.events().identity_index(&k);
    assert!(
        seen.contains(&stored(IdentityKey::anonymous_id("z")))
            && seen.contains(&stored(IdentityKey::user_id("a")))
    );
}

pub async fn event_bodies_keep_the_key_order_written(store: &Store) {
    let now = t("2026-02-01T10:00:00Z");
    let p = ProfileId::generate();
    let mut e = event(1, "order-1", &p, "Order Completed", now);
    let written = r#"{"type":"track","event":"Order Completed","properties":{"zeta":1,"alpha":{"title":"Hat","description":"Warm","a":2},"mid":[{"z":1,"b":2}]}}"#;
    e.body = serde_json::from_str(written).unwrap();
    store.events().commit_events(events(vec![e])).await.unwrap();
    let back = store.events().events_after(0, 10).await.unwrap();
    assert_eq!(serde_json::to_string(&back[0].body).unwrap(), written);
}

pub async fn recent_track_events_are_read_by_name_and_time(store: &Store) {
    let p = ProfileId::generate();
    store
        .events()
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
        .events()
        .track_events_since(names.clone(), t("2026-11-10T00:00:00Z"), 0, 10)
        .await
        .unwrap();
    assert_eq!(ids(&got), vec!["m-3", "m-4"]);
    let got = store
        .events()
        .track_events_since(names, t("2026-11-10T00:00:00Z"), 3, 10)
        .await
        .unwrap();
    assert_eq!(ids(&got), vec!["m-4"]);
}

pub async fn retention_purges_events_older_than_the_cutoff(store: &Store) {
    let p = ProfileId::generate();
    let old = t("2025-01-01T00:00:00Z");
    let new = t("2026-06-01T00:00:00Z");
    store
        .events()
        .commit_events(events(vec![
            event(1, "r-1", &p, "Product Viewed", old),
            event(2, "r-2", &p, "Product Viewed", new),
            event(3, "r-3", &p, "Product Viewed", old + TimeDelta::days(1)),
        ]))
        .await
        .unwrap();
    let cutoff = t("2026-01-01T00:00:00Z");
    assert_eq!(store.events().purge_events_before(cutoff, 1).await.unwrap(), 1);
    assert_eq!(store.events().purge_events_before(cutoff, 100).await.unwrap(), 1);
    assert_eq!(store.events().purge_events_before(cutoff, 100).await.unwrap(), 0);
    let left = store
        .events()
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

/// Observations written with checkpoints merge with what is stored; declarations are kept
/// apart from them and can be withdrawn.
pub async fn schema_fields_merge_observations_and_keep_declarations(store: &Store) {
    use missive_core::schema::{Declared, FieldKey, FieldType, Observed};
    let ev = store.events();
    let observed =
        |types: &[FieldType], first: &str, last: &str, examples: Vec<serde_json::Value>| Observed {
            types: types.iter().copied().collect(),
            examples,
            first_seen: t(first),
            last_seen: t(last),
        };
    let age = FieldKey::trait_("age");
    let price = FieldKey::property("Product Added", "price");
    ev.commit_checkpoint(Checkpoint {
        schema: vec![
            (
                age.clone(),
                observed(
                    &[FieldType::Number],
                    "2026-01-02T00:00:00Z",
                    "2026-01-03T00:00:00Z",
                    vec![json!(30)],
                ),
            ),
            (
                price.clone(),
                observed(
                    &[FieldType::Number],
                    "2026-01-02T00:00:00Z",
                    "2026-01-02T00:00:00Z",
                    vec![],
                ),
            ),
        ],
        ..Checkpoint::default()
    })
    .await
    .unwrap();
    // A second writer saw less: the row keeps the union and the widest times.
    ev.commit_checkpoint(Checkpoint {
        schema: vec![(
            age.clone(),
            observed(
                &[FieldType::String],
                "2026-01-01T00:00:00Z",
                "2026-01-02T00:00:00Z",
                vec![json!(30), json!(31)],
            ),
        )],
        ..Checkpoint::default()
    })
    .await
    .unwrap();
    let vip = FieldKey::trait_("vip");
    let declared = Declared {
        ty: Some(FieldType::Bool),
        at: t("2026-01-04T00:00:00Z"),
    };
    assert!(
        !ev.declare_schema_field(vip.clone(), Some(declared.clone()))
            .await
            .unwrap()
    );
    assert!(
        !ev.declare_schema_field(age.clone(), Some(declared.clone()))
            .await
            .unwrap()
    );

    let fields = ev.schema_fields().await.unwrap();
    let keys: Vec<&FieldKey> = fields.iter().map(|f| &f.key).collect();
    assert_eq!(keys, vec![&price, &age, &vip], "ordered by kind, event and name");
    let stored_age = &fields[1];
    assert_eq!(
        stored_age.observed,
        Some(observed(
            &[FieldType::Number, FieldType::String],
            "2026-01-01T00:00:00Z",
            "2026-01-03T00:00:00Z",
            vec![json!(30), json!(31)],
        ))
    );
    assert_eq!(stored_age.declared, Some(declared.clone()));
    assert_eq!(fields[2].observed, None);
    assert_eq!(fields[2].declared, Some(declared));

    // Withdrawing: a field never observed is gone; an observed one keeps its observation.
    assert!(ev.declare_schema_field(vip, None).await.unwrap());
    assert!(ev.declare_schema_field(age.clone(), None).await.unwrap());
    let fields = ev.schema_fields().await.unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[1].key, age);
    assert_eq!(fields[1].declared, None);
    assert!(fields[1].observed.is_some());
}

pub async fn a_segment_backfill_is_remembered_until_it_finishes(store: &Store) {
    assert!(store.events().unfinished_backfills().await.unwrap().is_empty());
    let mark = |after: Option<&ProfileId>| crate::BackfillMark {
        segment: "vip".into(),
        is_new: true,
        after: after.cloned(),
    };
    let checkpoint = |update| Checkpoint {
        through_seq: 0,
        backfills: vec![update],
        ..Checkpoint::default()
    };
    store
        .events()
        .commit_checkpoint(checkpoint(crate::BackfillUpdate::Progress(mark(None))))
        .await
        .unwrap();
    assert_eq!(
        store.events().unfinished_backfills().await.unwrap(),
        vec![mark(None)]
    );
    let done = ProfileId::generate();
    store
        .events()
        .commit_checkpoint(checkpoint(crate::BackfillUpdate::Progress(mark(Some(&done)))))
        .await
        .unwrap();
    assert_eq!(
        store.events().unfinished_backfills().await.unwrap(),
        vec![mark(Some(&done))]
    );
    // A checkpoint without news of the backfill leaves the mark as it was.
    store
        .events()
        .commit_checkpoint(Checkpoint::default())
        .await
        .unwrap();
    assert_eq!(store.events().unfinished_backfills().await.unwrap().len(), 1);
    store
        .events()
        .commit_checkpoint(checkpoint(crate::BackfillUpdate::Finished {
            segment: "vip".into(),
        }))
        .await
        .unwrap();
    assert!(store.events().unfinished_backfills().await.unwrap().is_empty());
}
