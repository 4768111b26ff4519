//! Aitronos: the native and connector initiate calls, the connector's source creation, and the
//! personal-connector authorize and complete calls. snake_case on the wire.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{require, rfc3339, string_inputs};
use crate::Result;
use crate::api;
use crate::connection::Connection;
use crate::flow::{FlowKind, StartRequest, Started};
use crate::source::{NewSource, Source};

/// Native initiate: a hosted flow whose callback hands back the secret's id.
#[derive(Debug, Deserialize)]
struct NativeOauthBody {
    source_definition_id: String,
    workspace_id: String,
    redirect_url: String,
    #[serde(default, alias = "oauth_input_configuration")]
    o_auth_input_configuration: Option<Map<String, Value>>,
}

pub fn native_oauth(req: &Request) -> Result<StartRequest> {
    let body: NativeOauthBody = api::json_body(req)?;
    require("workspace_id", &body.workspace_id)?;
    require("source_definition_id", &body.source_definition_id)?;
    Ok(StartRequest {
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
        connect: None,
    })
}

pub fn native_started(started: &Started) -> Result<Response<Body>> {
    api::json(
        StatusCode::OK,
        &json!({ "consent_url": started.consent_url.expose().as_str() }),
    )
}

/// Connector authorize: a hosted flow whose callback hands back an authorized connection, from
/// which the platform then creates a source.
#[derive(Debug, Deserialize)]
struct ConnectorAuthorizeBody {
    slug: String,
    redirect_url: String,
    #[serde(default)]
    workspace_id: Option<String>,
    #[serde(default, alias = "o_auth_input_configuration")]
    integration_params: Option<Map<String, Value>>,
}

pub fn connector_authorize(req: &Request) -> Result<StartRequest> {
    let body: ConnectorAuthorizeBody = api::json_body(req)?;
    require("slug", &body.slug)?;
    Ok(StartRequest {
        kind: FlowKind::Connector,
        provider: body.slug,
        definition_id: None,
        workspace_id: body.workspace_id.filter(|w| !w.is_empty()),
        redirect_url: body.redirect_url,
        inputs: string_inputs("integration_params", body.integration_params)?,
        requested_scopes: vec![],
        requested_optional_scopes: vec![],
        connect: None,
    })
}

pub fn connector_started(started: &Started) -> Result<Response<Body>> {
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

pub fn personal_authorize(req: &Request) -> Result<StartRequest> {
    let body: PersonalAuthorizeBody = api::json_body(req)?;
    Ok(StartRequest {
        kind: FlowKind::Personal,
        provider: body.app_key,
        definition_id: None,
        workspace_id: None,
        redirect_url: body.redirect_url,
        inputs: string_inputs("integration_params", body.integration_params)?,
        requested_scopes: vec![],
        requested_optional_scopes: vec![],
        connect: None,
    })
}

pub fn personal_started(started: &Started) -> Result<Response<Body>> {
    api::json(
        StatusCode::OK,
        &json!({
            "authorization_url": started.consent_url.expose().as_str(),
            "connection_id": started.connection_id,
            "expires_at": rfc3339(started.expires_at),
        }),
    )
}

/// The connector's `sources/oauth/callback`: create a source from an authorized connection.
#[derive(Debug, Deserialize)]
struct ConnectorSourceBody {
    connection_id: String,
    workspace_id: String,
    source_definition_id: String,
    source_name: String,
}

pub fn connector_source(req: &Request, organization_id: &str) -> Result<NewSource> {
    let body: ConnectorSourceBody = api::json_body(req)?;
    Ok(NewSource {
        organization_id: organization_id.into(),
        workspace_id: body.workspace_id,
        source_definition_id: body.source_definition_id,
        connection_id: body.connection_id.into(),
        name: body.source_name,
    })
}

pub fn source_created(s: &Source) -> Result<Response<Body>> {
    api::json(
        StatusCode::CREATED,
        &json!({
            "id": s.id,
            "name": s.name,
            "workspace_id": s.workspace_id,
            "source_definition_id": s.source_definition_id,
            "connection_id": s.connection_id,
            "status": s.status,
            "created_at": rfc3339(s.created_at),
        }),
    )
}

#[derive(Debug, Deserialize)]
struct PersonalCompleteBody {
    state_token: String,
}

/// The personal-connector complete call: the state token the callback handed out.
pub fn personal_complete(req: &Request) -> Result<String> {
    let body: PersonalCompleteBody = api::json_body(req)?;
    Ok(body.state_token)
}

pub fn personal_completed(connection: &Connection) -> Result<Response<Body>> {
    api::json(
        StatusCode::OK,
        &json!({
            "connected": true,
            "connection": { "id": connection.id, "app_key": connection.provider, "status": "active" },
            "message": "Connection established.",
        }),
    )
}
