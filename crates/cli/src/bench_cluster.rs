//! `missive bench cluster`: cluster mode on this machine, with real processes. For each node
//! count it starts that many `missive serve --cluster` nodes on a fresh PostgreSQL schema and
//! JetStream stream, drives batches through all of them, and measures:
//!
//! - **ingest**: events per second acknowledged (each in JetStream, durably);
//! - **folded**: events per second stored and folded into profiles by the partition owners,
//!   from the first request until the last event is committed;
//! - **lag**: the most events acknowledged but not yet stored, sampled every 250 ms;
//! - **fail-over** (2 nodes or more): from `kill -9` of one node until every partition has a
//!   live owner again.
//!
//! It also measures JetStream alone (the same records published from this process, no
//! missive in between), the ceiling of the log on this machine. Figures go to
//! docs/BENCHMARKS.md by hand, with the command.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncBufReadExt;

use crate::config::Config;

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterBench {
    /// Node counts to measure, one after another.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    nodes: Vec<usize>,
    /// Seconds of load per node count.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent connections sending batches (spread over the nodes).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Distinct customers the events are spread over.
    #[arg(long, default_value_t = 100_000)]
    users: u64,
    /// Partitions of the cluster.
    #[arg(long, default_value_t = 64)]
    partitions: u16,
    /// The NATS server with JetStream.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Lease time of the nodes (fail-over is about 1.3 × this).
    #[arg(long, default_value_t = 3)]
    lease_ttl_seconds: u64,
}

/// What one node count measured.
struct Figures {
    nodes: usize,
    acked: u64,
    ingest_per_s: f64,
    folded_per_s: f64,
    drain_s: f64,
    max_lag: i64,
    failover_s: Option<f64>,
    errors: u64,
}

impl Figures {
    fn failover(&self) -> String {
        self.failover_s
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "-".into())
    }
}

pub async fn run(cfg: Config, b: ClusterBench) -> anyhow::Result<()> {
    let url = cfg.store_url();
    if !url.starts_with("postgres") {
        bail!(
            "cluster mode runs on PostgreSQL: pass --store postgres://… (the bench makes a schema of its own and drops it)"
        );
    }
    let js_rate = jetstream_alone(&b).await?;
    println!(
        "JetStream alone: {js_rate:.0} records/s published and acknowledged ({} connections' worth of pipelined publishes)",
        b.connections
    );
    let mut all = Vec::new();
    for &n in &b.nodes {
        let f = one_count(&url, &b, n).await?;
        println!(
            "{} node(s): ingest {:.0} events/s, folded {:.0} events/s (drained {:.1} s after the load), max lag {} events, fail-over {}, {} errors",
            f.nodes,
            f.ingest_per_s,
            f.folded_per_s,
            f.drain_s,
            f.max_lag,
            f.failover(),
            f.errors
        );
        all.push(f);
    }
    println!(
        "\n| nodes | acked events | ingest events/s | folded events/s | drain after load | max lag | fail-over |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in &all {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.1} s | {} | {} |",
            f.nodes,
            f.acked,
            f.ingest_per_s,
            f.folded_per_s,
            f.drain_s,
            f.max_lag,
            f.failover()
        );
    }
    println!("| JetStream alone | | {js_rate:.0} | | | | |");
    Ok(())
}

/// The records the nodes would publish, straight to JetStream, for `seconds`.
async fn jetstream_alone(b: &ClusterBench) -> anyhow::Result<f64> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut config = missive_cluster::LogConfig::new(&b.nats);
    config.stream = format!("BENCH_{id}");
    config.subject_prefix = format!("bench{id}");
    let js = missive_cluster::log::connect_jetstream(&config, "missive-bench").await?;
    missive_cluster::log::ensure_stream(&js, &config).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..b.connections {
        let (js, stop, count, config) = (js.clone(), stop.clone(), count.clone(), config.clone());
        let (users, batch) = (b.users, b.batch_size);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut acks = Vec::with_capacity(batch);
                for _ in 0..batch {
                    n += 1;
                    let body = crate::bench::event_json(users, &mut rand::rng());
                    let record = serde_json::json!({"kind": "track", "timestamp_us": 0, "received_at_us": 0, "body": body});
                    let publish = async_nats::jetstream::message::PublishMessage::build()
                        .payload(record.to_string().into_bytes().into())
                        .message_id(format!("c{c}-{n}"));
                    let subject = config.subject((n % 64) as u16);
                    acks.push(js.send_publish(subject, publish).await?);
                }
                for a in acks {
                    a.await?;
                }
                count.fetch_add(batch as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (start_count, started) = (count.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(b.seconds)).await;
    let rate = (count.load(Ordering::Relaxed) - start_count) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let _ = js.delete_stream(&config.stream).await;
    Ok(rate)
}

/// One node process.
struct NodeProcess {
    child: Child,
    name: String,
    url: String,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn one_count(url: &str, b: &ClusterBench, nodes: usize) -> anyhow::Result<Figures> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let schema = format!("bench_cluster_{id}");
    let admin = missive_cluster::leases::connect(url, None).await?;
    admin
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .await?;
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir()?;
    let env: Vec<(String, String)> = vec![
        ("MISSIVE_STORE".into(), store),
        ("MISSIVE_CLUSTER__ENABLED".into(), "true".into()),
        ("MISSIVE_CLUSTER__NATS".into(), b.nats.clone()),
        ("MISSIVE_CLUSTER__STREAM".into(), format!("BENCH_{id}")),
        ("MISSIVE_CLUSTER__SUBJECT_PREFIX".into(), format!("bench{id}")),
        ("MISSIVE_CLUSTER__PARTITIONS".into(), b.partitions.to_string()),
        (
            "MISSIVE_CLUSTER__LEASE_TTL_SECONDS".into(),
            b.lease_ttl_seconds.to_string(),
        ),
        ("MISSIVE_LIMITS__INGEST_PER_SECOND".into(), "0".into()),
        (
            "MISSIVE_PRIVACY__KEY_FILE".into(),
            dir.path().join("missive.key").display().to_string(),
        ),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let mut procs = Vec::new();
    for i in 0..nodes {
        let name = format!("bench-{i}");
        let data = dir.path().join(&name);
        std::fs::create_dir_all(&data)?;
        if i > 0 {
            std::fs::copy(
                dir.path().join("bench-0/credentials.json"),
                data.join("credentials.json"),
            )?;
        }
        procs.push(start_node(&env, &name, &data).await?);
    }
    let pg = missive_cluster::leases::connect(url, Some(&schema)).await?;
    let names: Vec<String> = procs.iter().map(|p| p.name.clone()).collect();
    wait_for_owners(&pg, &names, b.partitions, Duration::from_secs(60)).await?;
    let credentials: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.path().join("bench-0/credentials.json"),
    )?)?;
    let write_key = credentials["write_key"]
        .as_str()
        .context("no write key")?
        .to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for c in 0..b.connections {
        let target = format!("{}/v1/batch", procs[c % procs.len()].url);
        let (http, stop, acked, errors, key) = (
            http.clone(),
            stop.clone(),
            acked.clone(),
            errors.clone(),
            write_key.clone(),
        );
        let (users, batch) = (b.users, b.batch_size);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let items: Vec<String> = (0..batch)
                    .map(|_| crate::bench::event_json(users, &mut rand::rng()))
                    .collect();
                let res = http
                    .post(&target)
                    .basic_auth(&key, Some(""))
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"batch":[{}]}}"#, items.join(",")))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        acked.fetch_add(batch as u64, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    let mut max_lag = 0i64;
    while started.elapsed() < Duration::from_secs(b.seconds) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let stored = stored(&pg).await?;
        max_lag = max_lag.max(acked.load(Ordering::Relaxed) as i64 - stored);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let load_s = started.elapsed().as_secs_f64();
    let total = acked.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    while stored(&pg).await? < total as i64 {
        if drain_started.elapsed() > Duration::from_secs(600) {
            bail!("the owners did not catch up within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_s = drain_started.elapsed().as_secs_f64();
    let folded_per_s = total as f64 / started.elapsed().as_secs_f64();

    let failover_s = if nodes >= 2 {
        let mut last = procs.pop().context("a node to kill")?;
        let killed = Instant::now();
        let _ = last.child.kill();
        let _ = last.child.wait();
        let live: Vec<String> = procs.iter().map(|p| p.name.clone()).collect();
        wait_for_owners(&pg, &live, b.partitions, Duration::from_secs(60)).await?;
        Some(killed.elapsed().as_secs_f64())
    } else {
        None
    };
    drop(procs);
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    let mut log = missive_cluster::LogConfig::new(&b.nats);
    log.stream = format!("BENCH_{id}");
    if let Ok(js) = missive_cluster::log::connect_jetstream(&log, "missive-bench").await {
        let _ = js.delete_stream(&log.stream).await;
    }
    Ok(Figures {
        nodes,
        acked: total,
        ingest_per_s: total as f64 / load_s,
        folded_per_s,
        drain_s,
        max_lag,
        failover_s,
        errors: errors.load(Ordering::Relaxed),
    })
}

async fn start_node(
    env: &[(String, String)],
    name: &str,
    data: &std::path::Path,
) -> anyhow::Result<NodeProcess> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--cluster", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .current_dir(data)
        .envs(env.iter().cloned())
        .env("MISSIVE_CLUSTER__NODE", name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("starting a node")?;
    let stdout = child.stdout.take().context("the node's stdout")?;
    let mut lines = tokio::io::BufReader::new(tokio::process::ChildStdout::from_std(stdout)?).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some((_, url)) = line.split_once(" listening on ") {
                return anyhow::Ok(url.trim().to_owned());
            }
        }
        bail!("the node {name} exited before listening")
    })
    .await
    .context("a node did not start within 60 s")??;
    // Keep reading, so the node never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(NodeProcess {
        child,
        name: name.to_owned(),
        url,
    })
}

async fn stored(pg: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(pg.query_one("SELECT count(*) FROM events", &[]).await?.get(0))
}

async fn wait_for_owners(
    pg: &tokio_postgres::Client,
    nodes: &[String],
    partitions: u16,
    within: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let rows = pg
            .query(
                "SELECT owner, count(*) FROM partition_leases
                 WHERE owner IS NOT NULL AND expires_us > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
                 GROUP BY owner ORDER BY owner",
                &[],
            )
            .await?;
        let owners: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let names: Vec<&String> = owners.iter().map(|(o, _)| o).collect();
        let total: i64 = owners.iter().map(|(_, n)| n).sum();
        let mut want: Vec<&String> = nodes.iter().collect();
        want.sort();
        if names == want && total == i64::from(partitions) {
            return Ok(());
        }
        if started.elapsed() > within {
            bail!("the partitions did not settle on {nodes:?} within {within:?}: {owners:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
