//! WooCommerce's webhooks (REST API v3 payloads): `order.created` and `order.updated`, mapped
//! to Segment's `Order Completed` once the order is paid (`processing` or `completed`, as
//! WooCommerce's own `wc_get_is_paid_statuses` says), else `Order Updated`.
//!
//! The person is WooCommerce's `customer_id` as `userId` (0 for a guest: then known by the
//! billing e-mail address, through an `identify` keyed by `woocommerce-order:ID`).

use serde_json::{Map, Value, json};

use crate::{SourceError, amount, id_text, kept_scalars};

/// Statuses of an order that is paid for (`on-hold` awaits payment: a bank transfer).
const PAID: [&str; 2] = ["processing", "completed"];

pub fn map(payload: &Value, topic: Option<&str>) -> Result<Vec<Value>, SourceError> {
    if !payload.is_object() {
        return Err(SourceError::map(
            "",
            "a WooCommerce webhook body is a JSON object",
        ));
    }
    match topic {
        Some("order.created" | "order.updated") => order(payload),
        Some(other) => Err(SourceError::Topic(other.to_owned())),
        None => Err(SourceError::Topic(String::new())),
    }
}

fn order(payload: &Value) -> Result<Vec<Value>, SourceError> {
    let id = id_text(&payload["id"]).ok_or_else(|| SourceError::map("id", "an order needs its id"))?;
    let status = payload["status"].as_str().unwrap_or("");
    let billing = &payload["billing"];
    let mut traits = Map::new();
    if let Some(e) = billing["email"].as_str().filter(|e| !e.trim().is_empty()) {
        traits.insert("email".into(), json!(e));
    }
    for f in ["first_name", "last_name"] {
        if let Some(v) = billing[f].as_str().filter(|v| !v.is_empty()) {
            traits.insert(f.into(), json!(v));
        }
    }
    let user = id_text(&payload["customer_id"]);
    let anon = match (&user, traits.contains_key("email")) {
        (None, true) => Some(format!("woocommerce-order:{id}")),
        _ => None,
    };
    if user.is_none() && anon.is_none() {
        return Err(SourceError::map(
            "billing.email",
            "a guest order needs the billing e-mail address to know the person by",
        ));
    }
    let who = |mut m: Value| {
        if let Some(u) = &user {
            m["userId"] = json!(u);
        }
        if let Some(a) = &anon {
            m["anonymousId"] = json!(a);
        }
        m
    };
    let mut props = kept_scalars(
        payload,
        &[
            "status",
            "payment_method",
            "payment_method_title",
            "created_via",
            "number",
            "prices_include_tax",
        ],
    );
    props.insert("order_id".into(), json!(id));
    if let Some(total) = amount(&payload["total"], "total")? {
        props.insert("total".into(), json!(total));
    }
    for (from, to) in [("total_tax", "tax"), ("discount_total", "discount")] {
        if let Some(x) = amount(&payload[from], from)? {
            props.insert(to.into(), json!(x));
        }
    }
    if let Some(c) = payload["currency"].as_str() {
        props.insert("currency".into(), json!(c));
    }
    let mut products = Vec::new();
    for (i, item) in payload["line_items"].as_array().into_iter().flatten().enumerate() {
        let mut p = Map::new();
        if let Some(v) = id_text(&item["product_id"]) {
            p.insert("product_id".into(), json!(v));
        }
        if let Some(v) = id_text(&item["variation_id"]) {
            p.insert("variant_id".into(), json!(v));
        }
        for (from, to) in [("sku", "sku"), ("name", "name")] {
            if let Some(v) = item[from].as_str().filter(|v| !v.is_empty()) {
                p.insert(to.into(), json!(v));
            }
        }
        if let Some(price) = amount(&item["price"], &format!("line_items.{i}.price"))? {
            p.insert("price".into(), json!(price));
        }
        p.insert("quantity".into(), json!(item["quantity"].as_u64().unwrap_or(1)));
        products.push(Value::Object(p));
    }
    props.insert("products".into(), Value::Array(products));
    // Unpaid orders (pending payment, failed, cancelled) are not purchases.
    let event = if PAID.contains(&status) {
        "Order Completed"
    } else {
        "Order Updated"
    };
    let mut track = json!({"type": "track", "event": event, "properties": props});
    // `date_created_gmt` has no zone designator: it is UTC.
    if let Some(t) = payload["date_created_gmt"].as_str().filter(|t| !t.is_empty()) {
        track["timestamp"] = json!(if t.ends_with('Z') {
            t.to_owned()
        } else {
            format!("{t}Z")
        });
    }
    let mut out = Vec::new();
    if !traits.is_empty() {
        out.push(who(json!({"type": "identify", "traits": traits})));
    }
    out.push(who(track));
    // The order and its state: a redelivery, or an update that changes nothing that matters,
    // is a duplicate; the order paid later is a new message.
    if let Some(first) = out.first_mut() {
        first["messageId"] = json!(format!("order-{id}-{status}"));
    }
    Ok(out)
}
