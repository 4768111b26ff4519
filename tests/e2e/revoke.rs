//! Ending a connection (DESIGN §4.5 `DELETE`), on both backends: revoked at the provider (RFC
//! 7009, the refresh token first, with the app's client authentication), the secret deleted
//! whatever the provider answered, a `revoked` tombstone kept for 30 days, the same answer when
//! repeated; and a delete racing token requests that would refresh, after which no refresh
//! reaches the provider.

use std::time::Duration;

use broker::connection::{ConnectionStatus, TOMBSTONE_SECS};
use broker_tests::fake_provider::{CLIENT_ID, CLIENT_SECRET};
use broker_tests::harness::FakeEntry;
use broker_tests::{Backend, Broker, Knobs, on_both_backends};
use serde_json::json;

on_both_backends!(
    a_delete_revokes_at_the_provider_deletes_the_tokens_and_keeps_a_tombstone,
    a_provider_without_revocation_answers_not_supported_and_the_tokens_go,
    a_provider_refusing_revocation_answers_failed_and_the_tokens_go_anyway,
    a_delete_racing_twenty_refreshing_token_reads_leaves_no_refresh_after_it,
    another_organizations_connection_cannot_be_deleted,
    a_bearer_style_provider_is_asked_with_the_access_token_alone,
);

async fn a_delete_revokes_at_the_provider_deletes_the_tokens_and_keeps_a_tombstone(
    backend: Backend,
) {
    // Given an authorized connection whose tokens the provider accepts
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let issued = broker.provider.ledger().token_requests[0].clone();
    let (access, refresh) = (
        issued.access_token.clone().unwrap(),
        issued.refresh_token.clone().unwrap(),
    );
    assert!(broker.token_document_exists(&id).await);

    // When the platform deletes it
    let (status, body) = broker.delete_connection(&id).await;

    // Then the answer says revoked at the provider
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "connection_id": id, "status": "revoked", "provider_revocation": "revoked" })
    );
    // and the provider was asked to revoke the refresh token first, then the access token, each
    // with the app's client authentication; it no longer accepts the access token
    let revocations = broker.provider.ledger().revocations;
    let asked: Vec<(&str, Option<&str>)> = revocations
        .iter()
        .map(|r| (r.token.as_str(), r.token_type_hint.as_deref()))
        .collect();
    assert_eq!(
        asked,
        [
            (refresh.as_str(), Some("refresh_token")),
            (access.as_str(), Some("access_token"))
        ]
    );
    for r in &revocations {
        assert_eq!(
            r.basic_auth,
            Some((CLIENT_ID.to_string(), CLIENT_SECRET.to_string()))
        );
        assert_eq!(r.status, 200);
    }
    assert!(!broker.provider.accepts(&access));
    // and the tokens are gone from the vault, the connection kept as a tombstone for 30 days
    assert!(!broker.token_document_exists(&id).await);
    let tombstone = broker.connection(&id).await;
    assert_eq!(tombstone.status, ConnectionStatus::Revoked);
    let now = broker.app.clock.now();
    let expires = tombstone.expires_at.expect("a tombstone expires");
    assert!(
        (expires - now - TOMBSTONE_SECS).abs() <= 5,
        "{expires} vs {now}"
    );
    let (status, read) = broker
        .get(&format!("/v1/connections/{id}"), Some(&broker.key))
        .await;
    assert_eq!((status, read["status"].as_str()), (200, Some("revoked")));
    // and its token route answers 404: there is no token any more
    let (status, refused) = broker.token(&id, false).await;
    assert_eq!(status, 404, "{refused}");
    assert_eq!(refused["error"]["code"], "NOT_FOUND");

    // When it is deleted again, the answer is the same and the provider is not asked again
    let (status, again) = broker.delete_connection(&id).await;
    assert_eq!((status, &again), (200, &body));
    assert_eq!(broker.provider.ledger().revocations.len(), 2);
}

async fn a_provider_without_revocation_answers_not_supported_and_the_tokens_go(backend: Backend) {
    // Given a provider whose entry declares no revocation endpoint
    let entry = FakeEntry {
        keys: &[("revocation_url", "")],
        ..FakeEntry::default()
    };
    let broker = Broker::start_custom(backend, &[], &entry).await;
    let (id, _) = broker.authorized_personal_connection().await;

    // When the connection is deleted
    let (status, body) = broker.delete_connection(&id).await;

    // Then nothing was asked of the provider, and the tokens are deleted all the same
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider_revocation"], "not_supported");
    assert!(broker.provider.ledger().revocations.is_empty());
    assert!(!broker.token_document_exists(&id).await);
    assert_eq!(
        broker.connection(&id).await.status,
        ConnectionStatus::Revoked
    );
}

async fn a_provider_refusing_revocation_answers_failed_and_the_tokens_go_anyway(backend: Backend) {
    // Given a connection, and a provider whose revocation endpoint fails
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    broker.provider.set_knobs(Knobs {
        revocation_status: Some(503),
        ..Knobs::default()
    });

    // When the connection is deleted
    let (status, body) = broker.delete_connection(&id).await;

    // Then the answer says the provider failed (after its first request), and the tokens are
    // deleted anyway: a provider failure does not keep them alive here
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider_revocation"], "failed");
    assert_eq!(broker.provider.ledger().revocations.len(), 1);
    assert!(!broker.token_document_exists(&id).await);
    let (status, _) = broker.token(&id, false).await;
    assert_eq!(status, 404);
    // and a repeated delete answers the same, without asking again
    assert_eq!(broker.delete_connection(&id).await.1, body);
    assert_eq!(broker.provider.ledger().revocations.len(), 1);
}

async fn a_delete_racing_twenty_refreshing_token_reads_leaves_no_refresh_after_it(
    backend: Backend,
) {
    // Given a connection whose token is inside the refresh margin (every read would refresh),
    // and a provider slow enough that a refresh is in flight when the delete arrives
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    broker.app.clock.advance(3600 - 100);
    broker.provider.set_knobs(Knobs {
        delay: Some(Duration::from_millis(300)),
        ..Knobs::default()
    });

    // When 20 token reads and, while their refresh is in flight, a delete arrive
    let reads: Vec<_> = (0..20)
        .map(|_| {
            let (http, url, key) = (
                broker.http.clone(),
                broker.url(&format!("/v1/connections/{id}/token")),
                broker.key.clone(),
            );
            tokio::spawn(async move {
                http.get(url)
                    .header("x-api-key", key)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // (in flight: one of them holds the refresh lease; waited for, not guessed with a sleep)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.connection(&id).await.refresh_lease.is_none() {
        assert!(std::time::Instant::now() < deadline, "no refresh started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, body) = broker.delete_connection(&id).await;
    let mut statuses = Vec::new();
    for r in reads {
        statuses.push(r.await.unwrap());
    }

    // Then the connection is revoked and no token is stored
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider_revocation"], "revoked");
    assert_eq!(
        broker.connection(&id).await.status,
        ConnectionStatus::Revoked
    );
    assert!(!broker.token_document_exists(&id).await);
    // and no refresh reached the provider after the revocation began; the reads either got a
    // token before it or were told the connection is gone
    let order = broker.provider.ledger().order;
    let first_revoke = order.iter().position(|o| *o == "revoke").expect("revoked");
    assert!(
        !order[first_revoke..].contains(&"refresh"),
        "a refresh after the revocation: {order:?}"
    );
    assert_eq!(
        order.iter().filter(|o| **o == "refresh").count(),
        1,
        "one refresh, in flight when the delete came: {order:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 404, 409].contains(s)),
        "{statuses:?}"
    );
    // and the revoked refresh token is the newest one the provider issued
    let ledger = broker.provider.ledger();
    let newest = ledger
        .token_requests
        .iter()
        .rev()
        .find_map(|t| t.refresh_token.clone())
        .unwrap();
    assert_eq!(ledger.revocations[0].token, newest);
}

async fn another_organizations_connection_cannot_be_deleted(backend: Backend) {
    // Given a connection, and another organization's key
    let broker = Broker::start(backend).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let (_, other_key) = broker.other_org().await;

    // When the other organization deletes it, it does not exist for it
    let resp = broker
        .http
        .delete(broker.url(&format!("/v1/connections/{id}")))
        .header("x-api-key", other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    // and nothing was revoked
    assert!(broker.provider.ledger().revocations.is_empty());
    assert!(broker.token_document_exists(&id).await);
}

async fn a_bearer_style_provider_is_asked_with_the_access_token_alone(backend: Backend) {
    // Given a provider whose entry revokes the Bearer way (Dropbox's, Slack's)
    let entry = FakeEntry {
        keys: &[("revocation_style", "\"bearer\"")],
        ..FakeEntry::default()
    };
    let broker = Broker::start_custom(backend, &[], &entry).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let access = broker.provider.ledger().issued_tokens()[0].clone();

    // When the connection is deleted
    let (status, body) = broker.delete_connection(&id).await;

    // Then one request carried the access token as its credential, with no client secret, and
    // the provider ended the grant
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["provider_revocation"], "revoked");
    let revocations = broker.provider.ledger().revocations;
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0].token, access);
    assert_eq!(revocations[0].basic_auth, None);
    assert!(!broker.provider.accepts(&access));
}
