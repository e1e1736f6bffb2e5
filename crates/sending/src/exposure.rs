//! Experiments at send time: which variant a queued message gets, and the exposure recorded
//! on the person's profile when the message is sent, or held back for a holdout.
//!
//! A message takes part in an experiment when its context names one (`experiment`: a
//! journey's `send` step or a broadcast set it; a journey's `split` step also sets `variant`,
//! the path it chose). The send-time rules (suppression, consent, topics, the global holdout,
//! frequency, quiet hours) are decided first: a person they skip is never assigned, so never
//! counted. Then:
//! - while the experiment runs, the person gets their variant (sticky, from the hash of
//!   experiment and profile; or the path a split chose, the wave a bandit broadcast chose), and
//!   it is recorded as `Experiment Viewed` at once, before the e-mail is composed, for every
//!   variant alike: the holdout's message is skipped with reason `holdout`, and a message that
//!   then fails or bounces still counts (compared as assigned, not as delivered; the results
//!   count deliveries apart);
//! - once concluded with a winner, everyone gets the winner, unrecorded (the roll-out);
//! - otherwise (a draft, stopped, concluded with no winner) the message goes out as it would
//!   without the experiment, unrecorded.

use missive_core::Profile;
use missive_engine::Engine;
use missive_experiment::definition::{Experiment, Treatment, Variant};
use missive_store::OutboxMessage;
use serde_json::{Value, json};

/// The exposure event (Segment's name for it).
pub const EXPERIMENT_VIEWED: &str = "Experiment Viewed";
/// The context key naming a message's experiment.
pub const CONTEXT_EXPERIMENT: &str = "experiment";
/// The context key of the variant a message got.
pub const CONTEXT_VARIANT: &str = "variant";

/// The experiment a queued message takes part in, if any.
pub fn experiment_of(message: &OutboxMessage) -> Option<&str> {
    message.context.get(CONTEXT_EXPERIMENT).and_then(Value::as_str)
}

/// A message's variant as the sender applies it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub experiment: String,
    pub variant: Variant,
    /// Whether the message counts in the results (the experiment is running).
    pub exposed: bool,
}

impl Applied {
    /// The skip reason of a held-back message.
    pub fn holdout_reason(&self) -> Option<String> {
        self.variant
            .holdout
            .then(|| format!("holdout: experiment {}", self.experiment))
    }
}

/// The variant `message` gets from `e` (a journey split's choice while it runs, else the
/// treatment), written into the message's context.
pub fn apply(e: &Experiment, message: &mut OutboxMessage) -> Applied {
    let treatment = e.treatment(message.profile_id.as_str());
    let chosen = match treatment {
        Treatment::Assigned(_) => message
            .context
            .get(CONTEXT_VARIANT)
            .and_then(Value::as_str)
            .and_then(|v| e.variant(v))
            .unwrap_or(treatment.variant()),
        _ => treatment.variant(),
    };
    // Only an exposure is written down: a message retried after the experiment starts must
    // then get the person's own variant, not the default it got before.
    if treatment.exposed()
        && let Some(ctx) = message.context.as_object_mut()
    {
        ctx.insert(CONTEXT_VARIANT.into(), json!(chosen.name));
    }
    Applied {
        experiment: e.definition.name.clone(),
        variant: chosen.clone(),
        exposed: treatment.exposed(),
    }
}

/// Records the exposure of `profile` to `applied` through `message` (idempotent per message:
/// a message tried again records nothing new).
pub async fn record(engine: &Engine, profile: &Profile, applied: &Applied, message: &OutboxMessage) {
    if !applied.exposed {
        return;
    }
    record_exposure(engine, profile, applied, &message.id, &message.source.to_string()).await;
}

/// Records an exposure through `unit` (a message id, or a journey split's instance and step)
/// from `source` (`journey:NAME`, `broadcast:ID`).
pub async fn record_exposure(
    engine: &Engine,
    profile: &Profile,
    applied: &Applied,
    unit: &str,
    source: &str,
) {
    let msg = json!({
        "type": "track",
        "event": EXPERIMENT_VIEWED,
        "properties": {
            "experiment_id": applied.experiment,
            "experiment_name": applied.experiment,
            "variation_id": applied.variant.name,
            "variation_name": applied.variant.name,
            "message_id": unit,
            "source": source,
            "holdout": applied.variant.holdout,
        },
        "messageId": format!("exposure-{unit}"),
    });
    // Logged inside when it fails.
    let _ = crate::own_events::ingest(engine, profile, msg, "experiment exposure").await;
}
