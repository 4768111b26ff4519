//! The Lambda entry points the functions' `main`s call: logging from `AWS_LAMBDA_LOG_FORMAT` /
//! `AWS_LAMBDA_LOG_LEVEL`, the [`App`] built once before the first event, then the runtime loop.

use std::convert::Infallible;
use std::future::Future;

use lambda_http::{Body, LambdaEvent, Request, Response, service_fn};

use crate::App;
use crate::app::EventsBackend;

/// Runs `handler` for every event, borrowing one process-wide [`App`].
pub async fn run<F, Fut>(handler: F) -> Result<(), lambda_http::Error>
where
    F: Fn(&'static App, Request) -> Fut,
    Fut: Future<Output = Response<Body>> + Send,
{
    lambda_http::tracing::init_default_subscriber();
    // Lives as long as the execution environment; leaking it lets every invocation borrow it.
    let app: &'static App = Box::leak(Box::new(App::from_env().await?));
    lambda_http::run(service_fn(move |req| {
        let response = handler(app, req);
        async move { Ok::<_, Infallible>(response.await) }
    }))
    .await
}

/// The `events` function's loop: the table's stream records in, the first record to retry out
/// (partial batch failures), over one process-wide [`EventsBackend`].
pub async fn run_events() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
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
