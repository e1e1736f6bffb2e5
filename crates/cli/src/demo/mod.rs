//! `missive demo`: the guide's case study, a mid-sized fashion retailer that wants repeat
//! purchases from personalized recommendations in triggered e-mails, built into a data
//! directory of its own (`./missive-demo` unless `--data-dir` says otherwise) and served.
//!
//! Building: the catalogue (`catalogue`), a year of customers' behaviour (`shoppers`, ingested
//! through the engine as the tracking API would), the models trained on that year and the
//! learned recommendations (`models`), then what the marketer set up (`content`): segments
//! (some on the models' scores), blocks, templates, recommendation rules, an experiment of
//! rule-based against learned recommendations, and journeys (saved after the history, so that
//! only new events start them), and a marketer's key to log in with. A second run serves what
//! is built; `--rebuild` starts again. With `--live`, new visits, carts, orders and sign-ups
//! arrive through the tracking API every second while it serves (`live`).

mod catalogue;
mod content;
mod live;
mod models;
mod shoppers;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use missive_core::{SystemClock, Trust};
use missive_engine::auth::ensure_workspace;
use missive_server::app::App;
use missive_store::Role;

use crate::config::Config;
use crate::stores::open_store_with_keys;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Customers to simulate over the past year (tens of thousands make the case study; a few
    /// hundred a quick look).
    #[arg(long, default_value_t = 20_000)]
    pub customers: usize,
    /// Styles in the catalogue.
    #[arg(long, default_value_t = 400)]
    pub styles: usize,
    /// Seed of the simulation: the same seed builds the same shop.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Keep sending new events (visits, carts, orders, sign-ups) while serving, so that the
    /// overview moves and journeys fire.
    #[arg(long)]
    pub live: bool,
    /// Delete the demo's data directory and build it again.
    #[arg(long)]
    pub rebuild: bool,
    /// Build the data directory and stop, without serving it.
    #[arg(long)]
    pub no_serve: bool,
    /// Address to listen on (default: the configured one, 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
}

/// Where the demo's login is kept between runs.
const LOGIN_FILE: &str = "demo-login.txt";
/// Marks a directory as the demo's own (`building`, then `built`): only such a directory is
/// ever rebuilt (deleted).
const MARKER: &str = ".missive-demo";

pub async fn run(cfg: Config, args: DemoArgs) -> anyhow::Result<()> {
    if cfg.store.is_some() {
        anyhow::bail!(
            "the demo builds an embedded store of its own: run it without --store (and give --data-dir to put it elsewhere)"
        );
    }
    if args.customers == 0 || args.styles < 20 {
        anyhow::bail!("--customers must be at least 1 and --styles at least 20");
    }
    let dir = cfg.data_dir.clone();
    let marker = std::fs::read_to_string(dir.join(MARKER)).ok();
    let has_data = dir.exists() && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
    if has_data && marker.is_none() {
        // Never build into, nor delete, a directory the demo did not make: it may be real data.
        anyhow::bail!(
            "{} holds data that is not the demo's: give the demo a directory of its own (--data-dir), or none for ./missive-demo",
            dir.display()
        );
    }
    match marker.as_deref().map(str::trim) {
        Some(_) if args.rebuild => {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            build(&cfg, &args).await?;
        }
        Some("built") => println!(
            "missive demo: serving the shop already built in {} (--rebuild starts again)",
            dir.display()
        ),
        Some(_) => anyhow::bail!(
            "the last build in {} stopped part-way: run `missive demo --rebuild`",
            dir.display()
        ),
        None => build(&cfg, &args).await?,
    }
    let login = std::fs::read_to_string(dir.join(LOGIN_FILE)).unwrap_or_default();
    let addr = cfg.validate_listen(args.listen.as_deref().unwrap_or(&cfg.listen))?;
    println!(
        "\n  Maison Lumen, a fashion shop, with a year of customers.\n  \
         console:   http://{addr}/console\n  \
         log in with the marketer's key: {}\n  \
         (the admin and write keys are in {})\n",
        login.trim(),
        dir.join("credentials.json").display()
    );
    if args.no_serve {
        return Ok(());
    }
    let listening = if args.live {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shop = live::Shop {
            credentials: dir.join("credentials.json"),
            seed: args.seed,
            customers: args.customers,
            styles: args.styles,
        };
        tokio::spawn(async move {
            if let Ok(base) = rx.await {
                live::stream(base, shop).await;
            }
        });
        Some(tx)
    } else {
        None
    };
    crate::serve::run(cfg, args.listen, listening).await
}

async fn build(cfg: &Config, args: &DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = &cfg.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), "building\n")?;
    let (store, keyring) = open_store_with_keys(cfg).await?;
    let (_, new_keys) = ensure_workspace(&store)
        .await
        .context("bootstrapping the workspace")?;
    if let Some(keys) = &new_keys {
        crate::serve::write_credentials(&dir.join("credentials.json"), keys)?;
    }
    let missive = App::build(store, keyring, Arc::new(SystemClock), cfg.app_config(), None).await?;
    let state = missive.state().clone();
    let engine = state.engine.clone();
    let now = engine.clock().now();
    // The year of customers ends at today's midnight (UTC), and the models are trained as of
    // then: the shop's history, and what the models learn from it, are the same whatever the
    // hour (the lifetime-value fit counts purchase days, which moved with the hour before).
    let history_end = chrono::DurationRound::duration_trunc(now, chrono::TimeDelta::days(1)).unwrap_or(now);
    println!("missive demo: building Maison Lumen in {}", dir.display());

    // The catalogue.
    let products = catalogue::catalogue(args.seed, args.styles);
    let raw = products
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let (saved, rejected) = state.content.put_products(raw, now).await?;
    anyhow::ensure!(rejected.is_empty(), "demo products refused: {rejected:?}");
    println!("  catalogue: {saved} styles");

    // A year of customers, a chunk at a time, several batches in flight.
    let categories = catalogue::categories();
    let bar = indicatif::ProgressBar::new(args.customers as u64).with_style(
        indicatif::ProgressStyle::with_template("  customers: {bar:30} {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut events = 0usize;
    // Orders of the last 30 days: the pace of the post-purchase journey, for the experiment's plan.
    let month_ago = history_end - chrono::TimeDelta::days(30);
    let mut recent_orders = 0usize;
    let mut in_flight: tokio::task::JoinSet<Result<(), Arc<missive_engine::EngineError>>> =
        tokio::task::JoinSet::new();
    const CHUNK: usize = 250;
    for first in (0..args.customers).step_by(CHUNK) {
        let last = (first + CHUNK).min(args.customers);
        let mut batch = Vec::new();
        for i in first..last {
            for g in shoppers::customer(args.seed, i, &products, &categories, history_end) {
                if g.at >= month_ago && g.message["event"] == "Order Completed" {
                    recent_orders += 1;
                }
                let mut event = missive_core::message::validate_message(g.message, None, None, now)
                    .map_err(|r| anyhow::anyhow!("a generated event was refused: {}", r.message))?;
                event.set_trust(if g.own { Trust::Missive } else { Trust::Server });
                batch.push(event);
            }
        }
        events += batch.len();
        while in_flight.len() >= 3 {
            if let Some(r) = in_flight.join_next().await {
                r.context("an ingest task")?
                    .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
            }
        }
        let engine = engine.clone();
        in_flight.spawn(async move { engine.ingest(batch).await.map(|_| ()) });
        bar.set_position(last as u64);
        bar.set_message(format!("{events} events"));
    }
    while let Some(r) = in_flight.join_next().await {
        r.context("an ingest task")?
            .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
    }
    bar.finish();
    engine
        .sync()
        .await
        .map_err(|e| anyhow::anyhow!("committing the history: {e}"))?;

    // The models and the learned recommendations, trained on the year as a marketer would
    // once the history is in.
    let model_segments = models::train_models(&state, history_end).await?;
    models::train_recommendations(&state, history_end).await?;

    // What the marketer set up; the segments on scores after the models that write them.
    let segments = content::SEGMENTS
        .iter()
        .map(|(name, expression)| ((*name).to_owned(), (*expression).to_owned()))
        .chain(model_segments.iter().cloned());
    for (name, expression) in segments {
        missive_engine::segments::save_segment(&engine, &name, &expression, None)
            .await
            .with_context(|| format!("segment {name}: {expression}"))?;
    }
    println!(
        "  segments:  {} ({} on the models' scores: {})",
        content::SEGMENTS.len() + model_segments.len(),
        model_segments.len(),
        model_segments
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, body) in content::blocks() {
        let block = serde_json::from_value(body)?;
        state
            .content
            .save_block(name, block, now)
            .await
            .with_context(|| format!("block {name}"))?;
    }
    for (name, body) in content::templates() {
        let stored = serde_json::from_value(body)?;
        state
            .content
            .save_template(name, stored, now)
            .await
            .with_context(|| format!("template {name}"))?;
    }
    let rules = content::rules(&products);
    for (name, body) in &rules {
        let rule = serde_json::from_value(body.clone())?;
        state
            .content
            .put_rule(name, &rule, now)
            .await
            .with_context(|| format!("recommendation rule {name}"))?;
    }
    // Created and started before the journeys, which refuse an experiment that does not exist.
    let orders_per_day = recent_orders as f64 / 30.0;
    let experiment = serde_json::from_value(content::experiment(orders_per_day))?;
    state
        .experiments
        .create(experiment, now)
        .await
        .with_context(|| format!("experiment {}", content::EXPERIMENT))?;
    let running = state
        .experiments
        .transition(
            content::EXPERIMENT,
            missive_sending::experiments::Transition::Start,
            now,
        )
        .await
        .with_context(|| format!("starting experiment {}", content::EXPERIMENT))?;
    println!(
        "  experiment: {} {}: rule-based against learned recommendations, split in the post-purchase journey; {}",
        content::EXPERIMENT,
        running.status.as_str(),
        running
            .estimate
            .as_ref()
            .map_or("no plan", |p| p.summary.as_str())
    );
    // The journey runner reads the event log and segment changes from where it last stopped:
    // walk it past the history (no journey exists yet, so nothing starts), so that only what
    // happens once the shop is served starts journeys.
    state
        .journeys
        .run_pending()
        .await
        .map_err(|e| anyhow::anyhow!("moving the journeys past the history: {e}"))?;
    for (name, def) in content::journeys() {
        let def = serde_json::from_value(def)?;
        state
            .journeys
            .save(name, def, now)
            .await
            .with_context(|| format!("journey {name}"))?;
    }
    println!(
        "  content:   {} blocks, {} templates, {} recommendation rules, {} journeys",
        content::blocks().len(),
        content::templates().len(),
        rules.len(),
        content::journeys().len()
    );
    let (_, secret) = state
        .auth
        .create_key(Role::Marketer, "demo marketer", now)
        .await
        .map_err(|e| anyhow::anyhow!("creating the marketer's key: {e}"))?;
    crate::serve::write_secret_file(&dir.join(LOGIN_FILE), format!("{}\n", secret.expose()).as_bytes())?;
    missive.shutdown().await;
    std::fs::write(dir.join(MARKER), "built\n")?;
    println!(
        "  built in {:.0} s: {} customers, {events} events",
        started.elapsed().as_secs_f64(),
        args.customers
    );
    Ok(())
}
