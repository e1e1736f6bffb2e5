//! The plan a segment is evaluated by: its expression with the two sides of each `and` and
//! `or` ordered cheapest first (outside `where` filters, which stay as written), so that evaluation can stop after the first side, and its
//! aggregates given slots, so that the segments of one set that count the same thing share
//! one count per evaluation.
//!
//! Stopping after the first side is sound: while that side keeps the value that decided, the
//! answer is that value, and that side noted when it can change with time alone. Trait tests
//! and order counts come before windows, and plain windows before filtered ones. The
//! explanation walks the expression as written, both sides always.

use std::collections::HashMap;
use std::fmt::Write;

use crate::ast::{Aggregate, Expr, Field, Operand, TimeRef};

/// `e` with the sides of each `and`/`or` ordered cheapest first.
pub(crate) fn plan(e: &Expr) -> Expr {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            let (a, b) = (plan(a), plan(b));
            let (a, b) = if cost(&b) < cost(&a) { (b, a) } else { (a, b) };
            match e {
                Expr::And(..) => Expr::And(Box::new(a), Box::new(b)),
                _ => Expr::Or(Box::new(a), Box::new(b)),
            }
        }
        Expr::Not(a) => Expr::Not(Box::new(plan(a))),
        other => other.clone(),
    }
}

/// A rough cost: reading a field is cheap, counting events dear, filtering them dearer.
fn cost(e: &Expr) -> u32 {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => cost(a).saturating_add(cost(b)),
        Expr::Not(a) => cost(a),
        Expr::InSegment { .. } => 1,
        Expr::Exists { .. } => 1,
        Expr::Time { left, at, .. } => operand_cost(left) + u32::from(matches!(at, TimeRef::Ago(_))) * 4,
        Expr::Compare { left, right, .. } => operand_cost(left).saturating_add(operand_cost(right)),
    }
}

fn operand_cost(o: &Operand) -> u32 {
    match o {
        Operand::Literal(_) => 0,
        Operand::Path(p) if p.field == Field::RecencyDays => 5,
        Operand::Path(_) => 1,
        Operand::Aggregate(a) => {
            let filter = a.filter.as_deref().map_or(0, |f| cost(f).saturating_add(4));
            (8 + u32::from(a.within.is_some()) * 4).saturating_add(filter)
        }
    }
}

/// Slots for the distinct aggregates of a segment set.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    by_key: HashMap<String, u32>,
}

impl Slots {
    /// Gives every aggregate in `e` the slot of the aggregates that count the same thing.
    pub(crate) fn assign(&mut self, e: &mut Expr) {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                self.assign(a);
                self.assign(b);
            }
            Expr::Not(a) => self.assign(a),
            Expr::Compare { left, right, .. } => {
                self.assign_operand(left);
                self.assign_operand(right);
            }
            Expr::Time { left, .. } => self.assign_operand(left),
            Expr::Exists { .. } | Expr::InSegment { .. } => {}
        }
    }

    fn assign_operand(&mut self, o: &mut Operand) {
        if let Operand::Aggregate(a) = o {
            let mut key = String::new();
            aggregate_key(a, &mut key);
            let next = u32::try_from(self.by_key.len()).unwrap_or(u32::MAX);
            a.slot = Some(*self.by_key.entry(key).or_insert(next));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// What an aggregate counts, without where it was written (spans differ between segments).
fn aggregate_key(a: &Aggregate, out: &mut String) {
    let _ = write!(
        out,
        "{:?} {:?}.{:?} within {:?} where ",
        a.kind, a.event, a.property, a.within
    );
    if let Some(f) = &a.filter {
        expr_key(f, out);
    }
}

fn expr_key(e: &Expr, out: &mut String) {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            out.push_str(if matches!(e, Expr::And(..)) {
                "(and "
            } else {
                "(or "
            });
            expr_key(a, out);
            out.push(' ');
            expr_key(b, out);
            out.push(')');
        }
        Expr::Not(a) => {
            out.push_str("(not ");
            expr_key(a, out);
            out.push(')');
        }
        Expr::Compare { left, op, right, .. } => {
            out.push('(');
            operand_key(left, out);
            let _ = write!(out, " {} ", op.symbol());
            operand_key(right, out);
            out.push(')');
        }
        Expr::Exists { path, .. } => {
            let _ = write!(out, "(exists {:?})", path.parts);
        }
        Expr::Time { left, before, at, .. } => {
            out.push('(');
            operand_key(left, out);
            let _ = write!(out, " {} {at:?})", if *before { "before" } else { "after" });
        }
        Expr::InSegment { name, .. } => {
            let _ = write!(out, "(segment {name:?})");
        }
    }
}

fn operand_key(o: &Operand, out: &mut String) {
    match o {
        Operand::Path(p) => {
            let _ = write!(out, "{:?}", p.parts);
        }
        Operand::Literal(l) => {
            let _ = write!(out, "{l:?}");
        }
        Operand::Aggregate(a) => {
            out.push('[');
            aggregate_key(a, out);
            out.push(']');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn slots_of(sources: &[&str]) -> (Slots, Vec<Expr>) {
        let mut slots = Slots::default();
        let exprs = sources
            .iter()
            .map(|s| {
                let mut e = plan(&parse(s).unwrap());
                slots.assign(&mut e);
                e
            })
            .collect();
        (slots, exprs)
    }

    #[test]
    fn the_same_aggregate_in_two_segments_shares_a_slot_and_different_ones_do_not() {
        let (slots, _) = slots_of(&[
            r#"count(event "Viewed" within 7d) >= 1"#,
            r#"count(event "Viewed"  within 7d) >= 3 and traits.a == 1"#,
            r#"count(event "Viewed" within 8d) >= 1"#,
            r#"count(event "Viewed" where properties.c == "x" within 7d) >= 1"#,
            r#"count(event "Viewed" where properties.c == "y" within 7d) >= 1"#,
            r#"count(event "Viewed" where properties.c == "x"  within 7d) >= 2"#,
            r#"sum(event "Viewed".price within 7d) >= 1"#,
        ]);
        // 7d, 8d, where x, where y, the sum.
        assert_eq!(slots.len(), 5);
    }

    #[test]
    fn cheap_and_time_free_sides_come_first() {
        let e = plan(&parse(r#"count(event "V" within 7d) >= 1 and traits.a == 1"#).unwrap());
        let Expr::And(first, _) = e else { panic!("and") };
        assert!(matches!(
            *first,
            Expr::Compare {
                left: Operand::Path(_),
                ..
            }
        ));
        let e = plan(&parse(r#"rfm.recency_days > 3 or orders.count >= 2"#).unwrap());
        let Expr::Or(first, _) = e else { panic!("or") };
        assert!(
            matches!(&*first, Expr::Compare { left: Operand::Path(p), .. } if p.field == Field::OrdersCount)
        );
        // Equal costs keep the written order.
        let e = plan(&parse(r#"traits.a == 1 and traits.b == 2"#).unwrap());
        let Expr::And(first, _) = e else { panic!("and") };
        assert!(matches!(&*first, Expr::Compare { left: Operand::Path(p), .. } if p.parts[1] == "a"));
    }
}
