use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestApp;

fn example(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/cart-abandonment")
        .join(file);
    std::fs::read_to_string(path).unwrap()
}

fn cart_template() -> Value {
    json!({
        "subject": "{{ customer.first_name | default: 'Hi' }}, your cart is waiting",
        "preheader": "Saved for you",
        "layout": "mjml",
        "body": example("template.mjml"),
    })
}

pub(crate) async fn load_examples(app: &TestApp) {
    let mut products: Vec<Value> = serde_json::from_str(&example("products.json")).unwrap();
    products.push(json!({"id": "broken", "title": "", "price": -3}));
    let (status, res) = app
        .admin(Method::POST, "/v1/catalog/products", Some(json!(products)))
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["saved"], 16);
    assert_eq!(res["rejected"][0]["index"], 16);
    assert_eq!(res["rejected"][0]["id"], "broken");
    // No profile has a tier yet: declare it, so that the segment can name it.
    let (status, res) = app
        .admin(
            Method::PUT,
            "/v1/schema/traits/tier",
            Some(json!({"type": "string"})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let segment = json!({"name": "vip", "expression": "traits.tier == \"gold\""});
    let (status, res) = app.admin(Method::POST, "/v1/segments", Some(segment)).await;
    assert_eq!(status, 201, "{res}");
    for name in ["hero-vip", "hero-generic", "offer-loyalty", "offer-default"] {
        let block: Value = serde_json::from_str(&example(&format!("blocks/{name}.json"))).unwrap();
        let (status, res) = app
            .admin(Method::PUT, &format!("/v1/blocks/{name}"), Some(block))
            .await;
        assert_eq!(status, 200, "{name}: {res}");
    }
    let (status, res) = app
        .admin(Method::PUT, "/v1/templates/cart", Some(cart_template()))
        .await;
    assert_eq!(status, 200, "{res}");
}

#[tokio::test]
async fn templates_are_versioned_listed_shown_and_deleted() {
    let app = TestApp::spawn().await;
    let (status, res) = app
        .admin(Method::PUT, "/v1/templates/cart", Some(cart_template()))
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["version"], 1);
    assert_eq!(res["slots"], json!(["hero", "offer"]));
    assert!(
        res["variables"]
            .as_array()
            .unwrap()
            .contains(&json!("customer.first_name")),
        "{res}"
    );
    let (_, res) = app
        .admin(Method::PUT, "/v1/templates/cart", Some(cart_template()))
        .await;
    assert_eq!(res["version"], 2);

    let (status, list) = app.get("/v1/templates").await;
    assert_eq!(status, 200);
    assert_eq!(list["templates"][0]["name"], "cart");
    let (status, one) = app.get("/v1/templates/cart").await;
    assert_eq!(status, 200);
    assert_eq!(one["layout"], "mjml");
    assert!(
        one["compiled"]["html"]
            .as_str()
            .unwrap()
            .contains("{% for item in cart.products %}")
    );
    assert!(
        one["compiled"]["text"]
            .as_str()
            .unwrap()
            .contains("Return to your cart")
    );

    let (status, _) = app.admin(Method::DELETE, "/v1/templates/cart", None).await;
    assert_eq!(status, 204);
    let (status, res) = app.get("/v1/templates/cart").await;
    assert_eq!((status, res["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn broken_templates_are_refused_with_where_and_why() {
    let app = TestApp::spawn().await;
    let body = json!({"subject": "Hi", "layout": "html", "body": "<p>\n  {% if customer.vip %}VIP\n</p>"});
    let (status, res) = app.admin(Method::PUT, "/v1/templates/bad", Some(body)).await;
    assert_eq!(status, 400, "{res}");
    assert_eq!(res["code"], "liquid_syntax_error");
    // Where the author wrote it: the body, line 2.
    assert_eq!(res["field"], "body");
    assert_eq!(res["at"]["line"], 2, "{res}");

    let body = json!({"subject": "Hi", "body": "<mjml><mj-body><mj-section></mj-body></mjml>"});
    let (status, res) = app.admin(Method::PUT, "/v1/templates/bad", Some(body)).await;
    assert_eq!(
        (status, res["code"].as_str()),
        (400, Some("mjml_invalid")),
        "{res}"
    );

    let (status, res) = app
        .admin(Method::PUT, "/v1/templates/bad%20name", Some(cart_template()))
        .await;
    assert_eq!(
        (status, res["code"].as_str()),
        (400, Some("invalid_name")),
        "{res}"
    );

    let res = app
        .client
        .put(format!("{}/v1/templates/x", app.base))
        .json(&cart_template())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let (status, _) = app.get("/v1/templates/bad").await;
    assert_eq!(status, 404, "nothing was saved");
}

#[tokio::test]
async fn preview_renders_a_saved_template_for_a_real_profile() {
    let app = TestApp::spawn().await;
    load_examples(&app).await;
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "vip", "expression": "traits.tier == \"gold\""})),
        )
        .await;
    assert_eq!(status, 201, "{res}");

    app.post(
        "/v1/identify",
        json!({"userId": "ada", "traits": {"first_name": "Ada", "tier": "gold", "email": "ada@example.com",
                                            "consent": {"personalization": true}}}),
    )
    .await;
    // Three orders make Ada loyal; two of them sell sku-003, making it the top jacket.
    for (i, sku) in ["sku-003", "sku-003", "sku-010"].iter().enumerate() {
        let (status, _) = app
            .post(
                "/v1/track",
                json!({"userId": "ada", "event": "Order Completed", "messageId": format!("order-{i}"),
                       "properties": {"order_id": format!("o{i}"), "revenue": 50, "products": [{"product_id": sku, "quantity": 1}]}}),
            )
            .await;
        assert_eq!(status, 200);
    }
    // Someone else's orders make the jacket in Ada's cart the best seller (before the first
    // preview computes the ranking).
    for i in 0..5 {
        app.post(
            "/v1/track",
            json!({"userId": "zed", "event": "Order Completed", "messageId": format!("zed-{i}"),
                   "properties": {"order_id": format!("z{i}"), "revenue": 36.5, "products": [{"product_id": "sku-001", "quantity": 1}]}}),
        )
        .await;
    }
    let cart: Value = serde_json::from_str(&example("event.json")).unwrap();
    app.post(
        "/v1/track",
        json!({"userId": "ada", "event": "Product Added", "properties": cart["properties"]}),
    )
    .await;

    let (status, p) = app
        .admin(
            Method::POST,
            "/v1/templates/cart/preview",
            Some(json!({"profile": "ada"})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["email"]["subject"], "Ada, your cart is waiting");
    assert_eq!(
        p["email"]["blocks"],
        json!({"hero": "hero-vip", "offer": "offer-loyalty"})
    );
    let text = p["email"]["text"].as_str().unwrap();
    assert!(text.contains("Ada, your VIP free shipping is waiting"), "{text}");

    // Withdrawing personalization consent falls back to the blocks for everyone.
    app.post(
        "/v1/identify",
        json!({"userId": "ada", "traits": {"consent": {"personalization": false}}}),
    )
    .await;
    let (_, generic) = app
        .admin(
            Method::POST,
            "/v1/templates/cart/preview",
            Some(json!({"profile": "ada"})),
        )
        .await;
    assert_eq!(
        generic["email"]["blocks"],
        json!({"hero": "hero-generic", "offer": "offer-default"})
    );
    let generic_text = generic["email"]["text"].as_str().unwrap();
    // Without personalization: best sellers, but never the product already in the e-mail's cart.
    let fallback = generic["data_used"]["recommendations.for_you"]
        .as_array()
        .expect("listed");
    assert!(!fallback.is_empty(), "{generic}");
    assert!(fallback.iter().all(|r| r["id"] != "sku-001"), "{fallback:?}");
    assert!(!generic_text.contains("3 orders"), "{generic_text}");
    assert!(text.contains("Thank you for your 3 orders"), "{text}");
    assert!(
        text.contains("Summit Jacket 1") && text.contains("$36.50"),
        "{text}"
    );
    assert_eq!(p["data_used"]["customer.first_name"], "Ada");
    let recs = p["data_used"]["recommendations.for_you"]
        .as_array()
        .expect("recommendations listed");
    // Owned products are not recommended; the best-selling jacket would be, had Ada not bought it.
    assert!(
        recs.iter().all(|r| r["id"] != "sku-003" && r["id"] != "sku-001"),
        "{recs:?}"
    );
    assert!(
        !p["lint"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["severity"] == "error"),
        "{}",
        p["lint"]
    );

    // A newcomer gets the fallbacks.
    app.post(
        "/v1/identify",
        json!({"userId": "bob", "traits": {"email": "bob@example.com"}}),
    )
    .await;
    let (status, p) = app
        .admin(
            Method::POST,
            "/v1/templates/cart/preview",
            Some(json!({"profile": "email:bob@example.com", "event": cart})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p["email"]["blocks"],
        json!({"hero": "hero-generic", "offer": "offer-default"})
    );
    assert!(
        p["email"]["html"]
            .as_str()
            .unwrap()
            .contains("Hi there, you left something behind")
    );

    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/templates/cart/preview",
            Some(json!({"profile": "nobody"})),
        )
        .await;
    assert_eq!(
        (status, res["code"].as_str()),
        (404, Some("profile_not_found")),
        "{res}"
    );
}

#[tokio::test]
async fn the_decision_matrix_shows_which_block_each_segment_gets() {
    let app = TestApp::spawn().await;
    load_examples(&app).await;
    app.admin(
        Method::POST,
        "/v1/segments",
        Some(json!({"name": "vip", "expression": "traits.tier == \"gold\""})),
    )
    .await;
    let (status, m) = app.get("/v1/blocks/matrix?slot=hero").await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(
        m["rows"],
        json!([
            {"segment": "vip", "block": "hero-vip", "unless_matching": []},
            {"segment": null, "block": "hero-generic", "unless_matching": []},
        ])
    );
    let (_, m) = app.get("/v1/blocks/matrix?slot=offer").await;
    assert_eq!(m["rows"][0]["unless_matching"], json!(["offer-loyalty"]));

    let bad = json!({"slot": "hero", "target": {"expression": "orders.count >>= 3"}, "html": "<p>x</p>"});
    let (status, res) = app.admin(Method::PUT, "/v1/blocks/broken", Some(bad)).await;
    assert_eq!(
        (status, res["code"].as_str(), res["field"].as_str()),
        (400, Some("segment_parse_error"), Some("target")),
        "{res}"
    );
}

#[tokio::test]
async fn lint_reports_problems_without_saving() {
    let app = TestApp::spawn().await;
    let body = json!({
        "subject": "Hello {{ customer.first_name }}",
        "layout": "html",
        "body": "<p><img src=\"http://cdn.example/x.png\"> <a href=\"http://shop.example\">Shop</a></p>",
    });
    let (status, res) = app.admin(Method::POST, "/v1/templates/lint", Some(body)).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["ok"], false);
    let codes: Vec<&str> = res["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for code in [
        "undefined_variable",
        "image_without_alt",
        "insecure_link",
        "missing_unsubscribe",
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    let (status, _) = app.get("/v1/templates").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn products_are_listed_in_pages_and_deleted() {
    let app = TestApp::spawn().await;
    let products: Vec<Value> = serde_json::from_str(&example("products.json")).unwrap();
    app.admin(
        Method::POST,
        "/v1/catalog/products",
        Some(json!({"products": products})),
    )
    .await;
    let (status, page) = app.get("/v1/catalog/products?limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(page["products"].as_array().unwrap().len(), 10);
    assert_eq!(page["next_after"], "sku-010");
    let (_, page) = app.get("/v1/catalog/products?after=sku-010").await;
    assert_eq!(page["products"].as_array().unwrap().len(), 6);
    let (status, p) = app.get("/v1/catalog/products/sku-001").await;
    assert_eq!((status, p["title"].as_str()), (200, Some("Summit Jacket 1")));
    let (status, _) = app
        .admin(Method::DELETE, "/v1/catalog/products/sku-001", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = app.get("/v1/catalog/products/sku-001").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_hostile_template_gets_a_clear_error_and_the_server_stays_healthy() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1/identify",
        json!({"userId": "eve", "traits": {"first_name": "Eve"}}),
    )
    .await;
    // A block that places itself: recursion stops at the nesting limit.
    let block = json!({"slot": "loop", "target": "everyone", "html": "<p>{% block 'loop' %}</p>"});
    let (status, res) = app.admin(Method::PUT, "/v1/blocks/loop", Some(block)).await;
    assert_eq!(status, 200, "{res}");
    let hostile = [
        "{% for i in (1..1000000000) %}{% for j in (1..1000000000) %}{{ i }}{% endfor %}{% endfor %}",
        "{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..64) %}{% assign s = s | append: s %}{% endfor %}{{ s }}",
        "{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..16) %}{% assign s = s | append: s %}{% endfor %}{{ s | replace: 'x', s }}",
        "{% block 'loop' %}",
    ];
    for (i, body) in hostile.iter().enumerate() {
        let template =
            json!({"subject": "x", "layout": "html", "body": format!("<p>{body}</p>"), "text": "t"});
        let (status, res) = app
            .admin(Method::PUT, &format!("/v1/templates/hostile-{i}"), Some(template))
            .await;
        assert_eq!(status, 200, "{res}");
        let (status, res) = app
            .admin(
                Method::POST,
                &format!("/v1/templates/hostile-{i}/preview"),
                Some(json!({"profile": "eve"})),
            )
            .await;
        assert_eq!(
            (status, res["code"].as_str()),
            (400, Some("template_limit_exceeded")),
            "{body}: {res}"
        );
    }
    let (status, health) = app.get("/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn lint_sees_the_experiment_and_blocks_need_an_existing_segment() {
    let app = TestApp::spawn().await;
    let body = json!({
        "subject": "Variant {{ experiment.variant }}",
        "layout": "html",
        "body": "<p>{{ experiment.name }} <a href=\"{{ unsubscribe_url | url_param: 'src', 'footer' }}\">Unsubscribe</a></p>",
        "experiment": {"name": "subject-test", "variant": "b"},
    });
    let (status, res) = app.admin(Method::POST, "/v1/templates/lint", Some(body)).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["ok"], true, "{res}");
    let codes: Vec<&str> = res["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(
        !codes.contains(&"undefined_variable") && !codes.contains(&"missing_unsubscribe"),
        "{codes:?}"
    );

    let block = json!({"slot": "hero", "target": {"segment": "nobody-saved-this"}, "html": "<p>x</p>"});
    let (status, res) = app.admin(Method::PUT, "/v1/blocks/orphan", Some(block)).await;
    assert_eq!(
        (status, res["code"].as_str(), res["field"].as_str()),
        (400, Some("segment_not_found"), Some("target"))
    );
}

#[tokio::test]
async fn a_preview_can_fix_what_now_means() {
    let app = TestApp::spawn().await;
    let template = json!({"subject": "On {{ 'now' | date: '%Y-%m-%d %H:%M' }}", "layout": "html",
                          "body": "<html><body><p>{{ 'now' | date: '%B %-d' }}</p></body></html>"});
    let (status, res) = app
        .admin(Method::PUT, "/v1/templates/dated", Some(template))
        .await;
    assert_eq!(status, 200, "{res}");
    app.post(
        "/v1/identify",
        json!({"userId": "ada", "traits": {"email": "ada@example.com"}}),
    )
    .await;
    let (status, p) = app
        .admin(
            Method::POST,
            "/v1/templates/dated/preview",
            Some(json!({"profile": "ada", "now": "2031-07-04T09:15:00Z"})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["email"]["subject"], "On 2031-07-04 09:15");
    assert!(p["email"]["text"].as_str().unwrap().contains("July 4"), "{p}");
}

#[tokio::test]
async fn traits_and_event_properties_iterate_in_the_order_written() {
    let app = TestApp::spawn().await;
    let template = json!({"subject": "{% for t in customer %}{{ t[0] }} {% endfor %}", "layout": "html",
                          "body": "<html><body><p>{% for p in event.properties %}{{ p[0] }}={{ p[1] }} {% endfor %}</p></body></html>"});
    let (status, res) = app
        .admin(Method::PUT, "/v1/templates/order", Some(template))
        .await;
    assert_eq!(status, 200, "{res}");
    app.post(
        "/v1/identify",
        json!({"userId": "ada", "traits": {"zeta": "z", "email": "ada@example.com", "alpha": "a", "mid": "m",
                                            "consent": {"personalization": true}}}),
    )
    .await;
    app.post(
        "/v1/track",
        json!({"userId": "ada", "event": "Cart Abandoned", "properties": {"title": "Hat", "description": "Warm", "a": 1}}),
    )
    .await;
    let (status, p) = app
        .admin(
            Method::POST,
            "/v1/templates/order/preview",
            Some(json!({"profile": "ada"})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["email"]["subject"], "id zeta email alpha mid");
    let text = p["email"]["text"].as_str().unwrap();
    assert!(text.contains("title=Hat description=Warm a=1"), "{text}");
}
