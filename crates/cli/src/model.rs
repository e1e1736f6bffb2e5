//! `missive model`: models trained from files, so that a data scientist can fit them on any
//! table and compare with their own tools. Today: `train clv`, the BG/NBD and Gamma-Gamma
//! lifetime-value models from a transaction log (docs/models.md).

use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use missive_models::clv::summary::{Transaction, summarise};
use missive_models::clv::{bgnbd, gamma_gamma};

#[derive(clap::Subcommand, Debug)]
pub enum ModelCommand {
    /// Train a model from a file and print what was fitted, as JSON.
    Train {
        #[command(subcommand)]
        what: TrainCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TrainCommand {
    /// Lifetime value from a transaction log: BG/NBD (repeat purchases, P(alive)) and
    /// Gamma-Gamma (spend), fitted over a calibration period and checked on the holdout after.
    Clv(ClvArgs),
}

#[derive(clap::Args, Debug)]
pub struct ClvArgs {
    /// The transaction file (CSV, or whitespace-separated like CDNOW).
    #[arg(long)]
    transactions: PathBuf,
    #[command(flatten)]
    columns: crate::import::CsvColumns,
    /// The column holding the transaction's value.
    #[arg(long)]
    amount_col: String,
    /// The last day of the calibration period (YYYY-MM-DD).
    #[arg(long)]
    calibration_end: NaiveDate,
    /// The last day of the holdout period (default: the last transaction's day).
    #[arg(long)]
    holdout_end: Option<NaiveDate>,
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Train {
            what: TrainCommand::Clv(args),
        } => train_clv(args),
    }
}

fn train_clv(a: ClvArgs) -> anyhow::Result<()> {
    let mapping = a
        .columns
        .mapping(Some(a.amount_col.clone()), None, "Order Completed".into())?;
    let (rows, report) = missive_engine::import::read_csv_rows(&a.transactions, &mapping)
        .with_context(|| format!("reading {}", a.transactions.display()))?;
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
    let holdout_end = a.holdout_end.unwrap_or(last_day.max(a.calibration_end));
    anyhow::ensure!(
        holdout_end >= a.calibration_end,
        "--holdout-end ({holdout_end}) is before --calibration-end ({})",
        a.calibration_end
    );
    let customers = summarise(&transactions, a.calibration_end, holdout_end);
    eprintln!(
        "{} transactions, {} customers by {}; fitting…",
        transactions.len(),
        customers.len(),
        a.calibration_end
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
    let weeks = (holdout_end - a.calibration_end).num_days() as f64 / 7.0;
    let check = (weeks > 0.0).then(|| bg.holdout_check(&customers, weeks, 7));
    let out = serde_json::json!({
        "customers": customers.len(),
        "calibration_end": a.calibration_end,
        "bg_nbd": bg,
        "gamma_gamma": gg,
        "holdout": check,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
