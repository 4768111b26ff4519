//! A webhook receiver on loopback: it records every delivery (the Standard Webhooks headers and
//! the body) and answers as told, and hands them to the specification's Python verifier.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

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
    serde_json::from_value(crate::python::run(script, &input).await).expect("verdicts")
}

/// A connection's whole life on `broker`: authorized, activated, refused a refresh
/// (`invalid_grant`), deleted. Returns its id.
pub async fn live_a_connections_life(broker: &crate::Broker) -> String {
    let (id, state_token) = broker.authorized_personal_connection().await;
    assert_eq!(broker.complete_personal(&state_token).await.0, 200);
    broker.provider.set_knobs(crate::Knobs {
        refresh_error: Some("invalid_grant".into()),
        ..crate::Knobs::default()
    });
    assert_eq!(broker.token(&id, true).await.0, 409);
    assert_eq!(broker.delete_connection(&id).await.0, 200);
    id
}

/// What the receiver got for [`live_a_connections_life`]: one event per status change, in order,
/// each accepted by the specification's verifier (which refuses it tampered, ten minutes old or
/// under another secret), no token in any body, one `webhook-id` per change. Prints the first
/// delivery's headers and verdict.
pub async fn assert_one_verified_event_per_change(
    broker: &crate::Broker,
    receiver: &Receiver,
    secret: &str,
    id: &str,
) {
    let received = receiver.received();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let seen: Vec<(String, String, String)> = received
        .iter()
        .map(|r| {
            let body = r.json();
            assert_eq!(body["data"]["connection_id"], id);
            assert_eq!(body["data"]["organization_id"], broker.org.as_str());
            (
                text(&body["type"]),
                text(&body["data"]["previous_status"]),
                text(&body["data"]["status"]),
            )
        })
        .collect();
    let expect = |t: &str, from: &str, to: &str| (t.to_string(), from.to_string(), to.to_string());
    assert_eq!(
        seen,
        [
            expect("connection.authorized", "pending", "authorized"),
            expect("connection.active", "authorized", "active"),
            expect(
                "connection.reauthorization_required",
                "active",
                "reauthorization_required"
            ),
            expect("connection.revoked", "reauthorization_required", "revoked"),
        ]
    );
    let verdicts = verify_with_python(secret, &received).await;
    eprintln!(
        "webhook-id: {}\nwebhook-timestamp: {}\nwebhook-signature: {}\n{}\nverdict: {:?}",
        received[0].id, received[0].timestamp, received[0].signature, received[0].body, verdicts[0]
    );
    assert_eq!(verdicts.len(), 4);
    for v in &verdicts {
        assert!(v.verified, "{v:?}");
        assert!(
            v.tampered_refused && v.old_refused && v.wrong_secret_refused,
            "{v:?}"
        );
    }
    for token in broker.provider.ledger().issued_tokens() {
        assert!(received.iter().all(|r| !r.body.contains(&token)));
    }
    let mut ids: Vec<&str> = received.iter().map(|r| r.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "one webhook-id per change");
}

/// Registers `receiver` as an endpoint of the broker's organization for `events` (none: all);
/// returns its signing secret.
pub async fn add_endpoint(
    broker: &crate::Broker,
    receiver: &Receiver,
    events: Vec<broker::events::EventType>,
) -> String {
    let (_, secret) = broker
        .admin
        .webhooks_add(&broker.org, &receiver.url, events)
        .await
        .expect("endpoint registered");
    secret.expose().clone()
}
