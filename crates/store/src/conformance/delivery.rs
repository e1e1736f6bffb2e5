//! Delivery: journey progress and outbox rows committed together, suppressions, metadata.

use super::*;

pub(super) fn instance(
    id: &str,
    profile: &ProfileId,
    step: &str,
    wake: Option<DateTime<Utc>>,
) -> JourneyInstance {
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

pub(super) fn message(id: &str, key: &str, profile: &ProfileId, due: DateTime<Utc>) -> OutboxMessage {
    OutboxMessage {
        id: id.into(),
        idempotency_key: key.into(),
        profile_id: profile.clone(),
        template: "cart".into(),
        class: missive_core::MessageClass::Marketing,
        source: missive_core::MessageSource::Journey("cart".into()),
        step: Some("send".into()),
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

pub async fn recent_failures_are_read_newest_first(store: &Store) {
    let p = ProfileId::generate();
    let failed = |id: &str, at: &str| OutboxMessage {
        status: OutboxStatus::Failed,
        recipient: Some("ana@bounce.example".into()),
        detail: Some("550 5.1.1 no such user".into()),
        ..message(id, &format!("k-{id}"), &p, t(at))
    };
    let outbox = vec![
        failed("f-old", "2026-11-01T10:00:00Z"),
        failed("f-1", "2026-11-28T10:00:00Z"),
        failed("f-2", "2026-11-28T11:00:00Z"),
        message("q-1", "k-q-1", &p, t("2026-11-28T12:00:00Z")),
    ];
    store
        .delivery()
        .commit_journey(JourneyCommit {
            instances: vec![],
            outbox,
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    let got = store
        .delivery()
        .recent_failures(t("2026-11-20T00:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["f-2", "f-1"]
    );
    assert_eq!(
        got[0].recipient.as_deref(),
        Some("ana@bounce.example"),
        "opened where sealed"
    );
    assert_eq!(got[0].detail.as_deref(), Some("550 5.1.1 no such user"));
    let one = store
        .delivery()
        .recent_failures(t("2026-10-01T00:00:00Z"), 1)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
}

pub async fn journey_instances_are_counted_by_step_and_state(store: &Store) {
    let p = ProfileId::generate();
    let at = |id: &str, step: &str, status: InstanceStatus| JourneyInstance {
        status,
        ..instance(id, &p, step, None)
    };
    let mut other = at("jo-1", "wait", InstanceStatus::Active);
    other.journey = "other".into();
    let instances = vec![
        at("jc-1", "wait", InstanceStatus::Active),
        at("jc-2", "wait", InstanceStatus::Active),
        at("jc-3", "send", InstanceStatus::Completed),
        at("jc-4", "wait", InstanceStatus::Exited),
        other,
    ];
    store
        .delivery()
        .commit_journey(JourneyCommit {
            instances,
            outbox: vec![],
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    let mut counts = store.delivery().journey_step_counts("cart").await.unwrap();
    counts.sort_by(|a, b| (&a.step, a.status.as_str()).cmp(&(&b.step, b.status.as_str())));
    let seen: Vec<(&str, InstanceStatus, u64)> = counts
        .iter()
        .map(|c| (c.step.as_str(), c.status, c.instances))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("send", InstanceStatus::Completed, 1),
            ("wait", InstanceStatus::Active, 2),
            ("wait", InstanceStatus::Exited, 1),
        ]
    );
    assert!(
        store
            .delivery()
            .journey_step_counts("none")
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn journey_progress_and_send_decisions_commit_together_once(store: &Store) {
    let p = ProfileId::generate();
    assert_eq!(store.delivery().journey_events_through().await.unwrap(), 0);
    let first = instance("ji-1", &p, "wait", Some(t("2026-11-28T11:00:00Z")));
    let other = instance("ji-2", &p, "wait", Some(t("2026-11-28T10:30:00Z")));
    store
        .delivery()
        .commit_journey(JourneyCommit {
            instances: vec![first.clone(), other.clone()],
            outbox: vec![],
            events_through: Some(7),
            segments_through: None,
        })
        .await
        .unwrap();
    assert_eq!(store.delivery().journey_events_through().await.unwrap(), 7);
    assert_eq!(
        store.delivery().active_instances(&p).await.unwrap(),
        vec![first.clone(), other.clone()]
    );
    let due = store
        .delivery()
        .due_instances(t("2026-11-28T11:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec!["ji-2", "ji-1"]
    );
    assert!(
        store
            .delivery()
            .due_instances(t("2026-11-28T10:29:00Z"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.delivery().next_instance_wake().await.unwrap(),
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
            .delivery()
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
        .delivery()
        .commit_journey(JourneyCommit {
            instances: vec![],
            outbox: vec![dup],
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    assert_eq!(store.delivery().journey_events_through().await.unwrap(), 7);
    assert_eq!(
        store.delivery().active_instances(&p).await.unwrap(),
        vec![other.clone()]
    );
    assert_eq!(
        store
            .delivery()
            .journey_instances("cart", 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let due = store
        .delivery()
        .due_outbox(t("2026-11-28T12:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(due, vec![m.clone()]);
    assert!(store.delivery().outbox_message("msg_2").await.unwrap().is_none());

    // Sending records the outcome; the frequency cap counts marketing sends.
    let mut done = m.clone();
    done.status = OutboxStatus::Sent;
    done.attempts = 1;
    done.sent_at = Some(t("2026-11-28T11:00:05Z"));
    done.recipient = Some("ann@example.com".into());
    done.detail = Some("250 2.0.0 Ok".into());
    store.delivery().update_outbox(vec![done.clone()]).await.unwrap();
    assert!(
        store
            .delivery()
            .due_outbox(t("2026-11-28T12:00:00Z"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.delivery().outbox_message("msg_1").await.unwrap(),
        Some(done.clone())
    );
    assert_eq!(
        store
            .delivery()
            .sent_among(vec!["msg_1".into(), "msg_2".into(), "msg_none".into()])
            .await
            .unwrap(),
        ["msg_1".to_owned()].into()
    );
    assert_eq!(store.delivery().outbox_of(&p, 10).await.unwrap(), vec![done]);
    let nobody = ProfileId::generate();
    assert_eq!(
        store
            .delivery()
            .marketing_sent_times(vec![p.clone(), nobody.clone()], t("2026-11-28T00:00:00Z"))
            .await
            .unwrap(),
        [(p.clone(), vec![t("2026-11-28T11:00:05Z")])].into()
    );
    assert!(
        store
            .delivery()
            .marketing_sent_times(vec![p.clone(), nobody], t("2026-11-28T11:00:06Z"))
            .await
            .unwrap()
            .is_empty()
    );

    // Counting and cancelling by source.
    let mut other = message("msg_3", "b:1", &p, t("2026-11-28T12:00:00Z"));
    let broadcast = missive_core::MessageSource::Broadcast("b".into());
    other.source = broadcast.clone();
    let mut third = message("msg_4", "b:2", &p, t("2026-11-28T12:00:00Z"));
    third.source = broadcast.clone();
    store
        .delivery()
        .commit_journey(JourneyCommit {
            instances: vec![],
            outbox: vec![other, third],
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    let counts = store.delivery().outbox_counts(&broadcast).await.unwrap();
    assert_eq!((counts.queued, counts.sent), (2, 0));
    assert_eq!(
        store
            .delivery()
            .outbox_counts(&missive_core::MessageSource::Journey("cart".into()))
            .await
            .unwrap()
            .sent,
        1
    );
    assert_eq!(
        store
            .delivery()
            .skip_queued(&broadcast, "cancelled")
            .await
            .unwrap(),
        2
    );
    let counts = store.delivery().outbox_counts(&broadcast).await.unwrap();
    assert_eq!((counts.queued, counts.skipped), (0, 2));
    assert_eq!(counts.skipped_by_reason, [("cancelled".to_owned(), 2)].into());
    // Outcomes of messages in flight when the broadcast was cancelled: one the relay accepted
    // is recorded as sent; any other outcome leaves the cancel's skip.
    let mut accepted = store.delivery().outbox_message("msg_3").await.unwrap().unwrap();
    accepted.status = OutboxStatus::Sent;
    accepted.sent_at = Some(t("2026-11-28T12:00:01Z"));
    accepted.detail = Some("250 2.0.0 Ok".into());
    let mut retried = store.delivery().outbox_message("msg_4").await.unwrap().unwrap();
    retried.status = OutboxStatus::Queued;
    retried.detail = Some("retry: 451 try later".into());
    store
        .delivery()
        .update_outbox(vec![accepted.clone(), retried])
        .await
        .unwrap();
    assert_eq!(
        store.delivery().outbox_message("msg_3").await.unwrap(),
        Some(accepted)
    );
    let counts = store.delivery().outbox_counts(&broadcast).await.unwrap();
    assert_eq!((counts.queued, counts.sent, counts.skipped), (0, 1, 1));
}

/// Messages of a journey or broadcast list newest first, by step, in pages; skips and
/// deferrals are counted by reason; deferred messages can be made due to be decided again.
pub async fn messages_list_by_source_and_step_and_count_by_reason(store: &Store) {
    let p = ProfileId::generate();
    let journey = missive_core::MessageSource::Journey("welcome".into());
    let mut messages = Vec::new();
    for i in 0..5 {
        let mut m = message(
            &format!("msg_w{i}"),
            &format!("w:{i}"),
            &p,
            t("2026-11-28T12:00:00Z"),
        );
        m.source = journey.clone();
        m.step = Some(if i < 3 { "first" } else { "second" }.into());
        m.created_at = t("2026-11-28T10:00:00Z") + TimeDelta::minutes(i64::from(i / 2));
        messages.push(m);
    }
    store
        .delivery()
        .commit_journey(JourneyCommit {
            instances: vec![],
            outbox: messages.clone(),
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    let ids = |page: &[OutboxMessage]| page.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    let first = store
        .delivery()
        .outbox_from(&journey, None, None, 3)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["msg_w4", "msg_w3", "msg_w2"]);
    assert_eq!(first[0].step.as_deref(), Some("second"));
    let last = first.last().unwrap();
    let cursor = crate::OutboxCursor {
        created_at: last.created_at,
        id: last.id.clone(),
    };
    let second = store
        .delivery()
        .outbox_from(&journey, None, Some(&cursor), 3)
        .await
        .unwrap();
    assert_eq!(ids(&second), ["msg_w1", "msg_w0"]);
    let by_step = store
        .delivery()
        .outbox_from(&journey, Some("first"), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&by_step), ["msg_w2", "msg_w1", "msg_w0"]);

    // Two skipped for different reasons, one deferred by quiet hours until tomorrow.
    let now = t("2026-11-28T23:00:00Z");
    let tomorrow = t("2026-11-29T08:00:00Z");
    let mut done = vec![messages[0].clone(), messages[1].clone(), messages[2].clone()];
    done[0].status = OutboxStatus::Skipped;
    done[0].detail = Some("no_consent".into());
    done[1].status = OutboxStatus::Skipped;
    done[1].detail = Some("suppressed: hard_bounce".into());
    done[2].next_attempt_at = tomorrow;
    done[2].detail = Some("deferred: quiet_hours".into());
    store.delivery().update_outbox(done).await.unwrap();
    let counts = store.delivery().outbox_counts(&journey).await.unwrap();
    assert_eq!((counts.queued, counts.deferred, counts.skipped), (3, 1, 2));
    assert_eq!(
        counts.skipped_by_reason,
        [
            ("no_consent".to_owned(), 1),
            ("suppressed: hard_bounce".to_owned(), 1)
        ]
        .into()
    );
    assert_eq!(counts.deferred_by_reason, [("quiet_hours".to_owned(), 1)].into());

    // Deferred messages become due now; others keep their time.
    assert_eq!(store.delivery().requeue_deferred(now).await.unwrap(), 1);
    let due = store.delivery().due_outbox(now, 100).await.unwrap();
    assert!(
        due.iter().any(|m| m.id == "msg_w2"),
        "the deferred message is due"
    );
    assert_eq!(store.delivery().requeue_deferred(now).await.unwrap(), 0);
}

/// A source this version does not know (a row of a newer version) reads back and is stored
/// back as written.
pub async fn unknown_message_sources_are_kept_as_written(store: &Store) {
    let p = ProfileId::generate();
    let mut m = message("msg_src", "src:1", &p, t("2026-11-28T12:00:00Z"));
    m.source = missive_core::MessageSource::parse("webhook:w1");
    store
        .delivery()
        .commit_journey(JourneyCommit {
            instances: vec![],
            outbox: vec![m.clone()],
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    let read = store.delivery().outbox_message("msg_src").await.unwrap().unwrap();
    assert_eq!(read.source.to_string(), "webhook:w1");
    assert_eq!(read, m);
}

pub async fn suppressions_and_metadata_are_kept(store: &Store) {
    assert!(store.delivery().suppression("h1").await.unwrap().is_none());
    let s = Suppression {
        address_hash: "h1".into(),
        reason: "hard_bounce".into(),
        detail: "550 5.1.1".into(),
        at: t("2026-11-28T10:00:00Z"),
    };
    store.delivery().suppress(s.clone()).await.unwrap();
    assert_eq!(store.delivery().suppression("h1").await.unwrap(), Some(s.clone()));
    let again = Suppression {
        reason: "complaint".into(),
        ..s
    };
    store.delivery().suppress(again.clone()).await.unwrap();
    assert_eq!(
        store.delivery().suppression("h1").await.unwrap(),
        Some(again.clone())
    );
    // In a batch: only the suppressed come back.
    assert_eq!(
        store
            .delivery()
            .suppressions(vec!["h0".into(), "h1".into(), "h9".into()])
            .await
            .unwrap(),
        vec![again]
    );

    assert_eq!(
        store
            .delivery()
            .record_soft_bounce("h2", t("2026-11-28T10:00:00Z"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delivery()
            .record_soft_bounce("h2", t("2026-11-28T11:00:00Z"))
            .await
            .unwrap(),
        2
    );

    let a = store
        .documents()
        .meta_get_or_init("secret.test", "first".into())
        .await
        .unwrap();
    let b = store
        .documents()
        .meta_get_or_init("secret.test", "second".into())
        .await
        .unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("first", "first"));
}

pub async fn metadata_can_be_replaced(store: &Store) {
    assert_eq!(
        store
            .documents()
            .meta_get_or_init("conformance.flag", "no".into())
            .await
            .unwrap(),
        "no"
    );
    store
        .documents()
        .meta_set("conformance.flag", "yes".into())
        .await
        .unwrap();
    assert_eq!(
        store
            .documents()
            .meta_get_or_init("conformance.flag", "no".into())
            .await
            .unwrap(),
        "yes"
    );
    store
        .documents()
        .meta_set("conformance.other", "1".into())
        .await
        .unwrap();
    assert_eq!(
        store
            .documents()
            .meta_get_or_init("conformance.other", "0".into())
            .await
            .unwrap(),
        "1"
    );
}

pub async fn messages_a_person_triggered_are_due_before_a_broadcasts(store: &Store) {
    let p = ProfileId::generate();
    let at = |m: u32| t("2026-11-28T12:00:00Z") + chrono::TimeDelta::minutes(i64::from(m));
    // A broadcast queued long before, then journey messages due later.
    let mut outbox: Vec<OutboxMessage> = (0..5)
        .map(|i| {
            let mut m = message(&format!("msg_b{i}"), &format!("b:{i}"), &p, at(i));
            m.source = missive_core::MessageSource::Broadcast("brd_1".into());
            m
        })
        .collect();
    outbox.push(message("msg_j1", "j:1", &p, at(10)));
    outbox.push(message("msg_j0", "j:0", &p, at(9)));
    // Not due yet: stays out whatever its lane.
    outbox.push(message("msg_j2", "j:2", &p, at(60)));
    store
        .delivery()
        .commit_journey(JourneyCommit {
            instances: vec![],
            outbox,
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();
    let ids = |due: Vec<OutboxMessage>| due.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let due = store.delivery().due_outbox(at(30), 4).await.unwrap();
    assert_eq!(ids(due), ["msg_j0", "msg_j1", "msg_b0", "msg_b1"]);
    let due = store.delivery().due_outbox(at(30), 100).await.unwrap();
    assert_eq!(due.len(), 7);
    let due = store.delivery().due_outbox(at(30), 1).await.unwrap();
    assert_eq!(ids(due), ["msg_j0"]);
    // Each lane on its own, for a sender loop per lane.
    use missive_core::outbox::Lane;
    let due = store.delivery().due_in_lane(Lane::Bulk, at(30), 3).await.unwrap();
    assert_eq!(ids(due), ["msg_b0", "msg_b1", "msg_b2"]);
    let due = store
        .delivery()
        .due_in_lane(Lane::Triggered, at(30), 10)
        .await
        .unwrap();
    assert_eq!(ids(due), ["msg_j0", "msg_j1"]);
}
