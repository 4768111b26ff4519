//! An HTTP proxy between the broker's AWS SDK clients and the emulator that injects AWS's own
//! faults per operation (the `X-Amz-Target` header: `DynamoDB_20120810.GetItem`,
//! `secretsmanager.PutSecretValue`, ...): answer 500 `InternalFailure`, or throttle, or pass. It
//! counts the requests it saw per operation, so a test asserts what the broker tried.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
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
}

#[derive(Default)]
struct Inner {
    /// Operation prefixes, their fault, and how many more requests it applies to (`None`: all);
    /// the first live match wins, no match passes.
    rules: Vec<(String, Fault, Option<usize>)>,
    seen: BTreeMap<String, usize>,
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
        let state = (inner.clone(), target, reqwest::Client::new());
        let router = axum::Router::new()
            .fallback(relay)
            .with_state(Arc::new(state));
        tokio::spawn(async move { axum::serve(listener, router).await });
        FaultProxy { url, inner }
    }

    /// Operations starting with `prefix` (`DynamoDB_`, `secretsmanager.PutSecretValue`) get `fault`.
    pub fn inject(&self, prefix: &str, fault: Fault) {
        self.inner
            .lock()
            .unwrap()
            .rules
            .push((prefix.to_string(), fault, None));
    }

    /// The next request of an operation starting with `prefix` gets `fault`; later ones pass.
    pub fn inject_once(&self, prefix: &str, fault: Fault) {
        self.inner
            .lock()
            .unwrap()
            .rules
            .push((prefix.to_string(), fault, Some(1)));
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

type Shared = Arc<(Arc<Mutex<Inner>>, String, reqwest::Client)>;

async fn relay(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (inner, target, http) = (&state.0, &state.1, &state.2);
    let op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("other")
        .to_string();
    let fault = {
        let mut inner = inner.lock().unwrap();
        *inner.seen.entry(op.clone()).or_default() += 1;
        let rule = inner
            .rules
            .iter_mut()
            .find(|(prefix, _, left)| op.starts_with(prefix.as_str()) && *left != Some(0));
        rule.map(|(_, fault, left)| {
            if let Some(n) = left {
                *n -= 1;
            }
            *fault
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
            let _applied = forward(http, target, method, &uri, &headers, body).await;
            answer(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure")
        }
        None => forward(http, target, method, &uri, &headers, body).await,
    }
}

/// The request as sent, to the emulator; its answer as received.
async fn forward(
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
