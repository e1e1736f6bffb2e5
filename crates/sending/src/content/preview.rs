//! Composing for one person: the template data, rendering on the blocking pool, lint, and
//! previews of a saved template for a real profile.

use missive_content::data::RecsWanted;
use missive_recs::strategy::Strategy;

use super::*;

/// `recommendations.similar_to` and `bought_together` are keyed by the message's products and
/// this many of the recipient's latest, at most `MAX_KEYS` in all.
const LATEST_KEYS: usize = 3;
const MAX_KEYS: usize = 10;

impl ContentService {
    /// The template variables for `profile`, with recommendations: `journey` (its events and
    /// cart) when the message comes from a journey, and recommendations seeded by the event's
    /// and the cart's products, which they never repeat; the costlier lists only as `wants`.
    #[allow(clippy::too_many_arguments)]
    pub async fn data_for(
        &self,
        profile: &Profile,
        event: Option<&PreviewEvent>,
        journey: Option<&serde_json::Value>,
        experiment: Option<&Experiment>,
        message_id: &str,
        wants: RecsWanted,
        now: DateTime<Utc>,
    ) -> Result<Object, ContentServiceError> {
        let catalog = self.catalog().await?;
        let popularity = self.popularity(now).await?;
        let mut seeds: Vec<String> = event.map(|e| event_products(&e.properties)).unwrap_or_default();
        if let Some(cart) = journey.map(|j| &j["cart"]) {
            for id in purchased_products(cart) {
                if !seeds.contains(&id.0) {
                    seeds.push(id.0);
                }
            }
        }
        let limit = self.config.recommendations;
        let filters = &self.config.recommendation_filters;
        let personalized = profile.consents(Purpose::Personalization);
        // Without personalization consent nothing is chosen from the person's history.
        // The history keeps properties as text (see `RecentEvent`): parsed here, per message,
        // only for the events recommendations read products from; the others give nothing
        // whatever their properties, so they go with none.
        let properties: Vec<_> = if personalized {
            let reads = self.reads_products();
            profile
                .history
                .iter()
                .map(|h| {
                    if reads(&h.name) {
                        h.properties.parse()
                    } else {
                        Default::default()
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let events: Vec<_> = profile
            .history
            .iter()
            .zip(&properties)
            .map(|(h, p)| (h.name.as_str(), p, h.at))
            .collect();
        let in_message: BTreeSet<String> = seeds.iter().cloned().collect();
        let best_sellers = catalog.best_sellers(&popularity, &BTreeSet::new(), limit);
        let values = |picks: Vec<missive_content::filters::Pick>| -> Vec<Value> {
            picks
                .iter()
                .map(missive_content::filters::Pick::to_value)
                .collect()
        };
        let person = self.person(&events, &seeds);
        let ask = |strategy| Ask {
            strategy,
            person: &person,
            limit,
            filters,
            now,
        };
        // Without consent: best sellers, through the filters, but not what is in the e-mail.
        let generic = || {
            let candidates = catalog.rule_candidates(
                &popularity,
                &RecommendationRequest {
                    seeds: &[],
                    exclude: &BTreeSet::new(),
                    limit: limit * (filters.max_per_category.clamp(1, 10) + 2),
                },
            );
            values(filters.finish(&catalog, candidates, |id| in_message.contains(id), limit))
        };
        let for_you = if personalized {
            values(self.recommend_for(&ask(Served::ForYou)).await?)
        } else {
            generic()
        };
        // The products lists are keyed by: the message's, then (with consent) their latest.
        let keys = &person.theirs[..person.theirs.len().min(seeds.len() + LATEST_KEYS)];
        let had: BTreeSet<&str> = person.theirs.iter().map(String::as_str).collect();
        let skip = |id: &str| had.contains(id);
        let mut similar_to = Vec::new();
        let mut bought_together = Vec::new();
        for key in keys.iter().take(MAX_KEYS) {
            if wants.similar_to {
                let picks = self.similar_to(key, limit, filters, &skip, now).await?;
                similar_to.push((key.clone(), values(picks)));
            }
            if wants.bought_together {
                let picks = self.bought_together(key, limit, filters, &skip).await?;
                bought_together.push((key.clone(), values(picks)));
            }
        }
        let mut strategies = Vec::new();
        let all = [
            Served::Rules,
            Served::Learned(Strategy::Hybrid),
            Served::Learned(Strategy::Als),
            Served::Learned(Strategy::Item2item),
            Served::Learned(Strategy::Content),
            Served::Learned(Strategy::Popular),
        ];
        for (i, s) in all.into_iter().enumerate() {
            debug_assert_eq!(s.as_str(), missive_content::data::STRATEGY_LISTS[i]);
            if !wants.strategy(i) {
                continue;
            }
            let list = if !personalized {
                generic()
            } else {
                match self.recommend_for(&ask(s)).await {
                    Ok(picks) => values(picks),
                    Err(ContentServiceError::NotTrained) => Vec::new(),
                    Err(e) => return Err(e),
                }
            };
            strategies.push((s.as_str(), list));
        }
        let links = links(&self.config.public_url, profile, message_id);
        let ctx = MessageContext {
            event: event.map(|e| EventData {
                name: &e.name,
                properties: &e.properties,
                timestamp: e.timestamp.unwrap_or(now),
            }),
            recommendations_for_you: for_you,
            best_sellers,
            similar_to,
            bought_together,
            strategies,
            experiment: experiment.map(|x| (x.name.as_str(), x.variant.as_str())),
            unsubscribe_url: &links.0,
            preferences_url: &links.1,
            message_id,
            personalized,
        };
        let mut data = build_data(profile, &ctx, now);
        if let Some(journey) = journey.filter(|j| j.is_object()) {
            data.insert("journey", Value::from(journey));
        }
        Ok(data)
    }

    /// The recommendation lists a template and the blocks read.
    pub(super) async fn recs_wanted(
        &self,
        compiled: &CompiledTemplate,
    ) -> Result<RecsWanted, ContentServiceError> {
        Ok(compiled.recs_wanted.union(self.blocks().await?.recs_wanted))
    }

    /// Renders on the blocking pool (a render may take up to its time budget), listing the
    /// undefined variables; gives the data back.
    pub async fn render_blocking(
        &self,
        compiled: Arc<CompiledTemplate>,
        data: Object,
        selection: Selection,
        time_zone: missive_core::zone::Tz,
        now: DateTime<Utc>,
    ) -> Result<(RenderedEmail, BTreeSet<String>, Object), ContentServiceError> {
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || {
            let opts = RenderOptions {
                limits: config.limits,
                time_zone,
                now,
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
        engine: &missive_engine::Engine,
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
        let journey = preview_journey(options.journey_events.as_deref(), options.event.as_ref());
        let data = self
            .data_for(
                &profile,
                options.event.as_ref(),
                Some(&journey),
                options.experiment.as_ref(),
                "lint",
                self.recs_wanted(&compiled).await?,
                now,
            )
            .await?;
        let selection = self.choose_blocks(&profile, &compiled.slots, &data, now).await?;
        let zone = missive_core::zone::time_zone_of(&profile, engine.config().default_time_zone);
        let mut issues = match self.render_blocking(compiled, data, selection, zone, now).await {
            Ok((email, undefined, data)) => check_rendered(&email, &undefined, &data, marketing),
            Err(ContentServiceError::Content(e)) => vec![missive_content::lint::compile_issue(&e)],
            Err(e) => return Err(e),
        };
        issues.extend(self.broken_block_issues().await?);
        Ok(issues)
    }

    pub(super) async fn broken_block_issues(&self) -> Result<Vec<LintIssue>, ContentServiceError> {
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

    pub(super) async fn find(
        &self,
        engine: &missive_engine::Engine,
        key: &str,
    ) -> Result<Profile, ContentServiceError> {
        engine.sync().await?;
        find_profile(&self.store, &ProfileKey::parse(key), engine.config().history_len)
            .await?
            .ok_or_else(|| ContentServiceError::ProfileNotFound(key.to_string()))
    }

    /// Renders a saved template for a real profile, with the data used and lint.
    pub async fn preview(
        &self,
        engine: &missive_engine::Engine,
        template: &str,
        key: &str,
        options: PreviewOptions,
    ) -> Result<Preview, ContentServiceError> {
        let profile = self.find(engine, key).await?;
        let now = options.now.unwrap_or_else(|| engine.clock().now());
        let (version, compiled, marketing) = self.compiled_template(template).await?;
        let event = options.event.or_else(|| latest_track_event(&profile));
        let journey = preview_journey(options.journey_events.as_deref(), event.as_ref());
        let data = self
            .data_for(
                &profile,
                event.as_ref(),
                Some(&journey),
                options.experiment.as_ref(),
                "preview",
                self.recs_wanted(&compiled).await?,
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
        let zone = missive_core::zone::time_zone_of(&profile, engine.config().default_time_zone);
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
}

/// The profile's most recent track event, as the default `event` of a preview.
pub(super) fn latest_track_event(profile: &Profile) -> Option<PreviewEvent> {
    profile
        .history
        .iter()
        .filter(|h| h.kind == missive_core::EventKind::Track)
        .max_by_key(|h| h.at)
        .map(|h| PreviewEvent {
            name: h.name.clone(),
            properties: h.properties.parse(),
            timestamp: Some(h.at),
        })
}

/// Unsubscribe and preference-centre links for a message.
pub(super) fn links(public_url: &str, profile: &Profile, message_id: &str) -> (String, String) {
    let base = public_url.trim_end_matches('/');
    (
        format!("{base}/unsubscribe?p={}&m={message_id}", profile.id),
        format!("{base}/preferences?p={}", profile.id),
    )
}

pub(super) fn lookup_json(data: &Object, path: &str) -> serde_json::Value {
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
