//! The sequential test by simulation: with no true difference and a look every hour, it
//! declares a difference at most about alpha of the time, while the fixed-horizon z-test
//! looked at just as often declares far more; with a true difference, it finds it.

use missive_experiment::stats::sequential::{Sequential, default_tau};
use missive_experiment::stats::{Counts, proportions};

use crate::rng::Rng;

const ALPHA: f64 = 0.05;
const EXPERIMENTS: usize = 600;
const LOOKS: usize = 24;
const PER_LOOK: u64 = 250;

/// Per simulated experiment: whether the sequential test ever stopped, and whether the
/// fixed-horizon test was ever below alpha at a look.
fn simulate(rate_a: f64, rate_b: f64, seed: u64) -> (f64, f64) {
    simulate_with(rate_a, rate_b, seed, default_tau(rate_a), LOOKS, PER_LOOK)
}

fn simulate_with(rate_a: f64, rate_b: f64, seed: u64, tau: f64, looks: usize, per_look: u64) -> (f64, f64) {
    let mut rng = Rng(seed);
    let (mut sequential_hits, mut peeking_hits) = (0, 0);
    for _ in 0..EXPERIMENTS {
        let mut test = Sequential::new(tau, ALPHA).unwrap();
        let (mut xa, mut xb, mut n) = (0u64, 0u64, 0u64);
        let mut peeked = false;
        for _ in 0..looks {
            for _ in 0..per_look {
                xa += u64::from(rng.unit() < rate_a);
                xb += u64::from(rng.unit() < rate_b);
            }
            n += per_look;
            let (a, b) = (Counts::new(xa, n).unwrap(), Counts::new(xb, n).unwrap());
            test.look(a, b).unwrap();
            if proportions::z_test(a, b).is_ok_and(|t| t.p_value < ALPHA) {
                peeked = true;
            }
        }
        sequential_hits += usize::from(test.significant());
        peeking_hits += usize::from(peeked);
    }
    (
        sequential_hits as f64 / EXPERIMENTS as f64,
        peeking_hits as f64 / EXPERIMENTS as f64,
    )
}

#[test]
fn hourly_peeking_keeps_the_sequential_test_at_alpha_and_breaks_the_fixed_one() {
    let (sequential, peeking) = simulate(0.05, 0.05, 7);
    println!("A/A, {LOOKS} looks: sequential {sequential:.3}, fixed-horizon peeking {peeking:.3}");
    // Three standard errors above alpha allow for the simulation's own noise.
    let slack = 3.0 * (ALPHA * (1.0 - ALPHA) / EXPERIMENTS as f64).sqrt();
    assert!(
        sequential <= ALPHA + slack,
        "sequential false positives {sequential}"
    );
    assert!(
        peeking > 2.0 * ALPHA,
        "peeking false positives {peeking}: should be inflated"
    );
}

/// The worst case for the guarantee: a wide mixture (τ as large as the control rate) and a
/// look after every unit from the very start (per-arm variances made this 14.5 %).
#[test]
fn looking_after_every_unit_with_a_wide_mixture_keeps_the_sequential_test_at_alpha() {
    for (rate, seed) in [(0.5, 3), (0.3, 5)] {
        let (sequential, _) = simulate_with(rate, rate, seed, rate, 2_000, 1);
        println!("A/A at {rate}, a look after every unit, tau {rate}: sequential {sequential:.3}");
        let slack = 3.0 * (ALPHA * (1.0 - ALPHA) / EXPERIMENTS as f64).sqrt();
        assert!(
            sequential <= ALPHA + slack,
            "sequential false positives {sequential} at {rate}"
        );
    }
}

#[test]
fn a_true_lift_is_found() {
    // 5 % → 7 %, 6,000 units per arm by the last look.
    let (sequential, _) = simulate(0.05, 0.07, 11);
    println!("A/B +40 %: sequential power {sequential:.3}");
    assert!(sequential > 0.7, "sequential power {sequential}");
}
