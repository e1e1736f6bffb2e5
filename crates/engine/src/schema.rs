//! The workspace's schema over the store (`missive_core::schema` holds the rules): the fields
//! as `GET /v1/schema` shows them, the closed schema segment expressions are checked against
//! when they are saved or previewed, and declarations.

use chrono::{DateTime, Utc};
use missive_core::schema::{Declared, FieldKey, FieldKind, FieldType, SchemaField, assemble};
use missive_segment::Schema;
use missive_store::{Store, StoreError};

/// Every field: stored observations and declarations over Segment's spec.
pub async fn fields(store: &Store) -> Result<Vec<SchemaField>, StoreError> {
    Ok(assemble(store.events().schema_fields().await?))
}

/// The closed schema a new or changed expression is checked against. What the engine folded
/// but has not checkpointed yet is not in it: call [`crate::Engine::sync`] first when an
/// engine runs.
pub async fn segment_schema(store: &Store) -> Result<Schema, StoreError> {
    Ok(Schema::closed_from(&fields(store).await?))
}

/// Why a declaration was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeclareError {
    #[error("invalid {field}: {why}")]
    Invalid { field: &'static str, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn check_name(field: &'static str, name: &str) -> Result<(), DeclareError> {
    let why = if name.trim().is_empty() {
        "it must not be empty"
    } else if name.len() > 200 {
        "it must be at most 200 bytes"
    } else if name.chars().any(char::is_control) {
        "it must not contain control characters"
    } else {
        return Ok(());
    };
    Err(DeclareError::Invalid {
        field,
        why: why.into(),
    })
}

/// Checks a declaration: names, and a type only where values have one (not an event name).
pub fn check_declaration(key: &FieldKey, ty: Option<FieldType>) -> Result<(), DeclareError> {
    check_name("name", &key.name)?;
    match key.kind {
        FieldKind::Property => check_name("event", &key.event)?,
        FieldKind::Trait if key.name == "consent" => {
            return Err(DeclareError::Invalid {
                field: "name",
                why: "`consent` is not a trait: it changes the consent record (docs/privacy.md)".into(),
            });
        }
        FieldKind::Event if ty.is_some() => {
            return Err(DeclareError::Invalid {
                field: "type",
                why: "an event has no type; declare its properties instead".into(),
            });
        }
        FieldKind::Trait | FieldKind::Event => {}
    }
    Ok(())
}

/// Declares `key` (with a type, or any) at `at`; returns whether it was declared before.
pub async fn declare(
    store: &Store,
    key: FieldKey,
    ty: Option<FieldType>,
    at: DateTime<Utc>,
) -> Result<bool, DeclareError> {
    check_declaration(&key, ty)?;
    Ok(store
        .events()
        .declare_schema_field(key, Some(Declared { ty, at }))
        .await?)
}

/// Withdraws a declaration; returns whether there was one. What was observed stays.
pub async fn undeclare(store: &Store, key: FieldKey) -> Result<bool, StoreError> {
    store.events().declare_schema_field(key, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_checked() {
        let cases = [
            (FieldKey::trait_("vip"), Some(FieldType::Bool), true),
            (FieldKey::trait_(""), None, false),
            (FieldKey::trait_("consent"), None, false),
            (FieldKey::trait_("a\nb"), None, false),
            (FieldKey::event("Size Chosen"), None, true),
            (FieldKey::event("Size Chosen"), Some(FieldType::String), false),
            (
                FieldKey::property("Size Chosen", "size"),
                Some(FieldType::String),
                true,
            ),
            (FieldKey::property(" ", "size"), None, false),
        ];
        for (key, ty, ok) in cases {
            assert_eq!(check_declaration(&key, ty).is_ok(), ok, "{key:?} {ty:?}");
        }
    }
}
