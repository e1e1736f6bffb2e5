//! On interactions with planted taste groups, every learning strategy beats best sellers on
//! NDCG@10, and the factorisation recovers the groups: an item's nearest items by factors are
//! of its group.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use missive_recs::data::Decay;
use missive_recs::eval::{self, Split};
use missive_recs::strategy::{Settings, Strategy, Trained};
use missive_recs::synthetic::{Planted, group_of_item};

#[test]
fn learners_beat_best_sellers_and_factors_recover_the_groups() {
    let planted = Planted::default();
    let (data, items) = planted.generate();
    let h = eval::split(&data, Split::LeaveLastN(2));
    // 16 factors for 8 groups: with 64, the rarest items' factors fit noise (0.80 of
    // neighbours in the group instead of 0.99), though recommendations are as good.
    let settings = Settings {
        decay: Decay::NONE,
        als: missive_recs::als::AlsParams {
            factors: 16,
            ..Default::default()
        },
        ..Settings::default()
    };
    let t = Trained::fit(&h.train, &items, &settings, &Strategy::ALL, |_| {});
    let ndcg = |s: Strategy| {
        let lists = eval::lists(&t, s, &h, Decay::NONE, 10, true);
        eval::score_lists(&lists, &h, 10).ndcg
    };
    let popular = ndcg(Strategy::Popular);
    for s in [
        Strategy::Item2item,
        Strategy::Als,
        Strategy::Content,
        Strategy::Hybrid,
    ] {
        let v = ndcg(s);
        assert!(
            v > popular * 1.2,
            "{s}: NDCG@10 {v:.4} against best sellers' {popular:.4}"
        );
    }
    // Each item's 10 nearest items by factor cosine: mostly of its own group.
    let als = t.als.as_ref().unwrap();
    let unit: Vec<Vec<f32>> = (0..als.items() as u32)
        .map(|i| {
            let v = als.item(i);
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter().map(|x| x / n).collect()
        })
        .collect();
    let (mut same, mut total) = (0, 0);
    for (i, vi) in unit.iter().enumerate() {
        let mut near: Vec<(usize, f32)> = unit
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, vj)| (j, vi.iter().zip(vj).map(|(a, b)| a * b).sum()))
            .collect();
        near.sort_by(|a, b| b.1.total_cmp(&a.1));
        let gi = group_of_item(data.items.name(i as u32)[1..].parse().unwrap(), planted.groups);
        for (j, _) in near.iter().take(10) {
            let gj = group_of_item(data.items.name(*j as u32)[1..].parse().unwrap(), planted.groups);
            same += usize::from(gi == gj);
            total += 1;
        }
    }
    let share = same as f64 / total as f64;
    assert!(share > 0.95, "{share:.3} of the nearest items share the group");
}
