//! The schema's rows (`schema_fields`) as both backends store them: what was observed of a
//! field and what was declared, in plain columns.

use missive_core::schema::{Declared, FieldKey, FieldKind, FieldType, Observed, StoredField, TypeSet};

use super::{from_micros, micros};
use crate::StoreError;

/// One `schema_fields` row, column by column.
#[derive(Debug)]
pub(crate) struct SchemaRow {
    pub kind: String,
    pub event: String,
    pub name: String,
    /// `None` until observed.
    pub types: Option<i64>,
    pub examples: Option<String>,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub declared: bool,
    pub declared_type: Option<String>,
    pub declared_at: Option<i64>,
}

impl SchemaRow {
    pub(crate) fn into_field(self) -> Result<StoredField, StoreError> {
        let bad = |what: &str| StoreError::Corrupt(format!("schema field {:?}: {what}", self.name));
        let kind = FieldKind::parse(&self.kind).ok_or_else(|| bad("unknown kind"))?;
        let observed = match (self.types, self.first_seen, self.last_seen) {
            (Some(types), Some(first), Some(last)) => Some(Observed {
                types: TypeSet::from_bits(u8::try_from(types).map_err(|_| bad("types out of range"))?),
                examples: match &self.examples {
                    Some(e) => serde_json::from_str(e)?,
                    None => Vec::new(),
                },
                first_seen: from_micros(first),
                last_seen: from_micros(last),
            }),
            _ => None,
        };
        let declared = if self.declared {
            Some(Declared {
                ty: match &self.declared_type {
                    Some(t) => Some(FieldType::parse(t).ok_or_else(|| bad("unknown declared type"))?),
                    None => None,
                },
                at: from_micros(self.declared_at.ok_or_else(|| bad("declared without a time"))?),
            })
        } else {
            None
        };
        Ok(StoredField {
            key: FieldKey {
                kind,
                event: self.event,
                name: self.name,
            },
            observed,
            declared,
        })
    }
}

/// The observed columns of a field's row, to upsert.
#[derive(Debug)]
pub(crate) struct ObservedColumns {
    pub kind: &'static str,
    pub event: String,
    pub name: String,
    pub types: i64,
    pub examples: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

pub(crate) fn observed_columns(key: &FieldKey, o: &Observed) -> Result<ObservedColumns, StoreError> {
    Ok(ObservedColumns {
        kind: key.kind.as_str(),
        event: key.event.clone(),
        name: key.name.clone(),
        types: i64::from(o.types.bits()),
        examples: serde_json::to_string(&o.examples)?,
        first_seen: micros(o.first_seen),
        last_seen: micros(o.last_seen),
    })
}
