//! Step 4, `complete` (API key): finish a flow on the platform's side: redeem a client-callback
//! code, create a source from an authorized connection, activate a personal connection, or import
//! a token the platform already holds.

use broker::api::dialect::{airbyte, aitronos, authentik};
use broker::api::route::OrgFrom;
use broker::api::{self, Call, Function, Route};
use broker::auth::Scope;
use broker::{App, Result, connection, flow, source};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

#[derive(Debug, Clone, Copy)]
pub enum Op {
    CompleteOauth,
    ConnectorSource,
    PersonalComplete,
    ImportUserConnection,
}

/// The AWS actions this function's code calls (keys, flows, connections, sources, state tokens;
/// app credentials read, tokens written by complete_oauth and imports). `tests/e2e/iam.rs` holds
/// its policy in `template.yaml` to exactly this list.
pub const AWS_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "secretsmanager:GetSecretValue",
    "secretsmanager:CreateSecret",
    "secretsmanager:TagResource",
    "kms:Decrypt",
    "kms:GenerateDataKey",
];

pub const ROUTES: &[Route<Op>] = &[
    Route::api(
        Method::POST,
        "/v1/source_oauths/complete_oauth",
        Op::CompleteOauth,
        OrgFrom::Key,
        Scope::Flows,
    ),
    Route::api(
        Method::POST,
        "/v1/organizations/{organization_id}/knowledge/connectors/sources/oauth/callback",
        Op::ConnectorSource,
        OrgFrom::Path,
        Scope::Flows,
    ),
    Route::api(
        Method::POST,
        "/v1/personal-connectors/complete-oauth",
        Op::PersonalComplete,
        OrgFrom::Query,
        Scope::Flows,
    ),
    Route::api(
        Method::POST,
        "/v1/sources/user_connections/oauth/",
        Op::ImportUserConnection,
        OrgFrom::Key,
        Scope::Flows,
    ),
];

const FUNCTION: Function<Op> = Function {
    name: "complete",
    routes: ROUTES,
};

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    api::handle(app, req, &FUNCTION, |call| dispatch(app, call)).await
}

async fn dispatch(app: &App, call: Call<Op>) -> Result<Response<Body>> {
    let (caller, req) = (call.caller()?, &call.req);
    // The organization the route names is the key's own: the request path checked it.
    let org = caller.organization_id.as_str();
    match call.op {
        Op::CompleteOauth => {
            let parsed = airbyte::complete_oauth(req, caller)?;
            let outcome = flow::complete_client_callback(app, caller, parsed.completion).await?;
            airbyte::completed(outcome, parsed.return_secret_coordinate)
        }
        Op::ConnectorSource => {
            let new = aitronos::connector_source(req, org)?;
            aitronos::source_created(&source::create(app, caller, new).await?)
        }
        Op::PersonalComplete => {
            let token = aitronos::personal_complete(req)?;
            let connection = flow::complete_personal(
                app.state_tokens.as_ref(),
                app.connections.as_ref(),
                app.clock.now(),
                caller,
                &token,
            )
            .await?;
            aitronos::personal_completed(&connection)
        }
        Op::ImportUserConnection => {
            let connection = connection::import(app, caller, authentik::import(req)?).await?;
            let provider = app.catalog.resolve(&connection.provider)?;
            authentik::imported(&connection, &provider.name)
        }
    }
}
