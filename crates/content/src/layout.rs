//! From an author's layout (MJML or HTML, with Liquid inside) to the Liquid templates that are
//! rendered per recipient: MJML compiled with mrml, CSS inlined with css-inline, and a text
//! part derived with html2text. All of it happens once per template version.
//!
//! Liquid markup is not HTML, and both mrml and the HTML5 parser behind css-inline would
//! mangle it (a `{% for %}` between table rows is moved out of the table; `&` in a filter
//! argument is escaped). So every piece of Liquid is first swapped for a placeholder that
//! the parsers carry through untouched, and swapped back at the end: an HTML comment where
//! the markup stands in text, a plain word where it stands inside a tag's attributes.

use crate::ContentError;

/// Liquid markup replaced by placeholders.
#[derive(Debug)]
pub(crate) struct Protected {
    pub text: String,
    pieces: Vec<String>,
}

const COMMENT_OPEN: &str = "<!--mq:";
const COMMENT_CLOSE: &str = "-->";
const WORD_OPEN: &str = "mqliquid";
const WORD_CLOSE: &str = "qm";

/// Swaps each `{{ … }}`, `{% … %}` and `{% raw %}…{% endraw %}` for a placeholder, choosing
/// the form by where it stands: inside a tag (between `<` and `>`) or in text.
pub(crate) fn protect(source: &str) -> Result<Protected, ContentError> {
    let mut text = String::with_capacity(source.len());
    let mut pieces = Vec::new();
    let bytes = source.as_bytes();
    let mut in_tag = false;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'{' && i + 1 < bytes.len() && (bytes[i + 1] == b'{' || bytes[i + 1] == b'%') {
            let end = liquid_markup_end(source, i)?;
            text.push_str(&source[copied..i]);
            let n = pieces.len();
            pieces.push(source[i..end].to_string());
            if in_tag {
                text.push_str(&format!("{WORD_OPEN}{n}{WORD_CLOSE}"));
            } else {
                text.push_str(&format!("{COMMENT_OPEN}{n}{COMMENT_CLOSE}"));
            }
            i = end;
            copied = end;
            continue;
        }
        if !in_tag && bytes[i..].starts_with(b"<!--") {
            // Comments (and Outlook's conditional comments) are copied as they are.
            let end = source[i + 4..]
                .find("-->")
                .map(|p| i + 4 + p + 3)
                .unwrap_or(bytes.len());
            i = end;
            continue;
        }
        match b {
            b'<' if !in_tag
                && bytes
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'/') =>
            {
                in_tag = true
            }
            b'>' if in_tag => in_tag = false,
            _ => {}
        }
        i += 1;
    }
    text.push_str(&source[copied..]);
    Ok(Protected { text, pieces })
}

/// The end (exclusive) of the Liquid markup starting at `start`, skipping quoted strings, and
/// taking a whole `{% raw %}…{% endraw %}` as one piece.
fn liquid_markup_end(source: &str, start: usize) -> Result<usize, ContentError> {
    let closer = if source[start..].starts_with("{{") {
        "}}"
    } else {
        "%}"
    };
    let bytes = source.as_bytes();
    let mut i = start + 2;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if bytes[i..].starts_with(closer.as_bytes()) => {
                let end = i + 2;
                let inner = source[start + 2..i].trim_matches(|c: char| c == '-' || c.is_whitespace());
                if closer == "%}" && (inner == "raw" || inner.starts_with("comment")) {
                    let end_tag = if inner == "raw" { "endraw" } else { "endcomment" };
                    return Ok(find_end_tag(source, end, end_tag).unwrap_or(source.len()));
                }
                return Ok(end);
            }
            None => {}
        }
        i += 1;
    }
    let line = source[..start].matches('\n').count() + 1;
    Err(ContentError::Layout(format!(
        "line {line}: Liquid markup opened with {:?} is never closed with {closer:?}",
        &source[start..start + 2]
    )))
}

/// The end of `{% end_tag %}` (with optional whitespace control) at or after `from`.
fn find_end_tag(source: &str, from: usize, end_tag: &str) -> Option<usize> {
    let mut at = from;
    while let Some(p) = source[at..].find("{%") {
        let open = at + p;
        let close = source[open..].find("%}")? + open + 2;
        let inner = source[open + 2..close - 2].trim_matches(|c: char| c == '-' || c.is_whitespace());
        if inner == end_tag {
            return Some(close);
        }
        at = close;
    }
    None
}

impl Protected {
    /// Puts the Liquid markup back in place of its placeholders.
    pub fn restore(&self, html: &str) -> String {
        self.replace_placeholders(html, |n| self.pieces.get(n).map(String::as_str))
    }

    /// Like [`restore`](Self::restore), but every piece of Liquid must come back: a parser
    /// that dropped one (Liquid at the top level of a `<style>`, say) would otherwise change
    /// the template without a word.
    pub fn restore_all(&self, html: &str) -> Result<String, ContentError> {
        let seen = std::cell::RefCell::new(vec![false; self.pieces.len()]);
        let out = self.replace_placeholders(html, |n| {
            let piece = self.pieces.get(n).map(String::as_str);
            if piece.is_some() {
                seen.borrow_mut()[n] = true;
            }
            piece
        });
        if let Some(lost) = seen.borrow().iter().position(|s| !s) {
            return Err(ContentError::Layout(format!(
                "the layout compiler dropped Liquid markup {:?}; Liquid inside <style> or <mj-style> is only kept inside a declaration's value",
                self.pieces[lost]
            )));
        }
        Ok(out)
    }

    fn replace_placeholders<'a>(&'a self, s: &str, piece: impl Fn(usize) -> Option<&'a str>) -> String {
        let mut out = String::with_capacity(s.len() + self.pieces.iter().map(String::len).sum::<usize>());
        let forms = [(COMMENT_OPEN, COMMENT_CLOSE), (WORD_OPEN, WORD_CLOSE)];
        // The next occurrence of each form, searched again only once the cursor passes it:
        // searching both from every placeholder was quadratic when one form never occurs.
        let find_from = |open: &str, from: usize| s[from..].find(open).map(|p| from + p);
        let mut next = forms.map(|(open, _)| find_from(open, 0));
        let mut cursor = 0;
        loop {
            for (n, (open, _)) in forms.iter().enumerate() {
                if next[n].is_some_and(|at| at < cursor) {
                    next[n] = find_from(open, cursor);
                }
            }
            let Some((at, (open, close))) = next
                .iter()
                .zip(forms)
                .filter_map(|(at, form)| at.map(|a| (a, form)))
                .min_by_key(|(at, _)| *at)
            else {
                break;
            };
            out.push_str(&s[cursor..at]);
            let after = &s[at + open.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let restored = (digits > 0 && after[digits..].starts_with(close))
                .then(|| after[..digits].parse::<usize>().ok().and_then(&piece))
                .flatten();
            match restored {
                Some(markup) => {
                    out.push_str(markup);
                    cursor = at + open.len() + digits + close.len();
                }
                None => {
                    out.push_str(open);
                    cursor = at + open.len();
                }
            }
        }
        out.push_str(&s[cursor..]);
        out
    }
}

/// Compiles MJML (with Liquid inside) into HTML (with the same Liquid inside).
pub fn compile_mjml(source: &str) -> Result<String, ContentError> {
    let protected = protect(source)?;
    let parsed = mrml::parse(&protected.text).map_err(|e| ContentError::Mjml(e.to_string()))?;
    let opts = mrml::prelude::render::RenderOptions::default();
    let html = parsed
        .element
        .render(&opts)
        .map_err(|e| ContentError::Mjml(e.to_string()))?;
    let inlined = inline_css_protected(&html)?;
    protected.restore_all(&inlined)
}

/// Inlines the `<style>` rules of an HTML layout (with Liquid inside) into `style`
/// attributes, keeping `@media` rules in a `<style>` for clients that honour them. No remote
/// stylesheet is ever fetched.
pub fn inline_css(source: &str) -> Result<String, ContentError> {
    let protected = protect(source)?;
    let inlined = inline_css_protected(&protected.text)?;
    protected.restore_all(&inlined)
}

fn inline_css_protected(html: &str) -> Result<String, ContentError> {
    let inliner = css_inline::CSSInliner::options()
        .load_remote_stylesheets(false)
        .keep_at_rules(true)
        .keep_style_tags(false)
        .build();
    inliner
        .inline(html)
        .map_err(|e| ContentError::Layout(format!("css inlining failed: {e}")))
}

/// Derives a plain-text Liquid template from an HTML Liquid template: the text a reader of
/// the HTML would see, links inline as `text (url)`, with the Liquid markup kept in place.
pub fn text_from_html(html_template: &str) -> Result<String, ContentError> {
    let protected = protect(html_template)?;
    let text = crate::text::html_to_text(
        &protected.text,
        |comment| {
            let n = comment.strip_prefix("mq:")?;
            n.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| format!("{COMMENT_OPEN}{n}{COMMENT_CLOSE}"))
        },
        &|s| protected.restore(s),
    );
    Ok(protected.restore(&tidy_text(&text)))
}

/// Collapses runs of blank lines (left behind by Liquid tags on their own lines) to one.
pub fn tidy_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liquid_survives_mjml_compilation_in_text_and_attributes() {
        let src = r#"<mjml><mj-body>
{% for item in cart.items %}
<mj-section><mj-column>
<mj-image src="{{ item.image_url }}" alt="{{ item.title | escape }}"></mj-image>
<mj-text>Hi {{ customer.first_name | default: "there" }} &amp; {{ item.title }}{% if item.price > 10 %} (big){% endif %}</mj-text>
<mj-button href="{{ item.url | url_param: 'utm_source', 'email' }}">Buy</mj-button>
</mj-column></mj-section>
{% endfor %}
</mj-body></mjml>"#;
        let html = compile_mjml(src).unwrap();
        assert!(html.contains(r#"src="{{ item.image_url }}""#), "{html}");
        assert!(
            html.contains(r#"{{ customer.first_name | default: "there" }}"#),
            "{html}"
        );
        assert!(
            html.contains("{% if item.price > 10 %} (big){% endif %}"),
            "{html}"
        );
        assert!(
            html.contains("{{ item.url | url_param: 'utm_source', 'email' }}"),
            "{html}"
        );
        let open = html.find("{% for item in cart.items %}").unwrap();
        let close = html.find("{% endfor %}").unwrap();
        assert!(open < html.find("{{ item.image_url }}").unwrap());
        assert!(close > html.find("Buy").unwrap());
        assert!(!html.contains("mq:") && !html.contains(WORD_OPEN));
    }

    #[test]
    fn liquid_between_table_rows_is_not_moved_by_the_html_parser() {
        let src = "<html><head><style>td { color: red }</style></head><body><table>\
                   {% for p in products %}<tr><td>{{ p.title }}</td></tr>{% endfor %}</table></body></html>";
        let html = inline_css(src).unwrap();
        let table = html.find("<table>").unwrap();
        assert!(html.find("{% for p in products %}").unwrap() > table, "{html}");
        assert!(
            html.contains(r#"<td style="color: red;">{{ p.title }}</td>"#),
            "{html}"
        );
    }

    #[test]
    fn raw_blocks_and_comments_are_kept_whole() {
        let p = protect("a {% raw %}{{ x }}{% endraw %} b {% comment %}<p>{% endcomment %}").unwrap();
        assert_eq!(p.pieces.len(), 2);
        assert_eq!(p.pieces[0], "{% raw %}{{ x }}{% endraw %}");
        assert_eq!(
            p.restore(&p.text),
            "a {% raw %}{{ x }}{% endraw %} b {% comment %}<p>{% endcomment %}"
        );
    }

    #[test]
    fn unclosed_liquid_is_a_layout_error_with_a_line() {
        let e = protect("<p>\n{{ customer.name </p>").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn text_part_keeps_liquid_and_links() {
        let text = text_from_html(
            "<html><body><h1>Hello {{ name }}</h1><p>{% for p in products %}{{ p.title }} {% endfor %}</p>\
             <a href=\"{{ url }}\">Shop now</a></body></html>",
        )
        .unwrap();
        assert!(text.contains("Hello {{ name }}"), "{text}");
        assert!(
            text.contains("{% for p in products %}{{ p.title }} {% endfor %}"),
            "{text}"
        );
        assert!(text.contains("{{ url }}"), "{text}");
    }

    #[test]
    fn liquid_a_layout_compiler_would_drop_is_an_error_not_a_silent_change() {
        let src = "<html><head><style>{% if vip %}p { color: gold }{% endif %}</style></head><body><p>x</p></body></html>";
        let e = inline_css(src).unwrap_err();
        assert!(e.to_string().contains("{% if vip %}"), "{e}");
    }

    #[test]
    fn invalid_mjml_is_reported() {
        let e = compile_mjml("<mjml><mj-body><mj-section></mj-body></mjml>").unwrap_err();
        assert!(matches!(e, ContentError::Mjml(_)), "{e}");
    }
}
