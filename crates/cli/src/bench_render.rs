//! `missive bench render`: personalized renders per second on one core, of the example
//! cart-abandonment e-mail (examples/cart-abandonment: MJML compiled once, two block slots,
//! the cart's items, four recommended products), for many distinct recipients.
//!
//! Each render does the per-recipient work of a send: build the template variables from the
//! profile and the triggering event, recommend products from the in-memory catalogue (with
//! a precomputed best-seller ranking), choose the blocks (segment membership is read from the
//! profile; the example's one expression target is decided in code here, where the engine
//! would evaluate the compiled segment), and render subject, HTML (escaped) and text. Loading
//! profiles from the store is not included. `--export DIR` writes the same
//! compiled templates and per-recipient data for `bench/render/run.sh`, which renders them with
//! liquidjs and python-liquid for a side-by-side figure.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use missive_content::blocks::{BlockSource, BlockTarget, CompiledBlock, Selection};
use missive_content::data::{EventData, MessageContext, build_data};
use missive_content::recs::{Catalog, Popularity, Product, RecommendationRequest};
use missive_content::template::{CompiledTemplate, Layout, RenderOptions, TemplateSource};
use missive_core::profile::{Trait, TraitParty};
use missive_core::{Profile, ProfileId};
use missive_liquid::{Limits, Object, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TEMPLATE: &str = include_str!("../../../examples/cart-abandonment/template.mjml");
const PRODUCTS: &str = include_str!("../../../examples/cart-abandonment/products.json");
const BLOCKS: [(&str, &str); 4] = [
    (
        "hero-vip",
        include_str!("../../../examples/cart-abandonment/blocks/hero-vip.json"),
    ),
    (
        "hero-generic",
        include_str!("../../../examples/cart-abandonment/blocks/hero-generic.json"),
    ),
    (
        "offer-loyalty",
        include_str!("../../../examples/cart-abandonment/blocks/offer-loyalty.json"),
    ),
    (
        "offer-default",
        include_str!("../../../examples/cart-abandonment/blocks/offer-default.json"),
    ),
];
const SUBJECT: &str = "{{ customer.first_name | default: 'Hi' }}, your cart is waiting";
const PREHEADER: &str = "{{ journey.cart.item_count }} items saved for you";

#[derive(clap::Args, Debug, Clone)]
pub struct RenderBench {
    /// Seconds of measurement (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Distinct recipients rendered in turn.
    #[arg(long, default_value_t = 1_000)]
    recipients: usize,
    /// Write the compiled templates and each recipient's data here, for liquidjs and
    /// python-liquid (bench/render/run.sh).
    #[arg(long)]
    export: Option<PathBuf>,
}

struct Recipient {
    profile: Profile,
    /// The journey's trigger: the first `Product Added`.
    event: serde_json::Map<String, serde_json::Value>,
    /// `journey`: the cart's events and the cart they make.
    journey: serde_json::Value,
    seeds: Vec<String>,
}

const FIRST_NAMES: [&str; 8] = [
    "Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances",
];

fn recipients(n: usize, products: &[Product], now: DateTime<Utc>) -> anyhow::Result<Vec<Recipient>> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = ProfileId::parse(&format!(
            "prf_{:032x}",
            0x0193_f5d2_4c1e_7a00_8000_0000_0000_0000u128 + i as u128
        ))
        .context("bench profile id")?;
        let mut p = Profile::new(id, now);
        let mut set = |k: &str, v: serde_json::Value| {
            p.traits.insert(
                k.into(),
                Trait {
                    value: v,
                    source: "bench".into(),
                    party: TraitParty::First,
                    at: now,
                    consent_basis: None,
                },
            );
        };
        if rng.random_bool(0.85) {
            set("first_name", FIRST_NAMES[i % FIRST_NAMES.len()].into());
        }
        set("email", format!("customer{i}@example.com").into());
        set("city", ["Paris", "Lyon", "Portland", "Berlin"][i % 4].into());
        p.orders.count = rng.random_range(0..8);
        if rng.random_bool(0.2) {
            p.segments.segments.insert("vip".into());
        }
        let items = rng.random_range(1..=3);
        // Segment's e-commerce events, one product each, as a journey instance keeps them.
        let mut events = Vec::new();
        let mut seeds = Vec::new();
        for _ in 0..items {
            let prod = &products[rng.random_range(0..products.len())];
            let quantity = rng.random_range(1..=2);
            seeds.push(prod.id.clone());
            events.push(serde_json::json!({"name": "Product Added", "properties": {
                "cart_id": format!("cart-{i}"), "product_id": prod.id, "name": prod.title,
                "price": prod.price.unwrap_or(10.0), "quantity": quantity, "currency": "USD",
                "image_url": prod.image_url,
            }}));
        }
        let Some(serde_json::Value::Object(event)) = events.first().map(|e| e["properties"].clone()) else {
            anyhow::bail!("a cart has a first event")
        };
        out.push(Recipient {
            profile: p,
            event,
            journey: missive_content::cart::journey_variable("cart-recovery", &format!("cart-{i}"), events),
            seeds,
        });
    }
    Ok(out)
}

struct Fixture {
    template: CompiledTemplate,
    blocks: Vec<Arc<CompiledBlock>>,
    catalog: Catalog,
    popularity: Popularity,
    recipients: Vec<Recipient>,
    now: DateTime<Utc>,
}

impl Fixture {
    fn data(&self, r: &Recipient) -> Object {
        let owned = BTreeSet::new();
        let for_you = self.catalog.recommend(
            &self.popularity,
            &RecommendationRequest {
                seeds: &r.seeds,
                exclude: &owned,
                limit: 4,
            },
        );
        let ctx = MessageContext {
            event: Some(EventData {
                name: "Product Added",
                properties: &r.event,
                timestamp: self.now,
            }),
            recommendations_for_you: for_you,
            best_sellers: vec![],
            experiment: None,
            unsubscribe_url: "https://mail.northwind.example/unsubscribe?t=0123456789abcdef",
            preferences_url: "https://mail.northwind.example/preferences?t=0123456789abcdef",
            message_id: "msg_0123456789abcdef",
            personalized: true,
            ..Default::default()
        };
        let mut data = build_data(&r.profile, &ctx, self.now);
        data.insert("journey", missive_liquid::Value::from(&r.journey));
        data
    }

    fn choose(&self, r: &Recipient, data: &Object) -> Selection {
        Selection::choose(&self.template.slots, &self.blocks, self.now, data, |t| match t {
            BlockTarget::Everyone => true,
            BlockTarget::Segment(s) => r.profile.segments.segments.contains(s),
            // The example's one expression; the engine evaluates the compiled segment.
            BlockTarget::Expression(_) => r.profile.orders.count >= 3,
            BlockTarget::Variant { .. } => t.variant_matches(data),
        })
    }
}

pub fn run(b: RenderBench) -> anyhow::Result<()> {
    let now = Utc::now();
    let compile_started = Instant::now();
    let template = CompiledTemplate::compile(&TemplateSource {
        subject: SUBJECT.into(),
        preheader: PREHEADER.into(),
        layout: Layout::Mjml,
        body: TEMPLATE.into(),
        text: None,
    })?;
    let compile = compile_started.elapsed();
    let mut blocks = Vec::new();
    for (name, json) in BLOCKS {
        let source: BlockSource = serde_json::from_str(json)?;
        blocks.push(Arc::new(CompiledBlock::compile(name, source)?));
    }
    let products: Vec<Product> = serde_json::from_str(PRODUCTS)?;
    let popularity = Popularity::from_purchases(
        products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), (i % 5) as f64, now)),
        now,
        chrono::TimeDelta::hours(24 * 7),
    );
    let recipients = recipients(b.recipients.max(1), &products, now)?;
    let fixture = Fixture {
        template,
        blocks,
        catalog: Catalog::new(products),
        popularity,
        recipients,
        now,
    };
    let opts = RenderOptions {
        limits: Limits::default(),
        time_zone: missive_core::zone::Tz::UTC,
        now,
        currency: "USD",
    };

    if let Some(dir) = &b.export {
        export(&fixture, &opts, dir)?;
    }

    // One thread: the figure is per core.
    let mut bytes = 0usize;
    let mut renders = 0u64;
    let mut liquid_time = Duration::ZERO;
    let warmup_until = Instant::now() + Duration::from_secs(1);
    let mut i = 0;
    while Instant::now() < warmup_until {
        let r = &fixture.recipients[i % fixture.recipients.len()];
        let data = fixture.data(r);
        let sel = fixture.choose(r, &data);
        bytes += fixture.template.render(&data, &sel, &opts)?.html.len();
        i += 1;
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(b.seconds.max(1));
    while Instant::now() < until {
        for _ in 0..64 {
            let r = &fixture.recipients[i % fixture.recipients.len()];
            let data = fixture.data(r);
            let sel = fixture.choose(r, &data);
            let t = Instant::now();
            let email = fixture.template.render(&data, &sel, &opts)?;
            liquid_time += t.elapsed();
            bytes += email.html.len() + email.text.len();
            renders += 1;
            i += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let sample = fixture.template.render(
        &fixture.data(&fixture.recipients[0]),
        &fixture.choose(&fixture.recipients[0], &fixture.data(&fixture.recipients[0])),
        &opts,
    )?;
    println!(
        "template: examples/cart-abandonment (MJML compiled once in {:.1} ms)",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "e-mail: HTML {:.1} KB, text {:.1} KB; {} distinct recipients",
        sample.html.len() as f64 / 1024.0,
        sample.text.len() as f64 / 1024.0,
        fixture.recipients.len()
    );
    println!(
        "{renders} personalized renders in {secs:.1} s on one thread: {:.0} renders/s ({:.1} µs each; Liquid rendering {:.1} µs of it)",
        renders as f64 / secs,
        secs * 1e6 / renders as f64,
        liquid_time.as_secs_f64() * 1e6 / renders as f64,
    );
    // Keeps the renders from being optimized away, and tells the reader the volume.
    println!("rendered {:.0} MB/s", bytes as f64 / secs / 1e6);
    Ok(())
}

/// Writes what the peers need: the compiled templates with `{% block %}` turned into
/// `{% include %}` of the chosen block, the block partials, and one JSON line of data per
/// recipient (the same variables missive renders with, plus the chosen blocks).
fn export(f: &Fixture, opts: &RenderOptions<'_>, dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let partials = dir.join("partials");
    std::fs::create_dir_all(&partials).with_context(|| format!("creating {}", partials.display()))?;
    let rewrite = |source: &str, suffix: &str| {
        let mut s = source.to_string();
        for slot in &f.template.slots {
            for quote in ['"', '\''] {
                s = s.replace(
                    &format!("{{% block {quote}{slot}{quote} %}}"),
                    &format!("{{% include block_{slot}_{suffix} %}}"),
                );
            }
        }
        s
    };
    std::fs::write(dir.join("html.liquid"), rewrite(&f.template.html_source, "html"))?;
    std::fs::write(dir.join("text.liquid"), rewrite(&f.template.text_source, "text"))?;
    std::fs::write(dir.join("subject.liquid"), SUBJECT)?;
    for (name, json) in BLOCKS {
        let source: BlockSource = serde_json::from_str(json)?;
        std::fs::write(partials.join(format!("{name}__html.liquid")), &source.html)?;
        let text = f.blocks.iter().find(|b| b.name == name).map(|_| {
            // The derived text version, as missive renders it.
            missive_content::layout::text_from_html(&source.html)
        });
        std::fs::write(
            partials.join(format!("{name}__text.liquid")),
            text.transpose()?.unwrap_or_default(),
        )?;
    }
    let mut lines = std::io::BufWriter::new(std::fs::File::create(dir.join("data.jsonl"))?);
    let mut expected = std::io::BufWriter::new(std::fs::File::create(dir.join("expected.jsonl"))?);
    for r in &f.recipients {
        let mut data = f.data(r);
        let sel = f.choose(r, &data);
        let email = f.template.render(&data, &sel, opts)?;
        for slot in &f.template.slots {
            let chosen = sel.chosen_name(slot).unwrap_or_default();
            data.insert(
                format!("block_{slot}_html"),
                Value::from(format!("{chosen}__html")),
            );
            data.insert(
                format!("block_{slot}_text"),
                Value::from(format!("{chosen}__text")),
            );
        }
        serde_json::to_writer(&mut lines, &missive_sending::content::to_json(&Value::from(data)))?;
        lines.write_all(b"\n")?;
        serde_json::to_writer(
            &mut expected,
            &serde_json::json!({"subject": email.subject, "html_bytes": email.html.len()}),
        )?;
        expected.write_all(b"\n")?;
    }
    lines.flush()?;
    expected.flush()?;
    eprintln!(
        "exported templates and {} recipients to {}",
        f.recipients.len(),
        dir.display()
    );
    Ok(())
}
