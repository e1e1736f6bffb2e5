//! The parsed form of a template: what the parser builds and the renderer walks.

use std::sync::Arc;

use crate::filters::Filter;
use crate::value::Value;

pub(crate) type Block = Vec<Node>;

/// Where a tag or output starts in its template: 1-based line and column, for render errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
}

#[derive(Debug)]
pub(crate) enum Node {
    Text(Box<str>),
    /// `{{ … }}` and `{% echo … %}`.
    Output(Box<Output>),
    Assign(Box<(Arc<str>, Output)>),
    Capture(Box<(Arc<str>, Block)>),
    If(Box<If>),
    Case(Box<Case>),
    For(Box<For>),
    Tablerow(Box<For>),
    Cycle(Box<Cycle>),
    Increment(Arc<str>),
    Decrement(Arc<str>),
    IfChanged(Box<Block>),
    Break,
    Continue,
    Include(Box<Include>),
    Render(Box<Include>),
    /// missive's `{% block "slot" %}`.
    Slot(Box<str>),
}

#[derive(Debug)]
pub(crate) struct Output {
    pub expr: Expr,
    pub filters: Vec<FilterCall>,
    pub pos: Pos,
}

#[derive(Debug)]
pub(crate) struct FilterCall {
    pub filter: Filter,
    pub name: Box<str>,
    pub args: Vec<Expr>,
    pub kwargs: Vec<(Box<str>, Expr)>,
}

#[derive(Debug)]
pub(crate) enum Expr {
    Lit(Value),
    /// The `empty` keyword: a plain `''` as a value, special in comparisons.
    Empty,
    /// The `blank` keyword: a plain `''` as a value, special in comparisons.
    Blank,
    Range(Box<(Expr, Expr)>),
    Path(Box<Path>),
}

#[derive(Debug)]
pub(crate) struct Path {
    pub head: Head,
    pub segs: Vec<Seg>,
}

#[derive(Debug)]
pub(crate) enum Head {
    Name(Arc<str>),
    Dyn(Expr),
}

#[derive(Debug)]
pub(crate) enum Seg {
    Key(Arc<str>),
    Index(i64),
    Dyn(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Contains,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Logic {
    And,
    Or,
}

#[derive(Debug)]
pub(crate) enum Cmp {
    Truthy(Expr),
    Bin(Expr, CmpOp, Expr),
}

/// `a and b or c`: comparisons joined by operators, grouped from the right as Liquid does.
#[derive(Debug)]
pub(crate) struct Cond {
    pub first: Cmp,
    pub rest: Vec<(Logic, Cmp)>,
    pub pos: Pos,
}

#[derive(Debug)]
pub(crate) struct If {
    pub branches: Vec<(Cond, bool, Block)>,
    pub otherwise: Option<Block>,
}

#[derive(Debug)]
pub(crate) enum Arm {
    When(Vec<Expr>, Block),
    Else(Block),
}

#[derive(Debug)]
pub(crate) struct Case {
    pub pos: Pos,
    pub subject: Expr,
    pub arms: Vec<Arm>,
}

#[derive(Debug)]
pub(crate) enum Offset {
    None,
    Continue,
    Expr(Expr),
}

#[derive(Debug)]
pub(crate) struct For {
    pub pos: Pos,
    pub var: Arc<str>,
    pub iter: Expr,
    /// `forloop.name` and the key of `offset: continue`: `item-collection.text`.
    pub name: Box<str>,
    pub reversed: bool,
    pub limit: Option<Expr>,
    pub offset: Offset,
    pub cols: Option<Expr>,
    pub body: Block,
    pub otherwise: Option<Block>,
}

#[derive(Debug)]
pub(crate) struct Cycle {
    pub group: Option<Expr>,
    pub items: Vec<Expr>,
    /// The register key of an unnamed cycle whose items are all literals: the values (so
    /// `'a', 'b'` and `"a","b"` share a group). `None` when an item is a variable: as in
    /// Shopify, such a tag is a group of its own.
    pub key: Option<Box<str>>,
    pub pos: Pos,
}

#[derive(Debug)]
pub(crate) struct Include {
    pub pos: Pos,
    pub name: Expr,
    /// `with x` (false) or `for x` (true).
    pub bound: Option<(Expr, bool)>,
    pub alias: Option<Arc<str>>,
    pub args: Vec<(Arc<str>, Expr)>,
}
