//! Profiles and identities: checkpoints, merges, versions, re-indexing, scans, erasure.

use super::*;
use crate::conformance::delivery::{instance, message};

pub async fn committed_events_profiles_and_identities_read_back(store: &Store) {
    let now = t("2026-02-01T10:00:00Z");
    let mut p = Profile::new(ProfileId::generate(), now);
    p.version = 1;
    p.identities.insert(&IdentityKey::user_id("u-1"));
    store
        .events()
        .commit_events(events(vec![
            event(1, "m-1", &p.id, "Product Viewed", now),
            event(2, "m-2", &p.id, "Order Completed", now + TimeDelta::minutes(5)),
        ]))
        .await
        .unwrap();
    store
        .events()
        .commit_checkpoint(Checkpoint {
            identities: vec![(IdentityKey::user_id("u-1"), p.id.clone())],
            profiles: vec![p.clone()],
            versions: vec![version(&p, "2 events", true)],
            merges: vec![],
            segment_changes: vec![],
            through_seq: 2,
            schema: vec![],
            backfills: vec![],
            ..Default::default()
        })
        .await
        .unwrap();

    assert_eq!(store.events().load_profile(&p.id).await.unwrap(), Some(p.clone()));
    assert_eq!(
        store
            .events()
            .load_profiles(vec![ProfileId::generate(), p.id.clone()])
            .await
            .unwrap(),
        vec![p.clone()],
        "a batch brings back the stored ones"
    );
    let resolved = store
        .events()
        .resolve_identities(vec![IdentityKey::user_id("u-1"), IdentityKey::user_id("nobody")])
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[&IdentityKey::user_id("u-1")], p.id);

    let listed = store
        .events()
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

    let stats = store.events().stats().await.unwrap();
    assert_eq!((stats.profiles, stats.events), (1, 2));
    assert_eq!(store.events().profile_count().await.unwrap(), 1);
    assert_eq!(store.events().last_event_seq().await.unwrap(), 2);
}

pub async fn merges_repoint_events_and_identities_along_a_chain(store: &Store) {
    let now = t("2026-02-01T10:00:00Z");
    let (a, b, c) = (
        ProfileId::generate(),
        ProfileId::generate(),
        ProfileId::generate(),
    );
    store
        .events()
        .commit_events(events(vec![
            event(1, "ch-a", &a, "Viewed", now),
            event(2, "ch-b", &b, "Viewed", now),
        ]))
        .await
        .unwrap();
    store
        .events()
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
        .events()
        .commit_events(EventBatch {
            events: vec![event(3, "ch-a2", &a, "Viewed", now)],
            repoint: vec![(a.clone(), b.clone()), (b.clone(), c.clone())],
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .events()
        .commit_checkpoint(Checkpoint {
            merges: vec![merge(&a, &b), merge(&b, &c)],
            through_seq: 3,
            ..Default::default()
        })
        .await
        .unwrap();

    let resolved = store
        .events()
        .resolve_identities(vec![
            IdentityKey::anonymous_id("anon-a"),
            IdentityKey::anonymous_id("anon-b"),
        ])
        .await
        .unwrap();
    assert_eq!(resolved.len(), 2);
    assert!(resolved.values().all(|p| p == &c), "{resolved:?}");
    let listed = store
        .events()
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
    let merges = store.events().merges_of(&b).await.unwrap();
    assert_eq!(merges.len(), 2);
    assert_eq!(
        (merges[0].from.clone(), merges[1].into.clone()),
        (a.clone(), c.clone())
    );
    // The merges can be followed in the order recorded (outbound webhooks do).
    let log = store.events().merges_after(0, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].1.from.clone(), log[1].1.into.clone()), (a, c));
    assert!(log[0].0 < log[1].0);
    assert_eq!(store.events().merges_after(log[0].0, 10).await.unwrap().len(), 1);
}

pub async fn versions_list_newest_first_and_rebuild_from_the_nearest_snapshot(store: &Store) {
    let start = t("2026-02-01T10:00:00Z");
    let mut p = Profile::new(ProfileId::generate(), start);
    for v in 1..=5u64 {
        p.version = v;
        p.updated_at = start + TimeDelta::minutes(v as i64);
        p.last_seen = Some(p.updated_at);
        store
            .events()
            .commit_checkpoint(Checkpoint {
                profiles: vec![p.clone()],
                versions: vec![version(&p, "1 event", v == 1 || v == 3)],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let listed = store.events().profile_versions(&p.id, None, 2).await.unwrap();
    assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), [5, 4]);
    let older = store.events().profile_versions(&p.id, Some(4), 10).await.unwrap();
    assert_eq!(older.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 2, 1]);

    let chain = store
        .events()
        .versions_for_as_of(&p.id, start + TimeDelta::minutes(4) + TimeDelta::seconds(30))
        .await
        .unwrap();
    assert_eq!(chain.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 4]);
    assert!(chain[0].snapshot.is_some());
    assert_eq!(chain[1].diff.last_seen, Some(start + TimeDelta::minutes(4)));
    assert!(
        store
            .events()
            .versions_for_as_of(&p.id, start)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn the_profile_checkpoint_names_the_last_event_the_profiles_include(store: &Store) {
    assert_eq!(store.events().profile_checkpoint().await.unwrap(), 0);
    let now = t("2026-02-01T10:00:00Z");
    let mut p = Profile::new(ProfileId::generate(), now);
    p.version = 1;
    store
        .events()
        .commit_events(events(vec![
            event(1, "cp-1", &p.id, "A", now),
            event(2, "cp-2", &p.id, "B", now),
        ]))
        .await
        .unwrap();
    store
        .events()
        .commit_checkpoint(Checkpoint {
            profiles: vec![p.clone()],
            through_seq: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    // Events after the checkpoint are the ones to replay.
    store
        .events()
        .commit_events(events(vec![event(3, "cp-3", &p.id, "C", now)]))
        .await
        .unwrap();
    assert_eq!(store.events().profile_checkpoint().await.unwrap(), 2);
    assert_eq!(ids(&store.events().events_after(2, 10).await.unwrap()), ["cp-3"]);
    assert_eq!(
        ids(&store.events().events_after(0, 10).await.unwrap()),
        ["cp-1", "cp-2", "cp-3"]
    );
    assert_eq!(store.events().events_after(0, 2).await.unwrap().len(), 2);
    assert_eq!(store.events().last_event_seq().await.unwrap(), 3);
}

pub async fn identities_can_be_reindexed_in_place(store: &Store) {
    let p = ProfileId::generate();
    store
        .events()
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
    assert_eq!(store.events().reindex_identities(changes).await.unwrap(), 1);
    let found = store
        .events()
        .resolve_identities(vec![
            IdentityKey::user_id("old-form"),
            IdentityKey::user_id("new-form"),
        ])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found.get(&IdentityKey::user_id("new-form")), Some(&p));
}

pub async fn live_profiles_can_be_scanned_in_pages(store: &Store) {
    let now = t("2026-02-01T10:00:00Z");
    let mut profiles: Vec<Profile> = (0..5).map(|_| Profile::new(ProfileId::generate(), now)).collect();
    profiles[2].merged_into = Some(profiles[0].id.clone());
    store
        .events()
        .commit_checkpoint(Checkpoint {
            profiles: profiles.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.events().profiles_after(after.clone(), 2).await.unwrap();
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
    // The ids alone, paged the same way.
    let (mut ids, mut after) = (Vec::new(), None);
    loop {
        let page = store.events().profile_ids_after(after.clone(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.clone());
        ids.extend(page);
    }
    assert_eq!(ids, live);
}

pub async fn erasure_deletes_everything_about_the_profiles_and_nothing_else(store: &Store) {
    let now = t("2026-02-01T10:00:00Z");
    let mut gone = Profile::new(ProfileId::generate(), now);
    gone.version = 1;
    let mut kept = Profile::new(ProfileId::generate(), now);
    kept.version = 1;
    store
        .events()
        .commit_events(events(vec![
            event(1, "e-1", &gone.id, "Product Viewed", now),
            event(2, "e-2", &kept.id, "Product Viewed", now),
            event(3, "e-3", &gone.id, "Order Completed", now),
        ]))
        .await
        .unwrap();
    store
        .documents()
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
        .events()
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
            schema: vec![],
            backfills: vec![],
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .delivery()
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
        .data_keys()
        .put_data_keys(vec![dk(&gone.id), dk(&kept.id)])
        .await
        .unwrap();

    let counts = store
        .events()
        .erase_profiles(vec![gone.id.clone()])
        .await
        .unwrap();
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
    assert_eq!(store.events().load_profile(&gone.id).await.unwrap(), None);
    assert!(
        store
            .events()
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
    assert!(
        store
            .events()
            .profile_events(q(&gone.id))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .events()
            .segment_changes_of(&gone.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .delivery()
            .outbox_message("msg-gone")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .delivery()
            .active_instances(&gone.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .data_keys()
            .data_keys(vec![gone.id.clone()])
            .await
            .unwrap()
            .is_empty()
    );
    let resolved = store
        .events()
        .resolve_identities(vec![IdentityKey::user_id("gone"), IdentityKey::user_id("kept")])
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        store.events().segment_members("all", None, 10).await.unwrap(),
        vec![kept.id.clone()]
    );
    // The other profile is untouched.
    assert_eq!(
        store.events().load_profile(&kept.id).await.unwrap(),
        Some(kept.clone())
    );
    assert_eq!(store.events().profile_events(q(&kept.id)).await.unwrap().len(), 1);
    assert_eq!(
        store
            .data_keys()
            .data_keys(vec![kept.id.clone()])
            .await
            .unwrap()
            .len(),
        1
    );

    store
        .events()
        .add_erased_identities(vec!["h1".into(), "h2".into(), "h1".into()], now)
        .await
        .unwrap();
    let erased = store.events().erased_identities().await.unwrap();
    assert_eq!(erased.len(), 2);
    assert!(erased.contains("h1"));
}
