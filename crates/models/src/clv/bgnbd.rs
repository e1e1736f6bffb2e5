//! BG/NBD (Fader, Hardie & Lee 2005): while alive, a customer buys at a Poisson rate λ
//! (gamma-distributed across customers: r, α); after each purchase they drop out with
//! probability p (beta-distributed: a, b). Fitted by maximum likelihood on each customer's
//! (x, t_x, T); predicts expected purchases in a future period and P(alive).

use serde::Serialize;
use statrs::function::gamma::ln_gamma;

use super::FitError;
use super::optimize::minimise;
use super::summary::Customer;

/// Fitted BG/NBD parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub log_likelihood: f64,
}

/// One customer's log-likelihood (equation 6 of the paper, in logs).
fn ll(r: f64, alpha: f64, a: f64, b: f64, c: &Customer) -> f64 {
    let x = f64::from(c.x);
    let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
    let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
    let a3 = -(r + x) * (alpha + c.t).ln();
    if c.x == 0 {
        return a1 + a2 + a3;
    }
    let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + c.t_x).ln();
    // ln(e^a3 + e^a4), stably.
    let m = a3.max(a4);
    a1 + a2 + m + ((a3 - m).exp() + (a4 - m).exp()).ln()
}

/// Fits the model to `customers` by maximum likelihood.
pub fn fit(customers: &[Customer]) -> Result<BgNbd, FitError> {
    if customers.is_empty() {
        return Err(FitError::Empty);
    }
    // Without a repeat purchase the likelihood has no maximum inside the parameter space.
    if customers.iter().all(|c| c.x == 0) {
        return Err(FitError::NoRepeat);
    }
    let n = customers.len() as f64;
    let nll = |p: &[f64]| {
        let (r, alpha, a, b) = (p[0].exp(), p[1].exp(), p[2].exp(), p[3].exp());
        // The mean per customer: the optimiser's tolerance is absolute, and a sum over tens
        // of thousands of customers is too large for it to settle.
        -customers.iter().map(|c| ll(r, alpha, a, b, c)).sum::<f64>() / n
    };
    let (p, cost) = minimise(nll, &[0.0, 0.0, 0.0, 0.0])?;
    // A second start from the first's answer: Nelder-Mead's simplex can stall on a ridge.
    let (p, cost) = match minimise(nll, &p) {
        Ok((q, c)) if c < cost => (q, c),
        _ => (p, cost),
    };
    Ok(BgNbd {
        r: p[0].exp(),
        alpha: p[1].exp(),
        a: p[2].exp(),
        b: p[3].exp(),
        log_likelihood: -cost * n,
    })
}

/// The Gauss hypergeometric function ₂F₁(a, b; c; z) for |z| < 1, by its series (what the
/// model's conditional expectation needs; no maintained crate offers it).
fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0, 1.0);
    for n in 0..10_000 {
        let n = f64::from(n);
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() < 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

impl BgNbd {
    /// The probability that `c` is still a customer at the end of calibration.
    pub fn p_alive(&self, c: &Customer) -> f64 {
        if c.x == 0 {
            return 1.0;
        }
        let (r, alpha, a, b) = (self.r, self.alpha, self.a, self.b);
        let x = f64::from(c.x);
        let odds = a / (b + x - 1.0) * ((alpha + c.t) / (alpha + c.t_x)).powf(r + x);
        1.0 / (1.0 + odds)
    }

    /// Expected purchases of `c` in the `weeks` after calibration (equation 10 of the paper).
    pub fn expected_purchases(&self, c: &Customer, weeks: f64) -> f64 {
        let (r, alpha, a, b) = (self.r, self.alpha, self.a, self.b);
        let x = f64::from(c.x);
        let z = weeks / (alpha + c.t + weeks);
        let head = (a + b + x - 1.0) / (a - 1.0);
        let tail = 1.0
            - ((alpha + c.t) / (alpha + c.t + weeks)).powf(r + x) * hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let alive_term = if c.x > 0 {
            a / (b + x - 1.0) * ((alpha + c.t) / (alpha + c.t_x)).powf(r + x)
        } else {
            0.0
        };
        head * tail / (1.0 + alive_term)
    }
}

/// Expected against actual repeat purchases in a holdout period, customers grouped by their
/// calibration frequency (the last group gathers `x` and more), as the paper checks its fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldoutCheck {
    pub weeks: f64,
    pub groups: Vec<HoldoutGroup>,
    pub expected: f64,
    pub actual: f64,
    /// (expected − actual) / actual.
    pub error: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldoutGroup {
    /// Calibration repeat purchases (`7+` for the last).
    pub x: String,
    pub customers: u32,
    /// Per customer.
    pub expected: f64,
    pub actual: f64,
}

impl BgNbd {
    /// The holdout check over `weeks` after calibration, frequencies 0 to `last` (`last+`).
    pub fn holdout_check(&self, customers: &[Customer], weeks: f64, last: u32) -> HoldoutCheck {
        let mut sums = vec![(0.0, 0.0, 0u32); last as usize + 1];
        for c in customers {
            let g = &mut sums[c.x.min(last) as usize];
            g.0 += self.expected_purchases(c, weeks);
            g.1 += f64::from(c.holdout_x);
            g.2 += 1;
        }
        let (expected, actual) = sums.iter().fold((0.0, 0.0), |s, g| (s.0 + g.0, s.1 + g.1));
        HoldoutCheck {
            weeks,
            groups: sums
                .iter()
                .enumerate()
                .filter(|(_, g)| g.2 > 0)
                .map(|(x, g)| HoldoutGroup {
                    x: if x == last as usize {
                        format!("{x}+")
                    } else {
                        x.to_string()
                    },
                    customers: g.2,
                    expected: g.0 / f64::from(g.2),
                    actual: g.1 / f64::from(g.2),
                })
                .collect(),
            expected,
            actual,
            error: if actual > 0.0 {
                expected / actual - 1.0
            } else {
                f64::NAN
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hypergeometric_series_matches_closed_forms() {
        // ₂F₁(1, 1; 2; z) = −ln(1 − z) / z, and ₂F₁(a, b; b; z) = (1 − z)^−a.
        for z in [0.01, 0.3, 0.7, 0.95] {
            let want = -(1.0f64 - z).ln() / z;
            assert!((hyp2f1(1.0, 1.0, 2.0, z) - want).abs() < 1e-9 * want, "{z}");
            let want = (1.0f64 - z).powf(-0.7);
            assert!((hyp2f1(0.7, 2.5, 2.5, z) - want).abs() < 1e-9 * want, "{z}");
        }
    }

    #[test]
    fn a_customer_silent_since_long_ago_is_less_alive_and_buys_less() {
        let m = BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
            log_likelihood: 0.0,
        };
        let c = |x, t_x| Customer {
            id: "c".into(),
            x,
            t_x,
            t: 38.0,
            mean_value: 0.0,
            holdout_x: 0,
        };
        let recent = c(4, 36.0);
        let lapsed = c(4, 5.0);
        assert!(m.p_alive(&recent) > 0.8);
        assert!(m.p_alive(&lapsed) < 0.05);
        assert!(m.expected_purchases(&recent, 39.0) > 3.0 * m.expected_purchases(&lapsed, 39.0));
        assert_eq!(m.p_alive(&c(0, 0.0)), 1.0);
    }
}
