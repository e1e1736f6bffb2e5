use missive_delivery::{DeliveryError, build_message};

use crate::{fixed_date, sample_email};

#[test]
fn built_message_is_multipart_alternative_with_text_before_html() {
    let raw = build_message(
        &sample_email("msg_01", "ada@example.org"),
        "mail.shop.example",
        fixed_date(),
    )
    .unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.message_id(), Some("msg_01@mail.shop.example"));
    assert_eq!(parsed.subject(), Some("Ihr Warenkorb wartet – 10 % Rabatt"));
    assert_eq!(
        parsed.from().unwrap().first().unwrap().name(),
        Some("Boutique Émile")
    );
    assert!(parsed.body_text(0).unwrap().contains("Grüße aus dem Laden"));
    assert!(parsed.body_html(0).unwrap().contains("Grüße aus dem Laden"));
    let text = String::from_utf8(raw).unwrap();
    assert!(text.is_ascii());
    assert!(text.lines().all(|line| line.len() <= 998));
    assert!(text.find("Content-Type: text/plain").unwrap() < text.find("Content-Type: text/html").unwrap());
    assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
}

#[test]
fn header_injection_through_the_subject_is_refused() {
    let mut email = sample_email("msg_01", "ada@example.org");
    email.subject = "Sale\r\nBcc: everyone@example.org".into();
    let err = build_message(&email, "shop.example", fixed_date()).unwrap_err();
    assert!(matches!(err, DeliveryError::HeaderInjection { .. }));
    assert_eq!(
        err.to_string(),
        "header subject contains a line break or nul character"
    );
}

#[test]
fn header_injection_through_a_display_name_is_refused() {
    let mut email = sample_email("msg_01", "ada@example.org");
    email.to_name = Some("Ada\nBcc: everyone@example.org".into());
    assert!(matches!(
        build_message(&email, "shop.example", fixed_date()),
        Err(DeliveryError::HeaderInjection { .. })
    ));
}

#[test]
fn invalid_recipient_address_is_refused() {
    let email = sample_email("msg_01", "ada@@example.org");
    assert!(matches!(
        build_message(&email, "shop.example", fixed_date()),
        Err(DeliveryError::InvalidAddress { field: "to", .. })
    ));
}
