//! Audiences out: a saved segment's members as CSV, for a purpose the people consented to:
//! - [`Format::Csv`]: profile id, e-mail address and chosen traits;
//! - [`Format::CustomerMatch`]: one column `Email` of normalized (trimmed, lower-case)
//!   addresses hashed with SHA-256 (hex), the upload format of advertising platforms'
//!   customer-match audiences; always for the purpose `advertising`.
//!
//! Only members whose consent covers the purpose, and who have an address, are written; the
//! others are counted. Cells that a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, a
//! tab or a carriage return first) are written with a leading `'`. The API and the CLI audit
//! every export.

use missive_core::Purpose;
use sha2::{Digest, Sha256};

use crate::Engine;
use crate::profiles::ProfileKey;

/// Members read per page.
const PAGE: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AudienceFormat)]
pub enum Format {
    Csv,
    CustomerMatch,
}

/// A finished export.
#[derive(Debug, Clone)]
pub struct Export {
    pub csv: Vec<u8>,
    pub written: u64,
    pub left_out: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AudienceError {
    /// A request that cannot be exported as asked; `field` names what to change.
    #[error("{why}")]
    Invalid { field: &'static str, why: String },
    #[error("no segment is named {0:?}")]
    UnknownSegment(String),
    #[error(transparent)]
    Segments(#[from] crate::segments::SegmentServiceError),
    #[error(transparent)]
    Store(#[from] missive_store::StoreError),
    #[error(transparent)]
    Engine(#[from] std::sync::Arc<crate::EngineError>),
    #[error("writing the CSV: {0}")]
    Csv(String),
}

fn invalid(field: &'static str, why: impl Into<String>) -> AudienceError {
    AudienceError::Invalid {
        field,
        why: why.into(),
    }
}

/// An address as customer-match uploads expect it before hashing: trimmed and lower-case.
pub fn customer_match_hash(email: &str) -> String {
    hex::encode(Sha256::digest(email.trim().to_lowercase().as_bytes()))
}

/// A cell a spreadsheet will not run as a formula.
fn cell(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

/// Checks a request: the purpose (`csv` must name one; `customer_match` is `advertising`) and
/// the traits (`csv` only).
pub fn purpose_of(
    format: Format,
    purpose: Option<&str>,
    traits: &[String],
) -> Result<Purpose, AudienceError> {
    match (format, purpose) {
        (Format::CustomerMatch, _) if !traits.is_empty() => Err(invalid(
            "traits",
            "a customer-match audience holds hashed addresses only",
        )),
        (Format::CustomerMatch, None | Some("advertising")) => Ok(Purpose::Advertising),
        (Format::CustomerMatch, Some(_)) => Err(invalid(
            "purpose",
            "a customer-match audience is for the purpose advertising",
        )),
        (Format::Csv, Some("advertising")) => Err(invalid(
            "purpose",
            "consent to advertising covers hashed addresses only: use format customer_match",
        )),
        (Format::Csv, Some(p)) => Purpose::parse(p).ok_or_else(|| {
            invalid(
                "purpose",
                format!(
                    "purpose {p:?} is not one of {}",
                    Purpose::ALL.map(Purpose::as_str).join(", ")
                ),
            )
        }),
        (Format::Csv, None) => Err(invalid(
            "purpose",
            "name the purpose the export serves: only people who consented to it are written",
        )),
    }
}

/// Exports segment `name`'s members (see the module documentation).
pub async fn export(
    engine: &Engine,
    name: &str,
    format: Format,
    purpose: Option<&str>,
    traits: &[String],
) -> Result<Export, AudienceError> {
    let purpose = purpose_of(format, purpose, traits)?;
    let segments = engine.segments();
    if segments.get(name).await?.is_none() {
        return Err(AudienceError::UnknownSegment(name.to_owned()));
    }
    engine.sync().await?;
    let csv_error = |e: csv::Error| AudienceError::Csv(e.to_string());
    let mut out = csv::Writer::from_writer(Vec::new());
    let header: Vec<String> = match format {
        Format::Csv => ["profile_id", "email"]
            .into_iter()
            .map(str::to_owned)
            .chain(traits.iter().map(|t| cell(t)))
            .collect(),
        Format::CustomerMatch => vec!["Email".to_owned()],
    };
    out.write_record(&header).map_err(csv_error)?;
    let (mut written, mut left_out) = (0u64, 0u64);
    let mut after = None;
    loop {
        let page = segments.members(name, after.clone(), PAGE).await?;
        let Some(last) = page.last().cloned() else { break };
        after = Some(last);
        for id in page {
            let profile = engine.profiles().find_bare(&ProfileKey::Id(id.clone())).await?;
            let Some((p, email)) = profile
                .as_ref()
                .filter(|p| p.consents(purpose))
                .and_then(|p| p.email().map(|e| (p, e)))
            else {
                left_out += 1;
                continue;
            };
            let row: Vec<String> = match format {
                Format::CustomerMatch => vec![customer_match_hash(email)],
                Format::Csv => {
                    let mut row = vec![id.to_string(), cell(email)];
                    row.extend(traits.iter().map(|t| match p.traits.get(t).map(|t| &t.value) {
                        None | Some(serde_json::Value::Null) => String::new(),
                        Some(serde_json::Value::String(s)) => cell(s),
                        Some(v) => cell(&v.to_string()),
                    }));
                    row
                }
            };
            out.write_record(&row).map_err(csv_error)?;
            written += 1;
        }
    }
    let csv = out.into_inner().map_err(|e| AudienceError::Csv(e.to_string()))?;
    Ok(Export {
        csv,
        written,
        left_out,
    })
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

    #[test]
    fn formulas_are_defused_and_requests_checked() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("Paris"), "Paris");
        assert_eq!(
            purpose_of(Format::CustomerMatch, None, &[]).unwrap(),
            Purpose::Advertising
        );
        for (format, purpose, traits, field) in [
            (Format::Csv, None, vec![], "purpose"),
            (Format::Csv, Some("spam"), vec![], "purpose"),
            (Format::CustomerMatch, Some("profiling"), vec![], "purpose"),
            (Format::CustomerMatch, None, vec!["city".to_owned()], "traits"),
            (Format::Csv, Some("advertising"), vec![], "purpose"),
        ] {
            match purpose_of(format, purpose, &traits) {
                Err(AudienceError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }
}
