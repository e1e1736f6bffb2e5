//! A shopping cart rebuilt from the events a journey saw, as Segment's e-commerce spec (v2)
//! writes them: `Product Added` and `Product Removed` carry one product each (`product_id`,
//! `sku`, `name`, `price`, `quantity`, …); `Cart Viewed` and `Checkout Started` carry the
//! whole cart in `products`, which replaces what was folded so far. Pure: events in, cart out.
//!
//! Templates read it as `journey.cart`: `products` (each with its `quantity` and `line_total`),
//! `item_count`, `value` (the sum of price × quantity) and `currency`.

use serde_json::{Map, Value, json};

/// Events that replace the cart with the list they carry.
const SNAPSHOTS: &[&str] = &["Cart Viewed", "Checkout Started"];

/// What identifies a product in a cart: `product_id`, else `sku`, else `name`.
fn product_key(p: &Map<String, Value>) -> Option<String> {
    ["product_id", "sku", "name"]
        .iter()
        .find_map(|k| match p.get(*k)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

fn quantity(p: &Map<String, Value>) -> f64 {
    p.get("quantity")
        .and_then(Value::as_f64)
        .filter(|q| q.is_finite() && *q > 0.0)
        .unwrap_or(1.0)
}

/// Product fields kept in the cart (the rest of an event's properties, such as `cart_id` or
/// `position`, describe the event, not the product).
const PRODUCT_FIELDS: &[&str] = &[
    "product_id",
    "sku",
    "name",
    "brand",
    "variant",
    "category",
    "price",
    "url",
    "image_url",
    "coupon",
];

fn product_of(p: &Map<String, Value>) -> Map<String, Value> {
    PRODUCT_FIELDS
        .iter()
        .filter_map(|k| p.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

/// Folds `events` (each `{"name", "properties"}`, oldest first) into the cart.
pub fn fold(events: &[Value]) -> Value {
    // Products in the order first added, with their quantities.
    let mut lines: Vec<(String, Map<String, Value>, f64)> = Vec::new();
    let mut currency: Option<String> = None;
    let mut cart_id: Option<Value> = None;
    for e in events {
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        let Some(props) = e.get("properties").and_then(Value::as_object) else {
            continue;
        };
        if let Some(c) = props.get("currency").and_then(Value::as_str) {
            currency = Some(c.to_ascii_uppercase());
        }
        if let Some(id) = props.get("cart_id").filter(|v| !v.is_null()) {
            cart_id = Some(id.clone());
        }
        match name {
            "Product Added" => {
                let Some(key) = product_key(props) else { continue };
                match lines.iter_mut().find(|(k, _, _)| *k == key) {
                    Some((_, product, q)) => {
                        *q += quantity(props);
                        // The latest event's details (a new price) win.
                        product.extend(product_of(props));
                    }
                    None => lines.push((key, product_of(props), quantity(props))),
                }
            }
            "Product Removed" => {
                let Some(key) = product_key(props) else { continue };
                if let Some(i) = lines.iter().position(|(k, _, _)| *k == key) {
                    // Without a quantity, the product leaves the cart.
                    let removed = props
                        .get("quantity")
                        .and_then(Value::as_f64)
                        .filter(|q| q.is_finite() && *q > 0.0);
                    match removed {
                        Some(q) if q < lines[i].2 => lines[i].2 -= q,
                        _ => {
                            lines.remove(i);
                        }
                    }
                }
            }
            n if SNAPSHOTS.contains(&n) => {
                if let Some(products) = props.get("products").and_then(Value::as_array) {
                    lines = products
                        .iter()
                        .filter_map(Value::as_object)
                        .filter_map(|p| Some((product_key(p)?, product_of(p), quantity(p))))
                        .collect();
                }
            }
            _ => {}
        }
    }
    let mut value = 0.0;
    let mut count = 0.0;
    let products: Vec<Value> = lines
        .into_iter()
        .map(|(_, mut product, q)| {
            let price = product
                .get("price")
                .and_then(Value::as_f64)
                .filter(|p| p.is_finite());
            let line_total = price.map(|p| p * q);
            value += line_total.unwrap_or(0.0);
            count += q;
            product.insert("quantity".into(), number(q));
            if let Some(t) = line_total {
                product.insert("line_total".into(), number(t));
            }
            Value::Object(product)
        })
        .collect();
    json!({
        "cart_id": cart_id,
        "products": products,
        "item_count": number(count),
        "value": number(value),
        "currency": currency,
    })
}

/// The `journey` template variable of a message a journey sends: the journey's name, the
/// instance's key (`""` for an unkeyed journey), its events (oldest first) and their cart.
pub fn journey_variable(name: &str, key: &str, events: Vec<Value>) -> Value {
    let cart = fold(&events);
    json!({"name": name, "key": key, "events": events, "cart": cart})
}

/// A whole number as an integer (`2`, not `2.0`), else the float rounded to cents' precision
/// noise (`0.1 + 0.2` is `0.3`).
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!((x * 1e6).round() / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, props: Value) -> Value {
        json!({"name": name, "properties": props})
    }

    fn added(id: &str, price: f64, qty: Option<u32>) -> Value {
        let mut p = json!({"cart_id": "c1", "product_id": id, "name": format!("Item {id}"), "price": price,
                           "currency": "usd", "position": 3});
        if let Some(q) = qty {
            p["quantity"] = json!(q);
        }
        ev("Product Added", p)
    }

    fn summary(cart: &Value) -> Vec<(String, Value)> {
        cart["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["product_id"].as_str().unwrap().to_owned(),
                    p["quantity"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn adds_and_removes_fold_into_quantities_and_a_total() {
        let events = [
            added("a", 10.0, None),
            added("b", 2.5, Some(2)),
            added("a", 10.0, Some(2)),
            ev(
                "Product Removed",
                json!({"cart_id": "c1", "product_id": "b", "quantity": 1}),
            ),
            ev("Product Viewed", json!({"product_id": "z", "price": 99})),
        ];
        let cart = fold(&events);
        assert_eq!(summary(&cart), [("a".into(), json!(3)), ("b".into(), json!(1))]);
        assert_eq!(cart["value"], json!(32.5));
        assert_eq!(cart["item_count"], json!(4));
        assert_eq!(cart["currency"], "USD");
        assert_eq!(cart["cart_id"], "c1");
        assert_eq!(cart["products"][0]["line_total"], json!(30));
        assert!(
            cart["products"][0].get("position").is_none(),
            "event fields stay out"
        );
        assert!(cart["products"][0].get("cart_id").is_none());
    }

    #[test]
    fn a_removal_without_a_quantity_or_of_everything_empties_the_line() {
        let gone = fold(&[
            added("a", 10.0, Some(2)),
            ev("Product Removed", json!({"product_id": "a"})),
        ]);
        assert_eq!(summary(&gone), []);
        assert_eq!(
            (gone["value"].clone(), gone["item_count"].clone()),
            (json!(0), json!(0))
        );
        let all = fold(&[
            added("a", 10.0, Some(2)),
            ev("Product Removed", json!({"product_id": "a", "quantity": 5})),
        ]);
        assert_eq!(summary(&all), []);
        // Removing what is not in the cart changes nothing.
        let other = fold(&[
            added("a", 10.0, None),
            ev("Product Removed", json!({"product_id": "x"})),
        ]);
        assert_eq!(summary(&other), [("a".into(), json!(1))]);
    }

    #[test]
    fn a_cart_snapshot_replaces_what_was_folded() {
        let cart = fold(&[
            added("a", 10.0, None),
            ev(
                "Cart Viewed",
                json!({"cart_id": "c1", "products": [
                    {"product_id": "b", "price": 4, "quantity": 2},
                    {"sku": "S-9", "price": 1}]}),
            ),
            added("c", 1.25, None),
        ]);
        assert_eq!(cart["products"].as_array().unwrap().len(), 3);
        assert_eq!(cart["products"][1]["sku"], "S-9");
        assert_eq!(cart["value"], json!(10.25));
    }

    #[test]
    fn products_without_an_identity_or_price_are_handled() {
        let cart = fold(&[
            ev("Product Added", json!({"price": 3})),
            ev("Product Added", json!({"sku": "S-1"})),
            ev(
                "Product Added",
                json!({"product_id": 7, "price": 0.1, "quantity": -2}),
            ),
            ev("Product Added", json!({"product_id": 7, "price": 0.2})),
        ]);
        assert_eq!(cart["products"].as_array().unwrap().len(), 2, "{cart}");
        assert!(
            cart["products"][0].get("line_total").is_none(),
            "no price, no line total"
        );
        assert_eq!(
            cart["products"][1]["quantity"],
            json!(2),
            "a bad quantity counts as one"
        );
        assert_eq!(cart["value"], json!(0.4));
        assert_eq!(fold(&[])["products"], json!([]));
    }
}
