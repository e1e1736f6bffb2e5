//! missive's own events about a person (a click, an unsubscribe, an exposure to an
//! experiment): ingested as trusted (`Trust::Missive`), identified as the profile is known.

use missive_core::Profile;
use missive_core::message::validate_message;
use missive_engine::Engine;
use serde_json::Value;

/// Why missive's own event was not ingested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Own {
    /// Refused as an event (a bug): logged.
    Refused,
    /// The store did not take it: logged; the caller may retry.
    NotStored,
}

/// `msg` about `profile` as missive's own event, ready to ingest. A refusal (a bug) is
/// logged under `what`.
pub(crate) fn event(
    engine: &Engine,
    profile: &Profile,
    mut msg: Value,
    what: &str,
) -> Result<missive_core::Event, Own> {
    missive_engine::privacy::identify_as(profile, &mut msg);
    let now = engine.clock().now();
    let mut event = validate_message(msg, None, None, now).map_err(|r| {
        tracing::error!(code = r.code.as_str(), "{what}: event refused");
        Own::Refused
    })?;
    event.set_trust(missive_core::Trust::Missive);
    Ok(event)
}

/// Ingests `msg` about `profile` as missive's own event. Failures are logged under `what`.
pub(crate) async fn ingest(engine: &Engine, profile: &Profile, msg: Value, what: &str) -> Result<(), Own> {
    let event = event(engine, profile, msg, what)?;
    ingest_all(engine, vec![event], what).await
}

/// Ingests missive's own events in one batch. A failure is logged under `what`.
pub(crate) async fn ingest_all(
    engine: &Engine,
    events: Vec<missive_core::Event>,
    what: &str,
) -> Result<(), Own> {
    if events.is_empty() {
        return Ok(());
    }
    engine.ingest(events).await.map_err(|e| {
        tracing::error!(error = %e, "{what}: event not recorded");
        Own::NotStored
    })?;
    Ok(())
}
