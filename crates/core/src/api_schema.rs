//! OpenAPI schemas of the core types whose serde is written by hand (ids, error codes, sets):
//! the server's API description (`/openapi.json`) refers to them. Derived types carry
//! `#[derive(utoipa::ToSchema)]` beside their serde attributes instead.

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};

/// A string schema with a description (and, when the values are closed, their list).
pub fn string(description: &str, values: Option<Vec<&str>>) -> RefOr<Schema> {
    let mut b = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description));
    if let Some(values) = values {
        b = b.enum_values(Some(values));
    }
    RefOr::T(Schema::Object(b.build()))
}

/// An id missive mints: the prefix and 32 hex digits.
pub fn prefixed_id(prefix: &str, kind: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(format!("A {kind} id: `{prefix}` and 32 hex digits.")))
            .pattern(Some(format!("^{prefix}[0-9a-fA-F]{{32}}$")))
            .build(),
    ))
}

impl utoipa::PartialSchema for crate::ErrorCode {
    fn schema() -> RefOr<Schema> {
        string(
            "A machine-readable reason, stable across versions (docs/errors.md; new codes may be added).",
            Some(crate::ErrorCode::ALL.iter().map(|c| c.as_str()).collect()),
        )
    }
}
impl utoipa::ToSchema for crate::ErrorCode {}

impl utoipa::PartialSchema for crate::MessageId {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .description(Some("A message id as the client sent it (Segment's `messageId`), or `msv-…` when it sent none."))
                .min_length(Some(1))
                .max_length(Some(crate::MessageId::MAX_LEN))
                .build(),
        ))
    }
}
impl utoipa::ToSchema for crate::MessageId {}

impl utoipa::PartialSchema for crate::MessageSource {
    fn schema() -> RefOr<Schema> {
        string(
            "What queued a message: `journey:NAME`, `broadcast:ID`, or another source's text.",
            None,
        )
    }
}
impl utoipa::ToSchema for crate::MessageSource {}

impl utoipa::PartialSchema for crate::schema::TypeSet {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Array(
            ArrayBuilder::new()
                .items(<crate::schema::FieldType as utoipa::PartialSchema>::schema())
                .description(Some("The types seen, each once."))
                .build(),
        ))
    }
}
impl utoipa::ToSchema for crate::schema::TypeSet {}
