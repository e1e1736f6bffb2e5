//! Every statistic against scipy and statsmodels on the same generated data: the Python of
//! `MISSIVE_TEST_PYTHON` (CI installs scipy and statsmodels into it) computes the reference
//! values with `reference.py`. Relative error at most 1e-9 where both compute exactly; the
//! Bayesian figures are integrated numerically by the reference, so 1e-7 there.

use std::path::Path;
use std::process::Command;

use missive_experiment::stats::{Counts, bayes, means, multiple, power, proportions, srm};
use serde_json::{Value, json};

use crate::rng::Rng;

fn cases() -> Value {
    let mut rng = Rng(0x5eed);
    let mut pairs = vec![
        json!([3, 3, 0, 3]),
        json!([1, 12, 7, 11]),
        json!([0, 20, 20, 20]),
        json!([5, 40, 5, 40]),
    ];
    for _ in 0..40 {
        let na = 1 + rng.below(3_000);
        let nb = 1 + rng.below(3_000);
        let (xa, xb) = (rng.below(na + 1), rng.below(nb + 1));
        pairs.push(json!([xa, na, xb, nb]));
    }
    // Realistic e-mail rates: a few per cent of thousands.
    for _ in 0..10 {
        let (na, nb) = (5_000 + rng.below(20_000), 5_000 + rng.below(20_000));
        let (xa, xb) = (
            na * (20 + rng.below(30)) / 1_000,
            nb * (20 + rng.below(30)) / 1_000,
        );
        pairs.push(json!([xa, na, xb, nb]));
    }
    let mut groups = Vec::new();
    for k in 3..7 {
        let g: Vec<Value> = (0..k)
            .map(|_| {
                let n = 50 + rng.below(5_000);
                json!([rng.below(n / 5) + 1, n])
            })
            .collect();
        groups.push(Value::Array(g));
    }
    let mut means = Vec::new();
    for case in 0..12 {
        let (na, nb) = (30 + rng.below(800), 30 + rng.below(800));
        // Revenue per recipient: mostly zero, a long tail in cents; some cases with heavy ties.
        let mut sample = |n: u64| -> Vec<f64> {
            (0..n)
                .map(|_| {
                    if rng.unit() < 0.9 {
                        0.0
                    } else if case % 3 == 0 {
                        (1 + rng.below(5)) as f64 * 10.0
                    } else {
                        (2_000.0 * -rng.unit().max(1e-12).ln()).round() / 100.0
                    }
                })
                .collect()
        };
        let (a, b) = (sample(na), sample(nb));
        means.push(json!([a, b]));
    }
    let holm: Vec<Value> = (0..8)
        .map(|_| {
            let k = 1 + rng.below(6);
            json!((0..k).map(|_| rng.unit() * rng.unit()).collect::<Vec<f64>>())
        })
        .collect();
    let srm = vec![
        json!([[5_000, 5_030], [1.0, 1.0]]),
        json!([[5_000, 5_400], [1.0, 1.0]]),
        json!([[9_100, 900, 1_020], [80.0, 10.0, 10.0]]),
        json!([[12, 30, 7, 9], [1.0, 2.0, 1.0, 1.0]]),
    ];
    let sizes = json!([
        [0.10, 0.12, 0.05, 0.8],
        [0.02, 0.025, 0.05, 0.9],
        [0.30, 0.25, 0.01, 0.8],
        [0.5, 0.6, 0.1, 0.95],
    ]);
    let detectable = json!([
        [0.03, 10_000.0, 0.05, 0.8],
        [0.2, 500.0, 0.05, 0.9],
        [0.6, 80_000.0, 0.01, 0.8]
    ]);
    json!({"alpha": 0.05, "pairs": pairs, "groups": groups, "means": means, "holm": holm, "srm": srm,
           "sizes": sizes, "detectable": detectable})
}

fn close(what: &str, ours: f64, theirs: &Value, rel: f64) {
    close_within(what, ours, theirs, rel, 1e-15);
}

fn close_within(what: &str, ours: f64, theirs: &Value, rel: f64, abs: f64) {
    let theirs = theirs
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: reference {theirs}"));
    let scale = ours.abs().max(theirs.abs());
    assert!(
        (ours - theirs).abs() <= rel * scale + abs,
        "{what}: missive {ours:e}, reference {theirs:e} (relative error {:e})",
        (ours - theirs).abs() / scale
    );
}

fn counts(v: &Value, i: usize) -> Counts {
    Counts::new(v[i].as_u64().unwrap(), v[i + 1].as_u64().unwrap()).unwrap()
}

#[test]
fn every_statistic_matches_scipy_and_statsmodels() {
    let Some(python) = std::env::var_os("MISSIVE_TEST_PYTHON") else {
        println!("skipped: MISSIVE_TEST_PYTHON not set (CI sets it, with scipy and statsmodels)");
        return;
    };
    let cases = cases();
    let dir = tempfile_dir();
    let input = dir.join("cases.json");
    std::fs::write(&input, cases.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/reference.py");
    let out = Command::new(&python).arg(&script).arg(&input).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed (are scipy and statsmodels installed?): {}",
        Path::new(&python).display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let reference: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every case has its reference: a truncated answer must not pass.
    for key in ["pairs", "groups", "means", "holm", "srm", "sizes", "detectable"] {
        assert_eq!(
            cases[key].as_array().unwrap().len(),
            reference[key].as_array().unwrap().len(),
            "{key}"
        );
    }
    const EXACT: f64 = 1e-9;
    let alpha = 0.05;

    for (i, (case, r)) in cases["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["pairs"].as_array().unwrap())
        .enumerate()
    {
        let (a, b) = (counts(case, 0), counts(case, 2));
        let w = |s: &str| format!("pair {i} {case}: {s}");
        // Where missive says "not enough data", the reference has no value either.
        match proportions::z_test(a, b) {
            Ok(t) => {
                close(&w("z"), t.statistic, &r["z"][0], EXACT);
                close(&w("z p"), t.p_value, &r["z"][1], EXACT);
            }
            Err(e) => assert!(r["z"][0].is_null(), "{}: {e} but {}", w("z"), r["z"]),
        }
        for (name, yates) in [("chi", false), ("yates", true)] {
            match proportions::chi_square(&[a, b], yates) {
                Ok(t) => {
                    close(&w(name), t.statistic, &r[name][0], EXACT);
                    close(&w(&format!("{name} p")), t.p_value, &r[name][1], EXACT);
                }
                Err(e) => assert!(r[name][1].is_null(), "{}: {e} but {}", w(name), r[name]),
            }
        }
        close(
            &w("fisher"),
            proportions::fisher_exact(a, b).unwrap(),
            &r["fisher"],
            EXACT,
        );
        let wi = proportions::wilson(a, alpha).unwrap();
        close(&w("wilson low"), wi.low, &r["wilson_a"][0], EXACT);
        close(&w("wilson high"), wi.high, &r["wilson_a"][1], EXACT);
        let d = proportions::newcombe(a, b, alpha).unwrap();
        close(&w("newcombe low"), d.interval.low, &r["newcombe"][0], EXACT);
        close(&w("newcombe high"), d.interval.high, &r["newcombe"][1], EXACT);
        match proportions::ratio(a, b, alpha) {
            Ok(q) => {
                close(&w("ratio low"), q.interval.low, &r["ratio"][0], EXACT);
                close(&w("ratio high"), q.interval.high, &r["ratio"][1], EXACT);
            }
            Err(e) => assert!(r["ratio"].is_null(), "{}: {e} but {}", w("ratio"), r["ratio"]),
        }
        let bb = bayes::beta_binomial(a, b).unwrap();
        // The reference integrates numerically: relative 1e-7, or 1e-12 absolute near zero.
        close_within(
            &w("chance to beat"),
            bb.chance_to_beat,
            &r["bayes"][0],
            1e-7,
            1e-12,
        );
        close_within(
            &w("expected loss b"),
            bb.expected_loss_b,
            &r["bayes"][1],
            1e-7,
            1e-12,
        );
        close_within(
            &w("expected loss a"),
            bb.expected_loss_a,
            &r["bayes"][2],
            1e-7,
            1e-12,
        );
    }

    for (case, r) in cases["groups"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["groups"].as_array().unwrap())
    {
        let groups: Vec<Counts> = case.as_array().unwrap().iter().map(|g| counts(g, 0)).collect();
        let t = proportions::chi_square(&groups, false).unwrap();
        close("r×2 chi", t.statistic, &r[0], EXACT);
        close("r×2 chi p", t.p_value, &r[1], EXACT);
    }

    for (i, (case, r)) in cases["means"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["means"].as_array().unwrap())
        .enumerate()
    {
        let sample = |j: usize| -> Vec<f64> {
            case[j]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let (a, b) = (sample(0), sample(1));
        let t = means::welch(&a, &b).unwrap();
        close(&format!("means {i}: welch t"), t.statistic, &r["welch"][0], EXACT);
        close(&format!("means {i}: welch p"), t.p_value, &r["welch"][1], EXACT);
        close(
            &format!("means {i}: welch df"),
            t.degrees_of_freedom,
            &r["welch"][2],
            EXACT,
        );
        let ci = t.interval(alpha).unwrap();
        close(
            &format!("means {i}: welch low"),
            ci.low,
            &r["welch_interval"][0],
            EXACT,
        );
        close(
            &format!("means {i}: welch high"),
            ci.high,
            &r["welch_interval"][1],
            EXACT,
        );
        let m = means::mann_whitney(&a, &b).unwrap();
        close(&format!("means {i}: U"), m.u, &r["mann_whitney"][0], EXACT);
        close(
            &format!("means {i}: U p"),
            m.p_value,
            &r["mann_whitney"][1],
            EXACT,
        );
        close(
            &format!("means {i}: skew a"),
            means::Summary::of(&a).unwrap().skewness,
            &r["skew"][0],
            EXACT,
        );
    }

    for (case, r) in cases["holm"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["holm"].as_array().unwrap())
    {
        let ps: Vec<f64> = case
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (ours, theirs) in multiple::holm(&ps).unwrap().iter().zip(r.as_array().unwrap()) {
            close("holm", *ours, theirs, EXACT);
        }
    }

    for (case, r) in cases["srm"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["srm"].as_array().unwrap())
    {
        let units: Vec<u64> = case[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let weights: Vec<f64> = case[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let s = srm::check(&units, &weights).unwrap();
        close("srm chi", s.statistic, &r[0], EXACT);
        close("srm p", s.p_value, &r[1], EXACT);
    }
    check_power(&cases, &reference);
}

/// statsmodels solves with brentq: agreement to 1e-8 relative.
fn check_power(cases: &Value, reference: &Value) {
    let f = |v: &Value, i: usize| v[i].as_f64().unwrap();
    for (case, r) in cases["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["sizes"].as_array().unwrap())
    {
        let n = power::sample_size(f(case, 0), f(case, 1), f(case, 2), f(case, 3)).unwrap();
        close(&format!("sample size {case}"), n, r, 1e-8);
    }
    for (case, r) in cases["detectable"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["detectable"].as_array().unwrap())
    {
        let d = power::minimum_detectable(f(case, 0), f(case, 1), f(case, 2), f(case, 3)).unwrap();
        close(&format!("detectable effect {case}"), d.effect, r, 1e-8);
    }
}

/// A directory of this test's own, removed by nobody (the OS cleans /tmp).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("missive-experiment-reference-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
