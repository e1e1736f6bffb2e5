//! Learned recommendations over the API: trained from the store's product events and the
//! catalogue, served per person with reasons, business filters applied, a new event counted
//! at once (fold-in), consent respected.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::TestApp;

fn product(id: &str, title: &str, category: &str, in_stock: bool) -> Value {
    json!({"id": id, "title": title, "categories": [category], "price": 50, "in_stock": in_stock,
           "url": format!("https://shop.example/{id}")})
}

#[tokio::test]
async fn recommendations_are_trained_served_with_reasons_and_filtered() {
    let app = TestApp::spawn().await;
    let (status, res) = app.get("/v1/profiles/u0/recommendations").await;
    assert_eq!(status, 409, "{res}");
    assert_eq!(res["code"], "recommendations_not_trained", "{res}");

    let products = json!([
        product("dress-0", "Linen dress", "Dresses", true),
        product("dress-1", "Silk dress", "Dresses", true),
        product("dress-2", "Wrap dress", "Dresses", true),
        product("dress-3", "Sold-out dress", "Dresses", false),
        product("boot-0", "Chelsea boot", "Boots", true),
        product("boot-1", "Ankle boot", "Boots", true),
        product("boot-2", "Riding boot", "Boots", true),
    ]);
    let (status, res) = app
        .admin(Method::POST, "/v1/catalog/products", Some(products))
        .await;
    assert_eq!(status, 200, "{res}");
    // 40 people: even ones view and buy dresses (and the sold-out one), odd ones boots; one
    // in ten refused personalization. An event names a product missing from the catalogue.
    for u in 0..40 {
        let user = format!("u{u}");
        app.post(
            "/v1/identify",
            json!({"userId": user, "traits": {"consent": {"personalization": u % 10 != 9}}}),
        )
        .await;
        let kind = if u % 2 == 0 { "dress" } else { "boot" };
        for k in 0..3 {
            if (u / 2 + k) % 4 == 3 {
                continue;
            }
            app.post(
                "/v1/track",
                json!({"userId": user, "event": "Product Viewed",
                       "properties": {"product_id": format!("{kind}-{}", (u / 2 + k) % 3)}}),
            )
            .await;
        }
        if kind == "dress" {
            app.post(
                "/v1/track",
                json!({"userId": user, "event": "Product Viewed", "properties": {"product_id": "dress-3"}}),
            )
            .await;
        }
        app.post(
            "/v1/track",
            json!({"userId": user, "event": "Product Viewed", "properties": {"product_id": "not-in-catalogue"}}),
        )
        .await;
    }
    let (status, res) = app.admin(Method::POST, "/v1/recommendations/train", None).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["left_out_no_consent"], 4, "{res}");
    assert_eq!(res["people"], 36, "{res}");

    // u2 viewed dress-1 and dress-2: item-to-item offers dress-0, because of a dress of theirs;
    // never the sold-out dress, nor the product missing from the catalogue, nor theirs.
    let (status, res) = app
        .get("/v1/profiles/u2/recommendations?strategy=item2item&limit=3")
        .await;
    assert_eq!(status, 200, "{res}");
    let ids: Vec<&str> = res["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["product_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&"dress-0"), "{res}");
    assert!(
        !ids.contains(&"dress-3") && !ids.contains(&"not-in-catalogue") && !ids.contains(&"dress-1"),
        "{res}"
    );
    let reason = res["items"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("often bought with ") && reason.contains("dress"),
        "{reason}"
    );

    // A newcomer: nothing of theirs yet; two views of boots and factorisation answers with
    // the third boot at once, without retraining.
    app.post(
        "/v1/identify",
        json!({"userId": "new", "traits": {"consent": {"personalization": true}}}),
    )
    .await;
    app.post("/v1/track", json!({"userId": "new", "event": "Signed Up"}))
        .await;
    let (status, res) = app.get("/v1/profiles/new/recommendations?strategy=als").await;
    assert_eq!(status, 200, "{res}");
    assert!(
        res["items"].as_array().unwrap().is_empty() && res["note"].is_string(),
        "{res}"
    );
    for b in ["boot-0", "boot-1"] {
        app.post(
            "/v1/track",
            json!({"userId": "new", "event": "Product Viewed", "properties": {"product_id": b}}),
        )
        .await;
    }
    let (status, res) = app
        .get("/v1/profiles/new/recommendations?strategy=als&limit=2")
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["items"][0]["product_id"], "boot-2", "{res}");

    // No personalization consent: no list, and why.
    let (status, res) = app.get("/v1/profiles/u9/recommendations").await;
    assert_eq!(status, 200, "{res}");
    assert!(res["items"].as_array().unwrap().is_empty(), "{res}");
    assert!(res["note"].as_str().unwrap().contains("personalization"), "{res}");

    let (status, res) = app.get("/v1/profiles/u0/recommendations?strategy=magic").await;
    assert_eq!(status, 400, "{res}");
    assert_eq!(res["field"], "strategy", "{res}");
}
