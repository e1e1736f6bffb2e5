//! A sequential test that stays valid however often the results are looked at: the mixture
//! sequential probability ratio test (mSPRT) of Johari, Pekelis & Walsh (2017, "Always valid
//! inference"), as Optimizely's stats engine uses it, for the difference of two rates.
//!
//! At each look, the difference `d = p_b − p_a` is taken as normal with variance
//! `V = p(1−p)(1/n_a + 1/n_b)`, `p` the pooled rate: the variance under no difference, which
//! is what the false-positive guarantee is about (per-arm estimates are near zero at the first
//! looks and inflate the ratio). Against a normal mixture `N(0, τ²)` of alternatives, the
//! likelihood ratio is
//!
//! `Λ = √(V / (V + τ²)) · exp(τ² d² / (2 V (V + τ²)))`
//!
//! and the always-valid p-value is the running minimum of `1/Λ` over the looks made so far.
//! **Stopping rule:** stop and declare a difference as soon as that p-value falls below alpha.
//! Under no true difference, the chance of ever doing so, however many looks, stays at most
//! alpha (tested by simulation). A fixed-horizon test looked at every hour does not have that
//! property: its false positives multiply with the looks.
//!
//! The guarantee rests on the normal approximation: a look counts only once the two groups
//! together have [`MIN_OUTCOMES`] successes and as many failures. `τ` is the size of effect
//! the test is tuned for. The default is 10 % of the control rate ([`default_tau`]): effects
//! near it are detected soonest. The simulation tests it with the default and with a `τ` as
//! large as the control rate, looking after every unit.

use serde::Serialize;

use super::{Counts, StatsError, invalid, not_enough};

/// Successes, and failures, the two groups need together before a look counts.
pub const MIN_OUTCOMES: u64 = 5;

/// The mixture's spread for a control rate: 10 % of it (a relative lift of 10 %).
pub fn default_tau(control_rate: f64) -> f64 {
    (0.1 * control_rate).max(1e-6)
}

/// One look's likelihood ratio Λ of `b` against `a`.
pub fn likelihood_ratio(a: Counts, b: Counts, tau: f64) -> Result<f64, StatsError> {
    if !(tau.is_finite() && tau > 0.0) {
        return Err(invalid("tau", format!("{tau} is not a positive spread")));
    }
    let (pa, pb) = (a.rate()?, b.rate()?);
    let successes = a.successes + b.successes;
    let failures = (a.units + b.units) - successes;
    if successes < MIN_OUTCOMES || failures < MIN_OUTCOMES {
        return Err(not_enough(format!(
            "a look counts once the groups have {MIN_OUTCOMES} successes and {MIN_OUTCOMES} failures together"
        )));
    }
    let p = successes as f64 / (a.units + b.units) as f64;
    let v = p * (1.0 - p) * (1.0 / a.units as f64 + 1.0 / b.units as f64);
    let t2 = tau * tau;
    let d = pb - pa;
    Ok((v / (v + t2)).sqrt() * (t2 * d * d / (2.0 * v * (v + t2))).exp())
}

/// The running state of a sequential test: feed it each look, read the always-valid p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sequential {
    pub tau: f64,
    pub alpha: f64,
    /// The always-valid p-value: 1 before the first look.
    pub p_value: f64,
    pub looks: u64,
}

impl Sequential {
    pub fn new(tau: f64, alpha: f64) -> Result<Self, StatsError> {
        crate::stats::check_alpha(alpha)?;
        if !(tau.is_finite() && tau > 0.0) {
            return Err(invalid("tau", format!("{tau} is not a positive spread")));
        }
        Ok(Self {
            tau,
            alpha,
            p_value: 1.0,
            looks: 0,
        })
    }

    /// Takes in the cumulative counts at a look. A look with too little data changes nothing.
    pub fn look(&mut self, a: Counts, b: Counts) -> Result<(), StatsError> {
        self.looks += 1;
        match likelihood_ratio(a, b, self.tau) {
            Ok(l) => {
                self.p_value = self.p_value.min((1.0 / l).min(1.0));
                Ok(())
            }
            Err(StatsError::NotEnoughData(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether the stopping rule says a difference is established.
    pub fn significant(&self) -> bool {
        self.p_value < self.alpha
    }
}
