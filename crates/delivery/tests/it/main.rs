//! Integration tests for missive-delivery. The SMTP tests run against a real server when
//! `MISSIVE_TEST_SMTP=host:port` is set (CI sets it to the local postfix) and fail if it is set
//! but unreachable.

// Test helpers may unwrap: a failure there is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dkim;
mod message;
mod reports;
mod throttle;
mod tracking;
mod transports;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use missive_delivery::OutgoingEmail;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("fixture {}: {err}", path.display()))
}

pub fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

pub fn sample_email(message_id: &str, to: &str) -> OutgoingEmail {
    OutgoingEmail {
        message_id: message_id.into(),
        from_name: Some("Boutique Émile".into()),
        from_address: "news@shop.example".into(),
        reply_to: None,
        to_address: to.into(),
        to_name: Some("Ada Lovelace".into()),
        subject: "Ihr Warenkorb wartet – 10 % Rabatt".into(),
        html: "<!doctype html><html><body><p>Hallo Ada,</p>\n<p>Grüße aus dem Laden: <a href=\"https://shop.example/cart?x=1&amp;y=2\">Zum Warenkorb</a></p>\n".repeat(3)
            + "</body></html>",
        text: "Hallo Ada,\n\nGrüße aus dem Laden: https://shop.example/cart?x=1&y=2\nFrom here on, a line starting with From.\n".into(),
        list_unsubscribe_url: Some("https://t.shop.example/u/AbC_123-xyz".into()),
        list_unsubscribe_mailto: Some("mailto:unsubscribe@shop.example?subject=AbC_123".into()),
        extra_headers: vec![("X-Missive-Campaign".into(), "cmp_01".into())],
    }
}

pub fn fixed_date() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}
