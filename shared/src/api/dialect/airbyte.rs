//! Airbyte: the public API's `initiateOAuth` (hosted callback) and the config API's
//! `get_consent_url` / `complete_oauth` (client callback). camelCase on the wire, snake_case
//! accepted.

use std::collections::HashMap;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{require, rfc3339, string_inputs};
use crate::api;
use crate::auth::Caller;
use crate::flow::{ClientCompletion, ClientOutcome, FlowKind, StartRequest, Started};
use crate::provider::TokenSet;
use crate::{Error, Result};

/// `InitiateOauthRequest`.
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

pub fn initiate_oauth(req: &Request) -> Result<StartRequest> {
    let body: InitiateOauthBody = api::json_body(req)?;
    require("workspaceId", &body.workspace_id)?;
    let provider = body
        .source_type
        .clone()
        .or_else(|| body.source_definition_id.clone())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::field("sourceType", "or sourceDefinitionId is required"))?;
    Ok(StartRequest {
        kind: FlowKind::InitiateOauth,
        provider,
        definition_id: body.source_definition_id,
        workspace_id: Some(body.workspace_id),
        redirect_url: body.redirect_url,
        inputs: string_inputs("oAuthInputConfiguration", body.o_auth_input_configuration)?,
        requested_scopes: body.requested_scopes,
        requested_optional_scopes: body.requested_optional_scopes,
        connect: None,
    })
}

/// `SourceOauthConsentRequest`: the provider redirects to the caller's own (registered)
/// `redirectUrl`, and the caller finishes with `complete_oauth`.
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

pub fn get_consent_url(req: &Request) -> Result<StartRequest> {
    let body: ConsentUrlBody = api::json_body(req)?;
    require("workspaceId", &body.workspace_id)?;
    require("sourceDefinitionId", &body.source_definition_id)?;
    Ok(StartRequest {
        kind: FlowKind::ClientCallback,
        provider: body.source_definition_id.clone(),
        definition_id: Some(body.source_definition_id),
        workspace_id: Some(body.workspace_id),
        redirect_url: body.redirect_url,
        inputs: string_inputs("oAuthInputConfiguration", body.o_auth_input_configuration)?,
        requested_scopes: vec![],
        requested_optional_scopes: vec![],
        connect: None,
    })
}

/// Both initiate routes answer `{"consentUrl"}`.
pub fn consent_url(started: &Started) -> Result<Response<Body>> {
    api::json(
        StatusCode::OK,
        &json!({ "consentUrl": started.consent_url.expose().as_str() }),
    )
}

/// `CompleteSourceOauthRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteOauthBody {
    #[serde(alias = "source_definition_id")]
    source_definition_id: String,
    #[serde(alias = "workspace_id")]
    workspace_id: String,
    #[serde(alias = "query_params")]
    query_params: Map<String, Value>,
    #[serde(default, alias = "redirect_url")]
    redirect_url: Option<String>,
    #[serde(default, alias = "return_secret_coordinate")]
    return_secret_coordinate: bool,
    // `oAuthInputConfiguration` and `sourceId` are accepted and ignored: the flow recorded the
    // validated inputs when it started.
}

/// A parsed `complete_oauth`: the completion, and whether the caller wants the secret's
/// coordinate instead of the token fields.
pub struct CompleteOauth {
    pub completion: ClientCompletion,
    pub return_secret_coordinate: bool,
}

pub fn complete_oauth(req: &Request, caller: &Caller) -> Result<CompleteOauth> {
    let body: CompleteOauthBody = api::json_body(req)?;
    let query = body
        .query_params
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(Error::field(
                "queryParams",
                format!("`{k}` must be a string"),
            )),
        })
        .collect::<Result<HashMap<_, _>>>()?;
    Ok(CompleteOauth {
        completion: ClientCompletion {
            organization_id: caller.organization_id.clone(),
            workspace_id: body.workspace_id,
            definition_id: body.source_definition_id,
            redirect_url: body.redirect_url.filter(|u| !u.is_empty()),
            query,
        },
        return_secret_coordinate: body.return_secret_coordinate,
    })
}

/// `CompleteOAuthResponse`: a provider's refusal is reported in the body, not as an HTTP error.
pub fn completed(outcome: ClientOutcome, return_secret_coordinate: bool) -> Result<Response<Body>> {
    let response = match outcome {
        ClientOutcome::Stored { secret_id, tokens } => {
            let auth_payload = if return_secret_coordinate {
                json!({ "secretId": secret_id })
            } else {
                token_fields(&tokens)
            };
            json!({ "request_succeeded": true, "request_error": null, "auth_payload": auth_payload })
        }
        ClientOutcome::Refused { error, description } => json!({
            "request_succeeded": false,
            "request_error": format!("{error}: {description}"),
            "auth_payload": {},
        }),
    };
    api::json(StatusCode::OK, &response)
}

/// The token fields as Airbyte's connectors read them from `auth_payload`.
fn token_fields(tokens: &TokenSet) -> Value {
    let mut fields: Map<String, Value> = tokens.metadata.clone().into_iter().collect();
    fields.insert(
        "access_token".into(),
        Value::String(tokens.access_token.expose().clone()),
    );
    if let Some(refresh) = &tokens.refresh_token {
        fields.insert(
            "refresh_token".into(),
            Value::String(refresh.expose().clone()),
        );
    }
    fields.insert("token_type".into(), json!(tokens.token_type));
    if let Some(expiry) = tokens.expires_at {
        fields.insert("token_expiry_date".into(), json!(rfc3339(expiry)));
    }
    if let Some(scope) = &tokens.scope {
        fields.insert("scope".into(), json!(scope));
    }
    Value::Object(fields)
}
