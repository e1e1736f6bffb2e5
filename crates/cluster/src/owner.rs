//! A partition's owner: takes the partition on in the engine (which replays what was stored
//! for it after its checkpoint), then reads its subject of the log and folds what it reads.
//!
//! **Where reading starts.** The owner's position is the store's, not JetStream's: each
//! commit records the last stream sequence it settled for the partition (`partition_log`), in
//! the transaction that stores the events and under the partition's fence. Each tenure (lease
//! token) has a durable consumer of its own, created to start right after that sequence, so
//! what a former owner read and never committed is read again, what it committed is not, and
//! a former owner still running cannot take messages from its successor's consumer.
//! (JetStream's own redelivery would wait for the former owner's acknowledgement deadline.)
//!
//! **Acknowledgements** follow the commit: a message is acked once the engine has committed
//! its event (or found it a duplicate); a message whose record does not validate is terminated
//! and counted. A control record (a step of a merge across partitions, [`Message::Control`])
//! is applied on its own, in its place: the events read before it are committed first, and it
//! is acked once the checkpoint that settles it is committed. A lag gauge per partition (`missive_cluster_partition_lag`) is what JetStream
//! reports pending for the consumer with each batch.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use missive_engine::{Engine, EngineError, LogPosition};
use missive_store::Fence;
use tokio::sync::watch;

use crate::log::{LogConfig, Message};
use crate::partition::Partition;
use crate::stream_in::fetch::next_batch;

/// Why an owner stopped before it was told to.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("partition {0}: taking it on: {1}")]
    Own(Partition, String),
}

/// The durable consumer of one partition's tenure: a former owner that runs on after losing
/// its lease reads from its own consumer, never from its successor's. JetStream deletes a
/// tenure's consumer once nobody has read from it for [`CONSUMER_IDLE`].
pub fn consumer_name(partition: Partition, token: i64) -> String {
    format!("missive-p{partition}-t{token}")
}

/// How long an unread consumer is kept (a former tenure's, or an owner's that died).
pub const CONSUMER_IDLE: Duration = Duration::from_secs(300);

/// Runs partition `fence.partition`'s owner until `stop` turns true or the engine says the
/// partition is not this node's any more.
pub async fn run(
    js: jetstream::Context,
    config: LogConfig,
    engine: Engine,
    seal: Option<std::sync::Arc<crate::seal::LogSeal>>,
    fence: Fence,
    batch: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<(), OwnerError> {
    let partition = fence.partition;
    let token = fence.token;
    let started = Instant::now();
    let replayed = engine
        .own(fence)
        .await
        .map_err(|e| OwnerError::Own(partition, e.to_string()))?;
    tracing::info!(
        partition,
        replayed,
        ms = started.elapsed().as_millis() as u64,
        "cluster: partition taken on"
    );
    let lag = metrics::gauge!("missive_cluster_partition_lag", "partition" => partition.to_string());
    let folded = metrics::counter!("missive_cluster_folded_total", "partition" => partition.to_string());
    let fold_time = metrics::histogram!("missive_cluster_fold_seconds", "partition" => partition.to_string());
    // The consumer, with the idle probe that is valid only for what it read: reopening it
    // (`reading = None`) starts the probe over too.
    let mut reading: Option<(jetstream::consumer::Consumer<pull::Config>, IdleProbe)> = None;
    // How long a merge step waiting for another partition waits before it is read again.
    let mut waiting = Duration::from_millis(50);
    let mut pause = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let (c, idle) = match &mut reading {
            Some((c, idle)) => (c, idle),
            None => match open_consumer(&js, &config, &engine, partition, token).await {
                Ok(c) => {
                    let (c, idle) = reading.insert((c, IdleProbe::default()));
                    (c, idle)
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "cluster: opening the partition's consumer failed; retrying");
                    if sleep_or_stop(&mut stop, pause).await {
                        return Ok(());
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        let messages = tokio::select! {
            m = next_batch(&*c, batch, Duration::from_millis(500)) => m,
            _ = stop.changed() => return Ok(()),
        };
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(partition, error = %e, "cluster: reading the log failed; reopening");
                reading = None;
                if sleep_or_stop(&mut stop, pause).await {
                    return Ok(());
                }
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        pause = Duration::from_millis(100);
        let Some(last) = messages.last() else {
            // Nothing unread: what the stream held before the last look is all committed.
            idle.found_idle(&js, &config, &engine, partition).await;
            continue;
        };
        // Messages came: the last look proves nothing.
        idle.looked = None;
        if let Ok(info) = last.info() {
            lag.set(info.pending as f64);
        }
        // Runs of events are folded together; a control record (a merge step) is applied
        // alone, in its place: the events before it are committed first.
        let mut run = Run::default();
        let mut outcome = Ok(());
        for m in &messages {
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            let at = LogPosition {
                partition,
                seq: i64::try_from(seq).unwrap_or(i64::MAX),
            };
            let payload = match crate::seal::open(seal.as_deref(), &m.payload) {
                Ok(p) => p,
                Err(e) => {
                    // Not dropped: the partition waits until this node can open it.
                    outcome = Err(std::sync::Arc::new(EngineError::Log(e.to_string())));
                    break;
                }
            };
            match Message::decode(&payload).filter(|_| seq > 0) {
                Some(Message::Event(e)) => run.push(*e, at, m),
                Some(Message::Control(control)) => {
                    outcome = run.fold(&engine, &folded, &fold_time).await;
                    if outcome.is_err() {
                        break;
                    }
                    outcome = engine.control(control, at).await;
                    if outcome.is_err() {
                        break;
                    }
                    let _ = m.ack().await;
                }
                None => {
                    tracing::error!(
                        partition,
                        stream_sequence = seq,
                        "cluster: a log record does not validate; terminated"
                    );
                    metrics::counter!("missive_cluster_refused_total").increment(1);
                    let _ = m.ack_with(AckKind::Term).await;
                }
            }
        }
        if outcome.is_ok() {
            outcome = run.fold(&engine, &folded, &fold_time).await;
        }
        match outcome {
            Ok(()) => waiting = Duration::from_millis(50),
            Err(e) if matches!(*e, EngineError::NotOwner(_)) => return Ok(()),
            Err(e) if matches!(*e, EngineError::NotYet(_)) => {
                // A merge step waits for another partition's commit: read it again shortly
                // (from the store's mark, in order), less often the longer it waits.
                tracing::debug!(partition, error = %e, "cluster: waiting for another partition");
                reading = None;
                if sleep_or_stop(&mut stop, waiting).await {
                    return Ok(());
                }
                waiting = (waiting * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                // Not committed: read again from the store's mark.
                tracing::error!(partition, error = %e, "cluster: the engine refused a batch; reading again from the last commit");
                reading = None;
                if sleep_or_stop(&mut stop, Duration::from_millis(500)).await {
                    return Ok(());
                }
            }
        }
    }
}

/// How an idle partition's marks follow the stream, so that the cluster's watermark (the
/// lowest checkpoint mark, which log followers read up to) is not held back by it. The stream's
/// last sequence is read after one empty fetch; if the next fetch is empty too, every message
/// of the partition up to that sequence has been folded and committed (the consumer had
/// nothing left for it), and the engine is told ([`Engine::settle_idle`]).
#[derive(Default)]
struct IdleProbe {
    /// The stream's last sequence, read after an empty fetch.
    looked: Option<u64>,
    /// The last sequence the engine was told about.
    settled: u64,
}

impl IdleProbe {
    async fn found_idle(
        &mut self,
        js: &jetstream::Context,
        config: &LogConfig,
        engine: &Engine,
        partition: Partition,
    ) {
        if let Some(seq) = self.looked.take()
            && seq > self.settled
        {
            let at = LogPosition {
                partition,
                seq: i64::try_from(seq).unwrap_or(i64::MAX),
            };
            if engine.settle_idle(at).await.is_ok() {
                self.settled = seq;
            }
        }
        // Read after this empty fetch: only the next empty fetch proves it.
        if let Ok(stream) = js.get_stream(&config.stream).await {
            self.looked = Some(stream.cached_info().state.last_sequence);
        }
    }
}

/// Events read in a row, folded in one call, and their messages acked after its commit.
#[derive(Default)]
struct Run<'a> {
    events: Vec<missive_core::Event>,
    positions: Vec<LogPosition>,
    messages: Vec<&'a jetstream::Message>,
}

impl<'a> Run<'a> {
    fn push(&mut self, e: missive_core::Event, at: LogPosition, m: &'a jetstream::Message) {
        self.events.push(e);
        self.positions.push(at);
        self.messages.push(m);
    }

    /// Folds the run (emptying it) and acks its messages once committed.
    async fn fold(
        &mut self,
        engine: &Engine,
        folded: &metrics::Counter,
        fold_time: &metrics::Histogram,
    ) -> Result<(), std::sync::Arc<EngineError>> {
        if self.events.is_empty() {
            return Ok(());
        }
        let n = self.events.len();
        let started = Instant::now();
        engine
            .ingest_logged(
                std::mem::take(&mut self.events),
                std::mem::take(&mut self.positions),
            )
            .await?;
        fold_time.record(started.elapsed().as_secs_f64());
        folded.increment(n as u64);
        for m in std::mem::take(&mut self.messages) {
            // A lost ack costs nothing: the next owner starts from the store's mark.
            let _ = m.ack().await;
        }
        Ok(())
    }
}

/// Waits `pause` unless `stop` fires first (then true).
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// The partition's durable consumer, created again to start right after the store's mark.
async fn open_consumer(
    js: &jetstream::Context,
    config: &LogConfig,
    engine: &Engine,
    partition: Partition,
    token: i64,
) -> Result<jetstream::consumer::Consumer<pull::Config>, String> {
    let mark = engine
        .store()
        .events()
        .partition_marks(vec![partition])
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .unwrap_or_default();
    let stream = js.get_stream(&config.stream).await.map_err(|e| e.to_string())?;
    let name = consumer_name(partition, token);
    // Gone already is fine; anything else shows when creating.
    let _ = stream.delete_consumer(&name).await;
    let start = u64::try_from(mark.applied_seq).unwrap_or(0) + 1;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            filter_subject: config.subject(partition),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            // Longer than the slowest commit: a message is not redelivered while its batch
            // is being committed.
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 20_000,
            inactive_threshold: CONSUMER_IDLE,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())
}
