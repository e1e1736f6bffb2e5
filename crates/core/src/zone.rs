//! A person's local time: their time zone, when the local clock next reads a given time, and
//! whether a local time falls in a window. One place, so that quiet hours, journey waits and
//! the `date` filter agree for one person.
//!
//! Zones are chrono-tz's [`Tz`]: the IANA database built into the binary, so every node and
//! every test reads the same rules (upgrading the crate upgrades the rules).

use chrono::{
    DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset as _, TimeZone as _,
    Timelike, Utc,
};
pub use chrono_tz::Tz;

use crate::Profile;

/// The IANA zone called `name` (`Europe/Paris`; case does not matter, `europe/paris` too), or
/// `None` when the database has no such zone.
pub fn zone_named(name: &str) -> Option<Tz> {
    name.parse().ok().or_else(|| {
        // Not written as the database writes it: one pass over the ~600 names, only on a miss.
        chrono_tz::TZ_VARIANTS
            .iter()
            .find(|z| z.name().eq_ignore_ascii_case(name.trim()))
            .copied()
    })
}

/// The person's time zone: trait `timezone` (or `time_zone`) when it names an IANA zone, else
/// `default` (the workspace's `content.default_time_zone`).
pub fn time_zone_of(p: &Profile, default: Tz) -> Tz {
    p.traits
        .get("timezone")
        .or_else(|| p.traits.get("time_zone"))
        .and_then(|t| t.value.as_str())
        .and_then(zone_named)
        .unwrap_or(default)
}

/// The instant at which the local clock in `zone` reads `local`. A time skipped by a
/// daylight-saving change is read with the offset before the change, so it lands the gap's
/// length later (02:30 on a spring-forward night in Paris is 03:30 CEST); a time that happens
/// twice is its first occurrence. (JavaScript Temporal's "compatible" disambiguation.)
pub fn from_local(local: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.to_utc()),
        LocalResult::None => {
            // The offset in force just before the gap (gaps are an hour or two; Samoa skipped
            // a whole day in 2011).
            let before = [3, 26].into_iter().find_map(|hours| {
                zone.from_local_datetime(&(local - Duration::hours(hours)))
                    .earliest()
            })?;
            let offset = before.offset().fix().local_minus_utc();
            Some((local - Duration::seconds(i64::from(offset))).and_utc())
        }
    }
}

/// A local time of day written `HH:MM` (`09:30`, `21:00`), as journeys' `until` and the
/// quiet hours take it.
pub fn parse_time_of_day(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60)
        .then(|| NaiveTime::from_hms_opt(h, m, 0))
        .flatten()
}

/// The next instant after `now` at which the local clock in `zone` reads `at`.
pub fn next_local_time(now: DateTime<Utc>, at: NaiveTime, zone: Tz) -> DateTime<Utc> {
    let today = now.with_timezone(&zone).date_naive();
    let on = |day: NaiveDate| from_local(day.and_time(at), zone);
    on(today)
        .filter(|t| *t > now)
        .or_else(|| today.succ_opt().and_then(on))
        .unwrap_or(now)
}

/// Whether the local time at `now` is within `[start, end)`, which may cross midnight.
/// Minutes count; seconds are not looked at.
pub fn in_local_window(now: DateTime<Utc>, start: NaiveTime, end: NaiveTime, zone: Tz) -> bool {
    let minutes = |t: NaiveTime| t.hour() * 60 + t.minute();
    let t = minutes(now.with_timezone(&zone).time());
    let (s, e) = (minutes(start), minutes(end));
    if s <= e { s <= t && t < e } else { t >= s || t < e }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn hm(s: &str) -> NaiveTime {
        parse_time_of_day(s).unwrap()
    }

    #[test]
    fn a_time_of_day_is_hours_and_minutes() {
        assert_eq!(parse_time_of_day("09:30"), NaiveTime::from_hms_opt(9, 30, 0));
        assert_eq!(parse_time_of_day(" 21:00 "), NaiveTime::from_hms_opt(21, 0, 0));
        for bad in ["24:00", "12:60", "9", "-1:00", "ab:cd", ""] {
            assert_eq!(parse_time_of_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_trait_wins_else_the_default_zone() {
        let new_york = Tz::America__New_York;
        let mut p = Profile::new(crate::ProfileId::generate(), t("2026-03-01T00:00:00Z"));
        assert_eq!(time_zone_of(&p, new_york), Tz::America__New_York);
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
        assert_eq!(time_zone_of(&p, new_york), Tz::Europe__Paris);
    }

    #[test]
    fn next_local_time_follows_the_zone_and_rolls_to_tomorrow() {
        let paris = Tz::Europe__Paris;
        let now = t("2026-03-02T07:30:00Z"); // 08:30 in Paris
        assert_eq!(
            next_local_time(now, hm("09:00"), paris),
            t("2026-03-02T08:00:00Z")
        );
        assert_eq!(
            next_local_time(now, hm("08:00"), paris),
            t("2026-03-03T07:00:00Z")
        );
    }

    #[test]
    fn a_time_skipped_or_repeated_by_daylight_saving_is_still_reached() {
        let paris = Tz::Europe__Paris;
        // 2026-03-29: Paris skips 02:00-03:00; 02:30 does not exist and is read as 03:30 CEST.
        let now = t("2026-03-28T23:00:00Z");
        assert_eq!(
            next_local_time(now, hm("02:30"), paris),
            t("2026-03-29T01:30:00Z")
        );
        // 2026-10-25: 02:30 happens twice; the first (CEST) is taken.
        let now = t("2026-10-24T23:00:00Z");
        assert_eq!(
            next_local_time(now, hm("02:30"), paris),
            t("2026-10-25T00:30:00Z")
        );
        assert_eq!(zone_named("Europe/Paris"), Some(paris));
        assert_eq!(
            zone_named("europe/paris"),
            Some(paris),
            "as jiff did, case does not matter"
        );
        assert_eq!(zone_named("utc"), Some(Tz::UTC));
        assert_eq!(zone_named("Mars/Olympus"), None);
    }

    #[test]
    fn a_window_may_cross_midnight() {
        let utc = Tz::UTC;
        for (at, inside) in [
            ("22:00", true),
            ("03:00", true),
            ("08:00", false),
            ("12:00", false),
        ] {
            let now = t(&format!("2026-03-02T{at}:00Z"));
            assert_eq!(
                in_local_window(now, hm("21:00"), hm("08:00"), utc),
                inside,
                "{at}"
            );
        }
    }
}
