//! The CDNOW figures of Fader, Hardie & Lee (2005), on the paper's 2,357-customer sample with
//! its 39-week calibration period (`../shared/data/cdnow/`, see its README): BG/NBD r = 0.243,
//! α = 4.414, a = 0.793, b = 2.426 (log-likelihood −9,582.4) and Gamma-Gamma p = 6.25,
//! q = 3.74, γ = 15.44, each to within 1 %.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::NaiveDate;
use missive_models::clv::summary::{Transaction, summarise};
use missive_models::clv::{bgnbd, gamma_gamma};

/// The sample: `MISSIVE_TEST_CDNOW_SAMPLE` (`.ci/run` sets it when the machine has the data),
/// else `../shared/data/cdnow/` beside the checkout; `None` when neither is there.
fn sample_path() -> Option<std::path::PathBuf> {
    std::env::var_os("MISSIVE_TEST_CDNOW_SAMPLE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let p = std::path::PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/data/cdnow/CDNOW_sample.txt"
            ));
            p.exists().then_some(p)
        })
}

fn sample(path: &std::path::Path) -> Vec<Transaction> {
    let text = std::fs::read_to_string(path).expect("the CDNOW sample");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Transaction {
                customer: f[1].to_owned(),
                date: NaiveDate::parse_from_str(f[2], "%Y%m%d").unwrap(),
                value: f[4].parse().unwrap(),
            }
        })
        .collect()
}

fn within(got: f64, want: f64, share: f64) -> bool {
    (got - want).abs() <= share * want.abs()
}

#[test]
fn bg_nbd_and_gamma_gamma_reproduce_the_papers_cdnow_figures() {
    let end = NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();
    let holdout_end = NaiveDate::from_ymd_opt(1998, 6, 30).unwrap();
    let Some(path) = sample_path() else {
        println!("skipped: the CDNOW sample is not on this machine (MISSIVE_TEST_CDNOW_SAMPLE)");
        return;
    };
    let customers = summarise(&sample(&path), end, holdout_end);
    assert_eq!(customers.len(), 2_357);

    let m = bgnbd::fit(&customers).unwrap();
    eprintln!("BG/NBD: {m:?}");
    for (name, got, want) in [
        ("r", m.r, 0.243),
        ("alpha", m.alpha, 4.414),
        ("a", m.a, 0.793),
        ("b", m.b, 2.426),
    ] {
        assert!(within(got, want, 0.01), "{name} = {got}, the paper's {want}");
    }
    assert!(within(m.log_likelihood, -9_582.4, 0.0005), "{}", m.log_likelihood);

    let g = gamma_gamma::fit(&customers).unwrap();
    eprintln!("Gamma-Gamma: {g:?}");
    assert_eq!(g.customers, 946);
    for (name, got, want) in [("p", g.p, 6.25), ("q", g.q, 3.74), ("gamma", g.gamma, 15.44)] {
        assert!(within(got, want, 0.01), "{name} = {got}, the paper's {want}");
    }

    // The holdout check, as the paper's figure: expected against actual repeat purchases in
    // the 39 weeks after calibration, by calibration frequency (7 and more together).
    let check = m.holdout_check(&customers, 39.0, 7);
    for g in &check.groups {
        eprintln!(
            "x = {}: {} customers, expected {:.2}, actual {:.2} per customer",
            g.x, g.customers, g.expected, g.actual
        );
    }
    assert_eq!(check.groups.iter().map(|g| g.customers).sum::<u32>(), 2_357);
    assert_eq!(
        check.actual,
        customers.iter().map(|c| f64::from(c.holdout_x)).sum::<f64>()
    );
    // Measured: 1,653 expected against 1,882 actual (−12 %); the model under-predicts the
    // light buyers' holdout purchases, as the paper's conditional-expectation figure shows.
    // Held to within 15 % so that a broken prediction formula fails here.
    eprintln!(
        "holdout: expected {:.0}, actual {:.0}, error {:+.1} %",
        check.expected,
        check.actual,
        check.error * 100.0
    );
    assert!(check.error.abs() < 0.15, "{check:?}");
    let alive = customers.iter().map(|c| m.p_alive(c)).sum::<f64>() / customers.len() as f64;
    assert!((0.0..=1.0).contains(&alive));
}
