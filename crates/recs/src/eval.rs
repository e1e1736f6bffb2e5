//! Offline evaluation: a split that never lets the future into training, and ranking metrics
//! over each test person's top `k`.
//!
//! Splits:
//! - `time`: everything before a cutoff trains (the cutoff leaves `test_share` of the
//!   interactions after it); each person's items after it, that they had not had before, are
//!   the test;
//! - `leave-last-n`: each person's last `n` interactions (by time) are the test, the rest
//!   trains; people with `n` or fewer are in training only. (Other people's later interactions
//!   stay in training: the usual protocol, which lets a little of the future in through them;
//!   `time` does not.)
//!
//! Metrics, averaged over test people, with `hits` the test items among the top `k`:
//! precision `hits / k`; recall `hits / |test|`; NDCG with binary relevance,
//! `Σ 1/log₂(rank + 1)` over hits divided by its best possible value; MAP, the mean over hits
//! of the precision at their rank, divided by `min(k, |test|)`; hit rate, the share of people
//! with a hit. Coverage is the share of the catalogue recommended to anyone; popularity bias
//! the mean training popularity of what is recommended over the mean item's (1 is neutral,
//! higher leans on best sellers).

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::data::{Decay, Interaction, Interactions};
use crate::strategy::{Strategy, Trained};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Split {
    Time { test_share: f64 },
    LeaveLastN(usize),
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "time" => Ok(Split::Time { test_share: 0.2 }),
            "leave-last-n" | "leave-last-1" => Ok(Split::LeaveLastN(1)),
            other => match other.strip_prefix("leave-last-").and_then(|n| n.parse().ok()) {
                Some(n) if n >= 1 => Ok(Split::LeaveLastN(n)),
                _ => Err(format!(
                    "split {other:?}: time, leave-last-n or leave-last-N (N ≥ 1)"
                )),
            },
        }
    }
}

/// Training interactions and each test person's items.
#[derive(Debug, Clone)]
pub struct Holdout {
    pub train: Interactions,
    /// (user, the items to find), users with a training history only.
    pub test: Vec<(u32, Vec<u32>)>,
}

/// The items of `after` that are not in `before`, each once, ascending.
fn new_items(before: &[Interaction], after: &[Interaction]) -> Vec<u32> {
    let seen: HashSet<u32> = before.iter().map(|r| r.item).collect();
    let mut want: Vec<u32> = after
        .iter()
        .map(|r| r.item)
        .filter(|i| !seen.contains(i))
        .collect();
    want.sort_unstable();
    want.dedup();
    want
}

pub fn split(data: &Interactions, s: Split) -> Holdout {
    let by_user = data.by_user();
    let mut train_rows: Vec<Interaction> = Vec::with_capacity(data.rows.len());
    let mut test = Vec::new();
    match s {
        Split::Time { test_share } => {
            let mut times: Vec<i64> = data.rows.iter().map(|r| r.at).collect();
            times.sort_unstable();
            let cut = ((times.len() as f64) * (1.0 - test_share.clamp(0.0, 1.0))) as usize;
            let cutoff = times.get(cut).copied().unwrap_or(i64::MAX);
            for (u, rows) in by_user.iter().enumerate() {
                let (before, after): (Vec<Interaction>, Vec<Interaction>) =
                    rows.iter().partition(|r| r.at < cutoff);
                let want = new_items(&before, &after);
                if !before.is_empty() && !want.is_empty() {
                    test.push((u as u32, want));
                }
                train_rows.extend(before);
            }
        }
        Split::LeaveLastN(n) => {
            for (u, rows) in by_user.iter().enumerate() {
                if rows.len() <= n {
                    train_rows.extend(rows);
                    continue;
                }
                let (before, after) = rows.split_at(rows.len() - n);
                let want = new_items(before, after);
                if !want.is_empty() {
                    test.push((u as u32, want));
                }
                train_rows.extend(before);
            }
        }
    }
    Holdout {
        train: Interactions {
            users: data.users.clone(),
            items: data.items.clone(),
            baskets: data.baskets.clone(),
            rows: train_rows,
        },
        test,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub users: usize,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    pub hit_rate: f64,
    pub coverage: f64,
    pub popularity_bias: f64,
}

/// The metrics of given top-`k` lists (any recommender's: a reference's too, so that both are
/// scored by the same code) against the test.
pub fn score_lists(lists: &HashMap<u32, Vec<u32>>, h: &Holdout, k: usize) -> Metrics {
    let pop = h.train.item_counts();
    let with_any: Vec<f64> = pop.iter().filter(|c| **c > 0).map(|c| f64::from(*c)).collect();
    let mean_pop = with_any.iter().sum::<f64>() / with_any.len().max(1) as f64;
    let mut m = Metrics::default();
    let mut recommended: HashSet<u32> = HashSet::new();
    let (mut pop_sum, mut pop_n) = (0.0, 0usize);
    for (u, want) in &h.test {
        let got = lists.get(u).map_or(&[][..], Vec::as_slice);
        let got = &got[..got.len().min(k)];
        let want: HashSet<u32> = want.iter().copied().collect();
        let (mut hits, mut dcg, mut ap) = (0usize, 0.0, 0.0);
        for (rank, i) in got.iter().enumerate() {
            recommended.insert(*i);
            pop_sum += f64::from(pop.get(*i as usize).copied().unwrap_or(0));
            pop_n += 1;
            if want.contains(i) {
                hits += 1;
                dcg += 1.0 / ((rank + 2) as f64).log2();
                ap += hits as f64 / (rank + 1) as f64;
            }
        }
        let ideal: f64 = (0..want.len().min(k))
            .map(|r| 1.0 / ((r + 2) as f64).log2())
            .sum();
        m.users += 1;
        m.precision += hits as f64 / k as f64;
        m.recall += hits as f64 / want.len() as f64;
        m.ndcg += if ideal > 0.0 { dcg / ideal } else { 0.0 };
        m.map += ap / want.len().min(k).max(1) as f64;
        m.hit_rate += f64::from(u8::from(hits > 0));
    }
    let n = m.users.max(1) as f64;
    m.precision /= n;
    m.recall /= n;
    m.ndcg /= n;
    m.map /= n;
    m.hit_rate /= n;
    m.coverage = recommended.len() as f64 / h.train.items.len().max(1) as f64;
    m.popularity_bias = if pop_n > 0 && mean_pop > 0.0 {
        pop_sum / pop_n as f64 / mean_pop
    } else {
        0.0
    };
    m
}

/// Each test person's history in training: (item, weight decayed from the training's end).
pub fn histories(h: &Holdout, decay: Decay) -> HashMap<u32, Vec<(u32, f32)>> {
    let end = h.train.end();
    let mut out: HashMap<u32, Vec<(u32, f32)>> = HashMap::new();
    let testing: HashSet<u32> = h.test.iter().map(|(u, _)| *u).collect();
    for r in &h.train.rows {
        if testing.contains(&r.user) {
            out.entry(r.user)
                .or_default()
                .push((r.item, r.weight * decay.factor(r.at, end)));
        }
    }
    out
}

/// The top `k` of `strategy` for each test person, leaving out what they had in training.
/// With `learned`, factorisation uses the vectors it learned for them (else folds them in).
pub fn lists(
    t: &Trained,
    strategy: Strategy,
    h: &Holdout,
    decay: Decay,
    k: usize,
    learned: bool,
) -> HashMap<u32, Vec<u32>> {
    let hist = histories(h, decay);
    let empty = Vec::new();
    h.test
        .par_iter()
        .map(|(u, _)| {
            let history = hist.get(u).unwrap_or(&empty);
            let seen: HashSet<u32> = history.iter().map(|(i, _)| *i).collect();
            let vector = if learned {
                t.als.as_ref().map(|a| a.user(*u))
            } else {
                None
            };
            let picks = t.recommend(strategy, history, vector, k, &|i| seen.contains(&i));
            (*u, picks.into_iter().map(|p| p.item).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_a_hand_worked_case() {
        let mut d = Interactions::default();
        for (u, i, t) in [("a", "x", 1), ("a", "y", 2), ("b", "x", 1), ("b", "z", 5)] {
            d.push(u, i, 1.0, t, None);
        }
        let h = split(&d, Split::LeaveLastN(1));
        // a's test: y; b's: z.
        assert_eq!(h.test.len(), 2);
        let (a, b) = (d.users.get("a").unwrap(), d.users.get("b").unwrap());
        let (y, z, x) = (
            d.items.get("y").unwrap(),
            d.items.get("z").unwrap(),
            d.items.get("x").unwrap(),
        );
        // a gets y second; b gets nothing useful.
        let lists: HashMap<u32, Vec<u32>> = [(a, vec![z, y]), (b, vec![x])].into();
        let m = score_lists(&lists, &h, 2);
        assert_eq!(m.users, 2);
        assert!((m.precision - 0.25).abs() < 1e-12);
        assert!((m.recall - 0.5).abs() < 1e-12);
        assert!((m.hit_rate - 0.5).abs() < 1e-12);
        // a: DCG 1/log2(3), ideal 1.
        assert!((m.ndcg - 0.5 / 3f64.log2()).abs() < 1e-12);
        // a: precision at the hit's rank 1/2, over min(2, 1).
        assert!((m.map - 0.25).abs() < 1e-12);
        assert!((m.coverage - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_time_split_keeps_the_future_out_of_training() {
        let mut d = Interactions::default();
        for t in 0..10 {
            d.push("a", &format!("i{t}"), 1.0, t, None);
        }
        let h = split(&d, Split::Time { test_share: 0.3 });
        assert!(h.train.rows.iter().all(|r| r.at < 7));
        assert_eq!(h.test[0].1.len(), 3);
        assert_eq!("leave-last-3".parse::<Split>(), Ok(Split::LeaveLastN(3)));
        assert!("random".parse::<Split>().is_err());
    }
}
