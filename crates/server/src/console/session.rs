//! Logging in and out, sessions, CSRF tokens, and keeping a form's work across an expired
//! session.
//!
//! - `GET|POST /console/login`: a form for a key (any role but `write`). Login CSRF is stopped
//!   by a double-submit token (a short-lived cookie and a hidden field that must match) and by
//!   refusing cross-site posts; failed logins count towards the address's rate limit.
//! - The session is a random 256-bit id in a `__Host-` cookie: `Secure`, `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`, eight hours. Only its SHA-256 is kept, in memory (one server;
//!   a restart logs everyone out).
//! - Every form of a session carries its CSRF token, compared in constant time
//!   ([`Visit::check`]).
//! - A page asked for without a session redirects to the login, which comes back to it. A form
//!   posted without one (the session expired mid-edit) is not lost: the login page carries it,
//!   and once logged in the person sends it again ([`keep_work`]).
//!
//! Logins, logouts and refusals are audited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use missive_engine::auth::Caller;
use missive_store::{AuditEntry, Role};
use sha2::{Digest, Sha256};

use super::layout;
use crate::AppState;

pub const SESSION_COOKIE: &str = "__Host-missive_session";
const LOGIN_CSRF_COOKIE: &str = "__Host-missive_login";
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The largest form kept across a login (a template's source is the largest a person writes).
const MAX_KEPT_FORM: usize = 512 * 1024;

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

fn set_cookie(res: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(SET_COOKIE, v);
    }
}

/// Records a console action in the audit log: who (the session's key), what, on what.
pub(crate) async fn audit(
    state: &AppState,
    caller: Option<&Caller>,
    action: &str,
    status: StatusCode,
    target: &str,
    detail: &str,
) {
    let entry = AuditEntry {
        seq: 0,
        at: state.engine.clock().now(),
        actor: caller.map_or_else(|| "anonymous".to_owned(), |c| format!("session:{}", c.key_id)),
        role: caller.map_or("", |c| c.role.as_str()).to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        status: status.as_u16(),
        detail: detail.to_owned(),
    };
    if let Err(e) = state.engine.audit().append(vec![entry]).await {
        tracing::error!(error = %e, "audit log not written for a console action");
    }
}

/// A logged-in person on a console page: their key and role, and the session's CSRF token
/// every form carries. Without a live session the page redirects to the login, which brings
/// the person back.
#[derive(Clone)]
pub(crate) struct Visit {
    pub caller: Caller,
    pub csrf: String,
    id: String,
}

impl Visit {
    pub fn role(&self) -> Role {
        self.caller.role
    }

    /// Whether the role has the API permission `P` (the console allows what the API allows).
    pub fn may<P: crate::auth::Permission>(&self) -> bool {
        P::allows(self.caller.role)
    }

    /// Checks a posted form: sent from a console page of this session.
    pub async fn check(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        token: &str,
        action: &str,
    ) -> Result<(), Response> {
        if cross_site(headers) || !same(&self.csrf, token) {
            audit(
                state,
                Some(&self.caller),
                action,
                StatusCode::FORBIDDEN,
                "console",
                "csrf",
            )
            .await;
            return Err(layout::message(
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form was not sent from a console page of your session (its security token does not match). \
                 Open the page again and repeat what you did.",
            ));
        }
        Ok(())
    }

    /// A change posted from a console form: the role must have `P` (else refused with `why`)
    /// and the form must carry this session's token.
    pub async fn may_change<P: crate::auth::Permission>(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        token: &str,
        action: &str,
        why: &str,
    ) -> Result<(), Response> {
        if !self.may::<P>() {
            return Err(self.refuse(state, action, why).await);
        }
        self.check(state, headers, token, action).await
    }

    /// Refuses the page to this role, audited, with what the role may not do.
    pub async fn refuse(&self, state: &AppState, action: &str, why: &str) -> Response {
        audit(
            state,
            Some(&self.caller),
            action,
            StatusCode::FORBIDDEN,
            "console",
            "",
        )
        .await;
        layout::refused(self, why)
    }
}

impl FromRequestParts<AppState> for Visit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        session_of(state, &parts.headers)
            .await
            .ok_or_else(|| to_login(parts.uri.path_and_query().map(|p| p.as_str())))
    }
}

/// The session of a request; `None` without a live one. A session lives no longer than its
/// key: the key is checked on every page, so that a revocation anywhere (the API, `missive
/// apikey revoke`, another server) ends it at once.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Visit> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let session = state.sessions.get(&id)?;
    match state.auth.key_is_live(&session.caller.key_id).await {
        Ok(true) => Some(Visit {
            caller: session.caller,
            csrf: session.csrf,
            id,
        }),
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

/// Where the login may send a person back to: a console page of this server, nothing else.
fn safe_next(next: Option<&str>) -> Option<&str> {
    next.filter(|n| {
        n.starts_with("/console")
            && !n.starts_with("/console/login")
            && !n.contains("//")
            && !n.contains('\\')
            && !n.contains("..")
    })
}

fn to_login(next: Option<&str>) -> Response {
    match safe_next(next) {
        Some(n) if n != "/console" => Redirect::to(&format!(
            "/console/login?next={}",
            url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
        ))
        .into_response(),
        _ => Redirect::to("/console/login").into_response(),
    }
}

/// A form posted without a live session (it expired while the person worked): instead of a
/// redirect that would drop what they wrote, the login page keeps the form, to be sent again
/// once they are back. Pages asked for with `GET` go through [`Visit`]'s redirect.
pub(crate) async fn keep_work(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || session_of(&state, req.headers()).await.is_some() {
        return next.run(req).await;
    }
    // A post from another site arrives without the (SameSite=Strict) session: it must not be
    // kept and offered back after a login, or a hostile page could stage a change.
    if cross_site(req.headers()) {
        audit(
            &state,
            None,
            "console.kept_form",
            StatusCode::FORBIDDEN,
            "console",
            "cross-site",
        )
        .await;
        return layout::message(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form was sent from another site. Open the console and do it from there.",
        );
    }
    let action = req.uri().path().to_owned();
    let body = match axum::body::to_bytes(req.into_body(), MAX_KEPT_FORM).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let kept = (!body.is_empty() && action != "/console/logout").then_some(Kept { action, body });
    let message = if kept.is_some() {
        "Your session has ended. Log in again: what you were sending is kept, and you can send it again."
    } else {
        "Your session has ended. Log in again."
    };
    login_response(StatusCode::UNAUTHORIZED, Some(message), None, kept.as_ref())
}

/// A form kept across a login: where it was posted and its url-encoded fields.
struct Kept {
    action: String,
    body: String,
}

fn login_form(csrf: &str, error: Option<&str>, next: Option<&str>, kept: Option<&Kept>) -> Markup {
    html! {
        div.login {
            h1 { "missive" }
            p.lede { "Log in to the console" }
            @if let Some(e) = error { p.alert.error role="alert" { (e) } }
            form method="post" action="/console/login" {
                label for="key" { "API key" }
                input #key name="key" type="password" autocomplete="current-password" required;
                input type="hidden" name="csrf" value=(csrf);
                @if let Some(n) = next { input type="hidden" name="next" value=(n); }
                @if let Some(k) = kept {
                    input type="hidden" name="kept_action" value=(k.action);
                    input type="hidden" name="kept_body" value=(k.body);
                }
                button.primary type="submit" { "Log in" }
            }
            p.note { "Use the key of a person (admin, marketer, analyst or privacy officer), not a write key." }
        }
    }
}

fn login_response(
    status: StatusCode,
    error: Option<&str>,
    next: Option<&str>,
    kept: Option<&Kept>,
) -> Response {
    let csrf = random_token();
    let mut res = layout::bare(status, "Log in", login_form(&csrf, error, next, kept));
    set_cookie(
        &mut res,
        &format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=600"),
    );
    res
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /console/login`: the form, with a fresh double-submit token.
pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    login_response(StatusCode::OK, None, safe_next(q.next.as_deref()), None)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    key: String,
    csrf: String,
    next: Option<String>,
    kept_action: Option<String>,
    kept_body: Option<String>,
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
        audit(
            &state,
            None,
            "console.login",
            StatusCode::FORBIDDEN,
            "console",
            "csrf",
        )
        .await;
        return layout::message(
            StatusCode::FORBIDDEN,
            "Log in",
            "This form expired or was sent from another site. Open the login page again.",
        );
    }
    let next = safe_next(form.next.as_deref());
    let kept = match (form.kept_action, form.kept_body) {
        (Some(action), Some(body)) if safe_next(Some(&action)).is_some() && body.len() <= MAX_KEPT_FORM => {
            Some(Kept { action, body })
        }
        _ => None,
    };
    let ip = crate::limits::client_ip(&parts);
    let caller = match crate::auth::caller_for(&state, form.key.trim(), ip).await {
        Ok(c) => c,
        Err(e) => {
            audit(&state, None, "console.login", e.status, "console", "").await;
            let msg = if e.status == StatusCode::TOO_MANY_REQUESTS {
                "Too many failed attempts from this address: try again in a few minutes."
            } else {
                "That key is not valid."
            };
            return login_response(e.status, Some(msg), next, kept.as_ref());
        }
    };
    if matches!(caller.role, Role::Write | Role::ServerWrite) {
        audit(
            &state,
            Some(&caller),
            "console.login",
            StatusCode::FORBIDDEN,
            "console",
            "write key",
        )
        .await;
        return login_response(
            StatusCode::FORBIDDEN,
            Some("A write key only sends events: use a key of a person."),
            next,
            kept.as_ref(),
        );
    }
    let (id, csrf) = state.sessions.create(caller.clone());
    audit(
        &state,
        Some(&caller),
        "console.login",
        StatusCode::SEE_OTHER,
        "console",
        "",
    )
    .await;
    let mut res = match kept {
        Some(k) => resend_page(&k, &csrf),
        None => Redirect::to(next.unwrap_or("/console")).into_response(),
    };
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

/// After a login that kept a form: the form again, with the new session's token, to send
/// with one press (nothing is sent without the person's say).
fn resend_page(kept: &Kept, csrf: &str) -> Response {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(kept.body.as_bytes())
        .filter(|(k, _)| k != "csrf")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let body = html! {
        div.login.wide {
            h1 { "Welcome back" }
            p { "Your session had ended while you worked. This is what you were sending; press the button to send it now." }
            form method="post" action=(kept.action) {
                input type="hidden" name="csrf" value=(csrf);
                @for (k, v) in &fields {
                    input type="hidden" name=(k) value=(v);
                }
                dl.kept {
                    @for (k, v) in &fields {
                        dt { (k) }
                        dd { pre { (v) } }
                    }
                }
                button.primary type="submit" { "Send it again" }
                " "
                a href="/console" { "Discard and go to the console" }
            }
        }
    };
    layout::bare(StatusCode::OK, "Send your work again", body)
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /console/logout`.
pub async fn logout(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = visit.check(&state, &headers, &form.csrf, "console.logout").await {
        return r;
    }
    state.sessions.remove(&visit.id);
    audit(
        &state,
        Some(&visit.caller),
        "console.logout",
        StatusCode::SEE_OTHER,
        "console",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_only_sends_people_back_to_console_pages() {
        for (next, ok) in [
            (Some("/console/segments"), true),
            (Some("/console/profiles?q=a%40b.c"), true),
            (Some("/console/login"), false),
            (Some("//evil.example/console"), false),
            (Some("/console//evil.example"), false),
            (Some("https://evil.example/console"), false),
            (Some("/v1/profiles"), false),
            (Some("/console\\@evil"), false),
            (Some("/console/../v1/keys"), false),
            (None, false),
        ] {
            assert_eq!(safe_next(next).is_some(), ok, "{next:?}");
        }
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
