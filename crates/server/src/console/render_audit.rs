//! The rendering audit of a template for a real recipient: `GET
//! /console/templates/audit/{name}?profile=` renders it for the person, then shows side by
//! side the screenshots headless Chromium takes on the server (phone, desktop, dark mode;
//! when Chromium is installed, else says so), the rules of the clients that break e-mails
//! most (Outlook desktop, Gmail, dark mode; `missive_content::clients`), the template's lint,
//! and every link with the status of its target (missive's own links are not followed).
//!
//! It reads a person's data: roles that read profiles only, and audited.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use maud::{Markup, html};
use missive_content::clients::{Client, ClientIssue, check_clients, links};
use missive_content::lint::{GMAIL_CLIP_BYTES, Severity};
use missive_sending::content::{ContentServiceError, PreviewOptions};

use super::layout::{self, Section, path_part};
use super::session::{Visit, audit};
use crate::AppState;
use crate::auth::ReadPersonal;
use crate::link_check::{self, Outcome};
use crate::screenshots::{Chromium, Shot};

#[derive(serde::Deserialize)]
pub struct AuditQuery {
    profile: Option<String>,
}

fn person_form(name: &str, profile: &str) -> Markup {
    html! {
        form.card method="get" action={ "/console/templates/audit/" (path_part(name)) } {
            label for="profile" { "Audit for a person " span.hint { "(e-mail, user id or profile id: their data fills the template)" } }
            div.row {
                div { input #profile name="profile" type="search" value=(profile) required; }
                div { button.primary type="submit" { "Audit" } }
            }
            p.note { "Renders the e-mail for them, takes screenshots, checks it against the clients that break e-mails most, and asks every link's target for its status." }
        }
    }
}

/// `GET /console/templates/audit/{name}?profile=`.
pub async fn page(
    State(state): State<AppState>,
    visit: Visit,
    Path(name): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Response {
    if !visit.may::<ReadPersonal>() {
        return visit
            .refuse(
                &state,
                "console.templates.audit",
                "The rendering audit fills the template with a person's data, which your role does not read.",
            )
            .await;
    }
    let title = format!("Rendering audit: {name}");
    let profile = q.profile.unwrap_or_default();
    let profile = profile.trim();
    if profile.is_empty() {
        return layout::page(&visit, Section::Templates, &title, person_form(&name, ""));
    }
    let preview = match state
        .content
        .preview(&state.engine, &name, profile, PreviewOptions::default())
        .await
    {
        Ok(p) => p,
        Err(e @ (ContentServiceError::Store(_) | ContentServiceError::Engine(_))) => {
            return layout::unavailable(&visit, Section::Templates, &title, &e);
        }
        Err(e) => {
            let body =
                html! { (person_form(&name, profile)) (layout::error(&format!("Nothing to audit: {e}."))) };
            return layout::page_with(
                &visit,
                Section::Templates,
                &title,
                body,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
            );
        }
    };
    audit(
        &state,
        Some(&visit.caller),
        "console.templates.audit",
        StatusCode::OK,
        &format!("profile:{}", preview.profile_id),
        &format!("template:{name}"),
    )
    .await;
    let email_html = preview.email.html.clone();
    let issues = check_clients(&email_html);
    let public = state.content.config().public_url.clone();
    let found = links(&email_html, &[public.as_str()]);
    let checked = link_check::check(&state.webhooks.http_client(), state.webhooks.guard(), found).await;
    let shots = screenshots(&email_html).await;
    let size = email_html.len();
    let body = html! {
        (person_form(&name, profile))
        p.note {
            "For profile " a href={ "/console/profiles/" (preview.profile_id) } { code { (preview.profile_id) } }
            " · version " (preview.version) " · subject “" (preview.email.subject) "” · HTML "
            (format!("{:.1}", size as f64 / 1024.0)) " KB of Gmail's 102 KB"
            @if size > GMAIL_CLIP_BYTES { " " (layout::badge("clipped", "bad")) }
        }
        section.card {
            h2 { "Screenshots" }
            (shots)
        }
        section.card {
            h2 { "Clients" }
            (client_findings(&issues))
        }
        @if !preview.lint.is_empty() {
            section.card {
                h2 { "Lint" }
                ul.findings { @for i in &preview.lint {
                    li { (layout::badge(if i.severity == Severity::Error { "error" } else { "warning" }, if i.severity == Severity::Error { "bad" } else { "warn" })) " " code { (i.code) } " " (i.message) }
                } }
            }
        }
        section.card {
            h2 { "Links (" (checked.len()) ")" }
            (links_table(&checked))
        }
    };
    layout::page(&visit, Section::Templates, &title, body)
}

async fn screenshots(email_html: &str) -> Markup {
    let Some(chromium) = Chromium::find() else {
        return html! {
            p.alert.warn role="status" { "No screenshots: Chromium is not installed on the server. Install Debian's chromium package (or set MISSIVE_CHROMIUM to a Chrome or Chromium binary) and reload." }
        };
    };
    let mut figures = Vec::new();
    for shot in Shot::ALL {
        let taken = chromium.screenshot(email_html, shot).await;
        figures.push((shot, taken));
    }
    html! {
        div.shots {
            @for (shot, taken) in &figures {
                figure class={ "shot " (if *shot == Shot::Desktop { "wide" } else { "narrow" }) } {
                    @match taken {
                        Ok(png) => {
                            img src={ "data:image/png;base64," (base64::engine::general_purpose::STANDARD.encode(png)) }
                                alt={ "The e-mail as " (shot.label()) " shows it" }
                                width=(shot.size().0);
                        }
                        Err(e) => { p.alert.error role="alert" { "No screenshot: " (e) } }
                    }
                    figcaption { (shot.label()) }
                }
            }
        }
        p.note { "Taken by " code { (chromium.path().display()) } " on the server, with no network: remote images show as missing, as in a client that blocks images. Dark mode is Chromium's forced darkening, as Gmail's and Outlook's apps darken e-mails." }
    }
}

fn client_findings(issues: &[ClientIssue]) -> Markup {
    let clients = [Client::OutlookDesktop, Client::Gmail, Client::DarkMode];
    html! {
        @for c in clients {
            @let mine: Vec<&ClientIssue> = issues.iter().filter(|i| i.client == c).collect();
            h3 { (c.label()) " " @if mine.is_empty() { (layout::badge("no problem found", "ok")) } @else { (layout::badge(&format!("{} to look at", mine.len()), "warn")) } }
            @if !mine.is_empty() {
                ul.findings { @for i in mine { li { code { (i.code) } " " (i.message) } } }
            }
        }
    }
}

fn links_table(checked: &[(missive_content::clients::Link, Outcome)]) -> Markup {
    html! {
        @if checked.is_empty() { p.empty { "The e-mail has no links." } } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Link" } th scope="col" { "Words on it" } th scope="col" { "Target" } } }
                tbody {
                    @for (link, outcome) in checked {
                        tr {
                            td { code.url { (link.href) } }
                            td { (link.text) }
                            td {
                                @match outcome {
                                    Outcome::Answered { status, location } => {
                                        (layout::badge(&status.to_string(), outcome.tone()))
                                        @if let Some(to) = location { " → " code.url { (to) } }
                                    }
                                    Outcome::NotChecked(why) => { span.hint { (why) } }
                                    Outcome::Refused => { (layout::badge("refused", "bad")) " an internal address (allow it with [webhooks] allow_internal)" }
                                    Outcome::Failed(why) => { (layout::badge("no answer", "bad")) " " (why) }
                                }
                            }
                        }
                    }
                }
            } }
        }
    }
}
