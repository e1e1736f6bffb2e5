//! Propensity classifiers: who is likely to do something (buy again, churn, click). Three
//! algorithms share one interface ([`Classifier`]): a random forest ([`forest`]), gradient-
//! boosted trees ([`boosted`], the forust-ml crate) and logistic regression ([`logistic`]), the
//! baseline. [`train`] validates as a careful data scientist would:
//!
//! 1. refuses a table with too few rows of either class;
//! 2. draws a stratified 80/20 holdout;
//! 3. without fixed hyperparameters, searches a small grid by stratified k-fold AUC on the 80 %
//!    only, so the holdout stays unseen;
//! 4. reports the chosen model's k-fold cross-validated AUC, PR-AUC and log loss over the whole
//!    table (the folds drawn, or the table's own), next to the logistic baseline's on the same
//!    folds;
//! 5. trains on the 80 % and reports the holdout's AUC, PR-AUC, log loss and calibration table,
//!    and the feature importances: that model is the one kept;
//! 6. refuses (with the reason, metrics still reported) a model that does not beat the baseline.

pub mod boosted;
pub mod folds;
pub mod forest;
pub mod logistic;
pub mod metrics;
pub mod tree;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    RandomForest,
    GradientBoosting,
    Logistic,
}

/// An algorithm with its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum Params {
    RandomForest(forest::ForestParams),
    GradientBoosting(boosted::BoostedParams),
    Logistic(logistic::LogisticParams),
}

/// A trained classifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum Classifier {
    RandomForest(forest::Forest),
    GradientBoosting(boosted::Boosted),
    Logistic(logistic::Logistic),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error("the table has no label column: name one with --label")]
    NoLabel,
    #[error(
        "too few rows of one class to train and validate: {positives} positive and {negatives} negative; at least {needed} of each are needed"
    )]
    TooFewRows {
        positives: usize,
        negatives: usize,
        needed: usize,
    },
    #[error("unknown hyperparameter `{key}` for {algorithm:?}: known are {known}")]
    UnknownParam {
        key: String,
        algorithm: Algorithm,
        known: &'static str,
    },
    #[error("hyperparameter `{key}`: `{value}` is not {what}")]
    BadParam {
        key: String,
        value: String,
        what: &'static str,
    },
    #[error("the table's fold column has {0} distinct folds; cross-validation needs at least 2")]
    Folds(usize),
    #[error("--folds must be 2 to 20; it is {0}")]
    FoldCount(usize),
    #[error("gradient boosting failed: {0}")]
    Boosting(String),
}

impl Params {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Params::RandomForest(_) => Algorithm::RandomForest,
            Params::GradientBoosting(_) => Algorithm::GradientBoosting,
            Params::Logistic(_) => Algorithm::Logistic,
        }
    }

    /// The algorithm's defaults, as scikit-learn's (RandomForestClassifier,
    /// HistGradientBoostingClassifier, LogisticRegression).
    pub fn defaults(a: Algorithm) -> Params {
        match a {
            Algorithm::RandomForest => Params::RandomForest(forest::ForestParams::default()),
            Algorithm::GradientBoosting => Params::GradientBoosting(boosted::BoostedParams::default()),
            Algorithm::Logistic => Params::Logistic(logistic::LogisticParams::default()),
        }
    }

    /// The defaults with `key=value` settings applied.
    pub fn with(a: Algorithm, settings: &[(String, String)]) -> Result<Params, TrainError> {
        let mut p = Params::defaults(a);
        for (key, value) in settings {
            let bad = |what| TrainError::BadParam {
                key: key.clone(),
                value: value.clone(),
                what,
            };
            let count = || value.parse::<usize>().map_err(|_| bad("a whole number"));
            let number = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad("a number ≥ 0"))
            };
            let within = |v: usize, lo: usize, hi: usize| {
                if (lo..=hi).contains(&v) {
                    Ok(v)
                } else {
                    Err(TrainError::BadParam {
                        key: key.clone(),
                        value: value.clone(),
                        what: "within the allowed range (trees ≤ 2,000, iterations ≤ 5,000, max_leaves 2 to 1,024, max_depth ≤ 64)",
                    })
                }
            };
            let unknown = |known| TrainError::UnknownParam {
                key: key.clone(),
                algorithm: a,
                known,
            };
            match &mut p {
                Params::RandomForest(f) => match key.as_str() {
                    "trees" => f.trees = within(count()?, 1, 2_000)?,
                    "max_depth" => f.max_depth = Some(within(count()?, 1, 64)?),
                    "min_samples_leaf" => f.min_samples_leaf = count()?.max(1),
                    "max_features" => f.max_features = Some(count()?.max(1)),
                    _ => return Err(unknown("trees, max_depth, min_samples_leaf, max_features")),
                },
                Params::GradientBoosting(g) => match key.as_str() {
                    "iterations" => g.iterations = within(count()?, 1, 5_000)?,
                    "learning_rate" => g.learning_rate = number()?,
                    "max_leaves" => g.max_leaves = within(count()?, 2, 1_024)?,
                    "max_depth" => g.max_depth = within(count()?, 1, 64)?,
                    "l2" => g.l2 = number()?,
                    "min_leaf_weight" => g.min_leaf_weight = number()?,
                    "bins" => g.bins = count()?.clamp(2, 255),
                    _ => {
                        return Err(unknown(
                            "iterations, learning_rate, max_leaves, max_depth, l2, min_leaf_weight, bins",
                        ));
                    }
                },
                Params::Logistic(l) => match key.as_str() {
                    "c" | "C" => l.c = number()?.max(1e-9),
                    _ => return Err(unknown("c")),
                },
            }
        }
        Ok(p)
    }

    /// The small grid searched when no hyperparameter is fixed.
    pub fn grid(a: Algorithm, features: usize) -> Vec<Params> {
        match a {
            Algorithm::RandomForest => {
                let sqrt = ((features as f64).sqrt() as usize).max(1);
                let third = (features / 3).max(1);
                let mut out = Vec::new();
                for leaf in [1, 5, 20] {
                    for mf in [sqrt, third] {
                        let p = forest::ForestParams {
                            min_samples_leaf: leaf,
                            max_features: Some(mf),
                            ..forest::ForestParams::default()
                        };
                        if !out.contains(&Params::RandomForest(p)) {
                            out.push(Params::RandomForest(p));
                        }
                    }
                }
                out
            }
            Algorithm::GradientBoosting => {
                let mut out = Vec::new();
                for lr in [0.05, 0.1] {
                    for leaves in [15, 31] {
                        out.push(Params::GradientBoosting(boosted::BoostedParams {
                            learning_rate: lr,
                            max_leaves: leaves,
                            ..boosted::BoostedParams::default()
                        }));
                    }
                }
                out
            }
            Algorithm::Logistic => [0.1, 1.0, 10.0]
                .into_iter()
                .map(|c| Params::Logistic(logistic::LogisticParams { c }))
                .collect(),
        }
    }

    pub fn fit(&self, columns: &[Vec<f64>], y: &[bool], seed: u64) -> Result<Classifier, TrainError> {
        Ok(match self {
            Params::RandomForest(p) => Classifier::RandomForest(forest::Forest::fit(columns, y, p, seed)),
            Params::GradientBoosting(p) => Classifier::GradientBoosting(
                boosted::Boosted::fit(columns, y, p, seed).map_err(TrainError::Boosting)?,
            ),
            Params::Logistic(p) => Classifier::Logistic(logistic::Logistic::fit(columns, y, p)),
        })
    }
}

impl Classifier {
    /// The probability of the positive class for one row of features.
    pub fn predict(&self, row: &[f64]) -> f64 {
        match self {
            Classifier::RandomForest(m) => m.predict(row),
            Classifier::GradientBoosting(m) => m.predict(row),
            Classifier::Logistic(m) => m.predict(row),
        }
    }

    /// The probability for every row of `columns`.
    pub fn predict_all(&self, columns: &[Vec<f64>]) -> Vec<f64> {
        let n = columns.first().map_or(0, Vec::len);
        (0..n)
            .into_par_iter()
            .map(|i| {
                let row: Vec<f64> = columns.iter().map(|c| c[i]).collect();
                self.predict(&row)
            })
            .collect()
    }

    /// Each feature's share of the model's importance.
    pub fn importances(&self) -> Vec<f64> {
        match self {
            Classifier::RandomForest(m) => m.importances.clone(),
            Classifier::GradientBoosting(m) => m.importances.clone(),
            Classifier::Logistic(m) => m.importances(),
        }
    }
}

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub algorithm: Algorithm,
    /// Fixed hyperparameters; `None` searches [`Params::grid`].
    pub params: Option<Params>,
    pub folds: usize,
    /// The share of rows held out.
    pub holdout: f64,
    /// Fewest rows of each class.
    pub min_class: usize,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            algorithm: Algorithm::GradientBoosting,
            params: None,
            folds: 5,
            holdout: 0.2,
            min_class: 20,
            seed: 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldScore {
    pub rows: usize,
    pub auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub log_loss: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CvScores {
    pub folds: Vec<FoldScore>,
    pub auc_mean: f64,
    pub auc_sd: f64,
    pub pr_auc_mean: f64,
    pub log_loss_mean: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridPoint {
    pub params: Params,
    pub auc_mean: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldoutScores {
    pub rows: usize,
    pub positives: usize,
    pub auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub log_loss: f64,
    pub calibration: Vec<metrics::CalibrationBin>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub accepted: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub params: Params,
    pub rows: usize,
    pub positives: usize,
    pub cross_validation: CvScores,
    /// Logistic regression on the same folds (absent when it is the model).
    pub baseline: Option<CvScores>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grid: Vec<GridPoint>,
    pub holdout: HoldoutScores,
    /// Features by importance, largest first.
    pub importances: Vec<(String, f64)>,
    pub verdict: Verdict,
    #[serde(skip)]
    pub model: Option<Classifier>,
}

/// Cross-validates `params` on the rows `rows` of `data` with `fold_of` (a fold per row of
/// `data`).
pub fn cross_validate(
    params: &Params,
    data: &Dataset,
    y: &[bool],
    rows: &[usize],
    fold_of: &[usize],
    seed: u64,
) -> Result<CvScores, TrainError> {
    let mut ids: Vec<usize> = rows.iter().map(|r| fold_of[*r]).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut folds = Vec::new();
    for f in ids {
        let train: Vec<usize> = rows.iter().copied().filter(|r| fold_of[*r] != f).collect();
        let test: Vec<usize> = rows.iter().copied().filter(|r| fold_of[*r] == f).collect();
        let tr = data.subset(&train);
        let te = data.subset(&test);
        let ytr: Vec<bool> = train.iter().map(|r| y[*r]).collect();
        let yte: Vec<bool> = test.iter().map(|r| y[*r]).collect();
        let model = params.fit(&tr.columns, &ytr, seed.wrapping_add(f as u64))?;
        let p = model.predict_all(&te.columns);
        folds.push(FoldScore {
            rows: test.len(),
            auc: metrics::auc(&p, &yte),
            pr_auc: metrics::average_precision(&p, &yte),
            log_loss: metrics::log_loss(&p, &yte),
        });
    }
    let aucs: Vec<f64> = folds.iter().filter_map(|f| f.auc).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let auc_mean = mean(&aucs);
    let auc_sd = (aucs.iter().map(|a| (a - auc_mean).powi(2)).sum::<f64>() / aucs.len().max(1) as f64).sqrt();
    let prs: Vec<f64> = folds.iter().filter_map(|f| f.pr_auc).collect();
    let lls: Vec<f64> = folds.iter().map(|f| f.log_loss).collect();
    Ok(CvScores {
        auc_mean,
        auc_sd,
        pr_auc_mean: mean(&prs),
        log_loss_mean: mean(&lls),
        folds,
    })
}

/// Trains and validates a propensity model on `data` (which must have a label).
pub fn train(data: &Dataset, o: &TrainOptions) -> Result<TrainReport, TrainError> {
    let y = data.label.as_ref().ok_or(TrainError::NoLabel)?;
    if !(2..=20).contains(&o.folds) {
        return Err(TrainError::FoldCount(o.folds));
    }
    let positives = y.iter().filter(|v| **v).count();
    let negatives = y.len() - positives;
    let needed = o.min_class.max(o.folds * 2);
    if positives < needed || negatives < needed {
        return Err(TrainError::TooFewRows {
            positives,
            negatives,
            needed,
        });
    }
    let fold_of = match &data.folds {
        Some(f) => {
            let mut ids = f.clone();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() < 2 {
                return Err(TrainError::Folds(ids.len()));
            }
            f.clone()
        }
        None => folds::stratified(y, o.folds, o.seed),
    };
    let (train_rows, test_rows) = folds::holdout(y, o.holdout, o.seed);
    let mut grid = Vec::new();
    let params = match o.params {
        Some(p) => p,
        None => {
            // Folds for the search: the table's own, or drawn afresh on the training rows.
            let ytrain: Vec<bool> = train_rows.iter().map(|r| y[*r]).collect();
            let drawn = folds::stratified(&ytrain, o.folds, o.seed.wrapping_add(1));
            let mut search_folds = vec![0; y.len()];
            for (k, r) in train_rows.iter().enumerate() {
                search_folds[*r] = if data.folds.is_some() {
                    fold_of[*r]
                } else {
                    drawn[k]
                };
            }
            let mut best: Option<(f64, Params)> = None;
            for p in Params::grid(o.algorithm, data.columns.len()) {
                let cv = cross_validate(&p, data, y, &train_rows, &search_folds, o.seed)?;
                grid.push(GridPoint {
                    params: p,
                    auc_mean: cv.auc_mean,
                });
                if best.as_ref().is_none_or(|b| cv.auc_mean > b.0) {
                    best = Some((cv.auc_mean, p));
                }
            }
            best.map_or(Params::defaults(o.algorithm), |b| b.1)
        }
    };
    let all: Vec<usize> = (0..y.len()).collect();
    let cross_validation = cross_validate(&params, data, y, &all, &fold_of, o.seed)?;
    let baseline = match params.algorithm() {
        Algorithm::Logistic => None,
        _ => Some(cross_validate(
            &Params::defaults(Algorithm::Logistic),
            data,
            y,
            &all,
            &fold_of,
            o.seed,
        )?),
    };
    let tr = data.subset(&train_rows);
    let te = data.subset(&test_rows);
    let ytr: Vec<bool> = train_rows.iter().map(|r| y[*r]).collect();
    let yte: Vec<bool> = test_rows.iter().map(|r| y[*r]).collect();
    let model = params.fit(&tr.columns, &ytr, o.seed)?;
    let p = model.predict_all(&te.columns);
    let holdout = HoldoutScores {
        rows: test_rows.len(),
        positives: yte.iter().filter(|v| **v).count(),
        auc: metrics::auc(&p, &yte),
        pr_auc: metrics::average_precision(&p, &yte),
        log_loss: metrics::log_loss(&p, &yte),
        calibration: metrics::calibration(&p, &yte, 10),
    };
    let mut importances: Vec<(String, f64)> = data.names.iter().cloned().zip(model.importances()).collect();
    importances.sort_by(|a, b| b.1.total_cmp(&a.1));
    let verdict = verdict(&cross_validation, baseline.as_ref());
    Ok(TrainReport {
        params,
        rows: y.len(),
        positives,
        cross_validation,
        baseline,
        grid,
        holdout,
        importances,
        verdict,
        model: Some(model),
    })
}

/// A model is kept when its cross-validated AUC beats the logistic baseline's (or, for the
/// baseline itself, chance by a clear margin).
fn verdict(cv: &CvScores, baseline: Option<&CvScores>) -> Verdict {
    match baseline {
        Some(b) if cv.auc_mean <= b.auc_mean => Verdict {
            accepted: false,
            reason: format!(
                "refused: cross-validated AUC {:.4} does not beat the logistic baseline's {:.4}",
                cv.auc_mean, b.auc_mean
            ),
        },
        Some(b) => Verdict {
            accepted: true,
            reason: format!(
                "cross-validated AUC {:.4} beats the logistic baseline's {:.4}",
                cv.auc_mean, b.auc_mean
            ),
        },
        None if cv.auc_mean <= 0.55 => Verdict {
            accepted: false,
            reason: format!(
                "refused: cross-validated AUC {:.4} is no better than chance (0.5)",
                cv.auc_mean
            ),
        },
        None => Verdict {
            accepted: true,
            reason: format!("cross-validated AUC {:.4} beats chance (0.5)", cv.auc_mean),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn table(n: usize, seed: u64) -> Dataset {
        // y depends on x1 and x2 with an interaction; x3 is noise.
        let mut rng = StdRng::seed_from_u64(seed);
        let mut cols = vec![Vec::new(), Vec::new(), Vec::new()];
        let mut y = Vec::new();
        for _ in 0..n {
            let (a, b, c): (f64, f64, f64) = (rng.random(), rng.random(), rng.random());
            let p = if (a > 0.5) == (b > 0.5) { 0.85 } else { 0.15 };
            y.push(rng.random::<f64>() < p);
            cols[0].push(a);
            cols[1].push(b);
            cols[2].push(c);
        }
        Dataset {
            names: vec!["x1".into(), "x2".into(), "x3".into()],
            columns: cols,
            label: Some(y),
            folds: None,
        }
    }

    #[test]
    fn trees_beat_the_baseline_on_an_interaction_and_logistic_is_refused() {
        let d = table(1500, 1);
        for a in [Algorithm::RandomForest, Algorithm::GradientBoosting] {
            let r = train(
                &d,
                &TrainOptions {
                    algorithm: a,
                    params: Some(Params::defaults(a)),
                    ..TrainOptions::default()
                },
            )
            .unwrap();
            assert!(r.verdict.accepted, "{a:?}: {}", r.verdict.reason);
            assert!(
                r.cross_validation.auc_mean > 0.75,
                "{a:?}: {:?}",
                r.cross_validation
            );
            assert!(r.holdout.auc.unwrap() > 0.75);
            assert_eq!(r.holdout.rows, 300);
            assert_eq!(r.cross_validation.folds.len(), 5);
            assert_eq!(
                r.importances.last().unwrap().0,
                "x3",
                "{a:?}: {:?}",
                r.importances
            );
        }
        // An XOR has no linear signal: the baseline is no better than chance and is refused.
        let r = train(
            &d,
            &TrainOptions {
                algorithm: Algorithm::Logistic,
                ..TrainOptions::default()
            },
        )
        .unwrap();
        assert!(!r.verdict.accepted, "{:?}", r.verdict);
        assert_eq!(r.grid.len(), 3);
    }

    #[test]
    fn too_few_rows_of_a_class_are_refused_and_params_are_checked() {
        let mut d = table(100, 2);
        d.label = Some((0..100).map(|i| i < 5).collect());
        let e = train(&d, &TrainOptions::default()).unwrap_err();
        assert!(e.to_string().contains("5 positive and 95 negative"), "{e}");
        let e = Params::with(Algorithm::RandomForest, &[("depth".into(), "3".into())]).unwrap_err();
        assert!(e.to_string().contains("known are trees"), "{e}");
        let e = Params::with(
            Algorithm::GradientBoosting,
            &[("learning_rate".into(), "-1".into())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a number ≥ 0"), "{e}");
        let p = Params::with(Algorithm::RandomForest, &[("trees".into(), "7".into())]).unwrap();
        assert!(matches!(p, Params::RandomForest(f) if f.trees == 7));
    }
}
