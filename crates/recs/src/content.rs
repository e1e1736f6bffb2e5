//! Content-based: each item a TF-IDF vector of its words and attributes (title, description,
//! category, brand, colour, price band), a person's taste the decayed, weighted sum of the
//! vectors of what they interacted with, and items ranked by cosine to it. It needs no other
//! person's data, so it serves newcomers and new items (the cold start).
//!
//! IDF is scikit-learn's smoothed one, `ln((1 + N) / (1 + df)) + 1`; vectors are L2-normalised.
//! Attributes become tokens of their own (`category:dresses`, `brand:acme`, `colour:blue`,
//! `price:3`, the band by powers of two), so that "blue" in a description and the colour blue
//! are both counted but apart.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::data::Item;
use crate::topk::TopK;

/// Sparse vectors: (term, weight), by term.
pub type SparseVec = Vec<(u32, f32)>;

const STOP: &[&str] = &[
    "a", "an", "and", "the", "of", "in", "on", "for", "with", "to", "is", "it", "by", "or", "at", "this",
    "that", "from", "your", "our", "you",
];

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .filter(|w| !STOP.contains(&w.as_str()))
}

/// The tokens of an item.
pub fn tokens(item: &Item) -> Vec<String> {
    let mut t: Vec<String> = words(&item.title).chain(words(&item.description)).collect();
    for (key, value) in [
        ("category", &item.category),
        ("brand", &item.brand),
        ("colour", &item.colour),
    ] {
        if !value.trim().is_empty() {
            t.push(format!("{key}:{}", value.trim().to_lowercase()));
        }
    }
    if let Some(p) = item.price.filter(|p| *p > 0.0) {
        t.push(format!("price:{}", p.log2().floor() as i64));
    }
    t
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// Per item (in the interactions' numbering): its vector; empty without text.
    pub vectors: Vec<SparseVec>,
    /// Per term: the items having it (the inverted index scoring reads).
    pub postings: Vec<Vec<(u32, f32)>>,
    pub terms: usize,
}

impl Content {
    /// Vectors for items numbered by `index` (`items_len` of them); items without a row in
    /// `items` get none and are never recommended by content.
    pub fn fit(items: &[Item], index: impl Fn(&str) -> Option<u32>, items_len: usize) -> Content {
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut docs: Vec<(u32, HashMap<u32, f32>)> = Vec::new();
        for it in items {
            let Some(i) = index(&it.id) else { continue };
            let mut tf: HashMap<u32, f32> = HashMap::new();
            for t in tokens(it) {
                let n = vocab.len() as u32;
                let id = *vocab.entry(t).or_insert(n);
                *tf.entry(id).or_default() += 1.0;
            }
            docs.push((i, tf));
        }
        let n = docs.len() as f32;
        let mut df = vec![0f32; vocab.len()];
        for (_, tf) in &docs {
            for t in tf.keys() {
                df[*t as usize] += 1.0;
            }
        }
        let idf: Vec<f32> = df.iter().map(|d| ((1.0 + n) / (1.0 + d)).ln() + 1.0).collect();
        let mut vectors = vec![Vec::new(); items_len];
        let mut postings = vec![Vec::new(); vocab.len()];
        for (i, tf) in docs {
            let mut v: SparseVec = tf.into_iter().map(|(t, c)| (t, c * idf[t as usize])).collect();
            v.sort_unstable_by_key(|(t, _)| *t);
            let norm = v.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|(_, w)| *w /= norm);
            }
            for (t, w) in &v {
                postings[*t as usize].push((i, *w));
            }
            if let Some(slot) = vectors.get_mut(i as usize) {
                *slot = v;
            }
        }
        Content {
            vectors,
            postings,
            terms: vocab.len(),
        }
    }

    /// A taste: the weighted sum of the vectors of `history` (item, weight), normalised.
    pub fn taste(&self, history: &[(u32, f32)]) -> SparseVec {
        let mut sum: HashMap<u32, f32> = HashMap::new();
        for (i, w) in history {
            for (t, x) in self.vectors.get(*i as usize).map_or(&[][..], Vec::as_slice) {
                *sum.entry(*t).or_default() += w * x;
            }
        }
        let mut v: SparseVec = sum.into_iter().collect();
        v.sort_unstable_by_key(|(t, _)| *t);
        let norm = v.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|(_, w)| *w /= norm);
        }
        v
    }

    /// Items closest to `taste`, best first.
    pub fn top(&self, taste: &SparseVec, k: usize, skip: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let mut score: HashMap<u32, f32> = HashMap::new();
        for (t, w) in taste {
            for (i, x) in self.postings.get(*t as usize).map_or(&[][..], Vec::as_slice) {
                *score.entry(*i).or_default() += w * x;
            }
        }
        let mut top = TopK::new(k);
        for (i, s) in score {
            if top.would_take(s) && !skip(i) {
                top.offer(i, s);
            }
        }
        top.into_sorted()
    }

    /// Cosine between two items.
    pub fn similarity(&self, a: u32, b: u32) -> f32 {
        let (Some(x), Some(y)) = (self.vectors.get(a as usize), self.vectors.get(b as usize)) else {
            return 0.0;
        };
        let (mut i, mut j, mut s) = (0, 0, 0.0);
        while i < x.len() && j < y.len() {
            match x[i].0.cmp(&y[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    s += x[i].1 * y[j].1;
                    i += 1;
                    j += 1;
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, title: &str, category: &str, colour: &str) -> Item {
        Item {
            id: id.into(),
            title: title.into(),
            category: category.into(),
            colour: colour.into(),
            price: Some(50.0),
            in_stock: true,
            ..Item::default()
        }
    }

    #[test]
    fn a_taste_for_blue_dresses_finds_blue_dresses() {
        let items = [
            item("d1", "Linen midi dress", "Dresses", "blue"),
            item("d2", "Silk wrap dress", "Dresses", "blue"),
            item("d3", "Jersey dress", "Dresses", "red"),
            item("s1", "Leather loafer", "Shoes", "brown"),
            item("x1", "", "", ""),
        ];
        let ids = ["d1", "d2", "d3", "s1", "x1"];
        let index = |id: &str| ids.iter().position(|x| *x == id).map(|i| i as u32);
        let c = Content::fit(&items, index, 6);
        let taste = c.taste(&[(0, 1.0)]);
        let top = c.top(&taste, 3, |i| i == 0);
        assert_eq!(top[0].0, 1, "{top:?}");
        assert!(top.iter().all(|(i, _)| *i != 3 || top.len() == 3));
        assert!(c.similarity(0, 1) > c.similarity(0, 2));
        assert!(c.similarity(0, 2) > c.similarity(0, 3));
        // An item without text, and one not in the catalogue: no vector, no panic.
        assert!(c.taste(&[(5, 1.0)]).is_empty());
    }
}
