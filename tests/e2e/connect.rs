//! Connect sessions and the hosted connect page (DESIGN §4.8), over HTTP on both backends (the
//! real-browser suite is `browser.rs`): a session lists its providers, starts an ordinary flow
//! from the page's form, ends with a `postMessage` to exactly its origin or a redirect to its URL,
//! records its end user on the connection, and is spent by the first success; sessions and forms
//! that should not work show the error page and start nothing.

use broker_tests::harness::{FakeEntry, location, status_and_json};
use broker_tests::{Backend, Broker, Browser, on_both_backends};
use serde_json::{Value, json};

on_both_backends!(
    a_session_connects_one_account_and_posts_the_result_to_its_origin_only,
    a_session_in_redirect_mode_sends_the_browser_to_its_url,
    sessions_are_refused_unless_their_origin_and_url_are_registered,
    a_spent_expired_or_unknown_session_starts_nothing,
    a_providers_inputs_are_checked_by_the_server_whatever_the_page_did,
    a_user_declining_gets_a_page_saying_so_and_the_session_stays_usable,
);

/// The origin of the organization's registered redirect URL.
const ORIGIN: &str = "http://127.0.0.1:1";

async fn create_session(broker: &Broker, body: Value) -> (u16, Value) {
    broker
        .post("/v1/connect/sessions", Some(&broker.key), &body)
        .await
}

fn session_body() -> Value {
    json!({
        "workspace_id": "ws-1",
        "end_user": {"id": "user-42", "email": "ada@example.com", "display_name": "Ada"},
        "allowed_providers": ["fake"],
        "origin": ORIGIN,
    })
}

/// The page's form for `provider`, then the authorize step and the provider's consent: the
/// callback URL the provider sent the browser to.
async fn connect_through_page(
    broker: &Broker,
    browser: &mut Browser,
    token: &str,
    fields: &[(&str, &str)],
) -> oauth2::reqwest::Response {
    let mut form = vec![("session", token), ("provider", "fake")];
    form.extend_from_slice(fields);
    browser.post_form(&broker.url("/v1/connect"), &form).await
}

/// The page's form for the fake provider, the provider's consent, and the callback: the
/// callback's response (the result page, or the redirect).
async fn connect_with(broker: &Broker, token: &str) -> oauth2::reqwest::Response {
    let mut browser = Browser::default();
    let started = connect_through_page(broker, &mut browser, token, &[]).await;
    let callback = broker
        .through_provider(&mut browser, &location(&started))
        .await;
    browser.get(&callback).await
}

async fn a_session_connects_one_account_and_posts_the_result_to_its_origin_only(backend: Backend) {
    // Given a session for end user user-42, offering the fake provider, in popup mode
    let broker = Broker::start(backend).await;
    let (status, created) = create_session(&broker, session_body()).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    let connect_url = created["connect_url"].as_str().unwrap().to_string();
    assert!(connect_url.starts_with(&broker.url("/v1/connect?session=")));

    // When the browser opens the page
    let mut browser = Browser::default();
    let page = browser.get(&connect_url).await;

    // Then it lists the allowed provider only, under a nonce CSP that forbids framing
    assert_eq!(page.status().as_u16(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'nonce-") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("Connect Fake provider") && html.contains("Ada"));
    assert!(
        !html.contains("GitHub"),
        "only the allowed providers are listed"
    );

    // and its form starts the flow, which ends on a result page for the opener
    let started = connect_through_page(&broker, &mut browser, &token, &[]).await;
    assert_eq!(started.status().as_u16(), 303);
    let callback = broker
        .through_provider(&mut browser, &location(&started))
        .await;
    let result = browser.get(&callback).await;
    assert_eq!(result.status().as_u16(), 200);
    let csp = result.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let html = result.text().await.unwrap();

    // posting to exactly the session's origin, never to any origin
    assert!(html.contains("postMessage({\"connection_id\":"), "{html}");
    assert!(html.contains(&format!(",\"{ORIGIN}\")")), "{html}");
    assert!(!html.contains("\"*\""));
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));

    // and the connection is listed with the end user, in the session's workspace
    let (status, listed) = broker
        .get("/v1/connections?end_user_id=user-42", Some(&broker.key))
        .await;
    assert_eq!(status, 200, "{listed}");
    let connections = listed["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 1, "{listed}");
    assert_eq!(connections[0]["end_user_id"], "user-42");
    assert_eq!(connections[0]["workspace_id"], "ws-1");
    assert_eq!(connections[0]["status"], "authorized");
    let id = connections[0]["id"].as_str().unwrap();
    assert!(html.contains(id));
    let (_, other) = broker
        .get(
            "/v1/connections?end_user_id=someone-else",
            Some(&broker.key),
        )
        .await;
    assert_eq!(other["connections"], json!([]));

    // and another organization's session connects in that organization only
    let (_, other_key) = broker.other_org().await;
    let (status, theirs) = broker
        .post("/v1/connect/sessions", Some(&other_key), &session_body())
        .await;
    assert_eq!(status, 201, "{theirs}");
    let mut browser = Browser::default();
    let started = connect_through_page(
        &broker,
        &mut browser,
        theirs["token"].as_str().unwrap(),
        &[],
    )
    .await;
    let callback = broker
        .through_provider(&mut browser, &location(&started))
        .await;
    assert_eq!(browser.get(&callback).await.status().as_u16(), 200);
    let (_, ours) = broker
        .get("/v1/connections?end_user_id=user-42", Some(&broker.key))
        .await;
    assert_eq!(ours["connections"].as_array().unwrap().len(), 1, "{ours}");
    let (_, listed) = broker
        .get("/v1/connections?end_user_id=user-42", Some(&other_key))
        .await;
    let theirs = listed["connections"].as_array().unwrap();
    assert_eq!(theirs.len(), 1, "{listed}");
    assert_ne!(theirs[0]["id"], id);
}

async fn a_session_in_redirect_mode_sends_the_browser_to_its_url(backend: Backend) {
    // Given a session with the registered redirect URL and no origin
    let broker = Broker::start(backend).await;
    let mut body = session_body();
    body["origin"] = Value::Null;
    body["redirect_url"] = json!(broker.redirect_url);
    let body: Value =
        serde_json::from_str(&body.to_string().replace(",\"origin\":null", "")).unwrap();
    let (status, created) = create_session(&broker, body).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap();

    // When the account is connected through the page
    let result = connect_with(&broker, token).await;

    // Then the browser goes to the redirect URL with the references only
    assert_eq!(result.status().as_u16(), 303);
    let target = location(&result);
    assert!(target.starts_with(&broker.redirect_url), "{target}");
    let query = broker_tests::query_of(&target);
    assert_eq!(query["status"], "authorized");
    assert!(query["connection_id"].starts_with("conn_"));
    assert_eq!(query.len(), 2, "{query:?}");
}

async fn sessions_are_refused_unless_their_origin_and_url_are_registered(backend: Backend) {
    let broker = Broker::start(backend).await;
    let refused = |mutate: &dyn Fn(&mut Value)| {
        let mut body = session_body();
        mutate(&mut body);
        body
    };
    for (why, body) in [
        (
            "an unregistered origin",
            refused(&|b| b["origin"] = json!("http://127.0.0.1:2")),
        ),
        (
            "an origin with a path",
            refused(&|b| b["origin"] = json!("http://127.0.0.1:1/platform")),
        ),
        (
            "an unregistered redirect URL",
            refused(&|b| b["redirect_url"] = json!("http://127.0.0.1:1/elsewhere")),
        ),
        (
            "no result target",
            refused(&|b| {
                b.as_object_mut().unwrap().remove("origin");
            }),
        ),
        (
            "an unknown provider",
            refused(&|b| b["allowed_providers"] = json!(["nope"])),
        ),
        (
            "no end user",
            refused(&|b| b["end_user"] = json!({"id": ""})),
        ),
        (
            "no workspace",
            refused(&|b| {
                b.as_object_mut().unwrap().remove("workspace_id");
            }),
        ),
    ] {
        let (status, answer) = create_session(&broker, body).await;
        assert_eq!(status, 400, "{why}: {answer}");
        assert_eq!(answer["error"]["code"], "VALIDATION_ERROR", "{why}");
    }
    // and without a key there is no session
    let (status, _) = broker
        .post("/v1/connect/sessions", None, &session_body())
        .await;
    assert_eq!(status, 401);
}

async fn a_spent_expired_or_unknown_session_starts_nothing(backend: Backend) {
    // Given a session spent by a successful connection, and another left to expire
    let broker = Broker::start(backend).await;
    let (_, spent) = create_session(&broker, session_body()).await;
    let spent = spent["token"].as_str().unwrap().to_string();
    assert_eq!(connect_with(&broker, &spent).await.status().as_u16(), 200);
    let (_, expiring) = create_session(&broker, session_body()).await;
    let expiring = expiring["token"].as_str().unwrap().to_string();
    broker
        .app
        .clock
        .advance(broker.app.config.connect_session_ttl_secs + 1);
    let flows_before = broker.provider.ledger().authorize_requests.len();

    // When each, and an unknown one, is opened and its form posted
    let mut browser = Browser::default();
    for token in [spent.as_str(), expiring.as_str(), "x".repeat(43).as_str()] {
        let page = browser
            .get(&broker.url(&format!("/v1/connect?session={token}")))
            .await;
        assert_eq!(page.status().as_u16(), 400);
        assert!(page.text().await.unwrap().contains("no longer valid"));
        let posted = connect_through_page(&broker, &mut browser, token, &[]).await;
        // Then the error page, and no flow started
        assert_eq!(posted.status().as_u16(), 400);
        assert!(posted.headers().get("location").is_none());
    }
    assert_eq!(
        broker.provider.ledger().authorize_requests.len(),
        flows_before
    );
    let (_, listed) = broker.get("/v1/connections", Some(&broker.key)).await;
    assert_eq!(listed["connections"].as_array().unwrap().len(), 1);
}

async fn a_providers_inputs_are_checked_by_the_server_whatever_the_page_did(backend: Backend) {
    // Given a provider with a Zendesk-style subdomain input
    let entry = FakeEntry {
        keys: &[],
        tables: "[provider.inputs.subdomain]\npattern = \"[a-z0-9][a-z0-9-]{0,62}\"\nrequired = true\ndescription = \"Your Zendesk subdomain\"\n",
    };
    let broker = Broker::start_custom(backend, &[], &entry).await;
    let (_, created) = create_session(&broker, session_body()).await;
    let token = created["token"].as_str().unwrap();
    let mut browser = Browser::default();

    // Then the page asks for it with the pattern the browser checks
    let html = browser
        .get(created["connect_url"].as_str().unwrap())
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("name=\"input.subdomain\""), "{html}");
    assert!(
        html.contains("pattern=\"[a-z0-9][a-z0-9\\-]{0,62}\""),
        "{html}"
    );
    assert!(html.contains(" required"));

    // and a form posted past the page with a bad value, or none, is refused by the server
    for fields in [
        &[("input.subdomain", "evil.example.com/x")][..],
        &[("input.subdomain", "-bad")][..],
        &[][..],
    ] {
        let posted = connect_through_page(&broker, &mut browser, token, fields).await;
        assert_eq!(posted.status().as_u16(), 400, "{fields:?}");
    }
    // and a good one starts the flow
    let posted =
        connect_through_page(&broker, &mut browser, token, &[("input.subdomain", "acme")]).await;
    let (status, body) = status_and_json(posted).await;
    assert_eq!(status, 303, "{body}");
}

async fn a_user_declining_gets_a_page_saying_so_and_the_session_stays_usable(backend: Backend) {
    // Given a popup-mode session, and a user who declines at the provider
    let broker = Broker::start(backend).await;
    let (_, created) = create_session(&broker, session_body()).await;
    let token = created["token"].as_str().unwrap();
    broker.provider.set_knobs(broker_tests::Knobs {
        deny: true,
        ..Default::default()
    });
    let result = connect_with(&broker, token).await;

    // Then the result page says what happened and what to do, and tells the opener it failed
    assert_eq!(result.status().as_u16(), 200);
    let html = result.text().await.unwrap();
    assert!(html.contains("You declined access"), "{html}");
    assert!(html.contains("\"status\":\"failed\"") && html.contains("\"error\":\"access_denied\""));
    // and the session is not spent: the user can try again
    let again = Browser::default()
        .get(created["connect_url"].as_str().unwrap())
        .await;
    assert_eq!(again.status().as_u16(), 200);
    let (_, listed) = broker.get("/v1/connections", Some(&broker.key)).await;
    assert_eq!(listed["connections"][0]["status"], "failed");
}
