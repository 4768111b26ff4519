//! API Gateway HTTP API (v2) events, the files under `tests/events/`, fed through each function's
//! handler as the Lambda runtime delivers them. `{{NAME}}` placeholders are filled per run; the
//! same files serve `cargo lambda invoke`.

use std::collections::HashMap;

use broker_tests::{Backend, Broker, query_of};
use lambda_http::{Body, Response};
use serde_json::Value;

fn event(name: &str, vars: &[(&str, &str)]) -> lambda_http::Request {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(
        !text.contains("{{"),
        "{name}: a placeholder was left unfilled"
    );
    lambda_http::request::from_str(&text)
        .unwrap_or_else(|e| panic!("{name} is not an API Gateway v2 event: {e}"))
}

fn header(resp: &Response<Body>, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn json_body(resp: &Response<Body>) -> Value {
    serde_json::from_slice(resp.body().as_ref()).expect("JSON body")
}

/// Runs authorize, the fake provider and callback as events; returns the callback's response.
async fn browser_steps(broker: &Broker, authorization_url: &str) -> Response<Body> {
    let flow = query_of(authorization_url)["flow"].clone();
    let resp = authorize::handle(&broker.app, event("authorize.json", &[("FLOW", &flow)])).await;
    assert_eq!(resp.status(), 302);
    let cookie = header(&resp, "set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let provider = broker
        .http
        .get(header(&resp, "location"))
        .send()
        .await
        .unwrap();
    let back = query_of(provider.headers()["location"].to_str().unwrap());
    let vars = [
        ("CODE", back["code"].as_str()),
        ("STATE", back["state"].as_str()),
        ("COOKIE", cookie.as_str()),
    ];
    callback::handle(&broker.app, event("callback.json", &vars)).await
}

#[tokio::test]
async fn airbyte_flow_runs_through_the_handlers_as_api_gateway_events() {
    let broker = Broker::start(Backend::Embedded).await;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("PROVIDER", "fake"),
        ("REDIRECT_URL", broker.redirect_url.as_str()),
    ];

    let resp = initiate::handle(&broker.app, event("initiate-oauth.json", &vars)).await;
    assert_eq!(resp.status(), 200);
    let consent = json_body(&resp)["consentUrl"].as_str().unwrap().to_string();

    let resp = browser_steps(&broker, &consent).await;
    assert_eq!(resp.status(), 303);
    let params = query_of(&header(&resp, "location"));
    assert_eq!(params["workspace_id"], "ws-events");
    assert!(params.contains_key("secret_id"));
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}

#[tokio::test]
async fn personal_flow_runs_through_the_handlers_as_api_gateway_events() {
    let broker = Broker::start(Backend::Embedded).await;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("ORG", broker.org.as_str()),
        ("PROVIDER", "fake"),
        ("REDIRECT_URL", broker.redirect_url.as_str()),
    ];
    let resp = initiate::handle(&broker.app, event("personal-authorize.json", &vars)).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let started = json_body(&resp);

    let resp = browser_steps(&broker, started["authorization_url"].as_str().unwrap()).await;
    let params: HashMap<String, String> = query_of(&header(&resp, "location"));
    let done = [
        ("API_KEY", broker.key.as_str()),
        ("ORG", broker.org.as_str()),
        ("STATE_TOKEN", params["state_token"].as_str()),
    ];

    let resp = complete::handle(&broker.app, event("complete-personal.json", &done)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(&resp)["connection"]["status"], "active");
    let again = complete::handle(&broker.app, event("complete-personal.json", &done)).await;
    assert_eq!(again.status(), 400);
    assert_eq!(
        json_body(&again)["error"]["trace_id"],
        "evt-complete",
        "the envelope carries API Gateway's request id"
    );
}

#[tokio::test]
async fn refusals_arrive_as_events_too() {
    let broker = Broker::start(Backend::Embedded).await;
    let resp = initiate::handle(&broker.app, event("initiate-oauth-no-key.json", &[])).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(json_body(&resp)["error"]["trace_id"], "evt-nokey");

    let resp = callback::handle(&broker.app, event("callback-unknown-state.json", &[])).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "referrer-policy"), "no-referrer");
    assert!(header(&resp, "location").is_empty());

    // A function refuses routes that belong to another one.
    let resp = complete::handle(&broker.app, event("callback-unknown-state.json", &[])).await;
    assert_eq!(resp.status(), 404);
}
