//! Broadcasts: the list with each one's progress, a form to create one (template, segment,
//! when, rate), and a page per broadcast with its counts and pause, resume and cancel. A page
//! of a broadcast in progress refreshes itself every five seconds (no script needed).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDateTime;
use maud::{Markup, html};
use missive_sending::broadcasts::{BroadcastError, BroadcastIn, BroadcastState, Progress};

use super::layout::{self, Section, badge, group, time};
use super::session::{Visit, audit};
use crate::AppState;
use crate::auth::{Marketing, Reports};

pub(crate) fn state_badge(s: BroadcastState) -> Markup {
    match s {
        BroadcastState::Scheduled => badge("scheduled", "idle"),
        BroadcastState::Running => badge("running", "ok"),
        BroadcastState::Paused => badge("paused", "warn"),
        BroadcastState::Completed => badge("completed", "ok"),
        BroadcastState::Cancelled => badge("cancelled", "bad"),
    }
}

/// What a person can do to a broadcast from its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Pause,
    Resume,
    Cancel,
}

impl Action {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "cancel" => Some(Action::Cancel),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }

    /// The actions a broadcast in state `s` allows.
    fn allowed(s: BroadcastState) -> &'static [Action] {
        match s {
            BroadcastState::Scheduled | BroadcastState::Running => &[Action::Pause, Action::Cancel],
            BroadcastState::Paused => &[Action::Resume, Action::Cancel],
            BroadcastState::Completed | BroadcastState::Cancelled => &[],
        }
    }
}

#[derive(Default, serde::Deserialize)]
pub struct NewBroadcast {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    segment: String,
    /// `datetime-local`, in UTC; empty: now.
    #[serde(default)]
    send_at: String,
    /// Messages per second; empty: the default.
    #[serde(default)]
    rate: String,
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    created: Option<String>,
}

/// `GET /console/broadcasts`.
pub async fn list(State(state): State<AppState>, visit: Visit, Query(q): Query<ListQuery>) -> Response {
    if !visit.may::<Reports>() {
        return visit
            .refuse(
                &state,
                "console.broadcasts",
                "Your role does not read broadcasts.",
            )
            .await;
    }
    let notice = q.created.map(|id| format!("Broadcast {id} is created."));
    list_page(
        &state,
        &visit,
        &NewBroadcast::default(),
        notice,
        None,
        StatusCode::OK,
    )
    .await
}

async fn list_page(
    state: &AppState,
    visit: &Visit,
    form: &NewBroadcast,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let saved_segments = state.engine.segments();
    let (broadcasts, templates, segments) = tokio::join!(
        state.broadcasts.list(),
        state.content.list_templates(),
        saved_segments.saved(),
    );
    let broadcasts = match broadcasts {
        Ok(b) => b,
        Err(e) => return layout::unavailable(visit, Section::Broadcasts, "Broadcasts", &e),
    };
    let templates: Vec<String> = templates
        .map(|t| t.into_iter().map(|d| d.name).collect())
        .unwrap_or_default();
    let segments: Vec<String> = segments
        .map(|s| s.into_iter().map(|r| r.name).collect())
        .unwrap_or_default();
    let body = html! {
        @if let Some(n) = &notice { (layout::notice(n)) }
        @if layout::may_market(visit) {
            section.card {
                h2 { "New broadcast" }
                @if let Some(e) = &error { (layout::error(e)) }
                @if templates.is_empty() || segments.is_empty() {
                    p.note { "A broadcast needs a template and a segment: create them first." }
                }
                form method="post" action="/console/broadcasts" {
                    input type="hidden" name="csrf" value=(visit.csrf);
                    div.row {
                        div {
                            label for="template" { "Template" }
                            select #template name="template" required {
                                option value="" { "Choose…" }
                                @for t in &templates { option value=(t) selected[*t == form.template] { (t) } }
                            }
                        }
                        div {
                            label for="segment" { "Segment" }
                            select #segment name="segment" required {
                                option value="" { "Choose…" }
                                @for s in &segments { option value=(s) selected[*s == form.segment] { (s) } }
                            }
                        }
                        div {
                            label for="send_at" { "Send at " span.hint { "(UTC; empty: now)" } }
                            input #send_at name="send_at" type="datetime-local" value=(form.send_at);
                        }
                        div {
                            label for="rate" { "Rate " span.hint { "(per second; empty: default)" } }
                            input #rate name="rate" type="number" min="1" max="100000" value=(form.rate);
                        }
                    }
                    div.actions { button.primary type="submit" { "Create broadcast" } }
                    p.note { "Only people who consented to marketing e-mail and did not decline are sent it; the page of the broadcast shows who was skipped and why." }
                }
            }
        }
        @if broadcasts.is_empty() {
            p.empty { "No broadcasts yet." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Broadcast" } th scope="col" { "Template → segment" } th scope="col" { "State" }
                    th scope="col" { "Queued" } th scope="col" { "Send at" }
                } }
                tbody {
                    @for b in broadcasts.iter().rev() {
                        tr {
                            th scope="row" { a href={ "/console/broadcasts/" (b.id) } { code { (b.id) } } }
                            td { (b.template) " → " (b.segment) }
                            td { (state_badge(b.state)) }
                            td { (layout::progress(b.queued, b.total, "Queued")) }
                            td { (time(b.send_at)) }
                        }
                    }
                }
            } }
        }
    };
    layout::page_with(visit, Section::Broadcasts, "Broadcasts", body, status, None)
}

/// The form's values as a request, or what is wrong with them.
fn to_request(form: &NewBroadcast) -> Result<BroadcastIn, String> {
    if form.template.is_empty() || form.segment.is_empty() {
        return Err("Choose a template and a segment.".into());
    }
    let send_at = match form.send_at.trim() {
        "" => None,
        s => Some(
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
                .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
                .map_err(|_| "Send at must be a date and time such as 2026-12-24T09:00.".to_owned())?
                .and_utc(),
        ),
    };
    let rate_per_second = match form.rate.trim() {
        "" => 0,
        s => s
            .parse::<u32>()
            .ok()
            .filter(|r| (1..=100_000).contains(r))
            .ok_or_else(|| {
                "The rate must be a whole number of messages per second, from 1 to 100000.".to_owned()
            })?,
    };
    Ok(BroadcastIn {
        template: form.template.clone(),
        segment: form.segment.clone(),
        send_at,
        rate_per_second,
        class: Default::default(),
        topic: None,
        experiment: None,
        at: None,
        within: None,
    })
}

/// `POST /console/broadcasts`.
pub async fn create(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(form): axum::Form<NewBroadcast>,
) -> Response {
    if let Err(r) = visit
        .may_change::<Marketing>(
            &state,
            &headers,
            &form.csrf,
            "console.broadcasts.create",
            "Your role does not send broadcasts.",
        )
        .await
    {
        return r;
    }
    let req = match to_request(&form) {
        Ok(r) => r,
        Err(e) => {
            return list_page(
                &state,
                &visit,
                &form,
                None,
                Some(e),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match state.broadcasts.create(req).await {
        Ok(p) => {
            let id = p.broadcast.id.clone();
            audit(
                &state,
                Some(&visit.caller),
                "console.broadcasts.create",
                StatusCode::SEE_OTHER,
                &format!("broadcast:{id}"),
                "",
            )
            .await;
            Redirect::to(&format!("/console/broadcasts/{id}")).into_response()
        }
        Err(BroadcastError::Invalid(why)) => {
            list_page(
                &state,
                &visit,
                &form,
                None,
                Some(format!("Not created: {why}.")),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => layout::unavailable(&visit, Section::Broadcasts, "Broadcasts", &e),
    }
}

/// `GET /console/broadcasts/{id}`.
pub async fn page(State(state): State<AppState>, visit: Visit, Path(id): Path<String>) -> Response {
    if !visit.may::<Reports>() {
        return visit
            .refuse(
                &state,
                "console.broadcasts",
                "Your role does not read broadcasts.",
            )
            .await;
    }
    match state.broadcasts.get(&id).await {
        Ok(p) => detail(&visit, &p, None, StatusCode::OK),
        Err(BroadcastError::NotFound(_)) => layout::not_found(
            &visit,
            Section::Broadcasts,
            "Broadcast",
            "No broadcast has that id.",
        ),
        Err(e) => layout::unavailable(&visit, Section::Broadcasts, "Broadcast", &e),
    }
}

fn detail(visit: &Visit, p: &Progress, error: Option<String>, status: StatusCode) -> Response {
    let b = &p.broadcast;
    let m = &p.messages;
    let moving = matches!(b.state, BroadcastState::Scheduled | BroadcastState::Running);
    let body = html! {
        @if let Some(e) = &error { (layout::error(e)) }
        div.kpis {
            div.kpi { div.label { "State" } div.value { (state_badge(b.state)) } }
            div.kpi { div.label { "Recipients" } div.value { (group(b.total)) } }
            div.kpi { div.label { "Sent" } div.value { (group(m.sent)) } }
            div.kpi { div.label { "Waiting" } div.value { (group(m.queued)) } div.sub { (group(m.deferred)) " deferred" } }
            div.kpi { div.label { "Skipped" } div.value { (group(m.skipped)) } }
            div.kpi { div.label { "Failed" } div.value { (group(m.failed)) } }
        }
        section.card {
            h2 { "Progress" }
            (layout::progress(b.queued, b.total, "Queued for sending"))
            (layout::progress(m.sent, b.total, "Sent"))
            dl.facts {
                dt { "Template" } dd { (b.template) }
                dt { "Segment" } dd { (b.segment) }
                dt { "Send at" } dd { (time(b.send_at)) }
                dt { "Rate" } dd { (b.rate_per_second) " per second" }
                dt { "Created" } dd { (time(b.created_at)) }
            }
            @if moving { p.note { "This page refreshes every five seconds while the broadcast is in progress." } }
            @if layout::may_market(visit) {
                div.actions {
                    @for a in Action::allowed(b.state) {
                        form.inline method="post" action={ "/console/broadcasts/" (b.id) "/" (a.as_str()) } {
                            input type="hidden" name="csrf" value=(visit.csrf);
                            @match a {
                                Action::Pause => button type="submit" { "Pause" },
                                Action::Resume => button.primary type="submit" { "Resume" },
                                Action::Cancel => button.danger type="submit" { "Cancel broadcast" },
                            }
                        }
                    }
                }
            }
        }
        @if !m.skipped_by_reason.is_empty() || !m.deferred_by_reason.is_empty() {
            section.card {
                h2 { "Not sent, and why" }
                table {
                    thead { tr { th scope="col" { "Reason" } th.num scope="col" { "Messages" } } }
                    tbody {
                        @for (r, n) in &m.skipped_by_reason { tr { td { "skipped: " (r) } td.num { (group(*n)) } } }
                        @for (r, n) in &m.deferred_by_reason { tr { td { "deferred: " (r) } td.num { (group(*n)) } } }
                    }
                }
            }
        }
        p { a href="/console/broadcasts" { "All broadcasts" } }
    };
    layout::page_with(
        visit,
        Section::Broadcasts,
        &format!("Broadcast {}", b.id),
        body,
        status,
        moving.then_some(5),
    )
}

#[derive(serde::Deserialize)]
pub struct ActForm {
    csrf: String,
}

/// `POST /console/broadcasts/{id}/{pause|resume|cancel}`.
pub async fn act(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<ActForm>,
) -> Response {
    if let Err(r) = visit
        .may_change::<Marketing>(
            &state,
            &headers,
            &form.csrf,
            "console.broadcasts.act",
            "Your role does not change broadcasts.",
        )
        .await
    {
        return r;
    }
    let Some(action) = Action::parse(&action) else {
        return layout::not_found(
            &visit,
            Section::Broadcasts,
            "Broadcast",
            "A broadcast can be paused, resumed or cancelled.",
        );
    };
    let result = match action {
        Action::Pause => state.broadcasts.pause(&id).await,
        Action::Resume => state.broadcasts.resume(&id).await,
        Action::Cancel => state.broadcasts.cancel(&id).await,
    };
    let target = format!("broadcast:{id}");
    let action_name = format!("console.broadcasts.{}", action.as_str());
    match result {
        Ok(_) => {
            audit(
                &state,
                Some(&visit.caller),
                &action_name,
                StatusCode::SEE_OTHER,
                &target,
                "",
            )
            .await;
            Redirect::to(&format!("/console/broadcasts/{id}")).into_response()
        }
        Err(e @ BroadcastError::WrongState { .. }) => match state.broadcasts.get(&id).await {
            Ok(p) => detail(&visit, &p, Some(format!("{e}.")), StatusCode::CONFLICT),
            Err(e) => layout::unavailable(&visit, Section::Broadcasts, "Broadcast", &e),
        },
        Err(BroadcastError::NotFound(_)) => layout::not_found(
            &visit,
            Section::Broadcasts,
            "Broadcast",
            "No broadcast has that id.",
        ),
        Err(e) => layout::unavailable(&visit, Section::Broadcasts, "Broadcast", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(send_at: &str, rate: &str) -> NewBroadcast {
        NewBroadcast {
            template: "news".into(),
            segment: "vip".into(),
            send_at: send_at.into(),
            rate: rate.into(),
            ..NewBroadcast::default()
        }
    }

    #[test]
    fn the_form_becomes_a_request_or_says_what_is_wrong() {
        let r = to_request(&form("2026-12-24T09:00", "50")).unwrap();
        assert_eq!(r.send_at.unwrap().to_rfc3339(), "2026-12-24T09:00:00+00:00");
        assert_eq!(r.rate_per_second, 50);
        let r = to_request(&form("", "")).unwrap();
        assert!(r.send_at.is_none() && r.rate_per_second == 0);
        assert!(to_request(&form("tomorrow", "")).unwrap_err().contains("Send at"));
        assert!(to_request(&form("", "0")).unwrap_err().contains("rate"));
        assert!(to_request(&form("", "-3")).unwrap_err().contains("rate"));
        let mut f = form("", "");
        f.segment.clear();
        assert!(to_request(&f).is_err());
    }

    #[test]
    fn finished_broadcasts_offer_no_action() {
        assert!(Action::allowed(BroadcastState::Completed).is_empty());
        assert_eq!(
            Action::allowed(BroadcastState::Paused),
            &[Action::Resume, Action::Cancel]
        );
        assert_eq!(Action::parse("delete"), None);
    }
}
