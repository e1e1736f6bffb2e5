//! How many units a test of two rates needs, and the smallest lift a given size can detect:
//! the calculator behind "at your volume this test needs 9 days".
//!
//! The effect is Cohen's h, `2·asin(√p_b) − 2·asin(√p_a)`, and the power of the two-sided
//! z-test with `n` units per group is `Φ(h·√(n/2) − z) + Φ(−h·√(n/2) − z)`, z = z_{1−α/2}.
//! Both are solved exactly (bisection to the last bit). Reference: statsmodels
//! `NormalIndPower().solve_power` with `proportion_effectsize`.

use serde::Serialize;

use super::{StatsError, critical, invalid, normal};

/// Cohen's h between two rates.
pub fn effect_size(a: f64, b: f64) -> f64 {
    2.0 * b.sqrt().asin() - 2.0 * a.sqrt().asin()
}

/// The power of the two-sided test with `n` units per group, for effect `h`.
pub fn power(h: f64, n: f64, alpha: f64) -> Result<f64, StatsError> {
    let z = critical(alpha)?;
    if !(n.is_finite() && n >= 0.0 && h.is_finite()) {
        return Err(invalid(
            "units",
            format!("{n} units per group with effect {h} is not a sample"),
        ));
    }
    let shift = h.abs() * (n / 2.0).sqrt();
    Ok(normal::sf(z - shift) + normal::sf(z + shift))
}

fn check_rate(field: &'static str, p: f64) -> Result<(), StatsError> {
    if p > 0.0 && p < 1.0 {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{p} is not a rate strictly between 0 and 1"),
        ))
    }
}

fn check_power(target: f64, alpha: f64) -> Result<(), StatsError> {
    if !(target > alpha && target < 1.0) {
        return Err(invalid(
            "power",
            format!("{target} must be above alpha ({alpha}) and below 1"),
        ));
    }
    Ok(())
}

/// Bisection of an increasing `f` for `f(x) = target` on `[lo, hi]`, to the last bit.
fn solve(
    mut lo: f64,
    mut hi: f64,
    target: f64,
    f: impl Fn(f64) -> Result<f64, StatsError>,
) -> Result<f64, StatsError> {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid)? < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(0.5 * (lo + hi))
}

/// Units per group needed to detect `control → treatment` with `power` (0.8 is usual) at
/// `alpha`; fractional (round up to plan).
pub fn sample_size(control: f64, treatment: f64, alpha: f64, target: f64) -> Result<f64, StatsError> {
    check_rate("control", control)?;
    check_rate("treatment", treatment)?;
    check_power(target, alpha)?;
    let h = effect_size(control, treatment);
    if h == 0.0 {
        return Err(invalid(
            "treatment",
            "equal rates: no sample is large enough to tell them apart",
        ));
    }
    // Power grows with n; find an upper bound, then bisect.
    let mut hi = 2.0;
    while power(h, hi, alpha)? < target {
        hi *= 2.0;
        if hi > 1e15 {
            return Err(invalid(
                "treatment",
                "the effect is too small to detect with any sample",
            ));
        }
    }
    solve(0.0, hi, target, |n| power(h, n, alpha))
}

/// The smallest rate above `control` that `n` units per group detect with `power`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detectable {
    /// Cohen's h.
    pub effect: f64,
    pub rate: f64,
    /// `rate / control - 1`.
    pub lift: f64,
}

pub fn minimum_detectable(control: f64, n: f64, alpha: f64, target: f64) -> Result<Detectable, StatsError> {
    check_rate("control", control)?;
    check_power(target, alpha)?;
    if !(n.is_finite() && n >= 1.0) {
        return Err(invalid("units", format!("{n} units per group is not a sample")));
    }
    // The largest effect upwards: from the control rate to 100 %.
    let widest = std::f64::consts::PI - 2.0 * control.sqrt().asin();
    if power(widest, n, alpha)? < target {
        return Err(super::not_enough(format!(
            "{n} units per group cannot detect any rise from {control} with {target} power: even 100 % would go unseen"
        )));
    }
    let effect = solve(0.0, widest, target, |h| power(h, n, alpha))?;
    let angle = control.sqrt().asin() + effect / 2.0;
    let rate = angle.sin().powi(2).min(1.0);
    Ok(Detectable {
        effect,
        rate,
        lift: rate / control - 1.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_textbook_case_and_bad_input() {
        // 10 % → 12 % at 5 % and 80 %: about 3,835 per group (Cohen's h tables).
        let n = sample_size(0.10, 0.12, 0.05, 0.8).unwrap();
        assert!((n - 3_835.0).abs() < 5.0, "{n}");
        assert!((power(effect_size(0.10, 0.12), n, 0.05).unwrap() - 0.8).abs() < 1e-12);
        let d = minimum_detectable(0.10, n, 0.05, 0.8).unwrap();
        assert!((d.rate - 0.12).abs() < 1e-9, "{d:?}");
        assert!(sample_size(0.1, 0.1, 0.05, 0.8).is_err());
        assert!(sample_size(0.0, 0.1, 0.05, 0.8).is_err());
        assert!(sample_size(0.1, 0.2, 0.05, 0.01).is_err());
        assert!(minimum_detectable(0.1, 0.0, 0.05, 0.8).is_err());
        assert!(
            minimum_detectable(0.1, 2.0, 0.05, 0.8).is_err(),
            "no rise is detectable"
        );
        assert!(power(0.1, -1.0, 0.05).is_err());
    }
}
