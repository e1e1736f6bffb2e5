//! `missive bench ingest`: sustained, durable ingest through the HTTP API on loopback, with
//! profile updates, against a fresh store. Prints events/s and acknowledgement latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use missive_core::SystemClock;
use missive_engine::auth::ensure_workspace;
use missive_store::{PostgresStore, SqliteStore, Store};
use rand::Rng;

use crate::config::Config;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Durable ingest through /v1/batch and /v1/track.
    Ingest(IngestBench),
    /// Segment membership per event, and backfill.
    Segments(crate::bench_segments::SegmentsBench),
    /// Personalized e-mail renders per second on one core.
    Render(crate::bench_render::RenderBench),
    /// Subject-line bandits by simulation: opens lost by a fixed split, test-then-winner and
    /// Thompson sampling over waves.
    Bandit(crate::bench_bandit::BanditBench),
    /// Journeys and broadcasts to an SMTP sink: hand-over latency and throughput.
    Delivery {
        #[command(subcommand)]
        what: crate::bench_delivery::DeliveryBench,
    },
    /// Outbound webhooks to a local receiver: deliveries per second, and segment entry →
    /// webhook request latency.
    Webhooks(crate::bench_webhooks::WebhooksBench),
    /// Model training (K-Means, gradient boosting, BG/NBD) and live scoring, side by side
    /// with scikit-learn and lifetimes (bench/models/run.sh).
    Models(crate::bench_models::ModelsBench),
    /// Recommendations: ALS training side by side with `implicit`, the item-to-item build,
    /// serving latency on a 100,000-item catalogue and fold-in (bench/recs/run.sh).
    Recs(crate::bench_recs::RecsBench),
    /// Cluster mode with 1, 2 and 3 node processes on this machine: ingest and fold rates,
    /// lag under load, fail-over time, and JetStream alone (docs/BENCHMARKS.md).
    Cluster(crate::bench_cluster::ClusterBench),
}

#[derive(clap::Args, Debug, Clone)]
pub struct IngestBench {
    /// Seconds of measurement per mode (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// `batch`, `single` or `both`.
    #[arg(long, default_value = "both")]
    mode: String,
    /// Concurrent connections sending batches.
    #[arg(long, default_value_t = 32)]
    batch_connections: usize,
    /// Concurrent connections sending one event per request.
    #[arg(long, default_value_t = 64)]
    single_connections: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Distinct customers the events are spread over.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Store without encryption at rest (to measure what it costs; `missive serve` encrypts
    /// by default).
    #[arg(long)]
    no_encrypt: bool,
    /// Send to an already running `missive serve` at this base URL instead of a server in
    /// this process: to run the load generator apart (for example pinned to one core with
    /// `taskset`). Needs `--write-key`; switch the server's ingest rate limit off
    /// (`[limits] ingest_per_second = 0`).
    #[arg(long, requires = "write_key")]
    target: Option<String>,
    /// The write key for `--target`.
    #[arg(long, env = "MISSIVE_BENCH_WRITE_KEY", hide_env_values = true)]
    write_key: Option<String>,
}

pub async fn run(cfg: Config, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(b) => ingest(cfg, b).await,
        BenchCommand::Segments(b) => {
            tokio::task::spawn_blocking(move || crate::bench_segments::run(b)).await?
        }
        BenchCommand::Render(b) => tokio::task::spawn_blocking(move || crate::bench_render::run(b)).await?,
        BenchCommand::Delivery { what } => crate::bench_delivery::run(what).await,
        BenchCommand::Webhooks(b) => crate::bench_webhooks::run(b).await,
        BenchCommand::Bandit(b) => tokio::task::spawn_blocking(move || crate::bench_bandit::run(b)).await?,
        BenchCommand::Models(b) => tokio::task::spawn_blocking(move || crate::bench_models::run(b)).await?,
        BenchCommand::Cluster(b) => crate::bench_cluster::run(cfg, b).await,
        BenchCommand::Recs(b) => tokio::task::spawn_blocking(move || crate::bench_recs::run(b)).await?,
    }
}

struct Result_ {
    mode: &'static str,
    events: u64,
    requests: u64,
    secs: f64,
    hist: hdrhistogram::Histogram<u64>,
    errors: u64,
}

async fn ingest(cfg: Config, b: IngestBench) -> anyhow::Result<()> {
    if let Some(target) = &b.target {
        return ingest_into(target.trim_end_matches('/'), &b).await;
    }
    let tmp = tempfile::tempdir()?;
    let pg_schema = format!("bench_{}", std::process::id());
    let pg_url = cfg.store.clone().filter(|url| url.starts_with("postgres"));
    let bare: Store = match &pg_url {
        Some(url) => Store::new(PostgresStore::connect(url, Some(&pg_schema)).await?),
        None => Store::new(SqliteStore::open(tmp.path().join("missive.db")).await?),
    };
    let store: Store = if b.no_encrypt {
        bare
    } else {
        let keyring = Arc::new(missive_privacy::Keyring::generate());
        missive_store::EncryptedStore::new(bare, keyring).store()
    };
    println!("encryption at rest: {}", if b.no_encrypt { "off" } else { "on" });
    let (_, keys) = ensure_workspace(&store).await?;
    let write_key = keys.context("a fresh store should mint keys")?.write_key;
    let config = missive_server::app::AppConfig {
        engine: cfg.engine_config(),
        // The bench is one client sending as fast as it can: no rate limit.
        limits: missive_server::limits::Limits {
            ingest: None,
            ..Default::default()
        },
        ..Default::default()
    };
    let keyring = Arc::new(missive_privacy::Keyring::generate());
    let missive =
        missive_server::app::App::build(store.clone(), keyring, Arc::new(SystemClock), config, None).await?;
    let app = missive
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");
    let auth = format!("Basic {}", b64(&format!("{}:", write_key.expose())));
    println!(
        "missive bench ingest: store {}, {} s per mode, {} customers, {} cores",
        store.backend(),
        b.seconds,
        b.users,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    report(&b, &run_modes(&base, &auth, &b).await?);
    let stats = store.events().stats().await?;
    println!(
        "\nstore after the run: {} profiles, {} events",
        stats.profiles, stats.events
    );
    server.abort();
    missive.shutdown().await;
    drop(store);
    if let Some(url) = &pg_url {
        PostgresStore::drop_schema(url, &pg_schema).await?;
    }
    Ok(())
}

/// The load alone, against a server running elsewhere.
async fn ingest_into(base: &str, b: &IngestBench) -> anyhow::Result<()> {
    let key = b
        .write_key
        .as_deref()
        .context("--target needs --write-key (a write key of the server's workspace)")?;
    // Message ids this run has not used before: the server keeps what earlier runs sent.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    COUNTER.store((now.as_micros() as u64) << 8, Ordering::Relaxed);
    println!(
        "missive bench ingest: server {base}, {} s per mode, {} customers, {} cores for this process",
        b.seconds,
        b.users,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let auth = format!("Basic {}", b64(&format!("{key}:")));
    report(b, &run_modes(base, &auth, b).await?);
    Ok(())
}

async fn run_modes(base: &str, auth: &str, b: &IngestBench) -> anyhow::Result<Vec<Result_>> {
    let mut results = Vec::new();
    if matches!(b.mode.as_str(), "batch" | "both") {
        results.push(drive(base, auth, b, true).await?);
    }
    if matches!(b.mode.as_str(), "single" | "both") {
        results.push(drive(base, auth, b, false).await?);
    }
    Ok(results)
}

fn report(b: &IngestBench, results: &[Result_]) {
    println!();
    println!("| mode | connections | events/s | requests/s | ack p50 | ack p99 | ack max | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            r.mode,
            if r.mode == "batch" {
                b.batch_connections
            } else {
                b.single_connections
            },
            r.events as f64 / r.secs,
            r.requests as f64 / r.secs,
            r.hist.value_at_quantile(0.5) as f64 / 1000.0,
            r.hist.value_at_quantile(0.99) as f64 / 1000.0,
            r.hist.max() as f64 / 1000.0,
            r.errors
        );
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn event_json(users: u64, rng: &mut impl Rng) -> String {
    let id = COUNTER.fetch_add(1, Ordering::Relaxed);
    let user = rng.random_range(0..users);
    let sku = rng.random_range(0..5000);
    match id % 10 {
        0 => format!(
            r#"{{"type":"identify","userId":"user-{user}","messageId":"bench-{id}","traits":{{"email":"user{user}@example.com","plan":"p{}","city":"City {}"}}}}"#,
            sku % 3,
            sku % 50
        ),
        1 => format!(
            r#"{{"type":"track","userId":"user-{user}","event":"Order Completed","messageId":"bench-{id}","properties":{{"order_id":"o-{id}","revenue":{}.{:02},"currency":"USD","products":[{{"sku":"SKU-{sku}","price":19.99,"quantity":1}}]}}}}"#,
            rng.random_range(5..300),
            rng.random_range(0..100)
        ),
        2..=4 => format!(
            r#"{{"type":"track","userId":"user-{user}","event":"Product Added","messageId":"bench-{id}","properties":{{"cart_id":"c-{user}","sku":"SKU-{sku}","price":19.99,"quantity":1,"category":"shoes"}}}}"#
        ),
        _ => format!(
            r#"{{"type":"track","userId":"user-{user}","event":"Product Viewed","messageId":"bench-{id}","properties":{{"sku":"SKU-{sku}","price":19.99,"category":"shoes","url":"https://shop.example.com/p/{sku}"}}}}"#
        ),
    }
}

async fn drive(base: &str, auth: &str, b: &IngestBench, batched: bool) -> anyhow::Result<Result_> {
    let conns = if batched {
        b.batch_connections
    } else {
        b.single_connections
    };
    let client = reqwest::Client::builder().pool_max_idle_per_host(conns).build()?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let client = client.clone();
        let (measuring, stop) = (measuring.clone(), stop.clone());
        let url = if batched {
            format!("{base}/v1/batch")
        } else {
            format!("{base}/v1/track")
        };
        let auth = auth.to_owned();
        let (users, batch_size) = (b.users, b.batch_size);
        tasks.push(tokio::spawn(async move {
            let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut events, mut requests, mut errors) = (0u64, 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let (body, n) = {
                    let mut rng = rand::rng();
                    if batched {
                        let items: Vec<String> = (0..batch_size).map(|_| event_json(users, &mut rng)).collect();
                        (format!(r#"{{"batch":[{}]}}"#, items.join(",")), batch_size as u64)
                    } else {
                        // /v1/track takes one track call.
                        let user = rng.random_range(0..users);
                        let id = COUNTER.fetch_add(1, Ordering::Relaxed);
                        (
                            format!(
                                r#"{{"userId":"user-{user}","event":"Product Viewed","messageId":"bench-{id}","properties":{{"sku":"SKU-{}","price":19.99}}}}"#,
                                id % 5000
                            ),
                            1,
                        )
                    }
                };
                let started = Instant::now();
                let res = client
                    .post(&url)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let ok = matches!(&res, Ok(r) if r.status().is_success());
                if let Ok(r) = res {
                    let _ = r.bytes().await;
                }
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        hist.record(started.elapsed().as_micros().max(1) as u64)?;
                        events += n;
                        requests += 1;
                    } else {
                        errors += 1;
                    }
                }
            }
            anyhow::Ok((hist, events, requests, errors))
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(b.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut total = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut events, mut requests, mut errors) = (0, 0, 0);
    for t in tasks {
        let (h, e, r, x) = t.await??;
        total.add(h)?;
        events += e;
        requests += r;
        errors += x;
    }
    Ok(Result_ {
        mode: if batched { "batch" } else { "single" },
        events,
        requests,
        secs,
        hist: total,
        errors,
    })
}

/// The value at share `p` of `sorted` (nearest rank; NaN when empty).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
