//! What recipients do with a message, as a service: each visit to a tracked link, the open
//! pixel or the unsubscribe link becomes an event on the person's profile (`Email Link
//! Clicked`, `Email Opened`, `Unsubscribed`), and a message's outcome (opens, clicks, the
//! purchases attributed to it) is counted from those events. The HTTP layer verifies the
//! signed tokens and calls this.

use chrono::{DateTime, TimeDelta, Utc};
use missive_core::{Profile, ProfileId};
use missive_engine::Engine;
use missive_engine::profiles::ProfileKey;
use missive_store::{EventQuery, OutboxMessage, StoreError};
use serde_json::{Value, json};

use crate::journeys::Journeys;
use crate::own_events::Own;

/// Purchases this long after a click count as the message's conversions.
pub const ATTRIBUTION_WINDOW: TimeDelta = TimeDelta::days(7);

/// What became of an unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribe {
    /// Marketing consent is withdrawn now.
    Withdrawn,
    /// The link names no live profile.
    UnknownProfile,
    /// The withdrawal could not be recorded (the store is failing): the recipient should try
    /// again.
    NotRecorded,
    /// The link's data was refused as an event (a bug, logged).
    Refused,
}

/// Recording recipients' actions and reading messages' outcomes.
#[derive(Clone)]
pub struct Tracking {
    engine: Engine,
    journeys: Journeys,
}

/// What a message led to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub opens: u64,
    pub clicks: u64,
    /// Purchases within [`ATTRIBUTION_WINDOW`] after the first click.
    pub conversions: u64,
    pub revenue: f64,
}

impl Tracking {
    pub fn new(engine: Engine, journeys: Journeys) -> Self {
        Self { engine, journeys }
    }

    /// A message from the outbox.
    pub async fn message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        self.engine.store().delivery().outbox_message(id).await
    }

    /// The live profile a message went to, without history.
    pub async fn recipient(&self, profile: &ProfileId) -> Result<Option<Profile>, StoreError> {
        self.engine
            .profiles()
            .find_bare(&ProfileKey::Id(profile.clone()))
            .await
    }

    /// Records `event` for the profile a message went to, identified as the profile is known,
    /// as missive's own (trusted) event; then wakes the journeys. Failures are logged: a
    /// recipient's click must never fail because of them.
    pub async fn record(
        &self,
        profile: &ProfileId,
        event: &str,
        properties: Value,
        message_id: Option<String>,
    ) {
        match event {
            "Email Opened" => metrics::counter!("missive_messages_opened_total").increment(1),
            "Email Link Clicked" => metrics::counter!("missive_messages_clicked_total").increment(1),
            _ => {}
        }
        let p = match self.recipient(profile).await {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "tracking: profile lookup failed");
                return;
            }
        };
        self.record_for(
            &p,
            json!({"type": "track", "event": event, "properties": properties}),
            message_id,
        )
        .await;
    }

    /// Records a Segment message (`track` or `identify`) for `profile` as missive's own, then
    /// wakes the journeys (unless the message was refused).
    pub async fn record_for(&self, profile: &Profile, mut msg: Value, message_id: Option<String>) {
        if let Some(id) = message_id {
            msg["messageId"] = json!(id);
        }
        if self.ingest_own(profile, msg, "tracking").await != Err(Own::Refused) {
            self.journeys.poke();
        }
    }

    async fn ingest_own(&self, profile: &Profile, msg: Value, what: &str) -> Result<(), Own> {
        crate::own_events::ingest(&self.engine, profile, msg, what).await
    }

    /// What message `m` led to, from its recipient's events.
    pub async fn outcome(&self, m: &OutboxMessage) -> Result<Outcome, StoreError> {
        let events = self
            .engine
            .profiles()
            .events(EventQuery {
                profile_id: m.profile_id.clone(),
                received_before: None,
                cursor: None,
                limit: 5_000,
            })
            .await?;
        let mut out = Outcome::default();
        let mut first_click: Option<DateTime<Utc>> = None;
        for e in &events {
            let about_this = e.body["properties"]["message_id"].as_str() == Some(m.id.as_str());
            match e.name.as_str() {
                "Email Opened" if about_this => out.opens += 1,
                "Email Link Clicked" if about_this => {
                    out.clicks += 1;
                    first_click = Some(first_click.map_or(e.timestamp, |c| c.min(e.timestamp)));
                }
                _ => {}
            }
        }
        if let Some(click) = first_click {
            for e in events.iter().filter(|e| e.name == "Order Completed") {
                if e.timestamp >= click && e.timestamp <= click + ATTRIBUTION_WINDOW {
                    out.conversions += 1;
                    out.revenue += missive_core::profile::order_revenue(
                        e.body["properties"]
                            .as_object()
                            .unwrap_or(&serde_json::Map::new()),
                    )
                    .as_major();
                }
            }
        }
        Ok(out)
    }

    /// Withdraws `profile`'s marketing consent as missive's own (authoritative) change, after
    /// the unsubscribe link of `message_id` was used, and records `Unsubscribed`. Each use is
    /// its own withdrawal: unsubscribe, re-subscribe and unsubscribe again with the same
    /// e-mail's link withdraws again, so the event id is not the link's.
    pub async fn unsubscribe(&self, profile: &ProfileId, message_id: &str) -> Unsubscribe {
        let Ok(Some(p)) = self.recipient(profile).await else {
            return Unsubscribe::UnknownProfile;
        };
        let identify = json!({
            "type": "identify",
            "traits": {"consent": {"email_marketing": false}},
            "messageId": format!("unsubscribe-consent-{message_id}-{}", missive_core::MessageId::generate().as_str()),
            "context": {"library": {"name": "missive-unsubscribe"}, "missive": {"source": "unsubscribe-link"}},
        });
        match self.ingest_own(&p, identify, "unsubscribe").await {
            Ok(()) => {}
            Err(Own::NotStored) => return Unsubscribe::NotRecorded,
            Err(Own::Refused) => return Unsubscribe::Refused,
        }
        // "Unsubscribed" only once consent is withdrawn (a cluster node waits for the owner's
        // fold first, `Engine::read_back`).
        let withdrawn_now = |p: &Option<Profile>| {
            p.as_ref()
                .is_some_and(|p| !p.consents(missive_core::Purpose::EmailMarketing))
        };
        let withdrawn = self
            .engine
            .read_back(
                || async {
                    self.recipient(profile)
                        .await
                        .map_err(|e| std::sync::Arc::new(missive_engine::EngineError::Store(e)))
                },
                withdrawn_now,
            )
            .await
            .is_ok_and(|p| withdrawn_now(&p));
        if !withdrawn {
            tracing::error!(profile_id = %profile, "unsubscribe recorded but consent still granted");
            return Unsubscribe::NotRecorded;
        }
        self.record(
            profile,
            "Unsubscribed",
            json!({"message_id": message_id}),
            Some(format!("unsubscribe-{message_id}")),
        )
        .await;
        Unsubscribe::Withdrawn
    }
}
