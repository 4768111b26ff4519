//! API Gateway HTTP API (v2) events, the files under `tests/events/`, fed through each function's
//! handler as the Lambda runtime delivers them. `{{NAME}}` placeholders are filled per run; the
//! same files serve `cargo lambda invoke`.

use std::collections::HashMap;

use broker_tests::contract::contract;
use broker_tests::gateway::{self, event, header, json_body};
use broker_tests::harness::FAKE_DEFINITION;
use broker_tests::{Backend, Broker, query_of};
use lambda_http::{Body, Response};

/// Runs one event through a function's handler and checks the response against the OpenAPI
/// document, as the HTTP suites' harness does for every response it sees.
macro_rules! invoke {
    ($function:ident, $broker:expr, $event:expr, $vars:expr) => {
        checked($event, event($event, $vars), |r| {
            $function::handle(&$broker.app, r)
        })
        .await
    };
}

/// Runs authorize, the fake provider and callback as events; returns the callback's response.
async fn browser_steps(broker: &Broker, authorization_url: &str) -> Response<Body> {
    gateway::browser_steps(
        &broker.http,
        authorization_url,
        |req| async move { checked("authorize.json", req, |r| authorize::handle(&broker.app, r)).await },
        |req| async move { checked("callback.json", req, |r| callback::handle(&broker.app, r)).await },
    )
    .await
}

/// One request through a handler, its response checked against the OpenAPI document.
async fn checked<F, Fut>(name: &str, req: lambda_http::Request, handle: F) -> Response<Body>
where
    F: FnOnce(lambda_http::Request) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = handle(req).await;
    if let Err(e) = contract().check(
        &method,
        &path,
        resp.status(),
        resp.headers(),
        resp.body().as_ref(),
    ) {
        panic!("{name}: {e}");
    }
    resp
}

#[tokio::test]
async fn airbyte_flow_runs_through_the_handlers_as_api_gateway_events() {
    let broker = Broker::start(Backend::Embedded).await;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("PROVIDER", "fake"),
        ("REDIRECT_URL", broker.redirect_url.as_str()),
    ];

    let resp = invoke!(initiate, broker, "initiate-oauth.json", &vars);
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
    let resp = invoke!(initiate, broker, "personal-authorize.json", &vars);
    assert_eq!(resp.status(), 200, "{:?}", resp.body());
    let started = json_body(&resp);

    let resp = browser_steps(&broker, started["authorization_url"].as_str().unwrap()).await;
    let params: HashMap<String, String> = query_of(&header(&resp, "location"));
    let done = [
        ("API_KEY", broker.key.as_str()),
        ("ORG", broker.org.as_str()),
        ("STATE_TOKEN", params["state_token"].as_str()),
    ];

    let resp = invoke!(complete, broker, "complete-personal.json", &done);
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(&resp)["connection"]["status"], "active");
    let again = invoke!(complete, broker, "complete-personal.json", &done);
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
    let resp = invoke!(initiate, broker, "initiate-oauth-no-key.json", &[]);
    assert_eq!(resp.status(), 401);
    assert_eq!(json_body(&resp)["error"]["trace_id"], "evt-nokey");

    let resp = invoke!(callback, broker, "callback-unknown-state.json", &[]);
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "referrer-policy"), "no-referrer");
    assert!(header(&resp, "location").is_empty());

    // A function refuses routes that belong to another one (API Gateway never sends it there, so
    // this response is outside the document).
    let resp = complete::handle(&broker.app, event("callback-unknown-state.json", &[])).await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn client_callback_flow_runs_through_the_handlers_as_api_gateway_events() {
    let broker = Broker::start(Backend::Embedded).await;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("DEFINITION", FAKE_DEFINITION),
        ("REDIRECT_URL", broker.redirect_url.as_str()),
    ];
    let resp = invoke!(initiate, broker, "get-consent-url.json", &vars);
    assert_eq!(resp.status(), 200);
    let consent = json_body(&resp)["consentUrl"].as_str().unwrap().to_string();
    let provider = broker.http.get(&consent).send().await.unwrap();
    let back = query_of(provider.headers()["location"].to_str().unwrap());

    let done = [
        vars[0],
        vars[1],
        vars[2],
        ("CODE", back["code"].as_str()),
        ("STATE", back["state"].as_str()),
    ];
    let resp = invoke!(complete, broker, "complete-oauth.json", &done);
    assert_eq!(resp.status(), 200);
    let body = json_body(&resp);
    assert_eq!(body["request_succeeded"], true, "{body}");
    assert!(body["auth_payload"]["secretId"].is_string());
    assert_eq!(broker.provider.ledger().token_requests.len(), 1);
}

#[tokio::test]
async fn aitronos_routes_run_through_the_handlers_as_api_gateway_events() {
    let broker = Broker::start(Backend::Embedded).await;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("ORG", broker.org.as_str()),
        ("DEFINITION", FAKE_DEFINITION),
        ("PROVIDER", "fake"),
        ("REDIRECT_URL", broker.redirect_url.as_str()),
    ];
    // Native: the callback hands back the secret's id
    let resp = invoke!(initiate, broker, "native-oauth.json", &vars);
    assert_eq!(resp.status(), 200);
    let consent = json_body(&resp)["consent_url"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = browser_steps(&broker, &consent).await;
    assert!(query_of(&header(&resp, "location")).contains_key("secret_id"));

    // Connector: an authorized connection, then a source on it
    let resp = invoke!(initiate, broker, "connector-authorize.json", &vars);
    assert_eq!(resp.status(), 200);
    let started = json_body(&resp);
    let resp = browser_steps(&broker, started["authorization_url"].as_str().unwrap()).await;
    let params = query_of(&header(&resp, "location"));
    assert_eq!(params["status"], "authorized");
    let source_vars = [
        vars[0],
        vars[1],
        vars[2],
        ("CONNECTION_ID", params["connection_id"].as_str()),
    ];
    let resp = invoke!(
        complete,
        broker,
        "connector-create-source.json",
        &source_vars
    );
    assert_eq!(resp.status(), 201);
    assert_eq!(json_body(&resp)["connection_id"], params["connection_id"]);
    assert_eq!(broker.provider.ledger().token_requests.len(), 2);
}

#[tokio::test]
async fn authentik_import_runs_through_the_handler_as_an_api_gateway_event() {
    let broker = Broker::start(Backend::Embedded).await;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("PROVIDER", "fake"),
        ("ACCESS_TOKEN", "events-imported-token"),
    ];
    let resp = invoke!(complete, broker, "import-user-connection.json", &vars);
    assert_eq!(resp.status(), 201);
    let body = json_body(&resp);
    assert_eq!(body["identifier"], "events-user");
    assert!(!body.to_string().contains("events-imported-token"));
}

#[tokio::test]
async fn connection_routes_run_through_the_handler_as_api_gateway_events() {
    // Given an authorized personal connection (the personal flow has no workspace, so the
    // listing event's workspace finds none of it)
    let broker = Broker::start(Backend::Embedded).await;
    let (connection_id, _) = broker.authorized_personal_connection().await;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("CONNECTION_ID", connection_id.as_str()),
        ("REDIRECT_URL", broker.redirect_url.as_str()),
    ];

    // When the five routes arrive as API Gateway events
    let listed = invoke!(connections, broker, "list-connections.json", &vars);
    let got = invoke!(connections, broker, "get-connection.json", &vars);
    let token = invoke!(connections, broker, "connection-token.json", &vars);
    let reconnect = invoke!(connections, broker, "reconnect-connection.json", &vars);
    let deleted = invoke!(connections, broker, "delete-connection.json", &vars);

    // Then each answers from the same core as over HTTP, the token not cacheable
    assert_eq!(listed.status(), 200);
    assert_eq!(json_body(&listed)["connections"], serde_json::json!([]));
    assert_eq!(got.status(), 200);
    assert_eq!(json_body(&got)["id"], connection_id.as_str());
    assert_eq!(json_body(&got)["status"], "authorized");
    assert_eq!(token.status(), 200);
    assert_eq!(header(&token, "cache-control"), "no-store");
    let issued = broker.provider.ledger().issued_tokens();
    assert_eq!(json_body(&token)["access_token"], issued[0].as_str());
    assert_eq!(reconnect.status(), 200);
    assert_eq!(
        json_body(&reconnect)["connection_id"],
        connection_id.as_str()
    );
    assert_eq!(deleted.status(), 200);
    assert_eq!(json_body(&deleted)["status"], "revoked");
}

#[tokio::test]
async fn connect_routes_run_through_the_handlers_as_api_gateway_events() {
    // A connect session (initiate), its page and its form (authorize), the flow's browser steps,
    // and the callback's result page for the opener
    let broker = Broker::start(Backend::Embedded).await;
    let vars = [
        ("API_KEY", broker.key.as_str()),
        ("PROVIDER", "fake"),
        ("ORIGIN", "http://127.0.0.1:1"),
    ];
    let resp = invoke!(initiate, broker, "connect-session.json", &vars);
    assert_eq!(resp.status(), 201);
    let token = json_body(&resp)["token"].as_str().unwrap().to_string();

    let page = invoke!(
        authorize,
        broker,
        "connect-page.json",
        &[("SESSION", &token)]
    );
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-security-policy").contains("frame-ancestors 'none'"));

    let vars = [("SESSION", token.as_str()), ("PROVIDER", "fake")];
    let started = invoke!(authorize, broker, "connect-start.json", &vars);
    assert_eq!(started.status(), 303);
    let result = browser_steps(&broker, &header(&started, "location")).await;
    assert_eq!(result.status(), 200);
    let html = String::from_utf8(result.body().to_vec()).unwrap();
    assert!(
        html.contains("\"oauth-broker:connection\"") && html.contains("\"http://127.0.0.1:1\"")
    );
}
