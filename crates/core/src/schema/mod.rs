//! The workspace's data schema: which traits, events and event properties exist and of what
//! type, as the engine first and last saw them, as the operator declared them, and as
//! Segment's spec defines them.
//!
//! Segment expressions are checked against it (an unknown name is refused with the nearest
//! known ones as a hint; a string compared with a number trait is refused), and
//! `GET /v1/schema` shows it. Three sources, strongest first, decide the type a field is
//! checked as ([`SchemaField::check_type`]):
//!
//! 1. a **declaration** by the operator (`PUT /v1/schema/…`), so that a segment can name a
//!    trait before any data carries it;
//! 2. what was **observed** in ingested events: one type, or several (then any comparison is
//!    accepted);
//! 3. **Segment's spec** ([`spec`]): its reserved identify traits and its e-commerce events,
//!    known before the first event arrives.
//!
//! No value of a trait is ever copied into the schema but `true` and `false`: a trait describes
//! a person (an address, a name, a birthday, an age, a phone number sent as a number). Event
//! properties describe what happened (a price, a quantity), so up to [`MAX_EXAMPLES`] distinct
//! numbers or booleans are kept as examples of each; strings and times never are. Names are
//! kept up to [`MAX_NAME_BYTES`], and at most [`MAX_FIELDS`] fields: beyond them a name is not
//! recorded (it is still ingested), so that a client sending made-up keys cannot grow the
//! schema without bound.

mod registry;
pub mod spec;

pub use registry::SchemaRegistry;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Distinct example values kept per field (see the module docs for which).
pub const MAX_EXAMPLES: usize = 3;
/// Longest name recorded, in bytes.
pub const MAX_NAME_BYTES: usize = 200;
/// Most fields (traits, events and properties together) recorded.
pub const MAX_FIELDS: usize = 10_000;

/// The type of a trait or property value.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum FieldType {
    // The values are bit positions in stored rows ([`TypeSet::bits`]): never renumber them.
    String = 0,
    Number = 1,
    Bool = 2,
    Time = 3,
    List = 4,
    Object = 5,
}

impl FieldType {
    pub const ALL: [FieldType; 6] = [
        FieldType::String,
        FieldType::Number,
        FieldType::Bool,
        FieldType::Time,
        FieldType::List,
        FieldType::Object,
    ];

    /// The type of a JSON value; `None` for `null` (it says nothing about the field). A string
    /// that reads as a date-time (ISO 8601) is a time.
    pub fn of(v: &Value) -> Option<Self> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(_) => FieldType::Bool,
            Value::Number(_) => FieldType::Number,
            Value::String(s) if looks_like_time(s) => FieldType::Time,
            Value::String(_) => FieldType::String,
            Value::Array(_) => FieldType::List,
            Value::Object(_) => FieldType::Object,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Bool => "bool",
            FieldType::Time => "time",
            FieldType::List => "list",
            FieldType::Object => "object",
        }
    }

    /// Reads a type name as [`FieldType::as_str`] writes it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// `YYYY-MM-DD…` that parses as a date-time. The cheap test first: most strings are not times.
fn looks_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && crate::message::parse_time(s).is_some()
}

/// The types a field was seen with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TypeSet(u8);

impl TypeSet {
    pub fn insert(&mut self, t: FieldType) -> bool {
        let had = self.0 & t.bit() != 0;
        self.0 |= t.bit();
        !had
    }

    pub fn contains(self, t: FieldType) -> bool {
        self.0 & t.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: TypeSet) -> TypeSet {
        TypeSet(self.0 | other.0)
    }

    /// The one type, when there is exactly one.
    pub fn single(self) -> Option<FieldType> {
        let mut it = self.iter();
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }

    pub fn iter(self) -> impl Iterator<Item = FieldType> {
        FieldType::ALL.into_iter().filter(move |t| self.contains(*t))
    }

    /// The bits as stored.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// From stored bits; unknown bits are dropped.
    pub fn from_bits(bits: u8) -> Self {
        TypeSet(bits & ((1 << FieldType::ALL.len()) - 1))
    }
}

impl FromIterator<FieldType> for TypeSet {
    fn from_iter<I: IntoIterator<Item = FieldType>>(iter: I) -> Self {
        let mut s = TypeSet::default();
        for t in iter {
            s.insert(t);
        }
        s
    }
}

impl Serialize for TypeSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for TypeSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<FieldType>::deserialize(d)?.into_iter().collect())
    }
}

/// What a schema field names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// A trait of a profile (`traits.NAME`).
    Trait,
    /// An event name (`events."NAME"`, `count(event "NAME")`).
    Event,
    /// A top-level property of one event (`where properties.NAME`).
    Property,
}

impl FieldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Trait => "trait",
            FieldKind::Event => "event",
            FieldKind::Property => "property",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [FieldKind::Trait, FieldKind::Event, FieldKind::Property]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Which field: a trait, an event, or a property of an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldKey {
    pub kind: FieldKind,
    /// The event a property belongs to; empty for traits and events.
    pub event: String,
    pub name: String,
}

impl FieldKey {
    pub fn trait_(name: impl Into<String>) -> Self {
        Self {
            kind: FieldKind::Trait,
            event: String::new(),
            name: name.into(),
        }
    }

    pub fn event(name: impl Into<String>) -> Self {
        Self {
            kind: FieldKind::Event,
            event: String::new(),
            name: name.into(),
        }
    }

    pub fn property(event: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: FieldKind::Property,
            event: event.into(),
            name: name.into(),
        }
    }
}

/// What ingest saw of a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Observed {
    /// The types its values had (empty for an event name, which has no value).
    pub types: TypeSet,
    /// A few distinct values, numbers and booleans only (see the module docs).
    pub examples: Vec<Value>,
    /// When an event carrying it was first and last received.
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl Observed {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            types: TypeSet::default(),
            examples: Vec::new(),
            first_seen: at,
            last_seen: at,
        }
    }

    /// Takes in one value received at `at`. `numbers` says whether numbers may be kept as
    /// examples (event properties) or only booleans (traits).
    pub fn observe(&mut self, value: Option<&Value>, at: DateTime<Utc>, numbers: bool) {
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
        let Some(v) = value else { return };
        // A string seen as both a string and a time before has nothing more to tell: spare
        // the date-time parse.
        let known_both = self.types.contains(FieldType::String) && self.types.contains(FieldType::Time);
        if !(known_both && v.is_string())
            && let Some(t) = FieldType::of(v)
        {
            self.types.insert(t);
        }
        let example = match v {
            Value::Bool(_) => true,
            Value::Number(_) => numbers,
            _ => false,
        };
        if example && self.examples.len() < MAX_EXAMPLES && !self.examples.contains(v) {
            self.examples.push(v.clone());
        }
    }
}

/// One field of the schema, from all three sources.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SchemaField {
    pub kind: FieldKind,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub event: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared: Option<Declared>,
    /// The type Segment's spec gives it, when the spec names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<SpecType>,
}

/// A field the operator declared before (or regardless of) data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Declared {
    /// `None`: any type (an event name has none).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<FieldType>,
    pub at: DateTime<Utc>,
}

/// The spec's type of a field, `None` for an event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SpecType {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<FieldType>,
}

impl SchemaField {
    fn new(key: FieldKey) -> Self {
        Self {
            kind: key.kind,
            event: key.event,
            name: key.name,
            observed: None,
            declared: None,
            spec: None,
        }
    }

    pub fn key(&self) -> FieldKey {
        FieldKey {
            kind: self.kind,
            event: self.event.clone(),
            name: self.name.clone(),
        }
    }

    /// The type the field is checked as; `None` accepts any comparison. A declaration wins;
    /// then what was observed (one type, or any when values came in several); then the spec.
    pub fn check_type(&self) -> Option<FieldType> {
        if let Some(d) = &self.declared {
            return d.ty;
        }
        if let Some(o) = &self.observed
            && !o.types.is_empty()
        {
            return o.types.single();
        }
        self.spec.and_then(|s| s.ty)
    }
}

/// A stored row of the schema: what was observed of a field and what was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredField {
    pub key: FieldKey,
    pub observed: Option<Observed>,
    pub declared: Option<Declared>,
}

/// The whole schema: the stored rows over Segment's spec, ordered by kind, event and name.
pub fn assemble(stored: Vec<StoredField>) -> Vec<SchemaField> {
    let mut all: BTreeMap<FieldKey, SchemaField> = BTreeMap::new();
    for (key, ty) in spec::fields() {
        all.entry(key.clone())
            .or_insert_with(|| SchemaField::new(key))
            .spec = Some(SpecType { ty });
    }
    for row in stored {
        if row.observed.is_none() && row.declared.is_none() {
            continue;
        }
        let f = all
            .entry(row.key.clone())
            .or_insert_with(|| SchemaField::new(row.key));
        f.observed = row.observed;
        f.declared = row.declared;
    }
    // A property makes its event known, whichever source named it.
    let events: Vec<FieldKey> = all
        .keys()
        .filter(|k| k.kind == FieldKind::Property)
        .map(|k| FieldKey::event(k.event.clone()))
        .collect();
    for e in events {
        all.entry(e.clone()).or_insert_with(|| SchemaField::new(e));
    }
    all.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn types_of_values() {
        let cases = [
            (json!(null), None),
            (json!(true), Some(FieldType::Bool)),
            (json!(3.5), Some(FieldType::Number)),
            (json!("Paris"), Some(FieldType::String)),
            (json!("2026-01-31T10:00:00Z"), Some(FieldType::Time)),
            (json!("2026-01-31 10:00:00"), Some(FieldType::Time)),
            (json!("2026-13-45T99:00:00Z"), Some(FieldType::String)),
            (json!("1234-not a date"), Some(FieldType::String)),
            (json!([1, 2]), Some(FieldType::List)),
            (json!({"a": 1}), Some(FieldType::Object)),
        ];
        for (v, want) in cases {
            assert_eq!(FieldType::of(&v), want, "{v}");
        }
    }

    #[test]
    fn type_sets_round_trip_and_name_their_single_type() {
        let s: TypeSet = [FieldType::Number].into_iter().collect();
        assert_eq!(s.single(), Some(FieldType::Number));
        let two = s.union([FieldType::String].into_iter().collect());
        assert_eq!(two.single(), None);
        assert_eq!(TypeSet::from_bits(two.bits()), two);
        assert_eq!(serde_json::to_value(two).unwrap(), json!(["string", "number"]));
        let back: TypeSet = serde_json::from_value(json!(["string", "number"])).unwrap();
        assert_eq!(back, two);
        for t in FieldType::ALL {
            assert_eq!(FieldType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn observations_keep_types_times_and_only_numeric_or_boolean_examples() {
        let mut o = Observed::new(at("2026-02-01T00:00:00Z"));
        o.observe(Some(&json!(30)), at("2026-02-01T00:00:00Z"), true);
        o.observe(Some(&json!("ann@example.com")), at("2026-01-01T00:00:00Z"), true);
        o.observe(
            Some(&json!("1990-05-04T00:00:00Z")),
            at("2026-03-01T00:00:00Z"),
            true,
        );
        o.observe(
            Some(&json!("1990-05-05T00:00:00Z")),
            at("2026-03-01T00:00:00Z"),
            true,
        );
        for n in [30, 31, 32, 33] {
            o.observe(Some(&json!(n)), at("2026-02-02T00:00:00Z"), true);
        }
        assert_eq!(
            o.types,
            [FieldType::Number, FieldType::String, FieldType::Time]
                .into_iter()
                .collect()
        );
        assert_eq!(o.examples, vec![json!(30), json!(31), json!(32)]);
        assert_eq!(o.first_seen, at("2026-01-01T00:00:00Z"));
        assert_eq!(o.last_seen, at("2026-03-01T00:00:00Z"));
    }

    /// A trait's numbers (an age, a phone number) are never examples; its booleans are.
    #[test]
    fn trait_observations_keep_only_boolean_examples() {
        let mut o = Observed::new(at("2026-02-01T00:00:00Z"));
        for v in [json!(41), json!(true), json!("x"), json!(false)] {
            o.observe(Some(&v), at("2026-02-01T00:00:00Z"), false);
        }
        assert_eq!(o.examples, vec![json!(true), json!(false)]);
        assert_eq!(o.types.iter().count(), 3);
    }

    #[test]
    fn stored_type_bits_never_change() {
        let bits: Vec<u8> = FieldType::ALL
            .iter()
            .map(|t| TypeSet::from_iter([*t]).bits())
            .collect();
        assert_eq!(bits, vec![1, 2, 4, 8, 16, 32]);
    }

    #[test]
    fn the_checked_type_prefers_a_declaration_then_observations_then_the_spec() {
        let observed = |types: &[FieldType]| {
            let mut o = Observed::new(at("2026-01-01T00:00:00Z"));
            o.types = types.iter().copied().collect();
            Some(o)
        };
        let declared = |ty| {
            Some(Declared {
                ty,
                at: at("2026-01-01T00:00:00Z"),
            })
        };
        let spec = |ty| Some(SpecType { ty });
        let field = |observed, declared, spec| SchemaField {
            observed,
            declared,
            spec,
            ..SchemaField::new(FieldKey::trait_("age"))
        };
        let n = Some(FieldType::Number);
        let s = Some(FieldType::String);
        let cases = [
            (field(None, None, spec(n)), n),
            (field(observed(&[FieldType::String]), None, spec(n)), s),
            (
                field(observed(&[FieldType::String, FieldType::Number]), None, spec(n)),
                None,
            ),
            (field(observed(&[FieldType::String]), declared(n), None), n),
            (field(observed(&[]), None, spec(n)), n),
            (field(None, declared(None), spec(n)), None),
        ];
        for (i, (f, want)) in cases.into_iter().enumerate() {
            assert_eq!(f.check_type(), want, "case {i}");
        }
    }

    #[test]
    fn assembling_puts_stored_rows_over_the_spec_and_knows_the_events_of_properties() {
        let mut o = Observed::new(at("2026-01-01T00:00:00Z"));
        o.observe(Some(&json!("30")), at("2026-01-01T00:00:00Z"), false);
        let all = assemble(vec![
            StoredField {
                key: FieldKey::trait_("age"),
                observed: Some(o.clone()),
                declared: None,
            },
            StoredField {
                key: FieldKey::property("Size Chosen", "size"),
                observed: Some(o),
                declared: None,
            },
            StoredField {
                key: FieldKey::trait_("forgotten"),
                observed: None,
                declared: None,
            },
        ]);
        let find = |k: FieldKey| all.iter().find(|f| f.key() == k);
        let age = find(FieldKey::trait_("age")).unwrap();
        assert_eq!(
            age.check_type(),
            Some(FieldType::String),
            "data wins over the spec"
        );
        assert_eq!(age.spec.unwrap().ty, Some(FieldType::Number));
        assert!(find(FieldKey::event("Size Chosen")).is_some());
        assert!(
            find(FieldKey::event("Order Completed")).is_some(),
            "from the spec"
        );
        assert!(
            find(FieldKey::trait_("forgotten")).is_none(),
            "an empty row is no field"
        );
        let mut sorted = all.clone();
        sorted.sort_by_key(SchemaField::key);
        assert_eq!(sorted, all);
    }
}
