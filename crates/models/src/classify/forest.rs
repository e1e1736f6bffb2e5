//! A random forest (Breiman 2001) as scikit-learn's `RandomForestClassifier` builds it: each
//! tree on a bootstrap sample, √features tried per split by default, grown until pure unless
//! limited; the probability is the mean of the trees' leaf shares, and a feature's importance
//! the mean decrease in impurity (each tree's normalised to sum to one, then averaged).
//!
//! Written here, not taken from smartcore: smartcore's forest predicts classes by vote and has
//! no probabilities (its issue #50), which AUC, log loss and calibration need; linfa has no
//! forest of its own. Trees are grown in parallel.

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::tree::{LEAF, Tree, TreeParams};

/// Trees walked side by side when scoring one row.
const LANES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    pub trees: usize,
    pub max_depth: Option<usize>,
    pub min_samples_leaf: usize,
    /// Features tried per split; `None` is √(features), rounded down, at least one.
    pub max_features: Option<usize>,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            trees: 100,
            max_depth: None,
            min_samples_leaf: 1,
            max_features: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    pub trees: Vec<Tree>,
    pub importances: Vec<f64>,
}

impl Forest {
    pub fn fit(columns: &[Vec<f64>], y: &[bool], p: &ForestParams, seed: u64) -> Forest {
        let n = y.len();
        let d = columns.len();
        let tree_params = TreeParams {
            max_depth: p.max_depth,
            min_samples_leaf: p.min_samples_leaf.max(1),
            min_samples_split: 2,
            max_features: p
                .max_features
                .unwrap_or(((d as f64).sqrt() as usize).max(1))
                .clamp(1, d.max(1)),
        };
        let grown: Vec<(Tree, Vec<f64>)> = (0..p.trees.max(1))
            .into_par_iter()
            .map(|t| {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(t as u64));
                // The bootstrap sample as counts of draws per row.
                let mut draws = vec![0.0; n];
                for _ in 0..n {
                    draws[rng.random_range(0..n)] += 1.0;
                }
                let rows: Vec<usize> = (0..n).filter(|r| draws[*r] > 0.0).collect();
                let mut importance = vec![0.0; d];
                let tree = Tree::grow(columns, y, &draws, rows, &tree_params, &mut rng, &mut importance);
                let total: f64 = importance.iter().sum();
                if total > 0.0 {
                    importance.iter_mut().for_each(|v| *v /= total);
                }
                (tree, importance)
            })
            .collect();
        let mut importances = vec![0.0; d];
        for (_, imp) in &grown {
            importances.iter_mut().zip(imp).for_each(|(a, b)| *a += b);
        }
        let total: f64 = importances.iter().sum();
        if total > 0.0 {
            importances.iter_mut().for_each(|v| *v /= total);
        }
        Forest {
            trees: grown.into_iter().map(|(t, _)| t).collect(),
            importances,
        }
    }

    /// The probability of the positive class: the mean of the trees' leaves.
    ///
    /// The trees are walked [`LANES`] at a time, one level of each per pass, choosing the child
    /// without a branch: the walks are independent, so their memory reads overlap instead of
    /// waiting one after another (a deep forest does not fit in the cache, and one tree at a
    /// time costs a cache miss per level). The result is the same as walking each tree alone.
    pub fn predict(&self, row: &[f64]) -> f64 {
        let mut sum = 0.0;
        for group in self.trees.chunks(LANES) {
            let mut at = [0u32; LANES];
            loop {
                let mut moving = false;
                for (t, a) in group.iter().zip(at.iter_mut()) {
                    let n = &t.nodes[*a as usize];
                    if n.feature != LEAF {
                        let left = row[n.feature as usize] <= n.value;
                        *a = if left { n.left } else { n.right };
                        moving = true;
                    }
                }
                if !moving {
                    break;
                }
            }
            for (t, a) in group.iter().zip(at) {
                sum += t.nodes[a as usize].value;
            }
        }
        sum / self.trees.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_the_informative_feature() {
        // y depends on x only; z is noise.
        let mut rng = StdRng::seed_from_u64(3);
        let x: Vec<f64> = (0..400).map(|_| rng.random::<f64>()).collect();
        let z: Vec<f64> = (0..400).map(|_| rng.random::<f64>()).collect();
        let y: Vec<bool> = x.iter().map(|v| rng.random::<f64>() < *v).collect();
        let f = Forest::fit(
            &[x, z],
            &y,
            &ForestParams {
                min_samples_leaf: 5,
                ..ForestParams::default()
            },
            1,
        );
        assert!(f.predict(&[0.9, 0.5]) > 0.6);
        assert!(f.predict(&[0.1, 0.5]) < 0.4);
        assert!(f.importances[0] > 2.0 * f.importances[1], "{:?}", f.importances);
        assert!((f.importances.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn walking_the_trees_side_by_side_is_walking_each_alone() {
        let mut rng = StdRng::seed_from_u64(5);
        let cols: Vec<Vec<f64>> = (0..6)
            .map(|_| (0..600).map(|_| rng.random::<f64>()).collect())
            .collect();
        let y: Vec<bool> = (0..600)
            .map(|i| cols[0][i] + cols[1][i] * cols[2][i] > 0.7)
            .collect();
        // 37 trees: two full groups of lanes and a partial one.
        let f = Forest::fit(
            &cols,
            &y,
            &ForestParams {
                trees: 37,
                ..ForestParams::default()
            },
            9,
        );
        for i in 0..200 {
            let mut row: Vec<f64> = cols.iter().map(|c| c[i]).collect();
            if i % 50 == 0 {
                row[0] = f64::NAN;
            }
            let alone = f.trees.iter().map(|t| t.predict(&row)).sum::<f64>() / 37.0;
            assert_eq!(f.predict(&row), alone, "row {i}");
        }
    }
}
