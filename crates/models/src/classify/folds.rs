//! Splits for honest evaluation: stratified k folds (each fold with the table's share of
//! positives) and a stratified holdout, drawn with a seed so a run can be repeated.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// A fold number (0..k) for each row: positives and negatives are each shuffled and dealt out
/// in turn, so every fold gets its share of both.
pub fn stratified(labels: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut folds = vec![0; labels.len()];
    let mut offset = 0;
    for class in [true, false] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|i| labels[*i] == class).collect();
        rows.shuffle(&mut rng);
        for (n, r) in rows.into_iter().enumerate() {
            folds[r] = (n + offset) % k;
        }
        // The negatives continue where the positives stopped, so fold sizes stay even.
        offset = labels.iter().filter(|l| **l == class).count() % k;
    }
    folds
}

/// Rows for training and for the holdout (`share` of each class, at least one when a class has
/// two rows or more).
pub fn holdout(labels: &[bool], share: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in [true, false] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|i| labels[*i] == class).collect();
        rows.shuffle(&mut rng);
        let mut n_test = (rows.len() as f64 * share).round() as usize;
        if n_test == 0 && rows.len() >= 2 {
            n_test = 1;
        }
        test.extend_from_slice(&rows[..n_test]);
        train.extend_from_slice(&rows[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keep_the_share_of_positives() {
        let labels: Vec<bool> = (0..100).map(|i| i % 4 == 0).collect();
        let f = stratified(&labels, 5, 1);
        for k in 0..5 {
            let rows: Vec<usize> = (0..100).filter(|i| f[*i] == k).collect();
            assert_eq!(rows.len(), 20);
            assert_eq!(rows.iter().filter(|i| labels[**i]).count(), 5);
        }
        assert_eq!(stratified(&labels, 5, 1), f, "seeded");
        let (train, test) = holdout(&labels, 0.2, 1);
        assert_eq!((train.len(), test.len()), (80, 20));
        assert_eq!(test.iter().filter(|i| labels[**i]).count(), 5);
    }
}
