//! A small Lambda runtime API on loopback (the `2018-06-01` interface a function polls): it hands
//! out queued events, and reports when the process first polled (its init is done) and when each
//! response arrived.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Mutex, mpsc};

/// What the emulator saw, in order.
#[derive(Debug)]
pub enum Seen {
    /// The function asked for its next event.
    Polled(Instant),
    /// A response (or an error report) for an event.
    Responded(Instant, bool),
}

struct Shared {
    events: Mutex<mpsc::Receiver<String>>,
    seen: mpsc::UnboundedSender<Seen>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    events: mpsc::Sender<String>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let (events_tx, events_rx) = mpsc::channel(1);
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: Mutex::new(events_rx),
            seen: seen_tx,
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
            .route("/2018-06-01/runtime/init/error", post(init_failed))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        RuntimeApi {
            addr,
            events: events_tx,
            seen: seen_rx,
        }
    }

    /// Waits for the function's next poll.
    pub async fn polled(&mut self) -> Instant {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.seen.recv()).await {
                Ok(Some(Seen::Polled(at))) => return at,
                Ok(Some(Seen::Responded(..))) => continue,
                _ => panic!("the function never polled the runtime API"),
            }
        }
    }

    /// Delivers one event and waits for its response: the time from delivery to response.
    pub async fn invoke(&mut self, event: &str) -> Duration {
        self.events.send(event.to_string()).await.unwrap();
        let sent = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.seen.recv()).await {
                Ok(Some(Seen::Responded(at, ok))) => {
                    assert!(ok, "the function reported an error");
                    return at - sent;
                }
                Ok(Some(Seen::Polled(_))) => continue,
                _ => panic!("no response from the function"),
            }
        }
    }

    /// Spawns `binary` against this runtime API with `env`.
    pub fn spawn(&self, binary: &Path, env: &[(String, String)]) -> tokio::process::Child {
        tokio::process::Command::new(binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", self.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_LEVEL", "WARN")
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()))
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let _ = shared.seen.send(Seen::Polled(Instant::now()));
    let event = shared.events.lock().await.recv().await.unwrap_or_default();
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    let mut headers = HeaderMap::new();
    let id = uuid::Uuid::new_v4().to_string();
    headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:bench"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".parse().unwrap(),
    );
    (headers, event).into_response()
}

async fn respond(State(shared): State<Arc<Shared>>, UrlPath(_id): UrlPath<String>) -> &'static str {
    let _ = shared.seen.send(Seen::Responded(Instant::now(), true));
    "ok"
}

async fn failed(State(shared): State<Arc<Shared>>, UrlPath(_id): UrlPath<String>) -> &'static str {
    let _ = shared.seen.send(Seen::Responded(Instant::now(), false));
    "ok"
}

async fn init_failed(State(shared): State<Arc<Shared>>) -> &'static str {
    let _ = shared.seen.send(Seen::Responded(Instant::now(), false));
    "ok"
}

/// Peak resident set (VmHWM) of a process, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
