//! E-mail preferences a person sets in the preference centre: how often they hear from us,
//! and which topics they do not want.
//!
//! They are ordinary traits (`email_frequency`, `email_topics_declined`), so they arrive
//! through `identify` like anything else (a retailer's own preference form can set them too),
//! are versioned, and record their source. The send-time policy reads them through
//! [`Frequency::of`] and [`declines_topic`].

use chrono::TimeDelta;
use serde_json::Value;

use crate::Profile;

/// The trait holding the chosen [`Frequency`].
pub const FREQUENCY_TRAIT: &str = "email_frequency";
/// The trait holding the topic ids a person declined (an array of strings).
pub const TOPICS_DECLINED_TRAIT: &str = "email_topics_declined";

/// How many marketing e-mails a person wants at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Frequency {
    /// As many as the workspace's own frequency cap allows.
    #[default]
    AsSent,
    /// At most one a week.
    Weekly,
    /// At most one a month (30 days).
    Monthly,
}

impl Frequency {
    pub const ALL: [Frequency; 3] = [Frequency::AsSent, Frequency::Weekly, Frequency::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::AsSent => "as_sent",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Frequency::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// What the choice means, in the words the preference centre shows.
    pub fn plain_words(self) -> &'static str {
        match self {
            Frequency::AsSent => "Every e-mail we send",
            Frequency::Weekly => "At most one e-mail a week",
            Frequency::Monthly => "At most one e-mail a month",
        }
    }

    /// The window in which at most one marketing e-mail is sent (`None`: no personal limit).
    pub fn window(self) -> Option<TimeDelta> {
        match self {
            Frequency::AsSent => None,
            Frequency::Weekly => Some(TimeDelta::days(7)),
            Frequency::Monthly => Some(TimeDelta::days(30)),
        }
    }

    /// The profile's chosen frequency; an unknown value counts as no choice.
    pub fn of(profile: &Profile) -> Frequency {
        profile
            .traits
            .get(FREQUENCY_TRAIT)
            .and_then(|t| t.value.as_str())
            .and_then(Frequency::parse)
            .unwrap_or_default()
    }
}

/// The topic ids the profile declined.
pub fn declined_topics(profile: &Profile) -> Vec<String> {
    match profile.traits.get(TOPICS_DECLINED_TRAIT).map(|t| &t.value) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Whether the profile declined `topic`.
pub fn declines_topic(profile: &Profile, topic: &str) -> bool {
    declined_topics(profile).iter().any(|t| t == topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Trait, TraitParty};

    fn with_trait(name: &str, value: Value) -> Profile {
        let mut p = Profile::new(crate::ProfileId::generate(), chrono::Utc::now());
        p.traits.insert(
            name.into(),
            Trait {
                value,
                source: "test".into(),
                party: TraitParty::First,
                at: chrono::Utc::now(),
                consent_basis: None,
            },
        );
        p
    }

    #[test]
    fn frequency_reads_the_trait_and_defaults_to_as_sent() {
        assert_eq!(
            Frequency::of(&with_trait(FREQUENCY_TRAIT, "weekly".into())),
            Frequency::Weekly
        );
        assert_eq!(
            Frequency::of(&with_trait(FREQUENCY_TRAIT, "hourly".into())),
            Frequency::AsSent
        );
        assert_eq!(Frequency::Monthly.window(), Some(TimeDelta::days(30)));
        assert_eq!(Frequency::AsSent.window(), None);
    }

    #[test]
    fn declined_topics_accept_an_array_or_one_string() {
        let p = with_trait(TOPICS_DECLINED_TRAIT, serde_json::json!(["offers", 3, "news"]));
        assert!(declines_topic(&p, "offers"));
        assert!(declines_topic(&p, "news"));
        assert!(!declines_topic(&p, "restock"));
        let p = with_trait(TOPICS_DECLINED_TRAIT, "offers".into());
        assert_eq!(declined_topics(&p), vec!["offers".to_string()]);
    }
}
