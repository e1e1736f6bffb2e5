//! Models over a real SQLite store: a propensity model trained from profiles as of a cutoff
//! with a label over the window after it, activated, scored in batch and live into profiles,
//! read by a segment; consent withdrawn removes the scores; rollback to an earlier version.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use missive_core::message::validate_message;
use missive_core::{Event, Profile, SystemClock};
use missive_engine::models::{Models, PropensityRequest};
use missive_engine::profiles::{ProfileKey, find_profile};
use missive_engine::segments::{Segments, save_segment};
use missive_engine::{Engine, EngineConfig};
use missive_models::classify::{Algorithm, Params, TrainOptions};
use missive_models::features::FeatureSpec;
use missive_store::{SqliteStore, Store};
use serde_json::json;

/// `days` after the start of the history, 150 days ago (noon).
fn at(days: i64) -> DateTime<Utc> {
    let start = (Utc::now() - Duration::days(150))
        .date_naive()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc();
    start + Duration::days(days)
}

/// The cutoff: 120 days into the history (30 days ago); the label's window is 29 days.
fn cutoff() -> DateTime<Utc> {
    at(120)
}

fn message(v: serde_json::Value) -> Event {
    validate_message(v, None, None, Utc::now()).unwrap()
}

fn order(user: &str, when: DateTime<Utc>, n: u32) -> Event {
    message(json!({
        "type": "track", "userId": user, "event": "Order Completed",
        "messageId": format!("{user}-order-{n}-{}", when.timestamp()),
        "timestamp": when.to_rfc3339(), "properties": {"revenue": 40 + n, "products": [
            {"product_id": "p1", "category": if n.is_multiple_of(2) { "Dresses" } else { "Shoes" }, "quantity": 2}
        ]}
    }))
}

fn consent(user: &str, profiling: bool, when: DateTime<Utc>) -> Event {
    message(json!({
        "type": "identify", "userId": user,
        "messageId": format!("{user}-consent-{profiling}-{}", when.timestamp()),
        "timestamp": when.to_rfc3339(),
        "traits": {"consent": {"profiling": profiling, "email_marketing": true}}
    }))
}

/// 300 customers: the even ones bought three times before the cutoff and most of them buy
/// again within the window after it; the odd ones bought once and rarely come back.
/// One in ten never gave `profiling` consent.
fn history() -> Vec<Event> {
    let mut out = Vec::new();
    for i in 0..300 {
        let u = format!("c{i}");
        out.push(consent(&u, i % 10 != 0, at(0)));
        if i % 2 == 0 {
            for (n, d) in [30, 60, 90].into_iter().enumerate() {
                out.push(order(&u, at(d + (i % 20)), n as u32));
            }
            if i % 4 != 0 {
                out.push(order(&u, at(129), 9));
            }
        } else {
            out.push(order(&u, at(14), 0));
            if i % 7 == 0 {
                out.push(order(&u, at(131), 9));
            }
        }
    }
    out
}

async fn profile(store: &Store, user: &str) -> Profile {
    find_profile(store, &ProfileKey::parse(user), 10)
        .await
        .unwrap()
        .unwrap()
}

fn score(p: &Profile) -> Option<f64> {
    p.scores.get("buy_again").and_then(|v| v.as_f64())
}

#[tokio::test]
async fn a_propensity_model_trains_from_the_store_and_scores_profiles_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(SqliteStore::open(dir.path().join("missive.db")).await.unwrap());
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), EngineConfig::default())
        .await
        .unwrap();
    for chunk in history().chunks(200) {
        engine.ingest(chunk.to_vec()).await.unwrap();
    }
    save_segment(&engine, "likely_buyers", "scores.buy_again > 0.5", None)
        .await
        .unwrap();
    let models = Models::new(store.clone(), engine.clone());
    let schema = Segments::new(store.clone()).schema().await.unwrap();
    let request = |algorithm| PropensityRequest {
        name: "buy_again".into(),
        label: r#"count(event "Order Completed" within 29d) >= 1"#.into(),
        cutoff: cutoff(),
        horizon: Duration::days(29),
        features: FeatureSpec::default(),
        traits: Vec::new(),
        options: TrainOptions {
            algorithm,
            params: Some(Params::defaults(algorithm)),
            ..TrainOptions::default()
        },
        max_profiles: 10_000,
        trained_by: "test".into(),
    };
    let now = Utc::now();

    // Trained on the 270 consenting profiles; the label looks after the cutoff only.
    let v1 = models
        .train_propensity(request(Algorithm::Logistic), &schema, now)
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.data.rows, 270);
    assert_eq!(v1.data.left_out_no_consent, 30);
    // Even customers not divisible by 4 (and consenting), odd ones divisible by 7.
    let want_positives = (0..300)
        .filter(|i| i % 10 != 0 && ((i % 2 == 0 && i % 4 != 0) || (i % 2 == 1 && i % 7 == 0)))
        .count();
    assert_eq!(v1.data.positives, Some(want_positives));
    assert!(v1.accepted, "{}", v1.verdict);
    // Categories bought became features; so did the messages received (none here).
    let (_, versions) = models.show("buy_again").await.unwrap();
    let names = versions[0].features.names();
    assert_eq!(versions[0].features.categories, ["Dresses", "Shoes"]);
    for n in ["category.Dresses", "opens_per_message", "Email Delivered.30d"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }

    // Activation scores every profile; the segment on the score fills.
    let (entry, scored) = models.activate("buy_again", None, true, None, now).await.unwrap();
    assert_eq!(entry.active, Some(1));
    assert_eq!(scored, 300);
    let loyal = profile(&store, "c2").await;
    assert!(score(&loyal).unwrap() > 0.5, "{:?}", loyal.scores);
    assert_eq!(loyal.scores["_versions"]["buy_again"], 1);
    assert!(loyal.segments.segments.contains("likely_buyers"));
    let once = profile(&store, "c1").await;
    let before = score(&once).unwrap();
    assert!(before < 0.5, "{before}");
    assert!(!once.segments.segments.contains("likely_buyers"));
    // No `profiling` consent: never scored, never in the segment.
    let refused = profile(&store, "c10").await;
    assert!(refused.scores.is_empty(), "{:?}", refused.scores);
    assert!(!refused.segments.segments.contains("likely_buyers"));

    // Live: new orders change the score inside the same commit, and the segment follows.
    let now_orders: Vec<Event> = (0..3)
        .map(|n| order("c1", Utc::now() - Duration::days(40 - 15 * i64::from(n)), 20 + n))
        .collect();
    engine.ingest(now_orders).await.unwrap();
    engine.sync().await.unwrap();
    let after = profile(&store, "c1").await;
    assert!(score(&after).unwrap() > before, "{before} → {:?}", after.scores);
    assert!(
        after.segments.segments.contains("likely_buyers"),
        "{:?}",
        after.scores
    );

    // Withdrawing `profiling` removes the scores and the membership at once.
    engine
        .ingest(vec![consent("c2", false, Utc::now())])
        .await
        .unwrap();
    engine.sync().await.unwrap();
    let withdrawn = profile(&store, "c2").await;
    assert!(withdrawn.scores.is_empty(), "{:?}", withdrawn.scores);
    assert!(!withdrawn.segments.segments.contains("likely_buyers"));

    // Another model's score as a feature: a lifetime-value model, active, scored into each
    // training profile as of the cutoff.
    let clv = missive_engine::models::ClvRequest {
        name: "value".into(),
        calibration_end: cutoff(),
        months: 6,
        monthly_discount: 0.01,
        max_profiles: 10_000,
        trained_by: "test".into(),
    };
    models.train_clv(clv, now).await.unwrap();
    models.activate("value", None, true, None, now).await.unwrap();
    let mut with_value = request(Algorithm::Logistic);
    with_value.name = "buy_again_v".into();
    with_value.features.scores = vec!["nothing".into()];
    let e = models
        .train_propensity(with_value.clone(), &schema, now)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("\"nothing\" is not an active model"),
        "{e}"
    );
    // A lifetime-value model's P(alive) is found by its `_alive` name…
    with_value.features.scores = vec!["value_alive".into()];
    models
        .train_propensity(with_value.clone(), &schema, now)
        .await
        .unwrap();
    // …and the active propensity model's score, as of the cutoff, carries the signal.
    with_value.features.scores = vec!["buy_again".into()];
    let t = models.train_propensity(with_value, &schema, now).await.unwrap();
    let (_, versions) = models.show("buy_again_v").await.unwrap();
    assert!(
        versions[0]
            .features
            .names()
            .contains(&"scores.buy_again".to_string())
    );
    let importances = t.metrics["importances"].as_array().unwrap();
    let value = importances.iter().find(|f| f[0] == "scores.buy_again").unwrap();
    assert!(value[1].as_f64().unwrap() > 0.0, "{importances:?}");

    // A second version, then the rollback to the first.
    let v2 = models
        .train_propensity(request(Algorithm::RandomForest), &schema, now)
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    models
        .activate("buy_again", Some(2), true, None, now)
        .await
        .unwrap();
    assert_eq!(profile(&store, "c4").await.scores["_versions"]["buy_again"], 2);
    let (entry, _) = models
        .activate("buy_again", Some(1), true, None, now)
        .await
        .unwrap();
    assert_eq!(entry.active, Some(1));
    assert_eq!(profile(&store, "c4").await.scores["_versions"]["buy_again"], 1);
    let (entry, versions) = models.show("buy_again").await.unwrap();
    assert_eq!((entry.latest, versions.len()), (2, 2));

    // A label that names nothing is refused with the place.
    let mut bad = request(Algorithm::Logistic);
    bad.label = r#"count(event "Order Completed" within 29d) >= "x""#.into();
    assert!(models.train_propensity(bad, &schema, now).await.is_err());
    engine.shutdown().await;
}

#[tokio::test]
async fn labels_that_leak_cutoffs_too_late_and_stopped_models_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(SqliteStore::open(dir.path().join("missive.db")).await.unwrap());
    let engine = Engine::start(store.clone(), Arc::new(SystemClock), EngineConfig::default())
        .await
        .unwrap();
    for chunk in history().chunks(200) {
        engine.ingest(chunk.to_vec()).await.unwrap();
    }
    let models = Models::new(store.clone(), engine.clone());
    let schema = Segments::new(store.clone()).schema().await.unwrap();
    let now = Utc::now();
    let request = |label: &str, cutoff: DateTime<Utc>| PropensityRequest {
        name: "buy_again".into(),
        label: label.into(),
        cutoff,
        horizon: Duration::days(29),
        features: FeatureSpec::default(),
        traits: Vec::new(),
        options: TrainOptions {
            algorithm: Algorithm::Logistic,
            params: Some(Params::defaults(Algorithm::Logistic)),
            ..TrainOptions::default()
        },
        max_profiles: 10_000,
        trained_by: "test".into(),
    };
    // Labels that would see what the features see: all time, a longer window, orders.
    for leaky in [
        r#"count(event "Order Completed") >= 1"#,
        r#"count(event "Order Completed" within 60d) >= 1"#,
        "orders.count >= 2",
    ] {
        let e = models
            .train_propensity(request(leaky, cutoff()), &schema, now)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("must look only at the window after the cutoff"),
            "{leaky}: {e}"
        );
    }
    // A window that has not passed yet.
    let e = models
        .train_propensity(
            request(
                r#"count(event "Order Completed" within 29d) >= 1"#,
                now - Duration::days(3),
            ),
            &schema,
            now,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("after now"), "{e}");

    // Deactivating removes the model's scores from every profile.
    let good = request(r#"count(event "Order Completed" within 29d) >= 1"#, cutoff());
    models.train_propensity(good, &schema, now).await.unwrap();
    models.activate("buy_again", None, true, None, now).await.unwrap();
    assert!(score(&profile(&store, "c2").await).is_some());
    models.deactivate("buy_again", now).await.unwrap();
    let p = profile(&store, "c2").await;
    assert!(p.scores.is_empty(), "{:?}", p.scores);
    // A later event does not bring them back.
    engine.ingest(vec![order("c2", Utc::now(), 77)]).await.unwrap();
    engine.sync().await.unwrap();
    assert!(profile(&store, "c2").await.scores.is_empty());

    // On a schedule: nothing is due at once; a day later the model is trained again (the
    // cutoff moved on) and the new version activated, since validation accepts it.
    let schedule = missive_engine::models::Schedule {
        score_every_hours: Some(6),
        retrain_every_days: Some(1),
    };
    models
        .activate("buy_again", None, true, Some(schedule), now)
        .await
        .unwrap();
    assert!(models.run_due(now).await.unwrap().is_empty());
    let later = now + Duration::hours(25);
    let done = models.run_due(later).await.unwrap();
    assert_eq!(done, ["buy_again retrained: version 2 active"], "{done:?}");
    let (entry, versions) = models.show("buy_again").await.unwrap();
    assert_eq!(entry.active, Some(2));
    assert_eq!(versions[0].trained_by, "schedule");
    assert_eq!(versions[0].data.cutoff, later - Duration::days(29));
    engine.shutdown().await;
}
