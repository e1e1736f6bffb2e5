//! `missive recs`: recommendations evaluated offline on any table of interactions, so that a
//! strategy is chosen on evidence before it ships. See docs/recommendations.md.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use missive_recs::cooccur::Similarity;
use missive_recs::data::{Decay, EventWeights, Item, LineError, read_interactions, read_items};
use missive_recs::eval::{self, Holdout, Metrics, Split};
use missive_recs::strategy::{Settings, Strategy, Trained};

#[derive(clap::Subcommand, Debug)]
pub enum RecsCommand {
    /// Trains each strategy on the past of a split and measures it on the future: precision,
    /// recall, NDCG, MAP and hit rate at k, catalogue coverage and popularity bias.
    Evaluate(EvaluateArgs),
}

impl RecsCommand {
    pub fn reads_no_store(&self) -> bool {
        match self {
            RecsCommand::Evaluate(a) => !a.from_store,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// A CSV of interactions: `user`, `item`, `weight` or `event`, optional `time` and
    /// `basket` (an order or session).
    #[arg(long, required_unless_present = "from_store", conflicts_with = "from_store")]
    pub interactions: Option<PathBuf>,
    /// The store's own product events instead (profiles with `personalization` consent), and
    /// its catalogue as the items.
    #[arg(long)]
    pub from_store: bool,
    /// With `--from-store`: stop reading at this many interactions.
    #[arg(long, default_value_t = 5_000_000)]
    pub max_interactions: usize,
    /// A CSV of items (`id`, `title`, `description`, `category`, `brand`, `colour`, `price`,
    /// `in_stock`), for the content-based strategy.
    #[arg(long)]
    pub items: Option<PathBuf>,
    /// `time` (the last 20 % of the interactions by time are the test), `leave-last-n` (each
    /// person's last one) or `leave-last-N`.
    #[arg(long, default_value = "time")]
    pub split: String,
    /// With `--split time`: the share of interactions after the cutoff.
    #[arg(long, default_value_t = 0.2)]
    pub test_share: f64,
    /// The length of each person's list (1 to 1,000).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Comma-separated: popular, item2item, als, content, hybrid (default: all that apply).
    #[arg(long, value_delimiter = ',')]
    pub strategies: Vec<String>,
    /// Factors of the matrix factorisation.
    #[arg(long, default_value_t = 64)]
    pub factors: usize,
    /// Iterations of the matrix factorisation.
    #[arg(long, default_value_t = 15)]
    pub iterations: usize,
    /// λ, the matrix factorisation's L2 penalty.
    #[arg(long, default_value_t = 0.01)]
    pub regularization: f32,
    /// Confidence per unit of weight.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f32,
    /// Half-life of an interaction's weight, in days (0: no decay).
    #[arg(long, default_value_t = 90.0)]
    pub half_life_days: f64,
    /// An event's weight, replacing the default or adding an event (0 leaves it out), e.g.
    /// `--weight "Product Viewed=0.5"`; repeatable. For the `event` column and the store.
    #[arg(long = "weight", value_name = "EVENT=WEIGHT", value_parser = EventWeights::parse_override)]
    pub weights: Vec<(String, f32)>,
    /// Item-to-item similarity: cosine, jaccard, lift or confidence.
    #[arg(long, default_value = "cosine")]
    pub similarity: String,
    /// Seed of the factorisation's random start.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Prints the metrics as JSON (one object per strategy) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Writes the split to this directory (`train.csv` with user and item numbers and the
    /// decayed weight, `test.json`), so that another tool can be trained on the same data.
    #[arg(long)]
    pub write_split: Option<PathBuf>,
    /// Also scores another tool's top-k lists (`{"user number": [item numbers…]}`, numbers as
    /// in `--write-split`) with the same metrics, under the name `reference`.
    #[arg(long)]
    pub score_lists: Option<PathBuf>,
}

fn report_bad(what: &str, bad: &[LineError]) {
    if bad.is_empty() {
        return;
    }
    eprintln!("{what}: {} lines left out:", bad.len());
    for b in bad.iter().take(10) {
        eprintln!("  line {}: {}", b.line, b.why);
    }
    if bad.len() > 10 {
        eprintln!("  … and {} more", bad.len() - 10);
    }
}

pub async fn run(cfg: crate::config::Config, what: RecsCommand) -> anyhow::Result<()> {
    match what {
        RecsCommand::Evaluate(a) if a.from_store => {
            let engine = crate::operator::start_engine(&cfg).await?;
            engine.sync().await?;
            let store = engine.store().clone();
            eprintln!("reading the store's product events…");
            let weights = EventWeights::default()
                .with(&a.weights)
                .map_err(anyhow::Error::msg)?;
            let (data, read) =
                missive_engine::recs::interactions(&store, &weights, a.max_interactions, |n| {
                    if n % 10_000 == 0 {
                        eprintln!("  {n} profiles read");
                    }
                })
                .await?;
            eprintln!(
                "{} profiles: {} left out without personalization consent, {} with interactions, {} interactions{}",
                read.profiles,
                read.no_consent,
                read.with_interactions,
                read.interactions,
                if read.truncated {
                    " (stopped at --max-interactions)"
                } else {
                    ""
                }
            );
            let content = missive_sending::content::ContentService::new(store, cfg.content_config());
            let items: Vec<Item> = content
                .catalog()
                .await?
                .products()
                .map(missive_sending::content::item_of_product)
                .collect();
            tokio::task::spawn_blocking(move || evaluate(a, data, items)).await?
        }
        RecsCommand::Evaluate(a) => {
            tokio::task::spawn_blocking(move || {
                let (data, items) = read_files(&a)?;
                evaluate(a, data, items)
            })
            .await?
        }
    }
}

fn read_files(a: &EvaluateArgs) -> anyhow::Result<(missive_recs::data::Interactions, Vec<Item>)> {
    let path = a
        .interactions
        .as_ref()
        .context("--interactions FILE.csv or --from-store")?;
    let file = std::fs::File::open(path).with_context(|| format!("--interactions {}", path.display()))?;
    let weights = EventWeights::default()
        .with(&a.weights)
        .map_err(anyhow::Error::msg)?;
    let (data, bad) = read_interactions(std::io::BufReader::new(file), &weights)
        .with_context(|| format!("--interactions {}", path.display()))?;
    report_bad("interactions", &bad);
    let items: Vec<Item> = match &a.items {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("--items {}", p.display()))?;
            let (items, bad) =
                read_items(std::io::BufReader::new(f)).with_context(|| format!("--items {}", p.display()))?;
            report_bad("items", &bad);
            items
        }
        None => Vec::new(),
    };
    Ok((data, items))
}

fn evaluate(
    a: EvaluateArgs,
    mut data: missive_recs::data::Interactions,
    items: Vec<Item>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.test_share > 0.0 && a.test_share < 1.0,
        "--test-share is a share between 0 and 1 (exclusive)"
    );
    anyhow::ensure!(a.k <= 1_000, "--k is at most 1,000");
    let split: Split = match a.split.parse::<Split>().map_err(anyhow::Error::msg)? {
        Split::Time { .. } => Split::Time {
            test_share: a.test_share,
        },
        s => s,
    };
    anyhow::ensure!(a.k >= 1, "--k must be at least 1");
    anyhow::ensure!((1..=512).contains(&a.factors), "--factors must be 1 to 512");
    anyhow::ensure!((1..=200).contains(&a.iterations), "--iterations must be 1 to 200");
    let similarity: Similarity = a.similarity.parse().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !data.rows.is_empty(),
        "no usable interactions: product events (Product Viewed, Product Added, Order Completed with products) of people who consented to personalization, or a CSV"
    );
    // Catalogue items no one has had yet are candidates too (content can recommend them).
    data.add_items(items.iter().map(|i| i.id.as_str()));
    let mut strategies: Vec<Strategy> = a
        .strategies
        .iter()
        .map(|s| s.parse::<Strategy>().map_err(anyhow::Error::msg))
        .collect::<Result<_, _>>()?;
    if strategies.is_empty() {
        strategies = Strategy::ALL
            .into_iter()
            .filter(|s| *s != Strategy::Content || !items.is_empty())
            .collect();
    }
    if strategies.contains(&Strategy::Content) && items.is_empty() {
        anyhow::bail!("the content strategy needs --items (a CSV of the items' text and attributes)");
    }
    let decay = if a.half_life_days > 0.0 {
        Decay {
            half_life_days: Some(a.half_life_days),
            ..Decay::default()
        }
    } else {
        Decay::NONE
    };
    let settings = Settings {
        decay,
        als: missive_recs::als::AlsParams {
            factors: a.factors,
            regularization: a.regularization,
            alpha: a.alpha,
            iterations: a.iterations,
            seed: a.seed,
            ..Default::default()
        },
        cooccur: missive_recs::cooccur::CooccurParams {
            similarity,
            ..Default::default()
        },
        ..Settings::default()
    };
    let holdout = eval::split(&data, split);
    eprintln!(
        "{} interactions of {} people and {} items; training on {}, testing {} people",
        data.rows.len(),
        data.users.len(),
        data.items.len(),
        holdout.train.rows.len(),
        holdout.test.len()
    );
    anyhow::ensure!(
        !holdout.test.is_empty(),
        "the split leaves nobody to test: too few interactions per person (try --split time, or more data)"
    );
    if let Some(dir) = &a.write_split {
        write_split(dir, &holdout, decay)?;
    }
    let started = std::time::Instant::now();
    let iterations = settings.als.iterations;
    let trained = Trained::fit(&holdout.train, &items, &settings, &strategies, |it| {
        eprintln!("  factorisation: iteration {it} of {iterations}");
    });
    eprintln!("trained in {:.1} s", started.elapsed().as_secs_f64());
    let mut rows: Vec<(String, Metrics)> = strategies
        .iter()
        .map(|s| {
            let lists = eval::lists(&trained, *s, &holdout, decay, a.k, true);
            (s.to_string(), eval::score_lists(&lists, &holdout, a.k))
        })
        .collect();
    if let Some(p) = &a.score_lists {
        let text = std::fs::read_to_string(p).with_context(|| format!("--score-lists {}", p.display()))?;
        let raw: HashMap<String, Vec<u32>> =
            serde_json::from_str(&text).with_context(|| format!("--score-lists {}", p.display()))?;
        let lists: HashMap<u32, Vec<u32>> = raw
            .into_iter()
            .filter_map(|(u, l)| u.parse().ok().map(|u| (u, l)))
            .collect();
        rows.push(("reference".into(), eval::score_lists(&lists, &holdout, a.k)));
    }
    if a.json {
        let out: serde_json::Map<String, serde_json::Value> = rows
            .into_iter()
            .map(|(n, m)| (n, serde_json::to_value(m).unwrap_or_default()))
            .collect();
        println!("{}", serde_json::Value::Object(out));
    } else {
        let k = a.k;
        println!(
            "| strategy | precision@{k} | recall@{k} | NDCG@{k} | MAP@{k} | hit rate | coverage | popularity bias |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (n, m) in rows {
            println!(
                "| {n} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} | {:.2} |",
                m.precision, m.recall, m.ndcg, m.map, m.hit_rate, m.coverage, m.popularity_bias
            );
        }
    }
    Ok(())
}

fn write_split(dir: &std::path::Path, h: &Holdout, decay: Decay) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("--write-split {}", dir.display()))?;
    let m = missive_recs::matrix::Csr::of(&h.train, decay);
    let mut w = csv::Writer::from_path(dir.join("train.csv"))?;
    w.write_record(["user", "item", "weight"])?;
    for u in 0..m.rows {
        let (items, values) = m.row(u);
        for (i, v) in items.iter().zip(values) {
            w.write_record([u.to_string(), i.to_string(), v.to_string()])?;
        }
    }
    w.flush()?;
    let test: HashMap<String, &Vec<u32>> = h.test.iter().map(|(u, i)| (u.to_string(), i)).collect();
    std::fs::write(
        dir.join("test.json"),
        serde_json::json!({"users": h.train.users.len(), "items": h.train.items.len(), "test": test})
            .to_string(),
    )?;
    Ok(())
}
