//! Interactions with planted structure, for tests and benchmarks: people and items in hidden
//! taste groups, most of a person's interactions within their group (popular items more
//! often), the rest anywhere. A learner that finds the groups beats best sellers; one that
//! does not, does not.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{Interactions, Item};

#[derive(Debug, Clone, Copy)]
pub struct Planted {
    pub users: usize,
    pub items: usize,
    pub groups: usize,
    /// Mean interactions per person.
    pub per_user: usize,
    /// The share of a person's interactions within their group.
    pub within: f64,
    pub seed: u64,
}

impl Default for Planted {
    fn default() -> Self {
        Planted {
            users: 2_000,
            items: 400,
            groups: 8,
            per_user: 12,
            within: 0.85,
            seed: 7,
        }
    }
}

const WORDS: [(&str, &str, &str); 8] = [
    ("linen", "dress", "blue"),
    ("leather", "boot", "brown"),
    ("silk", "blouse", "ivory"),
    ("denim", "jacket", "indigo"),
    ("wool", "coat", "grey"),
    ("cotton", "tee", "white"),
    ("suede", "loafer", "tan"),
    ("cashmere", "sweater", "camel"),
];

/// An item's hidden group.
pub fn group_of_item(item: usize, groups: usize) -> usize {
    item % groups.max(1)
}

/// A person's hidden group.
pub fn group_of_user(user: usize, groups: usize) -> usize {
    user % groups.max(1)
}

impl Planted {
    /// The interactions (`u{n}`, `i{n}`, weight by event, time in seconds) and the items.
    pub fn generate(&self) -> (Interactions, Vec<Item>) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let g = self.groups.max(1);
        let by_group: Vec<Vec<usize>> = (0..g)
            .map(|k| (0..self.items).filter(|i| group_of_item(*i, g) == k).collect())
            .collect();
        // Zipf-like popularity: the r-th item of a list drawn ∝ 1 / (r + 1)^0.8, by binary
        // search in the cumulative weights.
        let cumulative = |n: usize| -> Vec<f64> {
            let mut acc = 0.0;
            (0..n)
                .map(|r| {
                    acc += 1.0 / ((r + 1) as f64).powf(0.8);
                    acc
                })
                .collect()
        };
        let draw = |rng: &mut StdRng, list: &[usize], cum: &[f64]| -> usize {
            let x = rng.random::<f64>() * cum.last().copied().unwrap_or(0.0);
            let r = cum.partition_point(|c| *c < x).min(list.len().saturating_sub(1));
            list.get(r).copied().unwrap_or(0)
        };
        let cum_group: Vec<Vec<f64>> = by_group.iter().map(|l| cumulative(l.len())).collect();
        let all: Vec<usize> = (0..self.items).collect();
        let cum_all = cumulative(all.len());
        let start = 1_735_689_600i64; // 2025-01-01
        let mut data = Interactions::default();
        for u in 0..self.users {
            let own = &by_group[group_of_user(u, g)];
            let own_cum = &cum_group[group_of_user(u, g)];
            let n = rng.random_range(self.per_user / 2..=self.per_user * 3 / 2).max(1);
            let mut t = start + rng.random_range(0..30 * 86_400);
            for _ in 0..n {
                let item = if rng.random::<f64>() < self.within && !own.is_empty() {
                    draw(&mut rng, own, own_cum)
                } else {
                    draw(&mut rng, &all, &cum_all)
                };
                let x = rng.random::<f64>();
                let w = if x < 0.1 {
                    5.0
                } else if x < 0.3 {
                    3.0
                } else {
                    1.0
                };
                t += rng.random_range(3_600..5 * 86_400);
                data.push(&format!("u{u}"), &format!("i{item}"), w, t, None);
            }
        }
        let items = (0..self.items)
            .map(|i| {
                let (fabric, noun, colour) = WORDS[group_of_item(i, g) % WORDS.len()];
                Item {
                    id: format!("i{i}"),
                    title: format!("{fabric} {noun} no. {i}"),
                    description: format!("A {colour} {noun} in {fabric}."),
                    category: format!("{noun}s"),
                    brand: String::new(),
                    colour: colour.to_owned(),
                    price: Some(20.0 * (1 + group_of_item(i, g) % 4) as f64),
                    in_stock: true,
                }
            })
            .collect();
        (data, items)
    }
}
