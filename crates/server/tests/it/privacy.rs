//! Consent through the API, export and erasure.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestApp;

async fn ann(app: &TestApp) {
    let (status, _) = app
        .post(
            "/v1/identify",
            json!({"userId": "ann-42", "messageId": "ann-signup",
                   "traits": {"email": "annabel.lee@example.com", "first_name": "Annabel", "city": "Lyon",
                              "consent": {"email_marketing": true}},
                   "context": {"ip": "198.51.100.7", "userAgent": "Firefox/140",
                               "missive": {"source": "signup-form", "policy_version": "2026-05"}}}),
        )
        .await;
    assert_eq!(status, 200);
    for i in 0..3 {
        app.post(
            "/v1/track",
            json!({"userId": "ann-42", "event": "Product Viewed", "messageId": format!("ann-view-{i}"),
                   "properties": {"product_id": "sku-1", "note": "Annabel's wishlist"}}),
        )
        .await;
    }
}

#[tokio::test]
async fn consent_given_through_the_api_is_recorded_with_its_evidence() {
    let app = TestApp::spawn().await;
    ann(&app).await;
    let (status, body) = app
        .admin(
            Method::PUT,
            "/v1/profiles/ann-42/consent",
            Some(json!({"purposes": {"profiling": true, "email_marketing": false},
                        "source": "call-centre", "policy_version": "2026-06",
                        "ip": "203.0.113.5", "user_agent": "crm/2.1"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let c = &body["consent"];
    assert_eq!(c["profiling"]["granted"], true);
    assert_eq!(c["profiling"]["current"]["source"], "call-centre");
    assert_eq!(c["profiling"]["current"]["policy_version"], "2026-06");
    assert_eq!(c["profiling"]["current"]["ip"], "203.0.113.5");
    assert_eq!(c["email_marketing"]["granted"], false);
    let first = &c["email_marketing"]["history"][0];
    assert_eq!(
        (
            first["granted"].clone(),
            first["source"].clone(),
            first["ip"].clone()
        ),
        (json!(true), json!("signup-form"), json!("198.51.100.7"))
    );
    assert_eq!(first["policy_version"], "2026-05");

    let (status, body) = app
        .admin(
            Method::PUT,
            "/v1/profiles/ann-42/consent",
            Some(json!({"purposes": {"newsletters_by_pigeon": true}})),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_consent")));
    let (status, body) = app
        .post(
            "/v1/identify",
            json!({"userId": "ann-42", "traits": {"consent": {"email_marketing": "yes"}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "traits.consent.email_marketing");
}

#[tokio::test]
async fn third_party_traits_without_consent_are_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    ann(&app).await;
    let broker = json!({"userId": "ann-42", "traits": {"income_band": "C"},
                        "context": {"missive": {"source": "acme-broker", "party": "third"}}});
    app.post("/v1/identify", broker.clone()).await;
    let p = app.profile("ann-42").await;
    assert!(p["traits"].get("income_band").is_none());
    assert_eq!(p["refusals"][0]["name"], "income_band");
    assert_eq!(p["refusals"][0]["reason"], "no third_party_enrichment consent");

    app.admin(
        Method::PUT,
        "/v1/profiles/ann-42/consent",
        Some(json!({"purposes": {"third_party_enrichment": true}})),
    )
    .await;
    app.post("/v1/identify", broker).await;
    let p = app.profile("ann-42").await;
    assert_eq!(p["traits"]["income_band"]["value"], "C");
    assert_eq!(p["traits"]["income_band"]["party"], "third");
    assert_eq!(p["traits"]["income_band"]["source"], "acme-broker");
}

#[tokio::test]
async fn an_export_holds_everything_about_the_person() {
    let app = TestApp::spawn().await;
    ann(&app).await;
    let (status, doc) = app.get("/v1/profiles/annabel.lee@example.com/export").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["format"], "missive-export/1");
    assert_eq!(doc["profile"]["traits"]["first_name"]["value"], "Annabel");
    assert_eq!(doc["profile"]["identities"]["user_ids"], json!(["ann-42"]));
    assert_eq!(
        doc["profile"]["consent"]["email_marketing"]["current"]["ip"],
        "198.51.100.7"
    );
    assert_eq!(doc["events"].as_array().unwrap().len(), 4);
    assert!(!doc["versions"].as_array().unwrap().is_empty());
    let (status, _) = app.get("/v1/profiles/nobody/export").await;
    assert_eq!(status, 404);
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn after_erasure_nothing_personal_remains_readable_and_a_reimport_is_dropped() {
    let app = TestApp::spawn().await;
    ann(&app).await;
    app.post(
        "/v1/identify",
        json!({"userId": "bob-7", "traits": {"email": "bob@example.com", "first_name": "Bob"}}),
    )
    .await;
    app.sync().await;
    let personal = [
        "annabel.lee@example.com",
        "Annabel",
        "ann-42",
        "198.51.100.7",
        "Lyon",
    ];
    // Encrypted at rest with every identity blind-indexed, nothing personal is in the files
    // even before the erasure; the scan sees what is in clear (the profile id).
    let ann_id = app.profile("ann-42").await["id"].as_str().unwrap().to_owned();
    let before = app.stored_data().await;
    assert!(
        before.iter().any(|(_, b)| contains(b, &ann_id)),
        "the scan must see the files"
    );
    for p in personal {
        assert!(
            !before.iter().any(|(_, b)| contains(b, p)),
            "{p} in clear before the erasure"
        );
    }

    let (status, body) = app.admin(Method::DELETE, "/v1/profiles/ann-42", None).await;
    assert_eq!(status, 200, "{body}");
    let erased = &body["erased"];
    assert_eq!(erased["deleted"]["profiles"], 1);
    assert_eq!(erased["deleted"]["events"], 4);
    assert_eq!(erased["addresses_suppressed"], 1);

    assert_eq!(app.get("/v1/profiles/ann-42").await.0, 404);
    assert_eq!(app.get("/v1/profiles/annabel.lee@example.com").await.0, 404);

    // A re-import of the same person is acknowledged, dropped, and says why.
    let (status, body) = app
        .post(
            "/v1/identify",
            json!({"userId": "ann-42", "messageId": "again-1",
                   "traits": {"email": "annabel.lee@example.com", "first_name": "Annabel"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["accepted"].as_u64(), body["success"].as_bool()),
        (Some(0), Some(false)),
        "{body}"
    );
    assert_eq!(body["rejected"][0]["code"], "erased", "{body}");
    assert_eq!(body["rejected"][0]["messageId"], "again-1", "{body}");
    let (status, body) = app
        .post(
            "/v1/batch",
            json!({"batch": [
                {"type": "track", "userId": "bob-7", "event": "Viewed"},
                {"type": "track", "anonymousId": "new-device", "event": "Signed Up",
                 "context": {"traits": {"email": "Annabel.Lee@example.com"}}},
            ]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["rejected"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(
        (
            body["rejected"][0]["index"].as_u64(),
            body["rejected"][0]["code"].as_str()
        ),
        (Some(1), Some("erased"))
    );
    app.sync().await;
    assert_eq!(app.get("/v1/profiles/ann-42").await.0, 404);
    assert_eq!(app.get("/v1/profiles/annabel.lee@example.com").await.0, 404);
    assert_eq!(app.profile("bob-7").await["traits"]["first_name"]["value"], "Bob");

    for (file, bytes) in app.stored_data().await {
        for p in personal {
            assert!(!contains(&bytes, p), "{p:?} is still readable in {file}");
        }
    }
    let (_, audit) = app.get("/v1/audit?action=DELETE%20/v1/profiles/%7Bkey%7D").await;
    let entry: &Value = &audit["entries"][0];
    assert_eq!(entry["status"], 200);
    assert!(entry["target"].as_str().unwrap().starts_with("profile:prf_"));
}
