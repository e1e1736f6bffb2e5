//! Shopify's webhooks (Admin API, JSON): `orders/create`, `checkouts/create`,
//! `checkouts/update`, `customers/create` and `customers/update`, mapped to Segment's
//! e-commerce spec; `orders/paid` completes an order created unpaid.
//!
//! The person is Shopify's customer id as `userId` (with `email` and names as traits); a guest
//! checkout or order without a customer is known by its e-mail address, through an `identify`
//! keyed by an anonymous id (`shopify-checkout:TOKEN`, `shopify-order:ID`).

use serde_json::{Map, Value, json};

use crate::{SourceError, amount, id_text, kept_scalars};

pub fn map(payload: &Value, topic: Option<&str>) -> Result<Vec<Value>, SourceError> {
    if !payload.is_object() {
        return Err(SourceError::map("", "a Shopify webhook body is a JSON object"));
    }
    match topic {
        Some("orders/create" | "orders/paid") => order(payload),
        Some("checkouts/create" | "checkouts/update") => checkout(payload),
        Some("customers/create" | "customers/update") => customer(payload),
        Some(other) => Err(SourceError::Topic(other.to_owned())),
        None => Err(SourceError::Topic(String::new())),
    }
}

/// The person a payload is about: `(userId, anonymousId, traits)`.
fn person(
    payload: &Value,
    anonymous: impl FnOnce() -> Option<String>,
) -> (Option<String>, Option<String>, Map<String, Value>) {
    let customer = &payload["customer"];
    let mut traits = Map::new();
    let email = customer["email"]
        .as_str()
        .or(payload["email"].as_str())
        .filter(|e| !e.trim().is_empty());
    if let Some(e) = email {
        traits.insert("email".into(), json!(e));
    }
    for (from, to) in [("first_name", "first_name"), ("last_name", "last_name")] {
        if let Some(v) = customer[from].as_str().filter(|v| !v.is_empty()) {
            traits.insert(to.into(), json!(v));
        }
    }
    let user = id_text(&customer["id"]);
    let anon = if user.is_none() { anonymous() } else { None };
    (user, anon, traits)
}

fn with_person(mut msg: Value, user: &Option<String>, anon: &Option<String>) -> Value {
    if let Some(u) = user {
        msg["userId"] = json!(u);
    }
    if let Some(a) = anon {
        msg["anonymousId"] = json!(a);
    }
    msg
}

/// `identify` with the traits, then the event: missive folds both into one profile.
fn messages(
    user: Option<String>,
    anon: Option<String>,
    traits: Map<String, Value>,
    event: Option<(&str, Map<String, Value>, Option<&str>)>,
) -> Result<Vec<Value>, SourceError> {
    if user.is_none() && anon.is_none() {
        return Err(SourceError::map(
            "customer.id",
            "no customer and no e-mail address to know the person by",
        ));
    }
    let mut out = Vec::new();
    if !traits.is_empty() {
        out.push(with_person(
            json!({"type": "identify", "traits": traits}),
            &user,
            &anon,
        ));
    }
    if let Some((name, properties, timestamp)) = event {
        let mut msg = json!({"type": "track", "event": name, "properties": properties});
        if let Some(t) = timestamp {
            msg["timestamp"] = json!(t);
        }
        out.push(with_person(msg, &user, &anon));
    }
    Ok(out)
}

/// `line_items` as Segment's `products`.
fn products(payload: &Value) -> Result<Vec<Value>, SourceError> {
    let Some(items) = payload["line_items"].as_array() else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut p = Map::new();
            if let Some(id) = id_text(&item["product_id"]) {
                p.insert("product_id".into(), json!(id));
            }
            if let Some(v) = id_text(&item["variant_id"]) {
                p.insert("variant_id".into(), json!(v));
            }
            for (from, to) in [
                ("sku", "sku"),
                ("title", "name"),
                ("variant_title", "variant"),
                ("vendor", "brand"),
            ] {
                if let Some(v) = item[from].as_str().filter(|v| !v.is_empty()) {
                    p.insert(to.into(), json!(v));
                }
            }
            if let Some(price) = amount(&item["price"], &format!("line_items.{i}.price"))? {
                p.insert("price".into(), json!(price));
            }
            p.insert("quantity".into(), json!(item["quantity"].as_u64().unwrap_or(1)));
            Ok(Value::Object(p))
        })
        .collect()
}

fn order(payload: &Value) -> Result<Vec<Value>, SourceError> {
    let id = id_text(&payload["id"]).ok_or_else(|| SourceError::map("id", "an order needs its id"))?;
    let (user, anon, traits) = person(payload, || {
        payload["email"]
            .as_str()
            .filter(|e| !e.is_empty())
            .map(|_| format!("shopify-order:{id}"))
    });
    let mut props = kept_scalars(
        payload,
        &[
            "financial_status",
            "fulfillment_status",
            "source_name",
            "tags",
            "order_number",
            "name",
            "test",
        ],
    );
    props.insert("order_id".into(), json!(id));
    if let Some(t) = payload["checkout_token"].as_str() {
        props.insert("checkout_id".into(), json!(t));
    }
    if let Some(total) = amount(&payload["total_price"], "total_price")? {
        props.insert("total".into(), json!(total));
    }
    if let Some(sub) = amount(&payload["subtotal_price"], "subtotal_price")? {
        props.insert("revenue".into(), json!(sub));
    }
    for (from, to) in [("total_tax", "tax"), ("total_discounts", "discount")] {
        if let Some(x) = amount(&payload[from], from)? {
            props.insert(to.into(), json!(x));
        }
    }
    if let Some(c) = payload["currency"].as_str() {
        props.insert("currency".into(), json!(c));
    }
    props.insert("products".into(), Value::Array(products(payload)?));
    // An order not paid yet (`pending`, `voided`) is not a purchase: `orders/paid` completes it.
    let paid = !matches!(payload["financial_status"].as_str(), Some("pending" | "voided"));
    let (event, state) = if paid {
        ("Order Completed", "completed")
    } else {
        ("Order Updated", "unpaid")
    };
    let mut msgs = messages(
        user,
        anon,
        traits,
        Some((event, props, payload["created_at"].as_str())),
    )?;
    key(&mut msgs, format!("order-{id}-{state}"));
    Ok(msgs)
}

fn checkout(payload: &Value) -> Result<Vec<Value>, SourceError> {
    let token = payload["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SourceError::map("token", "a checkout needs its token"))?;
    let (user, anon, traits) = person(payload, || {
        payload["email"]
            .as_str()
            .filter(|e| !e.is_empty())
            .map(|_| format!("shopify-checkout:{token}"))
    });
    let mut props = kept_scalars(payload, &["source_name"]);
    props.insert("checkout_id".into(), json!(token));
    // The cart of abandonment journeys: keyed by the checkout.
    props.insert("cart_id".into(), json!(token));
    if let Some(total) = amount(&payload["total_price"], "total_price")? {
        props.insert("value".into(), json!(total));
    }
    if let Some(c) = payload["currency"].as_str() {
        props.insert("currency".into(), json!(c));
    }
    if let Some(url) = payload["abandoned_checkout_url"].as_str() {
        props.insert("url".into(), json!(url));
    }
    props.insert("products".into(), Value::Array(products(payload)?));
    let at = payload["updated_at"].as_str().or(payload["created_at"].as_str());
    let mut msgs = messages(user, anon, traits, Some(("Checkout Started", props, at)))?;
    key(&mut msgs, format!("checkout-{token}-{}", at.unwrap_or("")));
    Ok(msgs)
}

fn customer(payload: &Value) -> Result<Vec<Value>, SourceError> {
    let id = id_text(&payload["id"]).ok_or_else(|| SourceError::map("id", "a customer needs its id"))?;
    let wrapped = json!({"customer": payload});
    let (_, _, mut traits) = person(&wrapped, || None);
    // `email_marketing_consent.state` (current API); `accepts_marketing` (older versions).
    let consent = match payload["email_marketing_consent"]["state"].as_str() {
        Some("subscribed") => Some(true),
        Some("unsubscribed" | "redacted") => Some(false),
        // Never asked: no change (a customer update must not withdraw a grant made elsewhere).
        Some("not_subscribed") => None,
        Some(_) => None,
        None => payload["accepts_marketing"].as_bool(),
    };
    if let Some(granted) = consent {
        traits.insert("consent".into(), json!({"email_marketing": granted}));
    }
    if traits.is_empty() {
        return Err(SourceError::map(
            "email",
            "a customer without an e-mail address or consent has nothing to record",
        ));
    }
    let mut msgs = messages(Some(id.clone()), None, traits, None)?;
    let at = payload["email_marketing_consent"]["consent_updated_at"]
        .as_str()
        .or(payload["updated_at"].as_str())
        .or(payload["created_at"].as_str());
    if let Some(at) = at {
        for m in &mut msgs {
            m["timestamp"] = json!(at);
        }
    }
    key(&mut msgs, format!("customer-{id}-{}", at.unwrap_or("")));
    Ok(msgs)
}

/// What the messages are about, for their ids ([`crate::Source::map`] keys it with the secret).
fn key(msgs: &mut [Value], key: String) {
    if let Some(first) = msgs.first_mut() {
        first["messageId"] = json!(key);
    }
}
