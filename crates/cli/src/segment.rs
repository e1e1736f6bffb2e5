//! `missive segment preview "<expression>"`: how many profiles a segment would hold, with a
//! sample, straight from the store (stop `missive serve` first, or use
//! `POST /v1/segments/preview` on the running server).

use anyhow::Context;
use chrono::Utc;
use missive_engine::segments::{infer_schema, preview};
use missive_segment::{Segment, SegmentError};

use crate::config::{Config, open_store};

#[derive(clap::Subcommand, Debug)]
pub enum SegmentCommand {
    /// Count the profiles an expression selects, without saving it.
    Preview {
        /// The segment expression, e.g. 'traits.city == "Paris" and orders.count >= 2'.
        expression: String,
        /// Profiles to list as a sample.
        #[arg(long, default_value_t = 10)]
        sample: usize,
    },
}

pub async fn run(cfg: Config, cmd: SegmentCommand) -> anyhow::Result<()> {
    match cmd {
        SegmentCommand::Preview { expression, sample } => {
            let store = open_store(&cfg).await?;
            let schema = infer_schema(&*store).await?;
            let segment = match Segment::compile(&expression, &schema) {
                Ok(s) => s,
                Err(e) => {
                    let (line, column, hint) = match &e {
                        SegmentError::Parse(p) => (p.line, p.column, p.hint.clone()),
                        SegmentError::Type(t) => (t.line, t.column, t.hint.clone()),
                    };
                    let text_line = expression
                        .lines()
                        .nth(line.saturating_sub(1) as usize)
                        .unwrap_or_default();
                    eprintln!("  {text_line}");
                    eprintln!("  {}^", " ".repeat(column.saturating_sub(1) as usize));
                    if let Some(h) = hint {
                        eprintln!("  hint: {h}");
                    }
                    anyhow::bail!("{e}");
                }
            };
            let total = store.stats().await?.profiles;
            let bar = indicatif::ProgressBar::new(total);
            let result = preview(&*store, &segment, Utc::now(), sample, |n| bar.set_position(n))
                .await
                .context("previewing the segment")?;
            bar.finish_and_clear();
            println!(
                "{} of {} profiles are in this segment",
                result.members, result.scanned
            );
            for id in &result.sample {
                println!("  {id}");
            }
            Ok(())
        }
    }
}
