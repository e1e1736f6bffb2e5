//! The golden-liquid conformance suite (MIT, github.com/jg-rp/golden-liquid) driven from
//! outside, exactly as a user runs it: each case's template, data (JSON, keys in the order
//! written) and partials are written to files and rendered by `missive render`.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Passing cases through `missive render`; only ever goes up.
const FLOOR: usize = 1053;

struct Outcome {
    passed: bool,
    report: String,
}

fn run_case(case: &serde_json::Value, dir: &Path) -> Outcome {
    let name = case["name"].as_str().unwrap_or_default();
    let template = dir.join("template.liquid");
    std::fs::write(&template, case["template"].as_str().unwrap_or_default()).unwrap();
    let data = dir.join("data.json");
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let json = case.get("data").unwrap_or(&empty);
    std::fs::write(&data, serde_json::to_string(json).unwrap()).unwrap();
    let partials = dir.join("partials");
    std::fs::create_dir(&partials).unwrap();
    if let Some(templates) = case.get("templates").and_then(|t| t.as_object()) {
        for (k, v) in templates {
            let path = partials.join(format!("{k}.liquid"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, v.as_str().unwrap_or_default()).unwrap();
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .arg("render")
        .arg("--template")
        .arg(&template)
        .arg("--data")
        .arg(&data)
        .arg("--partials")
        .arg(&partials)
        .arg("--now")
        .arg("2024-05-17T09:30:00Z")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let passed = if case["invalid"].as_bool() == Some(true) {
        !out.status.success()
    } else {
        let mut expected: Vec<&str> = case["result"].as_str().into_iter().collect();
        if let Some(rs) = case["results"].as_array() {
            expected.extend(rs.iter().filter_map(|r| r.as_str()));
        }
        out.status.success() && expected.contains(&stdout.as_str())
    };
    Outcome {
        passed,
        report: format!(
            "{name}: {stdout:?} {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

#[test]
fn golden_liquid_suite_through_missive_render_passes_at_least_the_floor() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../liquid/tests/golden/golden_liquid.json");
    let text = std::fs::read_to_string(path).unwrap();
    let root: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = root["tests"].as_array().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let outcomes: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(case) = cases.get(i) else { break };
                        let dir = scratch.path().join(i.to_string());
                        std::fs::create_dir(&dir).unwrap();
                        mine.push((i, run_case(case, &dir)));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let passed = outcomes.iter().filter(|(_, o)| o.passed).count();
    println!(
        "golden-liquid through `missive render`: {passed}/{} passed",
        cases.len()
    );
    let mut failures: Vec<&(usize, Outcome)> = outcomes.iter().filter(|(_, o)| !o.passed).collect();
    failures.sort_by_key(|(i, _)| *i);
    for (_, o) in failures {
        println!("  FAIL {}", o.report);
    }
    assert!(
        passed >= FLOOR,
        "golden-liquid through `missive render`: {passed} passed, below the floor of {FLOOR}"
    );
}
