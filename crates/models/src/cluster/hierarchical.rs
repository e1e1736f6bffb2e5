//! Agglomerative hierarchical clustering (Ward or average linkage on Euclidean distances) with
//! the `kodama` crate, which implements Müllner's algorithms as SciPy does; the tree is cut
//! at `k` clusters or at a merge distance.
//!
//! It holds every pairwise distance (n(n−1)/2 values), so it refuses more than [`MAX_ROWS`]
//! rows: sample first, as the command does and says.

use kodama::{Method, linkage};
use serde::{Deserialize, Serialize};

/// 20,000 rows need 1.6 GB of distances.
pub const MAX_ROWS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Linkage {
    Ward,
    Average,
}

/// Where to cut the tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cut {
    Clusters(usize),
    Distance(f64),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HierarchicalError {
    #[error(
        "hierarchical clustering holds every pairwise distance: {rows} rows is over {max}; sample the table first"
    )]
    TooManyRows { rows: usize, max: usize },
    #[error("cannot cut {rows} rows into {k} clusters")]
    BadK { k: usize, rows: usize },
}

/// The cluster of every row, numbered from 0 in the order of each cluster's first row.
pub fn fit(data: &[f64], dim: usize, linkage_: Linkage, cut: Cut) -> Result<Vec<usize>, HierarchicalError> {
    let n = data.len() / dim.max(1);
    if n > MAX_ROWS {
        return Err(HierarchicalError::TooManyRows {
            rows: n,
            max: MAX_ROWS,
        });
    }
    if let Cut::Clusters(k) = cut
        && (k == 0 || k > n)
    {
        return Err(HierarchicalError::BadK { k, rows: n });
    }
    if n < 2 {
        return Ok(vec![0; n]);
    }
    let mut condensed = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        let a = &data[i * dim..(i + 1) * dim];
        for j in i + 1..n {
            let b = &data[j * dim..(j + 1) * dim];
            condensed.push(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f64>()
                    .sqrt(),
            );
        }
    }
    let method = match linkage_ {
        Linkage::Ward => Method::Ward,
        Linkage::Average => Method::Average,
    };
    let dendrogram = linkage(&mut condensed, n, method);
    // Replays the merges up to the cut with a union-find over the 2n − 1 cluster labels.
    let mut parent: Vec<usize> = (0..2 * n - 1).collect();
    fn root(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (s, step) in dendrogram.steps().iter().enumerate() {
        let keep_merging = match cut {
            Cut::Clusters(k) => s < n - k,
            Cut::Distance(d) => step.dissimilarity <= d,
        };
        if !keep_merging {
            break;
        }
        let new = n + s;
        let (a, b) = (root(&mut parent, step.cluster1), root(&mut parent, step.cluster2));
        parent[a] = new;
        parent[b] = new;
    }
    let mut names = std::collections::HashMap::new();
    Ok((0..n)
        .map(|i| {
            let r = root(&mut parent, i);
            let next = names.len();
            *names.entry(r).or_insert(next)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_k_and_at_a_distance() {
        // SciPy's documentation example: four corners of three points each.
        let x = [
            [0., 0.],
            [0., 1.],
            [1., 0.],
            [0., 4.],
            [0., 3.],
            [1., 4.],
            [4., 0.],
            [3., 0.],
            [4., 1.],
            [4., 4.],
            [3., 4.],
            [4., 3.],
        ];
        let data: Vec<f64> = x.iter().flatten().copied().collect();
        for l in [Linkage::Ward, Linkage::Average] {
            let four = fit(&data, 2, l, Cut::Clusters(4)).unwrap();
            assert_eq!(four, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], "{l:?}");
            assert_eq!(fit(&data, 2, l, Cut::Clusters(1)).unwrap(), [0; 12]);
            // Below the first merge distance (1) every row stands alone.
            let alone = fit(&data, 2, l, Cut::Distance(0.5)).unwrap();
            assert_eq!(alone, (0..12).collect::<Vec<_>>());
        }
        // SciPy: ward(pdist(X)) merges the corners at 1.29 and the pairs of corners at 5.56.
        assert_eq!(
            fit(&data, 2, Linkage::Ward, Cut::Distance(2.0)).unwrap(),
            fit(&data, 2, Linkage::Ward, Cut::Clusters(4)).unwrap()
        );
        assert!(fit(&data, 2, Linkage::Ward, Cut::Clusters(13)).is_err());
    }
}
