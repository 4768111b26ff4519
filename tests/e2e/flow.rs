//! The whole flow over HTTP, on both backends: what the browser is sent where, what the provider
//! was asked, and what ends up in the vault.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use broker_tests::fake_provider::CLIENT_ID;
use broker_tests::harness::location;
use broker_tests::{Backend, Broker, Browser, on_both_backends, query_of};
use serde_json::json;
use sha2::{Digest, Sha256};

on_both_backends!(
    initiate_oauth_flow_stores_tokens_and_redirects_with_references_only,
    initiate_oauth_accepts_snake_case_fields,
    personal_flow_activates_connection_and_state_token_is_single_use,
    parallel_flows_in_one_browser_do_not_disturb_each_other,
);

async fn initiate_oauth_flow_stores_tokens_and_redirects_with_references_only(backend: Backend) {
    // Given a registered organization and the fake provider's app credentials
    let broker = Broker::start(backend).await;
    let mut browser = Browser::default();

    // When the platform initiates and the browser goes through authorize, the provider and the callback
    let consent = broker.initiate(&broker.initiate_body()).await;
    assert!(
        consent.starts_with(&broker.url("/v1/oauth/authorize?flow=")),
        "{consent}"
    );
    let callback = broker.through_provider(&mut browser, &consent).await;
    let resp = browser.get(&callback).await;

    // Then the browser goes back to the platform with references only
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let target = location(&resp);
    assert!(target.starts_with(&broker.redirect_url), "{target}");
    let params = query_of(&target);
    let secret_id = params["secret_id"].clone();
    assert_eq!(params["workspace_id"], "ws-1");
    assert_eq!(params["definition_id"], "fake");
    assert_eq!(params.len(), 3, "only references: {params:?}");

    // and the provider saw one authorize and one token request, both by the rules
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.authorize_requests.len(), 1);
    assert_eq!(ledger.token_requests.len(), 1);
    let auth = &ledger.authorize_requests[0];
    let token = &ledger.token_requests[0];
    assert_eq!(token.outcome, "issued");
    assert_eq!(auth["redirect_uri"], broker.url("/v1/oauth/callback"));
    assert_eq!(token.form["redirect_uri"], auth["redirect_uri"]);
    assert_eq!(auth["code_challenge_method"], "S256");
    assert_eq!(
        auth["prompt"], "consent",
        "catalog authorize_params are sent"
    );
    assert_ne!(
        auth["state"], "caller-cannot-override",
        "protocol parameters are never overridden"
    );
    let verifier = &token.form["code_verifier"];
    assert_eq!(
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        auth["code_challenge"]
    );
    assert_eq!(
        token.basic_auth.as_ref().map(|(id, _)| id.as_str()),
        Some(CLIENT_ID)
    );
    assert!(
        !token.form.contains_key("client_secret"),
        "basic auth, not the body"
    );

    // and nothing secret reached a URL the broker emitted
    let access_token = &ledger.issued_tokens()[0];
    for url in [&consent, &target] {
        assert!(
            !url.contains(access_token)
                && !url.contains(verifier.as_str())
                && !url.contains(&token.form["code"])
        );
    }

    // and the provider's tokens are in the vault
    let doc = broker.read_secret(&secret_id, access_token).await;
    assert_eq!(doc["access_token"], access_token.as_str());
    let issued_refresh = ledger.token_requests[0].refresh_token.clone().unwrap();
    assert_eq!(doc["refresh_token"], issued_refresh.as_str());
    assert_eq!(doc["provider"], "fake");
    assert!(doc["expires_at"].as_i64().unwrap() > chrono_now());
}

async fn initiate_oauth_accepts_snake_case_fields(backend: Backend) {
    let broker = Broker::start(backend).await;
    let body = json!({
        "source_type": "fake",
        "workspace_id": "ws-snake",
        "redirect_url": broker.redirect_url,
        "requested_optional_scopes": ["write"],
    });
    let consent = broker.initiate(&body).await;
    let mut browser = Browser::default();
    let callback = broker.through_provider(&mut browser, &consent).await;
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(query_of(&location(&resp))["workspace_id"], "ws-snake");
    assert_eq!(
        broker.provider.ledger().authorize_requests[0]["scope"],
        "read write"
    );
}

async fn personal_flow_activates_connection_and_state_token_is_single_use(backend: Backend) {
    let broker = Broker::start(backend).await;
    let path = format!(
        "/v1/personal-connectors/authorize?organization_id={}",
        broker.org
    );
    let (status, started) = broker
        .post(
            &path,
            Some(&broker.key),
            &json!({ "connector_type": "fake", "redirect_url": broker.redirect_url }),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let connection_id = started["connection_id"].as_str().unwrap().to_string();
    assert!(started["expires_at"].as_str().unwrap().ends_with('Z'));

    let mut browser = Browser::default();
    let callback = broker
        .through_provider(&mut browser, started["authorization_url"].as_str().unwrap())
        .await;
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 303);
    let params = query_of(&location(&resp));
    assert_eq!(params["connection_id"], connection_id);
    let state_token = params["state_token"].clone();

    let complete = format!(
        "/v1/personal-connectors/complete-oauth?organization_id={}",
        broker.org
    );
    let (status, done) = broker
        .post(
            &complete,
            Some(&broker.key),
            &json!({ "state_token": state_token }),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["connected"], true);
    assert_eq!(
        done["connection"],
        json!({ "id": connection_id, "app_key": "fake", "status": "active" })
    );

    let stored = broker
        .app
        .connections
        .get_connection(&broker.org.as_str().into(), &connection_id.as_str().into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, broker::connection::ConnectionStatus::Active);
    assert_eq!(stored.user_id, 7, "the key's user id");
    let secret = broker
        .read_secret(
            stored.secret_id.as_deref().unwrap(),
            &broker.provider.ledger().issued_tokens()[0],
        )
        .await;
    assert_eq!(
        secret["access_token"],
        broker.provider.ledger().issued_tokens()[0].as_str()
    );

    // The same token again is refused
    let (status, again) = broker
        .post(
            &complete,
            Some(&broker.key),
            &json!({ "state_token": state_token }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(again["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(
        again["error"]["system_message"],
        "Invalid or expired state token."
    );
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}

async fn parallel_flows_in_one_browser_do_not_disturb_each_other(backend: Backend) {
    let broker = Broker::start(backend).await;
    let mut browser = Browser::default();
    let first = broker.initiate(&broker.initiate_body()).await;
    let second = broker.initiate(&broker.initiate_body()).await;
    let first_cb = broker.through_provider(&mut browser, &first).await;
    let second_cb = broker.through_provider(&mut browser, &second).await;
    assert_eq!(browser.cookies().len(), 2, "one binding cookie per flow");
    for cb in [second_cb, first_cb] {
        assert_eq!(browser.get(&cb).await.status().as_u16(), 303);
    }
    assert_eq!(broker.provider.ledger().redeemed.len(), 2);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
