//! `missive import FILE`: bulk import straight into the store, through the same engine as live
//! events, with a progress bar. Idempotent; bad lines are reported and skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use missive_core::SystemClock;
use missive_engine::Engine;
use missive_engine::import::{CsvMapping, Delimiter, ImportFormat, import_file};

use crate::config::Config;
use crate::stores::open_store;

/// How a CSV transaction file is read: shared by `missive import` and `missive model train`.
#[derive(clap::Args, Debug, Clone)]
pub struct CsvColumns {
    /// CSV: the field separator: a single character, `tab`, or `whitespace` (runs of blanks).
    #[arg(long, default_value = ",")]
    delimiter: String,
    /// CSV: the first line is data, not a header.
    #[arg(long)]
    no_header: bool,
    /// CSV: the column holding the customer id (header name or 0-based index).
    #[arg(long, default_value = "user_id")]
    user_col: String,
    /// CSV: the column holding the time.
    #[arg(long, default_value = "timestamp")]
    time_col: String,
    /// CSV: chrono format of the time column, e.g. %Y%m%d. Default: ISO-8601.
    #[arg(long)]
    time_format: Option<String>,
}

impl CsvColumns {
    /// The mapping, with the amount and quantity columns and the event rows become.
    pub fn mapping(
        &self,
        amount_col: Option<String>,
        quantity_col: Option<String>,
        event: String,
    ) -> anyhow::Result<CsvMapping> {
        let delimiter = match self.delimiter.as_str() {
            "whitespace" => Delimiter::Whitespace,
            "tab" | "\\t" => Delimiter::Char(b'\t'),
            d if d.len() == 1 => Delimiter::Char(d.as_bytes()[0]),
            d => anyhow::bail!("--delimiter: expected one character, `tab` or `whitespace`, got {d:?}"),
        };
        Ok(CsvMapping {
            delimiter,
            has_header: !self.no_header,
            user_col: self.user_col.clone(),
            time_col: self.time_col.clone(),
            time_format: self.time_format.clone(),
            amount_col,
            quantity_col,
            event,
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The file to import.
    file: PathBuf,
    /// `jsonl` (Segment messages, one per line) or `csv` (transactions). Default: from the
    /// file name (`.jsonl`/`.json` → jsonl, anything else → csv).
    #[arg(long)]
    format: Option<String>,
    #[command(flatten)]
    columns: CsvColumns,
    /// CSV: the column holding the order amount (becomes properties.revenue).
    #[arg(long)]
    amount_col: Option<String>,
    /// CSV: the column holding the quantity (becomes properties.quantity).
    #[arg(long)]
    quantity_col: Option<String>,
    /// CSV: the event each row becomes.
    #[arg(long, default_value = "Order Completed")]
    event: String,
}

impl ImportArgs {
    fn format(&self) -> anyhow::Result<ImportFormat> {
        let name = self.file.extension().and_then(|e| e.to_str()).unwrap_or_default();
        let fmt = self.format.clone().unwrap_or_else(|| {
            if matches!(name, "jsonl" | "json" | "ndjson") {
                "jsonl".into()
            } else {
                "csv".into()
            }
        });
        match fmt.as_str() {
            "jsonl" => Ok(ImportFormat::Jsonl),
            "csv" => Ok(ImportFormat::Csv(self.columns.mapping(
                self.amount_col.clone(),
                self.quantity_col.clone(),
                self.event.clone(),
            )?)),
            other => anyhow::bail!("--format: expected jsonl or csv, got {other:?}"),
        }
    }
}

pub async fn run(cfg: Config, args: ImportArgs) -> anyhow::Result<()> {
    let format = args.format()?;
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    std::fs::create_dir_all(&cfg.data_dir)?;
    let store = open_store(&cfg).await?;
    missive_engine::auth::ensure_workspace(&store).await?;
    let engine = Engine::start(store, Arc::new(SystemClock), cfg.engine_config()).await?;

    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let report = import_file(&engine, &args.file, &format, |bytes, r| {
        bar.set_position(bytes);
        let rate = r.lines as f64 / started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!("{} lines, {:.0} lines/s, {} bad", r.lines, rate, r.bad));
    })
    .await;
    bar.finish_and_clear();
    engine.shutdown().await;
    let report = report?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {}: {} lines in {:.1} s ({:.0} lines/s): {} new events, {} already present, {} bad lines",
        args.file.display(),
        report.lines,
        secs,
        report.lines as f64 / secs.max(1e-3),
        report.stored,
        report.duplicates,
        report.bad
    );
    if report.erased > 0 {
        println!(
            "  {} events name people who were erased and were not stored (docs/privacy.md)",
            report.erased
        );
    }
    for b in &report.bad_lines {
        println!("  line {}: {}", b.line, b.reason);
    }
    if report.bad as usize > report.bad_lines.len() {
        println!(
            "  … and {} more bad lines",
            report.bad as usize - report.bad_lines.len()
        );
    }
    Ok(())
}
