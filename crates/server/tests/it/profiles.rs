use chrono::TimeDelta;
use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn identify_merges_anonymous_history_into_known_profile() {
    let app = TestApp::spawn().await;
    // A known customer, and an anonymous visitor who is the same person.
    app.post(
        "/v1/track",
        json!({"userId": "ann", "event": "Order Completed", "properties": {"revenue": 20}}),
    )
    .await;
    app.post(
        "/v1/track",
        json!({"anonymousId": "a-1", "event": "Product Viewed", "context": {"traits": {"city": "Paris"}}}),
    )
    .await;
    app.post(
        "/v1/track",
        json!({"anonymousId": "a-1", "event": "Product Viewed"}),
    )
    .await;
    let anon_id = app.profile("a-1").await["id"].as_str().unwrap().to_owned();
    let known_id = app.profile("ann").await["id"].as_str().unwrap().to_owned();
    assert_ne!(anon_id, known_id);

    app.post(
        "/v1/identify",
        json!({"userId": "ann", "anonymousId": "a-1", "traits": {"email": "Ann@Example.com"}}),
    )
    .await;

    for key in [
        "a-1",
        "ann",
        "ann@example.com",
        anon_id.as_str(),
        known_id.as_str(),
        "email:ANN@example.com",
    ] {
        let p = app.profile(key).await;
        assert_eq!(p["id"], known_id, "{key}");
    }
    let p = app.profile("ann").await;
    assert_eq!(p["aggregates"]["events"]["Product Viewed"]["count"], 2);
    assert_eq!(p["aggregates"]["orders"]["count"], 1);
    assert_eq!(p["traits"]["city"]["value"], "Paris");
    assert_eq!(p["merges"][0]["from"], anon_id);
    assert_eq!(p["merges"][0]["into"], known_id);
    // The anonymous events now belong to the known profile.
    let (_, events) = app.get("/v1/profiles/ann/events").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn alias_merges_chain_a_into_b_then_b_into_c() {
    let app = TestApp::spawn().await;
    app.post("/v1/track", json!({"userId": "A", "event": "Viewed"}))
        .await;
    let a = app.profile("A").await["id"].as_str().unwrap().to_owned();
    app.post("/v1/alias", json!({"previousId": "A", "userId": "B"}))
        .await;
    app.post("/v1/track", json!({"userId": "B", "event": "Viewed"}))
        .await;
    let b = app.profile("B").await["id"].as_str().unwrap().to_owned();
    app.post("/v1/alias", json!({"previousId": "B", "userId": "C"}))
        .await;
    let c = app.profile("C").await;
    assert_ne!(a, b);
    assert_ne!(b, c["id"].as_str().unwrap());
    for key in ["A", "B", a.as_str(), b.as_str()] {
        assert_eq!(app.profile(key).await["id"], c["id"], "{key}");
    }
    assert_eq!(c["aggregates"]["events"]["Viewed"]["count"], 2);
    assert_eq!(c["identities"]["user_ids"], json!(["A", "B", "C"]));
    let (_, events) = app.get(&format!("/v1/profiles/{a}/events")).await;
    assert_eq!(events["events"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_shared_device_does_not_merge_two_known_customers() {
    let app = TestApp::spawn().await;
    app.post("/v1/identify", json!({"userId": "u1", "anonymousId": "device"}))
        .await;
    app.post("/v1/identify", json!({"userId": "u2", "anonymousId": "device"}))
        .await;
    let (p1, p2) = (app.profile("u1").await, app.profile("u2").await);
    assert_ne!(p1["id"], p2["id"]);
    // The device stays with its first owner.
    assert_eq!(app.profile("anonymous_id:device").await["id"], p1["id"]);
}

#[tokio::test]
async fn the_same_email_resolves_to_one_profile() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1/identify",
        json!({"anonymousId": "x1", "traits": {"email": "bo@example.com"}}),
    )
    .await;
    app.post(
        "/v1/track",
        json!({"anonymousId": "x2", "event": "Viewed", "context": {"traits": {"email": "BO@example.com"}}}),
    )
    .await;
    assert_eq!(app.profile("x1").await["id"], app.profile("x2").await["id"]);
}

#[tokio::test]
async fn order_aggregates_rfm_and_rolling_windows_follow_the_clock() {
    let app = TestApp::spawn().await;
    for (i, rev) in [10.0, 30.5].iter().enumerate() {
        app.post("/v1/track", json!({"userId": "o", "event": "Order Completed", "messageId": format!("o{i}"), "properties": {"revenue": rev}})).await;
    }
    app.clock.advance(TimeDelta::days(3));
    app.post(
        "/v1/track",
        json!({"userId": "o", "event": "Order Completed", "properties": {"total": "9.50"}}),
    )
    .await;
    let p = app.profile("o").await;
    let orders = &p["aggregates"]["orders"];
    assert_eq!(orders["count"], 3);
    assert_eq!(orders["revenue"], 50.0);
    assert_eq!(orders["average_order_value"], 16.66);
    let windows = &p["aggregates"]["events"]["Order Completed"]["windows"];
    assert_eq!(
        (windows["1d"].as_u64(), windows["7d"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(p["aggregates"]["rfm"]["frequency"], 3);
    assert_eq!(p["aggregates"]["rfm"]["recency_days"], 0.0);

    app.clock.advance(TimeDelta::days(5));
    let p = app.profile("o").await;
    let windows = &p["aggregates"]["events"]["Order Completed"]["windows"];
    assert_eq!(
        (windows["7d"].as_u64(), windows["30d"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(p["aggregates"]["rfm"]["recency_days"], 5.0);
    assert_eq!(p["aggregates"]["first_seen"], "2026-03-02T12:00:00Z");
    assert_eq!(p["aggregates"]["last_seen"], "2026-03-05T12:00:00Z");
}

#[tokio::test]
async fn history_is_bounded_and_newest_first() {
    let app = TestApp::spawn().await;
    for i in 0..8 {
        app.clock.advance(TimeDelta::seconds(1));
        app.post(
            "/v1/track",
            json!({"userId": "h", "event": format!("E{i}"), "properties": {"i": i}}),
        )
        .await;
    }
    // The test app keeps 5.
    let p = app.profile("h").await;
    let names: Vec<_> = p["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["E7", "E6", "E5", "E4", "E3"]);
    assert_eq!(p["history"][0]["properties"]["i"], 7);
}

#[tokio::test]
async fn every_change_makes_a_version_with_its_diff_and_the_past_can_be_read() {
    let app = TestApp::spawn().await;
    app.post("/v1/identify", json!({"userId": "v", "traits": {"plan": "free"}}))
        .await;
    app.sync().await;
    app.clock.advance(TimeDelta::hours(1));
    app.post("/v1/identify", json!({"userId": "v", "traits": {"plan": "pro"}}))
        .await;
    app.sync().await;
    app.clock.advance(TimeDelta::hours(1));
    app.post(
        "/v1/track",
        json!({"userId": "v", "event": "Order Completed", "properties": {"revenue": 5}}),
    )
    .await;
    app.sync().await;

    let (status, v) = app.get("/v1/profiles/v/versions").await;
    assert_eq!(status, 200);
    let versions = v["versions"].as_array().unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 2, 1]
    );
    assert_eq!(versions[0]["cause"], "track:Order Completed");
    assert_eq!(versions[1]["diff"]["traits"]["plan"]["value"], "pro");
    assert!(versions[1]["diff"].get("orders").is_none());
    assert_eq!(versions[0]["diff"]["orders"]["count"], 1);
    // The diff speaks as the profile does: money in major units, events as counts over windows.
    assert_eq!(versions[0]["diff"]["orders"]["revenue"], 5.0, "{}", versions[0]);
    let (_, profile) = app.get("/v1/profiles/v").await;
    assert_eq!(
        profile["aggregates"]["orders"]["revenue"],
        versions[0]["diff"]["orders"]["revenue"]
    );
    let viewed = &versions[0]["diff"]["events"]["Order Completed"];
    assert_eq!(
        (viewed["count"].as_u64(), viewed["windows"]["7d"].as_u64()),
        (Some(1), Some(1)),
        "{viewed}"
    );
    assert!(
        viewed.get("hourly").is_none() && viewed.get("daily").is_none(),
        "{viewed}"
    );

    let (_, page) = app.get("/v1/profiles/v/versions?limit=2").await;
    assert_eq!(page["next"], "2");
    let (_, rest) = app.get("/v1/profiles/v/versions?before=2").await;
    assert_eq!(rest["versions"][0]["version"], 1);

    let (status, past) = app.get("/v1/profiles/v?as_of=2026-03-02T12:30:00Z").await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["version"], 1);
    assert_eq!(past["traits"]["plan"]["value"], "free");
    assert_eq!(past["aggregates"]["orders"]["count"], 0);
    assert_eq!(past["history"].as_array().unwrap().len(), 1);
    let (_, past) = app.get("/v1/profiles/v?as_of=2026-03-02T13:30:00Z").await;
    assert_eq!(past["traits"]["plan"]["value"], "pro");
    let (status, _) = app.get("/v1/profiles/v?as_of=2026-01-01T00:00:00Z").await;
    assert_eq!(status, 404);
    let (status, err) = app.get("/v1/profiles/v?as_of=yesterday").await;
    assert_eq!((status, err["field"].as_str()), (400, Some("as_of")));
}

#[tokio::test]
async fn versions_replay_from_snapshots_over_many_changes() {
    let app = TestApp::spawn().await;
    for i in 0..40 {
        app.clock.advance(TimeDelta::minutes(1));
        app.post("/v1/identify", json!({"userId": "many", "traits": {"n": i}}))
            .await;
        app.sync().await;
    }
    // Version 35 was recorded 35 minutes in; snapshots are every 32 versions.
    let (_, past) = app.get("/v1/profiles/many?as_of=2026-03-02T12:35:30Z").await;
    assert_eq!(
        (past["version"].as_u64(), past["traits"]["n"]["value"].as_u64()),
        (Some(35), Some(34))
    );
}

#[tokio::test]
async fn events_page_with_a_cursor() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.clock.advance(TimeDelta::seconds(1));
        app.post(
            "/v1/track",
            json!({"userId": "pg", "event": "E", "messageId": format!("pg{i}")}),
        )
        .await;
    }
    let (_, first) = app.get("/v1/profiles/pg/events?limit=3").await;
    let ids: Vec<_> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pg4", "pg3", "pg2"]);
    let next = first["next"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!("/v1/profiles/pg/events?limit=3&before={next}"))
        .await;
    let ids: Vec<_> = rest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pg1", "pg0"]);
    assert!(rest.get("next").is_none());
    let (status, err) = app.get("/v1/profiles/pg/events?limit=0").await;
    assert_eq!((status, err["field"].as_str()), (400, Some("limit")));
}

#[tokio::test]
async fn unknown_profiles_are_404_and_the_profile_api_needs_the_admin_key() {
    let app = TestApp::spawn().await;
    let (status, err) = app.get("/v1/profiles/nobody").await;
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")));
    let res = reqwest::get(format!("{}/v1/profiles/nobody", app.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(format!("{}/v1/profiles/nobody", app.base))
        .header("authorization", app.basic())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn profiles_survive_a_restart_and_keep_merging() {
    let app = TestApp::spawn().await;
    app.post("/v1/track", json!({"anonymousId": "rs-anon", "event": "Viewed"}))
        .await;
    app.post("/v1/identify", json!({"userId": "rs", "traits": {"plan": "pro"}}))
        .await;
    // (Asked before the merge, which moves the visitor's route to the user's partition.)
    let apart = app
        .routed_apart(
            missive_core::IdentityKey::user_id("rs"),
            missive_core::IdentityKey::anonymous_id("rs-anon"),
        )
        .await;
    let app = app.restart().await;
    app.post("/v1/identify", json!({"userId": "rs", "anonymousId": "rs-anon"}))
        .await;
    app.sync().await;
    app.post("/v1/track", json!({"userId": "rs", "event": "Viewed"}))
        .await;
    let p = app.profile("rs-anon").await;
    assert_eq!(p["identities"]["user_ids"], json!(["rs"]));
    assert_eq!(p["aggregates"]["events"]["Viewed"]["count"], 2);
    assert_eq!(p["traits"]["plan"]["value"], "pro");
    // Version 1 before the restart, 2 for the merge, 3 for the last event; a merge across
    // partitions (cluster mode) is two versions, the sign-in and the absorbed profile.
    assert_eq!(p["version"], 3 + u64::from(apart));
}

#[tokio::test]
async fn an_alias_does_not_carry_off_a_device_another_customer_owns() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1/identify",
        json!({"userId": "u1", "anonymousId": "shared-device"}),
    )
    .await;
    app.post(
        "/v1/identify",
        json!({"userId": "u2", "anonymousId": "shared-device"}),
    )
    .await;
    app.post("/v1/alias", json!({"previousId": "u2", "userId": "u3"}))
        .await;
    let u1 = app.profile("u1").await;
    assert_eq!(app.profile("anonymous_id:shared-device").await["id"], u1["id"]);
    assert_eq!(app.profile("u2").await["id"], app.profile("u3").await["id"]);
}
