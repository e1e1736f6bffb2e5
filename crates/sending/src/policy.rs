//! The send-time policy: one pure function, [`decide`], that decides at the moment of sending
//! whether a message goes now, later or not at all, from [`Facts`] the caller loaded
//! ([`load_known`], for a whole batch: the suppression list and recent sends; the rest is on
//! the profile).
//!
//! In order:
//! 1. a profile without an e-mail address is skipped;
//! 2. the suppression list (hard bounces, complaints, manual) always wins, for every class;
//! 3. marketing needs `email_marketing` consent (see [`missive_core::consent`]); an
//!    unsubscribe withdraws it;
//! 4. marketing on a topic the person declined in the preference centre is not sent;
//! 5. marketing respects a frequency cap: at most N sent per rolling window, across all
//!    journeys and broadcasts, and the person's own frequency choice (weekly, monthly);
//! 6. marketing is not sent in the recipient's quiet hours: it is deferred to their end.

use std::collections::HashMap;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use missive_core::zone::Tz;
use missive_core::{MessageClass, Profile, ProfileId};
use missive_store::{Store, StoreError};
use serde::Serialize;

/// Policy settings.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// At most this many marketing e-mails per profile per `frequency_window` (0: no cap).
    pub frequency_cap: u32,
    pub frequency_window: TimeDelta,
    /// Local quiet hours `(start, end)`: marketing is deferred to their end. Off by default:
    /// a first test message must not silently wait for the morning.
    pub quiet_hours: Option<(NaiveTime, NaiveTime)>,
    /// The per cent of profiles (0 to 100) in the global holdout, which receives no marketing:
    /// comparing its purchases with everyone else's measures what marketing adds in total.
    pub global_holdout_percent: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            frequency_cap: 3,
            frequency_window: TimeDelta::days(7),
            quiet_hours: None,
            global_holdout_percent: 0.0,
        }
    }
}

/// What to do with a message now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum Decision {
    Send {
        address: String,
    },
    /// Not sent, for good; the reason is recorded on the message.
    Skip {
        reason: SkipReason,
    },
    /// Sent later, at `until`.
    Defer {
        until: DateTime<Utc>,
        reason: DeferReason,
    },
}

/// Why a message is not sent. Recorded on the message as its text (`suppressed: hard_bounce`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The profile has no e-mail address.
    NoAddress,
    /// The address is on the suppression list, for this reason (`hard_bounce`, `complaint`, …).
    Suppressed(String),
    /// Marketing without `email_marketing` consent.
    NoConsent,
    /// Marketing on a topic the person declined in the preference centre.
    TopicDeclined(String),
    /// The person chose to receive marketing at most weekly or monthly.
    FrequencyPreference,
    /// The workspace's frequency cap is reached.
    FrequencyCap,
    /// The profile is in the global holdout, which receives no marketing.
    GlobalHoldout,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NoAddress => f.write_str("no_address"),
            SkipReason::Suppressed(why) => write!(f, "suppressed: {why}"),
            SkipReason::NoConsent => f.write_str("no_consent"),
            SkipReason::TopicDeclined(topic) => write!(f, "topic_declined: {topic}"),
            SkipReason::FrequencyPreference => f.write_str("frequency_preference"),
            SkipReason::FrequencyCap => f.write_str("frequency_cap"),
            SkipReason::GlobalHoldout => f.write_str("global_holdout"),
        }
    }
}

impl Serialize for SkipReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a message is sent later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeferReason {
    /// The recipient's local quiet hours.
    QuietHours,
}

impl std::fmt::Display for DeferReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeferReason::QuietHours => f.write_str("quiet_hours"),
        }
    }
}

/// The keyed hash a suppressed address is kept as: the address itself is not stored.
pub use missive_privacy::address_hash;

/// Whether the profile consents to marketing e-mail: the latest `email_marketing` change
/// granted it (an unsubscribe withdraws it).
pub fn has_marketing_consent(p: &Profile) -> bool {
    p.consents(missive_core::Purpose::EmailMarketing)
}

/// What the policy needs to know about one message's recipient. The profile carries its
/// address, consent, declined topics and frequency choice; the rest comes from the store.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub profile: &'a Profile,
    /// The recipient's time zone (quiet hours are local).
    pub zone: Tz,
    /// The reason the recipient's address is suppressed, if it is.
    pub suppressed: Option<String>,
    /// Marketing messages sent to the profile within its own frequency choice's window (when
    /// it made one).
    pub sent_in_preference_window: u32,
    /// Marketing messages sent to the profile within the frequency cap's window.
    pub sent_in_cap_window: u32,
}

/// Decides, at `now`, what happens to a message of `class` (on `topic`, if any), in this order:
/// no address, suppression (every class), then for marketing only: consent, declined topic,
/// the global holdout, the person's frequency choice, the frequency cap, quiet hours.
pub fn decide(
    facts: &Facts<'_>,
    config: &PolicyConfig,
    class: MessageClass,
    topic: Option<&str>,
    now: DateTime<Utc>,
) -> Decision {
    let skip = |reason| Decision::Skip { reason };
    let Some(address) = facts.profile.email().map(str::to_string) else {
        return skip(SkipReason::NoAddress);
    };
    if let Some(why) = &facts.suppressed {
        return skip(SkipReason::Suppressed(why.clone()));
    }
    if class == MessageClass::Transactional {
        return Decision::Send { address };
    }
    if !has_marketing_consent(facts.profile) {
        return skip(SkipReason::NoConsent);
    }
    if let Some(topic) = topic
        && missive_core::preferences::declines_topic(facts.profile, topic)
    {
        return skip(SkipReason::TopicDeclined(topic.to_owned()));
    }
    if config.global_holdout_percent > 0.0
        && missive_experiment::assign::in_global_holdout(
            facts.profile.id.as_str(),
            config.global_holdout_percent,
        )
    {
        return skip(SkipReason::GlobalHoldout);
    }
    if missive_core::Frequency::of(facts.profile).window().is_some() && facts.sent_in_preference_window > 0 {
        return skip(SkipReason::FrequencyPreference);
    }
    if config.frequency_cap > 0 && facts.sent_in_cap_window >= config.frequency_cap {
        return skip(SkipReason::FrequencyCap);
    }
    if let Some((start, end)) = config.quiet_hours
        && missive_core::zone::in_local_window(now, start, end, facts.zone)
    {
        return Decision::Defer {
            until: missive_core::zone::next_local_time(now, end, facts.zone),
            reason: DeferReason::QuietHours,
        };
    }
    Decision::Send { address }
}

/// What the store says about a batch of recipients, loaded in one read each ([`load_known`]):
/// which addresses are suppressed and when marketing was last sent to each profile. The rest
/// of [`Facts`] is on the profiles.
#[derive(Debug, Default)]
pub struct Known {
    /// Suppression reasons by profile (their address is hashed once, when loaded).
    suppressed: HashMap<ProfileId, String>,
    /// Marketing send times by profile, since the longest window any rule looks at.
    sent: HashMap<ProfileId, Vec<DateTime<Utc>>>,
}

impl Known {
    /// The facts about `profile` that [`decide`] reads, at `now`.
    pub fn facts<'a>(
        &self,
        profile: &'a Profile,
        zone: Tz,
        config: &PolicyConfig,
        now: DateTime<Utc>,
    ) -> Facts<'a> {
        let suppressed = self.suppressed.get(&profile.id).cloned();
        let sent = self.sent.get(&profile.id).map_or(&[][..], Vec::as_slice);
        let since = |window: TimeDelta| sent.iter().filter(|t| **t >= now - window).count() as u32;
        Facts {
            profile,
            zone,
            suppressed,
            sent_in_preference_window: missive_core::Frequency::of(profile).window().map_or(0, since),
            sent_in_cap_window: if config.frequency_cap > 0 {
                since(config.frequency_window)
            } else {
                0
            },
        }
    }
}

/// Loads what [`decide`] needs from the store about the recipients `profiles`: the suppression
/// list for their addresses and, when some message (`any_marketing`) is marketing, their recent
/// marketing sends. One read each, whatever the batch's size.
pub async fn load_known(
    store: &Store,
    config: &PolicyConfig,
    hash_key: &[u8],
    profiles: &[&Profile],
    any_marketing: bool,
    now: DateTime<Utc>,
) -> Result<Known, StoreError> {
    let mut by_hash: HashMap<String, Vec<&ProfileId>> = HashMap::new();
    for p in profiles {
        if let Some(a) = p.email() {
            by_hash.entry(address_hash(hash_key, a)).or_default().push(&p.id);
        }
    }
    let mut suppressed = HashMap::new();
    if !by_hash.is_empty() {
        for s in store
            .delivery()
            .suppressions(by_hash.keys().cloned().collect())
            .await?
        {
            for id in by_hash.get(&s.address_hash).into_iter().flatten() {
                suppressed.insert((*id).clone(), s.reason.clone());
            }
        }
    }
    // Sends matter only to a marketing message the earlier rules let through.
    let counted: Vec<&Profile> = profiles
        .iter()
        .copied()
        .filter(|p| any_marketing && p.email().is_some() && has_marketing_consent(p))
        .collect();
    let cap = (config.frequency_cap > 0).then_some(config.frequency_window);
    let longest = counted
        .iter()
        .filter_map(|p| missive_core::Frequency::of(p).window())
        .chain(cap)
        .max();
    let sent = match longest {
        Some(window) if !counted.is_empty() => {
            store
                .delivery()
                .marketing_sent_times(counted.iter().map(|p| p.id.clone()).collect(), now - window)
                .await?
        }
        _ => HashMap::new(),
    };
    Ok(Known { suppressed, sent })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_cross_midnight_in_the_recipients_zone() {
        use missive_core::zone::in_local_window as in_quiet_hours;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let ny = Tz::America__New_York;
        let hm = |s: &str| missive_core::zone::parse_time_of_day(s).unwrap();
        // 03:00 UTC is 22:00 in New York (EST): quiet.
        assert!(in_quiet_hours(
            at("2026-11-28T03:00:00Z"),
            hm("21:00"),
            hm("08:00"),
            ny
        ));
        // 15:00 UTC is 10:00 in New York: not quiet.
        assert!(!in_quiet_hours(
            at("2026-11-28T15:00:00Z"),
            hm("21:00"),
            hm("08:00"),
            ny
        ));
        assert!(in_quiet_hours(
            at("2026-11-28T13:00:00Z"),
            hm("12:00"),
            hm("14:00"),
            Tz::UTC
        ));
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// A profile made the way the pipeline makes one: from an identify call.
    fn person(traits: serde_json::Value) -> Profile {
        let now = at("2026-11-28T10:00:00Z");
        let msg = serde_json::json!({"type": "identify", "userId": "ann", "traits": traits, "timestamp": "2026-11-28T09:00:00Z"});
        let e = missive_core::message::validate_message(msg, None, None, now).unwrap();
        let mut p = Profile::new(missive_core::ProfileId::generate(), now);
        p.apply_event(&e, 10, &mut missive_core::Touched::default());
        p
    }

    /// name, profile, suppression, sent in the person's window, sent in the cap's window,
    /// class, topic, now, expected decision.
    type Case<'a> = (
        &'a str,
        &'a Profile,
        Option<&'a str>,
        u32,
        u32,
        MessageClass,
        Option<&'a str>,
        DateTime<Utc>,
        Decision,
    );

    /// The rules in order: each row breaks one rule and expects the first broken rule's answer.
    #[test]
    fn the_rules_apply_in_order() {
        let consenting = person(serde_json::json!({
            "email": "ann@example.com",
            "consent": {"email_marketing": true},
            "email_topics_declined": ["sale"],
        }));
        let weekly = person(serde_json::json!({
            "email": "ann@example.com",
            "consent": {"email_marketing": true},
            "email_frequency": "weekly",
        }));
        let no_consent = person(serde_json::json!({"email": "ann@example.com"}));
        let no_address = person(serde_json::json!({"consent": {"email_marketing": true}}));
        let config = PolicyConfig {
            quiet_hours: NaiveTime::from_hms_opt(21, 0, 0).zip(NaiveTime::from_hms_opt(8, 0, 0)),
            ..PolicyConfig::default()
        };
        let day = at("2026-11-28T12:00:00Z");
        let night = at("2026-11-28T23:00:00Z");
        let utc = Tz::UTC;
        let send = || Decision::Send {
            address: "ann@example.com".into(),
        };
        let skip = |reason| Decision::Skip { reason };
        use MessageClass::{Marketing, Transactional};
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            ("all clear",                 &consenting, None,               0, 0, Marketing,     None,           day,   send()),
            ("no address, any class",     &no_address, None,               0, 0, Transactional, None,           day,   skip(SkipReason::NoAddress)),
            ("suppression beats all",     &consenting, Some("complaint"),  0, 0, Transactional, None,           day,   skip(SkipReason::Suppressed("complaint".into()))),
            ("transactional needs no consent", &no_consent, None,          0, 9, Transactional, None,           night, send()),
            ("marketing needs consent",   &no_consent, None,               0, 0, Marketing,     None,           day,   skip(SkipReason::NoConsent)),
            ("declined topic",            &consenting, None,               0, 0, Marketing,     Some("sale"),   day,   skip(SkipReason::TopicDeclined("sale".into()))),
            ("other topics go",           &consenting, None,               0, 0, Marketing,     Some("news"),   day,   send()),
            ("own frequency choice",      &weekly,     None,               1, 1, Marketing,     None,           day,   skip(SkipReason::FrequencyPreference)),
            ("choice met, cap next",      &weekly,     None,               0, 3, Marketing,     None,           day,   skip(SkipReason::FrequencyCap)),
            ("cap before quiet hours",    &consenting, None,               0, 3, Marketing,     None,           night, skip(SkipReason::FrequencyCap)),
            ("under the cap",             &consenting, None,               0, 2, Marketing,     None,           day,   send()),
            ("quiet hours defer",         &consenting, None,               0, 0, Marketing,     None,           night,
                Decision::Defer { until: at("2026-11-29T08:00:00Z"), reason: DeferReason::QuietHours }),
        ];
        for (name, profile, suppressed, in_pref, in_cap, class, topic, now, want) in cases {
            let facts = Facts {
                profile,
                zone: utc,
                suppressed: suppressed.map(str::to_owned),
                sent_in_preference_window: in_pref,
                sent_in_cap_window: in_cap,
            };
            assert_eq!(decide(&facts, &config, class, topic, now), want, "{name}");
        }
    }

    /// The global holdout takes its share of consenting people out of marketing, after consent
    /// (people without it are not counted in it) and never out of transactional mail.
    #[test]
    fn the_global_holdout_receives_no_marketing() {
        let config = PolicyConfig {
            global_holdout_percent: 10.0,
            ..PolicyConfig::default()
        };
        let now = at("2026-11-28T12:00:00Z");
        let (mut held, mut consenting_held) = (0, 0);
        for i in 0..2_000 {
            let consents = i % 2 == 0;
            // Each person has a fresh profile id.
            let p = person(serde_json::json!({
                "email": "ann@example.com",
                "consent": {"email_marketing": consents},
            }));
            let facts = Facts {
                profile: &p,
                zone: Tz::UTC,
                suppressed: None,
                sent_in_preference_window: 0,
                sent_in_cap_window: 0,
            };
            let marketing = decide(&facts, &config, MessageClass::Marketing, None, now);
            let in_holdout = missive_experiment::assign::in_global_holdout(p.id.as_str(), 10.0);
            held += usize::from(in_holdout);
            let want = match (consents, in_holdout) {
                (false, _) => Decision::Skip {
                    reason: SkipReason::NoConsent,
                },
                (true, true) => {
                    consenting_held += 1;
                    Decision::Skip {
                        reason: SkipReason::GlobalHoldout,
                    }
                }
                (true, false) => Decision::Send {
                    address: "ann@example.com".into(),
                },
            };
            assert_eq!(marketing, want);
            assert!(matches!(
                decide(&facts, &config, MessageClass::Transactional, None, now),
                Decision::Send { .. }
            ));
        }
        assert!((140..260).contains(&held), "{held} of 2000 at 10 %");
        // Half consent: about half of the held are consenting ones.
        assert!(
            (held / 4..=held * 3 / 4).contains(&consenting_held),
            "{consenting_held} of {held}"
        );
    }

    /// A batch's facts: each profile gets its own suppression and its own sends, counted in
    /// the cap's window and in the window of its frequency choice.
    #[test]
    fn a_batch_gives_each_profile_its_own_facts() {
        let weekly = person(serde_json::json!({
            "email": "ann@example.com", "consent": {"email_marketing": true}, "email_frequency": "weekly",
        }));
        let monthly = person(serde_json::json!({
            "email": "bob@example.com", "consent": {"email_marketing": true}, "email_frequency": "monthly",
        }));
        let plain =
            person(serde_json::json!({"email": "cy@example.com", "consent": {"email_marketing": true}}));
        let now = at("2026-11-28T12:00:00Z");
        let days_ago = |d: i64| now - TimeDelta::days(d);
        let known = Known {
            suppressed: [(plain.id.clone(), "complaint".to_owned())].into(),
            sent: [
                (weekly.id.clone(), vec![days_ago(2), days_ago(9)]),
                (monthly.id.clone(), vec![days_ago(9), days_ago(20), days_ago(40)]),
            ]
            .into(),
        };
        let config = PolicyConfig::default(); // a cap of 3 in 7 days
        let uncapped = PolicyConfig {
            frequency_cap: 0,
            ..PolicyConfig::default()
        };
        // profile, config, suppressed, sent in the person's window, sent in the cap's window
        let cases = [
            (&weekly, &config, None, 1, 1),
            (&monthly, &config, None, 2, 0),
            (&monthly, &uncapped, None, 2, 0),
            (&plain, &config, Some("complaint"), 0, 0),
            (&weekly, &uncapped, None, 1, 0),
        ];
        for (i, (p, config, suppressed, in_pref, in_cap)) in cases.into_iter().enumerate() {
            let f = known.facts(p, Tz::UTC, config, now);
            assert_eq!(f.suppressed.as_deref(), suppressed, "case {i}");
            assert_eq!(f.sent_in_preference_window, in_pref, "case {i}");
            assert_eq!(f.sent_in_cap_window, in_cap, "case {i}");
        }
    }

    #[test]
    fn reasons_are_recorded_as_before() {
        let cases = [
            (SkipReason::NoAddress, "no_address"),
            (
                SkipReason::Suppressed("hard_bounce".into()),
                "suppressed: hard_bounce",
            ),
            (SkipReason::NoConsent, "no_consent"),
            (SkipReason::TopicDeclined("sale".into()), "topic_declined: sale"),
            (SkipReason::FrequencyPreference, "frequency_preference"),
            (SkipReason::FrequencyCap, "frequency_cap"),
            (SkipReason::GlobalHoldout, "global_holdout"),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
            assert_eq!(serde_json::to_value(&reason).unwrap(), serde_json::json!(text));
        }
        assert_eq!(DeferReason::QuietHours.to_string(), "quiet_hours");
        assert_eq!(
            PolicyConfig::default().quiet_hours,
            None,
            "quiet hours are off by default"
        );
    }
}
