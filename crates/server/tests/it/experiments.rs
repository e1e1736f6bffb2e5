//! The experiments API: drafts, plans, status changes, and what each refuses.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestApp;

fn subject_test() -> Value {
    json!({
        "name": "cart-subject",
        "hypothesis": "Naming the product in the subject lifts opens",
        "varies": "subject",
        "variants": [
            {"name": "control", "weight": 50},
            {"name": "product", "weight": 50, "subject": "Still thinking about it?"}
        ],
        "primary_metric": "open",
        "plan": {"baseline_rate": 0.2, "minimum_lift": 0.1, "units_per_day": 1000}
    })
}

#[tokio::test]
async fn experiments_are_drafted_planned_run_and_concluded() {
    let app = TestApp::spawn().await;
    let (status, e) = app
        .admin(Method::POST, "/v1/experiments", Some(subject_test()))
        .await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(
        (e["status"].as_str(), e["control"].as_str()),
        (Some("draft"), Some("control"))
    );
    assert_eq!(e["definition"]["guardrails"], json!(["unsubscribe", "complaint"]));
    assert_eq!(e["estimate"]["units_per_variant"], 6508);
    assert!(
        e["estimate"]["summary"]
            .as_str()
            .unwrap()
            .contains("needs 14 day(s)"),
        "{e}"
    );

    let (status, err) = app
        .admin(Method::POST, "/v1/experiments", Some(subject_test()))
        .await;
    assert_eq!((status, err["code"].as_str()), (409, Some("experiment_exists")));
    let mut bad = subject_test();
    bad["name"] = json!("other");
    bad["variants"][1]["weight"] = json!(0);
    let (status, err) = app.admin(Method::POST, "/v1/experiments", Some(bad)).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("experiment_invalid")),
        "{err}"
    );
    assert_eq!(err["field"], "variants[1].weight");

    // A draft can change.
    let mut changed = subject_test();
    changed["hypothesis"] = json!("A question in the subject lifts opens");
    let (status, e) = app
        .admin(Method::PUT, "/v1/experiments/cart-subject", Some(changed.clone()))
        .await;
    assert_eq!(status, 200, "{e}");
    let (_, list) = app.get("/v1/experiments").await;
    assert_eq!(
        list[0]["definition"]["hypothesis"],
        "A question in the subject lifts opens"
    );

    // Running: the definition is frozen.
    let (status, e) = app
        .admin(Method::POST, "/v1/experiments/cart-subject/start", None)
        .await;
    assert_eq!((status, e["status"].as_str()), (200, Some("running")), "{e}");
    assert!(e["started_at"].is_string());
    for (method, path, body) in [
        (Method::PUT, "/v1/experiments/cart-subject", Some(changed)),
        (Method::DELETE, "/v1/experiments/cart-subject", None),
        (Method::POST, "/v1/experiments/cart-subject/start", None),
    ] {
        let (status, err) = app.admin(method, path, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (409, Some("experiment_state")),
            "{path}: {err}"
        );
    }
    let (status, e) = app
        .admin(Method::POST, "/v1/experiments/cart-subject/stop", None)
        .await;
    assert_eq!((status, e["status"].as_str()), (200, Some("stopped")));
    let (status, err) = app
        .admin(
            Method::POST,
            "/v1/experiments/cart-subject/conclude",
            Some(json!({"winner": "nobody"})),
        )
        .await;
    assert_eq!((status, err["field"].as_str()), (400, Some("winner")), "{err}");
    let (status, e) = app
        .admin(
            Method::POST,
            "/v1/experiments/cart-subject/conclude",
            Some(json!({"winner": "product"})),
        )
        .await;
    assert_eq!(
        (status, e["concluded"]["winner"].as_str()),
        (200, Some("product")),
        "{e}"
    );
    let (status, _) = app
        .admin(Method::POST, "/v1/experiments/cart-subject/start", None)
        .await;
    assert_eq!(status, 409);
    let (status, _) = app.get("/v1/experiments/nope").await;
    assert_eq!(status, 404);

    let (status, g) = app.get("/v1/global-holdout").await;
    assert_eq!(status, 200, "{g}");
    assert!(
        g["verdict"]
            .as_str()
            .unwrap()
            .starts_with("No global holdout is set")
    );
    let (status, err) = app.get("/v1/global-holdout?days=0").await;
    assert_eq!((status, err["field"].as_str()), (400, Some("days")), "{err}");

    // Results of an experiment nobody was exposed to: figures of zero and a plain answer.
    let (status, r) = app.get("/v1/experiments/cart-subject/results").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["verdict"], "No one has been exposed yet.");
    assert_eq!(r["variants"][1]["variant"], "product");
    assert_eq!(r["variants"][1]["recipients"], 0);
    assert_eq!(r["plan"]["units_per_variant"], 6508);
    assert_eq!(app.get("/v1/experiments/nope/results").await.0, 404);
    let res = app
        .client
        .get(format!("{}/v1/experiments/cart-subject/chart.svg", app.base))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/svg+xml; charset=utf-8");
    assert!(res.text().await.unwrap().contains("product against control"));
    let (status, err) = app
        .get("/v1/experiments/cart-subject/chart.svg?variant=control")
        .await;
    assert_eq!(
        (status, err["code"].as_str(), err["field"].as_str()),
        (400, Some("experiment_invalid"), Some("variant")),
        "{err}"
    );

    // A draft can be deleted.
    let mut draft = subject_test();
    draft["name"] = json!("scratch");
    assert_eq!(
        app.admin(Method::POST, "/v1/experiments", Some(draft)).await.0,
        201
    );
    assert_eq!(
        app.admin(Method::DELETE, "/v1/experiments/scratch", None).await.0,
        204
    );
    assert_eq!(app.get("/v1/experiments/scratch").await.0, 404);
}
