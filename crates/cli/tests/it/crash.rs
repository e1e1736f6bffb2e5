//! A `kill -9` in the middle of sustained ingest: what was acknowledged must be there after a
//! restart, exactly once, and a client retrying it must not create duplicates.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use crate::support::{
    Load, LoadPlan, Server, assert_every_acknowledged_event_stored_once, resend_and_expect_duplicates,
    stored_load_events,
};

const PLAN: LoadPlan = LoadPlan {
    clients: 8,
    events_per_batch: 20,
    users: 200,
    prefix: "crash",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_sustained_ingest_loses_no_acknowledged_event() {
    // No timed profile checkpoint: at the kill, the profiles exist only in memory, and the
    // restart must rebuild every one of them from the stored events.
    kill_9_during_ingest_with_checkpoints_every("3600000", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_between_frequent_profile_checkpoints_loses_nothing() {
    // Checkpoints every 5 ms: the kill lands among them, and the restart must replay exactly
    // the events after the last one.
    kill_9_during_ingest_with_checkpoints_every("5", false).await;
}

/// `must_replay`: no checkpoint can have been taken, so the restart must replay events.
async fn kill_9_during_ingest_with_checkpoints_every(flush_interval_ms: &str, must_replay: bool) {
    let mut server =
        Server::start_with_env(&[("MISSIVE_ENGINE__FLUSH_INTERVAL_MS", flush_interval_ms)]).await;
    let mut load = Load::start(server.api(), PLAN);
    load.run_until(100, Duration::from_secs(2)).await;

    load.disrupt();
    let status = server.kill();
    let report = load.finish().await;
    assert_eq!(
        status.signal(),
        Some(9),
        "the server was not killed by SIGKILL but ended with {status}"
    );
    assert!(
        report.failures_before_disruption.is_empty(),
        "failures before the kill: {:?}",
        report.failures_before_disruption
    );
    assert!(
        report.interrupted > 0,
        "no request was in flight at the kill, so the test proved nothing"
    );
    eprintln!(
        "kill -9 after {} acknowledged batches ({} events); {} requests in flight",
        report.acked.len(),
        report.acked_events(),
        report.interrupted
    );

    server.restart().await;
    let log = server.diagnostics();
    assert!(
        !must_replay || log.contains("replayed events stored after the last profile checkpoint"),
        "the restart should have rebuilt the profiles from the event log\n{log}"
    );
    let stored = stored_load_events(server.api(), &PLAN).await;
    assert_every_acknowledged_event_stored_once(&report.acked, &stored);

    // A client that never saw the answers would send everything again.
    resend_and_expect_duplicates(server.api(), &report.acked).await;
    let after_resend = stored_load_events(server.api(), &PLAN).await;
    assert_eq!(
        after_resend.values().sum::<usize>(),
        stored.values().sum::<usize>(),
        "resending acknowledged batches changed the number of stored events"
    );
    assert_every_acknowledged_event_stored_once(&report.acked, &after_resend);
}
