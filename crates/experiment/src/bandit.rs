//! Bandits: Thompson sampling over variants of a broadcast (subject lines, templates). The
//! broadcast is sent in waves. Between waves, each variant's share of the next wave follows
//! the posterior probability that it is the best. A floor keeps every variant learning. The
//! last wave goes to the best. "Test, then send the winner" is the simple case: one equal
//! test wave, then everything to the observed best.
//!
//! Pure: the random generator is passed in, so a seeded one gives the same waves every time.

use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::Serialize;

use crate::stats::{Counts, StatsError};

/// P(each variant has the highest rate), from `draws` joint samples of the Beta(1 + s, 1 + f)
/// posteriors.
pub fn win_probabilities(arms: &[Counts], draws: usize, rng: &mut impl Rng) -> Result<Vec<f64>, StatsError> {
    if arms.len() < 2 {
        return Err(StatsError::NotEnoughData(
            "a bandit needs at least two variants".into(),
        ));
    }
    if draws == 0 {
        return Err(StatsError::Invalid {
            field: "draws",
            why: "at least one draw is needed".into(),
        });
    }
    let posteriors = arms
        .iter()
        .map(|c| {
            Beta::new(1.0 + c.successes as f64, 1.0 + (c.units - c.successes) as f64).map_err(|e| {
                StatsError::Invalid {
                    field: "counts",
                    why: e.to_string(),
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut wins = vec![0u64; arms.len()];
    for _ in 0..draws {
        let mut best = (0, f64::MIN);
        for (i, p) in posteriors.iter().enumerate() {
            let x = p.sample(rng);
            if x > best.1 {
                best = (i, x);
            }
        }
        wins[best.0] += 1;
    }
    Ok(wins.into_iter().map(|w| w as f64 / draws as f64).collect())
}

/// Splits a wave of `size` units by `weights` (win probabilities), each variant getting at
/// least `floor` of the wave (0 to 1/k), rounding so that the parts add up to `size`.
pub fn allocate(weights: &[f64], size: u64, floor: f64) -> Vec<u64> {
    let k = weights.len();
    if k == 0 {
        return Vec::new();
    }
    let shares = shares(weights, floor);
    // Largest remainders: the parts add up to `size` exactly.
    let exact: Vec<f64> = shares.iter().map(|s| s * size as f64).collect();
    let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut left = size - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|a, b| (exact[*b] - exact[*b].floor()).total_cmp(&(exact[*a] - exact[*a].floor())));
    for i in order {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

/// Each variant's share (adding up to 1) from `weights` (win probabilities), each at least
/// `floor` (clamped to 0 .. 1/k). NaN, infinite and negative weights count as 0; all zero
/// gives equal shares.
pub fn shares(weights: &[f64], floor: f64) -> Vec<f64> {
    let k = weights.len();
    if k == 0 {
        return Vec::new();
    }
    let floor = if floor.is_finite() {
        floor.clamp(0.0, 1.0 / k as f64)
    } else {
        0.0
    };
    let clean = |w: f64| if w.is_finite() { w.max(0.0) } else { 0.0 };
    let total: f64 = weights.iter().map(|w| clean(*w)).sum();
    weights
        .iter()
        .map(|w| {
            let p = if total > 0.0 {
                clean(*w) / total
            } else {
                1.0 / k as f64
            };
            floor + (1.0 - floor * k as f64) * p
        })
        .collect()
}

/// What a broadcast in waves does next, after the counts so far: the next test wave's shares,
/// or (after the last test wave) the variant the rest gets.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = BanditDecision)]
pub struct Decision {
    pub win_probabilities: Vec<f64>,
    /// The next test wave's share of each variant (empty when `best` is set).
    pub shares: Vec<f64>,
    /// The index of the variant everyone left gets: the most probable best.
    pub best: Option<usize>,
}

/// Decides the next wave from each variant's counts: Thompson shares with `floor` for another
/// test wave, or the most probable best when `last` (the test waves are over).
pub fn decide(arms: &[Counts], floor: f64, last: bool, rng: &mut impl Rng) -> Result<Decision, StatsError> {
    let win_probabilities = win_probabilities(arms, 20_000, rng)?;
    if last {
        let best = win_probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        return Ok(Decision {
            win_probabilities,
            shares: Vec::new(),
            best,
        });
    }
    Ok(Decision {
        shares: shares(&win_probabilities, floor),
        win_probabilities,
        best: None,
    })
}

/// A plan for the next wave.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = BanditWave)]
pub struct Wave {
    pub win_probabilities: Vec<f64>,
    pub units: Vec<u64>,
}

/// The next wave of `size` units after the counts so far (Thompson sampling with a floor).
pub fn next_wave(
    arms: &[Counts],
    size: u64,
    floor: f64,
    draws: usize,
    rng: &mut impl Rng,
) -> Result<Wave, StatsError> {
    let win_probabilities = win_probabilities(arms, draws, rng)?;
    let units = allocate(&win_probabilities, size, floor);
    Ok(Wave {
        win_probabilities,
        units,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::bayes;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn c(x: u64, n: u64) -> Counts {
        Counts::new(x, n).unwrap()
    }

    #[test]
    fn win_probabilities_agree_with_the_exact_chance_to_beat() {
        let mut rng = StdRng::seed_from_u64(1);
        let (a, b) = (c(40, 200), c(52, 210));
        let exact = bayes::beta_binomial(a, b).unwrap().chance_to_beat;
        let draws = 200_000;
        let p = win_probabilities(&[a, b], draws, &mut rng).unwrap();
        let se = (exact * (1.0 - exact) / draws as f64).sqrt();
        assert!((p[1] - exact).abs() < 4.0 * se, "{p:?} against {exact}");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn waves_add_up_and_keep_a_floor() {
        assert_eq!(
            allocate(&[0.98, 0.01, 0.01], 1_000, 0.05).iter().sum::<u64>(),
            1_000
        );
        let parts = allocate(&[1.0, 0.0, 0.0], 1_000, 0.05);
        assert_eq!(parts, vec![900, 50, 50]);
        assert_eq!(allocate(&[0.0, 0.0], 7, 0.0).iter().sum::<u64>(), 7);
        assert_eq!(allocate(&[f64::NAN, 1.0], 10, f64::NAN).iter().sum::<u64>(), 10);
        let mut rng = StdRng::seed_from_u64(2);
        let wave = next_wave(&[c(10, 500), c(60, 500)], 1_000, 0.1, 10_000, &mut rng).unwrap();
        assert!(wave.units[1] > 850 && wave.units[0] >= 100, "{wave:?}");
        assert!(next_wave(&[c(1, 2)], 10, 0.1, 10, &mut rng).is_err());
    }

    #[test]
    fn a_decision_shifts_shares_then_names_the_best() {
        let mut rng = StdRng::seed_from_u64(3);
        let arms = [c(20, 200), c(60, 200), c(22, 200)];
        let next = decide(&arms, 0.05, false, &mut rng).unwrap();
        assert_eq!(next.best, None);
        assert!((next.shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(next.shares[1] > 0.85 && next.shares[0] >= 0.05, "{next:?}");
        let last = decide(&arms, 0.05, true, &mut rng).unwrap();
        assert_eq!((last.best, last.shares.len()), (Some(1), 0));
        assert_eq!(shares(&[f64::NAN, -1.0], 0.1), vec![0.5, 0.5]);
    }
}
