//! The request shapes of the systems the broker stands in for, end to end over HTTP on both
//! backends: Airbyte's config API (client callback), Aitronos' native and connector routes, and
//! authentik's user connections. Each asserts what the fake provider was asked, and that another
//! organization's key cannot reach what these calls created.

use broker_tests::harness::{FAKE_DEFINITION, location};
use broker_tests::{Backend, Broker, Browser, Knobs, on_both_backends, query_of};
use serde_json::{Value, json};

on_both_backends!(
    client_callback_flow_redeems_the_code_for_the_platform_once,
    complete_oauth_in_snake_case_returns_token_fields,
    complete_oauth_reports_provider_refusals_in_the_body,
    complete_oauth_is_only_for_the_flows_own_context,
    native_initiate_redirects_with_the_secret_id,
    connector_flow_creates_one_source_per_connection,
    source_needs_an_authorized_connection_of_the_same_organization,
    authentik_import_stores_the_token_without_echoing_it,
    authentik_import_refuses_bad_identifiers,
);

const GET_CONSENT_URL: &str = "/v1/source_oauths/get_consent_url";
const COMPLETE_OAUTH: &str = "/v1/source_oauths/complete_oauth";
const IMPORT: &str = "/v1/sources/user_connections/oauth/";

fn native_path(org: &str) -> String {
    format!("/v1/organizations/{org}/knowledge/connectors/sources/oauth")
}

fn connector_path(org: &str) -> String {
    format!("/v1/organizations/{org}/knowledge/connectors/sources/authorize")
}

fn source_path(org: &str) -> String {
    format!("/v1/organizations/{org}/knowledge/connectors/sources/oauth/callback")
}

/// get_consent_url, then the user at the provider: returns the provider's redirect query, which
/// arrives at the platform's own redirect URL.
async fn consent_at_provider(broker: &Broker) -> std::collections::HashMap<String, String> {
    let (status, body) = broker
        .post(
            GET_CONSENT_URL,
            Some(&broker.key),
            &json!({
                "sourceDefinitionId": FAKE_DEFINITION,
                "workspaceId": "ws-1",
                "redirectUrl": broker.redirect_url,
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let consent = body["consentUrl"].as_str().unwrap();
    assert!(
        consent.starts_with(&broker.provider.base_url),
        "client-callback flows go straight to the provider: {consent}"
    );
    let resp = Browser::default().get(consent).await;
    assert_eq!(resp.status().as_u16(), 303);
    let back = location(&resp);
    assert!(back.starts_with(&broker.redirect_url), "{back}");
    query_of(&back)
}

fn complete_body(query: &std::collections::HashMap<String, String>) -> Value {
    json!({
        "sourceDefinitionId": FAKE_DEFINITION,
        "workspaceId": "ws-1",
        // The registered URL, written differently: compared as a URL, not as a string.
        "redirectUrl": "HTTP://127.0.0.1:1/platform/done",
        "queryParams": query,
        "returnSecretCoordinate": true,
    })
}

async fn client_callback_flow_redeems_the_code_for_the_platform_once(backend: Backend) {
    // Given a client-callback flow whose provider redirect reached the platform
    let broker = Broker::start(backend).await;
    let query = consent_at_provider(&broker).await;
    let auth = broker.provider.ledger().authorize_requests[0].clone();
    assert_eq!(
        auth["redirect_uri"], broker.redirect_url,
        "the provider redirects to the platform"
    );
    assert_eq!(auth["code_challenge_method"], "S256");

    // When the platform completes with the code and state
    let (status, body) = broker
        .post(COMPLETE_OAUTH, Some(&broker.key), &complete_body(&query))
        .await;

    // Then the code was redeemed once, with the same redirect_uri and the PKCE verifier
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_succeeded"], true);
    assert_eq!(body["request_error"], Value::Null);
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.token_requests.len(), 1);
    assert_eq!(ledger.token_requests[0].outcome, "issued");
    assert_eq!(
        ledger.token_requests[0].form["redirect_uri"],
        broker.redirect_url
    );
    assert!(ledger.token_requests[0].form.contains_key("code_verifier"));
    // and the tokens are in the vault behind the secret coordinate, not in the body
    let secret_id = body["auth_payload"]["secretId"].as_str().unwrap();
    let issued = ledger.issued_tokens()[0].clone();
    assert!(!body.to_string().contains(&issued));
    let stored = broker.read_secret(secret_id, &issued).await;
    assert_eq!(stored["access_token"], issued);

    // and a replay of the same completion makes no second token request
    let (again, refusal) = broker
        .post(COMPLETE_OAUTH, Some(&broker.key), &complete_body(&query))
        .await;
    assert_eq!(again, 400, "{refusal}");
    assert_eq!(refusal["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}

async fn complete_oauth_in_snake_case_returns_token_fields(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (status, body) = broker
        .post(
            GET_CONSENT_URL,
            Some(&broker.key),
            &json!({
                "source_definition_id": FAKE_DEFINITION,
                "workspace_id": "ws-1",
                "redirect_url": broker.redirect_url,
                "source_id": "ignored",
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let resp = Browser::default()
        .get(body["consentUrl"].as_str().unwrap())
        .await;
    let query = query_of(&location(&resp));

    let resp = broker
        .http
        .post(broker.url(COMPLETE_OAUTH))
        .header("x-api-key", &broker.key)
        .header("content-type", "application/json")
        .body(
            json!({
                "source_definition_id": FAKE_DEFINITION,
                "workspace_id": "ws-1",
                "query_params": query,
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let issued = broker.provider.ledger().issued_tokens()[0].clone();
    assert_eq!(body["request_succeeded"], true);
    assert_eq!(body["auth_payload"]["access_token"], issued);
    assert!(
        body["auth_payload"]["token_type"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("bearer")
    );
    assert!(body["auth_payload"]["refresh_token"].is_string());
}

async fn complete_oauth_reports_provider_refusals_in_the_body(backend: Backend) {
    // Given a user who denies consent
    let broker = Broker::start(backend).await;
    broker.provider.set_knobs(Knobs {
        deny: true,
        ..Knobs::default()
    });
    let query = consent_at_provider(&broker).await;
    assert_eq!(query["error"], "access_denied");

    let (status, body) = broker
        .post(COMPLETE_OAUTH, Some(&broker.key), &complete_body(&query))
        .await;

    // Then the refusal is reported in the body and no token request was made
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_succeeded"], false);
    assert!(
        body["request_error"]
            .as_str()
            .unwrap()
            .starts_with("access_denied"),
        "{body}"
    );
    assert_eq!(broker.provider.ledger().token_requests.len(), 0);

    // Given a token endpoint that refuses the code
    broker.provider.set_knobs(Knobs {
        token_error: Some("invalid_grant".into()),
        ..Knobs::default()
    });
    let query = consent_at_provider(&broker).await;
    let (status, body) = broker
        .post(COMPLETE_OAUTH, Some(&broker.key), &complete_body(&query))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_succeeded"], false);
    assert!(
        body["request_error"]
            .as_str()
            .unwrap()
            .starts_with("invalid_grant")
    );
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.token_requests.len(), 1);
    assert_eq!(ledger.token_requests[0].outcome, "invalid_grant");
}

async fn complete_oauth_is_only_for_the_flows_own_context(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (_, other_key) = broker.other_org().await;
    let query = consent_at_provider(&broker).await;
    let state = query["state"].clone();

    // A browser cannot turn a client-callback flow into a hosted one
    let resp = Browser::default()
        .get(&broker.url(&format!("/v1/oauth/authorize?flow={state}")))
        .await;
    assert_eq!(resp.status().as_u16(), 400);

    // Another organization's key with the very same body: as if the flow did not exist
    let (status, foreign) = broker
        .post(COMPLETE_OAUTH, Some(&other_key), &complete_body(&query))
        .await;
    let (_, missing) = broker
        .post(
            COMPLETE_OAUTH,
            Some(&other_key),
            &complete_body(&query_of(&format!(
                "http://x/?code=x&state={}",
                "A".repeat(43)
            ))),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(foreign["error"]["message"], missing["error"]["message"]);

    // Our key, but another workspace, definition or redirect URL
    for (field, value) in [
        ("workspaceId", "ws-2"),
        ("sourceDefinitionId", "ef69ef6e-aa7f-4af1-a01d-ef775033524e"),
        ("redirectUrl", "http://127.0.0.1:1/platform/elsewhere"),
    ] {
        let mut body = complete_body(&query);
        body[field] = json!(value);
        let (status, refusal) = broker.post(COMPLETE_OAUTH, Some(&broker.key), &body).await;
        assert_eq!(status, 400, "{field}: {refusal}");
    }
    assert_eq!(
        broker.provider.ledger().token_requests.len(),
        0,
        "no refused claim reached the provider"
    );

    // and none of the refusals burned the flow: its own caller still completes it
    let (status, body) = broker
        .post(COMPLETE_OAUTH, Some(&broker.key), &complete_body(&query))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_succeeded"], true);
}

async fn native_initiate_redirects_with_the_secret_id(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (other_org, other_key) = broker.other_org().await;
    let body = json!({
        "source_definition_id": FAKE_DEFINITION,
        "workspace_id": "ws-1",
        "redirect_url": broker.redirect_url,
    });

    let (status, started) = broker
        .post(&native_path(&broker.org), Some(&broker.key), &body)
        .await;
    assert_eq!(status, 200, "{started}");
    let mut browser = Browser::default();
    let callback = broker
        .through_provider(&mut browser, started["consent_url"].as_str().unwrap())
        .await;
    let resp = browser.get(&callback).await;

    assert_eq!(resp.status().as_u16(), 303);
    let params = query_of(&location(&resp));
    assert_eq!(params["workspace_id"], "ws-1");
    assert_eq!(params["definition_id"], FAKE_DEFINITION);
    let issued = broker.provider.ledger().issued_tokens()[0].clone();
    let stored = broker.read_secret(&params["secret_id"], &issued).await;
    assert_eq!(stored["access_token"], issued);

    // Another organization's key on our organization's path is refused before any flow starts
    let (status, _) = broker
        .post(&native_path(&broker.org), Some(&other_key), &body)
        .await;
    assert_eq!(status, 403);
    // and on its own path it cannot use our registered redirect URLs' organization
    let (status, _) = broker
        .post(&native_path(&other_org), Some(&broker.key), &body)
        .await;
    assert_eq!(status, 403);
    assert_eq!(broker.provider.ledger().authorize_requests.len(), 1);
}

/// Connector authorize and the browser's round trip: returns the authorized connection's id.
async fn authorized_connection(broker: &Broker) -> String {
    let (status, started) = broker
        .post(
            &connector_path(&broker.org),
            Some(&broker.key),
            &json!({ "slug": "fake", "redirect_url": broker.redirect_url, "workspace_id": "ws-1" }),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let connection_id = started["connection_id"].as_str().unwrap().to_string();
    let mut browser = Browser::default();
    let callback = broker
        .through_provider(&mut browser, started["authorization_url"].as_str().unwrap())
        .await;
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 303);
    let params = query_of(&location(&resp));
    assert_eq!(params["connection_id"], connection_id);
    assert_eq!(params["status"], "authorized");
    assert_eq!(params.len(), 2, "references only: {params:?}");
    connection_id
}

fn source_body(connection_id: &str, name: &str) -> Value {
    json!({
        "connection_id": connection_id,
        "workspace_id": "ws-1",
        "source_definition_id": FAKE_DEFINITION,
        "source_name": name,
    })
}

async fn connector_flow_creates_one_source_per_connection(backend: Backend) {
    // Given an authorized connection
    let broker = Broker::start(backend).await;
    let connection_id = authorized_connection(&broker).await;
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);

    // When the platform creates a source from it
    let (status, source) = broker
        .post(
            &source_path(&broker.org),
            Some(&broker.key),
            &source_body(&connection_id, "Fake CRM"),
        )
        .await;

    // Then the source is created and the connection is active
    assert_eq!(status, 201, "{source}");
    assert_eq!(source["connection_id"], connection_id);
    assert_eq!(source["workspace_id"], "ws-1");
    assert_eq!(source["source_definition_id"], FAKE_DEFINITION);
    assert_eq!(source["name"], "Fake CRM");
    assert_eq!(source["status"], "active");
    let connection = broker
        .app
        .connections
        .get_connection(&broker.org.as_str().into(), &connection_id.as_str().into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        connection.status,
        broker::connection::ConnectionStatus::Active
    );

    // A retry of the same request gets the same source; a second, different source is refused
    let (status, again) = broker
        .post(
            &source_path(&broker.org),
            Some(&broker.key),
            &source_body(&connection_id, "Fake CRM"),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(again["id"], source["id"]);
    let (status, second) = broker
        .post(
            &source_path(&broker.org),
            Some(&broker.key),
            &source_body(&connection_id, "Another"),
        )
        .await;
    assert_eq!(status, 400, "{second}");
    assert_eq!(second["error"]["details"]["field"], "connection_id");
    assert_eq!(
        broker.provider.ledger().token_requests.len(),
        1,
        "creating sources never talks to the provider"
    );
}

async fn source_needs_an_authorized_connection_of_the_same_organization(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (other_org, other_key) = broker.other_org().await;
    let connection_id = authorized_connection(&broker).await;

    // Another organization, on its own path with our connection id: as if it did not exist
    let (status, foreign) = broker
        .post(
            &source_path(&other_org),
            Some(&other_key),
            &source_body(&connection_id, "Stolen"),
        )
        .await;
    let (_, missing) = broker
        .post(
            &source_path(&other_org),
            Some(&other_key),
            &source_body("conn_00000000000000000000000000000000", "Stolen"),
        )
        .await;
    assert_eq!(status, 404, "{foreign}");
    assert_eq!(foreign["error"]["message"], missing["error"]["message"]);
    // and on our path with its key: forbidden
    let (status, _) = broker
        .post(
            &source_path(&broker.org),
            Some(&other_key),
            &source_body(&connection_id, "Stolen"),
        )
        .await;
    assert_eq!(status, 403);
    // Our key, but another workspace's view of the connection: missing too
    let mut other_ws = source_body(&connection_id, "Elsewhere");
    other_ws["workspace_id"] = json!("ws-2");
    let (status, _) = broker
        .post(&source_path(&broker.org), Some(&broker.key), &other_ws)
        .await;
    assert_eq!(status, 404);
    // A definition of another provider
    let mut github = source_body(&connection_id, "Wrong");
    github["source_definition_id"] = json!("ef69ef6e-aa7f-4af1-a01d-ef775033524e");
    let (status, _) = broker
        .post(&source_path(&broker.org), Some(&broker.key), &github)
        .await;
    assert_eq!(status, 400);

    // A connection whose flow never finished is not authorized
    let (_, pending) = broker
        .post(
            &connector_path(&broker.org),
            Some(&broker.key),
            &json!({ "slug": "fake", "redirect_url": broker.redirect_url }),
        )
        .await;
    let (status, body) = broker
        .post(
            &source_path(&broker.org),
            Some(&broker.key),
            &source_body(pending["connection_id"].as_str().unwrap(), "Too early"),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["field"], "connection_id");
}

async fn authentik_import_stores_the_token_without_echoing_it(backend: Backend) {
    let broker = Broker::start(backend).await;
    let token = "imported-token-never-echoed";

    let (status, body) = broker
        .post(
            IMPORT,
            Some(&broker.key),
            &json!({
                "source": "fake",
                "identifier": "user-42",
                "access_token": token,
                "expires": "2030-01-01T00:00:00Z",
            }),
        )
        .await;

    assert_eq!(status, 201, "{body}");
    assert!(!body.to_string().contains(token));
    assert!(body["pk"].as_u64().unwrap() > 0);
    assert_eq!(body["user"], 7, "the key's user");
    assert_eq!(body["identifier"], "user-42");
    assert_eq!(body["source"]["slug"], "fake");
    assert_eq!(body["source"]["name"], "Fake provider");
    assert_eq!(body["expires"], "2030-01-01T00:00:00Z");
    let connection = broker
        .app
        .connections
        .get_connection(
            &broker.org.as_str().into(),
            &body["connection_id"].as_str().unwrap().into(),
        )
        .await
        .unwrap()
        .expect("the imported connection, in the caller's organization");
    let stored = broker
        .read_secret(connection.secret_id.as_deref().unwrap(), token)
        .await;
    assert_eq!(stored["access_token"], token);
    assert_eq!(
        broker.provider.ledger().token_requests.len(),
        0,
        "an import never calls the provider"
    );
    // The other organization does not see it
    let (other_org, _) = broker.other_org().await;
    let foreign = broker
        .app
        .connections
        .get_connection(
            &other_org.as_str().into(),
            &body["connection_id"].as_str().unwrap().into(),
        )
        .await
        .unwrap();
    assert!(foreign.is_none());
}

async fn authentik_import_refuses_bad_identifiers(backend: Backend) {
    let broker = Broker::start(backend).await;
    for identifier in [String::new(), "x".repeat(256)] {
        let (status, body) = broker
            .post(
                IMPORT,
                Some(&broker.key),
                &json!({ "source": "fake", "identifier": identifier, "access_token": "t" }),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["details"]["field"], "identifier");
    }
    let (status, _) = broker
        .post(
            IMPORT,
            Some(&broker.key),
            &json!({ "source": "fake", "identifier": "x".repeat(255) }),
        )
        .await;
    assert_eq!(
        status, 201,
        "255 characters is the limit, and a token is optional"
    );
    let (status, body) = broker
        .post(
            IMPORT,
            Some(&broker.key),
            &json!({ "source": "no-such-provider", "identifier": "u" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"]["field"], "source");
    let (status, _) = broker
        .post(
            IMPORT,
            None,
            &json!({ "source": "fake", "identifier": "u" }),
        )
        .await;
    assert_eq!(status, 401);
}
