//! `missive bench recs`: recommendations side by side with the `implicit` package
//! (bench/recs/run.sh installs it) on the same generated data, in one run:
//! - ALS training, seconds per iteration, on 1,000,000 interactions × 64 factors (both on this
//!   machine's cores);
//! - the item-to-item build on the same interactions;
//! - serving: one person's top 10 from a 100,000-item catalogue (their vector folded in from
//!   their history, then every item scored), p50 and p99 over many people;
//! - folding one person in (the cost of a new event).

use crate::bench::percentile;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use missive_recs::als::{Als, AlsParams};
use missive_recs::cooccur::{Cooccur, CooccurParams};
use missive_recs::data::Decay;
use missive_recs::matrix::Csr;
use missive_recs::synthetic::Planted;

#[derive(clap::Args, Debug, Clone)]
pub struct RecsBench {
    /// Interactions generated (about 10 per person).
    #[arg(long, default_value_t = 1_000_000)]
    interactions: usize,
    /// Items in the catalogue.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Factors of the matrix factorisation.
    #[arg(long, default_value_t = 64)]
    factors: usize,
    /// ALS iterations timed (each side).
    #[arg(long, default_value_t = 5)]
    iterations: usize,
    /// People served, for the latency percentiles.
    #[arg(long, default_value_t = 2_000)]
    served: usize,
    /// Where the training matrix is written for the Python side (default: a temporary
    /// directory).
    #[arg(long)]
    export: Option<PathBuf>,
    /// A Python with `implicit`: runs bench/recs/implicit_bench.py on the same matrix.
    #[arg(long)]
    python: Option<PathBuf>,
}

pub fn run(b: RecsBench) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = b.export.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "generating {} interactions over {} items…",
        b.interactions, b.items
    );
    let per_user = 10;
    let (data, _) = Planted {
        users: b.interactions / per_user,
        items: b.items,
        groups: 50,
        per_user,
        within: 0.8,
        seed: 3,
    }
    .generate();
    let m = Csr::of(&data, Decay::NONE);
    eprintln!("{} people × {} items, {} cells", m.rows, m.cols, m.nnz());
    {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(dir.join("train.csv")).context("writing the matrix")?,
        );
        writeln!(w, "{} {} {}", m.rows, m.cols, m.nnz())?;
        for u in 0..m.rows {
            let (items, values) = m.row(u);
            for (i, v) in items.iter().zip(values) {
                writeln!(w, "{u} {i} {v}")?;
            }
        }
        w.flush()?;
    }

    eprintln!("ALS, {} factors, {} iterations…", b.factors, b.iterations);
    let params = AlsParams {
        factors: b.factors,
        iterations: b.iterations,
        ..AlsParams::default()
    };
    let started = Instant::now();
    let mut marks = Vec::new();
    let als = Als::fit(&m, &params, |_| marks.push(started.elapsed().as_secs_f64()));
    let per_iteration = started.elapsed().as_secs_f64() / b.iterations as f64;

    eprintln!("item-to-item…");
    let t = Instant::now();
    let co = Cooccur::fit(&data, Decay::NONE, &CooccurParams::default());
    let cooccur_s = t.elapsed().as_secs_f64();
    let pairs: usize = co.neighbours.iter().map(Vec::len).sum();

    eprintln!("serving {} people…", b.served);
    let by_user = data.by_user();
    let mut fold = Vec::with_capacity(b.served);
    let mut serve = Vec::with_capacity(b.served);
    let step = (by_user.len() / b.served.max(1)).max(1);
    let mut sink = 0f32;
    for rows in by_user.iter().step_by(step).take(b.served) {
        let history: Vec<(u32, f32)> = rows.iter().map(|r| (r.item, r.weight)).collect();
        let t = Instant::now();
        let x = als.fold_in(&history);
        fold.push(t.elapsed().as_secs_f64() * 1e6);
        let seen: std::collections::HashSet<u32> = history.iter().map(|(i, _)| *i).collect();
        let top = als.top(&x, 10, |i| seen.contains(&i));
        serve.push(t.elapsed().as_secs_f64() * 1e6);
        sink += top.first().map_or(0.0, |p| p.1);
    }
    std::hint::black_box(sink);
    fold.sort_by(f64::total_cmp);
    serve.sort_by(f64::total_cmp);

    let reference = match &b.python {
        Some(py) => {
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/recs/implicit_bench.py");
            let out = std::process::Command::new(py)
                .arg(script)
                .arg(dir.join("train.csv"))
                .arg(b.factors.to_string())
                .arg(b.iterations.to_string())
                .output()
                .context("running implicit_bench.py")?;
            anyhow::ensure!(
                out.status.success(),
                "implicit_bench.py: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(serde_json::from_slice::<serde_json::Value>(&out.stdout)?)
        }
        None => None,
    };

    println!("| measure | data | missive | implicit | ratio |");
    println!("|---|---|---|---|---|");
    let theirs = reference
        .as_ref()
        .and_then(|r| r["seconds_per_iteration"].as_f64());
    println!(
        "| ALS training, per iteration | {} cells, {} × {} , {} factors | {:.3} s | {} | {} |",
        m.nnz(),
        m.rows,
        m.cols,
        b.factors,
        per_iteration,
        theirs.map_or("not run (pass --python)".into(), |t| format!("{t:.3} s")),
        theirs.map_or(String::new(), |t| format!("{:.2}×", per_iteration / t)),
    );
    println!(
        "| item-to-item build | the same interactions, baskets per person and day | {cooccur_s:.3} s ({pairs} neighbour links) | | |"
    );
    println!(
        "| serving, top 10 with fold-in | {} items × {} factors, {} people | p50 {:.0} µs, p99 {:.0} µs | | |",
        b.items,
        b.factors,
        serve.len(),
        percentile(&serve, 0.5),
        percentile(&serve, 0.99)
    );
    println!(
        "| fold-in of one person | their {per_user}-odd interactions | p50 {:.1} µs, p99 {:.1} µs | | |",
        percentile(&fold, 0.5),
        percentile(&fold, 0.99)
    );
    Ok(())
}
