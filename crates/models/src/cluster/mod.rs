//! Clustering of standardized features: [`kmeans`] (k given, or chosen by silhouette),
//! [`dbscan`] (eps given, or read off the k-distance curve) and [`hierarchical`] (Ward or
//! average linkage, cut at k or at a distance). [`run`] standardizes, clusters, and reports
//! each cluster's size, the silhouette, and a plain-words summary of each cluster's centre in
//! the features' own units ("very high monetary (412), low recency_days (31)").

pub mod dbscan;
pub mod hierarchical;
pub mod kmeans;
pub mod silhouette;

use serde::Serialize;

use crate::dataset::Dataset;
use crate::scale::Standardizer;

/// Rows the silhouette is computed on (a seeded sample above this).
pub const SILHOUETTE_SAMPLE: usize = 5_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Algorithm {
    /// `k: None` tries 2..=`max_k` and keeps the best silhouette.
    KMeans {
        k: Option<usize>,
        max_k: usize,
        restarts: usize,
    },
    /// `eps: None` reads it off the k-distance curve.
    Dbscan { eps: Option<f64>, min_samples: usize },
    Hierarchical {
        linkage: hierarchical::Linkage,
        cut: hierarchical::Cut,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    KMeans(#[from] kmeans::KMeansError),
    #[error(transparent)]
    Hierarchical(#[from] hierarchical::HierarchicalError),
    #[error("the table has no rows to cluster")]
    Empty,
}

/// What a clustering found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterReport {
    pub algorithm: String,
    pub rows: usize,
    pub clusters: Vec<ClusterSummary>,
    /// Rows in no cluster (DBSCAN's noise).
    pub noise: usize,
    /// The mean silhouette on standardized features (`None` with fewer than two clusters).
    pub silhouette: Option<f64>,
    /// K-Means: the sum of squared distances to the centres, on standardized features.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inertia: Option<f64>,
    /// DBSCAN: the eps used, and whether it was suggested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// K-Means without a k: the silhouette of each k tried.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub k_search: Vec<KTried>,
    #[serde(skip)]
    pub labels: Vec<Option<usize>>,
    #[serde(skip)]
    pub model: Option<kmeans::KMeans>,
    #[serde(skip)]
    pub scaler: Option<Standardizer>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KTried {
    pub k: usize,
    pub silhouette: Option<f64>,
    pub inertia: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterSummary {
    pub cluster: usize,
    pub size: usize,
    /// The members' mean of each feature, in the features' own units.
    pub centre: Vec<(String, f64)>,
    pub summary: String,
}

/// Standardizes `data`'s features, clusters the rows, and reports.
pub fn run(data: &Dataset, algorithm: &Algorithm, seed: u64) -> Result<ClusterReport, ClusterError> {
    let rows = data.rows();
    if rows == 0 {
        return Err(ClusterError::Empty);
    }
    let scaler = Standardizer::fit(&data.columns);
    let standard = Dataset {
        columns: scaler.transform(&data.columns),
        ..data.clone()
    };
    let x = standard.row_major();
    let dim = data.columns.len();
    let mut report = ClusterReport {
        algorithm: String::new(),
        rows,
        clusters: Vec::new(),
        noise: 0,
        silhouette: None,
        inertia: None,
        eps: None,
        k_search: Vec::new(),
        labels: Vec::new(),
        model: None,
        scaler: Some(scaler),
    };
    let labels: Vec<Option<usize>> = match algorithm {
        Algorithm::KMeans { k, max_k, restarts } => {
            let params = |k| kmeans::KMeansParams {
                restarts: *restarts,
                seed,
                ..kmeans::KMeansParams::new(k)
            };
            let model = match k {
                Some(k) => kmeans::fit(&x, dim, &params(*k))?,
                None => {
                    let mut best: Option<(f64, kmeans::KMeans)> = None;
                    for k in 2..=(*max_k).min(rows) {
                        let m = kmeans::fit(&x, dim, &params(k))?;
                        let labels: Vec<Option<usize>> = m.labels(&x).into_iter().map(Some).collect();
                        let s = silhouette::score(&x, dim, &labels, SILHOUETTE_SAMPLE, seed);
                        report.k_search.push(KTried {
                            k,
                            silhouette: s,
                            inertia: m.inertia,
                        });
                        let s = s.unwrap_or(f64::NEG_INFINITY);
                        if best.as_ref().is_none_or(|b| s > b.0) {
                            best = Some((s, m));
                        }
                    }
                    match best {
                        Some((_, m)) => m,
                        None => kmeans::fit(&x, dim, &params(1))?,
                    }
                }
            };
            report.algorithm = format!("kmeans (k = {})", model.k());
            report.inertia = Some(model.inertia);
            let labels = model.labels(&x).into_iter().map(Some).collect();
            report.model = Some(model);
            labels
        }
        Algorithm::Dbscan { eps, min_samples } => {
            let eps = eps.unwrap_or_else(|| dbscan::suggest_eps(&x, dim, *min_samples, 2_000));
            report.algorithm = format!("dbscan (eps = {eps:.4}, min_samples = {min_samples})");
            report.eps = Some(eps);
            dbscan::fit(
                &x,
                dim,
                &dbscan::DbscanParams {
                    eps,
                    min_samples: *min_samples,
                },
            )
        }
        Algorithm::Hierarchical { linkage, cut } => {
            report.algorithm = match cut {
                hierarchical::Cut::Clusters(k) => format!("hierarchical ({linkage:?} linkage, k = {k})"),
                hierarchical::Cut::Distance(d) => format!("hierarchical ({linkage:?} linkage, cut at {d})"),
            }
            .to_lowercase();
            hierarchical::fit(&x, dim, *linkage, *cut)?
                .into_iter()
                .map(Some)
                .collect()
        }
    };
    report.noise = labels.iter().filter(|l| l.is_none()).count();
    report.silhouette = silhouette::score(&x, dim, &labels, SILHOUETTE_SAMPLE, seed);
    report.clusters = summarise(data, &labels);
    report.labels = labels;
    Ok(report)
}

/// Each cluster's size, centre in the features' units, and the centre in words.
pub fn summarise(data: &Dataset, labels: &[Option<usize>]) -> Vec<ClusterSummary> {
    let k = labels.iter().flatten().max().map_or(0, |m| m + 1);
    let dim = data.columns.len();
    let n = data.rows().max(1) as f64;
    let overall: Vec<(f64, f64)> = data
        .columns
        .iter()
        .map(|c| {
            let m = c.iter().sum::<f64>() / n;
            let sd = (c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n).sqrt();
            (m, sd)
        })
        .collect();
    let mut sizes = vec![0usize; k];
    let mut sums = vec![vec![0.0; dim]; k];
    for (i, l) in labels.iter().enumerate() {
        if let Some(l) = l {
            sizes[*l] += 1;
            for (j, col) in data.columns.iter().enumerate() {
                sums[*l][j] += col[i];
            }
        }
    }
    (0..k)
        .map(|c| {
            let centre: Vec<f64> = sums[c].iter().map(|s| s / sizes[c].max(1) as f64).collect();
            ClusterSummary {
                cluster: c,
                size: sizes[c],
                summary: describe(&data.names, &centre, &overall),
                centre: data.names.iter().cloned().zip(centre).collect(),
            }
        })
        .collect()
}

/// The (at most three) features on which a centre stands out most from the whole table, in
/// words: "very high" / "high" at 1 / 0.5 standard deviations above the mean, "low" and "very
/// low" below, with the centre's value; "close to the average" when none stands out.
pub fn describe(names: &[String], centre: &[f64], overall: &[(f64, f64)]) -> String {
    let mut standout: Vec<(f64, usize)> = centre
        .iter()
        .zip(overall)
        .enumerate()
        .filter(|(_, (_, (_, sd)))| *sd > 0.0)
        .map(|(j, (c, (m, sd)))| ((c - m) / sd, j))
        .filter(|(z, _)| z.abs() >= 0.5)
        .collect();
    standout.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
    standout.truncate(3);
    if standout.is_empty() {
        return "close to the average on every feature".into();
    }
    standout
        .iter()
        .map(|(z, j)| {
            let level = match *z {
                z if z >= 1.0 => "very high",
                z if z > 0.0 => "high",
                z if z <= -1.0 => "very low",
                _ => "low",
            };
            format!("{level} {} ({})", names[*j], round_for_people(centre[*j]))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Three significant figures, without trailing zeros.
fn round_for_people(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Dataset {
        // Big spenders who lapsed, and frequent small buyers.
        let mut spend = Vec::new();
        let mut lapsed = Vec::new();
        for i in 0..30 {
            let big = i % 2 == 0;
            spend.push(if big {
                400.0 + f64::from(i)
            } else {
                20.0 + f64::from(i % 5)
            });
            lapsed.push(if big {
                200.0 + f64::from(i % 3)
            } else {
                10.0 + f64::from(i % 4)
            });
        }
        Dataset {
            names: vec!["spend".into(), "days_since_order".into()],
            columns: vec![spend, lapsed],
            label: None,
            folds: None,
        }
    }

    #[test]
    fn each_algorithm_separates_the_two_groups_and_says_how() {
        let d = table();
        let algorithms = [
            Algorithm::KMeans {
                k: None,
                max_k: 5,
                restarts: 2,
            },
            Algorithm::Dbscan {
                eps: Some(0.5),
                min_samples: 3,
            },
            Algorithm::Hierarchical {
                linkage: hierarchical::Linkage::Ward,
                cut: hierarchical::Cut::Clusters(2),
            },
        ];
        for a in &algorithms {
            let r = run(&d, a, 1).unwrap();
            assert_eq!(r.clusters.len(), 2, "{a:?}: {r:?}");
            assert_eq!(r.noise, 0);
            assert!(r.silhouette.unwrap() > 0.9, "{a:?}");
            let big = r.labels[0].unwrap();
            assert!((0..30).all(|i| (r.labels[i] == Some(big)) == (i % 2 == 0)));
            let summary = &r.clusters[big].summary;
            assert!(summary.contains("high spend (4"), "{summary}");
            assert!(summary.contains("high days_since_order (20"), "{summary}");
        }
    }

    #[test]
    fn describes_in_people_numbers() {
        assert_eq!(round_for_people(412.345), "412");
        assert_eq!(round_for_people(1.23456), "1.23");
        assert_eq!(round_for_people(0.5), "0.5");
        let names = ["a".to_owned(), "b".to_owned()];
        assert_eq!(
            describe(&names, &[1.0, 1.0], &[(1.0, 2.0), (1.0, 0.0)]),
            "close to the average on every feature"
        );
        assert_eq!(
            describe(&names, &[0.0, 1.0], &[(1.5, 2.0), (1.0, 0.0)]),
            "low a (0)"
        );
    }
}
