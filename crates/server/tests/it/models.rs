//! The models API over HTTP: a propensity model trained from profiles sent through the
//! tracking API, shown with its validation report as data, activated (scores in profiles),
//! and the errors it answers with.

use chrono::Duration;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, start_time};

/// Customers who ordered three times before the cutoff mostly order again within the window
/// after it; those who ordered once mostly do not.
fn history() -> Vec<Value> {
    // Relative to the server's clock (events later than it would be clamped to it).
    let start = start_time() - Duration::days(150);
    let day = |d: i64| (start + Duration::days(d)).to_rfc3339();
    let mut out = Vec::new();
    for i in 0..160 {
        let u = format!("m{i}");
        out.push(json!({"type": "identify", "userId": u, "timestamp": day(0),
            "traits": {"consent": {"profiling": true}}}));
        let orders: Vec<i64> = match (i % 2 == 0, i % 5 == 0) {
            (true, false) => vec![30, 60, 90, 125],
            (true, true) => vec![30, 60, 90],
            (false, false) => vec![14],
            (false, true) => vec![14, 126],
        };
        for d in orders {
            out.push(json!({"type": "track", "userId": u, "event": "Order Completed",
                "timestamp": day(d + i % 7), "properties": {"revenue": 50}}));
        }
    }
    out
}

#[tokio::test]
async fn models_train_show_activate_and_refuse_what_they_cannot_do() {
    let app = TestApp::spawn().await;
    for chunk in history().chunks(100) {
        let (status, body) = app.post("/v1/batch", json!({"batch": chunk})).await;
        assert_eq!(status, 200, "{body}");
    }
    app.sync().await;
    let cutoff = (start_time() - Duration::days(30)).date_naive().to_string();
    let train = json!({
        "kind": "propensity",
        "label": "count(event \"Order Completed\" within 29d) >= 1",
        "cutoff": cutoff, "horizon_days": 29,
        "algorithm": "logistic", "params": {"c": 1}
    });
    let (status, trained) = app
        .admin(Method::POST, "/v1/models/buy_again/train", Some(train.clone()))
        .await;
    assert_eq!(status, 201, "{trained}");
    assert_eq!(trained["version"], 1);
    assert_eq!(trained["accepted"], true, "{trained}");
    assert_eq!(trained["data"]["rows"], 160);

    // The report is data: folds, holdout, calibration, importances.
    let (status, shown) = app.get("/v1/models/buy_again").await;
    assert_eq!(status, 200);
    let v = &shown["versions"][0];
    assert_eq!(
        v["metrics"]["cross_validation"]["folds"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert!(v["metrics"]["holdout"]["calibration"].as_array().is_some(), "{v}");
    assert!(
        v["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "orders_count")
    );
    assert!(v.get("scorer").is_none(), "the fitted model itself is not shown");

    let (status, act) = app
        .admin(Method::POST, "/v1/models/buy_again/activate", Some(json!({})))
        .await;
    assert_eq!(status, 200, "{act}");
    assert_eq!(act["profiles_scored"], 160);
    let (_, p) = app.get("/v1/profiles/m2").await;
    assert!(p["scores"]["buy_again"].as_f64().unwrap() > 0.5, "{p}");
    let (_, listed) = app.get("/v1/models").await;
    assert_eq!(listed[0]["active"], 1);

    // Errors: a bad name, a bad label (with the field), an unknown model, a bad algorithm.
    let (status, e) = app
        .admin(Method::POST, "/v1/models/Buy-Again/train", Some(train.clone()))
        .await;
    assert_eq!(
        (status, e["code"].as_str(), e["field"].as_str()),
        (400, Some("model_invalid"), Some("name")),
        "{e}"
    );
    let mut bad = train.clone();
    bad["label"] = json!("count(event \"Order Completed\" within 29d) >= \"x\"");
    let (status, e) = app
        .admin(Method::POST, "/v1/models/buy_again/train", Some(bad))
        .await;
    assert_eq!((status, e["field"].as_str()), (400, Some("label")), "{e}");
    let (status, _) = app.get("/v1/models/nothing").await;
    assert_eq!(status, 404);
    let mut bad = train.clone();
    bad["algorithm"] = json!("svm");
    let (status, e) = app
        .admin(Method::POST, "/v1/models/buy_again/train", Some(bad))
        .await;
    assert_eq!((status, e["field"].as_str()), (400, Some("algorithm")), "{e}");
    // A label no one meets leaves a single class: refused before training.
    let mut none = train.clone();
    none["label"] = json!("count(event \"Order Completed\" within 29d) >= 100");
    let (status, e) = app
        .admin(Method::POST, "/v1/models/never/train", Some(none))
        .await;
    assert_eq!((status, e["code"].as_str()), (400, Some("model_invalid")), "{e}");

    let (status, _) = app.admin(Method::DELETE, "/v1/models/buy_again", None).await;
    assert_eq!(status, 204);
    let (status, _) = app.get("/v1/models/buy_again").await;
    assert_eq!(status, 404);
}

/// A `send` step with `at: best_time` queues the message for the person's best hour within
/// its window: their own opens count with `profiling` consent; without it (and with no
/// send-time model trained) the message goes now.
#[tokio::test]
async fn best_time_sends_wait_for_the_persons_hour() {
    let app = TestApp::spawn().await;
    let template =
        json!({"subject": "Hello", "layout": "html", "body": "<html><body><p>Hi</p></body></html>"});
    let (status, res) = app
        .admin(Method::PUT, "/v1/templates/hello", Some(template))
        .await;
    assert_eq!(status, 200, "{res}");
    let journey = json!({
        "trigger": {"event": "Signed Up"},
        "steps": [{"id": "hello", "type": "send", "template": "hello", "at": "best_time", "within": "24h"}]
    });
    let (status, res) = app
        .admin(Method::PUT, "/v1/journeys/welcome", Some(journey))
        .await;
    assert_eq!(status, 200, "{res}");
    let bad = json!({"trigger": {"event": "Signed Up"},
        "steps": [{"id": "hello", "type": "send", "template": "hello", "at": "best_time", "within": "9d"}]});
    let (status, res) = app.admin(Method::PUT, "/v1/journeys/bad", Some(bad)).await;
    assert_eq!(status, 400, "{res}");

    // Both opened at 19:10 UTC on each of the five days before; only ann allows profiling.
    for (user, profiling) in [("ann", true), ("bob", false)] {
        let (status, _) = app
            .post(
                "/v1/identify",
                json!({"userId": user, "traits": {"email": format!("{user}@example.com"),
                "consent": {"email_marketing": true, "profiling": profiling}}}),
            )
            .await;
        assert_eq!(status, 200);
        for d in 1..=5 {
            let at = (start_time() - Duration::days(d))
                .date_naive()
                .and_hms_opt(19, 10, 0)
                .unwrap()
                .and_utc();
            let (status, body) = app
                .post(
                    "/v1/track",
                    json!({"userId": user, "event": "Email Opened", "timestamp": at.to_rfc3339()}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let (status, _) = app
            .post("/v1/track", json!({"userId": user, "event": "Signed Up"}))
            .await;
        assert_eq!(status, 200);
    }
    let (status, res) = app.admin(Method::POST, "/v1/journeys/run", None).await;
    assert_eq!(status, 200, "{res}");
    // A broadcast with `at: best_time` too, at 12:00.
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "openers",
            "expression": "count(event \"Email Opened\" within 30d) >= 1"})),
        )
        .await;
    assert!(status == 200 || status == 201, "{res}");
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "hello", "segment": "openers",
            "at": "best_time", "within": "24h"})),
        )
        .await;
    assert!(status == 200 || status == 201, "{res}");
    let (status, res) = app.admin(Method::POST, "/v1/broadcasts/run", None).await;
    assert_eq!(status, 200, "{res}");
    app.sync().await;
    let outbox = |user: &'static str, journey: bool| {
        let app = &app;
        async move {
            let id = app.profile(user).await["id"].as_str().unwrap().to_string();
            let id = missive_core::ProfileId::parse(&id).unwrap();
            let all = app.engine.store().delivery().outbox_of(&id, 10).await.unwrap();
            all.into_iter()
                .filter(|m| m.step.is_some() == journey)
                .collect::<Vec<_>>()
        }
    };
    let seven_pm = start_time().date_naive().and_hms_opt(19, 0, 0).unwrap().and_utc();
    // The broadcast's messages: ann's waits for her hour, bob's goes now.
    assert_eq!(outbox("ann", false).await[0].next_attempt_at, seven_pm);
    assert!(outbox("bob", false).await[0].next_attempt_at <= start_time() + Duration::minutes(1));
    // The journey: bob's message is queued now; ann's instance waits at the step for her hour,
    // then sends.
    assert!(outbox("ann", true).await.is_empty());
    assert_eq!(outbox("bob", true).await.len(), 1);
    app.clock.set(seven_pm);
    let (status, res) = app.admin(Method::POST, "/v1/journeys/run", None).await;
    assert_eq!(status, 200, "{res}");
    app.sync().await;
    let ann = outbox("ann", true).await;
    assert_eq!(ann.len(), 1, "{ann:?}");
    assert_eq!(ann[0].next_attempt_at, seven_pm);
    // Hours are local. A send-time model learns ann's evening (19:00 on the default clock,
    // UTC here); kai, new in Tokyo with no opens of their own, gets 19:00 in Tokyo (10:00 UTC),
    // not 19:00 UTC (04:00 in Tokyo).
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/models/send_hour/train",
            Some(json!({"kind": "send_time"})),
        )
        .await;
    assert_eq!(status, 201, "{res}");
    let (status, res) = app
        .admin(Method::POST, "/v1/models/send_hour/activate", Some(json!({})))
        .await;
    assert_eq!(status, 200, "{res}");
    let (status, _) = app
        .post(
            "/v1/identify",
            json!({"userId": "kai", "traits": {"email": "kai@example.com", "timezone": "Asia/Tokyo",
            "consent": {"email_marketing": true, "profiling": true}}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post("/v1/track", json!({"userId": "kai", "event": "Signed Up"}))
        .await;
    assert_eq!(status, 200);
    let (status, res) = app.admin(Method::POST, "/v1/journeys/run", None).await;
    assert_eq!(status, 200, "{res}");
    let ten_utc_next_day = (seven_pm + Duration::days(1))
        .date_naive()
        .and_hms_opt(10, 0, 0)
        .unwrap()
        .and_utc();
    assert!(
        outbox("kai", true).await.is_empty(),
        "kai waits for 19:00 in Tokyo"
    );
    app.clock.set(ten_utc_next_day - Duration::minutes(5));
    app.admin(Method::POST, "/v1/journeys/run", None).await;
    app.sync().await;
    assert!(outbox("kai", true).await.is_empty(), "not yet 19:00 in Tokyo");
    app.clock.set(ten_utc_next_day);
    app.admin(Method::POST, "/v1/journeys/run", None).await;
    app.sync().await;
    let kai = outbox("kai", true).await;
    assert_eq!(kai.len(), 1, "{kai:?}");
    assert_eq!(kai[0].next_attempt_at, ten_utc_next_day);
    let profile = app.profile("kai").await;
    assert_eq!(
        profile["scores"]["send_hour"],
        json!(24 * 2 + 19),
        "Wednesday 19:00, Tokyo: {profile}"
    );
    // `within` without `at` is refused.
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "hello", "segment": "openers",
            "within": "24h"})),
        )
        .await;
    assert_eq!(status, 400, "{res}");
}
