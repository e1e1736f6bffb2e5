//! Type-checking and compilation: a segment that compares a number trait with a string is
//! refused when it is saved, not silently false forever.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use chrono::{DateTime, Utc};

use crate::ast::{Aggregate, CompareOp, Expr, Field, Literal, Operand, Path, Span, TimeRef};
use crate::parse::{ParseError, parse, parse_date};

pub use missive_core::schema::FieldType;

/// What is known of the workspace's data: its traits, events and event properties, and the
/// type each is checked as (`None`: any). A **closed** schema (the workspace's own, from
/// `missive_core::schema`) refuses names it does not list; an open one (a schema built by
/// hand, or re-compiling a segment saved earlier) accepts them with any type.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub traits: BTreeMap<String, Option<FieldType>>,
    /// Each known event with its known properties.
    pub events: BTreeMap<String, BTreeMap<String, Option<FieldType>>>,
    pub closed: bool,
}

impl Schema {
    /// An open schema that knows the types of `traits`.
    pub fn open_with_traits(traits: impl IntoIterator<Item = (String, FieldType)>) -> Self {
        Self {
            traits: traits.into_iter().map(|(k, t)| (k, Some(t))).collect(),
            ..Self::default()
        }
    }

    /// The workspace's closed schema from its fields.
    pub fn closed_from(fields: &[missive_core::schema::SchemaField]) -> Self {
        use missive_core::schema::FieldKind;
        let mut s = Self {
            closed: true,
            ..Self::default()
        };
        for f in fields {
            match f.kind {
                FieldKind::Trait => {
                    s.traits.insert(f.name.clone(), f.check_type());
                }
                FieldKind::Event => {
                    s.events.entry(f.name.clone()).or_default();
                }
                FieldKind::Property => {
                    s.events
                        .entry(f.event.clone())
                        .or_default()
                        .insert(f.name.clone(), f.check_type());
                }
            }
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{message} at line {line}, column {column}")]
pub struct TypeError {
    pub message: String,
    pub line: u32,
    pub column: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{0}")]
    Type(#[from] TypeError),
}

/// What a segment reads: a change to anything else cannot change its answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inputs {
    pub traits: BTreeSet<String>,
    /// Event names counted or summed, or whose aggregates are read.
    pub events: BTreeSet<String>,
    pub orders: bool,
    pub seen: bool,
    pub segments: BTreeSet<String>,
    pub scores: bool,
    /// Whether its answer can change with time alone (windows, `… ago`).
    pub time_dependent: bool,

    /// Per event name an aggregate counts: how far back its events matter (`None`: all time).
    #[serde(skip)]
    pub windows: BTreeMap<String, Option<chrono::TimeDelta>>,
}

/// A compiled segment.
#[derive(Debug, Clone)]
pub struct Segment {
    pub(crate) source: String,
    pub(crate) expr: Expr,
    /// `expr` as evaluated: cheapest sides first, aggregates in their set's slots ([`crate::plan`]).
    pub(crate) plan: Expr,
    pub(crate) inputs: Inputs,
    /// When it reads `first_seen`/`last_seen` only as `last_seen after T` outside any `not`:
    /// those thresholds. A later `last_seen` keeps such a predicate true, so an event need
    /// not re-check the segment for `last_seen` while every one of them was true already
    /// (time turning one false is the segment's timer).
    pub(crate) seen_after: Option<SeenAfter>,
}

/// The thresholds of a segment's `last_seen after T`, reduced to the two that decide: the
/// shortest `… ago` and the latest date. All are true exactly when those two are.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeenAfter {
    shortest_ago: Option<chrono::TimeDelta>,
    latest_at: Option<DateTime<Utc>>,
}

impl SeenAfter {
    fn of(thresholds: &[TimeRef]) -> Self {
        let mut out = Self::default();
        for t in thresholds {
            match t {
                TimeRef::Ago(d) => out.shortest_ago = Some(out.shortest_ago.map_or(*d, |s| s.min(*d))),
                TimeRef::At(at) => out.latest_at = Some(out.latest_at.map_or(*at, |l| l.max(*at))),
            }
        }
        out
    }
}

impl Segment {
    /// Parses and type-checks `source`.
    pub fn compile(source: &str, schema: &Schema) -> Result<Self, SegmentError> {
        let expr = parse(source)?;
        let mut inputs = Inputs::default();
        check(&expr, schema, &mut inputs, None)?;
        let mut thresholds = Vec::new();
        let seen_after = (inputs.seen && seen_only_after(&expr, true, &mut thresholds))
            .then(|| SeenAfter::of(&thresholds));
        Ok(Self {
            source: source.to_owned(),
            plan: crate::plan::plan(&expr),
            expr,
            inputs,
            seen_after,
        })
    }

    /// Whether a change that moved `last_seen` forward from `before`, which was `age` before
    /// now (and touched nothing else it reads), leaves its answer as it was: see `seen_after`.
    /// `before > now - d` is `age < d`, so no date arithmetic is done per segment.
    pub(crate) fn unmoved_by_seen(&self, before: DateTime<Utc>, age: chrono::TimeDelta) -> bool {
        self.seen_after
            .as_ref()
            .is_some_and(|s| s.shortest_ago.is_none_or(|d| age < d) && s.latest_at.is_none_or(|t| before > t))
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }
}

/// The static type of an operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    Num,
    Bool,
    Time,
    List,
    /// Unknown until run time: a field seen with several types, declared without one, an
    /// object's inner field, or any name of an open schema.
    Any,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Str => "a string",
            Ty::Num => "a number",
            Ty::Bool => "a boolean",
            Ty::Time => "a time",
            Ty::List => "a list",
            Ty::Any => "anything",
        }
    }
}

fn type_error(span: Span, message: String, hint: Option<&str>) -> TypeError {
    TypeError {
        message,
        line: span.line,
        column: span.column,
        hint: hint.map(str::to_owned),
    }
}

const ROOTS: &str = "traits.NAME, orders.count, orders.revenue, orders.average_order_value, orders.first_at, \
orders.last_at, rfm.recency_days, rfm.frequency, rfm.monetary, first_seen, last_seen, \
events.\"Name\".count, events.\"Name\".last_at, scores.NAME, model.cluster";

/// The type of a path, recording what it reads.
pub(crate) fn path_type(
    path: &Path,
    schema: &Schema,
    inputs: &mut Inputs,
    filter: Option<&str>,
) -> Result<Ty, TypeError> {
    let p: Vec<&str> = path.parts.iter().map(String::as_str).collect();
    let unknown = || {
        type_error(
            path.span,
            format!("unknown field `{}`", path.dotted()),
            Some(if filter.is_some() {
                "inside `where`, name event properties as properties.NAME"
            } else {
                ROOTS
            }),
        )
    };
    if let Some(event) = filter {
        return match p.as_slice() {
            ["properties", name, rest @ ..] => {
                let ty = property_type(schema, event, name, path.span)?;
                Ok(if rest.is_empty() { ty } else { Ty::Any })
            }
            _ => Err(unknown()),
        };
    }
    Ok(match p.as_slice() {
        ["traits", name] => {
            inputs.traits.insert((*name).to_owned());
            match schema.traits.get(*name) {
                Some(t) => ty_of(*t),
                None if schema.closed => {
                    return Err(unknown_name(
                        path.span,
                        &format!("unknown trait `{name}`"),
                        name,
                        schema.traits.keys(),
                        |n| written("traits.", n),
                        &format!("PUT /v1/schema/traits/{}", path_segment(name)),
                    ));
                }
                None => Ty::Any,
            }
        }
        ["orders", field] => {
            inputs.orders = true;
            match *field {
                "count" | "revenue" | "average_order_value" | "aov" => Ty::Num,
                "first_at" | "last_at" => Ty::Time,
                _ => return Err(unknown()),
            }
        }
        ["rfm", field] => {
            inputs.orders = true;
            match *field {
                "recency_days" => {
                    inputs.time_dependent = true;
                    Ty::Num
                }
                "frequency" | "monetary" => Ty::Num,
                _ => return Err(unknown()),
            }
        }
        ["first_seen"] | ["last_seen"] => {
            inputs.seen = true;
            Ty::Time
        }
        ["events", name, field] => {
            check_event(schema, name, path.span)?;
            inputs.events.insert((*name).to_owned());
            match *field {
                "count" => Ty::Num,
                "first_at" | "last_at" => Ty::Time,
                _ => return Err(unknown()),
            }
        }
        ["scores", _] => {
            inputs.scores = true;
            Ty::Num
        }
        ["model", "cluster"] => {
            inputs.scores = true;
            Ty::Any
        }
        _ => return Err(unknown()),
    })
}

fn ty_of(t: Option<FieldType>) -> Ty {
    match t {
        Some(FieldType::String) => Ty::Str,
        Some(FieldType::Number) => Ty::Num,
        Some(FieldType::Bool) => Ty::Bool,
        Some(FieldType::Time) => Ty::Time,
        Some(FieldType::List) => Ty::List,
        Some(FieldType::Object) | None => Ty::Any,
    }
}

/// Refuses an event name a closed schema does not know.
fn check_event(schema: &Schema, name: &str, span: Span) -> Result<(), TypeError> {
    if !schema.closed || schema.events.contains_key(name) {
        return Ok(());
    }
    Err(unknown_name(
        span,
        &format!("unknown event {name:?}"),
        name,
        schema.events.keys(),
        |n| format!("event {n:?}"),
        &format!("PUT /v1/schema/events/{}", path_segment(name)),
    ))
}

/// The type of property `name` of `event`; refused when a closed schema does not know it.
fn property_type(schema: &Schema, event: &str, name: &str, span: Span) -> Result<Ty, TypeError> {
    let props = schema.events.get(event);
    match props.and_then(|p| p.get(name)) {
        Some(t) => Ok(ty_of(*t)),
        None if schema.closed => Err(unknown_name(
            span,
            &format!("event {event:?} has no known property `{name}`"),
            name,
            props.into_iter().flat_map(|p| p.keys()),
            |n| written("properties.", n),
            &format!(
                "PUT /v1/schema/events/{}/properties/{}",
                path_segment(event),
                path_segment(name)
            ),
        )),
        None => Ok(Ty::Any),
    }
}

/// A name as a URL path segment (spaces and the like percent-encoded).
fn path_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A field as the language writes it: `traits.age`, or `traits."first name"` when the name
/// is not a plain identifier.
fn written(root: &str, name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{root}{name}")
    } else {
        format!("{root}{name:?}")
    }
}

/// An unknown name's error: the nearest known names, or what is known, and how to declare it.
fn unknown_name<'a>(
    span: Span,
    message: &str,
    name: &str,
    known: impl Iterator<Item = &'a String> + Clone,
    show: impl Fn(&str) -> String,
    declare: &str,
) -> TypeError {
    let near = crate::suggest::nearest(name, known.clone().map(String::as_str));
    let first = if near.is_empty() {
        let all: Vec<&str> = known.map(String::as_str).take(12).collect();
        if all.is_empty() {
            "none is known yet".to_owned()
        } else {
            format!("known: {} (GET /v1/schema lists all)", all.join(", "))
        }
    } else {
        let names: Vec<String> = near.iter().map(|n| format!("`{}`", show(n))).collect();
        format!("did you mean {}?", names.join(" or "))
    };
    type_error(
        span,
        message.to_owned(),
        Some(&format!(
            "{first}; to use a name before any data carries it, declare it: {declare}"
        )),
    )
}

fn literal_type(l: &Literal) -> Ty {
    match l {
        Literal::Str(_) => Ty::Str,
        Literal::Num(_) => Ty::Num,
        Literal::Bool(_) => Ty::Bool,
        Literal::List(_) => Ty::List,
    }
}

fn operand_type(
    o: &Operand,
    schema: &Schema,
    inputs: &mut Inputs,
    filter: Option<&str>,
) -> Result<Ty, TypeError> {
    match o {
        Operand::Path(p) => path_type(p, schema, inputs, filter),
        Operand::Literal(l) => Ok(literal_type(l)),
        Operand::Aggregate(a) => {
            if filter.is_some() {
                return Err(type_error(
                    a.span,
                    "an aggregate cannot appear inside `where`".into(),
                    None,
                ));
            }
            check_aggregate(a, schema, inputs)?;
            Ok(Ty::Num)
        }
    }
}

fn check_aggregate(a: &Aggregate, schema: &Schema, inputs: &mut Inputs) -> Result<(), TypeError> {
    check_event(schema, &a.event, a.span)?;
    if let Some(p) = &a.property {
        // Numbers sent as strings ("19.99") are summed too.
        let t = property_type(schema, &a.event, p, a.span)?;
        if !matches!(t, Ty::Num | Ty::Str | Ty::Any) {
            return Err(type_error(
                a.span,
                format!(
                    "`sum` adds up numbers, but property `{p}` of event {:?} is {}",
                    a.event,
                    t.name()
                ),
                Some("sum a number property, or count the events"),
            ));
        }
    }
    inputs.events.insert(a.event.clone());
    let entry = inputs.windows.entry(a.event.clone()).or_insert(a.within);
    *entry = match (*entry, a.within) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    };
    if a.within.is_some() {
        inputs.time_dependent = true;
    }
    if let Some(w) = a.within
        && w <= chrono::TimeDelta::zero()
    {
        return Err(type_error(
            a.span,
            "the window must be longer than zero".into(),
            Some("within 7d"),
        ));
    }
    if let Some(f) = &a.filter {
        check(f, schema, inputs, Some(&a.event))?;
    }
    Ok(())
}

fn span_of(o: &Operand, fallback: Span) -> Span {
    match o {
        Operand::Path(p) => p.span,
        Operand::Aggregate(a) => a.span,
        Operand::Literal(_) => fallback,
    }
}

fn compatible(a: Ty, b: Ty) -> bool {
    a == b || a == Ty::Any || b == Ty::Any
}

fn check(e: &Expr, schema: &Schema, inputs: &mut Inputs, filter: Option<&str>) -> Result<(), TypeError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check(a, schema, inputs, filter)?;
            check(b, schema, inputs, filter)
        }
        Expr::Not(a) => check(a, schema, inputs, filter),
        Expr::InSegment { name, span } => {
            if filter.is_some() {
                return Err(type_error(
                    *span,
                    "segment membership cannot appear inside `where`".into(),
                    None,
                ));
            }
            inputs.segments.insert(name.clone());
            Ok(())
        }
        Expr::Exists { path, .. } => path_type(path, schema, inputs, filter).map(|_| ()),
        Expr::Time { left, at, span, .. } => {
            let t = operand_type(left, schema, inputs, filter)?;
            if !compatible(t, Ty::Time) {
                return Err(type_error(
                    span_of(left, *span),
                    format!("`before` and `after` compare times, but this is {}", t.name()),
                    Some("last_seen before 30d ago"),
                ));
            }
            if matches!(at, crate::ast::TimeRef::Ago(_)) {
                inputs.time_dependent = true;
            }
            Ok(())
        }
        Expr::Compare {
            left,
            op,
            right,
            span,
        } => {
            let l = operand_type(left, schema, inputs, filter)?;
            let r = operand_type(right, schema, inputs, filter)?;
            let bad = |msg: String, hint: Option<&str>| Err(type_error(span_of(left, *span), msg, hint));
            // A string literal compared with a time must be a date.
            let date_literal = match (l, r, left, right) {
                (Ty::Time, _, _, Operand::Literal(Literal::Str(s)))
                | (_, Ty::Time, Operand::Literal(Literal::Str(s)), _) => Some(s),
                _ => None,
            };
            if let Some(s) = date_literal {
                if parse_date(s).is_none() {
                    return bad(format!("{s:?} is not a date"), Some("write \"2026-01-31\""));
                }
                return Ok(());
            }
            match op {
                CompareOp::Eq | CompareOp::Ne => {
                    if !compatible(l, r) {
                        return bad(
                            format!("cannot compare {} with {}", l.name(), r.name()),
                            Some(if l == Ty::Num {
                                "write the number without quotes"
                            } else {
                                "compare values of the same type"
                            }),
                        );
                    }
                }
                CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge => {
                    if !compatible(l, r)
                        || matches!(l, Ty::Bool | Ty::List)
                        || matches!(r, Ty::Bool | Ty::List)
                    {
                        return bad(
                            format!(
                                "`{}` orders numbers, times or strings, not {} and {}",
                                op.symbol(),
                                l.name(),
                                r.name()
                            ),
                            None,
                        );
                    }
                }
                CompareOp::In => {
                    let Operand::Literal(Literal::List(items)) = right else {
                        return bad(
                            "`in` needs a list".into(),
                            Some("traits.city in [\"Paris\", \"Lyon\"]"),
                        );
                    };
                    if let Some(item) = items.iter().find(|i| !compatible(l, literal_type(i))) {
                        return bad(
                            format!(
                                "the list holds {} but the field is {}",
                                literal_type(item).name(),
                                l.name()
                            ),
                            None,
                        );
                    }
                }
                CompareOp::Contains => {
                    if !(matches!(l, Ty::Str | Ty::List | Ty::Any))
                        || (l == Ty::Str && !compatible(r, Ty::Str))
                    {
                        return bad(
                            format!("`contains` looks inside a string or a list, not {}", l.name()),
                            None,
                        );
                    }
                }
                CompareOp::StartsWith => {
                    if !compatible(l, Ty::Str) || !compatible(r, Ty::Str) {
                        return bad(
                            format!("`starts_with` needs strings, not {} and {}", l.name(), r.name()),
                            None,
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// Whether every read of `first_seen` and `last_seen` in `e` is `last_seen after T` under an
/// even number of `not`s (`positive`); collects the `T`s.
fn seen_only_after(e: &Expr, positive: bool, out: &mut Vec<TimeRef>) -> bool {
    let is_seen =
        |o: &Operand| matches!(o, Operand::Path(p) if matches!(p.field, Field::FirstSeen | Field::LastSeen));
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            seen_only_after(a, positive, out) && seen_only_after(b, positive, out)
        }
        Expr::Not(a) => seen_only_after(a, !positive, out),
        Expr::Time { left, before, at, .. } => match left {
            Operand::Path(p) if p.field == Field::LastSeen && positive && !before => {
                out.push(at.clone());
                true
            }
            other => !is_seen(other),
        },
        Expr::Compare { left, right, .. } => !is_seen(left) && !is_seen(right),
        Expr::Exists { path, .. } => !matches!(path.field, Field::FirstSeen | Field::LastSeen),
        Expr::InSegment { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::open_with_traits([
            ("city".to_owned(), FieldType::String),
            ("age".to_owned(), FieldType::Number),
            ("vip".to_owned(), FieldType::Bool),
            ("tags".to_owned(), FieldType::List),
            ("signed_up_at".to_owned(), FieldType::Time),
        ])
    }

    #[test]
    fn a_number_trait_compared_with_a_string_is_refused() {
        let err = Segment::compile(r#"traits.age == "30""#, &schema()).unwrap_err();
        let SegmentError::Type(e) = err else {
            panic!("{err:?}")
        };
        assert_eq!((e.line, e.column), (1, 1));
        assert_eq!(e.message, "cannot compare a number with a string");
        assert_eq!(e.hint.as_deref(), Some("write the number without quotes"));
    }

    #[test]
    fn unknown_fields_and_bad_dates_are_refused_with_hints() {
        assert!(matches!(
            Segment::compile("orders.total > 3", &schema()),
            Err(SegmentError::Type(_))
        ));
        assert!(Segment::compile(r#"traits.signed_up_at > "yesterday""#, &schema()).is_err());
        assert!(Segment::compile(r#"traits.signed_up_at > "2026-01-01""#, &schema()).is_ok());
        assert!(Segment::compile(r#"traits.vip < true"#, &schema()).is_err());
        assert!(Segment::compile(r#"traits.city in ["Paris", 3]"#, &schema()).is_err());
        assert!(Segment::compile(r#"traits.tags contains "gold""#, &schema()).is_ok());
        assert!(Segment::compile(r#"traits.age starts_with "3""#, &schema()).is_err());
        assert!(Segment::compile(r#"count(event "X" where traits.city == "P") > 1"#, &schema()).is_err());
    }

    #[test]
    fn inputs_name_what_the_segment_reads() {
        let s = Segment::compile(
            r#"traits.city == "Paris" and count(event "Product Viewed" within 7d) >= 1 and segment "VIP" and orders.count > 1"#,
            &schema(),
        )
        .unwrap();
        let i = s.inputs();
        assert_eq!(i.traits, ["city".to_owned()].into());
        assert_eq!(i.events, ["Product Viewed".to_owned()].into());
        assert_eq!(i.segments, ["VIP".to_owned()].into());
        assert!(i.orders && i.time_dependent && !i.seen);
        let s = Segment::compile("traits.unknown_yet == 3", &schema()).unwrap();
        assert!(!s.inputs().time_dependent);
    }

    /// The workspace's schema: `age` a number, `city` seen with two types, `Product Added`
    /// with a number `price`.
    fn closed() -> Schema {
        let mut s = Schema {
            closed: true,
            ..Schema::default()
        };
        s.traits.insert("age".into(), Some(FieldType::Number));
        s.traits.insert("city".into(), None);
        s.events.insert(
            "Product Added".into(),
            [
                ("price".to_owned(), Some(FieldType::Number)),
                ("name".to_owned(), Some(FieldType::String)),
                ("on_sale".to_owned(), Some(FieldType::Bool)),
            ]
            .into(),
        );
        s.events.insert("Order Completed".into(), BTreeMap::new());
        s
    }

    fn type_err(src: &str) -> TypeError {
        match Segment::compile(src, &closed()) {
            Err(SegmentError::Type(e)) => e,
            other => panic!("{src}: {other:?}"),
        }
    }

    #[test]
    fn a_closed_schema_refuses_unknown_names_with_the_nearest_as_a_hint() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "traits.agee == 30",
                "unknown trait `agee`",
                "did you mean `traits.age`?",
            ),
            (
                r#"events."Product Aded".count > 1"#,
                "unknown event \"Product Aded\"",
                "did you mean `event \"Product Added\"`?",
            ),
            (
                r#"count(event "order completed") > 1"#,
                "unknown event \"order completed\"",
                "did you mean `event \"Order Completed\"`?",
            ),
            (
                r#"count(event "Product Added" where properties.prize > 3) > 1"#,
                "event \"Product Added\" has no known property `prize`",
                "did you mean `properties.price`?",
            ),
            (
                r#"sum(event "Product Added".cost) > 1"#,
                "event \"Product Added\" has no known property `cost`",
                "known: name, on_sale, price",
            ),
            ("traits.zzz exists", "unknown trait `zzz`", "known: age, city"),
        ];
        for (src, message, hint) in cases {
            let e = type_err(src);
            assert_eq!(&e.message, message, "{src}");
            let h = e.hint.unwrap_or_default();
            assert!(h.starts_with(hint), "{src}: {h}");
            assert!(h.contains("declare it: PUT /v1/schema/"), "{src}: {h}");
        }
        let e = type_err(r#"count(event "Size Chosen") > 1"#);
        assert!(e.hint.unwrap().contains("PUT /v1/schema/events/Size%20Chosen"));
    }

    #[test]
    fn a_closed_schema_type_checks_traits_and_properties() {
        assert_eq!(
            type_err(r#"sum(event "Product Added".on_sale) > 1"#).message,
            "`sum` adds up numbers, but property `on_sale` of event \"Product Added\" is a boolean"
        );
        assert_eq!(
            type_err(r#"traits.age == "30""#).message,
            "cannot compare a number with a string"
        );
        assert_eq!(
            type_err(r#"count(event "Product Added" where properties.price == "9") >= 1"#).message,
            "cannot compare a number with a string"
        );
        for ok in [
            "traits.age == 30",
            r#"traits.city == 3 or traits.city == "Paris""#,
            r#"count(event "Product Added" where properties.price > 3 and properties.name starts_with "S") >= 1"#,
            r#"count(event "Product Added" where properties.name.first == 3) >= 1"#,
            r#"sum(event "Product Added".price within 7d) > 1"#,
            r#"sum(event "Product Added".name within 7d) > 1"#,
            r#"count(event "Order Completed") == 0 and segment "anything""#,
        ] {
            Segment::compile(ok, &closed()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn an_open_schema_accepts_what_it_does_not_list() {
        for src in [
            "traits.agee == 30",
            r#"count(event "X" where properties.y == 1) > 0"#,
        ] {
            Segment::compile(src, &schema()).unwrap_or_else(|e| panic!("{src}: {e}"));
        }
    }
}
