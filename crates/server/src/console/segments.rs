//! Segments: the list with each one's size and its movement over the last seven days, and an
//! editor that checks an expression (parse and type errors at their line and column, with the
//! line shown and a caret under the place), counts the profiles it would hold and shows a
//! sample, before saving. `POST /console/segments/check` answers the whole page, or with
//! `fragment=1` only the result panel (the script's live check as one types).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::TimeDelta;
use maud::{Markup, html};
use missive_engine::segments::{PreviewError, SegmentServiceError, delete_segment, save_segment};
use missive_segment::{Segment, SegmentError};

use super::layout::{self, Section, group};
use super::session::{Visit, audit};
use crate::AppState;
use crate::auth::{Marketing, ReadPersonal, Reports};

/// The longest expression the editor takes: far beyond any real segment, short of abuse.
const MAX_EXPRESSION: usize = 20_000;
const MAX_NAME: usize = 100;

#[derive(serde::Deserialize)]
pub struct ListQuery {
    saved: Option<String>,
    deleted: Option<String>,
}

/// `GET /console/segments`.
pub async fn list(State(state): State<AppState>, visit: Visit, Query(q): Query<ListQuery>) -> Response {
    if !visit.may::<Reports>() {
        return visit
            .refuse(&state, "console.segments", "Your role does not read segments.")
            .await;
    }
    let segments = state.engine.segments();
    let now = state.engine.clock().now();
    let (saved, sizes) = tokio::join!(segments.saved(), segments.sizes(now - TimeDelta::days(7)));
    let (saved, sizes) = match (saved, sizes) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return layout::unavailable(&visit, Section::Segments, "Segments", &e),
    };
    let body = html! {
        @if let Some(n) = &q.saved { (layout::notice(&format!("Segment {n} is saved and its members are counted."))) }
        @if let Some(n) = &q.deleted { (layout::notice(&format!("Segment {n} is deleted."))) }
        @if layout::may_market(&visit) {
            div.toolbar { a.button.primary href="/console/segments/new" { "New segment" } }
        }
        @if saved.is_empty() {
            p.empty { "No segments yet." }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Segment" } th.num scope="col" { "Members" }
                    th.num scope="col" { "Last 7 days" } th scope="col" { "Definition" } th scope="col" { "Updated" }
                } }
                tbody {
                    @for s in &saved {
                        @let size = sizes.iter().find(|z| z.segment == s.name);
                        @let (members, entered, exited) = size.map_or((0, 0, 0), |z| (z.members, z.entered, z.exited));
                        @let broken = Segment::compile(&s.expression, &missive_segment::Schema::default()).err();
                        tr {
                            th scope="row" {
                                @if layout::may_market(&visit) { a href={ "/console/segments/edit/" (layout::path_part(&s.name)) } { (s.name) } } @else { (s.name) }
                                @if broken.is_some() { " " (layout::badge("disabled", "bad")) }
                            }
                            td.num { (group(members)) }
                            td.num { span.up { "+" (group(entered)) } " / " span.down { "−" (group(exited)) } }
                            td { code { (s.expression) } }
                            td { (layout::time(s.updated_at)) }
                        }
                    }
                }
            } }
            p.note { "Members as of the last checkpoint (a fraction of a second behind events). Disabled segments no longer compile: save them again." }
        }
    };
    layout::page(&visit, Section::Segments, "Segments", body)
}

/// What the editor holds: a draft, checked or not.
#[derive(Default, serde::Deserialize)]
pub struct Draft {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    expression: String,
    /// `1` from the script: answer with the result panel only.
    #[serde(default)]
    fragment: Option<String>,
}

/// `GET /console/segments/new`.
pub async fn new(State(state): State<AppState>, visit: Visit) -> Response {
    if !visit.may::<Marketing>() {
        return visit
            .refuse(&state, "console.segments", "Your role does not change segments.")
            .await;
    }
    editor(&visit, &Draft::default(), html! {}, StatusCode::OK, false)
}

/// `GET /console/segments/edit/{name}`.
pub async fn edit(State(state): State<AppState>, visit: Visit, Path(name): Path<String>) -> Response {
    if !visit.may::<Marketing>() {
        return visit
            .refuse(&state, "console.segments", "Your role does not change segments.")
            .await;
    }
    match state.engine.segments().get(&name).await {
        Ok(Some(r)) => {
            let draft = Draft {
                name: r.name,
                expression: r.expression,
                ..Draft::default()
            };
            editor(&visit, &draft, html! {}, StatusCode::OK, true)
        }
        Ok(None) => layout::not_found(
            &visit,
            Section::Segments,
            "Segment",
            &format!("No segment is named {name:?}."),
        ),
        Err(e) => layout::unavailable(&visit, Section::Segments, "Segment", &e),
    }
}

fn editor(visit: &Visit, draft: &Draft, result: Markup, status: StatusCode, existing: bool) -> Response {
    let body = html! {
        form.stack method="post" action="/console/segments/check" {
            input type="hidden" name="csrf" value=(visit.csrf);
            div {
                label for="name" { "Name " span.hint { "(journeys, broadcasts and other segments refer to it by this name)" } }
                input #name name="name" type="text" value=(draft.name) maxlength=(MAX_NAME) required;
            }
            div {
                label for="expression" { "Definition " span.hint { "(see docs/segments.md: traits, counts of events within a window, orders, scores, other segments)" } }
                textarea.code #expression name="expression" required spellcheck="false" maxlength=(MAX_EXPRESSION)
                    data-live-check="/console/segments/check" aria-describedby="check-result" { (draft.expression) }
            }
            div.actions {
                button type="submit" { "Check and count" }
                button.primary type="submit" formaction="/console/segments/save" { "Save" }
                a href="/console/segments" { "Back to segments" }
            }
        }
        @if existing {
            form.inline method="post" action="/console/segments/delete" {
                input type="hidden" name="csrf" value=(visit.csrf);
                input type="hidden" name="name" value=(draft.name);
                button.danger type="submit" { "Delete this segment" }
            }
        }
        section.card #check-result aria-live="polite" { (result) }
    };
    let title = if draft.name.is_empty() {
        "New segment".to_owned()
    } else {
        format!("Segment {}", draft.name)
    };
    layout::page_with(visit, Section::Segments, &title, body, status, None)
}

/// A language error where it is: the line, a caret under the column, the message and hint.
pub(crate) fn located_error(
    source: &str,
    line: u32,
    column: u32,
    message: &str,
    hint: Option<&str>,
) -> Markup {
    let text = source.lines().nth(line.saturating_sub(1) as usize).unwrap_or("");
    let caret = format!("{}^", " ".repeat(column.saturating_sub(1) as usize));
    html! {
        p.alert.error role="alert" { "Line " (line) ", column " (column) ": " (message) }
        pre.source { (text) "\n" span.caret { (caret) } }
        @if let Some(h) = hint { p.note { "Hint: " (h) } }
    }
}

fn too_long(draft: &Draft) -> Option<String> {
    if draft.expression.len() > MAX_EXPRESSION {
        return Some(format!(
            "The definition is {} characters long; at most {MAX_EXPRESSION} are taken.",
            group(draft.expression.len() as u64)
        ));
    }
    if draft.name.chars().count() > MAX_NAME {
        return Some(format!("The name is longer than {MAX_NAME} characters."));
    }
    None
}

/// Compiles and counts a draft: the result panel, and whether it is fine.
async fn check_draft(state: &AppState, visit: &Visit, draft: &Draft) -> (Markup, bool) {
    if let Some(why) = too_long(draft) {
        return (layout::error(&why), false);
    }
    if draft.expression.trim().is_empty() {
        return (
            layout::error("Write a definition, for example: orders.count >= 3"),
            false,
        );
    }
    let segments = state.engine.segments();
    let schema = match segments.schema().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "segment check: schema unreadable");
            return (
                layout::error("The schema could not be read just now: try again."),
                false,
            );
        }
    };
    let segment = match Segment::compile(&draft.expression, &schema) {
        Ok(s) => s,
        Err(SegmentError::Parse(e)) => {
            return (
                located_error(&draft.expression, e.line, e.column, &e.message, e.hint.as_deref()),
                false,
            );
        }
        Err(SegmentError::Type(e)) => {
            return (
                located_error(&draft.expression, e.line, e.column, &e.message, e.hint.as_deref()),
                false,
            );
        }
    };
    if let Err(e) = state.engine.sync().await {
        tracing::error!(error = %e, "segment check: engine unavailable");
        return (
            layout::error("Profiles could not be read just now: try again."),
            false,
        );
    }
    let now = state.engine.clock().now();
    match segments.preview(&segment, now, 10, |_| {}).await {
        Ok(p) => {
            let links = visit.may::<ReadPersonal>();
            (
                html! {
                    p.alert.ok role="status" {
                        strong { (group(p.members)) } " of " (group(p.scanned)) " profiles match now."
                    }
                    @if !p.sample.is_empty() {
                        h2 { "A sample" }
                        ul { @for id in &p.sample {
                            li { @if links { a href={ "/console/profiles/" (id) } { code { (id) } } } @else { code { (id) } } }
                        } }
                    }
                },
                true,
            )
        }
        Err(PreviewError::UnknownSegment(name)) => (
            layout::error(&format!(
                "It reads segment {name:?}, which is not saved: save that one first."
            )),
            false,
        ),
        Err(PreviewError::Store(e)) => {
            tracing::error!(error = %e, "segment check: preview failed");
            (
                layout::error("Profiles could not be read just now: try again."),
                false,
            )
        }
    }
}

/// `POST /console/segments/check`.
pub async fn check(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(draft): axum::Form<Draft>,
) -> Response {
    if let Err(r) = visit
        .may_change::<Marketing>(
            &state,
            &headers,
            &draft.csrf,
            "console.segments.check",
            "Your role does not change segments.",
        )
        .await
    {
        return r;
    }
    let (result, ok) = check_draft(&state, &visit, &draft).await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    if draft.fragment.as_deref() == Some("1") {
        return (status, Html(result.into_string())).into_response();
    }
    let existing = matches!(state.engine.segments().get(&draft.name).await, Ok(Some(_)));
    editor(&visit, &draft, result, status, existing)
}

/// `POST /console/segments/save`: saves and backfills; on an error the draft stays in the
/// editor with the error.
pub async fn save(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(draft): axum::Form<Draft>,
) -> Response {
    if let Err(r) = visit
        .may_change::<Marketing>(
            &state,
            &headers,
            &draft.csrf,
            "console.segments.save",
            "Your role does not change segments.",
        )
        .await
    {
        return r;
    }
    if let Some(why) = too_long(&draft) {
        return editor(
            &visit,
            &draft,
            layout::error(&why),
            StatusCode::UNPROCESSABLE_ENTITY,
            false,
        );
    }
    let target = format!("segment:{}", draft.name);
    match save_segment(&state.engine, draft.name.trim(), &draft.expression, None).await {
        Ok(_) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.segments.save",
                StatusCode::SEE_OTHER,
                &target,
                "",
            )
            .await;
            Redirect::to(&format!(
                "/console/segments?saved={}",
                layout::path_part(draft.name.trim())
            ))
            .into_response()
        }
        Err(e) => {
            let result = match &e {
                SegmentServiceError::Language(SegmentError::Parse(p)) => {
                    located_error(&draft.expression, p.line, p.column, &p.message, p.hint.as_deref())
                }
                SegmentServiceError::Language(SegmentError::Type(t)) => {
                    located_error(&draft.expression, t.line, t.column, &t.message, t.hint.as_deref())
                }
                SegmentServiceError::Store(_) | SegmentServiceError::Engine(_) => {
                    tracing::error!(error = %e, "console: segment not saved");
                    layout::error("The segment could not be saved just now: try again.")
                }
                other => layout::error(&format!("Not saved: {other}.")),
            };
            audit(
                &state,
                Some(&visit.caller),
                "console.segments.save",
                StatusCode::UNPROCESSABLE_ENTITY,
                &target,
                "",
            )
            .await;
            editor(&visit, &draft, result, StatusCode::UNPROCESSABLE_ENTITY, false)
        }
    }
}

#[derive(serde::Deserialize)]
pub struct DeleteForm {
    csrf: String,
    name: String,
}

/// `POST /console/segments/delete`: refused while a journey, broadcast or segment uses it.
pub async fn delete(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(form): axum::Form<DeleteForm>,
) -> Response {
    if let Err(r) = visit
        .may_change::<Marketing>(
            &state,
            &headers,
            &form.csrf,
            "console.segments.delete",
            "Your role does not change segments.",
        )
        .await
    {
        return r;
    }
    let target = format!("segment:{}", form.name);
    match delete_segment(&state.engine, &form.name).await {
        Ok(()) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.segments.delete",
                StatusCode::SEE_OTHER,
                &target,
                "",
            )
            .await;
            Redirect::to(&format!(
                "/console/segments?deleted={}",
                layout::path_part(&form.name)
            ))
            .into_response()
        }
        Err(e) => {
            let draft = match state.engine.segments().get(&form.name).await {
                Ok(Some(r)) => Draft {
                    name: r.name,
                    expression: r.expression,
                    ..Draft::default()
                },
                _ => Draft {
                    name: form.name.clone(),
                    ..Draft::default()
                },
            };
            editor(
                &visit,
                &draft,
                layout::error(&format!("Not deleted: {e}.")),
                StatusCode::CONFLICT,
                true,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caret_sits_under_the_column_of_the_line() {
        let s = located_error(
            "a = 1\norders.count >> 3",
            2,
            14,
            "unexpected '>'",
            Some("use >="),
        )
        .into_string();
        assert!(s.contains("Line 2, column 14: unexpected '&gt;'"), "{s}");
        assert!(
            s.contains("orders.count &gt;&gt; 3\n<span class=\"caret\">             ^</span>"),
            "{s}"
        );
        assert!(s.contains("Hint: use &gt;="), "{s}");
    }
}
