//! missive's change stream on NATS JetStream (`[streams.changes]`): the notices outbound
//! webhooks deliver, published to `<prefix>.<kind>` (for example
//! `missive.changes.segment.entered`) in a stream of their own, each with its notice id as
//! `Nats-Msg-Id`. Consumers read it with their own durable consumers; what it carries and
//! when is `missive_sending::webhooks::changes`. The connection is made on the first publish
//! and re-made after a failure, so missive starts while NATS is down.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use missive_sending::webhooks::changes::{ChangeSink, PublishResult};
use missive_webhooks::EventType;
use serde::Deserialize;
use tokio::sync::Mutex;

/// Where the change stream goes (`[streams.changes]` in missive.toml).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StreamOut {
    /// The NATS server, `nats://host:4222`.
    pub nats: String,
    /// The JetStream stream, created when missing (file storage).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Subjects are `<subject_prefix>.<kind>`.
    #[serde(default = "default_prefix")]
    pub subject_prefix: String,
    /// The kinds carried (`segment.entered`, `consent.changed`, `message.sent`, …; the
    /// webhook event types). Default: all of them.
    #[serde(default)]
    pub kinds: Option<Vec<EventType>>,
    /// How long the stream keeps messages, in hours.
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u64,
}

fn default_stream() -> String {
    "MISSIVE_CHANGES".into()
}

fn default_prefix() -> String {
    "missive.changes".into()
}

fn default_max_age_hours() -> u64 {
    7 * 24
}

impl StreamOut {
    /// The kinds the stream carries.
    pub fn kinds(&self) -> Vec<EventType> {
        match &self.kinds {
            Some(k) => k.clone(),
            None => EventType::ALL
                .into_iter()
                .filter(|k| *k != EventType::Test)
                .collect(),
        }
    }

    /// The subject of one kind.
    pub fn subject(&self, kind: &str) -> String {
        format!("{}.{kind}", self.subject_prefix)
    }
}

/// The sink the webhook dispatcher publishes the change stream to.
pub struct JetStreamChanges {
    config: StreamOut,
    js: Mutex<Option<jetstream::Context>>,
}

impl JetStreamChanges {
    pub fn new(config: StreamOut) -> Self {
        JetStreamChanges {
            config,
            js: Mutex::new(None),
        }
    }

    /// The change stream as the dispatcher takes it.
    pub fn change_stream(config: StreamOut) -> missive_sending::webhooks::changes::ChangeStream {
        let kinds = config.kinds();
        missive_sending::webhooks::changes::ChangeStream {
            sink: std::sync::Arc::new(JetStreamChanges::new(config)),
            kinds,
        }
    }

    async fn context(&self) -> Result<jetstream::Context, String> {
        let mut held = self.js.lock().await;
        if let Some(js) = &*held {
            return Ok(js.clone());
        }
        let client = async_nats::ConnectOptions::new()
            .name("missive-change-stream")
            .connection_timeout(Duration::from_secs(5))
            .connect(&self.config.nats)
            .await
            .map_err(|e| format!("connecting to NATS at {}: {e}", self.config.nats))?;
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(5));
        js.get_or_create_stream(jetstream::stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            storage: jetstream::stream::StorageType::File,
            max_age: Duration::from_secs(self.config.max_age_hours.saturating_mul(3600)),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("JetStream stream {:?}: {e}", self.config.stream))?;
        *held = Some(js.clone());
        Ok(js)
    }

    async fn publish_one(&self, kind: &str, id: &str, body: Vec<u8>) -> PublishResult {
        let js = self.context().await?;
        let message = PublishMessage::build().payload(body.into()).message_id(id);
        let sent = async {
            js.send_publish(self.config.subject(kind), message)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = sent {
            // Connect afresh next time (a new server, a recreated stream).
            *self.js.lock().await = None;
            return Err(format!("publishing to JetStream: {e}"));
        }
        Ok(())
    }
}

impl ChangeSink for JetStreamChanges {
    fn publish<'a>(
        &'a self,
        kind: &'a str,
        id: &'a str,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = PublishResult> + Send + 'a>> {
        Box::pin(self.publish_one(kind, id, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_carry_every_kind_but_tests() {
        let config: StreamOut = serde_json::from_str(r#"{"nats": "nats://127.0.0.1:4222"}"#).unwrap();
        assert_eq!(config.stream, "MISSIVE_CHANGES");
        assert_eq!(
            config.subject("segment.entered"),
            "missive.changes.segment.entered"
        );
        let kinds = config.kinds();
        assert!(kinds.contains(&EventType::ConsentChanged) && !kinds.contains(&EventType::Test));
        let some: StreamOut =
            serde_json::from_str(r#"{"nats": "nats://x", "kinds": ["segment.entered", "message.sent"]}"#)
                .unwrap();
        assert_eq!(
            some.kinds(),
            vec![EventType::SegmentEntered, EventType::MessageSent]
        );
    }
}
