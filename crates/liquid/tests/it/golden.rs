//! The golden-liquid conformance suite (MIT, github.com/jg-rp/golden-liquid).

use std::sync::Arc;

use missive_liquid::{Object, Template, Value};

use crate::support::{MemPartials, env};

/// Passing cases; only ever goes up.
const FLOOR: usize = 1053;

fn get<'a>(o: &'a Object, k: &str) -> Option<&'a Value> {
    o.get(k)
}

fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::Str(s)) => Some(s.to_string()),
        _ => None,
    }
}

#[test]
fn golden_liquid_suite_passes_at_least_the_floor() {
    let json = include_str!("../golden/golden_liquid.json");
    // Parsed into liquid values directly so that `data` keeps its key order.
    let Value::Object(root) = Value::from_json_str(json).expect("golden json parses") else {
        panic!("golden json is not an object");
    };
    let Some(Value::Array(tests)) = get(&root, "tests") else {
        panic!("no tests array")
    };
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in tests.iter() {
        let Value::Object(case) = case else { continue };
        let name = text(get(case, "name")).unwrap_or_default();
        let source = text(get(case, "template")).unwrap_or_default();
        let data = match get(case, "data") {
            Some(Value::Object(o)) => (**o).clone(),
            _ => Object::new(),
        };
        let mut partials = MemPartials::default();
        if let Some(Value::Object(t)) = get(case, "templates") {
            for (k, v) in t.iter() {
                partials.sources.insert(k.to_string(), v.to_str_lossy());
            }
        }
        let env = env(&partials);
        let outcome = Template::parse(&source).and_then(|t| Arc::new(t).render(&data, &env));
        let invalid = matches!(get(case, "invalid"), Some(Value::Bool(true)));
        let ok = if invalid {
            outcome.is_err()
        } else {
            let mut expected: Vec<String> = text(get(case, "result")).into_iter().collect();
            if let Some(Value::Array(rs)) = get(case, "results") {
                expected.extend(rs.iter().filter_map(|r| text(Some(r))));
            }
            match &outcome {
                Ok(out) => expected.iter().any(|e| e == out),
                Err(_) => false,
            }
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

trait Lossy {
    fn to_str_lossy(&self) -> String;
}

impl Lossy for Value {
    fn to_str_lossy(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            _ => String::new(),
        }
    }
}
