//! A table of numeric features (and, for classifiers, a yes/no label) read from CSV, so that a
//! model can be trained and checked on any table: `missive model train … --data FILE.csv`.
//!
//! What reading does to a table, every step reported in [`Prepared`]:
//! - A column whose values are numbers (at least 95 % of those present) is a numeric feature.
//!   Its missing cells (empty, `NA`, `NaN`, `null`, `?`) get the column's median. A cell that is
//!   present but not a finite number is an error naming the line and the column.
//! - Any other column is categorical and one-hot encoded: one 0/1 feature per value, for at
//!   most [`CsvOptions::category_cap`] values (the most frequent); rarer values and missing
//!   cells set none of them. A column with more distinct values than the cap and than half the
//!   rows looks like an identifier and is refused: leave it out with `ignore`.
//! - A table larger than the memory budget is sampled uniformly (reservoir sampling, seeded),
//!   and said so.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Features in columns (one `Vec` per feature, one value per row), and the label if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub names: Vec<String>,
    pub columns: Vec<Vec<f64>>,
    pub label: Option<Vec<bool>>,
    /// A fold number per row, when the table gives its own cross-validation folds.
    pub folds: Option<Vec<usize>>,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    /// Row `i` as a feature vector.
    pub fn row(&self, i: usize) -> Vec<f64> {
        self.columns.iter().map(|c| c[i]).collect()
    }

    /// All rows, row-major: `rows() × names.len()` values.
    pub fn row_major(&self) -> Vec<f64> {
        let (n, d) = (self.rows(), self.columns.len());
        let mut out = vec![0.0; n * d];
        for (j, col) in self.columns.iter().enumerate() {
            for (i, v) in col.iter().enumerate() {
                out[i * d + j] = *v;
            }
        }
        out
    }

    /// The rows at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        Dataset {
            names: self.names.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| idx.iter().map(|&i| c[i]).collect())
                .collect(),
            label: self.label.as_ref().map(|l| idx.iter().map(|&i| l[i]).collect()),
            folds: self.folds.as_ref().map(|f| idx.iter().map(|&i| f[i]).collect()),
        }
    }
}

/// How to read a CSV table.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// The label column (classifiers); `None` for clustering.
    pub label: Option<String>,
    /// The label's positive value; found by itself for 0/1, yes/no and true/false.
    pub positive: Option<String>,
    /// A column of fold numbers (0, 1, …) to cross-validate with instead of drawing folds.
    pub fold_col: Option<String>,
    /// Columns to leave out (identifiers, free text).
    pub ignore: Vec<String>,
    /// Most values one-hot encoded per categorical column.
    pub category_cap: usize,
    /// Most cells (rows × columns) kept in memory; larger tables are sampled.
    pub max_cells: usize,
    pub seed: u64,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            label: None,
            positive: None,
            fold_col: None,
            ignore: Vec::new(),
            category_cap: 20,
            max_cells: 50_000_000,
            seed: 7,
        }
    }
}

/// What reading did to the table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Prepared {
    /// Data rows in the file.
    pub rows_read: usize,
    /// Rows kept (all of them unless the table was sampled or rows had no label).
    pub rows_used: usize,
    /// True when the table was over the memory budget and a uniform sample was kept.
    pub sampled: bool,
    /// Rows left out because their label was missing.
    pub rows_without_label: usize,
    /// Numeric columns with missing cells, how many, and the median put in their place.
    pub imputed: Vec<Imputed>,
    /// Categorical columns, their encoded values and how many cells fell outside them.
    pub one_hot: Vec<OneHot>,
    /// The label's positive value and how many rows have it.
    pub positive: Option<String>,
    pub positives: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Imputed {
    pub column: String,
    pub missing: usize,
    pub median: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneHot {
    pub column: String,
    pub values: Vec<String>,
    pub other: usize,
}

/// Why a table could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error("the file does not read as CSV: {0}")]
    Csv(String),
    #[error("the file has no rows")]
    Empty,
    #[error("no column `{name}` in the header (columns: {columns}); check --{flag}")]
    NoColumn {
        name: String,
        flag: &'static str,
        columns: String,
    },
    #[error("line {line}, column `{column}`: `{value}` is not a finite number")]
    NotNumber {
        line: usize,
        column: String,
        value: String,
    },
    #[error(
        "column `{column}` looks like an identifier ({distinct} distinct values in {rows} rows): leave it out with --ignore {column}"
    )]
    Identifier {
        column: String,
        distinct: usize,
        rows: usize,
    },
    #[error("the label `{column}` {problem}")]
    Label { column: String, problem: String },
    #[error("line {line}: fold `{value}` is not a whole number")]
    Fold { line: usize, value: String },
    #[error("no feature columns are left besides the label")]
    NoFeatures,
}

fn is_missing(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "" | "na" | "nan" | "null" | "none" | "?"
    )
}

/// Reads a CSV table with a header row.
pub fn read_csv(input: impl Read, opts: &CsvOptions) -> Result<(Dataset, Prepared), DataError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| DataError::Csv(e.to_string()))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let find = |name: &str, flag: &'static str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::NoColumn {
                name: name.to_owned(),
                flag,
                columns: header.join(", "),
            })
    };
    let label_at = opts.label.as_deref().map(|l| find(l, "label")).transpose()?;
    let fold_at = opts
        .fold_col
        .as_deref()
        .map(|f| find(f, "fold-col"))
        .transpose()?;
    for i in &opts.ignore {
        find(i, "ignore")?;
    }
    let feature_at: Vec<usize> = (0..header.len())
        .filter(|&j| Some(j) != label_at && Some(j) != fold_at && !opts.ignore.contains(&header[j]))
        .collect();
    if feature_at.is_empty() {
        return Err(DataError::NoFeatures);
    }

    // Reservoir sampling keeps memory bounded: at most `cap` records are ever held.
    let cap = (opts.max_cells / header.len().max(1)).max(1);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut kept: Vec<(usize, csv::StringRecord)> = Vec::new();
    let mut seen = 0usize;
    for rec in reader.records() {
        let rec = rec.map_err(|e| DataError::Csv(e.to_string()))?;
        let line = rec.position().map_or(seen + 2, |p| p.line() as usize);
        seen += 1;
        if kept.len() < cap {
            kept.push((line, rec));
        } else {
            let j = rng.random_range(0..seen);
            if j < cap {
                kept[j] = (line, rec);
            }
        }
    }
    if kept.is_empty() {
        return Err(DataError::Empty);
    }
    kept.sort_by_key(|(line, _)| *line);
    let mut prep = Prepared {
        rows_read: seen,
        sampled: seen > kept.len(),
        ..Prepared::default()
    };

    // The label first: rows without one are left out.
    let mut label = None;
    if let (Some(at), Some(name)) = (label_at, opts.label.as_deref()) {
        let before = kept.len();
        kept.retain(|(_, r)| !is_missing(&r[at]));
        prep.rows_without_label = before - kept.len();
        let values: Vec<&str> = kept.iter().map(|(_, r)| r[at].trim()).collect();
        let positive = positive_value(name, &values, opts.positive.as_deref())?;
        let l: Vec<bool> = values.iter().map(|v| *v == positive).collect();
        prep.positives = l.iter().filter(|b| **b).count();
        prep.positive = Some(positive);
        label = Some(l);
    }
    if kept.is_empty() {
        return Err(DataError::Empty);
    }
    let folds = fold_at
        .map(|at| {
            kept.iter()
                .map(|(line, r)| {
                    r[at].trim().parse::<usize>().map_err(|_| DataError::Fold {
                        line: *line,
                        value: r[at].to_owned(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;

    let mut names = Vec::new();
    let mut columns = Vec::new();
    for &j in &feature_at {
        let column = &header[j];
        let cells: Vec<(usize, &str)> = kept.iter().map(|(line, r)| (*line, r[j].trim())).collect();
        let present: Vec<&(usize, &str)> = cells.iter().filter(|(_, c)| !is_missing(c)).collect();
        let numeric = present.iter().filter(|(_, c)| c.parse::<f64>().is_ok()).count();
        if !present.is_empty() && numeric * 100 >= present.len() * 95 {
            let mut values = Vec::with_capacity(cells.len());
            let mut missing = 0;
            for (line, c) in &cells {
                if is_missing(c) {
                    missing += 1;
                    values.push(f64::NAN);
                    continue;
                }
                match c.parse::<f64>() {
                    Ok(v) if v.is_finite() => values.push(v),
                    _ => {
                        return Err(DataError::NotNumber {
                            line: *line,
                            column: column.clone(),
                            value: (*c).to_owned(),
                        });
                    }
                }
            }
            if missing > 0 {
                let median = median(values.iter().copied().filter(|v| !v.is_nan()));
                for v in values.iter_mut().filter(|v| v.is_nan()) {
                    *v = median;
                }
                prep.imputed.push(Imputed {
                    column: column.clone(),
                    missing,
                    median,
                });
            }
            names.push(column.clone());
            columns.push(values);
        } else {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for (_, c) in present.iter() {
                *counts.entry(c).or_default() += 1;
            }
            if counts.len() > opts.category_cap && counts.len() * 2 > kept.len() {
                return Err(DataError::Identifier {
                    column: column.clone(),
                    distinct: counts.len(),
                    rows: kept.len(),
                });
            }
            let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            by_count.truncate(opts.category_cap);
            let mut chosen: Vec<&str> = by_count.iter().map(|(v, _)| *v).collect();
            chosen.sort_unstable();
            let mut other = 0;
            let mut encoded = vec![vec![0.0; cells.len()]; chosen.len()];
            for (i, (_, c)) in cells.iter().enumerate() {
                match chosen.binary_search(c) {
                    Ok(k) => encoded[k][i] = 1.0,
                    Err(_) => other += 1,
                }
            }
            for (v, col) in chosen.iter().zip(encoded) {
                names.push(format!("{column}={v}"));
                columns.push(col);
            }
            prep.one_hot.push(OneHot {
                column: column.clone(),
                values: chosen.iter().map(|v| (*v).to_owned()).collect(),
                other,
            });
        }
    }
    if names.is_empty() {
        return Err(DataError::NoFeatures);
    }
    prep.rows_used = kept.len();
    Ok((
        Dataset {
            names,
            columns,
            label,
            folds,
        },
        prep,
    ))
}

fn positive_value(column: &str, values: &[&str], given: Option<&str>) -> Result<String, DataError> {
    let err = |problem: String| DataError::Label {
        column: column.to_owned(),
        problem,
    };
    let distinct: BTreeMap<&str, usize> = values.iter().fold(BTreeMap::new(), |mut m, v| {
        *m.entry(*v).or_default() += 1;
        m
    });
    if let Some(p) = given
        && !distinct.contains_key(p)
    {
        return Err(err(format!("never has the positive value `{p}`")));
    }
    match distinct.len() {
        0 => return Err(err("has no values".into())),
        1 => {
            return Err(err(format!(
                "has a single class (`{}` in every row): a classifier needs both",
                values[0]
            )));
        }
        2 => {}
        n => {
            return Err(err(format!(
                "has {n} distinct values; a propensity model needs two (yes/no)"
            )));
        }
    }
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    let known = ["1", "yes", "true", "y", "t"];
    let found: Vec<&&str> = distinct
        .keys()
        .filter(|v| known.contains(&v.to_ascii_lowercase().as_str()))
        .collect();
    match found.as_slice() {
        [one] => Ok((**one).to_owned()),
        _ => Err(err(format!(
            "has the values {}: say which is positive with --positive",
            distinct
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

/// The median of finite values (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, opts: &CsvOptions) -> Result<(Dataset, Prepared), DataError> {
        read_csv(text.as_bytes(), opts)
    }

    fn labelled(label: &str) -> CsvOptions {
        CsvOptions {
            label: Some(label.into()),
            ..CsvOptions::default()
        }
    }

    #[test]
    fn numbers_categories_and_missing_cells() {
        let text = "spend,plan,churn\n10,gold,yes\n,silver,no\n30,gold,no\n5,,yes\n";
        let (d, p) = read(text, &labelled("churn")).unwrap();
        assert_eq!(d.names, ["spend", "plan=gold", "plan=silver"]);
        assert_eq!(d.columns[0], [10.0, 10.0, 30.0, 5.0]);
        assert_eq!(d.columns[1], [1.0, 0.0, 1.0, 0.0]);
        assert_eq!(d.label, Some(vec![true, false, false, true]));
        assert_eq!(
            p.imputed,
            [Imputed {
                column: "spend".into(),
                missing: 1,
                median: 10.0
            }]
        );
        assert_eq!(p.one_hot[0].other, 1);
        assert_eq!(p.positive.as_deref(), Some("yes"));
        assert_eq!(p.positives, 2);
    }

    #[test]
    fn bad_tables_are_refused_with_the_place_and_the_remedy() {
        let cases: &[(&str, CsvOptions, &str)] = &[
            ("a,b\n1,x\n", labelled("c"), "no column `c`"),
            ("a,y\n1,1\n2,1\n", labelled("y"), "single class"),
            ("a,y\n1,a\n2,b\n", labelled("y"), "say which is positive"),
            ("a,y\n1,a\n2,b\n3,c\n", labelled("y"), "3 distinct values"),
            ("a,y\n1,1\ninf,0\n", labelled("y"), "line 3, column `a`: `inf`"),
            (
                "a,y\n1,1\n2,0\n3,0\n4,0\n5,0\n6,0\n7,0\n8,0\n9,0\n10,0\n11,0\n12,0\n13,0\n14,0\n15,0\n16,0\n17,0\n18,0\n19,0\n20,0\nx,1\n",
                labelled("y"),
                "line 22, column `a`: `x`",
            ),
            ("y\n1\n0\n", labelled("y"), "no feature columns"),
            (
                "a,y\n1,1\n2,0\n",
                CsvOptions {
                    positive: Some("2".into()),
                    ..labelled("y")
                },
                "never has the positive value",
            ),
        ];
        for (text, opts, want) in cases {
            let e = read(text, opts).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let ids: String = std::iter::once("id,y\n".to_owned())
            .chain((0..40).map(|i| format!("c{i},{}\n", i % 2)))
            .collect();
        let e = read(&ids, &labelled("y")).unwrap_err().to_string();
        assert!(e.contains("--ignore id"), "{e}");
        let ignored = CsvOptions {
            ignore: vec!["id".into()],
            ..labelled("y")
        };
        assert_eq!(read(&ids, &ignored).unwrap_err(), DataError::NoFeatures);
    }

    #[test]
    fn a_table_over_the_budget_is_sampled_and_said_so() {
        let text: String = std::iter::once("a,b\n".to_owned())
            .chain((0..1000).map(|i| format!("{i},{}\n", i * 2)))
            .collect();
        let opts = CsvOptions {
            max_cells: 200,
            ..CsvOptions::default()
        };
        let (d, p) = read(&text, &opts).unwrap();
        assert_eq!((p.rows_read, p.rows_used, p.sampled), (1000, 100, true));
        assert_eq!(d.rows(), 100);
        // Rows stay whole and in file order.
        assert!(d.columns[0].windows(2).all(|w| w[0] < w[1]));
        assert!(d.columns[0].iter().zip(&d.columns[1]).all(|(a, b)| *b == a * 2.0));
    }
}
