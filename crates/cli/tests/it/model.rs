//! `missive model train clv` on the paper's CDNOW sample: the fitted parameters as the library
//! test asserts them, printed as JSON; and clear errors on bad input.

use std::process::Command;

fn model(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .arg("model")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("running missive");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The paper's sample: `MISSIVE_TEST_CDNOW_SAMPLE` (`.ci/run` sets it when the machine has
/// the data), else `../shared/data/cdnow/` beside the checkout.
fn sample_path() -> Option<String> {
    std::env::var("MISSIVE_TEST_CDNOW_SAMPLE").ok().or_else(|| {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/cdnow/CDNOW_sample.txt"
        );
        std::path::Path::new(p).exists().then(|| p.to_owned())
    })
}

#[test]
fn train_clv_prints_the_fitted_models_and_the_holdout_check() {
    let Some(sample) = sample_path() else {
        println!("skipped: the CDNOW sample is not on this machine (MISSIVE_TEST_CDNOW_SAMPLE)");
        return;
    };
    let (ok, out, err) = model(&[
        "train",
        "clv",
        "--transactions",
        &sample,
        "--delimiter",
        "whitespace",
        "--no-header",
        "--user-col",
        "1",
        "--time-col",
        "2",
        "--time-format",
        "%Y%m%d",
        "--amount-col",
        "4",
        "--calibration-end",
        "1997-09-30",
        "--holdout-end",
        "1998-06-30",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["customers"], 2357);
    let r = v["bg_nbd"]["r"].as_f64().unwrap();
    assert!((r - 0.243).abs() < 0.0025, "{v}");
    let p = v["gamma_gamma"]["p"].as_f64().unwrap();
    assert!((p - 6.25).abs() < 0.0625, "{v}");
    assert_eq!(v["holdout"]["weeks"], 39.0);
    assert_eq!(v["holdout"]["groups"].as_array().unwrap().len(), 8);
}

#[test]
fn bad_input_says_what_is_wrong() {
    // A column that is not in the header.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.csv");
    std::fs::write(
        &file,
        "customer,day,total\nc1,2026-01-05,10\nc1,2026-02-01,oops\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (ok, _, err) = model(&[
        "train",
        "clv",
        "--transactions",
        file,
        "--user-col",
        "client",
        "--time-col",
        "day",
        "--time-format",
        "%Y-%m-%d",
        "--amount-col",
        "total",
        "--calibration-end",
        "2026-01-31",
    ]);
    assert!(!ok);
    assert!(err.contains("\"client\""), "{err}");
    // A value that is not a number is left out and said; one customer with no repeat purchase
    // in calibration cannot give a spend model but still fits nothing wrongly.
    let (ok, _, err) = model(&[
        "train",
        "clv",
        "--transactions",
        file,
        "--user-col",
        "customer",
        "--time-col",
        "day",
        "--time-format",
        "%Y-%m-%d",
        "--amount-col",
        "total",
        "--calibration-end",
        "2026-01-31",
    ]);
    assert!(err.contains("line 3: amount \"oops\" is not a number"), "{err}");
    // …and one customer without a repeat purchase leaves nothing to fit: said, not faked.
    assert!(!ok);
    assert!(err.contains("no customer bought again"), "{err}");
    // A model command reads no store.
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .args([
            "--data-dir",
            "/tmp/nowhere",
            "model",
            "train",
            "clv",
            "--transactions",
            "t.csv",
        ])
        .args(["--amount-col", "total", "--calibration-end", "2026-01-31"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reads no store"));
}
