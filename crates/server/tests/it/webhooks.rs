//! Outbound webhooks end to end: a real receiver (Python, verifying every request with the
//! Standard Webhooks organisation's `standardwebhooks` package) that fails, times out and goes
//! down for a while; missive's deliveries must all arrive, once each as accepted, in order per
//! profile, signed (also across a secret rotation), with personal data only where consent
//! allows; dead letters replay; pausing holds; the SSRF guard refuses internal addresses.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::TestApp;

struct Receiver {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl Receiver {
    /// `None` when no Python with `standardwebhooks` is configured (CI always has one).
    fn start(secrets: &[&str]) -> Option<Receiver> {
        let Some(python) = std::env::var_os("MISSIVE_TEST_PYTHON") else {
            println!("skipped: MISSIVE_TEST_PYTHON not set (CI sets it, with standardwebhooks)");
            return None;
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/webhook_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(secrets)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver prints its port");
        Some(Receiver {
            child,
            port,
            http: reqwest::Client::new(),
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    async fn control(&self, v: Value) {
        let res = self
            .http
            .post(format!("http://127.0.0.1:{}/control", self.port))
            .json(&v)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    async fn records(&self) -> Vec<Value> {
        self.http
            .get(format!("http://127.0.0.1:{}/records", self.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The records answered 2xx and not timed out: what missive saw accepted.
    async fn accepted(&self) -> Vec<Value> {
        self.records()
            .await
            .into_iter()
            .filter(|r| r["status"] == 200 && r["slow"] == false)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs delivery until `done` holds for the receiver's accepted records (or fails after 30 s).
async fn deliver_until(app: &TestApp, receiver: &Receiver, what: &str, done: impl Fn(&[Value]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        app.sync().await;
        app.state.webhooks.run_pending().await.unwrap();
        if done(&receiver.accepted().await) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["body"]["type"] == kind).collect()
}

fn seq(r: &Value) -> u64 {
    r["id"]
        .as_str()
        .unwrap()
        .trim_start_matches("msg_")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn deliveries_survive_a_failing_receiver_signed_ordered_and_consent_limited() {
    let secret = missive_webhooks::signature::Secret::generate().expose();
    let Some(receiver) = Receiver::start(&[&secret]) else {
        return;
    };
    let app = TestApp::spawn().await;
    let (status, created) = app
        .admin(
            Method::POST,
            "/v1/webhooks",
            Some(json!({
                "name": "crm", "url": receiver.url(), "secret": secret,
                "events": ["segment.entered", "segment.exited", "consent.changed", "profile.merged"],
                "personal_data": {"purpose": "third_party_enrichment", "traits": ["first_name"]},
                "rate_per_second": 1000, "timeout_ms": 500,
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["secret"], secret.as_str());
    assert_eq!(created["signing_secrets"], 1);
    // The schema learns `tier` from data before a segment can use it.
    app.post(
        "/v1/identify",
        json!({"userId": "u0", "traits": {"tier": "bronze"}}),
    )
    .await;
    app.sync().await;
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "vip", "expression": r#"traits.tier == "gold""#})),
        )
        .await;
    assert_eq!(status, 201, "{res}");

    // Two failures and one answer too slow for the 500 ms timeout come first.
    receiver.control(json!({"fail_next": 2, "slow_next": 1})).await;
    for (user, name) in [("u1", "Ada"), ("u2", "Bo"), ("u3", "Cy")] {
        let traits = json!({"tier": "gold", "first_name": name, "email": format!("{user}@example.com")});
        assert_eq!(
            app.post("/v1/identify", json!({"userId": user, "traits": traits}))
                .await
                .0,
            200
        );
    }
    app.sync().await;
    let tick = || app.clock.advance(chrono::TimeDelta::seconds(1));
    tick();
    let (status, res) = app
        .admin(
            Method::PUT,
            "/v1/profiles/u1/consent",
            Some(json!({"purposes": {"third_party_enrichment": true}, "source": "test"})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    for tier in ["silver", "gold"] {
        tick();
        app.post("/v1/identify", json!({"userId": "u1", "traits": {"tier": tier}}))
            .await;
        app.sync().await;
    }
    // An anonymous visitor who turns out to be u2: a merge.
    tick();
    app.post(
        "/v1/track",
        json!({"anonymousId": "anon-7", "event": "Product Viewed", "properties": {"product_id": "p1"}}),
    )
    .await;
    app.sync().await;
    app.post("/v1/identify", json!({"userId": "u2", "anonymousId": "anon-7"}))
        .await;

    // u1, u2, u3 entered; u1 consented, left and came back; anon-7 merged.
    deliver_until(&app, &receiver, "the first seven notices", |r| {
        let ids: std::collections::BTreeSet<_> = r.iter().map(|x| x["id"].to_string()).collect();
        ids.len() >= 7
    })
    .await;
    let all = receiver.records().await;
    assert!(
        all.iter().all(|r| r["verified"] == true),
        "every request verifies: {all:?}"
    );
    let accepted = receiver.accepted().await;
    let ids: std::collections::BTreeSet<_> = accepted.iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        accepted.len(),
        "each notice accepted once: {accepted:?}"
    );
    assert_eq!(accepted.len(), 7, "{accepted:?}");
    // The failures were retried under the same webhook-id.
    let failed: Vec<_> = all
        .iter()
        .filter(|r| r["status"] != 200 || r["slow"] == true)
        .collect();
    assert_eq!(failed.len(), 3, "{all:?}");
    for f in &failed {
        assert!(ids.contains(f["id"].as_str().unwrap()), "{f} was retried");
    }
    // In queue order, so in order per profile: u1 entered, consented, left, came back.
    assert!(
        accepted.windows(2).all(|w| seq(&w[0]) < seq(&w[1])),
        "{accepted:?}"
    );
    let u1 = app.profile("u1").await["id"].as_str().unwrap().to_owned();
    let u1_types: Vec<&str> = accepted
        .iter()
        .filter(|r| r["body"]["data"]["profile_id"] == u1.as_str())
        .map(|r| r["body"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        u1_types,
        [
            "segment.entered",
            "consent.changed",
            "segment.exited",
            "segment.entered"
        ]
    );
    assert_eq!(of_type(&accepted, "profile.merged").len(), 1);
    // Personal data only where the person's consent covers the endpoint's purpose: u1 after
    // consenting; never u2 or u3.
    let last_u1 = accepted
        .iter()
        .rfind(|r| r["body"]["data"]["profile_id"] == u1.as_str())
        .unwrap();
    assert_eq!(
        last_u1["body"]["data"]["profile"],
        json!({"email": "u1@example.com", "user_id": "u1", "traits": {"first_name": "Ada"}})
    );
    for r in accepted
        .iter()
        .filter(|r| r["body"]["data"]["profile_id"] != u1.as_str())
    {
        assert!(r["body"]["data"].get("profile").is_none(), "{r}");
    }
    // The attempts say what happened.
    let (_, attempts) = app.get("/v1/webhooks/crm/attempts?limit=100").await;
    let statuses: Vec<u64> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 2, "{attempts}");
    assert!(
        attempts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status"] == 0 && a["error"].as_str().unwrap().contains("no answer within 500 ms")),
        "{attempts}"
    );

    // A rotation: both secrets sign during the overlap; the receiver, told only the new one,
    // still verifies.
    let (status, rotated) = app.admin(Method::POST, "/v1/webhooks/crm/rotate", None).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["signing_secrets"], 2);
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    receiver.control(json!({"secrets": [new_secret]})).await;
    app.post(
        "/v1/identify",
        json!({"userId": "u4", "traits": {"tier": "gold"}}),
    )
    .await;
    deliver_until(&app, &receiver, "u4 after the rotation", |r| r.len() >= 8).await;
    let last = receiver.records().await.pop().unwrap();
    assert_eq!(
        (last["verified"].clone(), last["signatures"].clone()),
        (json!(true), json!(2))
    );

    // Down for longer than the retry window (2 s in the tests): a dead letter, replayed once
    // the receiver is back.
    receiver.control(json!({"down": true})).await;
    app.post(
        "/v1/identify",
        json!({"userId": "u5", "traits": {"tier": "gold"}}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let letters = loop {
        app.sync().await;
        app.state.webhooks.run_pending().await.unwrap();
        let (_, letters) = app.get("/v1/webhooks/crm/dead-letters").await;
        if !letters.as_array().unwrap().is_empty() {
            break letters;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters[0]["type"], "segment.entered");
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("HTTP 503"),
        "{letters}"
    );
    receiver.control(json!({"down": false})).await;
    let (status, res) = app
        .admin(Method::POST, "/v1/webhooks/crm/dead-letters/replay", None)
        .await;
    assert_eq!((status, res["replayed"].clone()), (200, json!(1)), "{res}");
    // The breaker waits out its probe interval after a dead letter; resuming means "now".
    app.admin(Method::POST, "/v1/webhooks/crm/resume", None).await;
    deliver_until(&app, &receiver, "the replayed dead letter", |r| r.len() >= 9).await;
    let u5 = app.profile("u5").await["id"].as_str().unwrap().to_owned();
    let replayed = receiver.accepted().await.last().unwrap().clone();
    assert_eq!(replayed["body"]["data"]["profile_id"], u5.as_str());
    // Under the webhook-id it failed with, so a receiver that did take it can tell.
    assert_eq!(replayed["id"], format!("msg_{}", letters[0]["seq"]));

    // Paused, nothing goes out; resumed, what waited does.
    let (status, paused) = app.admin(Method::POST, "/v1/webhooks/crm/pause", None).await;
    assert_eq!((status, paused["paused"].clone()), (200, json!(true)));
    app.post(
        "/v1/identify",
        json!({"userId": "u6", "traits": {"tier": "gold"}}),
    )
    .await;
    app.sync().await;
    app.state.webhooks.run_pending().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(receiver.accepted().await.len(), 9);
    app.admin(Method::POST, "/v1/webhooks/crm/resume", None).await;
    deliver_until(&app, &receiver, "u6 after resuming", |r| r.len() >= 10).await;

    // A sample on demand.
    let (status, res) = app.admin(Method::POST, "/v1/webhooks/crm/test", None).await;
    assert_eq!(status, 202, "{res}");
    deliver_until(&app, &receiver, "the sample", |r| {
        !of_type(r, "webhook.test").is_empty()
    })
    .await;
    let (_, listed) = app.get("/v1/webhooks").await;
    assert_eq!(listed[0]["name"], "crm");
    assert!(
        listed[0].get("secrets").is_none() && listed[0].get("secret").is_none(),
        "{listed}"
    );
    assert_eq!(listed[0]["breaker"], "closed");
}

#[tokio::test]
async fn endpoints_are_checked_admin_only_and_never_reach_inside() {
    let app = TestApp::spawn().await;
    let endpoint = |name: &str, url: &str, events: Value| json!({"name": name, "url": url, "events": events, "timeout_ms": 500});
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/webhooks",
            Some(endpoint(
                "crm",
                "https://hooks.example.com/",
                json!(["segment.enter"]),
            )),
        )
        .await;
    assert_eq!(
        (status, res["code"].as_str(), res["field"].as_str()),
        (400, Some("webhook_invalid"), Some("events")),
        "{res}"
    );
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/webhooks",
            Some(endpoint(
                "crm",
                "ftp://hooks.example.com/",
                json!(["segment.entered"]),
            )),
        )
        .await;
    assert_eq!((status, res["field"].as_str()), (400, Some("url")), "{res}");
    let marketer = app.key_of_role("marketer").await;
    let res = app
        .client
        .get(format!("{}/v1/webhooks", app.base))
        .bearer_auth(&marketer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    let (status, res) = app.get("/v1/webhooks/nobody").await;
    assert_eq!(status, 404, "{res}");

    // The metadata service and a private network are refused, though the tests allow loopback.
    for (name, url) in [
        ("metadata", "http://169.254.169.254/latest/meta-data/"),
        ("private", "http://10.0.0.1:8080/"),
    ] {
        let (status, res) = app
            .admin(
                Method::POST,
                "/v1/webhooks",
                Some(endpoint(name, url, json!(["segment.entered"]))),
            )
            .await;
        assert_eq!(status, 201, "{res}");
        let (status, _) = app
            .admin(Method::POST, &format!("/v1/webhooks/{name}/test"), None)
            .await;
        assert_eq!(status, 202);
    }
    let (status, res) = app
        .admin(
            Method::POST,
            "/v1/webhooks",
            Some(endpoint(
                "metadata",
                "https://x.example/",
                json!(["segment.entered"]),
            )),
        )
        .await;
    assert_eq!(
        (status, res["code"].as_str()),
        (409, Some("webhook_exists")),
        "{res}"
    );
    app.state.webhooks.run_pending().await.unwrap();
    for name in ["metadata", "private"] {
        let (_, attempts) = app.get(&format!("/v1/webhooks/{name}/attempts")).await;
        let a = &attempts[0];
        assert_eq!(a["status"], 0, "{attempts}");
        assert!(
            a["error"].as_str().unwrap().contains("internal address"),
            "{attempts}"
        );
    }
    let (status, _) = app.admin(Method::DELETE, "/v1/webhooks/private", None).await;
    assert_eq!(status, 204);
    assert_eq!(app.get("/v1/webhooks").await.1.as_array().unwrap().len(), 1);
}

/// A loyalty service written for the test: `/points` answers with a tier, `/down` with 503;
/// it keeps every request's path, body and idempotency key.
async fn loyalty_service() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>> = Default::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
        let log = log.clone();
        async move {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            log.lock().unwrap().push((uri.path().to_owned(), body, key));
            use axum::response::IntoResponse as _;
            match uri.path() {
                "/points" => (
                    StatusCode::OK,
                    axum::Json(json!({"member": {"tier": "gold"}, "points": 1200})),
                )
                    .into_response(),
                // A redirect into the cloud's metadata service.
                "/hop" => (
                    StatusCode::FOUND,
                    [("location", "http://169.254.169.254/latest/meta-data/")],
                )
                    .into_response(),
                _ => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({}))).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

#[tokio::test]
async fn a_journey_webhook_step_calls_out_maps_the_answer_and_branches_on_failure() {
    let app = TestApp::spawn().await;
    let (base, seen) = loyalty_service().await;
    let journey = |url: String| {
        json!({
            "trigger": {"event": "Order Completed"},
            "steps": [
                {"id": "call", "type": "webhook", "url": url, "retries": 1, "timeout_ms": 2000,
                 "headers": {"authorization": "Bearer loyalty-token"},
                 "body": r#"{"email": {{ profile.email | json }}, "total": {{ event.properties.total }}}"#,
                 "traits": {"loyalty_tier": "/member/tier", "loyalty_points": "/points"},
                 "service": "loyalty-api", "on_failure": "failed"},
                {"id": "after", "type": "wait", "duration": "1d"},
                {"id": "failed", "type": "exit"}
            ]
        })
    };
    for (name, url) in [
        ("loyalty", format!("{base}/points")),
        ("sms", format!("{base}/down")),
        // The metadata service: refused before any request, though loopback is allowed.
        ("metadata", "http://169.254.169.254/latest/meta-data/".to_owned()),
        // …and reached by a redirect: refused at the redirect.
        ("redirected", format!("{base}/hop")),
    ] {
        let (status, res) = app
            .admin(Method::PUT, &format!("/v1/journeys/{name}"), Some(journey(url)))
            .await;
        assert_eq!(status, 200, "{name}: {res}");
    }
    // A step that cannot work is refused when saved, with the reason.
    let mut bad = journey(format!("{base}/points"));
    bad["steps"][0]["body"] = json!("{{ unclosed");
    let (status, res) = app.admin(Method::PUT, "/v1/journeys/bad", Some(bad)).await;
    assert_eq!(status, 400, "{res}");
    assert!(res["message"].as_str().unwrap().contains("body"), "{res}");

    app.post(
        "/v1/identify",
        json!({"userId": "u1", "traits": {"email": "u1@example.com"}}),
    )
    .await;
    app.post(
        "/v1/track",
        json!({"userId": "u1", "event": "Order Completed", "properties": {"order_id": "o1", "total": 99.5}}),
    )
    .await;
    app.sync().await;
    let (status, res) = app.admin(Method::POST, "/v1/journeys/run", None).await;
    assert_eq!(status, 200, "{res}");

    let requests = seen.lock().unwrap().clone();
    let points: Vec<_> = requests.iter().filter(|r| r.0 == "/points").collect();
    assert_eq!(points.len(), 1, "{requests:?}");
    let body: Value = serde_json::from_str(&points[0].1).unwrap();
    assert_eq!(body, json!({"email": "u1@example.com", "total": 99.5}));
    assert!(
        points[0].2.ends_with(":call:1"),
        "idempotency key {:?}",
        points[0].2
    );
    // The failing service was tried twice (one retry), then the journey took `on_failure`.
    assert_eq!(
        requests.iter().filter(|r| r.0 == "/down").count(),
        2,
        "{requests:?}"
    );
    let step_of = |name: &'static str| {
        let app = &app;
        async move {
            let (_, res) = app.get(&format!("/v1/journeys/{name}/instances")).await;
            let i = &res["instances"][0];
            (
                i["step"].as_str().unwrap_or("").to_owned(),
                i["status"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    assert_eq!(
        step_of("loyalty").await,
        ("after".to_owned(), "active".to_owned())
    );
    assert_eq!(step_of("sms").await, ("failed".to_owned(), "exited".to_owned()));
    assert_eq!(
        step_of("metadata").await,
        ("failed".to_owned(), "exited".to_owned())
    );
    assert_eq!(
        step_of("redirected").await,
        ("failed".to_owned(), "exited".to_owned())
    );
    // The redirect was asked for once (a refused redirect is final, not retried).
    assert_eq!(
        requests.iter().filter(|r| r.0 == "/hop").count(),
        1,
        "{requests:?}"
    );

    // The answer's fields are traits now, recorded as coming from the service.
    app.sync().await;
    let p = app.profile("u1").await;
    assert_eq!(p["traits"]["loyalty_tier"]["value"], "gold", "{p}");
    assert_eq!(p["traits"]["loyalty_points"]["value"], 1200);
    assert_eq!(
        p["traits"]["loyalty_tier"]["source"], "webhook:loyalty-api",
        "{p}"
    );
}
