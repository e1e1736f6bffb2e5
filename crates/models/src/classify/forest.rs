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

use super::tree::{Tree, TreeParams};

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

    /// The probability of the positive class.
    pub fn predict(&self, row: &[f64]) -> f64 {
        self.trees.iter().map(|t| t.predict(row)).sum::<f64>() / self.trees.len().max(1) as f64
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
}
