//! `missive bench webhooks`: outbound webhook deliveries per second to a local receiver, and
//! the latency from a person entering a segment (the event that puts them there, ingested) to
//! the webhook request arriving. The receiver is an axum server on loopback that answers 200
//! at once; deliveries are signed as in production; the store is SQLite in a temporary
//! directory.

use crate::bench::percentile;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use missive_core::SystemClock;
use missive_core::message::validate_message;
use missive_engine::profiles::ProfileKey;
use serde_json::{Value, json};

#[derive(clap::Args, Debug, Clone)]
pub struct WebhooksBench {
    /// People entering the segment at once, for the throughput run.
    #[arg(long, default_value_t = 20_000)]
    people: usize,
    /// Seconds of the latency run (one entry every 20 ms).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The engine's profile checkpoint interval: segment changes are published, and so
    /// queued, when their checkpoint is durable.
    #[arg(long, default_value_t = 250)]
    flush_interval_ms: u64,
}

/// Arrival time of each delivery by profile id, and the count.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver() -> anyhow::Result<(std::net::SocketAddr, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let at = Instant::now();
                if let Some(p) = body["data"]["profile_id"].as_str()
                    && let Ok(mut m) = seen.lock()
                {
                    m.entry(p.to_owned()).or_insert(at);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, arrivals))
}

fn identify(user: &str, tier: &str) -> anyhow::Result<missive_core::Event> {
    validate_message(
        json!({"type": "identify", "userId": user, "traits": {"tier": tier}}),
        None,
        None,
        chrono::Utc::now(),
    )
    .map_err(|r| anyhow::anyhow!("bench identify refused: {}", r.code))
}

pub async fn run(b: WebhooksBench) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = missive_store::open(&format!("sqlite:{}", dir.path().join("missive.db").display())).await?;
    missive_engine::auth::ensure_workspace(&store).await?;
    let (addr, arrivals) = receiver().await?;
    let config = missive_server::app::AppConfig {
        engine: missive_engine::EngineConfig {
            flush_interval: Duration::from_millis(b.flush_interval_ms),
            ..Default::default()
        },
        webhooks: missive_sending::webhooks::WebhookConfig {
            allow_internal: vec!["127.0.0.0/8".parse()?],
            ..Default::default()
        },
        ..Default::default()
    };
    let keyring = Arc::new(missive_privacy::Keyring::generate());
    let missive =
        missive_server::app::App::build(store, keyring, Arc::new(SystemClock), config, None).await?;
    let engine = missive.engine().clone();
    let webhooks = missive.state().webhooks.clone();
    engine.ingest(vec![identify("seed", "bronze")?]).await?;
    engine.sync().await?;
    missive_engine::segments::save_segment(&engine, "gold", r#"traits.tier == "gold""#, None)
        .await
        .context("saving the bench segment")?;
    webhooks
        .create(serde_json::from_value(json!({
            "name": "bench", "url": format!("http://{addr}/hook"), "events": ["segment.entered"],
            "rate_per_second": 10000,
        }))?)
        .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = webhooks.clone().spawn(Duration::from_millis(250), stop_rx);
    println!(
        "missive bench webhooks: SQLite, profile checkpoint every {} ms, {} cores",
        b.flush_interval_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Throughput: `people` entries at once.
    let started = Instant::now();
    for chunk in (0..b.people).collect::<Vec<_>>().chunks(1_000) {
        let events = chunk
            .iter()
            .map(|i| identify(&format!("t{i}"), "gold"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        engine.ingest(events).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len();
        if n >= b.people || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (count, last) = {
        let m = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        (m.len(), m.values().max().copied())
    };
    let secs = last.map_or(f64::NAN, |l| l.duration_since(started).as_secs_f64());
    println!(
        "throughput: {count} of {} entries delivered in {secs:.2} s from the first ingest: {:.0} deliveries/s",
        b.people,
        count as f64 / secs
    );

    // Latency: one entry every 20 ms.
    let mut sent: Vec<(String, Instant)> = Vec::new();
    let run_started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut i = 0;
    while run_started.elapsed() < Duration::from_secs(b.seconds) {
        tick.tick().await;
        i += 1;
        let user = format!("l{i}");
        let t0 = Instant::now();
        engine.ingest(vec![identify(&user, "gold")?]).await?;
        sent.push((user, t0));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    engine.sync().await?;
    let mut ms = Vec::new();
    let mut missing = 0;
    for (user, t0) in &sent {
        let Some(p) = engine
            .profiles()
            .find_bare(&ProfileKey::Any(user.clone()))
            .await?
        else {
            missing += 1;
            continue;
        };
        let at = arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .get(p.id.as_str())
            .copied();
        match at {
            Some(at) => ms.push(at.duration_since(*t0).as_secs_f64() * 1e3),
            None => missing += 1,
        }
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "segment entry → webhook request ({} entries, {missing} not delivered): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    let _ = stop_tx.send(true);
    let _ = task.await;
    drop(missive);
    engine.shutdown().await;
    Ok(())
}
