//! Evaluation of a compiled segment against one profile at one instant: membership, the value
//! of every predicate (the explanation), and the next instant at which time alone can change
//! the answer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::Profile;
use missive_core::profile::HistoryEntry;
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::Value as Json;

use crate::ast::{Aggregate, AggregateKind, CompareOp, Expr, Field, Literal, Operand, TimeRef};
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
    /// `events` by name, when the caller built it once for many evaluations.
    pub by_name: Option<&'a EventIndex<'a>>,
}

impl<'a> Facts<'a> {
    pub fn new(
        profile: &'a Profile,
        events: &'a [HistoryEntry],
        segments: &'a BTreeSet<String>,
        scores: &'a BTreeMap<String, Json>,
    ) -> Self {
        Self {
            profile,
            events,
            segments,
            scores,
            by_name: None,
        }
    }
}

/// A profile's events grouped by name: built once, read by every segment evaluated after a
/// change.
pub struct EventIndex<'a> {
    by_name: FxHashMap<&'a str, Vec<&'a HistoryEntry>>,
}

impl<'a> EventIndex<'a> {
    pub fn new(events: &'a [HistoryEntry]) -> Self {
        let mut by_name: FxHashMap<&str, Vec<&HistoryEntry>> = FxHashMap::default();
        for e in events {
            by_name.entry(e.name.as_str()).or_default().push(e);
        }
        Self { by_name }
    }
}

/// One predicate's part in the answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PredicateResult {
    pub predicate: String,
    /// The value the predicate looked at (a trait, a count…).
    pub value: Json,
    pub result: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub member: bool,
    /// Every predicate's value and result: filled by [`Segment::explain`], empty otherwise.
    pub predicates: Vec<PredicateResult>,
    /// The first instant after `now` at which the answer may change with no new event (a
    /// window letting an event go, an `… ago` threshold passing). `None`: only a change to
    /// the profile can change it.
    pub next_change: Option<DateTime<Utc>>,
}

/// A value read during evaluation; borrows from the profile and the segment where it can.
#[derive(Debug, Clone, PartialEq)]
enum V<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Time(DateTime<Utc>),
    JsonList(&'a [Json]),
    LitList(&'a [Literal]),
}

impl<'a> V<'a> {
    fn from_json(j: &'a Json) -> V<'a> {
        match j {
            Json::Null | Json::Object(_) => V::Null,
            Json::Bool(b) => V::Bool(*b),
            Json::Number(n) => n.as_f64().map_or(V::Null, V::Num),
            Json::String(s) => V::Str(s),
            Json::Array(a) => V::JsonList(a),
        }
    }

    fn from_literal(l: &'a Literal) -> V<'a> {
        match l {
            Literal::Str(s) => V::Str(s),
            Literal::Num(n) => V::Num(*n),
            Literal::Bool(b) => V::Bool(*b),
            Literal::List(items) => V::LitList(items),
        }
    }

    fn to_json(&self) -> Json {
        match self {
            V::Null => Json::Null,
            V::Bool(b) => Json::Bool(*b),
            V::Num(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
            V::Str(s) => Json::String((*s).to_owned()),
            V::Time(t) => Json::String(t.to_rfc3339()),
            V::JsonList(items) => Json::Array(items.to_vec()),
            V::LitList(items) => Json::Array(items.iter().map(|l| V::from_literal(l).to_json()).collect()),
        }
    }

    fn as_time(&self) -> Option<DateTime<Utc>> {
        match self {
            V::Time(t) => Some(*t),
            V::Str(s) => parse_date(s),
            _ => None,
        }
    }

    fn items(&self) -> Option<Vec<V<'a>>> {
        match self {
            V::JsonList(items) => Some(items.iter().map(V::from_json).collect()),
            V::LitList(items) => Some(items.iter().map(V::from_literal).collect()),
            _ => None,
        }
    }
}

/// The aggregates counted during one evaluation of a set's segments for one profile at one
/// instant, by slot ([`crate::plan`]): a total and its next instant to look again.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    totals: FxHashMap<u32, (f64, Option<DateTime<Utc>>)>,
}

struct Ctx<'a, 's> {
    facts: &'a Facts<'a>,
    now: DateTime<Utc>,
    predicates: Vec<PredicateResult>,
    next_change: Option<DateTime<Utc>>,
    /// Inside a `where`: the event whose properties are read.
    event: Option<&'a HistoryEntry>,
    shared: &'s mut Shared,
}

impl Ctx<'_, '_> {
    fn change_at(&mut self, t: DateTime<Utc>) {
        if t > self.now {
            self.next_change = Some(self.next_change.map_or(t, |c| c.min(t)));
        }
    }
}

impl Segment {
    /// Evaluates the segment for `facts` at `now`: membership and the next instant to look again.
    pub fn evaluate(&self, facts: &Facts<'_>, now: DateTime<Utc>) -> Evaluation {
        self.run(facts, now, false, &mut Shared::default())
    }

    /// Like [`Segment::evaluate`], reading and keeping the aggregates other segments of its
    /// set counted for the same profile at the same instant.
    pub(crate) fn evaluate_shared(
        &self,
        facts: &Facts<'_>,
        now: DateTime<Utc>,
        shared: &mut Shared,
    ) -> Evaluation {
        self.run(facts, now, false, shared)
    }

    /// Like [`Segment::evaluate`], with every predicate's value and result.
    pub fn explain(&self, facts: &Facts<'_>, now: DateTime<Utc>) -> Evaluation {
        self.run(facts, now, true, &mut Shared::default())
    }

    fn run(&self, facts: &Facts<'_>, now: DateTime<Utc>, explain: bool, shared: &mut Shared) -> Evaluation {
        let mut ctx = Ctx {
            facts,
            now,
            predicates: Vec::new(),
            next_change: None,
            event: None,
            shared,
        };
        // The explanation shows the predicates as written; membership reads the plan.
        let member = if explain {
            eval(&self.expr, &mut ctx, true)
        } else {
            eval(&self.plan, &mut ctx, false)
        };
        Evaluation {
            member,
            predicates: ctx.predicates,
            next_change: ctx.next_change,
        }
    }
}

fn eval<'a>(e: &'a Expr, ctx: &mut Ctx<'a, '_>, record: bool) -> bool {
    match e {
        // The explanation evaluates both sides, to show every predicate. Otherwise the second
        // side is skipped when the first decides the answer: the answer then stays as it is
        // while the first side keeps its value, and the first side noted when that can change
        // with time alone, so the second side's instants are not needed until then.
        Expr::And(a, b) => {
            let x = eval(a, ctx, record);
            if !x && !record {
                return false;
            }
            let y = eval(b, ctx, record);
            x && y
        }
        Expr::Or(a, b) => {
            let x = eval(a, ctx, record);
            if x && !record {
                return true;
            }
            let y = eval(b, ctx, record);
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
            let v = read_field(&path.field, ctx);
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
            let threshold = at.threshold(ctx.now);
            let r = match v.as_time() {
                Some(t) => {
                    if let TimeRef::Ago(d) = at {
                        // `t before now - d` turns true, and `after` false, once now passes t + d.
                        // `before` turns true just after t + d; `after` turns false at t + d.
                        if let Some(edge) = t.checked_add_signed(*d) {
                            ctx.change_at(if *before {
                                edge + TimeDelta::microseconds(1)
                            } else {
                                edge
                            });
                        }
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
            recency_threshold(left, right, &l, &r, ctx);
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

/// `rfm.recency_days > 30` flips when the last order turns 30 days old; so does
/// `30 < rfm.recency_days`, `rfm.recency_days in [7, 30]` at each day, and a comparison with
/// another field at that field's value.
fn recency_threshold(left: &Operand, right: &Operand, l: &V<'_>, r: &V<'_>, ctx: &mut Ctx<'_, '_>) {
    let is_recency = |o: &Operand| matches!(o, Operand::Path(p) if p.field == Field::RecencyDays);
    let other = match (is_recency(left), is_recency(right)) {
        (true, false) => r,
        (false, true) => l,
        // Recency against itself never flips with time (and an edge at every instant would
        // make a timer of every microsecond).
        _ => return,
    };
    let Some(last) = ctx.facts.profile.orders.last_at else {
        return;
    };
    let days: Vec<f64> = match other {
        V::Num(n) => vec![*n],
        list => list
            .items()
            .into_iter()
            .flatten()
            .filter_map(|v| if let V::Num(n) = v { Some(n) } else { None })
            .collect(),
    };
    for n in days {
        // Exactly N days after (`>=` turns), and one microsecond later (`>` turns). A threshold
        // past the calendar's end never turns.
        let micros = (n * 86_400e6).ceil();
        if micros.is_finite()
            && micros.abs() < 1e17
            && let Some(at) = last.checked_add_signed(TimeDelta::microseconds(micros as i64))
        {
            ctx.change_at(at);
            ctx.change_at(at + TimeDelta::microseconds(1));
        }
    }
}

fn compare(l: &V<'_>, op: CompareOp, r: &V<'_>) -> bool {
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
    let lists_equal = || match (l.items(), r.items()) {
        (Some(a), Some(b)) => {
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| compare(x, CompareOp::Eq, y))
        }
        _ => false,
    };
    match op {
        CompareOp::Eq => order() == Some(Ordering::Equal) || lists_equal(),
        CompareOp::Ne => match order() {
            Some(o) => o != Ordering::Equal,
            None => !lists_equal(),
        },
        CompareOp::Lt => order() == Some(Ordering::Less),
        CompareOp::Le => matches!(order(), Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Gt => order() == Some(Ordering::Greater),
        CompareOp::Ge => matches!(order(), Some(Ordering::Greater | Ordering::Equal)),
        CompareOp::In => r
            .items()
            .is_some_and(|items| items.iter().any(|i| compare(l, CompareOp::Eq, i))),
        CompareOp::Contains => match (l, r) {
            (V::Str(a), V::Str(b)) => a.contains(b),
            (list, x) => list
                .items()
                .is_some_and(|items| items.iter().any(|i| compare(i, CompareOp::Eq, x))),
        },
        CompareOp::StartsWith => match (l, r) {
            (V::Str(a), V::Str(b)) => a.starts_with(b),
            _ => false,
        },
    }
}

fn operand<'a>(o: &'a Operand, ctx: &mut Ctx<'a, '_>) -> V<'a> {
    match o {
        Operand::Literal(l) => V::from_literal(l),
        Operand::Path(p) => read_field(&p.field, ctx),
        Operand::Aggregate(a) => aggregate(a, ctx),
    }
}

fn aggregate<'a>(a: &'a Aggregate, ctx: &mut Ctx<'a, '_>) -> V<'a> {
    if let Some(&(total, edge)) = a.slot.and_then(|s| ctx.shared.totals.get(&s)) {
        if let Some(t) = edge {
            ctx.change_at(t);
        }
        return V::Num(total);
    }
    // The filter notes instants of its own (`properties.ends_at before 1d ago`): gathered
    // apart from the instants noted so far, so that the shared count keeps them too.
    let outer = ctx.next_change.take();
    let (now, facts) = (ctx.now, ctx.facts);
    let named: Box<dyn Iterator<Item = &'a HistoryEntry>> = match facts.by_name {
        Some(index) => Box::new(index.by_name.get(a.event.as_str()).into_iter().flatten().copied()),
        None => Box::new(facts.events.iter().filter(|e| e.name == a.event)),
    };
    let mut total = 0.0;
    let cutoff = a
        .within
        .map(|w| now.checked_sub_signed(w).unwrap_or(DateTime::<Utc>::MIN_UTC));
    // The oldest event in the window leaves it first; the earliest future one enters first.
    let (mut oldest, mut next_future): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    for e in named {
        if let Some(cutoff) = cutoff {
            if e.at > now {
                next_future = Some(next_future.map_or(e.at, |t| t.min(e.at)));
                continue;
            }
            if e.at <= cutoff {
                continue;
            }
            oldest = Some(oldest.map_or(e.at, |t| t.min(e.at)));
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
    // Its next instant: the oldest event leaving the window, or a future one entering it.
    let leaves = a.within.zip(oldest).and_then(|(w, t)| t.checked_add_signed(w));
    let edge = [leaves, next_future]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .chain(ctx.next_change)
        .min();
    ctx.next_change = outer;
    if let Some(t) = edge {
        ctx.change_at(t);
    }
    if let Some(slot) = a.slot {
        ctx.shared.totals.insert(slot, (total, edge));
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

fn read_field<'a>(field: &'a Field, ctx: &Ctx<'a, '_>) -> V<'a> {
    let profile = ctx.facts.profile;
    match field {
        Field::Property(path) => {
            let Some(e) = ctx.event else { return V::Null };
            let mut cur: Option<&'a Json> = e.properties.get(&path[0]);
            for key in &path[1..] {
                cur = cur.and_then(|c| c.get(key));
            }
            cur.map_or(V::Null, V::from_json)
        }
        Field::Trait(name) => profile
            .traits
            .get(name)
            .map_or(V::Null, |t| V::from_json(&t.value)),
        Field::OrdersCount | Field::Frequency => V::Num(profile.orders.count as f64),
        Field::OrdersRevenue | Field::Monetary => V::Num(profile.orders.revenue.as_major()),
        Field::OrdersAverage => profile
            .orders
            .average_order_value()
            .map_or(V::Null, |m| V::Num(m.as_major())),
        Field::OrdersFirstAt => profile.orders.first_at.map_or(V::Null, V::Time),
        Field::OrdersLastAt => profile.orders.last_at.map_or(V::Null, V::Time),
        Field::RecencyDays => profile.rfm(ctx.now).recency_days.map_or(V::Null, V::Num),
        Field::FirstSeen => profile.first_seen.map_or(V::Null, V::Time),
        Field::LastSeen => profile.last_seen.map_or(V::Null, V::Time),
        Field::EventCount(name) => V::Num(profile.events.get(name).map_or(0.0, |a| a.count as f64)),
        Field::EventFirstAt(name) => profile.events.get(name).map_or(V::Null, |a| V::Time(a.first_at)),
        Field::EventLastAt(name) => profile.events.get(name).map_or(V::Null, |a| V::Time(a.last_at)),
        Field::Score(name) => ctx.facts.scores.get(name).map_or(V::Null, V::from_json),
        Field::Cluster => ctx.facts.scores.get("cluster").map_or(V::Null, V::from_json),
        Field::Unknown => V::Null,
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
