//! The strategies by name, trained together on one set of interactions, each answering "the
//! `k` best items for this history" with a reason per item.
//!
//! - `popular`: best sellers (decayed);
//! - `item2item`: neighbours of the history's items in baskets;
//! - `als`: matrix factorisation, the person's vector learned or folded in from the history;
//! - `content`: TF-IDF taste (needs items with text or attributes);
//! - `hybrid`: a cascade, then a blend: a person with fewer than `warm_after` distinct items
//!   gets content and best sellers; others a reciprocal-rank blend of factorisation,
//!   item-to-item and content (`1 / (60 + rank)` summed, the usual constant).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::als::{Als, AlsParams};
use crate::content::Content;
use crate::cooccur::{Cooccur, CooccurParams};
use crate::data::{Decay, Interactions, Item};
use crate::matrix::Csr;
use crate::popular::Popular;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = RecommendationStrategy)]
pub enum Strategy {
    Popular,
    Item2item,
    Als,
    Content,
    Hybrid,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::Popular,
        Strategy::Item2item,
        Strategy::Als,
        Strategy::Content,
        Strategy::Hybrid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Popular => "popular",
            Strategy::Item2item => "item2item",
            Strategy::Als => "als",
            Strategy::Content => "content",
            Strategy::Hybrid => "hybrid",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Strategy::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| format!("strategy {s:?}: one of popular, item2item, als, content, hybrid"))
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an item is recommended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "item", rename_all = "snake_case")]
pub enum Reason {
    /// A best seller.
    Popular,
    /// Often in the same baskets as this item of theirs.
    BoughtWith(u32),
    /// Liked by people who liked this item of theirs.
    LikedWith(u32),
    /// Like this item of theirs (text and attributes).
    LooksLike(u32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub item: u32,
    pub score: f32,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub decay: Decay,
    pub als: AlsParams,
    pub cooccur: CooccurParams,
    /// Distinct items before the hybrid trusts factorisation.
    pub warm_after: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            decay: Decay::default(),
            als: AlsParams::default(),
            cooccur: CooccurParams::default(),
            warm_after: 3,
        }
    }
}

/// Every strategy, trained.
#[derive(Debug, Clone)]
pub struct Trained {
    pub popular: Popular,
    pub cooccur: Cooccur,
    pub als: Option<Als>,
    pub content: Option<Content>,
    pub warm_after: usize,
}

impl Trained {
    /// Trains what `wanted` needs (the hybrid needs all) on `data`, with `items` for content.
    pub fn fit(
        data: &Interactions,
        items: &[Item],
        s: &Settings,
        wanted: &[Strategy],
        progress: impl FnMut(usize),
    ) -> Trained {
        let needs = |x: Strategy| wanted.contains(&x) || wanted.contains(&Strategy::Hybrid);
        let popular = Popular::fit(data, s.decay);
        let cooccur = if needs(Strategy::Item2item) {
            Cooccur::fit(data, s.decay, &s.cooccur)
        } else {
            Cooccur {
                neighbours: Vec::new(),
            }
        };
        let als = needs(Strategy::Als).then(|| Als::fit(&Csr::of(data, s.decay), &s.als, progress));
        let content = (needs(Strategy::Content) && !items.is_empty())
            .then(|| Content::fit(items, |id| data.items.get(id), data.items.len()));
        Trained {
            popular,
            cooccur,
            als,
            content,
            warm_after: s.warm_after,
        }
    }

    /// The `k` best items for a history of (item, decayed weight), leaving out what `skip`
    /// says; `user_vector` is the person's learned factors when known (else folded in).
    pub fn recommend(
        &self,
        strategy: Strategy,
        history: &[(u32, f32)],
        user_vector: Option<&[f32]>,
        k: usize,
        skip: &dyn Fn(u32) -> bool,
    ) -> Vec<Pick> {
        match strategy {
            Strategy::Popular => self
                .popular
                .top(k, skip)
                .into_iter()
                .map(|(item, score)| Pick {
                    item,
                    score,
                    reason: Reason::Popular,
                })
                .collect(),
            Strategy::Item2item => self
                .cooccur
                .for_history(history, k, skip)
                .into_iter()
                .map(|(item, score, why)| Pick {
                    item,
                    score,
                    reason: Reason::BoughtWith(why),
                })
                .collect(),
            Strategy::Als => {
                let Some(als) = &self.als else { return Vec::new() };
                let folded;
                let x = match user_vector {
                    Some(x) => x,
                    None => {
                        folded = als.fold_in(history);
                        &folded
                    }
                };
                if x.iter().all(|v| *v == 0.0) {
                    return Vec::new();
                }
                als.top(x, k, skip)
                    .into_iter()
                    .map(|(item, score)| Pick {
                        item,
                        score,
                        reason: Reason::LikedWith(closest(history, item, |h| {
                            dot(als.item(h), als.item(item))
                        })),
                    })
                    .collect()
            }
            Strategy::Content => {
                let Some(c) = &self.content else { return Vec::new() };
                let taste = c.taste(history);
                c.top(&taste, k, skip)
                    .into_iter()
                    .map(|(item, score)| Pick {
                        item,
                        score,
                        reason: Reason::LooksLike(closest(history, item, |h| c.similarity(h, item))),
                    })
                    .collect()
            }
            Strategy::Hybrid => {
                let distinct = {
                    let mut v: Vec<u32> = history.iter().map(|(i, _)| *i).collect();
                    v.sort_unstable();
                    v.dedup();
                    v.len()
                };
                let parts: &[(Strategy, f32)] = if distinct < self.warm_after {
                    &[(Strategy::Content, 1.0), (Strategy::Popular, 0.5)]
                } else {
                    &[
                        (Strategy::Als, 1.0),
                        (Strategy::Item2item, 0.7),
                        (Strategy::Content, 0.4),
                        (Strategy::Popular, 0.1),
                    ]
                };
                let mut fused: HashMap<u32, (f32, Reason)> = HashMap::new();
                for (s, w) in parts {
                    for (rank, p) in self
                        .recommend(*s, history, user_vector, k.saturating_mul(3), skip)
                        .into_iter()
                        .enumerate()
                    {
                        let e = fused.entry(p.item).or_insert((0.0, p.reason));
                        e.0 += w / (60.0 + rank as f32);
                    }
                }
                let mut v: Vec<Pick> = fused
                    .into_iter()
                    .map(|(item, (score, reason))| Pick { item, score, reason })
                    .collect();
                v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
                v.truncate(k);
                v
            }
        }
    }
}

use crate::als::dot;

/// The item of `history` most like `item` by `similarity` (the reason of a pick; `item`
/// itself when the history is empty).
fn closest(history: &[(u32, f32)], item: u32, similarity: impl Fn(u32) -> f32) -> u32 {
    history
        .iter()
        .map(|(h, _)| (*h, similarity(*h)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(item, |(h, _)| h)
}
