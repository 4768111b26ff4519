//! `connections` (API key): the platform reads its connections and gets fresh access tokens,
//! refreshed once however many callers ask (DESIGN §4.5).

use broker::api::dialect::broker as shapes;
use broker::api::route::OrgFrom;
use broker::api::{self, Call, Function, Route};
use broker::auth::Scope;
use broker::{App, ConnectionId, Result, connection, flow};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

#[derive(Debug, Clone, Copy)]
pub enum Op {
    List,
    Get,
    Token,
    Delete,
    Reconnect,
}

/// The AWS actions this function's code calls (keys and connections read, listing indexes
/// queried, the refresh lease and its outcome written, a revoked tombstone written, a reconnect's
/// flow and organization; app credentials and token documents read, refreshed documents written,
/// revoked ones deleted). `tests/e2e/iam.rs` holds its policy in `template.yaml` to
/// exactly this list.
pub const AWS_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:DeleteSecret",
    "kms:Decrypt",
    "kms:GenerateDataKey",
];

pub const ROUTES: &[Route<Op>] = &[
    Route::api(
        Method::GET,
        "/v1/connections",
        Op::List,
        OrgFrom::Key,
        Scope::ConnectionsRead,
    ),
    Route::api(
        Method::GET,
        "/v1/connections/{connection_id}",
        Op::Get,
        OrgFrom::Key,
        Scope::ConnectionsRead,
    ),
    Route::api(
        Method::GET,
        "/v1/connections/{connection_id}/token",
        Op::Token,
        OrgFrom::Key,
        Scope::CredentialsRead,
    ),
    Route::api(
        Method::DELETE,
        "/v1/connections/{connection_id}",
        Op::Delete,
        OrgFrom::Key,
        Scope::ConnectionsWrite,
    ),
    Route::api(
        Method::POST,
        "/v1/connections/{connection_id}/reconnect",
        Op::Reconnect,
        OrgFrom::Key,
        Scope::ConnectionsWrite,
    ),
];

const FUNCTION: Function<Op> = Function {
    name: "connections",
    routes: ROUTES,
};

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    api::handle(app, req, &FUNCTION, |call| dispatch(app, call)).await
}

async fn dispatch(app: &App, call: Call<Op>) -> Result<Response<Body>> {
    let (caller, req) = (call.caller()?, &call.req);
    let id: &ConnectionId = &call
        .params
        .get("connection_id")
        .map(ConnectionId::from)
        .unwrap_or_default();
    match call.op {
        Op::List => shapes::listed(
            &connection::list(app.connections.as_ref(), caller, shapes::list_filters(req)?).await?,
        ),
        Op::Get => {
            shapes::connection(&connection::get(app.connections.as_ref(), caller, id).await?)
        }
        Op::Token => {
            let force = shapes::force_refresh(req)?;
            shapes::token(&connection::token(app, caller, id, force, &call.trace_id).await?)
        }
        Op::Delete => shapes::revoked(&connection::revoke(app, caller, id).await?),
        Op::Reconnect => {
            let redirect_url = shapes::reconnect_redirect_url(req)?;
            shapes::reconnect_started(&flow::reconnect(app, caller, id, &redirect_url).await?)
        }
    }
}
