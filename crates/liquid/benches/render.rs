//! Render throughput, measured without a harness dependency: `cargo bench -p missive-liquid`.
//!
//! 1. golden-liquid benchmark fixture 001 (index + three partials).
//! 2. A synthetic cart-abandonment e-mail: ~30 KB of HTML, ~60 outputs, a loop over 3 cart
//!    items and 4 products, 2 blocks, rendered with HTML escaping on.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use missive_liquid::{Env, Limits, Object, PartialError, Partials, Template, Value};

struct Map {
    partials: HashMap<String, Arc<Template>>,
    blocks: HashMap<String, Arc<Template>>,
}

impl Partials for Map {
    fn partial(&self, name: &str) -> Result<Arc<Template>, PartialError> {
        self.partials.get(name).cloned().ok_or(PartialError::NotFound)
    }
    fn block(&self, slot: &str) -> Option<Arc<Template>> {
        self.blocks.get(slot).cloned()
    }
}

fn env(partials: &dyn Partials, escape_output: bool) -> Env<'_> {
    Env {
        strict_variables: false,
        strict_filters: false,
        limits: Limits::default(),
        partials,
        time_zone: chrono_tz::Tz::UTC,
        now: chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default(),
        currency: "USD".into(),
        escape_output,
    }
}

fn object(v: Value) -> Object {
    match v {
        Value::Object(o) => (*o).clone(),
        _ => Object::new(),
    }
}

/// Renders repeatedly for about a second and returns µs per render.
fn measure(t: &Template, globals: &Object, env: &Env<'_>) -> f64 {
    for _ in 0..200 {
        black_box(t.render(globals, env).ok());
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            black_box(t.render(black_box(globals), env).ok());
        }
        n += 100;
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn fixture_001() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures/001");
    let read = |p: &str| std::fs::read_to_string(format!("{dir}/{p}")).unwrap_or_default();
    let mut partials = HashMap::new();
    for name in ["header.liquid", "footer.liquid", "featured_content.liquid"] {
        match Template::parse(&read(&format!("templates/{name}"))) {
            Ok(t) => {
                partials.insert(name.to_string(), Arc::new(t));
            }
            Err(e) => eprintln!("{name}: {e}"),
        }
    }
    let map = Map {
        partials,
        blocks: HashMap::new(),
    };
    let env = env(&map, false);
    let globals = object(Value::from_json_str(&read("data.json")).unwrap_or_default());
    let t = match Template::parse(&read("templates/index.liquid")) {
        Ok(t) => t,
        Err(e) => return eprintln!("index.liquid: {e}"),
    };
    let out = t.render(&globals, &env).unwrap_or_else(|e| format!("error: {e}"));
    let expected = read("expected_result.txt");
    let same = out.trim_end() == expected.trim_end();
    let us = measure(&t, &globals, &env);
    println!(
        "fixture 001: {us:.2} µs/render ({:.0} renders/s), {} bytes, matches expected_result.txt: {same}",
        1e6 / us,
        out.len()
    );
}

fn cart_email() -> (String, String) {
    let mut s = String::from(
        "<!doctype html><html><head><title>{{ shop.name }}: you left something behind</title></head><body>\n",
    );
    s.push_str("<p>Hi {{ customer.first_name | default: 'there' }},</p>\n{% block 'hero' %}\n");
    for i in 0..50 {
        s.push_str(&format!(
            "<table role=\"presentation\" class=\"row-{i}\" style=\"width:100%;border-collapse:collapse;font-family:Helvetica,Arial,sans-serif\"><tr><td style=\"padding:12px 24px;color:#333333;font-size:15px;line-height:22px\">Section {i}: {{{{ shop.tagline }}}} &mdash; {{{{ customer.email | downcase }}}}. Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.</td></tr></table>\n"
        ));
    }
    s.push_str(
        "<h2>Your cart ({{ cart.item_count }} {{ cart.item_count | pluralize: 'item', 'items' }})</h2>\n",
    );
    s.push_str("{% for item in cart.items %}<tr class=\"{% cycle 'odd', 'even' %}\"><td><img src=\"{{ item.image | url_param: 'w', '200' }}\" alt=\"{{ item.title }}\"></td><td><a href=\"{{ item.url | url_param: 'utm_source', 'email' }}\">{{ item.title | truncate: 40 }}</a> &times; {{ item.quantity }}</td><td>{{ item.price | times: item.quantity | money }}</td>{% if forloop.last %}<td class=\"last\"></td>{% endif %}</tr>\n{% endfor %}");
    s.push_str("<p>Total: {{ cart.total_price | money_with_currency }}</p>\n");
    s.push_str("{% if customer.orders_count > 0 %}<p>Welcome back! You have ordered {{ customer.orders_count }} times.</p>{% else %}<p>First order? Use code {{ discount.code | upcase }}.</p>{% endif %}\n");
    s.push_str("<h2>You may also like</h2>{% for p in recommendations limit: 4 %}<div><a href=\"{{ p.url }}\">{{ p.title | escape }}</a> {{ p.price | money }}{% unless p.available %} (sold out){% endunless %}</div>\n{% endfor %}");
    s.push_str("{% block 'footer' %}\n<p>{{ shop.address.street }}, {{ shop.address.city }} &middot; <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a> &middot; {{ 'now' | date: '%Y' }} {{ shop.name }}</p>\n");
    for i in 0..8 {
        s.push_str(&format!("<p class=\"legal-{i}\">{{{{ shop.legal_name }}}} {{{{ customer.last_name }}}} {{{{ customer.city | default: 'your city' }}}} Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque laudantium, totam rem aperiam, eaque ipsa quae ab illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo.</p>\n"));
    }
    s.push_str("</body></html>\n");
    let data = r#"{
      "shop": {"name": "Acme & Co", "tagline": "Goods for <everyone>", "legal_name": "Acme Ltd", "address": {"street": "1 Main St", "city": "Springfield"}},
      "customer": {"first_name": "Ada", "last_name": "Lovelace", "email": "ADA@EXAMPLE.COM", "orders_count": 2, "city": "London"},
      "cart": {"item_count": 3, "total_price": 15497, "items": [
        {"title": "Linen shirt", "url": "https://acme.test/p/1", "image": "https://cdn.acme.test/1.jpg", "quantity": 1, "price": 4999},
        {"title": "Canvas tote bag with a rather long product name", "url": "https://acme.test/p/2?v=3", "image": "https://cdn.acme.test/2.jpg", "quantity": 2, "price": 2499},
        {"title": "Socks", "url": "https://acme.test/p/3#size", "image": "https://cdn.acme.test/3.jpg", "quantity": 5, "price": 1000}]},
      "recommendations": [
        {"title": "Cap", "url": "https://acme.test/p/4", "price": 1999, "available": true},
        {"title": "Belt", "url": "https://acme.test/p/5", "price": 2999, "available": false},
        {"title": "Scarf", "url": "https://acme.test/p/6", "price": 3999, "available": true},
        {"title": "Gloves", "url": "https://acme.test/p/7", "price": 1599, "available": true}],
      "discount": {"code": "welcome10"},
      "unsubscribe_url": "https://acme.test/u/abc"
    }"#;
    (s, data.to_string())
}

fn cart_abandonment() {
    let (source, data) = cart_email();
    let mut blocks = HashMap::new();
    for (slot, src) in [
        (
            "hero",
            "<h1>{{ customer.first_name }}, your cart is waiting</h1><p>{{ cart.items.first.title }} and more</p>",
        ),
        (
            "footer",
            "<p>Questions? Reply to this e-mail, {{ customer.first_name }}.</p>",
        ),
    ] {
        if let Ok(t) = Template::parse(src) {
            blocks.insert(slot.to_string(), Arc::new(t));
        }
    }
    let map = Map {
        partials: HashMap::new(),
        blocks,
    };
    let env = env(&map, true);
    let globals = object(Value::from_json_str(&data).unwrap_or_default());
    let t = match Template::parse(&source) {
        Ok(t) => t,
        Err(e) => return eprintln!("cart e-mail: {e}"),
    };
    let out = match t.render(&globals, &env) {
        Ok(o) => o,
        Err(e) => return eprintln!("cart e-mail: {e}"),
    };
    let outputs = source.matches("{{").count();
    let us = measure(&t, &globals, &env);
    println!(
        "cart abandonment e-mail: {us:.2} µs/render ({:.0} renders/s), source {} bytes with {outputs} outputs, output {} bytes",
        1e6 / us,
        source.len(),
        out.len()
    );
}

fn main() {
    fixture_001();
    cart_abandonment();
}
