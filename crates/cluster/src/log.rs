//! The cluster's log: NATS JetStream. Ingest nodes append accepted events to one stream with
//! a subject per partition (`<prefix>.p.<n>`); each partition's owner reads its subject back
//! (`owner`). An append answers only after JetStream acknowledged every publish, so a 200 means
//! the event is in the stream, durable by the stream's storage and replicas (docs/operations.md:
//! file storage always, 3 replicas in production).
//!
//! **Deduplication** is twofold: each publish carries the event's `messageId` as
//! `Nats-Msg-Id`, so JetStream drops a repeat within its duplicate window (2 minutes unless
//! configured); the owner's fold drops older repeats by the message id stored in PostgreSQL.
//!
//! **Records.** A message is one event as accepted: its kind, its stored body (trust and
//! provenance included) and its two times, as JSON ([`Record`]). The owner rebuilds the event
//! with the same function replay uses, so folding from the log and replaying from the store
//! agree.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use chrono::{DateTime, Utc};
use missive_core::{Event, EventKind};
use missive_engine::IngestOutcome;
use missive_engine::log::{AppendResult, Control, Outbound, SendResult};
use serde::{Deserialize, Serialize};

use crate::partition::{Partition, PartitionCount};
use crate::router::Router;

/// Where the log is and how it is kept (`[cluster]` in missive.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The NATS server(s), `nats://host:4222`.
    pub nats: String,
    /// The JetStream stream's name.
    pub stream: String,
    /// Subjects are `<prefix>.p.<partition>`.
    pub subject_prefix: String,
    /// Copies JetStream keeps of each message: 3 in production (a NATS cluster of 3 or 5),
    /// 1 on a single NATS server.
    pub replicas: usize,
    /// How long the stream keeps messages: longer than the longest outage a partition's owner
    /// may need to catch up from.
    pub max_age: Duration,
    /// The window JetStream drops repeated message ids in.
    pub duplicate_window: Duration,
    /// How long an append waits for JetStream's acknowledgements before answering 503.
    pub publish_timeout: Duration,
}

impl LogConfig {
    pub fn new(nats: impl Into<String>) -> Self {
        LogConfig {
            nats: nats.into(),
            stream: "MISSIVE_EVENTS".into(),
            subject_prefix: "missive.events".into(),
            replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            publish_timeout: Duration::from_secs(5),
        }
    }

    /// The subject of one partition.
    pub fn subject(&self, partition: Partition) -> String {
        format!("{}.p.{partition}", self.subject_prefix)
    }
}

/// Why the log could not be reached or set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("connecting to NATS at {0}: {1}")]
    Connect(String, String),
    #[error("JetStream stream {0:?}: {1}")]
    Stream(String, String),
}

/// One event as the log carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub kind: EventKind,
    /// Microseconds since the epoch.
    pub timestamp_us: i64,
    pub received_at_us: i64,
    pub body: serde_json::Value,
}

impl Record {
    pub fn of(e: &Event) -> Record {
        Record {
            kind: e.kind,
            timestamp_us: e.timestamp.timestamp_micros(),
            received_at_us: e.received_at.timestamp_micros(),
            body: e.body.clone(),
        }
    }

    /// The event back, as replay would rebuild it; `None` when the body no longer validates.
    pub fn event(self) -> Option<Event> {
        let at = |us: i64| DateTime::<Utc>::from_timestamp_micros(us);
        missive_engine::logged_event(
            self.kind,
            self.body,
            at(self.timestamp_us)?,
            at(self.received_at_us)?,
        )
    }
}

/// What one message of the log holds: an event, or a control record one partition's owner
/// sent another (a step of a merge across partitions: `{"control": "join", …}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Event(Box<Event>),
    Control(Control),
}

impl Message {
    /// The message decoded; `None` when it does not validate (the owner terminates it).
    pub fn decode(payload: &[u8]) -> Option<Message> {
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        if value.get("control").is_some() {
            return serde_json::from_value(value).ok().map(Message::Control);
        }
        serde_json::from_value::<Record>(value)
            .ok()
            .and_then(Record::event)
            .map(|e| Message::Event(Box::new(e)))
    }
}

/// The payload of a record sent from one partition to another.
fn outbound_payload(record: &Outbound) -> Result<Vec<u8>, serde_json::Error> {
    match record {
        Outbound::Forward { event, .. } => serde_json::to_vec(&Record::of(event)),
        Outbound::Control { control, .. } => serde_json::to_vec(control),
    }
}

/// The appending side of the log, shared by a node's request handlers.
#[derive(Clone)]
pub struct ClusterLog {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    config: LogConfig,
    router: Router,
    /// Seals every record published (`None`: encryption is off, records go in clear).
    seal: Option<Arc<crate::seal::LogSeal>>,
}

/// Connects to NATS (retrying in the background if it is not up yet) and makes sure the
/// stream exists with the configured subjects, storage and replicas.
pub async fn connect_jetstream(config: &LogConfig, name: &str) -> Result<jetstream::Context, LogError> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connect(&config.nats)
        .await
        .map_err(|e| LogError::Connect(config.nats.clone(), e.to_string()))?;
    let mut js = jetstream::new(client);
    js.set_timeout(config.publish_timeout);
    Ok(js)
}

/// The stream, created when missing.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &LogConfig,
) -> Result<jetstream::stream::Stream, LogError> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.p.*", config.subject_prefix)],
        storage: jetstream::stream::StorageType::File,
        num_replicas: config.replicas,
        max_age: config.max_age,
        duplicate_window: config.duplicate_window,
        ..Default::default()
    })
    .await
    .map_err(|e| LogError::Stream(config.stream.clone(), e.to_string()))
}

impl ClusterLog {
    pub async fn connect(
        config: LogConfig,
        router: Router,
        seal: Option<Arc<crate::seal::LogSeal>>,
    ) -> Result<ClusterLog, LogError> {
        let js = connect_jetstream(&config, "missive-cluster-log").await?;
        ensure_stream(&js, &config).await?;
        Ok(ClusterLog {
            inner: Arc::new(Inner {
                js,
                config,
                router,
                seal,
            }),
        })
    }

    /// A record's payload as published: sealed when the log is.
    fn sealed(&self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        match &self.inner.seal {
            Some(seal) => seal.seal(&payload),
            None => Ok(payload),
        }
    }

    pub fn partitions(&self) -> PartitionCount {
        self.inner.router.partitions()
    }

    /// Routes `events` to their partitions and publishes them all, then waits for every
    /// acknowledgement (the publishes are pipelined).
    pub async fn append_events(&self, events: Vec<Event>) -> AppendResult {
        let partitions = self
            .inner
            .router
            .route(&events)
            .await
            .map_err(|e| format!("routing the events: {e}"))?;
        let mut pending: Vec<PublishAckFuture> = Vec::with_capacity(events.len());
        let mut per_partition: HashMap<Partition, u64> = HashMap::new();
        for (e, partition) in events.iter().zip(partitions) {
            let payload = self.sealed(serde_json::to_vec(&Record::of(e)).map_err(|e| e.to_string())?)?;
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(e.message_id.as_str());
            let ack = self
                .inner
                .js
                .send_publish(self.inner.config.subject(partition), publish)
                .await
                .map_err(|e| format!("publishing to JetStream: {e}"))?;
            pending.push(ack);
            *per_partition.entry(partition).or_default() += 1;
        }
        let mut outcome = IngestOutcome::default();
        for ack in pending {
            let ack = ack
                .await
                .map_err(|e| format!("JetStream did not acknowledge: {e}"))?;
            if ack.duplicate {
                outcome.duplicates += 1;
            } else {
                outcome.stored += 1;
            }
        }
        for (partition, n) in per_partition {
            metrics::counter!("missive_cluster_published_total", "partition" => partition.to_string())
                .increment(n);
        }
        Ok(outcome)
    }
}

impl ClusterLog {
    /// Publishes records from one partition's owner to others, each under its own message
    /// id, and waits for every acknowledgement.
    pub async fn send_records(&self, records: Vec<Outbound>) -> SendResult {
        let mut pending: Vec<PublishAckFuture> = Vec::with_capacity(records.len());
        for r in &records {
            let payload = self.sealed(outbound_payload(r).map_err(|e| e.to_string())?)?;
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(r.message_id());
            let ack = self
                .inner
                .js
                .send_publish(self.inner.config.subject(r.partition()), publish)
                .await
                .map_err(|e| format!("publishing to JetStream: {e}"))?;
            pending.push(ack);
        }
        let mut seqs = Vec::with_capacity(pending.len());
        for ack in pending {
            let ack = ack
                .await
                .map_err(|e| format!("JetStream did not acknowledge: {e}"))?;
            seqs.push(i64::try_from(ack.sequence).unwrap_or(i64::MAX));
        }
        Ok(seqs)
    }
}

impl missive_engine::EventLog for ClusterLog {
    fn append(&self, events: Vec<Event>) -> Pin<Box<dyn Future<Output = AppendResult> + Send + '_>> {
        Box::pin(self.append_events(events))
    }

    fn send(&self, records: Vec<Outbound>) -> Pin<Box<dyn Future<Output = SendResult> + Send + '_>> {
        Box::pin(self.send_records(records))
    }

    fn partitions(&self) -> u16 {
        self.inner.router.partitions().get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_gives_back_the_event_it_was_made_of() {
        let now = Utc::now();
        let body = serde_json::json!({"type": "track", "event": "Order Completed", "userId": "u-1",
            "messageId": "m-1", "properties": {"revenue": 12.5}});
        let e = missive_core::message::validate_message(body, None, None, now).unwrap();
        let back = Record::of(&e).event().unwrap();
        assert_eq!(back.message_id, e.message_id);
        assert_eq!(back.user_id.as_deref(), Some("u-1"));
        assert_eq!(back.name, "Order Completed");
        assert_eq!(back.timestamp.timestamp_micros(), e.timestamp.timestamp_micros());
        assert_eq!(
            back.received_at.timestamp_micros(),
            e.received_at.timestamp_micros()
        );
        assert_eq!(back.body, e.body);
    }

    #[test]
    fn messages_are_events_or_controls() {
        let now = Utc::now();
        let body = serde_json::json!({"type": "identify", "userId": "u-1", "messageId": "m-1"});
        let e = missive_core::message::validate_message(body, None, None, now).unwrap();
        let forward = Outbound::Forward {
            partition: 3,
            message_id: "f:1:9".into(),
            event: Box::new(e.clone()),
        };
        match Message::decode(&outbound_payload(&forward).unwrap()) {
            Some(Message::Event(back)) => assert_eq!(back.message_id, e.message_id),
            other => panic!("{other:?}"),
        }
        let join = Control::Join {
            local: missive_engine::log::JoinSide::Identity(missive_core::IdentityKey::anonymous_id("a-1")),
            with: missive_core::ProfileId::generate(),
            with_partition: 2,
            with_users: vec!["u-1".into()],
            cause: "m-1".into(),
        };
        let sent = Outbound::Control {
            partition: 1,
            message_id: "j:2:7:0".into(),
            control: join.clone(),
        };
        let payload = outbound_payload(&sent).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&payload).unwrap()["control"],
            "join"
        );
        assert_eq!(Message::decode(&payload), Some(Message::Control(join)));
        assert_eq!(Message::decode(b"{\"control\": \"unknown\"}"), None);
        assert_eq!(Message::decode(b"not json"), None);
    }

    #[test]
    fn subjects_name_the_partition() {
        assert_eq!(LogConfig::new("nats://x").subject(7), "missive.events.p.7");
    }
}
