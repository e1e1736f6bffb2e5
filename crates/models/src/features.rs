//! Features of a profile, as of an instant, for models trained on and scored against the
//! store. Everything is read from the profile itself (its aggregates, hourly event counts,
//! traits and other models' scores), so that scoring a profile on the ingest path costs
//! microseconds and needs no query.
//!
//! Features, in this order (docs/models.md lists them):
//! - orders: `orders_count`, `revenue_total`, `average_order_value`, `has_ordered`,
//!   `days_since_order` (the tenure when there is none);
//! - `tenure_days` (since first seen), `days_since_seen`;
//! - per event name of the spec: `E.total`, `E.{w}d` for each window (at most 90 days: the
//!   profile keeps hourly counts that long), `E.days_since` (the tenure when never);
//! - engagement: `click_to_open` (clicks per open, 0 without opens); with `per_message`,
//!   `opens_per_message` and `clicks_per_message` (per `Email Delivered`, 0 without any);
//! - categories bought: `category.C`, items bought in each category learned from the training
//!   set (at most a cap);
//! - numeric traits by name (missing: the training median, kept in the spec);
//! - categorical traits one-hot, the values learned from the training set (at most a cap);
//! - other models' scores by name (predicted lifetime value as a feature, say).
//!
//! Only profiles with `profiling` consent may be passed here: the callers check it (see
//! docs/privacy.md).

use chrono::{DateTime, Utc};
use missive_core::Profile;
use serde::{Deserialize, Serialize};

pub const ORDER_COMPLETED: &str = "Order Completed";
pub const EMAIL_OPENED: &str = "Email Opened";
pub const EMAIL_CLICKED: &str = "Email Link Clicked";
pub const EMAIL_DELIVERED: &str = "Email Delivered";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub events: Vec<String>,
    pub windows_days: Vec<i64>,
    /// Numeric traits, each with the value a profile without it gets.
    #[serde(default)]
    pub numeric_traits: Vec<(String, f64)>,
    /// Categorical traits and the values encoded.
    #[serde(default)]
    pub categorical_traits: Vec<(String, Vec<String>)>,
    /// Other models' scores read as features (0 when absent).
    #[serde(default)]
    pub scores: Vec<String>,
    /// Opens and clicks per message received. Off in specs stored before these features
    /// existed, so that their models read the features they were fitted on.
    #[serde(default)]
    pub per_message: bool,
    /// Product categories whose items bought are features.
    #[serde(default)]
    pub categories: Vec<String>,
}

impl Default for FeatureSpec {
    fn default() -> Self {
        FeatureSpec {
            events: [
                "Order Completed",
                "Product Viewed",
                "Product Added",
                EMAIL_DELIVERED,
                EMAIL_OPENED,
                EMAIL_CLICKED,
            ]
            .map(str::to_owned)
            .to_vec(),
            windows_days: vec![7, 30, 90],
            numeric_traits: Vec::new(),
            categorical_traits: Vec::new(),
            scores: Vec::new(),
            per_message: true,
            categories: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    #[error("window of {0} days: the profile keeps hourly counts for 90 days at most")]
    Window(i64),
    #[error(
        "trait `{0}` has a different value for most people (an identifier or personal detail): it cannot be a feature, and its values would be kept in the model"
    )]
    Identifier(String),
}

fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_seconds() as f64 / 86_400.0).max(0.0)
}

impl FeatureSpec {
    pub fn check(&self) -> Result<(), FeatureError> {
        match self.windows_days.iter().find(|w| **w < 1 || **w > 90) {
            Some(w) => Err(FeatureError::Window(*w)),
            None => Ok(()),
        }
    }

    /// The features' names, in the order [`FeatureSpec::extract`] gives their values.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = [
            "orders_count",
            "revenue_total",
            "average_order_value",
            "has_ordered",
            "days_since_order",
            "tenure_days",
            "days_since_seen",
        ]
        .map(str::to_owned)
        .to_vec();
        for e in &self.events {
            n.push(format!("{e}.total"));
            for w in &self.windows_days {
                n.push(format!("{e}.{w}d"));
            }
            n.push(format!("{e}.days_since"));
        }
        n.push("click_to_open".into());
        if self.per_message {
            n.push("opens_per_message".into());
            n.push("clicks_per_message".into());
        }
        n.extend(self.categories.iter().map(|c| format!("category.{c}")));
        n.extend(self.numeric_traits.iter().map(|(t, _)| format!("traits.{t}")));
        for (t, values) in &self.categorical_traits {
            n.extend(values.iter().map(|v| format!("traits.{t}={v}")));
        }
        n.extend(self.scores.iter().map(|s| format!("scores.{s}")));
        n
    }

    /// The profile's features as of `now`.
    pub fn extract(&self, p: &Profile, now: DateTime<Utc>) -> Vec<f64> {
        let start = p.first_seen.unwrap_or(p.created_at).min(now);
        let tenure = days(start, now);
        let o = &p.orders;
        let mut f = Vec::with_capacity(16 + self.events.len() * (self.windows_days.len() + 2));
        f.push(o.count as f64);
        f.push(o.revenue.0 as f64 / 100.0);
        f.push(o.average_order_value().map_or(0.0, |m| m.0 as f64 / 100.0));
        f.push(if o.count > 0 { 1.0 } else { 0.0 });
        f.push(o.last_at.map_or(tenure, |t| days(t, now)));
        f.push(tenure);
        f.push(p.last_seen.map_or(tenure, |t| days(t, now)));
        for e in &self.events {
            match p.events.get(e) {
                Some(a) => {
                    f.push(a.count as f64);
                    for w in &self.windows_days {
                        f.push(a.count_within(now, *w) as f64);
                    }
                    f.push(days(a.last_at, now));
                }
                None => {
                    f.push(0.0);
                    f.extend(self.windows_days.iter().map(|_| 0.0));
                    f.push(tenure);
                }
            }
        }
        let count = |name: &str| p.events.get(name).map_or(0, |a| a.count) as f64;
        let opens = count(EMAIL_OPENED);
        let clicks = count(EMAIL_CLICKED);
        let per = |n: f64, of: f64| if of > 0.0 { n / of } else { 0.0 };
        f.push(per(clicks, opens));
        if self.per_message {
            let received = count(EMAIL_DELIVERED);
            f.push(per(opens, received));
            f.push(per(clicks, received));
        }
        for c in &self.categories {
            f.push(o.categories.get(c).copied().unwrap_or(0) as f64);
        }
        for (t, missing) in &self.numeric_traits {
            let v = p.traits.get(t).and_then(|t| number(&t.value));
            f.push(v.unwrap_or(*missing));
        }
        for (t, values) in &self.categorical_traits {
            let v = p.traits.get(t).map(|t| text(&t.value));
            f.extend(values.iter().map(|x| {
                if v.as_deref() == Some(x.as_str()) {
                    1.0
                } else {
                    0.0
                }
            }));
        }
        for s in &self.scores {
            f.push(p.scores.get(s).and_then(number).unwrap_or(0.0));
        }
        f
    }

    /// Adds the product categories bought by at least 10 of the training profiles, at most
    /// `cap` of them (those bought by the most people first).
    pub fn learn_categories(&mut self, profiles: &[&Profile], cap: usize) {
        let mut people: std::collections::BTreeMap<&str, usize> = Default::default();
        for p in profiles {
            for c in p.orders.categories.keys() {
                *people.entry(c).or_default() += 1;
            }
        }
        let mut by: Vec<(&str, usize)> = people.into_iter().filter(|(_, n)| *n >= 10).collect();
        by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        by.truncate(cap);
        self.categories = by.into_iter().map(|(c, _)| c.to_owned()).collect();
    }

    /// Adds traits to the spec, learning from the training profiles: a trait whose values are
    /// numbers becomes a numeric feature (missing: their median); any other becomes one-hot
    /// over its `cap` most frequent values.
    ///
    /// A text trait with more distinct values than the cap and than half the profiles is
    /// refused (an e-mail address, a name): its values would be stored in the model. A value is
    /// encoded only when at least 10 profiles have it, so no value singles a person out.
    pub fn learn_traits(
        &mut self,
        traits: &[String],
        profiles: &[&Profile],
        cap: usize,
    ) -> Result<(), FeatureError> {
        for t in traits {
            let values: Vec<&serde_json::Value> = profiles
                .iter()
                .filter_map(|p| p.traits.get(t).map(|t| &t.value))
                .filter(|v| !v.is_null())
                .collect();
            let numbers: Vec<f64> = values.iter().filter_map(|v| number(v)).collect();
            if !values.is_empty() && numbers.len() == values.len() {
                let median = crate::dataset::median(numbers.into_iter());
                self.numeric_traits.push((t.clone(), median));
            } else {
                let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
                for v in values {
                    *counts.entry(text(v)).or_default() += 1;
                }
                if counts.len() > cap && counts.len() * 2 > profiles.len() {
                    return Err(FeatureError::Identifier(t.clone()));
                }
                let mut by: Vec<(String, usize)> = counts.into_iter().filter(|(_, n)| *n >= 10).collect();
                by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                by.truncate(cap);
                self.categorical_traits
                    .push((t.clone(), by.into_iter().map(|(v, _)| v).collect()));
            }
        }
        Ok(())
    }
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok().filter(|v| v.is_finite()),
        _ => None,
    }
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use missive_core::profile::OrderAggregate;
    use missive_core::{Money, ProfileId};

    fn profile(now: DateTime<Utc>) -> Profile {
        let mut p = Profile::new(
            ProfileId::parse("prf_0000000000000000000000000000000a").unwrap(),
            now - chrono::Duration::days(100),
        );
        p.first_seen = Some(now - chrono::Duration::days(100));
        p.last_seen = Some(now - chrono::Duration::days(2));
        p.orders = OrderAggregate {
            count: 4,
            revenue: Money(20_000),
            first_at: Some(now - chrono::Duration::days(90)),
            last_at: Some(now - chrono::Duration::days(10)),
            categories: [("Dresses".to_owned(), 3), ("Shoes".to_owned(), 1)].into(),
        };
        p
    }

    #[test]
    fn orders_tenure_and_absent_events() {
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let spec = FeatureSpec {
            events: vec!["Email Opened".into()],
            windows_days: vec![30],
            scores: vec!["clv".into()],
            ..FeatureSpec::default()
        };
        let mut p = profile(now);
        p.scores.insert("clv".into(), serde_json::json!(123.5));
        let f = spec.extract(&p, now);
        let names = spec.names();
        assert_eq!(names.len(), f.len());
        let get = |n: &str| f[names.iter().position(|x| x == n).unwrap()];
        assert_eq!(get("orders_count"), 4.0);
        assert_eq!(get("revenue_total"), 200.0);
        assert_eq!(get("average_order_value"), 50.0);
        assert_eq!(get("days_since_order"), 10.0);
        assert_eq!(get("tenure_days"), 100.0);
        assert_eq!(get("days_since_seen"), 2.0);
        // Never opened: no count, and "days since" is the whole tenure.
        assert_eq!(get("Email Opened.30d"), 0.0);
        assert_eq!(get("Email Opened.days_since"), 100.0);
        assert_eq!(get("click_to_open"), 0.0);
        assert_eq!(get("opens_per_message"), 0.0);
        assert_eq!(get("scores.clv"), 123.5);
        assert!(
            FeatureSpec {
                windows_days: vec![120],
                ..FeatureSpec::default()
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn engagement_per_message_and_categories_bought() {
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let mut p = profile(now);
        let mut touched = missive_core::Touched::default();
        for (name, n) in [(EMAIL_DELIVERED, 4), (EMAIL_OPENED, 2), (EMAIL_CLICKED, 1)] {
            for i in 0..n {
                let e = missive_core::message::validate_message(
                    serde_json::json!({"type": "track", "userId": "u", "event": name,
                        "messageId": format!("{name}{i}"), "timestamp": "2026-10-20T00:00:00Z"}),
                    None,
                    None,
                    now,
                )
                .unwrap();
                p.apply_event(&e, 0, &mut touched);
            }
        }
        let mut spec = FeatureSpec::default();
        let many: Vec<Profile> = (0..12).map(|_| p.clone()).collect();
        let mut refs: Vec<&Profile> = many.iter().collect();
        let mut rare = profile(now);
        rare.orders.categories = [("Hats".to_owned(), 9)].into();
        refs.push(&rare);
        spec.learn_categories(&refs, 20);
        // Hats: one buyer, under the 10 that make a category a feature.
        assert_eq!(spec.categories, ["Dresses", "Shoes"]);
        let names = spec.names();
        let f = spec.extract(&p, now);
        assert_eq!(names.len(), f.len());
        let get = |n: &str| f[names.iter().position(|x| x == n).unwrap()];
        assert_eq!(get("Email Delivered.30d"), 4.0);
        assert_eq!(get("opens_per_message"), 0.5);
        assert_eq!(get("clicks_per_message"), 0.25);
        assert_eq!(get("click_to_open"), 0.5);
        assert_eq!(get("category.Dresses"), 3.0);
        assert_eq!(get("category.Shoes"), 1.0);
        spec.learn_categories(&refs, 1);
        assert_eq!(spec.categories, ["Dresses"]);
    }

    #[test]
    fn a_spec_stored_before_the_per_message_features_reads_as_it_was_fitted() {
        let old = serde_json::json!({"events": ["Email Opened"], "windows_days": [30]});
        let spec: FeatureSpec = serde_json::from_value(old).unwrap();
        assert!(!spec.per_message);
        assert!(!spec.names().iter().any(|n| n.ends_with("per_message")));
        assert_eq!(spec.names().len(), 7 + 3 + 1);
    }
}
