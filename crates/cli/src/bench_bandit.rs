//! `missive bench bandit`: a broadcast sent in waves to simulated recipients whose true open
//! rates per subject line are known. Compares the regret (opens lost against always sending
//! the best subject) of a fixed equal split, "test, then send the winner", and Thompson
//! sampling over waves. Pure simulation: no store, no network.

use missive_experiment::bandit;
use missive_experiment::stats::Counts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(clap::Args, Debug, Clone)]
pub struct BanditBench {
    /// Recipients of each simulated broadcast.
    #[arg(long, default_value_t = 100_000)]
    recipients: u64,
    /// Waves the bandit sends in (equal sizes).
    #[arg(long, default_value_t = 10)]
    waves: u64,
    /// True open rates of the variants, comma-separated.
    #[arg(long, default_value = "0.20,0.21,0.23")]
    rates: String,
    /// Share of recipients in the test wave of "test, then send the winner".
    #[arg(long, default_value_t = 0.2)]
    test_share: f64,
    /// Least share of a wave each variant keeps (so that it can still be learnt).
    #[arg(long, default_value_t = 0.02)]
    floor: f64,
    /// Simulated broadcasts per strategy.
    #[arg(long, default_value_t = 200)]
    runs: u64,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Opens drawn for `n` recipients at `rate`, added to `c`.
fn send(c: &mut (u64, u64), n: u64, rate: f64, rng: &mut impl Rng) {
    let opens = (0..n).filter(|_| rng.random::<f64>() < rate).count() as u64;
    c.0 += opens;
    c.1 += n;
}

fn counts(c: &[(u64, u64)]) -> anyhow::Result<Vec<Counts>> {
    Ok(c.iter()
        .map(|(x, n)| Counts::new(*x, *n))
        .collect::<Result<_, _>>()?)
}

/// The expected opens lost against sending everyone the best variant.
fn regret(sent: &[(u64, u64)], rates: &[f64]) -> f64 {
    let best = rates.iter().copied().fold(f64::MIN, f64::max);
    sent.iter()
        .zip(rates)
        .map(|((_, n), r)| *n as f64 * (best - r))
        .sum()
}

/// Index of the highest observed rate.
fn observed_best(c: &[(u64, u64)]) -> usize {
    let rate = |(x, n): &(u64, u64)| if *n == 0 { 0.0 } else { *x as f64 / *n as f64 };
    (0..c.len())
        .max_by(|a, b| rate(&c[*a]).total_cmp(&rate(&c[*b])))
        .unwrap_or(0)
}

pub fn run(b: BanditBench) -> anyhow::Result<()> {
    let rates: Vec<f64> = b
        .rates
        .split(',')
        .map(|r| r.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--rates: {e}"))?;
    anyhow::ensure!(rates.len() >= 2, "--rates: at least two variants");
    anyhow::ensure!(
        rates.iter().all(|r| (0.0..=1.0).contains(r)),
        "--rates: rates are between 0 and 1"
    );
    anyhow::ensure!(b.waves >= 2, "--waves: at least 2");
    anyhow::ensure!(b.runs >= 1, "--runs: at least 1");
    anyhow::ensure!(b.recipients >= b.waves, "--recipients: at least one per wave");
    anyhow::ensure!(b.floor.is_finite() && b.floor >= 0.0, "--floor: a share from 0");
    anyhow::ensure!(
        b.test_share > 0.0 && b.test_share < 1.0,
        "--test-share: between 0 and 1"
    );
    let k = rates.len();
    let best = (0..k).max_by(|x, y| rates[*x].total_cmp(&rates[*y])).unwrap_or(0);
    let mut rng = StdRng::seed_from_u64(b.seed);
    let (mut fixed, mut test_then, mut thompson) = (0.0, 0.0, 0.0);
    let (mut test_right, mut thompson_right) = (0u64, 0u64);
    for _ in 0..b.runs {
        // A fixed equal split.
        let mut sent = vec![(0u64, 0u64); k];
        for (i, part) in bandit::allocate(&vec![1.0; k], b.recipients, 0.0)
            .into_iter()
            .enumerate()
        {
            send(&mut sent[i], part, rates[i], &mut rng);
        }
        fixed += regret(&sent, &rates);

        // Test on a share, then send the observed winner to the rest.
        let mut sent = vec![(0u64, 0u64); k];
        let test = (b.recipients as f64 * b.test_share).round() as u64;
        for (i, part) in bandit::allocate(&vec![1.0; k], test, 0.0).into_iter().enumerate() {
            send(&mut sent[i], part, rates[i], &mut rng);
        }
        let winner = observed_best(&sent);
        test_right += u64::from(winner == best);
        send(&mut sent[winner], b.recipients - test, rates[winner], &mut rng);
        test_then += regret(&sent, &rates);

        // Thompson sampling over waves; the last wave goes to the most probable best.
        let mut sent = vec![(0u64, 0u64); k];
        let wave = b.recipients / b.waves;
        for w in 0..b.waves {
            let size = if w + 1 == b.waves {
                b.recipients - wave * (b.waves - 1)
            } else {
                wave
            };
            let parts = if w == 0 {
                bandit::allocate(&vec![1.0; k], size, 0.0)
            } else if w + 1 == b.waves {
                let p = bandit::win_probabilities(&counts(&sent)?, 4_000, &mut rng)?;
                let top = (0..k).max_by(|x, y| p[*x].total_cmp(&p[*y])).unwrap_or(0);
                thompson_right += u64::from(top == best);
                (0..k).map(|i| if i == top { size } else { 0 }).collect()
            } else {
                bandit::next_wave(&counts(&sent)?, size, b.floor, 4_000, &mut rng)?.units
            };
            for (i, part) in parts.into_iter().enumerate() {
                send(&mut sent[i], part, rates[i], &mut rng);
            }
        }
        thompson += regret(&sent, &rates);
    }
    let runs = b.runs as f64;
    let best_opens = b.recipients as f64 * rates[best];
    println!(
        "missive bench bandit: {} recipients, rates {:?}, {} runs, seed {}",
        b.recipients, rates, b.runs, b.seed
    );
    println!("| strategy | opens lost (mean) | of the best's opens | picked the best |");
    println!("|---|---|---|---|");
    let row = |name: &str, r: f64, right: Option<u64>| {
        println!(
            "| {name} | {:.0} | {:.2} % | {} |",
            r / runs,
            100.0 * r / runs / best_opens,
            right.map_or("n/a".to_owned(), |n| format!("{:.0} %", 100.0 * n as f64 / runs))
        );
    };
    row("fixed equal split", fixed, None);
    row(
        &format!("test on {:.0} %, then the winner", b.test_share * 100.0),
        test_then,
        Some(test_right),
    );
    row(
        &format!("Thompson sampling, {} waves", b.waves),
        thompson,
        Some(thompson_right),
    );
    Ok(())
}
