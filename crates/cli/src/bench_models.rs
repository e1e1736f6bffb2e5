//! `missive bench models`: training and scoring times of the models, side by side with
//! scikit-learn and `lifetimes` on the same data in the same run (bench/models/run.sh installs
//! them and passes `--python`).
//!
//! - K-Means, k = 8, one k-means++ start, on 1,000,000 × 8 (eight Gaussian blobs);
//! - gradient boosting, 100 iterations of 31 leaves, on 100,000 × 30 (a nonlinear outcome);
//! - BG/NBD on the paper's CDNOW sample (the same customer summaries for both);
//! - live scoring: one profile's features through a 100-tree boosted model and forest (the
//!   forest's trees walked side by side, and one after another for comparison).
//!
//! The data are generated here with a seed and written to `--export` as raw little-endian
//! `f64` for the Python side.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use missive_models::classify::boosted::{Boosted, BoostedParams};
use missive_models::classify::forest::{Forest, ForestParams};
use missive_models::classify::metrics::auc;
use missive_models::cluster::kmeans;
use missive_models::clv::bgnbd;
use missive_models::clv::summary::{Transaction, summarise};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(clap::Args, Debug, Clone)]
pub struct ModelsBench {
    /// Rows for K-Means.
    #[arg(long, default_value_t = 1_000_000)]
    kmeans_rows: usize,
    /// Rows for gradient boosting.
    #[arg(long, default_value_t = 100_000)]
    gbm_rows: usize,
    /// The paper's CDNOW sample, for the BG/NBD fit.
    #[arg(long, default_value = "../shared/data/cdnow/CDNOW_sample.txt")]
    cdnow_sample: PathBuf,
    /// Where the generated data are written for the Python side (default: a temporary
    /// directory).
    #[arg(long)]
    export: Option<PathBuf>,
    /// A Python with scikit-learn and lifetimes: runs bench/models/sklearn_bench.py on the
    /// same data and prints both side by side.
    #[arg(long)]
    python: Option<PathBuf>,
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn write_f64(path: &Path, values: &[f64]) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?,
    );
    for v in values {
        w.write_all(&v.to_le_bytes())?;
    }
    w.flush()?;
    Ok(())
}

struct Timing {
    what: &'static str,
    seconds: f64,
    detail: String,
}

pub fn run(b: ModelsBench) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = b.export.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let mut rng = StdRng::seed_from_u64(11);
    let mut ours = Vec::new();

    // K-Means: eight blobs in eight dimensions.
    let dim = 8;
    let centres: Vec<f64> = (0..8 * dim).map(|_| rng.random_range(-10.0..10.0)).collect();
    let mut x = Vec::with_capacity(b.kmeans_rows * dim);
    for _ in 0..b.kmeans_rows {
        let c = rng.random_range(0..8);
        for j in 0..dim {
            x.push(centres[c * dim + j] + 2.0 * normal(&mut rng));
        }
    }
    write_f64(&dir.join("kmeans.f64"), &x)?;
    eprintln!("K-Means on {} × {dim}…", b.kmeans_rows);
    let params = kmeans::KMeansParams {
        restarts: 1,
        seed: 1,
        ..kmeans::KMeansParams::new(8)
    };
    let t = Instant::now();
    let m = kmeans::fit(&x, dim, &params)?;
    ours.push(Timing {
        what: "kmeans",
        seconds: t.elapsed().as_secs_f64(),
        detail: format!("{} iterations, inertia {:.4e}", m.iterations, m.inertia),
    });
    drop(x);

    // Gradient boosting: 30 features, an outcome with interactions.
    let d = 30;
    let n = b.gbm_rows;
    let mut cols: Vec<Vec<f64>> = (0..d).map(|_| Vec::with_capacity(n)).collect();
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
        let z =
            row[0] - 0.8 * row[1] + 0.6 * row[2] * row[3] + (row[4] > 0.5) as u8 as f64 - 0.5 * row[5].abs();
        y.push(rng.random::<f64>() < 1.0 / (1.0 + (-z).exp()));
        for (c, v) in cols.iter_mut().zip(row) {
            c.push(v);
        }
    }
    let row_major: Vec<f64> = (0..n).flat_map(|i| cols.iter().map(move |c| c[i])).collect();
    write_f64(&dir.join("gbm_x.f64"), &row_major)?;
    write_f64(
        &dir.join("gbm_y.f64"),
        &y.iter().map(|v| f64::from(u8::from(*v))).collect::<Vec<_>>(),
    )?;
    eprintln!("gradient boosting on {n} × {d}…");
    let gp = BoostedParams::default();
    let t = Instant::now();
    let boosted = Boosted::fit(&cols, &y, &gp, 1).map_err(anyhow::Error::msg)?;
    let secs = t.elapsed().as_secs_f64();
    let scores: Vec<f64> = (0..n)
        .map(|i| boosted.predict(&row_major[i * d..(i + 1) * d]))
        .collect();
    ours.push(Timing {
        what: "gbm",
        seconds: secs,
        detail: format!(
            "{} trees, training AUC {:.4}",
            boosted.trees.len(),
            auc(&scores, &y).unwrap_or(0.0)
        ),
    });

    // Live scoring: one row at a time, as a profile change is scored.
    let rows = 100_000.min(n);
    let t = Instant::now();
    let mut sink = 0.0;
    for i in 0..rows {
        sink += boosted.predict(&row_major[i * d..(i + 1) * d]);
    }
    let gbm_ns = t.elapsed().as_nanos() as f64 / rows as f64;
    let sample: Vec<Vec<f64>> = cols.iter().map(|c| c[..20_000.min(n)].to_vec()).collect();
    let forest = Forest::fit(
        &sample,
        &y[..20_000.min(n)],
        &ForestParams {
            min_samples_leaf: 5,
            ..ForestParams::default()
        },
        1,
    );
    let t = Instant::now();
    for i in 0..rows {
        sink += forest.predict(&row_major[i * d..(i + 1) * d]);
    }
    let forest_ns = t.elapsed().as_nanos() as f64 / rows as f64;
    // The same forest one tree after another, as it was scored before the side-by-side walk.
    let t = Instant::now();
    for i in 0..rows {
        let row = &row_major[i * d..(i + 1) * d];
        sink += forest.trees.iter().map(|t| t.predict(row)).sum::<f64>() / forest.trees.len() as f64;
    }
    let forest_alone_ns = t.elapsed().as_nanos() as f64 / rows as f64;
    std::hint::black_box(sink);

    // BG/NBD on the CDNOW sample.
    let mut bg_line = None;
    if b.cdnow_sample.exists() {
        let text = std::fs::read_to_string(&b.cdnow_sample)?;
        let mut tx = Vec::new();
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = l.split_whitespace().collect();
            anyhow::ensure!(
                f.len() >= 5,
                "{}: expected the paper's five columns",
                b.cdnow_sample.display()
            );
            tx.push(Transaction {
                customer: f[1].to_owned(),
                date: NaiveDate::parse_from_str(f[2], "%Y%m%d")?,
                value: f[4].parse()?,
            });
        }
        let end = NaiveDate::from_ymd_opt(1997, 9, 30).context("date")?;
        let customers = summarise(&tx, end, end);
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("cdnow_summary.csv"))?);
        writeln!(w, "frequency,recency,T")?;
        for c in &customers {
            writeln!(w, "{},{},{}", c.x, c.t_x, c.t)?;
        }
        w.flush()?;
        let t = Instant::now();
        let fit = bgnbd::fit(&customers)?;
        ours.push(Timing {
            what: "bgnbd",
            seconds: t.elapsed().as_secs_f64(),
            detail: format!("r {:.4} α {:.4} a {:.4} b {:.4}", fit.r, fit.alpha, fit.a, fit.b),
        });
        bg_line = Some(customers.len());
    } else {
        eprintln!("{} not found: BG/NBD skipped", b.cdnow_sample.display());
    }

    let theirs: Option<serde_json::Value> = match &b.python {
        None => None,
        Some(py) => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/models/sklearn_bench.py");
            eprintln!("scikit-learn and lifetimes on the same data…");
            let out = std::process::Command::new(py)
                .arg(&script)
                .arg(&dir)
                .args([b.kmeans_rows.to_string(), n.to_string()])
                .output()
                .with_context(|| format!("running {}", script.display()))?;
            anyhow::ensure!(
                out.status.success(),
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            Some(serde_json::from_slice(&out.stdout).context("the Python side's JSON")?)
        }
    };

    println!("| model | data | missive | reference | ratio |");
    println!("|---|---|---|---|---|");
    for t in &ours {
        let data = match t.what {
            "kmeans" => format!("{} × 8, k = 8, one start", b.kmeans_rows),
            "gbm" => format!("{n} × 30, 100 iterations, 31 leaves"),
            _ => format!("CDNOW sample, {} customers", bg_line.unwrap_or(0)),
        };
        let reference = theirs.as_ref().and_then(|v| v[t.what].as_object());
        let (rs, rd) = match reference {
            Some(r) => (
                r["seconds"].as_f64().unwrap_or(f64::NAN),
                r["detail"].as_str().unwrap_or("").to_owned(),
            ),
            None => (f64::NAN, "not run (pass --python)".into()),
        };
        println!(
            "| {} | {data} | {:.3} s ({}) | {:.3} s ({rd}) | {:.2}× |",
            t.what,
            t.seconds,
            t.detail,
            rs,
            t.seconds / rs
        );
    }
    println!(
        "| live scoring | one row of 30 features | boosted, 100 trees: {gbm_ns:.0} ns; forest, 100 trees: {forest_ns:.0} ns (one tree after another: {forest_alone_ns:.0} ns) | | |"
    );
    Ok(())
}
