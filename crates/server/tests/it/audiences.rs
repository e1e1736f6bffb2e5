//! Audiences out: a segment's members as CSV, or as hashed addresses for customer match, only
//! for people whose consent covers the purpose; every export audited.

use reqwest::Method;
use serde_json::json;

use crate::support::TestApp;

async fn export(app: &TestApp, query: &str) -> (u16, String, String) {
    let res = app
        .client
        .get(format!("{}/v1/segments/shoppers/export?{query}", app.base))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let left_out = res
        .headers()
        .get("x-missive-left-out")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, left_out, res.text().await.unwrap())
}

#[tokio::test]
async fn exports_follow_consent_and_are_audited() {
    let app = TestApp::spawn().await;
    for (user, email, consent) in [
        (
            "ann",
            "Ann@Example.com",
            json!({"advertising": true, "email_marketing": true}),
        ),
        ("bob", "bob@example.com", json!({"email_marketing": true})),
        ("cy", "cy@example.com", json!({})),
    ] {
        let (status, _) = app
            .post(
                "/v1/identify",
                json!({"userId": user, "traits": {"email": email, "first_name": user, "tier": "gold", "note": "=1+1", "consent": consent}}),
            )
            .await;
        assert_eq!(status, 200);
    }
    app.sync().await;
    let (status, body) = app
        .admin(
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "shoppers", "expression": "traits.tier == \"gold\""})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Customer match: ann only, her address trimmed, lower-cased and hashed.
    let (status, left_out, csv) = export(&app, "format=customer_match").await;
    assert_eq!(status, 200, "{csv}");
    assert_eq!(left_out, "2");
    use sha2::Digest;
    let ann = hex::encode(sha2::Sha256::digest(b"ann@example.com"));
    assert_eq!(csv, format!("Email\n{ann}\n"));

    // CSV for e-mail marketing: ann and bob, with the chosen traits.
    let (status, left_out, csv) = export(
        &app,
        "format=csv&purpose=email_marketing&traits=first_name,tier,nothing",
    )
    .await;
    assert_eq!((status, left_out.as_str()), (200, "1"), "{csv}");
    let mut lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.remove(0), "profile_id,email,first_name,tier,nothing");
    lines.sort_unstable();
    assert_eq!(lines.len(), 2);
    assert!(
        lines.iter().any(|l| l.ends_with(",bob@example.com,bob,gold,")),
        "{csv}"
    );

    for (query, field) in [
        ("format=csv", "purpose"),
        ("format=csv&purpose=spam", "purpose"),
        ("format=customer_match&traits=first_name", "traits"),
        ("format=customer_match&purpose=profiling", "purpose"),
    ] {
        let (status, err) = app.get(&format!("/v1/segments/shoppers/export?{query}")).await;
        assert_eq!(
            (status, err["field"].as_str()),
            (400, Some(field)),
            "{query}: {err}"
        );
    }
    assert_eq!(
        app.get("/v1/segments/nobody/export?format=customer_match")
            .await
            .0,
        404
    );
    let (_, audit) = app.get("/v1/audit?limit=100").await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "GET /v1/segments/{name}/export" && e["status"] == 200),
        "{audit}"
    );
}
