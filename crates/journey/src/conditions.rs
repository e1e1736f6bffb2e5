//! Conditions on an event's Segment body (`{"path": "properties.value", "op": "gte", "value": 50}`)
//! and the instance key read from it.

use serde_json::Value;

use crate::definition::{Condition, Op};

/// The value at a dotted `path` (`properties.cart_id`, `properties.items.0`).
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, part| match v {
        Value::Object(m) => m.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// The text of an instance key: a non-empty string or a number.
pub fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether an event (its Segment body) passes every condition.
pub fn matches(conditions: &[Condition], body: &Value) -> bool {
    conditions.iter().all(|c| {
        let v = lookup(body, &c.path);
        let num = |x: &Value| x.as_f64();
        match c.op {
            Op::Exists => v.is_some_and(|v| !v.is_null()),
            Op::Eq => v == Some(&c.value),
            Op::Ne => v != Some(&c.value),
            Op::Contains => match v {
                Some(Value::String(s)) => c.value.as_str().is_some_and(|x| s.contains(x)),
                Some(Value::Array(a)) => a.contains(&c.value),
                _ => false,
            },
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => match (v.and_then(num), num(&c.value)) {
                (Some(a), Some(b)) => match c.op {
                    Op::Gt => a > b,
                    Op::Gte => a >= b,
                    Op::Lt => a < b,
                    _ => a <= b,
                },
                _ => false,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_test_event_properties() {
        let body = json!({"properties": {"value": 120, "tags": ["gift"], "cart_id": "c1"}});
        let c = |path: &str, op, value| Condition {
            path: path.into(),
            op,
            value,
        };
        assert!(matches(&[c("properties.value", Op::Gte, json!(100))], &body));
        assert!(!matches(&[c("properties.value", Op::Lt, json!(100))], &body));
        assert!(matches(
            &[c("properties.tags", Op::Contains, json!("gift"))],
            &body
        ));
        assert!(matches(
            &[c("properties.cart_id", Op::Exists, Value::Null)],
            &body
        ));
        assert!(!matches(
            &[c("properties.coupon", Op::Exists, Value::Null)],
            &body
        ));
    }
}
