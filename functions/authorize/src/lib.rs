//! Step 2, `authorize` (browser): bind the flow to this browser and send it to the provider.

use broker::api::{self, Route, html, route};
use broker::{App, Error, Result, flow};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use tracing::Instrument;

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Authorize,
}

/// The AWS actions this function's code calls (binding the flow; provider app credentials).
/// `tests/e2e/iam.rs` holds its policy in `template.yaml` to exactly this list.
pub const AWS_ACTIONS: &[&str] = &[
    "dynamodb:UpdateItem",
    "secretsmanager:GetSecretValue",
    "kms:Decrypt",
];

pub const ROUTES: &[Route<Op>] = &[Route::new(
    Method::GET,
    "/v1/oauth/authorize",
    Op::Authorize,
)];

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let trace_id = api::request_id(&req);
    let span = tracing::info_span!("authorize", %trace_id);
    dispatch(app, req)
        .instrument(span)
        .await
        .unwrap_or_else(|e| html::error_page(&e, &trace_id))
}

async fn dispatch(app: &App, req: Request) -> Result<Response<Body>> {
    route::find(ROUTES, req.method(), req.uri().path())?;
    let query = api::query(&req)?;
    let state = query.get("flow").ok_or(Error::FlowRejected)?;
    let authorization = flow::authorize(app, state, |name| api::cookie(&req, name)).await?;
    let mut response = api::redirect(StatusCode::FOUND, authorization.provider_url.as_str())?;
    let cookie = authorization.set_cookie.parse().map_err(Error::internal)?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}
