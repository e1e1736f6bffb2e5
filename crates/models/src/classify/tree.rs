//! A classification tree (CART with the Gini impurity) as the random forest grows it: at each
//! node the best threshold over `max_features` features drawn at random, thresholds halfway
//! between neighbouring values, leaves holding the share of positives. Prediction walks a flat
//! array of nodes, which keeps a 100-tree forest within microseconds per row.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Marks a leaf in [`Node::feature`].
pub(crate) const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The feature split on, or `LEAF`.
    pub feature: u32,
    /// The threshold (rows with a value ≤ it go left), or a leaf's share of positives.
    pub value: f64,
    pub left: u32,
    pub right: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TreeParams {
    pub max_depth: Option<usize>,
    pub min_samples_leaf: usize,
    pub min_samples_split: usize,
    pub max_features: usize,
}

impl Tree {
    /// The share of positives in the leaf `row` falls in.
    pub fn predict(&self, row: &[f64]) -> f64 {
        let mut n = 0usize;
        loop {
            let node = &self.nodes[n];
            if node.feature == LEAF {
                return node.value;
            }
            n = if row[node.feature as usize] <= node.value {
                node.left as usize
            } else {
                node.right as usize
            };
        }
    }

    /// Grows a tree on the rows `idx` of `columns`, each counted `weight[row]` times (a
    /// bootstrap sample's draws, as scikit-learn's sample weights: `min_samples_leaf` counts
    /// rows, the impurity counts draws), adding each split's weighted impurity decrease to
    /// `importance`.
    pub fn grow(
        columns: &[Vec<f64>],
        y: &[bool],
        weight: &[f64],
        idx: Vec<usize>,
        p: &TreeParams,
        rng: &mut StdRng,
        importance: &mut [f64],
    ) -> Tree {
        let mut tree = Tree { nodes: Vec::new() };
        let mut features: Vec<usize> = (0..columns.len()).collect();
        // (rows, depth, the node to fill)
        let mut work = vec![(idx, 0usize, 0usize)];
        tree.nodes.push(leaf(0.0));
        while let Some((rows, depth, at)) = work.pop() {
            let n = rows.len();
            let w: f64 = rows.iter().map(|r| weight[*r]).sum();
            let pos: f64 = rows.iter().filter(|r| y[**r]).map(|r| weight[*r]).sum();
            tree.nodes[at] = leaf(if w > 0.0 { pos / w } else { 0.0 });
            let pure = pos == 0.0 || pos == w;
            if pure
                || n < p.min_samples_split
                || n < 2 * p.min_samples_leaf
                || p.max_depth.is_some_and(|d| depth >= d)
            {
                continue;
            }
            let Some(split) = best_split(columns, y, weight, &rows, (pos, w), p, &mut features, rng) else {
                continue;
            };
            importance[split.feature] += split.decrease;
            let (left, right): (Vec<usize>, Vec<usize>) = rows
                .into_iter()
                .partition(|r| columns[split.feature][*r] <= split.threshold);
            let l = tree.nodes.len();
            tree.nodes.push(leaf(0.0));
            tree.nodes.push(leaf(0.0));
            tree.nodes[at] = Node {
                feature: split.feature as u32,
                value: split.threshold,
                left: l as u32,
                right: l as u32 + 1,
            };
            work.push((left, depth + 1, l));
            work.push((right, depth + 1, l + 1));
        }
        tree
    }
}

fn leaf(share: f64) -> Node {
    Node {
        feature: LEAF,
        value: share,
        left: 0,
        right: 0,
    }
}

struct Split {
    feature: usize,
    threshold: f64,
    /// n·gini(node) − nₗ·gini(left) − nᵣ·gini(right).
    decrease: f64,
}

/// n · Gini impurity of a node with `pos` positive draws in `n`: 2·pos·(n − pos)/n.
fn weighted_gini(pos: f64, n: f64) -> f64 {
    if n > 0.0 { 2.0 * pos * (n - pos) / n } else { 0.0 }
}

/// The best split over `max_features` features drawn at random, as scikit-learn draws them: a
/// feature constant in the node counts as drawn, and drawing goes on past `max_features` only
/// while every feature drawn was constant. As in scikit-learn, a split that leaves the impurity
/// unchanged is still taken (an interaction may only show below it).
#[allow(clippy::too_many_arguments)]
fn best_split(
    columns: &[Vec<f64>],
    y: &[bool],
    weight: &[f64],
    rows: &[usize],
    (pos, w): (f64, f64),
    p: &TreeParams,
    features: &mut [usize],
    rng: &mut StdRng,
) -> Option<Split> {
    features.shuffle(rng);
    let n = rows.len();
    let parent = weighted_gini(pos, w);
    let mut best: Option<Split> = None;
    let (mut visited, mut constant) = (0, 0);
    // (value, positive weight, weight) of each row
    let mut pairs: Vec<(f64, f64, f64)> = Vec::with_capacity(n);
    for &f in features.iter() {
        if visited >= p.max_features && visited > constant {
            break;
        }
        visited += 1;
        pairs.clear();
        pairs.extend(
            rows.iter()
                .map(|r| (columns[f][*r], if y[*r] { weight[*r] } else { 0.0 }, weight[*r])),
        );
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        if pairs[0].0 == pairs[n - 1].0 {
            constant += 1;
            continue;
        }
        let (mut left_pos, mut left_w) = (0.0, 0.0);
        for i in 0..n - 1 {
            left_pos += pairs[i].1;
            left_w += pairs[i].2;
            if pairs[i].0 == pairs[i + 1].0 {
                continue;
            }
            let nl = i + 1;
            if nl < p.min_samples_leaf || n - nl < p.min_samples_leaf {
                continue;
            }
            let child = weighted_gini(left_pos, left_w) + weighted_gini(pos - left_pos, w - left_w);
            let decrease = parent - child;
            // Ties go to a coin flip, so no feature is favoured by its place in the table.
            let better = match &best {
                None => true,
                Some(b) => {
                    decrease > b.decrease + 1e-12
                        || ((decrease - b.decrease).abs() <= 1e-12 && rng.random::<bool>())
                }
            };
            if better {
                let mid = pairs[i].0 / 2.0 + pairs[i + 1].0 / 2.0;
                // Halfway can round up to the right value; keep the split between them.
                let threshold = if mid >= pairs[i + 1].0 { pairs[i].0 } else { mid };
                best = Some(Split {
                    feature: f,
                    threshold,
                    decrease,
                });
            }
        }
    }
    best.filter(|b| b.decrease >= -1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_full_tree_separates_the_training_rows() {
        // Positive when x > 4 and z > 3: x splits first, then only z can.
        let x = vec![1.0, 2.0, 3.0, 4.0, 5.0, 5.0];
        let z = vec![5.0, 1.0, 5.0, 1.0, 5.0, 1.0];
        let y = [false, false, false, false, true, false];
        let p = TreeParams {
            max_depth: None,
            min_samples_leaf: 1,
            min_samples_split: 2,
            max_features: 2,
        };
        let mut imp = [0.0; 2];
        let t = Tree::grow(
            &[x.clone(), z.clone()],
            &y,
            &[1.0; 6],
            (0..6).collect(),
            &p,
            &mut StdRng::seed_from_u64(1),
            &mut imp,
        );
        assert_eq!(t.nodes[0].feature, 0);
        for i in 0..6 {
            assert_eq!(t.predict(&[x[i], z[i]]), if y[i] { 1.0 } else { 0.0 });
        }
        assert!(imp[0] > 0.0 && imp[1] > 0.0, "{imp:?} {t:?}");
        // A depth limit of zero leaves one leaf with the share of positives.
        let stump = Tree::grow(
            &[x, z],
            &y,
            &[1.0; 6],
            (0..6).collect(),
            &TreeParams {
                max_depth: Some(0),
                ..p
            },
            &mut StdRng::seed_from_u64(1),
            &mut imp,
        );
        assert_eq!(stump.nodes.len(), 1);
        assert!((stump.predict(&[0.0, 0.0]) - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn min_samples_leaf_holds() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let y: Vec<bool> = (0..10).map(|i| i == 0).collect();
        let p = TreeParams {
            max_depth: None,
            min_samples_leaf: 3,
            min_samples_split: 2,
            max_features: 1,
        };
        let t = Tree::grow(
            &[x],
            &y,
            &[1.0; 10],
            (0..10).collect(),
            &p,
            &mut StdRng::seed_from_u64(1),
            &mut [0.0],
        );
        // The lone positive cannot get a leaf of its own: the best is {0, 1, 2}.
        assert!((t.predict(&[0.0]) - 1.0 / 3.0).abs() < 1e-12);
    }
}
