//! Documents and segments: versions, pages, memberships kept by checkpoints.

use super::*;

pub async fn segments_are_saved_and_checkpoints_keep_their_members(store: &Store) {
    use crate::{SegmentChange, SegmentRecord};
    let now = t("2026-02-01T10:00:00Z");
    let rec = |name: &str, expr: &str| SegmentRecord {
        name: name.into(),
        expression: expr.into(),
        created_at: now,
        updated_at: now,
    };
    store
        .documents()
        .save_segment(rec("vip", "orders.count > 5"))
        .await
        .unwrap();
    store
        .documents()
        .save_segment(rec("browsers", "count(event \"Viewed\" within 7d) >= 1"))
        .await
        .unwrap();
    store
        .documents()
        .save_segment(rec("vip", "orders.count > 10"))
        .await
        .unwrap();
    let listed = store.documents().list_segments().await.unwrap();
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
        .events()
        .commit_checkpoint(Checkpoint {
            segment_changes: vec![change(&a, true, 1), change(&b, true, 1)],
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .events()
        .commit_checkpoint(Checkpoint {
            segment_changes: vec![change(&a, false, 2)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.events().segment_members("vip", None, 10).await.unwrap(),
        vec![b.clone()]
    );
    // Sizes: members now, and the movement since an instant (the exit at minute 2 only).
    let sizes = store
        .events()
        .segment_sizes(now + TimeDelta::minutes(2))
        .await
        .unwrap();
    assert_eq!(
        sizes,
        vec![crate::SegmentSize {
            segment: "vip".into(),
            members: 1,
            entered: 0,
            exited: 1,
        }]
    );
    let sizes = store.events().segment_sizes(now).await.unwrap();
    assert_eq!((sizes[0].entered, sizes[0].exited), (2, 1));
    let history = store.events().segment_changes_of(&a, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|c| c.entered).collect::<Vec<_>>(),
        [false, true]
    );
    // Every change, in the order recorded, from a position.
    let all = store.events().segment_changes_after(0, 10).await.unwrap();
    let order: Vec<(ProfileId, bool)> = all
        .iter()
        .map(|(_, c)| (c.profile_id.clone(), c.entered))
        .collect();
    assert_eq!(
        order,
        vec![(a.clone(), true), (b.clone(), true), (a.clone(), false)]
    );
    let rest = store.events().segment_changes_after(all[0].0, 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(store.documents().delete_segment("vip").await.unwrap());
    assert!(!store.documents().delete_segment("vip").await.unwrap());
    assert!(
        store
            .events()
            .segment_members("vip", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn documents_are_versioned_listed_in_pages_and_deleted(store: &Store) {
    let doc = |kind, name: &str, body| DocumentRecord {
        kind,
        name: name.into(),
        version: 0,
        body,
        updated_at: t("2026-11-28T10:00:00Z"),
    };
    let v = store
        .documents()
        .put_documents(vec![
            doc(DocumentKind::Template, "cart", json!({"subject": "Hi"})),
            doc(DocumentKind::Block, "cart", json!({"slot": "hero"})),
        ])
        .await
        .unwrap();
    assert_eq!(v, vec![1, 1]);
    let v = store
        .documents()
        .put_documents(vec![doc(
            DocumentKind::Template,
            "cart",
            json!({"subject": "Hello"}),
        )])
        .await
        .unwrap();
    assert_eq!(v, vec![2]);
    let got = store
        .documents()
        .get_document(DocumentKind::Template, "cart")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.version, got.body), (2, json!({"subject": "Hello"})));
    assert_eq!(got.updated_at, t("2026-11-28T10:00:00Z"));
    assert!(
        store
            .documents()
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
    store.documents().put_documents(products).await.unwrap();
    let page = store
        .documents()
        .list_documents(DocumentKind::Product, None, 3)
        .await
        .unwrap();
    let got: Vec<&str> = page.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(got, vec!["0-x", "A-1", "B-2"]);
    let page = store
        .documents()
        .list_documents(DocumentKind::Product, Some("B-2".into()), 3)
        .await
        .unwrap();
    let got: Vec<&str> = page.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(got, vec!["a-1", "b-1"]);
    // A name twice in one call: saved in order, the last body wins, both get its version.
    let v = store
        .documents()
        .put_documents(vec![
            doc(DocumentKind::Product, "a-1", json!({"n": 1})),
            doc(DocumentKind::Product, "a-1", json!({"n": 2})),
        ])
        .await
        .unwrap();
    assert_eq!(v[1], v[0]);
    let got = store
        .documents()
        .get_document(DocumentKind::Product, "a-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.body, json!({"n": 2}));

    assert!(
        store
            .documents()
            .delete_document(DocumentKind::Block, "cart")
            .await
            .unwrap()
    );
    assert!(
        !store
            .documents()
            .delete_document(DocumentKind::Block, "cart")
            .await
            .unwrap()
    );
    assert!(
        store
            .documents()
            .get_document(DocumentKind::Template, "cart")
            .await
            .unwrap()
            .is_some()
    );
}
