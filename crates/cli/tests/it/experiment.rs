//! `missive experiment analyze` on a CSV from elsewhere: rates and amounts, bad lines skipped
//! and counted, clear errors.

use std::process::Command;

use serde_json::Value;

/// `missive ARGS…` (no data directory unless the arguments name one).
fn missive(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn analyze(args: &[&str]) -> (bool, String, String) {
    missive(&[&["experiment", "analyze"], args].concat())
}

#[test]
fn a_table_from_elsewhere_is_analysed_and_bad_lines_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("units.csv");
    let mut text = String::from("user,arm,converted,revenue\n");
    for i in 0..2_000 {
        let (arm, converted) = if i % 2 == 0 {
            ("control", i % 20 == 0)
        } else {
            ("subject-b", i % 12 == 1)
        };
        let revenue = if converted { 40.0 + (i % 7) as f64 } else { 0.0 };
        text.push_str(&format!("u{i},{arm},{converted},{revenue}\n"));
    }
    text.push_str("u-bad1,control,maybe,0\n");
    text.push_str("u-bad2\n");
    text.push_str("u-bad3,,1,0\n");
    std::fs::write(&csv, text).unwrap();
    let path = csv.to_str().unwrap();

    let (ok, out, err) = analyze(&[
        "--data",
        path,
        "--variant-col",
        "arm",
        "--metric-col",
        "converted",
        "--control",
        "control",
        "--planned",
        "control=50,subject-b=50",
    ]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["metric"], "rate");
    assert_eq!(report["control"], "control");
    assert_eq!(report["control_units"], 1_000);
    let b = &report["comparisons"][0];
    assert_eq!(
        (b["variant"].as_str(), b["units"].as_u64()),
        (Some("subject-b"), Some(1_000))
    );
    assert!(b["lift"]["value"].as_f64().unwrap() > 0.5, "{b}");
    assert!(b["p_value_holm"].as_f64().unwrap() < 0.05, "{b}");
    assert_eq!(report["sample_ratio"]["mismatch"], false);
    assert!(err.contains("skipped 3 line(s)"), "{err}");
    assert!(
        err.contains("line 2002: the metric \"maybe\" is not a number"),
        "{err}"
    );
    assert!(err.contains("Differs from control: subject-b."), "{err}");

    let (ok, out, err) = analyze(&["--data", path, "--variant-col", "arm", "--metric-col", "revenue"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["metric"], "mean");
    assert!(report["comparisons"][0]["difference"]["low"].is_number());

    let (ok, _, err) = analyze(&[
        "--data",
        path,
        "--variant-col",
        "group",
        "--metric-col",
        "revenue",
    ]);
    assert!(!ok && err.contains("no column \"group\""), "{err}");
    let (ok, _, err) = analyze(&[
        "--data",
        path,
        "--variant-col",
        "arm",
        "--metric-col",
        "revenue",
        "--control",
        "z",
    ]);
    assert!(!ok && err.contains("control variant \"z\" has no units"), "{err}");
    let (ok, _, err) = missive(&[
        "--data-dir",
        "x",
        "experiment",
        "analyze",
        "--data",
        path,
        "--variant-col",
        "arm",
        "--metric-col",
        "revenue",
    ]);
    assert!(!ok);
    assert!(err.contains("reads no store"), "analyze refuses the store flags");
}

#[test]
fn experiments_are_created_and_moved_on_the_store_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("def.json");
    std::fs::write(
        &def,
        r#"{"name": "welcome-holdout", "varies": "holdout", "primary_metric": "conversion",
            "variants": [{"name": "send", "weight": 90}, {"name": "holdout", "weight": 10, "holdout": true}]}"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let run = |args: &[&str]| missive(&[&["--data-dir", data, "experiment"], args].concat());
    let (ok, out, err) = run(&["create", "--file", def.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("\"status\": \"draft\""), "{out}");
    let (ok, _, err) = run(&["create", "--file", def.to_str().unwrap()]);
    assert!(!ok && err.contains("exists already"), "{err}");
    let (ok, out, _) = run(&["start", "welcome-holdout"]);
    assert!(ok && out.contains("\"status\": \"running\""), "{out}");
    let (ok, _, err) = run(&["delete", "welcome-holdout"]);
    assert!(!ok && err.contains("only a draft can change"), "{err}");
    let (ok, out, _) = run(&["conclude", "welcome-holdout"]);
    assert!(ok && out.contains("\"status\": \"concluded\""), "{out}");
    let (ok, out, _) = run(&["list"]);
    assert!(ok && out.lines().count() == 1, "{out}");
    let (_, audit, _) = missive(&["--data-dir", data, "audit"]);
    for action in ["experiment.create", "experiment.start", "experiment.conclude"] {
        assert!(audit.contains(action), "{action} not in {audit}");
    }
}
