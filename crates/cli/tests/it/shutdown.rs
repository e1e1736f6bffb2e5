//! SIGTERM during ingest: the server stops taking requests, commits what it accepted and
//! exits 0; the next start finds everything and keeps the keys of the first.

use std::time::Duration;

use crate::support::{
    Load, LoadPlan, Server, assert_every_acknowledged_event_stored_once, resend_and_expect_duplicates,
    stored_load_events,
};

const PLAN: LoadPlan = LoadPlan {
    clients: 8,
    events_per_batch: 20,
    users: 200,
    prefix: "sigterm",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_commits_accepted_events_and_exits_cleanly() {
    let mut server = Server::start().await;
    let first_keys = server.api().keys().clone();
    assert!(
        server
            .stdout()
            .iter()
            .any(|l| l.contains("these keys were created now")),
        "the first start should announce new keys: {:?}",
        server.stdout()
    );

    let mut load = Load::start(server.api(), PLAN);
    load.run_until(100, Duration::from_secs(2)).await;
    load.disrupt();
    let status = server.terminate().await;
    let report = load.finish().await;
    assert!(
        status.success(),
        "after SIGTERM the server exited with {status}\n{}",
        server.diagnostics()
    );
    assert!(
        report.failures_before_disruption.is_empty(),
        "failures before SIGTERM: {:?}",
        report.failures_before_disruption
    );
    eprintln!(
        "SIGTERM after {} acknowledged batches ({} events); {} requests refused or cut during shutdown",
        report.acked.len(),
        report.acked_events(),
        report.interrupted
    );

    server.restart().await;
    let stdout = server.stdout();
    assert!(
        stdout.iter().any(|l| l.contains("keys: created at first start")),
        "a restart should point at the existing keys: {stdout:?}"
    );
    assert!(
        !stdout
            .iter()
            .any(|l| l.contains("write key:") || l.contains("admin key:")),
        "a restart must not mint or print keys: {stdout:?}"
    );
    assert_eq!(
        server.api().keys(),
        &first_keys,
        "credentials.json changed across a restart"
    );

    let stored = stored_load_events(server.api(), &PLAN).await;
    assert_every_acknowledged_event_stored_once(&report.acked, &stored);
    // The first start's write key still works, and what it sent is still known.
    let sample = &report.acked[..report.acked.len().min(20)];
    resend_and_expect_duplicates(server.api(), sample).await;
}
