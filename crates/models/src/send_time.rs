//! Send-time optimisation: the hour of the week (UTC) at which a person opens and clicks,
//! shrunk towards the population's when their own history is thin.
//!
//! Each person's engagement is a histogram over the 168 hours of the week (from the hourly
//! counts their profile keeps of `Email Opened` and `Email Link Clicked`, 90 days). Their
//! estimated share of each hour is the posterior mean under a Dirichlet prior centred on the
//! population's shares: `(own[h] + k · population[h]) / (n + k)`, with `n` their events and
//! `k` the prior's strength (in events). Histograms are smoothed first: half over the
//! neighbouring hours (a person who opens at 9:00 is likely to open at 10:00), circularly over
//! the week, and half over the same hour of every day of the week. The best
//! hour is the one with the largest share among those allowed (a window, quiet hours).

use chrono::{DateTime, Datelike, Duration, DurationRound, Timelike, Utc};
use missive_core::Profile;
use serde::{Deserialize, Serialize};

pub const HOURS: usize = 168;

/// The hour of the week of `t` in UTC: 0 is Monday 00:00–01:00.
pub fn hour_of_week(t: DateTime<Utc>) -> usize {
    t.weekday().num_days_from_monday() as usize * 24 + t.hour() as usize
}

/// The hour of the week of an hour counted from the Unix epoch (1970-01-01 was a Thursday,
/// 72 hours after a Monday's start).
pub fn hour_of_week_of_epoch_hour(hour: i64) -> usize {
    (hour + 72).rem_euclid(HOURS as i64) as usize
}

/// A histogram over the hours of the week from `(hour since the epoch, count)` pairs.
pub fn histogram<'a>(hourly: impl IntoIterator<Item = &'a (i64, u32)>) -> [f64; HOURS] {
    let mut h = [0.0; HOURS];
    for (hour, n) in hourly {
        h[hour_of_week_of_epoch_hour(*hour)] += f64::from(*n);
    }
    h
}

/// A person's opens and clicks by hour of the week, from the hourly counts their profile keeps
/// (90 days).
pub fn engagement(p: &Profile) -> [f64; HOURS] {
    let mut h = [0.0; HOURS];
    for name in [crate::features::EMAIL_OPENED, crate::features::EMAIL_CLICKED] {
        if let Some(a) = p.events.get(name) {
            for (v, add) in h.iter_mut().zip(histogram(&a.hourly)) {
                *v += add;
            }
        }
    }
    h
}

/// Spreads a histogram: half of it over the neighbouring hours (weights ½ for the hour, ¼ for
/// each side), half over the same hour of every day (a habit of opening at 19:00 on weekdays
/// says something about Monday 19:00 too). The total is kept.
fn smooth(h: &[f64; HOURS]) -> [f64; HOURS] {
    let mut daily = [0.0; 24];
    for (i, v) in h.iter().enumerate() {
        daily[i % 24] += v;
    }
    let mut out = [0.0; HOURS];
    for (i, o) in out.iter_mut().enumerate() {
        let near = 0.5 * h[i] + 0.25 * h[(i + HOURS - 1) % HOURS] + 0.25 * h[(i + 1) % HOURS];
        *o = 0.5 * near + 0.5 * daily[i % 24] / 7.0;
    }
    out
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendTime {
    /// The population's share of engagement in each hour of the week (sums to 1).
    pub population: Vec<f64>,
    /// The prior's strength, in events: a person with this many opens and clicks counts as
    /// much as the population.
    pub strength: f64,
}

impl SendTime {
    /// The population's shares from everyone's histograms (uniform when there is none).
    pub fn fit<'a>(histograms: impl IntoIterator<Item = &'a [f64; HOURS]>, strength: f64) -> SendTime {
        let mut total = [0.0; HOURS];
        for h in histograms {
            for (t, v) in total.iter_mut().zip(h) {
                *t += v;
            }
        }
        let total = smooth(&total);
        let sum: f64 = total.iter().sum();
        let population = if sum > 0.0 {
            total.iter().map(|v| v / sum).collect()
        } else {
            vec![1.0 / HOURS as f64; HOURS]
        };
        SendTime { population, strength }
    }

    /// A person's estimated share of engagement in each hour.
    pub fn shares(&self, own: &[f64; HOURS]) -> Vec<f64> {
        let own = smooth(own);
        let n: f64 = own.iter().sum();
        own.iter()
            .zip(&self.population)
            .map(|(o, p)| (o + self.strength * p) / (n + self.strength))
            .collect()
    }

    /// The best hour of the week for a person among the `allowed` ones (all when none is).
    pub fn best_hour(&self, own: &[f64; HOURS], allowed: impl Fn(usize) -> bool) -> usize {
        best(&self.shares(own), allowed)
    }

    /// When to send within `within` of `now`: the start of the person's best hour in that
    /// window (now, when it is the current hour). The earliest of equally good hours wins.
    pub fn best_time(&self, own: &[f64; HOURS], now: DateTime<Utc>, within: Duration) -> DateTime<Utc> {
        let shares = self.shares(own);
        let first = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
        let mut best = (now, f64::NEG_INFINITY);
        let mut start = first;
        while start < now + within {
            let s = shares.get(hour_of_week(start)).copied().unwrap_or(0.0);
            if s > best.1 {
                best = (start.max(now), s);
            }
            start += Duration::hours(1);
        }
        best.0
    }

    /// The population's best hour among the `allowed` ones.
    pub fn population_best(&self, allowed: impl Fn(usize) -> bool) -> usize {
        best(&self.population, allowed)
    }
}

fn best(shares: &[f64], allowed: impl Fn(usize) -> bool) -> usize {
    let pick = |filter: &dyn Fn(usize) -> bool| {
        (0..HOURS).filter(|h| filter(*h)).max_by(|a, b| {
            let at = |h: usize| shares.get(h).copied().unwrap_or(0.0);
            at(*a).total_cmp(&at(*b)).then(b.cmp(a))
        })
    };
    pick(&allowed).or_else(|| pick(&|_| true)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn hours_of_the_week() {
        let monday = Utc.with_ymd_and_hms(2026, 11, 30, 0, 30, 0).unwrap();
        assert_eq!(hour_of_week(monday), 0);
        assert_eq!(hour_of_week(monday + chrono::Duration::hours(167)), 167);
        let epoch_hour = monday.timestamp().div_euclid(3600);
        assert_eq!(hour_of_week_of_epoch_hour(epoch_hour), 0);
        assert_eq!(hour_of_week_of_epoch_hour(epoch_hour + 9), 9);
    }

    #[test]
    fn the_best_time_falls_in_the_window() {
        let mut everyone = [0.0; HOURS];
        everyone[9] = 1000.0; // Monday 9:00
        let model = SendTime::fit([&everyone], 10.0);
        let sunday_noon = Utc.with_ymd_and_hms(2026, 11, 29, 12, 20, 0).unwrap();
        let none = [0.0; HOURS];
        // Within a day: Monday 9:00.
        let t = model.best_time(&none, sunday_noon, Duration::hours(24));
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap());
        // Within six hours Monday 9:00 is out of reach: the best hour that is in it (all
        // equal but the edges of the smoothing: the earliest), never before now.
        let t = model.best_time(&none, sunday_noon, Duration::hours(6));
        assert!(t >= sunday_noon && t < sunday_noon + Duration::hours(6), "{t}");
    }

    #[test]
    fn a_thin_history_leans_on_the_population_and_a_rich_one_on_itself() {
        let mut everyone = [0.0; HOURS];
        everyone[9] = 1000.0; // Monday 9:00 for most people
        everyone[130] = 100.0; // Saturday 10:00 for some
        let model = SendTime::fit([&everyone], 10.0);
        let mut thin = [0.0; HOURS];
        thin[20] = 1.0;
        assert_eq!(model.best_hour(&thin, |_| true), 9);
        let mut rich = [0.0; HOURS];
        rich[20] = 40.0;
        assert_eq!(model.best_hour(&rich, |_| true), 20);
        // Only the allowed hours (a window): a rich history's hour of the day carries over to
        // other days; a thin one follows everyone's.
        assert_eq!(model.best_hour(&rich, |h| h >= 100) % 24, 20);
        assert_eq!(model.best_hour(&thin, |h| h >= 100) % 24, 9);
        assert_eq!(model.best_hour(&thin, |_| false), 9);
    }

    /// Held-back opens: 2,000 people, each opening around a habit of their own (one or two
    /// favourite hours, with noise), 12 opens learned from and 4 held back. The shrunk
    /// per-person hour catches more held-back opens (within an hour) than the population's
    /// best hour.
    #[test]
    fn per_person_hours_beat_the_population_best_on_held_back_opens() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut learned = Vec::new();
        let mut held = Vec::new();
        for _ in 0..2000 {
            // Habits cluster on weekday mornings and evenings, as opens do.
            let day = rng.random_range(0..5);
            let favourite = day * 24 + if rng.random::<bool>() { 8 } else { 19 } + rng.random_range(0..3);
            let second = (favourite + 24 * rng.random_range(1..3)) % HOURS;
            let draw = |rng: &mut StdRng| {
                let base = if rng.random::<f64>() < 0.7 {
                    favourite
                } else {
                    second
                };
                match rng.random_range(0..10) {
                    0 => rng.random_range(0..HOURS),
                    1 => (base + 1) % HOURS,
                    _ => base,
                }
            };
            let mut h = [0.0; HOURS];
            for _ in 0..12 {
                h[draw(&mut rng)] += 1.0;
            }
            learned.push(h);
            held.push((0..4).map(|_| draw(&mut rng)).collect::<Vec<usize>>());
        }
        let model = SendTime::fit(learned.iter(), 8.0);
        let near = |hour: usize, open: usize| {
            let d = (hour as i64 - open as i64).rem_euclid(HOURS as i64);
            d <= 1 || d == HOURS as i64 - 1
        };
        let population = model.population_best(|_| true);
        let (mut mine, mut theirs) = (0, 0);
        for (h, opens) in learned.iter().zip(&held) {
            let best = model.best_hour(h, |_| true);
            mine += opens.iter().filter(|o| near(best, **o)).count();
            theirs += opens.iter().filter(|o| near(population, **o)).count();
        }
        assert!(
            mine > 3 * theirs,
            "per person {mine} against population {theirs} of 8,000"
        );
    }
}
