//! HTML text: one escaper and one decoder of character references, for the Liquid engine's
//! output escaping, the tracking rewriter's attributes, the text part and the server's pages.

/// Appends `text` with `&`, `<`, `>`, `"` and `'` escaped: safe in element content and in
/// quoted attribute values. Shopify's `escape` filter escapes the same five.
pub fn escape_into(text: &str, out: &mut String) {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&text[last..]);
}

/// `text` escaped as [`escape_into`] does.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    escape_into(text, &mut out);
    out
}

/// The character a named reference stands for, among those e-mail HTML uses.
fn named(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{A0}',
        "middot" => '·',
        "copy" => '©',
        "reg" => '®',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "rsquo" => '’',
        "lsquo" => '‘',
        "zwnj" => '\u{200C}',
        _ => return None,
    })
}

/// Decodes character references (`&amp;`, `&#38;`, `&#x26;` and the named ones e-mail HTML
/// uses); anything else, unknown names included, is kept as written.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let end = rest[1..]
            .find(|c: char| c == ';' || c == '&' || c.is_whitespace())
            .map(|e| e + 1);
        let decoded = end
            .filter(|&e| rest.as_bytes().get(e) == Some(&b';'))
            .and_then(|e| {
                let name = &rest[1..e];
                let c = named(name).or_else(|| {
                    name.strip_prefix("#x")
                        .or_else(|| name.strip_prefix("#X"))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32)
                })?;
                Some((c, e + 1))
            });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            escape(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn references_decode_and_anything_else_is_kept() {
        assert_eq!(decode_entities("a?x=1&amp;y=2&#38;z=&#x33;"), "a?x=1&y=2&z=3");
        assert_eq!(
            decode_entities("&amp;amp; & &; &bogus; a&b"),
            "&amp; & &; &bogus; a&b"
        );
        assert_eq!(decode_entities("a&nbsp;b&hellip;"), "a\u{A0}b…");
        assert_eq!(decode_entities(&escape("<a href='x'>&</a>")), "<a href='x'>&</a>");
    }
}
