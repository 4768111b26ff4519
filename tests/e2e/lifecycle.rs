//! The connection's lifecycle on both backends: every status change is one conditional
//! transition that increments the version, and the connection keeps what refresh and revocation
//! will need once the flow item is gone.

use broker::Error;
use broker::connection::{ConnectionStatus, Transition};
use broker::crypto::sha256_hex;
use broker::flow::FlowStatus;
use broker_tests::harness::location;
use broker_tests::{Backend, Broker, Browser, on_both_backends, query_of};

on_both_backends!(
    an_authorized_connection_keeps_its_endpoints_and_each_change_bumps_its_version,
    a_transition_that_lost_its_race_is_a_conflict_and_changes_nothing,
    a_flow_outcome_whose_connection_refuses_the_transition_is_not_written_either,
);

async fn an_authorized_connection_keeps_its_endpoints_and_each_change_bumps_its_version(
    backend: Backend,
) {
    // Given a personal flow that went through the callback
    let broker = Broker::start(backend).await;
    let (connection_id, state_token) = broker.authorized_personal_connection().await;

    // Then the connection is authorized at version 1, with the flow's endpoints and the entry's
    // token settings kept on it
    let authorized = broker.connection(&connection_id).await;
    assert_eq!(authorized.status, ConnectionStatus::Authorized);
    assert_eq!(authorized.version, 1, "pending (0) -> authorized (1)");
    let endpoints = authorized.endpoints.expect("endpoints kept");
    assert_eq!(
        endpoints.token_url,
        format!("{}/token", broker.provider.base_url)
    );
    assert!(authorized.token_settings.is_some());
    assert!(authorized.secret_id.is_some());

    // When the platform completes it
    let (status, _) = broker.complete_personal(&state_token).await;
    assert_eq!(status, 200);

    // Then it is active at version 2, and nothing else changed
    let active = broker.connection(&connection_id).await;
    assert_eq!(active.status, ConnectionStatus::Active);
    assert_eq!(active.version, 2);
    assert_eq!(active.secret_id, authorized.secret_id);
    assert_eq!(active.endpoints, Some(endpoints));
}

async fn a_transition_that_lost_its_race_is_a_conflict_and_changes_nothing(backend: Backend) {
    // Given an authorized connection (version 1)
    let broker = Broker::start(backend).await;
    let (connection_id, _) = broker.authorized_personal_connection().await;
    let store = &broker.app.connections;
    let now = broker.app.clock.now();
    let activate = |version: Option<u64>, from: &'static [ConnectionStatus]| {
        let mut t = Transition::new(
            &broker.org.as_str().into(),
            &connection_id.as_str().into(),
            from,
            ConnectionStatus::Active,
            now,
        );
        t.version = version;
        t
    };

    // When a change decided on a stale read (version 0) or from another status is applied
    let stale = store
        .transition(&activate(Some(0), &[ConnectionStatus::Authorized]))
        .await;
    let wrong_status = store
        .transition(&activate(None, &[ConnectionStatus::Pending]))
        .await;
    let (other_org, _) = broker.other_org().await;
    let mut foreign = activate(None, &[ConnectionStatus::Authorized]);
    foreign.organization_id = other_org.into();
    let foreign = store.transition(&foreign).await;

    // Then each is a conflict, and the connection is as it was
    for outcome in [stale, wrong_status, foreign] {
        assert!(matches!(outcome, Err(Error::Conflict(_))), "{outcome:?}");
    }
    let unchanged = broker.connection(&connection_id).await;
    assert_eq!(
        (unchanged.status, unchanged.version),
        (ConnectionStatus::Authorized, 1)
    );

    // And the change made on the current version goes through, once
    let current = activate(Some(1), &[ConnectionStatus::Authorized]);
    let active = store.transition(&current).await.unwrap();
    assert_eq!(
        (active.status, active.version),
        (ConnectionStatus::Active, 2)
    );
    assert!(matches!(
        store.transition(&current).await,
        Err(Error::Conflict(_))
    ));
}

async fn a_flow_outcome_whose_connection_refuses_the_transition_is_not_written_either(
    backend: Backend,
) {
    // Given a flow the browser took to the provider, and a connection already authorized
    let broker = Broker::start(backend).await;
    let consent = broker.initiate(&broker.initiate_body()).await;
    let flow_key = sha256_hex(&query_of(&consent)["flow"]);
    let mut browser = Browser::default();
    let callback = broker.through_provider(&mut browser, &consent).await;
    let (connection_id, _) = broker.authorized_personal_connection().await;

    // When the flow's outcome is written with a transition that connection does not admit
    // (it is not pending)
    let refused = Transition::new(
        &broker.org.as_str().into(),
        &connection_id.as_str().into(),
        &[ConnectionStatus::Pending],
        ConnectionStatus::Failed,
        broker.app.clock.now(),
    );
    let outcome = broker
        .app
        .flows
        .finish_flow(&flow_key, FlowStatus::Failed, &refused)
        .await;

    // Then neither half is written: the conflict is reported, the other connection keeps its
    // status, and the flow is still pending, so the browser's callback finishes it normally
    assert!(matches!(outcome, Err(Error::Conflict(_))), "{outcome:?}");
    let other = broker.connection(&connection_id).await;
    assert_eq!(
        (other.status, other.version),
        (ConnectionStatus::Authorized, 1)
    );
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 303);
    assert!(query_of(&location(&resp)).contains_key("secret_id"));
    assert_eq!(broker.provider.ledger().redeemed.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_costs_four_aws_requests() {
    // Given a warm process (one flow finished: app credentials cached, and the sealing key
    // loaded once per process before a first code is spent), and a flow the browser took to the
    // provider
    let broker = Broker::start(Backend::Aws).await;
    let consent = broker.initiate(&broker.initiate_body()).await;
    let mut warm = Browser::default();
    let first = broker.through_provider(&mut warm, &consent).await;
    assert_eq!(warm.get(&first).await.status().as_u16(), 303);
    let consent = broker.initiate(&broker.initiate_body()).await;
    let mut browser = Browser::default();
    let callback = broker.through_provider(&mut browser, &consent).await;
    broker.aws_requests.take();

    // When the callback finishes it
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 303);

    // Then it consumed the flow, re-read the organization's registered URLs, wrote the tokens,
    // and authorized the connection with the flow's outcome in one transaction: nothing else
    assert_eq!(
        broker.aws_requests.take(),
        [
            "DynamoDB:UpdateItem",
            "DynamoDB:GetItem",
            "Secrets Manager:CreateSecret",
            "DynamoDB:TransactWriteItems",
        ]
    );
}
