//! What the demo's marketer has set up: segments, content blocks, templates (welcome, cart
//! recovery, browse abandonment, post-purchase cross-sell, win-back) and the journeys that send
//! them. Written as a user would write them through the API.

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

/// A template in the shop's house style around `content` (MJML).
fn house(title: &str, content: &str) -> String {
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
          {{% for p in recommendations.for_you limit: 4 %}}
          <tr>
            <td width="96"><a href="{{{{ p.url | url_param: 'utm_source', 'missive' }}}}"><img src="{{{{ p.image_url }}}}" alt="{{{{ p.title }}}}" width="80" /></a></td>
            <td>{{{{ p.title }}}}</td>
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

/// Templates: (name, body as the API takes it).
pub fn templates() -> Vec<(&'static str, Value)> {
    let t = |subject: &str, preheader: &str, title: &str, content: &str| json!({"subject": subject, "preheader": preheader, "layout": "mjml", "body": house(title, content)});
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
            t(
                "Thank you, {{ customer.first_name | default: 'friend' }}: what goes with it",
                "Pieces that go with your order",
                "Thank you",
                r#"        <mj-text font-size="20px" font-weight="bold">Thank you for your order</mj-text>
        <mj-text>It is on its way. Here is what our stylists would wear with it.</mj-text>"#,
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
                {"id": "wait", "type": "wait", "duration": "3d"},
                {"id": "send", "type": "send", "template": "post-purchase"}]}),
        ),
        (
            "win-back",
            json!({"trigger": {"segment": "lapsed"}, "steps": [
                {"id": "send", "type": "send", "template": "win-back"}]}),
        ),
    ]
}
