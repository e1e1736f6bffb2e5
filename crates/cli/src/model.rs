//! `missive model`: models trained from files, so that a data scientist can fit them on any
//! table and compare with their own tools: `train clv` (BG/NBD and Gamma-Gamma from a
//! transaction log), `train cluster` (K-Means, DBSCAN, hierarchical on a table of features) and
//! `train propensity` (random forest, gradient boosting, logistic regression on a table with a
//! yes/no label). See docs/models.md.

use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use missive_models::classify;
use missive_models::cluster::hierarchical::{Cut, Linkage};
use missive_models::cluster::{self, Algorithm, hierarchical};
use missive_models::clv::summary::{Transaction, summarise};
use missive_models::clv::{bgnbd, gamma_gamma, value};
use missive_models::dataset::{CsvOptions, Dataset, Prepared, read_csv};

// Parsed once per run: the size of the training variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand, Debug)]
pub enum ModelCommand {
    /// Train a model, from a file (`--data`, `--transactions`: prints what was fitted) or from
    /// the store (`--name`: saves a new version in the registry).
    Train {
        #[command(subcommand)]
        what: TrainCommand,
    },
    /// The models in the registry.
    List,
    /// A model's entry and versions: data window, features, hyperparameters, verdict.
    Show {
        /// The model's name.
        name: String,
    },
    /// A version's validation report (cross-validation, holdout, calibration, importances).
    Evaluate {
        /// The model's name.
        name: String,
        /// The version (default: the active one, else the latest).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Makes a version (default: the latest) the active one and scores every profile with it;
    /// activating an earlier version is the rollback.
    Activate {
        /// The model's name.
        name: String,
        /// The version (default: the latest).
        #[arg(long)]
        version: Option<u32>,
        /// Score in batch only (`missive model score`, the schedule), not on every profile
        /// change.
        #[arg(long)]
        batch: bool,
        /// Score every profile again every this many hours (`missive serve` does it).
        #[arg(long)]
        score_every_hours: Option<u32>,
        /// Train a new version every this many days, the cutoff moved to now, and activate it
        /// when validation accepts it (`missive serve` does it).
        #[arg(long)]
        retrain_every_days: Option<u32>,
    },
    /// Stops scoring with a model.
    Deactivate {
        /// The model's name.
        name: String,
    },
    /// Scores every profile with the model's active version now.
    Score {
        /// The model's name.
        name: String,
    },
    /// Deletes a model and all its versions.
    Delete {
        /// The model's name.
        name: String,
    },
}

impl ModelCommand {
    /// Whether the command works on files only (no store is opened, and store flags are
    /// refused).
    pub fn reads_no_store(&self) -> bool {
        match self {
            ModelCommand::Train { what } => match what {
                TrainCommand::Clv(a) => a.transactions.is_some(),
                TrainCommand::Cluster(a) => a.table.data.is_some(),
                TrainCommand::Propensity(a) => a.table.data.is_some(),
                TrainCommand::SendTime(_) => false,
            },
            _ => false,
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum TrainCommand {
    /// Lifetime value from a transaction log: BG/NBD (repeat purchases, P(alive)) and
    /// Gamma-Gamma (spend), fitted over a calibration period and checked on the holdout after.
    Clv(ClvArgs),
    /// Clusters the rows of a CSV table of features (standardized first), and prints each
    /// cluster's size, centre and summary with the silhouette.
    Cluster(ClusterArgs),
    /// A yes/no propensity model from a CSV table of features and a label column: prints the
    /// cross-validated and holdout metrics, the baseline's, and the feature importances.
    Propensity(PropensityArgs),
    /// From the store: everyone's opens and clicks by hour of the week, for `best_time` sends
    /// and `scores.NAME` (each person's best hour).
    SendTime(SendTimeArgs),
}

#[derive(clap::Args, Debug)]
pub struct SendTimeArgs {
    /// The model's name.
    #[arg(long)]
    name: String,
    /// How many of a person's own opens and clicks count as much as everyone's.
    #[arg(long, default_value_t = 8.0)]
    strength: f64,
    /// Most profiles read (a uniform sample above it).
    #[arg(long, default_value_t = 200_000)]
    max_profiles: usize,
}

/// Reading a feature table.
#[derive(clap::Args, Debug)]
pub struct TableArgs {
    /// The CSV table (a header row, then one row per customer). Without it, the model is
    /// trained on the store's profiles and saved in the registry under --name.
    #[arg(long)]
    data: Option<PathBuf>,
    /// From the store: the model's name (segments read it as `scores.NAME`).
    #[arg(long)]
    name: Option<String>,
    /// From the store: features as of this day (YYYY-MM-DD, UTC midnight; default: now for
    /// clusters, the label's window before now for propensity).
    #[arg(long)]
    cutoff: Option<NaiveDate>,
    /// From the store: a trait to use as a feature (repeatable): numeric, or one-hot.
    #[arg(long = "trait", value_name = "TRAIT")]
    traits: Vec<String>,
    /// From the store: event names counted over 7, 30 and 90 days (repeatable; default: orders,
    /// product views and cart adds, e-mail opens and clicks).
    #[arg(long = "event", value_name = "NAME")]
    events: Vec<String>,
    /// From the store: an active model whose score is a feature (repeatable), such as a
    /// lifetime-value model; each profile is scored with it as of the cutoff.
    #[arg(long = "score-feature", value_name = "MODEL")]
    score_features: Vec<String>,
    /// From the store: most profiles read (a uniform sample above it, and said so).
    #[arg(long, default_value_t = 200_000)]
    max_profiles: usize,

    /// A column to leave out of the features (repeatable), such as an identifier.
    #[arg(long = "ignore", value_name = "COL")]
    ignore: Vec<String>,
    /// An identifier column, left out of the features and written beside each row's result.
    #[arg(long)]
    id_col: Option<String>,
    /// Most values one-hot encoded per text column.
    #[arg(long, default_value_t = 20)]
    category_cap: usize,
    /// Most cells (rows × columns) held in memory; a larger table is sampled, and said so.
    #[arg(long, default_value_t = 50_000_000)]
    max_cells: usize,
    /// Seed for every random draw (sampling, folds, restarts, trees).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterAlgorithm {
    Kmeans,
    Dbscan,
    Ward,
    Average,
}

#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    table: TableArgs,
    /// The clustering algorithm (from the store: kmeans only).
    #[arg(long, value_enum, default_value_t = ClusterAlgorithm::Kmeans)]
    algorithm: ClusterAlgorithm,
    /// Clusters wanted (K-Means, hierarchical). K-Means without it tries 2..=--max-k and keeps
    /// the best silhouette.
    #[arg(long)]
    k: Option<usize>,
    /// K-Means without --k: the largest k tried.
    #[arg(long, default_value_t = 8)]
    max_k: usize,
    /// K-Means restarts from fresh k-means++ seeds; the least inertia wins.
    #[arg(long, default_value_t = 4)]
    restarts: usize,
    /// DBSCAN's radius on standardized features (default: read off the k-distance curve).
    #[arg(long)]
    eps: Option<f64>,
    /// DBSCAN's rows within eps (the row itself included) that make a core row.
    #[arg(long, default_value_t = 5)]
    min_samples: usize,
    /// Hierarchical: cut the tree at this merge distance instead of at --k.
    #[arg(long, conflicts_with = "k")]
    distance: Option<f64>,
    /// Write each row's cluster to this CSV (row, id if --id-col, cluster; empty for noise).
    #[arg(long)]
    labels_out: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropensityAlgorithm {
    /// Random forest.
    Rf,
    /// Gradient-boosted trees.
    Gbm,
    /// Logistic regression (the baseline).
    Logistic,
}

#[derive(clap::Args, Debug)]
pub struct PropensityArgs {
    #[command(flatten)]
    table: TableArgs,
    /// The yes/no column to predict (with --data), or, from the store, the label in the
    /// segment language, evaluated --horizon-days after the cutoff.
    #[arg(long)]
    label: String,
    /// From the store: the label's window after the cutoff, in days.
    #[arg(long, default_value_t = 30)]
    horizon_days: i64,
    /// The label's positive value (found by itself for 1/0, yes/no, true/false).
    #[arg(long)]
    positive: Option<String>,
    /// The classifier.
    #[arg(long, value_enum, default_value_t = PropensityAlgorithm::Gbm)]
    algorithm: PropensityAlgorithm,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// A column of fold numbers to cross-validate with, instead of drawing stratified folds.
    #[arg(long)]
    fold_col: Option<String>,
    /// A hyperparameter, KEY=VALUE (repeatable); with any, the grid search is skipped.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Fewest rows of each class to train at all.
    #[arg(long, default_value_t = 20)]
    min_class: usize,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

#[derive(clap::Args, Debug)]
pub struct ClvArgs {
    /// The transaction file (CSV, or whitespace-separated like CDNOW). Without it, the
    /// models are fitted on the store's orders and saved in the registry under --name.
    #[arg(long)]
    transactions: Option<PathBuf>,
    /// From the store: the model's name (segments read `scores.NAME` and `scores.NAME_alive`).
    #[arg(long)]
    name: Option<String>,
    /// From the store: most profiles read (a uniform sample above it).
    #[arg(long, default_value_t = 200_000)]
    max_profiles: usize,
    #[command(flatten)]
    columns: crate::import::CsvColumns,
    /// The column holding the transaction's value (with --transactions).
    #[arg(long)]
    amount_col: Option<String>,
    /// The last day of the calibration period (YYYY-MM-DD; from the store, default: today).
    #[arg(long)]
    calibration_end: Option<NaiveDate>,
    /// The last day of the holdout period (default: the last transaction's day).
    #[arg(long)]
    holdout_end: Option<NaiveDate>,
    /// Lifetime value over this many months after the calibration end.
    #[arg(long, default_value_t = 12)]
    horizon_months: u32,
    /// Monthly discount rate of the lifetime value (0.01 is 1 % a month).
    #[arg(long, default_value_t = 0.01)]
    monthly_discount: f64,
    /// Write each customer's P(alive), expected purchases over the horizon and lifetime value
    /// to this CSV.
    #[arg(long)]
    values_out: Option<PathBuf>,
}

/// Commands on files only ([`ModelCommand::reads_no_store`]).
pub fn run_on_files(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Train { what } => match what {
            TrainCommand::Clv(args) => train_clv(args),
            TrainCommand::Cluster(args) => train_cluster(args),
            TrainCommand::Propensity(args) => train_propensity(args),
            TrainCommand::SendTime(_) => anyhow::bail!("the send-time model is trained from the store"),
        },
        _ => anyhow::bail!("this model command needs the store"),
    }
}

fn utc_midnight(d: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn feature_spec(t: &TableArgs) -> missive_models::features::FeatureSpec {
    let mut spec = missive_models::features::FeatureSpec::default();
    if !t.events.is_empty() {
        spec.events = t.events.clone();
    }
    spec.scores = t.score_features.clone();
    spec
}

/// Trains from the store and saves a new version: (model name, what training reported).
async fn train_on_store(
    engine: &missive_engine::Engine,
    models: &missive_engine::models::Models,
    what: TrainCommand,
    by: String,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(String, missive_engine::models::Trained)> {
    use missive_engine::models::{ClusterRequest, PropensityRequest};
    match what {
        TrainCommand::SendTime(a) => {
            let trained = models
                .train_send_time(&a.name, a.strength, a.max_profiles, by, now)
                .await?;
            Ok((a.name, trained))
        }
        TrainCommand::Clv(a) => {
            let name = a
                .name
                .clone()
                .context("give --name (train from the store) or --transactions (a file)")?;
            let req = missive_engine::models::ClvRequest {
                name: name.clone(),
                calibration_end: a.calibration_end.map_or(now, utc_midnight),
                months: a.horizon_months,
                monthly_discount: a.monthly_discount,
                max_profiles: a.max_profiles,
                trained_by: by,
            };
            Ok((name, models.train_clv(req, now).await?))
        }
        TrainCommand::Propensity(a) => {
            let name = a
                .table
                .name
                .clone()
                .context("give --name (train from the store) or --data (a file)")?;
            let algorithm = match a.algorithm {
                PropensityAlgorithm::Rf => classify::Algorithm::RandomForest,
                PropensityAlgorithm::Gbm => classify::Algorithm::GradientBoosting,
                PropensityAlgorithm::Logistic => classify::Algorithm::Logistic,
            };
            let params = if a.params.is_empty() {
                None
            } else {
                Some(classify::Params::with(algorithm, &a.params)?)
            };
            anyhow::ensure!((1..=365).contains(&a.horizon_days), "--horizon-days: 1 to 365");
            anyhow::ensure!((2..=20).contains(&a.folds), "--folds: 2 to 20");
            let schema = missive_engine::segments::Segments::new(engine.store().clone())
                .schema()
                .await?;
            let req = PropensityRequest {
                name: name.clone(),
                label: a.label.clone(),
                // By default the label's window ends now: the cutoff is that long ago.
                cutoff: a
                    .table
                    .cutoff
                    .map_or(now - chrono::Duration::days(a.horizon_days), utc_midnight),
                horizon: chrono::Duration::days(a.horizon_days),
                features: feature_spec(&a.table),
                traits: a.table.traits.clone(),
                options: classify::TrainOptions {
                    algorithm,
                    params,
                    folds: a.folds,
                    min_class: a.min_class,
                    seed: a.table.seed,
                    ..classify::TrainOptions::default()
                },
                max_profiles: a.table.max_profiles,
                trained_by: by,
            };
            eprintln!("reading profiles as of {} and training…", req.cutoff.date_naive());
            Ok((name, models.train_propensity(req, &schema, now).await?))
        }
        TrainCommand::Cluster(a) => {
            let name = a
                .table
                .name
                .clone()
                .context("give --name (train from the store) or --data (a file)")?;
            anyhow::ensure!(
                a.algorithm == ClusterAlgorithm::Kmeans,
                "from the store, clustering is k-means (new profiles are scored by the nearest centre)"
            );
            let req = ClusterRequest {
                name: name.clone(),
                cutoff: a.table.cutoff.map_or(now, utc_midnight),
                k: a.k,
                max_k: a.max_k,
                features: feature_spec(&a.table),
                traits: a.table.traits.clone(),
                max_profiles: a.table.max_profiles,
                seed: a.table.seed,
                trained_by: by,
            };
            Ok((name, models.train_cluster(req, now).await?))
        }
    }
}

/// Commands on the store's registry and profiles.
pub async fn run(cfg: crate::config::Config, cmd: ModelCommand) -> anyhow::Result<()> {
    use missive_engine::models::Models;
    if cmd.reads_no_store() {
        return tokio::task::spawn_blocking(move || run_on_files(cmd)).await?;
    }
    let engine = crate::operator::start_engine(&cfg).await?;
    let models = Models::new(engine.store().clone(), engine.clone());
    let now = chrono::Utc::now();
    let by = format!("cli:{}", crate::operator::operator_name());
    // (audit action, model name) when the command changed something.
    let result: anyhow::Result<Option<(&str, String)>> = async {
        match cmd {
            ModelCommand::Train { what } => {
                let (name, trained) = train_on_store(&engine, &models, what, by, now).await?;
                println!("{}", serde_json::to_string_pretty(&trained)?);
                eprintln!(
                    "saved {name} version {}: {}{}",
                    trained.version,
                    trained.verdict,
                    if trained.accepted {
                        format!(" (activate it with: missive model activate {name})")
                    } else {
                        String::new()
                    }
                );
                Ok(Some(("model.train", name)))
            }
            ModelCommand::List => {
                for e in models.list().await? {
                    println!("{}", serde_json::to_string(&e)?);
                }
                Ok(None)
            }
            ModelCommand::Show { name } => {
                let (e, versions) = models.show(&name).await?;
                let versions: Vec<serde_json::Value> = versions
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "version": v.version,
                            "trained_at": v.trained_at,
                            "trained_by": v.trained_by,
                            "accepted": v.accepted,
                            "verdict": v.verdict,
                            "data": v.data,
                            "features": v.features.names(),
                            "params": v.params,
                        })
                    })
                    .collect();
                let out = serde_json::json!({ "model": e, "versions": versions });
                println!("{}", serde_json::to_string_pretty(&out)?);
                Ok(None)
            }
            ModelCommand::Evaluate { name, version } => {
                let (e, versions) = models.show(&name).await?;
                let want = version.unwrap_or(e.active.unwrap_or(e.latest));
                let v = versions
                    .iter()
                    .find(|v| v.version == want)
                    .with_context(|| format!("model {name:?} has no version {want}"))?;
                println!("{}", serde_json::to_string_pretty(&v.metrics)?);
                Ok(None)
            }
            ModelCommand::Activate {
                name,
                version,
                batch,
                score_every_hours,
                retrain_every_days,
            } => {
                let schedule = missive_engine::models::Schedule {
                    score_every_hours,
                    retrain_every_days,
                };
                let (e, scored) = models
                    .activate(&name, version, !batch, Some(schedule), now)
                    .await?;
                eprintln!(
                    "{name} version {} active ({}); {scored} profiles scored",
                    e.active.unwrap_or(0),
                    if e.live { "live" } else { "batch" }
                );
                Ok(Some(("model.activate", name)))
            }
            ModelCommand::Deactivate { name } => {
                models.deactivate(&name, now).await?;
                eprintln!("{name} no longer scored");
                Ok(Some(("model.deactivate", name)))
            }
            ModelCommand::Score { name } => {
                let n = models.score(&name).await?;
                eprintln!("{n} profiles scored with {name}");
                Ok(Some(("model.score", name)))
            }
            ModelCommand::Delete { name } => {
                models.delete(&name).await?;
                eprintln!("deleted {name}");
                Ok(Some(("model.delete", name)))
            }
        }
    }
    .await;
    let audited = match &result {
        Ok(Some((action, name))) => {
            crate::operator::audit(engine.store(), action, format!("model:{name}"), String::new()).await
        }
        _ => Ok(()),
    };
    engine.shutdown().await;
    audited?;
    result.map(|_| ())
}

/// Reads the table, says what reading did to it on standard error, and returns it with the id
/// column's values when one was named.
fn read_table(
    t: &TableArgs,
    label: Option<&str>,
    positive: Option<&str>,
    fold_col: Option<&str>,
) -> anyhow::Result<(Dataset, Prepared, Option<Vec<String>>)> {
    let mut ignore = t.ignore.clone();
    ignore.extend(t.id_col.iter().cloned());
    let opts = CsvOptions {
        label: label.map(str::to_owned),
        positive: positive.map(str::to_owned),
        fold_col: fold_col.map(str::to_owned),
        ignore,
        category_cap: t.category_cap,
        max_cells: t.max_cells,
        seed: t.seed,
    };
    let path = t.data.as_ref().context("give --data (a CSV table)")?;
    let open = || std::fs::File::open(path).with_context(|| format!("opening {}", path.display()));
    let (data, prep) = read_csv(std::io::BufReader::new(open()?), &opts)
        .with_context(|| format!("reading {}", path.display()))?;
    eprintln!(
        "{} rows, {} features{}",
        prep.rows_used,
        data.names.len(),
        if prep.sampled {
            format!(
                " (a uniform sample of the {} rows: the table is over --max-cells)",
                prep.rows_read
            )
        } else {
            String::new()
        }
    );
    if prep.rows_without_label > 0 {
        eprintln!("{} rows without a label were left out", prep.rows_without_label);
    }
    for i in &prep.imputed {
        eprintln!(
            "{}: {} missing values set to the median, {}",
            i.column, i.missing, i.median
        );
    }
    for h in &prep.one_hot {
        eprintln!(
            "{}: one-hot encoded as {} values{}",
            h.column,
            h.values.len(),
            if h.other > 0 {
                format!(" ({} cells in none of them)", h.other)
            } else {
                String::new()
            }
        );
    }
    // The ids of the rows kept, read again in the same order (sampling keeps file order).
    let ids = match &t.id_col {
        None => None,
        Some(col) if !prep.sampled && prep.rows_without_label == 0 => {
            let mut r = csv::Reader::from_reader(std::io::BufReader::new(open()?));
            let at = r
                .headers()?
                .iter()
                .position(|h| h.trim() == col)
                .with_context(|| format!("no column `{col}` for --id-col"))?;
            let mut ids = Vec::new();
            for rec in r.records() {
                ids.push(rec?.get(at).unwrap_or_default().to_owned());
            }
            Some(ids)
        }
        Some(_) => {
            eprintln!(
                "--id-col ignored in the output: rows were sampled or left out, so the ids would not line up"
            );
            None
        }
    };
    Ok((data, prep, ids))
}

fn train_cluster(a: ClusterArgs) -> anyhow::Result<()> {
    let (data, prep, ids) = read_table(&a.table, None, None, None)?;
    let algorithm = match a.algorithm {
        ClusterAlgorithm::Kmeans => Algorithm::KMeans {
            k: a.k,
            max_k: a.max_k,
            restarts: a.restarts,
        },
        ClusterAlgorithm::Dbscan => Algorithm::Dbscan {
            eps: a.eps,
            min_samples: a.min_samples,
        },
        ClusterAlgorithm::Ward | ClusterAlgorithm::Average => {
            let cut = match (a.k, a.distance) {
                (_, Some(d)) => Cut::Distance(d),
                (Some(k), None) => Cut::Clusters(k),
                (None, None) => anyhow::bail!("hierarchical clustering needs --k or --distance"),
            };
            let linkage = if a.algorithm == ClusterAlgorithm::Ward {
                Linkage::Ward
            } else {
                Linkage::Average
            };
            if data.rows() > hierarchical::MAX_ROWS {
                anyhow::bail!(
                    "hierarchical clustering holds every pairwise distance: {} rows is over {}; lower --max-cells to sample the table",
                    data.rows(),
                    hierarchical::MAX_ROWS
                );
            }
            Algorithm::Hierarchical { linkage, cut }
        }
    };
    let report = cluster::run(&data, &algorithm, a.table.seed)?;
    if let Some(path) = &a.labels_out {
        let mut w = csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
        match &ids {
            Some(_) => w.write_record(["row", "id", "cluster"])?,
            None => w.write_record(["row", "cluster"])?,
        }
        for (i, l) in report.labels.iter().enumerate() {
            let cluster = l.map(|c| c.to_string()).unwrap_or_default();
            match &ids {
                Some(ids) => w.write_record([i.to_string(), ids[i].clone(), cluster])?,
                None => w.write_record([i.to_string(), cluster])?,
            }
        }
        w.flush()?;
    }
    let out = serde_json::json!({ "data": prep, "clustering": report });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn train_propensity(a: PropensityArgs) -> anyhow::Result<()> {
    let (data, prep, _) = read_table(
        &a.table,
        Some(&a.label),
        a.positive.as_deref(),
        a.fold_col.as_deref(),
    )?;
    let algorithm = match a.algorithm {
        PropensityAlgorithm::Rf => classify::Algorithm::RandomForest,
        PropensityAlgorithm::Gbm => classify::Algorithm::GradientBoosting,
        PropensityAlgorithm::Logistic => classify::Algorithm::Logistic,
    };
    let params = if a.params.is_empty() {
        eprintln!(
            "searching the hyperparameter grid by {}-fold AUC on 80 % of the rows…",
            a.folds
        );
        None
    } else {
        Some(classify::Params::with(algorithm, &a.params)?)
    };
    let opts = classify::TrainOptions {
        algorithm,
        params,
        folds: a.folds,
        min_class: a.min_class,
        seed: a.table.seed,
        ..classify::TrainOptions::default()
    };
    let report = classify::train(&data, &opts)?;
    let out = serde_json::json!({ "data": prep, "model": report });
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !report.verdict.accepted {
        anyhow::bail!("{}", report.verdict.reason);
    }
    eprintln!("{}", report.verdict.reason);
    Ok(())
}

fn train_clv(a: ClvArgs) -> anyhow::Result<()> {
    let path = a
        .transactions
        .clone()
        .context("give --transactions (a file) or --name (the store)")?;
    let amount_col = a
        .amount_col
        .clone()
        .context("give --amount-col: the column holding each transaction's value")?;
    let calibration_end = a.calibration_end.context("give --calibration-end (YYYY-MM-DD)")?;
    let mapping = a
        .columns
        .mapping(Some(amount_col), None, "Order Completed".into())?;
    let (rows, report) = missive_engine::import::read_csv_rows(&path, &mapping)
        .with_context(|| format!("reading {}", path.display()))?;
    if report.bad > 0 {
        eprintln!("{} of {} rows left out:", report.bad, report.lines);
        for b in &report.bad_lines {
            eprintln!("  line {}: {}", b.line, b.reason);
        }
    }
    let transactions: Vec<Transaction> = rows
        .into_iter()
        .map(|r| Transaction {
            customer: r.user,
            date: r.timestamp.date_naive(),
            value: r.amount.unwrap_or(0.0),
        })
        .collect();
    let last_day = transactions
        .iter()
        .map(|t| t.date)
        .max()
        .context("the file holds no transaction")?;
    // Without a holdout period (calibration to the last day), there is no holdout check.
    let holdout_end = a.holdout_end.unwrap_or(last_day.max(calibration_end));
    anyhow::ensure!(
        holdout_end >= calibration_end,
        "--holdout-end ({holdout_end}) is before --calibration-end ({})",
        calibration_end
    );
    let customers = summarise(&transactions, calibration_end, holdout_end);
    eprintln!(
        "{} transactions, {} customers by {}; fitting…",
        transactions.len(),
        customers.len(),
        calibration_end
    );
    let bg = bgnbd::fit(&customers)?;
    let gg = match gamma_gamma::fit(&customers) {
        Ok(g) => Some(g),
        Err(missive_models::clv::FitError::NoRepeat) => None,
        Err(e) => {
            eprintln!("Gamma-Gamma not fitted: {e}");
            None
        }
    };
    let weeks = (holdout_end - calibration_end).num_days() as f64 / 7.0;
    let check = (weeks > 0.0).then(|| bg.holdout_check(&customers, weeks, 7));
    anyhow::ensure!(
        (0.0..1.0).contains(&a.monthly_discount),
        "--monthly-discount: from 0 to below 1 (0.01 is 1 % a month)"
    );
    let horizon_weeks = f64::from(a.horizon_months) * 30.0 / 7.0;
    let values: Option<Vec<f64>> = gg.as_ref().map(|g| {
        customers
            .iter()
            .map(|c| value::lifetime_value(&bg, g, c, a.horizon_months, a.monthly_discount))
            .collect()
    });
    if let Some(path) = &a.values_out {
        let mut w = csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
        w.write_record(["customer", "p_alive", "expected_purchases", "lifetime_value"])?;
        for (i, c) in customers.iter().enumerate() {
            let clv = values
                .as_ref()
                .map(|v| format!("{:.2}", v[i]))
                .unwrap_or_default();
            w.write_record([
                c.id.clone(),
                format!("{:.4}", bg.p_alive(c)),
                format!("{:.4}", bg.expected_purchases(c, horizon_weeks)),
                clv,
            ])?;
        }
        w.flush()?;
    }
    let lifetime_value = values.as_ref().map(|v| {
        let total: f64 = v.iter().sum();
        serde_json::json!({
            "months": a.horizon_months,
            "monthly_discount": a.monthly_discount,
            "total": (total * 100.0).round() / 100.0,
            "mean": (total / v.len().max(1) as f64 * 100.0).round() / 100.0,
        })
    });
    let out = serde_json::json!({
        "customers": customers.len(),
        "calibration_end": calibration_end,
        "bg_nbd": bg,
        "gamma_gamma": gg,
        "holdout": check,
        "lifetime_value": lifetime_value,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
