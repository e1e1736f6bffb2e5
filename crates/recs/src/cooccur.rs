//! Item-to-item: items that appear in the same baskets (an order, a session, a day of one
//! person's browsing), with a similarity and a time decay. "Bought together" reads orders,
//! "viewed together" sessions of views: the same computation on different interactions.
//!
//! Similarities between items `i` and `j` with `nᵢ`, `nⱼ` baskets and `nᵢⱼ` together, of `N`:
//! cosine `nᵢⱼ / √(nᵢ nⱼ)`, Jaccard `nᵢⱼ / (nᵢ + nⱼ − nᵢⱼ)`, lift `nᵢⱼ N / (nᵢ nⱼ)`, and
//! confidence `nᵢⱼ / nᵢ` (of `j` given `i`: the association rule's, which leans towards
//! popular companions, as baskets do). Counts are
//! decayed by the basket's age. Baskets of more than [`MAX_BASKET`] items (a crawler, a
//! wholesale order) are left out: they would add their square in pairs and say little.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::data::{Decay, Interactions};
use crate::topk::TopK;

pub const MAX_BASKET: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Similarity {
    Cosine,
    Jaccard,
    Lift,
    Confidence,
}

impl std::str::FromStr for Similarity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cosine" => Ok(Similarity::Cosine),
            "jaccard" => Ok(Similarity::Jaccard),
            "lift" => Ok(Similarity::Lift),
            "confidence" => Ok(Similarity::Confidence),
            other => Err(format!(
                "similarity {other:?}: cosine, jaccard, lift or confidence"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CooccurParams {
    pub similarity: Similarity,
    /// Pairs seen together in fewer baskets (counted without decay) are left out.
    pub min_together: f32,
    /// Neighbours kept per item.
    pub neighbours: usize,
}

impl Default for CooccurParams {
    fn default() -> Self {
        CooccurParams {
            similarity: Similarity::Cosine,
            min_together: 1.0,
            neighbours: 50,
        }
    }
}

/// Each item's nearest neighbours, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cooccur {
    pub neighbours: Vec<Vec<(u32, f32)>>,
}

impl Cooccur {
    pub fn fit(data: &Interactions, decay: Decay, p: &CooccurParams) -> Cooccur {
        let end = data.end();
        let mut baskets: HashMap<u32, (Vec<u32>, i64)> = HashMap::new();
        for r in &data.rows {
            let b = baskets.entry(r.basket).or_insert_with(|| (Vec::new(), r.at));
            b.0.push(r.item);
            b.1 = b.1.max(r.at);
        }
        let n_items = data.items.len();
        let mut count = vec![0f32; n_items];
        // (decayed count, raw count) per pair: the threshold reads the raw one.
        let mut pairs: HashMap<(u32, u32), (f32, u32)> = HashMap::new();
        let mut total = 0f32;
        for (mut items, at) in baskets.into_values() {
            items.sort_unstable();
            items.dedup();
            if items.len() > MAX_BASKET {
                continue;
            }
            let w = decay.factor(at, end);
            total += w;
            for (a, i) in items.iter().enumerate() {
                count[*i as usize] += w;
                for j in &items[a + 1..] {
                    let e = pairs.entry((*i, *j)).or_default();
                    e.0 += w;
                    e.1 += 1;
                }
            }
        }
        let mut lists: Vec<TopK> = (0..n_items).map(|_| TopK::new(p.neighbours)).collect();
        for ((i, j), (together, raw)) in pairs {
            if (raw as f32) < p.min_together {
                continue;
            }
            let (ni, nj) = (count[i as usize], count[j as usize]);
            let (to_j, to_i) = match p.similarity {
                Similarity::Cosine => {
                    let s = together / (ni * nj).sqrt();
                    (s, s)
                }
                Similarity::Jaccard => {
                    let s = together / (ni + nj - together);
                    (s, s)
                }
                Similarity::Lift => {
                    let s = together * total / (ni * nj);
                    (s, s)
                }
                Similarity::Confidence => (together / ni, together / nj),
            };
            lists[i as usize].offer(j, to_j);
            lists[j as usize].offer(i, to_i);
        }
        Cooccur {
            neighbours: lists.into_iter().map(TopK::into_sorted).collect(),
        }
    }

    /// Items like `item`, best first.
    pub fn similar(&self, item: u32, k: usize, skip: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
        self.neighbours
            .get(item as usize)
            .map(|n| n.iter().filter(|(j, _)| !skip(*j)).take(k).copied().collect())
            .unwrap_or_default()
    }

    /// For a history of (item, weight): the neighbours' similarities summed, weighted; with
    /// each pick the history item that contributed most (the reason).
    pub fn for_history(
        &self,
        history: &[(u32, f32)],
        k: usize,
        skip: impl Fn(u32) -> bool,
    ) -> Vec<(u32, f32, u32)> {
        let mut score: HashMap<u32, (f32, u32, f32)> = HashMap::new();
        for (h, w) in history {
            for (j, s) in self.neighbours.get(*h as usize).map_or(&[][..], Vec::as_slice) {
                if skip(*j) {
                    continue;
                }
                let e = score.entry(*j).or_insert((0.0, *h, 0.0));
                e.0 += w * s;
                if w * s > e.2 {
                    e.1 = *h;
                    e.2 = w * s;
                }
            }
        }
        let mut t = TopK::new(k);
        for (j, (s, _, _)) in &score {
            t.offer(*j, *s);
        }
        t.into_sorted()
            .into_iter()
            .map(|(j, s)| (j, s, score[&j].1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_bought_together_are_neighbours() {
        let mut d = Interactions::default();
        for (o, items) in [
            ("o1", &["bread", "butter"][..]),
            ("o2", &["bread", "butter", "jam"]),
            ("o3", &["bread", "jam"]),
            ("o4", &["tea"]),
        ] {
            for i in items {
                d.push(o, i, 1.0, 0, Some(o));
            }
        }
        let m = Cooccur::fit(&d, Decay::NONE, &CooccurParams::default());
        let bread = d.items.get("bread").unwrap();
        let butter = d.items.get("butter").unwrap();
        let near = m.similar(bread, 5, |_| false);
        assert_eq!(near.len(), 2);
        // bread–butter: 2 of √(3·2); bread–jam the same.
        assert!((near[0].1 - 2.0 / 6f32.sqrt()).abs() < 1e-6, "{near:?}");
        let tea = d.items.get("tea").unwrap();
        assert!(m.similar(tea, 5, |_| false).is_empty());
        let recs = m.for_history(&[(butter, 1.0)], 3, |i| i == butter);
        assert_eq!(recs[0].0, bread);
        assert_eq!(recs[0].2, butter);
    }
}
