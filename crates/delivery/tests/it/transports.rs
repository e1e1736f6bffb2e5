use std::time::Duration;

use missive_delivery::{
    DkimSigner, DkimVerdict, Envelope, MaildirTransport, SendOutcome, SmtpConfig, SmtpTransport, Tls,
    Transport, build_message, verify_dkim,
};

use crate::{fixed_date, sample_email};

#[tokio::test]
async fn maildir_delivery_lands_complete_in_new_with_unique_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("outbox");
    let transport = MaildirTransport::new(&root).unwrap();
    assert_eq!(transport.name(), "maildir");
    for sub in ["cur", "new", "tmp"] {
        assert!(root.join(sub).is_dir(), "{sub} missing");
    }
    let message = build_message(
        &sample_email("msg_m1", "ada@example.org"),
        "shop.example",
        fixed_date(),
    )
    .unwrap();
    let envelope = Envelope::new("bounces@shop.example", "ada@example.org");
    for _ in 0..5 {
        let outcome = transport.send(&envelope, &message).await;
        assert!(outcome.is_delivered(), "{outcome:?}");
    }
    let mut files: Vec<_> = std::fs::read_dir(root.join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.dedup();
    assert_eq!(files.len(), 5);
    assert_eq!(
        std::fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "tmp/ must be empty after renames"
    );
    let stored = std::fs::read(&files[0]).unwrap();
    assert!(stored.starts_with(b"Return-Path: <bounces@shop.example>\r\nDelivered-To: ada@example.org\r\n"));
    assert!(stored.ends_with(&message));
}

#[tokio::test]
async fn maildir_refuses_an_envelope_that_would_inject_headers() {
    let dir = tempfile::tempdir().unwrap();
    let transport = MaildirTransport::new(dir.path()).unwrap();
    let outcome = transport
        .send(&Envelope::new("a@shop.example\r\nX: y", "b@example.org"), b"x")
        .await;
    assert!(matches!(outcome, SendOutcome::Permanent { .. }), "{outcome:?}");
}

/// `MISSIVE_TEST_SMTP=host:port`; a test that needs it panics if it is set but unreachable.
fn smtp_under_test() -> Option<SmtpTransport> {
    let target = std::env::var("MISSIVE_TEST_SMTP").ok()?;
    let (host, port) = target
        .rsplit_once(':')
        .expect("MISSIVE_TEST_SMTP must be host:port");
    let port: u16 = port.parse().expect("MISSIVE_TEST_SMTP port");
    if let Err(err) = std::net::TcpStream::connect_timeout(
        &format!("{host}:{port}")
            .parse()
            .expect("MISSIVE_TEST_SMTP must be ip:port"),
        Duration::from_secs(5),
    ) {
        panic!("MISSIVE_TEST_SMTP={target} is set but unreachable: {err}");
    }
    Some(
        SmtpTransport::new(&SmtpConfig {
            host: host.into(),
            port,
            tls: Tls::None,
            username: None,
            password: None,
            pool_max: 2,
            timeout: Duration::from_secs(10),
            hello_name: Some("missive.test".into()),
        })
        .unwrap(),
    )
}

fn unique_id() -> String {
    format!(
        "msg_{}_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        std::process::id()
    )
}

#[tokio::test]
async fn smtp_send_to_an_existing_local_user_is_delivered_and_arrives_with_a_valid_signature() {
    let Some(transport) = smtp_under_test() else {
        eprintln!("MISSIVE_TEST_SMTP not set: smtp test not run");
        return;
    };
    let id = unique_id();
    let (signer, _) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
    let message = build_message(
        &sample_email(&id, "root@localhost"),
        "mail.shop.example",
        fixed_date(),
    )
    .unwrap();
    let signed = signer.sign(&message).unwrap();
    let outcome = transport
        .send(&Envelope::new("bounces@localhost", "root@localhost"), &signed)
        .await;
    let SendOutcome::Delivered { response } = &outcome else {
        panic!("expected delivery, got {outcome:?}");
    };
    assert!(response.starts_with("250"), "{response}");

    // Read it back from the local mailbox, as delivered, when this machine's postfix writes one.
    let mailbox = std::path::Path::new("/var/mail/root");
    let needle = format!("<{id}@mail.shop.example>");
    let mut delivered = None;
    for _ in 0..100 {
        if let Ok(mbox) = std::fs::read_to_string(mailbox)
            && let Some(at) = mbox.find(&needle)
        {
            let start = mbox[..at].rfind("\nFrom ").map_or(0, |i| i + 1);
            let start = start + mbox[start..].find('\n').unwrap() + 1;
            let end = mbox[at..].find("\nFrom ").map_or(mbox.len(), |i| at + i + 1);
            delivered = Some(mbox[start..end].to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match delivered {
        Some(delivered) => {
            assert!(delivered.contains("Received: "), "postfix adds trace headers");
            assert!(matches!(
                verify_dkim(delivered.as_bytes(), &[signer.dns_record()]).unwrap(),
                DkimVerdict::Pass { .. }
            ));
        }
        None if mailbox.exists() => panic!("message {needle} never reached {}", mailbox.display()),
        None => eprintln!("{} not readable here: read-back skipped", mailbox.display()),
    }
}

#[tokio::test]
async fn smtp_send_to_an_unknown_local_user_is_a_permanent_5_1_1() {
    let Some(transport) = smtp_under_test() else {
        eprintln!("MISSIVE_TEST_SMTP not set: smtp test not run");
        return;
    };
    let message = build_message(
        &sample_email(&unique_id(), "no-such-user-xyz@localhost"),
        "shop.example",
        fixed_date(),
    )
    .unwrap();
    let outcome = transport
        .send(
            &Envelope::new("bounces@localhost", "no-such-user-xyz@localhost"),
            &message,
        )
        .await;
    match outcome {
        SendOutcome::Permanent {
            code,
            enhanced,
            message,
        } => {
            assert_eq!(code, Some(550), "{message}");
            assert_eq!(enhanced.as_deref(), Some("5.1.1"), "{message}");
            assert!(message.contains("no-such-user-xyz@localhost"), "{message}");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    // The pooled connection is still usable after a rejected recipient.
    let message = build_message(
        &sample_email(&unique_id(), "root@localhost"),
        "shop.example",
        fixed_date(),
    )
    .unwrap();
    let outcome = transport
        .send(&Envelope::new("bounces@localhost", "root@localhost"), &message)
        .await;
    assert!(outcome.is_delivered(), "{outcome:?}");
}
