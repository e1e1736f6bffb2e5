//! Attacks found by outside tests (issue 12): each test performs one and checks it fails.

use reqwest::Method;
use serde_json::{Value, json};

use crate::sending::{
    broadcast_news, customers, maildir_messages, sending_app, step, token_after, unfold_qp,
};
use crate::support::TestApp;

async fn segment_preview(app: &TestApp, key: &str, expression: &str) -> (u16, Value) {
    let res = app
        .client
        .post(format!("{}/v1/segments/preview", app.base))
        .bearer_auth(key)
        .json(&json!({"expression": expression}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn deeply_nested_segment_expressions_are_refused_and_the_server_stays_up() {
    let app = TestApp::spawn().await;
    let key = app.key_of_role("marketer").await;
    let parens = format!("{}traits.a exists{}", "(".repeat(1_000), ")".repeat(1_000));
    let nots = format!("{}traits.a exists", "not ".repeat(10_000));
    for hostile in [&parens, &nots] {
        let (status, body) = segment_preview(&app, &key, hostile).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "segment_parse_error", "{body}");
        assert!(body["message"].as_str().unwrap().contains("64 levels"), "{body}");
    }
    // A long flat list of alternatives is legitimate and answered.
    // (3,500 distinct traits, first carried by data so that the schema knows them.)
    for chunk in 0..7 {
        let traits: serde_json::Map<String, Value> = (chunk * 500..(chunk + 1) * 500)
            .map(|i| (format!("t{i}"), json!(i)))
            .collect();
        let (status, body) = app
            .post("/v1/identify", json!({"userId": "wide", "traits": traits}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let ors: Vec<String> = (0..3_500).map(|i| format!("traits.t{i} == {i}")).collect();
    let (status, body) = segment_preview(&app, &key, &ors.join(" or ")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .admin(
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "deep", "expression": parens})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let res = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test]
async fn a_saved_segment_that_no_longer_loads_is_disabled_and_never_stops_the_server() {
    let app = TestApp::spawn().await;
    let now = app.engine.clock().now();
    // As if saved by an older version without the depth limit.
    app.engine
        .store()
        .documents()
        .save_segment(missive_store::SegmentRecord {
            name: "bomb".into(),
            expression: format!("{}orders.count > 0{}", "(".repeat(5_000), ")".repeat(5_000)),
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
    let app = app.restart().await;
    let (status, _) = app
        .post(
            "/v1/track",
            json!({"userId": "u1", "event": "Order Completed", "properties": {"revenue": 10}}),
        )
        .await;
    assert_eq!(status, 200);
    app.sync().await;
    assert_eq!(app.profile("u1").await["aggregates"]["orders"]["count"], 1);
    let (status, bomb) = app.get("/v1/segments/bomb").await;
    assert_eq!(status, 200);
    assert!(bomb["disabled"].as_str().unwrap().contains("64 levels"), "{bomb}");
    // Other segments can still be saved while the broken one is there.
    let (status, body) = app
        .admin(
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "buyers", "expression": "orders.count > 0"})),
        )
        .await;
    assert!(status == 200 || status == 201, "{body}");
}

#[tokio::test]
async fn a_journey_branch_nested_too_deeply_is_refused_at_save() {
    let app = TestApp::spawn().await;
    app.admin(
        Method::PUT,
        "/v1/templates/t",
        Some(json!({"subject": "s", "layout": "html", "body": "<html><body>x</body></html>"})),
    )
    .await;
    let condition = format!("{}orders.count > 0{}", "(".repeat(1_000), ")".repeat(1_000));
    let journey = json!({
        "trigger": {"event": "Order Completed"},
        "class": "transactional",
        "steps": [
            {"id": "b", "type": "branch", "condition": condition, "then": "s", "else": "s"},
            {"id": "s", "type": "send", "template": "t"}
        ]
    });
    let (status, body) = app.admin(Method::PUT, "/v1/journeys/deep", Some(journey)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("64 levels"), "{body}");
}

#[tokio::test]
async fn a_future_dated_identify_from_the_public_key_cannot_divert_a_persons_mail() {
    let (app, maildir) = sending_app().await;
    customers(&app, 1, true).await;
    // The attacker knows the user id and the public write key.
    let (status, _) = app
        .post(
            "/v1/identify",
            json!({"userId": "c0", "timestamp": "2999-01-01T00:00:00Z",
                   "traits": {"email": "attacker@evil.test"}}),
        )
        .await;
    assert_eq!(status, 200);
    app.sync().await;
    let p = app.profile("c0").await;
    assert_eq!(p["mailing_address"], "c0@example.com", "{p}");
    assert_eq!(p["traits"]["email"]["value"], "c0@example.com", "{p}");
    assert!(!p["identities"]["emails"].to_string().contains("attacker"), "{p}");
    assert!(
        p["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "email"),
        "{p}"
    );
    broadcast_news(&app).await;
    let mails = maildir_messages(maildir.path());
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("To: c0@example.com"), "{}", mails[0]);
    assert!(!mails[0].contains("attacker@evil.test"));

    // An address first given through an anonymous profile and merged in is no way round it.
    app.post(
        "/v1/track",
        json!({"anonymousId": "evil-anon", "event": "x", "traits": {"email": "attacker2@evil.test"}}),
    )
    .await;
    app.post(
        "/v1/identify",
        json!({"anonymousId": "evil-anon", "userId": "c0"}),
    )
    .await;
    app.sync().await;
    assert_eq!(app.profile("c0").await["mailing_address"], "c0@example.com");

    // The retailer's own server, with a secret server key, may change it.
    let server_key = app.key_of_role("server_write").await;
    assert!(server_key.starts_with("sk_"));
    let res = app
        .client
        .post(format!("{}/v1/identify", app.base))
        .basic_auth(&server_key, Some(""))
        .json(&json!({"userId": "c0", "traits": {"email": "c0.new@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    app.sync().await;
    assert_eq!(app.profile("c0").await["mailing_address"], "c0.new@example.com");
}

async fn unsubscribe_token(app: &TestApp, maildir: &std::path::Path) -> String {
    broadcast_news(app).await;
    let message = unfold_qp(maildir_messages(maildir).last().unwrap());
    token_after(&message, "List-Unsubscribe: <https://mail.example.test/u/")
}

async fn unsubscribe(app: &TestApp, token: &str) -> (u16, String) {
    let res = app
        .client
        .post(format!("{}/u/{token}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn marketing_granted(app: &TestApp) -> bool {
    app.sync().await;
    app.profile("c0").await["consent"]["email_marketing"]["granted"] == true
}

#[tokio::test]
async fn a_future_dated_grant_cannot_keep_a_person_from_unsubscribing() {
    let (app, maildir) = sending_app().await;
    customers(&app, 1, true).await;
    let token = unsubscribe_token(&app, maildir.path()).await;
    app.post(
        "/v1/identify",
        json!({"userId": "c0", "timestamp": "2999-01-01T00:00:00Z",
               "traits": {"consent": {"email_marketing": true}}}),
    )
    .await;
    assert!(marketing_granted(&app).await);
    let (status, page) = unsubscribe(&app, &token).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You are unsubscribed"));
    assert!(!marketing_granted(&app).await, "the withdrawal must take effect");
    // The public key cannot grant it back.
    app.post(
        "/v1/identify",
        json!({"userId": "c0", "traits": {"consent": {"email_marketing": true}}}),
    )
    .await;
    assert!(!marketing_granted(&app).await);
    let p = app.profile("c0").await;
    assert!(
        p["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "consent.email_marketing"),
        "{p}"
    );
    let s = step(&app).await;
    assert_eq!(s["sent"], 0, "{s}");
}

#[tokio::test]
async fn the_same_unsubscribe_link_works_again_after_a_resubscribe() {
    let (app, maildir) = sending_app().await;
    customers(&app, 1, true).await;
    let token = unsubscribe_token(&app, maildir.path()).await;
    assert_eq!(unsubscribe(&app, &token).await.0, 200);
    assert!(!marketing_granted(&app).await);
    // Re-subscribed (through the consent API, as a privacy officer or the preference centre).
    let (status, body) = app
        .admin(
            Method::PUT,
            "/v1/profiles/c0/consent",
            Some(json!({"purposes": {"email_marketing": true}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(marketing_granted(&app).await);
    let (status, page) = unsubscribe(&app, &token).await;
    assert_eq!(status, 200);
    assert!(page.contains("You are unsubscribed"));
    assert!(
        !marketing_granted(&app).await,
        "the second withdrawal must take effect"
    );
}

#[tokio::test]
async fn analysts_see_only_declared_traits_with_personal_values_removed_at_every_depth() {
    let app = TestApp::spawn().await;
    let analyst = app.key_of_role("analyst").await;
    let traits = json!({
        "email": "ann@example.com",
        "contact": {"email": "ann.contact@example.com"},
        "emails": ["ann.other@example.com"],
        "display": "Ann Smith <ann.display@example.com>",
        "full_name": "Ann Smith", "surname": "Smith", "Address": "1 High St",
        "Phone": "+44 20 7946 0958", "iban": "GB82WEST12345698765432", "gender": "f",
        "favourite_colour": "teal", "lifetime_orders": 12,
        "tier": "gold",
        "profile_meta": {"owner": {"email": "ann.meta@example.com", "Full_Name": "Ann"}, "visits": 3,
                         "tags": ["vip", "ann.tag@example.com"]}
    });
    app.post("/v1/identify", json!({"userId": "ann", "traits": traits}))
        .await;
    app.sync().await;
    let res = app
        .client
        .get(format!("{}/v1/analytics/profiles", app.base))
        .bearer_auth(&analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    let text = body.to_string();
    for personal in [
        "@example.com",
        "Smith",
        "High St",
        "7946",
        "GB82",
        "\"f\"",
        "teal",
        "Ann",
    ] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    let row = &body["profiles"][0];
    assert_eq!(
        row["traits"],
        json!({"tier": "gold", "profile_meta": {"visits": 3, "tags": ["vip"]}})
    );
}

/// Logs in to the console with `key`; returns the session cookie's value.
async fn console_session(app: &TestApp, client: &reqwest::Client, key: &str) -> String {
    use crate::security::{hidden_csrf, set_cookie};
    let page = client
        .get(format!("{}/console/login", app.base))
        .send()
        .await
        .unwrap();
    let (token, _) = set_cookie(&page, "__Host-missive_login").unwrap();
    let csrf = hidden_csrf(&page.text().await.unwrap());
    let res = client
        .post(format!("{}/console/login", app.base))
        .header("cookie", format!("__Host-missive_login={token}"))
        .form(&[("key", key), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    set_cookie(&res, "__Host-missive_session").unwrap().0
}

#[tokio::test]
async fn revoking_a_key_ends_its_console_sessions_at_once() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let audit_page = |session: String| {
        client
            .get(format!("{}/console/audit", app.base))
            .header("cookie", format!("__Host-missive_session={session}"))
            .send()
    };
    for revoke_in_store in [false, true] {
        let (_, body) = app
            .admin(
                Method::POST,
                "/v1/keys",
                Some(json!({"role": "privacy_officer", "label": "po"})),
            )
            .await;
        let (key, id) = (body["key"].as_str().unwrap(), body["id"].as_str().unwrap());
        let session = console_session(&app, &client, key).await;
        assert_eq!(audit_page(session.clone()).await.unwrap().status().as_u16(), 200);
        if revoke_in_store {
            // As `missive apikey revoke` does from another process.
            let id = missive_core::ApiKeyId::parse(id).unwrap();
            app.engine
                .store()
                .access()
                .revoke_api_key(&id, app.engine.clock().now())
                .await
                .unwrap();
        } else {
            let (status, _) = app.admin(Method::DELETE, &format!("/v1/keys/{id}"), None).await;
            assert_eq!(status, 204);
        }
        let res = audit_page(session).await.unwrap();
        assert_eq!(res.status().as_u16(), 303, "revoked in store: {revoke_in_store}");
        assert_eq!(
            res.headers()["location"],
            "/console/login?next=%2Fconsole%2Faudit",
            "back to the page after logging in"
        );
    }
}

#[tokio::test]
async fn erasure_deletes_the_persons_copies_in_the_local_maildir() {
    let (app, maildir) = sending_app().await;
    customers(&app, 2, true).await;
    broadcast_news(&app).await;
    let mails = maildir_messages(maildir.path());
    assert_eq!(mails.len(), 2);
    let (status, body) = app.admin(Method::DELETE, "/v1/profiles/c0", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["erased"]["mail_copies_deleted"], 1, "{body}");
    let left = maildir_messages(maildir.path());
    assert_eq!(left.len(), 1);
    assert!(left[0].contains("c1@example.com") && !left[0].contains("c0@example.com"));
}
