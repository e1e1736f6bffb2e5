//! Evaluation of a compiled segment against one profile at one instant: membership, the value
//! of every predicate (the explanation), and the next instant at which time alone can change
//! the answer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::Profile;
use missive_core::profile::HistoryEntry;
use serde::Serialize;
use serde_json::Value as Json;

use crate::ast::{Aggregate, AggregateKind, CompareOp, Expr, Literal, Operand, Path, TimeRef};
use crate::parse::parse_date;
use crate::types::Segment;

/// What a segment may read about a profile.
pub struct Facts<'a> {
    pub profile: &'a Profile,
    /// The profile's events that windows and aggregates count, in any order. Events older than
    /// the segment's longest window may be left out.
    pub events: &'a [HistoryEntry],
    /// The segments the profile is in now.
    pub segments: &'a BTreeSet<String>,
    /// Model outputs: `scores.NAME` reads `scores[NAME]`, `model.cluster` reads `scores["cluster"]`.
    pub scores: &'a BTreeMap<String, Json>,
}

/// One predicate's part in the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredicateResult {
    pub predicate: String,
    /// The value the predicate looked at (a trait, a count…).
    pub value: Json,
    pub result: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub member: bool,
    pub predicates: Vec<PredicateResult>,
    /// The first instant after `now` at which the answer may change with no new event (a
    /// window letting an event go, an `… ago` threshold passing). `None`: only a change to
    /// the profile can change it.
    pub next_change: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Time(DateTime<Utc>),
    List(Vec<V>),
}

impl V {
    fn from_json(j: &Json) -> V {
        match j {
            Json::Null => V::Null,
            Json::Bool(b) => V::Bool(*b),
            Json::Number(n) => n.as_f64().map_or(V::Null, V::Num),
            Json::String(s) => V::Str(s.clone()),
            Json::Array(a) => V::List(a.iter().map(V::from_json).collect()),
            Json::Object(_) => V::Null,
        }
    }

    fn from_literal(l: &Literal) -> V {
        match l {
            Literal::Str(s) => V::Str(s.clone()),
            Literal::Num(n) => V::Num(*n),
            Literal::Bool(b) => V::Bool(*b),
            Literal::List(items) => V::List(items.iter().map(V::from_literal).collect()),
        }
    }

    fn to_json(&self) -> Json {
        match self {
            V::Null => Json::Null,
            V::Bool(b) => Json::Bool(*b),
            V::Num(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
            V::Str(s) => Json::String(s.clone()),
            V::Time(t) => Json::String(t.to_rfc3339()),
            V::List(items) => Json::Array(items.iter().map(V::to_json).collect()),
        }
    }

    fn as_time(&self) -> Option<DateTime<Utc>> {
        match self {
            V::Time(t) => Some(*t),
            V::Str(s) => parse_date(s),
            _ => None,
        }
    }
}

struct Ctx<'a> {
    facts: &'a Facts<'a>,
    now: DateTime<Utc>,
    predicates: Vec<PredicateResult>,
    next_change: Option<DateTime<Utc>>,
    /// Inside a `where`: the event whose properties are read.
    event: Option<&'a HistoryEntry>,
}

impl Ctx<'_> {
    fn change_at(&mut self, t: DateTime<Utc>) {
        if t > self.now {
            self.next_change = Some(self.next_change.map_or(t, |c| c.min(t)));
        }
    }
}

impl Segment {
    /// Evaluates the segment for `facts` at `now`.
    pub fn evaluate(&self, facts: &Facts<'_>, now: DateTime<Utc>) -> Evaluation {
        let mut ctx = Ctx {
            facts,
            now,
            predicates: Vec::new(),
            next_change: None,
            event: None,
        };
        let member = eval(&self.expr, &mut ctx, true);
        Evaluation {
            member,
            predicates: ctx.predicates,
            next_change: ctx.next_change,
        }
    }
}

fn eval<'a>(e: &'a Expr, ctx: &mut Ctx<'a>, record: bool) -> bool {
    match e {
        // Both sides are evaluated so that the explanation shows every predicate.
        Expr::And(a, b) => {
            let (x, y) = (eval(a, ctx, record), eval(b, ctx, record));
            x && y
        }
        Expr::Or(a, b) => {
            let (x, y) = (eval(a, ctx, record), eval(b, ctx, record));
            x || y
        }
        Expr::Not(a) => !eval(a, ctx, record),
        Expr::InSegment { name, .. } => {
            let r = ctx.facts.segments.contains(name);
            if record {
                ctx.predicates.push(PredicateResult {
                    predicate: format!("segment {name:?}"),
                    value: Json::Bool(r),
                    result: r,
                });
            }
            r
        }
        Expr::Exists { path, .. } => {
            let v = read_path(path, ctx);
            let r = !matches!(v, V::Null);
            if record {
                ctx.predicates.push(PredicateResult {
                    predicate: format!("{} exists", path.dotted()),
                    value: v.to_json(),
                    result: r,
                });
            }
            r
        }
        Expr::Time { left, before, at, .. } => {
            let v = operand(left, ctx);
            let threshold = match at {
                TimeRef::Ago(d) => ctx.now - *d,
                TimeRef::At(t) => *t,
            };
            let r = match v.as_time() {
                Some(t) => {
                    if let TimeRef::Ago(d) = at {
                        // `t before now - d` turns true, and `after` false, once now passes t + d.
                        ctx.change_at(t + *d + TimeDelta::microseconds(1));
                    }
                    if *before { t < threshold } else { t > threshold }
                }
                None => false,
            };
            if record {
                let when = match at {
                    TimeRef::Ago(d) => format!("{} ago", show_duration(*d)),
                    TimeRef::At(t) => format!("{:?}", t.to_rfc3339()),
                };
                ctx.predicates.push(PredicateResult {
                    predicate: format!(
                        "{} {} {when}",
                        show_operand(left),
                        if *before { "before" } else { "after" }
                    ),
                    value: v.to_json(),
                    result: r,
                });
            }
            r
        }
        Expr::Compare { left, op, right, .. } => {
            let (l, r) = (operand(left, ctx), operand(right, ctx));
            recency_threshold(left, right, ctx);
            let result = compare(&l, *op, &r);
            if record {
                ctx.predicates.push(PredicateResult {
                    predicate: format!("{} {} {}", show_operand(left), op.symbol(), show_operand(right)),
                    value: l.to_json(),
                    result,
                });
            }
            result
        }
    }
}

/// `rfm.recency_days > 30` flips when the last order turns 30 days old.
fn recency_threshold(left: &Operand, right: &Operand, ctx: &mut Ctx<'_>) {
    if let (Operand::Path(p), Operand::Literal(Literal::Num(n))) = (left, right)
        && p.parts == ["rfm", "recency_days"]
        && let Some(last) = ctx.facts.profile.orders.last_at
    {
        // Exactly N days after (`>=` turns), and one microsecond later (`>` turns).
        let at = last + TimeDelta::microseconds((n * 86_400e6).ceil() as i64);
        ctx.change_at(at);
        ctx.change_at(at + TimeDelta::microseconds(1));
    }
}

fn compare(l: &V, op: CompareOp, r: &V) -> bool {
    use std::cmp::Ordering;
    if matches!(l, V::Null) || matches!(r, V::Null) {
        return false;
    }
    let order = || -> Option<Ordering> {
        match (l, r) {
            (V::Num(a), V::Num(b)) => a.partial_cmp(b),
            (V::Str(a), V::Str(b)) => Some(a.cmp(b)),
            (V::Bool(a), V::Bool(b)) => Some(a.cmp(b)),
            _ => match (l.as_time(), r.as_time()) {
                (Some(a), Some(b)) if matches!(l, V::Time(_)) || matches!(r, V::Time(_)) => Some(a.cmp(&b)),
                _ => None,
            },
        }
    };
    match op {
        CompareOp::Eq => order() == Some(Ordering::Equal) || (l == r),
        CompareOp::Ne => order().map_or(l != r, |o| o != Ordering::Equal),
        CompareOp::Lt => order() == Some(Ordering::Less),
        CompareOp::Le => matches!(order(), Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Gt => order() == Some(Ordering::Greater),
        CompareOp::Ge => matches!(order(), Some(Ordering::Greater | Ordering::Equal)),
        CompareOp::In => match r {
            V::List(items) => items.iter().any(|i| compare(l, CompareOp::Eq, i)),
            _ => false,
        },
        CompareOp::Contains => match (l, r) {
            (V::Str(a), V::Str(b)) => a.contains(b.as_str()),
            (V::List(items), x) => items.iter().any(|i| compare(i, CompareOp::Eq, x)),
            _ => false,
        },
        CompareOp::StartsWith => match (l, r) {
            (V::Str(a), V::Str(b)) => a.starts_with(b.as_str()),
            _ => false,
        },
    }
}

fn operand<'a>(o: &'a Operand, ctx: &mut Ctx<'a>) -> V {
    match o {
        Operand::Literal(l) => V::from_literal(l),
        Operand::Path(p) => read_path(p, ctx),
        Operand::Aggregate(a) => aggregate(a, ctx),
    }
}

fn aggregate<'a>(a: &'a Aggregate, ctx: &mut Ctx<'a>) -> V {
    let (now, facts) = (ctx.now, ctx.facts);
    let mut total = 0.0;
    for e in facts.events.iter().filter(|e| e.name == a.event) {
        if let Some(w) = a.within {
            if e.at > now {
                // A future-dated event enters the window when its time comes.
                ctx.change_at(e.at);
                continue;
            }
            if e.at <= now - w {
                continue;
            }
            // It leaves the window `w` after it happened.
            ctx.change_at(e.at + w);
        }
        if let Some(filter) = &a.filter {
            let saved = ctx.event.replace(e);
            let keep = eval(filter, ctx, false);
            ctx.event = saved;
            if !keep {
                continue;
            }
        }
        total += match (a.kind, &a.property) {
            (AggregateKind::Count, _) => 1.0,
            (AggregateKind::Sum, Some(p)) => e.properties.get(p).and_then(number).unwrap_or(0.0),
            (AggregateKind::Sum, None) => 0.0,
        };
    }
    V::Num(total)
}

fn number(j: &Json) -> Option<f64> {
    match j {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn read_path(path: &Path, ctx: &Ctx<'_>) -> V {
    let p: Vec<&str> = path.parts.iter().map(String::as_str).collect();
    let profile = ctx.facts.profile;
    match p.as_slice() {
        ["properties", rest @ ..] => {
            let Some(e) = ctx.event else { return V::Null };
            let mut cur: Option<&Json> = e.properties.get(rest[0]);
            for key in &rest[1..] {
                cur = cur.and_then(|c| c.get(*key));
            }
            cur.map_or(V::Null, V::from_json)
        }
        ["traits", name] => profile
            .traits
            .get(*name)
            .map_or(V::Null, |t| V::from_json(&t.value)),
        ["orders", "count"] => V::Num(profile.orders.count as f64),
        ["orders", "revenue"] => V::Num(profile.orders.revenue.as_major()),
        ["orders", "average_order_value" | "aov"] => profile
            .orders
            .average_order_value()
            .map_or(V::Null, |m| V::Num(m.as_major())),
        ["orders", "first_at"] => profile.orders.first_at.map_or(V::Null, V::Time),
        ["orders", "last_at"] => profile.orders.last_at.map_or(V::Null, V::Time),
        ["rfm", "recency_days"] => profile.rfm(ctx.now).recency_days.map_or(V::Null, V::Num),
        ["rfm", "frequency"] => V::Num(profile.orders.count as f64),
        ["rfm", "monetary"] => V::Num(profile.orders.revenue.as_major()),
        ["first_seen"] => profile.first_seen.map_or(V::Null, V::Time),
        ["last_seen"] => profile.last_seen.map_or(V::Null, V::Time),
        ["events", name, field] => match profile.events.get(*name) {
            None if *field == "count" => V::Num(0.0),
            None => V::Null,
            Some(a) => match *field {
                "count" => V::Num(a.count as f64),
                "first_at" => V::Time(a.first_at),
                _ => V::Time(a.last_at),
            },
        },
        ["scores", name] => ctx.facts.scores.get(*name).map_or(V::Null, V::from_json),
        ["model", "cluster"] => ctx.facts.scores.get("cluster").map_or(V::Null, V::from_json),
        _ => V::Null,
    }
}

fn show_duration(d: TimeDelta) -> String {
    let s = d.num_seconds();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn show_literal(l: &Literal) -> String {
    match l {
        Literal::Str(s) => format!("{s:?}"),
        Literal::Num(n) => format!("{n}"),
        Literal::Bool(b) => b.to_string(),
        Literal::List(items) => format!(
            "[{}]",
            items.iter().map(show_literal).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn show_operand(o: &Operand) -> String {
    match o {
        Operand::Path(p) => p.dotted(),
        Operand::Literal(l) => show_literal(l),
        Operand::Aggregate(a) => {
            let mut s = format!(
                "{}(event {:?}",
                if a.kind == AggregateKind::Count {
                    "count"
                } else {
                    "sum"
                },
                a.event
            );
            if let Some(p) = &a.property {
                s.push_str(&format!(".{p}"));
            }
            if a.filter.is_some() {
                s.push_str(" where …");
            }
            if let Some(w) = a.within {
                s.push_str(&format!(" within {}", show_duration(w)));
            }
            s.push(')');
            s
        }
    }
}
