//! What a profile counts: events per name over time (hourly buckets, rolling windows),
//! orders and revenue, RFM.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Money;

/// A profile's [`EventAggregate`]s by event name, in name order. A sorted vector rather than a
/// `BTreeMap`: a profile counts a handful of names, and a B-tree's first node is sized for
/// eleven (about 900 bytes here), which was the largest part of a cached profile after its
/// hash-table slot (heaptrack; docs/BENCHMARKS.md, "Memory under ingest").
///
/// A newtype for its serialization: always a JSON object, as the `BTreeMap` wrote it (litemap
/// writes an empty map as a list, which older binaries and readers of exports would refuse).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct EventAggregates(litemap::LiteMap<String, EventAggregate>);

impl EventAggregates {
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::ops::Deref for EventAggregates {
    type Target = litemap::LiteMap<String, EventAggregate>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for EventAggregates {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a EventAggregates {
    type Item = (&'a String, &'a EventAggregate);
    type IntoIter = <&'a litemap::LiteMap<String, EventAggregate> as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<(String, EventAggregate)> for EventAggregates {
    fn from_iter<I: IntoIterator<Item = (String, EventAggregate)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Serialize for EventAggregates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
    }
}

/// Per event name: totals and hourly counts over the last 90 days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventAggregate {
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    /// `(hour since the epoch, count)`, ascending; hours older than 90 days before the latest
    /// are dropped.
    #[serde(default)]
    pub hourly: Vec<(i64, u32)>,
}

impl EventAggregate {
    pub(crate) fn new(at: DateTime<Utc>) -> Self {
        Self {
            count: 0,
            first_at: at,
            last_at: at,
            hourly: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, at: DateTime<Utc>, n: u64) {
        self.count += n;
        self.first_at = self.first_at.min(at);
        self.last_at = self.last_at.max(at);
        self.add_to_hour(at.timestamp().div_euclid(3600), n as u32);
    }

    pub(crate) fn add_to_hour(&mut self, hour: i64, n: u32) {
        let newest = self.hourly.last().map_or(hour, |&(h, _)| h.max(hour));
        if hour <= newest - BUCKET_RETENTION_HOURS {
            return;
        }
        match self.hourly.binary_search_by_key(&hour, |&(h, _)| h) {
            Ok(i) => self.hourly[i].1 = self.hourly[i].1.saturating_add(n),
            Err(i) => self.hourly.insert(i, (hour, n)),
        }
        let cutoff = newest - BUCKET_RETENTION_HOURS;
        let keep_from = self.hourly.partition_point(|&(h, _)| h <= cutoff);
        if keep_from > 0 {
            self.hourly.drain(..keep_from);
        }
    }

    /// Events in the rolling window of `days` ending at `now`, at hour resolution: an event
    /// counts while its hour started less than `days` days before `now`'s hour.
    pub fn count_within(&self, now: DateTime<Utc>, days: i64) -> u64 {
        let now_hour = now.timestamp().div_euclid(3600);
        let from = now_hour - days * 24;
        self.hourly
            .iter()
            .filter(|&&(h, _)| h > from && h <= now_hour)
            .map(|&(_, c)| u64::from(c))
            .sum()
    }

    pub(crate) fn absorb(&mut self, other: &EventAggregate) {
        self.count += other.count;
        self.first_at = self.first_at.min(other.first_at);
        self.last_at = self.last_at.max(other.last_at);
        for &(h, c) in &other.hourly {
            self.add_to_hour(h, c);
        }
    }
}

/// Orders and revenue from `Order Completed` events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAggregate {
    pub count: u64,
    pub revenue: Money,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// Items bought per product category (`products[].category`, quantities summed), for at
    /// most [`MAX_CATEGORIES`] categories: once full, a new category is not counted (a
    /// catalogue's category names are few; this bounds a profile's size against bad input).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, u64>,
}

/// At most this many categories are counted per profile.
pub const MAX_CATEGORIES: usize = 64;
/// A category name longer than this is cut (on a character boundary).
const MAX_CATEGORY_LEN: usize = 100;

impl OrderAggregate {
    /// Counts an order's items per category.
    pub(crate) fn add_categories(&mut self, props: &Map<String, Value>) {
        let Some(Value::Array(products)) = props.get("products") else {
            return;
        };
        for p in products {
            let Some(c) = p.get("category").and_then(Value::as_str).map(str::trim) else {
                continue;
            };
            if c.is_empty() {
                continue;
            }
            let qty = p
                .get("quantity")
                .and_then(Value::as_f64)
                .filter(|q| q.is_finite() && *q >= 1.0)
                .map_or(1, |q| q.min(1e6) as u64);
            self.add_category(c, qty);
        }
    }

    pub(crate) fn add_category(&mut self, category: &str, n: u64) {
        let mut end = category.len().min(MAX_CATEGORY_LEN);
        while !category.is_char_boundary(end) {
            end -= 1;
        }
        let c = &category[..end];
        if let Some(have) = self.categories.get_mut(c) {
            *have = have.saturating_add(n);
        } else if self.categories.len() < MAX_CATEGORIES {
            self.categories.insert(c.to_owned(), n);
        }
    }

    pub fn average_order_value(&self) -> Option<Money> {
        (self.count > 0).then(|| Money(self.revenue.0 / self.count as i64))
    }
}

/// Recency, frequency and monetary value, raw (scores relative to the population are the
/// segment engine's business).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rfm {
    pub recency_days: Option<f64>,
    pub frequency: u64,
    pub monetary: Money,
}

/// Hourly counts older than this are dropped: the longest window.
pub(crate) const BUCKET_RETENTION_HOURS: i64 = 90 * 24;

/// Rolling windows reported for every event name, in days.
pub const WINDOW_DAYS: [i64; 4] = [1, 7, 30, 90];

/// Revenue of an order per Segment's e-commerce spec: `revenue`, else `total`, else the sum
/// of `products[].price × quantity`.
pub fn order_revenue(props: &Map<String, Value>) -> Money {
    if let Some(m) = props.get("revenue").and_then(Money::from_json) {
        return m;
    }
    if let Some(m) = props.get("total").and_then(Money::from_json) {
        return m;
    }
    let Some(Value::Array(products)) = props.get("products") else {
        return Money(0);
    };
    let cents = products
        .iter()
        .map(|p| {
            let price = p.get("price").and_then(Money::from_json).unwrap_or_default();
            let qty = p.get("quantity").and_then(Value::as_f64).unwrap_or(1.0);
            (price.0 as f64 * qty).round() as i64
        })
        .fold(0i64, i64::saturating_add);
    Money(cents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn categories_count_items_with_quantities_and_are_bounded() {
        let mut o = OrderAggregate::default();
        let props = json!({"products": [
            {"category": "Dresses", "quantity": 2},
            {"category": " Shoes "},
            {"category": ""},
            {"category": 7},
            {"name": "no category"},
            {"category": "Dresses", "quantity": -3},
        ]});
        o.add_categories(props.as_object().unwrap());
        assert_eq!(o.categories.get("Dresses"), Some(&3));
        assert_eq!(o.categories.get("Shoes"), Some(&1));
        assert_eq!(o.categories.len(), 2);
        // Long names are cut on a character boundary.
        o.add_category(&"é".repeat(80), 1);
        assert_eq!(o.categories.get(&"é".repeat(50)), Some(&1));
        o.categories.remove(&"é".repeat(50));
        for i in 0..100 {
            o.add_category(&format!("c{i}"), 1);
        }
        assert_eq!(o.categories.len(), MAX_CATEGORIES);
        // A known category still counts when the map is full.
        o.add_category("Shoes", 4);
        assert_eq!(o.categories.get("Shoes"), Some(&5));
    }
}
