//! Experiments as objects: what varies, the variants and their weights, the primary metric and
//! guardrails chosen at creation, and the status an experiment moves through. The checks and
//! the transitions are pure; the sending side stores experiments as documents.
//!
//! Status: `draft` → `running` (start) ⇄ `stopped` (stop, start again) → `concluded`
//! (conclude, with or without a winner). Only a draft can be changed or deleted: a running
//! experiment's definition is what its results are measured against, so a change is a new
//! experiment.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the variants change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentVaries)]
pub enum Varies {
    /// The subject line: each variant but control names its `subject`.
    Subject,
    /// The template: each variant names its `template`.
    Template,
    /// Send or not: one variant is the holdout, which receives nothing.
    Holdout,
    /// A journey's path: a `split` step that names the experiment sends each variant down its
    /// own path.
    Branch,
    /// What the template does with the `experiment` variable: a content block, a
    /// recommendation strategy, anything the template chooses by `experiment.variant`.
    Content,
}

impl Varies {
    pub fn as_str(self) -> &'static str {
        match self {
            Varies::Subject => "subject",
            Varies::Template => "template",
            Varies::Holdout => "holdout",
            Varies::Branch => "branch",
            Varies::Content => "content",
        }
    }
}

/// What a conversion is counted after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentAttribution)]
pub enum Attribution {
    /// A purchase within the window after an open or a click of the experiment's message
    /// (the default, except for holdouts).
    Engagement,
    /// A purchase within the window after the exposure (the message sent, or held back): the
    /// only fair comparison with a holdout, which has nothing to open.
    Exposure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExperimentVariant)]
pub struct Variant {
    pub name: String,
    /// Any positive number; weights are normalized.
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The holdout receives nothing (send/no-send experiments).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holdout: bool,
}

/// The metric an experiment is decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentMetric)]
pub enum Metric {
    Open,
    Click,
    /// A purchase within the conversion window after an open or a click.
    Conversion,
    /// Revenue per recipient within the conversion window.
    Revenue,
}

/// What must not get worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentGuardrail)]
pub enum Guardrail {
    Unsubscribe,
    Complaint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentStatus)]
pub enum Status {
    Draft,
    Running,
    Stopped,
    Concluded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Concluded => "concluded",
        }
    }
}

/// What the creator writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentIn {
    pub name: String,
    #[serde(default)]
    pub hypothesis: String,
    pub varies: Varies,
    pub variants: Vec<Variant>,
    /// The control variant's name (default: the first).
    #[serde(default)]
    pub control: Option<String>,
    pub primary_metric: Metric,
    #[serde(default = "default_guardrails")]
    pub guardrails: Vec<Guardrail>,
    /// Hours after an open or click (or the exposure: see `attribution`) in which a purchase
    /// counts as a conversion.
    #[serde(default = "default_window")]
    pub conversion_window_hours: u32,
    /// What conversions are counted after; default: `exposure` for holdouts, else
    /// `engagement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    /// For the plan: the control's expected rate of the primary metric, the smallest relative
    /// lift worth finding, and the units per day the experiment will see.
    #[serde(default)]
    pub plan: Option<PlanIn>,
    /// Run as a bandit in a broadcast: sent in waves that shift traffic to the variants most
    /// likely to be best, then the best to the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandit: Option<BanditIn>,
}

/// A broadcast in waves (Thompson sampling). One wave is "test, then send the winner".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExperimentBanditIn)]
pub struct BanditIn {
    /// Test waves before the rest gets the best: 1 to 20.
    pub waves: u32,
    /// The share of the broadcast's people the test waves reach together (0.01 to 0.9); the
    /// rest gets the best.
    pub share: f64,
    /// Hours after a wave is queued before the next is decided (opens and clicks need time to
    /// come in): more than 0, at most a week.
    pub hours_between: f64,
    /// Each variant's least share of a test wave, so that every variant keeps learning (0 to
    /// 1/variants; default 0.02).
    #[serde(default = "default_floor")]
    pub floor: f64,
}

fn default_floor() -> f64 {
    0.02
}

fn default_guardrails() -> Vec<Guardrail> {
    vec![Guardrail::Unsubscribe, Guardrail::Complaint]
}

fn default_window() -> u32 {
    72
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ExperimentPlanIn)]
pub struct PlanIn {
    pub baseline_rate: f64,
    pub minimum_lift: f64,
    pub units_per_day: f64,
    #[serde(default = "default_power")]
    pub power: f64,
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

fn default_power() -> f64 {
    0.8
}

fn default_alpha() -> f64 {
    0.05
}

/// How long the experiment needs, from its plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ExperimentPlan)]
pub struct Plan {
    /// Units each variant needs (the smallest variant's share sets the pace).
    pub units_per_variant: u64,
    pub days: f64,
    /// "At 1000 units a day, this test needs 9 day(s): …"
    pub summary: String,
}

/// A stored experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Experiment {
    /// As written, checked.
    pub definition: ExperimentIn,
    pub control: String,
    pub status: Status,
    /// How long it needs, from the definition's `plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Plan>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concluded: Option<Conclusion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ExperimentConclusion)]
pub struct Conclusion {
    pub at: DateTime<Utc>,
    /// The variant chosen, or none ("no difference shown").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
}

/// Why a definition or a transition was refused. `field` names what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
pub enum DefinitionError {
    #[error("invalid {field}: {why}")]
    Invalid { field: String, why: String },
    #[error("experiment {name:?} is {status}: {why}")]
    State {
        name: String,
        status: &'static str,
        why: &'static str,
    },
}

fn bad(field: impl Into<String>, why: impl Into<String>) -> DefinitionError {
    DefinitionError::Invalid {
        field: field.into(),
        why: why.into(),
    }
}

/// Checks a definition; answers the stored experiment (a draft) with its plan.
pub fn create(def: ExperimentIn, now: DateTime<Utc>) -> Result<Experiment, DefinitionError> {
    let name = &def.name;
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad("name", "1 to 64 letters, digits, '-' or '_'"));
    }
    if def.variants.len() < 2 {
        return Err(bad("variants", "an experiment needs at least two variants"));
    }
    let mut names = BTreeSet::new();
    for (i, v) in def.variants.iter().enumerate() {
        let field = |f: &str| format!("variants[{i}].{f}");
        if v.name.trim().is_empty() || v.name.len() > 64 || v.name.trim() != v.name {
            return Err(bad(
                field("name"),
                "1 to 64 characters, without spaces around them",
            ));
        }
        if v.name.contains([',', '=']) {
            return Err(bad(
                field("name"),
                "no ',' or '=' (they separate variants in plans)",
            ));
        }
        if !names.insert(v.name.as_str()) {
            return Err(bad(field("name"), format!("{:?} is used twice", v.name)));
        }
        if !(v.weight.is_finite() && v.weight > 0.0) {
            return Err(bad(
                field("weight"),
                format!("{} is not a positive weight", v.weight),
            ));
        }
    }
    // Every variant must get buckets: a share below one bucket in ten thousand gets none.
    let total: f64 = def.variants.iter().map(|v| v.weight).sum();
    if !total.is_finite() {
        return Err(bad("variants", "the weights are too large to add up"));
    }
    if let Some((i, _)) = def
        .variants
        .iter()
        .enumerate()
        .find(|(_, v)| v.weight / total < 1.0 / crate::assign::BUCKETS as f64)
    {
        return Err(bad(
            format!("variants[{i}].weight"),
            "too small a share: every variant needs at least 0.01 % of the units",
        ));
    }
    let control = def
        .control
        .clone()
        .unwrap_or_else(|| def.variants[0].name.clone());
    if !names.contains(control.as_str()) {
        return Err(bad("control", format!("no variant is named {control:?}")));
    }
    for (i, v) in def.variants.iter().enumerate() {
        let field = |f: &str| format!("variants[{i}].{f}");
        match def.varies {
            Varies::Subject => {
                if v.holdout || v.template.is_some() {
                    return Err(bad(
                        field("subject"),
                        "a subject-line experiment varies the subject only",
                    ));
                }
                if v.name != control && v.subject.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    return Err(bad(
                        field("subject"),
                        "every variant but control sets its subject line",
                    ));
                }
            }
            Varies::Template => {
                if v.holdout || v.subject.is_some() {
                    return Err(bad(
                        field("template"),
                        "a template experiment varies the template only",
                    ));
                }
                if v.name != control && v.template.as_deref().is_none_or(|t| t.trim().is_empty()) {
                    return Err(bad(
                        field("template"),
                        "every variant but control names its template",
                    ));
                }
            }
            Varies::Holdout => {
                if v.subject.is_some() || v.template.is_some() {
                    return Err(bad(
                        field("holdout"),
                        "a holdout experiment varies send or no-send only",
                    ));
                }
            }
            Varies::Branch | Varies::Content => {
                if v.subject.is_some() || v.template.is_some() || v.holdout {
                    return Err(bad(
                        field("name"),
                        format!(
                            "a {} experiment's variants are names only (no subject, template or holdout)",
                            def.varies.as_str()
                        ),
                    ));
                }
            }
        }
    }
    if def.varies == Varies::Holdout {
        let holdouts = def.variants.iter().filter(|v| v.holdout).count();
        if holdouts != 1 || def.variants.len() != 2 {
            return Err(bad(
                "variants",
                "a holdout experiment has two variants, one of them with \"holdout\": true",
            ));
        }
    }
    if def.varies == Varies::Holdout && matches!(def.primary_metric, Metric::Open | Metric::Click) {
        return Err(bad(
            "primary_metric",
            "a holdout receives nothing to open or click: compare conversion or revenue",
        ));
    }
    if def.varies == Varies::Holdout && def.attribution == Some(Attribution::Engagement) {
        return Err(bad(
            "attribution",
            "a holdout receives nothing to open or click: conversions are counted after the exposure",
        ));
    }
    if let Some(b) = &def.bandit {
        if !matches!(def.varies, Varies::Subject | Varies::Template | Varies::Content) {
            return Err(bad(
                "bandit",
                "a bandit chooses between subject lines, templates or contents; not a holdout or a journey's path",
            ));
        }
        if def.primary_metric == Metric::Revenue {
            return Err(bad(
                "bandit",
                "a bandit learns a rate (open, click or conversion), not revenue",
            ));
        }
        if !(1..=20).contains(&b.waves) {
            return Err(bad("bandit.waves", "1 to 20 test waves"));
        }
        if !(b.share.is_finite() && (0.01..=0.9).contains(&b.share)) {
            return Err(bad("bandit.share", "a share from 0.01 to 0.9 of the people"));
        }
        if !(b.hours_between.is_finite() && b.hours_between > 0.0 && b.hours_between <= 168.0) {
            return Err(bad("bandit.hours_between", "more than 0 and at most 168 hours"));
        }
        if !(b.floor.is_finite() && (0.0..=1.0 / def.variants.len() as f64).contains(&b.floor)) {
            return Err(bad("bandit.floor", "from 0 to 1 / the number of variants"));
        }
    }
    if def.conversion_window_hours == 0 || def.conversion_window_hours > 24 * 90 {
        return Err(bad("conversion_window_hours", "between 1 hour and 90 days"));
    }
    let plan = def
        .plan
        .map(|p| plan(&def.variants, def.primary_metric, p))
        .transpose()?;
    Ok(Experiment {
        control,
        definition: def,
        status: Status::Draft,
        estimate: plan,
        created_at: now,
        started_at: None,
        stopped_at: None,
        concluded: None,
    })
}

fn plan(variants: &[Variant], metric: Metric, p: PlanIn) -> Result<Plan, DefinitionError> {
    if metric == Metric::Revenue {
        return Err(bad(
            "plan",
            "the plan sizes tests of rates (open, click, conversion); revenue needs its variance, which it does not take yet",
        ));
    }
    if !(p.units_per_day.is_finite() && p.units_per_day > 0.0) {
        return Err(bad("plan.units_per_day", "a positive number of units a day"));
    }
    if !(p.minimum_lift.is_finite() && p.minimum_lift != 0.0) {
        return Err(bad(
            "plan.minimum_lift",
            "a relative lift other than 0, e.g. 0.1 for +10 %",
        ));
    }
    let treatment = p.baseline_rate * (1.0 + p.minimum_lift);
    let n = crate::stats::power::sample_size(p.baseline_rate, treatment, p.alpha, p.power).map_err(|e| {
        // The calculator's names for the request's fields.
        let field = match &e {
            crate::stats::StatsError::Invalid { field: "control", .. } => "plan.baseline_rate".into(),
            crate::stats::StatsError::Invalid {
                field: "treatment", ..
            } => "plan.minimum_lift".into(),
            crate::stats::StatsError::Invalid { field, .. } => format!("plan.{field}"),
            crate::stats::StatsError::NotEnoughData(_) => "plan".into(),
        };
        bad(field, e.to_string())
    })?;
    let units = n.ceil() as u64;
    let total: f64 = variants.iter().map(|v| v.weight).sum();
    let smallest = variants.iter().map(|v| v.weight / total).fold(1.0, f64::min);
    let days = units as f64 / (p.units_per_day * smallest);
    if !days.is_finite() {
        return Err(bad("plan.units_per_day", "too few units a day for any end"));
    }
    Ok(Plan {
        units_per_variant: units,
        days,
        summary: format!(
            "At {} units a day, this test needs {:.0} day(s): {units} units per variant to detect a {:+.1} % change from {:.2} % at {:.0} % power.",
            p.units_per_day,
            days.ceil(),
            p.minimum_lift * 100.0,
            p.baseline_rate * 100.0,
            p.power * 100.0
        ),
    })
}

/// Which variant a message gets, and whether that is an exposure to record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Treatment<'a> {
    /// Running: the profile's assigned variant; recorded as an exposure when the message is
    /// sent (or, for the holdout, held back).
    Assigned(&'a Variant),
    /// Concluded with a winner: everyone gets it, nothing is recorded (the roll-out).
    RolledOut(&'a Variant),
    /// Not running (a draft, stopped, or concluded without a winner): what is sent without the
    /// experiment (control, or the variant that sends when control is the holdout);
    /// nothing is recorded.
    Default(&'a Variant),
}

impl<'a> Treatment<'a> {
    pub fn variant(self) -> &'a Variant {
        match self {
            Treatment::Assigned(v) | Treatment::RolledOut(v) | Treatment::Default(v) => v,
        }
    }

    /// Whether the message is part of the experiment's results.
    pub fn exposed(self) -> bool {
        matches!(self, Treatment::Assigned(_))
    }
}

impl Experiment {
    /// What conversions are counted after.
    pub fn attribution(&self) -> Attribution {
        self.definition
            .attribution
            .unwrap_or(match self.definition.varies {
                Varies::Holdout => Attribution::Exposure,
                _ => Attribution::Engagement,
            })
    }

    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.definition.variants.iter().find(|v| v.name == name)
    }

    /// Each variant's planned share (adding up to 1), in the definition's order.
    pub fn planned_shares(&self) -> Vec<f64> {
        let total: f64 = self.definition.variants.iter().map(|v| v.weight).sum();
        self.definition
            .variants
            .iter()
            .map(|v| v.weight / total)
            .collect()
    }

    /// The planned weight of each variant, for the sample-ratio check.
    pub fn planned(&self) -> std::collections::BTreeMap<String, f64> {
        self.definition
            .variants
            .iter()
            .map(|v| (v.name.clone(), v.weight))
            .collect()
    }

    /// The variant a profile gets now: its assignment while running (deterministic and
    /// sticky: [`crate::assign`]), the winner once concluded with one, else the default.
    pub fn treatment(&self, profile: &str) -> Treatment<'_> {
        let variants = &self.definition.variants;
        if self.status == Status::Running {
            let weights: Vec<f64> = variants.iter().map(|v| v.weight).collect();
            // A stored experiment passed `create`: its weights make a split.
            let i =
                crate::assign::Split::new(&weights).map_or(0, |s| s.variant(&self.definition.name, profile));
            return Treatment::Assigned(&variants[i.min(variants.len() - 1)]);
        }
        let winner = self
            .concluded
            .as_ref()
            .and_then(|c| c.winner.as_deref())
            .and_then(|w| self.variant(w));
        match winner {
            Some(w) if self.status == Status::Concluded => Treatment::RolledOut(w),
            _ => {
                let control = self.variant(&self.control).unwrap_or(&variants[0]);
                let sends = if control.holdout {
                    variants.iter().find(|v| !v.holdout).unwrap_or(control)
                } else {
                    control
                };
                Treatment::Default(sends)
            }
        }
    }

    fn state(&self, why: &'static str) -> DefinitionError {
        DefinitionError::State {
            name: self.definition.name.clone(),
            status: self.status.as_str(),
            why,
        }
    }

    /// Whether its definition may still change (or be deleted).
    pub fn editable(&self) -> Result<(), DefinitionError> {
        match self.status {
            Status::Draft => Ok(()),
            _ => Err(self.state("only a draft can change; create a new experiment instead")),
        }
    }

    pub fn start(&mut self, now: DateTime<Utc>) -> Result<(), DefinitionError> {
        match self.status {
            Status::Draft | Status::Stopped => {
                self.status = Status::Running;
                self.started_at.get_or_insert(now);
                self.stopped_at = None;
                Ok(())
            }
            Status::Running => Err(self.state("it is already running")),
            Status::Concluded => Err(self.state("a concluded experiment does not start again")),
        }
    }

    pub fn stop(&mut self, now: DateTime<Utc>) -> Result<(), DefinitionError> {
        match self.status {
            Status::Running => {
                self.status = Status::Stopped;
                self.stopped_at = Some(now);
                Ok(())
            }
            _ => Err(self.state("only a running experiment stops")),
        }
    }

    pub fn conclude(&mut self, winner: Option<String>, now: DateTime<Utc>) -> Result<(), DefinitionError> {
        if !matches!(self.status, Status::Running | Status::Stopped) {
            return Err(self.state("only a running or stopped experiment is concluded"));
        }
        if let Some(w) = &winner
            && !self.definition.variants.iter().any(|v| &v.name == w)
        {
            return Err(bad("winner", format!("no variant is named {w:?}")));
        }
        self.status = Status::Concluded;
        self.stopped_at.get_or_insert(now);
        self.concluded = Some(Conclusion { at: now, winner });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(v: serde_json::Value) -> ExperimentIn {
        serde_json::from_value(v).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    fn subject_test() -> serde_json::Value {
        serde_json::json!({
            "name": "cart-subject",
            "hypothesis": "Naming the product lifts opens",
            "varies": "subject",
            "variants": [
                {"name": "control", "weight": 50},
                {"name": "product", "weight": 50, "subject": "Your {{ journey.cart.items[0].name }} is waiting"}
            ],
            "primary_metric": "open",
            "plan": {"baseline_rate": 0.2, "minimum_lift": 0.1, "units_per_day": 1000}
        })
    }

    #[test]
    fn a_definition_is_checked_and_planned() {
        let e = create(def(subject_test()), now()).unwrap();
        assert_eq!((e.status, e.control.as_str()), (Status::Draft, "control"));
        assert_eq!(
            e.definition.guardrails,
            vec![Guardrail::Unsubscribe, Guardrail::Complaint]
        );
        let plan = e.estimate.unwrap();
        // 20 % → 22 %: about 6,500 per variant; half of 1,000 a day each.
        assert!((6_400..6_600).contains(&plan.units_per_variant), "{plan:?}");
        assert!((plan.days - plan.units_per_variant as f64 / 500.0).abs() < 1e-9);
        assert!(
            plan.summary
                .starts_with("At 1000 units a day, this test needs 14 day(s)"),
            "{}",
            plan.summary
        );
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let cases: &[(&str, serde_json::Value, &str)] = &[
            ("/name", serde_json::json!("has space"), "name"),
            ("/variants/1/weight", serde_json::json!(0), "variants[1].weight"),
            (
                "/variants/1/name",
                serde_json::json!("control"),
                "variants[1].name",
            ),
            (
                "/variants/1/subject",
                serde_json::json!(" "),
                "variants[1].subject",
            ),
            ("/control", serde_json::json!("nobody"), "control"),
            (
                "/conversion_window_hours",
                serde_json::json!(0),
                "conversion_window_hours",
            ),
            ("/plan/baseline_rate", serde_json::json!(0), "plan.baseline_rate"),
            ("/plan/minimum_lift", serde_json::json!(5), "plan.minimum_lift"),
            (
                "/plan/units_per_day",
                serde_json::json!(1e-308),
                "plan.units_per_day",
            ),
            (
                "/variants/0/weight",
                serde_json::json!(1e308),
                "variants[1].weight",
            ),
            ("/variants/0/weight", serde_json::json!(1e6), "variants[1].weight"),
            ("/variants/1/name", serde_json::json!("b=1"), "variants[1].name"),
            ("/primary_metric", serde_json::json!("revenue"), "plan"),
            (
                "/bandit",
                serde_json::json!({"waves": 0, "share": 0.2, "hours_between": 2}),
                "bandit.waves",
            ),
            (
                "/bandit",
                serde_json::json!({"waves": 3, "share": 1.0, "hours_between": 2}),
                "bandit.share",
            ),
            (
                "/bandit",
                serde_json::json!({"waves": 3, "share": 0.2, "hours_between": 0}),
                "bandit.hours_between",
            ),
            (
                "/bandit",
                serde_json::json!({"waves": 3, "share": 0.2, "hours_between": 2, "floor": 0.6}),
                "bandit.floor",
            ),
        ];
        for (pointer, value, field) in cases {
            let mut v = subject_test();
            match v.pointer_mut(pointer) {
                Some(slot) => *slot = value.clone(),
                None => {
                    v[&pointer[1..]] = value.clone();
                }
            }
            match create(def(v), now()) {
                Err(DefinitionError::Invalid { field: f, .. }) => assert_eq!(&f, field, "{pointer}"),
                other => panic!("{pointer}: {other:?}"),
            }
        }
        let holdout = serde_json::json!({
            "name": "h", "varies": "holdout", "primary_metric": "conversion",
            "variants": [{"name": "send", "weight": 90}, {"name": "rest", "weight": 10}]
        });
        assert!(create(def(holdout), now()).is_err(), "no variant is the holdout");
        let mut huge = subject_test();
        huge["variants"][0]["weight"] = serde_json::json!(1e308);
        huge["variants"][1]["weight"] = serde_json::json!(1e308);
        match create(def(huge), now()) {
            Err(DefinitionError::Invalid { field, .. }) => assert_eq!(field, "variants"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_lifecycle_refuses_what_would_corrupt_results() {
        let mut e = create(def(subject_test()), now()).unwrap();
        assert!(e.editable().is_ok());
        assert!(e.stop(now()).is_err());
        e.start(now()).unwrap();
        assert!(e.editable().is_err());
        assert!(e.start(now()).is_err());
        e.stop(now()).unwrap();
        e.start(now()).unwrap();
        assert!(e.conclude(Some("nobody".into()), now()).is_err());
        e.conclude(Some("product".into()), now()).unwrap();
        assert_eq!(e.status, Status::Concluded);
        assert!(e.start(now()).is_err());
        let back: Experiment = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(back.status, Status::Concluded);
        assert_eq!(back.definition, e.definition);
    }

    #[test]
    fn treatment_is_sticky_while_running_then_the_winner_or_the_sender() {
        let holdout = serde_json::json!({
            "name": "h", "varies": "holdout", "primary_metric": "conversion",
            "variants": [{"name": "held", "weight": 10, "holdout": true}, {"name": "send", "weight": 90}]
        });
        let mut e = create(def(holdout), now()).unwrap();
        assert_eq!(e.attribution(), Attribution::Exposure);
        // A draft sends: control is the holdout, so the variant that sends.
        assert_eq!(
            e.treatment("prf_1"),
            Treatment::Default(&e.definition.variants[1])
        );
        e.start(now()).unwrap();
        let mut held = 0;
        for i in 0..2_000 {
            let id = format!("prf_{i}");
            let t = e.treatment(&id);
            assert!(t.exposed());
            assert_eq!(t, e.treatment(&id), "sticky");
            held += usize::from(t.variant().holdout);
        }
        assert!((150..250).contains(&held), "{held} of 2000 held back at 10 %");
        e.conclude(Some("send".into()), now()).unwrap();
        assert_eq!(
            e.treatment("prf_1"),
            Treatment::RolledOut(&e.definition.variants[1])
        );
        assert!(!e.treatment("prf_1").exposed());

        let mut s = create(def(subject_test()), now()).unwrap();
        s.start(now()).unwrap();
        s.conclude(None, now()).unwrap();
        assert_eq!(
            s.treatment("prf_1"),
            Treatment::Default(&s.definition.variants[0])
        );

        let mut engagement = serde_json::json!({
            "name": "h", "varies": "holdout", "primary_metric": "conversion", "attribution": "engagement",
            "variants": [{"name": "held", "weight": 10, "holdout": true}, {"name": "send", "weight": 90}]
        });
        match create(def(engagement.clone()), now()) {
            Err(DefinitionError::Invalid { field, .. }) => assert_eq!(field, "attribution"),
            other => panic!("{other:?}"),
        }
        engagement["varies"] = serde_json::json!("branch");
        engagement["attribution"] = serde_json::json!("exposure");
        match create(def(engagement), now()) {
            Err(DefinitionError::Invalid { field, .. }) => assert_eq!(field, "variants[0].name"),
            other => panic!("{other:?}"),
        }
    }
}
