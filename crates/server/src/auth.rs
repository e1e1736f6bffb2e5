//! Who is calling and what they may do.
//!
//! API keys are presented as HTTP Basic (key as user, empty password; what Segment's libraries
//! send) or as a Bearer token. Every route names what it needs with an extractor
//! (`RequireRole<Marketing>`); the permissions below say which roles have it:
//!
//! | permission | admin | marketer | analyst | privacy officer | write (client) | server write |
//! |---|---|---|---|---|---|---|
//! | [`Ingest`] (tracking API) | ✓ | | | | ✓ | ✓ |
//! | [`Reports`] (lists, counts, progress, pseudonymized analytics) | ✓ | ✓ | ✓ | ✓ | | |
//! | [`ReadPersonal`] (profiles, events, versions, previews, messages) | ✓ | ✓ | | ✓ | | |
//! | [`Marketing`] (segments, content, journeys, broadcasts) | ✓ | ✓ | | | | |
//! | [`Privacy`] (consent, export, erasure, audit log) | ✓ | | | ✓ | | |
//! | [`Administer`] (keys, bounce reports) | ✓ | | | | | |
//!
//! Events from a write (client) key are client events, which may not change a known person's
//! address nor reverse a withdrawal made on missive's pages (`missive_core::Trust`).
//!
//! The caller is also put in the request's [`AuditSlot`], so that the audit layer can record
//! who did what.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use missive_engine::auth::Caller;
use missive_store::Role;

use crate::{ApiError, AppState};

/// What a route needs.
pub trait Permission: Send + Sync + 'static {
    /// For error messages: `manage content`, `read personal data`.
    const WHAT: &'static str;
    fn allows(role: Role) -> bool;
}

macro_rules! permission {
    ($(#[$doc:meta])* $name:ident, $what:literal, $($role:ident),+) => {
        $(#[$doc])*
        pub struct $name;
        impl Permission for $name {
            const WHAT: &'static str = $what;
            fn allows(role: Role) -> bool {
                matches!(role, $(Role::$role)|+)
            }
        }
    };
}

permission!(
    /// Send events (the tracking API).
    Ingest, "send events", Admin, Write, ServerWrite
);
permission!(
    /// Read lists, counts and progress: no personal data.
    Reports, "read reports", Admin, Marketer, Analyst, PrivacyOfficer
);
permission!(
    /// Read personal data: profiles, events, versions, previews for a person, members of a
    /// segment, message reports.
    ReadPersonal, "read personal data", Admin, Marketer, PrivacyOfficer
);
permission!(
    /// Change segments, content, journeys and broadcasts.
    Marketing, "manage marketing", Admin, Marketer
);
permission!(
    /// Consent, export, erasure and the audit log.
    Privacy, "manage privacy", Admin, PrivacyOfficer
);
permission!(
    /// API keys and inbound bounce reports.
    Administer, "administer the workspace", Admin
);

/// The caller, once allowed `P`.
pub struct RequireRole<P: Permission> {
    pub caller: Caller,
    _p: PhantomData<P>,
}

impl<P: Permission> FromRequestParts<AppState> for RequireRole<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(key) = presented_key(parts)? else {
            return Err(ApiError::unauthorized(
                "an API key is required (Authorization: Bearer <key>)",
            ));
        };
        let caller = caller_for(state, &key, crate::limits::client_ip(parts)).await?;
        if let Some(slot) = parts.extensions.get::<AuditSlot>() {
            slot.set_caller(&caller);
        }
        if !P::allows(caller.role) {
            return Err(ApiError::forbidden(format!(
                "a {} key may not {}",
                caller.role.as_str(),
                P::WHAT
            )));
        }
        Ok(Self {
            caller,
            _p: PhantomData,
        })
    }
}

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

/// The caller a key belongs to; 401 when none (and the failure counts towards the rate
/// limit of failed attempts from the client's address: see [`crate::limits`]).
pub async fn caller_for(
    state: &AppState,
    key: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<Caller, ApiError> {
    if !state.auth.is_verified(key) {
        crate::limits::check_auth_allowed(state, ip)?;
    }
    match state.auth.authenticate(key).await? {
        Some(caller) => Ok(caller),
        None => {
            crate::limits::record_auth_failure(state, ip);
            Err(ApiError::unauthorized("unknown or revoked API key"))
        }
    }
}

/// Filled while a request is handled, read by the audit layer once it is answered.
#[derive(Clone, Default)]
pub struct AuditSlot(Arc<Mutex<AuditFacts>>);

#[derive(Clone, Default)]
pub struct AuditFacts {
    pub caller: Option<Caller>,
    /// What the request was about, when the handler knows better than the path (a profile
    /// looked up by e-mail address is recorded by its id, never by the address).
    pub target: Option<String>,
    pub detail: Option<String>,
}

impl AuditSlot {
    pub fn set_caller(&self, caller: &Caller) {
        if let Ok(mut f) = self.0.lock() {
            f.caller = Some(caller.clone());
        }
    }

    pub fn set_target(&self, target: impl Into<String>) {
        if let Ok(mut f) = self.0.lock() {
            f.target = Some(target.into());
        }
    }

    pub fn set_detail(&self, detail: impl Into<String>) {
        if let Ok(mut f) = self.0.lock() {
            f.detail = Some(detail.into());
        }
    }

    pub fn facts(&self) -> AuditFacts {
        self.0.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditSlot {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<AuditSlot>().cloned().unwrap_or_default())
    }
}
