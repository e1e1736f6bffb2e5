//! Audiences out: `GET /v1/segments/{name}/export` writes a segment's members as CSV, for a
//! purpose the people consented to:
//! - `format=csv&purpose=P&traits=a,b`: profile id, e-mail address and the chosen traits;
//! - `format=customer_match`: one column `Email` of normalized (trimmed, lower-case) addresses
//!   hashed with SHA-256 (hex), the upload format of advertising platforms' customer-match
//!   audiences; always for the purpose `advertising`.
//!
//! Only members whose consent covers the purpose are written; the response says how many were
//! left out (`X-Missive-Left-Out`). The export is audited like every read of personal data.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use missive_core::{ErrorCode, Purpose};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::{ReadPersonal, RequireRole};
use crate::{ApiError, AppState};

/// Members read per page.
const PAGE: u32 = 1_000;

pub(crate) fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/v1/segments/{name}/export", axum::routing::get(export))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    CustomerMatch,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    format: Format,
    /// The purpose the export serves (`csv` only; `customer_match` is `advertising`).
    #[serde(default)]
    purpose: Option<String>,
    /// Traits to add as columns (`csv` only), comma-separated.
    #[serde(default)]
    traits: Option<String>,
}

/// An address as customer-match uploads expect it before hashing: trimmed and lower-case.
pub fn customer_match_hash(email: &str) -> String {
    hex::encode(Sha256::digest(email.trim().to_lowercase().as_bytes()))
}

/// `GET /v1/segments/{name}/export?format=…`
pub async fn export(
    _: RequireRole<ReadPersonal>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let purpose = match (q.format, q.purpose.as_deref()) {
        (Format::CustomerMatch, None | Some("advertising")) => Purpose::Advertising,
        (Format::CustomerMatch, Some(_)) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidValue,
                "a customer-match audience is for the purpose advertising",
            )
            .with_field("purpose"));
        }
        (Format::Csv, Some(p)) => Purpose::parse(p).ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidValue,
                format!(
                    "purpose {p:?} is not one of {}",
                    Purpose::ALL.map(Purpose::as_str).join(", ")
                ),
            )
            .with_field("purpose")
        })?,
        (Format::Csv, None) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidValue,
                "name the purpose the export serves: only people who consented to it are written",
            )
            .with_field("purpose"));
        }
    };
    let traits: Vec<String> = match (q.format, &q.traits) {
        (Format::Csv, Some(t)) => t
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        (Format::CustomerMatch, Some(_)) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidValue,
                "a customer-match audience holds hashed addresses only",
            )
            .with_field("traits"));
        }
        _ => Vec::new(),
    };
    let segments = state.engine.segments();
    if segments.get(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("no segment is named {name:?}")));
    }
    state.engine.sync().await.map_err(|e| ApiError::unavailable(&e))?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let header: Vec<String> = match q.format {
        Format::Csv => ["profile_id", "email"]
            .into_iter()
            .map(str::to_owned)
            .chain(traits.iter().cloned())
            .collect(),
        Format::CustomerMatch => vec!["Email".to_owned()],
    };
    let csv_error = |e: csv::Error| ApiError::internal(&e);
    out.write_record(&header).map_err(csv_error)?;
    let (mut written, mut left_out) = (0u64, 0u64);
    let mut after = None;
    loop {
        let page = segments.members(&name, after.clone(), PAGE).await?;
        let Some(last) = page.last().cloned() else { break };
        after = Some(last);
        for id in page {
            let profile = state
                .engine
                .profiles()
                .find_bare(&missive_engine::profiles::ProfileKey::Id(id.clone()))
                .await
                .map_err(|e| ApiError::unavailable(&e))?;
            let Some(p) = profile.filter(|p| p.consents(purpose)) else {
                left_out += 1;
                continue;
            };
            let Some(email) = p.email() else {
                left_out += 1;
                continue;
            };
            let row: Vec<String> = match q.format {
                Format::CustomerMatch => vec![customer_match_hash(email)],
                Format::Csv => {
                    let mut row = vec![id.to_string(), email.to_owned()];
                    row.extend(traits.iter().map(|t| match p.traits.get(t).map(|t| &t.value) {
                        None | Some(serde_json::Value::Null) => String::new(),
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                    }));
                    row
                }
            };
            out.write_record(&row).map_err(csv_error)?;
            written += 1;
        }
    }
    let body = out.into_inner().map_err(|e| ApiError::internal(&e.to_string()))?;
    metrics::counter!("missive_audience_exports_total").increment(1);
    tracing::info!(segment = %name, purpose = purpose.as_str(), written, left_out, "audience exported");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
            (
                header::HeaderName::from_static("x-missive-left-out"),
                left_out.to_string(),
            ),
        ],
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `printf 'test@example.com' | sha256sum`.
    #[test]
    fn addresses_are_normalized_then_hashed() {
        let want = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";
        assert_eq!(customer_match_hash("test@example.com"), want);
        assert_eq!(customer_match_hash("  Test@Example.COM "), want);
    }
}
