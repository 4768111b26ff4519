//! Step 3, `callback` (browser): consume the flow once, redeem the code, store the tokens, and
//! send the browser back to the platform with references only.

use broker::api::{self, Route, html, route};
use broker::{App, Result, flow};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use tracing::Instrument;

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Callback,
}

/// The AWS actions this function's code calls (consuming the flow, recording the connection and
/// state token; app credentials read, tokens written). `tests/e2e/iam.rs` holds its policy in
/// `template.yaml` to exactly this list.
pub const AWS_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "secretsmanager:GetSecretValue",
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:TagResource",
    "kms:Decrypt",
    "kms:GenerateDataKey",
];

pub const ROUTES: &[Route<Op>] = &[Route::new(Method::GET, "/v1/oauth/callback", Op::Callback)];

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let trace_id = api::request_id(&req);
    let span = tracing::info_span!("callback", %trace_id);
    dispatch(app, req)
        .instrument(span)
        .await
        .unwrap_or_else(|e| html::error_page(&e, &trace_id))
}

async fn dispatch(app: &App, req: Request) -> Result<Response<Body>> {
    route::find(ROUTES, req.method(), req.uri().path())?;
    let query = api::query(&req)?;
    let target = flow::callback(app, &query, |name| api::cookie(&req, name)).await?;
    api::redirect(StatusCode::SEE_OTHER, target.as_str())
}
