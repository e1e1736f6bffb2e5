//! HTML to plain text, for the text part of an e-mail, written for templates.
//!
//! General converters (html2text and the like) build a DOM with the HTML5 tree builder,
//! which moves anything that is not a cell out of a table ("foster parenting"): a
//! `{% for %}` around table rows would end up before the table, and link footnotes would be
//! collected far from the loop that defines their URL. This converter reads the markup as a
//! flat stream instead, so Liquid placeholders stay exactly where they were, and it writes
//! links inline as `text (url)`.

/// Elements whose content is not shown.
const HIDDEN: &[&str] = &["head", "style", "script", "title", "template"];
/// Elements that start and end a paragraph.
const PARAGRAPH: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "ul",
    "ol",
    "blockquote",
    "pre",
];
/// Elements that start and end a line.
const LINE: &[&str] = &[
    "div", "tr", "br", "hr", "section", "article", "header", "footer", "li", "dt", "dd",
];

/// Converts HTML to text. `keep_comment` is asked about each comment's content and returns
/// the text to emit for it, if any (the Liquid placeholders).
///
/// `canonical` maps written text to what it will finally read (placeholders restored), to
/// recognise two links that say the same.
pub(crate) fn html_to_text(
    html: &str,
    keep_comment: impl Fn(&str) -> Option<String>,
    canonical: &dyn Fn(&str) -> String,
) -> String {
    let mut w = Writer {
        out: String::new(),
        last_link: None,
        canonical,
    };
    let mut hidden: Option<String> = None;
    let mut links: Vec<(String, usize)> = Vec::new();
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if hidden.is_none() {
                w.text(rest);
            }
            break;
        };
        if hidden.is_none() {
            w.text(&rest[..lt]);
        }
        rest = &rest[lt..];
        if let Some(body) = rest.strip_prefix("<!--") {
            let end = body.find("-->").unwrap_or(body.len());
            if hidden.is_none()
                && let Some(kept) = keep_comment(&body[..end])
            {
                w.raw(&kept);
            }
            rest = body.get(end + 3..).unwrap_or("");
            continue;
        }
        let starts_tag = rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!');
        if !starts_tag {
            // `<` that opens no tag, as in `a < b`.
            if hidden.is_none() {
                w.text("<");
            }
            rest = &rest[1..];
            continue;
        }
        let end = tag_end(rest);
        let tag = &rest[1..end.saturating_sub(1).max(1)];
        rest = &rest[end..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            // `<!DOCTYPE …>` and the like.
            continue;
        }
        if let Some(h) = &hidden {
            if closing && *h == name {
                hidden = None;
            }
            continue;
        }
        if HIDDEN.contains(&name.as_str()) && !closing && !tag.ends_with('/') {
            hidden = Some(name);
            continue;
        }
        match name.as_str() {
            "a" if !closing => links.push((attribute(tag, "href").unwrap_or_default(), w.out.len())),
            "a" => {
                if let Some((href, start)) = links.pop() {
                    w.close_link(&href, start);
                }
            }
            "img" if !links.is_empty() => {
                if let Some(alt) = attribute(tag, "alt") {
                    w.text(&alt);
                }
            }
            "td" | "th" if closing => w.space(),
            "li" if !closing => {
                w.newline();
                w.raw("- ");
            }
            n if PARAGRAPH.contains(&n) => w.paragraph(),
            n if LINE.contains(&n) => w.newline(),
            _ => {}
        }
    }
    w.out
}

/// The end (exclusive) of the tag starting at `s[0] == '<'`, skipping quoted attributes.
fn tag_end(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return i + 1,
            None => {}
        }
    }
    bytes.len()
}

/// The value of attribute `name` in a tag's text, entities decoded.
pub(crate) fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].find(name) {
        let at = from + p;
        from = at + name.len();
        let boundary = at > 0 && lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[from..].trim_start();
        if !boundary {
            continue;
        }
        if !after.starts_with('=') {
            if after.is_empty()
                || after.starts_with([' ', '/', '>'])
                || after.starts_with(char::is_alphabetic)
            {
                return Some(String::new());
            }
            continue;
        }
        let value = tag[tag.len() - after.len() + 1..].trim_start();
        let raw = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
            _ => value
                .split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or(""),
        };
        return Some(decode_entities(raw));
    }
    None
}

/// Decodes character references; a no-break space reads as a space in the text part.
pub(crate) fn decode_entities(s: &str) -> String {
    let decoded = missive_core::html::decode_entities(s);
    if s.contains("&nbsp;") {
        decoded.replace('\u{A0}', " ")
    } else {
        decoded
    }
}

struct Writer<'a> {
    out: String,
    canonical: &'a dyn Fn(&str) -> String,
    /// The last link written: (where it ended, its canonical text and URL), so that an image
    /// link followed by a text link to the same place is written once.
    last_link: Option<(usize, String)>,
}

impl Writer<'_> {
    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn text(&mut self, html_text: &str) {
        let decoded = decode_entities(html_text);
        for (i, word) in decoded.split(|c: char| c.is_whitespace()).enumerate() {
            let gap_before = i > 0 || decoded.starts_with(char::is_whitespace);
            if gap_before {
                self.space();
            }
            self.out.push_str(word);
        }
        if decoded.ends_with(char::is_whitespace) && !decoded.trim().is_empty() {
            self.space();
        }
    }

    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn space(&mut self) {
        if !self.at_line_start() && !self.out.ends_with(' ') {
            self.out.push(' ');
        }
    }

    fn newline(&mut self) {
        while self.out.ends_with(' ') {
            self.out.pop();
        }
        if !self.at_line_start() {
            self.out.push('\n');
        }
    }

    fn paragraph(&mut self) {
        self.newline();
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn close_link(&mut self, href: &str, start: usize) {
        let href = href.trim();
        if href.is_empty() || href.starts_with('#') || href.starts_with("mailto:") || href.starts_with("tel:")
        {
            return;
        }
        let text = self.out[start..].trim();
        if text.is_empty() {
            self.out.truncate(start);
            self.space();
            self.out.push_str(href);
        } else if text != href {
            while self.out.ends_with(' ') {
                self.out.pop();
            }
            self.out.push_str(" (");
            self.out.push_str(href);
            self.out.push(')');
        }
        let written = self.out[start..].trim().to_string();
        let at = self.out.len() - written.len();
        let same = (self.canonical)(&written);
        if let Some((last_end, last)) = &self.last_link
            && *last == same
            && self
                .out
                .get(*last_end..at)
                .is_some_and(|between| between.trim().is_empty())
        {
            // The same link twice in a row (an image, then its caption): keep one.
            self.out.truncate(start);
            while self.out.ends_with(' ') {
                self.out.pop();
            }
            return;
        }
        self.last_link = Some((self.out.len(), same));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(html: &str) -> String {
        crate::layout::tidy_text(&html_to_text(html, |_| None, &|s| s.to_string()))
    }

    #[test]
    fn paragraphs_lines_and_inline_links() {
        let html = "<html><head><title>x</title><style>p{}</style></head><body>\
            <h1>Hello&nbsp;Ann</h1><p>Your   cart is\n waiting.<br>Come <a href=\"https://s.example/c\">back</a>.</p>\
            <a href=\"https://s.example/l\"><img src=\"l.png\" alt=\"Logo\"></a>\
            <ul><li>one</li><li>two</li></ul><p>a &lt; b &amp;&amp; c &#8364; &#x20AC; 1 < 2</p></body></html>";
        assert_eq!(
            text(html),
            "Hello Ann\n\nYour cart is waiting.\nCome back (https://s.example/c).\n\nLogo (https://s.example/l)\n\n- one\n- two\n\na < b && c € € 1 < 2"
        );
    }

    #[test]
    fn table_rows_become_lines_and_cells_are_spaced() {
        let html =
            "<table><tr><td>Jacket</td><td>$129.00</td></tr><tr><td>Boots</td><td>$59.00</td></tr></table>";
        assert_eq!(text(html), "Jacket $129.00\nBoots $59.00");
    }

    #[test]
    fn kept_comments_stay_in_place_and_others_vanish() {
        let html =
            "<table><!--keep:for--><tr><td>x</td></tr><!--keep:end--><!--[if mso]>y<![endif]--></table>";
        let out = html_to_text(
            html,
            |c| c.strip_prefix("keep:").map(|s| format!("[{s}]")),
            &|s| s.to_string(),
        );
        assert_eq!(crate::layout::tidy_text(&out), "[for]\nx\n[end]");
    }

    #[test]
    fn attributes_decode_entities() {
        assert_eq!(
            attribute(r#"a href="x?a=1&amp;b=2""#, "href").as_deref(),
            Some("x?a=1&b=2")
        );
        assert_eq!(attribute(r#"img alt src=x"#, "alt").as_deref(), Some(""));
        assert_eq!(attribute(r#"img data-alt="no""#, "alt"), None);
    }
}
