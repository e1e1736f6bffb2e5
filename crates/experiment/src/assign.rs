//! Assignment: which variant a profile gets in an experiment, deterministic and sticky (the
//! same profile always gets the same variant while the experiment's variants stand) and
//! independent across experiments (being in B of one says nothing about another), from the
//! xxh3 hash of the experiment's name and the profile id.

use serde::Serialize;
use twox_hash::XxHash3_64;

/// The resolution of a split: weights are applied in ten-thousandths.
pub const BUCKETS: u64 = 10_000;

/// The salt of the global holdout: a profile in it receives no marketing at all.
const GLOBAL_HOLDOUT: &str = "missive:global-holdout";

/// A profile's bucket (0 .. BUCKETS) in the experiment named `experiment`.
pub fn bucket(experiment: &str, profile: &str) -> u64 {
    // A separator that cannot occur in either keeps ("ab", "c") apart from ("a", "bc").
    let mut key = Vec::with_capacity(experiment.len() + profile.len() + 1);
    key.extend_from_slice(experiment.as_bytes());
    key.push(0);
    key.extend_from_slice(profile.as_bytes());
    XxHash3_64::oneshot(&key) % BUCKETS
}

/// Why a split cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
pub enum SplitError {
    #[error("an experiment needs at least two variants")]
    TooFewVariants,
    #[error("weight {0} is not a positive number")]
    BadWeight(f64),
}

/// Variants' weights turned into bucket boundaries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    /// The first bucket past each variant, increasing; the last is `BUCKETS`.
    bounds: Vec<u64>,
}

impl Split {
    /// Weights in any unit (they are normalized): `[50, 50]`, `[1, 1, 1]`, `[90, 10]`.
    pub fn new(weights: &[f64]) -> Result<Self, SplitError> {
        if weights.len() < 2 {
            return Err(SplitError::TooFewVariants);
        }
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
            return Err(SplitError::BadWeight(*w));
        }
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let bounds = weights
            .iter()
            .map(|w| {
                acc += w;
                ((acc / total) * BUCKETS as f64).round() as u64
            })
            .collect::<Vec<_>>();
        let mut bounds = bounds;
        if let Some(last) = bounds.last_mut() {
            *last = BUCKETS;
        }
        Ok(Self { bounds })
    }

    /// The index of the variant a profile gets.
    pub fn variant(&self, experiment: &str, profile: &str) -> usize {
        let b = bucket(experiment, profile);
        // The last bound is BUCKETS, above every bucket: a position is always found.
        self.bounds
            .iter()
            .position(|bound| b < *bound)
            .unwrap_or(self.bounds.len().saturating_sub(1))
    }
}

/// The index of the variant a profile gets from `shares` (any non-negative numbers, at least one
/// positive; a zero share gets nobody) under `key` (an experiment's wave): like
/// [`Split::variant`], but shares may be zero and change from wave to wave.
pub fn pick(shares: &[f64], key: &str, profile: &str) -> usize {
    let clean: Vec<f64> = shares
        .iter()
        .map(|s| if s.is_finite() { s.max(0.0) } else { 0.0 })
        .collect();
    let total: f64 = clean.iter().sum();
    if total <= 0.0 {
        return 0;
    }
    let at = (bucket(key, profile) as f64 + 0.5) / BUCKETS as f64 * total;
    let mut acc = 0.0;
    for (i, s) in clean.iter().enumerate() {
        acc += s;
        if at < acc {
            return i;
        }
    }
    // Rounding at the very top: the last variant with a share.
    clean.iter().rposition(|s| *s > 0.0).unwrap_or(0)
}

/// Whether a profile is in the global holdout of `percent` per cent (0 to 100).
pub fn in_global_holdout(profile: &str, percent: f64) -> bool {
    let cut = (percent.clamp(0.0, 100.0) / 100.0 * BUCKETS as f64).round() as u64;
    bucket(GLOBAL_HOLDOUT, profile) < cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::srm;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("prf_{i:08}")).collect()
    }

    #[test]
    fn assignment_is_sticky_and_splits_as_planned() {
        let split = Split::new(&[50.0, 30.0, 20.0]).unwrap();
        let mut units = [0u64; 3];
        for id in ids(60_000) {
            let v = split.variant("subject-test", &id);
            assert_eq!(v, split.variant("subject-test", &id), "sticky");
            units[v] += 1;
        }
        let check = srm::check(&units, &[50.0, 30.0, 20.0]).unwrap();
        assert!(!check.mismatch, "{units:?} {check:?}");
    }

    /// Being in B of one experiment says nothing about another: the cross-table of two
    /// experiments' variants is independent.
    #[test]
    fn experiments_assign_independently() {
        let split = Split::new(&[1.0, 1.0]).unwrap();
        let mut table = [[0u64; 2]; 2];
        for id in ids(40_000) {
            table[split.variant("one", &id)][split.variant("two", &id)] += 1;
        }
        let rows: Vec<crate::stats::Counts> = table
            .iter()
            .map(|r| crate::stats::Counts::new(r[0], r[0] + r[1]).unwrap())
            .collect();
        let t = crate::stats::proportions::chi_square(&rows, false).unwrap();
        assert!(t.p_value > 0.001, "{table:?} {t:?}");
    }

    #[test]
    fn bad_splits_and_the_holdout() {
        assert_eq!(Split::new(&[1.0]), Err(SplitError::TooFewVariants));
        assert_eq!(Split::new(&[1.0, 0.0]), Err(SplitError::BadWeight(0.0)));
        let held = ids(20_000).iter().filter(|id| in_global_holdout(id, 5.0)).count();
        assert!((800..1_200).contains(&held), "{held}");
        assert!(!ids(1_000).iter().any(|id| in_global_holdout(id, 0.0)));
        assert!(ids(1_000).iter().all(|id| in_global_holdout(id, 100.0)));
    }

    #[test]
    fn pick_follows_the_shares_and_skips_empty_ones() {
        let mut got = [0u64; 3];
        for id in ids(30_000) {
            got[pick(&[0.7, 0.0, 0.3], "wave-1", &id)] += 1;
        }
        assert_eq!(got[1], 0);
        let check = srm::check(&[got[0], got[2]], &[0.7, 0.3]).unwrap();
        assert!(!check.mismatch, "{got:?}");
        assert_eq!(pick(&[0.0, 0.0], "k", "p"), 0);
        assert_eq!(pick(&[f64::NAN, 1.0], "k", "p"), 1);
    }
}
