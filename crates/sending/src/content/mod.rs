//! Content over the store: templates, content blocks and the product catalogue saved as
//! versioned documents; templates compiled once per version and cached; blocks chosen per
//! recipient (saved-segment membership and segment expressions); recommendations from the
//! catalogue and recent sales; previews and lint for a real profile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use missive_content::ContentError;
use missive_content::blocks::{
    BlockSource, BlockTarget, CompiledBlock, MatrixRow, Selection, decision_matrix,
};
use missive_content::data::{EventData, MessageContext, build_data};
use missive_content::lint::{LintIssue, check_rendered};
use missive_content::recs::{Catalog, Popularity, Product, RecommendationRequest};
use missive_content::template::{CompiledTemplate, RenderOptions, RenderedEmail, TemplateSource};
use missive_core::{Profile, Purpose};
use missive_liquid::{Limits, Object, Value};
use missive_segment::{Facts, Segment};
use missive_store::{DocumentKind, DocumentRecord, Store, StoreError};
use serde::{Deserialize, Serialize};

use missive_engine::profiles::{ProfileKey, find_profile};
use missive_engine::segments::window_events;

mod catalog;
mod compose;
mod preview;
mod recommend;

pub use compose::{MessageLinks, Variation};
pub use recommend::{Ask, Person, PersonEvent, Served, item_of_product};

pub use catalog::event_products;
use catalog::purchased_products;
pub use preview::to_json;

/// Settings for rendering.
#[derive(Debug, Clone)]
pub struct ContentConfig {
    pub limits: Limits,
    /// ISO 4217 code for `money` when an amount names no currency.
    pub currency: String,
    /// Where links in e-mails point (unsubscribe, preferences), e.g. `https://mail.example.com`.
    pub public_url: String,
    /// Track events whose `products` count as sales for best sellers.
    pub purchase_events: Vec<String>,
    /// How far back sales count, and their half-life.
    pub sales_window: TimeDelta,
    pub sales_half_life: TimeDelta,
    /// How long a best-seller ranking is reused before it is computed again.
    pub popularity_refresh: Duration,
    /// Products in `recommendations.for_you` and `recommendations.best_sellers`.
    pub recommendations: usize,
    /// The business filters of every recommendation list in e-mails (the API takes its own).
    pub recommendation_filters: missive_content::filters::Filters,
    /// What each event counts for in the learned recommendations, and how it fades.
    pub recommendation_weights: missive_recs::data::EventWeights,
    pub recommendation_decay: missive_recs::data::Decay,
    /// How often `serve` trains the learned recommendations again (and once at start); `None`:
    /// only when asked (`POST /v1/recommendations/train`).
    pub retrain_every: Option<Duration>,
}

impl Default for ContentConfig {
    fn default() -> Self {
        ContentConfig {
            limits: Limits::default(),
            currency: "USD".into(),
            public_url: "http://localhost:8080".into(),
            purchase_events: vec!["Order Completed".into()],
            sales_window: TimeDelta::days(90),
            sales_half_life: TimeDelta::days(7),
            popularity_refresh: Duration::from_secs(600),
            recommendations: 4,
            recommendation_filters: Default::default(),
            retrain_every: None,
            recommendation_weights: Default::default(),
            recommendation_decay: Default::default(),
        }
    }
}

/// Why a content request failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentServiceError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("block {block:?}: {error}")]
    BlockTarget {
        block: String,
        error: missive_segment::SegmentError,
    },
    #[error("{kind} {name:?} does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("segment {0:?} does not exist; save it first")]
    UnknownSegment(String),
    #[error(
        "experiment {experiment:?} has no variant {variant:?}: create the experiment (or fix the name) first"
    )]
    UnknownVariant { experiment: String, variant: String },
    #[error("no profile matches {0:?}")]
    ProfileNotFound(String),
    #[error("recommendations are not trained yet: POST /v1/recommendations/train, or wait for the schedule")]
    NotTrained,
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored {0} is unreadable: {1}")]
    Corrupt(&'static str, String),
    #[error(transparent)]
    Engine(#[from] Arc<missive_engine::EngineError>),
}

/// A template as stored: the source and its class.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredTemplate {
    #[serde(flatten)]
    pub source: TemplateSource,
    /// Marketing e-mails need consent and an unsubscribe link; transactional ones do not.
    #[serde(default = "marketing_default")]
    pub marketing: bool,
}

fn marketing_default() -> bool {
    true
}

/// A product that was not saved, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RejectedProduct {
    pub index: usize,
    pub id: Option<String>,
    pub reason: String,
}

/// The event a preview renders with.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewEvent {
    pub name: String,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
}

/// `journey` for a preview: the given events (else the event alone) and their cart, as a
/// journey's message carries them.
pub(crate) fn preview_journey(
    events: Option<&[PreviewEvent]>,
    event: Option<&PreviewEvent>,
) -> serde_json::Value {
    let as_json = |e: &PreviewEvent| serde_json::json!({"name": e.name, "properties": e.properties, "timestamp": e.timestamp});
    let events: Vec<serde_json::Value> = match events {
        Some(list) => list.iter().map(as_json).collect(),
        None => event.map(as_json).into_iter().collect(),
    };
    missive_content::cart::journey_variable("preview", "", events)
}

/// The experiment a send belongs to.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(as = PreviewExperiment)]
pub struct Experiment {
    pub name: String,
    pub variant: String,
}

/// What a preview or lint renders with besides the profile.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct PreviewOptions {
    /// The triggering event; default for previews: the profile's latest track event.
    #[serde(default)]
    pub event: Option<PreviewEvent>,
    /// The events a journey instance saw, oldest first, for `journey.events` and `journey.cart`;
    /// default: the event alone.
    #[serde(default)]
    pub journey_events: Option<Vec<PreviewEvent>>,
    #[serde(default)]
    pub experiment: Option<Experiment>,
    /// What "now" is for the render (`'now' | date`, windows, recommendations), for
    /// reproducible previews and tests; default: the clock.
    #[serde(default)]
    pub now: Option<DateTime<Utc>>,
}

/// A rendered preview with what went into it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = TemplatePreview)]
pub struct Preview {
    pub template: String,
    pub version: i64,
    pub profile_id: String,
    pub email: RenderedEmail,
    /// Each variable the template reads, with the value it had for this profile (absent ones
    /// are null).
    pub data_used: BTreeMap<String, serde_json::Value>,
    pub lint: Vec<LintIssue>,
}

/// How long cached blocks and catalogue are trusted before they are read again, so that
/// changes made by another process (the CLI, a second server) show up.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// How long a compiled template's version is trusted before it is compared with the store.
const TEMPLATE_RECHECK: Duration = Duration::from_secs(1);

/// The marketer's recommendation rules, by name.
pub type NamedRules = Vec<(String, missive_content::rules::Rule)>;

struct Cached {
    /// Compiled templates by name: (version, compiled, marketing, when the version was last
    /// checked against the store).
    templates: HashMap<String, (i64, Arc<CompiledTemplate>, bool, Instant)>,
    /// Bumped by every change of blocks or products, so that a load that started before a
    /// change cannot put its stale result back into the cache.
    generation: u64,
    blocks: Option<(Instant, Arc<BlockSet>)>,
    catalog: Option<(Instant, Arc<Catalog>)>,
    popularity: Option<(Instant, Arc<Popularity>)>,
    rules: Option<(Instant, Arc<NamedRules>)>,
}

/// The sales ranking, brought up to date incrementally from the event log.
struct SalesState {
    popularity: Popularity,
    through_seq: i64,
}

/// Compiled blocks with their compiled expression targets.
pub struct BlockSet {
    pub blocks: Vec<Arc<CompiledBlock>>,
    expressions: HashMap<String, Segment>,
    /// Stored blocks that no longer compile (a segment they read was removed, …): left out,
    /// and reported by lint.
    pub broken: Vec<(String, String)>,
    /// The recommendation lists any block reads.
    pub recs_wanted: missive_content::data::RecsWanted,
}

/// Templates, blocks and catalogue: saved, cached, rendered.
#[derive(Clone)]
pub struct ContentService {
    store: Store,
    config: Arc<ContentConfig>,
    cached: Arc<Mutex<Cached>>,
    /// One recomputation of best sellers at a time; the others wait for its result.
    sales: Arc<tokio::sync::Mutex<Option<SalesState>>>,
    /// The learned recommendations served, trained from the store.
    recs: missive_engine::recs::RecsService,
}

const PAGE: u32 = 1_000;

fn check_name(name: &str) -> Result<(), ContentServiceError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ContentServiceError::InvalidName("1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ContentServiceError::InvalidName(
            "letters, digits, '-' and '_' only",
        ));
    }
    Ok(())
}

impl ContentService {
    /// The content service of an engine's store.
    pub fn for_engine(engine: &missive_engine::Engine, config: ContentConfig) -> Self {
        Self::new(engine.store().clone(), config)
    }

    pub fn new(store: Store, config: ContentConfig) -> Self {
        ContentService {
            store,
            config: Arc::new(config),
            cached: Arc::new(Mutex::new(Cached {
                templates: HashMap::new(),
                generation: 0,
                blocks: None,
                catalog: None,
                popularity: None,
                rules: None,
            })),
            sales: Arc::new(tokio::sync::Mutex::new(None)),
            recs: Default::default(),
        }
    }

    /// Computes best sellers in the background, so the first preview does not wait for it.
    pub fn warm_up(&self, now: DateTime<Utc>) {
        let service = self.clone();
        tokio::spawn(async move {
            if let Err(e) = service.popularity(now).await {
                tracing::warn!(error = %e, "best sellers could not be computed at start-up");
            }
        });
    }

    fn invalidate(&self) {
        let mut c = self.cache();
        c.generation += 1;
        c.blocks = None;
        c.catalog = None;
        c.rules = None;
    }

    pub fn config(&self) -> &ContentConfig {
        &self.config
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cached> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // --- templates ------------------------------------------------------------------------

    /// Compiles and saves a template (a new version); returns the version.
    pub async fn save_template(
        &self,
        name: &str,
        template: StoredTemplate,
        now: DateTime<Utc>,
    ) -> Result<i64, ContentServiceError> {
        check_name(name)?;
        let source = template.source.clone();
        let compiled = tokio::task::spawn_blocking(move || CompiledTemplate::compile(&source))
            .await
            .map_err(|e| ContentServiceError::Corrupt("compile task", e.to_string()))??;
        let body = serde_json::to_value(&template)
            .map_err(|e| ContentServiceError::Corrupt("template", e.to_string()))?;
        let version = self.put_one(DocumentKind::Template, name, body, now).await?;
        self.cache().templates.insert(
            name.to_string(),
            (version, Arc::new(compiled), template.marketing, Instant::now()),
        );
        Ok(version)
    }

    pub async fn template(
        &self,
        name: &str,
    ) -> Result<(DocumentRecord, StoredTemplate), ContentServiceError> {
        let doc = self
            .store
            .documents()
            .get_document(DocumentKind::Template, name)
            .await?
            .ok_or_else(|| ContentServiceError::NotFound {
                kind: "template",
                name: name.to_string(),
            })?;
        let t: StoredTemplate = serde_json::from_value(doc.body.clone())
            .map_err(|e| ContentServiceError::Corrupt("template", e.to_string()))?;
        Ok((doc, t))
    }

    /// The compiled current version of a template (compiled once per version).
    pub async fn compiled_template(
        &self,
        name: &str,
    ) -> Result<(i64, Arc<CompiledTemplate>, bool), ContentServiceError> {
        // A send reads its template for every message: trust a version checked within the
        // last second rather than read and parse the stored source each time.
        if let Some((v, c, m, checked)) = self.cache().templates.get(name)
            && checked.elapsed() < TEMPLATE_RECHECK
        {
            return Ok((*v, c.clone(), *m));
        }
        let (doc, stored) = self.template(name).await?;
        if let Some(entry) = self.cache().templates.get_mut(name)
            && entry.0 == doc.version
        {
            entry.3 = Instant::now();
            return Ok((entry.0, entry.1.clone(), entry.2));
        }
        let compiled = Arc::new(CompiledTemplate::compile(&stored.source)?);
        self.cache().templates.insert(
            name.to_string(),
            (doc.version, compiled.clone(), stored.marketing, Instant::now()),
        );
        Ok((doc.version, compiled, stored.marketing))
    }

    pub async fn list_templates(&self) -> Result<Vec<DocumentRecord>, ContentServiceError> {
        self.list_all(DocumentKind::Template).await
    }

    pub async fn delete_template(&self, name: &str) -> Result<(), ContentServiceError> {
        if !self
            .store
            .documents()
            .delete_document(DocumentKind::Template, name)
            .await?
        {
            return Err(ContentServiceError::NotFound {
                kind: "template",
                name: name.to_string(),
            });
        }
        self.cache().templates.remove(name);
        Ok(())
    }

    // --- blocks ---------------------------------------------------------------------------

    /// Checks and saves a content block; returns its version.
    pub async fn save_block(
        &self,
        name: &str,
        block: BlockSource,
        now: DateTime<Utc>,
    ) -> Result<i64, ContentServiceError> {
        check_name(name)?;
        CompiledBlock::compile(name, block.clone())?;
        if let BlockTarget::Segment(segment) = &block.target
            && !self
                .store
                .documents()
                .list_segments()
                .await?
                .iter()
                .any(|s| s.name == *segment)
        {
            return Err(ContentServiceError::UnknownSegment(segment.clone()));
        }
        if let BlockTarget::Variant { experiment, variant } = &block.target {
            let known = match crate::experiments::Experiments::new(self.store.clone())
                .get(experiment)
                .await
            {
                Ok(e) => e.variant(variant).is_some(),
                Err(crate::experiments::ExperimentError::Store(e)) => return Err(e.into()),
                Err(_) => false,
            };
            if !known {
                return Err(ContentServiceError::UnknownVariant {
                    experiment: experiment.clone(),
                    variant: variant.clone(),
                });
            }
        }
        if let BlockTarget::Expression(e) = &block.target {
            let schema = missive_engine::schema::segment_schema(&self.store).await?;
            Segment::compile(e, &schema).map_err(|error| ContentServiceError::BlockTarget {
                block: name.to_string(),
                error,
            })?;
        }
        let body =
            serde_json::to_value(&block).map_err(|e| ContentServiceError::Corrupt("block", e.to_string()))?;
        let version = self.put_one(DocumentKind::Block, name, body, now).await?;
        self.invalidate();
        Ok(version)
    }

    pub async fn delete_block(&self, name: &str) -> Result<(), ContentServiceError> {
        if !self
            .store
            .documents()
            .delete_document(DocumentKind::Block, name)
            .await?
        {
            return Err(ContentServiceError::NotFound {
                kind: "block",
                name: name.to_string(),
            });
        }
        self.invalidate();
        Ok(())
    }

    pub async fn block_document(&self, name: &str) -> Result<DocumentRecord, ContentServiceError> {
        self.store
            .documents()
            .get_document(DocumentKind::Block, name)
            .await?
            .ok_or_else(|| ContentServiceError::NotFound {
                kind: "block",
                name: name.to_string(),
            })
    }

    pub async fn list_blocks(&self) -> Result<Vec<DocumentRecord>, ContentServiceError> {
        self.list_all(DocumentKind::Block).await
    }

    /// Every block, compiled.
    pub async fn blocks(&self) -> Result<Arc<BlockSet>, ContentServiceError> {
        let generation = {
            let c = self.cache();
            if let Some((at, b)) = &c.blocks
                && at.elapsed() < CACHE_TTL
            {
                return Ok(b.clone());
            }
            c.generation
        };
        // Saved targets were checked when saved (see `definitions` of journeys).
        let schema = missive_segment::Schema::default();
        let mut blocks = Vec::new();
        let mut expressions = HashMap::new();
        let mut broken = Vec::new();
        for doc in self.list_all(DocumentKind::Block).await? {
            let name = doc.name.clone();
            let compiled = serde_json::from_value::<BlockSource>(doc.body)
                .map_err(|e| e.to_string())
                .and_then(|source| {
                    if let BlockTarget::Expression(e) = &source.target {
                        let segment = Segment::compile(e, &schema).map_err(|e| e.to_string())?;
                        expressions.insert(name.clone(), segment);
                    }
                    CompiledBlock::compile(&name, source).map_err(|e| e.to_string())
                });
            match compiled {
                Ok(b) => blocks.push(Arc::new(b)),
                Err(error) => {
                    tracing::warn!(block = %name, error = %error, "stored block left out: it no longer compiles");
                    broken.push((name, error));
                }
            }
        }
        let recs_wanted = missive_content::data::RecsWanted::of(
            blocks
                .iter()
                .flat_map(|b| b.html.variables().into_iter().chain(b.text.variables()))
                .collect::<BTreeSet<_>>()
                .iter()
                .map(String::as_str),
        );
        let set = Arc::new(BlockSet {
            blocks,
            expressions,
            broken,
            recs_wanted,
        });
        let mut c = self.cache();
        if c.generation == generation {
            c.blocks = Some((Instant::now(), set.clone()));
        }
        Ok(set)
    }

    /// For one slot, which block each saved segment's members get.
    pub async fn block_matrix(
        &self,
        slot: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<MatrixRow>, ContentServiceError> {
        let blocks = self.blocks().await?;
        let segments: Vec<String> = self
            .store
            .documents()
            .list_segments()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        Ok(decision_matrix(slot, &blocks.blocks, &segments, now))
    }

    /// The blocks a profile gets for `slots`.
    pub async fn choose_blocks(
        &self,
        profile: &Profile,
        slots: &[String],
        data: &Object,
        now: DateTime<Utc>,
    ) -> Result<Selection, ContentServiceError> {
        let set = self.blocks().await?;
        // Without personalization consent only blocks for everyone are chosen.
        let personalized = profile.consents(Purpose::Personalization);
        // Expression targets are evaluated up front (they may read stored events); the
        // choice itself is then a pure function.
        let mut matched_expressions: BTreeSet<String> = BTreeSet::new();
        for (name, segment) in set.expressions.iter().filter(|_| personalized) {
            let events = window_events(&self.store, profile, segment, now).await?;
            let facts = Facts::new(
                profile,
                &events,
                &profile.segments.segments,
                profile.model_scores(),
            );
            if segment.evaluate(&facts, now).member {
                matched_expressions.insert(name.clone());
            }
        }
        let expression_of: HashMap<&str, &str> = set
            .blocks
            .iter()
            .filter_map(|b| match &b.source.target {
                BlockTarget::Expression(e) => Some((e.as_str(), b.name.as_str())),
                _ => None,
            })
            .collect();
        Ok(Selection::choose(
            slots,
            &set.blocks,
            now,
            data,
            |target| match target {
                BlockTarget::Everyone => true,
                // Chosen by the experiment's random assignment, not by personal data.
                BlockTarget::Variant { .. } => target.variant_matches(data),
                _ if !personalized => false,
                BlockTarget::Segment(s) => profile.segments.segments.contains(s),
                BlockTarget::Expression(e) => expression_of
                    .get(e.as_str())
                    .is_some_and(|name| matched_expressions.contains(*name)),
            },
        ))
    }

    // --- catalogue and recommendations -----------------------------------------------------

    // --- rendering ------------------------------------------------------------------------

    async fn put_one(
        &self,
        kind: DocumentKind,
        name: &str,
        body: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<i64, ContentServiceError> {
        let versions = self
            .store
            .documents()
            .put_documents(vec![DocumentRecord {
                kind,
                name: name.to_string(),
                version: 0,
                body,
                updated_at: now,
            }])
            .await?;
        versions.first().copied().ok_or(ContentServiceError::Corrupt(
            "document version",
            "none returned".into(),
        ))
    }

    async fn list_all(&self, kind: DocumentKind) -> Result<Vec<DocumentRecord>, ContentServiceError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.documents().list_documents(kind, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            let full = page.len() == PAGE as usize;
            all.extend(page);
            if !full {
                break;
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn purchased_products_read_segment_ecommerce_shapes() {
        let order =
            json!({"products": [{"product_id": "a", "quantity": 2}, {"sku": "b"}, {"name": "no id"}]});
        assert_eq!(
            purchased_products(&order),
            vec![("a".to_string(), 2.0), ("b".to_string(), 1.0)]
        );
        let added = json!({"product_id": "c", "price": 10});
        assert_eq!(purchased_products(&added), vec![("c".to_string(), 1.0)]);
    }
}
