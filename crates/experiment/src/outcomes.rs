//! What each unit of an experiment did, from the events missive records: the exposures
//! (`Experiment Viewed`, one per message sent or held back), the opens, clicks, unsubscribes
//! and complaints of those messages, and the person's orders.
//!
//! The unit is the person (the profile): a person who got three messages of a journey
//! experiment is one recipient, who opened if any of them was opened. A person keeps the
//! variant of their first exposure; exposures under another variant (only possible if the
//! stored experiment was changed by hand) are left out and counted in [`Units::crossed`].
//!
//! A conversion is an order within the conversion window after an open or a click of one of
//! the person's messages in the experiment (engagement attribution), or after one of their
//! exposures (exposure attribution, the only fair one against a holdout). Each order counts
//! once, however many anchors it follows; revenue is the sum of the counted orders.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Serialize;

use crate::chart::Day;
use crate::definition::{Attribution, Guardrail, Metric};
use crate::stats::Counts;

/// A message of the experiment sent to a person, or held back from them (the holdout).
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub profile: String,
    pub variant: String,
    pub message_id: String,
    /// The relay accepted the message (false for the holdout, and for a message that failed).
    pub sent: bool,
    pub at: DateTime<Utc>,
}

/// What a recipient did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Opened,
    Clicked,
    Unsubscribed,
    Complained,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Engagement {
    /// The person it was recorded on: it counts only for the person the message went to.
    pub profile: String,
    pub message_id: String,
    pub action: Action,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub profile: String,
    pub at: DateTime<Utc>,
    pub revenue: f64,
}

/// One person's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    pub variant: String,
    pub first_exposed: DateTime<Utc>,
    /// At least one message was handed over (never, for the holdout).
    pub delivered: bool,
    pub opened: bool,
    pub clicked: bool,
    pub unsubscribed: bool,
    pub complained: bool,
    pub converted: bool,
    pub revenue: f64,
}

impl Unit {
    /// The unit's value for a metric: 0 or 1 for rates, the amount for revenue.
    pub fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Open => f64::from(u8::from(self.opened)),
            Metric::Click => f64::from(u8::from(self.clicked)),
            Metric::Conversion => f64::from(u8::from(self.converted)),
            Metric::Revenue => self.revenue,
        }
    }

    pub fn guardrail(&self, g: Guardrail) -> bool {
        match g {
            Guardrail::Unsubscribe => self.unsubscribed,
            Guardrail::Complaint => self.complained,
        }
    }

    /// Success for the daily counts of a rate; for revenue, a conversion.
    fn success(&self, metric: Metric) -> bool {
        match metric {
            Metric::Open => self.opened,
            Metric::Click => self.clicked,
            Metric::Conversion | Metric::Revenue => self.converted,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Units {
    pub units: Vec<Unit>,
    /// Exposures left out because their person was first exposed under another variant.
    pub crossed: u64,
}

/// Folds exposures, engagements and orders into one outcome per person.
pub fn units(
    exposures: &[Exposure],
    engagements: &[Engagement],
    orders: &[Order],
    attribution: Attribution,
    window: TimeDelta,
) -> Units {
    let mut sorted: Vec<&Exposure> = exposures.iter().collect();
    sorted.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.message_id.cmp(&b.message_id)));
    let mut out = Units::default();
    let mut by_profile: HashMap<&str, usize> = HashMap::new();
    let mut by_message: HashMap<&str, usize> = HashMap::new();
    let mut profiles: Vec<&str> = Vec::new();
    // Times after which an order counts, per unit.
    let mut anchors: Vec<Vec<DateTime<Utc>>> = Vec::new();
    for e in sorted {
        let i = *by_profile.entry(e.profile.as_str()).or_insert_with(|| {
            out.units.push(Unit {
                variant: e.variant.clone(),
                first_exposed: e.at,
                delivered: false,
                opened: false,
                clicked: false,
                unsubscribed: false,
                complained: false,
                converted: false,
                revenue: 0.0,
            });
            anchors.push(Vec::new());
            profiles.push(e.profile.as_str());
            out.units.len() - 1
        });
        if out.units[i].variant != e.variant {
            out.crossed += 1;
            continue;
        }
        out.units[i].delivered |= e.sent;
        by_message.insert(e.message_id.as_str(), i);
        if attribution == Attribution::Exposure {
            anchors[i].push(e.at);
        }
    }
    for g in engagements {
        let Some(&i) = by_message.get(g.message_id.as_str()) else {
            continue;
        };
        if profiles[i] != g.profile {
            continue;
        }
        let u = &mut out.units[i];
        match g.action {
            Action::Opened => u.opened = true,
            // A click implies the message was seen, whether or not the pixel loaded.
            Action::Clicked => {
                u.clicked = true;
                u.opened = true;
            }
            Action::Unsubscribed => u.unsubscribed = true,
            Action::Complained => u.complained = true,
        }
        if attribution == Attribution::Engagement && matches!(g.action, Action::Opened | Action::Clicked) {
            anchors[i].push(g.at);
        }
    }
    for o in orders {
        let Some(&i) = by_profile.get(o.profile.as_str()) else {
            continue;
        };
        if anchors[i].iter().any(|a| *a <= o.at && o.at <= *a + window) {
            let u = &mut out.units[i];
            u.converted = true;
            u.revenue += o.revenue;
        }
    }
    out
}

/// The figures of one variant. Rates are per recipient (the holdout's recipients are the people
/// held back).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VariantMetrics {
    pub variant: String,
    pub recipients: u64,
    pub delivered: u64,
    pub opens: u64,
    pub clicks: u64,
    pub unsubscribes: u64,
    pub complaints: u64,
    pub conversions: u64,
    pub revenue: f64,
    pub open_rate: Option<f64>,
    pub click_rate: Option<f64>,
    pub conversion_rate: Option<f64>,
    pub revenue_per_recipient: Option<f64>,
}

/// Per-variant figures, in the order of `variants` (a variant nobody got has zeros).
pub fn metrics(units: &Units, variants: &[&str]) -> Vec<VariantMetrics> {
    let mut by: BTreeMap<&str, VariantMetrics> = variants
        .iter()
        .map(|v| {
            (
                *v,
                VariantMetrics {
                    variant: (*v).to_owned(),
                    ..VariantMetrics::default()
                },
            )
        })
        .collect();
    for u in &units.units {
        let Some(m) = by.get_mut(u.variant.as_str()) else {
            continue;
        };
        m.recipients += 1;
        m.delivered += u64::from(u.delivered);
        m.opens += u64::from(u.opened);
        m.clicks += u64::from(u.clicked);
        m.unsubscribes += u64::from(u.unsubscribed);
        m.complaints += u64::from(u.complained);
        m.conversions += u64::from(u.converted);
        m.revenue += u.revenue;
    }
    variants
        .iter()
        .filter_map(|v| by.remove(v))
        .map(|mut m| {
            let per = |x: f64| (m.recipients > 0).then(|| x / m.recipients as f64);
            m.open_rate = per(m.opens as f64);
            m.click_rate = per(m.clicks as f64);
            m.conversion_rate = per(m.conversions as f64);
            m.revenue_per_recipient = per(m.revenue);
            m
        })
        .collect()
}

/// (variant, value) per unit: what [`crate::analysis`] takes.
pub fn values(units: &Units, metric: Metric) -> Vec<(String, f64)> {
    units
        .units
        .iter()
        .map(|u| (u.variant.clone(), u.value(metric)))
        .collect()
}

/// (variant, 0 or 1) per unit for a guardrail.
pub fn guardrail_values(units: &Units, g: Guardrail) -> Vec<(String, f64)> {
    units
        .units
        .iter()
        .map(|u| (u.variant.clone(), f64::from(u8::from(u.guardrail(g)))))
        .collect()
}

/// Units and successes per day of first exposure (UTC) for `control` and `variant`, every day
/// from the first to the last with a unit: what the chart and the sequential test's looks read.
/// Revenue is shown through its conversions.
pub fn daily(units: &Units, metric: Metric, control: &str, variant: &str) -> Vec<Day> {
    let mut by: BTreeMap<NaiveDate, [(u64, u64); 2]> = BTreeMap::new();
    for u in &units.units {
        let arm = if u.variant == control {
            0
        } else if u.variant == variant {
            1
        } else {
            continue;
        };
        let day = by.entry(u.first_exposed.date_naive()).or_default();
        day[arm].0 += u64::from(u.success(metric));
        day[arm].1 += 1;
    }
    let (Some(first), Some(last)) = (by.keys().next().copied(), by.keys().next_back().copied()) else {
        return Vec::new();
    };
    first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| {
            let [a, b] = by.get(&d).copied().unwrap_or_default();
            Day {
                day: d,
                // Successes never exceed units here: each unit adds at most one.
                control: Counts {
                    successes: a.0,
                    units: a.1,
                },
                variant: Counts {
                    successes: b.0,
                    units: b.1,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::hours(h)
    }

    fn exposure(profile: &str, variant: &str, msg: &str, h: i64) -> Exposure {
        Exposure {
            profile: profile.into(),
            variant: variant.into(),
            message_id: msg.into(),
            sent: variant != "holdout",
            at: at(h),
        }
    }

    fn engagement(msg: &str, action: Action, h: i64) -> Engagement {
        let profile = match msg {
            "m1" | "m2" => "ann",
            "m3" => "bob",
            _ => "cy",
        };
        Engagement {
            profile: profile.into(),
            message_id: msg.into(),
            action,
            at: at(h),
        }
    }

    fn order(profile: &str, h: i64, revenue: f64) -> Order {
        Order {
            profile: profile.into(),
            at: at(h),
            revenue,
        }
    }

    #[test]
    fn units_are_people_and_conversions_follow_the_attribution() {
        let exposures = [
            exposure("ann", "a", "m1", 0),
            exposure("ann", "a", "m2", 24),
            exposure("bob", "b", "m3", 0),
            exposure("cy", "holdout", "m4", 0),
            // Crossed: cy was first held back.
            exposure("cy", "b", "m5", 30),
        ];
        let engagements = [
            engagement("m2", Action::Opened, 25),
            engagement("m2", Action::Opened, 26),
            engagement("m3", Action::Clicked, 1),
            engagement("m3", Action::Unsubscribed, 2),
            // Of an unknown message: ignored.
            engagement("m9", Action::Complained, 2),
            // Recorded on someone else than the message's recipient: ignored.
            Engagement {
                profile: "dan".into(),
                message_id: "m1".into(),
                action: Action::Clicked,
                at: at(3),
            },
        ];
        let orders = [
            order("ann", 27, 40.0),
            order("ann", 200, 10.0),
            order("bob", 0, 99.0),
            order("bob", 5, 20.0),
            order("cy", 10, 30.0),
            order("dan", 10, 30.0),
        ];
        let window = TimeDelta::hours(72);
        let by_engagement = units(&exposures, &engagements, &orders, Attribution::Engagement, window);
        assert_eq!(by_engagement.crossed, 1);
        let got: Vec<(&str, bool, bool, bool, f64)> = by_engagement
            .units
            .iter()
            .map(|u| (u.variant.as_str(), u.opened, u.clicked, u.converted, u.revenue))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", true, false, true, 40.0),
                ("b", true, true, true, 20.0),
                ("holdout", false, false, false, 0.0),
            ]
        );
        let by_exposure = units(&exposures, &engagements, &orders, Attribution::Exposure, window);
        let revenue: Vec<f64> = by_exposure.units.iter().map(|u| u.revenue).collect();
        // bob's order at hour 0 is at the exposure itself; cy's holdout exposure counts.
        assert_eq!(revenue, vec![40.0, 119.0, 30.0]);

        let m = metrics(&by_engagement, &["a", "b", "holdout", "unused"]);
        assert_eq!(m[0].recipients, 1);
        assert_eq!((m[1].clicks, m[1].unsubscribes), (1, 1));
        assert_eq!((m[2].recipients, m[2].delivered), (1, 0));
        assert_eq!((m[3].recipients, m[3].open_rate), (0, None));
        assert_eq!(m[0].revenue_per_recipient, Some(40.0));
    }

    #[test]
    fn days_without_units_are_kept_for_the_chart() {
        let exposures = [
            exposure("a1", "a", "m1", 0),
            exposure("b1", "b", "m2", 1),
            exposure("b2", "b", "m3", 50),
        ];
        let engagements = [Engagement {
            profile: "b2".into(),
            ..engagement("m3", Action::Opened, 51)
        }];
        let u = units(
            &exposures,
            &engagements,
            &[],
            Attribution::Engagement,
            TimeDelta::hours(1),
        );
        let days = daily(&u, Metric::Open, "a", "b");
        assert_eq!(days.len(), 3);
        assert_eq!((days[0].control.units, days[0].variant.units), (1, 1));
        assert_eq!((days[1].control.units, days[1].variant.units), (0, 0));
        assert_eq!((days[2].variant.successes, days[2].variant.units), (1, 1));
    }
}
