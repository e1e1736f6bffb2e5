use serde_json::json;

use crate::support::TestApp;

async fn preview(app: &TestApp, expression: &str) -> (u16, serde_json::Value) {
    let res = app
        .client
        .post(format!("{}/v1/segments/preview", app.base))
        .bearer_auth(&app.admin_key)
        .json(&json!({"expression": expression}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn preview_counts_the_profiles_a_segment_would_hold() {
    let app = TestApp::spawn().await;
    for (user, city, views) in [("a", "New York", 2), ("b", "New York", 0), ("c", "Paris", 3)] {
        app.post(
            "/v1/identify",
            json!({"userId": user, "traits": {"city": city, "age": 30}}),
        )
        .await;
        for _ in 0..views {
            app.post(
                "/v1/track",
                json!({"userId": user, "event": "Product Viewed", "properties": {"category": "shoes"}}),
            )
            .await;
        }
    }
    let (status, res) = preview(
        &app,
        r#"traits.city == "New York" and count(event "Product Viewed" within 7d) >= 1"#,
    )
    .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(
        (res["count"].as_u64(), res["scanned"].as_u64()),
        (Some(1), Some(3))
    );
    let a = app.profile("a").await;
    assert_eq!(res["sample"], json!([a["id"]]));

    let (_, res) = preview(
        &app,
        r#"count(event "Product Viewed" where properties.category == "shoes") >= 2"#,
    )
    .await;
    assert_eq!(res["count"], 2);
    // The window moves with the clock: eight days later nobody has viewed within 7 days.
    app.clock.advance(chrono::TimeDelta::days(8));
    let (_, res) = preview(&app, r#"count(event "Product Viewed" within 7d) >= 1"#).await;
    assert_eq!(res["count"], 0);
}

#[tokio::test]
async fn preview_refuses_bad_segments_with_position_and_hint() {
    let app = TestApp::spawn().await;
    app.post("/v1/identify", json!({"userId": "a", "traits": {"age": 30}}))
        .await;
    let (status, res) = preview(&app, "traits.city = \"Paris\"").await;
    assert_eq!(status, 400);
    assert_eq!(res["code"], "segment_parse_error");
    assert_eq!(res["at"], json!({"line": 1, "column": 13}));
    assert_eq!(res["hint"], "compare with `==`");
    // The workspace's `age` is a number: comparing it with a string is refused.
    let (status, res) = preview(&app, r#"traits.age == "30""#).await;
    assert_eq!((status, res["code"].as_str()), (400, Some("segment_type_error")));
}
