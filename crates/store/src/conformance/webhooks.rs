//! Outbound webhooks: the queue in commit order, once per cause; completions and sends
//! queued with their own commit; positions, attempts and dead letters with replay.

use super::*;
use crate::{DeadLetter, WebhookAttempt, WebhookNotice, WebhookPosition};
use delivery::{instance, message};

fn notice(kind: &str, key: &str, profile: &ProfileId) -> WebhookNotice {
    WebhookNotice {
        seq: 0,
        kind: kind.into(),
        key: key.into(),
        profile_id: Some(profile.clone()),
        endpoint: None,
        data: json!({"segment": "vip"}),
        at: t("2026-11-28T10:00:00Z"),
    }
}

pub async fn webhook_notices_queue_once_in_commit_order_with_their_causes(store: &Store) {
    let w = store.webhooks();
    let p = ProfileId::generate();
    let events = WebhookPosition::Source("events").key();
    w.enqueue_webhooks(
        vec![
            notice("segment.entered", "1", &p),
            notice("segment.exited", "2", &p),
        ],
        vec![(events.clone(), 40)],
    )
    .await
    .unwrap();
    // The same causes again (a follower re-reading after a crash) add nothing.
    w.enqueue_webhooks(
        vec![
            notice("segment.entered", "1", &p),
            notice("segment.entered", "3", &p),
        ],
        vec![(events.clone(), 41)],
    )
    .await
    .unwrap();
    assert_eq!(w.webhook_position(&events).await.unwrap(), 41);
    assert_eq!(w.webhook_position("webhooks.source.never").await.unwrap(), 0);

    // A journey instance completing and a message handed over queue their notices in the
    // same commit; a message already sent is not queued twice.
    let mut done = instance("ji_1", &p, "end", None);
    done.status = InstanceStatus::Completed;
    let queued = message("msg_w1", "k-w1", &p, t("2026-11-28T10:00:00Z"));
    store
        .delivery()
        .commit_journey(JourneyCommit {
            instances: vec![done],
            outbox: vec![queued.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut sent = queued.clone();
    sent.status = OutboxStatus::Sent;
    sent.sent_at = Some(t("2026-11-28T10:01:00Z"));
    store.delivery().update_outbox(vec![sent.clone()]).await.unwrap();
    store.delivery().update_outbox(vec![sent]).await.unwrap();

    let all = w.webhooks_after(0, 100).await.unwrap();
    let kinds: Vec<(&str, &str)> = all.iter().map(|n| (n.kind.as_str(), n.key.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("segment.entered", "1"),
            ("segment.exited", "2"),
            ("segment.entered", "3"),
            ("journey.completed", "ji_1"),
            ("message.sent", "msg_w1"),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(w.last_webhook_seq().await.unwrap(), all[4].seq);
    assert_eq!(all[0].data, json!({"segment": "vip"}));
    assert_eq!(all[0].profile_id.as_ref(), Some(&p));
    assert_eq!(all[3].data["journey"], "cart");
    assert_eq!(all[4].data["message_id"], "msg_w1");
    assert_eq!(all[4].at, t("2026-11-28T10:01:00Z"));
    let after = w.webhooks_after(all[1].seq, 2).await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].seq, all[2].seq);

    // Trimming removes what every endpoint has passed, and old attempts.
    let attempt = |at: &str, status: u16| WebhookAttempt {
        endpoint: "crm".into(),
        seq: all[0].seq,
        webhook_id: "msg_x".into(),
        kind: "segment.entered".into(),
        status,
        error: if status == 0 {
            "timed out".into()
        } else {
            String::new()
        },
        at: t(at),
        duration_ms: 12,
    };
    w.record_webhook_attempts(
        vec![
            attempt("2026-11-20T10:00:00Z", 500),
            attempt("2026-11-28T10:00:00Z", 0),
            attempt("2026-11-28T10:05:00Z", 200),
        ],
        Some(("webhooks.endpoint.crm".into(), all[0].seq)),
    )
    .await
    .unwrap();
    // The delivery's position moved with its attempt.
    assert_eq!(
        w.webhook_position("webhooks.endpoint.crm").await.unwrap(),
        all[0].seq
    );
    assert_eq!(
        w.trim_webhooks(all[1].seq, t("2026-11-21T00:00:00Z"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(w.webhooks_after(0, 100).await.unwrap().len(), 3);
    let attempts = w.webhook_attempts("crm", 10).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.status).collect::<Vec<_>>(), [200, 0]);
    assert_eq!(attempts[1].error, "timed out");
    assert!(w.webhook_attempts("other", 10).await.unwrap().is_empty());
}

pub async fn dead_letters_move_the_endpoint_on_and_replay_for_it_alone(store: &Store) {
    let w = store.webhooks();
    let p = ProfileId::generate();
    w.enqueue_webhooks(
        vec![
            notice("segment.entered", "d1", &p),
            notice("segment.entered", "d2", &p),
        ],
        vec![],
    )
    .await
    .unwrap();
    let queued = w.webhooks_after(0, 10).await.unwrap();
    let position = WebhookPosition::Endpoint("crm").key();
    for n in &queued {
        w.dead_letter(DeadLetter {
            endpoint: "crm".into(),
            notice: n.clone(),
            reason: "HTTP 500 for 24 h".into(),
            at: t("2026-11-29T10:00:00Z"),
        })
        .await
        .unwrap();
    }
    assert_eq!(w.webhook_position(&position).await.unwrap(), queued[1].seq);
    let letters = w.dead_letters("crm", 10).await.unwrap();
    assert_eq!(letters.len(), 2);
    // A letter's notice is the queued one, addressed to the endpoint it belongs to.
    let mut expected = queued[0].clone();
    expected.endpoint = Some("crm".into());
    assert_eq!(letters[0].notice, expected);
    assert_eq!(letters[0].reason, "HTTP 500 for 24 h");
    assert!(w.dead_letters("other", 10).await.unwrap().is_empty());

    // Replaying one queues a copy for that endpoint alone, after everything else.
    let at = t("2026-11-30T10:00:00Z");
    assert_eq!(
        w.replay_dead_letters("crm", Some(vec![queued[1].seq]), at)
            .await
            .unwrap(),
        1
    );
    let left = w.dead_letters("crm", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].notice.seq, queued[0].seq);
    let copy = w.webhooks_after(queued[1].seq, 10).await.unwrap();
    assert_eq!(copy.len(), 1);
    assert_eq!(copy[0].endpoint.as_deref(), Some("crm"));
    assert_eq!(copy[0].kind, "segment.entered");
    assert_eq!(copy[0].data, queued[1].data);
    // The rest, all at once.
    assert_eq!(w.replay_dead_letters("crm", None, at).await.unwrap(), 1);
    assert!(w.dead_letters("crm", 10).await.unwrap().is_empty());
    assert_eq!(w.webhooks_after(queued[1].seq, 10).await.unwrap().len(), 2);
    w.set_webhook_position(&position, 7).await.unwrap();
    assert_eq!(w.webhook_position(&position).await.unwrap(), 7);

    // An erased person's notices and dead letters go; the erasure's own notice stays.
    let q = ProfileId::generate();
    w.enqueue_webhooks(
        vec![
            notice("segment.entered", "e1", &q),
            notice("profile.erased", "e2", &q),
        ],
        vec![],
    )
    .await
    .unwrap();
    let erased = w.webhooks_after(0, 100).await.unwrap();
    let first = erased.iter().find(|n| n.key == "e1").unwrap().clone();
    w.dead_letter(DeadLetter {
        endpoint: "crm".into(),
        notice: first,
        reason: "HTTP 500".into(),
        at: t("2026-11-29T10:00:00Z"),
    })
    .await
    .unwrap();
    assert_eq!(w.erase_webhook_profiles(vec![q.clone()]).await.unwrap(), 2);
    let left: Vec<String> = w
        .webhooks_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.profile_id.as_ref() == Some(&q))
        .map(|n| n.kind)
        .collect();
    assert_eq!(left, ["profile.erased"]);
    assert!(w.dead_letters("crm", 10).await.unwrap().is_empty());

    // A deleted endpoint leaves nothing behind for one created under its name.
    w.record_webhook_attempts(vec![], Some((position.clone(), 9)))
        .await
        .unwrap();
    w.forget_webhook_endpoint("crm").await.unwrap();
    assert_eq!(w.webhook_position(&position).await.unwrap(), 0);
    assert!(w.webhook_attempts("crm", 10).await.unwrap().is_empty());
}
