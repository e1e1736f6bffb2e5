//! The mail clients that break e-mails most, and what breaks them: rules over a rendered
//! e-mail's HTML for Outlook on Windows (Word's renderer: no background images without a
//! fallback, no flex, grid, positioning, floats or max-width, no padding on links), Gmail
//! (clips over 102 KB, drops a `<style>` block over 16 KB or in the body, strips ids and
//! external style sheets) and dark mode (clients that darken e-mails: logos without a dark
//! variant, dark text on no background, no `color-scheme`). Also the links of an e-mail,
//! sorted by what can be checked. Pure: HTML in, findings out; the console's rendering audit
//! shows them beside screenshots.
//!
//! Sources for the rules: the clients' published CSS support (caniemail.com's data) and
//! long-standing practice (bulletproof buttons, VML backgrounds).

use scraper::{ElementRef, Html, Selector};
use serde::Serialize;

use crate::lint::{GMAIL_CLIP_BYTES, Severity};

/// Gmail ignores a `<style>` block longer than this.
pub const GMAIL_STYLE_BYTES: usize = 16 * 1024;

/// The client (or family) a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    OutlookDesktop,
    Gmail,
    DarkMode,
}

impl Client {
    pub fn label(self) -> &'static str {
        match self {
            Client::OutlookDesktop => "Outlook desktop (Windows)",
            Client::Gmail => "Gmail",
            Client::DarkMode => "Dark mode",
        }
    }
}

/// One rule broken, with where.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientIssue {
    pub client: Client,
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
}

fn issue(client: Client, severity: Severity, code: &'static str, message: String) -> ClientIssue {
    ClientIssue {
        client,
        severity,
        code,
        message,
    }
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    // The selectors are this file's constants; one that did not parse would select nothing.
    Selector::parse(css).map_or_else(|_| Vec::new(), |s| doc.select(&s).collect())
}

/// An inline `style` as `(property, value)` pairs, lowercased, without spaces around them.
fn declarations(style: &str) -> Vec<(String, String)> {
    style
        .split(';')
        .filter_map(|d| d.split_once(':'))
        .map(|(p, v)| (p.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
        .filter(|(p, _)| !p.is_empty())
        .collect()
}

fn style_of(el: &ElementRef<'_>) -> Vec<(String, String)> {
    el.value().attr("style").map(declarations).unwrap_or_default()
}

fn has_background_colour(el: &ElementRef<'_>) -> bool {
    el.value().attr("bgcolor").is_some()
        || style_of(el).iter().any(|(p, v)| {
            p == "background-color"
                || (p == "background"
                    && !v.is_empty()
                    && (!v.contains("url(") || v.contains('#') || v.contains("rgb")))
        })
}

/// CSS that Outlook's Word renderer ignores and that breaks a layout when ignored.
const OUTLOOK_LAYOUT: [(&str, Option<&str>); 6] = [
    ("display", Some("flex")),
    ("display", Some("grid")),
    ("position", Some("absolute")),
    ("position", Some("fixed")),
    ("float", None),
    ("max-width", None),
];

/// CSS it ignores that only changes the look.
const OUTLOOK_COSMETIC: [&str; 5] = [
    "border-radius",
    "box-shadow",
    "background-size",
    "object-fit",
    "transform",
];

/// Every rule over `html`.
pub fn check_clients(html: &str) -> Vec<ClientIssue> {
    let doc = Html::parse_document(html);
    let mut out = Vec::new();
    outlook(&doc, html, &mut out);
    gmail(&doc, html, &mut out);
    dark_mode(&doc, html, &mut out);
    out
}

fn outlook(doc: &Html, html: &str, out: &mut Vec<ClientIssue>) {
    let has_vml = html.contains("<v:") || html.to_ascii_lowercase().contains("[if mso");
    let backgrounds = select(doc, "[style], [background]")
        .into_iter()
        .filter(|el| {
            el.value().attr("background").is_some()
                || style_of(el)
                    .iter()
                    .any(|(p, v)| (p == "background-image" || p == "background") && v.contains("url("))
        })
        .filter(|el| !has_background_colour(el))
        .count();
    if backgrounds > 0 && !has_vml {
        out.push(issue(
            Client::OutlookDesktop,
            Severity::Warning,
            "outlook_background_image",
            format!(
                "{backgrounds} element(s) with a background image and no fallback: Outlook shows no background images, so text meant for a dark picture may sit on white. Give each a bgcolor (or a VML background)."
            ),
        ));
    }
    let styled = select(doc, "[style]");
    let mut layout: Vec<String> = Vec::new();
    let mut cosmetic: Vec<String> = Vec::new();
    for el in &styled {
        for (p, v) in style_of(el) {
            let breaks = OUTLOOK_LAYOUT
                .iter()
                .any(|(prop, val)| p == *prop && val.is_none_or(|w| v.starts_with(w)));
            let named = if p == "display" || p == "position" {
                format!("{p}: {v}")
            } else {
                p.clone()
            };
            // max-width on a table cell or image is harmless (the width attribute rules there).
            let harmless = p == "max-width" && matches!(el.value().name(), "img" | "table" | "td");
            if breaks && !harmless && !layout.contains(&named) {
                layout.push(named);
            } else if OUTLOOK_COSMETIC.contains(&p.as_str()) && !cosmetic.contains(&p) {
                cosmetic.push(p);
            }
        }
    }
    let style_text = style_blocks(doc)
        .concat()
        .to_ascii_lowercase()
        .replace(char::is_whitespace, "");
    for (prop, val) in OUTLOOK_LAYOUT {
        let needle = format!("{prop}:{}", val.unwrap_or(""));
        let named = val.map_or(prop.to_owned(), |v| format!("{prop}: {v}"));
        if style_text.contains(&needle) && !layout.contains(&named) && !style_text.contains("@media") {
            layout.push(named);
        }
    }
    if !layout.is_empty() {
        out.push(issue(
            Client::OutlookDesktop,
            Severity::Warning,
            "outlook_unsupported_layout",
            format!(
                "Outlook ignores {}: the layout falls back to stacked blocks at full width. Lay out with tables (MJML does).",
                layout.join(", ")
            ),
        ));
    }
    if !cosmetic.is_empty() {
        out.push(issue(
            Client::OutlookDesktop,
            Severity::Warning,
            "outlook_ignored_css",
            format!(
                "Outlook ignores {} (square corners, no shadows): check the look without them.",
                cosmetic.join(", ")
            ),
        ));
    }
    let buttons = select(doc, "a[style]")
        .into_iter()
        .filter(|a| {
            let s = style_of(a);
            s.iter().any(|(p, _)| p.starts_with("padding"))
                && s.iter()
                    .any(|(p, _)| p == "background" || p == "background-color")
        })
        .filter(|a| {
            !a.ancestors()
                .filter_map(ElementRef::wrap)
                .any(|anc| anc.value().name() == "td" && has_background_colour(&anc))
        })
        .count();
    if buttons > 0 {
        out.push(issue(
            Client::OutlookDesktop,
            Severity::Warning,
            "outlook_button_without_table",
            format!(
                "{buttons} button(s) drawn with padding and a background on the link alone: Outlook ignores padding on links, leaving a thin coloured line. Put each in a table cell with a bgcolor (a bulletproof button; mj-button does)."
            ),
        ));
    }
}

fn style_blocks(doc: &Html) -> Vec<String> {
    select(doc, "style")
        .iter()
        .map(|s| s.text().collect::<String>())
        .collect()
}

fn gmail(doc: &Html, html: &str, out: &mut Vec<ClientIssue>) {
    if html.len() > GMAIL_CLIP_BYTES {
        out.push(issue(
            Client::Gmail,
            Severity::Warning,
            "gmail_clipping",
            format!(
                "The HTML is {:.1} KB: Gmail clips messages over 102 KB behind a \"View entire message\" link, hiding the rest and the unsubscribe link.",
                html.len() as f64 / 1024.0
            ),
        ));
    }
    let blocks = style_blocks(doc);
    let total: usize = blocks.iter().map(String::len).sum();
    if total > GMAIL_STYLE_BYTES {
        out.push(issue(
            Client::Gmail,
            Severity::Warning,
            "gmail_style_too_large",
            format!(
                "The <style> blocks hold {:.1} KB of CSS: Gmail ignores styles past 16 KB. Inline what matters, and keep the rest short.",
                total as f64 / 1024.0
            ),
        ));
    }
    let in_body = select(doc, "body style").len();
    if in_body > 0 {
        out.push(issue(
            Client::Gmail,
            Severity::Warning,
            "gmail_style_in_body",
            format!("{in_body} <style> block(s) in the body: Gmail's apps for other providers' accounts drop them. Put styles in the head, inlined where they matter."),
        ));
    }
    let external =
        select(doc, "link[rel=stylesheet]").len() + blocks.iter().filter(|b| b.contains("@import")).count();
    if external > 0 {
        out.push(issue(
            Client::Gmail,
            Severity::Warning,
            "external_stylesheet",
            "An external style sheet (<link> or @import): Gmail and most clients never load it.".into(),
        ));
    }
    let id_rules = blocks.iter().any(|b| {
        b.split('{')
            .filter_map(|chunk| chunk.rsplit('}').next())
            .any(|selector| selector.trim_start().starts_with('#') || selector.contains(" #"))
    });
    if id_rules {
        out.push(issue(
            Client::Gmail,
            Severity::Warning,
            "gmail_id_selector",
            "CSS rules by id (#…): Gmail removes ids, so they never match. Use classes.".into(),
        ));
    }
}

/// Relative luminance of a `#rgb` or `#rrggbb` colour (WCAG), if it is one.
fn luminance(v: &str) -> Option<f64> {
    let hex = v.trim().strip_prefix('#')?;
    let hex = hex.split_whitespace().next()?.trim_end_matches("!important");
    let full: String = match hex.len() {
        3 => hex.chars().flat_map(|c| [c, c]).collect(),
        6 => hex.to_owned(),
        _ => return None,
    };
    let channel = |i: usize| -> Option<f64> {
        let c = f64::from(u8::from_str_radix(&full[i..i + 2], 16).ok()?) / 255.0;
        Some(if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        })
    };
    Some(0.2126 * channel(0)? + 0.7152 * channel(2)? + 0.0722 * channel(4)?)
}

fn dark_mode(doc: &Html, html: &str, out: &mut Vec<ClientIssue>) {
    let lower = html.to_ascii_lowercase();
    let dark_css = lower.contains("prefers-color-scheme") || lower.contains("[data-ogsc]");
    let declares = !select(doc, "meta[name=color-scheme], meta[name=supported-color-schemes]").is_empty()
        || lower.contains("color-scheme:");
    if !dark_css && !declares {
        out.push(issue(
            Client::DarkMode,
            Severity::Warning,
            "dark_mode_undeclared",
            "No dark-mode styles and no color-scheme: clients that darken e-mails (Gmail's and Outlook's apps, Apple Mail) will invert colours as they choose. Declare <meta name=\"color-scheme\" content=\"light dark\"> and give dark styles in @media (prefers-color-scheme: dark).".into(),
        ));
    }
    let logos: Vec<String> = select(doc, "img[src]")
        .into_iter()
        .filter_map(|img| img.value().attr("src"))
        .filter(|src| {
            let s = src.to_ascii_lowercase();
            let path = s.split(['?', '#']).next().unwrap_or("");
            path.ends_with(".png")
                || path.ends_with(".svg")
                || s.starts_with("data:image/png")
                || s.starts_with("data:image/svg")
        })
        .map(|s| {
            if s.len() > 60 {
                format!("{}…", &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)])
            } else {
                s.to_owned()
            }
        })
        .collect();
    if !logos.is_empty() && !dark_css {
        out.push(issue(
            Client::DarkMode,
            Severity::Warning,
            "dark_mode_image",
            format!(
                "{} PNG or SVG image(s) without a dark variant ({}): a transparent logo in dark ink disappears on a dark background. Add a light outline, or swap the image in @media (prefers-color-scheme: dark).",
                logos.len(),
                logos.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let bare_dark_text = select(doc, "[style]")
        .into_iter()
        .filter(|el| {
            style_of(el)
                .iter()
                .any(|(p, v)| p == "color" && luminance(v).is_some_and(|l| l < 0.05))
        })
        .filter(|el| {
            !has_background_colour(el)
                && !el
                    .ancestors()
                    .filter_map(ElementRef::wrap)
                    .any(|a| has_background_colour(&a))
        })
        .count();
    if bare_dark_text > 0 {
        out.push(issue(
            Client::DarkMode,
            Severity::Warning,
            "dark_mode_text_without_background",
            format!(
                "{bare_dark_text} element(s) with dark text and no background colour behind them: a client that darkens only the background leaves dark text on dark. Set a background colour on the container."
            ),
        ));
    }
}

/// What a link of an e-mail is, for the link check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// An http(s) address elsewhere: checked.
    Web,
    /// missive's own (tracking, unsubscribe, preferences): not followed.
    Own,
    Mail,
    Phone,
    /// `#…` within the message.
    Anchor,
    /// Liquid left in the address, or empty.
    Broken,
    Other,
}

/// One link of an e-mail: where it goes and the words on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub href: String,
    pub text: String,
    pub kind: LinkKind,
}

/// The distinct links of `html` in order, sorted by kind; `own` are missive's own address
/// prefixes (its public URL), whose links are not followed.
pub fn links(html: &str, own: &[&str]) -> Vec<Link> {
    let doc = Html::parse_document(html);
    let mut out: Vec<Link> = Vec::new();
    for a in select(&doc, "a") {
        let href = a.value().attr("href").unwrap_or("").trim().to_owned();
        if out.iter().any(|l| l.href == href) {
            continue;
        }
        let lower = href.to_ascii_lowercase();
        let kind = if href.is_empty() || href.contains("{{") || href.contains("{%") {
            LinkKind::Broken
        } else if own.iter().any(|p| !p.is_empty() && href.starts_with(p)) {
            LinkKind::Own
        } else if lower.starts_with("https://") || lower.starts_with("http://") {
            LinkKind::Web
        } else if lower.starts_with("mailto:") {
            LinkKind::Mail
        } else if lower.starts_with("tel:") {
            LinkKind::Phone
        } else if href.starts_with('#') {
            LinkKind::Anchor
        } else {
            LinkKind::Other
        };
        let text: String = a.text().collect::<Vec<_>>().join(" ");
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = if text.is_empty() {
            a.children()
                .filter_map(ElementRef::wrap)
                .find_map(|c| c.value().attr("alt").map(|s| format!("image: {s}")))
                .unwrap_or_default()
        } else {
            text
        };
        out.push(Link { href, text, kind });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(html: &str) -> Vec<&'static str> {
        check_clients(html).iter().map(|i| i.code).collect()
    }

    const DARK_READY: &str = "<meta name=\"color-scheme\" content=\"light dark\"><style>@media (prefers-color-scheme: dark) { .x { color: #fff } }</style>";

    fn doc(head: &str, body: &str) -> String {
        format!("<!doctype html><html><head>{head}</head><body>{body}</body></html>")
    }

    #[test]
    fn a_table_layout_with_dark_styles_breaks_no_rule() {
        let html = doc(
            DARK_READY,
            "<table><tr><td bgcolor=\"#4338ca\" style=\"padding:12px 20px\"><a href=\"https://shop.example\" style=\"color:#ffffff;padding:12px 20px;background:#4338ca\">Shop</a></td></tr></table>",
        );
        assert_eq!(codes(&html), Vec::<&str>::new());
    }

    #[test]
    fn outlook_rules_find_backgrounds_layout_css_and_link_buttons() {
        let cases: [(&str, &str); 6] = [
            (
                "<div style=\"background-image:url(hero.jpg)\">Sale</div>",
                "outlook_background_image",
            ),
            (
                "<table><tr><td background=\"hero.jpg\">Sale</td></tr></table>",
                "outlook_background_image",
            ),
            (
                "<div style=\"display:flex\"><p>a</p></div>",
                "outlook_unsupported_layout",
            ),
            (
                "<div style=\"max-width:600px\">a</div>",
                "outlook_unsupported_layout",
            ),
            ("<div style=\"border-radius:8px\">a</div>", "outlook_ignored_css"),
            (
                "<a href=\"https://x.example\" style=\"padding:10px;background-color:#000\">Buy</a>",
                "outlook_button_without_table",
            ),
        ];
        for (body, code) in cases {
            let found = codes(&doc(DARK_READY, body));
            assert!(found.contains(&code), "{body}: {found:?}");
        }
        // A fallback colour, VML, or max-width on an image are fine.
        for body in [
            "<div style=\"background:#222 url(hero.jpg)\">Sale</div>",
            "<!--[if mso]><v:rect></v:rect><![endif]--><div style=\"background-image:url(hero.jpg)\">Sale</div>",
            "<img src=\"a.jpg\" alt=\"\" style=\"max-width:100%\">",
        ] {
            let found = codes(&doc(DARK_READY, body));
            assert!(
                !found.contains(&"outlook_background_image")
                    && !found.contains(&"outlook_unsupported_layout"),
                "{body}: {found:?}"
            );
        }
    }

    #[test]
    fn gmail_rules_find_clipping_large_or_misplaced_styles_and_ids() {
        let big = doc(DARK_READY, &"<p>x</p>".repeat(14_000));
        assert!(codes(&big).contains(&"gmail_clipping"));
        let css = format!("<style>{}</style>{DARK_READY}", ".a{color:#111}".repeat(1_300));
        assert!(codes(&doc(&css, "<p>x</p>")).contains(&"gmail_style_too_large"));
        assert!(
            codes(&doc(DARK_READY, "<style>.a{color:red}</style><p class=a>x</p>"))
                .contains(&"gmail_style_in_body")
        );
        assert!(
            codes(&doc(&format!("{DARK_READY}<link rel=stylesheet href=x.css>"), ""))
                .contains(&"external_stylesheet")
        );
        assert!(
            codes(&doc(
                &format!("{DARK_READY}<style>#hero {{ color: red }}</style>"),
                ""
            ))
            .contains(&"gmail_id_selector")
        );
        assert!(
            !codes(&doc(
                &format!("{DARK_READY}<style>.hero {{ color: #a1b2c3 }}</style>"),
                ""
            ))
            .contains(&"gmail_id_selector")
        );
    }

    #[test]
    fn dark_mode_rules_find_missing_declarations_logos_and_bare_dark_text() {
        let plain = doc("", "<p>Hello</p>");
        assert_eq!(codes(&plain), vec!["dark_mode_undeclared"]);
        let logo = doc("", "<img src=\"https://cdn.example/logo.png?v=2\" alt=\"Lumen\">");
        assert!(codes(&logo).contains(&"dark_mode_image"));
        let photo = doc("", "<img src=\"https://cdn.example/dress.jpg\" alt=\"Dress\">");
        assert!(!codes(&photo).contains(&"dark_mode_image"));
        let text = doc(DARK_READY, "<p style=\"color:#000\">Hi</p>");
        assert!(codes(&text).contains(&"dark_mode_text_without_background"));
        let boxed = doc(
            DARK_READY,
            "<table bgcolor=\"#ffffff\"><tr><td><p style=\"color:#000\">Hi</p></td></tr></table>",
        );
        assert!(!codes(&boxed).contains(&"dark_mode_text_without_background"));
        let grey = doc(DARK_READY, "<p style=\"color:#777777\">Hi</p>");
        assert!(!codes(&grey).contains(&"dark_mode_text_without_background"));
    }

    #[test]
    fn luminance_follows_wcag() {
        assert_eq!(luminance("#000"), Some(0.0));
        assert!((luminance("#ffffff").unwrap_or(0.0) - 1.0).abs() < 1e-9);
        assert!((luminance("#808080").unwrap_or(0.0) - 0.2158605).abs() < 1e-6);
        assert_eq!(luminance("red"), None);
    }

    #[test]
    fn links_are_listed_once_and_sorted_by_what_can_be_checked() {
        let html = doc(
            "",
            "<a href=\"https://shop.example/dress\">The <b>dress</b></a>\
             <a href=\"https://shop.example/dress\">again</a>\
             <a href=\"https://missive.example/u/tok\">Unsubscribe</a>\
             <a href=\"mailto:help@shop.example\">Write</a><a href=\"tel:+331\">Call</a>\
             <a href=\"#top\">Top</a><a href=\"{{ url }}\">Broken</a><a>None</a>\
             <a href=\"https://shop.example/\"><img src=\"logo.png\" alt=\"Lumen\"></a>",
        );
        let found: Vec<(String, String, LinkKind)> = links(&html, &["https://missive.example/"])
            .into_iter()
            .map(|l| (l.href, l.text, l.kind))
            .collect();
        let row = |h: &str, t: &str, k| (h.to_owned(), t.to_owned(), k);
        assert_eq!(
            found,
            vec![
                row("https://shop.example/dress", "The dress", LinkKind::Web),
                row("https://missive.example/u/tok", "Unsubscribe", LinkKind::Own),
                row("mailto:help@shop.example", "Write", LinkKind::Mail),
                row("tel:+331", "Call", LinkKind::Phone),
                row("#top", "Top", LinkKind::Anchor),
                row("{{ url }}", "Broken", LinkKind::Broken),
                row("", "None", LinkKind::Broken),
                row("https://shop.example/", "image: Lumen", LinkKind::Web),
            ]
        );
    }
}
