use missive_delivery::{DsnAction, Report, parse_report};

use crate::fixture;

#[test]
fn postfix_bounce_from_its_own_error_transport_is_a_failed_dsn() {
    let Some(Report::Dsn {
        recipients,
        original_message_id,
    }) = parse_report(&fixture("postfix-dsn-local-error.eml"))
    else {
        panic!("not a dsn");
    };
    assert_eq!(
        original_message_id.as_deref(),
        Some("msg_0193fixture@mail.shop.example")
    );
    assert_eq!(recipients.len(), 1);
    let r = &recipients[0];
    assert_eq!(r.address, "ada@example.com");
    assert_eq!(r.action, DsnAction::Failed);
    assert_eq!(r.status, "5.0.0");
    assert_eq!(r.diagnostic.as_deref(), Some("example.com"));
    assert!(r.is_hard());
}

#[test]
fn postfix_bounce_from_a_remote_server_reads_each_recipient() {
    let Some(Report::Dsn {
        recipients,
        original_message_id,
    }) = parse_report(&fixture("postfix-dsn-remote-5.1.1-and-4.2.2.eml"))
    else {
        panic!("not a dsn");
    };
    assert_eq!(
        original_message_id.as_deref(),
        Some("msg_0193b2c4d5e6f7a8b9c0d1e2f3a4b5c6@mail.shop.example")
    );
    assert_eq!(recipients.len(), 2);
    let hard = &recipients[0];
    assert_eq!(hard.address, "no.such.person@gmail.com");
    assert_eq!(hard.action, DsnAction::Failed);
    assert_eq!(hard.status, "5.1.1");
    assert!(hard.is_hard() && !hard.is_soft());
    let diagnostic = hard.diagnostic.as_deref().unwrap();
    assert!(
        diagnostic.starts_with("550-5.1.1 The email account that you tried to reach does not exist."),
        "{diagnostic}"
    );
    assert!(!diagnostic.contains('\n'));
    let soft = &recipients[1];
    assert_eq!(soft.address, "full.box@outlook.example");
    assert_eq!(soft.action, DsnAction::Delayed);
    assert_eq!(soft.status, "4.2.2");
    assert!(soft.is_soft() && !soft.is_hard());
}

#[test]
fn arf_complaint_names_the_recipient_and_the_original_message() {
    assert_eq!(
        parse_report(&fixture("arf-abuse-with-original-message.eml")),
        Some(Report::Complaint {
            feedback_type: "abuse".into(),
            original_recipient: Some("grace@mail.example".into()),
            original_message_id: Some("msg_0193c3d4e5f6a7b8c9d0e1f2a3b4c5d6@mail.shop.example".into()),
        })
    );
}

#[test]
fn arf_complaint_without_original_rcpt_to_falls_back_to_the_original_to_header() {
    assert_eq!(
        parse_report(&fixture("arf-abuse-headers-only.eml")),
        Some(Report::Complaint {
            feedback_type: "abuse".into(),
            original_recipient: Some("alan@hotmail.example".into()),
            original_message_id: Some("msg_0193d4e5f6a7b8c9d0e1f2a3b4c5d6e7@mail.shop.example".into()),
        })
    );
}

#[test]
fn an_ordinary_reply_is_not_a_report() {
    let raw = b"From: ada@example.org\r\nTo: news@shop.example\r\nSubject: Re: Your cart\r\nContent-Type: text/plain\r\n\r\nPlease stop.\r\n";
    assert_eq!(parse_report(raw), None);
}
