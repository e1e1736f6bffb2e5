//! The golden-liquid conformance suite (MIT, github.com/jg-rp/golden-liquid).
//!
//! Data goes through the same path as `missive render` and the engine: `serde_json::Value`
//! (workspace feature `preserve_order`), then `Value::from`. The CLI's own test
//! (`crates/cli/tests/it/golden.rs`) runs the same cases through the binary.

use std::sync::Arc;

use missive_liquid::{Object, Template, Value};

use crate::support::{MemPartials, env};

/// Passing cases; only ever goes up.
const FLOOR: usize = 1053;

#[test]
fn golden_liquid_suite_passes_at_least_the_floor() {
    let json = include_str!("../golden/golden_liquid.json");
    let root: serde_json::Value = serde_json::from_str(json).expect("golden json parses");
    let tests = root["tests"].as_array().expect("a tests array");
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in tests {
        let name = case["name"].as_str().unwrap_or_default();
        let source = case["template"].as_str().unwrap_or_default();
        let data = match case.get("data").map(Value::from) {
            Some(Value::Object(o)) => Arc::unwrap_or_clone(o),
            _ => Object::new(),
        };
        let mut partials = MemPartials::default();
        if let Some(t) = case["templates"].as_object() {
            for (k, v) in t {
                partials
                    .sources
                    .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        let env = env(&partials);
        let outcome = Template::parse(source).and_then(|t| Arc::new(t).render(&data, &env));
        let ok = if case["invalid"].as_bool() == Some(true) {
            outcome.is_err()
        } else {
            let mut expected: Vec<&str> = case["result"].as_str().into_iter().collect();
            if let Some(rs) = case["results"].as_array() {
                expected.extend(rs.iter().filter_map(|r| r.as_str()));
            }
            matches!(&outcome, Ok(out) if expected.contains(&out.as_str()))
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!("{name}: {outcome:?}"));
        }
    }
    println!("golden-liquid: {passed}/{} passed", tests.len());
    for f in &failures {
        println!("  FAIL {f}");
    }
    assert!(
        passed >= FLOOR,
        "golden-liquid: {passed} passed, below the floor of {FLOOR}"
    );
}
