//! Broadcasts, tracking, one-click unsubscribe and bounce reports, with messages written to a
//! maildir (the embedded default transport).

use chrono::TimeDelta;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Delivery, TestApp};

pub(crate) async fn sending_app() -> (TestApp, tempfile::TempDir) {
    let maildir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_sending(Delivery::maildir(maildir.path())).await;
    let template = json!({
        "subject": "News for {{ customer.first_name }}",
        "layout": "html",
        "body": "<html><body><p>Hello {{ customer.first_name }}</p><a href=\"https://shop.example/sale?x=1&y=2\">Sale</a>\
                 <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></body></html>",
    });
    let (status, res) = app.admin(Method::PUT, "/v1/templates/news", Some(template)).await;
    assert_eq!(status, 200, "{res}");
    (app, maildir)
}

pub(crate) async fn customers(app: &TestApp, n: usize, consent: bool) {
    for i in 0..n {
        let traits = json!({"email": format!("c{i}@example.com"), "first_name": format!("C{i}"), "plan": "pro",
                            "consent": {"email_marketing": consent}});
        let (status, _) = app
            .post(
                "/v1/identify",
                json!({"userId": format!("c{i}"), "traits": traits}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let segment = json!({"name": "pro", "expression": "traits.plan == \"pro\""});
    let (status, res) = app.admin(Method::POST, "/v1/segments", Some(segment)).await;
    assert!(status == 201 || status == 200, "{res}");
}

/// Creates a broadcast of `news` to the `pro` segment and runs one step of it.
pub(crate) async fn broadcast_news(app: &TestApp) -> Value {
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "news", "segment": "pro"})),
        )
        .await;
    assert_eq!(status, 201, "{res}");
    step(app).await
}

pub(crate) async fn step(app: &TestApp) -> Value {
    let (status, res) = app.admin(Method::POST, "/v1/broadcasts/run", None).await;
    assert_eq!(status, 200, "{res}");
    let stats = app.state.sender.as_ref().unwrap().run_pending().await.unwrap();
    json!({"queued": res["queued"], "sent": stats.sent, "skipped": stats.skipped})
}

pub(crate) fn maildir_messages(root: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root.join("new"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn a_broadcast_is_throttled_and_can_be_paused_resumed_and_cancelled() {
    let (app, maildir) = sending_app().await;
    customers(&app, 6, true).await;
    let (status, b) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "news", "segment": "pro", "rate_per_second": 1})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(
        (b["total"].as_u64(), b["state"].as_str()),
        (Some(6), Some("scheduled"))
    );
    let id = b["id"].as_str().unwrap().to_string();

    // One per second, queued at most two seconds ahead: the first step sends one.
    let s = step(&app).await;
    assert_eq!(
        (s["queued"].as_u64(), s["sent"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    let (_, p) = app
        .admin(Method::POST, &format!("/v1/broadcasts/{id}/pause"), None)
        .await;
    assert_eq!(p["state"], "paused");
    app.clock.advance(TimeDelta::seconds(30));
    let before = maildir_messages(maildir.path()).len();
    let s = step(&app).await;
    assert_eq!(s["queued"], 0, "a paused broadcast queues nothing");
    assert_eq!(s["sent"], 0, "and what it had queued is held");
    assert_eq!(maildir_messages(maildir.path()).len(), before);
    let (status, _) = app
        .admin(Method::POST, &format!("/v1/broadcasts/{id}/pause"), None)
        .await;
    assert_eq!(status, 409);

    app.admin(Method::POST, &format!("/v1/broadcasts/{id}/resume"), None)
        .await;
    for _ in 0..8 {
        app.clock.advance(TimeDelta::seconds(1));
        step(&app).await;
    }
    let (_, p) = app.get(&format!("/v1/broadcasts/{id}")).await;
    assert_eq!(p["state"], "completed", "{p}");
    assert_eq!(
        (p["queued"].as_u64(), p["messages"]["sent"].as_u64()),
        (Some(6), Some(6)),
        "{p}"
    );
    assert_eq!(maildir_messages(maildir.path()).len(), 6);

    // A cancelled broadcast skips what it had queued.
    let (_, b) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "news", "segment": "pro", "rate_per_second": 1})),
        )
        .await;
    let id = b["id"].as_str().unwrap().to_string();
    app.admin(Method::POST, "/v1/broadcasts/run", None).await;
    let (_, p) = app
        .admin(Method::POST, &format!("/v1/broadcasts/{id}/cancel"), None)
        .await;
    assert_eq!(p["state"], "cancelled");
    assert_eq!(
        (
            p["messages"]["queued"].as_u64(),
            p["messages"]["skipped"].as_u64()
        ),
        (Some(0), Some(2)),
        "{p}"
    );
    app.clock.advance(TimeDelta::seconds(60));
    step(&app).await;
    assert_eq!(maildir_messages(maildir.path()).len(), 6, "nothing more went out");
}

/// Creates a broadcast of `news` to the `pro` segment; returns its id.
async fn create_broadcast(app: &TestApp) -> String {
    let (status, b) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "news", "segment": "pro"})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    b["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_message_not_sent_says_why_per_broadcast_profile_and_in_metrics() {
    let (app, maildir) = sending_app().await;
    customers(&app, 3, true).await;
    let traits = json!({"email": "c3@example.com", "plan": "pro", "consent": {"email_marketing": false}});
    let (status, _) = app
        .post("/v1/identify", json!({"userId": "c3", "traits": traits}))
        .await;
    assert_eq!(status, 200);
    let id = create_broadcast(&app).await;
    let s = step(&app).await;
    assert_eq!(
        (s["sent"].as_u64(), s["skipped"].as_u64()),
        (Some(3), Some(1)),
        "{s}"
    );

    let (status, page) = app.get(&format!("/v1/broadcasts/{id}/messages")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["counts"]["sent"], 3, "{page}");
    assert_eq!(
        page["counts"]["skipped_by_reason"],
        json!({"no_consent": 1}),
        "{page}"
    );
    let skipped: Vec<&Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1, "{page}");
    assert_eq!(skipped[0]["reason"], "no_consent");

    // Pages of two, newest first, each message once.
    let (_, first) = app.get(&format!("/v1/broadcasts/{id}/messages?limit=2")).await;
    let next = first["next"].as_str().expect("a next page").to_string();
    let (_, second) = app
        .get(&format!("/v1/broadcasts/{id}/messages?limit=2&before={next}"))
        .await;
    let ids = |p: &Value| -> Vec<String> {
        p["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut all = [ids(&first), ids(&second)].concat();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4, "{first} {second}");
    let (status, err) = app
        .get(&format!("/v1/broadcasts/{id}/messages?before=nonsense"))
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_cursor")),
        "{err}"
    );

    // The person's own list says the same.
    let (status, mine) = app.get("/v1/profiles/c3/messages").await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["messages"][0]["state"], "skipped", "{mine}");
    assert_eq!(mine["messages"][0]["reason"], "no_consent");
    assert_eq!(mine["messages"][0]["source"], format!("broadcast:{id}"));

    // Both parts' links go through click tracking: the shop's URL is in neither as written.
    let sent = unfold_qp(&maildir_messages(maildir.path())[0]);
    assert!(sent.contains("text/plain") && sent.contains("/t/c/"), "{sent}");
    assert!(
        !sent.contains("https://shop.example/sale"),
        "an untracked link: {sent}"
    );

    let metrics = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "missive_messages_skipped_total{reason=\"no_consent\"}",
        "missive_messages_sent_total{transport=\"maildir\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }
}

#[tokio::test]
async fn a_message_deferred_by_quiet_hours_is_decided_again_when_they_are_turned_off() {
    let maildir = tempfile::tempdir().unwrap();
    let mut delivery = Delivery::maildir(maildir.path());
    let hm = |s: &str| missive_core::zone::parse_time_of_day(s).unwrap();
    // The test clock reads 12:00 UTC, inside these quiet hours.
    delivery.quiet_hours = Some((hm("11:00"), hm("13:00")));
    let app = TestApp::spawn_sending(delivery.clone()).await;
    let template = json!({"subject": "News", "layout": "html",
                          "body": "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>"});
    let (status, res) = app.admin(Method::PUT, "/v1/templates/news", Some(template)).await;
    assert_eq!(status, 200, "{res}");
    customers(&app, 1, true).await;
    let id = create_broadcast(&app).await;
    let s = step(&app).await;
    assert_eq!(s["sent"], 0, "{s}");
    let (_, page) = app.get(&format!("/v1/broadcasts/{id}/messages")).await;
    assert_eq!(page["messages"][0]["state"], "deferred", "{page}");
    assert_eq!(page["messages"][0]["reason"], "quiet_hours");
    assert_eq!(page["messages"][0]["next_attempt_at"], "2026-03-02T13:00:00Z");
    assert_eq!(
        page["counts"]["deferred_by_reason"],
        json!({"quiet_hours": 1}),
        "{page}"
    );

    // Quiet hours turned off: at the restart the message is decided again, and goes now.
    delivery.quiet_hours = None;
    let app = app.restart_with(delivery).await;
    let stats = app.state.sender.as_ref().unwrap().run_pending().await.unwrap();
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert_eq!(maildir_messages(maildir.path()).len(), 1);
}

#[tokio::test]
async fn a_journeys_messages_are_listed_per_step_with_their_reasons() {
    let (app, _maildir) = sending_app().await;
    let journey = json!({
        "trigger": {"event": "Signed Up"},
        "steps": [{"id": "hello", "type": "send", "template": "news"}]
    });
    let (status, res) = app
        .admin(Method::PUT, "/v1/journeys/welcome", Some(journey))
        .await;
    assert_eq!(status, 200, "{res}");
    for (user, consent) in [("ann", true), ("bob", false)] {
        let traits = json!({"email": format!("{user}@example.com"), "first_name": user,
                            "consent": {"email_marketing": consent}});
        app.post("/v1/identify", json!({"userId": user, "traits": traits}))
            .await;
        let (status, _) = app
            .post("/v1/track", json!({"userId": user, "event": "Signed Up"}))
            .await;
        assert_eq!(status, 200);
    }
    let (status, res) = app.admin(Method::POST, "/v1/journeys/run", None).await;
    assert_eq!(status, 200, "{res}");
    app.state.sender.as_ref().unwrap().run_pending().await.unwrap();

    let (status, page) = app.get("/v1/journeys/welcome/messages?step=hello").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"].as_array().unwrap().len(), 2, "{page}");
    assert!(
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["step"] == "hello")
    );
    assert_eq!(
        (
            page["counts"]["sent"].as_u64(),
            page["counts"]["skipped"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(
        page["counts"]["skipped_by_reason"],
        json!({"no_consent": 1}),
        "{page}"
    );
    let (_, none) = app.get("/v1/journeys/welcome/messages?step=other").await;
    assert_eq!(none["messages"], json!([]), "{none}");
    let (status, _) = app.get("/v1/journeys/nope/messages").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn health_lists_what_in_the_sending_set_up_is_still_a_default() {
    // The test sender is branded and signs for example.test, but writes to a maildir.
    let (app, _maildir) = sending_app().await;
    let (status, health) = app.get("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["warnings"].as_array().map(Vec::len), Some(1), "{health}");
    assert_eq!(health["warnings"][0]["code"], "no_relay", "{health}");
    assert!(
        health["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("delivery.smtp")
    );
    // A server that does not send has nothing to say about sending.
    let quiet = TestApp::spawn().await;
    let (_, health) = quiet.get("/health").await;
    assert!(health.get("warnings").is_none(), "{health}");
}

#[tokio::test]
async fn a_cart_journey_e_mails_the_cart_its_segment_spec_events_made() {
    let (app, maildir) = sending_app().await;
    let template = json!({"subject": "Your cart", "layout": "html",
        "body": "<p>{% for item in journey.cart.products %}{{ item.name }} x{{ item.quantity }}; {% endfor %}\
                 total {{ journey.cart.value | money: journey.cart.currency }}</p>\
                 <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>"});
    let (status, res) = app.admin(Method::PUT, "/v1/templates/cart", Some(template)).await;
    assert_eq!(status, 200, "{res}");
    let journey = json!({
        "trigger": {"event": "Product Added"}, "key": "properties.cart_id",
        "steps": [
            {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "match_key": true,
             "timeout": "1h", "on_event": "exit"},
            {"id": "send", "type": "send", "template": "cart"}]
    });
    let (status, res) = app
        .admin(Method::PUT, "/v1/journeys/cart-recovery", Some(journey))
        .await;
    assert_eq!(status, 200, "{res}");
    let traits = json!({"email": "ann@example.com", "consent": {"email_marketing": true}});
    app.post("/v1/identify", json!({"userId": "ann", "traits": traits}))
        .await;
    for (event, props) in [
        (
            "Product Added",
            json!({"cart_id": "c1", "product_id": "sku-1", "name": "Jacket", "price": 36.5, "currency": "EUR"}),
        ),
        (
            "Product Added",
            json!({"cart_id": "c1", "product_id": "sku-5", "name": "Boots", "price": 66.5, "quantity": 2}),
        ),
        (
            "Product Added",
            json!({"cart_id": "c2", "product_id": "sku-9", "name": "Hat", "price": 10}),
        ),
        (
            "Product Removed",
            json!({"cart_id": "c1", "product_id": "sku-5", "quantity": 1}),
        ),
    ] {
        let (status, _) = app
            .post(
                "/v1/track",
                json!({"userId": "ann", "event": event, "properties": props}),
            )
            .await;
        assert_eq!(status, 200);
    }
    app.admin(Method::POST, "/v1/journeys/run", None).await;
    app.clock.advance(TimeDelta::minutes(61));
    app.admin(Method::POST, "/v1/journeys/run", None).await;
    app.state.sender.as_ref().unwrap().run_pending().await.unwrap();

    let messages: Vec<String> = maildir_messages(maildir.path())
        .iter()
        .map(|m| unfold_qp(m))
        .collect();
    assert_eq!(messages.len(), 2, "one e-mail per cart");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Jacket x1; Boots x1; total =E2=82=AC103.00")
                || m.contains("Jacket x1; Boots x1; total €103.00")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("Hat x1; total")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_test_send_goes_now_to_the_tester_says_what_it_bypassed_and_never_skips_suppression() {
    let maildir = tempfile::tempdir().unwrap();
    let mut delivery = Delivery::maildir(maildir.path());
    let hm = |s: &str| missive_core::zone::parse_time_of_day(s).unwrap();
    delivery.quiet_hours = Some((hm("11:00"), hm("13:00"))); // the clock reads 12:00
    let app = TestApp::spawn_sending(delivery).await;
    let template = json!({"subject": "News for {{ customer.first_name }}", "layout": "html",
        "body": "<p>Hi {{ customer.first_name }}</p><a href=\"https://shop.example/sale\">Sale</a>\
                 <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>"});
    let (status, res) = app.admin(Method::PUT, "/v1/templates/news", Some(template)).await;
    assert_eq!(status, 200, "{res}");
    customers(&app, 1, false).await;

    let (status, sent) = app
        .admin(
            Method::POST,
            "/v1/templates/news/test",
            Some(json!({"to": "me@shop.example", "profile": "c0"})),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        sent["bypassed"],
        json!([
            "consent",
            "topic",
            "frequency_preference",
            "frequency_cap",
            "quiet_hours"
        ]),
        "{sent}"
    );
    assert_eq!(sent["tracked"], false);
    let mail = unfold_qp(&maildir_messages(maildir.path())[0]);
    assert!(mail.contains("Subject: [test] News for C0"), "{mail}");
    assert!(mail.contains("To: me@shop.example"), "{mail}");
    assert!(
        mail.contains("https://shop.example/sale") && !mail.contains("/t/c/"),
        "untracked: {mail}"
    );
    // Not a customer's message: nothing is queued or counted for C0.
    let (_, mine) = app.get("/v1/profiles/c0/messages").await;
    assert_eq!(mine["messages"], json!([]), "{mine}");

    // The suppression list always applies.
    let sender = app.state.sender.as_ref().unwrap();
    app.engine
        .store()
        .delivery()
        .suppress(missive_store::Suppression {
            address_hash: missive_sending::policy::address_hash(sender.hash_key(), "me@shop.example"),
            reason: "complaint".into(),
            detail: String::new(),
            at: crate::support::start_time(),
        })
        .await
        .unwrap();
    let (status, err) = app
        .admin(
            Method::POST,
            "/v1/templates/news/test",
            Some(json!({"to": "me@shop.example"})),
        )
        .await;
    assert_eq!((status, err["code"].as_str()), (409, Some("suppressed")), "{err}");
    assert_eq!(maildir_messages(maildir.path()).len(), 1);
    // Not to a customer who has not consented: a test send is for the tester.
    let (status, err) = app
        .admin(
            Method::POST,
            "/v1/templates/news/test",
            Some(json!({"to": "c0@example.com"})),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (409, Some("recipient_not_consented")),
        "{err}"
    );
    let (status, err) = app
        .admin(
            Method::POST,
            "/v1/templates/news/test",
            Some(json!({"to": "not an address"})),
        )
        .await;
    assert_eq!((status, err["field"].as_str()), (400, Some("to")), "{err}");
    let (status, _) = app
        .admin(
            Method::POST,
            "/v1/templates/news/test",
            Some(json!({"to": "a@shop.example", "profile": "nobody"})),
        )
        .await;
    assert_eq!(status, 404);
}

pub(crate) fn token_after(message: &str, prefix: &str) -> String {
    let at = message
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} not in {message}"));
    message[at + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Undoes quoted-printable soft line breaks and `=3D`, enough to read URLs back.
pub(crate) fn unfold_qp(s: &str) -> String {
    s.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
}

#[tokio::test]
async fn clicks_opens_and_purchases_are_tracked_and_forged_links_refused() {
    let (app, maildir) = sending_app().await;
    customers(&app, 1, true).await;
    app.admin(
        Method::POST,
        "/v1/broadcasts",
        Some(json!({"template": "news", "segment": "pro"})),
    )
    .await;
    step(&app).await;
    let messages = maildir_messages(maildir.path());
    assert_eq!(messages.len(), 1);
    let message = unfold_qp(&messages[0]);
    let click = token_after(&message, "https://mail.example.test/t/c/");
    let open = token_after(&message, "https://mail.example.test/t/o/");

    // The link is a product's page: the click counts as an interaction with the product.
    let (status, _) = app
        .admin(
            Method::POST,
            "/v1/catalog/products",
            Some(json!([{"id": "sale-1", "title": "The sale", "url": "https://shop.example/sale"}])),
        )
        .await;
    assert_eq!(status, 200);
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirect
        .get(format!("{}/t/c/{click}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 302);
    assert_eq!(res.headers()["location"], "https://shop.example/sale?x=1&y=2");
    let mut forged = click.clone();
    forged.replace_range(5..6, if &click[5..6] == "A" { "B" } else { "A" });
    let res = no_redirect
        .get(format!("{}/t/c/{forged}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status().as_u16(),
        404,
        "a tampered link is refused, not followed"
    );
    let res = no_redirect
        .get(format!("{}/t/o/{open}.gif", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "image/gif");

    app.clock.advance(TimeDelta::hours(2));
    app.post(
        "/v1/track",
        json!({"userId": "c0", "event": "Order Completed", "properties": {"revenue": 42.5}}),
    )
    .await;
    app.sync().await;
    let events = app.get("/v1/profiles/c0/events?limit=20").await.1;
    let names: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        names.contains(&"Email Link Clicked") && names.contains(&"Email Opened"),
        "{names:?}"
    );
    let clicked = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "Email Link Clicked")
        .unwrap();
    assert_eq!(clicked["body"]["properties"]["product_id"], "sale-1", "{clicked}");
    // The relay's acceptance is recorded once, as `Email Delivered` naming the message.
    let delivered: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "Email Delivered")
        .collect();
    assert_eq!(delivered.len(), 1, "{names:?}");
    let id = app
        .state
        .engine
        .store()
        .delivery()
        .due_outbox(chrono::DateTime::<chrono::Utc>::MAX_UTC, 1)
        .await
        .unwrap();
    assert!(id.is_empty());
    let profile_id = missive_core::ProfileId::parse(app.profile("c0").await["id"].as_str().unwrap()).unwrap();
    let sent = app
        .engine
        .store()
        .delivery()
        .outbox_of(&profile_id, 1)
        .await
        .unwrap();
    assert_eq!(
        delivered[0]["body"]["properties"]["message_id"],
        sent[0].id.as_str()
    );
    assert_eq!(delivered[0]["body"]["properties"]["template"], "news");
    let (status, report) = app.get(&format!("/v1/messages/{}", sent[0].id)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            report["opens"].as_u64(),
            report["clicks"].as_u64(),
            report["conversions"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(report["revenue"], 42.5);
}

#[tokio::test]
async fn one_click_unsubscribe_withdraws_marketing_consent() {
    let (app, maildir) = sending_app().await;
    customers(&app, 1, true).await;
    app.admin(
        Method::POST,
        "/v1/broadcasts",
        Some(json!({"template": "news", "segment": "pro"})),
    )
    .await;
    step(&app).await;
    let message = unfold_qp(&maildir_messages(maildir.path())[0]);
    assert!(message.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    let token = token_after(&message, "List-Unsubscribe: <https://mail.example.test/u/");
    let res = app
        .client
        .post(format!("{}/u/{token}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    app.sync().await;
    let consent = &app.profile("c0").await["consent"]["email_marketing"];
    assert_eq!(consent["granted"], false);
    assert_eq!(consent["current"]["source"], "unsubscribe-link");
    assert_eq!(consent["history"][0]["granted"], true);

    app.admin(
        Method::POST,
        "/v1/broadcasts",
        Some(json!({"template": "news", "segment": "pro"})),
    )
    .await;
    let s = step(&app).await;
    assert_eq!(
        (s["sent"].as_u64(), s["skipped"].as_u64()),
        (Some(0), Some(1)),
        "{s}"
    );
    let res = app
        .client
        .post(format!("{}/u/not-a-token", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
}

#[tokio::test]
async fn bounce_and_complaint_reports_suppress_addresses() {
    let (app, _maildir) = sending_app().await;
    let fixture = |name: &str| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../delivery/tests/fixtures")
                .join(name),
        )
        .unwrap()
    };
    let post = |body: Vec<u8>| {
        app.client
            .post(format!("{}/v1/inbound/reports", app.base))
            .bearer_auth(&app.admin_key)
            .header("content-type", "message/rfc822")
            .body(body)
            .send()
    };
    let res: Value = post(fixture("postfix-dsn-remote-5.1.1-and-4.2.2.eml"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            res["hard_bounces"].as_u64(),
            res["soft_bounces"].as_u64(),
            res["suppressed"].as_u64()
        ),
        (Some(1), Some(0), Some(1)),
        "{res}"
    );
    let res: Value = post(fixture("arf-abuse-with-original-message.eml"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (res["kind"].as_str(), res["suppressed"].as_u64()),
        (Some("complaint"), Some(1)),
        "{res}"
    );
    let key = app.state.sender.as_ref().unwrap().hash_key().to_vec();
    let store = app.engine.store();
    for (address, reason) in [
        ("no.such.person@gmail.com", "hard_bounce"),
        ("grace@mail.example", "complaint"),
    ] {
        let s = store
            .delivery()
            .suppression(&missive_sending::policy::address_hash(&key, address))
            .await
            .unwrap();
        assert_eq!(s.map(|s| s.reason).as_deref(), Some(reason), "{address}");
    }
    // A delay notice is not a bounce; a failure with a 4.x.x status is a soft bounce, and the
    // third suppresses the address.
    let full_box = missive_sending::policy::address_hash(&key, "full.box@outlook.example");
    assert!(store.delivery().suppression(&full_box).await.unwrap().is_none());
    let failed_soft = String::from_utf8(fixture("postfix-dsn-remote-5.1.1-and-4.2.2.eml"))
        .unwrap()
        .replace("Action: delayed", "Action: failed")
        .into_bytes();
    for n in 1..=3 {
        let res: Value = post(failed_soft.clone()).await.unwrap().json().await.unwrap();
        assert_eq!(res["soft_bounces"], 1, "{res}");
        let suppressed = store
            .delivery()
            .suppression(&full_box)
            .await
            .unwrap()
            .map(|s| s.reason);
        assert_eq!(
            suppressed.as_deref(),
            (n == 3).then_some("soft_bounces"),
            "after {n}"
        );
    }
    let res = post(b"hello".to_vec()).await.unwrap();
    assert_eq!(res.status().as_u16(), 400);
}
