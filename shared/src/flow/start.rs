use std::collections::BTreeMap;

use oauth2::PkceCodeChallenge;
use url::Url;

use super::{Flow, FlowKind, FlowStatus};
use crate::auth::Caller;
use crate::connection::{Connection, ConnectionStatus};
use crate::crypto::{random_token, sha256_hex};
use crate::provider::{Endpoints, Provider};
use crate::redirect::RedirectUrl;
use crate::secret::Sensitive;
use crate::{App, ConnectionId, Error, Result};

/// What any initiate route asks for, after its own request shape is parsed.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub kind: FlowKind,
    /// Slug, alias or source definition id.
    pub provider: String,
    pub definition_id: Option<String>,
    pub workspace_id: Option<String>,
    pub redirect_url: String,
    pub inputs: BTreeMap<String, String>,
    pub requested_scopes: Vec<String>,
    pub requested_optional_scopes: Vec<String>,
    /// Set by the hosted connect page: its session, and the end user recorded on the connection.
    pub connect: Option<ConnectOrigin>,
}

#[derive(Debug, Clone)]
pub struct ConnectOrigin {
    pub session_hash: String,
    pub end_user_id: String,
}

#[derive(Debug)]
pub struct Started {
    /// The URL the user's browser opens: the authorize step for hosted flows, the provider's
    /// consent page for client-callback flows. It carries the flow's handle (the state).
    pub consent_url: Sensitive<Url>,
    pub connection_id: ConnectionId,
    pub expires_at: i64,
}

/// Validates everything the caller chose, records a pending connection and the flow, and returns
/// the URL the user's browser opens.
pub async fn start(app: &App, caller: &Caller, req: StartRequest) -> Result<Started> {
    if let Some(ws) = &req.workspace_id {
        caller.require_workspace(ws)?;
    } else if !caller.workspaces.is_empty() && req.kind != FlowKind::Personal {
        return Err(Error::field(
            "workspace_id",
            "is required for a key limited to workspaces",
        ));
    }
    let provider = app.catalog.resolve(&req.provider)?;
    provider.require_usable()?;
    let endpoints = provider.resolve_endpoints(&req.inputs, &app.config)?;
    let scopes = provider.select_scopes(&req.requested_scopes, &req.requested_optional_scopes)?;
    let now = app.clock.now();
    let connection = Connection {
        scopes: scopes.clone(),
        requested_scopes: scopes.clone(),
        end_user_id: req.connect.as_ref().map(|c| c.end_user_id.clone()),
        ..Connection::new(
            &caller.organization_id,
            req.workspace_id.clone(),
            caller.user_id,
            &provider.slug,
            ConnectionStatus::Pending,
            now,
        )
    };
    begin(
        app,
        Plan {
            kind: req.kind,
            provider,
            definition_id: req.definition_id,
            redirect_url: &req.redirect_url,
            endpoints,
            scopes,
            inputs: req.inputs,
            connection: &connection,
            new_connection: true,
            connect_session: req.connect.map(|c| c.session_hash),
        },
    )
    .await
}

/// DESIGN §4.5 `reconnect`: a new flow that re-authorizes the caller's connection `id` in place
/// (same provider, endpoints, scopes and workspace); its callback writes a new version of the
/// same secret and makes the connection `active` again. A revoked connection cannot come back.
pub async fn reconnect(
    app: &App,
    caller: &Caller,
    id: &ConnectionId,
    redirect_url: &str,
) -> Result<Started> {
    let connection = crate::connection::get(app.connections.as_ref(), caller, id).await?;
    if !ConnectionStatus::RECONNECTABLE.contains(&connection.status) {
        return Err(Error::field(
            "connection_id",
            format!(
                "is {}: only an authorized, active, failed or reauthorization_required connection can be reconnected",
                connection.status.as_str()
            ),
        ));
    }
    let provider = app.catalog.resolve(&connection.provider)?;
    provider.require_usable()?;
    // The endpoints the connection was authorized at (templated hosts already filled in).
    let endpoints = match &connection.endpoints {
        Some(endpoints) => endpoints.clone(),
        None => provider.resolve_endpoints(&BTreeMap::new(), &app.config)?,
    };
    begin(
        app,
        Plan {
            kind: FlowKind::Reconnect,
            provider,
            definition_id: None,
            redirect_url,
            endpoints,
            scopes: connection.requested_scopes.clone(),
            inputs: BTreeMap::new(),
            connection: &connection,
            new_connection: false,
            connect_session: None,
        },
    )
    .await
}

/// A flow about to be recorded, for a new connection or an existing one.
struct Plan<'a> {
    kind: FlowKind,
    provider: &'a Provider,
    definition_id: Option<String>,
    redirect_url: &'a str,
    endpoints: Endpoints,
    scopes: Vec<String>,
    inputs: BTreeMap<String, String>,
    connection: &'a Connection,
    /// Recorded with the flow (a start), or already there (a reconnect).
    new_connection: bool,
    connect_session: Option<String>,
}

/// The checks every flow passes (the redirect URL registered for the organization, the provider
/// app configured), then the flow recorded and the URL the browser opens.
async fn begin(app: &App, plan: Plan<'_>) -> Result<Started> {
    let connection = plan.connection;
    let org = app
        .orgs
        .get_org(&connection.organization_id)
        .await?
        .ok_or_else(|| Error::field("redirect_url", "is not registered for this organization"))?;
    // A connect flow ends on the broker's own result page, which the session's checks govern.
    let redirect = match plan.kind {
        FlowKind::Connect => None,
        _ => Some(RedirectUrl::registered(
            plan.redirect_url,
            &org,
            &app.config,
        )?),
    };
    let redirect_url = redirect
        .as_ref()
        .map(|r| r.as_str().to_string())
        .unwrap_or_default();
    // Fail now, not in the user's browser, when the provider app is not configured.
    app.apps
        .credentials(
            &plan.provider.slug,
            &org.id,
            connection.workspace_id.as_deref(),
        )
        .await?;

    let state = random_token()?;
    let now = app.clock.now();
    let expires_at = now + app.config.flow_ttl_secs;
    let pkce_verifier = plan
        .provider
        .uses_pkce()
        .then(|| Sensitive::new(PkceCodeChallenge::new_random_sha256().1.secret().clone()));
    let flow = Flow {
        key: sha256_hex(&state),
        kind: plan.kind,
        organization_id: org.id.as_str().into(),
        workspace_id: connection.workspace_id.clone(),
        user_id: connection.user_id,
        provider: plan.provider.slug.clone(),
        definition_id: plan.definition_id,
        // Client-callback flows send the provider back to the caller, who redeems the code itself.
        provider_redirect_uri: if plan.kind.hosted() {
            app.config.callback_url().to_string()
        } else {
            redirect_url.clone()
        },
        redirect_url,
        endpoints: plan.endpoints,
        scopes: plan.scopes,
        inputs: plan.inputs,
        pkce_verifier,
        binding_hash: None,
        status: FlowStatus::Pending,
        lease_owner: None,
        sealed_tokens: None,
        connection_id: connection.id.clone(),
        connect_session: plan.connect_session,
        created_at: now,
        expires_at,
    };
    app.flows
        .create_flow(&flow, plan.new_connection.then_some(connection))
        .await?;
    tracing::info!(provider = %flow.provider, kind = ?flow.kind, connection_id = %connection.id, "flow started");

    let consent_url = if flow.kind.hosted() {
        let mut url = app.config.authorize_url();
        url.query_pairs_mut().append_pair("flow", &state);
        url
    } else {
        super::authorize::provider_url(app, &flow, &state).await?
    };
    Ok(Started {
        consent_url: Sensitive::new(consent_url),
        connection_id: connection.id.clone(),
        expires_at,
    })
}
