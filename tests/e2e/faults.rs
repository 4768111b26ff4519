//! Faults on the AWS backend: the emulator goes away mid-flow (a relay in front of it is taken
//! down) and comes back; DynamoDB answers AWS's own 500 `InternalFailure` or throttles every call
//! (a proxy injects them). The broker must answer 503 without having touched the provider, and a
//! retry of the same request must finish the flow, redeeming the code exactly once.

use broker_tests::fault_proxy::{Fault, FaultProxy};
use broker_tests::harness::location;
use broker_tests::outage::Outage;
use broker_tests::{Broker, Browser, query_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_going_away_mid_flow_gives_503_and_the_same_callback_finishes_later() {
    // Given a flow started and consented while the emulator is reachable
    let outage = Outage::in_front_of_emulator().await;
    let broker = Broker::start_through(&outage.url()).await;
    let mut browser = Browser::default();
    let consent = broker.initiate(&broker.initiate_body()).await;
    let callback = broker.through_provider(&mut browser, &consent).await;

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

/// Every route's answer while DynamoDB answers `fault`, then after it heals.
async fn dynamodb_fault_is_503_on_every_route_and_heals(fault: Fault) {
    // Given a connection, and a flow the browser took to the provider, made while all was well
    let proxy = FaultProxy::in_front_of_emulator().await;
    let broker = Broker::start_through(&proxy.url).await;
    let (connection_id, _) = broker.authorized_personal_connection().await;
    let mut browser = Browser::default();
    let consent = broker.initiate(&broker.initiate_body()).await;
    let callback = broker.through_provider(&mut browser, &consent).await;
    let redeemed = broker.provider.ledger().redeemed.len();

    // When DynamoDB answers every call with the fault
    proxy.inject("DynamoDB_", fault);
    let tried = proxy.seen("DynamoDB_");

    // Then every route answers 503 with Retry-After, and the callback its 503 page before any
    // token request
    let (status, body) = broker
        .post(
            "/v1/sources/initiateOAuth",
            Some(&broker.key),
            &broker.initiate_body(),
        )
        .await;
    assert_unavailable(status, &body, "initiateOAuth");
    for path in [
        format!("/v1/connections/{connection_id}"),
        format!("/v1/connections/{connection_id}/token"),
        "/v1/connections".to_string(),
    ] {
        let (status, retry_after, body) = get_with_retry_after(&broker, &path).await;
        assert_unavailable(status, &body, &path);
        assert!(retry_after, "{path}: Retry-After");
    }
    let page = browser.get(&callback).await;
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
    dynamodb_fault_is_503_on_every_route_and_heals(Fault::InternalFailure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttling_every_call_is_503_everywhere_and_heals() {
    dynamodb_fault_is_503_on_every_route_and_heals(Fault::Throttle).await;
}
