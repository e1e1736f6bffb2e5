//! Send-time optimisation: the hour of the week at which a person opens and clicks, shrunk
//! towards the population's when their own history is thin.
//!
//! Hours are the person's local ones (their `timezone` trait, else the workspace's default
//! zone, which the model keeps): people open at 19:00 where they live, so everyone's habit is
//! learned and applied in local time, and a person with no history of their own gets the
//! population's hour in their own evening, not in someone else's. Models trained before local
//! hours (no zone kept) read UTC hours, as they were fitted.
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
use missive_core::zone::{Tz, time_zone_of, zone_named};
use serde::{Deserialize, Serialize};

pub const HOURS: usize = 168;

/// The hour of the week of `t` on the local clock of `zone`: 0 is Monday 00:00–01:00.
pub fn hour_of_week(t: DateTime<Utc>, zone: Tz) -> usize {
    let local = t.with_timezone(&zone);
    local.weekday().num_days_from_monday() as usize * 24 + local.hour() as usize
}

/// The local hour of the week (in `zone`) of an hour counted from the Unix epoch.
pub fn hour_of_week_of_epoch_hour(hour: i64, zone: Tz) -> usize {
    DateTime::from_timestamp(hour.saturating_mul(3600), 0).map_or(0, |t| hour_of_week(t, zone))
}

/// A histogram over the local hours of the week (in `zone`) from `(hour since the epoch,
/// count)` pairs.
pub fn histogram<'a>(hourly: impl IntoIterator<Item = &'a (i64, u32)>, zone: Tz) -> [f64; HOURS] {
    let mut h = [0.0; HOURS];
    for (hour, n) in hourly {
        h[hour_of_week_of_epoch_hour(*hour, zone)] += f64::from(*n);
    }
    h
}

/// A person's opens and clicks by local hour of the week (in `zone`), from the hourly counts
/// their profile keeps (90 days).
pub fn engagement(p: &Profile, zone: Tz) -> [f64; HOURS] {
    let mut h = [0.0; HOURS];
    for name in [crate::features::EMAIL_OPENED, crate::features::EMAIL_CLICKED] {
        if let Some(a) = p.events.get(name) {
            for (v, add) in h.iter_mut().zip(histogram(&a.hourly, zone)) {
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
    /// The zone of people without a `timezone` trait when the model was trained (hours are
    /// local); absent in models trained on UTC hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_zone: Option<String>,
}

impl SendTime {
    /// The population's shares from everyone's histograms over local hours (uniform when there
    /// is none); `default_zone` is the zone of people without a `timezone` trait.
    pub fn fit<'a>(
        histograms: impl IntoIterator<Item = &'a [f64; HOURS]>,
        strength: f64,
        default_zone: Tz,
    ) -> SendTime {
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
        SendTime {
            population,
            strength,
            default_zone: Some(default_zone.name().to_owned()),
        }
    }

    /// The zone whose clock `p`'s hours are read on: theirs, else the default the model was
    /// trained with (UTC for a model trained on UTC hours).
    pub fn zone_of(&self, p: &Profile) -> Tz {
        match self.default_zone.as_deref() {
            None => Tz::UTC,
            Some(name) => time_zone_of(p, zone_named(name).unwrap_or(Tz::UTC)),
        }
    }

    /// `p`'s opens and clicks by hour of the week on their clock.
    pub fn engagement_of(&self, p: &Profile) -> [f64; HOURS] {
        engagement(p, self.zone_of(p))
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
    /// window (now, when it is the current hour), their hours read on the clock of `zone`. The
    /// earliest of equally good hours wins. (Hours are tried from whole UTC hours: in a zone
    /// offset by half an hour, the best hour's message goes half an hour into it.)
    pub fn best_time(
        &self,
        own: &[f64; HOURS],
        now: DateTime<Utc>,
        within: Duration,
        zone: Tz,
    ) -> DateTime<Utc> {
        let shares = self.shares(own);
        let first = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
        let mut best = (now, f64::NEG_INFINITY);
        let mut start = first;
        while start < now + within {
            let s = shares.get(hour_of_week(start, zone)).copied().unwrap_or(0.0);
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
        assert_eq!(hour_of_week(monday, Tz::UTC), 0);
        assert_eq!(hour_of_week(monday + chrono::Duration::hours(167), Tz::UTC), 167);
        let epoch_hour = monday.timestamp().div_euclid(3600);
        assert_eq!(hour_of_week_of_epoch_hour(epoch_hour, Tz::UTC), 0);
        assert_eq!(hour_of_week_of_epoch_hour(epoch_hour + 9, Tz::UTC), 9);
        // Monday 00:30 UTC is Sunday 19:30 in New York (EST), 09:30 Monday in Tokyo.
        assert_eq!(hour_of_week(monday, Tz::America__New_York), 6 * 24 + 19);
        assert_eq!(hour_of_week_of_epoch_hour(epoch_hour, Tz::Asia__Tokyo), 9);
    }

    #[test]
    fn the_best_time_falls_in_the_window() {
        let mut everyone = [0.0; HOURS];
        everyone[9] = 1000.0; // Monday 9:00
        let model = SendTime::fit([&everyone], 10.0, Tz::UTC);
        let sunday_noon = Utc.with_ymd_and_hms(2026, 11, 29, 12, 20, 0).unwrap();
        let none = [0.0; HOURS];
        // Within a day: Monday 9:00.
        let t = model.best_time(&none, sunday_noon, Duration::hours(24), Tz::UTC);
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap());
        // Within six hours Monday 9:00 is out of reach: the best hour that is in it (all
        // equal but the edges of the smoothing: the earliest), never before now.
        let t = model.best_time(&none, sunday_noon, Duration::hours(6), Tz::UTC);
        assert!(t >= sunday_noon && t < sunday_noon + Duration::hours(6), "{t}");
    }

    #[test]
    fn a_thin_history_leans_on_the_population_and_a_rich_one_on_itself() {
        let mut everyone = [0.0; HOURS];
        everyone[9] = 1000.0; // Monday 9:00 for most people
        everyone[130] = 100.0; // Saturday 10:00 for some
        let model = SendTime::fit([&everyone], 10.0, Tz::UTC);
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
        let model = SendTime::fit(learned.iter(), 8.0, Tz::UTC);
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

    fn opener(zone: Option<&str>, local_hours: &[u32]) -> Profile {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let mut p = Profile::new(missive_core::ProfileId::generate(), now);
        let mut touched = missive_core::Touched::default();
        let mut apply = |p: &mut Profile, v: serde_json::Value| {
            let e = missive_core::message::validate_message(v, None, None, now).unwrap();
            p.apply_event(&e, 0, &mut touched);
        };
        if let Some(z) = zone {
            apply(
                &mut p,
                serde_json::json!({"type": "identify", "userId": "u", "messageId": "tz",
                    "timestamp": "2026-11-01T00:00:00Z", "traits": {"timezone": z}}),
            );
        }
        let tz = zone.and_then(zone_named).unwrap_or(Tz::Europe__London);
        for (i, h) in local_hours.iter().enumerate() {
            // Weekdays of a week in November, at the local hour.
            let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 16 + (i % 5) as u32).unwrap();
            let at = missive_core::zone::from_local(day.and_hms_opt(*h, 10, 0).unwrap(), tz).unwrap();
            apply(
                &mut p,
                serde_json::json!({"type": "track", "userId": "u", "event": "Email Opened",
                    "messageId": format!("o{i}"), "timestamp": at.to_rfc3339()}),
            );
        }
        p
    }

    /// Everyone opens at 19:00 where they live, in London, New York and Tokyo: the model
    /// learns 19:00 local, and a newcomer in Tokyo with no history gets 19:00 in Tokyo.
    #[test]
    fn hours_are_learned_and_applied_on_each_persons_clock() {
        let evening = [19, 19, 19, 19, 19];
        let people: Vec<Profile> = (0..30)
            .map(|i| match i % 3 {
                0 => opener(None, &evening),
                1 => opener(Some("America/New_York"), &evening),
                _ => opener(Some("Asia/Tokyo"), &evening),
            })
            .collect();
        let histograms: Vec<[f64; HOURS]> = people
            .iter()
            .map(|p| engagement(p, time_zone_of(p, Tz::Europe__London)))
            .collect();
        let model = SendTime::fit(histograms.iter(), 8.0, Tz::Europe__London);
        assert_eq!(model.population_best(|_| true) % 24, 19);
        let newcomer = opener(Some("Asia/Tokyo"), &[]);
        let zone = model.zone_of(&newcomer);
        assert_eq!(zone, Tz::Asia__Tokyo);
        let monday_noon_utc = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let t = model.best_time(
            &model.engagement_of(&newcomer),
            monday_noon_utc,
            Duration::hours(24),
            zone,
        );
        // 19:00 Tuesday in Tokyo is 10:00 UTC.
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap());
        // A person without a zone is on the model's default clock (London, UTC in winter).
        assert_eq!(model.zone_of(&opener(None, &[])), Tz::Europe__London);
        // A model kept from before local hours reads UTC.
        let old: SendTime =
            serde_json::from_value(serde_json::json!({"population": model.population, "strength": 8.0}))
                .unwrap();
        assert_eq!(old.zone_of(&newcomer), Tz::UTC);
    }
}
