//! E-mail templates: the source an author writes, compiled once per version into Liquid
//! templates, rendered per recipient.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use missive_liquid::{Env, Limits, Object, PartialError, Partials, Template};
use serde::{Deserialize, Serialize};

use crate::blocks::Selection;
use crate::{ContentError, layout};

/// How the body is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = TemplateLayout)]
pub enum Layout {
    /// MJML, compiled to responsive HTML by mrml.
    #[default]
    Mjml,
    /// HTML as written; its `<style>` rules are inlined.
    Html,
}

/// A template as its author wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateSource {
    pub subject: String,
    #[serde(default)]
    pub preheader: String,
    #[serde(default)]
    pub layout: Layout,
    /// The body: MJML or HTML, with Liquid inside.
    pub body: String,
    /// The plain-text part; derived from the HTML when absent.
    #[serde(default)]
    pub text: Option<String>,
}

/// A template ready to render: each part parsed once.
#[derive(Debug)]
pub struct CompiledTemplate {
    subject: Template,
    html: Template,
    text: Template,
    /// The HTML Liquid template after layout compilation (for lint and inspection).
    pub html_source: String,
    /// The text Liquid template, written or derived.
    pub text_source: String,
    /// The content-block slots the body names, in order of first appearance.
    pub slots: Vec<String>,
    /// The recommendation lists it reads (its blocks' are the block set's).
    pub recs_wanted: crate::data::RecsWanted,
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RenderedEmail {
    pub subject: String,
    pub html: String,
    pub text: String,
    /// Which block each slot got (`None`: nothing matched and the slot rendered empty).
    pub blocks: BTreeMap<String, Option<String>>,
    /// Unknown filter names met while rendering (skipped, so their input printed as is).
    /// Filled only by [`CompiledTemplate::render_with_diagnostics`], for lint.
    #[serde(skip)]
    pub unknown_filters: BTreeSet<String>,
}

/// Per-render settings.
pub struct RenderOptions<'a> {
    pub limits: Limits,
    pub time_zone: chrono_tz::Tz,
    pub now: chrono::DateTime<chrono::Utc>,
    pub currency: &'a str,
}

impl CompiledTemplate {
    pub fn compile(source: &TemplateSource) -> Result<Self, ContentError> {
        if source.subject.trim().is_empty() {
            return Err(ContentError::Invalid("a template needs a subject".into()));
        }
        // Liquid errors are reported where the author wrote them, not in the compiled HTML.
        Template::parse(&source.body).map_err(|e| ContentError::liquid("body", e))?;
        if let Some(text) = &source.text {
            Template::parse(text).map_err(|e| ContentError::liquid("text", e))?;
        }
        let body = match source.layout {
            Layout::Mjml => layout::compile_mjml(&source.body)?,
            Layout::Html => layout::inline_css(&source.body)?,
        };
        let html_source = insert_preheader(&body, &source.preheader);
        let text_source = match &source.text {
            Some(t) if !t.trim().is_empty() => t.clone(),
            _ => layout::text_from_html(&body)?,
        };
        let subject = Template::parse(&source.subject).map_err(|e| ContentError::liquid("subject", e))?;
        Template::parse(&source.preheader).map_err(|e| ContentError::liquid("preheader", e))?;
        let html = Template::parse(&html_source).map_err(|e| ContentError::liquid("html", e))?;
        let text = Template::parse(&text_source).map_err(|e| ContentError::liquid("text", e))?;
        let mut compiled = CompiledTemplate {
            subject,
            html,
            text,
            recs_wanted: Default::default(),
            slots: block_slots(&html_source),
            html_source,
            text_source,
        };
        compiled.recs_wanted = crate::data::RecsWanted::of(compiled.variables().iter().map(String::as_str));
        Ok(compiled)
    }

    /// Renders the e-mail for one recipient. `blocks` holds the block chosen for each slot.
    pub fn render(
        &self,
        data: &Object,
        blocks: &Selection,
        opts: &RenderOptions<'_>,
    ) -> Result<RenderedEmail, ContentError> {
        self.render_parts(data, blocks, opts, None)
    }

    /// The variables each part reads, e.g. `customer.first_name`.
    pub fn variables(&self) -> BTreeSet<String> {
        let mut all = self.subject.variables();
        all.extend(self.html.variables());
        all.extend(self.text.variables());
        all
    }

    /// Like [`render`](Self::render), and also returns the variables that were undefined:
    /// for lint.
    pub fn render_with_diagnostics(
        &self,
        data: &Object,
        blocks: &Selection,
        opts: &RenderOptions<'_>,
    ) -> Result<(RenderedEmail, BTreeSet<String>), ContentError> {
        let mut undefined = BTreeSet::new();
        let email = self.render_parts(data, blocks, opts, Some(&mut undefined))?;
        Ok((email, undefined))
    }

    fn render_parts(
        &self,
        data: &Object,
        blocks: &Selection,
        opts: &RenderOptions<'_>,
        mut undefined: Option<&mut BTreeSet<String>>,
    ) -> Result<RenderedEmail, ContentError> {
        // One budget for the whole e-mail: each part gets what the parts before it left.
        let started = std::time::Instant::now();
        let mut bytes_used = 0usize;
        let mut unknown_filters = BTreeSet::new();
        let mut part = |template: &Template, name: &str, text: bool| {
            let partials = BlockPartials {
                selection: blocks,
                text,
            };
            let mut limits = opts.limits;
            limits.max_output_bytes = limits.max_output_bytes.saturating_sub(bytes_used);
            limits.max_duration = limits.max_duration.map(|d| d.saturating_sub(started.elapsed()));
            let env = Env {
                strict_variables: false,
                strict_filters: false,
                limits,
                partials: &partials,
                time_zone: opts.time_zone,
                now: opts.now,
                currency: opts.currency.to_string(),
                escape_output: !text,
            };
            match undefined.as_deref_mut() {
                None => template.render(data, &env),
                Some(seen) => template.render_with_diagnostics(data, &env).map(|(out, d)| {
                    seen.extend(d.undefined_variables);
                    unknown_filters.extend(d.unknown_filters);
                    out
                }),
            }
            .inspect(|out| bytes_used += out.len())
            .map_err(|e| ContentError::liquid(name, e))
        };
        let subject = part(&self.subject, "subject", true)?;
        let html = part(&self.html, "html", false)?;
        let text = part(&self.text, "text", true)?;
        Ok(RenderedEmail {
            subject: one_line(&subject),
            html,
            text: layout::tidy_text(&text),
            blocks: self
                .slots
                .iter()
                .map(|s| (s.clone(), blocks.chosen_name(s)))
                .collect(),
            unknown_filters,
        })
    }
}

/// Feeds `{% block "slot" %}` from the selection: HTML or text versions.
struct BlockPartials<'a> {
    selection: &'a Selection,
    text: bool,
}

impl Partials for BlockPartials<'_> {
    fn partial(&self, _name: &str) -> Result<Arc<Template>, PartialError> {
        Err(PartialError::NotFound)
    }
    fn block(&self, slot: &str) -> Option<Arc<Template>> {
        let block = self.selection.chosen(slot)?;
        Some(if self.text {
            block.text.clone()
        } else {
            block.html.clone()
        })
    }
}

/// A subject line other than the template's (an experiment's variant): checked when the
/// experiment is created, rendered per recipient with the same data as the template.
pub struct Subject(Template);

impl Subject {
    pub fn parse(source: &str) -> Result<Self, ContentError> {
        if source.trim().is_empty() {
            return Err(ContentError::Invalid("a subject line cannot be empty".into()));
        }
        Template::parse(source)
            .map(Subject)
            .map_err(|e| ContentError::liquid("subject", e))
    }

    /// One header line, like a template's subject.
    pub fn render(&self, data: &Object, opts: &RenderOptions<'_>) -> Result<String, ContentError> {
        let env = Env {
            strict_variables: false,
            strict_filters: false,
            limits: opts.limits,
            partials: &NoBlocks,
            time_zone: opts.time_zone,
            now: opts.now,
            currency: opts.currency.to_string(),
            escape_output: false,
        };
        self.0
            .render(data, &env)
            .map(|s| one_line(&s))
            .map_err(|e| ContentError::liquid("subject", e))
    }
}

/// A subject line has no blocks or partials.
struct NoBlocks;

impl Partials for NoBlocks {
    fn partial(&self, _name: &str) -> Result<Arc<Template>, PartialError> {
        Err(PartialError::NotFound)
    }
    fn block(&self, _slot: &str) -> Option<Arc<Template>> {
        None
    }
}

/// A subject is one header line: whatever the data held, line breaks become spaces, so
/// nothing can be injected into the message headers.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The hidden preheader goes first in the body, where inbox previews read it.
fn insert_preheader(html: &str, preheader: &str) -> String {
    if preheader.trim().is_empty() {
        return html.to_string();
    }
    let div = format!(
        "<div style=\"display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;overflow:hidden;mso-hide:all\">{preheader}</div>"
    );
    let lower = html.to_ascii_lowercase();
    match lower
        .find("<body")
        .and_then(|b| lower[b..].find('>').map(|e| b + e + 1))
    {
        Some(at) => format!("{}{div}{}", &html[..at], &html[at..]),
        None => format!("{div}{html}"),
    }
}

/// The slot names of `{% block "name" %}` tags, in order of first appearance.
pub fn block_slots(source: &str) -> Vec<String> {
    let mut slots: Vec<String> = Vec::new();
    let mut rest = source;
    while let Some(p) = rest.find("{%") {
        let after = &rest[p + 2..];
        let Some(end) = after.find("%}") else { break };
        let inner = after[..end].trim_matches(|c: char| c == '-' || c.is_whitespace());
        if let Some(arg) = inner.strip_prefix("block") {
            let arg = arg.trim();
            let name = arg.trim_matches(|c| c == '"' || c == '\'');
            if arg.len() >= 2 && name.len() == arg.len() - 2 && !slots.iter().any(|s| s == name) {
                slots.push(name.to_string());
            }
        }
        rest = &after[end + 2..];
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_lose_line_breaks() {
        assert_eq!(
            one_line("Hello\r\nBcc: x@example.com"),
            "Hello Bcc: x@example.com"
        );
    }

    #[test]
    fn block_slots_are_found_once_in_order() {
        let s = r#"{% block "hero" %} x {%- block 'offer' -%} {% block "hero" %} {% blockquote %}"#;
        assert_eq!(block_slots(s), vec!["hero", "offer"]);
    }

    #[test]
    fn preheader_goes_right_after_body() {
        let html = insert_preheader("<html><BODY class=\"x\"><p>hi</p></BODY></html>", "{{ pre }}");
        assert!(
            html.starts_with("<html><BODY class=\"x\"><div style=\"display:none"),
            "{html}"
        );
        assert!(html.contains("{{ pre }}</div><p>hi</p>"));
    }
}
