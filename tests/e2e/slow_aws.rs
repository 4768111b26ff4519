//! A slow but working AWS, through the fault proxy: Secrets Manager answering every call in 3 s or
//! 8 s still completes the flow with one secret of one version, and 100 concurrent callbacks on
//! one state redeem the code once. This suite reads the process's whole log (no ERROR line may
//! appear), so it is a test binary of its own: the fault suite's intended 503s log at ERROR.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use broker_tests::fault_proxy::{Fault, FaultProxy};
use broker_tests::harness::location;
use broker_tests::logs::Captured;
use broker_tests::{Broker, query_of};

/// The process's log, from the first test that asks for it.
fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| Captured::install(tracing::Level::INFO))
}

fn assert_no_error_lines() {
    let errors: Vec<_> = log()
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:#?}");
}

async fn secrets_manager_answering_slowly_still_completes_once(delay: Duration) {
    // Given a flow at the provider, and Secrets Manager applying every call at once but
    // answering only after `delay` (longer than the SDK's upload-stall grace at 8 s)
    log();
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    let (mut browser, callback) = broker.flow_at_provider().await;
    proxy.inject("secretsmanager.", Fault::Slow(delay));

    // When the callback arrives
    let started = Instant::now();
    let done = browser.get(&callback).await;
    let took = started.elapsed();

    // Then the flow completes, after one redemption, with one secret of one version: no call
    // was abandoned and retried while the first was being applied
    assert_eq!(done.status().as_u16(), 303, "after {took:?}");
    let params = query_of(&location(&done));
    assert!(params.contains_key("secret_id"), "{params:?}");
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
    assert_eq!(proxy.seen("secretsmanager.CreateSecret"), 1);
    assert_eq!(proxy.seen("secretsmanager.PutSecretValue"), 0);
    let stored = broker.stored_secrets().await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored.values().next(), Some(&1), "one version: {stored:?}");
    eprintln!("Secrets Manager answering in {delay:?}: the callback took {took:?}");

    // and the process logged no ERROR line (the SDK's complaints about its connections included)
    assert_no_error_lines();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_answering_in_3s_still_completes_the_flow_once() {
    secrets_manager_answering_slowly_still_completes_once(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_answering_in_8s_still_completes_the_flow_once() {
    secrets_manager_answering_slowly_still_completes_once(Duration::from_secs(8)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_callbacks_on_one_state_redeem_once_and_store_one_secret() {
    // Given a flow at the provider, and DynamoDB's writes applied one at a time (the proxy), as
    // real DynamoDB applies each atomically
    log();
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    let (browser, callback) = broker.flow_at_provider().await;
    let cookie = browser.cookie_header();

    // When the same browser's callback arrives 100 times at once
    let attempts: Vec<_> = (0..100)
        .map(|_| {
            let (http, url, cookie) = (broker.http.clone(), callback.clone(), cookie.clone());
            tokio::spawn(async move {
                let resp = http.get(url).header("cookie", cookie).send().await.unwrap();
                let status = resp.status().as_u16();
                (status, location(&resp))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for a in attempts {
        answers.push(a.await.unwrap());
    }

    // Then exactly one is redirected with the secret's reference and the others are refused;
    // the provider was asked once and moto holds one secret of one version
    let redirected: Vec<_> = answers.iter().filter(|(s, _)| *s == 303).collect();
    assert_eq!(redirected.len(), 1, "{answers:?}");
    assert!(query_of(&redirected[0].1).contains_key("secret_id"));
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 400).count(),
        99,
        "{answers:?}"
    );
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.token_requests.len(), 1);
    assert_eq!(ledger.redeemed.len(), 1);
    let stored = broker.stored_secrets().await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored.values().next(), Some(&1), "{stored:?}");
    assert_no_error_lines();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_answered_with_a_5xx_is_closed_and_the_retry_connects_afresh() {
    // Given a connection, read once (so the SDK's connection to DynamoDB is pooled), and
    // DynamoDB answering the next read with a 500 `InternalFailure`
    log();
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    let (id, _) = broker.authorized_personal_connection().await;
    let path = format!("/v1/connections/{id}");
    assert_eq!(broker.get(&path, Some(&broker.key)).await.0, 200);
    let before = proxy.peers("DynamoDB_20120810.GetItem").len();
    proxy.inject_once("DynamoDB_20120810.GetItem", Fault::InternalFailure);

    // When the connection is read again
    let (status, body) = broker.get(&path, Some(&broker.key)).await;

    // Then the SDK's retry answered it, over a new connection: the one answered with the 5xx
    // was poisoned (closed) rather than reused, and the SDK had a connection to poison, so no
    // ERROR line says it could not
    assert_eq!(status, 200, "{body}");
    let peers = proxy.peers("DynamoDB_20120810.GetItem");
    let retried = peers[before + 1];
    assert!(
        !peers[..=before].contains(&retried),
        "the retry reused a pooled connection: {peers:?}"
    );
    assert_no_error_lines();
}
