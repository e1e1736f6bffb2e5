//! Bayesian read-out of two rates: the chance that `b` beats `a`, and the expected loss of
//! choosing either, under uniform Beta(1, 1) priors (beta-binomial).
//!
//! Both are computed exactly, with Evan Miller's closed form for P(X_b > X_a) when the Beta
//! parameters are integers (they are: counts plus one). Reference: scipy's numerical
//! integration of the same quantities (`quad` over Beta densities).

use serde::Serialize;
use statrs::function::beta::ln_beta;

use super::{Counts, StatsError, not_enough};

/// The posterior Beta(α, β) of a rate after `c`, from a uniform prior.
fn posterior(c: Counts) -> (f64, f64) {
    (1.0 + c.successes as f64, 1.0 + (c.units - c.successes) as f64)
}

/// P(Y > X) for X ~ Beta(a1, b1), Y ~ Beta(a2, b2), `a2` a whole number.
fn prob_greater(a1: f64, b1: f64, a2: f64, b2: f64) -> f64 {
    let ln_b1 = ln_beta(a1, b1);
    let terms = a2 as u64;
    let total: f64 = (0..terms)
        .map(|i| {
            let i = i as f64;
            (ln_beta(a1 + i, b1 + b2) - (b2 + i).ln() - ln_beta(1.0 + i, b2) - ln_b1).exp()
        })
        .sum();
    total.clamp(0.0, 1.0)
}

/// E[max(X - Y, 0)] for X ~ Beta(a1, b1), Y ~ Beta(a2, b2): what choosing Y loses, on average,
/// when X is really better. Uses x·Beta(a, b)(x) = a/(a+b)·Beta(a+1, b)(x).
fn expected_shortfall(a1: f64, b1: f64, a2: f64, b2: f64) -> f64 {
    // P(X > Y) summed directly (not as 1 - P(Y > X)): when X rarely wins, the difference
    // below is of two tiny numbers, and `1 -` would leave only rounding error.
    let x_wins_shifted_x = prob_greater(a2, b2, a1 + 1.0, b1);
    let x_wins_shifted_y = prob_greater(a2 + 1.0, b2, a1, b1);
    (a1 / (a1 + b1) * x_wins_shifted_x - a2 / (a2 + b2) * x_wins_shifted_y).max(0.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BetaBinomial {
    /// P(rate of b > rate of a).
    pub chance_to_beat: f64,
    /// The rate lost on average by choosing `b` if `a` is better, and by keeping `a` if `b` is.
    pub expected_loss_b: f64,
    pub expected_loss_a: f64,
}

pub fn beta_binomial(a: Counts, b: Counts) -> Result<BetaBinomial, StatsError> {
    if a.units == 0 || b.units == 0 {
        return Err(not_enough("a group has no units"));
    }
    let (a1, b1) = posterior(a);
    let (a2, b2) = posterior(b);
    Ok(BetaBinomial {
        chance_to_beat: prob_greater(a1, b1, a2, b2),
        expected_loss_b: expected_shortfall(a1, b1, a2, b2),
        expected_loss_a: expected_shortfall(a2, b2, a1, b1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_data_are_a_coin_flip_and_more_successes_win() {
        let c = |x, n| Counts::new(x, n).unwrap();
        let even = beta_binomial(c(10, 100), c(10, 100)).unwrap();
        assert!((even.chance_to_beat - 0.5).abs() < 1e-12, "{even:?}");
        assert!((even.expected_loss_a - even.expected_loss_b).abs() < 1e-12);
        let better = beta_binomial(c(10, 100), c(30, 100)).unwrap();
        assert!(better.chance_to_beat > 0.999);
        assert!(better.expected_loss_b < 1e-4 && better.expected_loss_a > 0.15);
        assert!(beta_binomial(c(0, 0), c(1, 1)).is_err());
    }
}
