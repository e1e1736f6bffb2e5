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
}

impl Path {
    pub fn dotted(&self) -> String {
        self.parts.join(".")
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateKind {
    Count,
    Sum,
}
