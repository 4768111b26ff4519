//! The Lambda entry point every function's `main` calls: logging from `AWS_LAMBDA_LOG_FORMAT` /
//! `AWS_LAMBDA_LOG_LEVEL`, the [`App`] built once before the first event, then the runtime loop.

use std::convert::Infallible;
use std::future::Future;

use lambda_http::{Body, Request, Response, service_fn};

use crate::App;

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
