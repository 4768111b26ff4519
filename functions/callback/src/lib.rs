//! Step 3, `callback` (browser): consume the flow once, redeem the code, store the tokens, and
//! send the browser back to the platform with references only.

use broker::api::{self, Call, Function, Route};
use broker::flow::Landing;
use broker::{App, Result, flow};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

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

pub const ROUTES: &[Route<Op>] = &[Route::browser(
    Method::GET,
    "/v1/oauth/callback",
    Op::Callback,
)];

const FUNCTION: Function<Op> = Function {
    name: "callback",
    routes: ROUTES,
};

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    api::handle(app, req, &FUNCTION, |call| dispatch(app, call)).await
}

async fn dispatch(app: &App, call: Call<Op>) -> Result<Response<Body>> {
    let req = &call.req;
    let query = api::query(req)?;
    match flow::callback(app, &query, |name| api::cookie(req, name)).await? {
        Landing::Redirect(target) => api::redirect(StatusCode::SEE_OTHER, target.as_str()),
        connect => broker::connect::result_page(app, connect).await,
    }
}
