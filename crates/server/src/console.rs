//! The console: web pages for people, behind a login with an API key and a session.
//!
//! - `GET|POST /console/login`: a form for a key (any role but `write`). Login CSRF is stopped
//!   by a double-submit token (a short-lived cookie and a hidden field that must match) and by
//!   refusing cross-site posts; failed logins count towards the address's rate limit.
//! - The session is a random 256-bit id in a `__Host-` cookie: `Secure`, `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`, eight hours. Only its SHA-256 is kept, in memory (one server;
//!   a restart logs everyone out).
//! - Every form of a session carries its CSRF token, compared in constant time.
//! - `GET /console`: who is logged in; `GET /console/audit`: the audit log (privacy officers
//!   and admins); `POST /console/logout`.
//!
//! Pages work without JavaScript. Logins, logouts and audit-log views are audited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use missive_engine::auth::Caller;
use missive_store::{AuditEntry, AuditQuery, Role};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::html::escape;

use axum::Router;
use axum::routing::{get, post};

/// The console's pages.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(home))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/audit", get(audit_page))
}

pub const SESSION_COOKIE: &str = "__Host-missive_session";
const LOGIN_CSRF_COOKIE: &str = "__Host-missive_login";
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

#[derive(Clone)]
struct Session {
    caller: Caller,
    csrf: String,
    expires: Instant,
}

/// Live sessions, by the SHA-256 of their id.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

impl Sessions {
    fn create(&self, caller: Caller) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        if let Ok(mut s) = self.0.lock() {
            let now = Instant::now();
            s.retain(|_, v| v.expires > now);
            s.insert(
                digest(&id),
                Session {
                    caller,
                    csrf: csrf.clone(),
                    expires: now + SESSION_TTL,
                },
            );
        }
        (id, csrf)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let s = self.0.lock().ok()?;
        s.get(&digest(id)).filter(|v| v.expires > Instant::now()).cloned()
    }

    fn remove(&self, id: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(&digest(id));
        }
    }

    /// Ends every session opened with the key `key_id` (it was revoked).
    pub fn end_sessions_of(&self, key_id: &missive_core::ApiKeyId) {
        if let Ok(mut s) = self.0.lock() {
            s.retain(|_, v| &v.caller.key_id != key_id);
        }
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A form post from another site, or from a page that is not ours. A browser's
/// `Sec-Fetch-Site` decides; without it, `Origin` must name this host. Pages are served with
/// `Referrer-Policy: no-referrer`, under which browsers send `Origin: null` on their own forms:
/// that proves nothing either way, and the form's token decides.
pub(crate) fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (
        headers.get("origin").and_then(|v| v.to_str().ok()),
        headers.get("host").and_then(|v| v.to_str().ok()),
    ) {
        (Some("null"), _) => false,
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
            origin_host != host
        }
        (Some(_), None) => true,
        _ => false,
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · missive</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ccc;padding:.3rem;text-align:left;font-size:.9rem}}\
         label{{display:block;margin:.5rem 0 .2rem}}input[type=password],input[type=text]{{width:100%;max-width:30rem;padding:.4rem}}\
         button{{padding:.4rem 1rem;margin-top:.5rem}}.error{{color:#a00}}\
         fieldset{{margin:1rem 0;padding:.5rem 1rem}}legend{{font-weight:600}}\
         input[type=checkbox]+label,input[type=radio]+label{{display:inline;margin-left:.3rem}}.note{{color:#555;font-size:.9rem}}</style></head>\
         <body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

pub(crate) fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let mut res = (status, Html(page(title, body))).into_response();
    let h = res.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    res
}

async fn audit(state: &AppState, caller: Option<&Caller>, action: &str, status: StatusCode, detail: &str) {
    let entry = AuditEntry {
        seq: 0,
        at: state.engine.clock().now(),
        actor: caller.map_or_else(|| "anonymous".to_owned(), |c| format!("session:{}", c.key_id)),
        role: caller.map_or("", |c| c.role.as_str()).to_owned(),
        action: action.to_owned(),
        target: "console".into(),
        status: status.as_u16(),
        detail: detail.to_owned(),
    };
    if let Err(e) = state.engine.audit().append(vec![entry]).await {
        tracing::error!(error = %e, "audit log not written for a console action");
    }
}

fn login_form(csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    format!(
        "{error}<form method=\"post\" action=\"/console/login\">\
         <label for=\"key\">API key</label>\
         <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" required>\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Log in</button></form>\
         <p>Use a key of a person (admin, marketer, analyst or privacy officer), not a write key.</p>"
    )
}

/// `GET /console/login`: the form, with a fresh double-submit token.
pub async fn login_page() -> Response {
    let csrf = random_token();
    let mut res = html(StatusCode::OK, "Log in", &login_form(&csrf, None));
    set_cookie(
        &mut res,
        &format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=600"),
    );
    res
}

fn set_cookie(res: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(SET_COOKIE, v);
    }
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    key: String,
    csrf: String,
}

/// `POST /console/login`.
pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let headers = &parts.headers;
    let expected = cookie(headers, LOGIN_CSRF_COOKIE);
    if cross_site(headers) || !expected.is_some_and(|c| same(&c, &form.csrf)) {
        audit(&state, None, "console.login", StatusCode::FORBIDDEN, "csrf").await;
        return html(
            StatusCode::FORBIDDEN,
            "Log in",
            "<p class=\"error\" role=\"alert\">This form expired or was sent from another site. \
             <a href=\"/console/login\">Open the login page again</a>.</p>",
        );
    }
    let ip = crate::limits::client_ip(&parts);
    let retry = |msg: &str, status: StatusCode| {
        let csrf = random_token();
        let mut res = html(status, "Log in", &login_form(&csrf, Some(msg)));
        set_cookie(
            &mut res,
            &format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=600"),
        );
        res
    };
    let caller = match crate::auth::caller_for(&state, form.key.trim(), ip).await {
        Ok(c) => c,
        Err(e) => {
            audit(&state, None, "console.login", e.status, "").await;
            let msg = if e.status == StatusCode::TOO_MANY_REQUESTS {
                "Too many failed attempts from this address: try again in a few minutes."
            } else {
                "That key is not valid."
            };
            return retry(msg, e.status);
        }
    };
    if matches!(caller.role, Role::Write | Role::ServerWrite) {
        audit(
            &state,
            Some(&caller),
            "console.login",
            StatusCode::FORBIDDEN,
            "write key",
        )
        .await;
        return retry(
            "A write key only sends events: use a key of a person.",
            StatusCode::FORBIDDEN,
        );
    }
    let (id, _) = state.sessions.create(caller.clone());
    audit(&state, Some(&caller), "console.login", StatusCode::SEE_OTHER, "").await;
    let mut res = Redirect::to("/console").into_response();
    set_cookie(
        &mut res,
        &format!(
            "{SESSION_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_TTL.as_secs()
        ),
    );
    set_cookie(
        &mut res,
        &format!("{LOGIN_CSRF_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

/// The session of a request (its id and state); without one, pages redirect to the login.
/// A session lives no longer than its key: the key is checked on every page, so that a
/// revocation anywhere (the API, `missive apikey revoke`, another server) ends it at once.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let session = state.sessions.get(&id)?;
    match state.auth.key_is_live(&session.caller.key_id).await {
        Ok(true) => Some((id, session)),
        Ok(false) => {
            state.sessions.end_sessions_of(&session.caller.key_id);
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "console: key check failed; session refused");
            None
        }
    }
}

fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
}

fn logout_form(csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/console/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Log out</button></form>"
    )
}

/// `GET /console`.
pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((_, s)) = session_of(&state, &headers).await else {
        return to_login();
    };
    let audit_link = if matches!(s.caller.role, Role::Admin | Role::PrivacyOfficer) {
        "<li><a href=\"/console/audit\">Audit log</a></li>"
    } else {
        ""
    };
    let body = format!(
        "<p>Logged in with key <code>{}</code> as <strong>{}</strong>.</p><ul>{audit_link}</ul>{}",
        escape(s.caller.key_id.as_str()),
        escape(s.caller.role.as_str()),
        logout_form(&s.csrf)
    );
    html(StatusCode::OK, "Console", &body)
}

#[derive(serde::Deserialize)]
pub struct AuditFilter {
    target: Option<String>,
    actor: Option<String>,
}

/// `GET /console/audit?target=&actor=`: the newest 200 entries.
pub async fn audit_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<AuditFilter>,
) -> Response {
    let Some((_, s)) = session_of(&state, &headers).await else {
        return to_login();
    };
    if !matches!(s.caller.role, Role::Admin | Role::PrivacyOfficer) {
        audit(
            &state,
            Some(&s.caller),
            "console.audit",
            StatusCode::FORBIDDEN,
            "",
        )
        .await;
        return html(
            StatusCode::FORBIDDEN,
            "Audit log",
            "<p class=\"error\" role=\"alert\">Only privacy officers and admins read the audit log.</p>",
        );
    }
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let (target, actor) = (non_empty(filter.target), non_empty(filter.actor));
    let entries = match state
        .engine
        .audit()
        .entries(AuditQuery {
            target: target.clone(),
            actor: actor.clone(),
            limit: 200,
            ..AuditQuery::default()
        })
        .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "audit log unreadable");
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                "Audit log",
                "<p role=\"alert\">Try again in a moment.</p>",
            );
        }
    };
    audit(
        &state,
        Some(&s.caller),
        "console.audit",
        StatusCode::OK,
        target.as_deref().unwrap_or(""),
    )
    .await;
    let mut rows = String::new();
    for e in &entries {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&e.at.to_rfc3339()),
            escape(&e.actor),
            escape(&e.role),
            escape(&e.action),
            escape(&e.target),
            e.status
        ));
    }
    let body = format!(
        "<form method=\"get\" action=\"/console/audit\">\
         <label for=\"target\">Target (e.g. profile:prf_…)</label>\
         <input id=\"target\" name=\"target\" type=\"text\" value=\"{}\">\
         <label for=\"actor\">Actor (e.g. key:key_…)</label>\
         <input id=\"actor\" name=\"actor\" type=\"text\" value=\"{}\">\
         <button type=\"submit\">Filter</button></form>\
         <table><caption>Newest first ({} entries)</caption>\
         <thead><tr><th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">Role</th>\
         <th scope=\"col\">What</th><th scope=\"col\">On</th><th scope=\"col\">Status</th></tr></thead>\
         <tbody>{rows}</tbody></table><p><a href=\"/console\">Console</a></p>{}",
        escape(target.as_deref().unwrap_or("")),
        escape(actor.as_deref().unwrap_or("")),
        entries.len(),
        logout_form(&s.csrf)
    );
    html(StatusCode::OK, "Audit log", &body)
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /console/logout`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    let Some((id, s)) = session_of(&state, &headers).await else {
        return to_login();
    };
    if cross_site(&headers) || !same(&s.csrf, &form.csrf) {
        audit(
            &state,
            Some(&s.caller),
            "console.logout",
            StatusCode::FORBIDDEN,
            "csrf",
        )
        .await;
        return html(
            StatusCode::FORBIDDEN,
            "Log out",
            "<p class=\"error\" role=\"alert\">This form was not sent from the console.</p>",
        );
    }
    state.sessions.remove(&id);
    audit(
        &state,
        Some(&s.caller),
        "console.logout",
        StatusCode::SEE_OTHER,
        "",
    )
    .await;
    let mut res = Redirect::to("/console/login").into_response();
    set_cookie(
        &mut res,
        &format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}
