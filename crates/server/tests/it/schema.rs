//! The workspace's schema: observed from events, declared, Segment's spec; segment checks
//! and previews refuse what it does not know.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestApp;

async fn preview(app: &TestApp, expression: &str) -> (u16, Value) {
    app.admin(
        Method::POST,
        "/v1/segments/preview",
        Some(json!({"expression": expression})),
    )
    .await
}

fn field<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[tokio::test]
async fn the_schema_lists_what_was_seen_declared_and_specified_and_survives_a_restart() {
    let app = TestApp::spawn().await;
    let (status, schema) = app.get("/v1/schema").await;
    assert_eq!(status, 200, "{schema}");
    // Segment's spec, before any data.
    assert_eq!(field(&schema["traits"], "age")["type"], "number");
    let order = field(&schema["events"], "Order Completed");
    assert_eq!(field(&order["properties"], "total")["type"], "number");
    assert!(order.get("observed").is_none());

    app.post(
        "/v1/identify",
        json!({"userId": "ann", "traits": {"email": "ann@example.com", "plan": "pro", "age": 41, "vip": true}}),
    )
    .await;
    app.post(
        "/v1/track",
        json!({"userId": "ann", "event": "Size Chosen", "properties": {"size": "M", "width": 3}}),
    )
    .await;
    let (_, schema) = app.get("/v1/schema").await;
    let plan = field(&schema["traits"], "plan");
    assert_eq!(plan["type"], "string");
    assert_eq!(plan["observed"]["types"], json!(["string"]));
    assert_eq!(
        plan["observed"]["examples"],
        json!([]),
        "strings are never copied"
    );
    assert!(plan["observed"]["first_seen"].is_string());
    let email = field(&schema["traits"], "email");
    assert_eq!(email["observed"]["examples"], json!([]));
    // A trait's number is a person's (an age): never an example; booleans are.
    assert_eq!(field(&schema["traits"], "age")["observed"]["examples"], json!([]));
    assert_eq!(
        field(&schema["traits"], "vip")["observed"]["examples"],
        json!([true])
    );
    let sized = field(&schema["events"], "Size Chosen");
    assert_eq!(
        field(&sized["properties"], "width")["observed"]["examples"],
        json!([3])
    );
    assert_eq!(field(&sized["properties"], "size")["type"], "string");

    // The registry is kept across restarts and goes on from there.
    let app = app.restart().await;
    app.post(
        "/v1/track",
        json!({"userId": "bob", "event": "Size Chosen", "properties": {"width": 5}}),
    )
    .await;
    let (_, schema) = app.get("/v1/schema").await;
    let sized = field(&schema["events"], "Size Chosen");
    assert_eq!(
        field(&sized["properties"], "width")["observed"]["examples"],
        json!([3, 5])
    );
    assert!(sized["observed"].is_object());
}

#[tokio::test]
async fn unknown_names_are_refused_with_hints_and_declared_ones_accepted() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1/identify",
        json!({"userId": "ann", "traits": {"age": 41, "plan": "pro"}}),
    )
    .await;
    app.post(
        "/v1/track",
        json!({"userId": "ann", "event": "Size Chosen", "properties": {"size": "M"}}),
    )
    .await;

    let cases = [
        (
            "traits.agee == 30",
            "unknown trait `agee`",
            "did you mean `traits.age`?",
        ),
        (
            r#"traits.age == "30""#,
            "cannot compare a number with a string",
            "write the number without quotes",
        ),
        (
            r#"count(event "Size Chosn") > 0"#,
            "unknown event \"Size Chosn\"",
            "did you mean `event \"Size Chosen\"`?",
        ),
        (
            r#"count(event "Size Chosen" where properties.size == 3) > 0"#,
            "cannot compare a string with a number",
            "compare values of the same type",
        ),
        ("traits.vip == true", "unknown trait `vip`", ""),
    ];
    for (expression, message, hint) in cases {
        let (status, body) = preview(&app, expression).await;
        assert_eq!(status, 400, "{expression}: {body}");
        assert_eq!(body["code"], "segment_type_error", "{body}");
        assert_eq!(body["message"], message, "{body}");
        assert!(body["hint"].as_str().unwrap().starts_with(hint), "{body}");
        // Saving refuses the same.
        let saved = json!({"name": "x", "expression": expression});
        let (status, body) = app.admin(Method::POST, "/v1/segments", Some(saved)).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("segment_type_error")));
    }

    // Declared, a trait is known before data carries it; withdrawn, it is unknown again.
    let (status, body) = app
        .admin(
            Method::PUT,
            "/v1/schema/traits/vip",
            Some(json!({"type": "bool"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"kind": "trait", "name": "vip", "type": "bool", "replaced": false})
    );
    let (status, body) = preview(&app, "traits.vip == true").await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(0)), "{body}");
    let (status, body) = preview(&app, r#"traits.vip == "yes""#).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app.admin(Method::DELETE, "/v1/schema/traits/vip", None).await;
    assert_eq!(status, 204);
    let (status, _) = app.admin(Method::DELETE, "/v1/schema/traits/vip", None).await;
    assert_eq!(status, 404);
    assert_eq!(preview(&app, "traits.vip == true").await.0, 400);

    // Events and their properties, with names that need encoding.
    let (status, body) = app
        .admin(Method::PUT, "/v1/schema/events/Return%20Requested", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app
        .admin(
            Method::PUT,
            "/v1/schema/events/Return%20Requested/properties/reason",
            Some(json!({"type": "string"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = preview(
        &app,
        r#"count(event "Return Requested" where properties.reason == "fit") >= 1"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Bad declarations name the field.
    for (path, body) in [
        ("/v1/schema/traits/x", json!({"type": "integer"})),
        ("/v1/schema/events/Return%20Requested", json!({"type": "string"})),
        ("/v1/schema/traits/consent", json!({})),
    ] {
        let (status, res) = app.admin(Method::PUT, path, Some(body)).await;
        assert_eq!(status, 400, "{path}: {res}");
        assert!(res["field"].is_string(), "{res}");
    }
}

#[tokio::test]
async fn a_preview_reads_other_saved_segments() {
    let app = TestApp::spawn().await;
    for (user, plan) in [("ann", "pro"), ("bob", "free")] {
        app.post("/v1/identify", json!({"userId": user, "traits": {"plan": plan}}))
            .await;
    }
    let saved = json!({"name": "pro", "expression": r#"traits.plan == "pro""#});
    assert_eq!(app.admin(Method::POST, "/v1/segments", Some(saved)).await.0, 201);
    let (status, body) = preview(&app, r#"segment "pro""#).await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(1)), "{body}");
    let (status, body) = preview(&app, r#"not segment "pro""#).await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(1)), "{body}");
    let (status, body) = preview(&app, r#"segment "nope""#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "segment_dependency_error");
}
