//! The syntax tree of a segment.

use chrono::TimeDelta;
use serde::Serialize;

/// Where in the source a node starts: 1-based line and column, and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub line: u32,
    pub column: u32,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `left op right`
    Compare {
        left: Operand,
        op: CompareOp,
        right: Operand,
        span: Span,
    },
    /// `path exists`
    Exists {
        path: Path,
        span: Span,
    },
    /// `last_seen before 30d ago`
    Time {
        left: Operand,
        before: bool,
        at: TimeRef,
        span: Span,
    },
    /// `segment "name"`
    InSegment {
        name: String,
        span: Span,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Contains,
    StartsWith,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::In => "in",
            Self::Contains => "contains",
            Self::StartsWith => "starts_with",
        }
    }
}

/// A point in time a segment compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeRef {
    /// `30d ago`
    Ago(TimeDelta),
    /// `"2026-01-01"` or an RFC 3339 time.
    At(chrono::DateTime<chrono::Utc>),
}

impl TimeRef {
    /// The instant it names at `now`.
    pub fn threshold(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        match self {
            TimeRef::Ago(d) => now
                .checked_sub_signed(*d)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
            TimeRef::At(t) => *t,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Path),
    Literal(Literal),
    Aggregate(Aggregate),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    List(Vec<Literal>),
}

/// A dotted name: `traits.city`, `orders.count`, `rfm.recency_days`, `properties.category`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub parts: Vec<String>,
    pub span: Span,
    /// What it names, resolved once when parsed (`Unknown` is refused by the type checker).
    pub field: Field,
}

impl Path {
    pub fn new(parts: Vec<String>, span: Span) -> Self {
        let field = Field::resolve(&parts);
        Self { parts, span, field }
    }

    pub fn dotted(&self) -> String {
        self.parts.join(".")
    }
}

/// The fields a segment can read.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Trait(String),
    OrdersCount,
    OrdersRevenue,
    OrdersAverage,
    OrdersFirstAt,
    OrdersLastAt,
    RecencyDays,
    Frequency,
    Monetary,
    FirstSeen,
    LastSeen,
    EventCount(String),
    EventFirstAt(String),
    EventLastAt(String),
    Score(String),
    Cluster,
    /// `properties.a.b` inside a `where`.
    Property(Vec<String>),
    Unknown,
}

impl Field {
    fn resolve(parts: &[String]) -> Field {
        let p: Vec<&str> = parts.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["traits", name] => Field::Trait((*name).to_owned()),
            ["orders", "count"] => Field::OrdersCount,
            ["orders", "revenue"] => Field::OrdersRevenue,
            ["orders", "average_order_value" | "aov"] => Field::OrdersAverage,
            ["orders", "first_at"] => Field::OrdersFirstAt,
            ["orders", "last_at"] => Field::OrdersLastAt,
            ["rfm", "recency_days"] => Field::RecencyDays,
            ["rfm", "frequency"] => Field::Frequency,
            ["rfm", "monetary"] => Field::Monetary,
            ["first_seen"] => Field::FirstSeen,
            ["last_seen"] => Field::LastSeen,
            ["events", name, "count"] => Field::EventCount((*name).to_owned()),
            ["events", name, "first_at"] => Field::EventFirstAt((*name).to_owned()),
            ["events", name, "last_at"] => Field::EventLastAt((*name).to_owned()),
            ["scores", name] => Field::Score((*name).to_owned()),
            ["model", "cluster"] => Field::Cluster,
            ["properties", rest @ ..] if !rest.is_empty() => {
                Field::Property(rest.iter().map(|s| (*s).to_owned()).collect())
            }
            _ => Field::Unknown,
        }
    }
}

/// `count(event "Name" where … within 7d)` or `sum(event "Name".revenue within 90d)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub kind: AggregateKind,
    pub event: String,
    /// `sum` adds up this property.
    pub property: Option<String>,
    pub filter: Option<Box<Expr>>,
    pub within: Option<TimeDelta>,
    pub span: Span,
    /// Its slot in a segment set's shared aggregates (see `plan`): segments of one set that
    /// count the same thing read one value per evaluation. `None` outside a set.
    pub(crate) slot: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    Count,
    Sum,
}
