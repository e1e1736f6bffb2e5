//! `[recommendations]`: the learned recommendations' training and weights, and the business
//! filters of the lists in e-mails.

use serde::Deserialize;

/// Learned recommendations and the business filters of the lists in e-mails
/// (docs/recommendations.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RecommendationsSection {
    /// Train again this often (and once at start); 0: only `POST /v1/recommendations/train`.
    pub retrain_every_hours: u32,
    /// At most this many products of one category in a list (0: no cap).
    pub max_per_category: usize,
    /// Only products priced within this band.
    pub price_min: Option<f64>,
    pub price_max: Option<f64>,
    /// Moves products with more margin (their `margin`, 0 to 1) up; 0: off.
    pub margin_boost: f64,
    /// What an event counts for, by name, over the defaults (`"Product Viewed" = 1`,
    /// `"Product Added" = 3`, `"Order Completed" = 5`, …); 0 leaves an event out.
    pub weights: std::collections::BTreeMap<String, f32>,
    /// An interaction counts half after this many days (at least a tenth); 0: no decay.
    pub half_life_days: f64,
}

impl Default for RecommendationsSection {
    fn default() -> Self {
        let f = missive_content::filters::Filters::default();
        Self {
            retrain_every_hours: 24,
            max_per_category: f.max_per_category,
            price_min: f.price_min,
            price_max: f.price_max,
            margin_boost: f.margin_boost,
            weights: Default::default(),
            half_life_days: missive_recs::data::Decay::default().half_life_days.unwrap_or(0.0),
        }
    }
}

impl RecommendationsSection {
    pub fn weights(&self) -> Result<missive_recs::data::EventWeights, String> {
        let overrides: Vec<(String, f32)> = self.weights.iter().map(|(k, v)| (k.clone(), *v)).collect();
        missive_recs::data::EventWeights::default().with(&overrides)
    }

    pub fn decay(&self) -> missive_recs::data::Decay {
        missive_recs::data::Decay {
            half_life_days: (self.half_life_days > 0.0).then_some(self.half_life_days),
            ..Default::default()
        }
    }

    pub fn filters(&self) -> missive_content::filters::Filters {
        missive_content::filters::Filters {
            max_per_category: self.max_per_category,
            price_min: self.price_min,
            price_max: self.price_max,
            margin_boost: self.margin_boost,
        }
    }
}
