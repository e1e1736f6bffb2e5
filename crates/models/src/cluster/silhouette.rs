//! The silhouette (Rousseeuw 1987): for each row, (b − a) / max(a, b), where a is its mean
//! distance to the rest of its cluster and b the least mean distance to another cluster; a row
//! alone in its cluster scores 0; the score is the mean. Exact on up to `sample` rows, else on
//! a seeded uniform sample of that many (as scikit-learn's `silhouette_score(sample_size=…)`).
//! Noise rows (`None`) are left out.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample as sample_indices;
use rayon::prelude::*;

/// The mean silhouette, or `None` when fewer than two clusters have rows.
pub fn score(data: &[f64], dim: usize, labels: &[Option<usize>], sample: usize, seed: u64) -> Option<f64> {
    let mut idx: Vec<usize> = (0..labels.len()).filter(|i| labels[*i].is_some()).collect();
    if idx.len() > sample {
        let mut rng = StdRng::seed_from_u64(seed);
        let picked = sample_indices(&mut rng, idx.len(), sample);
        let mut chosen: Vec<usize> = picked.iter().map(|p| idx[p]).collect();
        chosen.sort_unstable();
        idx = chosen;
    }
    let k = idx.iter().filter_map(|i| labels[*i]).max()? + 1;
    let mut sizes = vec![0usize; k];
    for i in &idx {
        if let Some(l) = labels[*i] {
            sizes[l] += 1;
        }
    }
    if sizes.iter().filter(|s| **s > 0).count() < 2 {
        return None;
    }
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let total: f64 = idx
        .par_iter()
        .map(|&i| {
            let own = labels[i].unwrap_or(0);
            if sizes[own] <= 1 {
                return 0.0;
            }
            let mut sums = vec![0.0; k];
            for &j in &idx {
                if let Some(l) = labels[j] {
                    let d: f64 = row(i).iter().zip(row(j)).map(|(x, y)| (x - y) * (x - y)).sum();
                    sums[l] += d.sqrt();
                }
            }
            let a = sums[own] / (sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|c| *c != own && sizes[*c] > 0)
                .map(|c| sums[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            let m = a.max(b);
            if m > 0.0 { (b - a) / m } else { 0.0 }
        })
        .sum();
    Some(total / idx.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_on_a_small_case() {
        // Rows 0, 1 in one cluster and 4, 6 in another (one dimension).
        let data = [0.0, 1.0, 4.0, 6.0];
        let labels = [Some(0), Some(0), Some(1), Some(1)];
        // a, b per row: (1, 5), (1, 4), (2, 3.5), (2, 5.5).
        let want = ((5.0 - 1.0) / 5.0 + (4.0 - 1.0) / 4.0 + (3.5 - 2.0) / 3.5 + (5.5 - 2.0) / 5.5) / 4.0;
        let got = score(&data, 1, &labels, 100, 1).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} {want}");
        assert_eq!(score(&data, 1, &[Some(0); 4], 100, 1), None);
        // A noise row is left out.
        let with_noise = score(
            &[0.0, 1.0, 4.0, 6.0, 100.0],
            1,
            &[Some(0), Some(0), Some(1), Some(1), None],
            100,
            1,
        );
        assert_eq!(with_noise, Some(got));
    }
}
