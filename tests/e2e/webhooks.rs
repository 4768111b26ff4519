//! Events as signed webhooks (DESIGN §4.7). On the embedded backend: every status change of a
//! connection's life is one delivery to a receiver on loopback, verified by the Standard Webhooks
//! specification's Python library (which also refuses the same deliveries tampered, stale or
//! under another secret); a failing endpoint is retried with the same `webhook-id` and an
//! endpoint answering 410 is disabled; a delivery cut off mid-way goes again after a restart;
//! order per connection holds under concurrent changes. On both backends: endpoints are
//! registered with their URL checked, listed without secrets, rotated and removed.

use std::time::Duration;

use broker::events::{EventType, Pump, pump_once};
use broker::store::embedded::{Db, EmbeddedStore};
use broker_tests::webhook_receiver::{
    Receiver, add_endpoint, assert_one_verified_event_per_change, live_a_connections_life,
    verify_with_python,
};
use broker_tests::{Backend, Broker, on_both_backends};

on_both_backends!(
    endpoints_are_checked_listed_without_secrets_rotated_and_removed,
    addresses_that_reach_inside_are_refused_at_registration,
);

/// A pump over the broker's embedded file, as `serve` runs one (a fresh handle: a restart).
fn outbox(broker: &Broker) -> EmbeddedStore {
    EmbeddedStore::new(Db::open(&broker.data_dir).expect("the embedded file"))
}

/// Pump rounds until one delivers nothing.
async fn deliver_all(broker: &Broker, store: &EmbeddedStore) -> usize {
    let mut total = 0;
    for _ in 0..20 {
        let pump = Pump {
            config: &broker.app.config,
            outbox: store,
            webhooks: store,
            vault: broker.app.vault.as_ref(),
        };
        let n = pump_once(&pump, broker.app.clock.now())
            .await
            .expect("pump");
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_life_is_one_verified_webhook_per_change() {
    // Given an endpoint for every event type
    let broker = Broker::start(Backend::Embedded).await;
    let receiver = Receiver::start().await;
    let secret = add_endpoint(&broker, &receiver, vec![]).await;

    // When a connection is authorized, activated, refused a refresh (invalid_grant), and deleted
    let id = live_a_connections_life(&broker).await;
    let store = outbox(&broker);
    assert_eq!(deliver_all(&broker, &store).await, 4);

    // Then the receiver got exactly one verified event per change, in order, with the statuses
    assert_one_verified_event_per_change(&broker, &receiver, &secret, &id).await;
    // and nothing is delivered twice
    assert_eq!(deliver_all(&broker, &store).await, 0);
    assert_eq!(receiver.received().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_gets_the_same_webhook_id_until_it_answers() {
    // Given an endpoint that answers 500 three times, then 200
    let broker = Broker::start(Backend::Embedded).await;
    let receiver = Receiver::start().await;
    let secret = add_endpoint(&broker, &receiver, vec![EventType::Authorized]).await;
    receiver.answer(&[500, 500, 500]);

    // When a connection is authorized and the pump runs as time passes
    broker.authorized_personal_connection().await;
    let store = outbox(&broker);
    let mut delivered = 0;
    for _ in 0..6 {
        delivered += deliver_all(&broker, &store).await;
        broker.app.clock.advance(200);
    }

    // Then it was delivered once, after four attempts with one webhook-id, each verifiable
    let received = receiver.received();
    assert_eq!(delivered, 1);
    assert_eq!(received.len(), 4);
    assert!(received.iter().all(|r| r.id == received[0].id));
    let verdicts = verify_with_python(&secret, &received).await;
    assert!(verdicts.iter().all(|v| v.verified), "{verdicts:?}");
    // and the outbox's log (`brokerctl events tail`) shows it delivered after three failures
    let log = store.delivery_log(Some(&broker.org), 10).unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (
            log[0].event_id.as_str(),
            log[0].state.as_str(),
            log[0].attempts
        ),
        (received[0].id.as_str(), "delivered", 3)
    );
    assert!(
        store
            .delivery_log(Some("another-org"), 10)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_410_is_disabled() {
    // Given an endpoint that answers 410 Gone
    let broker = Broker::start(Backend::Embedded).await;
    let receiver = Receiver::start().await;
    add_endpoint(&broker, &receiver, vec![]).await;
    receiver.answer(&[410]);

    // When two events are due for it
    let (_, state_token) = broker.authorized_personal_connection().await;
    assert_eq!(broker.complete_personal(&state_token).await.0, 200);
    let store = outbox(&broker);
    for _ in 0..3 {
        deliver_all(&broker, &store).await;
        broker.app.clock.advance(200);
    }

    // Then it was asked once, and is disabled
    assert_eq!(receiver.received().len(), 1);
    let listed = broker.admin.webhooks_list(&broker.org).await.unwrap();
    assert!(listed.contains("disabled"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_off_mid_way_goes_again_after_a_restart_with_the_same_id() {
    // Given an endpoint that holds its first request past any timeout
    let broker = Broker::start(Backend::Embedded).await;
    let receiver = Receiver::start().await;
    let secret = add_endpoint(&broker, &receiver, vec![]).await;
    receiver.hang(1);
    broker.authorized_personal_connection().await;

    // When a pump is stopped mid-delivery (the serve process ends), and a new one starts
    let first = outbox(&broker);
    let cut = tokio::time::timeout(Duration::from_millis(500), deliver_all(&broker, &first)).await;
    assert!(cut.is_err(), "the first delivery was still in flight");
    drop(first);
    let restarted = outbox(&broker);
    assert_eq!(deliver_all(&broker, &restarted).await, 1);

    // Then the event arrived again, with the webhook-id of the cut-off attempt
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].id, received[1].id);
    assert!(verify_with_python(&secret, &received[1..]).await[0].verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_holds_per_connection_under_concurrent_changes() {
    // Given an endpoint, and five authorized connections
    let broker = Broker::start(Backend::Embedded).await;
    let receiver = Receiver::start().await;
    add_endpoint(&broker, &receiver, vec![]).await;
    let mut connections = Vec::new();
    for _ in 0..5 {
        connections.push(broker.authorized_personal_connection().await);
    }

    // When all are completed and then deleted, twenty changes at once
    let completes = connections
        .iter()
        .map(|(_, token)| broker.complete_personal(token));
    for (status, _) in futures_util::future::join_all(completes).await {
        assert_eq!(status, 200);
    }
    let deletes = connections
        .iter()
        .map(|(id, _)| broker.delete_connection(id));
    for (status, _) in futures_util::future::join_all(deletes).await {
        assert_eq!(status, 200);
    }
    let store = outbox(&broker);
    assert_eq!(deliver_all(&broker, &store).await, 15);

    // Then each connection's events arrived in the order they happened
    for (id, _) in &connections {
        let kinds: Vec<String> = receiver
            .received()
            .iter()
            .map(|r| r.json())
            .filter(|b| b["data"]["connection_id"] == id.as_str())
            .map(|b| b["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "connection.authorized",
                "connection.active",
                "connection.revoked"
            ],
            "{id}"
        );
    }
}

async fn endpoints_are_checked_listed_without_secrets_rotated_and_removed(backend: Backend) {
    // Given an endpoint registered for two event types
    let broker = Broker::start(backend).await;
    let receiver = Receiver::start().await;
    let events = vec![EventType::Revoked, EventType::ReauthorizationRequired];
    let (id, secret) = broker
        .admin
        .webhooks_add(&broker.org, &receiver.url, events)
        .await
        .unwrap();
    assert!(secret.expose().starts_with("whsec_"));

    // Then the listing names it and its events, never its secret
    let listed = broker.admin.webhooks_list(&broker.org).await.unwrap();
    assert!(
        listed.contains(&id) && listed.contains("connection.revoked"),
        "{listed}"
    );
    assert!(!listed.contains(secret.expose().as_str()));

    // When it is rotated, a new secret is shown, and removed, it is gone
    let rotated = broker
        .admin
        .webhooks_rotate(&broker.org, &id)
        .await
        .unwrap();
    assert_ne!(rotated.expose(), secret.expose());
    broker
        .admin
        .webhooks_remove(&broker.org, &id)
        .await
        .unwrap();
    let listed = broker.admin.webhooks_list(&broker.org).await.unwrap();
    assert!(!listed.contains(&id), "{listed}");
    // and another organization cannot reach it by id
    let (other, _) = broker.other_org().await;
    assert!(broker.admin.webhooks_remove(&other, &id).await.is_err());
}

async fn addresses_that_reach_inside_are_refused_at_registration(backend: Backend) {
    let broker = Broker::start(backend).await;
    for url in [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "http://hooks.example.com/hooks",
    ] {
        let refused = broker.admin.webhooks_add(&broker.org, url, vec![]).await;
        assert!(refused.is_err(), "{url} was accepted");
    }
    let listed = broker.admin.webhooks_list(&broker.org).await.unwrap();
    assert_eq!(listed.lines().count(), 1, "only the header:\n{listed}");
}
