//! The known names nearest to an unknown one, for "did you mean" hints.

/// Similarity (0 to 1) a known name needs to be suggested.
const THRESHOLD: f64 = 0.6;
/// How much less like the name than the best a suggestion may be.
const CLOSE: f64 = 0.1;
/// Most names suggested.
const MOST: usize = 3;

/// The known names most like `name`, best first: a different case counts as the same name,
/// then by Damerau-Levenshtein distance relative to length (a typo, a swapped pair).
pub(crate) fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(f64, &str)> = known
        .map(|k| {
            (
                strsim::normalized_damerau_levenshtein(&lower, &k.to_lowercase()),
                k,
            )
        })
        .filter(|(score, _)| *score >= THRESHOLD)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    // A clear winner stands alone: "Product Aded" suggests "Product Added", not also
    // "Product Removed".
    let best = scored.first().map_or(0.0, |s| s.0);
    scored
        .into_iter()
        .take_while(|(score, _)| *score >= best - CLOSE)
        .take(MOST)
        .map(|(_, k)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos_and_other_cases_and_nothing_far() {
        let known = [
            "age",
            "city",
            "country",
            "Order Completed",
            "Product Added",
            "Product Removed",
        ];
        let cases: &[(&str, &[&str])] = &[
            ("agee", &["age"]),
            ("ctiy", &["city"]),
            ("order completed", &["Order Completed"]),
            ("Product Aded", &["Product Added"]),
            ("zzz", &[]),
            ("counrty", &["country"]),
        ];
        for (name, want) in cases {
            assert_eq!(&nearest(name, known.iter().copied()), want, "{name}");
        }
    }
}
