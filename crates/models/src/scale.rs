//! Standardization for the algorithms that measure distances or penalise weights (K-Means,
//! DBSCAN, hierarchical clustering, logistic regression): each feature minus its mean, over
//! its standard deviation (the population one, as scikit-learn's `StandardScaler`). A constant
//! feature is only centred. Trees do not need it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// Learns each column's mean and spread.
    pub fn fit(columns: &[Vec<f64>]) -> Standardizer {
        let mut mean = Vec::with_capacity(columns.len());
        let mut scale = Vec::with_capacity(columns.len());
        for c in columns {
            let n = c.len().max(1) as f64;
            let m = c.iter().sum::<f64>() / n;
            let var = c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n;
            mean.push(m);
            scale.push(if var > 0.0 { var.sqrt() } else { 1.0 });
        }
        Standardizer { mean, scale }
    }

    /// Standardized copies of the columns.
    pub fn transform(&self, columns: &[Vec<f64>]) -> Vec<Vec<f64>> {
        columns
            .iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(c, (m, s))| c.iter().map(|v| (v - m) / s).collect())
            .collect()
    }

    /// Standardizes one row in place.
    pub fn transform_row(&self, row: &mut [f64]) {
        for (v, (m, s)) in row.iter_mut().zip(self.mean.iter().zip(&self.scale)) {
            *v = (*v - m) / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centres_and_scales_each_column_and_leaves_constants_centred() {
        let cols = vec![vec![1.0, 2.0, 3.0], vec![5.0, 5.0, 5.0]];
        let s = Standardizer::fit(&cols);
        let t = s.transform(&cols);
        let sd = (2.0f64 / 3.0).sqrt();
        assert_eq!(t[0], [-1.0 / sd, 0.0, 1.0 / sd]);
        assert_eq!(t[1], [0.0, 0.0, 0.0]);
        let mut row = [3.0, 5.0];
        s.transform_row(&mut row);
        assert_eq!(row, [1.0 / sd, 0.0]);
    }
}
