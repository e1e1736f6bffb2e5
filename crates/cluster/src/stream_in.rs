//! A JetStream stream as an ingest source for external producers (a shop's order service, a
//! Kafka bridge): each message is one Segment-format message (`{"type": "track", "userId": …,
//! "event": …, "messageId": …}`), as `POST /v1/track` takes it, with a server write key's trust.
//!
//! **At least once, stored once.** missive reads with a durable pull consumer of its own and
//! explicit acknowledgements. It acknowledges a message only after the engine has committed
//! its event (`Engine::ingest` answers once durable), so a crash or restart redelivers what
//! was not yet committed. A redelivered or repeated message is stored once: by its
//! `messageId`, the same check as the HTTP API. A message that is not valid (not JSON, not an
//! object, a missing `userId`/`anonymousId`, …) is refused for good: it is terminated (no
//! redelivery), counted in `missive_stream_in_refused_total` and logged with its stream
//! sequence, so it can be read from the stream. It is never stored half-way.
//!
//! When NATS is unreachable the source waits and retries (async-nats reconnects by itself);
//! ingest through HTTP is unaffected.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use chrono::Utc;
use fetch::next_batch;
use missive_core::Trust;
use missive_core::message::validate_message;
use missive_engine::Engine;
use serde::Deserialize;
use tokio::sync::watch;

/// Where an ingest stream is and how missive reads it (`[streams.ingest]` in missive.toml).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StreamIn {
    /// The NATS server, `nats://host:4222`.
    pub nats: String,
    /// The JetStream stream producers publish to (created by them, or by missive with
    /// `create = true`).
    pub stream: String,
    /// Subjects of the stream missive reads (default: all of them).
    #[serde(default)]
    pub subject: Option<String>,
    /// The durable consumer's name: missive's position in the stream survives restarts.
    #[serde(default = "default_durable")]
    pub durable: String,
    /// Create the stream (file storage, subject `subject`) when it does not exist.
    #[serde(default)]
    pub create: bool,
    /// Messages read per batch.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_durable() -> String {
    "missive-ingest".into()
}

fn default_batch() -> usize {
    500
}

/// Why the source stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamInError {
    #[error("connecting to NATS at {0}: {1}")]
    Connect(String, String),
    #[error("JetStream stream {0:?}: {1}")]
    Stream(String, String),
    #[error("the durable consumer {0:?}: {1}")]
    Consumer(String, String),
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    pub read: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub refused: usize,
}

/// A running source: reads until `stop` turns true.
pub struct Source {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    engine: Engine,
    batch: usize,
}

/// Connects, finds (or creates) the stream and the durable consumer.
pub async fn connect(config: &StreamIn, engine: Engine) -> Result<Source, StreamInError> {
    let client = async_nats::ConnectOptions::new()
        .name("missive-stream-in")
        .connect(&config.nats)
        .await
        .map_err(|e| StreamInError::Connect(config.nats.clone(), e.to_string()))?;
    let js = jetstream::new(client);
    let stream = if config.create {
        js.get_or_create_stream(jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: vec![
                config
                    .subject
                    .clone()
                    .unwrap_or_else(|| format!("{}.>", config.stream)),
            ],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| StreamInError::Stream(config.stream.clone(), e.to_string()))?
    } else {
        js.get_stream(&config.stream)
            .await
            .map_err(|e| StreamInError::Stream(config.stream.clone(), e.to_string()))?
    };
    let consumer = stream
        .get_or_create_consumer(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                filter_subject: config.subject.clone().unwrap_or_default(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                // Longer than the slowest commit: a message is not redelivered while its
                // batch is being committed.
                ack_wait: Duration::from_secs(60),
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| StreamInError::Consumer(config.durable.clone(), e.to_string()))?;
    Ok(Source {
        consumer,
        engine,
        batch: config.batch.clamp(1, 10_000),
    })
}

impl Source {
    /// Reads one batch (waiting at most `wait` for the first message), ingests its valid
    /// messages, and acknowledges each once its fate is durable.
    pub async fn batch(&self, wait: Duration) -> Result<BatchOutcome, StreamInError> {
        let messages = next_batch(&self.consumer, self.batch, wait)
            .await
            .map_err(|e| StreamInError::Consumer("fetch".into(), e))?;
        let mut out = BatchOutcome {
            read: messages.len(),
            ..BatchOutcome::default()
        };
        if messages.is_empty() {
            return Ok(out);
        }
        let now = Utc::now();
        let mut events = Vec::with_capacity(messages.len());
        let mut valid = Vec::with_capacity(messages.len());
        for m in &messages {
            let parsed = serde_json::from_slice::<serde_json::Value>(&m.payload)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|v| {
                    validate_message(v, None, None, now).map_err(|r| format!("{} ({})", r.message, r.field))
                });
            match parsed {
                Ok(mut event) => {
                    event.set_trust(Trust::Server);
                    events.push(event);
                    valid.push(m);
                }
                Err(why) => {
                    let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
                    tracing::warn!(subject = %m.subject, stream_sequence = seq, %why, "stream ingest: message refused for good");
                    metrics::counter!("missive_stream_in_refused_total").increment(1);
                    out.refused += 1;
                    if let Err(e) = m.ack_with(AckKind::Term).await {
                        tracing::warn!(error = %e, "stream ingest: terminating a refused message failed; it will come again");
                    }
                }
            }
        }
        if events.is_empty() {
            return Ok(out);
        }
        match self.engine.ingest(events).await {
            Ok(outcome) => {
                out.stored = outcome.stored;
                out.duplicates = outcome.duplicates;
                for m in valid {
                    // A lost ack means a redelivery, which the message id makes harmless.
                    if let Err(e) = m.ack().await {
                        tracing::warn!(error = %e, "stream ingest: an ack was lost; the message will be stored once anyway");
                    }
                }
                metrics::counter!("missive_stream_in_events_total").increment(out.stored as u64);
            }
            Err(e) => {
                // Not committed: let JetStream deliver them again, soon.
                tracing::error!(error = %e, "stream ingest: the engine refused the batch; it will be redelivered");
                for m in valid {
                    let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                }
            }
        }
        Ok(out)
    }

    /// Reads batches until `stop` turns true; a failure is logged and retried after a pause.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut pause = Duration::from_millis(200);
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                r = self.batch(Duration::from_secs(1)) => match r {
                    Ok(_) => pause = Duration::from_millis(200),
                    Err(e) => {
                        tracing::warn!(error = %e, "stream ingest: reading failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(10));
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }
}

/// The fetch of one batch (the partition owners' too).
pub(crate) mod fetch {
    use std::time::Duration;

    use async_nats::jetstream::{Message, consumer::Consumer, consumer::pull};
    use futures_util::StreamExt;

    pub async fn next_batch(
        consumer: &Consumer<pull::Config>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>, String> {
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            out.push(m.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }
}

/// Runs the source in the background until `stop` turns true: connects (retrying, with the
/// reason logged, while NATS or the stream is not there), then reads.
pub fn spawn(config: StreamIn, engine: Engine, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(500);
        loop {
            if *stop.borrow() {
                return;
            }
            match connect(&config, engine.clone()).await {
                Ok(source) => {
                    tracing::info!(stream = %config.stream, nats = %config.nats, "stream ingest: reading");
                    source.run(stop).await;
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "stream ingest: not reading yet; retrying");
                    let mut stop = stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.changed() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    })
}
