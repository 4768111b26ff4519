//! An HTTP proxy between the broker's AWS SDK clients and the emulator that injects AWS's own
//! faults per operation (the `X-Amz-Target` header: `DynamoDB_20120810.GetItem`,
//! `secretsmanager.PutSecretValue`, ...): answer 500 `InternalFailure`, throttle, answer slowly,
//! lose the answer, or pass. It counts the requests it saw per operation, so a test asserts what
//! the broker tried.
//!
//! DynamoDB writes are forwarded one at a time: moto is not safe under concurrent transactions
//! (it can answer an HTML 500), and real DynamoDB applies each write atomically.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use oauth2::reqwest;

/// What the proxy does with a request whose operation matches a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// AWS's generic server error: 500 with an `InternalFailure` body.
    InternalFailure,
    /// The service's throttling error (400, `ThrottlingException`).
    Throttle,
    /// The request reaches the emulator and is applied, but its answer is lost: the client gets
    /// a 500 and, as the SDK does, retries a write that already happened.
    LoseResponse,
    /// The request is applied at once, and its answer arrives after the delay: a slow service
    /// that did the work (a client that gives up early and retries writes twice).
    Slow(Duration),
}

/// The DynamoDB operations that write, serialised by the proxy.
const DYNAMODB_WRITES: [&str; 5] = [
    "DynamoDB_20120810.PutItem",
    "DynamoDB_20120810.UpdateItem",
    "DynamoDB_20120810.DeleteItem",
    "DynamoDB_20120810.TransactWriteItems",
    "DynamoDB_20120810.BatchWriteItem",
];

#[derive(Default)]
struct Inner {
    /// The first live match wins; no match passes.
    rules: Vec<Rule>,
    seen: BTreeMap<String, usize>,
    /// Each request's operation and the client's address (its connection), in order.
    peers: Vec<(String, SocketAddr)>,
}

struct Rule {
    /// Operations starting with it.
    prefix: String,
    fault: Fault,
    /// Matching requests that pass before the fault applies.
    skip: usize,
    /// How many more requests it applies to (`None`: all).
    left: Option<usize>,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FaultProxy {
    /// A proxy on a free loopback port to the emulator in `AWS_ENDPOINT_URL`, passing everything.
    pub async fn in_front_of_emulator() -> FaultProxy {
        let target = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (./infra/test)");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let inner = Arc::new(Mutex::new(Inner::default()));
        let state = Relay {
            inner: inner.clone(),
            target,
            http: reqwest::Client::new(),
            writes: tokio::sync::Mutex::new(()),
        };
        let router = axum::Router::new()
            .fallback(relay)
            .with_state(Arc::new(state));
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultProxy { url, inner }
    }

    /// Operations starting with `prefix` (`DynamoDB_`, `secretsmanager.PutSecretValue`) get `fault`.
    pub fn inject(&self, prefix: &str, fault: Fault) {
        self.rule(prefix, fault, 0, None);
    }

    /// The next request of an operation starting with `prefix` gets `fault`; later ones pass.
    pub fn inject_once(&self, prefix: &str, fault: Fault) {
        self.rule(prefix, fault, 0, Some(1));
    }

    /// After `skip` requests of operations starting with `prefix` have passed, the next one gets
    /// `fault`: the second `UpdateItem` of a route, say.
    pub fn inject_once_after(&self, prefix: &str, skip: usize, fault: Fault) {
        self.rule(prefix, fault, skip, Some(1));
    }

    fn rule(&self, prefix: &str, fault: Fault, skip: usize, left: Option<usize>) {
        self.inner.lock().unwrap().rules.push(Rule {
            prefix: prefix.to_string(),
            fault,
            skip,
            left,
        });
    }

    /// The client addresses (one per connection) of the requests whose operation starts with
    /// `prefix`, in the order they came.
    pub fn peers(&self, prefix: &str) -> Vec<SocketAddr> {
        let inner = self.inner.lock().unwrap();
        inner
            .peers
            .iter()
            .filter(|(op, _)| op.starts_with(prefix))
            .map(|(_, peer)| *peer)
            .collect()
    }

    /// Every operation passes again.
    pub fn heal(&self) {
        self.inner.lock().unwrap().rules.clear();
    }

    /// How many requests of operations starting with `prefix` the proxy saw.
    pub fn seen(&self, prefix: &str) -> usize {
        let inner = self.inner.lock().unwrap();
        inner
            .seen
            .iter()
            .filter(|(op, _)| op.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }
}

struct Relay {
    inner: Arc<Mutex<Inner>>,
    target: String,
    http: reqwest::Client,
    /// Held while a DynamoDB write is with the emulator.
    writes: tokio::sync::Mutex<()>,
}

async fn relay(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("other")
        .to_string();
    let fault = {
        let mut inner = relay.inner.lock().unwrap();
        *inner.seen.entry(op.clone()).or_default() += 1;
        inner.peers.push((op.clone(), peer));
        let rule = inner
            .rules
            .iter_mut()
            .find(|r| op.starts_with(r.prefix.as_str()) && r.left != Some(0));
        rule.and_then(|r| {
            if r.skip > 0 {
                r.skip -= 1;
                return None;
            }
            if let Some(n) = &mut r.left {
                *n -= 1;
            }
            Some(r.fault)
        })
    };
    let json_type = if op.starts_with("DynamoDB_") {
        "application/x-amz-json-1.0"
    } else {
        "application/x-amz-json-1.1"
    };
    let answer = |status: StatusCode, kind: &str| {
        let body = serde_json::json!({ "__type": kind, "message": "injected by the fault proxy" });
        (
            status,
            [(header::CONTENT_TYPE, json_type)],
            body.to_string(),
        )
            .into_response()
    };
    match fault {
        Some(Fault::InternalFailure) => {
            answer(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure")
        }
        Some(Fault::Throttle) if op.starts_with("DynamoDB_") => answer(
            StatusCode::BAD_REQUEST,
            "com.amazonaws.dynamodb.v20120810#ThrottlingException",
        ),
        Some(Fault::Throttle) => answer(StatusCode::BAD_REQUEST, "ThrottlingException"),
        Some(Fault::LoseResponse) => {
            let _applied = relay.forward(&op, method, &uri, &headers, body).await;
            answer(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure")
        }
        Some(Fault::Slow(delay)) => {
            let applied = relay.forward(&op, method, &uri, &headers, body).await;
            tokio::time::sleep(delay).await;
            applied
        }
        None => relay.forward(&op, method, &uri, &headers, body).await,
    }
}

impl Relay {
    /// The request as sent, to the emulator (a DynamoDB write while no other is there); its
    /// answer as received.
    async fn forward(
        &self,
        op: &str,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let _one_at_a_time = if DYNAMODB_WRITES.contains(&op) {
            Some(self.writes.lock().await)
        } else {
            None
        };
        send(&self.http, &self.target, method, uri, headers, body).await
    }
}

async fn send(
    http: &reqwest::Client,
    target: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut forward = http.request(method, format!("{target}{uri}")).body(body);
    for (name, value) in headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            forward = forward.header(name, value);
        }
    }
    let Ok(resp) = forward.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let (status, headers) = (resp.status(), resp.headers().clone());
    let mut out = (status, resp.bytes().await.unwrap_or_default()).into_response();
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            out.headers_mut().insert(name, value.clone());
        }
    }
    out
}
