//! A year of a fashion shop's customers, simulated: sessions that come more often in the
//! sales (late November, late December to January, early July), views within each person's
//! favourite categories, carts filled and abandoned, purchases that make the next visit more
//! likely (repeat buyers), loyalty tiers, consent choices (some decline), anonymous visitors
//! who sign in later, and the monthly newsletter's deliveries, opens and clicks. Pure and
//! seeded: Segment messages in, nothing else.

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use missive_content::recs::Product;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// One generated message, and whether missive itself would have recorded it (the newsletter's
/// deliveries, opens and clicks) rather than the shop.
pub struct Generated {
    pub at: DateTime<Utc>,
    pub message: Value,
    pub own: bool,
}

const FIRST: &[&str] = &[
    "Emma", "Léa", "Sofia", "Mia", "Olivia", "Chloé", "Anna", "Nora", "Zoé", "Lina", "Alice", "Inès",
    "Julia", "Eva", "Camille", "Louise", "Hanna", "Maya", "Sara", "Clara", "Lucas", "Noah", "Leo", "Adam",
    "Hugo", "Arthur", "Louis", "Jules", "Paul", "Tom",
];
const LAST: &[&str] = &[
    "Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Simon", "Michel", "Lefebvre", "Leroy", "Roux",
    "Müller", "Schmidt", "Rossi", "García", "Jansen", "Novak", "Berg", "Costa", "Silva", "Weber",
];
const CITIES: &[&str] = &[
    "Paris",
    "Lyon",
    "Berlin",
    "Hamburg",
    "Amsterdam",
    "Milan",
    "Madrid",
    "Lisbon",
    "Vienna",
    "Brussels",
];

/// How much more shopping happens on `at`'s day than on an ordinary one.
pub fn season(at: DateTime<Utc>) -> f64 {
    let (m, d) = (at.month(), at.day());
    match (m, d) {
        (11, 20..=30) => 2.6,               // Black Friday week
        (12, 1..=20) => 1.8,                // gifts
        (12, 26..=31) | (1, 1..=15) => 1.6, // winter sale
        (7, 1..=20) => 1.4,                 // summer sale
        (2, _) | (8, _) => 0.8,
        _ => 1.0,
    }
}

/// A name as the local part of an address: lower case, accents dropped (`Léa` → `lea`).
fn ascii(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| match c {
            'é' | 'è' | 'ê' => 'e',
            'í' => 'i',
            'ó' | 'ö' => 'o',
            'ü' => 'u',
            'ç' => 'c',
            c => c,
        })
        .collect()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn product_props(p: &Product, quantity: u32) -> Value {
    json!({
        "product_id": p.id, "sku": p.variants.first().map_or(p.id.as_str(), |v| v.sku.as_str()),
        "name": p.title, "category": p.categories.first(), "brand": p.brand,
        "price": p.price, "quantity": quantity, "currency": "EUR",
        "url": p.url,
    })
}

/// Customer `i`'s year up to `end`, in time order.
pub fn customer(
    seed: u64,
    i: usize,
    catalogue: &[Product],
    categories: &[&str],
    end: DateTime<Utc>,
) -> Vec<Generated> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64);
    let mut out = Vec::new();
    let user_id = format!("cust-{:05}", i + 1);
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let last = LAST[rng.random_range(0..LAST.len())];
    let email = format!("{}.{}{}@example.com", ascii(first), ascii(last), i + 1);
    let start = end - TimeDelta::days(365);
    // Earlier customers are more numerous: a shop that has been growing.
    let joined = start + TimeDelta::minutes((rng.random::<f64>().powf(1.4) * 364.0 * 1440.0) as i64);
    // Sessions per month: log-normal around 0.7, a few very frequent shoppers.
    let base_rate = (0.1 + 0.6 * (0.7 * normal(&mut rng)).exp()) / 30.0;
    let favourites: Vec<&str> = (0..rng.random_range(1..=2))
        .map(|_| categories[rng.random_range(0..categories.len())])
        .collect();
    let anonymous_first = rng.random_bool(0.25);
    let anonymous_id = format!("anon-{:05}-{}", i + 1, rng.random_range(1000..9999));
    let declines_all = rng.random_bool(0.08);
    let marketing = !declines_all && rng.random_bool(0.85);
    let personalization = !declines_all && rng.random_bool(0.7);
    let profiling = !declines_all && rng.random_bool(0.45);
    let mut known = !anonymous_first;
    // When the person signed up: the newsletter reaches them only after.
    let mut known_since = known.then_some(joined);
    let mut n = 0u32;
    let mut id = |kind: &str| {
        n += 1;
        format!("demo-{}-{kind}-{n}", i + 1)
    };
    let who = |known: bool| {
        if known {
            json!({"userId": user_id, "anonymousId": anonymous_id})
        } else {
            json!({"anonymousId": anonymous_id})
        }
    };
    let traits = json!({
        "email": email, "first_name": first, "last_name": last,
        "city": CITIES[rng.random_range(0..CITIES.len())],
        "consent": {"email_marketing": marketing, "personalization": personalization, "profiling": profiling},
    });
    let identify = |at: DateTime<Utc>, id: String, traits: Value| {
        let mut m = json!({"type": "identify", "userId": user_id, "anonymousId": anonymous_id,
            "traits": traits, "messageId": id, "timestamp": at.to_rfc3339()});
        if declines_all {
            m["context"] =
                json!({"consent": {"email_marketing": false, "personalization": false, "profiling": false}});
        }
        Generated {
            at,
            message: m,
            own: false,
        }
    };
    let signed_up = |at: DateTime<Utc>, id: String| Generated {
        at,
        message: json!({"type": "track", "userId": user_id, "event": "Signed Up",
            "messageId": id, "timestamp": at.to_rfc3339()}),
        own: false,
    };
    if known {
        out.push(identify(joined, id("signup"), traits.clone()));
        out.push(signed_up(joined, id("signed-up")));
    }
    let mut t = joined;
    let mut orders = 0u32;
    let mut spent = 0.0f64;
    let mut boost = 1.0f64;
    loop {
        // The next session: an exponential wait at the season's rate.
        let rate = base_rate * season(t) * boost;
        let wait_days = -rng.random_range(f64::EPSILON..1.0f64).ln() / rate;
        t += TimeDelta::minutes((wait_days * 1440.0) as i64 + 1);
        if t >= end {
            break;
        }
        boost = (boost * 0.9).max(1.0);
        let mut push = |at: DateTime<Utc>, m: Value| {
            out.push(Generated {
                at,
                message: m,
                own: false,
            })
        };
        let mut at = t;
        let category = if rng.random_bool(0.8) {
            favourites[rng.random_range(0..favourites.len())]
        } else {
            categories[rng.random_range(0..categories.len())]
        };
        let pool: Vec<&Product> = catalogue
            .iter()
            .filter(|p| p.categories.first().is_some_and(|c| c == category))
            .collect();
        let mut m = who(known);
        m["type"] = "page".into();
        m["name"] = "Category".into();
        m["properties"] = json!({"category": category, "path": format!("/c/{category}")});
        m["messageId"] = id("page").into();
        m["timestamp"] = at.to_rfc3339().into();
        push(at, m);
        let mut viewed = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            at += TimeDelta::seconds(rng.random_range(20..240));
            let p = pool[rng.random_range(0..pool.len())];
            viewed.push(p);
            let mut m = who(known);
            m["type"] = "track".into();
            m["event"] = "Product Viewed".into();
            m["properties"] = product_props(p, 1);
            m["messageId"] = id("view").into();
            m["timestamp"] = at.to_rfc3339().into();
            push(at, m);
        }
        // An anonymous visitor signs up after a few visits.
        if !known && rng.random_bool(0.35) {
            known = true;
            at += TimeDelta::seconds(30);
            known_since = Some(at);
            out.push(identify(at, id("signup"), traits.clone()));
            out.push(signed_up(at, id("signed-up")));
        }
        if !rng.random_bool(0.32) {
            continue;
        }
        let cart_id = format!("cart-{}-{}", i + 1, out.len());
        let mut cart = Vec::new();
        for p in viewed.iter().take(rng.random_range(1..=2)) {
            at += TimeDelta::seconds(rng.random_range(10..120));
            cart.push(*p);
            let mut m = who(known);
            m["type"] = "track".into();
            m["event"] = "Product Added".into();
            let mut props = product_props(p, 1);
            props["cart_id"] = cart_id.clone().into();
            m["properties"] = props;
            m["messageId"] = id("add").into();
            m["timestamp"] = at.to_rfc3339().into();
            out.push(Generated {
                at,
                message: m,
                own: false,
            });
        }
        // Buyers come back: every order makes a purchase and a next visit likelier.
        let buys = known && rng.random_bool((0.42 + 0.05 * f64::from(orders.min(6))).min(0.75));
        if !buys {
            continue;
        }
        at += TimeDelta::minutes(rng.random_range(2..30));
        let revenue: f64 = cart.iter().map(|p| p.price.unwrap_or(0.0)).sum();
        orders += 1;
        spent += revenue;
        boost = 1.6;
        let mut m = who(true);
        m["type"] = "track".into();
        m["event"] = "Order Completed".into();
        m["properties"] = json!({
            "order_id": format!("ord-{}-{orders}", i + 1), "cart_id": cart_id,
            "revenue": (revenue * 100.0).round() / 100.0, "currency": "EUR",
            "products": cart.iter().map(|p| product_props(p, 1)).collect::<Vec<_>>(),
        });
        m["messageId"] = id("order").into();
        m["timestamp"] = at.to_rfc3339().into();
        out.push(Generated {
            at,
            message: m,
            own: false,
        });
        let tier = match spent {
            s if s >= 800.0 => "gold",
            s if s >= 300.0 => "silver",
            _ => "bronze",
        };
        at += TimeDelta::seconds(5);
        out.push(identify(
            at,
            id("tier"),
            json!({"loyalty_tier": tier, "lifetime_spend": (spent * 100.0).round() / 100.0}),
        ));
    }
    // The monthly newsletter, to those who consented once they are known.
    if marketing {
        let mut month = joined + TimeDelta::days(7);
        let mut issue = 0u32;
        while month < end {
            issue += 1;
            let at = month
                .date_naive()
                .and_hms_opt(9, 0, 0)
                .map_or(month, |d| d.and_utc());
            let message_id = format!("demo-nl-{}-{issue}", i + 1);
            if known_since.is_some_and(|k| at > k) {
                let email_event = |name: &str, at: DateTime<Utc>, k: &str| Generated {
                    at,
                    message: json!({"type": "track", "userId": user_id, "event": name,
                        "properties": {"message_id": message_id, "template": "newsletter"},
                        "messageId": format!("{message_id}-{k}"), "timestamp": at.to_rfc3339()}),
                    own: true,
                };
                out.push(email_event("Email Delivered", at, "d"));
                if rng.random_bool(0.34) {
                    let opened = at + TimeDelta::minutes(rng.random_range(5..2000));
                    out.push(email_event("Email Opened", opened, "o"));
                    if rng.random_bool(0.22) {
                        out.push(email_event(
                            "Email Link Clicked",
                            opened + TimeDelta::seconds(40),
                            "c",
                        ));
                    }
                }
            }
            month += TimeDelta::days(30);
        }
    }
    // A session or an open that would run past the end did not happen yet.
    out.retain(|g| g.at < end);
    out.sort_by_key(|g| g.at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_simulated_year_looks_like_a_shop() {
        let end = Utc.with_ymd_and_hms(2026, 12, 15, 0, 0, 0).unwrap();
        let catalogue = crate::demo::catalogue::catalogue(1, 140);
        let cats = crate::demo::catalogue::categories();
        let people: Vec<Vec<Generated>> = (0..400).map(|i| customer(1, i, &catalogue, &cats, end)).collect();
        let all: Vec<&Generated> = people.iter().flatten().collect();
        let named = |e: &str| all.iter().filter(|g| g.message["event"] == e).count();
        let (views, adds, orders) = (
            named("Product Viewed"),
            named("Product Added"),
            named("Order Completed"),
        );
        assert!(
            views > 4 * adds && adds > orders && orders > 100,
            "{views} views, {adds} adds, {orders} orders"
        );
        // Some carts are abandoned, some visitors stay anonymous.
        assert!(adds > orders + orders / 4);
        assert!(all.iter().any(|g| g.message.get("userId").is_none()));
        // Repeat buyers: a share of buyers bought more than once.
        let buyers = people
            .iter()
            .filter(|p| p.iter().any(|g| g.message["event"] == "Order Completed"))
            .count();
        let repeat = people
            .iter()
            .filter(|p| {
                p.iter()
                    .filter(|g| g.message["event"] == "Order Completed")
                    .count()
                    > 1
            })
            .count();
        assert!(repeat * 4 > buyers, "{repeat} repeat of {buyers} buyers");
        // Black Friday week sells more per day than an ordinary week in October.
        let orders_in = |from: DateTime<Utc>, days: i64| {
            all.iter()
                .filter(|g| {
                    g.message["event"] == "Order Completed"
                        && g.at >= from
                        && g.at < from + TimeDelta::days(days)
                })
                .count() as f64
                / days as f64
        };
        let bf = orders_in(Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap(), 10);
        let oct = orders_in(Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(), 28);
        assert!(bf > 1.5 * oct, "{bf} vs {oct} orders a day");
        // Every message is in range, in order, with a unique id.
        let ids: std::collections::HashSet<_> = all
            .iter()
            .map(|g| g.message["messageId"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), all.len());
        assert!(people.iter().all(|p| p.windows(2).all(|w| w[0].at <= w[1].at)));
        assert!(
            all.iter()
                .all(|g| g.at < end && g.at >= end - TimeDelta::days(366))
        );
        // Addresses are plain ASCII.
        assert!(
            all.iter()
                .filter_map(|g| g.message["traits"]["email"].as_str())
                .all(|e| e.is_ascii())
        );
        // The same seed, the same year.
        assert_eq!(customer(1, 3, &catalogue, &cats, end).len(), people[3].len());
    }
}
