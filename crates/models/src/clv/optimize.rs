//! Minimising a negative log-likelihood over unconstrained parameters with Nelder-Mead
//! (argmin): the models optimise the logarithms of their positive parameters.

use argmin::core::{CostFunction, Executor, State, TerminationReason, TerminationStatus};
use argmin::solver::neldermead::NelderMead;

use super::FitError;

struct Problem<F>(F);

impl<F: Fn(&[f64]) -> f64> CostFunction for Problem<F> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Self::Param) -> Result<f64, argmin::core::Error> {
        let v = (self.0)(p);
        // A non-finite likelihood (a parameter far outside the data's range) is the worst.
        Ok(if v.is_finite() { v } else { f64::MAX })
    }
}

/// The point near `start` where `f` is least, and `f` there.
pub(super) fn minimise(f: impl Fn(&[f64]) -> f64, start: &[f64]) -> Result<(Vec<f64>, f64), FitError> {
    let mut simplex = vec![start.to_vec()];
    for i in 0..start.len() {
        let mut p = start.to_vec();
        p[i] += 0.5;
        simplex.push(p);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(1e-12)
        .map_err(|e| FitError::NoConvergence(e.to_string()))?;
    let result = Executor::new(Problem(f), solver)
        .configure(|s| s.max_iters(20_000))
        .run()
        .map_err(|e| FitError::NoConvergence(e.to_string()))?;
    let state = result.state();
    if let TerminationStatus::Terminated(TerminationReason::MaxItersReached) = state.get_termination_status()
    {
        return Err(FitError::NoConvergence(
            "20,000 iterations without settling: the data may not identify the model".into(),
        ));
    }
    let best = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| FitError::NoConvergence("no best point".into()))?;
    Ok((best, state.get_best_cost()))
}
