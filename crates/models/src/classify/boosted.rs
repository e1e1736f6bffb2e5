//! Gradient-boosted trees for a yes/no outcome, trained with the forust-ml crate: histogram
//! splits (up to 255 bins per feature), trees grown leaf by leaf up to `max_leaves`, the
//! XGBoost algorithm with the log loss. The defaults follow scikit-learn's
//! `HistGradientBoostingClassifier` (100 iterations, learning rate 0.1, 31 leaves, no L2; its
//! 20 rows per leaf become a least hessian sum, which forust-ml has instead).
//!
//! Why forust-ml: it is a small, pure-Rust booster (no C++ build, unlike the LightGBM and
//! XGBoost bindings) with the histogram and leaf-wise growth the benchmark compares with
//! scikit-learn's, parallel with rayon. Its trees are copied into flat arrays of nodes after
//! training, so scoring a profile walks plain memory (the live path's budget is 10 µs for 100
//! trees) and the model serialises with serde like the others.

use forust_ml::gradientbooster::{GrowPolicy, ImportanceMethod};
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoostedParams {
    pub iterations: usize,
    pub learning_rate: f64,
    pub max_leaves: usize,
    pub max_depth: usize,
    pub l2: f64,
    /// The least sum of hessians (p(1 − p) summed over a leaf's rows) a leaf may have. The
    /// default, 4, is about scikit-learn's 20 rows per leaf where a quarter are positive.
    pub min_leaf_weight: f64,
    pub bins: usize,
}

impl Default for BoostedParams {
    fn default() -> Self {
        BoostedParams {
            iterations: 100,
            learning_rate: 0.1,
            max_leaves: 31,
            max_depth: 64,
            l2: 0.0,
            min_leaf_weight: 4.0,
            bins: 255,
        }
    }
}

/// A node of a boosted tree: rows with `value < threshold` go left; a leaf holds its weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The feature split on, or `u32::MAX` for a leaf.
    pub feature: u32,
    pub value: f64,
    pub left: u32,
    pub right: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Boosted {
    /// The starting log-odds.
    pub base: f64,
    pub trees: Vec<Vec<Node>>,
    pub importances: Vec<f64>,
}

impl Boosted {
    pub fn fit(columns: &[Vec<f64>], y: &[bool], p: &BoostedParams, seed: u64) -> Result<Boosted, String> {
        let rows = y.len();
        let d = columns.len();
        let data: Vec<f64> = columns.iter().flatten().copied().collect();
        let matrix = Matrix::new(&data, rows, d);
        let target: Vec<f64> = y.iter().map(|v| f64::from(u8::from(*v))).collect();
        let weights = vec![1.0; rows];
        let mut booster = GradientBooster::default()
            .set_iterations(p.iterations)
            .set_learning_rate(p.learning_rate as f32)
            .set_max_leaves(p.max_leaves)
            .set_max_depth(p.max_depth)
            .set_l2(p.l2 as f32)
            .set_min_leaf_weight(p.min_leaf_weight as f32)
            .set_nbins(p.bins.clamp(2, 255) as u16)
            .set_initialize_base_score(true)
            .set_parallel(true)
            .set_seed(seed);
        booster.grow_policy = GrowPolicy::LossGuide;
        booster
            .fit(&matrix, &target, &weights, None)
            .map_err(|e| e.to_string())?;
        let trees = booster
            .trees
            .iter()
            .map(|t| {
                t.nodes
                    .iter()
                    .map(|n| Node {
                        feature: if n.is_leaf {
                            u32::MAX
                        } else {
                            n.split_feature as u32
                        },
                        value: if n.is_leaf {
                            f64::from(n.weight_value)
                        } else {
                            n.split_value
                        },
                        left: n.left_child as u32,
                        right: n.right_child as u32,
                    })
                    .collect()
            })
            .collect();
        let gains = booster.calculate_feature_importance(ImportanceMethod::TotalGain, true);
        let importances = (0..d)
            .map(|j| gains.get(&j).map_or(0.0, |g| f64::from(*g)))
            .collect();
        Ok(Boosted {
            base: booster.base_score,
            trees,
            importances,
        })
    }

    /// The log-odds of the positive class.
    pub fn log_odds(&self, row: &[f64]) -> f64 {
        let mut z = self.base;
        for tree in &self.trees {
            let mut n = 0usize;
            loop {
                let node = &tree[n];
                if node.feature == u32::MAX {
                    z += node.value;
                    break;
                }
                n = if row[node.feature as usize] < node.value {
                    node.left as usize
                } else {
                    node.right as usize
                };
            }
        }
        z
    }

    pub fn predict(&self, row: &[f64]) -> f64 {
        1.0 / (1.0 + (-self.log_odds(row)).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flat_trees_predict_as_forust_does() {
        let x: Vec<f64> = (0..200).map(|i| f64::from(i % 37)).collect();
        let z: Vec<f64> = (0..200).map(|i| f64::from((i * 7) % 11)).collect();
        let y: Vec<bool> = (0..200).map(|i| (i % 37) > 18 || (i * 7) % 11 == 3).collect();
        let p = BoostedParams {
            iterations: 20,
            ..BoostedParams::default()
        };
        let m = Boosted::fit(&[x.clone(), z.clone()], &y, &p, 1).unwrap();
        assert_eq!(m.trees.len(), 20);
        // Compare with forust's own prediction on the same rows.
        let data: Vec<f64> = x.iter().chain(&z).copied().collect();
        let mut booster = GradientBooster::default()
            .set_iterations(20)
            .set_learning_rate(0.1)
            .set_max_leaves(31)
            .set_max_depth(64)
            .set_l2(0.0)
            .set_min_leaf_weight(4.0)
            .set_nbins(255)
            .set_initialize_base_score(true)
            .set_parallel(true)
            .set_seed(1);
        booster.grow_policy = GrowPolicy::LossGuide;
        let target: Vec<f64> = y.iter().map(|v| f64::from(u8::from(*v))).collect();
        booster
            .fit(&Matrix::new(&data, 200, 2), &target, &[1.0; 200], None)
            .unwrap();
        let theirs = booster.predict(&Matrix::new(&data, 200, 2), false);
        for i in 0..200 {
            assert!((m.log_odds(&[x[i], z[i]]) - theirs[i]).abs() < 1e-9, "row {i}");
        }
        let correct = (0..200)
            .filter(|i| (m.predict(&[x[*i], z[*i]]) > 0.5) == y[*i])
            .count();
        assert!(correct > 190, "{correct}");
    }
}
