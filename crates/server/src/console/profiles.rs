//! Profiles: `GET /console/profiles?q=` finds one by e-mail, user id, anonymous id or profile
//! id; `GET /console/profiles/{id}` shows it whole: identities, traits with their source and
//! consent basis, consent and its history, segments and why, scores, orders, messages received,
//! what the recommender would give them now, the event timeline and the versions with their
//! changes.
//!
//! Personal data: only roles that read it (not analysts, who see pseudonyms through the
//! analytics API); every page view is audited with the profile as its target.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use missive_core::{Profile, ProfileId, Purpose};
use missive_engine::profiles::ProfileKey;
use missive_sending::content::{Ask, Served};
use missive_store::EventQuery;

use super::layout::{self, Section, badge, group, money, time};
use super::session::{Visit, audit};
use crate::AppState;
use crate::auth::ReadPersonal;

const ANALYSTS: &str = "Profiles hold personal data, which your role does not read: analysts see pseudonymized \
                        profiles through the analytics API (GET /v1/analytics/profiles).";

#[derive(serde::Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

fn search_form(q: &str) -> Markup {
    layout::person_search(
        "/console/profiles",
        "Find a profile",
        q,
        "An exact e-mail address, user id, anonymous id or profile id (prefixes such as email: or user_id: pick one kind).",
    )
}

/// `GET /console/profiles?q=`: the search, or the profile found.
pub async fn search(State(state): State<AppState>, visit: Visit, Query(q): Query<SearchQuery>) -> Response {
    if !visit.may::<ReadPersonal>() {
        return visit.refuse(&state, "console.profiles", ANALYSTS).await;
    }
    let q = q.q.unwrap_or_default();
    let q = q.trim();
    if q.is_empty() {
        return layout::page(&visit, Section::Profiles, "Profiles", search_form(""));
    }
    if let Err(e) = state.engine.sync().await {
        return layout::unavailable(&visit, Section::Profiles, "Profiles", &e);
    }
    match state.engine.profiles().resolve(&ProfileKey::parse(q)).await {
        Ok(Some(id)) => {
            // Which person an address or user id names is itself personal data.
            audit(
                &state,
                Some(&visit.caller),
                "console.profiles.search",
                StatusCode::SEE_OTHER,
                &format!("profile:{id}"),
                "",
            )
            .await;
            Redirect::to(&format!("/console/profiles/{id}")).into_response()
        }
        Ok(None) => {
            audit(
                &state,
                Some(&visit.caller),
                "console.profiles.search",
                StatusCode::NOT_FOUND,
                "console",
                "",
            )
            .await;
            let body = html! {
                (search_form(q))
                (layout::error("No profile has that e-mail address, user id, anonymous id or profile id."))
            };
            layout::page_with(
                &visit,
                Section::Profiles,
                "Profiles",
                body,
                StatusCode::NOT_FOUND,
                None,
            )
        }
        Err(e) => layout::unavailable(&visit, Section::Profiles, "Profiles", &e),
    }
}

/// `GET /console/profiles/{id}`.
pub async fn page(State(state): State<AppState>, visit: Visit, Path(id): Path<String>) -> Response {
    if !visit.may::<ReadPersonal>() {
        return visit.refuse(&state, "console.profile", ANALYSTS).await;
    }
    let Ok(id) = ProfileId::parse(&id) else {
        let body = html! { (search_form("")) (layout::error("That is not a profile id (prf_ and 32 hexadecimal digits).")) };
        return layout::page_with(
            &visit,
            Section::Profiles,
            "Profile",
            body,
            StatusCode::NOT_FOUND,
            None,
        );
    };
    if let Err(e) = state.engine.sync().await {
        return layout::unavailable(&visit, Section::Profiles, "Profile", &e);
    }
    let people = state.engine.profiles();
    let profile = match people.find(&ProfileKey::Id(id.clone())).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            let body = html! { (search_form("")) (layout::error("No profile has that id (it may have been erased).")) };
            return layout::page_with(
                &visit,
                Section::Profiles,
                "Profile",
                body,
                StatusCode::NOT_FOUND,
                None,
            );
        }
        Err(e) => return layout::unavailable(&visit, Section::Profiles, "Profile", &e),
    };
    // A merged profile's page is the surviving one's.
    if profile.id != id {
        return Redirect::to(&format!("/console/profiles/{}", profile.id)).into_response();
    }
    let now = state.engine.clock().now();
    let (explain, changes, events, versions, messages, recommended) = tokio::join!(
        people.explain_segments(&profile, now),
        people.segment_changes(&id, 20),
        people.events(EventQuery {
            profile_id: id.clone(),
            received_before: None,
            cursor: None,
            limit: 50,
        }),
        people.versions(&id, None, 20),
        state.messages.of_profile(&id, 20),
        recommendations(&state, &profile),
    );
    let (explain, changes, events, versions, messages) = match (explain, changes, events, versions, messages)
    {
        (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) => (a, b, c, d, e),
        _ => {
            return layout::unavailable(
                &visit,
                Section::Profiles,
                "Profile",
                &"a part of the profile could not be read",
            );
        }
    };
    audit(
        &state,
        Some(&visit.caller),
        "console.profile",
        StatusCode::OK,
        &format!("profile:{id}"),
        "",
    )
    .await;
    let title = profile.email().map_or_else(|| id.to_string(), str::to_owned);
    let rfm = profile.rfm(now);
    let body = html! {
        (search_form(""))
        div.grid {
            section.card {
                h2 { "Identity" }
                dl.facts {
                    dt { "Profile id" } dd { code { (id) } }
                    dt { "Mail goes to" } dd { (profile.email().unwrap_or("–")) }
                    dt { "E-mail addresses" } dd { (join(&profile.identities.emails)) }
                    dt { "User ids" } dd { (join(&profile.identities.user_ids)) }
                    dt { "Anonymous ids" } dd { (join(&profile.identities.anonymous_ids)) }
                    dt { "Version" } dd { (profile.version) }
                    dt { "Created" } dd { (time(profile.created_at)) }
                    dt { "First seen" } dd { @if let Some(t) = profile.first_seen { (time(t)) } @else { "–" } }
                    dt { "Last seen" } dd { @if let Some(t) = profile.last_seen { (time(t)) } @else { "–" } }
                }
            }
            section.card {
                h2 { "Orders" }
                dl.facts {
                    dt { "Orders" } dd { (group(profile.orders.count)) }
                    dt { "Revenue" } dd { (money(profile.orders.revenue.0)) }
                    dt { "Average order" } dd {
                        @if profile.orders.count > 0 { (money(profile.orders.revenue.0 / profile.orders.count as i64)) } @else { "–" }
                    }
                    dt { "Recency" } dd { @if let Some(d) = rfm.recency_days { (format!("{d:.0} days")) } @else { "–" } }
                }
                h2 { "Scores" }
                @if profile.model_scores().is_empty() {
                    p.empty { "No model scores (models score people who consented to profiling)." }
                } @else {
                    dl.facts {
                        @for (k, v) in profile.model_scores() { dt { (k) } dd { code { (v.to_string()) } } }
                    }
                }
            }
        }
        section.card {
            h2 { "Traits" }
            @if profile.traits.is_empty() { p.empty { "No traits." } } @else {
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Trait" } th scope="col" { "Value" } th scope="col" { "Source" } th scope="col" { "Party" } th scope="col" { "Consent basis" } th scope="col" { "Set" } } }
                    tbody {
                        @for (k, t) in profile.traits.iter() {
                            tr {
                                th scope="row" { (k) }
                                td { code { (t.value.to_string()) } }
                                td { (t.source) }
                                td { (match t.party { missive_core::TraitParty::First => "first", missive_core::TraitParty::Third => "third" }) }
                                td { (t.consent_basis.as_deref().unwrap_or("–")) }
                                td { (time(t.at)) }
                            }
                        }
                    }
                } }
            }
        }
        section.card {
            h2 { "Consent" }
            div.table-wrap { table {
                thead { tr { th scope="col" { "Purpose" } th scope="col" { "State" } th scope="col" { "Meaning" } th scope="col" { "Last change" } } }
                tbody {
                    @for purpose in missive_core::Purpose::ALL {
                        @let c = profile.consent.get(&purpose);
                        tr {
                            th scope="row" { (purpose.as_str()) }
                            td { @if c.is_some_and(|c| c.current.granted) { (badge("granted", "ok")) } @else { (badge("not granted", "idle")) } }
                            td { (purpose.plain_words()) }
                            td {
                                @if let Some(c) = c {
                                    (c.current.source) ", " (time(c.current.at))
                                    @if c.history.len() > 1 {
                                        details { summary { (c.history.len()) " changes" }
                                            ul { @for h in c.history.iter().rev() { li { (if h.granted { "granted" } else { "withdrawn" }) " by " (h.source) ", " (time(h.at)) } } }
                                        }
                                    }
                                } @else { "never asked" }
                            }
                        }
                    }
                }
            } }
        }
        div.grid {
            section.card {
                h2 { "Segments" }
                @let member: Vec<_> = explain.iter().filter(|e| e.explanation.member).collect();
                @if member.is_empty() { p.empty { "In no saved segment." } }
                ul {
                    @for e in &member {
                        li {
                            strong { (e.segment) }
                            details { summary { "Why" }
                                ul { @for p in &e.explanation.predicates {
                                    li { (if p.result { "✓ " } else { "✗ " }) code { (p.predicate) } " — " (p.value.to_string()) }
                                } }
                            }
                        }
                    }
                }
                @if !changes.is_empty() {
                    h2 { "Entries and exits" }
                    ul { @for c in &changes { li { (if c.entered { "entered " } else { "left " }) strong { (c.segment) } " · " (c.cause) " · " (time(c.at)) } } }
                }
            }
            section.card {
                h2 { "Messages received" }
                @if messages.is_empty() { p.empty { "No messages." } } @else {
                    table {
                        thead { tr { th scope="col" { "Template" } th scope="col" { "From" } th scope="col" { "State" } th scope="col" { "When" } } }
                        tbody { @for m in &messages {
                            tr {
                                td { (m.template) }
                                td { (m.source) }
                                td { (serde_json::to_value(m.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) @if let Some(r) = &m.reason { br; span.note { (r) } } }
                                td { (time(m.sent_at.unwrap_or(m.created_at))) }
                            }
                        } }
                    }
                }
            }
        }
        section.card {
            h2 { "Recommendations" }
            (recommended)
        }
        div.grid {
            section.card {
                h2 { "Events" span.note { " (newest 50)" } }
                @if events.is_empty() { p.empty { "No events." } }
                ol.timeline {
                    @for e in &events {
                        li {
                            span.what { (e.kind.as_str()) " · " (e.name) }
                            " " span.note { (time(e.timestamp)) }
                            @if let Some(p) = e.body.get("properties").filter(|p| p.as_object().is_some_and(|o| !o.is_empty())) {
                                div.props { code { (truncate(&p.to_string(), 300)) } }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Versions" span.note { " (newest 20)" } }
                ol.timeline {
                    @for v in &versions {
                        li {
                            span.what { "v" (v.version) " · " (v.cause) }
                            " " span.note { (time(v.recorded_at)) }
                            details { summary { "Changes" }
                                pre { (serde_json::to_string_pretty(&v.diff).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(&visit, Section::Profiles, &title, body)
}

/// How many products the section lists: as many as the API's list by default.
const RECOMMENDED: usize = 10;

/// What the recommender gives this person now, as `GET /v1/profiles/{key}/recommendations
/// ?strategy=for_you` does: the marketer's rules, the learned hybrid when one is trained, then
/// their categories and best sellers, through the configured filters, from every stored event
/// of theirs; nothing from their history without personalization consent.
async fn recommendations(state: &AppState, profile: &Profile) -> Markup {
    let content = &state.content;
    let catalog = match content.catalog().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "console profile: catalogue unreadable");
            return layout::error("The catalogue could not be read just now: try again.");
        }
    };
    if catalog.is_empty() {
        return html! {
            p.empty { "No catalogue: recommendations pick from the products sent to "
                code { "POST /v1/catalog/products" } " (or a shop source), and there are none yet." }
        };
    }
    let model = content.recs().current();
    let trained = html! {
        @match &model {
            Some(m) => p.note { "Learned model version " (m.version) ", trained " (time(m.trained_at)) "." },
            None => p.note { "No learned model is served (" code { "POST /v1/recommendations/train" }
                "): the list comes from the marketer's rules, the person's categories and best sellers." },
        }
    };
    if !profile.consents(Purpose::Personalization) {
        return html! {
            p.empty { "No personalization consent: nothing is chosen from this person's history (their e-mails show the best sellers everyone gets)." }
            (trained)
        };
    }
    let stored = match missive_engine::profiles::all_events(state.engine.store(), &profile.id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "console profile: events unreadable for recommendations");
            return layout::error("This person's events could not be read just now: try again.");
        }
    };
    let events: Vec<_> = stored
        .iter()
        .filter_map(missive_engine::recs::stored_event)
        .collect();
    let person = content.person(&events, &[]);
    let picks = content
        .recommend_for(&Ask {
            strategy: Served::ForYou,
            person: &person,
            limit: RECOMMENDED,
            filters: &content.config().recommendation_filters,
            now: state.engine.clock().now(),
        })
        .await;
    let picks = match picks {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "console profile: recommendations failed");
            return layout::error("Recommendations could not be computed just now: try again.");
        }
    };
    html! {
        @if picks.is_empty() {
            p.empty { "Nothing to recommend: no history the model knows, or everything it would pick is out of stock, outside the filters or already theirs." }
        } @else {
            div.table-wrap { table {
                caption { "What the recommender gives this person now (" code { "for_you" } ": rules, the learned hybrid, then categories and best sellers), best first." }
                thead { tr {
                    th scope="col" { "Product" } th.num scope="col" { "Score" } th scope="col" { "Chosen by" } th scope="col" { "Why" }
                } }
                tbody {
                    @for p in &picks {
                        tr {
                            th scope="row" { (p.entry.product.title) " " code { (p.entry.product.id) } }
                            td.num { (format!("{:.3}", p.score)) }
                            td { (p.source.as_str()) }
                            td { (p.reason) }
                        }
                    }
                }
            } }
        }
        (trained)
    }
}

fn join(set: &std::collections::BTreeSet<String>) -> String {
    if set.is_empty() {
        return "–".into();
    }
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// At most `max` bytes of `s`, cut at a character boundary, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        assert_eq!(super::truncate("abc", 3), "abc");
        assert_eq!(super::truncate("abcd", 3), "abc…");
        assert_eq!(super::truncate("aé", 2), "a…");
    }
}
