//! Content blocks: reusable modules (a hero banner for one micro-segment, a loyalty offer for
//! frequent buyers, a generic fallback) placed by `{% block "slot" %}`. For each recipient and
//! slot, the highest-priority active block whose target matches and whose required data is
//! present wins; ties go to the name that sorts first, so the choice is stable.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use missive_liquid::{Object, Template, Value};
use serde::{Deserialize, Serialize};

use crate::{ContentError, layout};

/// Who a block is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockTarget {
    /// Everyone: a fallback.
    Everyone,
    /// Members of a saved segment.
    Segment(String),
    /// Profiles matching a segment-language expression.
    Expression(String),
    /// Messages that got this variant of an experiment (a content experiment's block).
    Variant { experiment: String, variant: String },
}

impl BlockTarget {
    /// Whether the message's data (its `experiment` variable) carries this variant.
    pub fn variant_matches(&self, data: &Object) -> bool {
        let BlockTarget::Variant { experiment, variant } = self else {
            return false;
        };
        let Some(Value::Object(e)) = data.get("experiment") else {
            return false;
        };
        let is = |key: &str, want: &str| matches!(e.get(key), Some(Value::Str(s)) if &**s == want);
        is("name", experiment) && is("variant", variant)
    }
}

/// A block as its author wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockSource {
    pub slot: String,
    pub target: BlockTarget,
    /// Higher wins.
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub active_from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub active_until: Option<DateTime<Utc>>,
    /// Data paths that must hold something (not nil, empty or false) for the block to be
    /// used, e.g. `recommendations.for_you` or `customer.first_name`; otherwise the next
    /// block in priority is tried.
    #[serde(default)]
    pub requires: Vec<String>,
    /// HTML with Liquid (blocks are placed after the layout is compiled, so no MJML here).
    pub html: String,
    /// The plain-text version; derived from the HTML when absent.
    #[serde(default)]
    pub text: Option<String>,
}

/// A block ready to render.
#[derive(Debug)]
pub struct CompiledBlock {
    pub name: String,
    pub source: BlockSource,
    pub html: Arc<Template>,
    pub text: Arc<Template>,
}

impl CompiledBlock {
    pub fn compile(name: &str, source: BlockSource) -> Result<Self, ContentError> {
        if !valid_name(name) || !valid_name(&source.slot) {
            return Err(ContentError::Invalid(
                "block and slot names are 1 to 64 letters, digits, '-' or '_'".into(),
            ));
        }
        if let (Some(from), Some(until)) = (source.active_from, source.active_until)
            && until <= from
        {
            return Err(ContentError::Invalid(
                "active_until must be after active_from".into(),
            ));
        }
        let part = format!("block {name}");
        // A block is a fragment placed inside the compiled template: it is used as written
        // (CSS inlining would wrap it in a document of its own); style it inline.
        let html_source = source.html.clone();
        let text_source = match &source.text {
            Some(t) if !t.trim().is_empty() => t.clone(),
            _ => layout::text_from_html(&html_source)?,
        };
        let html = Template::parse(&html_source).map_err(|e| ContentError::liquid(&part, e))?;
        let text = Template::parse(&text_source).map_err(|e| ContentError::liquid(&part, e))?;
        Ok(CompiledBlock {
            name: name.to_string(),
            source,
            html: Arc::new(html),
            text: Arc::new(text),
        })
    }

    fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.source.active_from.is_none_or(|from| from <= now)
            && self.source.active_until.is_none_or(|until| now < until)
    }

    fn has_required_data(&self, data: &Object) -> bool {
        self.source
            .requires
            .iter()
            .all(|path| present(lookup(data, path)))
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn lookup<'a>(data: &'a Object, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = data.get(parts.next()?)?;
    for part in parts {
        value = match value {
            Value::Object(o) => o.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

fn present(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Nil) | Some(Value::Bool(false)) => false,
        Some(Value::Str(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// The blocks chosen for one recipient, by slot.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    chosen: BTreeMap<String, Arc<CompiledBlock>>,
}

impl Selection {
    /// Picks, for each of `slots`, the best block among `blocks` for this recipient.
    /// `matches` answers whether the recipient is in a target (the engine evaluates segment
    /// membership and expressions); it is only asked about active blocks with their data.
    pub fn choose(
        slots: &[String],
        blocks: &[Arc<CompiledBlock>],
        now: DateTime<Utc>,
        data: &Object,
        mut matches: impl FnMut(&BlockTarget) -> bool,
    ) -> Selection {
        let mut chosen = BTreeMap::new();
        for slot in slots {
            let mut candidates: Vec<&Arc<CompiledBlock>> = blocks
                .iter()
                .filter(|b| b.source.slot == *slot && b.active_at(now) && b.has_required_data(data))
                .collect();
            candidates.sort_by(|a, b| {
                b.source
                    .priority
                    .cmp(&a.source.priority)
                    .then(a.name.cmp(&b.name))
            });
            if let Some(best) = candidates.into_iter().find(|b| match &b.source.target {
                BlockTarget::Everyone => true,
                target => matches(target),
            }) {
                chosen.insert(slot.clone(), best.clone());
            }
        }
        Selection { chosen }
    }

    pub fn chosen(&self, slot: &str) -> Option<&Arc<CompiledBlock>> {
        self.chosen.get(slot)
    }

    pub fn chosen_name(&self, slot: &str) -> Option<String> {
        self.chosen.get(slot).map(|b| b.name.clone())
    }
}

/// One row of a slot's decision matrix: what a member of `segment` gets.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MatrixRow {
    /// A saved segment, or `None` for a profile in none of the targeted segments.
    pub segment: Option<String>,
    /// The block a member gets when no expression-targeted block above it matches.
    pub block: Option<String>,
    /// Expression-targeted blocks of higher priority that a member may get instead.
    pub unless_matching: Vec<String>,
}

/// For one slot, which block each saved segment's members get at `now`, assuming the data
/// every block requires is present. Rows follow the order of `segments`, then the row for
/// profiles in none of them; a profile in several segments gets the row whose block has the
/// highest priority.
pub fn decision_matrix(
    slot: &str,
    blocks: &[Arc<CompiledBlock>],
    segments: &[String],
    now: DateTime<Utc>,
) -> Vec<MatrixRow> {
    let mut ranked: Vec<&Arc<CompiledBlock>> = blocks
        .iter()
        .filter(|b| b.source.slot == slot && b.active_at(now))
        .collect();
    ranked.sort_by(|a, b| {
        b.source
            .priority
            .cmp(&a.source.priority)
            .then(a.name.cmp(&b.name))
    });
    let row_for = |segment: Option<&str>| {
        let mut unless = Vec::new();
        for b in &ranked {
            match &b.source.target {
                BlockTarget::Everyone => {}
                BlockTarget::Segment(s) if Some(s.as_str()) == segment => {}
                BlockTarget::Segment(_) => continue,
                BlockTarget::Expression(_) | BlockTarget::Variant { .. } => {
                    unless.push(b.name.clone());
                    continue;
                }
            }
            return MatrixRow {
                segment: segment.map(str::to_string),
                block: Some(b.name.clone()),
                unless_matching: unless,
            };
        }
        MatrixRow {
            segment: segment.map(str::to_string),
            block: None,
            unless_matching: unless,
        }
    };
    let mut rows: Vec<MatrixRow> = segments.iter().map(|s| row_for(Some(s))).collect();
    rows.push(row_for(None));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str, slot: &str, target: BlockTarget, priority: i64) -> Arc<CompiledBlock> {
        Arc::new(
            CompiledBlock::compile(
                name,
                BlockSource {
                    slot: slot.into(),
                    target,
                    priority,
                    active_from: None,
                    active_until: None,
                    requires: vec![],
                    html: format!("<p>{name}</p>"),
                    text: None,
                },
            )
            .unwrap(),
        )
    }

    fn now() -> DateTime<Utc> {
        "2026-11-28T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn highest_priority_matching_block_wins_and_fallback_catches_the_rest() {
        let blocks = vec![
            block("generic", "hero", BlockTarget::Everyone, 0),
            block("vip", "hero", BlockTarget::Segment("vip".into()), 10),
            block("lapsed", "hero", BlockTarget::Segment("lapsed".into()), 5),
        ];
        let slots = vec!["hero".to_string()];
        let pick = |segs: &[&str]| {
            Selection::choose(&slots, &blocks, now(), &Object::new(), |t| match t {
                BlockTarget::Segment(s) => segs.contains(&s.as_str()),
                _ => false,
            })
            .chosen_name("hero")
        };
        assert_eq!(pick(&["vip", "lapsed"]).as_deref(), Some("vip"));
        assert_eq!(pick(&["lapsed"]).as_deref(), Some("lapsed"));
        assert_eq!(pick(&[]).as_deref(), Some("generic"));
    }

    #[test]
    fn blocks_missing_their_data_or_out_of_dates_are_skipped() {
        let mut recs = BlockSource {
            slot: "recs".into(),
            target: BlockTarget::Everyone,
            priority: 10,
            active_from: None,
            active_until: None,
            requires: vec!["recommendations.for_you".into()],
            html: "<p>recs</p>".into(),
            text: None,
        };
        let with_recs = Arc::new(CompiledBlock::compile("with-recs", recs.clone()).unwrap());
        recs.requires.clear();
        recs.active_until = Some("2026-01-01T00:00:00Z".parse().unwrap());
        let expired = Arc::new(CompiledBlock::compile("expired", recs).unwrap());
        let fallback = block("bestsellers", "recs", BlockTarget::Everyone, 0);
        let blocks = vec![with_recs, expired, fallback];
        let slots = vec!["recs".to_string()];

        let mut data = Object::new();
        let chosen = Selection::choose(&slots, &blocks, now(), &data, |_| true);
        assert_eq!(chosen.chosen_name("recs").as_deref(), Some("bestsellers"));

        let mut recs_obj = Object::new();
        recs_obj.insert("for_you", Value::from(vec![Value::from("p1")]));
        data.insert("recommendations", Value::from(recs_obj));
        let chosen = Selection::choose(&slots, &blocks, now(), &data, |_| true);
        assert_eq!(chosen.chosen_name("recs").as_deref(), Some("with-recs"));
    }

    #[test]
    fn decision_matrix_lists_each_segment_and_the_fallback() {
        let blocks = vec![
            block("generic", "hero", BlockTarget::Everyone, 0),
            block("vip", "hero", BlockTarget::Segment("vip".into()), 10),
            block(
                "big-spenders",
                "hero",
                BlockTarget::Expression("orders.revenue > 500".into()),
                20,
            ),
        ];
        let rows = decision_matrix("hero", &blocks, &["vip".into(), "new".into()], now());
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].block.as_deref(), Some("vip"));
        assert_eq!(rows[0].unless_matching, vec!["big-spenders"]);
        assert_eq!(rows[1].block.as_deref(), Some("generic"));
        assert_eq!(rows[2].segment, None);
        assert_eq!(rows[2].block.as_deref(), Some("generic"));
    }

    #[test]
    fn names_are_checked() {
        let e = CompiledBlock::compile(
            "no spaces",
            BlockSource {
                slot: "hero".into(),
                target: BlockTarget::Everyone,
                priority: 0,
                active_from: None,
                active_until: None,
                requires: vec![],
                html: String::new(),
                text: None,
            },
        )
        .unwrap_err();
        assert!(matches!(e, ContentError::Invalid(_)));
    }

    #[test]
    fn a_variant_block_goes_to_messages_of_that_variant() {
        let target = BlockTarget::Variant {
            experiment: "launch".into(),
            variant: "b".into(),
        };
        let data = |name: &str, variant: &str| {
            let mut e = Object::new();
            e.insert("name", Value::from(name));
            e.insert("variant", Value::from(variant));
            let mut d = Object::new();
            d.insert("experiment", Value::from(e));
            d
        };
        assert!(target.variant_matches(&data("launch", "b")));
        assert!(!target.variant_matches(&data("launch", "a")));
        assert!(!target.variant_matches(&data("other", "b")));
        assert!(!target.variant_matches(&Object::new()));
        let json: BlockTarget =
            serde_json::from_value(serde_json::json!({"variant": {"experiment": "launch", "variant": "b"}}))
                .unwrap();
        assert_eq!(json, target);
    }
}
