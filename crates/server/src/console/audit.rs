//! The audit log: `GET /console/audit`, newest first, filtered by
//! target or actor (privacy officers and admins; each view is itself audited).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use missive_store::AuditQuery;

use super::layout::{self, Section};
use super::session::{Visit, audit};
use crate::AppState;
use crate::auth::Privacy;

#[derive(serde::Deserialize)]
pub struct AuditFilter {
    target: Option<String>,
    actor: Option<String>,
}

/// `GET /console/audit?target=&actor=`: the newest 200 entries.
pub async fn audit_page(
    State(state): State<AppState>,
    visit: Visit,
    Query(filter): Query<AuditFilter>,
) -> Response {
    if !visit.may::<Privacy>() {
        return visit
            .refuse(
                &state,
                "console.audit",
                "Only privacy officers and admins read the audit log.",
            )
            .await;
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
        Err(e) => return layout::unavailable(&visit, Section::Audit, "Audit log", &e),
    };
    audit(
        &state,
        Some(&visit.caller),
        "console.audit",
        StatusCode::OK,
        "console",
        target.as_deref().unwrap_or(""),
    )
    .await;
    let body = html! {
        form.card method="get" action="/console/audit" {
            div.row {
                div {
                    label for="target" { "Target " span.hint { "(e.g. profile:prf_…)" } }
                    input #target name="target" type="text" value=(target.as_deref().unwrap_or(""));
                }
                div {
                    label for="actor" { "Actor " span.hint { "(e.g. key:key_… or session:key_…)" } }
                    input #actor name="actor" type="text" value=(actor.as_deref().unwrap_or(""));
                }
                div { button type="submit" { "Filter" } }
            }
        }
        div.table-wrap {
            table {
                caption { "Newest first (" (entries.len()) " entries)" }
                thead {
                    tr {
                        th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Role" }
                        th scope="col" { "What" } th scope="col" { "On" } th.num scope="col" { "Status" }
                    }
                }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (layout::time(e.at)) }
                            td { code { (e.actor) } }
                            td { (e.role) }
                            td { (e.action) }
                            td { code { (e.target) } }
                            td.num { (layout::badge(&e.status.to_string(), if e.status < 400 { "ok" } else { "bad" })) }
                        }
                    }
                }
            }
        }
    };
    layout::page(&visit, Section::Audit, "Audit log", body)
}
