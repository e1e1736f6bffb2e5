//! The privacy officer's desk: `GET /console/privacy` shows consent across everyone (per
//! purpose: granted, withdrawn, never asked; the last 30 days' changes; where the answers came
//! from), the data-subject requests answered lately (exports and erasures, from the audit log,
//! through the console or the API), and a form to find the person a new request is about.
//!
//! `GET /console/privacy/person?q=` shows whom a key names and offers the export (a JSON
//! download, `GET /console/privacy/export/{id}`) and the erasure (`POST
//! /console/privacy/erase`, confirmed by typing the profile id: it cannot be undone). Privacy
//! officers and admins only; every step is audited.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use maud::{Markup, html};
use missive_core::ProfileId;
use missive_engine::consent_summary::consent_summary;
use missive_engine::privacy::PrivacyError;
use missive_engine::profiles::ProfileKey;
use missive_store::{AuditEntry, AuditQuery};

use super::layout::{self, Section, group, path_part, time};
use super::session::{Visit, audit};
use crate::AppState;
use crate::auth::Privacy;

const OFFICERS: &str =
    "Only privacy officers and admins answer data-subject requests and read consent across everyone.";

/// The audit actions of answered requests: the console's and the API's.
const REQUEST_ACTIONS: [(&str, &str); 4] = [
    ("console.privacy.export", "Export"),
    ("GET /v1/profiles/{key}/export", "Export"),
    ("console.privacy.erase", "Erasure"),
    ("DELETE /v1/profiles/{key}", "Erasure"),
];

/// `GET /console/privacy`.
pub async fn page(State(state): State<AppState>, visit: Visit) -> Response {
    if !visit.may::<Privacy>() {
        return visit.refuse(&state, "console.privacy", OFFICERS).await;
    }
    let now = state.engine.clock().now();
    if let Err(e) = state.engine.sync().await {
        return layout::unavailable(&visit, Section::Privacy, "Privacy", &e);
    }
    let summary = match consent_summary(state.engine.store(), now - TimeDelta::days(30)).await {
        Ok(s) => s,
        Err(e) => return layout::unavailable(&visit, Section::Privacy, "Privacy", &e),
    };
    let requests = match recent_requests(&state).await {
        Ok(r) => r,
        Err(e) => return layout::unavailable(&visit, Section::Privacy, "Privacy", &e),
    };
    audit(
        &state,
        Some(&visit.caller),
        "console.privacy",
        StatusCode::OK,
        "console",
        "",
    )
    .await;
    let pct = |n: u64| {
        if summary.profiles == 0 {
            "–".to_owned()
        } else {
            format!("{:.1} %", n as f64 * 100.0 / summary.profiles as f64)
        }
    };
    let body = html! {
        (find_form(""))
        section.card {
            h2 { "Consent across " (group(summary.profiles)) " profiles" }
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Purpose" } th.num scope="col" { "Granted" } th.num scope="col" { "Withdrawn" }
                    th.num scope="col" { "Never asked" } th.num scope="col" { "Last 30 days" } th scope="col" { "Where the answers came from" }
                } }
                tbody {
                    @for (purpose, t) in &summary.purposes {
                        tr {
                            th scope="row" { code { (purpose.as_str()) } }
                            td.num { (group(t.granted)) br; span.hint { (pct(t.granted)) } }
                            td.num { (group(t.withdrawn)) br; span.hint { (pct(t.withdrawn)) } }
                            td.num { (group(t.unknown)) }
                            td.num { span.up { "+" (group(t.granted_since)) } " / " span.down { "−" (group(t.withdrawn_since)) } }
                            td { @for (source, n) in &t.sources { span.chip { code { (source) } " " (group(*n)) } " " } }
                        }
                    }
                }
            } }
            p.note { "\"Never asked\": no answer is recorded, and the configured default applies (docs/privacy.md). The last 30 days count every change, to yes or to no, with its date." }
        }
        section.card {
            h2 { "Requests answered lately" }
            @if requests.is_empty() { p.empty { "No export or erasure yet." } } @else {
                div.table-wrap { table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Request" } th scope="col" { "About" } th scope="col" { "By" } th.num scope="col" { "Status" } th scope="col" { "Detail" } } }
                    tbody {
                        @for (kind, e) in &requests {
                            tr {
                                td { (time(e.at)) }
                                td { (kind) }
                                td { code { (e.target) } }
                                td { code { (e.actor) } }
                                td.num { (layout::badge(&e.status.to_string(), if e.status < 400 { "ok" } else { "bad" })) }
                                td { (e.detail) }
                            }
                        }
                    }
                } }
            }
        }
    };
    layout::page(&visit, Section::Privacy, "Privacy", body)
}

/// The newest exports and erasures, through the console or the API.
async fn recent_requests(
    state: &AppState,
) -> Result<Vec<(&'static str, AuditEntry)>, missive_store::StoreError> {
    let mut out = Vec::new();
    for (action, kind) in REQUEST_ACTIONS {
        let entries = state
            .engine
            .audit()
            .entries(AuditQuery {
                action: Some(action.to_owned()),
                limit: 25,
                ..AuditQuery::default()
            })
            .await?;
        out.extend(entries.into_iter().map(|e| (kind, e)));
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.1.seq));
    out.truncate(25);
    Ok(out)
}

fn find_form(q: &str) -> Markup {
    layout::person_search(
        "/console/privacy/person",
        "A new request: find the person",
        q,
        "Then download everything held about them, or erase them.",
    )
}

#[derive(serde::Deserialize)]
pub struct PersonQuery {
    q: Option<String>,
    erased: Option<String>,
}

/// `GET /console/privacy/person?q=`: whom the key names, with the export and the erasure.
pub async fn person(State(state): State<AppState>, visit: Visit, Query(q): Query<PersonQuery>) -> Response {
    if !visit.may::<Privacy>() {
        return visit.refuse(&state, "console.privacy", OFFICERS).await;
    }
    let query = q.q.unwrap_or_default();
    let query = query.trim();
    if let Some(erased) = &q.erased {
        // What was deleted is read back from the audit log, never from the link.
        let entry = state
            .engine
            .audit()
            .entries(AuditQuery {
                action: Some("console.privacy.erase".into()),
                target: Some(format!("profile:{erased}")),
                limit: 1,
                ..AuditQuery::default()
            })
            .await
            .ok()
            .and_then(|e| e.into_iter().next())
            .filter(|e| e.status == StatusCode::SEE_OTHER.as_u16());
        let body = html! {
            @if let Some(e) = entry {
                (layout::notice(&format!("Profile {erased} is erased ({}), {}.", e.detail, e.at.format("%Y-%m-%d %H:%M UTC"))))
            } @else {
                p.alert.error role="alert" { "No erasure of that profile is in the audit log." }
            }
            (find_form(""))
            p { a href="/console/privacy" { "Back to privacy" } }
        };
        return layout::page(&visit, Section::Privacy, "Erased", body);
    }
    if query.is_empty() {
        return layout::page(&visit, Section::Privacy, "Find a person", find_form(""));
    }
    if let Err(e) = state.engine.sync().await {
        return layout::unavailable(&visit, Section::Privacy, "Find a person", &e);
    }
    let id = match state.engine.profiles().resolve(&ProfileKey::parse(query)).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.privacy.find",
                StatusCode::NOT_FOUND,
                "console",
                "",
            )
            .await;
            let body = html! {
                (find_form(query))
                p.alert.error role="alert" { "No profile has that key. If the request names an address or id missive never saw, nothing is held under it." }
            };
            return layout::page_with(
                &visit,
                Section::Privacy,
                "Find a person",
                body,
                StatusCode::NOT_FOUND,
                None,
            );
        }
        Err(e) => return layout::unavailable(&visit, Section::Privacy, "Find a person", &e),
    };
    let target = format!("profile:{id}");
    audit(
        &state,
        Some(&visit.caller),
        "console.privacy.find",
        StatusCode::OK,
        &target,
        "",
    )
    .await;
    let body = html! {
        (find_form(query))
        section.card {
            h2 { "Profile " code { (id) } }
            p { a href={ "/console/profiles/" (id) } { "Open the profile" } " to see what is held: identities, traits, consent, events, messages." }
            div.actions {
                a.button.primary href={ "/console/privacy/export/" (path_part(id.as_str())) } download { "Download everything (JSON)" }
            }
            p.note { "The export holds the profile and every profile merged into it: events, versions, messages, segment history and suppression (format missive-export/1, as GET /v1/profiles/{key}/export)." }
        }
        section.card.danger-zone {
            h2 { "Erase this person" }
            p { "Deletes the profile and everything merged into it: events, versions, messages and memberships. Their identities are blocked from coming back and their address is suppressed. " strong { "This cannot be undone." } }
            form.stack method="post" action="/console/privacy/erase" {
                input type="hidden" name="csrf" value=(visit.csrf);
                input type="hidden" name="id" value=(id);
                div {
                    label for="confirm" { "Type the profile id " code { (id) } " to confirm" }
                    input #confirm name="confirm" type="text" autocomplete="off" required;
                }
                div.actions { button.danger type="submit" { "Erase for good" } }
            }
        }
    };
    layout::page(&visit, Section::Privacy, "A data-subject request", body)
}

/// `GET /console/privacy/export/{id}`: everything about the person, as a JSON download.
pub async fn export(State(state): State<AppState>, visit: Visit, Path(id): Path<String>) -> Response {
    if !visit.may::<Privacy>() {
        return visit.refuse(&state, "console.privacy.export", OFFICERS).await;
    }
    let Ok(id) = ProfileId::parse(&id) else {
        return layout::page_with(
            &visit,
            Section::Privacy,
            "Export",
            layout::error("That is not a profile id."),
            StatusCode::BAD_REQUEST,
            None,
        );
    };
    let target = format!("profile:{id}");
    match state.privacy.export(&ProfileKey::Id(id.clone())).await {
        Ok(doc) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.privacy.export",
                StatusCode::OK,
                &target,
                "",
            )
            .await;
            let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"missive-export-{id}.json\""),
                    ),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                ],
                body,
            )
                .into_response()
        }
        Err(PrivacyError::NotFound) => layout::page_with(
            &visit,
            Section::Privacy,
            "Export",
            layout::error("No profile has that id (it may have been erased)."),
            StatusCode::NOT_FOUND,
            None,
        ),
        Err(e) => layout::unavailable(&visit, Section::Privacy, "Export", &e),
    }
}

#[derive(serde::Deserialize)]
pub struct EraseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /console/privacy/erase`: only when the typed id matches.
pub async fn erase(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(form): axum::Form<EraseForm>,
) -> Response {
    if let Err(r) = visit
        .may_change::<Privacy>(&state, &headers, &form.csrf, "console.privacy.erase", OFFICERS)
        .await
    {
        return r;
    }
    let Ok(id) = ProfileId::parse(form.id.trim()) else {
        return layout::page_with(
            &visit,
            Section::Privacy,
            "Erase",
            layout::error("That is not a profile id."),
            StatusCode::BAD_REQUEST,
            None,
        );
    };
    let target = format!("profile:{id}");
    if form.confirm.trim() != id.as_str() {
        audit(
            &state,
            Some(&visit.caller),
            "console.privacy.erase",
            StatusCode::UNPROCESSABLE_ENTITY,
            &target,
            "not confirmed",
        )
        .await;
        let body = html! {
            p.alert.error role="alert" { "Nothing was erased: the id typed does not match " code { (id) } "." }
            p { a href={ "/console/privacy/person?q=" (path_part(id.as_str())) } { "Back to the request" } }
        };
        return layout::page_with(
            &visit,
            Section::Privacy,
            "Erase",
            body,
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        );
    }
    match state.privacy.erase(&ProfileKey::Id(id.clone())).await {
        Ok(report) => {
            let detail = format!(
                "{} profiles, {} events, {} versions, {} messages; {} identities blocked, {} addresses suppressed",
                report.profiles.len(),
                report.deleted.events,
                report.deleted.versions,
                report.deleted.messages,
                report.identities_blocked,
                report.addresses_suppressed
            );
            audit(
                &state,
                Some(&visit.caller),
                "console.privacy.erase",
                StatusCode::SEE_OTHER,
                &target,
                &detail,
            )
            .await;
            state.journeys.poke();
            axum::response::Redirect::to(&format!(
                "/console/privacy/person?erased={}",
                path_part(id.as_str())
            ))
            .into_response()
        }
        Err(PrivacyError::NotFound) => layout::page_with(
            &visit,
            Section::Privacy,
            "Erase",
            layout::error("No profile has that id (it may have been erased already)."),
            StatusCode::NOT_FOUND,
            None,
        ),
        Err(e) => layout::unavailable(&visit, Section::Privacy, "Erase", &e),
    }
}
