//! A webhook receiver on loopback: it records every delivery (the Standard Webhooks headers and
//! the body) and answers as told, and hands them to the specification's Python verifier.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Statuses to answer, in order; then 200.
    answers: VecDeque<u16>,
    /// The next this-many requests are held (never answered in time).
    hang: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let inner = Arc::new(Mutex::new(Inner::default()));
        let router = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, inner }
    }

    /// Answer these statuses to the next requests (then 200 again).
    pub fn answer(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().answers.extend(statuses);
    }

    /// Hold the next `n` requests past any sender's timeout.
    pub fn hang(&self, n: usize) {
        self.inner.lock().unwrap().hang = n;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (status, hang) = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let hang = inner.hang > 0;
        if hang {
            inner.hang -= 1;
        }
        (inner.answers.pop_front().unwrap_or(200), hang)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    StatusCode::from_u16(status).unwrap()
}

/// The Python verifier's verdict on one delivery.
#[derive(Debug, Deserialize)]
pub struct Verdict {
    pub id: String,
    pub verified: bool,
    pub tampered_refused: bool,
    pub old_refused: bool,
    pub wrong_secret_refused: bool,
}

/// Runs `tests/webhooks/verify.py` (the `standardwebhooks` package `infra/tools.sh` installs) over
/// `deliveries` with `secret`.
pub async fn verify_with_python(secret: &str, deliveries: &[Received]) -> Vec<Verdict> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/webhooks/verify.py");
    let input = json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|d| json!({
            "id": d.id, "timestamp": d.timestamp, "signature": d.signature, "body": d.body,
        })).collect::<Vec<_>>(),
    });
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (./infra/test puts the tools' venv on PATH)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "verify.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("verdicts")
}
