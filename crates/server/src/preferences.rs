//! The preference centre: the page a person reaches from the signed, expiring link in every
//! e-mail (`/preferences/{token}`, see [`missive_delivery::LinkSigner::preferences_url`]).
//!
//! It shows in plain words what is held about them and why, and lets them change consent per
//! purpose, the topics they receive and how often, unsubscribe from everything, and download
//! their data. Plain HTML forms with labels and fieldsets: no JavaScript. Each form carries a
//! value bound to the link ([`missive_delivery::LinkSigner::form_token`]) and cross-site posts
//! are refused. Changes go through the pipeline as `identify` messages with the evidence of
//! consent (time, source `preference-centre`, policy version, IP address, user agent), and every
//! view, download and change is written to the audit log as `link:preference-centre`.

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use missive_core::preferences::{FREQUENCY_TRAIT, TOPICS_DECLINED_TRAIT, declined_topics};
use missive_core::{Frequency, Profile, ProfileId, Purpose, TraitParty};
use missive_delivery::TokenError;
use missive_engine::privacy::ConsentUpdate;
use missive_engine::profiles::ProfileKey;
use missive_store::AuditEntry;
use serde_json::Value;

use crate::AppState;
use crate::console::cross_site;
use crate::html::escape;
use crate::html::html;

use axum::Router;
use axum::routing::get;

/// The preference centre (signed links, no key).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/preferences/{token}", get(page).post(update))
        .route("/preferences/{token}/export", get(export))
}

const SOURCE: &str = "preference-centre";

/// The person behind a valid link, or the page saying why there is none.
async fn subject(state: &AppState, token: &str) -> Result<Profile, Response> {
    let Some(sender) = &state.sender else {
        return Err(gone(StatusCode::NOT_FOUND, "This link is not valid."));
    };

    let now = state.engine.clock().now().timestamp();
    let link = match sender.links().verify_preferences(token, now) {
        Ok(link) => link,
        Err(TokenError::Expired) => {
            return Err(gone(
                StatusCode::GONE,
                "This link has expired. Use the link at the bottom of a more recent e-mail from us.",
            ));
        }
        Err(_) => return Err(gone(StatusCode::NOT_FOUND, "This link is not valid.")),
    };
    let Ok(id) = ProfileId::parse(&link.profile_id) else {
        return Err(gone(StatusCode::NOT_FOUND, "This link is not valid."));
    };
    match state.engine.profiles().find_bare(&ProfileKey::Id(id)).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(gone(
            StatusCode::NOT_FOUND,
            "We hold no data about you: nothing to show or change.",
        )),
        Err(e) => {
            tracing::error!(error = %e, "preference centre could not read a profile");
            Err(gone(
                StatusCode::SERVICE_UNAVAILABLE,
                "Your preferences cannot be shown right now. Please try again in a moment.",
            ))
        }
    }
}

fn gone(status: StatusCode, why: &str) -> Response {
    html(
        status,
        "Your e-mail preferences",
        &format!("<p>{}</p>", escape(why)),
    )
}

#[derive(serde::Deserialize)]
pub struct Shown {
    #[serde(default)]
    saved: Option<String>,
}

/// `GET /preferences/{token}`
pub async fn page(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<Shown>,
) -> Response {
    let profile = match subject(&state, &token).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    if !audit(&state, &profile, "preferences.view", StatusCode::OK, "").await {
        return unavailable();
    }
    let form_token = state
        .sender
        .as_ref()
        .map(|s| s.links().form_token(&token))
        .unwrap_or_default();
    let saved = matches!(q.saved.as_deref(), Some("1" | "all"));
    let notice = match q.saved.as_deref() {
        Some("all") => {
            "<p role=\"status\" class=\"note\"><strong>You are unsubscribed from everything.</strong> \
                        We will send you no more marketing e-mail and have stopped personalizing.</p>"
        }
        Some("1") => "<p role=\"status\" class=\"note\"><strong>Your choices are saved.</strong></p>",
        _ => "",
    };
    let (token_attr, form_attr) = (escape(&token), escape(&form_token));
    let body = format!(
        "{notice}{held}{choices}\
         <section aria-labelledby=\"all-h\"><h2 id=\"all-h\">Unsubscribe from everything</h2>\
         <p>Stop all marketing e-mail and withdraw every consent above. E-mails you need for an \
         order (receipts, delivery notices) still reach you.</p>\
         <form method=\"post\" action=\"{token_attr}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{form_attr}\">\
         <input type=\"hidden\" name=\"action\" value=\"unsubscribe_all\">\
         <button type=\"submit\">Unsubscribe from everything</button></form></section>\
         <section aria-labelledby=\"dl-h\"><h2 id=\"dl-h\">Your data</h2>\
         <p><a href=\"{token_attr}/export\" download>Download all data we hold about you (JSON)</a></p>\
         </section>",
        held = held_section(&state, &profile),
        choices = choices_form(&state, &profile, &token, &form_token),
    );
    // The title changes too, so that screen readers announce the outcome on load.
    let title = if saved {
        "Your e-mail preferences: saved"
    } else {
        "Your e-mail preferences"
    };
    html(StatusCode::OK, title, &body)
}

/// What is held, in plain words.
fn held_section(state: &AppState, p: &Profile) -> String {
    let mut rows = String::new();
    for email in &p.identities.emails {
        rows.push_str(&row("E-mail address", email, "To send you e-mail."));
    }
    let personal = &state.privacy_config.personal_traits;
    for (name, t) in &p.traits {
        if name == FREQUENCY_TRAIT || name == TOPICS_DECLINED_TRAIT || name == "email" {
            continue;
        }
        let value = match &t.value {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let why = match (t.party, personal.contains(name)) {
            (TraitParty::Third, _) => "Received from a partner, with your consent.".to_string(),
            (_, true) => "To address you and deliver what you order.".to_string(),
            _ => format!("To choose what our e-mails show you (from {}).", t.source),
        };
        rows.push_str(&row(name, &value, &why));
    }
    let events: u64 = p.events.values().map(|e| e.count).sum();
    if events > 0 {
        rows.push_str(&row(
            "Activity",
            &format!("{events} recorded actions (pages viewed, products, carts, e-mails opened)"),
            "To send reminders you asked for and measure our e-mails.",
        ));
    }
    if p.orders.count > 0 {
        rows.push_str(&row(
            "Orders",
            &format!("{} orders", p.orders.count),
            "To recommend products and follow up on your orders.",
        ));
    }
    format!(
        "<section aria-labelledby=\"held-h\"><h2 id=\"held-h\">What we hold about you</h2>\
         <table><caption class=\"note\">Data held about you, and why we hold it</caption>\
         <thead><tr><th scope=\"col\">What</th><th scope=\"col\">Value</th><th scope=\"col\">Why</th></tr></thead>\
         <tbody>{rows}</tbody></table></section>"
    )
}

fn row(what: &str, value: &str, why: &str) -> String {
    format!(
        "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td></tr>",
        escape(what),
        escape(value),
        escape(why)
    )
}

fn choices_form(state: &AppState, p: &Profile, token: &str, form_token: &str) -> String {
    let shown_consent: Vec<&str> = Purpose::ALL
        .iter()
        .filter(|purpose| p.consents(**purpose))
        .map(|purpose| purpose.as_str())
        .collect();
    let consents: String = Purpose::ALL
        .iter()
        .map(|purpose| {
            let (v, words) = (purpose.as_str(), purpose.plain_words());
            choice("checkbox", "consent", v, p.consents(*purpose), words, "")
        })
        .collect();
    let declined = declined_topics(p);
    let topics = if state.privacy_config.topics.is_empty() {
        String::new()
    } else {
        let boxes: String = state
            .privacy_config
            .topics
            .iter()
            .map(|t| {
                choice(
                    "checkbox",
                    "topic",
                    &t.id,
                    !declined.contains(&t.id),
                    &t.name,
                    &t.description,
                )
            })
            .collect();
        format!("<fieldset><legend>Topics you receive</legend>{boxes}</fieldset>")
    };
    let current = Frequency::of(p);
    let frequency: String = Frequency::ALL
        .iter()
        .map(|f| {
            choice(
                "radio",
                "frequency",
                f.as_str(),
                *f == current,
                f.plain_words(),
                "",
            )
        })
        .collect();
    format!(
        "<section aria-labelledby=\"choices-h\"><h2 id=\"choices-h\">Your choices</h2>\
         <form method=\"post\" action=\"{token}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{form_token}\">\
         <input type=\"hidden\" name=\"action\" value=\"save\">\
         <input type=\"hidden\" name=\"shown_consent\" value=\"{shown_consent}\">\
         <input type=\"hidden\" name=\"shown_topics\" value=\"{shown_topics}\">\
         <input type=\"hidden\" name=\"shown_frequency\" value=\"{shown_frequency}\">\
         <fieldset><legend>You allow us to</legend>{consents}</fieldset>\
         {topics}\
         <fieldset><legend>How often we e-mail you</legend>{frequency}</fieldset>\
         <button type=\"submit\">Save my choices</button></form></section>",
        token = escape(token),
        form_token = escape(form_token),
        shown_consent = shown_consent.join(","),
        shown_topics = escape(&declined.join(",")),
        shown_frequency = current.as_str(),
    )
}

/// One labelled checkbox or radio button (`id` = `{name}-{value}`), with an optional
/// description tied to it by `aria-describedby`.
fn choice(kind: &str, name: &str, value: &str, checked: bool, label: &str, description: &str) -> String {
    let id = escape(&format!("{name}-{value}"));
    let (described, note) = if description.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!(" aria-describedby=\"{id}-d\""),
            format!(
                " <span class=\"note\" id=\"{id}-d\">{}</span>",
                escape(description)
            ),
        )
    };
    format!(
        "<div><input type=\"{kind}\" id=\"{id}\" name=\"{name}\" value=\"{v}\"{checked}{described}>\
         <label for=\"{id}\">{label}</label>{note}</div>",
        v = escape(value),
        checked = if checked { " checked" } else { "" },
        label = escape(label),
    )
}

/// `POST /preferences/{token}`: `action=save` (with `consent`, `topic` and `frequency`) or
/// `action=unsubscribe_all`.
pub async fn update(
    State(state): State<AppState>,
    Path(token): Path<String>,
    parts: axum::http::request::Parts,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let profile = match subject(&state, &token).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let headers = &parts.headers;
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let csrf_ok = state
        .sender
        .as_ref()
        .is_some_and(|s| s.links().verify_form_token(&token, field("csrf").unwrap_or("")));
    if !csrf_ok || cross_site(headers) {
        audit(
            &state,
            &profile,
            "preferences.update",
            StatusCode::FORBIDDEN,
            "forged form",
        )
        .await;
        return html(
            StatusCode::FORBIDDEN,
            "Your e-mail preferences",
            "<p>This form could not be accepted. Open the link from your e-mail again.</p>",
        );
    }
    let mut update = ConsentUpdate {
        source: SOURCE.into(),
        policy_version: state.privacy_config.policy_version.clone(),
        ip: crate::limits::client_ip(&parts).map(|ip| ip.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
        ..Default::default()
    };
    let (saved, detail) = match field("action") {
        Some("unsubscribe_all") => {
            update.purposes = Purpose::ALL.iter().map(|p| (*p, false)).collect();
            ("all", "unsubscribed from everything".to_string())
        }
        Some("save") => {
            // Only what the person changed on the page they were shown is recorded: a page
            // left open must not undo a later unsubscribe, nor re-grant what was withdrawn.
            let listed = |name: &str| -> Option<Vec<String>> {
                field(name).map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
            };
            let shown_consent = listed("shown_consent");
            let granted = values(&fields, "consent");
            update.purposes = Purpose::ALL
                .iter()
                .map(|p| (*p, granted.contains(&p.as_str())))
                .filter(|(p, g)| {
                    let shown = shown_consent
                        .as_ref()
                        .map_or(profile.consents(*p), |s| s.iter().any(|x| x == p.as_str()));
                    *g != shown && *g != profile.consents(*p)
                })
                .collect();
            if !state.privacy_config.topics.is_empty() {
                let kept = values(&fields, "topic");
                let current = declined_topics(&profile);
                let shown = listed("shown_topics").unwrap_or_else(|| current.clone());
                let mut declined = current.clone();
                for t in &state.privacy_config.topics {
                    let now_declined = !kept.contains(&t.id.as_str());
                    if now_declined != shown.contains(&t.id) {
                        declined.retain(|d| d != &t.id);
                        if now_declined {
                            declined.push(t.id.clone());
                        }
                    }
                }
                if declined != current {
                    let declined: Vec<Value> = declined.into_iter().map(Value::from).collect();
                    update
                        .traits
                        .insert(TOPICS_DECLINED_TRAIT.into(), Value::Array(declined));
                }
            }
            let shown_frequency = field("shown_frequency").and_then(Frequency::parse);
            if let Some(f) = field("frequency").and_then(Frequency::parse)
                && Some(f) != shown_frequency
                && f != Frequency::of(&profile)
            {
                update
                    .traits
                    .insert(FREQUENCY_TRAIT.into(), Value::from(f.as_str()));
            }
            let changed: Vec<String> = update.purposes.iter().map(|(p, g)| format!("{p}={g}")).collect();
            ("1", format!("consent changes: [{}]", changed.join(", ")))
        }
        _ => {
            return html(
                StatusCode::BAD_REQUEST,
                "Your e-mail preferences",
                "<p>This form could not be understood. Open the link from your e-mail again.</p>",
            );
        }
    };
    let requested = update.purposes.clone();
    let result = state
        .privacy
        .set_consent(&ProfileKey::Id(profile.id.clone()), update)
        .await;
    // The page says what was done only if it was done: the stored consent must now read as asked.
    if let Ok(after) = &result
        && let Some((p, _)) = requested.iter().find(|(p, g)| after.consents(*p) != *g)
    {
        tracing::error!(profile_id = %profile.id, purpose = %p, "preference change recorded but not in effect");
        audit(
            &state,
            &profile,
            "preferences.update",
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{p} not in effect"),
        )
        .await;
        return gone(
            StatusCode::SERVICE_UNAVAILABLE,
            "Your choices could not be saved. Please try again in a moment.",
        );
    }
    if let Err(e) = result {
        tracing::error!(error = %e, "preference centre change not recorded");
        audit(
            &state,
            &profile,
            "preferences.update",
            StatusCode::SERVICE_UNAVAILABLE,
            &e.to_string(),
        )
        .await;
        return gone(
            StatusCode::SERVICE_UNAVAILABLE,
            "Your choices could not be saved. Please try again in a moment.",
        );
    }
    audit(
        &state,
        &profile,
        "preferences.update",
        StatusCode::SEE_OTHER,
        &detail,
    )
    .await;
    // Relative to /preferences/{token}: works behind a proxy that mounts missive under a path.
    Redirect::to(&format!("{token}?saved={saved}")).into_response()
}

/// `GET /preferences/{token}/export`: everything held, as JSON.
pub async fn export(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let profile = match subject(&state, &token).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    match state.privacy.export(&ProfileKey::Id(profile.id.clone())).await {
        Ok(doc) => {
            if !audit(&state, &profile, "preferences.export", StatusCode::OK, "").await {
                return unavailable();
            }
            let mut res = axum::Json(doc).into_response();
            let h = res.headers_mut();
            if let Ok(v) =
                HeaderValue::from_str(&format!("attachment; filename=\"my-data-{}.json\"", profile.id))
            {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "preference centre export failed");
            gone(
                StatusCode::SERVICE_UNAVAILABLE,
                "Your data cannot be downloaded right now. Please try again in a moment.",
            )
        }
    }
}

/// Every value of a repeated form field (checkboxes).
fn values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Personal data is not shown when its reading cannot be audited (as on the API).
fn unavailable() -> Response {
    gone(
        StatusCode::SERVICE_UNAVAILABLE,
        "Your preferences cannot be shown right now. Please try again in a moment.",
    )
}

/// Writes an audit entry; false when it could not be written.
async fn audit(state: &AppState, p: &Profile, action: &str, status: StatusCode, detail: &str) -> bool {
    let entry = AuditEntry {
        seq: 0,
        at: state.engine.clock().now(),
        actor: "link:preference-centre".into(),
        role: String::new(),
        action: action.into(),
        target: format!("profile:{}", p.id),
        status: status.as_u16(),
        detail: detail.into(),
    };
    match state.engine.audit().append(vec![entry]).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "audit log not written for a preference-centre action");
            false
        }
    }
}
