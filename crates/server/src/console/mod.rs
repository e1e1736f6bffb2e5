//! The console: the marketer's, analyst's and privacy officer's web pages, served by missive
//! itself, behind a login with an API key and a session.
//!
//! - **Security first.** Sessions, login CSRF and each form's CSRF token are in [`session`];
//!   every page checks the session's key against the store (a revoked key ends its sessions at
//!   once) and the role's permission (the same permissions as the API, `crate::auth`); reads of
//!   personal data and every change are audited. Pages are sent with a strict
//!   Content-Security-Policy: nothing inline, nothing from elsewhere (`layout`).
//! - **Works without JavaScript.** Every page is rendered on the server (maud templates, escaped
//!   by default) and every form posts; the one script (`assets/console.js`) only adds the live
//!   count while a segment is typed.
//! - **Work is not lost.** A form posted after the session expired is kept: the login page
//!   carries it, and after logging in the person sends it again with one press
//!   ([`session::keep_work`]).
//!
//! One file per section: `overview`, `profiles`, `segments`, `templates`, `journeys`,
//! `broadcasts`, `experiments`, `models`, `privacy`; charts and the journey graph are pure
//! SVG rendering (`charts`, `journey_graph`), tested with tables.

mod assets;
mod audit;
mod broadcasts;
mod charts;
mod experiments;
mod journey_graph;
mod journeys;
mod keys;
mod layout;
mod models;
mod overview;
mod privacy;
mod profiles;
mod render_audit;
mod segments;
mod session;
mod templates;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub use session::Sessions;
pub(crate) use session::cross_site;

/// The console's pages.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/console", get(overview::page))
        .route("/console/profiles", get(profiles::search))
        .route("/console/profiles/{id}", get(profiles::page))
        .route("/console/segments", get(segments::list))
        .route("/console/segments/new", get(segments::new))
        .route("/console/segments/edit/{name}", get(segments::edit))
        .route("/console/segments/check", post(segments::check))
        .route("/console/segments/save", post(segments::save))
        .route("/console/segments/delete", post(segments::delete))
        .route("/console/templates", get(templates::list))
        .route("/console/templates/new", get(templates::new))
        .route("/console/templates/edit/{name}", get(templates::edit))
        .route("/console/templates/save", post(templates::save))
        .route("/console/templates/render/{name}", get(templates::render))
        .route("/console/templates/audit/{name}", get(render_audit::page))
        .route("/console/journeys", get(journeys::list))
        .route("/console/journeys/new", get(journeys::new))
        .route("/console/journeys/check", post(journeys::check))
        .route("/console/journeys/save", post(journeys::save))
        .route("/console/journeys/delete", post(journeys::delete))
        .route("/console/journeys/{name}", get(journeys::page))
        .route(
            "/console/broadcasts",
            get(broadcasts::list).post(broadcasts::create),
        )
        .route("/console/broadcasts/{id}", get(broadcasts::page))
        .route("/console/broadcasts/{id}/{action}", post(broadcasts::act))
        .route("/console/experiments", get(experiments::list))
        .route("/console/experiments/{name}", get(experiments::page))
        .route("/console/models", get(models::page))
        .route("/console/privacy", get(privacy::page))
        .route("/console/privacy/person", get(privacy::person))
        .route("/console/privacy/export/{id}", get(privacy::export))
        .route("/console/privacy/erase", post(privacy::erase))
        .route("/console/audit", get(audit::audit_page))
        .route("/console/keys", get(keys::list).post(keys::create))
        .route("/console/keys/revoke", post(keys::revoke))
        .route("/console/logout", post(session::logout))
        .route_layer(axum::middleware::from_fn_with_state(state, session::keep_work));
    Router::new()
        .merge(pages)
        .route("/console/login", get(session::login_page).post(session::login))
        .route("/console/assets/{file}", get(assets::serve))
}
