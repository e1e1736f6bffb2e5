//! Consent across everyone: for each purpose, how many profiles granted it, withdrew it or
//! were never asked, the changes of a recent window, and where the current answers came from
//! (the preference centre, an unsubscribe link, a shop's sign-up form). What a privacy
//! officer reads first; the console's privacy page shows it.
//!
//! [`tally`] is pure (profiles in, counts out); [`consent_summary`] reads every live profile
//! in pages of a thousand, so it costs a scan: a second or two per million profiles.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use missive_core::{Profile, Purpose};
use missive_store::StoreError;

/// One purpose's answers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurposeTally {
    /// Whose current answer is yes.
    pub granted: u64,
    /// Whose current answer is no.
    pub withdrawn: u64,
    /// Profiles with no answer for the purpose (the configured default applies).
    pub unknown: u64,
    /// Changes to yes since the window's start (history included).
    pub granted_since: u64,
    /// Changes to no since the window's start.
    pub withdrawn_since: u64,
    /// Where the current answers came from, by source, most first.
    pub sources: Vec<(String, u64)>,
}

/// Consent across the live profiles.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConsentSummary {
    pub profiles: u64,
    pub purposes: Vec<(Purpose, PurposeTally)>,
}

/// Sources are free text from clients: the most common few are listed, the rest summed.
const TOP_SOURCES: usize = 5;

/// Counts `profiles`' consent, with the changes at or after `since`.
pub fn tally<'a>(profiles: impl IntoIterator<Item = &'a Profile>, since: DateTime<Utc>) -> ConsentSummary {
    let mut out = Accumulator::default();
    for p in profiles {
        out.add(p, since);
    }
    out.finish()
}

#[derive(Default)]
struct Accumulator {
    profiles: u64,
    by: BTreeMap<Purpose, (PurposeTally, BTreeMap<String, u64>)>,
}

impl Accumulator {
    fn add(&mut self, p: &Profile, since: DateTime<Utc>) {
        self.profiles += 1;
        for purpose in Purpose::ALL {
            let (t, sources) = self.by.entry(purpose).or_default();
            let Some(c) = p.consent.get(&purpose) else {
                t.unknown += 1;
                continue;
            };
            if c.current.granted {
                t.granted += 1;
            } else {
                t.withdrawn += 1;
            }
            *sources.entry(c.current.source.clone()).or_default() += 1;
            for change in c.history.iter().chain(std::iter::once(&c.current)) {
                if change.at >= since {
                    if change.granted {
                        t.granted_since += 1;
                    } else {
                        t.withdrawn_since += 1;
                    }
                }
            }
        }
    }

    fn finish(mut self) -> ConsentSummary {
        let purposes = Purpose::ALL
            .iter()
            .map(|purpose| {
                let (mut t, sources) = self.by.remove(purpose).unwrap_or_default();
                let mut sorted: Vec<(String, u64)> = sources.into_iter().collect();
                sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                if sorted.len() > TOP_SOURCES {
                    let rest: u64 = sorted[TOP_SOURCES - 1..].iter().map(|s| s.1).sum();
                    sorted.truncate(TOP_SOURCES - 1);
                    sorted.push(("other sources".into(), rest));
                }
                t.sources = sorted;
                (*purpose, t)
            })
            .collect();
        ConsentSummary {
            profiles: self.profiles,
            purposes,
        }
    }
}

/// [`tally`] over every live profile in the store.
pub async fn consent_summary(
    store: &missive_store::Store,
    since: DateTime<Utc>,
) -> Result<ConsentSummary, StoreError> {
    let mut acc = Accumulator::default();
    let mut after = None;
    loop {
        let page = store.events().profiles_after(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for p in &page {
            acc.add(p, since);
        }
    }
    Ok(acc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use missive_core::ProfileId;
    use missive_core::consent::{ConsentChange, PurposeConsent};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a time")
    }

    fn change(granted: bool, when: &str, source: &str) -> ConsentChange {
        ConsentChange {
            granted,
            at: at(when),
            source: source.into(),
            policy_version: None,
            ip: None,
            user_agent: None,
            message_id: missive_core::MessageId::parse(&format!("m-{when}-{source}")).expect("an id"),
            trust: None,
        }
    }

    fn person(answers: Vec<(Purpose, Vec<ConsentChange>)>) -> Profile {
        let mut p = Profile::new(ProfileId::generate(), at("2026-01-01T00:00:00Z"));
        let mut map = BTreeMap::new();
        for (purpose, mut changes) in answers {
            let current = changes.pop().expect("a change");
            map.insert(
                purpose,
                PurposeConsent {
                    current,
                    history: changes,
                },
            );
        }
        p.consent = map;
        p
    }

    #[test]
    fn answers_changes_and_sources_are_counted_per_purpose() {
        let m = Purpose::EmailMarketing;
        let people = [
            person(vec![(
                m,
                vec![change(true, "2026-10-01T00:00:00Z", "identify:shop")],
            )]),
            person(vec![(
                m,
                vec![
                    change(true, "2026-10-01T00:00:00Z", "identify:shop"),
                    change(false, "2026-11-20T00:00:00Z", "unsubscribe-link"),
                ],
            )]),
            person(vec![(
                m,
                vec![change(true, "2026-11-25T00:00:00Z", "preference-centre")],
            )]),
            person(vec![]),
        ];
        let s = tally(&people, at("2026-11-01T00:00:00Z"));
        assert_eq!(s.profiles, 4);
        let (purpose, t) = &s.purposes[0];
        assert_eq!(*purpose, m);
        assert_eq!((t.granted, t.withdrawn, t.unknown), (2, 1, 1));
        assert_eq!((t.granted_since, t.withdrawn_since), (1, 1));
        assert_eq!(
            t.sources,
            vec![
                ("identify:shop".to_owned(), 1),
                ("preference-centre".to_owned(), 1),
                ("unsubscribe-link".to_owned(), 1)
            ]
        );
        let profiling = &s
            .purposes
            .iter()
            .find(|(p, _)| *p == Purpose::Profiling)
            .expect("listed")
            .1;
        assert_eq!(
            (profiling.granted, profiling.withdrawn, profiling.unknown),
            (0, 0, 4)
        );
    }

    #[test]
    fn rare_sources_are_summed_after_the_most_common() {
        let m = Purpose::EmailMarketing;
        let mut people = Vec::new();
        for (i, n) in [5, 4, 3, 2, 1, 1].iter().enumerate() {
            for _ in 0..*n {
                people.push(person(vec![(
                    m,
                    vec![change(true, "2026-10-01T00:00:00Z", &format!("source-{i}"))],
                )]));
            }
        }
        let s = tally(&people, at("2026-11-01T00:00:00Z"));
        let t = &s.purposes[0].1;
        assert_eq!(t.sources.len(), TOP_SOURCES);
        assert_eq!(t.sources[0], ("source-0".to_owned(), 5));
        assert_eq!(t.sources[TOP_SOURCES - 1], ("other sources".to_owned(), 2));
        assert_eq!(t.granted_since, 0);
    }
}
