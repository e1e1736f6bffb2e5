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

async fn save(app: &TestApp, name: &str, expression: &str) -> (u16, serde_json::Value) {
    let res = app
        .client
        .post(format!("{}/v1/segments", app.base))
        .bearer_auth(&app.admin_key)
        .json(&json!({"name": name, "expression": expression}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

async fn members(app: &TestApp, name: &str) -> Vec<String> {
    let (status, res) = app.get(&format!("/v1/segments/{name}/members")).await;
    assert_eq!(status, 200, "{res}");
    res["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

async fn id_of(app: &TestApp, key: &str) -> String {
    app.profile(key).await["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn saving_a_segment_backfills_it_and_new_events_move_profiles_in_real_time() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1/identify",
        json!({"userId": "early", "traits": {"city": "Paris"}}),
    )
    .await;
    let (status, res) = save(&app, "parisians", r#"traits.city == "Paris""#).await;
    assert_eq!(status, 201, "{res}");
    assert_eq!(members(&app, "parisians").await, [id_of(&app, "early").await]);

    // Real time: an identify moves one profile in and another out.
    app.post(
        "/v1/identify",
        json!({"userId": "late", "traits": {"city": "Paris"}}),
    )
    .await;
    app.post(
        "/v1/identify",
        json!({"userId": "early", "traits": {"city": "Lyon"}}),
    )
    .await;
    assert_eq!(members(&app, "parisians").await, [id_of(&app, "late").await]);

    let (_, seg) = app.get("/v1/profiles/early/segments").await;
    let changes: Vec<_> = seg["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["segment"].as_str().unwrap(),
                c["entered"].as_bool().unwrap(),
                c["cause"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [("parisians", false, "event"), ("parisians", true, "backfill")]
    );
    assert_eq!(seg["explain"][0]["member"], false);
    assert_eq!(seg["explain"][0]["predicates"][0]["value"], "Lyon");
}

#[tokio::test]
async fn a_profile_leaves_a_window_segment_at_exactly_the_instant_its_view_ages_out() {
    let app = TestApp::spawn().await;
    save(
        &app,
        "browsing",
        r#"count(event "Product Viewed" within 7d) >= 1"#,
    )
    .await;
    app.post("/v1/track", json!({"userId": "w", "event": "Product Viewed"}))
        .await;
    let id = id_of(&app, "w").await;
    assert_eq!(members(&app, "browsing").await, std::slice::from_ref(&id));
    let (_, seg) = app.get("/v1/profiles/w/segments").await;
    assert_eq!(seg["timers"]["browsing"], "2026-03-09T12:00:00Z");

    // A microsecond before, still in; then the timer fires at its own instant.
    app.clock
        .advance(chrono::TimeDelta::days(7) - chrono::TimeDelta::microseconds(1));
    assert_eq!(members(&app, "browsing").await, std::slice::from_ref(&id));
    app.clock.advance(chrono::TimeDelta::hours(3));
    assert!(members(&app, "browsing").await.is_empty());
    let (_, seg) = app.get("/v1/profiles/w/segments").await;
    assert_eq!(seg["changes"][0]["cause"], "time");
    assert_eq!(seg["changes"][0]["at"], "2026-03-09T12:00:00Z");
}

#[tokio::test]
async fn membership_and_timers_survive_a_restart() {
    let app = TestApp::spawn().await;
    save(
        &app,
        "browsing",
        r#"count(event "Product Viewed" within 1d) >= 1"#,
    )
    .await;
    app.post("/v1/track", json!({"userId": "r", "event": "Product Viewed"}))
        .await;
    let id = id_of(&app, "r").await;
    let app = app.restart().await;
    assert_eq!(members(&app, "browsing").await, [id]);
    app.clock.advance(chrono::TimeDelta::days(2));
    assert!(
        members(&app, "browsing").await.is_empty(),
        "the timer was not re-armed after the restart"
    );
}

#[tokio::test]
async fn segments_reading_segments_are_checked_as_a_whole() {
    let app = TestApp::spawn().await;
    assert_eq!(save(&app, "base", "orders.count >= 1").await.0, 201);
    assert_eq!(
        save(&app, "derived", r#"segment "base" and orders.revenue > 10"#)
            .await
            .0,
        201
    );
    let (status, res) = save(&app, "dangling", r#"segment "nope""#).await;
    assert_eq!(
        (status, res["code"].as_str()),
        (400, Some("segment_dependency_error"))
    );
    let res = app
        .client
        .delete(format!("{}/v1/segments/base", app.base))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409, "a segment another reads must not be deleted");
    app.post(
        "/v1/track",
        json!({"userId": "o", "event": "Order Completed", "properties": {"revenue": 20}}),
    )
    .await;
    assert_eq!(members(&app, "derived").await.len(), 1);
    let (status, list) = app.get("/v1/segments").await;
    assert_eq!((status, list.as_array().unwrap().len()), (200, 2));
}

#[tokio::test]
async fn windows_count_every_event_however_short_the_history() {
    // The test app keeps 5 events of history; the segment needs 8 views in the window.
    let app = TestApp::spawn().await;
    for i in 0..10 {
        app.post(
            "/v1/track",
            json!({"userId": "before", "event": "Product Viewed", "messageId": format!("b{i}")}),
        )
        .await;
        app.post(
            "/v1/track",
            json!({"userId": "before", "event": "Noise", "messageId": format!("n{i}")}),
        )
        .await;
    }
    let (status, res) = save(&app, "keen", r#"count(event "Product Viewed" within 7d) >= 8"#).await;
    assert_eq!(status, 201, "{res}");
    // Backfilled from the event log.
    assert_eq!(members(&app, "keen").await, [id_of(&app, "before").await]);
    // And kept in real time.
    for i in 0..10 {
        app.post(
            "/v1/track",
            json!({"userId": "after", "event": "Product Viewed", "messageId": format!("a{i}")}),
        )
        .await;
        app.post(
            "/v1/track",
            json!({"userId": "after", "event": "Noise", "messageId": format!("m{i}")}),
        )
        .await;
    }
    assert_eq!(members(&app, "keen").await.len(), 2);
}

#[tokio::test]
async fn segment_changes_are_published_once_durable() {
    let app = TestApp::spawn().await;
    let mut changes = app.engine.subscribe_segment_changes();
    save(&app, "buyers", "orders.count >= 1").await;
    app.post(
        "/v1/track",
        json!({"userId": "p", "event": "Order Completed", "properties": {"revenue": 5}}),
    )
    .await;
    app.sync().await;
    let change = tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (change.segment.as_str(), change.entered, change.cause.as_str()),
        ("buyers", true, "event")
    );
    let (status, one) = app.get("/v1/segments/buyers").await;
    assert_eq!(
        (status, one["expression"].as_str()),
        (200, Some("orders.count >= 1"))
    );
}

/// Incremental membership, kept by the engine through events and clock advances, equals a
/// from-scratch evaluation of every profile (the preview), for a seeded random sequence.
#[tokio::test]
async fn incremental_membership_matches_evaluation_from_scratch_through_the_engine() {
    let app = TestApp::spawn().await;
    let defs = [
        (
            "recent-viewers",
            r#"count(event "Product Viewed" within 2d) >= 2"#,
        ),
        (
            "shoe-fans",
            r#"count(event "Product Viewed" where properties.category == "shoes" within 5d) >= 1"#,
        ),
        (
            "buyers",
            r#"orders.count >= 1 and sum(event "Order Completed".revenue within 3d) > 20"#,
        ),
        ("parisians", r#"traits.city == "Paris""#),
        ("parisian-buyers", r#"segment "parisians" and segment "buyers""#),
        ("quiet", "last_seen before 1d ago"),
    ];
    // Nobody has a city yet.
    let (status, _) = app
        .admin(
            reqwest::Method::PUT,
            "/v1/schema/traits/city",
            Some(json!({"type": "string"})),
        )
        .await;
    assert_eq!(status, 200);
    for (name, expr) in defs {
        assert_eq!(save(&app, name, expr).await.0, 201);
    }
    // A small linear congruential generator: the sequence is the same on every run.
    let mut state: u64 = 0x5eed;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    for step in 0..120 {
        let user = format!("u{}", next(6));
        match next(5) {
            0 => {
                let city = if next(2) == 0 { "Paris" } else { "Lyon" };
                app.post("/v1/identify", json!({"userId": user, "traits": {"city": city}}))
                    .await;
            }
            1 | 2 => {
                let category = if next(2) == 0 { "shoes" } else { "hats" };
                app.post(
                    "/v1/track",
                    json!({"userId": user, "event": "Product Viewed", "properties": {"category": category}}),
                )
                .await;
            }
            3 => {
                app.post(
                    "/v1/track",
                    json!({"userId": user, "event": "Order Completed", "properties": {"revenue": next(30)}}),
                )
                .await;
            }
            _ => app
                .clock
                .advance(chrono::TimeDelta::minutes(next(3 * 24 * 60) as i64)),
        }
        if step % 10 == 9 {
            for (name, expr) in defs {
                let mut incremental = members(&app, name).await;
                incremental.sort();
                // A segment that reads others is previewed over their stored members.
                let res = app
                    .client
                    .post(format!("{}/v1/segments/preview", app.base))
                    .bearer_auth(&app.admin_key)
                    .json(&json!({"expression": expr, "sample": 100}))
                    .send()
                    .await
                    .unwrap();
                let body: serde_json::Value = res.json().await.unwrap();
                let mut scratch: Vec<String> = body["sample"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{name}: {body}"))
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                scratch.sort();
                assert_eq!(incremental, scratch, "{name} at step {step}");
            }
        }
    }
}

#[tokio::test]
async fn a_new_profile_is_checked_against_every_segment() {
    let app = TestApp::spawn().await;
    save(&app, "non-buyers", "orders.count == 0").await;
    app.post("/v1/page", json!({"anonymousId": "visitor", "name": "Home"}))
        .await;
    assert_eq!(members(&app, "non-buyers").await, [id_of(&app, "visitor").await]);
}

#[tokio::test]
async fn a_segment_deleted_and_saved_again_lists_its_members() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1/identify",
        json!({"userId": "d", "traits": {"city": "Paris"}}),
    )
    .await;
    save(&app, "parisians", r#"traits.city == "Paris""#).await;
    let res = app
        .client
        .delete(format!("{}/v1/segments/parisians", app.base))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    save(&app, "parisians", r#"traits.city == "Paris""#).await;
    assert_eq!(members(&app, "parisians").await, [id_of(&app, "d").await]);
}

#[tokio::test]
async fn segment_bodies_are_json_whatever_the_content_type_and_errors_are_in_the_catalogue() {
    let app = TestApp::spawn().await;
    // What `curl -d` sends: a form content type.
    let res = app
        .client
        .post(format!("{}/v1/segments", app.base))
        .bearer_auth(&app.admin_key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"name": "all", "expression": "first_seen exists"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = app
        .client
        .post(format!("{}/v1/segments", app.base))
        .bearer_auth(&app.admin_key)
        .body(r#"{"name": "broken""#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_json");
}

#[tokio::test]
async fn redefining_a_segment_records_who_leaves_and_who_stays() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1/identify",
        json!({"userId": "p", "traits": {"city": "Paris"}}),
    )
    .await;
    app.post("/v1/identify", json!({"userId": "l", "traits": {"city": "Lyon"}}))
        .await;
    let mut changes = app.engine.subscribe_segment_changes();
    save(&app, "french", r#"traits.city == "Paris""#).await;
    save(&app, "french", r#"traits.city in ["Paris", "Lyon"]"#).await;
    save(&app, "french", r#"traits.city == "Lyon""#).await;
    assert_eq!(members(&app, "french").await, [id_of(&app, "l").await]);
    let mut seen = Vec::new();
    while let Ok(c) = changes.try_recv() {
        seen.push((c.profile_id.to_string(), c.entered));
    }
    let (p, l) = (id_of(&app, "p").await, id_of(&app, "l").await);
    // p enters once and leaves once; l enters once: no repeated entries.
    assert_eq!(seen, [(p.clone(), true), (l, true), (p, false)]);
}

#[tokio::test]
async fn the_management_api_refuses_requests_from_web_pages() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .post(format!("{}/v1/segments", app.base))
        .bearer_auth(&app.admin_key)
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body(r#"{"name": "x", "expression": "first_seen exists"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}
