//! The variables a template sees.
//!
//! - `customer`: the profile's traits, plus `id` and `email`;
//! - `profile`: aggregates: `orders` (count, revenue, average_order_value, first_at, last_at),
//!   `events` (per event name: count, first_at, last_at, last_7_days, last_30_days),
//!   `first_seen`, `last_seen`, `segments`, `scores`, `rfm` (only `id` when the recipient does
//!   not consent to personalization);
//! - `personalized`: whether they do;
//! - `event`: the triggering event (`name`, `properties`, `timestamp`), e.g.
//!   `event.properties.products` for the cart;
//! - `recommendations`: `for_you` and `best_sellers` (product objects; a `for_you` product has a
//!   `reason`, `because_of` and `source`), `similar_to[id]` and `bought_together[id]` for the
//!   products in the message and the recipient's latest, and `strategies.<name>` (one list per
//!   strategy: `rules`, `hybrid`, `als`, `item2item`, `content`, `popular`). The last three are
//!   computed only when a template or block reads them ([`RecsWanted`]);
//! - `experiment`: `name` and `variant`, when the send is part of one;
//! - `unsubscribe_url`, `preferences_url`, `message_id`.
//!
//! Dates are ISO 8601 strings in UTC; templates format them with `date`, which converts them
//! to the recipient's time zone.

use chrono::{DateTime, SecondsFormat, Utc};
use missive_core::Profile;
use missive_liquid::{Object, Value};

/// Everything about one message that is not the profile.
#[derive(Debug, Default)]
pub struct MessageContext<'a> {
    pub event: Option<EventData<'a>>,
    pub recommendations_for_you: Vec<Value>,
    pub best_sellers: Vec<Value>,
    /// `recommendations.similar_to`: product id → products like it.
    pub similar_to: Vec<(String, Vec<Value>)>,
    /// `recommendations.bought_together`: product id → products bought with it.
    pub bought_together: Vec<(String, Vec<Value>)>,
    /// `recommendations.strategies`: strategy name → its list.
    pub strategies: Vec<(&'static str, Vec<Value>)>,
    pub experiment: Option<(&'a str, &'a str)>,
    pub unsubscribe_url: &'a str,
    pub preferences_url: &'a str,
    pub message_id: &'a str,
    /// The recipient consents to personalization: without it, `profile` holds only the id,
    /// and the engine passes generic recommendations and picks only blocks for everyone.
    pub personalized: bool,
}

/// The triggering event.
#[derive(Debug)]
pub struct EventData<'a> {
    pub name: &'a str,
    pub properties: &'a serde_json::Map<String, serde_json::Value>,
    pub timestamp: DateTime<Utc>,
}

/// What the person did: only for those who consent to personalization.
fn insert_behaviour(
    p: &mut Object,
    profile: &Profile,
    orders: Object,
    events: Object,
    scores: Object,
    rfm: Object,
) {
    p.insert("orders", Value::from(orders));
    p.insert("events", Value::from(events));
    p.insert("first_seen", opt_time(profile.first_seen));
    p.insert("last_seen", opt_time(profile.last_seen));
    p.insert(
        "segments",
        Value::from(
            profile
                .segments
                .segments
                .iter()
                .map(|s| Value::from(s.as_str()))
                .collect::<Vec<_>>(),
        ),
    );
    p.insert("scores", Value::from(scores));
    p.insert("rfm", Value::from(rfm));
}

fn time(t: DateTime<Utc>) -> Value {
    Value::from(t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn opt_time(t: Option<DateTime<Utc>>) -> Value {
    t.map(time).unwrap_or(Value::Nil)
}

/// The template variables for one recipient at `now`.
pub fn build_data(profile: &Profile, ctx: &MessageContext<'_>, now: DateTime<Utc>) -> Object {
    let mut customer = Object::with_capacity(profile.traits.len() + 2);
    customer.insert("id", Value::from(profile.id.to_string()));
    for (name, t) in &profile.traits {
        customer.insert(name.clone(), Value::from(&t.value));
    }
    if customer.get("email").is_none()
        && let Some(email) = profile.email()
    {
        customer.insert("email", Value::from(email));
    }

    let mut orders = Object::with_capacity(5);
    orders.insert("count", Value::Int(profile.orders.count as i64));
    orders.insert("revenue", Value::Float(profile.orders.revenue.as_major()));
    orders.insert(
        "average_order_value",
        profile
            .orders
            .average_order_value()
            .map(|m| Value::Float(m.as_major()))
            .unwrap_or(Value::Nil),
    );
    orders.insert("first_at", opt_time(profile.orders.first_at));
    orders.insert("last_at", opt_time(profile.orders.last_at));

    let mut events = Object::with_capacity(profile.events.len());
    for (name, agg) in &profile.events {
        let mut e = Object::with_capacity(5);
        e.insert("count", Value::Int(agg.count as i64));
        e.insert("first_at", time(agg.first_at));
        e.insert("last_at", time(agg.last_at));
        e.insert("last_7_days", Value::Int(agg.count_within(now, 7) as i64));
        e.insert("last_30_days", Value::Int(agg.count_within(now, 30) as i64));
        events.insert(name.clone(), Value::from(e));
    }

    let rfm = profile.rfm(now);
    let mut rfm_obj = Object::with_capacity(3);
    rfm_obj.insert(
        "recency_days",
        rfm.recency_days.map(Value::Float).unwrap_or(Value::Nil),
    );
    rfm_obj.insert("frequency", Value::Int(rfm.frequency as i64));
    rfm_obj.insert("monetary", Value::Float(rfm.monetary.as_major()));

    let mut scores = Object::with_capacity(profile.model_scores().len());
    for (k, v) in profile.model_scores() {
        scores.insert(k.clone(), Value::from(v));
    }

    let mut p = Object::with_capacity(8);
    p.insert("id", Value::from(profile.id.to_string()));
    if ctx.personalized {
        insert_behaviour(&mut p, profile, orders, events, scores, rfm_obj);
    }

    let mut data = Object::with_capacity(10);
    data.insert("personalized", Value::Bool(ctx.personalized));
    data.insert("customer", Value::from(customer));
    data.insert("profile", Value::from(p));
    if let Some(ev) = &ctx.event {
        let mut e = Object::with_capacity(3);
        e.insert("name", Value::from(ev.name));
        e.insert(
            "properties",
            Value::from(&serde_json::Value::Object(ev.properties.clone())),
        );
        e.insert("timestamp", time(ev.timestamp));
        data.insert("event", Value::from(e));
    }
    let mut recs = Object::with_capacity(5);
    recs.insert("for_you", Value::from(ctx.recommendations_for_you.clone()));
    recs.insert("best_sellers", Value::from(ctx.best_sellers.clone()));
    let keyed = |lists: &[(String, Vec<Value>)]| {
        let mut o = Object::with_capacity(lists.len());
        for (k, v) in lists {
            o.insert(k.as_str(), Value::from(v.clone()));
        }
        Value::from(o)
    };
    recs.insert("similar_to", keyed(&ctx.similar_to));
    recs.insert("bought_together", keyed(&ctx.bought_together));
    let mut strategies = Object::with_capacity(ctx.strategies.len());
    for (k, v) in &ctx.strategies {
        strategies.insert(*k, Value::from(v.clone()));
    }
    recs.insert("strategies", Value::from(strategies));
    data.insert("recommendations", Value::from(recs));
    if let Some((name, variant)) = ctx.experiment {
        let mut x = Object::with_capacity(2);
        x.insert("name", Value::from(name));
        x.insert("variant", Value::from(variant));
        data.insert("experiment", Value::from(x));
    }
    data.insert("unsubscribe_url", Value::from(ctx.unsubscribe_url));
    data.insert("preferences_url", Value::from(ctx.preferences_url));
    data.insert("message_id", Value::from(ctx.message_id));
    data
}

/// The lists of `recommendations.strategies`, by name.
pub const STRATEGY_LISTS: [&str; 6] = ["rules", "hybrid", "als", "item2item", "content", "popular"];

/// Which of the costlier recommendation lists a template (with its blocks) reads; a message
/// computes only those. `for_you` and `best_sellers` are always there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecsWanted {
    pub similar_to: bool,
    pub bought_together: bool,
    /// One bit per [`STRATEGY_LISTS`] entry.
    pub strategies: u8,
}

impl RecsWanted {
    /// From the variable paths a template reads (`recommendations.similar_to`, …); reading
    /// `recommendations` or `recommendations.strategies` whole wants them all.
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut w = RecsWanted::default();
        for p in paths {
            let Some(rest) = p.strip_prefix("recommendations") else {
                continue;
            };
            // `recommendations["…"]`, or the whole object: everything.
            if rest.is_empty() || rest.starts_with('[') {
                w = w.union(RecsWanted::ALL);
                continue;
            }
            let Some(rest) = rest.strip_prefix('.') else {
                continue;
            };
            // A part ends at `.` or `[` (`strategies.als[0]`, `similar_to["dress-1"]`).
            let mut parts = rest.split(['.', '[']);
            match (parts.next(), parts.next()) {
                (Some("similar_to"), _) => w.similar_to = true,
                (Some("bought_together"), _) => w.bought_together = true,
                (Some("strategies"), None) => w.strategies = RecsWanted::ALL.strategies,
                (Some("strategies"), Some(name)) => match STRATEGY_LISTS.iter().position(|s| *s == name) {
                    Some(i) => w.strategies |= 1 << i,
                    // `strategies["als"]` and the like: all of them.
                    None => w.strategies = RecsWanted::ALL.strategies,
                },
                _ => {}
            }
        }
        w
    }

    pub const ALL: RecsWanted = RecsWanted {
        similar_to: true,
        bought_together: true,
        strategies: (1 << STRATEGY_LISTS.len()) - 1,
    };

    /// Whether the list of `STRATEGY_LISTS[i]` is wanted.
    pub fn strategy(&self, i: usize) -> bool {
        self.strategies & (1 << i) != 0
    }

    pub fn union(self, o: RecsWanted) -> RecsWanted {
        RecsWanted {
            similar_to: self.similar_to || o.similar_to,
            bought_together: self.bought_together || o.bought_together,
            strategies: self.strategies | o.strategies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_wants_the_lists_it_reads() {
        let cases: [(&[&str], RecsWanted); 8] = [
            (
                &["recommendations.for_you", "customer.name"],
                RecsWanted::default(),
            ),
            (
                &["recommendations.similar_to", "event.properties.product_id"],
                RecsWanted {
                    similar_to: true,
                    ..Default::default()
                },
            ),
            (
                &[
                    "recommendations.strategies.als",
                    "recommendations.bought_together",
                ],
                RecsWanted {
                    bought_together: true,
                    strategies: 0b100,
                    ..Default::default()
                },
            ),
            (
                &["recommendations.strategies"],
                RecsWanted {
                    strategies: 0b11_1111,
                    ..Default::default()
                },
            ),
            (&["recommendations"], RecsWanted::ALL),
            (&["recommendations[\"strategies\"]"], RecsWanted::ALL),
            (
                &[
                    "recommendations.similar_to[\"dress-1\"]",
                    "recommendations.strategies.als[0]",
                ],
                RecsWanted {
                    similar_to: true,
                    strategies: 0b100,
                    ..Default::default()
                },
            ),
            (
                // A name it cannot tell (`strategies["als"]`): every strategy, to be safe.
                &[
                    "recommendationsX.similar_to",
                    "recommendations.strategies[\"als\"]",
                ],
                RecsWanted {
                    strategies: 0b11_1111,
                    ..Default::default()
                },
            ),
        ];
        for (paths, want) in cases {
            assert_eq!(RecsWanted::of(paths.iter().copied()), want, "{paths:?}");
        }
    }
}
