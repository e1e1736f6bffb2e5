//! From transactions to what the models read, per customer, over a calibration period: repeat
//! purchases `x` (days with a purchase after the first; several on one day are one), the
//! time of the last one `t_x` and the customer's age `T` (both in weeks since the first
//! purchase), the mean value of the repeat purchases, and the repeat purchases in a holdout
//! period after it (for checking predictions).

use std::collections::BTreeMap;

use chrono::NaiveDate;

/// One purchase.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub customer: String,
    pub date: NaiveDate,
    pub value: f64,
}

/// One customer over the calibration period.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    /// Repeat purchases (days) in the calibration period.
    pub x: u32,
    /// Weeks from the first purchase to the last repeat one (0 when none).
    pub t_x: f64,
    /// Weeks from the first purchase to the end of calibration.
    pub t: f64,
    /// Mean value of the repeat purchases (0 when none).
    pub mean_value: f64,
    /// Repeat purchases (days) in the holdout period.
    pub holdout_x: u32,
}

fn weeks(from: NaiveDate, to: NaiveDate) -> f64 {
    (to - from).num_days() as f64 / 7.0
}

/// Customers whose first purchase is on or before `calibration_end`, with their figures;
/// purchases after `holdout_end` are ignored.
pub fn summarise(
    transactions: &[Transaction],
    calibration_end: NaiveDate,
    holdout_end: NaiveDate,
) -> Vec<Customer> {
    // Per customer, per day, the day's value.
    let mut days: BTreeMap<&str, BTreeMap<NaiveDate, f64>> = BTreeMap::new();
    for t in transactions.iter().filter(|t| t.date <= holdout_end) {
        *days
            .entry(t.customer.as_str())
            .or_default()
            .entry(t.date)
            .or_default() += t.value;
    }
    days.into_iter()
        .filter_map(|(id, days)| {
            let (&first, _) = days.iter().next()?;
            if first > calibration_end {
                return None;
            }
            let repeats: Vec<(NaiveDate, f64)> = days
                .iter()
                .skip(1)
                .filter(|(d, _)| **d <= calibration_end)
                .map(|(d, v)| (*d, *v))
                .collect();
            let holdout_x = days.keys().filter(|d| **d > calibration_end).count() as u32;
            let x = repeats.len() as u32;
            Some(Customer {
                id: id.to_owned(),
                x,
                t_x: repeats.last().map_or(0.0, |(d, _)| weeks(first, *d)),
                t: weeks(first, calibration_end),
                mean_value: if x == 0 {
                    0.0
                } else {
                    repeats.iter().map(|(_, v)| v).sum::<f64>() / f64::from(x)
                },
                holdout_x,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn repeat_days_recency_age_and_spend() {
        let t = |c: &str, date: &str, v: f64| Transaction {
            customer: c.into(),
            date: d(date),
            value: v,
        };
        let txs = [
            t("a", "1997-01-01", 10.0),
            t("a", "1997-01-15", 4.0),
            t("a", "1997-01-15", 6.0), // the same day: one purchase of 10
            t("a", "1997-02-12", 20.0),
            t("a", "1997-11-01", 5.0), // holdout
            t("b", "1997-03-01", 7.0),
            t("c", "1997-12-01", 9.0), // first purchase after calibration: not a customer yet
        ];
        let s = summarise(&txs, d("1997-09-30"), d("1998-06-30"));
        assert_eq!(s.len(), 2);
        let a = &s[0];
        assert_eq!((a.x, a.holdout_x), (2, 1));
        assert!((a.t_x - 6.0).abs() < 1e-12);
        assert!((a.t - 272.0 / 7.0).abs() < 1e-12);
        assert!((a.mean_value - 15.0).abs() < 1e-12);
        assert_eq!((s[1].x, s[1].t_x, s[1].mean_value), (0, 0.0, 0.0));
    }
}
