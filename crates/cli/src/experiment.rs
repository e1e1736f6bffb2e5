//! `missive experiment analyze`: missive's experiment statistics on any table of units, so
//! that analysts can read an experiment run elsewhere and compare with their own tools.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use missive_experiment::analysis;

#[derive(clap::Subcommand, Debug)]
pub enum ExperimentCommand {
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

pub fn run(cmd: ExperimentCommand) -> anyhow::Result<()> {
    let ExperimentCommand::Analyze(args) = cmd;
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
