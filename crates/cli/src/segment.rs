//! `missive segment save|list|delete|members|preview|export`, straight on the store: stop
//! `missive serve` first, or use `/v1/segments` on the running server.

use anyhow::Context;
use chrono::Utc;
use missive_engine::schema::segment_schema;
use missive_engine::segments::{SegmentServiceError, delete_segment, preview, save_segment};
use missive_segment::{Segment, SegmentError};

use crate::config::Config;
use crate::operator::{audit_success, start_engine};
use crate::stores::open_store;

#[derive(clap::Subcommand, Debug)]
pub enum SegmentCommand {
    /// Save (create or replace) a segment and backfill its members.
    Save {
        /// The segment's name: letters, digits, `-` and `_`.
        name: String,
        /// The segment expression.
        expression: String,
    },
    /// List the saved segments.
    List,
    /// Delete a saved segment.
    Delete {
        /// The segment's name.
        name: String,
    },
    /// Write a saved segment's members as CSV for a purpose they consented to (with chosen
    /// traits), or as a customer-match list of hashed addresses (docs/integrations.md).
    Export {
        /// The segment's name.
        name: String,
        /// `csv` or `customer-match`.
        #[arg(long, value_parser = ["csv", "customer-match"])]
        format: String,
        /// The purpose the export serves (`csv`): email_marketing, personalization, profiling,
        /// third_party_enrichment or advertising.
        #[arg(long)]
        purpose: Option<String>,
        /// Traits to add as columns (`csv`), comma-separated.
        #[arg(long, value_delimiter = ',')]
        traits: Vec<String>,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Print the members of a saved segment, one profile id per line.
    Members {
        /// The segment's name.
        name: String,
    },
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
        SegmentCommand::Save { name, expression } => {
            let engine = start_engine(&cfg).await?;
            let started = std::time::Instant::now();
            let (tx, mut rx) = tokio::sync::watch::channel((0u64, 0u64));
            let bar = indicatif::ProgressBar::new(0);
            let shown = bar.clone();
            let watcher = tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let (done, total) = *rx.borrow();
                    shown.set_length(total);
                    shown.set_position(done);
                }
            });
            let result = save_segment(&engine, &name, &expression, Some(tx)).await;
            let _ = watcher.await;
            bar.finish_and_clear();
            let audited =
                audit_success(&result, engine.store(), "segment.save", format!("segment:{name}")).await;
            engine.shutdown().await;
            audited?;
            match result {
                Ok(n) => {
                    println!(
                        "saved {name:?}: {n} profiles evaluated in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                    Ok(())
                }
                Err(SegmentServiceError::Language(e)) => {
                    show_error(&expression, &e);
                    anyhow::bail!("{e}")
                }
                Err(e) => Err(e.into()),
            }
        }
        SegmentCommand::List => {
            let store = open_store(&cfg).await?;
            for s in store.documents().list_segments().await? {
                println!("{}\t{}", s.name, s.expression);
            }
            Ok(())
        }
        SegmentCommand::Delete { name } => {
            let engine = start_engine(&cfg).await?;
            let result = delete_segment(&engine, &name).await;
            let audited = audit_success(
                &result,
                engine.store(),
                "segment.delete",
                format!("segment:{name}"),
            )
            .await;
            engine.shutdown().await;
            result?;
            audited?;
            println!("deleted {name:?}");
            Ok(())
        }
        SegmentCommand::Export {
            name,
            format,
            purpose,
            traits,
            out,
        } => {
            use missive_engine::audiences::{Format, export};
            let format = if format == "csv" {
                Format::Csv
            } else {
                Format::CustomerMatch
            };
            let engine = start_engine(&cfg).await?;
            let result = export(&engine, &name, format, purpose.as_deref(), &traits).await;
            let audited = audit_success(
                &result,
                engine.store(),
                "segment.export",
                format!("segment:{name}"),
            )
            .await;
            engine.shutdown().await;
            audited?;
            let done = result?;
            match out {
                Some(path) => std::fs::write(&path, &done.csv)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&done.csv)?;
                }
            }
            eprintln!(
                "{} member(s) written, {} left out (no consent to the purpose, or no address)",
                done.written, done.left_out
            );
            Ok(())
        }
        SegmentCommand::Members { name } => {
            let store = open_store(&cfg).await?;
            use std::io::Write;
            let mut after = None;
            let mut n = 0u64;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            loop {
                let page = store.events().segment_members(&name, after, 10_000).await?;
                let Some(last) = page.last().cloned() else { break };
                for id in &page {
                    // A closed pipe (`| head`) ends the listing quietly.
                    if writeln!(out, "{id}").is_err() {
                        return Ok(());
                    }
                }
                n += page.len() as u64;
                after = Some(last);
            }
            if out.flush().is_ok() {
                eprintln!("{n} members");
            }
            Ok(())
        }
        SegmentCommand::Preview { expression, sample } => {
            let store = open_store(&cfg).await?;
            let schema = segment_schema(&store).await?;
            let segment = match Segment::compile(&expression, &schema) {
                Ok(s) => s,
                Err(e) => {
                    show_error(&expression, &e);
                    anyhow::bail!("{e}");
                }
            };
            let total = store.events().stats().await?.profiles;
            let bar = indicatif::ProgressBar::new(total);
            let result = preview(&store, &segment, Utc::now(), sample, |n| bar.set_position(n))
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

/// Points at the error in the expression, with the hint.
fn show_error(expression: &str, e: &SegmentError) {
    let (line, column, hint) = match e {
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
}
