//! Lint: what would make an e-mail fail, look broken, or break the rules, found before it is
//! sent. The template is compiled and rendered for a sample recipient, then checked:
//! invalid MJML or Liquid, undefined variables (the strict pass), unknown filters, Gmail
//! clipping (HTML over 102 KB), images without `alt`, a missing unsubscribe link, and links
//! that are not https.

use std::collections::BTreeSet;

use missive_liquid::Object;
use serde::Serialize;

use crate::blocks::Selection;
use crate::template::{CompiledTemplate, RenderOptions, TemplateSource};
use crate::text::attribute;
use crate::{ContentError, RenderedEmail};

/// Gmail clips messages whose HTML is larger than this.
pub const GMAIL_CLIP_BYTES: usize = 102 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = LintSeverity)]
pub enum Severity {
    /// The e-mail must not be sent like this.
    Error,
    /// Probably a mistake, or bad for deliverability or accessibility.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LintIssue {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
}

impl LintIssue {
    fn error(code: &'static str, message: impl Into<String>) -> Self {
        LintIssue {
            severity: Severity::Error,
            code,
            message: message.into(),
        }
    }
    fn warning(code: &'static str, message: impl Into<String>) -> Self {
        LintIssue {
            severity: Severity::Warning,
            code,
            message: message.into(),
        }
    }
}

/// Lints a template rendered with `data` (a real or sample recipient). `marketing` e-mails
/// must carry an unsubscribe link.
pub fn lint(
    source: &TemplateSource,
    data: &Object,
    blocks: impl FnOnce(&CompiledTemplate) -> Selection,
    opts: &RenderOptions<'_>,
    marketing: bool,
) -> Vec<LintIssue> {
    let compiled = match CompiledTemplate::compile(source) {
        Ok(c) => c,
        Err(e) => return vec![compile_issue(&e)],
    };
    let selection = blocks(&compiled);
    match compiled.render_with_diagnostics(data, &selection, opts) {
        Ok((email, undefined)) => check_rendered(&email, &undefined, data, marketing),
        Err(e) => vec![LintIssue::error("render_error", e.to_string())],
    }
}

/// A compile or render error as a lint issue.
pub fn compile_issue(e: &ContentError) -> LintIssue {
    let code = match e {
        ContentError::Mjml(_) => "invalid_mjml",
        ContentError::Liquid { .. } => "liquid_syntax",
        ContentError::Layout(_) => "invalid_layout",
        ContentError::Invalid(_) => "invalid_template",
    };
    LintIssue::error(code, e.to_string())
}

/// The checks on a rendered e-mail.
pub fn check_rendered(
    email: &RenderedEmail,
    undefined: &BTreeSet<String>,
    data: &Object,
    marketing: bool,
) -> Vec<LintIssue> {
    let mut issues = Vec::new();
    for path in undefined {
        issues.push(LintIssue::warning(
            "undefined_variable",
            format!("`{path}` is not defined for this recipient and renders empty; add a `default`"),
        ));
    }
    for name in &email.unknown_filters {
        issues.push(LintIssue::warning(
            "unknown_filter",
            format!("`{name}` is not a Liquid filter: it is skipped and the value prints unfiltered"),
        ));
    }
    if email.subject.trim().is_empty() {
        issues.push(LintIssue::error("empty_subject", "the subject renders empty"));
    }
    if email.html.len() > GMAIL_CLIP_BYTES {
        issues.push(LintIssue::warning(
            "gmail_clipping",
            format!(
                "the HTML is {:.1} KB; Gmail clips messages over 102 KB, hiding the rest (and the unsubscribe link)",
                email.html.len() as f64 / 1024.0
            ),
        ));
    }
    let images_without_alt: Vec<String> = tags(&email.html, "img")
        .filter(|tag| attribute(tag, "alt").is_none())
        .map(|tag| attribute(tag, "src").unwrap_or_default())
        .collect();
    if !images_without_alt.is_empty() {
        issues.push(LintIssue::warning(
            "image_without_alt",
            format!(
                "{} image(s) without alt text (screen readers and blocked images show nothing): {}",
                images_without_alt.len(),
                preview_list(&images_without_alt)
            ),
        ));
    }
    let insecure: Vec<String> = tags(&email.html, "a")
        .chain(tags(&email.html, "img"))
        .filter_map(|tag| attribute(tag, "href").or_else(|| attribute(tag, "src")))
        .filter(|url| url.trim_start().to_ascii_lowercase().starts_with("http://"))
        .collect();
    if !insecure.is_empty() {
        issues.push(LintIssue::warning(
            "insecure_link",
            format!(
                "{} link(s) or image(s) not over https: {}",
                insecure.len(),
                preview_list(&insecure)
            ),
        ));
    }
    if marketing {
        let unsubscribe = match data.get("unsubscribe_url") {
            Some(missive_liquid::Value::Str(s)) if !s.is_empty() => Some(s.to_string()),
            _ => None,
        };
        let linked = unsubscribe.as_deref().is_some_and(|u| {
            tags(&email.html, "a").any(|t| attribute(t, "href").is_some_and(|h| h.starts_with(u)))
        });
        if !linked {
            issues.push(LintIssue::error(
                "missing_unsubscribe",
                "a marketing e-mail needs a visible unsubscribe link: <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
            ));
        }
    }
    issues
}

fn preview_list(items: &[String]) -> String {
    let mut shown: Vec<&str> = items.iter().take(3).map(String::as_str).collect();
    if items.len() > 3 {
        shown.push("…");
    }
    shown.join(", ")
}

/// The opening tags named `name` (case-insensitive), without the angle brackets.
fn tags<'a>(html: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let mut rest = html;
    std::iter::from_fn(move || {
        loop {
            let p = rest.find('<')?;
            let after = &rest[p + 1..];
            let end = after.find('>').unwrap_or(after.len());
            let tag = &after[..end];
            rest = &after[end..];
            let tag_name_len = tag.bytes().take_while(u8::is_ascii_alphanumeric).count();
            if tag[..tag_name_len].eq_ignore_ascii_case(name) {
                return Some(&tag[tag_name_len..]);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_with_any_quoting() {
        assert_eq!(
            attribute(r#" src="a.png" alt='x y'"#, "alt").as_deref(),
            Some("x y")
        );
        assert_eq!(attribute(r#" src=a.png alt"#, "alt").as_deref(), Some(""));
        assert_eq!(attribute(r#" data-alt="z" src=a.png"#, "alt"), None);
        assert_eq!(
            attribute(r#" HREF = "http://x""#, "href").as_deref(),
            Some("http://x")
        );
    }

    #[test]
    fn tags_are_found_case_insensitively() {
        let html = r#"<p><IMG src="a"><img alt="" src="b"><image src="c"></p>"#;
        let found: Vec<&str> = tags(html, "img").collect();
        assert_eq!(found.len(), 2);
    }
}
