//! The Lambda entry points the functions' `main`s call: logging from `AWS_LAMBDA_LOG_FORMAT` /
//! `AWS_LAMBDA_LOG_LEVEL`, the [`App`] built once before the first event, then the runtime loop.

use std::convert::Infallible;
use std::future::Future;

use lambda_http::{Body, LambdaEvent, Request, Response, service_fn};

use crate::App;
use crate::app::EventsBackend;

/// Logs as the Lambda runtime's default subscriber writes them (no target, no time: CloudWatch
/// stamps each line; JSON when `AWS_LAMBDA_LOG_FORMAT` says so), at the level in
/// `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`. A level, not an env filter: the filter's regex engine
/// was the margin between the connections function's zip and its 3 MB budget.
pub fn init_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_max_level(level);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json { fmt.json().init() } else { fmt.init() }
}

/// Logging set up, and the [`App`] built once for the execution environment: leaked, it lives as
/// long as the process and every invocation borrows it.
async fn process_app() -> Result<&'static App, lambda_http::Error> {
    init_logging();
    Ok(Box::leak(Box::new(App::from_env().await?)))
}

/// Runs `handler` for every event, borrowing one process-wide [`App`].
pub async fn run<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(&'static App, Request) -> Fut,
    Fut: Future<Output = Response<Body>> + Send,
{
    let app = process_app().await?;
    lambda_http::run(service_fn(move |req| {
        let response = handler(app, req);
        async move { Ok::<_, Infallible>(response.await) }
    }))
    .await
}

/// The connections function's loop: API Gateway's requests go to `handler` as [`run`] sends
/// them, and the keep-alive schedule's `{"broker_task": "sweep"}` (EventBridge Scheduler invokes
/// the function directly, every 15 minutes) runs one sweep, stopping 3 s before the deadline.
pub async fn run_with_sweep<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(&'static App, Request) -> Fut + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    use lambda_http::Service;
    use lambda_http::request::LambdaRequest;
    use std::pin::Pin;
    type Answer =
        Pin<Box<dyn Future<Output = Result<serde_json::Value, lambda_http::Error>> + Send>>;

    let app = process_app().await?;
    let mut http = lambda_http::Adapter::from(service_fn(move |req| {
        let response = handler(app, req);
        async move { Ok::<_, Infallible>(response.await) }
    }));
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let LambdaEvent { payload, context } = event;
        let answer: Answer = match payload.get("broker_task").map(|t| t.as_str()) {
            None => match serde_json::from_value::<LambdaRequest>(payload) {
                Ok(request) => {
                    let response = http.call(LambdaEvent::new(request, context));
                    Box::pin(async move { Ok(serde_json::to_value(response.await?)?) })
                }
                Err(e) => Box::pin(async move { Err(e.into()) }),
            },
            Some(Some("sweep")) => Box::pin(async move {
                let left_ms = (context.deadline as i64 - chrono::Utc::now().timestamp_millis())
                    .saturating_sub(3_000)
                    .max(0);
                let until =
                    std::time::Instant::now() + std::time::Duration::from_millis(left_ms as u64);
                let report = crate::connection::sweep(app, until).await?;
                Ok(serde_json::to_value(report)?)
            }),
            Some(other) => {
                let message = format!("unknown broker_task {other:?}");
                Box::pin(async move { Err(message.into()) })
            }
        };
        answer
    }))
    .await
}

/// The `events` function's loop: the table's stream records in, the first record to retry out
/// (partial batch failures), over one process-wide [`EventsBackend`].
pub async fn run_events() -> Result<(), lambda_http::Error> {
    init_logging();
    let backend: &'static EventsBackend = Box::leak(Box::new(EventsBackend::from_env().await?));
    lambda_http::lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::dynamodb::Event>| async move {
            // Lambda's deadline for this invocation, in epoch milliseconds.
            let deadline_ms = event.context.deadline as i64;
            Ok::<_, Infallible>(
                crate::events::stream::deliver_records(
                    &backend.delivery(),
                    event.payload,
                    deadline_ms,
                )
                .await,
            )
        },
    ))
    .await
}
