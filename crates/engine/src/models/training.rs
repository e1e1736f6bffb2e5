//! Training tables from the store, without leaking the future into the features.
//!
//! Each live profile whose consent includes `profiling` (docs/privacy.md; erased people are
//! gone from the store) is rebuilt twice from its own events, by event time:
//! - **as of the cutoff**, from the events stamped at or before it: the features;
//! - **as of the horizon** (cutoff + window), from the events up to then: the label, a
//!   segment-language condition evaluated at the horizon ("`count(Order Completed in last 30
//!   days) > 0`" with a 30-day window reads "ordered within 30 days after the cutoff").
//!
//! Event time, not the time missive recorded the events, so that a history imported in bulk
//! (CDNOW, a shop's past orders) trains like one that arrived live. A profile first seen after
//! the cutoff is left out (it was not a customer yet). Above `max_profiles` the profiles are a
//! uniform sample (reservoir, seeded), and said so.

use chrono::{DateTime, Duration, Utc};
use missive_core::profile::HistoryEntry;
use missive_core::{Profile, ProfileId, Purpose, Touched};
use missive_models::dataset::Dataset;
use missive_models::features::FeatureSpec;
use missive_segment::{Facts, Segment};
use missive_store::{Store, StoreError, StoredEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::pipeline::event_from_stored;
use crate::profiles::history_entry;

/// What to read.
#[derive(Debug, Clone)]
pub struct StoreTable {
    pub cutoff: DateTime<Utc>,
    /// The label and its window; `None` for clustering.
    pub label: Option<(Segment, Duration)>,
    pub features: FeatureSpec,
    /// Traits to learn as features (numeric, or one-hot with `category_cap` values); product
    /// categories bought are learned too, at most `category_cap` of them.
    pub traits: Vec<String>,
    pub category_cap: usize,
    pub max_profiles: usize,
    pub seed: u64,
    /// The active models whose scores are features (`features.scores`): each rebuilt profile
    /// is scored with them as of the cutoff.
    pub scorers: std::sync::Arc<crate::models::ScoringSet>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    pub profiles: usize,
    pub rows: usize,
    pub positives: usize,
    pub no_consent: usize,
    pub not_yet_seen: usize,
    pub sampled: bool,
}

/// Every event of a profile, oldest first.
async fn all_events(store: &Store, id: &ProfileId) -> Result<Vec<StoredEvent>, StoreError> {
    let mut out = crate::profiles::all_events(store, id).await?;
    out.reverse();
    Ok(out)
}

/// The live profiles with `profiling` consent, a uniform sample of `max` of them above that
/// (reservoir, seeded); counts what was left out in `stats`.
async fn consenting_profiles(
    store: &Store,
    max: usize,
    seed: u64,
    stats: &mut TableStats,
) -> Result<Vec<Profile>, StoreError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut chosen: Vec<Profile> = Vec::new();
    let mut after = None;
    let mut seen = 0usize;
    loop {
        let page = store.events().profiles_after(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for p in page {
            stats.profiles += 1;
            if !p.consents(Purpose::Profiling) {
                stats.no_consent += 1;
                continue;
            }
            seen += 1;
            if chosen.len() < max {
                chosen.push(p);
            } else {
                let j = rng.random_range(0..seen);
                if j < max {
                    chosen[j] = p;
                }
            }
        }
    }
    stats.sampled = seen > chosen.len();
    Ok(chosen)
}

/// Everyone's opens and clicks by local hour of the week (their `timezone` trait, else
/// `default_zone`; the consenting profiles, sampled), and how many profiles had any.
pub async fn engagement(
    store: &Store,
    max_profiles: usize,
    seed: u64,
    default_zone: chrono_tz::Tz,
) -> Result<(Vec<[f64; missive_models::send_time::HOURS]>, TableStats), StoreError> {
    let mut stats = TableStats::default();
    let chosen = consenting_profiles(store, max_profiles, seed, &mut stats).await?;
    let histograms: Vec<_> = chosen
        .iter()
        .map(|p| {
            let zone = missive_core::zone::time_zone_of(p, default_zone);
            missive_models::send_time::engagement(p, zone)
        })
        .filter(|h| h.iter().any(|v| *v > 0.0))
        .collect();
    stats.rows = histograms.len();
    Ok((histograms, stats))
}

/// The orders of the consenting profiles, by event time, for the lifetime-value models.
pub async fn transactions(
    store: &Store,
    max_profiles: usize,
    seed: u64,
) -> Result<(Vec<missive_models::clv::summary::Transaction>, TableStats), StoreError> {
    let mut stats = TableStats::default();
    let chosen = consenting_profiles(store, max_profiles, seed, &mut stats).await?;
    let mut out = Vec::new();
    for p in &chosen {
        let before = out.len();
        for e in crate::profiles::all_events(store, &p.id).await? {
            if e.kind != missive_core::EventKind::Track || e.name != missive_core::profile::ORDER_COMPLETED {
                continue;
            }
            let props = e
                .body
                .get("properties")
                .and_then(|v| v.as_object())
                .cloned()
                .unwrap_or_default();
            out.push(missive_models::clv::summary::Transaction {
                customer: p.id.to_string(),
                date: e.timestamp.date_naive(),
                value: missive_core::profile::order_revenue(&props).0 as f64 / 100.0,
            });
        }
        if out.len() > before {
            stats.rows += 1;
        }
    }
    Ok((out, stats))
}

/// Builds the table: features as of the cutoff and, with a label, the label at the horizon.
/// Returns it with the spec the features were read with (traits learned) and counts.
pub async fn build(
    store: &Store,
    t: &StoreTable,
    mut progress: impl FnMut(usize),
) -> Result<(Dataset, FeatureSpec, TableStats), super::ModelError> {
    let mut stats = TableStats::default();
    let chosen = consenting_profiles(store, t.max_profiles, t.seed, &mut stats).await?;
    let horizon = t.label.as_ref().map(|(_, w)| t.cutoff + *w);
    let mut at_cutoff = Vec::new();
    let mut labels = Vec::new();
    for (n, current) in chosen.iter().enumerate() {
        let events = all_events(store, &current.id).await?;
        let Some(first) = events.first() else {
            stats.not_yet_seen += 1;
            continue;
        };
        if first.timestamp > t.cutoff {
            stats.not_yet_seen += 1;
            continue;
        }
        let mut p = Profile::new(current.id.clone(), first.timestamp);
        // Consent is the person's today: it is what allows their data to be used at all.
        p.consent = current.consent.clone();
        let mut touched = Touched::default();
        let mut i = 0;
        while i < events.len() && events[i].timestamp <= t.cutoff {
            p.apply_event(&event_from_stored(&events[i]), 0, &mut touched);
            i += 1;
        }
        if !t.scorers.models.is_empty() {
            t.scorers.score(&mut p, t.cutoff, false, None);
        }
        if let (Some((segment, _)), Some(h)) = (&t.label, horizon) {
            let mut later = p.clone();
            let mut window: Vec<HistoryEntry> = events[..i].iter().map(history_entry).collect();
            while i < events.len() && events[i].timestamp <= h {
                later.apply_event(&event_from_stored(&events[i]), 0, &mut touched);
                window.push(history_entry(&events[i]));
                i += 1;
            }
            let none = Default::default();
            let facts = Facts::new(&later, &window, &none, later.model_scores());
            labels.push(segment.evaluate(&facts, h).member);
        }
        at_cutoff.push(p);
        if n % 500 == 0 {
            progress(n);
        }
    }
    let mut spec = t.features.clone();
    let refs: Vec<&Profile> = at_cutoff.iter().collect();
    spec.learn_traits(&t.traits, &refs, t.category_cap)?;
    spec.learn_categories(&refs, t.category_cap);
    let names = spec.names();
    let mut columns: Vec<Vec<f64>> = (0..names.len())
        .map(|_| Vec::with_capacity(at_cutoff.len()))
        .collect();
    for p in &at_cutoff {
        for (c, v) in columns.iter_mut().zip(spec.extract(p, t.cutoff)) {
            c.push(v);
        }
    }
    stats.rows = at_cutoff.len();
    stats.positives = labels.iter().filter(|l| **l).count();
    let data = Dataset {
        names,
        columns,
        label: t.label.as_ref().map(|_| labels),
        folds: None,
    };
    Ok((data, spec, stats))
}
