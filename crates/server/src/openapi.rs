//! The OpenAPI 3.1 description of the `/v1` API, served at `/openapi.json` (and rendered for
//! people at `/api` by [`crate::api_reference`]).
//!
//! It is built from the code, not written beside it: each handler carries its description
//! (`#[utoipa::path]`: method, path, parameters, body, responses) and each module registers its
//! routes with `utoipa_axum::routes!`, which adds the route to the router and its description
//! to the document in one step. A route cannot be served undescribed, nor described unserved;
//! the tests in `tests/it/openapi.rs` check the result. What every route shares is added here
//! once ([`finish`]): the security schemes, the error responses of authentication, rate
//! limits, body limits and the store, and the tags.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::{ApiError, AppState};

/// A module's routes together with their description.
pub(crate) type ApiRouter = utoipa_axum::router::OpenApiRouter<AppState>;

/// An empty router to register described routes on.
pub(crate) fn router() -> ApiRouter {
    ApiRouter::with_openapi(OpenApi::default())
}

/// Security scheme names, as the handlers' `security(...)` name them.
pub const BEARER: &str = "bearer";
pub const BASIC: &str = "basic";

/// The tags, in the order the reference page shows them, with what each groups.
const TAGS: &[(&str, &str)] = &[
    (
        "tracking",
        "Segment's HTTP Tracking API: events in. A 200 means they are durable.",
    ),
    (
        "sources",
        "Webhooks of shops and other services, signed with the source's secret.",
    ),
    (
        "profiles",
        "One living profile per person: traits, aggregates, history, versions, segments.",
    ),
    (
        "privacy",
        "Consent, export, erasure, retention and pseudonymized analytics.",
    ),
    ("keys", "API keys and their roles."),
    ("audit", "The append-only log of every management request."),
    (
        "segments",
        "Saved segments in missive's segment language, previews, members and exports.",
    ),
    (
        "schema",
        "The traits, events and properties the workspace knows, and declarations.",
    ),
    (
        "content",
        "Templates, content blocks, previews, lint and test sends.",
    ),
    (
        "catalog",
        "The product catalogue recommendations and templates read.",
    ),
    ("journeys", "Triggered journeys and their instances."),
    (
        "broadcasts",
        "One-off sends to a segment, and inbound bounce and complaint reports.",
    ),
    ("messages", "What became of messages, and why."),
    (
        "experiments",
        "A/B tests, holdouts and bandits, with their statistics.",
    ),
    ("webhooks", "Outbound webhooks (administrators only)."),
    (
        "models",
        "Propensity, clustering, lifetime-value and send-time models.",
    ),
    (
        "recommendations",
        "Product recommendations: training, rules and lists.",
    ),
];

const DESCRIPTION: &str = "The API of a missive server: events in (Segment's tracking API), \
profiles, segments, content, journeys, broadcasts, experiments, models, recommendations, \
privacy and keys. Authenticate with an API key as a Bearer token (`Authorization: Bearer KEY`) \
or as HTTP Basic with the key as user name and an empty password (what Segment's libraries \
send). A key's role decides what it may do (docs/security.md); the tracking API takes the \
write key. Every error has the body `ApiError`, with a `code` from one catalogue \
(docs/errors.md). Generated from the server's code; see docs/api.md.";

/// Completes the document the routers collected: info, security, shared responses, tags.
pub fn finish(mut api: OpenApi) -> OpenApi {
    api.info = InfoBuilder::new()
        .title("missive")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(
            LicenseBuilder::new()
                .name("AGPL-3.0-only")
                .identifier(Some("AGPL-3.0-only"))
                .build(),
        ))
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key as a Bearer token."))
                .build(),
        ),
    );
    components.add_security_scheme(
        BASIC,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "An API key as the user name, with an empty password (what Segment's libraries send).",
                ))
                .build(),
        ),
    );
    let mut schemas = vec![(ApiError::name().into_owned(), ApiError::schema())];
    ApiError::schemas(&mut schemas);
    components.schemas.extend(schemas);
    // Unless an operation says otherwise: any key, as Bearer or Basic.
    api.security = Some(vec![
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
        SecurityRequirement::new(BASIC, Vec::<String>::new()),
    ]);
    for (path, item) in api.paths.paths.iter_mut() {
        let keyed = !path.starts_with("/v1/sources/");
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let has_body = op.request_body.is_some();
            let has_parameters = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let responses = &mut op.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(error_response(description)));
            };
            if keyed {
                add(
                    "401",
                    "No API key, an unknown or revoked one, or a malformed `Authorization` header.",
                );
                add(
                    "403",
                    "The key's role may not do this; or the request came from a web page (the API takes no cross-site requests).",
                );
                add(
                    "429",
                    "Too many failed authentications from this address (or, on the tracking API, too many requests): retry after `Retry-After` seconds.",
                );
            }
            if has_body || has_parameters {
                add(
                    "400",
                    "A parameter or the body is not valid: the code and `field` say which.",
                );
            }
            if has_body {
                add(
                    "413",
                    "The body is larger than the server takes (1 MiB on the wire).",
                );
            }
            add(
                "500",
                "An internal error; the body says nothing more, the server's log has the cause.",
            );
            add(
                "503",
                "Not done: the store could not make the request durable, or its audit entry could not be written. Retry.",
            );
        }
    }
    api.tags = Some(
        TAGS.iter()
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(*name)
                    .description(Some(*description))
                    .build()
            })
            .collect(),
    );
    api
}

/// A response with the error body.
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ApiError::name())))
                .build(),
        )
        .build()
}

/// `GET /openapi.json` and `GET /api`, from the finished document (rendered once).
pub fn routes(api: &OpenApi) -> Result<Router<AppState>, serde_json::Error> {
    let json: Arc<str> = api.to_pretty_json()?.into();
    let html: Arc<str> = crate::api_reference::render(api).into();
    Ok(Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        ],
                        json.to_string(),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/api",
            get(move || {
                let html = html.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                            (
                                header::CONTENT_SECURITY_POLICY,
                                "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                            ),
                            (header::REFERRER_POLICY, "no-referrer"),
                        ],
                        html.to_string(),
                    )
                        .into_response()
                }
            }),
        ))
}
