//! Documents and saved segments.

use chrono::{DateTime, Utc};

/// A saved segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    pub name: String,
    pub expression: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A versioned content document: a template, a content block or a product. Its body is the
/// JSON the content layer defines; the store keeps the latest version of each.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRecord {
    pub kind: DocumentKind,
    pub name: String,
    /// 1 for the first save, then one more on each save.
    pub version: i64,
    pub body: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

/// The kinds of content documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    Template,
    Block,
    Product,
    Journey,
    Broadcast,
    Experiment,
    /// An outbound webhook endpoint (its secrets included: see docs/integrations.md).
    Webhook,
    /// A model's registry entry (docs/models.md).
    Model,
    /// A trained model's version, with the fitted model (kept apart from the entries, so that
    /// listing models does not read every fitted forest).
    ModelVersion,
    /// A marketer's "bought A → recommend B" rule (docs/recommendations.md).
    RecommendationRule,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Template => "template",
            DocumentKind::Block => "block",
            DocumentKind::Product => "product",
            DocumentKind::Journey => "journey",
            DocumentKind::Broadcast => "broadcast",
            DocumentKind::Experiment => "experiment",
            DocumentKind::Webhook => "webhook",
            DocumentKind::Model => "model",
            DocumentKind::ModelVersion => "model_version",
            DocumentKind::RecommendationRule => "recommendation_rule",
        }
    }
}
