//! API keys and roles, for admins: `GET /console/keys` lists every key (revoked ones too) with
//! what each role may do; `POST /console/keys` creates one and shows its secret once;
//! `POST /console/keys/revoke` revokes one (its console sessions end at once; the last admin
//! key cannot be revoked). The same rules as `/v1/keys` (`crate::privacy`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use missive_core::ApiKeyId;
use missive_store::Role;

use super::layout::{self, Section, role_label, time};
use super::session::{Visit, audit};
use crate::AppState;
use crate::auth::Administer;
use crate::privacy::{key_request, revoke_live_key};

const ADMINS: &str = "Only admins manage API keys.";

/// What each role may do, in a sentence (crate::auth holds the rules).
fn role_does(role: Role) -> &'static str {
    match role {
        Role::Admin => "Everything, including keys and settings.",
        Role::Marketer => {
            "Segments, templates, journeys, broadcasts and experiments; reads profiles. No keys."
        }
        Role::Analyst => "Reports and pseudonymized profiles; no e-mail addresses or names.",
        Role::PrivacyOfficer => "Consent, exports, erasures and the audit log; reads profiles.",
        Role::Write => "Sends events from browsers and apps (the tracking API) and nothing else.",
        Role::ServerWrite => "Sends events from servers, including consent and bulk import.",
    }
}

/// `GET /console/keys`.
pub async fn list(State(state): State<AppState>, visit: Visit) -> Response {
    if !visit.may::<Administer>() {
        return visit.refuse(&state, "console.keys", ADMINS).await;
    }
    keys_page(&state, &visit, html! {}, StatusCode::OK).await
}

async fn keys_page(state: &AppState, visit: &Visit, top: Markup, status: StatusCode) -> Response {
    let mut keys = match state.auth.list_keys().await {
        Ok(k) => k,
        Err(e) => return layout::unavailable(visit, Section::Keys, "API keys", &e),
    };
    keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let body = html! {
        (top)
        section.card {
            h2 { "Create a key" }
            form.stack method="post" action="/console/keys" {
                input type="hidden" name="csrf" value=(visit.csrf);
                div.row {
                    div {
                        label for="role" { "Role" }
                        select #role name="role" required {
                            @for r in Role::ALL { option value=(r.as_str()) selected[r == Role::Marketer] { (role_label(r)) } }
                        }
                    }
                    div {
                        label for="label" { "Label " span.hint { "(who or what uses it: \"Ana, CRM team\", \"shop webhooks\")" } }
                        input #label name="label" type="text" maxlength="200" required;
                    }
                    div { button.primary type="submit" { "Create" } }
                }
            }
        }
        div.table-wrap { table {
            caption { "Keys (" (keys.len()) "), newest first" }
            thead { tr { th scope="col" { "Key" } th scope="col" { "Role" } th scope="col" { "Label" } th scope="col" { "Created" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Action" } } } }
            tbody {
                @for k in &keys {
                    tr {
                        td { code { (k.id) } @if k.id == visit.caller.key_id { " " (layout::badge("this session", "idle")) } }
                        td { (role_label(k.role)) }
                        td { (k.label) }
                        td { (time(k.created_at)) }
                        td { @if let Some(at) = k.revoked_at { (layout::badge("revoked", "bad")) " " (time(at)) } @else { (layout::badge("live", "ok")) } }
                        td {
                            @if k.revoked_at.is_none() {
                                form.inline method="post" action="/console/keys/revoke" {
                                    input type="hidden" name="csrf" value=(visit.csrf);
                                    input type="hidden" name="id" value=(k.id);
                                    button.danger type="submit" aria-label={ "Revoke " (k.id) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        } }
        section.card {
            h2 { "Roles" }
            dl.roles {
                @for r in Role::ALL { dt { (role_label(r)) " " code { (r.as_str()) } } dd { (role_does(r)) } }
            }
        }
    };
    layout::page_with(visit, Section::Keys, "API keys", body, status, None)
}

#[derive(serde::Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    label: String,
}

/// `POST /console/keys`: the new key's secret, shown this once.
pub async fn create(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CreateForm>,
) -> Response {
    if let Err(r) = visit
        .may_change::<Administer>(&state, &headers, &form.csrf, "console.keys.create", ADMINS)
        .await
    {
        return r;
    }
    let (role, label) = match key_request(&form.role, &form.label) {
        Ok(x) => x,
        Err(e) => {
            let field = e.field.clone().unwrap_or_default();
            return keys_page(
                &state,
                &visit,
                layout::error(&format!("Not created: {field}: {}.", e.message)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match state
        .auth
        .create_key(role, label, state.engine.clock().now())
        .await
    {
        Ok((record, secret)) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.keys.create",
                StatusCode::CREATED,
                &format!("key:{}", record.id),
                &format!("role={}", role.as_str()),
            )
            .await;
            let top = html! {
                section.card.secret role="status" {
                    h2 { "Key " code { (record.id) } " created (" (role_label(role)) ")" }
                    p { "Its secret is shown this once: copy it to where it will be used now. missive keeps only a hash of it." }
                    label for="secret" { "Secret" }
                    input #secret type="text" readonly value=(secret.expose());
                }
            };
            keys_page(&state, &visit, top, StatusCode::CREATED).await
        }
        Err(e) => layout::unavailable(&visit, Section::Keys, "API keys", &e),
    }
}

#[derive(serde::Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

/// `POST /console/keys/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(form): axum::Form<RevokeForm>,
) -> Response {
    if let Err(r) = visit
        .may_change::<Administer>(&state, &headers, &form.csrf, "console.keys.revoke", ADMINS)
        .await
    {
        return r;
    }
    let Ok(id) = ApiKeyId::parse(form.id.trim()) else {
        return keys_page(
            &state,
            &visit,
            layout::error("That is not a key id."),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let target = format!("key:{id}");
    match revoke_live_key(&state, &id).await {
        Ok(()) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.keys.revoke",
                StatusCode::OK,
                &target,
                "",
            )
            .await;
            if id == visit.caller.key_id {
                // This session's own key: its session has just ended.
                return axum::response::IntoResponse::into_response(axum::response::Redirect::to(
                    "/console/login",
                ));
            }
            keys_page(
                &state,
                &visit,
                layout::notice(&format!("Key {id} is revoked; its sessions ended.")),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.keys.revoke",
                e.status,
                &target,
                "",
            )
            .await;
            keys_page(
                &state,
                &visit,
                layout::error(&format!("Not revoked: {}.", e.message)),
                e.status,
            )
            .await
        }
    }
}
