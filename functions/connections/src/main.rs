//! Lambda entry point: wiring only; the handler is in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    broker::api::lambda::run_with_sweep(connections::handle).await
}
