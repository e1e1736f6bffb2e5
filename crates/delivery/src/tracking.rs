//! Stateless tracking tokens: each URL carries what it stands for (message, target, profile) and
//! an HMAC over it, so the tracking endpoint needs no lookup and cannot be turned into an open
//! redirect: it only follows http(s) URLs this key signed.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::DeliveryError;

type HmacSha256 = Hmac<Sha256>;

/// 128 bits of HMAC-SHA256: plenty against forgery, and keeps URLs short.
const MAC_LEN: usize = 16;
const MIN_KEY_LEN: usize = 32;
/// Longer tokens are refused before any work; a real one is a URL and an id.
const MAX_TOKEN_LEN: usize = 8 * 1024;

const KIND_CLICK: u8 = b'c';
const KIND_OPEN: u8 = b'o';
const KIND_UNSUBSCRIBE: u8 = b'u';
const KIND_PREFERENCES: u8 = b'p';
const KIND_FORM: u8 = b'f';

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("tracking token is malformed")]
    Malformed,
    #[error("tracking token signature does not match")]
    BadSignature,
    #[error("tracking token is for another kind of link")]
    WrongKind,
    #[error("tracking token target is not an http or https url")]
    UnsafeUrl,
    #[error("link has expired")]
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub message_id: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub message_id: String,
}

/// A preference-centre link: whose preferences, and until when (Unix seconds) it opens them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceLink {
    pub profile_id: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub profile_id: String,
    pub message_id: String,
}

/// Signs and verifies tracking URLs with one secret key.
#[derive(Clone)]
pub struct LinkSigner {
    /// The keyed HMAC state, cloned for each token.
    mac: HmacSha256,
}

impl fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSigner").field("key", &"<redacted>").finish()
    }
}

impl LinkSigner {
    /// `key` is a secret of at least 32 random bytes.
    pub fn new(key: &[u8]) -> Result<Self, DeliveryError> {
        if key.len() < MIN_KEY_LEN {
            return Err(DeliveryError::LinkKeyTooShort {
                min: MIN_KEY_LEN,
                got: key.len(),
            });
        }
        let mac = <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| DeliveryError::LinkKeyTooShort {
            min: MIN_KEY_LEN,
            got: key.len(),
        })?;
        Ok(Self { mac })
    }

    /// `{base}/t/c/{token}`: redirects to `target_url` and records a click.
    pub fn click_url(&self, base_url: &str, message_id: &str, target_url: &str) -> String {
        format!(
            "{}/t/c/{}",
            trim_base(base_url),
            self.token(KIND_CLICK, &[message_id, target_url])
        )
    }

    /// Verifies a click token (the last path segment of a click URL).
    pub fn verify_click(&self, token: &str) -> Result<Click, TokenError> {
        let [message_id, url] = self.open_token(KIND_CLICK, token)?;
        if !is_http_url(&url) {
            return Err(TokenError::UnsafeUrl);
        }
        Ok(Click { message_id, url })
    }

    /// `{base}/t/o/{token}.gif`: the open pixel.
    pub fn open_url(&self, base_url: &str, message_id: &str) -> String {
        format!(
            "{}/t/o/{}.gif",
            trim_base(base_url),
            self.token(KIND_OPEN, &[message_id])
        )
    }

    /// Verifies an open token, with or without its `.gif` suffix.
    pub fn verify_open(&self, token: &str) -> Result<Open, TokenError> {
        let token = token.strip_suffix(".gif").unwrap_or(token);
        let [message_id] = self.open_token(KIND_OPEN, token)?;
        Ok(Open { message_id })
    }

    /// `{base}/u/{token}`: the one-click unsubscribe URL (also the List-Unsubscribe target).
    pub fn unsubscribe_url(&self, base_url: &str, profile_id: &str, message_id: &str) -> String {
        format!(
            "{}/u/{}",
            trim_base(base_url),
            self.token(KIND_UNSUBSCRIBE, &[profile_id, message_id])
        )
    }

    pub fn verify_unsubscribe(&self, token: &str) -> Result<Unsubscribe, TokenError> {
        let [profile_id, message_id] = self.open_token(KIND_UNSUBSCRIBE, token)?;
        Ok(Unsubscribe {
            profile_id,
            message_id,
        })
    }

    /// `{base}/preferences/{token}`: the preference centre of `profile_id`, valid until
    /// `expires_at` (Unix seconds).
    pub fn preferences_url(&self, base_url: &str, profile_id: &str, expires_at: i64) -> String {
        format!(
            "{}/preferences/{}",
            trim_base(base_url),
            self.token(KIND_PREFERENCES, &[profile_id, &expires_at.to_string()])
        )
    }

    /// Verifies a preference-centre token at `now` (Unix seconds).
    pub fn verify_preferences(&self, token: &str, now: i64) -> Result<PreferenceLink, TokenError> {
        let [profile_id, expires] = self.open_token(KIND_PREFERENCES, token)?;
        let expires_at: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        if now >= expires_at {
            return Err(TokenError::Expired);
        }
        Ok(PreferenceLink {
            profile_id,
            expires_at,
        })
    }

    /// The anti-forgery value of the forms on a preference-centre page: bound to the page's
    /// link token, and useless with any other.
    pub fn form_token(&self, link_token: &str) -> String {
        self.token(KIND_FORM, &[link_token])
    }

    /// Whether `form_token` was issued for `link_token` (constant-time).
    pub fn verify_form_token(&self, link_token: &str, form_token: &str) -> bool {
        self.open_token::<1>(KIND_FORM, form_token)
            .is_ok_and(|[bound]| bound == link_token)
    }

    /// Rewrites every `<a href="http(s)://…">` in `html` to its click URL (except mailto:, tel:,
    /// fragments and URLs `skip` keeps, such as the unsubscribe link), and puts the open pixel
    /// right before `</body>` (or at the end). `skip` sees the decoded href.
    pub fn rewrite_html(
        &self,
        html: &str,
        base_url: &str,
        message_id: &str,
        skip: impl Fn(&str) -> bool,
    ) -> String {
        let mut out = String::with_capacity(html.len() + 512);
        let bytes = html.as_bytes();
        let mut copied = 0;
        let mut i = 0;
        while let Some(offset) = html[i..].find('<') {
            let start = i + offset;
            i = start + 1;
            if let Some(end) = raw_text_end(html, start) {
                i = end;
                continue;
            }
            if !is_anchor_start(bytes, start) {
                continue;
            }
            let Some(tag) = scan_tag(html, start + 2) else {
                break;
            };
            if let Some(href) = tag.href {
                let decoded = missive_core::html::decode_entities(&html[href.value.0..href.value.1]);
                let target = decoded.trim();
                if is_http_url(target) && !skip(target) {
                    out.push_str(&html[copied..href.attr.0]);
                    out.push_str("href=\"");
                    out.push_str(&missive_core::html::escape(
                        &self.click_url(base_url, message_id, target),
                    ));
                    out.push('"');
                    copied = href.attr.1;
                }
            }
            i = tag.end;
        }
        out.push_str(&html[copied..]);

        let pixel = format!(
            "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:none\">",
            missive_core::html::escape(&self.open_url(base_url, message_id))
        );
        insert_before_body_end(&mut out, &pixel);
        out
    }

    /// Rewrites every http(s) URL of a plain-text part to its click URL, as [`rewrite_html`]
    /// does for links, except the URLs `skip` keeps. Where a URL ends (before a closing
    /// parenthesis or a full stop that follows it) is linkify's call.
    ///
    /// [`rewrite_html`]: Self::rewrite_html
    pub fn rewrite_text(
        &self,
        text: &str,
        base_url: &str,
        message_id: &str,
        skip: impl Fn(&str) -> bool,
    ) -> String {
        let mut finder = linkify::LinkFinder::new();
        finder.kinds(&[linkify::LinkKind::Url]);
        let mut out = String::with_capacity(text.len() + 256);
        let mut copied = 0;
        for link in finder.links(text) {
            let url = link.as_str();
            if !is_http_url(url) || skip(url) {
                continue;
            }
            out.push_str(&text[copied..link.start()]);
            out.push_str(&self.click_url(base_url, message_id, url));
            copied = link.end();
        }
        out.push_str(&text[copied..]);
        out
    }

    fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    /// base64url(kind ‖ (len u16 ‖ field)* ‖ mac[..16])
    fn token(&self, kind: u8, fields: &[&str]) -> String {
        let mut payload = vec![kind];
        for field in fields {
            // Fields longer than 64 KiB are cut; no id or URL a message carries is that long.
            let field = &field.as_bytes()[..field.len().min(usize::from(u16::MAX))];
            payload.extend_from_slice(&(field.len() as u16).to_be_bytes());
            payload.extend_from_slice(field);
        }
        let mut mac = self.mac();
        mac.update(&payload);
        payload.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(payload)
    }

    fn open_token<const N: usize>(&self, kind: u8, token: &str) -> Result<[String; N], TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| TokenError::Malformed)?;
        if raw.len() < 1 + MAC_LEN {
            return Err(TokenError::Malformed);
        }
        let (payload, tag) = raw.split_at(raw.len() - MAC_LEN);
        let mut mac = self.mac();
        mac.update(payload);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(tag)
            .map_err(|_| TokenError::BadSignature)?;
        if payload[0] != kind {
            return Err(TokenError::WrongKind);
        }
        let mut rest = &payload[1..];
        let mut fields: [String; N] = std::array::from_fn(|_| String::new());
        for field in &mut fields {
            let (len, tail) = rest.split_first_chunk::<2>().ok_or(TokenError::Malformed)?;
            let len = usize::from(u16::from_be_bytes(*len));
            if tail.len() < len {
                return Err(TokenError::Malformed);
            }
            let (value, tail) = tail.split_at(len);
            *field = String::from_utf8(value.to_vec()).map_err(|_| TokenError::Malformed)?;
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(fields)
    }
}

fn trim_base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// An absolute http(s) URL with a host and nothing a browser would reinterpret (controls,
/// spaces, backslashes).
fn is_http_url(url: &str) -> bool {
    let lower_prefix = |p: &str| url.get(..p.len()).is_some_and(|s| s.eq_ignore_ascii_case(p));
    let rest = if lower_prefix("https://") {
        &url[8..]
    } else if lower_prefix("http://") {
        &url[7..]
    } else {
        return false;
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    !rest[..host_end].is_empty()
        && !url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}

fn is_anchor_start(bytes: &[u8], start: usize) -> bool {
    bytes
        .get(start + 1)
        .is_some_and(|b| b.eq_ignore_ascii_case(&b'a'))
        && bytes
            .get(start + 2)
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
}

/// If `<` at `start` opens a `<style>` or `<script>` element, where `<a` is text, not a tag,
/// returns the index just past its closing tag.
fn raw_text_end(html: &str, start: usize) -> Option<usize> {
    for name in ["style", "script"] {
        let open = html.get(start + 1..start + 1 + name.len())?;
        let after = html.as_bytes().get(start + 1 + name.len());
        if open.eq_ignore_ascii_case(name)
            && after.is_some_and(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
        {
            let close = format!("</{name}");
            let from = start + 1 + name.len();
            return Some(
                find_ignore_case(&html[from..], &close)
                    .map(|at| from + at + close.len())
                    .unwrap_or(html.len()),
            );
        }
    }
    None
}

struct Href {
    /// The whole attribute, `href="…"`.
    attr: (usize, usize),
    /// The raw value, between the quotes.
    value: (usize, usize),
}

struct Tag {
    href: Option<Href>,
    /// Just past the `>`.
    end: usize,
}

/// Scans the attributes of a start tag from `i` (just past its name) to its `>`.
fn scan_tag(html: &str, mut i: usize) -> Option<Tag> {
    let bytes = html.as_bytes();
    let mut href = None;
    loop {
        while bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'/')
        {
            i += 1;
        }
        if *bytes.get(i)? == b'>' {
            return Some(Tag { href, end: i + 1 });
        }
        let name_start = i;
        while bytes
            .get(i)
            .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b'=' | b'>' | b'/'))
        {
            i += 1;
        }
        let name = &html[name_start..i];
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let (value, end) = match bytes.get(i)? {
            quote @ (b'"' | b'\'') => {
                let close = html[i + 1..].find(char::from(*quote))? + i + 1;
                ((i + 1, close), close + 1)
            }
            _ => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|b| !b.is_ascii_whitespace() && *b != b'>')
                {
                    i += 1;
                }
                ((start, i), i)
            }
        };
        i = end;
        if href.is_none() && name.eq_ignore_ascii_case("href") {
            href = Some(Href {
                attr: (name_start, end),
                value,
            });
        }
    }
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Puts `snippet` right before the last `</body` (any case), or at the end when there is none.
pub fn insert_before_body_end(html: &mut String, snippet: &str) {
    match rfind_ignore_case(html, "</body") {
        Some(at) => html.insert_str(at, snippet),
        None => html.push_str(snippet),
    }
}

fn rfind_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .rposition(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LinkSigner {
        LinkSigner::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(matches!(
            LinkSigner::new(b"short"),
            Err(DeliveryError::LinkKeyTooShort { got: 5, .. })
        ));
    }

    #[test]
    fn preference_links_expire_and_bind_their_forms() {
        let s = signer();
        let url = s.preferences_url("https://t.example/", "prf_1", 1_000);
        let token = url.strip_prefix("https://t.example/preferences/").unwrap();
        assert_eq!(
            s.verify_preferences(token, 999),
            Ok(PreferenceLink {
                profile_id: "prf_1".into(),
                expires_at: 1_000
            })
        );
        assert_eq!(s.verify_preferences(token, 1_000), Err(TokenError::Expired));
        // Another key's token, and a click token, do not open it.
        let other = LinkSigner::new(&[8u8; 32]).unwrap();
        assert_eq!(other.verify_preferences(token, 0), Err(TokenError::BadSignature));
        let click = s.click_url("", "m", "https://x.example");
        assert_eq!(
            s.verify_preferences(click.strip_prefix("/t/c/").unwrap(), 0),
            Err(TokenError::WrongKind)
        );
        let form = s.form_token(token);
        assert!(s.verify_form_token(token, &form));
        let other_link = s.preferences_url("", "prf_2", 1_000);
        assert!(!s.verify_form_token(other_link.strip_prefix("/preferences/").unwrap(), &form));
        assert!(!s.verify_form_token(token, "forged"));
    }

    #[test]
    fn only_absolute_http_urls_are_followed() {
        assert!(is_http_url("https://shop.example/p?a=1"));
        assert!(is_http_url("HTTP://shop.example"));
        assert!(!is_http_url("javascript:alert(1)"));
        assert!(!is_http_url("https://"));
        assert!(!is_http_url("https:///evil"));
        assert!(!is_http_url("//evil.example"));
        assert!(!is_http_url("https://shop.example/\\evil"));
    }

    #[test]
    fn anchors_inside_style_elements_are_left_alone() {
        let html = "<style>a{}/*<a href=\"https://x.example\">*/</style><a href=\"https://y.example\">y</a>";
        let out = signer().rewrite_html(html, "https://t.example", "m1", |_| false);
        assert!(out.contains("<a href=\"https://x.example\">"));
        assert!(!out.contains("https://y.example\""));
    }

    #[test]
    fn links_in_the_text_part_are_tracked_like_the_htmls() {
        let s = signer();
        let text = "Return to your cart (https://shop.example/cart?a=1&b=2).\n\
                    Unsubscribe: https://t.example/u/tok\nmailto:help@shop.example and www.shop.example stay.";
        let out = s.rewrite_text(text, "https://t.example", "m1", |u| {
            u.starts_with("https://t.example/u/")
        });
        let click = s.click_url("https://t.example", "m1", "https://shop.example/cart?a=1&b=2");
        assert!(
            out.starts_with(&format!("Return to your cart ({click}).\n")),
            "{out}"
        );
        assert!(out.contains("Unsubscribe: https://t.example/u/tok\n"), "{out}");
        assert!(
            out.ends_with("mailto:help@shop.example and www.shop.example stay."),
            "{out}"
        );
        // The click token opens to the original URL.
        let token = click.rsplit('/').next().unwrap();
        assert_eq!(
            s.verify_click(token).unwrap().url,
            "https://shop.example/cart?a=1&b=2"
        );
    }

    #[test]
    fn malformed_tags_do_not_lose_text() {
        let html = "<p>1 <a href=\"https://x.example";
        let out = signer().rewrite_html(html, "https://t.example", "m1", |_| false);
        assert!(out.starts_with(html));
    }
}
