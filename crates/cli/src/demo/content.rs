//! What the demo's marketer has set up: segments, content blocks, templates (welcome, cart
//! recovery, browse abandonment, post-purchase cross-sell with the marketer's rules and with
//! learned recommendations, win-back), "bought A → recommend B" rules, the experiment of the
//! one against the other, and the journeys that send them. Written as a user would write them
//! through the API. (The segments on the models' scores come from `models`, once the models
//! are trained.)

use missive_content::recs::Product;
use serde_json::{Value, json};

/// Saved segments: (name, expression).
pub const SEGMENTS: &[(&str, &str)] = &[
    ("vip", "orders.count >= 4 or orders.revenue >= 600"),
    (
        "frequent-buyers",
        "count(event \"Order Completed\" within 90d) >= 2",
    ),
    ("lapsed", "orders.count >= 1 and orders.last_at before 120d ago"),
    (
        "browse-abandoners",
        "count(event \"Product Viewed\" within 7d) >= 2 and count(event \"Product Added\" within 7d) == 0",
    ),
    ("gold-tier", "traits.loyalty_tier == \"gold\""),
    (
        "newsletter-engaged",
        "count(event \"Email Opened\" within 90d) >= 1",
    ),
    ("never-bought", "orders.count == 0"),
];

/// Content blocks: (name, body as the API takes it).
pub fn blocks() -> Vec<(&'static str, Value)> {
    vec![
        (
            "hero-vip",
            json!({"slot": "hero", "target": {"segment": "vip"}, "priority": 20,
                   "html": "<p style=\"font-size:18px\"><strong>{{ customer.first_name | default: 'Dear member' }}, free express shipping is yours, as always.</strong></p>"}),
        ),
        (
            "hero-default",
            json!({"slot": "hero", "target": "everyone", "priority": 0,
                   "html": "<p style=\"font-size:18px\"><strong>New in this week, picked for you.</strong></p>"}),
        ),
        (
            "offer-lapsed",
            json!({"slot": "offer", "target": {"segment": "lapsed"}, "priority": 10,
                   "html": "<p>We miss you: <strong>WELCOMEBACK20</strong> takes 20% off your next order.</p>"}),
        ),
        (
            "offer-default",
            json!({"slot": "offer", "target": "everyone", "priority": 0,
                   "html": "<p>Free returns within 30 days, on every order.</p>"}),
        ),
    ]
}

/// The recommendations of most templates: the rules that fire, then the learned hybrid, then
/// categories and best sellers.
const FOR_YOU: &str = "{%- assign picks = recommendations.for_you %}";

/// The post-purchase e-mails' two lists, one per path of the experiment: the marketer's rules
/// (then the category rule and best sellers), and the learned hybrid (the rules' list while no
/// model is trained yet: serving trains one at start).
const RULES: &str = "{%- assign picks = recommendations.strategies.rules %}";
const LEARNED: &str =
    "{%- assign picks = recommendations.strategies.hybrid | default: recommendations.strategies.rules %}";

/// The experiment in the post-purchase e-mail.
pub const EXPERIMENT: &str = "post-purchase-recs";

/// The experiment, as `POST /v1/experiments` takes it: rule-based against learned
/// recommendations, half and half, decided on purchases after an open or click of the e-mail.
/// A `branch` experiment, split at the post-purchase journey's first step: a person is counted
/// when their order starts the journey (live orders put people in it at once), and each path
/// sends its own template three days later. The plan is sized by the shop's orders a day.
pub fn experiment(orders_per_day: f64) -> Value {
    json!({
        "name": EXPERIMENT,
        "hypothesis": "Recommendations learned from everyone's views, carts and orders sell more than the marketer's rules and best sellers in the post-purchase e-mail",
        "varies": "branch",
        "variants": [{"name": "rules", "weight": 50}, {"name": "predictive", "weight": 50}],
        "primary_metric": "conversion",
        "conversion_window_hours": 168,
        "plan": {"baseline_rate": 0.04, "minimum_lift": 0.25, "units_per_day": orders_per_day.round().max(1.0)},
    })
}

/// "Bought A → recommend B" rules, as `PUT /v1/recommendations/rules/{name}` takes them: a dress
/// goes with shoes and a bag, a coat with knitwear. The products recommended are the first
/// in-stock styles of those categories in `catalogue`.
pub fn rules(catalogue: &[Product]) -> Vec<(&'static str, Value)> {
    let first = |category: &str, n: usize| -> Vec<&str> {
        catalogue
            .iter()
            .filter(|p| p.in_stock && p.categories.first().is_some_and(|c| c == category))
            .map(|p| p.id.as_str())
            .take(n)
            .collect()
    };
    let mut dress = first("shoes", 2);
    dress.extend(first("accessories", 2));
    [
        ("complete-the-look", "dresses", dress, "Complete the look"),
        (
            "layer-up",
            "outerwear",
            first("knitwear", 3),
            "Layer up underneath",
        ),
    ]
    .into_iter()
    // A rule recommends something, or it is not saved (a catalogue with every such style gone).
    .filter(|(_, _, recommend, _)| !recommend.is_empty())
    .map(|(name, when, recommend, reason)| {
        (
            name,
            json!({"when": {"categories": [when]}, "recommend": recommend, "reason": reason}),
        )
    })
    .collect()
}

/// A template in the shop's house style around `content` (MJML), recommending the list that
/// `picks` (Liquid) assigns to `picks`.
fn house(title: &str, content: &str, picks: &str) -> String {
    format!(
        r##"<mjml>
  <mj-head>
    <mj-title>{title}</mj-title>
    <mj-attributes>
      <mj-all font-family="Helvetica, Arial, sans-serif" />
      <mj-text font-size="15px" line-height="22px" color="#1f2328" />
      <mj-button background-color="#1f2328" color="#ffffff" font-size="15px" border-radius="2px" />
    </mj-attributes>
  </mj-head>
  <mj-body background-color="#f4f1ec">
    <mj-section background-color="#ffffff" padding="18px">
      <mj-column><mj-text font-size="22px" font-weight="bold" letter-spacing="3px" align="center">MAISON LUMEN</mj-text></mj-column>
    </mj-section>
    <mj-section background-color="#ffffff">
      <mj-column>
        <mj-text>{{% block "hero" %}}</mj-text>
{content}
        <mj-text>{{% block "offer" %}}</mj-text>
      </mj-column>
    </mj-section>
    <mj-section background-color="#ffffff">
      <mj-column>
        <mj-text font-size="17px" font-weight="bold">You might also like</mj-text>
        <mj-table>
          {picks}
          {{% for p in picks limit: 4 %}}
          <tr>
            <td width="96"><a href="{{{{ p.url | url_param: 'utm_source', 'missive' }}}}"><img src="{{{{ p.image_url }}}}" alt="{{{{ p.title }}}}" width="80" /></a></td>
            <td>{{{{ p.title }}}}{{% if p.reason %}}<br /><span style="font-size:12px;color:#6b7280">{{{{ p.reason }}}}</span>{{% endif %}}</td>
            <td align="right">{{{{ p.price | money: 'EUR' }}}}</td>
          </tr>
          {{% endfor %}}
        </mj-table>
      </mj-column>
    </mj-section>
    <mj-section><mj-column><mj-text font-size="12px" color="#6b7280" align="center">Maison Lumen · 12 rue des Ateliers, Lyon<br /><a href="{{{{ preferences_url }}}}">Your e-mail preferences</a> · <a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></mj-text></mj-column></mj-section>
  </mj-body>
</mjml>
"##
    )
}

/// The post-purchase e-mails' words (the two differ only in their recommendations).
const POST_PURCHASE: &str = r#"        <mj-text font-size="20px" font-weight="bold">Thank you for your order</mj-text>
        <mj-text>It is on its way. Here is what our stylists would wear with it.</mj-text>"#;

/// Templates: (name, body as the API takes it).
pub fn templates() -> Vec<(&'static str, Value)> {
    let with = |subject: &str, preheader: &str, title: &str, content: &str, picks: &str| json!({"subject": subject, "preheader": preheader, "layout": "mjml", "body": house(title, content, picks)});
    let t = |subject: &str, preheader: &str, title: &str, content: &str| {
        with(subject, preheader, title, content, FOR_YOU)
    };
    vec![
        (
            "welcome",
            t(
                "Welcome to Maison Lumen, {{ customer.first_name | default: 'friend' }}",
                "Your first look at the new season",
                "Welcome",
                r#"        <mj-text font-size="20px" font-weight="bold">Welcome, {{ customer.first_name | default: "friend" }}</mj-text>
        <mj-text>Thank you for joining us. Every piece is made to be worn for years: here is where to start.</mj-text>
        <mj-button href="https://shop.example/new-in?utm_source=missive">See what is new</mj-button>"#,
            ),
        ),
        (
            "cart-recovery",
            t(
                "{{ customer.first_name | default: 'Hi' }}, your cart is waiting",
                "We kept your pieces for you",
                "Your cart",
                r#"        <mj-text font-size="20px" font-weight="bold">You left something behind</mj-text>
        {%- assign cart = journey.cart %}
        <mj-table>
          {% for item in cart.products %}
          <tr><td>{{ item.name }}</td><td align="right">{{ item.line_total | money: cart.currency }}</td></tr>
          {% endfor %}
        </mj-table>
        <mj-button href="https://shop.example/cart?utm_source=missive&utm_campaign=cart-recovery">Return to your cart</mj-button>"#,
            ),
        ),
        (
            "browse-abandonment",
            t(
                "Still thinking about it, {{ customer.first_name | default: 'friend' }}?",
                "A second look at what caught your eye",
                "Still thinking?",
                r#"        <mj-text font-size="20px" font-weight="bold">Still thinking about it?</mj-text>
        <mj-text>The pieces you looked at are still here, in most sizes.</mj-text>
        <mj-button href="https://shop.example/recently-viewed?utm_source=missive">See them again</mj-button>"#,
            ),
        ),
        (
            "post-purchase",
            with(
                "Thank you, {{ customer.first_name | default: 'friend' }}: what goes with it",
                "Pieces that go with your order",
                "Thank you",
                POST_PURCHASE,
                RULES,
            ),
        ),
        (
            "post-purchase-predictive",
            with(
                "Thank you, {{ customer.first_name | default: 'friend' }}: what goes with it",
                "Pieces that go with your order",
                "Thank you",
                POST_PURCHASE,
                LEARNED,
            ),
        ),
        (
            "win-back",
            t(
                "We miss you, {{ customer.first_name | default: 'friend' }}",
                "20% off, just for you",
                "We miss you",
                r#"        <mj-text font-size="20px" font-weight="bold">It has been a while</mj-text>
        <mj-text>The new season is in. Come back and see: the offer below is yours until the end of the month.</mj-text>
        <mj-button href="https://shop.example/?utm_source=missive&utm_campaign=win-back">Shop the new season</mj-button>"#,
            ),
        ),
    ]
}

/// Journeys: (name, definition as the API takes it). Saved after the history is imported, so
/// that only new events start them.
pub fn journeys() -> Vec<(&'static str, Value)> {
    vec![
        (
            "welcome",
            json!({"trigger": {"event": "Signed Up"}, "steps": [
                {"id": "send", "type": "send", "template": "welcome"}]}),
        ),
        (
            "cart-recovery",
            json!({"trigger": {"event": "Product Added"}, "key": "properties.cart_id", "steps": [
                {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "match_key": true, "timeout": "1h", "on_event": "exit"},
                {"id": "send", "type": "send", "template": "cart-recovery"}]}),
        ),
        (
            "browse-abandonment",
            json!({"trigger": {"segment": "browse-abandoners"}, "steps": [
                {"id": "wait", "type": "wait", "duration": "4h"},
                {"id": "still", "type": "branch", "condition": "segment \"browse-abandoners\"", "then": "send", "else": "done"},
                {"id": "send", "type": "send", "template": "browse-abandonment"},
                {"id": "done", "type": "exit"}]}),
        ),
        (
            "post-purchase",
            json!({"trigger": {"event": "Order Completed"}, "steps": [
                {"id": "recs-test", "type": "split", "experiment": EXPERIMENT, "paths": [
                    {"variant": "rules", "next": "wait-rules"},
                    {"variant": "predictive", "next": "wait-predictive"}]},
                {"id": "wait-rules", "type": "wait", "duration": "3d"},
                {"id": "send-rules", "type": "send", "template": "post-purchase", "next": "exit"},
                {"id": "wait-predictive", "type": "wait", "duration": "3d"},
                {"id": "send-predictive", "type": "send", "template": "post-purchase-predictive"}]}),
        ),
        (
            "win-back",
            json!({"trigger": {"segment": "lapsed"}, "steps": [
                {"id": "send", "type": "send", "template": "win-back"}]}),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_recommend_in_stock_styles_of_other_categories() {
        let catalogue = crate::demo::catalogue::catalogue(2026, 60);
        let rules = rules(&catalogue);
        assert_eq!(rules.len(), 2);
        for (name, body) in &rules {
            let rule: missive_content::rules::Rule = serde_json::from_value(body.clone()).unwrap();
            rule.validate().unwrap_or_else(|e| panic!("{name}: {e:?}"));
            for id in &rule.recommend {
                let p = catalogue.iter().find(|p| &p.id == id).unwrap();
                assert!(p.in_stock, "{name}: {id}");
                assert!(!rule.when.categories.contains(&p.categories[0]), "{name}: {id}");
            }
        }
        // A catalogue without knitwear in stock has no "layer up" rule rather than an empty one.
        let no_knitwear: Vec<Product> = catalogue
            .into_iter()
            .filter(|p| p.categories[0] != "knitwear")
            .collect();
        assert_eq!(super::rules(&no_knitwear).len(), 1);
    }

    #[test]
    fn the_experiment_is_valid_and_the_post_purchase_split_names_its_variants() {
        let def = serde_json::from_value(experiment(121.4)).unwrap();
        let e = missive_experiment::definition::create(def, chrono::Utc::now()).unwrap();
        let variants: Vec<&str> = e.definition.variants.iter().map(|v| v.name.as_str()).collect();
        let (_, journey) = journeys()
            .into_iter()
            .find(|(name, _)| *name == "post-purchase")
            .unwrap();
        let split = &journey["steps"][0];
        assert_eq!(split["experiment"], EXPERIMENT);
        let paths: Vec<&str> = split["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["variant"].as_str().unwrap())
            .collect();
        assert_eq!(paths, variants);
        assert!(e.estimate.unwrap().summary.contains("121 units a day"));
    }
}
