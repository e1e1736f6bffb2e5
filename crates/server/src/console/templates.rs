//! Templates: the list, an editor (subject, preheader, layout, body, text part, class), and a
//! per-recipient preview: the e-mail rendered for a real profile at desktop and mobile widths,
//! each in a sandboxed frame, with the data it used, the block each slot got and the lint
//! findings.
//!
//! The rendered e-mail is served alone from `/console/templates/render/{name}` with its own
//! policy (inline styles allowed, no script, images from anywhere as a mail client shows
//! them), framed only by the console and sandboxed without scripts or same-origin access, so
//! that a template's markup can never act on the console.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use missive_content::lint::Severity;
use missive_content::template::{Layout, TemplateSource};
use missive_sending::content::{ContentServiceError, PreviewOptions, StoredTemplate};

use super::layout::{self, Section, path_part, time};
use super::session::{Visit, audit};
use crate::AppState;
use crate::auth::{Marketing, ReadPersonal, Reports};

/// The longest body the editor takes (Gmail clips a message at 102 KB; a source far larger is
/// a mistake).
const MAX_BODY: usize = 256 * 1024;

#[derive(serde::Deserialize)]
pub struct ListQuery {
    saved: Option<String>,
}

/// `GET /console/templates`.
pub async fn list(State(state): State<AppState>, visit: Visit, Query(q): Query<ListQuery>) -> Response {
    if !visit.may::<Reports>() {
        return visit
            .refuse(&state, "console.templates", "Your role does not read templates.")
            .await;
    }
    let templates = match state.content.list_templates().await {
        Ok(t) => t,
        Err(e) => return layout::unavailable(&visit, Section::Templates, "Templates", &e),
    };
    let body = html! {
        @if let Some(n) = &q.saved { (layout::notice(&format!("Template {n} is saved."))) }
        @if layout::may_market(&visit) {
            div.toolbar { a.button.primary href="/console/templates/new" { "New template" } }
        }
        @if templates.is_empty() { p.empty { "No templates yet." } } @else {
            table {
                thead { tr { th scope="col" { "Template" } th scope="col" { "Subject" } th.num scope="col" { "Version" } th scope="col" { "Updated" } } }
                tbody {
                    @for t in &templates {
                        tr {
                            th scope="row" { a href={ "/console/templates/edit/" (path_part(&t.name)) } { (t.name) } }
                            td { (t.body.get("subject").and_then(|s| s.as_str()).unwrap_or("")) }
                            td.num { (t.version) }
                            td { (time(t.updated_at)) }
                        }
                    }
                }
            }
        }
    };
    layout::page(&visit, Section::Templates, "Templates", body)
}

/// The editor's fields.
#[derive(Default, serde::Deserialize)]
pub struct Draft {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    preheader: String,
    #[serde(default)]
    layout: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    text: String,
    /// `on` when the box is ticked (a form sends nothing otherwise).
    #[serde(default)]
    transactional: Option<String>,
}

impl Draft {
    fn from_stored(name: &str, t: &StoredTemplate) -> Self {
        Draft {
            name: name.to_owned(),
            subject: t.source.subject.clone(),
            preheader: t.source.preheader.clone(),
            layout: match t.source.layout {
                Layout::Mjml => "mjml".into(),
                Layout::Html => "html".into(),
            },
            body: t.source.body.clone(),
            text: t.source.text.clone().unwrap_or_default(),
            transactional: (!t.marketing).then(|| "on".into()),
            ..Draft::default()
        }
    }

    fn to_stored(&self) -> Result<StoredTemplate, String> {
        if self.body.len() > MAX_BODY {
            return Err(format!(
                "The body is {} KB; at most {} KB are taken (Gmail clips a message past 102 KB).",
                self.body.len() / 1024,
                MAX_BODY / 1024
            ));
        }
        let layout = match self.layout.as_str() {
            "" | "mjml" => Layout::Mjml,
            "html" => Layout::Html,
            _ => return Err("The layout is MJML or HTML.".into()),
        };
        Ok(StoredTemplate {
            source: TemplateSource {
                subject: self.subject.clone(),
                preheader: self.preheader.clone(),
                layout,
                body: self.body.clone(),
                text: (!self.text.trim().is_empty()).then(|| self.text.clone()),
            },
            marketing: self.transactional.is_none(),
        })
    }
}

/// `GET /console/templates/new`.
pub async fn new(State(state): State<AppState>, visit: Visit) -> Response {
    if !visit.may::<Marketing>() {
        return visit
            .refuse(
                &state,
                "console.templates",
                "Your role does not change templates.",
            )
            .await;
    }
    let draft = Draft {
        layout: "mjml".into(),
        body: "<mjml>\n  <mj-body>\n    <mj-section>\n      <mj-column>\n        <mj-text>Hello {{ customer.first_name | default: \"there\" }}</mj-text>\n      </mj-column>\n    </mj-section>\n  </mj-body>\n</mjml>\n".into(),
        ..Draft::default()
    };
    editor(&visit, &draft, html! {}, StatusCode::OK, false)
}

#[derive(serde::Deserialize)]
pub struct EditQuery {
    /// Preview for this profile (an e-mail, user id or profile id).
    profile: Option<String>,
}

/// `GET /console/templates/edit/{name}?profile=`: the editor, and the preview for a person.
pub async fn edit(
    State(state): State<AppState>,
    visit: Visit,
    Path(name): Path<String>,
    Query(q): Query<EditQuery>,
) -> Response {
    if !visit.may::<Reports>() {
        return visit
            .refuse(&state, "console.templates", "Your role does not read templates.")
            .await;
    }
    let stored = match state.content.template(&name).await {
        Ok((_, t)) => t,
        Err(ContentServiceError::NotFound { .. }) => {
            return layout::not_found(
                &visit,
                Section::Templates,
                "Template",
                &format!("No template is named {name:?}."),
            );
        }
        Err(e) => return layout::unavailable(&visit, Section::Templates, "Template", &e),
    };
    let draft = Draft::from_stored(&name, &stored);
    let who = q.profile.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let preview = match who {
        Some(key) if visit.may::<ReadPersonal>() => preview_panel(&state, &visit, &name, key).await,
        Some(_) => layout::error("Previews for a person show personal data, which your role does not read."),
        None => html! {},
    };
    let matrix = matrix_panel(&state, &name).await;
    editor(&visit, &draft, html! { (matrix) (preview) }, StatusCode::OK, true)
}

/// Each slot's decision matrix: which block the members of each saved segment get now.
async fn matrix_panel(state: &AppState, name: &str) -> Markup {
    let compiled = match state.content.compiled_template(name).await {
        Ok((_, c, _)) => c,
        // The editor shows why it does not compile when it is saved; nothing to decide here.
        Err(_) => return html! {},
    };
    if compiled.slots.is_empty() {
        return html! {};
    }
    let now = state.engine.clock().now();
    let mut slots = Vec::with_capacity(compiled.slots.len());
    for slot in &compiled.slots {
        match state.content.block_matrix(slot, now).await {
            Ok(rows) => slots.push((slot.clone(), rows)),
            Err(e) => {
                tracing::error!(error = %e, "console: block matrix unreadable");
                return layout::error("The slots' decisions could not be read just now.");
            }
        }
    }
    html! {
        section.card {
            h2 { "Who gets which block" }
            @for (slot, rows) in &slots {
                @let (fallback, targeted): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.segment.is_none());
                @let everyone = fallback.first().and_then(|r| r.block.clone());
                @let shown: Vec<_> = targeted.iter().filter(|r| r.block != everyone || !r.unless_matching.is_empty()).collect();
                div.table-wrap { table {
                    caption { "Slot " code { (slot) } }
                    thead { tr { th scope="col" { "Members of" } th scope="col" { "Get" } th scope="col" { "Unless they match" } } }
                    tbody {
                        @for r in &shown {
                            tr {
                                th scope="row" { (r.segment.as_deref().unwrap_or("")) }
                                td { (r.block.as_deref().unwrap_or("— nothing")) }
                                td { (r.unless_matching.join(", ")) }
                            }
                        }
                        @for r in &fallback {
                            tr.fallback {
                                th scope="row" { "Everyone else" }
                                td { (r.block.as_deref().unwrap_or("— nothing: the slot stays empty")) }
                                td { (r.unless_matching.join(", ")) }
                            }
                        }
                    }
                } }
                @if targeted.len() > shown.len() {
                    p.note { (targeted.len() - shown.len()) " other segment(s) get what everyone else gets." }
                }
            }
            p.note { "By priority among the blocks active now, assuming the data each block requires is there; a person in several segments gets the highest-priority block. A preview for a person shows what they get." }
        }
    }
}

async fn preview_panel(state: &AppState, visit: &Visit, name: &str, key: &str) -> Markup {
    let preview = match state
        .content
        .preview(&state.engine, name, key, PreviewOptions::default())
        .await
    {
        Ok(p) => p,
        Err(ContentServiceError::ProfileNotFound(_)) => {
            return layout::error("No profile has that e-mail address, user id, anonymous id or profile id.");
        }
        Err(e @ (ContentServiceError::Store(_) | ContentServiceError::Engine(_))) => {
            tracing::error!(error = %e, "console: preview failed");
            return layout::error("The preview could not be rendered just now: try again.");
        }
        Err(e) => return layout::error(&format!("The template does not render: {e}.")),
    };
    audit(
        state,
        Some(&visit.caller),
        "console.templates.preview",
        StatusCode::OK,
        &format!("profile:{}", preview.profile_id),
        &format!("template:{name}"),
    )
    .await;
    let src = format!(
        "/console/templates/render/{}?profile={}",
        path_part(name),
        path_part(&preview.profile_id)
    );
    html! {
        h2 { "Preview for " a href={ "/console/profiles/" (preview.profile_id) } { code { (preview.profile_id) } } }
        dl.facts {
            dt { "Subject" } dd { strong { (preview.email.subject) } }
            dt { "Size" } dd { (preview.email.html.len() / 1024) " KB of HTML" @if preview.email.html.len() > 102 * 1024 { " " (layout::badge("Gmail clips it", "bad")) } }
        }
        div.previews {
            figure {
                figcaption { "Desktop (640 px)" }
                iframe.desktop src=(src) sandbox="" title="The e-mail at desktop width" loading="lazy" {}
            }
            figure {
                figcaption { "Mobile (375 px)" }
                iframe.mobile src=(src) sandbox="" title="The e-mail at mobile width" loading="lazy" {}
            }
        }
        div.grid {
            section.card {
                h2 { "Lint" }
                @if preview.lint.is_empty() { p { (layout::badge("no findings", "ok")) } }
                ul { @for l in &preview.lint {
                    li { (match l.severity { Severity::Error => layout::badge("error", "bad"), Severity::Warning => layout::badge("warning", "warn") }) " " code { (l.code) } " " (l.message) }
                } }
            }
            section.card {
                h2 { "Data used" }
                @if preview.data_used.is_empty() { p.empty { "The template reads no data." } }
                dl.facts { @for (k, v) in &preview.data_used { dt { code { (k) } } dd { code { (v.to_string()) } } } }
                @if !preview.email.blocks.is_empty() {
                    h2 { "Blocks chosen" }
                    dl.facts { @for (slot, block) in &preview.email.blocks { dt { (slot) } dd { (block.as_deref().unwrap_or("— nothing matched")) } } }
                }
            }
        }
    }
}

fn editor(visit: &Visit, draft: &Draft, result: Markup, status: StatusCode, existing: bool) -> Response {
    let may_change = layout::may_market(visit);
    let body = html! {
        form.stack method="post" action="/console/templates/save" {
            input type="hidden" name="csrf" value=(visit.csrf);
            div.row {
                div {
                    label for="name" { "Name" }
                    input #name name="name" type="text" value=(draft.name) maxlength="64" required readonly[existing];
                }
                div {
                    label for="layout" { "Layout" }
                    select #layout name="layout" {
                        option value="mjml" selected[draft.layout != "html"] { "MJML (responsive)" }
                        option value="html" selected[draft.layout == "html"] { "HTML" }
                    }
                }
            }
            div {
                label for="subject" { "Subject " span.hint { "(Liquid: {{ customer.first_name }})" } }
                input #subject name="subject" type="text" value=(draft.subject) maxlength="998" required;
            }
            div {
                label for="preheader" { "Preheader " span.hint { "(the line inboxes show after the subject)" } }
                input #preheader name="preheader" type="text" value=(draft.preheader) maxlength="500";
            }
            div {
                label for="body" { "Body " span.hint { "(MJML or HTML with Liquid; blocks with {% block 'slot' %}; see docs/content.md)" } }
                textarea.code.tall #body name="body" spellcheck="false" required { (draft.body) }
            }
            div {
                label for="text" { "Plain-text part " span.hint { "(empty: derived from the HTML)" } }
                textarea.code #text name="text" spellcheck="false" { (draft.text) }
            }
            div {
                input #transactional name="transactional" type="checkbox" checked[draft.transactional.is_some()];
                label.inline for="transactional" { " Transactional (a receipt, a password reset): sent without marketing consent, no unsubscribe link" }
            }
            @if may_change {
                div.actions {
                    button.primary type="submit" { "Save" }
                    a href="/console/templates" { "Back to templates" }
                }
            }
        }
        @if existing {
            form.card method="get" action={ "/console/templates/edit/" (path_part(&draft.name)) "#preview" } {
                label for="profile" { "Preview for a person " span.hint { "(e-mail, user id or profile id)" } }
                div.row {
                    div { input #profile name="profile" type="search" required; }
                    div { button type="submit" { "Preview" } }
                    div { button type="submit" formaction={ "/console/templates/audit/" (path_part(&draft.name)) } { "Rendering audit" } }
                }
                p.note { "The rendering audit adds screenshots (phone, desktop, dark mode), the rules of Outlook, Gmail and dark mode, and a check of every link." }
            }
        }
        section #preview aria-live="polite" { (result) }
    };
    let title = if draft.name.is_empty() {
        "New template".to_owned()
    } else {
        format!("Template {}", draft.name)
    };
    layout::page_with(visit, Section::Templates, &title, body, status, None)
}

/// `POST /console/templates/save`: compiles and saves; on an error the draft stays.
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
            "console.templates.save",
            "Your role does not change templates.",
        )
        .await
    {
        return r;
    }
    let existing = state.content.template(&draft.name).await.is_ok();
    let stored = match draft.to_stored() {
        Ok(s) => s,
        Err(why) => {
            return editor(
                &visit,
                &draft,
                layout::error(&why),
                StatusCode::UNPROCESSABLE_ENTITY,
                existing,
            );
        }
    };
    let now = state.engine.clock().now();
    let target = format!("template:{}", draft.name);
    match state.content.save_template(draft.name.trim(), stored, now).await {
        Ok(_) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.templates.save",
                StatusCode::SEE_OTHER,
                &target,
                "",
            )
            .await;
            Redirect::to(&format!(
                "/console/templates?saved={}",
                path_part(draft.name.trim())
            ))
            .into_response()
        }
        Err(e @ (ContentServiceError::Store(_) | ContentServiceError::Engine(_))) => {
            tracing::error!(error = %e, "console: template not saved");
            editor(
                &visit,
                &draft,
                layout::error("The template could not be saved just now: try again."),
                StatusCode::SERVICE_UNAVAILABLE,
                existing,
            )
        }
        Err(e) => editor(
            &visit,
            &draft,
            layout::error(&format!("Not saved: {e}.")),
            StatusCode::UNPROCESSABLE_ENTITY,
            existing,
        ),
    }
}

#[derive(serde::Deserialize)]
pub struct RenderQuery {
    profile: String,
}

/// The rendered HTML alone, for the preview's frames: its own policy (inline styles, images,
/// no script, framed by the console only).
pub async fn render(
    State(state): State<AppState>,
    visit: Visit,
    Path(name): Path<String>,
    Query(q): Query<RenderQuery>,
) -> Response {
    if !visit.may::<ReadPersonal>() {
        return visit
            .refuse(
                &state,
                "console.templates.render",
                "Previews for a person show personal data.",
            )
            .await;
    }
    let preview = match state
        .content
        .preview(&state.engine, &name, &q.profile, PreviewOptions::default())
        .await
    {
        Ok(p) => p,
        Err(e @ (ContentServiceError::Store(_) | ContentServiceError::Engine(_))) => {
            tracing::error!(error = %e, "console: preview frame failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "The preview could not be rendered just now: try again.",
            )
                .into_response();
        }
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("The template does not render: {e}."),
            )
                .into_response();
        }
    };
    // The frame shows a person's data: audited like the panel around it.
    audit(
        &state,
        Some(&visit.caller),
        "console.templates.render",
        StatusCode::OK,
        &format!("profile:{}", preview.profile_id),
        &format!("template:{name}"),
    )
    .await;
    let html = preview.email.html;
    let mut res = (StatusCode::OK, Html(html)).into_response();
    let h = res.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; font-src https: data:; \
             frame-ancestors 'self'; form-action 'none'; sandbox",
        ),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_becomes_a_stored_template_or_says_what_is_wrong() {
        let d = Draft {
            name: "news".into(),
            subject: "Hi".into(),
            layout: "html".into(),
            body: "<p>x</p>".into(),
            transactional: Some("on".into()),
            ..Draft::default()
        };
        let t = d.to_stored().unwrap();
        assert_eq!(t.source.layout, Layout::Html);
        assert!(!t.marketing && t.source.text.is_none());
        let back = Draft::from_stored("news", &t);
        assert_eq!(
            (back.layout.as_str(), back.transactional.is_some()),
            ("html", true)
        );
        let big = Draft {
            body: "x".repeat(MAX_BODY + 1),
            ..Draft::default()
        };
        assert!(big.to_stored().unwrap_err().contains("at most 256 KB"));
        let odd = Draft {
            layout: "amp".into(),
            ..Draft::default()
        };
        assert!(odd.to_stored().is_err());
    }
}
