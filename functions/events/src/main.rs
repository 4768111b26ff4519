//! Lambda entry point: wiring only; the delivery is in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    broker::api::lambda::run_events().await
}
