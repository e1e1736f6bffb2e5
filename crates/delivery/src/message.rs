use std::str::FromStr;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::Address;
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

use crate::DeliveryError;

/// A rendered e-mail, ready to become a message. Bodies are final (tracked links and the open
/// pixel already in the HTML); this step only frames and encodes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// missive's id for this message (e.g. `msg_0193…`); becomes `<{message_id}@{domain}>`.
    pub message_id: String,
    pub from_name: Option<String>,
    pub from_address: String,
    pub reply_to: Option<String>,
    pub to_address: String,
    pub to_name: Option<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// The HTTPS one-click unsubscribe URL (RFC 8058).
    pub list_unsubscribe_url: Option<String>,
    pub list_unsubscribe_mailto: Option<String>,
    pub extra_headers: Vec<(String, String)>,
}

/// Headers this builder writes itself; an extra header may not replace or duplicate them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "dkim-signature",
    "return-path",
    "received",
];

/// The longest line RFC 5322 allows, without its CRLF.
const MAX_LINE: usize = 998;

/// Builds the RFC 5322 bytes of `email`: multipart/alternative (text/plain first, then
/// text/html), UTF-8 with 7bit, quoted-printable or base64 transfer encoding as each part needs,
/// `Message-ID: <{message_id}@{message_id_domain}>`, `Date`, `MIME-Version` and, when an
/// unsubscribe URL is given, RFC 8058 one-click unsubscribe headers.
///
/// Refuses a line break or NUL in any header value (header injection), invalid addresses and
/// extra headers that would replace one of the headers written here.
pub fn build_message(
    email: &OutgoingEmail,
    message_id_domain: &str,
    date: DateTime<Utc>,
) -> Result<Vec<u8>, DeliveryError> {
    validate_message_id(&email.message_id)?;
    validate_domain(message_id_domain)?;

    let from = mailbox("from", email.from_name.as_deref(), &email.from_address)?;
    let to = mailbox("to", email.to_name.as_deref(), &email.to_address)?;
    refuse_line_breaks("subject", &email.subject)?;

    let mut builder = Message::builder()
        .message_id(Some(format!("<{}@{}>", email.message_id, message_id_domain)))
        .date(SystemTime::from(date))
        .from(from)
        .to(to)
        .subject(email.subject.clone());
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(mailbox("reply-to", None, reply_to)?);
    }

    if let Some(list_unsubscribe) = list_unsubscribe_value(
        email.list_unsubscribe_url.as_deref(),
        email.list_unsubscribe_mailto.as_deref(),
    )? {
        builder = builder.raw_header(pre_encoded("List-Unsubscribe", list_unsubscribe));
        if email.list_unsubscribe_url.is_some() {
            builder = builder.raw_header(pre_encoded(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".to_owned(),
            ));
        }
    }

    for (name, value) in &email.extra_headers {
        builder = builder.raw_header(extra_header(name, value)?);
    }

    let message = builder
        .multipart(
            MultiPart::alternative()
                .singlepart(quoted_printable_part(ContentType::TEXT_PLAIN, &email.text)?)
                .singlepart(quoted_printable_part(ContentType::TEXT_HTML, &email.html)?),
        )
        .map_err(|err| DeliveryError::Build(err.to_string().to_lowercase()))?;
    Ok(escape_from_lines(message.formatted()))
}

/// Both parts are quoted-printable: 7-bit safe for any relay, and able to carry the escape
/// below without changing the decoded text.
fn quoted_printable_part(content_type: ContentType, text: &str) -> Result<SinglePart, DeliveryError> {
    let body = Body::new_with_encoding(text.to_owned(), ContentTransferEncoding::QuotedPrintable)
        .map_err(|_| DeliveryError::Build("body cannot be quoted-printable encoded".into()))?;
    Ok(SinglePart::builder().header(content_type).body(body))
}

/// mbox delivery (postfix's local(8), procmail, …) rewrites body lines starting with `From `
/// to `>From `, which breaks the DKIM body hash. In quoted-printable, `=46rom ` (and `=3E` for
/// a leading `>` of `>From `) decodes to the same text and survives such mailboxes.
fn escape_from_lines(message: Vec<u8>) -> Vec<u8> {
    let Some(body_start) = message.windows(4).position(|w| w == b"\r\n\r\n") else {
        return message;
    };
    let escaped = |line: &[u8]| {
        let unquoted = line.iter().position(|b| *b != b'>').unwrap_or(line.len());
        line[unquoted..].starts_with(b"From ")
    };
    // Most messages have no such line: kept as they are, without a copy of the whole message.
    if !message[body_start + 4..].split(|b| *b == b'\n').any(escaped) {
        return message;
    }
    let mut out = Vec::with_capacity(message.len() + 16);
    out.extend_from_slice(&message[..body_start + 4]);
    for line in message[body_start + 4..].split_inclusive(|b| *b == b'\n') {
        if escaped(line) {
            out.extend_from_slice(if line[0] == b'>' { b"=3E" } else { b"=46" });
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

fn refuse_line_breaks(field: &str, value: &str) -> Result<(), DeliveryError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(DeliveryError::HeaderInjection {
            field: field.to_owned(),
        });
    }
    Ok(())
}

fn mailbox(field: &'static str, name: Option<&str>, address: &str) -> Result<Mailbox, DeliveryError> {
    refuse_line_breaks(field, address)?;
    if let Some(name) = name {
        refuse_line_breaks(&format!("{field} name"), name)?;
    }
    let parsed = Address::from_str(address).map_err(|err| DeliveryError::InvalidAddress {
        field,
        address: address.to_owned(),
        reason: err.to_string().to_lowercase(),
    })?;
    Ok(Mailbox::new(
        name.filter(|name| !name.trim().is_empty()).map(str::to_owned),
        parsed,
    ))
}

fn validate_message_id(id: &str) -> Result<(), DeliveryError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"._-+=~".contains(&b);
    if id.is_empty() || id.len() > 200 || !id.bytes().all(allowed) {
        return Err(DeliveryError::InvalidMessageId(id.to_owned()));
    }
    Ok(())
}

/// A host name: dot-separated labels of letters, digits and hyphens.
pub(crate) fn is_valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn validate_domain(domain: &str) -> Result<(), DeliveryError> {
    if !is_valid_domain(domain) {
        return Err(DeliveryError::InvalidMessageIdDomain(domain.to_owned()));
    }
    Ok(())
}

/// `<https://…>, <mailto:…>`; each URI must be printable ASCII without spaces or angle brackets,
/// so it can be written verbatim (no encoded words, no folding inside a URI).
fn list_unsubscribe_value(url: Option<&str>, mailto: Option<&str>) -> Result<Option<String>, DeliveryError> {
    let check = |kind: &'static str, value: &str, scheme: &str| {
        refuse_line_breaks(&format!("list-unsubscribe {kind}"), value)?;
        if !value
            .get(..scheme.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
            || value.len() == scheme.len()
        {
            return Err(DeliveryError::InvalidUnsubscribe {
                kind,
                reason: if kind == "url" {
                    "must be an https url"
                } else {
                    "must be a mailto: uri"
                },
            });
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
        {
            return Err(DeliveryError::InvalidUnsubscribe {
                kind,
                reason: "must be printable ascii without spaces or angle brackets",
            });
        }
        Ok(format!("<{value}>"))
    };
    let mut uris = Vec::new();
    if let Some(url) = url {
        uris.push(check("url", url, "https://")?);
    }
    if let Some(mailto) = mailto {
        uris.push(check("mailto", mailto, "mailto:")?);
    }
    if uris.is_empty() {
        return Ok(None);
    }
    let value = uris.join(", ");
    if value.len() + "List-Unsubscribe: ".len() > MAX_LINE {
        return Err(DeliveryError::InvalidUnsubscribe {
            kind: "url",
            reason: "is too long for one header line",
        });
    }
    Ok(Some(value))
}

fn pre_encoded(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::dangerous_new_pre_encoded(HeaderName::new_from_ascii_str(name), value.clone(), value)
}

fn extra_header(name: &str, value: &str) -> Result<HeaderValue, DeliveryError> {
    refuse_line_breaks(name, name)?;
    refuse_line_breaks(name, value)?;
    let valid_name =
        !name.is_empty() && name.len() <= 76 && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !valid_name {
        return Err(DeliveryError::InvalidHeader {
            name: name.to_owned(),
            reason: "a header name is printable ascii without spaces or colons",
        });
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(DeliveryError::InvalidHeader {
            name: name.to_owned(),
            reason: "this header is written by the message builder",
        });
    }
    let header_name =
        HeaderName::new_from_ascii(name.to_owned()).map_err(|_| DeliveryError::InvalidHeader {
            name: name.to_owned(),
            reason: "a header name is printable ascii without spaces or colons",
        })?;
    Ok(HeaderValue::new(header_name, value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> OutgoingEmail {
        OutgoingEmail {
            message_id: "msg_0193abc".into(),
            from_name: Some("Shop Ünicode".into()),
            from_address: "news@shop.example".into(),
            reply_to: Some("care@shop.example".into()),
            to_address: "ada@example.org".into(),
            to_name: Some("Ada Lovelace".into()),
            subject: "Your cart misses you — 10% off".into(),
            html: "<html><body><p>Hello Ada, déjà vu?</p></body></html>".into(),
            text: "Hello Ada, déjà vu?".into(),
            list_unsubscribe_url: Some("https://t.shop.example/u/abc_DEF-123".into()),
            list_unsubscribe_mailto: Some("mailto:unsub@shop.example?subject=abc".into()),
            extra_headers: vec![("X-Campaign".into(), "cmp_1".into())],
        }
    }

    fn date() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn message_has_ids_dates_and_one_click_unsubscribe_headers() {
        let raw = build_message(&sample(), "mail.shop.example", date()).unwrap();
        let text = String::from_utf8(raw).unwrap();
        assert!(
            text.contains("Message-ID: <msg_0193abc@mail.shop.example>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Date: Sun, 15 Jun 2025 15:06:40 +0000\r\n"),
            "{text}"
        );
        assert!(text.contains("MIME-Version: 1.0\r\n"), "{text}");
        assert!(text.contains(
            "List-Unsubscribe: <https://t.shop.example/u/abc_DEF-123>, <mailto:unsub@shop.example?subject=abc>\r\n"
        ), "{text}");
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(text.contains("X-Campaign: cmp_1\r\n"));
        assert!(text.contains("multipart/alternative"));
        let plain = text.find("text/plain").unwrap();
        let html = text.find("text/html").unwrap();
        assert!(plain < html, "text part must come first");
        assert!(text.is_ascii(), "8-bit content must be transfer-encoded");
    }

    #[test]
    fn body_lines_starting_with_from_are_escaped_for_mbox() {
        let mut email = sample();
        email.text = "Hi\nFrom now on, 10% off\n>From quoted\nFromage\n".into();
        let text = String::from_utf8(build_message(&email, "shop.example", date()).unwrap()).unwrap();
        assert!(text.contains("\r\n=46rom now on, 10% off\r\n"), "{text}");
        assert!(text.contains("\r\n=3EFrom quoted\r\n"), "{text}");
        assert!(text.contains("\r\nFromage\r\n"), "{text}");
        assert!(!text.contains("\nFrom "));
        assert!(!text.contains("\n>From "));
    }

    #[test]
    fn no_unsubscribe_url_means_no_one_click_header() {
        let mut email = sample();
        email.list_unsubscribe_url = None;
        let text = String::from_utf8(build_message(&email, "shop.example", date()).unwrap()).unwrap();
        assert!(text.contains("List-Unsubscribe: <mailto:unsub@shop.example?subject=abc>\r\n"));
        assert!(!text.contains("List-Unsubscribe-Post"));
    }

    #[test]
    fn long_unsubscribe_url_is_written_verbatim() {
        let mut email = sample();
        let url = format!("https://t.shop.example/u/{}", "A".repeat(300));
        email.list_unsubscribe_url = Some(url.clone());
        email.list_unsubscribe_mailto = None;
        let text = String::from_utf8(build_message(&email, "shop.example", date()).unwrap()).unwrap();
        assert!(text.contains(&format!("List-Unsubscribe: <{url}>\r\n")));
    }

    type Mutation = Box<dyn Fn(&mut OutgoingEmail)>;

    #[test]
    fn header_injection_is_refused_in_every_header_field() {
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "subject",
                Box::new(|e| e.subject = "hi\r\nBcc: x@evil.example".into()),
            ),
            ("from name", Box::new(|e| e.from_name = Some("a\nb".into()))),
            ("to name", Box::new(|e| e.to_name = Some("a\0b".into()))),
            (
                "to",
                Box::new(|e| e.to_address = "a@b.example\r\nBcc: c@d.example".into()),
            ),
            (
                "reply-to",
                Box::new(|e| e.reply_to = Some("a@b.example\n".into())),
            ),
            (
                "list-unsubscribe url",
                Box::new(|e| e.list_unsubscribe_url = Some("https://x/\r\nX: y".into())),
            ),
            (
                "X-Campaign",
                Box::new(|e| e.extra_headers = vec![("X-Campaign".into(), "a\r\nb".into())]),
            ),
        ];
        for (field, mutate) in cases {
            let mut email = sample();
            mutate(&mut email);
            match build_message(&email, "shop.example", date()) {
                Err(DeliveryError::HeaderInjection { field: got }) => assert_eq!(got, field),
                other => panic!("{field}: expected header injection, got {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_addresses_ids_and_headers_are_refused() {
        let mut email = sample();
        email.to_address = "not an address".into();
        assert!(matches!(
            build_message(&email, "shop.example", date()),
            Err(DeliveryError::InvalidAddress { field: "to", .. })
        ));
        let mut email = sample();
        email.message_id = "msg<1>".into();
        assert!(matches!(
            build_message(&email, "shop.example", date()),
            Err(DeliveryError::InvalidMessageId(_))
        ));
        assert!(matches!(
            build_message(&sample(), "shop example", date()),
            Err(DeliveryError::InvalidMessageIdDomain(_))
        ));
        let mut email = sample();
        email.extra_headers = vec![("Bcc".into(), "x@evil.example".into())];
        assert!(matches!(
            build_message(&email, "shop.example", date()),
            Err(DeliveryError::InvalidHeader { .. })
        ));
        let mut email = sample();
        email.list_unsubscribe_url = Some("http://plain.example/u/1".into());
        assert!(matches!(
            build_message(&email, "shop.example", date()),
            Err(DeliveryError::InvalidUnsubscribe { kind: "url", .. })
        ));
    }
}
