//! Consent per purpose, with the evidence of each grant and withdrawal.
//!
//! Consent arrives as `traits.consent = {"email_marketing": true, …}` on any message (an
//! `identify` from the retailer's sign-up form, the consent API, the preference centre, an
//! unsubscribe), so it is ordered, durable and versioned like everything else on the profile.
//! The evidence is taken from the same message: its time, its source, the privacy-policy
//! version (`context.missive.policy_version`), and the IP address and user agent
//! (`context.ip`, `context.userAgent`) when the sender gives them.
//!
//! A third party cannot give consent on a person's behalf: consent in a message whose
//! provenance is third-party is refused, and so are third-party traits on a profile without
//! `third_party_enrichment` consent (see [`crate::Profile::apply_event`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::MessageId;

/// Why personal data is used. A closed set: every check in missive names one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Marketing e-mail (journeys and broadcasts of class `marketing`).
    EmailMarketing,
    /// Content chosen for the person: targeted blocks and recommendations from their history.
    Personalization,
    /// Model training and scoring (clusters, propensity, lifetime value).
    Profiling,
    /// Traits bought or enriched from third parties.
    ThirdPartyEnrichment,
    /// Sharing the person's hashed e-mail address with advertising platforms (customer-match
    /// audiences).
    Advertising,
}

impl Purpose {
    pub const ALL: [Purpose; 5] = [
        Purpose::EmailMarketing,
        Purpose::Personalization,
        Purpose::Profiling,
        Purpose::ThirdPartyEnrichment,
        Purpose::Advertising,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::EmailMarketing => "email_marketing",
            Purpose::Personalization => "personalization",
            Purpose::Profiling => "profiling",
            Purpose::ThirdPartyEnrichment => "third_party_enrichment",
            Purpose::Advertising => "advertising",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The channel the consent covers: `email` for e-mail marketing, `all` otherwise.
    pub fn channel(self) -> &'static str {
        match self {
            Purpose::EmailMarketing => "email",
            _ => "all",
        }
    }

    /// What the purpose means, in the words the preference centre shows.
    pub fn plain_words(self) -> &'static str {
        match self {
            Purpose::EmailMarketing => "Send you marketing e-mail: offers, news and reminders.",
            Purpose::Personalization => {
                "Choose the content and products in our e-mails from what you viewed and bought."
            }
            Purpose::Profiling => {
                "Use your purchases in statistical models that group customers and predict interest."
            }
            Purpose::ThirdPartyEnrichment => "Add information about you that we receive from partners.",
            Purpose::Advertising => {
                "Show you our ads on other sites and apps, by sharing a scrambled (hashed) form of your e-mail address with advertising platforms."
            }
        }
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One grant or withdrawal, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentChange {
    pub granted: bool,
    /// Event time of the message that carried it.
    pub at: DateTime<Utc>,
    /// Where it was given: the message's source (`identify:analytics-python`,
    /// `preference-centre`, `unsubscribe-link`, `api:…`).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The message that carried it, to find it in the event log.
    pub message_id: MessageId,
    /// Who vouched for the message (absent on changes recorded before trust was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<crate::Trust>,
}

impl ConsentChange {
    /// Made on missive's own pages or API: authoritative, ordered by when missive received it.
    pub fn is_missives_own(&self) -> bool {
        self.trust == Some(crate::Trust::Missive)
    }
}

/// Changes kept per purpose in the profile; older ones stay in the event log and the versions.
pub const CONSENT_HISTORY_MAX: usize = 50;

/// The state of one purpose: the latest change decides, the history is kept oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PurposeConsent {
    pub current: ConsentChange,
    /// Earlier changes, oldest first (bounded by [`CONSENT_HISTORY_MAX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ConsentChange>,
}

impl PurposeConsent {
    /// Records a change; an older one (out of order) only joins the history. A change made on
    /// missive's own pages always takes effect: it is ordered by its receipt, so no message
    /// dated later by its sender's clock can keep a withdrawal from taking effect.
    pub fn record(&mut self, change: ConsentChange) {
        if change.message_id == self.current.message_id
            || self.history.iter().any(|c| c.message_id == change.message_id)
        {
            return;
        }
        if change.is_missives_own() || change.at >= self.current.at {
            let old = std::mem::replace(&mut self.current, change);
            self.history.push(old);
        } else {
            let pos = self.history.partition_point(|c| c.at <= change.at);
            self.history.insert(pos, change);
        }
        if self.history.len() > CONSENT_HISTORY_MAX {
            let excess = self.history.len() - CONSENT_HISTORY_MAX;
            self.history.drain(..excess);
        }
    }
}

/// A trait that was not stored, and why: shown with the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Refusal {
    /// The trait (or `consent.PURPOSE`) refused.
    pub name: String,
    pub source: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub message_id: MessageId,
}

/// Refusals kept per profile, newest last.
pub const REFUSALS_MAX: usize = 50;

/// What `traits.consent` of an incoming message asks for, validated.
pub fn parse_consent_object(v: &serde_json::Value) -> Result<Vec<(Purpose, bool)>, (String, String)> {
    let serde_json::Value::Object(m) = v else {
        return Err((
            "traits.consent".into(),
            "consent must be an object of purposes to true or false".into(),
        ));
    };
    let mut out = Vec::with_capacity(m.len());
    for (k, v) in m {
        let Some(p) = Purpose::parse(k) else {
            return Err((
                format!("traits.consent.{k}"),
                format!(
                    "unknown consent purpose {k:?}: use one of {}",
                    Purpose::ALL.map(Purpose::as_str).join(", ")
                ),
            ));
        };
        let Some(granted) = v.as_bool() else {
            return Err((
                format!("traits.consent.{k}"),
                "consent must be true or false".into(),
            ));
        };
        out.push((p, granted));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(granted: bool, at: &str, id: &str) -> ConsentChange {
        ConsentChange {
            granted,
            at: DateTime::parse_from_rfc3339(at).unwrap().to_utc(),
            source: "test".into(),
            policy_version: None,
            ip: None,
            user_agent: None,
            message_id: MessageId::parse(id).unwrap(),
            trust: None,
        }
    }

    #[test]
    fn the_latest_change_decides_and_older_ones_join_the_history_in_order() {
        let mut c = PurposeConsent {
            current: change(true, "2026-01-02T00:00:00Z", "m2"),
            history: vec![],
        };
        c.record(change(false, "2026-01-03T00:00:00Z", "m3"));
        c.record(change(true, "2026-01-01T00:00:00Z", "m1"));
        c.record(change(false, "2026-01-03T00:00:00Z", "m3"));
        assert!(!c.current.granted);
        let ids: Vec<_> = c.history.iter().map(|h| h.message_id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2"]);
    }

    #[test]
    fn a_withdrawal_on_missives_own_pages_wins_over_a_grant_dated_later() {
        let mut c = PurposeConsent {
            current: change(true, "2999-01-01T00:00:00Z", "m1"),
            history: vec![],
        };
        let mut own = change(false, "2026-01-02T00:00:00Z", "m2");
        own.trust = Some(crate::Trust::Missive);
        c.record(own);
        assert!(!c.current.granted);
        // The same link used again is a new message: it is recorded again (not deduplicated).
        c.record(change(true, "2999-01-02T00:00:00Z", "m3"));
        let mut again = change(false, "2026-01-03T00:00:00Z", "m4");
        again.trust = Some(crate::Trust::Missive);
        c.record(again);
        assert!(!c.current.granted);
    }

    #[test]
    fn unknown_purposes_and_non_booleans_are_refused_naming_the_field() {
        let e =
            parse_consent_object(&serde_json::json!({"email_marketing": true, "spam": true})).unwrap_err();
        assert_eq!(e.0, "traits.consent.spam");
        let e = parse_consent_object(&serde_json::json!({"profiling": "yes"})).unwrap_err();
        assert_eq!(e.0, "traits.consent.profiling");
        let ok = parse_consent_object(&serde_json::json!({"profiling": false})).unwrap();
        assert_eq!(ok, vec![(Purpose::Profiling, false)]);
    }
}
