//! API keys as an operator manages them, on both backends: scopes a route needs (403 without),
//! a revoked key refused (401) on every function within the key cache's bound, `key list` never
//! showing a key, a key id not revocable from another organization, and `app list` naming the
//! configured apps without their secrets.

use std::time::Duration;

use broker::auth::{Scope, key_id};
use broker::crypto::sha256_hex;
use broker_tests::fake_provider::CLIENT_SECRET;
use broker_tests::harness::FAKE;
use broker_tests::{Backend, Broker, on_both_backends};
use serde_json::json;

on_both_backends!(
    a_key_without_the_routes_scope_is_forbidden,
    a_revoked_key_is_refused_on_every_function_within_the_cache_bound,
    key_list_shows_ids_scopes_and_last_use_never_a_key,
    a_key_id_cannot_be_revoked_from_another_organization,
    app_list_names_the_configured_apps_without_secrets,
);

/// One API route of each function that takes keys, as (function, status).
async fn every_function(
    broker: &Broker,
    key: &str,
    connection_id: &str,
) -> Vec<(&'static str, u16)> {
    let initiate = broker
        .post(
            "/v1/sources/initiateOAuth",
            Some(key),
            &broker.initiate_body(),
        )
        .await
        .0;
    let complete = broker
        .post(
            "/v1/personal-connectors/complete-oauth",
            Some(key),
            &json!({ "state_token": "not-a-token" }),
        )
        .await
        .0;
    let connections = broker
        .get(&format!("/v1/connections/{connection_id}"), Some(key))
        .await
        .0;
    vec![
        ("initiate", initiate),
        ("complete", complete),
        ("connections", connections),
    ]
}

async fn a_key_without_the_routes_scope_is_forbidden(backend: Backend) {
    // Given a connection, a key that may only read connections and one that may only read tokens
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let reader = broker
        .admin
        .key_create(&broker.org, 0, vec![], vec![Scope::ConnectionsRead])
        .await
        .unwrap();
    let credentials = broker
        .admin
        .key_create(&broker.org, 0, vec![], vec![Scope::CredentialsRead])
        .await
        .unwrap();
    let token_path = format!("/v1/connections/{id}/token");
    let connection_path = format!("/v1/connections/{id}");

    // Then each is let through where its scope is the route's, and 403 elsewhere
    assert_eq!(broker.get(&connection_path, Some(&reader)).await.0, 200);
    assert_eq!(broker.get("/v1/connections", Some(&reader)).await.0, 200);
    let (status, body) = broker.get(&token_path, Some(&reader)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let (status, _) = broker
        .post(
            "/v1/sources/initiateOAuth",
            Some(&reader),
            &broker.initiate_body(),
        )
        .await;
    assert_eq!(status, 403, "flows");
    let deleted = broker
        .http
        .delete(broker.url(&connection_path))
        .header("x-api-key", &reader)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 403, "connections:write");

    assert_eq!(broker.get(&token_path, Some(&credentials)).await.0, 200);
    assert_eq!(
        broker.get(&connection_path, Some(&credentials)).await.0,
        403
    );

    // and the harness's key, made with no scope named, has them all
    assert_eq!(broker.get(&token_path, Some(&broker.key)).await.0, 200);
}

async fn a_revoked_key_is_refused_on_every_function_within_the_cache_bound(backend: Backend) {
    // Given a broker whose processes trust a key for 1 s, and a key every function has just
    // accepted (so every cache holds it)
    let broker = Broker::start_with(backend, &[("BROKER_KEY_CACHE_SECS", "1")]).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let key = broker
        .admin
        .key_create(&broker.org, 0, vec![], vec![])
        .await
        .unwrap();
    let before = every_function(&broker, &key, &id).await;
    assert!(before.iter().all(|(_, s)| *s != 401), "{before:?}");

    // When the operator revokes it by its id
    let said = broker
        .admin
        .key_revoke(&broker.org, &key_id(&sha256_hex(&key)))
        .await
        .unwrap();
    assert!(said.contains("revoked"), "{said}");

    // Then, once the cache's bound has passed, every function answers 401
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = every_function(&broker, &key, &id).await;
    assert!(after.iter().all(|(_, s)| *s == 401), "{after:?}");
    // and the other keys still work
    assert_eq!(
        broker
            .get(&format!("/v1/connections/{id}"), Some(&broker.key))
            .await
            .0,
        200
    );
}

async fn key_list_shows_ids_scopes_and_last_use_never_a_key(backend: Backend) {
    // Given the harness's key, used, and a narrower key, never used
    let broker = Broker::start(backend).await;
    let narrow = broker
        .admin
        .key_create(&broker.org, 0, vec!["ws-1".into()], vec![Scope::Flows])
        .await
        .unwrap();
    assert_eq!(
        broker.get("/v1/connections", Some(&broker.key)).await.0,
        200
    );

    // When the operator lists the organization's keys
    let listed = broker.admin.key_list(&broker.org).await.unwrap();

    // Then each key is one line with its id, workspaces, scopes and last use
    let line_of = |key: &str| {
        let id = key_id(&sha256_hex(key));
        listed
            .lines()
            .find(|l| l.starts_with(&id))
            .unwrap_or_else(|| panic!("{id} not in\n{listed}"))
            .to_string()
    };
    let used = line_of(&broker.key);
    assert!(
        used.contains("flows,connections:read,credentials:read,connections:write"),
        "{used}"
    );
    assert!(!used.contains("never"), "the key was used: {used}");
    let narrow_line = line_of(&narrow);
    assert!(
        narrow_line.contains("ws-1") && narrow_line.contains(" flows "),
        "{narrow_line}"
    );
    assert!(narrow_line.contains("never"), "{narrow_line}");
    // and never a key, nor its whole hash
    for key in [&broker.key, &narrow] {
        assert!(!listed.contains(key.as_str()));
        assert!(!listed.contains(&sha256_hex(key)));
    }
    assert_eq!(
        listed.lines().count(),
        3,
        "a header and two keys:\n{listed}"
    );
}

async fn a_key_id_cannot_be_revoked_from_another_organization(backend: Backend) {
    // Given the harness's key, and another organization
    let broker = Broker::start(backend).await;
    let (other, _) = broker.other_org().await;
    let id = key_id(&sha256_hex(&broker.key));

    // When an operator names the key's id under the other organization
    let refused = broker.admin.key_revoke(&other, &id).await;

    // Then nothing is revoked: the id is unknown there, and the key still works
    let e = refused.unwrap_err().to_string();
    assert!(e.contains("has no key"), "{e}");
    assert_eq!(
        broker.get("/v1/connections", Some(&broker.key)).await.0,
        200
    );
}

async fn app_list_names_the_configured_apps_without_secrets(backend: Backend) {
    // Given the fake provider's app at the default level, and an override for the organization
    let broker = Broker::start(backend).await;
    broker
        .admin
        .app_set(
            FAKE,
            "org-client",
            "org-secret-do-not-print".into(),
            Some(&broker.org),
            None,
        )
        .await
        .unwrap();

    // When the operator lists the apps
    let listed = broker.admin.app_list().await.unwrap();

    // Then both levels show, and no secret
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(FAKE) && l.contains("default")),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(FAKE) && l.contains("organization") && l.contains(&broker.org)),
        "{listed}"
    );
    assert!(!listed.contains(CLIENT_SECRET) && !listed.contains("org-secret-do-not-print"));
}
