//! `POST /v1/sources/{name}`: a Shopify order webhook, signed as Shopify signs, becomes the
//! person's profile and order; a retry is a duplicate; a bad signature, an unknown topic, a
//! payload that does not map and an unknown source are refused with their codes.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{SHOP_SECRET, TestApp};

fn order() -> Value {
    json!({
        "id": 5001, "email": "mia@example.com", "created_at": "2026-12-01T10:00:00Z",
        "currency": "EUR", "total_price": "120.00", "subtotal_price": "110.00",
        "customer": {"id": 7001, "email": "mia@example.com", "first_name": "Mia"},
        "line_items": [{"product_id": 1, "sku": "DRESS-S", "title": "Linen Dress", "price": "110.00", "quantity": 1}]
    })
}

async fn post(app: &TestApp, source: &str, topic: &str, id: &str, body: &[u8], secret: &str) -> (u16, Value) {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let res = app
        .client
        .post(format!("{}/v1/sources/{source}", app.base))
        .header("content-type", "application/json")
        .header("X-Shopify-Topic", topic)
        .header("X-Shopify-Webhook-Id", id)
        .header("X-Shopify-Hmac-Sha256", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_signed_shopify_order_becomes_a_profile_and_an_order() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&order()).unwrap();
    let (status, r) = post(&app, "shop", "orders/create", "wh-1", &body, SHOP_SECRET).await;
    assert_eq!((status, r["accepted"].as_u64()), (200, Some(2)), "{r}");
    // Shopify retries with the same webhook id: nothing is counted twice.
    let (status, r) = post(&app, "shop", "orders/create", "wh-1", &body, SHOP_SECRET).await;
    assert_eq!((status, r["duplicates"].as_u64()), (200, Some(2)), "{r}");

    let (status, p) = app.get("/v1/profiles/mia@example.com").await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["traits"]["first_name"]["value"], "Mia", "{p}");
    assert_eq!(p["aggregates"]["orders"]["count"], 1, "{p}");
    assert_eq!(p["aggregates"]["orders"]["revenue"], 110.0, "{p}");

    let (status, err) = post(&app, "shop", "orders/create", "wh-2", &body, "wrong secret").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("source_signature")),
        "{err}"
    );
    let (status, err) = post(&app, "shop", "products/create", "wh-3", &body, SHOP_SECRET).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (422, Some("source_topic")),
        "{err}"
    );
    let mut bad = order();
    bad["total_price"] = json!("a lot");
    let bad = serde_json::to_vec(&bad).unwrap();
    let (status, err) = post(&app, "shop", "orders/create", "wh-4", &bad, SHOP_SECRET).await;
    assert_eq!(
        (status, err["code"].as_str(), err["field"].as_str()),
        (422, Some("source_unmapped"), Some("total_price")),
        "{err}"
    );
    let (status, _) = post(&app, "nowhere", "orders/create", "wh-5", &body, SHOP_SECRET).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_consent_receipt_is_recorded_with_its_evidence() {
    let app = TestApp::spawn().await;
    let receipt = serde_json::to_vec(&json!({
        "id": "rcpt_9", "subject": {"user_id": "lea", "email": "lea@example.com"},
        "purposes": [{"purpose": "newsletter", "granted": true}],
        "at": "2026-03-01T09:00:00Z", "policy_version": "2026-02", "source": "cmp-banner"
    }))
    .unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SHOP_SECRET.as_bytes()).unwrap();
    mac.update(&receipt);
    let signature = hex::encode(mac.finalize().into_bytes());
    let (status, r) = app
        .post_raw(
            "/v1/sources/cmp",
            receipt,
            &[("content-type", "application/json"), ("x-signature", &signature)],
        )
        .await;
    assert_eq!((status, r["accepted"].as_u64()), (200, Some(1)), "{r}");
    app.sync().await;
    let (status, c) = app.get("/v1/profiles/lea/consent").await;
    assert_eq!(status, 200, "{c}");
    let email = &c["consent"]["email_marketing"];
    assert_eq!(email["granted"], true, "{c}");
    let text = c.to_string();
    assert!(text.contains("cmp-banner") && text.contains("2026-02"), "{c}");
}
