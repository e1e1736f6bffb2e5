//! The two writers: group commit of events, and checkpoints once their events are stored.

use super::*;

pub(super) fn fail(acks: impl IntoIterator<Item = Ack>, sync_acks: Vec<SyncAck>, e: &Arc<EngineError>) {
    for ack in acks {
        let _ = ack.send(Err(e.clone()));
    }
    for ack in sync_acks {
        let _ = ack.send(Err(e.clone()));
    }
}

/// Most events one commit carries when the events writer merges queued batches.
pub(super) const MAX_GROUP_EVENTS: usize = 50_000;

pub(super) async fn run_events_writer(
    store: Store,
    mut rx: mpsc::Receiver<EventJob>,
    progress: Arc<Progress>,
) {
    while let Some(first) = rx.recv().await {
        // Everything the applier prepared while the last commit ran goes into this one: one
        // transaction and one fsync for all of it, in order.
        let mut group = vec![first];
        let mut queued = group[0].events;
        while queued < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    queued += job.events;
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let current = progress.epoch.load(Ordering::SeqCst);
        let mut batch = EventBatch::default();
        let mut acks = Vec::new();
        let mut events = 0;
        let mut last_batch = 0;
        for job in group {
            last_batch = job.batch_seq;
            if job.epoch != current {
                // Prepared on top of a batch that failed to commit: refuse it; senders retry.
                let e = Arc::new(EngineError::Store(StoreError::Task(
                    "an earlier batch failed; retry".into(),
                )));
                fail(job.acks.into_iter().map(|(a, _)| a), Vec::new(), &e);
                continue;
            }
            events += job.events;
            batch.events.extend(job.batch.events);
            batch.repoint.extend(job.batch.repoint);
            batch.activity.extend(job.batch.activity);
            for fence in job.batch.fences {
                if !batch.fences.contains(&fence) {
                    batch.fences.push(fence);
                }
            }
            batch.partitions.extend(job.batch.partitions);
            batch.applied.extend(job.batch.applied);
            acks.extend(job.acks);
        }
        batch.activity = missive_store::ActivityCount::summed(std::mem::take(&mut batch.activity));
        // One row per partition: the furthest point of the merged batches.
        let mut applied = std::collections::BTreeMap::<u16, i64>::new();
        for (p, seq) in std::mem::take(&mut batch.applied) {
            let furthest = applied.entry(p).or_default();
            *furthest = (*furthest).max(seq);
        }
        batch.applied = applied.into_iter().collect();
        let started = Instant::now();
        let span = tracing::debug_span!("commit", kind = "events", events);
        match tracing::Instrument::instrument(store.events().commit_events(batch), span).await {
            Ok(()) => {
                progress.record_write(None);
                progress.events_committed.send_replace(last_batch);
                metrics::histogram!("missive_store_commit_seconds", "kind" => "events")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("missive_commit_batch_events").record(events as f64);
                tracing::debug!(
                    events,
                    commit_ms = started.elapsed().as_secs_f64() * 1e3,
                    "events committed"
                );
                for (ack, outcome) in acks {
                    let _ = ack.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events, "group commit failed");
                progress.record_write(Some(&e));
                metrics::counter!("missive_store_commit_failures_total", "kind" => "events").increment(1);
                progress.epoch.fetch_add(1, Ordering::SeqCst);
                fail(
                    acks.into_iter().map(|(a, _)| a),
                    Vec::new(),
                    &Arc::new(EngineError::Store(e)),
                );
            }
        }
        progress.events_done.send_replace(last_batch);
    }
    // Wake a checkpoint writer waiting for events that will never come.
    progress.events_done.send_replace(u64::MAX);
}

pub(super) async fn run_checkpoint_writer(
    store: Store,
    mut rx: mpsc::Receiver<CheckpointJob>,
    progress: Arc<Progress>,
) {
    let mut committed = progress.events_committed.subscribe();
    while let Some(job) = rx.recv().await {
        let through = job.after_events;
        // A checkpoint may only claim events that are stored: wait for the events writer to
        // commit the batches handed to it before, unless a failure has made this checkpoint void.
        let stale = loop {
            if job.epoch != progress.epoch.load(Ordering::SeqCst) {
                break true;
            }
            if *committed.borrow_and_update() >= through {
                break false;
            }
            if *progress.events_done.borrow() == u64::MAX {
                break true;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), committed.changed()).await;
        };
        if stale {
            let e = Arc::new(EngineError::Store(StoreError::Task(
                "an earlier batch failed; retry".into(),
            )));
            fail(Vec::new(), job.sync_acks, &e);
            progress.checkpoints_done.send_replace(job.batch_seq);
            continue;
        }
        let started = Instant::now();
        let profiles = job.checkpoint.profiles.len();
        let published =
            (progress.segment_changes.receiver_count() > 0).then(|| job.checkpoint.segment_changes.clone());
        let span = tracing::debug_span!("commit", kind = "checkpoint", profiles);
        match tracing::Instrument::instrument(store.events().commit_checkpoint(job.checkpoint), span).await {
            Ok(()) => {
                progress.record_write(None);
                for change in published.into_iter().flatten() {
                    let _ = progress.segment_changes.send(change);
                }
                progress.flushed_batch.store(job.batch_seq, Ordering::SeqCst);
                metrics::histogram!("missive_store_commit_seconds", "kind" => "checkpoint")
                    .record(started.elapsed().as_secs_f64());
                tracing::debug!(
                    profiles,
                    commit_ms = started.elapsed().as_secs_f64() * 1e3,
                    "checkpoint committed"
                );
                for ack in job.sync_acks {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, profiles, "checkpoint failed");
                progress.record_write(Some(&e));
                metrics::counter!("missive_store_commit_failures_total", "kind" => "checkpoint").increment(1);
                progress.epoch.fetch_add(1, Ordering::SeqCst);
                fail(Vec::new(), job.sync_acks, &Arc::new(EngineError::Store(e)));
            }
        }
        progress.checkpoints_done.send_replace(job.batch_seq);
    }
}
