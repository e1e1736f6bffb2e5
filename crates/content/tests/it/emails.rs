use serde_json::json;

use crate::support::*;

const VIP: &str = "prf_0193f5d24c1e7a008000000000000001";
const NEWCOMER: &str = "prf_0193f5d24c1e7a008000000000000002";

#[test]
fn cart_abandonment_email_for_a_loyal_vip() {
    let p = profile(
        VIP,
        &[("first_name", json!("Ada")), ("email", json!("ada@example.com"))],
        5,
        &["vip"],
    );
    let email = render_cart_email(&p, true);
    assert_eq!(email.blocks["hero"].as_deref(), Some("hero-vip"));
    assert_eq!(email.blocks["offer"].as_deref(), Some("offer-loyalty"));
    insta::assert_snapshot!("vip_subject", email.subject);
    insta::assert_snapshot!("vip_text", email.text);
    insta::assert_snapshot!("vip_html", email.html);
}

#[test]
fn cart_abandonment_email_for_a_newcomer_without_a_name_or_recommendations() {
    let p = profile(NEWCOMER, &[], 0, &[]);
    let email = render_cart_email(&p, false);
    assert_eq!(email.blocks["hero"].as_deref(), Some("hero-generic"));
    assert_eq!(email.blocks["offer"].as_deref(), Some("offer-default"));
    assert_eq!(email.subject, "Hi, your cart is waiting");
    assert!(
        email.text.contains("Hi there, you left something behind"),
        "{}",
        email.text
    );
    insta::assert_snapshot!("newcomer_text", email.text);
}

#[test]
fn profile_data_is_escaped_in_html_and_left_alone_in_text() {
    let p = profile(
        NEWCOMER,
        &[("first_name", json!("<script>alert(1)</script> & Co"))],
        0,
        &[],
    );
    let email = render_cart_email(&p, false);
    assert!(!email.html.contains("<script>alert(1)"), "raw script in the HTML");
    assert!(
        email
            .html
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co")
    );
    assert!(
        email.text.contains("Hi <script>alert(1)</script> & Co, you left"),
        "{}",
        email.text
    );
    assert_eq!(
        email.subject,
        "<script>alert(1)</script> & Co, your cart is waiting"
    );
}

#[test]
fn cart_items_recommendations_and_links_reach_both_parts() {
    let p = profile(VIP, &[("first_name", json!("Ada"))], 5, &["vip"]);
    let email = render_cart_email(&p, true);
    for part in [&email.html, &email.text] {
        // The cart the journey saw: a jacket, and one of the two boots added (one removed).
        assert!(
            part.contains("Summit Jacket 1") && part.contains("Summit Boots 1"),
            "cart item missing"
        );
        assert!(
            part.contains("$36.50") && part.contains("$66.50"),
            "item price missing"
        );
        assert!(part.contains("$103.00"), "cart total missing");
        assert!(part.contains("Qty 1"), "quantity missing");
        assert!(part.contains("unsubscribe?t=abc"), "unsubscribe link missing");
    }
    // Recommended: same categories as the cart, in stock, not in the cart.
    assert!(email.html.contains("Alder Jacket 2") && email.html.contains("Tidewater Boots 3"));
    assert!(!email.html.contains("Alder Boots 2"), "sku-006 is out of stock");
    assert!(email.html.contains("utm_campaign=cart-recovery"));
    assert!(email.html.starts_with("<!doctype html>") || email.html.starts_with("<!DOCTYPE html>"));
    assert!(email.html.contains("display:none"), "preheader missing");
    // Blocks are fragments: the e-mail stays one document.
    assert_eq!(email.html.matches("<html").count(), 1);
    assert_eq!(email.html.matches("<body").count(), 1);
    assert!(email.html.contains("2 items saved for you"));
    // The footer is muted: its text's own element carries the colour and size.
    let footer = email.html.find("12 Harbour Street").expect("footer");
    let div = email.html[..footer].rfind("<div").expect("the footer's element");
    let style = &email.html[div..footer];
    assert!(
        style.contains("font-size:12px") && style.contains("color:#6b7280"),
        "{style}"
    );
}
