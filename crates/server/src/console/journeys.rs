//! Journeys: the list with how many people are in each, a page per journey with its steps drawn
//! as a graph (how many instances wait at each step, how many left at each), and an editor for
//! the definition (JSON, as `PUT /v1/journeys/{name}` takes it; docs/journeys.md) that checks a
//! draft exactly as saving does and draws it before it is saved. A JSON mistake is shown at its
//! line and column.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use missive_sending::journeys::{DefinitionError, JourneyDef, JourneyError};
use missive_store::InstanceStatus;

use super::journey_graph::{self, Tally};
use super::layout::{self, Section, group, path_part, time};
use super::segments::located_error;
use super::session::{Visit, audit};
use crate::AppState;
use crate::auth::{Marketing, Reports};

/// The longest definition the editor takes: far beyond any real journey, short of abuse.
const MAX_DEFINITION: usize = 100_000;

/// What a new journey starts from: a cart recovery, the most common first journey.
const STARTER: &str = r#"{
  "trigger": { "event": "Product Added" },
  "key": "properties.cart_id",
  "steps": [
    { "id": "wait", "type": "wait_for_event", "event": "Order Completed", "match_key": true, "timeout": "4h" },
    { "id": "remind", "type": "send", "template": "cart_recovery" }
  ]
}"#;

#[derive(serde::Deserialize)]
pub struct ListQuery {
    deleted: Option<String>,
}

fn tallies(counts: &[missive_store::StepCount]) -> HashMap<String, Tally> {
    let mut out: HashMap<String, Tally> = HashMap::new();
    for c in counts {
        let t = out.entry(c.step.clone()).or_default();
        match c.status {
            InstanceStatus::Active => t.waiting += c.instances,
            InstanceStatus::Completed => t.completed += c.instances,
            InstanceStatus::Exited => t.exited += c.instances,
        }
    }
    out
}

/// `GET /console/journeys`.
pub async fn list(State(state): State<AppState>, visit: Visit, Query(q): Query<ListQuery>) -> Response {
    if !visit.may::<Reports>() {
        return visit
            .refuse(&state, "console.journeys", "Your role does not read journeys.")
            .await;
    }
    let defs = match state.journeys.definitions().await {
        Ok(d) => d,
        Err(e) => return layout::unavailable(&visit, Section::Journeys, "Journeys", &e),
    };
    let mut rows = Vec::with_capacity(defs.len());
    for d in defs.iter() {
        match state.journeys.step_counts(&d.name).await {
            Ok(c) => rows.push((d.clone(), Tally::total(tallies(&c).values()))),
            Err(e) => return layout::unavailable(&visit, Section::Journeys, "Journeys", &e),
        }
    }
    let body = html! {
        @if let Some(n) = &q.deleted { (layout::notice(&format!("Journey {n} is deleted; its instances ended."))) }
        @if layout::may_market(&visit) {
            div.toolbar { a.button.primary href="/console/journeys/new" { "New journey" } }
        }
        @if rows.is_empty() { p.empty { "No journeys yet." } } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { "Journey" } th scope="col" { "Starts" } th.num scope="col" { "Waiting now" }
                    th.num scope="col" { "Completed" } th.num scope="col" { "Exited" } th.num scope="col" { "Version" }
                } }
                tbody {
                    @for (d, t) in &rows {
                        tr {
                            th scope="row" { a href={ "/console/journeys/" (path_part(&d.name)) } { (d.name) } }
                            td { (trigger(&d.def)) }
                            td.num { (group(t.waiting)) }
                            td.num { (group(t.completed)) }
                            td.num { (group(t.exited)) }
                            td.num { (d.version) }
                        }
                    }
                }
            } }
            p.note { "A journey whose definition no longer compiles (a segment or template it uses was removed) is not listed, and its instances wait: the API's GET /v1/journeys/{name} still reads it." }
        }
    };
    layout::page(&visit, Section::Journeys, "Journeys", body)
}

/// How a journey starts, in words.
pub(crate) fn trigger(def: &JourneyDef) -> String {
    missive_sending::journeys::trigger_summary(&def.trigger)
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    saved: Option<String>,
}

/// `GET /console/journeys/{name}`: the graph, the counts per step, and the definition.
pub async fn page(
    State(state): State<AppState>,
    visit: Visit,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    if !visit.may::<Reports>() {
        return visit
            .refuse(&state, "console.journeys", "Your role does not read journeys.")
            .await;
    }
    let (doc, def) = match state.journeys.get(&name).await {
        Ok(x) => x,
        Err(JourneyError::NotFound(_)) => {
            return layout::not_found(
                &visit,
                Section::Journeys,
                "Journey",
                &format!("No journey is named {name:?}."),
            );
        }
        Err(e) => return layout::unavailable(&visit, Section::Journeys, "Journey", &e),
    };
    let counts = match state.journeys.step_counts(&name).await {
        Ok(c) => tallies(&c),
        Err(e) => return layout::unavailable(&visit, Section::Journeys, "Journey", &e),
    };
    let draft = Draft {
        name: name.clone(),
        definition: pretty(&def),
        ..Draft::default()
    };
    let body = html! {
        @if q.saved.is_some() { (layout::notice(&format!("Version {} is saved. Instances already running continue on the steps they are at.", doc.version))) }
        p.note { (trigger(&def)) " · version " (doc.version) ", saved " (time(doc.updated_at)) }
        (graph_card(&name, &def, &counts))
        (counts_table(&def, &counts))
        @if layout::may_market(&visit) {
            (editor_form(&visit, &draft, true))
        } @else {
            section.card { h2 { "Definition" } pre.source { (pretty(&redacted(&def))) } }
        }
    };
    layout::page(&visit, Section::Journeys, &format!("Journey {name}"), body)
}

fn pretty(def: &JourneyDef) -> String {
    serde_json::to_string_pretty(def).unwrap_or_default()
}

/// The definition for roles that only read: webhook steps' header values (often an
/// `Authorization`) hidden.
fn redacted(def: &JourneyDef) -> JourneyDef {
    let mut def = def.clone();
    for step in &mut def.steps {
        if let missive_sending::journeys::Action::Webhook(call) = &mut step.action {
            for v in call.headers.values_mut() {
                *v = "(hidden)".into();
            }
        }
    }
    def
}

fn graph_card(name: &str, def: &JourneyDef, counts: &HashMap<String, Tally>) -> Markup {
    html! {
        section.card {
            h2 { "Steps" }
            div.graph-wrap { (journey_graph::draw(name, def, counts)) }
            p.note { "Each box: the step, what it does, how many instances wait there now and how many left the journey there. Arrows are the ways on; those going back up are loops through a wait." }
        }
    }
}

fn counts_table(def: &JourneyDef, counts: &HashMap<String, Tally>) -> Markup {
    html! {
        div.table-wrap { table {
            caption { "Instances by step" }
            thead { tr {
                th scope="col" { "Step" } th scope="col" { "Does" } th.num scope="col" { "Waiting" }
                th.num scope="col" { "Completed here" } th.num scope="col" { "Exited here" }
            } }
            tbody {
                @for s in &def.steps {
                    @let t = counts.get(&s.id).copied().unwrap_or_default();
                    tr {
                        th scope="row" { code { (s.id) } }
                        td { (missive_sending::journeys::summary(&s.action)) }
                        td.num { (group(t.waiting)) }
                        td.num { (group(t.completed)) }
                        td.num { (group(t.exited)) }
                    }
                }
            }
        } }
    }
}

/// What the editor holds.
#[derive(Default, serde::Deserialize)]
pub struct Draft {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    definition: String,
}

fn editor_form(visit: &Visit, draft: &Draft, existing: bool) -> Markup {
    html! {
        section.card {
            h2 { "Definition" }
            form.stack method="post" action="/console/journeys/check" {
                input type="hidden" name="csrf" value=(visit.csrf);
                @if existing {
                    input type="hidden" name="name" value=(draft.name);
                } @else {
                    div {
                        label for="name" { "Name " span.hint { "(1 to 64 letters, digits, - or _)" } }
                        input #name name="name" type="text" value=(draft.name) maxlength="64" pattern="[A-Za-z0-9_-]{1,64}" required;
                    }
                }
                div {
                    label for="definition" { "Definition (JSON) " span.hint { "(trigger, key, steps: wait, wait_for_event, branch, split, send, webhook, exit; see docs/journeys.md)" } }
                    textarea.code.tall #definition name="definition" required spellcheck="false" maxlength=(MAX_DEFINITION) { (draft.definition) }
                }
                div.actions {
                    button type="submit" { "Check and draw" }
                    button.primary type="submit" formaction="/console/journeys/save" { "Save" }
                    a href="/console/journeys" { "Back to journeys" }
                }
            }
            @if existing {
                form.inline method="post" action="/console/journeys/delete" {
                    input type="hidden" name="csrf" value=(visit.csrf);
                    input type="hidden" name="name" value=(draft.name);
                    button.danger type="submit" { "Delete this journey (its instances end)" }
                }
            }
        }
    }
}

fn editor(visit: &Visit, draft: &Draft, result: Markup, status: StatusCode, existing: bool) -> Response {
    let body = html! {
        section.card #check-result aria-live="polite" { (result) }
        (editor_form(visit, draft, existing))
    };
    let title = if draft.name.is_empty() {
        "New journey".to_owned()
    } else {
        format!("Journey {}", draft.name)
    };
    layout::page_with(visit, Section::Journeys, &title, body, status, None)
}

/// `GET /console/journeys/new`.
pub async fn new(State(state): State<AppState>, visit: Visit) -> Response {
    if !visit.may::<Marketing>() {
        return visit
            .refuse(&state, "console.journeys", "Your role does not change journeys.")
            .await;
    }
    let draft = Draft {
        definition: STARTER.into(),
        ..Draft::default()
    };
    let hint =
        html! { p.note { "A cart recovery to start from: change it, then check it to see it drawn." } };
    editor(&visit, &draft, hint, StatusCode::OK, false)
}

/// A draft read as a definition, or what is wrong with it, where.
fn parse(draft: &Draft) -> Result<JourneyDef, Markup> {
    if draft.definition.len() > MAX_DEFINITION {
        return Err(layout::error(&format!(
            "The definition is {} characters long; at most {} are taken.",
            group(draft.definition.len() as u64),
            group(MAX_DEFINITION as u64)
        )));
    }
    serde_json::from_str::<JourneyDef>(&draft.definition).map_err(|e| {
        let line = u32::try_from(e.line()).unwrap_or(u32::MAX);
        let column = u32::try_from(e.column()).unwrap_or(u32::MAX);
        // serde_json's message ends with its own "at line L column C".
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        located_error(
            &draft.definition,
            line.max(1),
            column.max(1),
            message,
            Some("the definition is JSON as PUT /v1/journeys/{name} takes it (docs/journeys.md)"),
        )
    })
}

/// Everything saving checks; the refusal said plainly.
async fn check_def(state: &AppState, name: &str, def: &JourneyDef) -> Result<(), Markup> {
    if let Err(m) = state.privacy_config.check_topic(def.topic.as_deref()) {
        return Err(layout::error(&format!("topic: {m}")));
    }
    match state.journeys.check(name, def).await {
        Ok(()) => Ok(()),
        Err(JourneyError::Definition(DefinitionError::Invalid(m))) => Err(layout::error(&m)),
        Err(JourneyError::Definition(DefinitionError::Condition { step, error })) => {
            Err(layout::error(&format!("Step {step:?}'s condition: {error}")))
        }
        Err(e) => {
            tracing::error!(error = %e, "console: journey check failed");
            Err(layout::error(
                "The journey could not be checked just now: try again.",
            ))
        }
    }
}

async fn form_guard(
    state: &AppState,
    visit: &Visit,
    headers: &HeaderMap,
    csrf: &str,
    action: &str,
) -> Option<Response> {
    visit
        .may_change::<Marketing>(
            state,
            headers,
            csrf,
            action,
            "Your role does not change journeys.",
        )
        .await
        .err()
}

async fn exists(state: &AppState, name: &str) -> bool {
    !name.is_empty() && state.journeys.get(name).await.is_ok()
}

/// `POST /console/journeys/check`: checks the draft as saving would, and draws it.
pub async fn check(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(draft): axum::Form<Draft>,
) -> Response {
    if let Some(r) = form_guard(&state, &visit, &headers, &draft.csrf, "console.journeys.check").await {
        return r;
    }
    let existing = exists(&state, &draft.name).await;
    let def = match parse(&draft) {
        Ok(d) => d,
        Err(m) => return editor(&visit, &draft, m, StatusCode::UNPROCESSABLE_ENTITY, existing),
    };
    let (verdict, status) = match check_def(&state, &draft.name, &def).await {
        Ok(()) => (
            html! { p.alert.ok role="status" { "This journey is valid: save it to start it." } },
            StatusCode::OK,
        ),
        Err(m) => (m, StatusCode::UNPROCESSABLE_ENTITY),
    };
    let counts = if existing {
        state
            .journeys
            .step_counts(&draft.name)
            .await
            .map(|c| tallies(&c))
            .unwrap_or_default()
    } else {
        HashMap::new()
    };
    let result = html! {
        (verdict)
        div.graph-wrap { (journey_graph::draw(&draft.name, &def, &counts)) }
    };
    editor(&visit, &draft, result, status, existing)
}

/// `POST /console/journeys/save`: a new version; on an error the draft stays in the editor.
pub async fn save(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(draft): axum::Form<Draft>,
) -> Response {
    if let Some(r) = form_guard(&state, &visit, &headers, &draft.csrf, "console.journeys.save").await {
        return r;
    }
    let existing = exists(&state, &draft.name).await;
    let target = format!("journey:{}", draft.name);
    let refused = |result: Markup| editor(&visit, &draft, result, StatusCode::UNPROCESSABLE_ENTITY, existing);
    let def = match parse(&draft) {
        Ok(d) => d,
        Err(m) => return refused(m),
    };
    if let Err(m) = check_def(&state, &draft.name, &def).await {
        audit(
            &state,
            Some(&visit.caller),
            "console.journeys.save",
            StatusCode::UNPROCESSABLE_ENTITY,
            &target,
            "",
        )
        .await;
        return refused(m);
    }
    match state
        .journeys
        .save(&draft.name, def, state.engine.clock().now())
        .await
    {
        Ok(_) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.journeys.save",
                StatusCode::SEE_OTHER,
                &target,
                "",
            )
            .await;
            Redirect::to(&format!("/console/journeys/{}?saved=1", path_part(&draft.name))).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "console: journey not saved");
            refused(layout::error(
                "The journey could not be saved just now: try again.",
            ))
        }
    }
}

#[derive(serde::Deserialize)]
pub struct DeleteForm {
    csrf: String,
    name: String,
}

/// `POST /console/journeys/delete`: the journey and its running instances end.
pub async fn delete(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    axum::Form(form): axum::Form<DeleteForm>,
) -> Response {
    if let Some(r) = form_guard(&state, &visit, &headers, &form.csrf, "console.journeys.delete").await {
        return r;
    }
    let target = format!("journey:{}", form.name);
    match state.journeys.delete(&form.name).await {
        Ok(()) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.journeys.delete",
                StatusCode::SEE_OTHER,
                &target,
                "",
            )
            .await;
            Redirect::to(&format!("/console/journeys?deleted={}", path_part(&form.name))).into_response()
        }
        Err(JourneyError::NotFound(_)) => layout::not_found(
            &visit,
            Section::Journeys,
            "Journey",
            &format!("No journey is named {:?}.", form.name),
        ),
        Err(e) => layout::unavailable(&visit, Section::Journeys, "Journey", &e),
    }
}
