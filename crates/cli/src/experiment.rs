//! `missive experiment`: experiments on the store (create, list, show, start, stop, conclude,
//! delete, results; as the API does), and `analyze`, missive's experiment statistics on any table of
//! units, so that analysts can read an experiment run elsewhere and compare with their own
//! tools.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use missive_experiment::analysis;

#[derive(clap::Subcommand, Debug)]
pub enum ExperimentCommand {
    /// Create a draft from a JSON definition (see docs/experiments.md), and print it with its
    /// plan.
    Create {
        /// The definition's JSON file.
        #[arg(long)]
        file: PathBuf,
    },
    /// List experiments, one JSON object per line.
    List,
    /// Print one experiment.
    Show {
        /// The experiment's name.
        name: String,
    },
    /// Start (or restart after a stop) an experiment.
    Start {
        /// The experiment's name.
        name: String,
    },
    /// Stop a running experiment.
    Stop {
        /// The experiment's name.
        name: String,
    },
    /// Conclude an experiment, naming the winner or none.
    Conclude {
        /// The experiment's name.
        name: String,
        /// The variant chosen (leave out for "no difference shown").
        #[arg(long)]
        winner: Option<String>,
    },
    /// Print an experiment's results as JSON: every variant's figures, the tests of the primary
    /// metric and the guardrails, the sequential test and the verdict.
    Results {
        /// The experiment's name.
        name: String,
        /// Also write the cumulative-lift chart (SVG) to this file.
        #[arg(long)]
        chart: Option<PathBuf>,
        /// The variant the chart draws against control (default: the first other).
        #[arg(long, requires = "chart")]
        variant: Option<String>,
    },
    /// People who consent to marketing, in the global holdout (delivery.global_holdout_percent)
    /// against the rest: who ordered in the last days, and what they spent.
    GlobalHoldout {
        /// Orders of the last this many days count.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Delete a draft.
    Delete {
        /// The experiment's name.
        name: String,
    },
    /// Compare every variant of a CSV of units with control: rates (0/1 or true/false values)
    /// or amounts, with intervals, p-values corrected for several variants, the sample-ratio
    /// check and a verdict in words. Prints the report as JSON.
    Analyze(AnalyzeArgs),
}

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// The CSV file, one unit per line, with a header line.
    #[arg(long)]
    data: PathBuf,
    /// The column naming each unit's variant.
    #[arg(long)]
    variant_col: String,
    /// The column of the outcome: 0/1 or true/false for a rate, a number for an amount.
    #[arg(long)]
    metric_col: String,
    /// The control variant (default: the first by name).
    #[arg(long)]
    control: Option<String>,
    /// The error rate of tests and intervals.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// The planned split, to check it: `control=50,b=50`.
    #[arg(long)]
    planned: Option<String>,
}

/// Lines that could not be read: how many, and the first few reasons.
#[derive(Default)]
struct Skipped {
    count: u64,
    first: Vec<String>,
}

impl Skipped {
    fn add(&mut self, line: u64, why: String) {
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(format!("line {line}: {why}"));
        }
    }
}

fn metric_value(s: &str) -> Result<f64, String> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "true" => return Ok(1.0),
        "false" => return Ok(0.0),
        "" => return Err("the metric is empty".into()),
        _ => {}
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("the metric {t:?} is not a number")),
    }
}

fn parse_planned(s: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    s.split(',')
        .map(|part| {
            let (name, w) = part
                .split_once('=')
                .with_context(|| format!("--planned: {part:?} is not NAME=WEIGHT"))?;
            let w: f64 = w
                .trim()
                .parse()
                .with_context(|| format!("--planned: the weight of {name:?} is not a number"))?;
            Ok((name.trim().to_owned(), w))
        })
        .collect()
}

/// The commands on the store.
pub async fn on_store(cfg: crate::config::Config, cmd: ExperimentCommand) -> anyhow::Result<()> {
    use missive_sending::experiments::{Experiments, Transition};
    // `analyze` reads no store: none is opened (or created) for it.
    let cmd = match cmd {
        ExperimentCommand::Analyze(args) => return analyze(args),
        other => other,
    };
    let store = crate::stores::open_store(&cfg).await?;
    let experiments = Experiments::new(store.clone());
    let now = chrono::Utc::now();
    let print = |e: &missive_experiment::definition::Experiment| -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(e)?);
        Ok(())
    };
    let (action, name, result) = match cmd {
        ExperimentCommand::Analyze(args) => return analyze(args),
        ExperimentCommand::List => {
            for e in experiments.list().await? {
                println!("{}", serde_json::to_string(&e)?);
            }
            return Ok(());
        }
        ExperimentCommand::Show { name } => return print(&experiments.get(&name).await?),
        ExperimentCommand::GlobalHoldout { days } => {
            anyhow::ensure!((1..=3650).contains(&days), "--days: 1 to 3650");
            let since = now - chrono::TimeDelta::days(i64::from(days));
            let r = experiments
                .global_holdout(cfg.delivery.global_holdout_percent, since)
                .await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        ExperimentCommand::Results { name, chart, variant } => {
            let results = experiments.results(&name).await?;
            if let Some(path) = chart {
                let svg = experiments.chart(&name, variant.as_deref()).await?;
                std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("chart written to {}", path.display());
            }
            println!("{}", serde_json::to_string_pretty(&results)?);
            return Ok(());
        }
        ExperimentCommand::Create { file } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let def: missive_experiment::definition::ExperimentIn = serde_json::from_str(&text)
                .with_context(|| format!("{} is not an experiment definition", file.display()))?;
            let name = def.name.clone();
            (
                "experiment.create",
                name,
                experiments.create(def, now).await.map(Some),
            )
        }
        ExperimentCommand::Start { name } => {
            let r = experiments
                .transition(&name, Transition::Start, now)
                .await
                .map(Some);
            ("experiment.start", name, r)
        }
        ExperimentCommand::Stop { name } => {
            let r = experiments
                .transition(&name, Transition::Stop, now)
                .await
                .map(Some);
            ("experiment.stop", name, r)
        }
        ExperimentCommand::Conclude { name, winner } => {
            let r = experiments
                .transition(&name, Transition::Conclude { winner }, now)
                .await
                .map(Some);
            ("experiment.conclude", name, r)
        }
        ExperimentCommand::Delete { name } => {
            let r = experiments.delete(&name).await.map(|()| None);
            ("experiment.delete", name, r)
        }
    };
    crate::operator::audit_success(&result, &store, action, format!("experiment:{name}")).await?;
    match result? {
        Some(e) => print(&e),
        None => {
            println!("deleted {name:?}");
            Ok(())
        }
    }
}

fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    let planned = args.planned.as_deref().map(parse_planned).transpose()?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&args.data)
        .with_context(|| format!("cannot read {}", args.data.display()))?;
    let headers = reader.headers().context("the CSV has no header line")?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h.trim() == name).with_context(|| {
            format!(
                "no column {name:?} in {} (columns: {})",
                args.data.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let (vcol, mcol) = (column(&args.variant_col)?, column(&args.metric_col)?);
    let mut units = Vec::new();
    let mut skipped = Skipped::default();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                skipped.add(line, e.to_string());
                continue;
            }
        };
        let (Some(v), Some(m)) = (record.get(vcol), record.get(mcol)) else {
            skipped.add(line, "too few fields".into());
            continue;
        };
        if v.trim().is_empty() {
            skipped.add(line, "the variant is empty".into());
            continue;
        }
        match metric_value(m) {
            Ok(x) => units.push((v.trim().to_owned(), x)),
            Err(why) => skipped.add(line, why),
        }
    }
    if skipped.count > 0 {
        eprintln!(
            "skipped {} line(s) that could not be read: {}",
            skipped.count,
            skipped.first.join("; ")
        );
    }
    let report = analysis::analyze(&units, args.control.as_deref(), args.alpha, planned.as_ref())?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("{}", report.verdict);
    Ok(())
}
