//! `missive demo --live`: new events through the tracking API (`POST /v1/batch` with the write
//! key, as a shop's site would send them) every second: visits and views, carts (some left,
//! which the cart-recovery journey follows), orders, and now and then a new customer signing
//! up (the welcome journey).

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The shop the live events are about.
pub struct Shop {
    pub credentials: PathBuf,
    pub seed: u64,
    pub customers: usize,
    pub styles: usize,
}

/// Sends to `base` (where the server listens) until the process ends; waits for the server
/// first. Failures are logged, not fatal.
pub async fn stream(base: String, shop: Shop) {
    let credentials = shop.credentials.clone();
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if client
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let write_key = std::fs::read_to_string(&credentials)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["write_key"].as_str().map(str::to_owned));
    let Some(write_key) = write_key else {
        tracing::error!(file = %credentials.display(), "demo --live: no write key; no live events");
        return;
    };
    let mut rng = StdRng::seed_from_u64(shop.seed ^ 0x11fe);
    let mut n = 0u64;
    let mut sent = 0u64;
    loop {
        let batch: Vec<Value> = (0..rng.random_range(3..12))
            .flat_map(|_| tick(&mut rng, &mut n, &shop))
            .collect();
        sent += batch.len() as u64;
        match client
            .post(format!("{base}/v1/batch"))
            .basic_auth(&write_key, Some(""))
            .json(&json!({ "batch": batch }))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(status = %r.status(), "demo --live: batch refused"),
            Err(e) => tracing::warn!(error = %e, "demo --live: batch not sent"),
        }
        if sent % 500 < 12 {
            tracing::info!(sent, "demo --live: events sent");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One person's moment on the site.
fn tick(rng: &mut StdRng, n: &mut u64, shop: &Shop) -> Vec<Value> {
    *n += 1;
    let now = Utc::now().to_rfc3339();
    let id = |k: &str, n: u64| format!("live-{}-{k}-{n}", std::process::id());
    if rng.random_bool(0.05) {
        let user = format!("live-{}-{n}", std::process::id());
        return vec![
            json!({"type": "identify", "userId": user, "messageId": id("id", *n), "timestamp": now,
                   "traits": {"email": format!("{user}@example.com"), "first_name": "Sam",
                              "consent": {"email_marketing": true, "personalization": true}}}),
            json!({"type": "track", "userId": user, "event": "Signed Up", "messageId": id("su", *n), "timestamp": now}),
        ];
    }
    let user = format!("cust-{:05}", rng.random_range(1..=shop.customers.max(1)));
    let style = format!("st-{:04}", rng.random_range(1..=shop.styles.max(1)));
    let product =
        json!({"product_id": style, "price": rng.random_range(2..30) * 5, "quantity": 1, "currency": "EUR"});
    let mut out = vec![
        json!({"type": "track", "userId": user, "event": "Product Viewed", "properties": product,
                              "messageId": id("v", *n), "timestamp": now}),
    ];
    if rng.random_bool(0.3) {
        let cart = format!("live-cart-{}-{n}", std::process::id());
        let mut added = product.clone();
        added["cart_id"] = cart.clone().into();
        out.push(
            json!({"type": "track", "userId": user, "event": "Product Added", "properties": added,
                        "messageId": id("a", *n), "timestamp": now}),
        );
        if rng.random_bool(0.45) {
            out.push(json!({"type": "track", "userId": user, "event": "Order Completed",
                            "properties": {"order_id": format!("live-ord-{n}"), "cart_id": cart,
                                           "revenue": product["price"], "currency": "EUR", "products": [product]},
                            "messageId": id("o", *n), "timestamp": now}));
        }
    }
    out
}
