use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use missive_content::blocks::{BlockSource, BlockTarget, CompiledBlock, Selection};
use missive_content::data::{EventData, MessageContext, build_data};
use missive_content::recs::{Catalog, Popularity, Product, RecommendationRequest};
use missive_content::template::{CompiledTemplate, Layout, RenderOptions, RenderedEmail, TemplateSource};
use missive_core::profile::{Trait, TraitParty};
use missive_core::{Profile, ProfileId};
use missive_liquid::Object;

pub fn example(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/cart-abandonment")
        .join(file)
}

pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
        .unwrap()
        .to_utc()
}

pub fn cart_template() -> CompiledTemplate {
    CompiledTemplate::compile(&TemplateSource {
        subject: "{{ customer.first_name | default: 'Hi' }}, your cart is waiting".into(),
        preheader: "{{ journey.cart.item_count }} items saved for you".into(),
        layout: Layout::Mjml,
        body: std::fs::read_to_string(example("template.mjml")).unwrap(),
        text: None,
    })
    .unwrap()
}

pub fn blocks() -> Vec<Arc<CompiledBlock>> {
    ["hero-vip", "hero-generic", "offer-loyalty", "offer-default"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(example(&format!("blocks/{name}.json"))).unwrap();
            let source: BlockSource = serde_json::from_str(&text).unwrap();
            Arc::new(CompiledBlock::compile(name, source).unwrap())
        })
        .collect()
}

pub fn catalog() -> Catalog {
    let text = std::fs::read_to_string(example("products.json")).unwrap();
    let products: Vec<Product> = serde_json::from_str(&text).unwrap();
    Catalog::new(products)
}

pub fn event() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(example("event.json")).unwrap()).unwrap()
}

/// The example cart's events (Segment's `Product Added` and `Product Removed`), as a journey
/// instance keeps them, and the `journey` variable they make.
pub fn journey() -> serde_json::Value {
    let events: Vec<serde_json::Value> = std::fs::read_to_string(example("cart.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::json!({"name": e["event"], "properties": e["properties"]})
        })
        .collect();
    missive_content::cart::journey_variable("cart-recovery", "cart-8841", events)
}

pub fn profile(id: &str, traits: &[(&str, serde_json::Value)], orders: u64, segments: &[&str]) -> Profile {
    let id = ProfileId::parse(id).unwrap();
    let mut p = Profile::new(id, now());
    for (k, v) in traits {
        p.traits.insert(
            k.to_string(),
            Trait {
                value: v.clone(),
                source: "test".into(),
                party: TraitParty::First,
                at: now(),
                consent_basis: None,
            },
        );
    }
    p.orders.count = orders;
    p.segments.segments = segments.iter().map(|s| s.to_string()).collect();
    p
}

pub fn opts() -> RenderOptions<'static> {
    RenderOptions {
        limits: missive_liquid::Limits::default(),
        time_zone: chrono_tz::Tz::UTC,
        now: "2026-11-28T12:00:00Z".parse().unwrap(),
        currency: "USD",
    }
}

/// Everything a real send computes: data, recommendations, block choice, render.
pub fn render_cart_email(p: &Profile, with_recommendations: bool) -> RenderedEmail {
    let template = cart_template();
    let ev = event();
    let properties = ev["properties"].as_object().unwrap();
    let catalog = catalog();
    let journey = journey();
    let seeds: Vec<String> = journey["cart"]["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_str().unwrap().to_string())
        .collect();
    let for_you = if with_recommendations {
        catalog.recommend(
            &Popularity::default(),
            &RecommendationRequest {
                seeds: &seeds,
                exclude: &Default::default(),
                limit: 4,
            },
        )
    } else {
        vec![]
    };
    let ctx = MessageContext {
        event: Some(EventData {
            name: "Product Added",
            properties,
            timestamp: now(),
        }),
        recommendations_for_you: for_you,
        best_sellers: vec![],
        experiment: None,
        unsubscribe_url: "https://mail.northwind.example/unsubscribe?t=abc",
        preferences_url: "https://mail.northwind.example/preferences?t=abc",
        personalized: true,
        message_id: "msg_1",
        ..Default::default()
    };
    let mut data: Object = build_data(p, &ctx, now());
    data.insert("journey", missive_liquid::Value::from(&journey));
    let blocks = blocks();
    let selection = Selection::choose(
        &template.slots,
        &blocks,
        opts().now,
        &data,
        |target| match target {
            BlockTarget::Segment(s) => p.segments.segments.contains(s),
            BlockTarget::Expression(e) => e == "orders.count >= 3" && p.orders.count >= 3,
            BlockTarget::Everyone => true,
            BlockTarget::Variant { .. } => target.variant_matches(&data),
        },
    );
    template.render(&data, &selection, &opts()).unwrap()
}
