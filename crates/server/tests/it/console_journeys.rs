//! The console's journeys: the graph with who waits where and who left where, counted from the
//! instances a real run made, and the editor's checks (a JSON mistake at its line, a missing
//! template, a step that leads nowhere), saving, escaping and roles.

use reqwest::Method;
use serde_json::json;

use crate::console::{Console, shop};
use crate::support::TestApp;

async fn cart_journey(app: &TestApp) {
    let template = json!({"subject": "Your cart", "layout": "html",
        "body": "<html><body><p>Back to your cart</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></body></html>"});
    let (status, res) = app.admin(Method::PUT, "/v1/templates/cart", Some(template)).await;
    assert_eq!(status, 200, "{res}");
    let journey = json!({
        "trigger": {"event": "Product Added"},
        "key": "properties.cart_id",
        "steps": [
            {"id": "wait", "type": "wait_for_event", "event": "Order Completed", "match_key": true,
             "timeout": "1h", "on_event": "exit"},
            {"id": "remind", "type": "send", "template": "cart"}
        ]
    });
    let (status, res) = app.admin(Method::PUT, "/v1/journeys/cart", Some(journey)).await;
    assert_eq!(status, 200, "{res}");
}

async fn add(app: &TestApp, user: &str, cart: &str) {
    let (status, _) = app
        .post(
            "/v1/track",
            json!({"userId": user, "event": "Product Added", "properties": {"cart_id": cart}}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_journey_graph_counts_who_waits_and_who_left_at_each_step() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    cart_journey(&app).await;
    for (user, cart) in [("u1", "c1"), ("u2", "c2"), ("u3", "c3")] {
        add(&app, user, cart).await;
    }
    app.sync().await;
    let (status, res) = app.admin(Method::POST, "/v1/journeys/run", None).await;
    assert_eq!(status, 200, "{res}");
    // One buys: that instance leaves at the wait.
    let (status, _) = app
        .post(
            "/v1/track",
            json!({"userId": "u2", "event": "Order Completed", "properties": {"cart_id": "c2"}}),
        )
        .await;
    assert_eq!(status, 200);
    app.sync().await;
    let (status, res) = app.admin(Method::POST, "/v1/journeys/run", None).await;
    assert_eq!(status, 200, "{res}");

    let c = Console::login(&app, &app.key_of_role("analyst").await).await;
    let (status, list) = c.get("/console/journeys").await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("href=\"/console/journeys/cart\""), "{list}");
    assert!(list.contains("on event Product Added"), "{list}");
    assert!(
        list.contains("<td class=\"num\">2</td><td class=\"num\">1</td><td class=\"num\">0</td>"),
        "2 waiting, 1 completed (the order ends it), 0 exited: {list}"
    );
    assert!(!list.contains("New journey"), "analysts do not change journeys");

    let (status, page) = c.get("/console/journeys/cart").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<svg class=\"journey\""), "{page}");
    assert!(page.contains(">2 waiting · 1 left here<"), "{page}");
    assert!(page.contains(">1 completed<"), "the end: {page}");
    assert!(page.contains(">wait for Order Completed (1h)<"), "{page}");
    assert!(page.contains(">event<") && page.contains(">timeout<"), "{page}");
    assert!(!page.contains("/console/journeys/save"), "no editor for analysts");
    let (status, _) = c.get("/console/journeys/new").await;
    assert_eq!(status, 403);
    let (status, _) = c.get("/console/journeys/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_journey_editor_checks_draws_and_saves() {
    let app = TestApp::spawn().await;
    shop(&app).await;
    cart_journey(&app).await;
    let c = Console::login(&app, &app.key_of_role("marketer").await).await;
    let (status, page) = c.get("/console/journeys/new").await;
    assert_eq!(status, 200);
    assert!(page.contains("wait_for_event"), "a starter definition: {page}");

    // A JSON mistake: at its line, the draft kept.
    let broken = "{\n  \"trigger\": {\"event\": \"Signed Up\"},\n  \"steps\": [ oops ]\n}";
    let (status, page, _) = c
        .post(
            "/console/journeys/check",
            &[("name", "welcome"), ("definition", broken)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Line 3, column"), "{page}");
    assert!(
        page.contains("<pre class=\"source\">  &quot;steps&quot;: [ oops ]"),
        "{page}"
    );
    assert!(
        page.contains("[ oops ]\n}</textarea>"),
        "the draft is kept: {page}"
    );

    // Valid JSON that saving would refuse: a template that does not exist, a lost target.
    let missing = json!({"trigger": {"event": "Signed Up"},
        "steps": [{"id": "hello", "type": "send", "template": "welcome"}]})
    .to_string();
    let (status, page, _) = c
        .post(
            "/console/journeys/check",
            &[("name", "welcome"), ("definition", &missing)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("sends template &quot;welcome&quot;, which does not exist"),
        "{page}"
    );
    let lost = json!({"trigger": {"event": "Signed Up"},
        "steps": [{"id": "hello", "type": "send", "template": "cart", "next": "ghost"}]})
    .to_string();
    let (status, page, _) = c
        .post(
            "/console/journeys/check",
            &[("name", "welcome"), ("definition", &lost)],
        )
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("ghost"), "{page}");
    assert!(
        page.contains("class=\"node missing\""),
        "the lost target is drawn: {page}"
    );

    // A good one is drawn before saving, then saved.
    let good = json!({"trigger": {"event": "Signed Up"},
        "steps": [{"id": "hello", "type": "send", "template": "cart"},
                  {"id": "pause", "type": "wait", "duration": "2d"},
                  {"id": "vip", "type": "branch", "condition": "orders.count >= 3", "then": "exit", "else": "nudge"},
                  {"id": "nudge", "type": "send", "template": "cart"}]})
    .to_string();
    let (status, page, _) = c
        .post(
            "/console/journeys/check",
            &[("name", "welcome"), ("definition", &good)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("This journey is valid"), "{page}");
    assert!(page.contains(">if orders.count &gt;= 3<"), "{page}");
    let (status, _, location) = c
        .post(
            "/console/journeys/save",
            &[("name", "welcome"), ("definition", &good)],
        )
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/console/journeys/welcome?saved=1"))
    );
    let (status, res) = app.admin(Method::GET, "/v1/journeys/welcome", None).await;
    assert_eq!(status, 200);
    assert_eq!(res["steps"][2]["condition"], "orders.count >= 3");
    let (_, page) = c.get("/console/journeys/welcome?saved=1").await;
    assert!(page.contains("Version 1 is saved"), "{page}");

    // A hostile name is refused by the journey rules, and shown escaped.
    let (status, page, _) = c
        .post(
            "/console/journeys/save",
            &[("name", "<img src=x onerror=alert(1)>"), ("definition", &good)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("a journey name is 1 to 64 letters"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");

    // Too long: refused before parsing.
    let long = format!("{{\"x\": \"{}\"}}", "a".repeat(120_000));
    let (status, page, _) = c
        .post(
            "/console/journeys/check",
            &[("name", "big"), ("definition", &long)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("at most 100,000 are taken"),
        "{}",
        &page[..600.min(page.len())]
    );

    // Deleting ends it.
    let (status, _, location) = c.post("/console/journeys/delete", &[("name", "welcome")]).await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/console/journeys?deleted=welcome"))
    );
    let (status, _) = app.admin(Method::GET, "/v1/journeys/welcome", None).await;
    assert_eq!(status, 404);
}
