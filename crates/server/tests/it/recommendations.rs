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

/// Seven products (one sold out) and 40 people: even ones view and buy dresses (and the
/// sold-out one), odd ones boots; one in ten refused personalization. An event names a product
/// missing from the catalogue.
async fn shop(app: &TestApp) {
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
}

#[tokio::test]
async fn recommendations_are_trained_served_with_reasons_and_filtered() {
    let app = TestApp::spawn().await;
    let (status, res) = app.get("/v1/profiles/u0/recommendations").await;
    assert_eq!(status, 409, "{res}");
    assert_eq!(res["code"], "recommendations_not_trained", "{res}");

    shop(&app).await;
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

fn ids(res: &Value) -> Vec<&str> {
    res["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["product_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn rules_filters_variants_and_the_template_lists() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    // A style whose every size is sold out, viewed by the dress people; socks for the boots.
    let more = json!([
        {"id": "dress-4", "title": "Sold-out sizes dress", "categories": ["Dresses"], "price": 50,
         "variants": [{"sku": "dress-4-S", "size": "S", "in_stock": false},
                      {"sku": "dress-4-M", "size": "M", "in_stock": false}]},
        {"id": "socks-0", "title": "Wool socks", "categories": ["Socks"], "price": 5, "margin": 0.5},
    ]);
    let (status, res) = app.admin(Method::POST, "/v1/catalog/products", Some(more)).await;
    assert_eq!(status, 200, "{res}");
    for u in (0..40).step_by(2) {
        app.post(
            "/v1/track",
            json!({"userId": format!("u{u}"), "event": "Product Viewed", "properties": {"product_id": "dress-4"}}),
        )
        .await;
    }
    let (status, res) = app.get("/v1/recommendations").await;
    assert_eq!(status, 200, "{res}");
    assert!(res["served"].is_null(), "{res}");
    let (status, _) = app.admin(Method::POST, "/v1/recommendations/train", None).await;
    assert_eq!(status, 200);
    let (_, res) = app.get("/v1/recommendations").await;
    assert_eq!(res["served"]["version"], 1, "{res}");
    assert!(
        res["training"].is_null() && res["last_failure"].is_null(),
        "{res}"
    );

    // The marketer's rule: boots → socks, first, with the rule's reason.
    let (status, res) = app
        .admin(
            Method::PUT,
            "/v1/recommendations/rules/boots-need-socks",
            Some(json!({"when": {"categories": ["Boots"]}, "recommend": ["socks-0"], "reason": "Keep them dry"})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let (status, res) = app
        .admin(
            Method::PUT,
            "/v1/recommendations/rules/bad",
            Some(json!({"when": {}, "recommend": ["socks-0"]})),
        )
        .await;
    assert_eq!((status, res["field"].as_str()), (400, Some("when")), "{res}");
    let (_, res) = app.get("/v1/recommendations/rules").await;
    assert_eq!(res["rules"][0]["name"], "boots-need-socks", "{res}");
    for strategy in ["rules", "for_you"] {
        let (status, res) = app
            .get(&format!("/v1/profiles/u1/recommendations?strategy={strategy}"))
            .await;
        assert_eq!(status, 200, "{res}");
        assert_eq!(res["items"][0]["product_id"], "socks-0", "{strategy}: {res}");
        assert_eq!(res["items"][0]["reason"], "Keep them dry", "{res}");
        assert_eq!(res["items"][0]["source"], "rule", "{res}");
        assert!(
            res["items"][0]["because_of"]
                .as_str()
                .unwrap()
                .starts_with("boot-"),
            "{res}"
        );
    }

    // What they bought is never offered back, even named by `sku` alone (no weight reads it).
    app.post(
        "/v1/track",
        json!({"userId": "u3", "event": "Order Completed",
               "properties": {"order_id": "o-u3", "products": [{"sku": "socks-0"}]}}),
    )
    .await;
    let (_, res) = app
        .get("/v1/profiles/u3/recommendations?strategy=for_you&limit=20")
        .await;
    assert!(!ids(&res).contains(&"socks-0"), "{res}");

    // Never a style with no size left, whatever the strategy.
    for strategy in ["for_you", "hybrid", "als", "item2item", "content", "popular"] {
        let (_, res) = app
            .get(&format!(
                "/v1/profiles/u3/recommendations?strategy={strategy}&limit=20"
            ))
            .await;
        assert!(
            !ids(&res).contains(&"dress-4") && !ids(&res).contains(&"dress-3"),
            "{strategy}: {res}"
        );
    }
    // The price band, and a bad one named.
    let (_, res) = app
        .get("/v1/profiles/u1/recommendations?strategy=for_you&price_max=10")
        .await;
    assert_eq!(ids(&res), vec!["socks-0"], "{res}");
    let (status, res) = app
        .get("/v1/profiles/u1/recommendations?price_min=20&price_max=10")
        .await;
    assert_eq!((status, res["field"].as_str()), (400, Some("price_min")), "{res}");

    // Per product: like it (the other dresses), bought with it (the rule, then baskets).
    let (status, res) = app.get("/v1/products/dress-0/similar?limit=5").await;
    assert_eq!(status, 200, "{res}");
    let similar = ids(&res);
    let mut first_two = similar[..2].to_vec();
    first_two.sort_unstable();
    assert_eq!(first_two, vec!["dress-1", "dress-2"], "{res}");
    assert!(
        similar
            .iter()
            .all(|i| !["dress-0", "dress-3", "dress-4"].contains(i)),
        "{res}"
    );
    let (_, res) = app.get("/v1/products/boot-0/bought-together?limit=3").await;
    let together = ids(&res);
    assert_eq!(together.first(), Some(&"socks-0"), "{res}");
    assert!(together[1..].iter().all(|i| i.starts_with("boot-")), "{res}");

    // The same lists in a template, as previews show them.
    let body = concat!(
        "{% for p in recommendations.for_you %}[{{ p.id }}: {{ p.reason }}]{% endfor %}\n",
        "{% for p in recommendations.similar_to[event.properties.product_id] %}<{{ p.id }}>{% endfor %}\n",
        "{% for p in recommendations.bought_together[event.properties.product_id] %}({{ p.id }}){% endfor %}\n",
        "{% for p in recommendations.strategies.als %}{als {{ p.id }}}{% endfor %}\n",
        "<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>"
    );
    let (status, res) = app
        .admin(
            Method::PUT,
            "/v1/templates/recs",
            Some(json!({"subject": "For you", "body": body, "layout": "html"})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let (status, p) = app
        .admin(
            Method::POST,
            "/v1/templates/recs/preview",
            Some(json!({"profile": "u1", "event": {"name": "Product Viewed", "properties": {"product_id": "dress-0"}}})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    // u1 viewed every boot: the rule fires on them; the lists for the dress in the e-mail
    // offer the other dresses; factorisation has its own list.
    let text = p["email"]["text"].as_str().unwrap();
    assert!(text.starts_with("[socks-0: Keep them dry]"), "{text}");
    assert!(
        text.contains("<dress-1>") && text.contains("<dress-2>"),
        "similar: {text}"
    );
    assert!(text.contains("(dress-"), "bought together: {text}");
    assert!(text.contains("{als "), "factorisation: {text}");
    // The product in the e-mail is never recommended back, nor what they had.
    for gone in ["dress-0:", "<dress-0>", "(dress-0)", "{als dress-0}", "boot-"] {
        assert!(!text.contains(gone), "{gone} in {text}");
    }
    let similar = &p["data_used"]["recommendations.similar_to"]["dress-0"];
    assert!(similar.as_array().is_some_and(|a| !a.is_empty()), "{p}");
    assert_eq!(similar[0]["reason"], "like Linen dress", "{p}");
}
