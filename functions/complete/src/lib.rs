//! Step 4, `complete` (API key): finish a flow on the platform's side: redeem a client-callback
//! code, create a source from an authorized connection, activate a personal connection, or import
//! a token the platform already holds.

use std::collections::HashMap;

use broker::api::{self, Route, route};
use broker::auth::{self, Caller};
use broker::connection::{self, Connection, Import};
use broker::flow::{self, ClientCompletion, ClientOutcome};
use broker::provider::TokenSet;
use broker::secret::Sensitive;
use broker::source::{self, NewSource, Source};
use broker::{App, Error, Result};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tracing::Instrument;

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
    "dynamodb:DeleteItem",
    "secretsmanager:GetSecretValue",
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:TagResource",
    "kms:Decrypt",
    "kms:GenerateDataKey",
];

pub const ROUTES: &[Route<Op>] = &[
    Route::new(
        Method::POST,
        "/v1/source_oauths/complete_oauth",
        Op::CompleteOauth,
    ),
    Route::new(
        Method::POST,
        "/v1/organizations/{organization_id}/knowledge/connectors/sources/oauth/callback",
        Op::ConnectorSource,
    ),
    Route::new(
        Method::POST,
        "/v1/personal-connectors/complete-oauth",
        Op::PersonalComplete,
    ),
    Route::new(
        Method::POST,
        "/v1/sources/user_connections/oauth/",
        Op::ImportUserConnection,
    ),
];

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let trace_id = api::request_id(&req);
    let span = tracing::info_span!("complete", %trace_id);
    dispatch(app, req)
        .instrument(span)
        .await
        .unwrap_or_else(|e| e.to_response(&trace_id))
}

async fn dispatch(app: &App, req: Request) -> Result<Response<Body>> {
    let (op, params) = route::find(ROUTES, req.method(), req.uri().path())?;
    let caller = auth::authenticate(app.keys.as_ref(), &req).await?;
    match op {
        Op::CompleteOauth => complete_oauth(app, &caller, &req).await,
        Op::ConnectorSource => {
            let org = params.get("organization_id").cloned().unwrap_or_default();
            connector_source(app, &caller, &org, &req).await
        }
        Op::PersonalComplete => personal_complete(app, &caller, &req).await,
        Op::ImportUserConnection => import_user_connection(app, &caller, &req).await,
    }
}

/// Airbyte's `CompleteSourceOauthRequest`: camelCase on the wire, snake_case accepted.
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

async fn complete_oauth(app: &App, caller: &Caller, req: &Request) -> Result<Response<Body>> {
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
    let outcome = flow::complete_client_callback(
        app,
        caller,
        ClientCompletion {
            organization_id: caller.organization_id.clone(),
            workspace_id: body.workspace_id,
            definition_id: body.source_definition_id,
            redirect_url: body.redirect_url.filter(|u| !u.is_empty()),
            query,
        },
    )
    .await?;
    let response = match outcome {
        ClientOutcome::Stored { secret_id, tokens } => {
            let auth_payload = if body.return_secret_coordinate {
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
    fields.insert("access_token".into(), expose(&tokens.access_token));
    if let Some(refresh) = &tokens.refresh_token {
        fields.insert("refresh_token".into(), expose(refresh));
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

fn expose(secret: &Sensitive<String>) -> Value {
    Value::String(secret.expose().clone())
}

fn rfc3339(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Aitronos connector: create a source from an authorized connection.
#[derive(Debug, Deserialize)]
struct ConnectorSourceBody {
    connection_id: String,
    workspace_id: String,
    source_definition_id: String,
    source_name: String,
}

async fn connector_source(
    app: &App,
    caller: &Caller,
    organization_id: &str,
    req: &Request,
) -> Result<Response<Body>> {
    caller.require_org(organization_id)?;
    let body: ConnectorSourceBody = api::json_body(req)?;
    let created = source::create(
        app,
        caller,
        NewSource {
            organization_id: organization_id.to_string(),
            workspace_id: body.workspace_id,
            source_definition_id: body.source_definition_id,
            connection_id: body.connection_id,
            name: body.source_name,
        },
    )
    .await?;
    api::json(StatusCode::CREATED, &source_json(&created))
}

fn source_json(s: &Source) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "workspace_id": s.workspace_id,
        "source_definition_id": s.source_definition_id,
        "connection_id": s.connection_id,
        "status": s.status,
        "created_at": rfc3339(s.created_at),
    })
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

/// authentik's `UserOAuthSourceConnectionRequest`.
#[derive(Debug, Deserialize)]
struct ImportBody {
    source: String,
    identifier: String,
    #[serde(default)]
    access_token: Option<Sensitive<String>>,
    /// ISO 8601 date-time, as authentik sends it.
    #[serde(default)]
    expires: Option<String>,
}

async fn import_user_connection(
    app: &App,
    caller: &Caller,
    req: &Request,
) -> Result<Response<Body>> {
    let body: ImportBody = api::json_body(req)?;
    let expires = body
        .expires
        .filter(|e| !e.is_empty())
        .map(|e| {
            chrono::DateTime::parse_from_rfc3339(&e)
                .map(|t| t.timestamp())
                .map_err(|_| Error::field("expires", "must be an ISO 8601 date-time"))
        })
        .transpose()?;
    let connection = connection::import(
        app,
        caller,
        Import {
            source: body.source,
            identifier: body.identifier,
            access_token: body.access_token,
            expires,
        },
    )
    .await?;
    let provider = app.catalog.resolve(&connection.provider)?;
    api::json(
        StatusCode::CREATED,
        &user_connection_json(&connection, &provider.name),
    )
}

/// authentik's `UserOAuthSourceConnection`, with its `source` rendered from the provider entry.
fn user_connection_json(c: &Connection, provider_name: &str) -> Value {
    // authentik's sources have UUID keys; a stable one per provider entry.
    let digest = broker::crypto::sha256_hex(&format!("provider:{}", c.provider));
    let bits = u128::from_str_radix(&digest[..32], 16).unwrap_or_default();
    let source_pk = uuid::Builder::from_custom_bytes(bits.to_be_bytes()).into_uuid();
    json!({
        "pk": c.numeric_id,
        "user": c.user_id,
        "source": {
            "pk": source_pk.to_string(),
            "name": provider_name,
            "slug": c.provider,
            "enabled": true,
            "authentication_flow": null,
            "enrollment_flow": null,
            "user_property_mappings": [],
            "group_property_mappings": [],
            "component": "ak-source-oauth-form",
            "verbose_name": "OAuth Source",
            "verbose_name_plural": "OAuth Sources",
            "meta_model_name": "authentik_sources_oauth.oauthsource",
            "policy_engine_mode": "any",
            "user_matching_mode": "identifier",
            "managed": null,
            "user_path_template": "goauthentik.io/sources/%(slug)s",
            "icon": null,
        },
        "created": rfc3339(c.created_at),
        "last_updated": rfc3339(c.updated_at),
        "identifier": c.identifier,
        "expires": c.token_expires_at.map(rfc3339),
        // Beyond the seed: the broker's own reference, for the connections API.
        "connection_id": c.id,
    })
}
