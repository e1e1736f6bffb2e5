//! `missive bench delivery latency|broadcast`: event-to-SMTP hand-over latency of a journey
//! with no wait under background load, how late delayed steps fire, and a broadcast's
//! throughput, all through the real pipeline (SQLite store, journeys, outbox, policy,
//! rendering of the example cart e-mail, DKIM Ed25519 signing, pooled SMTP).
//!
//! The SMTP peer is an in-process sink written for this benchmark: it speaks enough SMTP
//! (EHLO, MAIL, RCPT, DATA, RSET, QUIT, with pipelining), notes when each message's DATA
//! ends and what its subject says, and discards the message.

use crate::bench::percentile;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use missive_core::SystemClock;
use missive_core::message::validate_message;
use missive_engine::Engine;
use missive_sending::broadcasts::{BroadcastIn, BroadcastState, Broadcasts};
use missive_sending::content::StoredTemplate;
use missive_sending::journeys::{JourneyDef, Journeys, MessageClass};
use missive_sending::sender::{Sender, SenderConfig};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(clap::Subcommand, Debug, Clone)]
pub enum DeliveryBench {
    /// Event → SMTP hand-over latency of a journey with no wait, under background ingest;
    /// and how late a 2-second wait fires.
    Latency {
        /// How long to measure.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Background events per second.
        #[arg(long, default_value_t = 1000)]
        background: u32,
        /// Triggering events per second.
        #[arg(long, default_value_t = 20)]
        triggers: u32,
    },
    /// A broadcast to N recipients: queued, rendered, signed and handed to the sink.
    Broadcast {
        /// Recipients of the broadcast (profiles made for the run).
        #[arg(long, default_value_t = 1_000_000)]
        recipients: u64,
        /// Messages in flight in the sender.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Messages the sender takes from the outbox per round (its `batch` setting).
        #[arg(long, default_value_t = missive_sending::sender::SenderConfig::default().batch)]
        batch: u32,
        /// Journey triggers per second while the broadcast is sent (0: none): a journey with
        /// no wait sends to each, and their event → SMTP hand-over latency is reported.
        #[arg(long, default_value_t = 0)]
        triggers: u32,
        /// Background events per second while the broadcast is sent, with `--triggers`.
        #[arg(long, default_value_t = 1000)]
        background: u32,
        /// Send a two-line HTML e-mail instead of the cart-abandonment example: what the
        /// pipeline costs apart from the content.
        #[arg(long)]
        plain: bool,
    },
}

/// Arrival times by the number in each message's subject.
type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

/// Starts the sink; returns its address and what it received.
async fn smtp_sink() -> anyhow::Result<(std::net::SocketAddr, Arrivals, Arc<std::sync::atomic::AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let arrivals: Arrivals = Arc::new(Mutex::new(HashMap::new()));
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (a, c) = (arrivals.clone(), count.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (a, c) = (a.clone(), c.clone());
            tokio::spawn(async move {
                let _ = serve_smtp(socket, a, c).await;
            });
        }
    });
    Ok((addr, arrivals, count))
}

async fn serve_smtp(
    socket: tokio::net::TcpStream,
    arrivals: Arrivals,
    count: Arc<std::sync::atomic::AtomicU64>,
) -> std::io::Result<()> {
    // Without this, Nagle's algorithm and delayed ACKs add about 40 ms to each exchange.
    socket.set_nodelay(true)?;
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match cmd.as_str() {
            "EHLO" => {
                write
                    .write_all(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                    .await?
            }
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => write.write_all(b"250 ok\r\n").await?,
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "DATA" => {
                write.write_all(b"354 go\r\n").await?;
                let mut subject_n = None;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    if subject_n.is_none()
                        && let Some(rest) = line.strip_prefix("Subject: bench ")
                    {
                        subject_n = rest.trim().parse::<u64>().ok();
                    }
                }
                let now = Instant::now();
                if let Some(n) = subject_n
                    && let Ok(mut a) = arrivals.lock()
                {
                    a.insert(n, now);
                }
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                write.write_all(b"250 queued\r\n").await?;
            }
            _ => write.write_all(b"502 no\r\n").await?,
        }
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    engine: Engine,
    journeys: Journeys,
    broadcasts: Broadcasts,
    sender: Sender,
    arrivals: Arrivals,
    delivered: Arc<std::sync::atomic::AtomicU64>,
}

async fn rig(concurrency: usize, batch: u32, plain: bool) -> anyhow::Result<Rig> {
    let dir = tempfile::tempdir()?;
    let store = missive_store::open(&format!("sqlite:{}", dir.path().join("missive.db").display())).await?;
    missive_engine::auth::ensure_workspace(&store).await?;
    let (addr, arrivals, delivered) = smtp_sink().await?;
    let transport = missive_delivery::SmtpTransport::new(&missive_delivery::SmtpConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: missive_delivery::Tls::None,
        username: None,
        password: None,
        pool_max: u32::try_from(concurrency).unwrap_or(8),
        timeout: Duration::from_secs(30),
        hello_name: Some("bench.example".into()),
    })?;
    let (dkim, _) = missive_delivery::DkimSigner::generate_ed25519("bench", "bench.example")?;
    let config = SenderConfig {
        from_address: "shop@bench.example".into(),
        bounce_address: "bounces@bench.example".into(),
        message_id_domain: "bench.example".into(),
        public_url: "https://mail.bench.example".into(),
        policy: missive_sending::policy::PolicyConfig {
            frequency_cap: 0,
            quiet_hours: None,
            ..Default::default()
        },
        concurrency,
        batch,
        ..Default::default()
    };
    let sender = missive_server::app::SenderParts {
        transport: Arc::new(transport),
        dkim: Some(dkim),
        throttle: missive_delivery::Throttle::new(None),
        config,
    };
    let keyring = Arc::new(missive_privacy::Keyring::generate());
    let missive = missive_server::app::App::build(
        store,
        keyring,
        Arc::new(SystemClock),
        missive_server::app::AppConfig::default(),
        Some(sender),
    )
    .await?;
    let state = missive.state();
    let template: StoredTemplate = if plain {
        serde_json::from_value(json!({
            "subject": "bench {{ event.properties.n }}", "layout": "html",
            "body": "<html><body><p>Hi {{ customer.first_name | default: 'there' }}</p><a href=\"{{ unsubscribe_url }}\">u</a></body></html>",
        }))?
    } else {
        let body = include_str!("../../../examples/cart-abandonment/template.mjml");
        serde_json::from_value(json!({
            "subject": "bench {{ event.properties.n }}", "layout": "mjml", "body": body,
        }))?
    };
    state
        .content
        .save_template("bench", template, chrono::Utc::now())
        .await?;
    let engine = missive.engine().clone();
    let journeys = state.journeys.clone();
    let broadcasts = state.broadcasts.clone();
    let sender = state.sender.clone().context("the bench app has a sender")?;
    Ok(Rig {
        _dir: dir,
        engine,
        journeys,
        broadcasts,
        sender,
        arrivals,
        delivered,
    })
}

fn identify(user: &str, plan: &str) -> anyhow::Result<missive_core::Event> {
    validate_message(
        json!({"type": "identify", "userId": user, "traits": {
            "email": format!("{user}@bench.example"), "first_name": "Bench", "plan": plan,
            "consent": {"email_marketing": true}}}),
        None,
        None,
        chrono::Utc::now(),
    )
    .map_err(|r| anyhow::anyhow!("bench identify refused: {}", r.code))
}

fn track(user: &str, event: &str, properties: serde_json::Value) -> anyhow::Result<missive_core::Event> {
    validate_message(
        json!({"type": "track", "userId": user, "event": event, "properties": properties}),
        None,
        None,
        chrono::Utc::now(),
    )
    .map_err(|r| anyhow::anyhow!("bench event refused: {}", r.code))
}

pub async fn run(b: DeliveryBench) -> anyhow::Result<()> {
    match b {
        DeliveryBench::Latency {
            seconds,
            background,
            triggers,
        } => latency(seconds, background, triggers).await,
        DeliveryBench::Broadcast {
            recipients,
            concurrency,
            batch,
            triggers,
            background,
            plain,
        } => broadcast(recipients, concurrency, batch, plain, triggers, background).await,
    }
}

/// Page views from 10,000 visitors, `per_second` in all, every 10 ms, until `stop`.
fn spawn_background(
    r: &Rig,
    per_second: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (engine, journeys) = (r.engine.clone(), r.journeys.clone());
    let per_tick = (per_second / 100).max(1);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut i = 0u64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let events: Vec<_> = (0..per_tick)
                .filter_map(|_| {
                    i += 1;
                    track(&format!("v{}", i % 10_000), "Page Viewed", json!({"path": "/p"})).ok()
                })
                .collect();
            if engine.ingest(events).await.is_err() {
                break;
            }
            journeys.poke();
        }
    })
}

/// A journey that sends at once on `event` (or after a 2-second wait).
fn journey(event: &str, wait: bool) -> anyhow::Result<JourneyDef> {
    let mut steps = vec![json!({"id": "send", "type": "send", "template": "bench"})];
    if wait {
        steps.insert(0, json!({"id": "wait", "type": "wait", "duration": "2s"}));
    }
    Ok(serde_json::from_value(
        json!({"trigger": {"event": event}, "reentry": "always", "class": "transactional", "steps": steps}),
    )?)
}

async fn latency(seconds: u64, background: u32, triggers: u32) -> anyhow::Result<()> {
    let r = rig(8, SenderConfig::default().batch, false).await?;
    let now = chrono::Utc::now();
    r.journeys.save("now", journey("Bench Now", false)?, now).await?;
    r.journeys
        .save("later", journey("Bench Later", true)?, now)
        .await?;
    let users = 1_000;
    let mut batch = Vec::new();
    for u in 0..users {
        batch.push(identify(&format!("u{u}"), "bench")?);
    }
    r.engine.ingest(batch).await?;
    r.engine.sync().await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let poll = Duration::from_millis(250);
    let journeys_task = r.journeys.clone().spawn(poll, stop_rx.clone());
    let sender_task = r.sender.clone().spawn(poll, stop_rx.clone());

    let bg = spawn_background(&r, background, stop_rx.clone());

    let mut sent_at: HashMap<u64, (Instant, bool)> = HashMap::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / u64::from(triggers.max(1))));
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        n += 1;
        let delayed = n.is_multiple_of(5);
        let name = if delayed { "Bench Later" } else { "Bench Now" };
        let e = track(&format!("u{}", n % users), name, json!({"n": n}))?;
        let t0 = Instant::now();
        r.engine.ingest(vec![e]).await?;
        r.journeys.poke();
        sent_at.insert(n, (t0, delayed));
    }
    // Let the last delayed ones fire.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = stop_tx.send(true);
    let _ = bg.await;
    let _ = journeys_task.await;
    let _ = sender_task.await;

    let arrivals = r
        .arrivals
        .lock()
        .map_err(|_| anyhow::anyhow!("sink lock poisoned"))?
        .clone();
    let (mut now_ms, mut late_ms) = (Vec::new(), Vec::new());
    let mut missing = 0;
    for (n, (t0, delayed)) in &sent_at {
        match arrivals.get(n) {
            Some(t) if *delayed => late_ms.push((t.duration_since(*t0).as_secs_f64() - 2.0) * 1e3),
            Some(t) => now_ms.push(t.duration_since(*t0).as_secs_f64() * 1e3),
            None => missing += 1,
        }
    }
    now_ms.sort_by(f64::total_cmp);
    late_ms.sort_by(f64::total_cmp);
    println!(
        "background: {background} events/s; triggers: {triggers}/s for {seconds} s ({} triggers, {missing} not delivered)",
        sent_at.len()
    );
    println!(
        "event → SMTP hand-over, no wait ({} messages): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        now_ms.len(),
        percentile(&now_ms, 0.5),
        percentile(&now_ms, 0.99),
        now_ms.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "2 s wait fired late by ({} messages): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        late_ms.len(),
        percentile(&late_ms, 0.5),
        percentile(&late_ms, 0.99),
        late_ms.last().copied().unwrap_or(f64::NAN)
    );
    r.engine.shutdown().await;
    Ok(())
}

async fn broadcast(
    recipients: u64,
    concurrency: usize,
    batch: u32,
    plain: bool,
    triggers: u32,
    background: u32,
) -> anyhow::Result<()> {
    let r = rig(concurrency, batch, plain).await?;
    let users = 1_000u64;
    if triggers > 0 {
        r.journeys
            .save("now", journey("Bench Now", false)?, chrono::Utc::now())
            .await?;
        // Not in the broadcast's segment.
        let people = (0..users)
            .map(|u| identify(&format!("u{u}"), "journey"))
            .collect::<Result<_, _>>()?;
        r.engine.ingest(people).await?;
    }
    // Declared first, as a user would (`PUT /v1/schema/traits/plan`): the segment is saved
    // before any profile has the trait, so that it is segmented as it arrives.
    missive_engine::schema::declare(
        r.engine.store(),
        missive_core::schema::FieldKey::trait_("plan"),
        Some(missive_core::schema::FieldType::String),
        chrono::Utc::now(),
    )
    .await?;
    missive_engine::segments::save_segment(&r.engine, "everyone", "traits.plan == \"bench\"", None)
        .await
        .context("saving the segment")?;
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(recipients);
    let mut u = 0u64;
    while u < recipients {
        let n = (recipients - u).min(2_000);
        let batch: Vec<_> = (u..u + n)
            .map(|i| identify(&format!("r{i}"), "bench"))
            .collect::<Result<_, _>>()?;
        r.engine.ingest(batch).await?;
        u += n;
        bar.set_position(u);
    }
    r.engine.sync().await?;
    if triggers > 0 {
        // In `serve` the journey runner follows ingest as it goes; here it starts later, so
        // it first catches up with the recipients' events (not timed). Left to its first
        // pass during the broadcast, that pass (about 100,000 events, 1.7 s) held up the
        // triggers behind it and made the p99.
        r.journeys.run_pending().await?;
    }
    bar.finish_and_clear();
    println!(
        "{recipients} recipients ingested and segmented in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let t0 = Instant::now();
    let b = r
        .broadcasts
        .create(BroadcastIn {
            template: "bench".into(),
            segment: "everyone".into(),
            send_at: None,
            rate_per_second: 0,
            class: MessageClass::Marketing,
            topic: None,
            experiment: None,
            at: None,
            within: None,
        })
        .await?;
    let id = b.broadcast.id.clone();
    loop {
        r.broadcasts.run_pending().await?;
        if r.broadcasts.get(&id).await?.broadcast.state == BroadcastState::Completed {
            break;
        }
    }
    let queued_in = t0.elapsed();
    println!(
        "queued {} messages in {:.1} s",
        b.broadcast.total,
        queued_in.as_secs_f64()
    );
    // Journeys triggered while it is sent: their messages go ahead of the broadcast's.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let during = (triggers > 0).then(|| {
        let journeys_task = r
            .journeys
            .clone()
            .spawn(Duration::from_millis(250), stop_rx.clone());
        let bg = spawn_background(&r, background, stop_rx.clone());
        let (engine, journeys, mut stop) = (r.engine.clone(), r.journeys.clone(), stop_rx.clone());
        let fire = tokio::spawn(async move {
            // When each trigger was ingested, and when its ingest was acknowledged (durable).
            let mut sent_at: HashMap<u64, (Instant, Instant)> = HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / u64::from(triggers)));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                n += 1;
                let Ok(e) = track(&format!("u{}", n % users), "Bench Now", json!({"n": n})) else {
                    break;
                };
                let t0 = Instant::now();
                if engine.ingest(vec![e]).await.is_err() {
                    break;
                }
                journeys.poke();
                sent_at.insert(n, (t0, Instant::now()));
            }
            sent_at
        });
        (journeys_task, bg, fire)
    });
    let bar = indicatif::ProgressBar::new(recipients);
    // Done once a round finds nothing to send; with journeys running (a message every
    // 50 ms or so), once nothing is queued for the broadcast any more.
    let broadcast_left = || async { anyhow::Ok(r.broadcasts.get(&id).await?.messages.queued) };
    if during.is_some() {
        // The sender's background loops, as `serve` runs them: one per lane, so that the
        // journeys' messages are sent while the broadcast's rounds go on.
        let sending = r
            .sender
            .clone()
            .spawn(Duration::from_millis(250), stop_rx.clone());
        r.sender.poke();
        while broadcast_left().await? > 0 {
            bar.set_position(r.delivered.load(std::sync::atomic::Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = stop_tx.send(true);
        let _ = sending.await;
    } else {
        loop {
            let stats = r.sender.run_pending().await?;
            bar.set_position(r.delivered.load(std::sync::atomic::Ordering::Relaxed));
            if stats.sent + stats.failed + stats.skipped + stats.retried == 0 {
                break;
            }
        }
    }
    bar.finish_and_clear();
    let total = t0.elapsed();
    if let Some((journeys_task, bg, fire)) = during {
        let _ = stop_tx.send(true);
        let sent_at = fire.await?;
        let _ = bg.await;
        let _ = journeys_task.await;
        // The last triggered messages, sent after the broadcast's.
        for _ in 0..100 {
            let stats = r.sender.run_pending().await?;
            if stats.sent + stats.failed + stats.skipped + stats.retried == 0 {
                break;
            }
        }
        let arrivals = r
            .arrivals
            .lock()
            .map_err(|_| anyhow::anyhow!("sink lock poisoned"))?
            .clone();
        let ms_between = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1e3;
        let mut ms: Vec<f64> = sent_at
            .iter()
            .filter_map(|(n, (t0, _))| arrivals.get(n).map(|t| ms_between(*t0, *t)))
            .collect();
        ms.sort_by(f64::total_cmp);
        // The two parts of the hand-over: the trigger's durable ingest, then the journey and
        // the sender (from the acknowledgement to the sink).
        let mut acked: Vec<f64> = sent_at.values().map(|(t0, ack)| ms_between(*t0, *ack)).collect();
        acked.sort_by(f64::total_cmp);
        let mut after_ack: Vec<f64> = sent_at
            .iter()
            .filter_map(|(n, (_, ack))| arrivals.get(n).map(|t| ms_between(*ack, *t)))
            .collect();
        after_ack.sort_by(f64::total_cmp);
        println!(
            "journeys during the broadcast ({triggers} triggers/s, {background} background events/s): \
             {} of {} handed over, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms.len(),
            sent_at.len(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "  of which the trigger's ingest until acknowledged: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             acknowledged → sink: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&acked, 0.5),
            percentile(&acked, 0.99),
            acked.last().copied().unwrap_or(f64::NAN),
            percentile(&after_ack, 0.5),
            percentile(&after_ack, 0.99),
            after_ack.last().copied().unwrap_or(f64::NAN)
        );
    }
    let delivered = r.delivered.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "broadcast to {recipients}: {delivered} rendered, DKIM-signed and handed to the SMTP sink in {:.1} s \
         ({:.0} messages/s; sending alone {:.1} s)",
        total.as_secs_f64(),
        delivered as f64 / total.as_secs_f64(),
        (total - queued_in).as_secs_f64()
    );
    r.engine.shutdown().await;
    Ok(())
}
