//! Who is calling: API keys presented as HTTP Basic (key as user, empty password; what
//! Segment's libraries send) or as a Bearer token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use missive_store::Role;

use crate::{ApiError, AppState};

/// The secret in the `Authorization` header, if any.
pub fn presented_key(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let h = h
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    if let Some(b) = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|_| ApiError::unauthorized("malformed Basic credentials"))?;
        let s =
            String::from_utf8(decoded).map_err(|_| ApiError::unauthorized("malformed Basic credentials"))?;
        let user = s.split_once(':').map_or(s.as_str(), |(u, _)| u);
        return Ok(Some(user.to_owned()));
    }
    if let Some(t) = h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")) {
        return Ok(Some(t.trim().to_owned()));
    }
    Err(ApiError::unauthorized(
        "unsupported Authorization scheme: use Basic or Bearer",
    ))
}

pub async fn role_for(state: &AppState, key: &str) -> Result<Role, ApiError> {
    match state.auth.role_of(key).await? {
        Some(role) => Ok(role),
        None => Err(ApiError::unauthorized("unknown or revoked API key")),
    }
}

/// Requires an admin key.
pub struct RequireAdmin;

impl FromRequestParts<AppState> for RequireAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(key) = presented_key(parts)? else {
            return Err(ApiError::unauthorized(
                "an admin API key is required (Authorization: Bearer <key>)",
            ));
        };
        match role_for(state, &key).await? {
            Role::Admin => Ok(RequireAdmin),
            Role::Write => Err(ApiError::forbidden("a write key may only send events")),
        }
    }
}
