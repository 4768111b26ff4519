//! Step 2, `authorize` (browser): bind the flow to this browser and send it to the provider.

use broker::api::{self, Call, Function, Route};
use broker::{App, Error, Result, flow};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};

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

pub const ROUTES: &[Route<Op>] = &[Route::browser(
    Method::GET,
    "/v1/oauth/authorize",
    Op::Authorize,
)];

const FUNCTION: Function<Op> = Function {
    name: "authorize",
    routes: ROUTES,
};

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    api::handle(app, req, &FUNCTION, |call| dispatch(app, call)).await
}

async fn dispatch(app: &App, call: Call<Op>) -> Result<Response<Body>> {
    let req = &call.req;
    let query = api::query(req)?;
    let state = query.get("flow").ok_or(Error::FlowRejected)?;
    let authorization = flow::authorize(app, state, |name| api::cookie(req, name)).await?;
    let mut response = api::redirect(StatusCode::FOUND, authorization.provider_url.as_str())?;
    let cookie = authorization.set_cookie.parse().map_err(Error::internal)?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}
