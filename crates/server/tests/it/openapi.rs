//! The OpenAPI description (`/openapi.json`) and the reference page (`/api`): every `/v1`
//! route is described and served, the document is well formed, and the page shows it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::TestApp;

/// Every `/v1` route the server answers, as `METHOD path`. A route added to the server must be
/// added here, and the description must have it; one removed from the description fails here.
const ROUTES: &[&str] = &[
    "GET /v1/segments/{name}/export",
    "GET /v1/audit",
    "GET /v1/broadcasts",
    "POST /v1/broadcasts",
    "POST /v1/broadcasts/run",
    "GET /v1/broadcasts/{id}",
    "POST /v1/broadcasts/{id}/pause",
    "POST /v1/broadcasts/{id}/resume",
    "POST /v1/broadcasts/{id}/cancel",
    "POST /v1/inbound/reports",
    "GET /v1/templates",
    "POST /v1/templates/lint",
    "GET /v1/templates/{name}",
    "PUT /v1/templates/{name}",
    "DELETE /v1/templates/{name}",
    "POST /v1/templates/{name}/preview",
    "POST /v1/templates/{name}/test",
    "GET /v1/blocks",
    "GET /v1/blocks/matrix",
    "GET /v1/blocks/{name}",
    "PUT /v1/blocks/{name}",
    "DELETE /v1/blocks/{name}",
    "GET /v1/catalog/products",
    "POST /v1/catalog/products",
    "GET /v1/catalog/products/{id}",
    "DELETE /v1/catalog/products/{id}",
    "GET /v1/experiments",
    "POST /v1/experiments",
    "GET /v1/experiments/{name}",
    "PUT /v1/experiments/{name}",
    "DELETE /v1/experiments/{name}",
    "POST /v1/experiments/{name}/start",
    "POST /v1/experiments/{name}/stop",
    "POST /v1/experiments/{name}/conclude",
    "GET /v1/experiments/{name}/results",
    "GET /v1/experiments/{name}/chart.svg",
    "GET /v1/global-holdout",
    "POST /v1/track",
    "POST /v1/identify",
    "POST /v1/page",
    "POST /v1/screen",
    "POST /v1/group",
    "POST /v1/alias",
    "POST /v1/batch",
    "POST /v1/import",
    "GET /v1/journeys",
    "POST /v1/journeys/run",
    "GET /v1/journeys/{name}",
    "PUT /v1/journeys/{name}",
    "DELETE /v1/journeys/{name}",
    "GET /v1/journeys/{name}/instances",
    "GET /v1/journeys/{name}/messages",
    "GET /v1/broadcasts/{id}/messages",
    "GET /v1/profiles/{key}/messages",
    "GET /v1/models",
    "GET /v1/models/{name}",
    "DELETE /v1/models/{name}",
    "POST /v1/models/{name}/train",
    "POST /v1/models/{name}/activate",
    "POST /v1/models/{name}/deactivate",
    "GET /v1/profiles/{key}/consent",
    "PUT /v1/profiles/{key}/consent",
    "GET /v1/profiles/{key}/export",
    "POST /v1/privacy/retention/run",
    "GET /v1/analytics/profiles",
    "GET /v1/keys",
    "POST /v1/keys",
    "DELETE /v1/keys/{id}",
    "GET /v1/profiles/{key}",
    "DELETE /v1/profiles/{key}",
    "GET /v1/profiles/{key}/versions",
    "GET /v1/profiles/{key}/events",
    "GET /v1/profiles/{key}/segments",
    "GET /v1/recommendations",
    "POST /v1/recommendations/train",
    "GET /v1/recommendations/rules",
    "PUT /v1/recommendations/rules/{name}",
    "DELETE /v1/recommendations/rules/{name}",
    "GET /v1/profiles/{key}/recommendations",
    "GET /v1/products/{id}/similar",
    "GET /v1/products/{id}/bought-together",
    "GET /v1/schema",
    "PUT /v1/schema/traits/{name}",
    "DELETE /v1/schema/traits/{name}",
    "PUT /v1/schema/events/{event}",
    "DELETE /v1/schema/events/{event}",
    "PUT /v1/schema/events/{event}/properties/{name}",
    "DELETE /v1/schema/events/{event}/properties/{name}",
    "POST /v1/segments",
    "GET /v1/segments",
    "POST /v1/segments/preview",
    "DELETE /v1/segments/{name}",
    "GET /v1/segments/{name}",
    "GET /v1/segments/{name}/members",
    "POST /v1/sources/{name}",
    "GET /v1/messages/{id}",
    "GET /v1/webhooks",
    "POST /v1/webhooks",
    "GET /v1/webhooks/{name}",
    "DELETE /v1/webhooks/{name}",
    "POST /v1/webhooks/{name}/test",
    "POST /v1/webhooks/{name}/pause",
    "POST /v1/webhooks/{name}/resume",
    "POST /v1/webhooks/{name}/rotate",
    "GET /v1/webhooks/{name}/attempts",
    "GET /v1/webhooks/{name}/dead-letters",
    "POST /v1/webhooks/{name}/dead-letters/replay",
];

async fn description(app: &TestApp) -> Value {
    let res = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        res.headers()
    );
    res.json().await.unwrap()
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    ops
}

#[tokio::test]
async fn the_description_is_openapi_3_1_and_names_every_v1_route() {
    let app = TestApp::spawn().await;
    let doc = description(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["securitySchemes"]["basic"].is_object());
    let described: BTreeSet<String> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    let expected: BTreeSet<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    assert_eq!(expected.len(), ROUTES.len(), "a route is listed twice");
    let undescribed: Vec<_> = expected.difference(&described).collect();
    let unknown: Vec<_> = described.difference(&expected).collect();
    assert!(
        undescribed.is_empty(),
        "routes missing from the description: {undescribed:?}"
    );
    assert!(unknown.is_empty(), "described but not in ROUTES: {unknown:?}");
    // The description the library hands out is the one served.
    assert_eq!(serde_json::to_value(missive_server::openapi()).unwrap(), doc);
}

#[tokio::test]
async fn every_described_route_is_served() {
    let app = TestApp::spawn().await;
    let doc = description(&app).await;
    for (method, path, _) in operations(&doc) {
        let url = format!("{}{}", app.base, path.replace('{', "x").replace('}', ""));
        let method: reqwest::Method = method.parse().unwrap();
        // No key: every route answers with its own refusal, not the router's.
        let res = app.client.request(method.clone(), &url).send().await.unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path} is described but not served");
        assert!(
            !body.contains("no such route"),
            "{method} {path} is described but not served: {status} {body}"
        );
    }
}

#[tokio::test]
async fn every_operation_has_an_id_responses_and_references_that_resolve() {
    let app = TestApp::spawn().await;
    let doc = description(&app).await;
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{method} {path} has no operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} has no success response"
        );
        assert!(op["tags"][0].is_string(), "{method} {path} has no tag");
        if path.starts_with("/v1/") && !path.starts_with("/v1/sources/") {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
        for (status, r) in responses {
            if status != "204" && status != "202" {
                assert!(r["content"].is_object(), "{method} {path} {status} has no body");
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    let unresolved: BTreeSet<&String> = refs
        .iter()
        .filter(|r| {
            r.strip_prefix("#/components/schemas/")
                .is_none_or(|name| !schemas.contains_key(name))
        })
        .collect();
    assert!(
        unresolved.is_empty(),
        "references that do not resolve: {unresolved:?}"
    );
    // Errors are described once and referred to.
    let error = &schemas["ApiError"];
    assert_eq!(error["required"], serde_json::json!(["code", "message"]));
    assert_eq!(
        error["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
    let codes = schemas["ErrorCode"]["enum"].as_array().unwrap();
    assert!(codes.contains(&Value::from("invalid_value")));
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Routes and descriptions are registered together (`utoipa_axum::routes!`): a `/v1` route
/// added with axum's own `route` would be served undescribed.
#[test]
fn no_v1_route_is_registered_without_its_description() {
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                assert_no_bare_v1_route(&path);
            }
        }
    }
}

fn assert_no_bare_v1_route(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let compact: String = text.split_whitespace().collect();
    assert!(
        !compact.contains(".route(\"/v1"),
        "{} registers a /v1 route without its description",
        path.display()
    );
}

#[tokio::test]
async fn the_reference_page_shows_every_operation_and_loads_nothing() {
    let app = TestApp::spawn().await;
    let doc = description(&app).await;
    let res = app.client.get(format!("{}/api", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let page = res.text().await.unwrap();
    assert!(!page.contains("<script"), "no script");
    assert!(!page.contains("src=\"http"), "nothing from elsewhere");
    for (_, path, op) in operations(&doc) {
        assert!(
            page.contains(&format!("<code>{path}</code>")),
            "{path} missing from /api"
        );
        let id = op["operationId"].as_str().unwrap();
        assert!(
            page.contains(&format!("id=\"op-{id}\"")),
            "{id} missing from /api"
        );
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(
            page.contains(&format!("id=\"schema-{name}\"")),
            "schema {name} missing from /api"
        );
    }
}
