//! API Gateway v2 events as the functions receive them: the files under `tests/events/` turned
//! into requests, the responses read back, and the browser's part of a hosted flow run through
//! the authorize and callback handlers. The events suite and the benchmark share these steps.

use std::future::Future;

use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::harness::{event_text, location};
use crate::query_of;

/// `tests/events/<name>` with its placeholders filled, as the Lambda runtime hands it over.
pub fn event(name: &str, vars: &[(&str, &str)]) -> Request {
    lambda_http::request::from_str(&event_text(name, vars))
        .unwrap_or_else(|e| panic!("{name} is not an API Gateway v2 event: {e}"))
}

pub fn header(resp: &Response<Body>, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub fn json_body(resp: &Response<Body>) -> Value {
    serde_json::from_slice(resp.body().as_ref()).expect("JSON body")
}

/// The browser's part of a hosted flow: `authorize` takes `authorize.json` for the flow in
/// `authorization_url` (a redirect and the binding cookie), the fake provider consents, and
/// `callback` takes `callback.json` with the code, the state and the cookie. Returns the
/// callback's response.
pub async fn browser_steps<A, AF, C, CF>(
    http: &oauth2::reqwest::Client,
    authorization_url: &str,
    authorize: A,
    callback: C,
) -> Response<Body>
where
    A: FnOnce(Request) -> AF,
    AF: Future<Output = Response<Body>>,
    C: FnOnce(Request) -> CF,
    CF: Future<Output = Response<Body>>,
{
    let flow = query_of(authorization_url)["flow"].clone();
    let resp = authorize(event("authorize.json", &[("FLOW", &flow)])).await;
    assert_eq!(resp.status(), 302, "authorize");
    let cookie = header(&resp, "set-cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let at_provider = http.get(header(&resp, "location")).send().await.unwrap();
    let back = query_of(&location(&at_provider));
    let vars = [
        ("CODE", back["code"].as_str()),
        ("STATE", back["state"].as_str()),
        ("COOKIE", cookie.as_str()),
    ];
    callback(event("callback.json", &vars)).await
}
