//! How well predicted probabilities rank and fit yes/no outcomes: AUC-ROC, average precision
//! (PR-AUC), log loss and a calibration table, each defined as scikit-learn defines it
//! (`roc_auc_score`, `average_precision_score`, `log_loss`, `calibration_curve`) so that the
//! figures compare.

use serde::Serialize;

/// The area under the ROC curve: the chance that a random positive scores above a random
/// negative, ties counting half (the Mann-Whitney statistic with mid-ranks). `None` without
/// both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|l| **l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Rows i..=j tie: each takes the mean of ranks i+1..=j+1.
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mid * order[i..=j].iter().filter(|k| labels[**k]).count() as f64;
        i = j + 1;
    }
    let p = pos as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

/// Average precision: Σ (Rₙ − Rₙ₋₁) Pₙ over the distinct thresholds, highest first. `None`
/// without a positive.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|l| **l).count();
    if pos == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            if labels[order[j]] {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        let recall = tp as f64 / pos as f64;
        ap += (recall - last_recall) * tp as f64 / (tp + fp) as f64;
        last_recall = recall;
        i = j;
    }
    Some(ap)
}

/// The mean negative log-likelihood, probabilities clipped to [1e-15, 1 − 1e-15].
pub fn log_loss(probs: &[f64], labels: &[bool]) -> f64 {
    let eps = 1e-15;
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(p, y)| {
            let p = p.clamp(eps, 1.0 - eps);
            if *y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / probs.len().max(1) as f64
}

/// One bin of a calibration table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationBin {
    /// The bin's range of predicted probability, [from, to).
    pub from: f64,
    pub to: f64,
    pub rows: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Predicted against observed, in `bins` equal-width bins of probability; empty bins left out.
pub fn calibration(probs: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    let mut rows = vec![0usize; bins];
    let mut sum_p = vec![0.0; bins];
    let mut pos = vec![0usize; bins];
    for (p, y) in probs.iter().zip(labels) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        rows[b] += 1;
        sum_p[b] += p;
        pos[b] += usize::from(*y);
    }
    (0..bins)
        .filter(|b| rows[*b] > 0)
        .map(|b| CalibrationBin {
            from: b as f64 / bins as f64,
            to: (b + 1) as f64 / bins as f64,
            rows: rows[b],
            mean_predicted: sum_p[b] / rows[b] as f64,
            observed_rate: pos[b] as f64 / rows[b] as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agree_with_scikit_learn_on_small_cases() {
        // sklearn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.75
        let y = [false, false, true, true];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert_eq!(auc(&s, &y), Some(0.75));
        // average_precision_score(...) == 0.8333…
        assert!((average_precision(&s, &y).unwrap() - 5.0 / 6.0).abs() < 1e-12);
        // Ties count half: every score equal gives 0.5.
        assert_eq!(auc(&[0.3; 4], &y), Some(0.5));
        assert_eq!(average_precision(&[0.3; 4], &y), Some(0.5));
        assert_eq!(auc(&s, &[true; 4]), None);
        // log_loss([0,0,1,1], s) == 0.4722…
        let want = -((0.9f64).ln() + (0.6f64).ln() + (0.35f64).ln() + (0.8f64).ln()) / 4.0;
        assert!((log_loss(&s, &y) - want).abs() < 1e-12);
        assert!(log_loss(&[0.0], &[true]).is_finite());
    }

    #[test]
    fn calibration_bins_hold_their_rows() {
        let t = calibration(
            &[0.05, 0.15, 0.12, 0.95, 1.0],
            &[false, true, false, true, true],
            10,
        );
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].rows, t[1].rows, t[2].rows), (1, 2, 2));
        assert!((t[1].mean_predicted - 0.135).abs() < 1e-12);
        assert_eq!(t[1].observed_rate, 0.5);
        assert_eq!(t[2].observed_rate, 1.0);
    }
}
