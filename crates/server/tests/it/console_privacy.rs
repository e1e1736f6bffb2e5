//! The console's privacy desk and API keys: consent across everyone, a data-subject export
//! and an erasure confirmed by typing the id, the requests answered listed from the audit log,
//! keys created (the secret shown once, and working), revoked (and refused at once), roles.

use serde_json::json;

use crate::console::{Console, shop};
use crate::support::TestApp;

#[tokio::test]
async fn a_privacy_officer_reads_consent_exports_and_erases_a_person() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    // Five customers opt in at sign-up, one of them withdraws later through the API.
    let batch: Vec<_> = (0..5)
        .map(|i| json!({"type": "identify", "userId": format!("u{i}"), "traits": {"consent": {"email_marketing": true}}}))
        .collect();
    let (status, body) = app.post("/v1/batch", json!({"batch": batch})).await;
    assert_eq!(status, 200, "{body}");
    app.sync().await;
    // One customer withdraws marketing consent through the API.
    let (status, res) = app
        .admin(
            reqwest::Method::PUT,
            "/v1/profiles/c1@example.com/consent",
            Some(json!({"purposes": {"email_marketing": false}, "source": "api:crm"})),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let officer = Console::login(&app, &app.key_of_role("privacy_officer").await).await;

    let (status, page) = officer.get("/console/privacy").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Consent across 7 profiles"), "{page}");
    // email_marketing: 4 granted, 1 withdrawn, 2 never asked; 5 grants and a withdrawal lately.
    assert!(
        page.contains("<th scope=\"row\"><code>email_marketing</code></th><td class=\"num\">4<br><span class=\"hint\">57.1 %</span></td><td class=\"num\">1<br><span class=\"hint\">14.3 %</span></td><td class=\"num\">2</td><td class=\"num\"><span class=\"up\">+5</span> / <span class=\"down\">−1</span>"),
        "{page}"
    );
    assert!(page.contains("<code>api:crm</code> 1"), "sources: {page}");
    assert!(page.contains("No export or erasure yet."), "{page}");

    let (status, page) = officer.get("/console/privacy/person?q=c2%40example.com").await;
    assert_eq!(status, 200, "{page}");
    let id = app.profile("c2@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        page.contains(&format!("href=\"/console/privacy/export/{id}\"")),
        "{page}"
    );
    let (status, _) = officer
        .get("/console/privacy/person?q=nobody%40example.com")
        .await;
    assert_eq!(status, 404);

    let (status, export) = officer.get(&format!("/console/privacy/export/{id}")).await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert_eq!(doc["profile"]["id"], id.as_str(), "{doc}");
    assert!(export.contains("c2@example.com"));
    assert_eq!(
        doc["events"].as_array().map(Vec::len),
        Some(4),
        "sign-up, two orders, consent"
    );

    // A wrong confirmation erases nothing.
    let (status, page, _) = officer
        .post("/console/privacy/erase", &[("id", &id), ("confirm", "prf_wrong")])
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("Nothing was erased"), "{page}");
    app.profile(&id).await;

    let (status, _, location) = officer
        .post("/console/privacy/erase", &[("id", &id), ("confirm", &id)])
        .await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    assert_eq!(location, format!("/console/privacy/person?erased={id}"));
    let (_, page) = officer.get(&location).await;
    assert!(
        page.contains(&format!("Profile {id} is erased (1 profiles, 4 events")),
        "{page}"
    );
    let (status, _) = app.get(&format!("/v1/profiles/{id}")).await;
    assert_eq!(status, 404);
    // A made-up link shows no erasure.
    let (_, page) = officer.get("/console/privacy/person?erased=prf_made_up").await;
    assert!(
        page.contains("No erasure of that profile is in the audit log."),
        "{page}"
    );

    let (_, page) = officer.get("/console/privacy").await;
    assert!(page.contains("Consent across 6 profiles"), "{page}");
    assert!(
        page.contains("<td>Erasure</td>") && page.contains("<td>Export</td>"),
        "{page}"
    );
    assert!(page.contains(&format!("<code>profile:{id}</code>")), "{page}");

    // A marketer reaches none of it.
    let marketer = Console::login(&app, &app.key_of_role("marketer").await).await;
    let other = app.profile("c3@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        "/console/privacy".to_owned(),
        format!("/console/privacy/export/{other}"),
    ] {
        let (status, page) = marketer.get(&path).await;
        assert_eq!(status, 403, "{path}");
        assert!(!page.contains("c3@example.com"), "{page}");
    }
    let (status, _, _) = marketer
        .post("/console/privacy/erase", &[("id", &other), ("confirm", &other)])
        .await;
    assert_eq!(status, 403);
    app.profile(&other).await;
}

#[tokio::test]
async fn an_admin_creates_and_revokes_keys_and_others_cannot() {
    let app = TestApp::spawn().await;
    let admin = Console::login(&app, &app.key_of_role("admin").await).await;
    let (status, page) = admin.get("/console/keys").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("this session"), "{page}");
    assert!(
        page.contains("Pseudonymized profiles") || page.contains("pseudonymized profiles"),
        "roles are explained: {page}"
    );

    let (status, page, _) = admin
        .post(
            "/console/keys",
            &[("role", "marketer"), ("label", "<b>Ana</b>, CRM")],
        )
        .await;
    assert_eq!(status, 201, "{page}");
    assert!(
        page.contains("&lt;b&gt;Ana&lt;/b&gt;, CRM") && !page.contains("<b>Ana"),
        "{page}"
    );
    let marker = "id=\"secret\" type=\"text\" readonly value=\"";
    let at = page.find(marker).expect("the secret is shown") + marker.len();
    let secret = &page[at..at + page[at..].find('"').unwrap()];
    let call = |key: String| {
        let url = format!("{}/v1/segments", app.base);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call(secret.to_owned()).await, 200, "the new key works");
    let (_, list) = app.admin(reqwest::Method::GET, "/v1/keys", None).await;
    let id = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "<b>Ana</b>, CRM")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, page, _) = admin
        .post("/console/keys", &[("role", "owner"), ("label", "x")])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Not created: role: unknown role"), "{page}");

    let (status, page, _) = admin.post("/console/keys/revoke", &[("id", &id)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("Key {id} is revoked")), "{page}");
    assert_eq!(call(secret.to_owned()).await, 401, "refused at once");
    let (status, page, _) = admin.post("/console/keys/revoke", &[("id", &id)]).await;
    assert_eq!(status, 404, "already revoked: {page}");

    let officer = Console::login(&app, &app.key_of_role("privacy_officer").await).await;
    let (status, _) = officer.get("/console/keys").await;
    assert_eq!(status, 403);
    let (status, _, _) = officer
        .post("/console/keys", &[("role", "admin"), ("label", "mine now")])
        .await;
    assert_eq!(status, 403);
}
