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

use crate::profiles::{ProfileKey, find_profile};
use crate::segments::{infer_schema, window_events};

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
    #[error("no profile matches {0:?}")]
    ProfileNotFound(String),
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored {0} is unreadable: {1}")]
    Corrupt(&'static str, String),
    #[error(transparent)]
    Engine(#[from] Arc<crate::EngineError>),
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
#[derive(Debug, Clone, Serialize)]
pub struct RejectedProduct {
    pub index: usize,
    pub id: Option<String>,
    pub reason: String,
}

/// The event a preview renders with.
#[derive(Debug, Clone, Deserialize)]
pub struct PreviewEvent {
    pub name: String,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
}

/// The experiment a send belongs to.
#[derive(Debug, Clone, Deserialize)]
pub struct Experiment {
    pub name: String,
    pub variant: String,
}

/// What a preview or lint renders with besides the profile.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PreviewOptions {
    /// The triggering event; default for previews: the profile's latest track event.
    #[serde(default)]
    pub event: Option<PreviewEvent>,
    #[serde(default)]
    pub experiment: Option<Experiment>,
    /// What "now" is for the render (`'now' | date`, windows, recommendations), for
    /// reproducible previews and tests; default: the clock.
    #[serde(default)]
    pub now: Option<DateTime<Utc>>,
}

/// A rendered preview with what went into it.
#[derive(Debug, Clone, Serialize)]
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
}

/// Templates, blocks and catalogue: saved, cached, rendered.
#[derive(Clone)]
pub struct ContentService {
    store: Arc<dyn Store>,
    config: Arc<ContentConfig>,
    cached: Arc<Mutex<Cached>>,
    /// One recomputation of best sellers at a time; the others wait for its result.
    sales: Arc<tokio::sync::Mutex<Option<SalesState>>>,
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

fn jiff_time(t: DateTime<Utc>) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(t.timestamp_micros()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

impl ContentService {
    pub fn new(store: Arc<dyn Store>, config: ContentConfig) -> Self {
        ContentService {
            store,
            config: Arc::new(config),
            cached: Arc::new(Mutex::new(Cached {
                templates: HashMap::new(),
                generation: 0,
                blocks: None,
                catalog: None,
                popularity: None,
            })),
            sales: Arc::new(tokio::sync::Mutex::new(None)),
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
        if !self.store.delete_document(DocumentKind::Template, name).await? {
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
                .list_segments()
                .await?
                .iter()
                .any(|s| s.name == *segment)
        {
            return Err(ContentServiceError::UnknownSegment(segment.clone()));
        }
        if let BlockTarget::Expression(e) = &block.target {
            Segment::compile(e, &infer_schema(&*self.store).await?).map_err(|error| {
                ContentServiceError::BlockTarget {
                    block: name.to_string(),
                    error,
                }
            })?;
        }
        let body =
            serde_json::to_value(&block).map_err(|e| ContentServiceError::Corrupt("block", e.to_string()))?;
        let version = self.put_one(DocumentKind::Block, name, body, now).await?;
        self.invalidate();
        Ok(version)
    }

    pub async fn delete_block(&self, name: &str) -> Result<(), ContentServiceError> {
        if !self.store.delete_document(DocumentKind::Block, name).await? {
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
        let schema = infer_schema(&*self.store).await?;
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
        let set = Arc::new(BlockSet {
            blocks,
            expressions,
            broken,
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
            .list_segments()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        Ok(decision_matrix(slot, &blocks.blocks, &segments, jiff_time(now)))
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
            let events = window_events(&*self.store, profile, segment, now).await?;
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
            jiff_time(now),
            data,
            |target| match target {
                BlockTarget::Everyone => true,
                _ if !personalized => false,
                BlockTarget::Segment(s) => profile.segments.segments.contains(s),
                BlockTarget::Expression(e) => expression_of
                    .get(e.as_str())
                    .is_some_and(|name| matched_expressions.contains(*name)),
            },
        ))
    }

    // --- catalogue and recommendations -----------------------------------------------------

    /// Saves products (creating or replacing each by id). Invalid ones are listed and the
    /// rest saved.
    pub async fn put_products(
        &self,
        products: Vec<serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(usize, Vec<RejectedProduct>), ContentServiceError> {
        let mut docs = Vec::with_capacity(products.len());
        let mut rejected = Vec::new();
        for (index, raw) in products.into_iter().enumerate() {
            let id = raw.get("id").and_then(|v| v.as_str()).map(str::to_string);
            let parsed = serde_json::from_value::<Product>(raw)
                .map_err(|e| e.to_string())
                .and_then(|p| p.validate().map(|()| p).map_err(|e| e.to_string()));
            match parsed {
                Ok(p) => {
                    let body = serde_json::to_value(&p)
                        .map_err(|e| ContentServiceError::Corrupt("product", e.to_string()))?;
                    docs.push(DocumentRecord {
                        kind: DocumentKind::Product,
                        name: p.id,
                        version: 0,
                        body,
                        updated_at: now,
                    });
                }
                Err(reason) => rejected.push(RejectedProduct { index, id, reason }),
            }
        }
        let saved = docs.len();
        if !docs.is_empty() {
            self.store.put_documents(docs).await?;
            self.invalidate();
        }
        Ok((saved, rejected))
    }

    pub async fn product(&self, id: &str) -> Result<Product, ContentServiceError> {
        let doc = self
            .store
            .get_document(DocumentKind::Product, id)
            .await?
            .ok_or_else(|| ContentServiceError::NotFound {
                kind: "product",
                name: id.to_string(),
            })?;
        serde_json::from_value(doc.body).map_err(|e| ContentServiceError::Corrupt("product", e.to_string()))
    }

    pub async fn list_products(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Product>, ContentServiceError> {
        self.store
            .list_documents(DocumentKind::Product, after, limit)
            .await?
            .into_iter()
            .map(|d| {
                serde_json::from_value(d.body)
                    .map_err(|e| ContentServiceError::Corrupt("product", e.to_string()))
            })
            .collect()
    }

    pub async fn delete_product(&self, id: &str) -> Result<(), ContentServiceError> {
        if !self.store.delete_document(DocumentKind::Product, id).await? {
            return Err(ContentServiceError::NotFound {
                kind: "product",
                name: id.to_string(),
            });
        }
        self.invalidate();
        Ok(())
    }

    pub async fn catalog(&self) -> Result<Arc<Catalog>, ContentServiceError> {
        let generation = {
            let c = self.cache();
            if let Some((at, catalog)) = &c.catalog
                && at.elapsed() < CACHE_TTL
            {
                return Ok(catalog.clone());
            }
            c.generation
        };
        let mut products = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_products(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            products.extend(page);
        }
        let catalog = Arc::new(Catalog::new(products));
        let mut c = self.cache();
        if c.generation == generation {
            c.catalog = Some((Instant::now(), catalog.clone()));
        }
        Ok(catalog)
    }

    /// Recent sales, ranked. Brought up to date from the events committed since the last
    /// time, at most once per refresh period; one computation at a time.
    pub async fn popularity(&self, now: DateTime<Utc>) -> Result<Arc<Popularity>, ContentServiceError> {
        let fresh = |c: &Cached| {
            c.popularity
                .as_ref()
                .filter(|(at, _)| at.elapsed() < self.config.popularity_refresh)
                .map(|(_, p)| p.clone())
        };
        if let Some(p) = fresh(&self.cache()) {
            return Ok(p);
        }
        let mut sales = self.sales.lock().await;
        // Someone else may have finished while this waited.
        if let Some(p) = fresh(&self.cache()) {
            return Ok(p);
        }
        let half_life = jiff::SignedDuration::from_secs(self.config.sales_half_life.num_seconds());
        let since = now - self.config.sales_window;
        let state = sales.get_or_insert_with(|| SalesState {
            popularity: Popularity::new(jiff_time(since), half_life),
            through_seq: 0,
        });
        let mut popularity = state.popularity.clone();
        let mut through = state.through_seq;
        let mut new_sales = Vec::new();
        loop {
            let page = self
                .store
                .track_events_since(self.config.purchase_events.clone(), since, through, 5_000)
                .await?;
            let Some(last) = page.last() else { break };
            through = last.seq;
            for e in &page {
                let at = jiff_time(e.timestamp);
                for (id, quantity) in purchased_products(&e.body["properties"]) {
                    new_sales.push((id, quantity, at));
                }
            }
        }
        popularity.advance(jiff_time(now));
        for (id, quantity, at) in new_sales {
            popularity.add(id, quantity, at);
        }
        popularity.rank();
        *state = SalesState {
            popularity: popularity.clone(),
            through_seq: through,
        };
        let popularity = Arc::new(popularity);
        self.cache().popularity = Some((Instant::now(), popularity.clone()));
        Ok(popularity)
    }

    /// Forgets the best-seller ranking so the next request recomputes it.
    pub fn refresh_popularity(&self) {
        self.cache().popularity = None;
    }

    // --- rendering ------------------------------------------------------------------------

    /// The template variables for `profile`, with recommendations.
    pub async fn data_for(
        &self,
        profile: &Profile,
        event: Option<&PreviewEvent>,
        experiment: Option<&Experiment>,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Object, ContentServiceError> {
        let catalog = self.catalog().await?;
        let popularity = self.popularity(now).await?;
        let seeds: Vec<String> = event.map(|e| event_products(&e.properties)).unwrap_or_default();
        let owned: BTreeSet<String> = profile
            .history
            .iter()
            .filter(|h| self.config.purchase_events.contains(&h.name))
            .flat_map(|h| purchased_products(&serde_json::Value::Object(h.properties.clone())))
            .map(|(id, _)| id)
            .collect();
        let limit = self.config.recommendations;
        let personalized = profile.consents(Purpose::Personalization);
        let best_sellers = catalog.best_sellers(&popularity, &BTreeSet::new(), limit);
        let for_you = if personalized {
            catalog.recommend(
                &popularity,
                &RecommendationRequest {
                    seeds: &seeds,
                    exclude: &owned,
                    limit,
                },
            )
        } else {
            best_sellers.clone()
        };
        let links = links(&self.config.public_url, profile, message_id);
        let ctx = MessageContext {
            event: event.map(|e| EventData {
                name: &e.name,
                properties: &e.properties,
                timestamp: e.timestamp.unwrap_or(now),
            }),
            recommendations_for_you: for_you,
            best_sellers,
            experiment: experiment.map(|x| (x.name.as_str(), x.variant.as_str())),
            unsubscribe_url: &links.0,
            preferences_url: &links.1,
            message_id,
            personalized,
        };
        Ok(build_data(profile, &ctx, now))
    }

    /// Renders on the blocking pool (a render may take up to its time budget), listing the
    /// undefined variables; gives the data back.
    pub async fn render_blocking(
        &self,
        compiled: Arc<CompiledTemplate>,
        data: Object,
        selection: Selection,
        time_zone: jiff::tz::TimeZone,
        now: DateTime<Utc>,
    ) -> Result<(RenderedEmail, BTreeSet<String>, Object), ContentServiceError> {
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let opts = RenderOptions {
                limits: config.limits,
                time_zone,
                now: jiff_time(now),
                currency: &config.currency,
            };
            compiled
                .render_with_diagnostics(&data, &selection, &opts)
                .map(|(email, undefined)| (email, undefined, data))
        })
        .await
        .map_err(|e| ContentServiceError::Corrupt("render task", e.to_string()))?
        .map_err(ContentServiceError::from)
    }

    /// Lints a template (not saved) rendered for a profile, or for a profile with no data.
    pub async fn lint(
        &self,
        engine: &crate::Engine,
        source: TemplateSource,
        marketing: bool,
        profile_key: Option<&str>,
        options: PreviewOptions,
    ) -> Result<Vec<LintIssue>, ContentServiceError> {
        let compiled = match tokio::task::spawn_blocking(move || CompiledTemplate::compile(&source))
            .await
            .map_err(|e| ContentServiceError::Corrupt("compile task", e.to_string()))?
        {
            Ok(c) => Arc::new(c),
            Err(e) => return Ok(vec![missive_content::lint::compile_issue(&e)]),
        };
        let now = options.now.unwrap_or_else(|| engine.clock().now());
        let profile = match profile_key {
            Some(key) => self.find(engine, key).await?,
            None => Profile::new(missive_core::ProfileId::generate(), now),
        };
        let data = self
            .data_for(
                &profile,
                options.event.as_ref(),
                options.experiment.as_ref(),
                "lint",
                now,
            )
            .await?;
        let selection = self.choose_blocks(&profile, &compiled.slots, &data, now).await?;
        let zone = missive_core::zone::time_zone_of(&profile, &engine.config().default_time_zone);
        let mut issues = match self.render_blocking(compiled, data, selection, zone, now).await {
            Ok((email, undefined, data)) => check_rendered(&email, &undefined, &data, marketing),
            Err(ContentServiceError::Content(e)) => vec![missive_content::lint::compile_issue(&e)],
            Err(e) => return Err(e),
        };
        issues.extend(self.broken_block_issues().await?);
        Ok(issues)
    }

    async fn broken_block_issues(&self) -> Result<Vec<LintIssue>, ContentServiceError> {
        Ok(self
            .blocks()
            .await?
            .broken
            .iter()
            .map(|(name, error)| LintIssue {
                severity: missive_content::lint::Severity::Warning,
                code: "broken_block",
                message: format!("block {name:?} is left out of every e-mail: {error}"),
            })
            .collect())
    }

    async fn find(&self, engine: &crate::Engine, key: &str) -> Result<Profile, ContentServiceError> {
        engine.sync().await?;
        find_profile(&*self.store, &ProfileKey::parse(key), engine.config().history_len)
            .await?
            .ok_or_else(|| ContentServiceError::ProfileNotFound(key.to_string()))
    }

    /// Renders a saved template for a real profile, with the data used and lint.
    pub async fn preview(
        &self,
        engine: &crate::Engine,
        template: &str,
        key: &str,
        options: PreviewOptions,
    ) -> Result<Preview, ContentServiceError> {
        let profile = self.find(engine, key).await?;
        let now = options.now.unwrap_or_else(|| engine.clock().now());
        let (version, compiled, marketing) = self.compiled_template(template).await?;
        let event = options.event.or_else(|| latest_track_event(&profile));
        let data = self
            .data_for(
                &profile,
                event.as_ref(),
                options.experiment.as_ref(),
                "preview",
                now,
            )
            .await?;
        let selection = self.choose_blocks(&profile, &compiled.slots, &data, now).await?;
        let mut paths = compiled.variables();
        for slot in &compiled.slots {
            if let Some(b) = selection.chosen(slot) {
                paths.extend(b.html.variables());
            }
        }
        let zone = missive_core::zone::time_zone_of(&profile, &engine.config().default_time_zone);
        let (email, undefined, data) = self.render_blocking(compiled, data, selection, zone, now).await?;
        let mut lint = check_rendered(&email, &undefined, &data, marketing);
        lint.extend(self.broken_block_issues().await?);
        let data_used = paths
            .into_iter()
            .map(|p| (p.clone(), lookup_json(&data, &p)))
            .collect();
        Ok(Preview {
            template: template.to_string(),
            version,
            profile_id: profile.id.to_string(),
            email,
            data_used,
            lint,
        })
    }

    async fn put_one(
        &self,
        kind: DocumentKind,
        name: &str,
        body: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<i64, ContentServiceError> {
        let versions = self
            .store
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
            let page = self.store.list_documents(kind, after, PAGE).await?;
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

/// The profile's most recent track event, as the default `event` of a preview.
fn latest_track_event(profile: &Profile) -> Option<PreviewEvent> {
    profile
        .history
        .iter()
        .filter(|h| h.kind == missive_core::EventKind::Track)
        .max_by_key(|h| h.at)
        .map(|h| PreviewEvent {
            name: h.name.clone(),
            properties: h.properties.clone(),
            timestamp: Some(h.at),
        })
}

/// Unsubscribe and preference-centre links for a message.
fn links(public_url: &str, profile: &Profile, message_id: &str) -> (String, String) {
    let base = public_url.trim_end_matches('/');
    (
        format!("{base}/unsubscribe?p={}&m={message_id}", profile.id),
        format!("{base}/preferences?p={}", profile.id),
    )
}

/// Product ids in an e-commerce event: `products[].product_id` (or `sku`, `id`), or a single
/// `product_id`.
pub fn event_products(properties: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    purchased_products(&serde_json::Value::Object(properties.clone()))
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// (product id, quantity) for each product in an e-commerce event's properties.
fn purchased_products(properties: &serde_json::Value) -> Vec<(String, f64)> {
    let id_of = |p: &serde_json::Value| {
        ["product_id", "sku", "id"].iter().find_map(|k| match &p[*k] {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let quantity = |p: &serde_json::Value| p["quantity"].as_f64().filter(|q| *q > 0.0).unwrap_or(1.0);
    match properties["products"].as_array() {
        Some(items) => items
            .iter()
            .filter_map(|p| id_of(p).map(|id| (id, quantity(p))))
            .collect(),
        None => id_of(properties)
            .map(|id| vec![(id, quantity(properties))])
            .unwrap_or_default(),
    }
}

fn lookup_json(data: &Object, path: &str) -> serde_json::Value {
    let mut parts = path.split('.');
    let Some(mut value) = parts.next().and_then(|p| data.get(p)) else {
        return serde_json::Value::Null;
    };
    for part in parts {
        let next = match value {
            Value::Object(o) => o.get(part),
            Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) => value = v,
            None => return serde_json::Value::Null,
        }
    }
    to_json(value)
}

/// A Liquid value as JSON.
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        Value::Str(s) => serde_json::Value::String(s.to_string()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(o) => {
            serde_json::Value::Object(o.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect())
        }
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
