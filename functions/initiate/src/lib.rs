//! Step 1, `initiate` (API key): start a flow and return the URL the user's browser opens, or
//! create a connect session whose page the user's browser opens.

use broker::api::dialect::{airbyte, aitronos, broker as shapes};
use broker::api::route::OrgFrom;
use broker::api::{self, Call, Function, Route};
use broker::auth::Scope;
use broker::{App, Result, connect, flow};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

#[derive(Debug, Clone, Copy)]
pub enum Op {
    InitiateOauth,
    GetConsentUrl,
    NativeOauth,
    ConnectorAuthorize,
    PersonalAuthorize,
    ConnectSession,
}

/// The AWS actions this function's code calls (API keys and their last use, organizations, connections and flows in
/// the table; provider app credentials in the vault). `tests/e2e/iam.rs` holds each function's
/// policy in `template.yaml` to exactly this list; `kms:` actions apply when a customer key is set.
pub const AWS_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "secretsmanager:GetSecretValue",
    "kms:Decrypt",
];

pub const ROUTES: &[Route<Op>] = &[
    Route::api(
        Method::POST,
        "/v1/sources/initiateOAuth",
        Op::InitiateOauth,
        OrgFrom::Key,
        Scope::Flows,
    ),
    Route::api(
        Method::POST,
        "/v1/source_oauths/get_consent_url",
        Op::GetConsentUrl,
        OrgFrom::Key,
        Scope::Flows,
    ),
    Route::api(
        Method::POST,
        "/v1/organizations/{organization_id}/knowledge/connectors/sources/oauth",
        Op::NativeOauth,
        OrgFrom::Path,
        Scope::Flows,
    ),
    Route::api(
        Method::POST,
        "/v1/organizations/{organization_id}/knowledge/connectors/sources/authorize",
        Op::ConnectorAuthorize,
        OrgFrom::Path,
        Scope::Flows,
    ),
    Route::api(
        Method::POST,
        "/v1/personal-connectors/authorize",
        Op::PersonalAuthorize,
        OrgFrom::Query,
        Scope::Flows,
    ),
    Route::api(
        Method::POST,
        "/v1/connect/sessions",
        Op::ConnectSession,
        OrgFrom::Key,
        Scope::Flows,
    ),
];

const FUNCTION: Function<Op> = Function {
    name: "initiate",
    routes: ROUTES,
};

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    api::handle(app, req, &FUNCTION, |call| dispatch(app, call)).await
}

async fn dispatch(app: &App, call: Call<Op>) -> Result<Response<Body>> {
    let (caller, req) = (call.caller()?, &call.req);
    match call.op {
        Op::InitiateOauth => {
            airbyte::consent_url(&flow::start(app, caller, airbyte::initiate_oauth(req)?).await?)
        }
        Op::GetConsentUrl => {
            airbyte::consent_url(&flow::start(app, caller, airbyte::get_consent_url(req)?).await?)
        }
        Op::NativeOauth => {
            aitronos::native_started(&flow::start(app, caller, aitronos::native_oauth(req)?).await?)
        }
        Op::ConnectorAuthorize => aitronos::connector_started(
            &flow::start(app, caller, aitronos::connector_authorize(req)?).await?,
        ),
        Op::PersonalAuthorize => aitronos::personal_started(
            &flow::start(app, caller, aitronos::personal_authorize(req)?).await?,
        ),
        Op::ConnectSession => {
            let (token, url, expires_at) =
                connect::create_session(app, caller, api::json_body(req)?).await?;
            shapes::connect_session_created(&token, &url, expires_at)
        }
    }
}
