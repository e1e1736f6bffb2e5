//! The mappings on payloads written after the examples in each platform's public
//! documentation (field names and shapes as documented; values invented):
//! - Shopify: the Admin REST API's webhook reference, `orders/create`, `checkouts/create` and
//!   `customers/create` example bodies (`id`, `email`, `created_at`, `currency`, `total_price`,
//!   `subtotal_price`, `customer { id, email, first_name, last_name }`, `line_items [{
//!   product_id, variant_id, sku, title, variant_title, vendor, price, quantity }]`,
//!   `checkout_token`; a checkout's `token`, `abandoned_checkout_url`; a customer's
//!   `email_marketing_consent { state, consent_updated_at }`);
//! - WooCommerce: the REST API v3 order object that `order.created` delivers (`id`, `status`,
//!   `currency`, `total`, `customer_id`, `billing { email, first_name, last_name }`,
//!   `line_items [{ product_id, variation_id, sku, name, price, quantity }]`,
//!   `date_created_gmt`).
//!
//! Every mapped message must pass missive's own validation of Segment messages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use hmac::{Hmac, Mac};
use missive_sources::{Delivery, Encoding, Source, SourceError};
use serde_json::{Value, json};
use sha2::Sha256;

fn sign_b64(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn valid(messages: &[Value]) {
    let now = chrono::Utc::now();
    for m in messages {
        missive_core::message::validate_message(m.clone(), None, None, now)
            .unwrap_or_else(|r| panic!("{m}: {r:?}"));
    }
}

fn shopify_order() -> Value {
    json!({
        "id": 820982911946154508u64,
        "email": "jon@example.com",
        "created_at": "2026-11-30T14:02:11-05:00",
        "currency": "EUR",
        "total_price": "254.98",
        "subtotal_price": "229.98",
        "total_tax": "25.00",
        "financial_status": "paid",
        "checkout_token": "bd5a8aa1ecd019dd3520ff791ee3a24c",
        "customer": {"id": 115310627314723954u64, "email": "jon@example.com", "first_name": "Jon", "last_name": "Doe"},
        "line_items": [
            {"product_id": 632910392, "variant_id": 808950810, "sku": "SUMMIT-JKT-M", "title": "Summit Jacket",
             "variant_title": "M / Navy", "vendor": "Summit", "price": "199.99", "quantity": 1},
            {"product_id": 632910393, "variant_id": 808950811, "sku": "WOOL-SOCK", "title": "Wool Socks",
             "price": "14.995", "quantity": 2}
        ],
        "shipping_address": {"address1": "1 Main St", "city": "Paris"}
    })
}

#[test]
fn a_shopify_order_is_an_identify_and_order_completed() {
    let source = Source::Shopify {
        secret: "shpss_secret".into(),
    };
    let body = serde_json::to_vec(&shopify_order()).unwrap();
    let signature = sign_b64("shpss_secret", &body);
    let delivery = Delivery {
        source: "s",
        topic: Some("orders/create"),
        id: Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
        signature: Some(&signature),
    };
    source.verify(&body, &delivery).unwrap();
    let tampered = [&body[..body.len() - 1], b" "].concat();
    assert_eq!(source.verify(&tampered, &delivery), Err(SourceError::Signature));
    assert_eq!(
        source.verify(
            &body,
            &Delivery {
                source: "s",
                signature: None,
                ..delivery.clone()
            }
        ),
        Err(SourceError::Signature)
    );

    let messages = source.map(&shopify_order(), &delivery).unwrap();
    valid(&messages);
    assert_eq!(messages.len(), 2);
    let (identify, track) = (&messages[0], &messages[1]);
    assert_eq!(identify["userId"], "115310627314723954");
    assert_eq!(
        identify["traits"],
        json!({"email": "jon@example.com", "first_name": "Jon", "last_name": "Doe"})
    );
    assert_eq!(track["event"], "Order Completed");
    let p = &track["properties"];
    assert_eq!(p["order_id"], "820982911946154508");
    assert_eq!(
        (p["total"].as_f64(), p["revenue"].as_f64(), p["tax"].as_f64()),
        (Some(254.98), Some(229.98), Some(25.0))
    );
    assert_eq!(p["currency"], "EUR");
    assert_eq!(p["products"][0]["name"], "Summit Jacket");
    assert_eq!(p["products"][0]["variant"], "M / Navy");
    assert_eq!(p["products"][1]["quantity"], 2);
    // Named fields are kept; nested objects (the address) are not.
    assert_eq!(p["financial_status"], "paid");
    assert!(p.get("shipping_address").is_none());
    assert_eq!(track["timestamp"], "2026-11-30T14:02:11-05:00");
    // Ids come from the content, keyed with the secret and the source: a redelivery under
    // another delivery id is a duplicate; another source's are its own.
    let id = track["messageId"].as_str().unwrap();
    assert!(id.starts_with("src-") && id.len() == 44, "{id}");
    let again = source
        .map(
            &shopify_order(),
            &Delivery {
                id: Some("another"),
                ..delivery.clone()
            },
        )
        .unwrap();
    assert_eq!(again[1]["messageId"], track["messageId"]);
    let elsewhere = source
        .map(
            &shopify_order(),
            &Delivery {
                source: "other",
                ..delivery.clone()
            },
        )
        .unwrap();
    assert_ne!(elsewhere[1]["messageId"], track["messageId"]);
    // Not paid yet: not a purchase, and `orders/paid` later is a new message.
    let mut pending = shopify_order();
    pending["financial_status"] = json!("pending");
    let unpaid = source.map(&pending, &delivery).unwrap();
    assert_eq!(unpaid[1]["event"], "Order Updated");
    assert_ne!(unpaid[1]["messageId"], track["messageId"]);
}

#[test]
fn shopify_guests_checkouts_customers_and_bad_payloads() {
    let source = Source::Shopify { secret: "s".into() };
    let at = |topic| Delivery {
        source: "s",
        topic: Some(topic),
        id: Some("d1"),
        signature: None,
    };
    // A guest order: known by its e-mail address.
    let mut guest = shopify_order();
    guest.as_object_mut().unwrap().remove("customer");
    let m = source.map(&guest, &at("orders/create")).unwrap();
    valid(&m);
    assert_eq!(m[0]["anonymousId"], "shopify-order:820982911946154508");
    assert_eq!(m[0]["traits"]["email"], "jon@example.com");

    let checkout = json!({
        "id": 901414060, "token": "2a1ace52255252df566af0faaedfbfa7", "email": "ann@example.com",
        "updated_at": "2026-11-30T15:00:00Z", "currency": "EUR", "total_price": "199.99",
        "abandoned_checkout_url": "https://shop.example.com/checkouts/2a1a/recover",
        "line_items": [{"product_id": 632910392, "sku": "SUMMIT-JKT-M", "title": "Summit Jacket", "price": "199.99", "quantity": 1}]
    });
    for topic in ["checkouts/create", "checkouts/update"] {
        let m = source.map(&checkout, &at(topic)).unwrap();
        valid(&m);
        let track = &m[1];
        assert_eq!(track["event"], "Checkout Started");
        assert_eq!(track["properties"]["cart_id"], "2a1ace52255252df566af0faaedfbfa7");
        assert_eq!(track["properties"]["value"].as_f64(), Some(199.99));
        assert_eq!(
            track["anonymousId"],
            "shopify-checkout:2a1ace52255252df566af0faaedfbfa7"
        );
    }

    let customer = json!({
        "id": 706405506930370084u64, "email": "bob@example.com", "first_name": "Bob",
        "created_at": "2026-11-30T10:00:00Z",
        "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in", "consent_updated_at": "2026-11-30T10:00:01Z"}
    });
    let m = source.map(&customer, &at("customers/create")).unwrap();
    valid(&m);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["traits"]["consent"], json!({"email_marketing": true}));
    assert_eq!(m[0]["timestamp"], "2026-11-30T10:00:01Z");
    // Never asked is not a withdrawal.
    let mut never_asked = customer.clone();
    never_asked["email_marketing_consent"]["state"] = json!("not_subscribed");
    let m = source.map(&never_asked, &at("customers/update")).unwrap();
    assert!(m[0]["traits"].get("consent").is_none(), "{m:?}");

    let mut bad = shopify_order();
    bad["line_items"][1]["price"] = json!("free");
    assert_eq!(
        source.map(&bad, &at("orders/create")),
        Err(SourceError::Map {
            path: "line_items.1.price".into(),
            why: "\"free\" is not an amount".into()
        })
    );
    assert_eq!(
        source.map(&shopify_order(), &at("products/create")),
        Err(SourceError::Topic("products/create".into()))
    );
    let mut nobody = json!({"id": 1, "line_items": []});
    nobody["customer"] = Value::Null;
    assert!(
        matches!(source.map(&nobody, &at("orders/create")), Err(SourceError::Map { path, .. }) if path == "customer.id")
    );
}

#[test]
fn a_woocommerce_order_maps_by_its_status() {
    let source = Source::Woocommerce {
        secret: "wc_secret".into(),
    };
    let order = json!({
        "id": 727, "status": "processing", "currency": "EUR", "total": "29.35", "total_tax": "1.35",
        "customer_id": 0, "date_created_gmt": "2026-11-30T19:00:00",
        "payment_method": "bacs",
        "billing": {"first_name": "John", "last_name": "Doe", "email": "john.doe@example.com", "address_1": "969 Market"},
        "line_items": [{"id": 315, "name": "Woo Single #1", "product_id": 93, "variation_id": 0, "quantity": 2, "sku": "", "price": 9}]
    });
    let body = serde_json::to_vec(&order).unwrap();
    let signature = sign_b64("wc_secret", &body);
    let delivery = Delivery {
        source: "s",
        topic: Some("order.created"),
        id: Some("8b8b"),
        signature: Some(&signature),
    };
    source.verify(&body, &delivery).unwrap();
    let m = source.map(&order, &delivery).unwrap();
    valid(&m);
    assert_eq!(m[0]["anonymousId"], "woocommerce-order:727");
    assert_eq!(m[0]["traits"]["email"], "john.doe@example.com");
    assert_eq!(m[1]["event"], "Order Completed");
    assert_eq!(m[1]["properties"]["total"].as_f64(), Some(29.35));
    assert_eq!(
        m[1]["properties"]["products"][0],
        json!({"product_id": "93", "name": "Woo Single #1", "price": 9.0, "quantity": 2})
    );
    assert_eq!(m[1]["properties"]["payment_method"], "bacs");
    // Only named fields are kept: the address is not.
    assert!(m[1]["properties"].get("billing").is_none());
    assert_eq!(m[1]["timestamp"], "2026-11-30T19:00:00Z");
    let mut pending = order.clone();
    // On hold awaits payment (a bank transfer): not a purchase yet.
    pending["status"] = json!("on-hold");
    pending["customer_id"] = json!(12);
    let m = source.map(&pending, &delivery).unwrap();
    assert_eq!(
        (m[1]["event"].as_str(), m[1]["userId"].as_str()),
        (Some("Order Updated"), Some("12"))
    );
    // `order.updated` with the paid order: the same message as `order.created`'s, once.
    let updated = Delivery {
        topic: Some("order.updated"),
        id: Some("another delivery"),
        ..delivery.clone()
    };
    let paid = source.map(&order, &updated).unwrap();
    let first = source.map(&order, &delivery).unwrap();
    assert_eq!(paid[1]["event"], "Order Completed");
    assert_eq!(paid[1]["messageId"], first[1]["messageId"]);
}

#[test]
fn a_generic_source_maps_by_its_paths_and_names_the_path_that_fails() {
    let source: Source = serde_json::from_value(json!({
        "type": "generic", "secret": "k", "signature_header": "X-Signature", "signature_encoding": "hex",
        "event_path": "type", "user_id": "data.member.id", "email": "data.member.email",
        "properties": "data.details", "timestamp": "data.at", "id": "event_id"
    }))
    .unwrap();
    let payload = json!({
        "event_id": "evt_1", "type": "Points Earned",
        "data": {"member": {"id": 42, "email": "ann@example.com"}, "details": {"points": 120}, "at": "2026-11-30T12:00:00Z"}
    });
    let body = serde_json::to_vec(&payload).unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"k").unwrap();
    mac.update(&body);
    let signature = hex::encode(mac.finalize().into_bytes());
    let delivery = Delivery {
        source: "s",
        topic: None,
        id: None,
        signature: Some(&signature),
    };
    source.verify(&body, &delivery).unwrap();
    let m = source.map(&payload, &delivery).unwrap();
    valid(&m);
    assert_eq!(m[1]["event"], "Points Earned");
    assert_eq!(m[1]["userId"], "42");
    assert_eq!(m[1]["properties"], json!({"points": 120}));
    assert!(m[1]["messageId"].as_str().unwrap().starts_with("src-"));
    // A third party's payload cannot grant consent.
    let with_traits: Source = serde_json::from_value(json!({
        "type": "generic", "secret": "k", "signature_header": "X-Signature",
        "user_id": "id", "traits": "profile"
    }))
    .unwrap();
    let m = with_traits
        .map(
            &json!({"id": 1, "profile": {"city": "Lyon", "consent": {"email_marketing": true}}}),
            &delivery,
        )
        .unwrap();
    assert_eq!(m[0]["traits"], json!({"city": "Lyon"}));
    let mut broken = payload.clone();
    broken["data"]["details"] = json!(5);
    assert_eq!(
        source.map(&broken, &delivery),
        Err(SourceError::Map {
            path: "data.details".into(),
            why: "not an object".into()
        })
    );
    broken["data"].as_object_mut().unwrap().remove("member");
    assert!(
        matches!(source.map(&broken, &delivery), Err(SourceError::Map { path, .. }) if path == "data.member.id")
    );
    let _ = Encoding::Base64;
}

#[test]
fn consent_receipts_become_consent_with_evidence() {
    let source: Source = serde_json::from_value(json!({
        "type": "consent", "secret": "0123456789abcdef",
        "purposes": {"newsletter": "email_marketing", "ads": "advertising"}
    }))
    .unwrap();
    assert_eq!(source.check(), Ok(()));
    let receipt = json!({
        "id": "rcpt_1", "subject": {"user_id": "u-1", "email": "ann@example.com"},
        "purposes": [{"purpose": "newsletter", "granted": true}, {"purpose": "ads", "granted": false}],
        "at": "2026-11-30T12:00:00Z", "policy_version": "2026-05", "source": "cmp-banner",
        "ip": "203.0.113.9", "user_agent": "Mozilla/5.0"
    });
    let delivery = Delivery {
        source: "s",
        topic: None,
        id: None,
        signature: None,
    };
    let m = source.map(&receipt, &delivery).unwrap();
    valid(&m);
    assert_eq!(
        m[0]["traits"]["consent"],
        json!({"email_marketing": true, "advertising": false})
    );
    assert_eq!(
        m[0]["context"]["missive"],
        json!({"source": "cmp-banner", "policy_version": "2026-05"})
    );
    assert_eq!(
        (m[0]["context"]["ip"].as_str(), m[0]["timestamp"].as_str()),
        (Some("203.0.113.9"), Some("2026-11-30T12:00:00Z"))
    );
    assert!(m[0]["messageId"].as_str().unwrap().starts_with("src-"));
    let mut unknown = receipt.clone();
    unknown["purposes"][1]["purpose"] = json!("analytics");
    assert!(
        matches!(source.map(&unknown, &delivery), Err(SourceError::Map { path, .. }) if path == "purposes.1.purpose")
    );
    let bad: Source = serde_json::from_value(json!({
        "type": "consent", "secret": "0123456789abcdef", "purposes": {"x": "spam"}
    }))
    .unwrap();
    assert!(bad.check().unwrap_err().contains("purposes.x"));
}
