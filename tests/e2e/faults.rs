//! Faults on the AWS backend: the emulator goes away mid-flow (a relay in front of it is taken
//! down) and comes back; DynamoDB answers AWS's own 500 `InternalFailure` or throttles every call
//! (a proxy injects them); and on both backends, the vault refusing the tokens a callback or
//! complete_oauth just redeemed (a vault behind the port whose writes fail). The broker must answer 503 without having touched the provider, and a
//! retry of the same request must finish the flow, redeeming the code exactly once.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use broker_tests::fault_proxy::{Fault, FaultProxy};
use broker_tests::harness::{FAKE_DEFINITION, location};
use broker_tests::outage::Outage;
use broker_tests::{Backend, Broker, Browser, on_both_backends, query_of};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_going_away_mid_flow_gives_503_and_the_same_callback_finishes_later() {
    // Given a flow started and consented while the emulator is reachable
    let outage = Outage::in_front_of_emulator().await;
    let broker = Broker::start_through(&outage.url()).await;
    let (mut browser, callback) = broker.flow_at_provider().await;

    // When the emulator goes away (open connections cut, new ones refused)
    outage.stop();

    // Then an API call answers 503 SERVICE_UNAVAILABLE with Retry-After, after the SDK's retries
    let resp = broker
        .http
        .post(broker.url("/v1/sources/initiateOAuth"))
        .header("x-api-key", &broker.key)
        .header("content-type", "application/json")
        .body(broker.initiate_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");

    // and the callback answers the 503 page, before any token request: the code is not spent
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("location").is_none());
    assert!(broker.provider.ledger().token_requests.is_empty());

    // When the emulator is back, the same callback finishes the flow
    outage.resume().await;
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 303);
    let params = query_of(&location(&resp));
    assert!(params.contains_key("secret_id"), "{params:?}");

    // with exactly one code redemption, and a replay refused without another
    let resp = browser.get(&callback).await;
    assert_eq!(resp.status().as_u16(), 400);
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.token_requests.len(), 1);
    assert_eq!(ledger.token_requests[0].outcome, "issued");
}

/// 503 `SERVICE_UNAVAILABLE` with `Retry-After`, the envelope's.
fn assert_unavailable(status: u16, body: &serde_json::Value, what: &str) {
    assert_eq!(status, 503, "{what}: {body}");
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{what}");
}

async fn get_with_retry_after(broker: &Broker, path: &str) -> (u16, bool, serde_json::Value) {
    let resp = broker
        .http
        .get(broker.url(path))
        .header("x-api-key", &broker.key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().contains_key("retry-after");
    let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or_default();
    (status, retry_after, body)
}

/// Every route's answer while DynamoDB answers `fault` to the operations starting with one of
/// `operations`, then after it heals. Each answer comes within DynamoDB's call budget.
async fn dynamodb_fault_is_503_on_every_route_and_heals(operations: &[&str], fault: Fault) {
    // Given a connection, and a flow the browser took to the provider, made while all was well
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    let (connection_id, _) = broker.authorized_personal_connection().await;
    let (mut browser, callback) = broker.flow_at_provider().await;
    let redeemed = broker.provider.ledger().redeemed.len();

    // When DynamoDB answers those calls with the fault
    for operation in operations {
        proxy.inject(operation, fault);
    }
    let tried = proxy.seen("DynamoDB_");
    let bound = broker::aws::DYNAMODB_CALL + Duration::from_secs(1);
    let mut took = Vec::new();

    // Then every route answers 503 with Retry-After within the bound, and the callback its 503
    // page before any token request
    let started = Instant::now();
    let (status, body) = broker
        .post(
            "/v1/sources/initiateOAuth",
            Some(&broker.key),
            &broker.initiate_body(),
        )
        .await;
    took.push(("initiateOAuth".to_string(), started.elapsed()));
    assert_unavailable(status, &body, "initiateOAuth");
    for path in [
        format!("/v1/connections/{connection_id}"),
        format!("/v1/connections/{connection_id}/token"),
        "/v1/connections".to_string(),
    ] {
        let started = Instant::now();
        let (status, retry_after, body) = get_with_retry_after(&broker, &path).await;
        took.push((path.clone(), started.elapsed()));
        assert_unavailable(status, &body, &path);
        assert!(retry_after, "{path}: Retry-After");
    }
    let started = Instant::now();
    let page = browser.get(&callback).await;
    took.push(("callback".to_string(), started.elapsed()));
    assert_eq!(page.status().as_u16(), 503);
    assert!(page.headers().contains_key("retry-after"));
    assert!(page.headers().get("location").is_none());
    assert_eq!(
        broker.provider.ledger().redeemed.len(),
        redeemed,
        "code not spent"
    );
    assert!(
        proxy.seen("DynamoDB_") > tried,
        "the broker did ask DynamoDB"
    );
    eprintln!("{fault:?} on {operations:?}: time to 503 {took:?}");
    for (route, took) in &took {
        assert!(
            *took < bound,
            "{route}: 503 after {took:?}, bound {bound:?}"
        );
    }

    // When DynamoDB is well again, the same callback finishes the flow and the routes answer
    proxy.heal();
    let done = browser.get(&callback).await;
    assert_eq!(done.status().as_u16(), 303);
    assert!(query_of(&location(&done)).contains_key("secret_id"));
    assert_eq!(broker.provider.ledger().redeemed.len(), redeemed + 1);
    let (status, _, body) =
        get_with_retry_after(&broker, &format!("/v1/connections/{connection_id}/token")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_answering_500_internal_failure_is_503_everywhere_and_heals() {
    dynamodb_fault_is_503_on_every_route_and_heals(&["DynamoDB_"], Fault::InternalFailure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttling_every_call_is_503_everywhere_and_heals() {
    dynamodb_fault_is_503_on_every_route_and_heals(&["DynamoDB_"], Fault::Throttle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_reads_not_answering_are_503_within_the_call_budget_and_heal() {
    // Reads held for a minute: each attempt is abandoned at its timeout, the call at its budget
    dynamodb_fault_is_503_on_every_route_and_heals(
        &["DynamoDB_20120810.GetItem", "DynamoDB_20120810.Query"],
        Fault::Slow(Duration::from_secs(60)),
    )
    .await;
}

on_both_backends!(
    tokens_the_callback_could_not_store_wait_sealed_and_the_same_callback_finishes,
    tokens_complete_oauth_could_not_store_wait_sealed_and_the_same_request_finishes,
);

async fn tokens_the_callback_could_not_store_wait_sealed_and_the_same_callback_finishes(
    backend: Backend,
) {
    // Given a flow the browser took to the provider, and a vault that refuses writes
    let broker = Broker::start(backend).await;
    let (mut browser, callback) = broker.flow_at_provider().await;
    broker.vault_write_fails.store(true, Ordering::SeqCst);

    // When the callback redeems the code but cannot store the tokens
    let page = browser.get(&callback).await;

    // Then the browser gets the 503 page with Retry-After, the code was redeemed once
    assert_eq!(page.status().as_u16(), 503);
    assert!(page.headers().contains_key("retry-after"));
    assert!(page.headers().get("location").is_none());
    let ledger = broker.provider.ledger();
    assert_eq!(ledger.redeemed.len(), 1);
    let issued = ledger.issued_tokens()[0].clone();

    // When the vault is back and the same browser retries the same callback
    broker.vault_write_fails.store(false, Ordering::SeqCst);
    let done = browser.get(&callback).await;

    // Then the flow finishes with the tokens of that one redemption, which the provider accepts
    assert_eq!(done.status().as_u16(), 303);
    let params = query_of(&location(&done));
    let doc = broker.read_secret(&params["secret_id"], &issued).await;
    assert_eq!(doc["access_token"], issued.as_str());
    assert!(broker.provider.accepts(&issued));
    assert_eq!(
        broker.provider.ledger().token_requests.len(),
        1,
        "no second redemption"
    );

    // And a third try is a replay: refused, still without a token request
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status().as_u16(), 400);
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}

async fn tokens_complete_oauth_could_not_store_wait_sealed_and_the_same_request_finishes(
    backend: Backend,
) {
    // Given a client-callback flow whose provider redirect the platform holds
    let broker = Broker::start(backend).await;
    let start = json!({ "sourceDefinitionId": FAKE_DEFINITION, "workspaceId": "ws-1",
                        "redirectUrl": broker.redirect_url });
    let (status, body) = broker
        .post(
            "/v1/source_oauths/get_consent_url",
            Some(&broker.key),
            &start,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let at_provider = Browser::default()
        .get(body["consentUrl"].as_str().unwrap())
        .await;
    let back = query_of(&location(&at_provider));
    let complete = json!({ "sourceDefinitionId": FAKE_DEFINITION, "workspaceId": "ws-1",
                           "returnSecretCoordinate": true,
                           "queryParams": { "code": back["code"], "state": back["state"] } });
    let complete_oauth = || {
        broker.post(
            "/v1/source_oauths/complete_oauth",
            Some(&broker.key),
            &complete,
        )
    };
    broker.vault_write_fails.store(true, Ordering::SeqCst);

    // When complete_oauth redeems the code but cannot store the tokens
    let (status, body) = complete_oauth().await;

    // Then it is a 503 envelope, after one redemption
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(broker.provider.ledger().redeemed.len(), 1);

    // When the vault is back, the same request finishes it, with no second redemption
    broker.vault_write_fails.store(false, Ordering::SeqCst);
    let (status, body) = complete_oauth().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_succeeded"], true, "{body}");
    let issued = broker.provider.ledger().issued_tokens()[0].clone();
    let secret_id = body["auth_payload"]["secretId"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = broker.read_secret(&secret_id, &issued).await;
    assert_eq!(doc["access_token"], issued.as_str());
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);

    // And the same request a third time is refused as a replay
    let (status, _) = complete_oauth().await;
    assert_eq!(status, 400);
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_whose_transaction_answer_is_lost_answers_once_with_no_orphan() {
    // Given DynamoDB applying initiate's transaction but its answer lost (the SDK retries)
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    proxy.inject_once("DynamoDB_20120810.TransactWriteItems", Fault::LoseResponse);

    // When the platform starts a flow
    let (status, started) = broker.start_personal().await;

    // Then it gets its flow, the retry having been recognised as its own write, and the flow
    // and its connection exist once: the browser finishes it
    assert_eq!(status, 200, "{started}");
    assert_eq!(
        proxy.seen("DynamoDB_20120810.TransactWriteItems"),
        2,
        "one retry"
    );
    let connection = broker
        .connection(started["connection_id"].as_str().unwrap())
        .await;
    assert_eq!(connection.version, 0);
    let mut browser = Browser::default();
    let callback = broker
        .through_provider(&mut browser, started["authorization_url"].as_str().unwrap())
        .await;
    assert_eq!(browser.get(&callback).await.status().as_u16(), 303);
}

/// The callback's write `operation` (the consuming `UpdateItem`, or the finishing
/// `TransactWriteItems`: the flow's outcome and the connection's authorization) is applied but
/// its answer lost; the SDK's retry is refused by that very write.
async fn a_callback_whose_write_answer_is_lost_still_finishes_once(operation: &str) -> FaultProxy {
    // Given a flow at the provider, and DynamoDB losing the answer to one applied write
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    let (mut browser, callback) = broker.flow_at_provider().await;
    proxy.inject_once(operation, Fault::LoseResponse);

    // When the callback arrives
    let done = browser.get(&callback).await;

    // Then the broker recognised its own write on the retry and redirected with the references,
    // after one redemption
    assert_eq!(done.status().as_u16(), 303);
    assert!(query_of(&location(&done)).contains_key("secret_id"));
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_whose_consuming_write_answer_is_lost_still_finishes_once() {
    a_callback_whose_write_answer_is_lost_still_finishes_once("DynamoDB_20120810.UpdateItem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_whose_finishing_transaction_answer_is_lost_still_redirects_once() {
    let proxy = a_callback_whose_write_answer_is_lost_still_finishes_once(
        "DynamoDB_20120810.TransactWriteItems",
    )
    .await;
    assert_eq!(
        proxy.seen("DynamoDB_20120810.TransactWriteItems"),
        3,
        "initiate + 2"
    );
}

/// The personal completion's writes are two `UpdateItem`s: the state token's redemption, then
/// the connection's activation. `skip` picks which one loses its answer.
async fn a_completion_whose_write_answer_is_lost_still_activates_once(skip: usize) {
    // Given an authorized personal connection and its state token, and DynamoDB applying one of
    // the completion's writes but losing its answer
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    let (connection_id, state_token) = broker.authorized_personal_connection().await;
    proxy.inject_once_after("DynamoDB_20120810.UpdateItem", skip, Fault::LoseResponse);
    let before = proxy.seen("DynamoDB_20120810.UpdateItem");

    // When the platform completes it
    let (status, body) = broker.complete_personal(&state_token).await;

    // Then it is active, once: the retry's refusal was recognised as the broker's own write
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connection"]["status"], "active");
    assert_eq!(
        proxy.seen("DynamoDB_20120810.UpdateItem") - before,
        3,
        "two writes, one retried"
    );
    let connection = broker.connection(&connection_id).await;
    assert_eq!(
        (connection.status, connection.version),
        (broker::connection::ConnectionStatus::Active, 2)
    );

    // and the state token stays single use
    let (status, body) = broker.complete_personal(&state_token).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_whose_redemption_answer_is_lost_still_activates_once() {
    a_completion_whose_write_answer_is_lost_still_activates_once(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_whose_transition_answer_is_lost_still_activates_once() {
    a_completion_whose_write_answer_is_lost_still_activates_once(1).await;
}

/// A backend failure after the callback took its flow but before the code was spent.
async fn a_failure_before_the_code_is_spent_puts_the_flow_back(operation: &str, fault: Fault) {
    // Given a flow at the provider, and `operation` failing (the organization's read, or the
    // vault's first read in the process: the sealing key)
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    let (mut browser, callback) = broker.flow_at_provider().await;
    proxy.inject(operation, fault);

    // When the callback arrives, it answers the 503 page without asking the provider
    let page = browser.get(&callback).await;
    assert_eq!(page.status().as_u16(), 503, "{operation}");
    assert!(page.headers().contains_key("retry-after"));
    assert!(broker.provider.ledger().token_requests.is_empty());

    // Then the flow was put back: once healed, the same callback finishes it, redeeming once
    proxy.heal();
    let done = browser.get(&callback).await;
    assert_eq!(done.status().as_u16(), 303, "{operation}");
    assert!(query_of(&location(&done)).contains_key("secret_id"));
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
    assert_eq!(
        browser.get(&callback).await.status().as_u16(),
        400,
        "replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organization_unreadable_after_the_flow_is_taken_puts_it_back() {
    a_failure_before_the_code_is_spent_puts_the_flow_back(
        "DynamoDB_20120810.GetItem",
        Fault::Throttle,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_failing_before_the_code_is_spent_puts_the_flow_back() {
    a_failure_before_the_code_is_spent_puts_the_flow_back(
        "secretsmanager.GetSecretValue",
        Fault::InternalFailure,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_failing_after_the_exchange_keeps_the_tokens_for_the_same_callback() {
    // Given a flow at the provider, and Secrets Manager answering its writes with 500s (the real
    // SDK's retries and error mapping, not a vault double)
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    let (mut browser, callback) = broker.flow_at_provider().await;
    proxy.inject("secretsmanager.CreateSecret", Fault::InternalFailure);
    proxy.inject("secretsmanager.PutSecretValue", Fault::InternalFailure);

    // When the callback redeems the code but cannot store the tokens: the 503 page, one redemption
    let page = browser.get(&callback).await;
    assert_eq!(page.status().as_u16(), 503);
    assert!(page.headers().contains_key("retry-after"));
    assert_eq!(broker.provider.ledger().redeemed.len(), 1);
    assert!(proxy.seen("secretsmanager.CreateSecret") >= 1);
    assert!(broker.stored_secrets().await.is_empty());
    let issued = broker.provider.ledger().issued_tokens()[0].clone();

    // Then, Secrets Manager restored, the same callback stores that redemption's tokens
    proxy.heal();
    let done = browser.get(&callback).await;
    assert_eq!(done.status().as_u16(), 303);
    let params = query_of(&location(&done));
    let doc = broker.read_secret(&params["secret_id"], &issued).await;
    assert_eq!(doc["access_token"], issued.as_str());
    assert!(broker.provider.accepts(&issued));
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
    let stored = broker.stored_secrets().await;
    assert_eq!(stored.values().collect::<Vec<_>>(), [&1], "{stored:?}");

    // and a third try is a replay
    assert_eq!(browser.get(&callback).await.status().as_u16(), 400);
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}
