//! DBSCAN (Ester et al. 1996): a row with at least `min_samples` rows (itself included) within
//! `eps` is a core row; core rows within `eps` of each other share a cluster, and a border row
//! joins the first cluster that reaches it. Other rows are noise.
//!
//! Written here because the labels must equal scikit-learn's for the same `eps` and
//! `min_samples` (up to label names), border rows included: clusters are numbered, and border
//! rows claimed, in the order of their lowest-numbered core row, as scikit-learn's
//! `dbscan_inner` does. Neighbours are found by brute force across the cores and are not kept
//! (a dense region would need n² of memory): a core row's neighbours are found again when the
//! cluster grows through it. [`suggest_eps`] reads the knee of the k-distance curve when no
//! `eps` is given.

use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbscanParams {
    pub eps: f64,
    pub min_samples: usize,
}

fn within(a: &[f64], b: &[f64], eps2: f64) -> bool {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() <= eps2
}

fn neighbours(data: &[f64], dim: usize, i: usize, eps2: f64) -> Vec<usize> {
    let row = &data[i * dim..(i + 1) * dim];
    data.chunks_exact(dim)
        .enumerate()
        .filter(|(_, r)| within(row, r, eps2))
        .map(|(j, _)| j)
        .collect()
}

/// The cluster of every row (`None` for noise), clusters numbered from 0.
pub fn fit(data: &[f64], dim: usize, p: &DbscanParams) -> Vec<Option<usize>> {
    let rows = data.len() / dim.max(1);
    let eps2 = p.eps * p.eps;
    let core: Vec<bool> = (0..rows)
        .into_par_iter()
        .map(|i| {
            let row = &data[i * dim..(i + 1) * dim];
            data.chunks_exact(dim)
                .filter(|r| within(row, r, eps2))
                .take(p.min_samples)
                .count()
                >= p.min_samples
        })
        .collect();
    let mut labels: Vec<Option<usize>> = vec![None; rows];
    let mut next = 0;
    let mut stack = Vec::new();
    for start in 0..rows {
        if labels[start].is_some() || !core[start] {
            continue;
        }
        stack.push(start);
        while let Some(i) = stack.pop() {
            if labels[i].is_some() {
                continue;
            }
            labels[i] = Some(next);
            if core[i] {
                stack.extend(
                    neighbours(data, dim, i, eps2)
                        .into_iter()
                        .filter(|j| labels[*j].is_none()),
                );
            }
        }
        next += 1;
    }
    labels
}

/// An `eps` read off the k-distance curve: each row's distance to its `min_samples`-th nearest
/// row (itself included, as in `fit`), sorted; the knee is the point farthest from the chord
/// between the curve's ends. Computed on at most `sample` rows (evenly spaced).
pub fn suggest_eps(data: &[f64], dim: usize, min_samples: usize, sample: usize) -> f64 {
    let rows = data.len() / dim.max(1);
    if rows == 0 {
        return 0.0;
    }
    let step = rows.div_ceil(sample.max(1)).max(1);
    let picked: Vec<usize> = (0..rows).step_by(step).collect();
    let k = min_samples.clamp(1, rows);
    let mut kdist: Vec<f64> = picked
        .par_iter()
        .map(|&i| {
            let row = &data[i * dim..(i + 1) * dim];
            let mut d: Vec<f64> = data
                .chunks_exact(dim)
                .map(|r| row.iter().zip(r).map(|(x, y)| (x - y) * (x - y)).sum::<f64>())
                .collect();
            let (_, kth, _) = d.select_nth_unstable_by(k - 1, f64::total_cmp);
            kth.sqrt()
        })
        .collect();
    kdist.sort_by(f64::total_cmp);
    knee(&kdist)
}

/// The value of a rising curve at its knee: the point farthest below the chord from the first
/// point to the last.
fn knee(curve: &[f64]) -> f64 {
    let n = curve.len();
    if n < 3 {
        return curve.last().copied().unwrap_or(0.0);
    }
    let (x1, y1) = (0.0, curve[0]);
    let (x2, y2) = ((n - 1) as f64, curve[n - 1]);
    let mut best = (0, f64::NEG_INFINITY);
    for (i, y) in curve.iter().enumerate() {
        // Distance below the chord (up to a constant factor).
        let d = (y2 - y1) * i as f64 - (x2 - x1) * (y - y1);
        if d > best.1 {
            best = (i, d);
        }
    }
    curve[best.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_border_and_noise_rows_as_scikit_learn_labels_them() {
        // A line of five rows 1 apart, a pair far away, and a lone row.
        let data = [0.0, 1.0, 2.0, 3.0, 4.0, 10.0, 10.5, 50.0];
        let labels = fit(
            &data,
            1,
            &DbscanParams {
                eps: 1.0,
                min_samples: 3,
            },
        );
        // 1, 2, 3 are core (three within 1 counting themselves); 0 and 4 are border rows.
        assert_eq!(&labels[..5], &[Some(0); 5]);
        // The pair has only two rows: noise, as is the lone row.
        assert_eq!(&labels[5..], &[None, None, None]);
        let two = fit(
            &data,
            1,
            &DbscanParams {
                eps: 1.0,
                min_samples: 2,
            },
        );
        assert_eq!(two[5], Some(1));
        assert_eq!(two[6], Some(1));
        assert_eq!(two[7], None);
    }

    #[test]
    fn a_border_row_joins_the_cluster_found_first() {
        // The row at 1.15 is within eps of a core row of each group but has only three
        // rows around it (itself included), so it is a border row of whichever comes first.
        let a = [0.0, 0.1, 0.2, 0.3];
        let b = [2.0, 2.1, 2.2, 2.3];
        let p = DbscanParams {
            eps: 0.9,
            min_samples: 4,
        };
        let data: Vec<f64> = a.iter().chain(&[1.15]).chain(&b).copied().collect();
        let labels = fit(&data, 1, &p);
        assert_eq!(labels, [0, 0, 0, 0, 0, 1, 1, 1, 1].map(Some));
        let data: Vec<f64> = b.iter().chain(&[1.15]).chain(&a).copied().collect();
        let labels = fit(&data, 1, &p);
        assert_eq!(labels, [0, 0, 0, 0, 0, 1, 1, 1, 1].map(Some));
    }

    #[test]
    fn the_knee_of_the_k_distance_curve() {
        assert_eq!(knee(&[1.0, 1.0, 1.1, 1.2, 5.0, 9.0]), 1.2);
        // Dense rows 0.1 apart and a far outlier: eps lands on the dense spacing.
        let mut data: Vec<f64> = (0..100).map(|i| f64::from(i) * 0.1).collect();
        data.push(100.0);
        let eps = suggest_eps(&data, 1, 2, 1000);
        assert!((eps - 0.1).abs() < 1e-9, "{eps}");
    }
}
