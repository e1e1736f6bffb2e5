use missive_delivery::{Click, LinkSigner, TokenError};

const BASE: &str = "https://t.shop.example/";

fn signer() -> LinkSigner {
    LinkSigner::new(b"0123456789abcdef0123456789abcdef-test-key").unwrap()
}

fn token_of<'a>(url: &'a str, prefix: &str) -> &'a str {
    url.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{url} does not start with {prefix}"))
}

#[test]
fn click_token_round_trips_message_and_target() {
    let target = "https://shop.example/p/42?utm_source=mail&x=ä#top";
    let url = signer().click_url(BASE, "msg_01", target);
    let token = token_of(&url, "https://t.shop.example/t/c/");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(
        signer().verify_click(token),
        Ok(Click {
            message_id: "msg_01".into(),
            url: target.into()
        })
    );
}

#[test]
fn tampered_click_token_is_refused() {
    let url = signer().click_url(BASE, "msg_01", "https://shop.example/");
    let token = token_of(&url, "https://t.shop.example/t/c/");
    for i in 0..token.len() {
        let mut bytes = token.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(
            signer().verify_click(&tampered).is_err(),
            "byte {i} changed and still accepted"
        );
    }
    assert_eq!(signer().verify_click(""), Err(TokenError::Malformed));
    assert_eq!(signer().verify_click("not base64!"), Err(TokenError::Malformed));
}

#[test]
fn token_signed_with_another_key_is_refused() {
    let other = LinkSigner::new(&[9u8; 32]).unwrap();
    let url = other.click_url(BASE, "msg_01", "https://evil.example/");
    let token = token_of(&url, "https://t.shop.example/t/c/");
    assert_eq!(signer().verify_click(token), Err(TokenError::BadSignature));
}

#[test]
fn signed_non_http_target_is_not_followed() {
    for target in [
        "javascript:alert(1)",
        "data:text/html,hi",
        "//evil.example/",
        "mailto:a@b.example",
    ] {
        let url = signer().click_url(BASE, "msg_01", target);
        let token = token_of(&url, "https://t.shop.example/t/c/");
        assert_eq!(
            signer().verify_click(token),
            Err(TokenError::UnsafeUrl),
            "{target}"
        );
    }
}

#[test]
fn tokens_of_one_kind_are_refused_as_another() {
    let open = signer().open_url(BASE, "msg_01");
    let token = token_of(&open, "https://t.shop.example/t/o/")
        .strip_suffix(".gif")
        .unwrap();
    assert_eq!(signer().verify_click(token), Err(TokenError::WrongKind));
    assert_eq!(signer().verify_unsubscribe(token), Err(TokenError::WrongKind));
}

#[test]
fn open_and_unsubscribe_tokens_round_trip() {
    let open = signer().open_url(BASE, "msg_01");
    assert!(open.ends_with(".gif"));
    let token = token_of(&open, "https://t.shop.example/t/o/");
    assert_eq!(signer().verify_open(token).unwrap().message_id, "msg_01");
    assert_eq!(
        signer()
            .verify_open(token.strip_suffix(".gif").unwrap())
            .unwrap()
            .message_id,
        "msg_01"
    );

    let unsubscribe = signer().unsubscribe_url(BASE, "prf_0193", "msg_01");
    let token = token_of(&unsubscribe, "https://t.shop.example/u/");
    let verified = signer().verify_unsubscribe(token).unwrap();
    assert_eq!(
        (verified.profile_id.as_str(), verified.message_id.as_str()),
        ("prf_0193", "msg_01")
    );
}

#[test]
fn rewrite_html_tracks_web_links_and_keeps_mailto_tel_fragments_and_unsubscribe() {
    let unsubscribe = signer().unsubscribe_url(BASE, "prf_1", "msg_01");
    let html = format!(
        "<html><body>\
         <a href=\"https://shop.example/cart?x=1&amp;y=2\" class=\"btn\">Cart</a>\
         <A HREF='http://shop.example/a'>A</A>\
         <a class=x href=https://shop.example/b>B</a>\
         <a href=\"mailto:care@shop.example\">Mail</a>\
         <a href=\"tel:+331234\">Call</a>\
         <a href=\"#top\">Top</a>\
         <a name=\"anchor\">no href</a>\
         <abbr title=\"https://not-a-link.example\">abbr</abbr>\
         <a href=\"{unsubscribe}\">Unsubscribe</a>\
         </body></html>"
    );
    let out = signer().rewrite_html(&html, BASE, "msg_01", |href| {
        href.starts_with("https://t.shop.example/u/")
    });

    assert!(out.contains("href=\"mailto:care@shop.example\""));
    assert!(out.contains("href=\"tel:+331234\""));
    assert!(out.contains("href=\"#top\""));
    assert!(out.contains("<a name=\"anchor\">"));
    assert!(out.contains("<abbr title=\"https://not-a-link.example\">"));
    assert!(out.contains(&format!("href=\"{unsubscribe}\"")));
    assert!(out.contains("class=\"btn\">Cart</a>"));
    assert!(!out.contains("https://shop.example/"), "{out}");

    let tracked: Vec<&str> = out
        .split("href=\"https://t.shop.example/t/c/")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert_eq!(tracked.len(), 3, "{out}");
    let targets: Vec<String> = tracked
        .iter()
        .map(|t| signer().verify_click(t).unwrap().url)
        .collect();
    // `&amp;` was decoded before signing: the redirect goes to the real URL.
    assert_eq!(
        targets,
        [
            "https://shop.example/cart?x=1&y=2",
            "http://shop.example/a",
            "https://shop.example/b"
        ]
    );

    let pixel_at = out.find("<img src=\"https://t.shop.example/t/o/").unwrap();
    assert!(pixel_at < out.find("</body>").unwrap());
    assert!(out.contains("width=\"1\" height=\"1\" alt=\"\" style=\"display:none\"></body>"));
}

#[test]
fn rewritten_hrefs_are_escaped_for_the_attribute() {
    let out = signer().rewrite_html(
        "<a href=\"https://shop.example/\">x</a>",
        "https://t.shop.example/a&b\"c",
        "m",
        |_| false,
    );
    assert!(
        out.contains("href=\"https://t.shop.example/a&amp;b&quot;c/t/c/"),
        "{out}"
    );
    assert!(!out.contains("b\"c"));
}

#[test]
fn pixel_goes_at_the_end_without_a_body_tag() {
    let out = signer().rewrite_html("<p>hi</p>", BASE, "m", |_| false);
    assert!(out.starts_with("<p>hi</p><img src=\"https://t.shop.example/t/o/"));
}
