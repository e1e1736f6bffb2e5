//! Dotted paths into JSON (`customer.email`, `line_items.0.sku`), as mappings write them.

use serde_json::Value;

/// The value at `path`, if there is one.
pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |at, part| match at {
        Value::Object(o) => o.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_through_objects_and_arrays() {
        let v = serde_json::json!({"a": {"b": [{"c": 1}, {"c": 2}]}});
        assert_eq!(get(&v, "a.b.1.c"), Some(&serde_json::json!(2)));
        assert_eq!(get(&v, "a.b.2.c"), None);
        assert_eq!(get(&v, "a.x"), None);
        assert_eq!(get(&v, "a.b.first"), None);
    }
}
