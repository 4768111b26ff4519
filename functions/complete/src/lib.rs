//! Step 4, `complete` (API key): finish a flow on the platform's side.

use broker::api::{self, Route, route};
use broker::auth::{self, Caller};
use broker::{App, Result, flow};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

#[derive(Debug, Clone, Copy)]
pub enum Op {
    PersonalComplete,
}

pub const ROUTES: &[Route<Op>] = &[Route::new(
    Method::POST,
    "/v1/personal-connectors/complete-oauth",
    Op::PersonalComplete,
)];

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let trace_id = api::request_id(&req);
    let span = tracing::info_span!("complete", %trace_id);
    dispatch(app, req)
        .instrument(span)
        .await
        .unwrap_or_else(|e| e.to_response(&trace_id))
}

async fn dispatch(app: &App, req: Request) -> Result<Response<Body>> {
    let (op, _) = route::find(ROUTES, req.method(), req.uri().path())?;
    let caller = auth::authenticate(app.keys.as_ref(), &req).await?;
    match op {
        Op::PersonalComplete => personal_complete(app, &caller, &req).await,
    }
}

#[derive(Debug, Deserialize)]
struct PersonalCompleteBody {
    state_token: String,
}

async fn personal_complete(app: &App, caller: &Caller, req: &Request) -> Result<Response<Body>> {
    let organization_id = api::query_param(&api::query(req)?, "organization_id")?;
    let body: PersonalCompleteBody = api::json_body(req)?;
    let connection =
        flow::complete_personal(app, caller, &organization_id, &body.state_token).await?;
    api::json(
        StatusCode::OK,
        &json!({
            "connected": true,
            "connection": { "id": connection.id, "app_key": connection.provider, "status": "active" },
            "message": "Connection established.",
        }),
    )
}
