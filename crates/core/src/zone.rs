//! A person's local time: their time zone, when the local clock next reads a given time, and
//! whether a local time falls in a window. One place, so that quiet hours, journey waits and
//! the `date` filter agree for one person.

use chrono::{DateTime, Utc};
use jiff::tz::TimeZone;

use crate::Profile;

/// The instant `t` as jiff sees it: the one conversion between stored times (chrono's
/// `DateTime<Utc>`) and the time-zone rules and the Liquid `date` filter (jiff). `None` beyond
/// jiff's range (years -9999 to 9999).
pub fn instant(t: DateTime<Utc>) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_microsecond(t.timestamp_micros()).ok()
}

/// The person's time zone: trait `timezone` (or `time_zone`) when it names an IANA zone, else
/// `default` (the workspace's `content.default_time_zone`).
pub fn time_zone_of(p: &Profile, default: &TimeZone) -> TimeZone {
    p.traits
        .get("timezone")
        .or_else(|| p.traits.get("time_zone"))
        .and_then(|t| t.value.as_str())
        .and_then(|name| TimeZone::get(name).ok())
        .unwrap_or_else(|| default.clone())
}

/// The next instant after `now` at which the local clock in `zone` reads `h:m`.
pub fn next_local_time(now: DateTime<Utc>, h: i8, m: i8, zone: &TimeZone) -> DateTime<Utc> {
    let Some(ts) = instant(now) else {
        return now;
    };
    let local = ts.to_zoned(zone.clone());
    let candidate = |day: jiff::civil::Date| {
        day.at(h, m, 0, 0)
            .to_zoned(zone.clone())
            .ok()
            .map(|z| z.timestamp())
    };
    let today = local.date();
    let next = candidate(today)
        .filter(|t| *t > ts)
        .or_else(|| today.tomorrow().ok().and_then(candidate))
        .unwrap_or(ts);
    DateTime::from_timestamp_micros(next.as_microsecond()).unwrap_or(now)
}

/// Whether the local time at `now` is within `[start, end)`, which may cross midnight.
pub fn in_local_window(now: DateTime<Utc>, start: (i8, i8), end: (i8, i8), zone: &TimeZone) -> bool {
    let Some(ts) = instant(now) else {
        return false;
    };
    let local = ts.to_zoned(zone.clone());
    let minutes = |h: i8, m: i8| i32::from(h) * 60 + i32::from(m);
    let t = minutes(local.hour(), local.minute());
    let (s, e) = (minutes(start.0, start.1), minutes(end.0, end.1));
    if s <= e { s <= t && t < e } else { t >= s || t < e }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn the_trait_wins_else_the_default_zone() {
        let new_york = TimeZone::get("America/New_York").unwrap();
        let mut p = Profile::new(crate::ProfileId::generate(), t("2026-03-01T00:00:00Z"));
        assert_eq!(time_zone_of(&p, &new_york).iana_name(), Some("America/New_York"));
        p.traits.insert(
            "timezone".into(),
            crate::Trait {
                value: serde_json::json!("Europe/Paris"),
                source: "test".into(),
                party: crate::TraitParty::First,
                at: t("2026-03-01T00:00:00Z"),
                consent_basis: None,
            },
        );
        assert_eq!(time_zone_of(&p, &new_york).iana_name(), Some("Europe/Paris"));
    }

    #[test]
    fn next_local_time_follows_the_zone_and_rolls_to_tomorrow() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let now = t("2026-03-02T07:30:00Z"); // 08:30 in Paris
        assert_eq!(next_local_time(now, 9, 0, &paris), t("2026-03-02T08:00:00Z"));
        assert_eq!(next_local_time(now, 8, 0, &paris), t("2026-03-03T07:00:00Z"));
    }

    #[test]
    fn a_window_may_cross_midnight() {
        let utc = TimeZone::UTC;
        for (at, inside) in [
            ("22:00", true),
            ("03:00", true),
            ("08:00", false),
            ("12:00", false),
        ] {
            let now = t(&format!("2026-03-02T{at}:00Z"));
            assert_eq!(in_local_window(now, (21, 0), (8, 0), &utc), inside, "{at}");
        }
    }
}
