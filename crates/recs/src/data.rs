//! Interactions: who did what with which item, when, and how much it says about their taste.
//!
//! Each interaction has a weight: given, or from its event through [`EventWeights`] (a view
//! says less than a purchase). [`Decay`] discounts old interactions with a half-life, down to a
//! floor, so that last season's purchases still count a little when the season comes round
//! again (a pure half-life would forget them). Ages are measured from the end of the data, not
//! from the wall clock, so a data set from years ago is not all forgotten.
//!
//! CSV tables (`missive recs evaluate --interactions FILE.csv [--items FILE.csv]`) name their
//! columns in a header; a bad line is reported by its number and the rest is used.

use std::collections::HashMap;
use std::io::Read;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// One interaction, with interned user, item and basket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    /// How much it says, before the decay.
    pub weight: f32,
    /// Seconds since the Unix epoch (0 when the table has no time).
    pub at: i64,
    /// The order or session it belongs to (for item-to-item); per user and day when not given.
    pub basket: u32,
}

/// Ids as strings, interned to dense numbers.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl Interner {
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), i);
        i
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// All interactions of a data set.
#[derive(Debug, Clone, Default)]
pub struct Interactions {
    pub users: Interner,
    pub items: Interner,
    pub baskets: Interner,
    pub rows: Vec<Interaction>,
}

impl Interactions {
    /// Adds an interaction; without a basket, the user's day is one.
    pub fn push(&mut self, user: &str, item: &str, weight: f32, at: i64, basket: Option<&str>) {
        let u = self.users.intern(user);
        let i = self.items.intern(item);
        let b = match basket {
            Some(b) => self.baskets.intern(b),
            None => self
                .baskets
                .intern(&format!("{user}\u{1f}{}", at.div_euclid(86_400))),
        };
        self.rows.push(Interaction {
            user: u,
            item: i,
            weight,
            at,
            basket: b,
        });
    }

    /// Numbers catalogue items that no one has interacted with yet, so that the strategies that
    /// need no interactions (content) can recommend them (the cold start).
    pub fn add_items<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.items.intern(id);
        }
    }

    /// The latest time in the data (0 when empty).
    pub fn end(&self) -> i64 {
        self.rows.iter().map(|r| r.at).max().unwrap_or(0)
    }

    /// The same ids with only the rows `keep` accepts.
    pub fn filtered(&self, keep: impl Fn(&Interaction) -> bool) -> Interactions {
        Interactions {
            users: self.users.clone(),
            items: self.items.clone(),
            baskets: self.baskets.clone(),
            rows: self.rows.iter().filter(|r| keep(r)).copied().collect(),
        }
    }

    /// Each user's rows, by time.
    pub fn by_user(&self) -> Vec<Vec<Interaction>> {
        let mut out = vec![Vec::new(); self.users.len()];
        for r in &self.rows {
            out[r.user as usize].push(*r);
        }
        // Stable: rows of the same time keep the table's order.
        for v in &mut out {
            v.sort_by_key(|r| r.at);
        }
        out
    }

    /// How many rows name each item.
    pub fn item_counts(&self) -> Vec<u32> {
        let mut c = vec![0u32; self.items.len()];
        for r in &self.rows {
            c[r.item as usize] += 1;
        }
        c
    }
}

/// Weights of events by name. Unknown events weigh nothing and are skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventWeights(pub Vec<(String, f32)>);

impl Default for EventWeights {
    fn default() -> Self {
        EventWeights(
            [
                ("Product Viewed", 1.0),
                ("Product Clicked", 1.0),
                ("Email Link Clicked", 2.0),
                ("Product Added", 3.0),
                ("Product Added to Wishlist", 2.0),
                ("Order Completed", 5.0),
                ("view", 1.0),
                ("click", 2.0),
                ("cart", 3.0),
                ("purchase", 5.0),
            ]
            .map(|(n, w)| (n.to_owned(), w))
            .to_vec(),
        )
    }
}

impl EventWeights {
    pub fn of(&self, event: &str) -> Option<f32> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(event.trim()))
            .map(|(_, w)| *w)
    }

    /// These weights with `overrides` (event name, weight): a named event's weight replaced,
    /// a new one added; a weight of 0 leaves the event out.
    pub fn with(mut self, overrides: &[(String, f32)]) -> Result<EventWeights, String> {
        for (name, w) in overrides {
            let name = name.trim();
            if name.is_empty() {
                return Err("an event weight needs an event name".into());
            }
            if !(w.is_finite() && *w >= 0.0 && *w <= 1_000.0) {
                return Err(format!("the weight of {name:?} is {w}: 0 (left out) to 1000"));
            }
            match self.0.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some(e) => e.1 = *w,
                None => self.0.push((name.to_owned(), *w)),
            }
        }
        Ok(self)
    }

    /// `"Product Viewed=0.5"` → ("Product Viewed", 0.5).
    pub fn parse_override(s: &str) -> Result<(String, f32), String> {
        let (name, w) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?}: expected EVENT=WEIGHT, e.g. \"Product Viewed=0.5\""))?;
        let w: f32 = w
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: the weight {:?} is not a number", w.trim()))?;
        Ok((name.trim().to_owned(), w))
    }
}

/// The items an event is about, each with its weight and basket (Segment's e-commerce spec):
/// `Order Completed` names `products[].product_id` (basket: `order_id`), the product events
/// name `product_id`, a click in an e-mail names one when its link was a product's. The
/// product id is the style: sizes and colours are its variants (`sku`, `variant`), one item
/// for recommending. Events with no weight, or no product, give nothing.
pub fn items_of_event<'a>(
    name: &str,
    properties: &'a serde_json::Map<String, serde_json::Value>,
    weights: &EventWeights,
) -> Vec<(&'a str, f32, Option<&'a str>)> {
    let Some(w) = weights.of(name).filter(|w| *w > 0.0) else {
        return Vec::new();
    };
    let id = |p: &'a serde_json::Map<String, serde_json::Value>| {
        p.get("product_id")
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 200)
    };
    let basket = properties
        .get("order_id")
        .or_else(|| properties.get("checkout_id"))
        .and_then(serde_json::Value::as_str);
    match properties.get("products").and_then(serde_json::Value::as_array) {
        Some(products) if name.eq_ignore_ascii_case("Order Completed") => products
            .iter()
            .filter_map(|p| p.as_object().and_then(id).map(|i| (i, w, basket)))
            .collect(),
        _ => id(properties).map(|i| (i, w, basket)).into_iter().collect(),
    }
}

/// Older interactions count less: `max(floor, 0.5^(age / half_life))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decay {
    /// In days; `None` keeps every interaction at its full weight.
    pub half_life_days: Option<f64>,
    pub floor: f64,
}

impl Default for Decay {
    fn default() -> Self {
        Decay {
            half_life_days: Some(90.0),
            floor: 0.1,
        }
    }
}

impl Decay {
    pub const NONE: Decay = Decay {
        half_life_days: None,
        floor: 1.0,
    };

    /// The factor for an interaction at `at` seen from `now` (both in seconds).
    pub fn factor(&self, at: i64, now: i64) -> f32 {
        match self.half_life_days {
            None => 1.0,
            Some(h) if h > 0.0 => {
                let age_days = (now - at).max(0) as f64 / 86_400.0;
                0.5f64.powf(age_days / h).max(self.floor.clamp(0.0, 1.0)) as f32
            }
            Some(_) => 1.0,
        }
    }
}

/// A line of a table that was not used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// 1-based, counting the header.
    pub line: u64,
    pub why: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("the table has no header line")]
    Empty,
    #[error("no `{0}` column: the header must name it (accepted: {1})")]
    MissingColumn(&'static str, &'static str),
    #[error("the table has neither a `weight` nor an `event` column: one says how much each row counts")]
    NoWeight,
    #[error("reading the table: {0}")]
    Csv(#[from] csv::Error),
}

fn column(header: &csv::StringRecord, names: &[&str]) -> Option<usize> {
    header
        .iter()
        .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
}

/// The records of a table that parse, with their 1-based line numbers (the header is line
/// 1); each one that does not is added to `bad`.
fn numbered<'a, R: Read>(
    r: &'a mut csv::Reader<R>,
    bad: &'a mut Vec<LineError>,
) -> impl Iterator<Item = (u64, csv::StringRecord)> + 'a {
    r.records().enumerate().filter_map(|(n, rec)| {
        let line = n as u64 + 2;
        match rec {
            Ok(rec) => Some((line, rec)),
            Err(e) => {
                bad.push(LineError {
                    line,
                    why: e.to_string(),
                });
                None
            }
        }
    })
}

/// A time as RFC 3339, `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DD`, or seconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Some(t.and_utc().timestamp());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    }
    s.parse::<i64>().ok()
}

/// Reads interactions: columns `user` (or `user_id`), `item` (`item_id`, `product_id`), and
/// `weight` or `event` (weighed by `weights`); optional `time` (`timestamp`) and `basket`
/// (`order_id`, `session`). Returns the interactions and the lines left out.
pub fn read_interactions(
    input: impl Read,
    weights: &EventWeights,
) -> Result<(Interactions, Vec<LineError>), TableError> {
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = r.headers()?.clone();
    if header.is_empty() {
        return Err(TableError::Empty);
    }
    let user = column(&header, &["user", "user_id", "userid", "customer_id"])
        .ok_or(TableError::MissingColumn("user", "user, user_id, customer_id"))?;
    let item = column(&header, &["item", "item_id", "product_id", "sku"]).ok_or(
        TableError::MissingColumn("item", "item, item_id, product_id, sku"),
    )?;
    let weight = column(&header, &["weight", "rating", "quantity"]);
    let event = column(&header, &["event", "event_type", "action"]);
    if weight.is_none() && event.is_none() {
        return Err(TableError::NoWeight);
    }
    let time = column(&header, &["time", "timestamp", "date", "at"]);
    let basket = column(&header, &["basket", "order_id", "session", "session_id"]);
    let mut out = Interactions::default();
    let mut bad = Vec::new();
    let mut unreadable = Vec::new();
    for (line, rec) in numbered(&mut r, &mut unreadable) {
        let field = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(str::trim);
        let (Some(u), Some(i)) = (field(Some(user)), field(Some(item))) else {
            bad.push(LineError {
                line,
                why: "too few fields".into(),
            });
            continue;
        };
        if u.is_empty() || i.is_empty() {
            bad.push(LineError {
                line,
                why: "an empty user or item".into(),
            });
            continue;
        }
        let w = match (field(weight), field(event)) {
            (Some(w), _) if !w.is_empty() => match w.parse::<f32>() {
                Ok(w) if w.is_finite() && w > 0.0 => w,
                _ => {
                    bad.push(LineError {
                        line,
                        why: format!("weight {w:?} is not a positive number"),
                    });
                    continue;
                }
            },
            (_, Some(e)) => match weights.of(e) {
                Some(w) if w > 0.0 => w,
                _ => {
                    bad.push(LineError {
                        line,
                        why: format!("event {e:?} has no weight"),
                    });
                    continue;
                }
            },
            _ => {
                bad.push(LineError {
                    line,
                    why: "no weight and no event".into(),
                });
                continue;
            }
        };
        let at = match field(time) {
            None | Some("") => 0,
            Some(t) => match parse_time(t) {
                Some(t) => t,
                None => {
                    bad.push(LineError {
                        line,
                        why: format!("time {t:?} is not a date, RFC 3339 time or epoch seconds"),
                    });
                    continue;
                }
            },
        };
        out.push(u, i, w, at, field(basket).filter(|b| !b.is_empty()));
    }
    bad.extend(unreadable);
    bad.sort_by_key(|b| b.line);
    Ok((out, bad))
}

/// An item's text and attributes, for content-based recommendations and business filters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub colour: String,
    #[serde(default)]
    pub price: Option<f64>,
    #[serde(default = "yes")]
    pub in_stock: bool,
}

fn yes() -> bool {
    true
}

/// Reads items: an `id` column (`item`, `item_id`, `product_id`) and any of `title` (`name`),
/// `description`, `category`, `brand`, `colour` (`color`), `price`, `in_stock`.
pub fn read_items(input: impl Read) -> Result<(Vec<Item>, Vec<LineError>), TableError> {
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = r.headers()?.clone();
    let id = column(&header, &["id", "item", "item_id", "product_id", "sku"]).ok_or(
        TableError::MissingColumn("id", "id, item, item_id, product_id, sku"),
    )?;
    let title = column(&header, &["title", "name"]);
    let description = column(&header, &["description"]);
    let category = column(&header, &["category", "categories", "type"]);
    let brand = column(&header, &["brand"]);
    let colour = column(&header, &["colour", "color"]);
    let price = column(&header, &["price"]);
    let stock = column(&header, &["in_stock", "available"]);
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut unreadable = Vec::new();
    for (line, rec) in numbered(&mut r, &mut unreadable) {
        let field = |c: Option<usize>| c.and_then(|c| rec.get(c)).map(str::trim).unwrap_or("");
        let item_id = field(Some(id));
        if item_id.is_empty() {
            bad.push(LineError {
                line,
                why: "no id".into(),
            });
            continue;
        }
        let price_text = field(price);
        let price = if price_text.is_empty() {
            None
        } else {
            match price_text.parse::<f64>() {
                Ok(p) if p.is_finite() && p >= 0.0 => Some(p),
                _ => {
                    bad.push(LineError {
                        line,
                        why: format!("price {price_text:?} is not a number"),
                    });
                    continue;
                }
            }
        };
        out.push(Item {
            id: item_id.to_owned(),
            title: field(title).to_owned(),
            description: field(description).to_owned(),
            category: field(category).to_owned(),
            brand: field(brand).to_owned(),
            colour: field(colour).to_owned(),
            price,
            in_stock: !matches!(field(stock).to_ascii_lowercase().as_str(), "false" | "0" | "no"),
        });
    }
    bad.extend(unreadable);
    bad.sort_by_key(|b| b.line);
    Ok((out, bad))
}

/// The time of `t`, for reports.
pub fn show_time(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_reported_by_number_and_the_rest_used() {
        let csv = "user,item,event,time\n\
                   ann,p1,Product Viewed,2026-01-01\n\
                   ann,p2,Order Completed,2026-01-02T10:00:00Z\n\
                   bob,,view,2026-01-01\n\
                   bob,p1,dance,2026-01-01\n\
                   bob,p1,view,yesterday\n\
                   bob,p3,cart,1767225600\n";
        let (data, bad) = read_interactions(csv.as_bytes(), &EventWeights::default()).unwrap();
        assert_eq!(data.rows.len(), 3);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [4, 5, 6]);
        assert!(bad[1].why.contains("dance"), "{bad:?}");
        assert_eq!(data.rows[1].weight, 5.0);
        assert_eq!(data.rows[2].at, 1_767_225_600);
        assert!(matches!(
            read_interactions("who,what\n".as_bytes(), &EventWeights::default()),
            Err(TableError::MissingColumn("user", _))
        ));
        assert!(matches!(
            read_interactions("user,item\n".as_bytes(), &EventWeights::default()),
            Err(TableError::NoWeight)
        ));
    }

    #[test]
    fn events_name_their_products() {
        let w = EventWeights::default();
        let obj = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let order = obj(serde_json::json!({"order_id": "o1", "products": [
            {"product_id": "dress-1", "sku": "dress-1-M-blue"}, {"sku": "no-id"}, {"product_id": " "}
        ]}));
        assert_eq!(
            items_of_event("Order Completed", &order, &w),
            vec![("dress-1", 5.0, Some("o1"))]
        );
        let view = obj(serde_json::json!({"product_id": "boot-2"}));
        assert_eq!(
            items_of_event("Product Viewed", &view, &w),
            vec![("boot-2", 1.0, None)]
        );
        assert!(items_of_event("Signed Up", &view, &w).is_empty());
        let click = obj(serde_json::json!({"url": "x"}));
        assert!(items_of_event("Email Link Clicked", &click, &w).is_empty());
    }

    #[test]
    fn weights_can_be_changed_added_and_turned_off() {
        let w = EventWeights::default()
            .with(&[
                EventWeights::parse_override("product viewed = 0.5").unwrap(),
                EventWeights::parse_override("Size Guide Opened=1.5").unwrap(),
                EventWeights::parse_override("Order Completed=0").unwrap(),
            ])
            .unwrap();
        assert_eq!(w.of("Product Viewed"), Some(0.5));
        assert_eq!(w.of("Size Guide Opened"), Some(1.5));
        let order = serde_json::json!({"products": [{"product_id": "a"}]});
        assert!(items_of_event("Order Completed", order.as_object().unwrap(), &w).is_empty());
        assert!(EventWeights::parse_override("Viewed").is_err());
        assert!(EventWeights::parse_override("Viewed=much").is_err());
        assert!(EventWeights::default().with(&[("Viewed".into(), -1.0)]).is_err());
    }

    #[test]
    fn decay_halves_per_half_life_down_to_the_floor() {
        let d = Decay {
            half_life_days: Some(10.0),
            floor: 0.2,
        };
        let day = 86_400;
        assert_eq!(d.factor(100 * day, 100 * day), 1.0);
        assert!((d.factor(90 * day, 100 * day) - 0.5).abs() < 1e-6);
        assert!((d.factor(0, 100 * day) - 0.2).abs() < 1e-6);
        assert_eq!(Decay::NONE.factor(0, 100 * day), 1.0);
    }

    #[test]
    fn items_read_with_their_attributes() {
        let csv = "product_id,name,category,color,price,in_stock\n\
                   d1,Linen dress,Dresses,blue,59.90,true\n\
                   d2,Silk dress,Dresses,red,abc,true\n\
                   ,Nameless,Shoes,,,\n\
                   s1,Loafer,Shoes,,89,false\n";
        let (items, bad) = read_items(csv.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(bad.len(), 2);
        assert_eq!(items[0].colour, "blue");
        assert!(!items[1].in_stock);
    }
}
