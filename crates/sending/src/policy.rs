//! The send-time policy: one function that decides, at the moment of sending, whether a
//! message goes now, later or not at all.
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

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::Profile;
use missive_store::{Store, StoreError};
use serde::Serialize;

use crate::journeys::MessageClass;

/// Policy settings.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// At most this many marketing e-mails per profile per `frequency_window` (0: no cap).
    pub frequency_cap: u32,
    pub frequency_window: TimeDelta,
    /// Local quiet hours `(start, end)` as (hour, minute); marketing is deferred to the end.
    pub quiet_hours: Option<((i8, i8), (i8, i8))>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            frequency_cap: 3,
            frequency_window: TimeDelta::days(7),
            quiet_hours: Some(((21, 0), (8, 0))),
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
        reason: String,
    },
    /// Sent later, at `until`.
    Defer {
        until: DateTime<Utc>,
        reason: String,
    },
}

/// The keyed hash a suppressed address is kept as: the address itself is not stored.
pub use missive_privacy::address_hash;

/// Whether the profile consents to marketing e-mail: the latest `email_marketing` change
/// granted it (an unsubscribe withdraws it).
pub fn has_marketing_consent(p: &Profile) -> bool {
    p.consents(missive_core::Purpose::EmailMarketing)
}

/// Decides, at `now`, what happens to a message of `class` for `profile`.
#[allow(clippy::too_many_arguments)]
pub async fn decide(
    store: &Store,
    config: &PolicyConfig,
    hash_key: &[u8],
    profile: &Profile,
    zone: &jiff::tz::TimeZone,
    class: MessageClass,
    topic: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Decision, StoreError> {
    let Some(address) = profile.email().map(str::to_string) else {
        return Ok(Decision::Skip {
            reason: "no_address".into(),
        });
    };
    if let Some(s) = store
        .delivery()
        .suppression(&address_hash(hash_key, &address))
        .await?
    {
        return Ok(Decision::Skip {
            reason: format!("suppressed: {}", s.reason),
        });
    }
    if class == MessageClass::Transactional {
        return Ok(Decision::Send { address });
    }
    if !has_marketing_consent(profile) {
        return Ok(Decision::Skip {
            reason: "no_consent".into(),
        });
    }
    if let Some(topic) = topic
        && missive_core::preferences::declines_topic(profile, topic)
    {
        return Ok(Decision::Skip {
            reason: format!("topic_declined: {topic}"),
        });
    }
    if let Some(window) = missive_core::Frequency::of(profile).window()
        && store
            .delivery()
            .marketing_sent_since(&profile.id, now - window)
            .await?
            > 0
    {
        return Ok(Decision::Skip {
            reason: "frequency_preference".into(),
        });
    }
    if config.frequency_cap > 0 {
        let sent = store
            .delivery()
            .marketing_sent_since(&profile.id, now - config.frequency_window)
            .await?;
        if sent >= config.frequency_cap {
            return Ok(Decision::Skip {
                reason: "frequency_cap".into(),
            });
        }
    }
    if let Some(((sh, sm), (eh, em))) = config.quiet_hours
        && missive_core::zone::in_local_window(now, (sh, sm), (eh, em), zone)
    {
        return Ok(Decision::Defer {
            until: missive_core::zone::next_local_time(now, eh, em, zone),
            reason: "quiet_hours".into(),
        });
    }
    Ok(Decision::Send { address })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_cross_midnight_in_the_recipients_zone() {
        use missive_core::zone::in_local_window as in_quiet_hours;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let ny = jiff::tz::TimeZone::get("America/New_York").unwrap();
        // 03:00 UTC is 22:00 in New York (EST): quiet.
        assert!(in_quiet_hours(at("2026-11-28T03:00:00Z"), (21, 0), (8, 0), &ny));
        // 15:00 UTC is 10:00 in New York: not quiet.
        assert!(!in_quiet_hours(at("2026-11-28T15:00:00Z"), (21, 0), (8, 0), &ny));
        assert!(in_quiet_hours(
            at("2026-11-28T13:00:00Z"),
            (12, 0),
            (14, 0),
            &jiff::tz::TimeZone::UTC
        ));
    }
}
