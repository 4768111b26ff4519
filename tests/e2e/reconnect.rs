//! Repairing a connection in place (DESIGN §4.5 `reconnect`), on both backends: after the
//! provider stops accepting its refresh token, a reconnect flow through the same browser steps
//! re-authorizes the same connection (same id, same secret, a new version), which is `active`
//! with its failures reset and tokens the provider accepts; a declined reconnect leaves it as it
//! was; a revoked connection cannot come back.

use broker::connection::ConnectionStatus;
use broker_tests::harness::location;
use broker_tests::{Backend, Broker, Knobs, on_both_backends, query_of};
use serde_json::json;

on_both_backends!(
    a_reconnect_after_invalid_grant_repairs_the_same_connection,
    a_declined_reconnect_leaves_the_connection_as_it_was,
    a_revoked_connection_cannot_be_reconnected,
    a_reconnect_checks_its_redirect_url_like_any_flow,
    a_connection_revoked_while_its_reconnect_was_at_the_provider_stays_revoked,
);

async fn reconnect(broker: &Broker, id: &str, redirect_url: &str) -> (u16, serde_json::Value) {
    broker
        .post(
            &format!("/v1/connections/{id}/reconnect"),
            Some(&broker.key),
            &json!({ "redirect_url": redirect_url }),
        )
        .await
}

async fn a_reconnect_after_invalid_grant_repairs_the_same_connection(backend: Backend) {
    // Given an active connection whose refresh token the provider no longer accepts
    let broker = Broker::start(backend).await;
    let (id, state_token) = broker.authorized_personal_connection().await;
    assert_eq!(broker.complete_personal(&state_token).await.0, 200);
    let before = broker.connection(&id).await;
    broker.provider.set_knobs(Knobs {
        refresh_error: Some("invalid_grant".into()),
        ..Knobs::default()
    });
    let (status, _) = broker.token(&id, true).await;
    assert_eq!(status, 409);
    assert_eq!(
        broker.connection(&id).await.status,
        ConnectionStatus::ReauthorizationRequired
    );
    broker.provider.set_knobs(Knobs::default());

    // When the platform reconnects it and the user goes through the provider again
    let (status, started) = reconnect(&broker, &id, &broker.redirect_url).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["connection_id"], id.as_str());
    let done = broker
        .land_from(started["authorization_url"].as_str().unwrap())
        .await;

    // Then the browser lands with the same connection, active
    assert_eq!(done.status().as_u16(), 303);
    let params = query_of(&location(&done));
    assert_eq!(params["connection_id"], id);
    assert_eq!(params["status"], "active");
    assert!(!params.contains_key("secret_id") && !params.contains_key("state_token"));
    // and the connection kept its id and secret, is active with its failures reset
    let after = broker.connection(&id).await;
    assert_eq!(after.status, ConnectionStatus::Active);
    assert_eq!(after.secret_id, before.secret_id);
    assert_eq!(after.refresh_failures, 0);
    // and the new tokens are stored and accepted by the provider
    let issued = broker.provider.ledger().issued_tokens();
    let newest = issued.last().unwrap().clone();
    assert!(broker.provider.accepts(&newest));
    let doc = broker
        .read_secret(after.secret_id.as_deref().unwrap(), &newest)
        .await;
    assert_eq!(doc["access_token"], newest.as_str());
    // and the next token read hands them out with no refresh
    let refreshes = broker.provider.ledger().refreshes().len();
    let (status, token) = broker.token(&id, false).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["access_token"], newest.as_str());
    assert_eq!(broker.provider.ledger().refreshes().len(), refreshes);
}

async fn a_declined_reconnect_leaves_the_connection_as_it_was(backend: Backend) {
    // Given an authorized connection, and a user who will decline at the provider
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let before = broker.connection(&id).await;
    let (status, started) = reconnect(&broker, &id, &broker.redirect_url).await;
    assert_eq!(status, 200, "{started}");
    broker.provider.set_knobs(Knobs {
        deny: true,
        ..Knobs::default()
    });

    // When the reconnect's callback brings the refusal
    let done = broker
        .land_from(started["authorization_url"].as_str().unwrap())
        .await;

    // Then the platform hears of it, and the connection still works as before
    assert_eq!(done.status().as_u16(), 303);
    assert_eq!(query_of(&location(&done))["error"], "access_denied");
    let after = broker.connection(&id).await;
    assert_eq!(after.status, before.status);
    assert_eq!(broker.token(&id, false).await.0, 200);
}

async fn a_revoked_connection_cannot_be_reconnected(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    assert_eq!(broker.delete_connection(&id).await.0, 200);

    let (status, body) = reconnect(&broker, &id, &broker.redirect_url).await;

    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
}

async fn a_reconnect_checks_its_redirect_url_like_any_flow(backend: Backend) {
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;

    let (status, body) = reconnect(&broker, &id, "https://attacker.example/steal").await;

    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["field"], "redirect_url");
    // and another organization's key does not find the connection
    let (_, other_key) = broker.other_org().await;
    let (status, _) = broker
        .post(
            &format!("/v1/connections/{id}/reconnect"),
            Some(&other_key),
            &json!({ "redirect_url": broker.redirect_url }),
        )
        .await;
    assert_eq!(status, 404);
}

async fn a_connection_revoked_while_its_reconnect_was_at_the_provider_stays_revoked(
    backend: Backend,
) {
    // Given a reconnect the user has started, and the connection deleted meanwhile
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let (status, started) = reconnect(&broker, &id, &broker.redirect_url).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(broker.delete_connection(&id).await.0, 200);
    let revoked_before = broker.provider.ledger().revocations.len();

    // When the user comes back from the provider
    let done = broker
        .land_from(started["authorization_url"].as_str().unwrap())
        .await;

    // Then the browser is refused, the connection stays revoked with no tokens stored, and the
    // grant the provider just made was revoked too
    assert_eq!(done.status().as_u16(), 400);
    assert_eq!(
        broker.connection(&id).await.status,
        ConnectionStatus::Revoked
    );
    assert!(!broker.token_document_exists(&id).await);
    let ledger = broker.provider.ledger();
    let newest = ledger.issued_tokens().last().unwrap().clone();
    assert!(ledger.revocations.len() > revoked_before);
    assert!(!broker.provider.accepts(&newest));
}
