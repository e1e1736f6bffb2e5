//! Messages as an operator reads them: what became of each one and, when it was not sent,
//! why; listed per journey (and step), broadcast or profile, with counts by reason.
//!
//! The outbox records a message's status and a free-text detail; [`MessageView`] turns the
//! pair into a state and a reason (a queued message with a `deferred: …` detail is
//! *deferred*, its reason what follows), so that a skipped broadcast says `no_consent` where
//! the reader looks.

use chrono::{DateTime, Utc};
use missive_core::{MessageSource, ProfileId};
use missive_engine::Engine;
use missive_store::{DEFERRED, OutboxCounts, OutboxCursor, OutboxMessage, OutboxStatus, Store, StoreError};
use serde::Serialize;

/// The most messages one page lists.
pub const MAX_PAGE: u32 = 1_000;

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Waiting for its time, or for a retry.
    Queued,
    /// Put off by a send-time rule (quiet hours) to `next_attempt_at`.
    Deferred,
    Sent,
    /// Refused by the relay for good, or out of attempts.
    Failed,
    /// Not sent, for good: `reason` says why.
    Skipped,
}

/// One message, without its content or address.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: String,
    pub profile_id: String,
    pub template: String,
    /// `journey:NAME` or `broadcast:ID`.
    pub source: String,
    /// The journey step that decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub class: &'static str,
    pub state: MessageState,
    /// Why it was skipped, deferred, failed or is waiting for a retry (`no_consent`,
    /// `quiet_hours`, `suppressed: hard_bounce`, the relay's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// When it will be tried, while queued or deferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<&OutboxMessage> for MessageView {
    fn from(m: &OutboxMessage) -> Self {
        let deferred = m.detail.as_deref().and_then(|d| d.strip_prefix(DEFERRED));
        let (state, reason) = match m.status {
            OutboxStatus::Queued => match deferred {
                Some(why) => (MessageState::Deferred, Some(why.to_owned())),
                None => (MessageState::Queued, m.detail.clone()),
            },
            OutboxStatus::Sent => (MessageState::Sent, None),
            OutboxStatus::Failed => (MessageState::Failed, m.detail.clone()),
            OutboxStatus::Skipped => (MessageState::Skipped, m.detail.clone()),
        };
        Self {
            id: m.id.clone(),
            profile_id: m.profile_id.to_string(),
            template: m.template.clone(),
            source: m.source.to_string(),
            step: m.step.clone(),
            class: m.class.as_str(),
            state,
            reason,
            attempts: m.attempts,
            created_at: m.created_at,
            next_attempt_at: (m.status == OutboxStatus::Queued).then_some(m.next_attempt_at),
            sent_at: m.sent_at,
        }
    }
}

/// A page of a journey's or broadcast's messages, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    /// All the source's messages by state, and the skipped and deferred ones by reason.
    pub counts: OutboxCounts,
    pub messages: Vec<MessageView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A `before` cursor that is not one this API gave out.
#[derive(Debug, thiserror::Error)]
#[error("before: {0:?} is not a cursor from a previous page's `next`")]
pub struct BadCursor(pub String);

#[derive(Debug, thiserror::Error)]
pub enum MessagesError {
    #[error(transparent)]
    Cursor(#[from] BadCursor),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The cursor after `m`: `MICROS:ID`.
fn cursor_after(m: &OutboxMessage) -> String {
    format!("{}:{}", m.created_at.timestamp_micros(), m.id)
}

/// Reads a cursor made by [`cursor_after`].
pub fn parse_cursor(s: &str) -> Result<OutboxCursor, BadCursor> {
    let bad = || BadCursor(s.to_owned());
    let (micros, id) = s.split_once(':').ok_or_else(bad)?;
    let created_at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok(OutboxCursor {
        created_at,
        id: id.to_owned(),
    })
}

/// Reads messages from the outbox.
#[derive(Clone)]
pub struct Messages {
    store: Store,
}

impl Messages {
    pub fn new(engine: &Engine) -> Self {
        Self {
            store: engine.store().clone(),
        }
    }

    /// A page of the messages of a journey (of one of its steps) or broadcast, newest first,
    /// with the source's counts. `limit` is capped at [`MAX_PAGE`].
    pub async fn of_source(
        &self,
        source: &MessageSource,
        step: Option<&str>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<MessagePage, MessagesError> {
        let before = before.map(parse_cursor).transpose()?;
        let limit = limit.clamp(1, MAX_PAGE);
        let delivery = self.store.delivery();
        let page = delivery.outbox_from(source, step, before.as_ref(), limit).await?;
        let next = (page.len() == limit as usize)
            .then(|| page.last().map(cursor_after))
            .flatten();
        Ok(MessagePage {
            counts: delivery.outbox_counts(source).await?,
            messages: page.iter().map(MessageView::from).collect(),
            next,
        })
    }

    /// The newest `limit` messages to a profile (capped at [`MAX_PAGE`]).
    pub async fn of_profile(&self, profile: &ProfileId, limit: u32) -> Result<Vec<MessageView>, StoreError> {
        let page = self
            .store
            .delivery()
            .outbox_of(profile, limit.clamp(1, MAX_PAGE))
            .await?;
        Ok(page.iter().map(MessageView::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(status: OutboxStatus, detail: Option<&str>) -> OutboxMessage {
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        OutboxMessage {
            id: "msg_1".into(),
            idempotency_key: "k".into(),
            profile_id: ProfileId::generate(),
            template: "cart".into(),
            class: missive_core::MessageClass::Marketing,
            source: MessageSource::Journey("cart".into()),
            step: Some("send".into()),
            context: serde_json::json!({}),
            status,
            attempts: 0,
            next_attempt_at: at,
            created_at: at,
            sent_at: None,
            recipient: Some("ann@example.com".into()),
            detail: detail.map(str::to_owned),
        }
    }

    #[test]
    fn a_message_says_what_became_of_it_and_why() {
        use MessageState::*;
        for (status, detail, state, reason) in [
            (OutboxStatus::Queued, None, Queued, None),
            (
                OutboxStatus::Queued,
                Some("deferred: quiet_hours"),
                Deferred,
                Some("quiet_hours"),
            ),
            (
                OutboxStatus::Queued,
                Some("retry: relay down"),
                Queued,
                Some("retry: relay down"),
            ),
            (OutboxStatus::Sent, Some("250 ok"), Sent, None),
            (
                OutboxStatus::Failed,
                Some("550 no such user"),
                Failed,
                Some("550 no such user"),
            ),
            (
                OutboxStatus::Skipped,
                Some("no_consent"),
                Skipped,
                Some("no_consent"),
            ),
        ] {
            let view = MessageView::from(&message(status, detail));
            assert_eq!(
                (view.state, view.reason.as_deref()),
                (state, reason),
                "{status:?} {detail:?}"
            );
            assert_eq!(view.next_attempt_at.is_some(), status == OutboxStatus::Queued);
        }
        let json = serde_json::to_value(MessageView::from(&message(OutboxStatus::Sent, None))).unwrap();
        assert!(json.get("recipient").is_none(), "no address in a listing: {json}");
    }

    #[test]
    fn cursors_read_back_and_others_are_refused() {
        let m = message(OutboxStatus::Sent, None);
        let c = parse_cursor(&cursor_after(&m)).unwrap();
        assert_eq!((c.created_at, c.id.as_str()), (m.created_at, "msg_1"));
        for bad in ["", "msg_1", "x:msg_1", "1764000000000000:"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
