//! Journeys against a real SQLite store and a manual clock: triggers, keyed instances, waits
//! for events with timeouts, branches, and restarts that neither lose nor repeat a step.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::message::validate_message;
use missive_core::{Clock, ManualClock};
use missive_engine::{Engine, EngineConfig};
use missive_sending::content::{ContentConfig, ContentService, StoredTemplate};
use missive_sending::journeys::{JourneyDef, Journeys};
use missive_store::{InstanceStatus, OutboxStatus, SqliteStore, Store};
use serde_json::{Value, json};

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .unwrap()
        .to_utc()
}

struct Harness {
    dir: tempfile::TempDir,
    clock: ManualClock,
    engine: Engine,
    journeys: Journeys,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(start());
        Self::open(dir, clock).await
    }

    async fn open(dir: tempfile::TempDir, clock: ManualClock) -> Self {
        Self::open_with(dir, clock, EngineConfig::default()).await
    }

    async fn open_with(dir: tempfile::TempDir, clock: ManualClock, config: EngineConfig) -> Self {
        let store: Store = Store::new(SqliteStore::open(dir.path().join("missive.db")).await.unwrap());
        missive_engine::auth::ensure_workspace(&store).await.unwrap();
        let engine = Engine::start(store, Arc::new(clock.clone()), config)
            .await
            .unwrap();
        let journeys = Journeys::new(engine.clone());
        Harness {
            dir,
            clock,
            engine,
            journeys,
        }
    }

    async fn restart(self) -> Self {
        drop(self.journeys);
        self.engine.shutdown().await;
        Self::open(self.dir, self.clock).await
    }

    async fn track(&self, user: &str, event: &str, properties: Value) {
        let e = validate_message(
            json!({"type": "track", "userId": user, "event": event, "properties": properties,
                   "timestamp": self.clock.now().to_rfc3339()}),
            None,
            None,
            self.clock.now(),
        )
        .unwrap();
        self.engine.ingest(vec![e]).await.unwrap();
    }

    async fn setup(&self, journey: Value) {
        let content = ContentService::new(self.engine.store().clone(), ContentConfig::default());
        let template: StoredTemplate = serde_json::from_value(json!({
            "subject": "Your cart", "layout": "html", "body": "<p>{{ event.properties.cart_id }}</p>"
        }))
        .unwrap();
        content.save_template("cart", template, start()).await.unwrap();
        let def: JourneyDef = serde_json::from_value(journey).unwrap();
        self.journeys.save("cart-recovery", def, start()).await.unwrap();
    }

    async fn outbox(&self, user: &str) -> Vec<missive_store::OutboxMessage> {
        self.engine.sync().await.unwrap();
        let key = missive_engine::profiles::ProfileKey::parse(user);
        let Some(id) = missive_engine::profiles::resolve_key(self.engine.store(), &key)
            .await
            .unwrap()
        else {
            return vec![];
        };
        self.engine.store().delivery().outbox_of(&id, 100).await.unwrap()
    }

    fn advance(&self, minutes: i64) {
        self.clock.advance(TimeDelta::minutes(minutes));
    }
}

fn cart_recovery() -> Value {
    json!({
        "trigger": {"event": "Product Added", "conditions": [{"path": "properties.cart_id", "op": "exists"}]},
        "key": "properties.cart_id",
        "steps": [
            {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "match_key": true,
             "timeout": "1h", "on_event": "exit"},
            {"id": "send", "type": "send", "template": "cart"}
        ]
    })
}

#[tokio::test]
async fn an_abandoned_cart_gets_one_email_after_the_hour() {
    let h = Harness::new().await;
    h.setup(cart_recovery()).await;
    h.track(
        "ann",
        "Product Added",
        json!({"cart_id": "c1", "product_id": "sku-1"}),
    )
    .await;
    let stats = h.journeys.run_pending().await.unwrap();
    assert_eq!((stats.started, stats.sends), (1, 0));

    h.advance(59);
    h.journeys.run_pending().await.unwrap();
    assert!(h.outbox("ann").await.is_empty(), "nothing before the hour");

    h.advance(2);
    let stats = h.journeys.run_pending().await.unwrap();
    assert_eq!(stats.sends, 1);
    let sent = h.outbox("ann").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, OutboxStatus::Queued);
    assert_eq!(sent[0].template, "cart");
    assert_eq!(sent[0].context["event"]["properties"]["cart_id"], "c1");
    assert_eq!(sent[0].source.to_string(), "journey:cart-recovery");

    // More passes change nothing.
    h.advance(120);
    h.journeys.run_pending().await.unwrap();
    assert_eq!(h.outbox("ann").await.len(), 1);
    let instances = h
        .engine
        .store()
        .delivery()
        .journey_instances("cart-recovery", 10)
        .await
        .unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].status, InstanceStatus::Completed);
}

#[tokio::test]
async fn a_purchase_of_that_cart_within_the_hour_ends_the_journey() {
    let h = Harness::new().await;
    h.setup(cart_recovery()).await;
    h.track("bob", "Product Added", json!({"cart_id": "c7"})).await;
    h.track("bob", "Product Added", json!({"cart_id": "c8"})).await;
    // The same cart again while its instance is active: no second instance.
    h.track("bob", "Product Added", json!({"cart_id": "c7"})).await;
    h.journeys.run_pending().await.unwrap();
    assert_eq!(
        h.engine
            .store()
            .delivery()
            .journey_instances("cart-recovery", 10)
            .await
            .unwrap()
            .len(),
        2
    );

    h.advance(30);
    h.track("bob", "Order Completed", json!({"cart_id": "c7", "revenue": 40}))
        .await;
    h.journeys.run_pending().await.unwrap();
    h.advance(60);
    h.journeys.run_pending().await.unwrap();
    let sent = h.outbox("bob").await;
    assert_eq!(sent.len(), 1, "only the cart that was not bought");
    assert_eq!(sent[0].context["event"]["properties"]["cart_id"], "c8");
}

#[tokio::test]
async fn a_restart_in_the_middle_of_the_journey_changes_nothing() {
    let h = Harness::new().await;
    h.setup(cart_recovery()).await;
    h.track("cy", "Product Added", json!({"cart_id": "c1"})).await;
    h.track("dee", "Product Added", json!({"cart_id": "c2"})).await;
    h.journeys.run_pending().await.unwrap();
    h.advance(20);
    h.track("dee", "Order Completed", json!({"cart_id": "c2"})).await;
    // Stop before the runner has seen the purchase, and again after the hour has passed.
    let h = h.restart().await;
    h.advance(50);
    let h = h.restart().await;
    h.journeys.run_pending().await.unwrap();
    h.journeys.run_pending().await.unwrap();
    assert_eq!(h.outbox("cy").await.len(), 1);
    assert!(h.outbox("dee").await.is_empty());
    let h = h.restart().await;
    h.advance(600);
    h.journeys.run_pending().await.unwrap();
    assert_eq!(h.outbox("cy").await.len(), 1, "no step repeats after a restart");
}

#[tokio::test]
async fn branches_read_the_profile_at_the_step() {
    let h = Harness::new().await;
    h.setup(json!({
        "trigger": {"event": "Signed Up"},
        "steps": [
            {"id": "buyer", "type": "branch", "condition": "orders.count >= 1", "then": "send", "else": "later"},
            {"id": "later", "type": "wait", "duration": "1d"},
            {"id": "ab", "type": "split", "paths": [{"weight": 1, "next": "send"}, {"weight": 1, "next": "exit"}]},
            {"id": "send", "type": "send", "template": "cart"}
        ]
    }))
    .await;
    h.track("buyer", "Order Completed", json!({"revenue": 10})).await;
    h.track("buyer", "Signed Up", json!({})).await;
    h.track("browser", "Signed Up", json!({})).await;
    h.journeys.run_pending().await.unwrap();
    assert_eq!(h.outbox("buyer").await.len(), 1, "a buyer is sent at once");
    assert!(h.outbox("browser").await.is_empty(), "a non-buyer waits a day");
    h.advance(24 * 60);
    let stats = h.journeys.run_pending().await.unwrap();
    assert_eq!(stats.woken, 1);
}

#[tokio::test]
async fn bounce_reports_in_a_maildir_are_applied_once() {
    let h = Harness::new().await;
    let maildir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(maildir.path().join("new")).unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../delivery/tests/fixtures");
    std::fs::copy(
        fixtures.join("postfix-dsn-remote-5.1.1-and-4.2.2.eml"),
        maildir.path().join("new/1.eml"),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("arf-abuse-with-original-message.eml"),
        maildir.path().join("new/2.eml"),
    )
    .unwrap();
    std::fs::write(
        maildir.path().join("new/3.eml"),
        "Subject: out of office\r\n\r\nBack Monday.\r\n",
    )
    .unwrap();
    let store = h.engine.store();
    let pass = missive_sending::bounces::read_mailbox(&h.engine, b"key", maildir.path(), start())
        .await
        .unwrap();
    assert_eq!((pass.reports, pass.ignored, pass.suppressed), (2, 1, 2));
    let hash = missive_sending::policy::address_hash(b"key", "no.such.person@gmail.com");
    assert_eq!(
        store
            .delivery()
            .suppression(&hash)
            .await
            .unwrap()
            .map(|s| s.reason)
            .as_deref(),
        Some("hard_bounce")
    );
    assert_eq!(std::fs::read_dir(maildir.path().join("new")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(maildir.path().join("cur")).unwrap().count(), 3);
    let again = missive_sending::bounces::read_mailbox(&h.engine, b"key", maildir.path(), start())
        .await
        .unwrap();
    assert_eq!(again, missive_sending::bounces::MailboxPass::default());
}

#[tokio::test]
async fn entering_a_segment_starts_a_journey_once_per_entry() {
    let h = Harness::new().await;
    let content = ContentService::new(h.engine.store().clone(), ContentConfig::default());
    let template: StoredTemplate =
        serde_json::from_value(json!({"subject": "Welcome to gold", "layout": "html", "body": "<p>hi</p>"}))
            .unwrap();
    content.save_template("gold", template, start()).await.unwrap();
    let tier = missive_core::schema::FieldKey::trait_("tier");
    missive_engine::schema::declare(
        h.engine.store(),
        tier,
        Some(missive_core::schema::FieldType::String),
        start(),
    )
    .await
    .unwrap();
    missive_engine::segments::save_segment(&h.engine, "gold", "traits.tier == \"gold\"", None)
        .await
        .unwrap();
    let def: JourneyDef = serde_json::from_value(json!({
        "trigger": {"segment": "gold"},
        "steps": [{"id": "welcome", "type": "send", "template": "gold"}]
    }))
    .unwrap();
    h.journeys.save("gold-welcome", def, start()).await.unwrap();
    drop(content);

    let identify = |tier: &str| {
        validate_message(
            json!({"type": "identify", "userId": "gina", "traits": {"tier": tier}}),
            None,
            None,
            start(),
        )
        .unwrap()
    };
    h.engine.ingest(vec![identify("gold")]).await.unwrap();
    h.engine.sync().await.unwrap();
    h.journeys.run_pending().await.unwrap();
    h.journeys.run_pending().await.unwrap();
    assert_eq!(h.outbox("gina").await.len(), 1);

    // Leaving and entering again is a new entry.
    h.engine.ingest(vec![identify("silver")]).await.unwrap();
    h.engine.sync().await.unwrap();
    h.engine.ingest(vec![identify("gold")]).await.unwrap();
    h.engine.sync().await.unwrap();
    let h = h.restart().await;
    h.journeys.run_pending().await.unwrap();
    assert_eq!(h.outbox("gina").await.len(), 2);
}

#[tokio::test]
async fn a_loop_through_a_wait_stops_at_the_send_cap_of_its_instance() {
    let h = Harness::new().await;
    h.setup(json!({
        "trigger": {"event": "Product Added"},
        "class": "transactional",
        "max_sends_per_instance": 3,
        "steps": [
            {"id": "send", "type": "send", "template": "cart"},
            {"id": "wait", "type": "wait", "duration": "1s", "next": "send"}
        ]
    }))
    .await;
    h.track("ann", "Product Added", json!({"cart_id": "c1"})).await;
    for _ in 0..20 {
        h.journeys.run_pending().await.unwrap();
        h.clock.advance(TimeDelta::seconds(2));
    }
    assert_eq!(h.outbox("ann").await.len(), 3);
}

#[tokio::test]
async fn a_wait_until_a_local_time_and_the_date_filter_use_the_same_default_zone() {
    let config = EngineConfig {
        default_time_zone: chrono_tz::Tz::America__New_York,
        ..EngineConfig::default()
    };
    let h = Harness::open_with(tempfile::tempdir().unwrap(), ManualClock::new(start()), config).await;
    h.setup(json!({
        "trigger": {"event": "Product Added"},
        "class": "transactional",
        "steps": [
            {"id": "morning", "type": "wait", "until_time": "09:00"},
            {"id": "send", "type": "send", "template": "cart"}
        ]
    }))
    .await;
    // 10:00 UTC is 05:00 in New York: the wait ends at 09:00 there, 14:00 UTC.
    h.track("ann", "Product Added", json!({"cart_id": "c1"})).await;
    h.journeys.run_pending().await.unwrap();
    let instances = h
        .engine
        .store()
        .delivery()
        .journey_instances("cart-recovery", 10)
        .await
        .unwrap();
    assert_eq!(
        instances[0].wake_at.map(|t| t.to_rfc3339()),
        Some("2026-11-28T14:00:00+00:00".into())
    );
    // The `date` filter reads the same zone for the same person.
    let content = ContentService::new(h.engine.store().clone(), ContentConfig::default());
    let template: StoredTemplate = serde_json::from_value(json!({
        "subject": "{{ 'now' | date: '%H:%M %Z' }}", "layout": "html", "body": "<p>x</p>", "marketing": false
    }))
    .unwrap();
    content.save_template("clock", template, start()).await.unwrap();
    let preview = content
        .preview(&h.engine, "clock", "ann", Default::default())
        .await
        .unwrap();
    assert_eq!(preview.email.subject, "05:00 EST");
}
