//! Roles, keys, the audit log, and the refusals an attacker meets.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Delivery, TestApp};

const ROLES: [&str; 6] = [
    "admin",
    "marketer",
    "analyst",
    "privacy_officer",
    "write",
    "server_write",
];

/// Every route of the router with the roles that may call it. `public` routes take no key.
fn matrix() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    const INGEST: &[&str] = &["admin", "write", "server_write"];
    const REPORTS: &[&str] = &["admin", "marketer", "analyst", "privacy_officer"];
    const PERSONAL: &[&str] = &["admin", "marketer", "privacy_officer"];
    const MARKETING: &[&str] = &["admin", "marketer"];
    const PRIVACY: &[&str] = &["admin", "privacy_officer"];
    const ADMIN: &[&str] = &["admin"];
    const PUBLIC: &[&str] = &["public"];
    vec![
        ("POST", "/v1/track", INGEST),
        ("POST", "/v1/identify", INGEST),
        ("POST", "/v1/page", INGEST),
        ("POST", "/v1/screen", INGEST),
        ("POST", "/v1/group", INGEST),
        ("POST", "/v1/alias", INGEST),
        ("POST", "/v1/batch", INGEST),
        ("POST", "/v1/import", INGEST),
        ("GET", "/v1/profiles/{key}", PERSONAL),
        ("DELETE", "/v1/profiles/{key}", PRIVACY),
        ("GET", "/v1/profiles/{key}/consent", PERSONAL),
        ("PUT", "/v1/profiles/{key}/consent", PRIVACY),
        ("GET", "/v1/profiles/{key}/export", PRIVACY),
        ("POST", "/v1/privacy/retention/run", PRIVACY),
        ("GET", "/v1/analytics/profiles", REPORTS),
        ("GET", "/v1/keys", ADMIN),
        ("POST", "/v1/keys", ADMIN),
        ("DELETE", "/v1/keys/{id}", ADMIN),
        ("GET", "/v1/audit", PRIVACY),
        ("GET", "/v1/profiles/{key}/versions", PERSONAL),
        ("GET", "/v1/profiles/{key}/events", PERSONAL),
        ("POST", "/v1/segments", MARKETING),
        ("GET", "/v1/segments", REPORTS),
        ("POST", "/v1/segments/preview", MARKETING),
        ("DELETE", "/v1/segments/{name}", MARKETING),
        ("GET", "/v1/segments/{name}", REPORTS),
        ("GET", "/v1/segments/{name}/members", PERSONAL),
        ("GET", "/v1/segments/{name}/export", PERSONAL),
        ("GET", "/v1/profiles/{key}/segments", PERSONAL),
        ("GET", "/v1/profiles/{key}/recommendations", PERSONAL),
        ("GET", "/v1/schema", REPORTS),
        ("GET", "/v1/experiments", REPORTS),
        ("POST", "/v1/experiments", MARKETING),
        ("GET", "/v1/experiments/{name}", REPORTS),
        ("PUT", "/v1/experiments/{name}", MARKETING),
        ("DELETE", "/v1/experiments/{name}", MARKETING),
        ("POST", "/v1/experiments/{name}/start", MARKETING),
        ("POST", "/v1/experiments/{name}/stop", MARKETING),
        ("POST", "/v1/experiments/{name}/conclude", MARKETING),
        ("GET", "/v1/experiments/{name}/results", REPORTS),
        ("GET", "/v1/experiments/{name}/chart.svg", REPORTS),
        ("GET", "/v1/global-holdout", REPORTS),
        ("PUT", "/v1/schema/traits/{name}", MARKETING),
        ("DELETE", "/v1/schema/traits/{name}", MARKETING),
        ("PUT", "/v1/schema/events/{event}", MARKETING),
        ("DELETE", "/v1/schema/events/{event}", MARKETING),
        ("PUT", "/v1/schema/events/{event}/properties/{name}", MARKETING),
        ("DELETE", "/v1/schema/events/{event}/properties/{name}", MARKETING),
        ("GET", "/v1/templates", REPORTS),
        ("POST", "/v1/templates/lint", MARKETING),
        ("GET", "/v1/templates/{name}", REPORTS),
        ("PUT", "/v1/templates/{name}", MARKETING),
        ("DELETE", "/v1/templates/{name}", MARKETING),
        ("POST", "/v1/templates/{name}/preview", PERSONAL),
        ("POST", "/v1/templates/{name}/test", MARKETING),
        ("GET", "/v1/blocks", REPORTS),
        ("GET", "/v1/blocks/matrix", REPORTS),
        ("GET", "/v1/blocks/{name}", REPORTS),
        ("PUT", "/v1/blocks/{name}", MARKETING),
        ("DELETE", "/v1/blocks/{name}", MARKETING),
        ("GET", "/v1/catalog/products", REPORTS),
        ("POST", "/v1/catalog/products", MARKETING),
        ("GET", "/v1/catalog/products/{id}", REPORTS),
        ("DELETE", "/v1/catalog/products/{id}", MARKETING),
        ("GET", "/v1/journeys", REPORTS),
        ("POST", "/v1/journeys/run", MARKETING),
        ("GET", "/v1/journeys/{name}", REPORTS),
        ("PUT", "/v1/journeys/{name}", MARKETING),
        ("DELETE", "/v1/journeys/{name}", MARKETING),
        ("GET", "/v1/journeys/{name}/instances", PERSONAL),
        ("GET", "/v1/journeys/{name}/messages", PERSONAL),
        ("GET", "/v1/broadcasts/{id}/messages", PERSONAL),
        ("GET", "/v1/profiles/{key}/messages", PERSONAL),
        ("GET", "/v1/messages/{id}", PERSONAL),
        ("GET", "/v1/broadcasts", REPORTS),
        ("POST", "/v1/broadcasts", MARKETING),
        ("POST", "/v1/broadcasts/run", MARKETING),
        ("GET", "/v1/broadcasts/{id}", REPORTS),
        ("POST", "/v1/broadcasts/{id}/pause", MARKETING),
        ("POST", "/v1/broadcasts/{id}/resume", MARKETING),
        ("POST", "/v1/broadcasts/{id}/cancel", MARKETING),
        ("POST", "/v1/inbound/reports", ADMIN),
        ("POST", "/v1/sources/{name}", PUBLIC),
        ("GET", "/v1/webhooks", ADMIN),
        ("POST", "/v1/webhooks", ADMIN),
        ("GET", "/v1/webhooks/{name}", ADMIN),
        ("DELETE", "/v1/webhooks/{name}", ADMIN),
        ("POST", "/v1/webhooks/{name}/test", ADMIN),
        ("POST", "/v1/webhooks/{name}/pause", ADMIN),
        ("POST", "/v1/webhooks/{name}/resume", ADMIN),
        ("POST", "/v1/webhooks/{name}/rotate", ADMIN),
        ("GET", "/v1/webhooks/{name}/attempts", ADMIN),
        ("GET", "/v1/webhooks/{name}/dead-letters", ADMIN),
        ("POST", "/v1/webhooks/{name}/dead-letters/replay", ADMIN),
        ("GET", "/v1/models", REPORTS),
        ("GET", "/v1/models/{name}", REPORTS),
        ("DELETE", "/v1/models/{name}", MARKETING),
        ("POST", "/v1/models/{name}/train", MARKETING),
        ("POST", "/v1/models/{name}/activate", MARKETING),
        ("POST", "/v1/models/{name}/deactivate", MARKETING),
        ("POST", "/v1/recommendations/train", MARKETING),
        ("GET", "/v1/recommendations", REPORTS),
        ("GET", "/v1/recommendations/rules", REPORTS),
        ("PUT", "/v1/recommendations/rules/{name}", MARKETING),
        ("DELETE", "/v1/recommendations/rules/{name}", MARKETING),
        ("GET", "/v1/products/{id}/similar", REPORTS),
        ("GET", "/v1/products/{id}/bought-together", REPORTS),
        ("GET", "/t/c/{token}", PUBLIC),
        ("GET", "/t/o/{token}", PUBLIC),
        ("GET", "/u/{token}", PUBLIC),
        ("POST", "/u/{token}", PUBLIC),
        ("GET", "/preferences/{token}", PUBLIC),
        ("POST", "/preferences/{token}", PUBLIC),
        ("GET", "/preferences/{token}/export", PUBLIC),
        ("GET", "/console", PUBLIC),
        ("GET", "/console/login", PUBLIC),
        ("POST", "/console/login", PUBLIC),
        ("POST", "/console/logout", PUBLIC),
        ("GET", "/console/audit", PUBLIC),
        ("GET", "/console/assets/{file}", PUBLIC),
        ("GET", "/console/profiles", PUBLIC),
        ("GET", "/console/profiles/{id}", PUBLIC),
        ("GET", "/console/segments", PUBLIC),
        ("GET", "/console/segments/new", PUBLIC),
        ("GET", "/console/segments/edit/{name}", PUBLIC),
        ("POST", "/console/segments/check", PUBLIC),
        ("POST", "/console/segments/save", PUBLIC),
        ("POST", "/console/segments/delete", PUBLIC),
        ("GET", "/console/templates", PUBLIC),
        ("GET", "/console/templates/new", PUBLIC),
        ("GET", "/console/templates/edit/{name}", PUBLIC),
        ("POST", "/console/templates/save", PUBLIC),
        ("GET", "/console/templates/render/{name}", PUBLIC),
        ("GET", "/console/templates/audit/{name}", PUBLIC),
        ("GET", "/console/broadcasts", PUBLIC),
        ("POST", "/console/broadcasts", PUBLIC),
        ("GET", "/console/broadcasts/{id}", PUBLIC),
        ("POST", "/console/broadcasts/{id}/{action}", PUBLIC),
        ("GET", "/console/journeys", PUBLIC),
        ("GET", "/console/journeys/new", PUBLIC),
        ("GET", "/console/journeys/{name}", PUBLIC),
        ("POST", "/console/journeys/check", PUBLIC),
        ("POST", "/console/journeys/save", PUBLIC),
        ("POST", "/console/journeys/delete", PUBLIC),
        ("GET", "/console/experiments", PUBLIC),
        ("GET", "/console/experiments/{name}", PUBLIC),
        ("GET", "/console/models", PUBLIC),
        ("GET", "/console/privacy", PUBLIC),
        ("GET", "/console/privacy/person", PUBLIC),
        ("GET", "/console/privacy/export/{id}", PUBLIC),
        ("POST", "/console/privacy/erase", PUBLIC),
        ("GET", "/console/keys", PUBLIC),
        ("POST", "/console/keys", PUBLIC),
        ("POST", "/console/keys/revoke", PUBLIC),
        ("GET", "/health", PUBLIC),
        ("GET", "/metrics", PUBLIC),
        ("GET", "/openapi.json", PUBLIC),
        ("GET", "/api", PUBLIC),
    ]
}

/// The routes the router declares: the `/v1` routes from their description (registered with
/// it, `tests/it/openapi.rs`), the others read from the source. A route added without a row
/// in [`matrix`] fails the matrix test.
fn declared_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let api = serde_json::to_value(missive_server::openapi()).unwrap();
    for (path, item) in api["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    // Every module declares its other routes in its own `router()` (the console's in its
    // folder); lib.rs merges them and adds /health and /metrics.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let Some(start) = src.find("fn router(") else {
            continue;
        };
        let body = &src[start..];
        let body = &body[..body.find("\n}\n").unwrap()];
        for chunk in body.split(".route(").skip(1) {
            let start = chunk.find('"').unwrap() + 1;
            let path = &chunk[start..start + chunk[start..].find('"').unwrap()];
            let rest = chunk.split(".route_layer(").next().unwrap();
            for method in ["get", "post", "put", "delete"] {
                let calls = rest.matches(&format!("{method}(")).count()
                    - rest.matches(&format!("_{method}(")).count();
                if calls > 0 {
                    out.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    out
}

async fn keys_for_every_role(app: &TestApp) -> BTreeMap<&'static str, String> {
    let mut keys = BTreeMap::new();
    for role in ROLES {
        let (status, body) = app
            .admin(
                Method::POST,
                "/v1/keys",
                Some(json!({"role": role, "label": format!("{role} for tests")})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        keys.insert(role, body["key"].as_str().unwrap().to_owned());
    }
    keys
}

async fn call(app: &TestApp, method: &str, path: &str, key: Option<&str>) -> u16 {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.client.request(method, format!("{}{path}", app.base));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.json(&json!({})).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_endpoint_refuses_every_role_it_should_refuse() {
    let app = TestApp::spawn().await;
    let matrix = matrix();
    let listed: BTreeSet<(String, String)> = matrix
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let declared = declared_routes();
    let missing: Vec<_> = declared.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the role matrix: {missing:?}"
    );
    assert!(
        declared.len() > 60,
        "the route scan found only {}",
        declared.len()
    );

    let keys = keys_for_every_role(&app).await;
    let mut wrong = Vec::new();
    for (method, template, allowed) in &matrix {
        if allowed == &["public"] {
            continue;
        }
        let path = template
            .replace("{key}", "nobody")
            .replace("{id}", "key_0193c2a8d0a77f3b9c2e4d5f6a7b8c9d")
            .replace("{name}", "nothing");
        let anonymous = call(&app, method, &path, None).await;
        if anonymous != 401 {
            wrong.push(format!("{method} {path} without a key: {anonymous}"));
        }
        for role in ROLES {
            let status = call(&app, method, &path, Some(&keys[role])).await;
            let refused = status == 401 || status == 403;
            if allowed.contains(&role) == refused {
                wrong.push(format!("{method} {path} as {role}: {status}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn keys_are_shown_once_work_at_once_and_stop_working_when_revoked() {
    let app = TestApp::spawn().await;
    let (status, created) = app
        .admin(
            Method::POST,
            "/v1/keys",
            Some(json!({"role": "marketer", "label": "campaign team"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("mk_"), "{key}");
    assert_eq!(call(&app, "GET", "/v1/templates", Some(&key)).await, 200);

    let (_, listed) = app.admin(Method::GET, "/v1/keys", None).await;
    let text = listed.to_string();
    assert!(!text.contains(&key), "a listing never shows a secret");
    assert!(text.contains("campaign team"));

    let id = created["id"].as_str().unwrap();
    let (status, _) = app.admin(Method::DELETE, &format!("/v1/keys/{id}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(call(&app, "GET", "/v1/templates", Some(&key)).await, 401);

    // The one admin key cannot be revoked: the workspace would be locked out.
    let (_, listed) = app.admin(Method::GET, "/v1/keys", None).await;
    let admin_id = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "admin")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app
        .admin(Method::DELETE, &format!("/v1/keys/{admin_id}"), None)
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("last_admin_key")));

    let (status, body) = app
        .admin(
            Method::POST,
            "/v1/keys",
            Some(json!({"role": "root", "label": "x"})),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_role")));
}

#[tokio::test]
async fn profile_reads_and_changes_are_audited_by_profile_id_never_by_address() {
    let app = TestApp::spawn().await;
    let keys = keys_for_every_role(&app).await;
    app.post(
        "/v1/identify",
        json!({"userId": "ann", "traits": {"email": "ann@example.com"}}),
    )
    .await;
    let p = app.profile("ann@example.com").await;
    let id = p["id"].as_str().unwrap().to_owned();
    // A refused read is recorded too.
    assert_eq!(
        call(
            &app,
            "GET",
            "/v1/profiles/ann@example.com",
            Some(&keys["analyst"])
        )
        .await,
        403
    );
    app.admin(
        Method::PUT,
        "/v1/templates/welcome",
        Some(json!({"subject": "Hi", "html": "<p>Hi {{ customer.first_name }}</p>", "marketing": false})),
    )
    .await;

    let res = app
        .client
        .get(format!("{}/v1/audit?limit=50", app.base))
        .bearer_auth(&keys["privacy_officer"])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let log: Value = res.json().await.unwrap();
    let text = log.to_string();
    assert!(
        !text.contains("ann@example.com"),
        "the audit log holds no address: {text}"
    );
    let entries = log["entries"].as_array().unwrap();
    let read = entries
        .iter()
        .find(|e| e["action"] == "GET /v1/profiles/{key}" && e["status"] == 200)
        .expect("the profile read is audited");
    assert_eq!(read["target"], format!("profile:{id}"));
    assert_eq!(read["role"], "admin");
    assert!(read["actor"].as_str().unwrap().starts_with("key:key_"));
    let refused = entries
        .iter()
        .find(|e| e["action"] == "GET /v1/profiles/{key}" && e["status"] == 403)
        .expect("the refused read is audited");
    assert_eq!(refused["role"], "analyst");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "PUT /v1/templates/{name}" && e["target"] == "/v1/templates/welcome")
    );

    let filtered = app.get(&format!("/v1/audit?target=profile:{id}")).await.1;
    let of_ann = filtered["entries"].as_array().unwrap();
    assert!(!of_ann.is_empty());
    assert!(of_ann.iter().all(|e| e["target"] == format!("profile:{id}")));
    assert_eq!(call(&app, "GET", "/v1/audit", Some(&keys["marketer"])).await, 403);
}

#[tokio::test]
async fn analysts_see_pseudonyms_and_no_personal_traits() {
    let app = TestApp::spawn().await;
    let keys = keys_for_every_role(&app).await;
    app.post(
        "/v1/identify",
        json!({"userId": "ann", "traits": {"email": "ann@example.com", "first_name": "Ann",
               "phone_number_backup": "+44 20 7946 0958", "tier": "gold"}}),
    )
    .await;
    app.sync().await;
    let res = app
        .client
        .get(format!("{}/v1/analytics/profiles", app.base))
        .bearer_auth(&keys["analyst"])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    let text = body.to_string();
    for personal in ["ann@example.com", "Ann", "7946", "prf_", "\"ann\""] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    let row = &body["profiles"][0];
    assert!(row["pseudonym"].as_str().unwrap().starts_with("psn_"));
    assert_eq!(row["traits"]["tier"], "gold");
    // Stable: the same profile gets the same pseudonym.
    let again: Value = app
        .client
        .get(format!("{}/v1/analytics/profiles", app.base))
        .bearer_auth(&keys["analyst"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["profiles"][0]["pseudonym"], row["pseudonym"]);
}

#[tokio::test]
async fn ingest_is_rate_limited_per_address_with_retry_after() {
    use missive_server::limits::{Limits, RateLimiter};
    let app = TestApp::spawn_limited(Limits {
        ingest: Some(RateLimiter::new(0.5, 3.0)),
        ..Limits::default()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let (status, _) = app
            .post(
                "/v1/track",
                json!({"userId": "u", "event": "Viewed", "messageId": format!("m{i}")}),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let res = app
        .client
        .post(format!("{}/v1/track", app.base))
        .basic_auth(&app.write_key, Some(""))
        .json(&json!({"userId": "u", "event": "Viewed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // The management API is not the tracking API's budget.
    assert_eq!(app.get("/v1/templates").await.0, 200);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    use missive_server::limits::{Limits, RateLimiter};
    let track = |app: &TestApp, xff: &'static str, i: usize| {
        let req = app
            .client
            .post(format!("{}/v1/track", app.base))
            .basic_auth(&app.write_key, Some(""))
            .header("x-forwarded-for", xff)
            .json(&json!({"userId": "u", "event": "Viewed", "messageId": format!("{xff}-{i}")}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let limited = || Limits {
        ingest: Some(RateLimiter::new(0.5, 2.0)),
        ..Limits::default()
    };
    // Without trusted proxies the header is ignored: changing it does not evade the limit.
    let app = TestApp::spawn_limited(limited()).await;
    let statuses = [
        track(&app, "203.0.113.1", 0).await,
        track(&app, "203.0.113.2", 1).await,
        track(&app, "203.0.113.3", 2).await,
    ];
    assert_eq!(statuses, [200, 200, 429]);

    // Behind a trusted proxy (the test client's 127.0.0.1), each client has its own budget.
    let app = TestApp::spawn_limited(Limits {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..limited()
    })
    .await;
    let statuses = [
        track(&app, "203.0.113.1", 0).await,
        track(&app, "203.0.113.1", 1).await,
        track(&app, "203.0.113.1", 2).await,
        track(&app, "198.51.100.7, 203.0.113.2", 3).await,
    ];
    assert_eq!(statuses, [200, 200, 429, 200]);
}

#[tokio::test]
async fn guessing_keys_is_stopped_but_known_keys_keep_working() {
    let app = TestApp::spawn().await;
    // The admin key is verified once, before the attack.
    assert_eq!(app.get("/v1/templates").await.0, 200);
    let mut statuses = Vec::new();
    for i in 0..25 {
        let guess = format!("ak_0193c2a8d0a77f3b9c2e4d5f6a7b8c9d_guess{i}");
        statuses.push(call(&app, "GET", "/v1/templates", Some(&guess)).await);
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(
        app.get("/v1/templates").await.0,
        200,
        "a verified key still works"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(600 * 1024);
    let (status, body) = app
        .post(
            "/v1/batch",
            json!({"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"p": big}}]}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    let (status, _) = app
        .admin(
            Method::PUT,
            "/v1/templates/huge",
            Some(json!({"subject": "x", "html": "y".repeat(2 * 1024 * 1024)})),
        )
        .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn line_breaks_in_a_subject_never_become_headers() {
    let maildir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_sending(Delivery::maildir(maildir.path())).await;
    let template = json!({"subject": "Hi {{ customer.first_name }}", "layout": "html",
                          "body": "<p>Hello</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>"});
    assert_eq!(
        app.admin(Method::PUT, "/v1/templates/hi", Some(template)).await.0,
        200
    );
    app.post(
        "/v1/identify",
        json!({"userId": "eve", "traits": {"email": "eve@example.com", "plan": "x",
               "first_name": "Eve\r\nBcc: victim@evil.example", "consent": {"email_marketing": true}}}),
    )
    .await;
    let segment = json!({"name": "x", "expression": "traits.plan == \"x\""});
    assert!(app.admin(Method::POST, "/v1/segments", Some(segment)).await.0 < 300);
    let (status, b) = app
        .admin(
            Method::POST,
            "/v1/broadcasts",
            Some(json!({"template": "hi", "segment": "x"})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    app.admin(Method::POST, "/v1/broadcasts/run", None).await;
    app.state.sender.as_ref().unwrap().run_pending().await.unwrap();
    let mut found = 0;
    for e in std::fs::read_dir(maildir.path().join("new"))
        .into_iter()
        .flatten()
    {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        found += 1;
        assert!(!text.lines().any(|l| l.starts_with("Bcc:")), "{text}");
        assert!(
            text.contains("Subject: Hi Eve Bcc: victim@evil.example\r\n"),
            "{text}"
        );
    }
    assert_eq!(found, 1, "sent once, with the line break folded into a space");

    // Names of documents with line breaks are refused outright.
    let (status, _) = app
        .admin(
            Method::PUT,
            "/v1/templates/a%0D%0ABcc:%20x",
            Some(json!({"subject": "x", "html": "y"})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_click_link_signed_with_another_key_is_never_a_redirect() {
    let maildir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_sending(Delivery::maildir(maildir.path())).await;
    let forger = missive_delivery::LinkSigner::new(&[7u8; 32]).unwrap();
    let forged = forger.click_url(&app.base, "msg_1", "https://phishing.example/login");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client.get(&forged).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    assert!(res.headers().get("location").is_none());
    let tampered = format!("{}/t/c/{}x", app.base, forged.rsplit('/').next().unwrap());
    assert_eq!(client.get(&tampered).send().await.unwrap().status().as_u16(), 404);
}

/// The value of a `Set-Cookie` named `name`, and the whole header.
pub(crate) fn set_cookie(res: &reqwest::Response, name: &str) -> Option<(String, String)> {
    res.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (k, rest) = v.split_once('=')?;
        (k == name).then(|| (rest.split(';').next().unwrap_or("").to_owned(), v.to_owned()))
    })
}

pub(crate) fn hidden_csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_owned()
}

#[tokio::test]
async fn the_console_logs_in_with_a_secure_session_and_checks_csrf() {
    let app = TestApp::spawn().await;
    let keys = keys_for_every_role(&app).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", app.base);

    // Without a session, the console sends you to the login page.
    let res = client.get(url("/console")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/console/login");

    let login = |key: String, extra: Option<(&'static str, &'static str)>| {
        let client = client.clone();
        let url = url("/console/login");
        async move {
            let page = client.get(&url).send().await.unwrap();
            let (token, _) = set_cookie(&page, "__Host-missive_login").unwrap();
            let html = page.text().await.unwrap();
            assert!(html.contains("<label for=\"key\">"), "{html}");
            let csrf = hidden_csrf(&html);
            assert_eq!(csrf, token);
            let mut req = client
                .post(&url)
                .header("cookie", format!("__Host-missive_login={token}"))
                .form(&[("key", key.as_str()), ("csrf", csrf.as_str())]);
            if let Some((k, v)) = extra {
                req = req.header(k, v);
            }
            req.send().await.unwrap()
        }
    };

    let res = login("ak_wrong_key".into(), None).await;
    assert_eq!(res.status().as_u16(), 401);
    let res = login(keys["write"].clone(), None).await;
    assert_eq!(res.status().as_u16(), 403, "write keys do not log in");
    let res = login(keys["marketer"].clone(), Some(("origin", "https://evil.example"))).await;
    assert_eq!(res.status().as_u16(), 403, "a cross-site login post is refused");

    let res = login(keys["marketer"].clone(), None).await;
    assert_eq!(res.status().as_u16(), 303);
    let (session, header) = set_cookie(&res, "__Host-missive_session").unwrap();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attribute), "{header}");
    }
    let with_session = |path: &str| {
        client
            .get(url(path))
            .header("cookie", format!("__Host-missive_session={session}"))
    };
    let home = with_session("/console").send().await.unwrap();
    assert_eq!(home.status().as_u16(), 200);
    let csp = home.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let home = home.text().await.unwrap();
    assert!(home.contains("Marketer"), "{home}");
    // No inline script: the one script is the console's own file (the CSP allows no other).
    assert_eq!(
        home.matches("<script").count(),
        home.matches("<script src=\"/console/assets/console.js\"").count(),
        "{home}"
    );

    assert_eq!(
        with_session("/console/audit")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );

    // Logging out needs the session's CSRF token.
    let logout = |csrf: &str| {
        client
            .post(url("/console/logout"))
            .header("cookie", format!("__Host-missive_session={session}"))
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(logout(&"0".repeat(64)).await.unwrap().status().as_u16(), 403);
    assert_eq!(logout(&hidden_csrf(&home)).await.unwrap().status().as_u16(), 303);
    assert_eq!(
        with_session("/console").send().await.unwrap().status().as_u16(),
        303,
        "logged out"
    );

    // A privacy officer reads the audit log, logins included.
    let res = login(keys["privacy_officer"].clone(), None).await;
    let (session, _) = set_cookie(&res, "__Host-missive_session").unwrap();
    let page = client
        .get(url("/console/audit"))
        .header("cookie", format!("__Host-missive_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("console.login") && page.contains("console.logout"),
        "{page}"
    );
}
