//! Faults on the AWS backend: the emulator goes away mid-flow (a relay in front of it is taken
//! down) and comes back. The broker must answer 503 without having touched the provider, and a
//! retry of the same request must finish the flow, redeeming the code exactly once.

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
