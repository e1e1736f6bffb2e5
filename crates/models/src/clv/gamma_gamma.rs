//! Gamma-Gamma spend (Fader, Hardie & Lee 2005, "RFM and CLV"): a customer's transaction values
//! are gamma-distributed (shape p) around a mean whose scale varies across customers as a
//! gamma (q, γ). Fitted on customers with repeat purchases, from their count and mean value;
//! predicts each customer's expected mean spend.

use serde::Serialize;
use statrs::function::gamma::ln_gamma;

use super::FitError;
use super::optimize::minimise;
use super::summary::Customer;

/// Fitted Gamma-Gamma parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
    pub log_likelihood: f64,
    /// Customers it was fitted on (those with repeat purchases).
    pub customers: usize,
}

fn ll(p: f64, q: f64, g: f64, x: f64, m: f64) -> f64 {
    ln_gamma(p * x + q) - ln_gamma(p * x) - ln_gamma(q) + q * g.ln() + (p * x - 1.0) * m.ln() + p * x * x.ln()
        - (p * x + q) * (g + m * x).ln()
}

/// Fits the model to the customers with repeat purchases and a positive mean value.
pub fn fit(customers: &[Customer]) -> Result<GammaGamma, FitError> {
    let data: Vec<(f64, f64)> = customers
        .iter()
        .filter(|c| c.x > 0 && c.mean_value > 0.0)
        .map(|c| (f64::from(c.x), c.mean_value))
        .collect();
    if data.is_empty() {
        return Err(FitError::NoRepeat);
    }
    let n = data.len() as f64;
    let nll = |v: &[f64]| {
        let (p, q, g) = (v[0].exp(), v[1].exp(), v[2].exp());
        // The mean per customer, as in BG/NBD's fit: the optimiser's tolerance is absolute.
        -data.iter().map(|(x, m)| ll(p, q, g, *x, *m)).sum::<f64>() / n
    };
    let (v, cost) = minimise(nll, &[0.0, 0.0, 0.0])?;
    let (v, cost) = match minimise(nll, &v) {
        Ok((w, c)) if c < cost => (w, c),
        _ => (v, cost),
    };
    Ok(GammaGamma {
        p: v[0].exp(),
        q: v[1].exp(),
        gamma: v[2].exp(),
        log_likelihood: -cost * n,
        customers: data.len(),
    })
}

impl GammaGamma {
    /// The expected mean transaction value of a customer with `x` repeat purchases of mean
    /// value `m` (a weighted blend of the population's mean and their own).
    pub fn expected_value(&self, x: u32, m: f64) -> f64 {
        let x = f64::from(x);
        (self.gamma + m * x) * self.p / (self.p * x + self.q - 1.0)
    }
}
