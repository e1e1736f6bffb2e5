//! From event to inbox against a real SMTP server: Debian's postfix in local-only mode
//! (`.ci/run` installs it). `MISSIVE_TEST_SMTP` names it (host:port) and
//! `MISSIVE_TEST_MAILBOX` a local user whose mbox (/var/mail/USER) the test reads; without
//! them the test says so and does nothing, and CI sets both.

use std::time::Duration;

use chrono::TimeDelta;
use reqwest::Method;
use serde_json::json;

use crate::support::{Delivery, TestApp};

fn postfix() -> Option<(String, String)> {
    match (
        std::env::var("MISSIVE_TEST_SMTP"),
        std::env::var("MISSIVE_TEST_MAILBOX"),
    ) {
        (Ok(smtp), Ok(user)) => Some((smtp, user)),
        _ => None,
    }
}

/// Waits for postfix's local delivery (asynchronous, outside the test's control) to put the
/// message with `message_id` in the mbox, and returns it.
async fn delivered(user: &str, message_id: &str) -> Vec<u8> {
    let path = format!("/var/mail/{user}");
    let needle = format!("Message-ID: <{message_id}@example.test>");
    for _ in 0..200 {
        if let Ok(mbox) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&mbox);
            if let Some(at) = text.find(&needle) {
                let start = text[..at].rfind("\nFrom ").map_or(0, |p| p + 1);
                let end = text[at..].find("\nFrom ").map_or(text.len(), |p| at + p + 1);
                // Drop the mbox "From " separator line; keep the message as delivered.
                let message = &text[start..end];
                let body = message.split_once('\n').map_or(message, |(_, rest)| rest);
                return body.replace('\n', "\r\n").into_bytes();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{message_id} did not arrive in {path}");
}

async fn setup(app: &TestApp) {
    let template = json!({
        "subject": "{{ customer.first_name }}, your {{ event.properties.products[0].name }} is waiting",
        "layout": "html",
        "body": "<html><body><p>Hi {{ customer.first_name }}, you left {{ event.properties.products[0].name }} in your cart.</p>\
                 <p><a href=\"https://shop.example/cart/{{ event.properties.cart_id }}\">Back to your cart</a></p>\
                 <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>",
    });
    let (status, res) = app.admin(Method::PUT, "/v1/templates/cart", Some(template)).await;
    assert_eq!(status, 200, "{res}");
    let journey = json!({
        "trigger": {"event": "Product Added"},
        "key": "properties.cart_id",
        "steps": [
            {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "match_key": true,
             "timeout": "1h", "on_event": "exit"},
            {"id": "send", "type": "send", "template": "cart"}
        ]
    });
    let (status, res) = app
        .admin(Method::PUT, "/v1/journeys/cart-recovery", Some(journey))
        .await;
    assert_eq!(status, 200, "{res}");
}

async fn customer(app: &TestApp, user: &str, email: &str) {
    let (status, _) = app
        .post(
            "/v1/identify",
            json!({"userId": user, "traits": {"email": email, "first_name": user, "consent": {"email_marketing": true}}}),
        )
        .await;
    assert_eq!(status, 200);
}

async fn add_to_cart(app: &TestApp, user: &str, cart: &str, product: &str) {
    let (status, _) = app
        .post(
            "/v1/track",
            json!({"userId": user, "event": "Product Added",
                   "properties": {"cart_id": cart, "products": [{"product_id": "sku-1", "name": product}]}}),
        )
        .await;
    assert_eq!(status, 200);
}

async fn run(app: &TestApp) {
    let (status, res) = app.admin(Method::POST, "/v1/journeys/run", None).await;
    assert_eq!(status, 200, "{res}");
    app.state.sender.as_ref().unwrap().run_pending().await.unwrap();
}

async fn messages_of(app: &TestApp, user: &str) -> Vec<missive_store::OutboxMessage> {
    app.sync().await;
    let id = app.profile(user).await["id"].as_str().unwrap().to_string();
    let id = missive_core::ProfileId::parse(&id).unwrap();
    app.engine.store().delivery().outbox_of(&id, 10).await.unwrap()
}

#[tokio::test]
async fn cart_abandonment_from_event_to_postfix_mailbox() {
    let Some((smtp, mailbox)) = postfix() else {
        eprintln!(
            "MISSIVE_TEST_SMTP / MISSIVE_TEST_MAILBOX not set: the postfix end-to-end test does not run"
        );
        return;
    };
    let delivery = Delivery::smtp(&smtp);
    let app = TestApp::spawn_sending(delivery.clone()).await;
    setup(&app).await;
    let inbox = format!("{mailbox}@missive.test");
    customer(&app, "ann", &inbox).await;
    customer(&app, "bob", &inbox).await;
    customer(&app, "carl", "no-such-user-missive-e2e@missive.test").await;
    add_to_cart(&app, "ann", "c-ann", "Trail Jacket").await;
    add_to_cart(&app, "bob", "c-bob", "Rain Boots").await;
    add_to_cart(&app, "carl", "c-carl", "Wool Hat").await;
    run(&app).await;

    // Half an hour in, Bob buys his cart; then the server restarts mid-journey.
    app.clock.advance(TimeDelta::minutes(30));
    let (status, _) = app
        .post("/v1/track", json!({"userId": "bob", "event": "Order Completed", "properties": {"cart_id": "c-bob", "revenue": 80}}))
        .await;
    assert_eq!(status, 200);
    let app = app.restart().await;
    run(&app).await;
    assert!(
        messages_of(&app, "ann").await.is_empty(),
        "nothing before the hour"
    );

    app.clock.advance(TimeDelta::minutes(31));
    run(&app).await;
    let app = app.restart().await;
    run(&app).await;

    // Ann's e-mail arrives once, names her product, is signed and carries one-click unsubscribe.
    let ann = messages_of(&app, "ann").await;
    assert_eq!(ann.len(), 1, "{ann:?}");
    assert_eq!(
        ann[0].status,
        missive_store::OutboxStatus::Sent,
        "{:?}",
        ann[0].detail
    );
    let raw = delivered(&mailbox, &ann[0].id).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("Trail Jacket"), "{text}");
    assert!(
        text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{text}"
    );
    assert!(
        text.contains("List-Unsubscribe: <https://mail.example.test/u/"),
        "{text}"
    );
    let verdict = missive_delivery::verify_dkim(&raw, &[delivery.dns_record()]).unwrap();
    assert!(
        matches!(verdict, missive_delivery::DkimVerdict::Pass { .. }),
        "{verdict:?}"
    );

    // Bob bought within the hour: nothing was sent.
    assert!(messages_of(&app, "bob").await.is_empty());

    // Carl's address does not exist: postfix answers 550 5.1.1, the address is suppressed.
    let carl = messages_of(&app, "carl").await;
    assert_eq!(carl.len(), 1);
    assert_eq!(carl[0].status, missive_store::OutboxStatus::Failed);
    assert!(
        carl[0].detail.as_deref().unwrap_or("").contains("5.1.1"),
        "{:?}",
        carl[0].detail
    );
    let key = app.state.sender.as_ref().unwrap().hash_key().to_vec();
    let hash = missive_sending::policy::address_hash(&key, "no-such-user-missive-e2e@missive.test");
    let suppressed = app
        .engine
        .store()
        .delivery()
        .suppression(&hash)
        .await
        .unwrap()
        .expect("suppressed");
    assert_eq!(suppressed.reason, "hard_bounce");

    // Another cart for Carl is not sent at all now.
    add_to_cart(&app, "carl", "c-carl-2", "Scarf").await;
    run(&app).await;
    app.clock.advance(TimeDelta::minutes(61));
    run(&app).await;
    let carl = messages_of(&app, "carl").await;
    assert_eq!(carl.len(), 2);
    assert!(
        carl.iter()
            .any(|m| m.status == missive_store::OutboxStatus::Skipped
                && m.detail.as_deref() == Some("suppressed: hard_bounce")),
        "{carl:?}"
    );
}
