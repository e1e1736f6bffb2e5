use std::io::Write;

use serde_json::{Value, json};

use crate::support::TestApp;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn every_call_of_the_tracking_api_is_accepted_with_basic_auth() {
    let app = TestApp::spawn().await;
    for (path, body) in [
        ("/v1/track", json!({"userId": "u1", "event": "Product Viewed"})),
        ("/v1/identify", json!({"userId": "u1", "traits": {"plan": "pro"}})),
        ("/v1/page", json!({"userId": "u1", "name": "Home"})),
        ("/v1/screen", json!({"userId": "u1", "name": "Cart"})),
        (
            "/v1/group",
            json!({"userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}),
        ),
        ("/v1/alias", json!({"userId": "u1", "previousId": "old-u1"})),
    ] {
        let (status, res) = app.post(path, body).await;
        assert_eq!(status, 200, "{path}: {res}");
        assert_eq!(res["accepted"], 1, "{path}");
    }
    let p = app.profile("u1").await;
    for name in [
        "Product Viewed",
        "$identify",
        "$page",
        "$screen",
        "$group",
        "$alias",
    ] {
        assert_eq!(p["aggregates"]["events"][name]["count"], 1, "{name}");
    }
    // Group traits describe the group, not the person.
    assert!(p["traits"].get("name").is_none());
    assert_eq!(p["traits"]["plan"]["value"], "pro");
}

#[tokio::test]
async fn write_key_in_the_body_is_accepted_and_a_missing_or_wrong_key_is_refused() {
    let app = TestApp::spawn().await;
    let body = json!({"userId": "u1", "event": "x", "writeKey": app.write_key});
    let (status, _) = app
        .post_raw("/v1/track", body.to_string().into_bytes(), &[])
        .await;
    assert_eq!(status, 200);

    let (status, res) = app
        .post_raw(
            "/v1/track",
            json!({"userId": "u1", "event": "x"}).to_string().into_bytes(),
            &[],
        )
        .await;
    assert_eq!((status, res["code"].as_str()), (401, Some("unauthorized")));
    let bad = json!({"userId": "u1", "event": "x", "writeKey": "wk_nope"})
        .to_string()
        .into_bytes();
    assert_eq!(app.post_raw("/v1/track", bad, &[]).await.0, 401);
    let wrong = "Basic d2tfbm9wZTo="; // wk_nope:
    let (status, _) = app
        .post_raw(
            "/v1/batch",
            json!({"batch": []}).to_string().into_bytes(),
            &[("authorization", wrong)],
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_broken_gzip_is_a_clear_400() {
    let app = TestApp::spawn().await;
    let body = json!({"batch": [
        {"type": "identify", "userId": "gz", "context": {"traits": {"email": "gz@example.com"}}},
        {"type": "track", "userId": "gz", "event": "Signed Up"}
    ]});
    let auth = app.basic();
    let headers = [
        ("authorization", auth.as_str()),
        ("content-encoding", "gzip"),
        ("content-type", "application/json"),
    ];
    let (status, res) = app
        .post_raw("/v1/batch", gzip(body.to_string().as_bytes()), &headers)
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["accepted"], 2);
    assert_eq!(
        app.profile("gz@example.com").await["identities"]["user_ids"],
        json!(["gz"])
    );

    let (status, res) = app
        .post_raw("/v1/batch", b"not gzip at all".to_vec(), &headers)
        .await;
    assert_eq!((status, res["code"].as_str()), (400, Some("invalid_gzip")));
}

#[tokio::test]
async fn a_resent_batch_is_counted_once() {
    let app = TestApp::spawn().await;
    let batch = json!({"batch": [
        {"type": "track", "userId": "d1", "event": "Product Viewed", "messageId": "dup-1"},
        {"type": "track", "userId": "d1", "event": "Product Viewed", "messageId": "dup-2"}
    ]});
    let (_, first) = app.post("/v1/batch", batch.clone()).await;
    assert_eq!(
        (first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (Some(2), Some(0))
    );
    let (status, again) = app.post("/v1/batch", batch).await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    // Within one batch too.
    let twice = json!({"batch": [
        {"type": "track", "userId": "d1", "event": "Product Viewed", "messageId": "dup-3"},
        {"type": "track", "userId": "d1", "event": "Product Viewed", "messageId": "dup-3"}
    ]});
    let (_, res) = app.post("/v1/batch", twice).await;
    assert_eq!(
        (res["accepted"].as_u64(), res["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        app.profile("d1").await["aggregates"]["events"]["Product Viewed"]["count"],
        3
    );
}

#[tokio::test]
async fn a_resent_batch_is_counted_once_after_a_restart() {
    let app = TestApp::spawn().await;
    let batch = json!({"batch": [{"type": "track", "userId": "r1", "event": "Viewed", "messageId": "rs-1"}]});
    app.post("/v1/batch", batch.clone()).await;
    let app = app.restart().await;
    let (_, res) = app.post("/v1/batch", batch).await;
    assert_eq!(res["duplicates"], 1);
    assert_eq!(
        app.profile("r1").await["aggregates"]["events"]["Viewed"]["count"],
        1
    );
}

#[tokio::test]
async fn size_limits_answer_413_with_a_clear_code() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(33 * 1024);
    let (status, res) = app
        .post(
            "/v1/track",
            json!({"userId": "u", "event": "x", "properties": {"big": big}}),
        )
        .await;
    assert_eq!(
        (status, res["code"].as_str()),
        (413, Some("message_too_large")),
        "{res}"
    );

    let items: Vec<Value> = (0..30)
        .map(|i| json!({"type": "track", "userId": "u", "event": "x", "messageId": format!("b{i}"), "properties": {"pad": "y".repeat(20 * 1024)}}))
        .collect();
    let (status, res) = app.post("/v1/batch", json!({"batch": items})).await;
    assert_eq!(
        (status, res["code"].as_str()),
        (413, Some("batch_too_large")),
        "{res}"
    );

    // In a batch, one oversized message is rejected and the others are kept.
    let batch = json!({"batch": [
        {"type": "track", "userId": "u", "event": "ok", "messageId": "keep-1"},
        {"type": "track", "userId": "u", "event": "x", "messageId": "big-1", "properties": {"big": big}}
    ]});
    let (status, res) = app.post("/v1/batch", batch).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["accepted"], 1);
    assert_eq!(res["rejected"][0]["index"], 1);
    assert_eq!(res["rejected"][0]["code"], "message_too_large");
}

#[tokio::test]
async fn malformed_json_and_wrong_shapes_are_400_naming_the_problem() {
    let app = TestApp::spawn().await;
    let auth = app.basic();
    let h = [("authorization", auth.as_str())];
    let (status, res) = app.post_raw("/v1/track", b"{\"userId\": ".to_vec(), &h).await;
    assert_eq!((status, res["code"].as_str()), (400, Some("invalid_json")));
    let (status, res) = app.post_raw("/v1/batch", b"[1, 2]".to_vec(), &h).await;
    assert_eq!((status, res["code"].as_str()), (400, Some("invalid_type")));
    let (status, res) = app.post("/v1/batch", json!({"batch": {"a": 1}})).await;
    assert_eq!((status, res["field"].as_str()), (400, Some("batch")));
    let (status, res) = app
        .post("/v1/batch", json!({"sentAt": "then", "batch": []}))
        .await;
    assert_eq!((status, res["field"].as_str()), (400, Some("sentAt")));

    for (path, body, code, field) in [
        ("/v1/track", json!({"event": "x"}), "missing_identity", "userId"),
        ("/v1/track", json!({"userId": "u"}), "missing_field", "event"),
        (
            "/v1/track",
            json!({"userId": ["u"], "event": "x"}),
            "invalid_type",
            "userId",
        ),
        (
            "/v1/track",
            json!({"anonymousId": true, "event": "x"}),
            "invalid_type",
            "anonymousId",
        ),
        (
            "/v1/track",
            json!({"userId": "u", "event": "x", "properties": "p"}),
            "invalid_type",
            "properties",
        ),
        (
            "/v1/track",
            json!({"userId": "u", "event": "x", "timestamp": 12}),
            "invalid_type",
            "timestamp",
        ),
        (
            "/v1/track",
            json!({"userId": "u", "event": "x", "timestamp": "noon"}),
            "invalid_timestamp",
            "timestamp",
        ),
        (
            "/v1/track",
            json!({"userId": "u", "event": "x", "messageId": 7}),
            "invalid_type",
            "messageId",
        ),
        (
            "/v1/identify",
            json!({"userId": "u", "traits": [1]}),
            "invalid_type",
            "traits",
        ),
        (
            "/v1/identify",
            json!({"userId": "u", "context": {"traits": "t"}}),
            "invalid_type",
            "context.traits",
        ),
        ("/v1/alias", json!({"userId": "u"}), "missing_field", "previousId"),
        ("/v1/group", json!({"userId": "u"}), "missing_field", "groupId"),
    ] {
        let (status, res) = app.post(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {res}");
        assert_eq!(
            (res["code"].as_str(), res["field"].as_str()),
            (Some(code), Some(field)),
            "{path} {body}"
        );
    }
}

#[tokio::test]
async fn one_bad_message_in_a_batch_does_not_drop_the_good_ones() {
    let app = TestApp::spawn().await;
    let batch = json!({"batch": [
        {"type": "track", "userId": "g1", "event": "Good", "messageId": "good-1"},
        {"type": "track", "event": "No identity", "messageId": "bad-1"},
        {"type": "teleport", "userId": "g1", "messageId": "bad-2"},
        "not an object",
        {"type": "identify", "userId": "g1", "traits": {"plan": "pro"}, "messageId": "good-2"}
    ]});
    let (status, res) = app.post("/v1/batch", batch).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["accepted"], 2);
    let rejected = res["rejected"].as_array().unwrap();
    let summary: Vec<_> = rejected
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["code"].as_str().unwrap(),
                r["messageId"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "missing_identity", Some("bad-1")),
            (2, "invalid_type", Some("bad-2")),
            (3, "invalid_message", None)
        ]
    );
    assert_eq!(
        app.profile("g1").await["aggregates"]["events"]["Good"]["count"],
        1
    );

    let (status, res) = app
        .post("/v1/batch", json!({"batch": [{"type": "track", "event": "x"}]}))
        .await;
    assert_eq!((status, res["success"].as_bool()), (400, Some(false)));
}

#[tokio::test]
async fn client_clock_skew_is_corrected_from_sent_at_and_received_at_is_stamped() {
    let app = TestApp::spawn().await;
    // The device clock runs one hour fast: it says it sent at 13:00 when the server's time is 12:00.
    let batch = json!({"sentAt": "2026-03-02T13:00:00Z", "batch": [
        {"type": "track", "userId": "skew", "event": "Viewed", "timestamp": "2026-03-02T12:55:00Z", "messageId": "sk-1"}
    ]});
    app.post("/v1/batch", batch).await;
    let (_, events) = app.get("/v1/profiles/skew/events").await;
    let e = &events["events"][0];
    assert_eq!(e["timestamp"], "2026-03-02T11:55:00Z");
    assert_eq!(e["received_at"], "2026-03-02T12:00:00Z");
    assert_eq!(e["body"]["originalTimestamp"], "2026-03-02T12:55:00+00:00");
    assert_eq!(e["body"]["receivedAt"], "2026-03-02T12:00:00+00:00");
}

#[tokio::test]
async fn unsupported_content_encoding_is_415() {
    let app = TestApp::spawn().await;
    let auth = app.basic();
    let (status, res) = app
        .post_raw(
            "/v1/track",
            b"{}".to_vec(),
            &[("authorization", auth.as_str()), ("content-encoding", "br")],
        )
        .await;
    assert_eq!(
        (status, res["code"].as_str()),
        (415, Some("unsupported_encoding"))
    );
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let app = TestApp::spawn().await;
    app.post("/v1/track", json!({"userId": "m", "event": "x"})).await;
    app.post("/v1/track", json!({"event": "x"})).await;
    let (status, health) = app.get("/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let text = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "missive_events_accepted_total",
        "missive_events_rejected_total{reason=\"missing_identity\"}",
        "missive_ingest_ack_seconds_bucket",
        "missive_store_commit_seconds_bucket",
        "missive_profiles",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}
