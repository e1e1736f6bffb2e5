//! The console's page chrome: the document, the navigation a role may use, the headers every
//! page is sent with (a strict Content-Security-Policy: styles and the one script come from
//! `/console/assets`, nothing inline, nothing from elsewhere), and the shared pieces (notices,
//! refusals, badges, progress bars, times).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::Visit;
use crate::auth::{Administer, Marketing, Privacy, ReadPersonal, Reports};

/// The console's sections, in the navigation's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    Profiles,
    Segments,
    Templates,
    Journeys,
    Broadcasts,
    Experiments,
    Models,
    Privacy,
    Audit,
    Keys,
}

impl Section {
    const ALL: [Section; 11] = [
        Section::Overview,
        Section::Profiles,
        Section::Segments,
        Section::Templates,
        Section::Journeys,
        Section::Broadcasts,
        Section::Experiments,
        Section::Models,
        Section::Privacy,
        Section::Audit,
        Section::Keys,
    ];

    fn label(self) -> &'static str {
        match self {
            Section::Overview => "Overview",
            Section::Profiles => "Profiles",
            Section::Segments => "Segments",
            Section::Templates => "Templates",
            Section::Journeys => "Journeys",
            Section::Broadcasts => "Broadcasts",
            Section::Experiments => "Experiments",
            Section::Models => "Models",
            Section::Privacy => "Privacy",
            Section::Audit => "Audit log",
            Section::Keys => "API keys",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Section::Overview => "/console",
            Section::Profiles => "/console/profiles",
            Section::Segments => "/console/segments",
            Section::Templates => "/console/templates",
            Section::Journeys => "/console/journeys",
            Section::Broadcasts => "/console/broadcasts",
            Section::Experiments => "/console/experiments",
            Section::Models => "/console/models",
            Section::Privacy => "/console/privacy",
            Section::Audit => "/console/audit",
            Section::Keys => "/console/keys",
        }
    }

    /// Whether the section is shown to the visitor's role (its pages check again).
    fn open_to(self, visit: &Visit) -> bool {
        match self {
            Section::Overview
            | Section::Segments
            | Section::Templates
            | Section::Journeys
            | Section::Broadcasts
            | Section::Experiments
            | Section::Models => visit.may::<Reports>(),
            Section::Profiles => visit.may::<ReadPersonal>(),
            Section::Privacy | Section::Audit => visit.may::<Privacy>(),
            Section::Keys => visit.may::<Administer>(),
        }
    }
}

/// The content-security policy of console pages: same-origin styles, script, images, fetches
/// and frames (the e-mail previews); `data:` images (charts and catalogue pictures); no inline
/// code; not framed.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

fn with_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    res
}

fn document(title: &str, body: Markup, refresh: Option<u32>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                title { (title) " · missive" }
                link rel="stylesheet" href=(super::assets::STYLESHEET);
                script src=(super::assets::SCRIPT) defer {}
            }
            body { (body) }
        }
    }
}

/// A console page for a logged-in visitor: navigation, the page's title and its body.
pub(crate) fn page(visit: &Visit, section: Section, title: &str, body: Markup) -> Response {
    page_with(visit, section, title, body, StatusCode::OK, None)
}

/// [`page`] with a status, and a refresh every `refresh` seconds (progress that moves).
pub(crate) fn page_with(
    visit: &Visit,
    section: Section,
    title: &str,
    body: Markup,
    status: StatusCode,
    refresh: Option<u32>,
) -> Response {
    let chrome = html! {
        a.skip href="#main" { "Skip to content" }
        div.shell {
            nav.sidebar aria-label="Console" {
                a.brand href="/console" { span.logo aria-hidden="true" { "m" } "missive" }
                ul {
                    @for s in Section::ALL {
                        @if s.open_to(visit) {
                            li {
                                a href=(s.href()) aria-current=[(s == section).then_some("page")] { (s.label()) }
                            }
                        }
                    }
                }
                div.who {
                    span.role { (role_label(visit.role())) }
                    code.key title="The key this session logged in with" { (visit.caller.key_id.as_str()) }
                    form method="post" action="/console/logout" {
                        input type="hidden" name="csrf" value=(visit.csrf);
                        button.link type="submit" { "Log out" }
                    }
                }
            }
            main #main {
                h1 { (title) }
                (body)
            }
        }
    };
    with_headers((status, Html(document(title, chrome, refresh).into_string())).into_response())
}

/// A page without navigation (the login, and messages before one).
pub(crate) fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let body = html! { main #main.bare { (body) } };
    with_headers((status, Html(document(title, body, None).into_string())).into_response())
}

/// A page that only says something (a refused form, an expired login form).
pub(crate) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    bare(
        status,
        title,
        html! {
            div.login {
                h1 { (title) }
                p.alert.error role="alert" { (text) }
                p { a href="/console" { "Back to the console" } }
            }
        },
    )
}

/// What a role may not see, said plainly, with the navigation still there.
pub(crate) fn refused(visit: &Visit, why: &str) -> Response {
    page_with(
        visit,
        Section::Overview,
        "Not for your role",
        html! { p.alert.error role="alert" { (why) } },
        StatusCode::FORBIDDEN,
        None,
    )
}

/// A form that finds a person by any of their keys (e-mail, user id, anonymous id, profile
/// id), sent to `action` as `q`.
pub(crate) fn person_search(action: &str, label: &str, q: &str, note: &str) -> Markup {
    html! {
        form.card method="get" action=(action) role="search" {
            label for="q" { (label) }
            div.row {
                div { input #q name="q" type="search" value=(q) placeholder="E-mail, user id, anonymous id or prf_…" autocomplete="off" required; }
                div { button.primary type="submit" { "Find" } }
            }
            p.note { (note) }
        }
    }
}

/// A page saying what was not found (404), with the navigation still there.
pub(crate) fn not_found(visit: &Visit, section: Section, title: &str, what: &str) -> Response {
    page_with(visit, section, title, error(what), StatusCode::NOT_FOUND, None)
}

/// The store could not answer: a retry usually works.
pub(crate) fn unavailable(
    visit: &Visit,
    section: Section,
    title: &str,
    error: &dyn std::fmt::Display,
) -> Response {
    tracing::error!(error = %error, page = title, "console page failed");
    page_with(
        visit,
        section,
        title,
        html! { p.alert.error role="alert" { "This page could not be read just now. Try again in a moment." } },
        StatusCode::SERVICE_UNAVAILABLE,
        None,
    )
}

pub(crate) fn role_label(role: missive_store::Role) -> &'static str {
    match role {
        missive_store::Role::Admin => "Admin",
        missive_store::Role::Marketer => "Marketer",
        missive_store::Role::Analyst => "Analyst",
        missive_store::Role::PrivacyOfficer => "Privacy officer",
        missive_store::Role::Write => "Write key",
        missive_store::Role::ServerWrite => "Server write key",
    }
}

/// A notice after a change (`role="status"`, read out by screen readers).
pub(crate) fn notice(text: &str) -> Markup {
    html! { p.alert.ok role="status" { (text) } }
}

/// An error at the top of a form.
pub(crate) fn error(text: &str) -> Markup {
    html! { p.alert.error role="alert" { (text) } }
}

/// A state as a coloured badge; `tone` is one of `ok`, `warn`, `bad`, `idle`.
pub(crate) fn badge(text: &str, tone: &str) -> Markup {
    html! { span class={ "badge " (tone) } { (text) } }
}

/// A progress bar with its text (`<progress>` is announced with its value).
pub(crate) fn progress(done: u64, total: u64, label: &str) -> Markup {
    let pct = if total == 0 {
        0.0
    } else {
        done as f64 / total as f64 * 100.0
    };
    html! {
        div.progress {
            span.what { (label) }
            progress value=(done) max=(total.max(1)) aria-label=(label) {}
            span { (group(done)) " of " (group(total)) " (" (format!("{pct:.0}")) " %)" }
        }
    }
}

/// A time in UTC, short, with the full instant as its machine-readable value.
pub(crate) fn time(at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M UTC")) } }
}

/// A count with thousands separators: `12,345`.
pub(crate) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Money in minor units as major units with separators: `12,345.67`.
pub(crate) fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02}", group(m / 100), m % 100)
}

/// A name as one segment of a link's path: everything but letters, digits and `-_.~`
/// percent-encoded (names are free text: `Black Friday / VIP`).
pub(crate) fn path_part(name: &str) -> String {
    const PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(name, PART).to_string()
}

/// Whether the visitor may change marketing objects (segments, broadcasts).
pub(crate) fn may_market(visit: &Visit) -> bool {
    visit.may::<Marketing>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        for (n, s) in [(0, "0"), (999, "999"), (1000, "1,000"), (1234567, "1,234,567")] {
            assert_eq!(group(n), s);
        }
        assert_eq!(money(123456789), "1,234,567.89");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(money(100), "1.00");
    }

    #[test]
    fn names_in_links_are_encoded_as_one_path_segment() {
        assert_eq!(path_part("vip-2026_a.b~c"), "vip-2026_a.b~c");
        assert_eq!(path_part("Black Friday / VIP?"), "Black%20Friday%20%2F%20VIP%3F");
        assert_eq!(path_part("été"), "%C3%A9t%C3%A9");
    }
}
