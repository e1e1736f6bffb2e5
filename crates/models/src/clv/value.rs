//! Customer lifetime value over a horizon: the expected purchases of each coming month
//! (BG/NBD, conditional on the customer's history) times the expected spend per purchase
//! (Gamma-Gamma), discounted at a monthly rate, summed. The same computation as the
//! `lifetimes` package's `customer_lifetime_value` (months of 30 days, weeks as the models'
//! time unit).

use super::bgnbd::BgNbd;
use super::gamma_gamma::GammaGamma;
use super::summary::Customer;

/// Weeks in a month of 30 days.
const WEEKS_PER_MONTH: f64 = 30.0 / 7.0;

/// The customer's value over `months`, discounted at `monthly_discount` (0.01 = 1 % a month).
pub fn lifetime_value(bg: &BgNbd, gg: &GammaGamma, c: &Customer, months: u32, monthly_discount: f64) -> f64 {
    let spend = gg.expected_value(c.x, c.mean_value);
    let mut value = 0.0;
    let mut before = 0.0;
    for m in 1..=months {
        let by = bg.expected_purchases(c, f64::from(m) * WEEKS_PER_MONTH);
        value += (by - before) * spend / (1.0 + monthly_discount).powi(m as i32);
        before = by;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> (BgNbd, GammaGamma) {
        let bg = BgNbd {
            r: 0.243,
            alpha: 4.414,
            a: 0.793,
            b: 2.426,
            log_likelihood: 0.0,
        };
        let gg = GammaGamma {
            p: 6.25,
            q: 3.74,
            gamma: 15.44,
            log_likelihood: 0.0,
            customers: 946,
        };
        (bg, gg)
    }

    #[test]
    fn undiscounted_value_is_purchases_times_spend_and_discounting_lowers_it() {
        let (bg, gg) = models();
        let c = Customer {
            id: "c".into(),
            x: 2,
            t_x: 30.43,
            t: 38.86,
            mean_value: 40.0,
            holdout_x: 0,
        };
        let flat = lifetime_value(&bg, &gg, &c, 12, 0.0);
        let want = bg.expected_purchases(&c, 12.0 * WEEKS_PER_MONTH) * gg.expected_value(2, 40.0);
        assert!((flat - want).abs() < 1e-9, "{flat} {want}");
        let discounted = lifetime_value(&bg, &gg, &c, 12, 0.01);
        assert!(
            discounted < flat && discounted > 0.8 * flat,
            "{discounted} {flat}"
        );
        // A customer who bought long ago and never since is worth less.
        let gone = Customer {
            t_x: 2.0,
            ..c.clone()
        };
        assert!(lifetime_value(&bg, &gg, &gone, 12, 0.01) < discounted);
    }
}
