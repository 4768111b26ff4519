//! Step 1, `initiate` (API key): start a flow and return the URL the user's browser opens.

use std::collections::BTreeMap;

use broker::api::{self, Route, route};
use broker::auth::{self, Caller};
use broker::flow::{self, FlowKind, StartRequest};
use broker::{App, Error, Result};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tracing::Instrument;

#[derive(Debug, Clone, Copy)]
pub enum Op {
    InitiateOauth,
    GetConsentUrl,
    NativeOauth,
    ConnectorAuthorize,
    PersonalAuthorize,
}

/// The AWS actions this function's code calls (API keys, organizations, connections and flows in
/// the table; provider app credentials in the vault). `tests/e2e/iam.rs` holds each function's
/// policy in `template.yaml` to exactly this list; `kms:` actions apply when a customer key is set.
pub const AWS_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "secretsmanager:GetSecretValue",
    "kms:Decrypt",
];

pub const ROUTES: &[Route<Op>] = &[
    Route::new(Method::POST, "/v1/sources/initiateOAuth", Op::InitiateOauth),
    Route::new(
        Method::POST,
        "/v1/source_oauths/get_consent_url",
        Op::GetConsentUrl,
    ),
    Route::new(
        Method::POST,
        "/v1/organizations/{organization_id}/knowledge/connectors/sources/oauth",
        Op::NativeOauth,
    ),
    Route::new(
        Method::POST,
        "/v1/organizations/{organization_id}/knowledge/connectors/sources/authorize",
        Op::ConnectorAuthorize,
    ),
    Route::new(
        Method::POST,
        "/v1/personal-connectors/authorize",
        Op::PersonalAuthorize,
    ),
];

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let trace_id = api::request_id(&req);
    let span = tracing::info_span!("initiate", %trace_id);
    dispatch(app, req)
        .instrument(span)
        .await
        .unwrap_or_else(|e| e.to_response(&trace_id))
}

async fn dispatch(app: &App, req: Request) -> Result<Response<Body>> {
    let (op, params) = route::find(ROUTES, req.method(), req.uri().path())?;
    let caller = auth::authenticate(app.keys.as_ref(), &req).await?;
    if let Some(org) = params.get("organization_id") {
        caller.require_org(org)?;
    }
    match op {
        Op::InitiateOauth => initiate_oauth(app, &caller, &req).await,
        Op::GetConsentUrl => get_consent_url(app, &caller, &req).await,
        Op::NativeOauth => native_oauth(app, &caller, &req).await,
        Op::ConnectorAuthorize => connector_authorize(app, &caller, &req).await,
        Op::PersonalAuthorize => personal_authorize(app, &caller, &req).await,
    }
}

/// Airbyte's `InitiateOauthRequest`: camelCase on the wire, snake_case accepted.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitiateOauthBody {
    #[serde(alias = "redirect_url")]
    redirect_url: String,
    #[serde(alias = "workspace_id")]
    workspace_id: String,
    #[serde(default, alias = "source_type")]
    source_type: Option<String>,
    #[serde(default, alias = "source_definition_id")]
    source_definition_id: Option<String>,
    #[serde(
        default,
        alias = "o_auth_input_configuration",
        alias = "oauth_input_configuration"
    )]
    o_auth_input_configuration: Option<Map<String, Value>>,
    #[serde(default, alias = "requested_scopes")]
    requested_scopes: Vec<String>,
    #[serde(default, alias = "requested_optional_scopes")]
    requested_optional_scopes: Vec<String>,
}

async fn initiate_oauth(app: &App, caller: &Caller, req: &Request) -> Result<Response<Body>> {
    let body: InitiateOauthBody = api::json_body(req)?;
    require("workspaceId", &body.workspace_id)?;
    let provider = body
        .source_type
        .clone()
        .or_else(|| body.source_definition_id.clone())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::field("sourceType", "or sourceDefinitionId is required"))?;
    let started = flow::start(
        app,
        caller,
        StartRequest {
            kind: FlowKind::InitiateOauth,
            provider,
            definition_id: body.source_definition_id,
            workspace_id: Some(body.workspace_id),
            redirect_url: body.redirect_url,
            inputs: string_inputs("oAuthInputConfiguration", body.o_auth_input_configuration)?,
            requested_scopes: body.requested_scopes,
            requested_optional_scopes: body.requested_optional_scopes,
        },
    )
    .await?;
    api::json(
        StatusCode::OK,
        &json!({ "consentUrl": started.consent_url.expose().as_str() }),
    )
}

/// Airbyte config API's `SourceOauthConsentRequest`: the provider redirects to the caller's own
/// (registered) `redirectUrl`, and the caller finishes with `complete_oauth`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsentUrlBody {
    #[serde(alias = "source_definition_id")]
    source_definition_id: String,
    #[serde(alias = "workspace_id")]
    workspace_id: String,
    #[serde(alias = "redirect_url")]
    redirect_url: String,
    #[serde(
        default,
        alias = "o_auth_input_configuration",
        alias = "oauth_input_configuration"
    )]
    o_auth_input_configuration: Option<Map<String, Value>>,
    // `sourceId` (re-authorizing an existing source) is accepted and ignored: the consent URL does
    // not depend on it.
}

async fn get_consent_url(app: &App, caller: &Caller, req: &Request) -> Result<Response<Body>> {
    let body: ConsentUrlBody = api::json_body(req)?;
    require("workspaceId", &body.workspace_id)?;
    require("sourceDefinitionId", &body.source_definition_id)?;
    let started = flow::start(
        app,
        caller,
        StartRequest {
            kind: FlowKind::ClientCallback,
            provider: body.source_definition_id.clone(),
            definition_id: Some(body.source_definition_id),
            workspace_id: Some(body.workspace_id),
            redirect_url: body.redirect_url,
            inputs: string_inputs("oAuthInputConfiguration", body.o_auth_input_configuration)?,
            requested_scopes: vec![],
            requested_optional_scopes: vec![],
        },
    )
    .await?;
    api::json(
        StatusCode::OK,
        &json!({ "consentUrl": started.consent_url.expose().as_str() }),
    )
}

/// Aitronos native initiate: a hosted flow whose callback hands back the secret's id.
#[derive(Debug, Deserialize)]
struct NativeOauthBody {
    source_definition_id: String,
    workspace_id: String,
    redirect_url: String,
    #[serde(default, alias = "oauth_input_configuration")]
    o_auth_input_configuration: Option<Map<String, Value>>,
}

async fn native_oauth(app: &App, caller: &Caller, req: &Request) -> Result<Response<Body>> {
    let body: NativeOauthBody = api::json_body(req)?;
    require("workspace_id", &body.workspace_id)?;
    require("source_definition_id", &body.source_definition_id)?;
    let started = flow::start(
        app,
        caller,
        StartRequest {
            kind: FlowKind::Native,
            provider: body.source_definition_id.clone(),
            definition_id: Some(body.source_definition_id),
            workspace_id: Some(body.workspace_id),
            redirect_url: body.redirect_url,
            inputs: string_inputs(
                "o_auth_input_configuration",
                body.o_auth_input_configuration,
            )?,
            requested_scopes: vec![],
            requested_optional_scopes: vec![],
        },
    )
    .await?;
    api::json(
        StatusCode::OK,
        &json!({ "consent_url": started.consent_url.expose().as_str() }),
    )
}

/// Aitronos connector authorize: a hosted flow whose callback hands back an authorized
/// connection, from which the platform then creates a source.
#[derive(Debug, Deserialize)]
struct ConnectorAuthorizeBody {
    slug: String,
    redirect_url: String,
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default, alias = "o_auth_input_configuration")]
    integration_params: Option<Map<String, Value>>,
}

async fn connector_authorize(app: &App, caller: &Caller, req: &Request) -> Result<Response<Body>> {
    let body: ConnectorAuthorizeBody = api::json_body(req)?;
    require("slug", &body.slug)?;
    let started = flow::start(
        app,
        caller,
        StartRequest {
            kind: FlowKind::Connector,
            provider: body.slug,
            definition_id: None,
            workspace_id: body.workspace_id.filter(|w| !w.is_empty()),
            redirect_url: body.redirect_url,
            inputs: string_inputs("integration_params", body.integration_params)?,
            requested_scopes: vec![],
            requested_optional_scopes: vec![],
        },
    )
    .await?;
    api::json(
        StatusCode::OK,
        &json!({
            "authorization_url": started.consent_url.expose().as_str(),
            "connection_id": started.connection_id,
        }),
    )
}

/// The personal-connector authorize call.
#[derive(Debug, Deserialize)]
struct PersonalAuthorizeBody {
    #[serde(alias = "connector_type")]
    app_key: String,
    redirect_url: String,
    #[serde(default)]
    integration_params: Option<Map<String, Value>>,
}

async fn personal_authorize(app: &App, caller: &Caller, req: &Request) -> Result<Response<Body>> {
    let organization_id = api::query_param(&api::query(req)?, "organization_id")?;
    caller.require_org(&organization_id)?;
    let body: PersonalAuthorizeBody = api::json_body(req)?;
    let started = flow::start(
        app,
        caller,
        StartRequest {
            kind: FlowKind::Personal,
            provider: body.app_key,
            definition_id: None,
            workspace_id: None,
            redirect_url: body.redirect_url,
            inputs: string_inputs("integration_params", body.integration_params)?,
            requested_scopes: vec![],
            requested_optional_scopes: vec![],
        },
    )
    .await?;
    let expires_at = chrono::DateTime::from_timestamp(started.expires_at, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    api::json(
        StatusCode::OK,
        &json!({
            "authorization_url": started.consent_url.expose().as_str(),
            "connection_id": started.connection_id,
            "expires_at": expires_at,
        }),
    )
}

/// Provider inputs are strings; anything else is refused rather than guessed at.
fn string_inputs(field: &str, map: Option<Map<String, Value>>) -> Result<BTreeMap<String, String>> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(Error::field(field, format!("`{k}` must be a string"))),
        })
        .collect()
}

fn require(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::field(field, "is required"));
    }
    Ok(())
}
