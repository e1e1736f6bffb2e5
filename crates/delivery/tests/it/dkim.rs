use missive_delivery::{DkimSigner, DkimVerdict, build_message, verify_dkim};

use crate::{fixed_date, fixture_text, sample_email};

fn built() -> Vec<u8> {
    build_message(
        &sample_email("msg_0193dkim", "ada@example.org"),
        "mail.shop.example",
        fixed_date(),
    )
    .unwrap()
}

fn assert_pass(verdict: DkimVerdict) {
    assert!(matches!(verdict, DkimVerdict::Pass { .. }), "{verdict:?}");
}

#[test]
fn built_message_signed_with_ed25519_verifies() {
    let (signer, _) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
    let signed = signer.sign(&built()).unwrap();
    assert_eq!(
        verify_dkim(&signed, &[signer.dns_record()]).unwrap(),
        DkimVerdict::Pass {
            domain: "shop.example".into(),
            selector: "s2025".into()
        }
    );
}

#[test]
fn signature_covers_the_unsubscribe_headers() {
    let (signer, _) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
    let signed = String::from_utf8(signer.sign(&built()).unwrap()).unwrap();
    let header_end = signed.find("\r\n\r\n").unwrap();
    let dkim: String = signed[..header_end]
        .split("\r\n")
        .skip_while(|l| !l.starts_with("DKIM-Signature"))
        .take_while(|l| l.starts_with("DKIM-Signature") || l.starts_with([' ', '\t']))
        .collect();
    let h = dkim
        .split(';')
        .map(str::trim)
        .find(|t| t.starts_with("h="))
        .unwrap()[2..]
        .to_ascii_lowercase()
        .replace([' ', '\t'], "");
    for header in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(h.split(':').any(|x| x == header), "{header} not in {h}");
    }
    assert!(dkim.contains("c=relaxed/relaxed"), "{dkim}");
}

#[test]
fn tampered_body_fails_verification() {
    let (signer, _) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
    let signed = String::from_utf8(signer.sign(&built()).unwrap()).unwrap();
    let tampered = signed.replacen("Hallo Ada", "Hallo Eve", 1);
    assert_ne!(tampered, signed);
    assert!(matches!(
        verify_dkim(tampered.as_bytes(), &[signer.dns_record()]).unwrap(),
        DkimVerdict::Fail { .. }
    ));
}

#[test]
fn tampered_subject_fails_verification() {
    let (signer, _) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
    let signed = String::from_utf8(signer.sign(&built()).unwrap()).unwrap();
    let tampered = signed.replacen("Subject: ", "Subject: FREE ", 1);
    assert!(matches!(
        verify_dkim(tampered.as_bytes(), &[signer.dns_record()]).unwrap(),
        DkimVerdict::Fail { .. }
    ));
}

#[test]
fn signature_still_verifies_after_relays_add_trace_headers_and_mbox_line_endings() {
    let (signer, _) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
    let signed = String::from_utf8(signer.sign(&built()).unwrap()).unwrap();
    let delivered = format!(
        "Return-Path: <bounces@shop.example>\r\nX-Original-To: ada@example.org\r\nDelivered-To: ada@example.org\r\nReceived: from localhost (localhost [127.0.0.1])\r\n\tby vm (Postfix) with ESMTP id 1234ABCD\r\n\tfor <ada@example.org>; Sun, 15 Jun 2025 15:06:41 +0000 (UTC)\r\n{signed}"
    );
    assert_pass(verify_dkim(delivered.as_bytes(), &[signer.dns_record()]).unwrap());
    // An mbox written by postfix's local(8) stores LF line endings.
    let lf = delivered.replace("\r\n", "\n");
    assert_pass(verify_dkim(lf.as_bytes(), &[signer.dns_record()]).unwrap());
}

#[test]
fn wrong_key_in_dns_fails_verification() {
    let (signer, _) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
    let (other, _) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
    let signed = signer.sign(&built()).unwrap();
    assert!(matches!(
        verify_dkim(&signed, &[other.dns_record()]).unwrap(),
        DkimVerdict::Fail { .. }
    ));
}

#[test]
fn rsa_keys_in_pkcs1_and_pkcs8_sign_verifiable_messages() {
    let expected_p = fixture_text("test-only-rsa2048.spki.b64");
    for file in ["test-only-rsa2048-pkcs1.pem", "test-only-rsa2048-pkcs8.pem"] {
        let signer = DkimSigner::from_pem(&fixture_text(file), "rsa1", "shop.example").unwrap();
        let (name, value) = signer.dns_record();
        assert_eq!(name, "rsa1._domainkey.shop.example");
        // The same SubjectPublicKeyInfo `openssl rsa -pubout` prints.
        assert_eq!(value, format!("v=DKIM1; k=rsa; p={}", expected_p.trim()));
        let signed = signer.sign(&built()).unwrap();
        assert!(String::from_utf8_lossy(&signed).contains("a=rsa-sha256"));
        assert_pass(verify_dkim(&signed, &[(name, value)]).unwrap());
    }
}

#[test]
fn ed25519_key_written_by_openssl_is_read() {
    let signer = DkimSigner::from_pem(
        &fixture_text("test-only-ed25519-pkcs8v1.pem"),
        "ed",
        "shop.example",
    )
    .unwrap();
    let expected = fixture_text("test-only-ed25519.pub.b64");
    assert_eq!(
        signer.dns_record().1,
        format!("v=DKIM1; k=ed25519; p={}", expected.trim())
    );
    let signed = signer.sign(&built()).unwrap();
    assert_pass(verify_dkim(&signed, &[signer.dns_record()]).unwrap());
}

#[test]
fn generated_key_pem_reads_back_into_the_same_signer() {
    let (signer, pem) = DkimSigner::generate_ed25519("s2025", "shop.example").unwrap();
    let reread = DkimSigner::from_pem(&pem, "s2025", "shop.example").unwrap();
    let signed = reread.sign(&built()).unwrap();
    assert_pass(verify_dkim(&signed, &[signer.dns_record()]).unwrap());
}
