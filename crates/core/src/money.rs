//! Money in minor units (cents), so that revenue sums are exact.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(pub i64);

impl Money {
    /// Reads a JSON number or numeric string as an amount in major units, rounded to cents.
    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        let major = match v {
            serde_json::Value::Number(n) => n.as_f64()?,
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        if !major.is_finite() || major.abs() > 1e15 {
            return None;
        }
        Some(Self((major * 100.0).round() as i64))
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    pub fn as_major(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_reads_numbers_and_numeric_strings_to_the_cent() {
        assert_eq!(Money::from_json(&json!(11.77)), Some(Money(1177)));
        assert_eq!(Money::from_json(&json!("12.005")), Some(Money(1201)));
        assert_eq!(Money::from_json(&json!(3)), Some(Money(300)));
        assert_eq!(Money::from_json(&json!("abc")), None);
        assert_eq!(Money::from_json(&json!(null)), None);
    }
}
