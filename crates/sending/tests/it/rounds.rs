//! The sender's pipelined rounds in its two lanes, against a real SQLite store, the real
//! sender and the maildir transport: while one round's outcomes are written the next is sent,
//! and a loop per lane sends at the same time as the other; neither may send a message twice
//! or let a person past the frequency cap. (The two loops racing for one person's cap is a
//! timing this test cannot force; the claims that settle it are table-tested in
//! `missive_sending::rounds`.)

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use missive_core::message::validate_message;
use missive_core::{Clock, ManualClock, MessageClass, MessageSource, ProfileId};
use missive_delivery::{MaildirTransport, Throttle};
use missive_engine::profiles::ProfileKey;
use missive_engine::{Engine, EngineConfig};
use missive_sending::content::{ContentConfig, ContentService, StoredTemplate};
use missive_sending::sender::{Sender, SenderConfig};
use missive_store::{JourneyCommit, OutboxMessage, OutboxStatus, SqliteStore, Store};
use serde_json::json;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T10:00:00Z")
        .unwrap()
        .to_utc()
}

/// A queued message of `class` for `profile`, from a journey (the triggered lane) or a
/// broadcast (the bulk lane).
fn queued(n: usize, profile: &ProfileId, class: MessageClass, triggered: bool) -> OutboxMessage {
    let source = if triggered {
        MessageSource::Journey("welcome".into())
    } else {
        MessageSource::Broadcast(format!("brd_{n}"))
    };
    OutboxMessage {
        id: format!("msg_{n:032x}"),
        idempotency_key: format!("{source}:{profile}:{n}"),
        profile_id: profile.clone(),
        template: "news".into(),
        class,
        source,
        step: None,
        context: json!({}),
        status: OutboxStatus::Queued,
        attempts: 0,
        next_attempt_at: start(),
        created_at: start(),
        sent_at: None,
        recipient: None,
        detail: None,
    }
}

// Two worker threads, so that the two lanes' loops run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_rounds_send_each_message_once_and_keep_the_frequency_cap() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store: Store = Store::new(SqliteStore::open(dir.path().join("missive.db")).await.unwrap());
    missive_engine::auth::ensure_workspace(&store).await.unwrap();
    let engine = Engine::start(store, Arc::new(clock.clone()), EngineConfig::default())
        .await
        .unwrap();
    let content = ContentService::new(engine.store().clone(), ContentConfig::default());
    let template: StoredTemplate =
        serde_json::from_value(json!({"subject": "News", "layout": "html", "body": "<p>News</p>"})).unwrap();
    content.save_template("news", template, start()).await.unwrap();
    let maildir = dir.path().join("maildir");
    let sender = Sender::start(
        engine.clone(),
        content,
        Arc::new(MaildirTransport::new(&maildir).unwrap()),
        None,
        Throttle::new(None),
        SenderConfig {
            // Rounds of three: the messages below span many rounds, each written while the
            // next is sent.
            batch: 3,
            concurrency: 2,
            policy: missive_sending::policy::PolicyConfig {
                frequency_cap: 2,
                ..Default::default()
            },
            ..SenderConfig::default()
        },
    )
    .await
    .unwrap();

    let mut people = Vec::new();
    for u in 0..4 {
        let e = validate_message(
            json!({"type": "identify", "userId": format!("u{u}"),
                   "traits": {"email": format!("u{u}@example.com"), "consent": {"email_marketing": true}}}),
            None,
            None,
            clock.now(),
        )
        .unwrap();
        engine.ingest(vec![e]).await.unwrap();
    }
    engine.sync().await.unwrap();
    for u in 0..4 {
        let key = ProfileKey::parse(&format!("user_id:u{u}"));
        let p = missive_engine::profiles::find_profile(engine.store(), &key, 0)
            .await
            .unwrap()
            .unwrap();
        people.push(p.id);
    }
    // Five marketing and two transactional messages per person, interleaved so that every
    // round holds several people's.
    let mut outbox = Vec::new();
    for round in 0..7 {
        for (i, p) in people.iter().enumerate() {
            let class = if round % 3 == 2 {
                MessageClass::Transactional
            } else {
                MessageClass::Marketing
            };
            // Each person's messages alternate between the lanes.
            outbox.push(queued(outbox.len(), p, class, (round + i).is_multiple_of(2)));
        }
    }
    let total = outbox.len();
    engine
        .store()
        .delivery()
        .commit_journey(JourneyCommit {
            instances: vec![],
            outbox: outbox.clone(),
            events_through: None,
            segments_through: None,
        })
        .await
        .unwrap();

    let stats = sender.run_pending().await.unwrap();

    let mut sent: HashMap<(ProfileId, MessageClass), usize> = HashMap::new();
    for m in &outbox {
        let stored = engine
            .store()
            .delivery()
            .outbox_message(&m.id)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(stored.status, OutboxStatus::Queued, "{} was left queued", m.id);
        if stored.status == OutboxStatus::Sent {
            *sent.entry((m.profile_id.clone(), m.class)).or_default() += 1;
        }
    }
    for p in &people {
        assert_eq!(
            sent.get(&(p.clone(), MessageClass::Marketing)),
            Some(&2),
            "the cap of two marketing e-mails holds across rounds: {sent:?}"
        );
        assert_eq!(
            sent.get(&(p.clone(), MessageClass::Transactional)),
            Some(&2),
            "transactional e-mails are not capped: {sent:?}"
        );
    }
    // Each e-mail reached the transport once.
    let files = std::fs::read_dir(maildir.join("new")).unwrap().count();
    assert_eq!(files, 16, "16 e-mails handed over, none twice");
    assert_eq!(stats.sent, 16);
    assert_eq!(stats.skipped as usize, total - 16);
    // And each was recorded once as delivered (ingested by the time `run_pending` returned;
    // the stored profiles follow at the next checkpoint).
    engine.sync().await.unwrap();
    let delivered: u64 = {
        let mut n = 0;
        for p in &people {
            let profile =
                missive_engine::profiles::find_profile(engine.store(), &ProfileKey::Id(p.clone()), 0)
                    .await
                    .unwrap()
                    .unwrap();
            n += profile
                .events
                .get(missive_sending::sender::EMAIL_DELIVERED)
                .map_or(0, |a| a.count);
        }
        n
    };
    assert_eq!(delivered, 16);
}
