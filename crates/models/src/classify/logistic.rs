//! Logistic regression with an L2 penalty, the baseline every propensity model must beat.
//! Minimises Σ log loss + ‖w‖² / (2C) (the intercept unpenalised), as scikit-learn's
//! `LogisticRegression(C=…)` does, on standardized features, by Newton's method: the problem
//! is small (one weight per feature) and convex, so a few exact steps reach the optimum.
//!
//! The Newton step solves a (features + 1)² system with a Cholesky factorisation written here:
//! a linear-algebra crate (nalgebra, ndarray-linalg) would be a heavy dependency for one small
//! positive-definite solve.

use serde::{Deserialize, Serialize};

use crate::scale::Standardizer;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticParams {
    /// Inverse penalty strength (scikit-learn's `C`).
    pub c: f64,
}

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams { c: 1.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub scaler: Standardizer,
    /// Weights on the standardized features.
    pub weights: Vec<f64>,
    pub intercept: f64,
    pub iterations: usize,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Logistic {
    pub fn fit(columns: &[Vec<f64>], y: &[bool], p: &LogisticParams) -> Logistic {
        let scaler = Standardizer::fit(columns);
        let x = scaler.transform(columns);
        let d = x.len();
        let n = y.len();
        let lambda = 1.0 / p.c.max(1e-12);
        // Parameters: weights 0..d, intercept d.
        let mut beta = vec![0.0; d + 1];
        let mut iterations = 0;
        let mut row = vec![0.0; d];
        for _ in 0..100 {
            iterations += 1;
            let mut grad = vec![0.0; d + 1];
            let mut hess = vec![0.0; (d + 1) * (d + 1)];
            for i in 0..n {
                for (j, col) in x.iter().enumerate() {
                    row[j] = col[i];
                }
                let z = beta[d] + row.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>();
                let pr = sigmoid(z);
                let r = pr - f64::from(u8::from(y[i]));
                let w = pr * (1.0 - pr);
                for j in 0..d {
                    grad[j] += r * row[j];
                    for k in 0..=j {
                        hess[j * (d + 1) + k] += w * row[j] * row[k];
                    }
                    hess[d * (d + 1) + j] += w * row[j];
                }
                grad[d] += r;
                hess[d * (d + 1) + d] += w;
            }
            for j in 0..d {
                grad[j] += lambda * beta[j];
                hess[j * (d + 1) + j] += lambda;
            }
            // Mirror the lower triangle.
            for j in 0..=d {
                for k in 0..j {
                    hess[k * (d + 1) + j] = hess[j * (d + 1) + k];
                }
            }
            let Some(step) = cholesky_solve(&mut hess, &grad, d + 1) else {
                break;
            };
            let mut largest: f64 = 0.0;
            for (b, s) in beta.iter_mut().zip(&step) {
                *b -= s;
                largest = largest.max(s.abs());
            }
            if largest < 1e-10 {
                break;
            }
        }
        Logistic {
            scaler,
            intercept: beta[d],
            weights: beta[..d].to_vec(),
            iterations,
        }
    }

    pub fn predict(&self, row: &[f64]) -> f64 {
        let z: f64 = row
            .iter()
            .zip(self.scaler.mean.iter().zip(&self.scaler.scale))
            .zip(&self.weights)
            .map(|((v, (m, s)), w)| (v - m) / s * w)
            .sum();
        sigmoid(self.intercept + z)
    }

    /// The weights' sizes, as shares of their sum (the features are standardized, so the
    /// sizes compare).
    pub fn importances(&self) -> Vec<f64> {
        let total: f64 = self.weights.iter().map(|w| w.abs()).sum();
        self.weights
            .iter()
            .map(|w| if total > 0.0 { w.abs() / total } else { 0.0 })
            .collect()
    }
}

/// Solves `a x = b` for a symmetric positive-definite `a` (`n × n`, row-major, overwritten by
/// its factor). `None` when `a` is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut s = a[j * n + j];
        for k in 0..j {
            s -= a[j * n + k] * a[j * n + k];
        }
        if s <= 0.0 || !s.is_finite() {
            return None;
        }
        let l = s.sqrt();
        a[j * n + j] = l;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / l;
        }
    }
    let mut x = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            x[i] -= a[i * n + k] * x[k];
        }
        x[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            x[i] -= a[k * n + i] * x[k];
        }
        x[i] /= a[i * n + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        let mut a = [4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&mut a, &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(cholesky_solve(&mut [0.0, 0.0, 0.0, 1.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn the_gradient_vanishes_at_the_fit() {
        let x = vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [false, false, true, false, true, true];
        let m = Logistic::fit(std::slice::from_ref(&x), &y, &LogisticParams::default());
        // At the optimum: Σ (p − y) = 0 and Σ (p − y)·x̃ + w = 0 (x̃ standardized).
        let xs = m.scaler.transform(std::slice::from_ref(&x));
        let mut g0 = 0.0;
        let mut g1 = m.weights[0];
        for i in 0..6 {
            let r = m.predict(&[x[i]]) - f64::from(u8::from(y[i]));
            g0 += r;
            g1 += r * xs[0][i];
        }
        assert!(g0.abs() < 1e-9 && g1.abs() < 1e-9, "{g0} {g1}");
        assert!(m.predict(&[5.0]) > m.predict(&[0.0]));
    }
}
